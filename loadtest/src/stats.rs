//! Measurements: connection tasks record samples into a private [`Recorder`] and hand them to the
//! shared [`Collector`] in batches (a lock per batch, not per message); the collector keeps
//! totals for the measured window and per-second buckets for the whole run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::seq::SeqReport;

/// Latencies above this are clamped (and are failures by any standard).
pub const MAX_LATENCY_US: u64 = 600_000_000;
/// Samples a recorder buffers before it takes the collector's lock.
const BATCH: usize = 1024;

/// Wall-clock microseconds since the Unix epoch: the clock embedded in what is sent.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A relayed message kind, measured send → each other member's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A sequenced stroke (`CANVAS_UPDATE`; in board mode, the final stroke of a drawing).
    Stroke,
    /// A cursor move (transient).
    Cursor,
    /// A live-stroke batch (`STROKE_PROGRESS`, transient and rate-capped by the server).
    Progress,
    /// A drag (`ELEMENTS_UPDATE` → `ELEMENTS_UPDATED`, sequenced).
    Drag,
}

impl Msg {
    pub const ALL: [Msg; 4] = [Msg::Stroke, Msg::Cursor, Msg::Progress, Msg::Drag];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a sample measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sent(Msg),
    /// Value: end-to-end latency (µs) of a message delivered live.
    Delivered(Msg),
    /// Value: end-to-end latency (µs) of a sequenced message delivered inside a `REPLAY`.
    Replayed(Msg),
    /// Value: deliveries the sender expects (room members but itself).
    Expected(Msg),
    /// Value: send → ACK (µs) of a stroke.
    Ack,
    /// Value: send → ACK (µs) of an element op (`ELEMENTS_ADD`, `ELEMENTS_UPDATE`).
    ElementAck,
    /// Value: how late the send schedule fired (µs): high means the client is the bottleneck.
    SendLag,
    /// Value: time (µs) a frame's write waited on the socket: high means the server is not
    /// reading fast enough.
    SendWait,
    /// Value: `JOIN_ROOM` → `INITIAL_STATE`/`REPLAY` (µs).
    Join,
    /// Value: size of the `INITIAL_STATE` frame (bytes).
    InitialBytes,
    Reconnect,
    Error,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Second of the run it belongs to (by receive/send time), for the timeline.
    pub sec: u32,
    pub kind: Kind,
    /// Inside the measured window (by send time): counts toward the totals.
    pub measured: bool,
    pub value: u64,
}

/// Counters with string keys, merged at flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    pub close_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub received_types: BTreeMap<String, u64>,
    pub connect_failures: u64,
    pub join_failures: u64,
    pub room_expired: u64,
    pub parse_errors: u64,
    /// A live event of this client's own op echoed back to it (the contract says "except the sender").
    pub self_echo: u64,
    pub duplicate_acks: u64,
    pub resent_ops: u64,
    /// Ops answered with an `ERROR` naming them instead of an `ACK`.
    pub rejected_ops: u64,
}

impl Tallies {
    /// Adds `o` in, keeping its keys rather than copying them.
    fn merge(&mut self, o: Tallies) {
        for (mine, theirs) in [
            (&mut self.close_codes, o.close_codes),
            (&mut self.errors, o.errors),
            (&mut self.received_types, o.received_types),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
        self.connect_failures += o.connect_failures;
        self.join_failures += o.join_failures;
        self.room_expired += o.room_expired;
        self.parse_errors += o.parse_errors;
        self.self_echo += o.self_echo;
        self.duplicate_acks += o.duplicate_acks;
        self.resent_ops += o.resent_ops;
        self.rejected_ops += o.rejected_ops;
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Counts one `key`; allocates only the first time a key is seen.
    pub fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
        match map.get_mut(key) {
            Some(v) => *v += 1,
            None => {
                map.insert(key.to_owned(), 1);
            }
        }
    }
}

fn hist(sigfig: u8) -> Histogram<u64> {
    hist_to(MAX_LATENCY_US, sigfig)
}

fn hist_to(high: u64, sigfig: u8) -> Histogram<u64> {
    // Only ever called with constants that hdrhistogram accepts (high ≥ 2, sigfig ≤ 5).
    Histogram::new_with_bounds(1, high, sigfig).expect("constant histogram bounds are valid")
}

/// One message kind's totals in the measured window.
#[derive(Clone, Debug)]
pub struct Flow {
    pub sent: u64,
    /// Live and replayed.
    pub delivered: u64,
    pub replayed: u64,
    pub expected: u64,
    /// Live and replayed.
    pub latency: Histogram<u64>,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            sent: 0,
            delivered: 0,
            replayed: 0,
            expected: 0,
            latency: hist(3),
        }
    }
}

