//! `loadtest`: a load generator for drawbridge that speaks its wire protocol (`PROTOCOL.md`: v1,
//! and the v1.1 board ops in board mode).
//!
//! One tokio task per simulated client ([`conn`]). Each task owns its socket, its send schedule
//! and its own sequence bookkeeping ([`seq`]), and hands measurements to the shared
//! [`stats::Collector`] in batches, so the hot path takes no lock per message. The runner
//! ([`runner::run`]) plans the timeline (ramp-up, warm-up, measured window, drain), prepares
//! tokens ([`auth`]) and rooms ([`http`]), prints a live line once per second, and finally folds
//! everything into a [`report::Report`] that the binary prints, writes as JSON and charts
//! ([`chart`]).
//!
//! Latency is end to end: the sender embeds its wall-clock send time in what it sends (the
//! `strokeId` of a stroke; where no id can carry it, a coordinate the server relays as it is: a
//! cursor's `x`, a live-stroke batch's last point, a drag's patched `x`) and the receiver
//! subtracts it from its own clock.
//! That is only meaningful when every client runs on one machine, which is how this tool is used.

pub mod auth;
pub mod chart;
pub mod conn;
pub mod http;
pub mod latejoin;
pub mod proto;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seq;
pub mod setup;
pub mod stats;
pub mod target;

pub use report::Report;
pub use runner::{run, run_until};
pub use scenario::{Mode, Preset, Scenario};
