//! drawbridge: a horizontally scaled, stateless WebSocket gateway for collaborative whiteboards.
//!
//! Identical instances sit behind a load balancer. Each keeps only a map of its own sockets
//! ([`hub`]); everything shared (rooms, strokes, the op log, presence, rate limits) lives in an
//! [`engine`]: Redis in production, an embedded in-memory engine for a single instance.
//!
//! The hot path, a stroke from one socket to every other socket of its room:
//! 1. [`transport`] parses and validates the `CANVAS_UPDATE` ([`domain::stroke`]) in the
//!    sender's session task.
//! 2. The engine applies it atomically: one Lua script assigns the room's next `seq`, appends
//!    the stroke and the op log, and `PUBLISH`es one envelope holding the finished client frame.
//! 3. Every instance's single `PSUBSCRIBE room:*` reader hands the envelope to its hub, which
//!    checks seq continuity (filling holes from the log) and queues the same bytes to each
//!    local member's bounded queue; a member that cannot keep up is closed with 1013.
//! 4. Each session writes its queue to its socket; the sender's own event becomes its `ACK`.
//!
//! Module map: [`config`] (one struct, file + env), [`app`] (assembly and drain), [`transport`]
//! (HTTP routes, upgrade checks, the session loop), [`domain`] (rules, no HTTP or Redis
//! types), [`engine`] (the `Engine` trait and both engines), [`hub`] (local fan-out),
//! [`mail`] (the sign-up codes, over SMTP or to the log), [`metrics`] and [`logging`] (what an
//! operator sees), [`cli`] (the command line).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod hub;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod transport;

/// Seconds since the Unix epoch, the clock tokens are checked against.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
