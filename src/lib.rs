//! drawbridge: a horizontally scaled, stateless WebSocket gateway for collaborative whiteboards.
//!
//! Identical instances sit behind a load balancer. Each keeps only a map of its own sockets
//! ([`hub`]); everything shared (rooms, strokes, the op log, presence, rate limits) lives in an
//! [`engine`]: Redis in production, an embedded in-memory engine for a single instance.
//!
//! A room is a board of elements (strokes, shapes, notes, nodes and edges). The meaning of every
//! op lives in one pure function, [`domain::board::decide`], which turns what a client asked for
//! into what it does (an effect: add / set fields / delete); the log stores effects, so replay,
//! undo and history only apply them ([`domain::record`]).
//!
//! The hot path, a stroke from one socket to every other socket of its room:
//! 1. [`transport`] parses and validates the `CANVAS_UPDATE` ([`domain::stroke`]) in the
//!    sender's session task.
//! 2. The engine decides its effect (a stroke needs nothing read) and commits it atomically:
//!    one generic Lua script checks the versions the decision relied on, assigns the room's next
//!    `seq`, writes the element, appends the log record and `PUBLISH`es that record.
//! 3. Every instance's single `PSUBSCRIBE room:*` reader builds the client frames from the
//!    record once, and hands them to its hub, which checks seq continuity (filling holes from
//!    the log) and queues the same bytes to each local member's bounded queue; a member that
//!    cannot keep up is closed with 1013.
//! 4. Each session writes its queue to its socket (v1 clients get the v1 rendering of element
//!    events); the sender's own event becomes its `ACK`.
//!
//! Module map: [`config`] (one struct, file + env), [`app`] (assembly and drain), [`transport`]
//! (HTTP routes, upgrade checks, the session loop), [`domain`] (rules, no HTTP or Redis
//! types), [`engine`] (the `Engine` trait and both engines), [`hub`] (local fan-out),
//! [`mail`] (the sign-up codes, over SMTP or to the log), [`metrics`] and [`logging`] (what an
//! operator sees), [`cli`] (the command line).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod backup;
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
