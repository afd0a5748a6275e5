//! Prometheus metrics for `/metrics`: this instance's counters, the hub's, and, read at each
//! scrape, the rooms it hosts and the process's own figures ([`process`]).
//!
//! Every label set is bounded: routes are templates (`/api/v1/rooms/{room_id}`), never paths;
//! statuses, refusal reasons, limit kinds and close codes come from fixed lists in the code.

mod process;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::hub::Hub;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

/// Why a WebSocket upgrade is refused (`transport::ws`). Every label value is created at 0 at
/// start, so a first refusal shows up in `rate()` and dashboards have series to draw.
pub const UPGRADE_REFUSALS: [&str; 11] = [
    "not_websocket",
    "origin",
    "no_token",
    "bad_token",
    "unverified",
    "draining",
    "not_ready",
    "rate_limited",
    "limit_unavailable",
    "full",
    "admission",
];

/// The rate limits: per IP or address (`transport::limits`), and per connection (`ops`,
/// `cursor`, counted by the session loop).
pub const RATE_LIMITS: [&str; 14] = [
    "signup",
    "signin",
    "verify",
    "refresh",
    "ws",
    "room",
    "otp",
    "ops",
    "cursor",
    "progress",
    "room_limit",
    "join",
    "guest",
    "reset",
];

/// The close codes the session loop uses (normal, going away, policy, too big, internal, slow).
/// 1005 and 1006 stand for a client that closed without a code or vanished; `0` counts any
/// other code a client chose, so clients cannot mint label values.
const CLOSE_CODES: [u16; 9] = [0, 1000, 1001, 1005, 1006, 1008, 1009, 1011, 1013];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Client message types counted by `frames_in_by_type`; `unknown` and `bad` for the rest.
pub const CLIENT_TYPES: [&str; 14] = [
    "JOIN_ROOM",
    "LEAVE_ROOM",
    "CANVAS_UPDATE",
    "CURSOR_MOVE",
    "UNDO",
    "REDO",
    "ELEMENTS_ADD",
    "ELEMENTS_UPDATE",
    "ELEMENTS_DELETE",
    "STROKE_PROGRESS",
    "TEXT_EDIT",
    "TEXT_CURSOR",
    "PING",
    "unknown",
];

/// The op kinds `op_duration_seconds` reports (`domain::board::Intent::name`).
const OP_KINDS: [&str; 7] = ["stroke", "add", "update", "delete", "undo", "redo", "text"];

/// The Redis room scripts `redis_script_seconds` reports (zero on the memory engine).
const ROOM_SCRIPTS: [&str; 7] = [
    "join",
    "leave",
    "announce",
    "read",
    "apply",
    "migrate",
    "events_after",
];

/// Op latencies from 50 µs to about 1.6 s.
fn op_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Request latencies from 1 ms to about 16 s: health checks at the bottom, argon2 sign-ins and
/// Redis time-outs at the top.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Session lifetimes from 1 s to about 18 h.
fn session_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 3.0, 12))
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub ops_applied: Counter,
    pub slow_consumers: Counter,
    /// Connections closed on accept because their client IP had `max_connections_per_ip` open.
    pub connections_refused_per_ip: Counter,
    /// HTTP requests answered, by method, route template and status.
    http_requests: Family<HttpLabels, Counter>,
    /// Time to produce each HTTP response (for an upgrade, up to the `101`), by route.
    http_duration: Histograms<RouteLabel>,
    /// WebSocket upgrades refused, by reason (see `transport::ws`).
    upgrades_refused: Family<ReasonLabel, Counter>,
    /// Requests, upgrades and ops refused by a rate limit, by kind (`signin`, `ws`, `ops`, …).
    rate_limited: Family<KindLabel, Counter>,
    /// Sessions ended, by WebSocket close code.
    sessions_closed: Family<CodeLabel, Counter>,
    session_duration: Histogram,
    frames_by_type: Family<KindLabel, Counter>,
    op_duration: Histograms<KindLabel>,
    /// Frames queued for a session each time it writes.
    pub send_queue_depth: Histogram,
}

