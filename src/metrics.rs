//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub ops_applied: Counter,
    pub slow_consumers: Counter,
    pub upgrades_refused: Counter,
    hub_delivered: Counter,
    hub_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drawbridge");
        let metrics = Self {
            connections: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            ops_applied: Counter::default(),
            slow_consumers: Counter::default(),
            upgrades_refused: Counter::default(),
            hub_delivered: Counter::default(),
            hub_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket sessions",
            metrics.connections.clone(),
        );
        registry.register(
            "frames_in",
            "Frames received from clients",
            metrics.frames_in.clone(),
        );
        registry.register(
            "frames_out",
            "Text frames sent to clients",
            metrics.frames_out.clone(),
        );
        registry.register(
            "ops_applied",
            "Sequenced ops applied",
            metrics.ops_applied.clone(),
        );
        registry.register(
            "slow_consumers",
            "Sessions closed with 1013 because their queue overflowed",
            metrics.slow_consumers.clone(),
        );
        registry.register(
            "upgrades_refused",
            "WebSocket upgrades answered with an error status",
            metrics.upgrades_refused.clone(),
        );
        registry.register(
            "hub_delivered",
            "Room events queued to local sockets",
            metrics.hub_delivered.clone(),
        );
        registry.register(
            "hub_dropped_lossy",
            "Cursor moves dropped for slow sockets",
            metrics.hub_dropped.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The text exposition, with the hub's counters brought up to date first.
    pub fn render(&self, hub: &crate::hub::Hub) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let sync = |counter: &Counter, total: u64| {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        };
        sync(&self.hub_delivered, hub.stats.delivered.load(Relaxed));
        sync(&self.hub_dropped, hub.stats.dropped_lossy.load(Relaxed));
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
