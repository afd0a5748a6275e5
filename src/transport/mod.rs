//! HTTP and WebSocket: parse, authorize, call the domain and the engine, write. Nothing here
//! holds shared state of its own beyond this instance's sockets.

mod access;
mod auth;
pub mod authz;
pub(crate) mod client_ip;
mod credentials;
mod error;
mod history;
mod http;
mod limits;
mod openapi;
pub mod protocol;
mod rooms;
mod router;
mod schemas;
pub mod server;
mod session;
pub mod session_end;
mod workspaces;
mod ws;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use access::redact as redact_uri;
pub use error::ApiError;
pub use router::{admin_router, router};

use crate::config::Config;
use crate::domain::token::TokenKeys;
use crate::engine::activity::ActivityBuffer;
use crate::engine::{Access, Engine, History};
use crate::hub::Hub;
use crate::mail::Mailer;
use crate::metrics::Metrics;

/// Everything a request or a session needs, shared by all of them.
pub struct AppState {
    pub config: Config,
    /// Parsed once from `config.allowed_origins`; empty allows every origin.
    pub origins: Vec<String>,
    pub instance_id: String,
    pub engine: Arc<dyn Engine>,
    /// The same engine, for the history routes (§5).
    pub history: Arc<dyn History>,
    /// Room settings, members, workspaces, room slots, activity: the same engine, seen by
    /// concern.
    pub access: Arc<dyn Access>,
    /// Ops counted per user per day, flushed to `access` in batches off the op's path.
    pub activity: Arc<ActivityBuffer>,
    pub hub: Arc<Hub>,
    pub tokens: TokenKeys,
    /// Cancelled on SIGTERM: readiness turns 503, upgrades are refused, sessions close with 1001.
    pub draining: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them to finish.
    pub sessions: TaskTracker,
    /// Caps open sockets; a permit lives as long as its session.
    pub connection_slots: Arc<Semaphore>,
    /// Upgrades admitted per second by this instance (`upgrades_per_sec`); `None` = no limit.
    pub admission: Option<governor::DefaultDirectRateLimiter>,
    /// Numbers this instance's connections for their [`ConnKey`](crate::domain::ConnKey).
    pub next_conn: AtomicU64,
    pub metrics: Metrics,
    /// Sends the sign-up codes (SMTP, or the log when none is configured).
    pub mailer: Arc<dyn Mailer>,
    /// Keys the stored hashes of one-time codes (the token secret).
    pub otp_pepper: Vec<u8>,
    /// Peers whose `X-Forwarded-For` is believed, parsed from `trusted_proxies`.
    pub trusted_proxies: Vec<crate::domain::ipnet::IpNet>,
}