impl Metrics {
    /// Registers this instance's metrics, the hub's own counters (shared handles, so the hub
    /// keeps counting and the registry reads the same values), the rooms of `hub` and the
    /// process's figures.
    pub fn new(hub: Arc<Hub>, max_connections: usize) -> Self {
        let mut root = Registry::default();
        // The process collector keeps the conventional unprefixed `process_*` names.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("drawbridge");
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let frames_in = counter("frames_in", "Frames received from clients");
        let frames_out = counter("frames_out", "Text frames sent to clients");
        let ops_applied = counter("ops_applied", "Sequenced ops applied");
        let slow_consumers = counter(
            "slow_consumers",
            "Sessions closed with 1013 because their queue overflowed",
        );
        let connections_refused_per_ip = counter(
            "connections_refused_per_ip",
            "Connections closed on accept: their client IP had max_connections_per_ip open",
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open WebSocket sessions",
            connections.clone(),
        );
        registry.register(
            "connection_limit",
            "WebSocket sessions this instance accepts (max_connections)",
            ConstGauge::new(i64::try_from(max_connections).unwrap_or(i64::MAX)),
        );
        registry.register(
            "build",
            "The running build",
            Info::new(vec![("version", crate::logging::VERSION)]),
        );
        let hub_counters = [
            (
                "hub_delivered",
                "Room events queued to local sockets",
                &hub.stats.delivered,
            ),
            (
                "hub_dropped_lossy",
                "Cursor moves dropped for slow sockets",
                &hub.stats.dropped_lossy,
            ),
            (
                "feed_resubscribed",
                "Times the room event feed (Redis pub/sub) was re-established after being lost",
                &hub.stats.feed_resubscribed,
            ),
            (
                "feed_filled_from_log",
                "Room events the feed missed and the room's log supplied",
                &hub.stats.filled_from_log,
            ),
            (
                "feed_messages_received",
                "Messages the room event feed received, other rooms' included",
                &hub.stats.feed_messages,
            ),
            (
                "feed_bytes_received",
                "Bytes (channel and payload) the room event feed received, other rooms' included",
                &hub.stats.feed_bytes,
            ),
            (
                "feed_overflows",
                "Times the room event feed's queue was full and the rooms were refilled from their logs",
                &hub.stats.feed_overflows,
            ),
            (
                "feed_resyncs",
                "Rooms whose local sessions re-joined because the log could not fill a hole",
                &hub.stats.resyncs,
            ),
            (
                "feed_rebases",
                "Rooms found gone back in time (Redis lost confirmed writes) and given a new epoch",
                &hub.stats.rebases,
            ),
        ];
        for (name, help, counter) in hub_counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "feed_subscribed_rooms",
            "Room channels this instance subscribes to (0 in pubsub_mode pattern)",
            hub.stats.subscribed_rooms.clone(),
        );
        registry.register(
            "fanout_seconds",
            "Time to queue one room event to every local member of its room",
            hub.stats.deliver_seconds.clone(),
        );
        registry.register(
            "redis_script_seconds",
            "Time of each Redis room-script call, round trip included, by script",
            hub.stats.script_seconds.clone(),
        );
        let frames_by_type = Family::<KindLabel, Counter>::default();
        registry.register(
            "frames_in_by_type",
            "Text frames received from clients, by message type (unknown: not one of ours)",
            frames_by_type.clone(),
        );
        for kind in CLIENT_TYPES {
            frames_by_type.get_or_create_owned(&KindLabel { kind });
        }
        let op_duration: Histograms<KindLabel> =
            Family::new_with_constructor(op_histogram as fn() -> Histogram);
        registry.register(
            "op_duration_seconds",
            "Time from an op's arrival to its outcome (applied, refused, duplicate), by kind",
            op_duration.clone(),
        );
        for kind in OP_KINDS {
            op_duration.get_or_create_owned(&KindLabel { kind });
        }
        for script in ROOM_SCRIPTS {
            hub.stats
                .script_seconds
                .get_or_create_owned(&crate::hub::ScriptLabel { script });
        }
        let send_queue_depth = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "send_queue_depth",
            "Frames waiting in a session's send queue when it writes (a slow reader's grows)",
            send_queue_depth.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: Histograms<RouteLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (an upgrade: up to its 101), by route template",
            http_duration.clone(),
        );
        let upgrades_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "upgrades_refused",
            "WebSocket upgrades answered with an error status, by reason",
            upgrades_refused.clone(),
        );
        let rate_limited = Family::<KindLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests, upgrades and ops refused by a rate limit, by kind",
            rate_limited.clone(),
        );
        let sessions_closed = Family::<CodeLabel, Counter>::default();
        registry.register(
            "sessions_closed",
            "WebSocket sessions ended, by close code",
            sessions_closed.clone(),
        );
        let session_duration = session_histogram();
        registry.register(
            "session_duration_seconds",
            "How long WebSocket sessions lasted",
            session_duration.clone(),
        );
        registry.register_collector(Box::new(RoomsCollector(hub)));
        for reason in UPGRADE_REFUSALS {
            upgrades_refused.get_or_create_owned(&ReasonLabel { reason });
        }
        for kind in RATE_LIMITS {
            rate_limited.get_or_create_owned(&KindLabel { kind });
        }
        for code in CLOSE_CODES {
            sessions_closed.get_or_create_owned(&CodeLabel { code });
        }
        Self {
            registry: root,
            connections,
            frames_in,
            frames_out,
            ops_applied,
            slow_consumers,
            connections_refused_per_ip,
            http_requests,
            http_duration,
            upgrades_refused,
            rate_limited,
            sessions_closed,
            session_duration,
            frames_by_type,
            op_duration,
            send_queue_depth,
        }
    }

    /// One parsed frame's type: one of [`CLIENT_TYPES`] (`unknown` for the rest).
    pub fn frame_type(&self, kind: &'static str) {
        self.frames_by_type.get_or_create(&KindLabel { kind }).inc();
    }

    /// One op's outcome, `elapsed` after it arrived; `kind` is a fixed name (`stroke`, `add`, …).
    pub fn op_done(&self, kind: &'static str, elapsed: Duration) {
        self.op_duration
            .get_or_create(&KindLabel { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// One HTTP request answered.
    pub fn http_request(&self, labels: HttpLabels, elapsed: Duration) {
        self.http_duration
            .get_or_create(&RouteLabel {
                route: labels.route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// One WebSocket upgrade refused; `reason` is one of a fixed list (`transport::ws`).
    pub fn upgrade_refused(&self, reason: &'static str) {
        debug_assert!(
            UPGRADE_REFUSALS.contains(&reason),
            "unlisted reason {reason}"
        );
        self.upgrades_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One request, upgrade or op refused by the limit of `kind` (a limit's fixed name).
    pub fn rate_limited(&self, kind: &'static str) {
        debug_assert!(RATE_LIMITS.contains(&kind), "unlisted limit {kind}");
        self.rate_limited.get_or_create(&KindLabel { kind }).inc();
    }

    /// One WebSocket session ended with `close_code` after `lasted`.
    pub fn session_ended(&self, close_code: u16, lasted: Duration) {
        let code = if CLOSE_CODES.contains(&close_code) {
            close_code
        } else {
            0
        };
        self.sessions_closed
            .get_or_create(&CodeLabel { code })
            .inc();
        self.session_duration.observe(lasted.as_secs_f64());
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `drawbridge_rooms`: rooms with at least one socket on this instance, counted at the scrape.
struct RoomsCollector(Arc<Hub>);

impl std::fmt::Debug for RoomsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomsCollector")
    }
}

impl Collector for RoomsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rooms = ConstGauge::new(i64::try_from(self.0.rooms().len()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "rooms",
            "Rooms with at least one WebSocket session on this instance",
            None,
            rooms.metric_type(),
        )?;
        rooms.encode(metric)
    }
}