/// Totals of the measured window.
#[derive(Clone, Debug)]
pub struct Totals {
    /// By [`Msg`].
    pub flows: [Flow; 4],
    /// Every op acknowledged (strokes and element ops).
    pub acks: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub ack_latency: Histogram<u64>,
    pub element_ack_latency: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub send_wait: Histogram<u64>,
    pub join_time: Histogram<u64>,
    pub initial_bytes: Histogram<u64>,
}

impl Totals {
    pub fn flow(&self, m: Msg) -> &Flow {
        &self.flows[m.index()]
    }
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            flows: Default::default(),
            acks: 0,
            reconnects: 0,
            errors: 0,
            ack_latency: hist(3),
            element_ack_latency: hist(3),
            send_lag: hist(3),
            send_wait: hist(3),
            join_time: hist(3),
            initial_bytes: hist_to(1 << 40, 3),
        }
    }
}

/// One message kind in one second. The histogram (2 significant digits is plenty for a chart)
/// exists only once something was delivered: most runs use two of the four kinds.
#[derive(Clone, Debug, Default)]
pub struct FlowSecond {
    pub sent: u64,
    /// Live and replayed.
    pub delivered: u64,
    pub replayed: u64,
    pub latency: Option<Histogram<u64>>,
}

impl FlowSecond {
    fn record(&mut self, v: u64) {
        self.latency
            .get_or_insert_with(|| hist(2))
            .saturating_record(v);
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    /// By [`Msg`].
    pub flows: [FlowSecond; 4],
    pub acks: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub joins: u64,
    pub ack_latency: Option<Histogram<u64>>,
}

impl Bucket {
    pub fn flow(&self, m: Msg) -> &FlowSecond {
        &self.flows[m.index()]
    }
}

/// Everything gathered so far.
#[derive(Debug, Default)]
pub struct Aggregate {
    pub totals: Totals,
    pub timeline: Vec<Bucket>,
    pub tallies: Tallies,
    /// Per room index: what each member saw of its `seq`s.
    pub seq_reports: BTreeMap<usize, Vec<SeqReport>>,
}

impl Aggregate {
    fn ingest(&mut self, s: &Sample) {
        let sec = s.sec as usize;
        if self.timeline.len() <= sec {
            // A sample from far in the future would be a clock jump; cap the growth.
            if sec > 100_000 {
                return;
            }
            self.timeline.resize_with(sec + 1, Bucket::default);
        }
        let b = &mut self.timeline[sec];
        let t = &mut self.totals;
        let m = s.measured;
        let v = s.value.max(1);
        match s.kind {
            Kind::Sent(msg) => {
                b.flows[msg.index()].sent += 1;
                if m {
                    t.flows[msg.index()].sent += 1;
                }
            }
            Kind::Delivered(msg) | Kind::Replayed(msg) => {
                let replayed = matches!(s.kind, Kind::Replayed(_));
                let fb = &mut b.flows[msg.index()];
                fb.delivered += 1;
                fb.replayed += u64::from(replayed);
                fb.record(v);
                if m {
                    let ft = &mut t.flows[msg.index()];
                    ft.delivered += 1;
                    ft.replayed += u64::from(replayed);
                    ft.latency.saturating_record(v);
                }
            }
            Kind::Expected(msg) => {
                if m {
                    t.flows[msg.index()].expected += s.value;
                }
            }
            Kind::Ack | Kind::ElementAck => {
                b.acks += 1;
                b.ack_latency
                    .get_or_insert_with(|| hist(2))
                    .saturating_record(v);
                if m {
                    t.acks += 1;
                    if s.kind == Kind::Ack {
                        t.ack_latency.saturating_record(v);
                    } else {
                        t.element_ack_latency.saturating_record(v);
                    }
                }
            }
            Kind::SendLag => {
                if m {
                    t.send_lag.saturating_record(v);
                }
            }
            Kind::SendWait => {
                if m {
                    t.send_wait.saturating_record(v);
                }
            }
            // Joins, reconnects and errors count whenever they happen: warm-up is about
            // latency settling, not about hiding failures.
            Kind::Join => {
                b.joins += 1;
                t.join_time.saturating_record(v);
            }
            Kind::InitialBytes => {
                t.initial_bytes.saturating_record(v);
            }
            Kind::Reconnect => {
                b.reconnects += 1;
                t.reconnects += 1;
            }
            Kind::Error => {
                b.errors += 1;
                t.errors += 1;
            }
        }
    }
}

/// The run's timeline, fixed before any connection starts.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Unix µs of the run's start (second 0 of the timeline).
    pub start_us: u64,
    /// Sends at or after this (unix µs) are measured...
    pub measure_from_us: u64,
    /// ...and before this.
    pub measure_to_us: u64,
}

