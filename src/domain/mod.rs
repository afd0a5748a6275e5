//! The whiteboard's rules, free of HTTP and Redis: ids, strokes and their validation,
//! identities and tokens, accounts, and the server→client frames every engine must produce.

pub mod accounts;
pub mod frames;
pub mod identity;
pub mod ids;
pub mod stroke;
pub mod token;

pub use identity::Identity;
pub use ids::{ConnKey, RoomId, StrokeId, UserId};
pub use stroke::{Point, Stroke, StrokeError, StrokeLimits};
