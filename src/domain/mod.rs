//! The whiteboard's rules, free of HTTP and Redis: ids, strokes and their validation,
//! identities and tokens, accounts, and the server→client frames every engine must produce.

pub mod access;
pub mod accounts;
pub mod activity;
pub mod board;
pub mod element;
pub mod frames;
pub mod history;
pub mod identity;
pub mod ids;
pub mod ipnet;
pub mod quota;
pub mod record;
pub mod rga;
pub mod stroke;
pub mod svg;
pub mod token;

pub use identity::Identity;
pub use ids::{ConnKey, RoomId, StrokeId, UserId};
pub use stroke::{Point, Stroke, StrokeError, StrokeLimits};

/// The protocol this server speaks (`PROTOCOL.md` §4.2).
pub const PROTOCOL: &str = "1.1";

/// A protocol version as `(major, minor)`; `None` when it is not one.
pub fn protocol_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
