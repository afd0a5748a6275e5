//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::HubStats;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub ops_applied: Counter,
    pub slow_consumers: Counter,
    pub upgrades_refused: Counter,
}

impl Metrics {
    /// Registers this instance's counters, and the hub's own (counters are shared handles, so
    /// the hub keeps counting and the registry reads the same values).
    pub fn new(hub: &HubStats) -> Self {
        let mut registry = Registry::with_prefix("drawbridge");
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
        let upgrades_refused = counter(
            "upgrades_refused",
            "WebSocket upgrades answered with an error status",
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open WebSocket sessions",
            connections.clone(),
        );
        let hub_counters = [
            (
                "hub_delivered",
                "Room events queued to local sockets",
                &hub.delivered,
            ),
            (
                "hub_dropped_lossy",
                "Cursor moves dropped for slow sockets",
                &hub.dropped_lossy,
            ),
            (
                "feed_resubscribed",
                "Times the room event feed (Redis pub/sub) was re-established after being lost",
                &hub.feed_resubscribed,
            ),
            (
                "feed_filled_from_log",
                "Room events the feed missed and the room's log supplied",
                &hub.filled_from_log,
            ),
            (
                "feed_resyncs",
                "Rooms whose local sessions re-joined because the log could not fill a hole",
                &hub.resyncs,
            ),
        ];
        for (name, help, counter) in hub_counters {
            registry.register(name, help, counter.clone());
        }
        Self {
            registry,
            connections,
            frames_in,
            frames_out,
            ops_applied,
            slow_consumers,
            upgrades_refused,
        }
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