impl Clock {
    pub fn sec(&self, at_us: u64) -> u32 {
        (at_us.saturating_sub(self.start_us) / 1_000_000) as u32
    }

    pub fn measured(&self, sent_us: u64) -> bool {
        (self.measure_from_us..self.measure_to_us).contains(&sent_us)
    }
}

/// Shared by every connection task.
#[derive(Debug)]
pub struct Collector {
    pub clock: Clock,
    agg: Mutex<Aggregate>,
    /// Connections currently joined.
    pub joined: AtomicI64,
    /// Ops sent and not yet acknowledged, over all connections: the drain waits for zero.
    pub unacked: AtomicI64,
    /// Frames received, for the drain's "quiet" check.
    pub received: AtomicU64,
}

impl Collector {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            agg: Mutex::new(Aggregate::default()),
            joined: AtomicI64::new(0),
            unacked: AtomicI64::new(0),
            received: AtomicU64::new(0),
        })
    }

    /// The aggregate; a panicked recorder cannot have left it half-updated in a way that
    /// matters for a report, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Aggregate> {
        self.agg.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn received_frames(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A connection's private buffer of samples and tallies.
pub struct Recorder {
    collector: Arc<Collector>,
    samples: Vec<Sample>,
    pub tallies: Tallies,
    received: u64,
}

impl Recorder {
    pub fn new(collector: Arc<Collector>) -> Self {
        Self {
            collector,
            samples: Vec::with_capacity(BATCH),
            tallies: Tallies::default(),
            received: 0,
        }
    }

    pub fn collector(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// Records an event that happened at `now_us` and whose send time was `sent_us`.
    pub fn record(&mut self, kind: Kind, value: u64, sent_us: u64, now_us: u64) {
        let clock = &self.collector.clock;
        self.samples.push(Sample {
            sec: clock.sec(now_us),
            kind,
            measured: clock.measured(sent_us),
            value,
        });
        if self.samples.len() >= BATCH {
            self.flush();
        }
    }

    /// Counts an error under `what` (an `ERROR` code or a local failure) in the tallies and the
    /// timeline.
    pub fn error(&mut self, what: &str, now_us: u64) {
        Tallies::bump(&mut self.tallies.errors, what);
        self.record(Kind::Error, 0, now_us, now_us);
    }

    /// Counts a received frame (published to the collector at the next flush).
    pub fn frame(&mut self) {
        self.received += 1;
    }

    /// Hands everything buffered to the collector; an idle connection takes no lock.
    pub fn flush(&mut self) {
        if self.received > 0 {
            self.collector
                .received
                .fetch_add(self.received, Ordering::Relaxed);
            self.received = 0;
        }
        if self.samples.is_empty() && self.tallies.is_empty() {
            return;
        }
        let mut agg = self.collector.lock();
        for s in self.samples.drain(..) {
            agg.ingest(&s);
        }
        agg.tallies.merge(std::mem::take(&mut self.tallies));
    }

    /// Final hand-over: flushes and files the connection's sequence report under its room.
    pub fn finish(mut self, room: usize, seq: Option<SeqReport>) {
        self.flush();
        if let Some(report) = seq {
            self.collector
                .lock()
                .seq_reports
                .entry(room)
                .or_default()
                .push(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_is_excluded_from_totals_but_not_from_the_timeline() {
        let clock = Clock {
            start_us: 1_000_000,
            measure_from_us: 3_000_000,
            measure_to_us: 5_000_000,
        };
        let c = Collector::new(clock);
        let mut r = Recorder::new(c.clone());
        let stroke = Msg::Stroke;
        r.record(Kind::Sent(stroke), 0, 2_000_000, 2_000_000);
        r.record(Kind::Sent(stroke), 0, 3_500_000, 3_500_000);
        // Sent as the window closes: after it.
        r.record(Kind::Sent(stroke), 0, 5_000_000, 5_000_000);
        r.record(Kind::Delivered(stroke), 800, 3_500_000, 3_500_800);
        r.record(Kind::Replayed(stroke), 900_000, 3_600_000, 4_500_000);
        r.record(Kind::Expected(stroke), 9, 3_500_000, 3_500_000);
        // Kinds are kept apart.
        r.record(Kind::Delivered(Msg::Drag), 700, 3_500_000, 3_500_700);
        r.record(Kind::Join, 5_000, 0, 1_200_000);
        Tallies::bump(&mut r.tallies.close_codes, "1013");
        r.flush();
        // A second connection's tallies add to the first's.
        let mut r2 = Recorder::new(c.clone());
        Tallies::bump(&mut r2.tallies.close_codes, "1013");
        Tallies::bump(&mut r2.tallies.close_codes, "1001");
        r2.finish(0, None);
        r.finish(0, None);
        let agg = c.lock();
        let t = agg.totals.flow(Msg::Stroke);
        assert_eq!(t.sent, 1);
        assert_eq!(t.expected, 9);
        assert_eq!((t.delivered, t.replayed), (2, 1));
        assert_eq!(t.latency.len(), 2);
        assert_eq!(t.latency.max(), t.latency.highest_equivalent(900_000));
        let drags = agg.totals.flow(Msg::Drag);
        assert_eq!(
            (drags.sent, drags.delivered, drags.latency.len()),
            (0, 1, 1)
        );
        assert_eq!(agg.totals.join_time.len(), 1);
        assert_eq!(agg.timeline.len(), 5);
        let sent: Vec<u64> = agg
            .timeline
            .iter()
            .map(|b| b.flow(Msg::Stroke).sent)
            .collect();
        assert_eq!(sent, [0, 1, 1, 0, 1]);
        assert_eq!(agg.timeline[2].flow(Msg::Stroke).delivered, 1);
        assert_eq!(agg.timeline[3].flow(Msg::Stroke).replayed, 1);
        assert!(agg.timeline[0].flow(Msg::Cursor).latency.is_none());
        assert_eq!(agg.timeline[0].joins, 1);
        let codes: Vec<(&str, u64)> = agg
            .tallies
            .close_codes
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(codes, [("1001", 1), ("1013", 2)]);
        assert!(agg.seq_reports.is_empty());
    }
}
