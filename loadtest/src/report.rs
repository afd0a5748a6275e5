//! The result of a run: a serializable [`Report`] (the `--out` JSON), the verdict, and the
//! terminal table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::{Mode, Scenario};
use crate::seq::{SeqCounters, SeqReport, judge_room};
use crate::stats::{Aggregate, Bucket, Flow, Msg};

/// Percentiles of a latency histogram recorded in µs, reported in ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn from_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Sizes (bytes) of a histogram recorded in bytes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sizes {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub max: u64,
}

impl Sizes {
    fn from(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            max: h.max(),
        }
    }
}

/// One kind of relayed message in the measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub sent: u64,
    /// Deliveries seen by receivers (live or, for strokes, replayed after a reconnect).
    pub delivered: u64,
    /// Sum over sends of the other members joined at send time.
    pub expected: u64,
    /// delivered / expected (1 when nothing was expected).
    pub delivery_ratio: f64,
    /// Of `delivered`, how many came inside a `REPLAY` rather than live.
    pub replayed: u64,
    /// End to end: sender's send time to receiver's receive time.
    pub latency: Latency,
}

impl Delivery {
    fn new(f: &Flow) -> Self {
        Self {
            sent: f.sent,
            delivered: f.delivered,
            expected: f.expected,
            delivery_ratio: if f.expected == 0 {
                1.0
            } else {
                f.delivered as f64 / f.expected as f64
            },
            replayed: f.replayed,
            latency: Latency::from_us(&f.latency),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Acks {
    /// Every op acknowledged: strokes and element ops.
    pub acked: u64,
    /// Sent but neither acknowledged nor refused when the run ended.
    pub unacked_at_end: u64,
    /// Refused with an `ERROR` naming the op.
    pub rejected: u64,
    /// `duplicate: true` answers (to ops resent after a reconnect).
    pub duplicates: u64,
    pub resent: u64,
    /// Send → ACK of strokes (`CANVAS_UPDATE`).
    pub latency: Latency,
    /// Send → ACK of element ops (`ELEMENTS_ADD`, `ELEMENTS_UPDATE`).
    pub element_latency: Latency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Joins {
    pub count: u64,
    /// `JOIN_ROOM` → `INITIAL_STATE`/`REPLAY`.
    pub time: Latency,
    pub initial_state_bytes: Sizes,
    /// Latejoin: strokes in each `INITIAL_STATE` (min, max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_state_strokes: Option<(usize, usize)>,
    /// Latejoin: each join's time in order (ms), for the chart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples_ms: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Connections {
    pub planned: usize,
    /// Joined at the moment sending stopped.
    pub joined_at_end: i64,
    pub connect_failures: u64,
    pub join_failures: u64,
    pub room_expired: u64,
    pub reconnects: u64,
    /// Close codes received from the server (`eof`: the socket ended without one).
    pub close_codes: BTreeMap<String, u64>,
    /// `ERROR` codes received and local connection errors.
    pub errors: BTreeMap<String, u64>,
    pub received_types: BTreeMap<String, u64>,
    pub parse_errors: u64,
}

/// `seq` checks over every (room, receiver).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sequencing {
    pub rooms: usize,
    pub receivers: usize,
    /// (receiver, seq) pairs after its join, up to the room's last seq, never seen in any way.
    pub gaps: u64,
    /// Live events delivered twice.
    pub duplicates: u64,
    /// Of the gaps, ops that had been acknowledged to their sender.
    pub lost_acked: u64,
    /// Of the gaps, those after the last seq their receiver saw (late when the run ended); the
    /// others are holes.
    pub tail_gaps: u64,
    pub out_of_order: u64,
    pub stale: u64,
    pub replay_overlap: u64,
    pub snapshot_resync: u64,
    pub epoch_changes: u64,
    /// The sender received its own op as a live event.
    pub self_echo: u64,
    pub absurd_seq: u64,
}

impl Sequencing {
    /// Judges every room from its members' reports (by room index).
    fn judge(rooms: &BTreeMap<usize, Vec<SeqReport>>, self_echo: u64) -> Self {
        let mut s = Self {
            rooms: rooms.len(),
            self_echo,
            ..Self::default()
        };
        let mut seen = SeqCounters::default();
        for members in rooms.values() {
            s.receivers += members.len();
            let v = judge_room(members);
            s.gaps += v.gaps;
            s.lost_acked += v.lost_acked;
            s.tail_gaps += v.tail;
            for m in members {
                seen.add(&m.counters);
            }
        }
        s.duplicates = seen.duplicates;
        s.out_of_order = seen.out_of_order;
        s.stale = seen.stale;
        s.replay_overlap = seen.replay_overlap;
        s.snapshot_resync = seen.snapshot_resync;
        s.epoch_changes = seen.epoch_changes;
        s.absurd_seq = seen.absurd;
        s
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    /// Seconds since the start of the run.
    pub t: u32,
    pub strokes_sent: u64,
    /// Live and replayed.
    pub strokes_delivered: u64,
    /// Delivered inside a `REPLAY` after a reconnect.
    pub strokes_replayed: u64,
    pub cursors_sent: u64,
    pub cursors_delivered: u64,
    /// Live-stroke batches (`STROKE_PROGRESS`).
    pub progress_sent: u64,
    pub progress_delivered: u64,
    /// Drags (`ELEMENTS_UPDATE`), live and replayed.
    pub drags_sent: u64,
    pub drags_delivered: u64,
    pub acks: u64,
    pub joins: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub stroke_p50_ms: f64,
    pub stroke_p90_ms: f64,
    pub stroke_p99_ms: f64,
    pub stroke_max_ms: f64,
    pub cursor_p99_ms: f64,
    pub progress_p99_ms: f64,
    pub drag_p99_ms: f64,
    pub ack_p99_ms: f64,
}

impl Second {
    pub fn from_bucket(t: u32, b: &Bucket) -> Self {
        let q = |h: &Option<Histogram<u64>>, q: f64| match h {
            Some(h) if !h.is_empty() => h.value_at_quantile(q) as f64 / 1000.0,
            _ => 0.0,
        };
        let (stroke, cursor) = (b.flow(Msg::Stroke), b.flow(Msg::Cursor));
        let (progress, drag) = (b.flow(Msg::Progress), b.flow(Msg::Drag));
        Self {
            t,
            strokes_sent: stroke.sent,
            strokes_delivered: stroke.delivered,
            strokes_replayed: stroke.replayed,
            cursors_sent: cursor.sent,
            cursors_delivered: cursor.delivered,
            progress_sent: progress.sent,
            progress_delivered: progress.delivered,
            drags_sent: drag.sent,
            drags_delivered: drag.delivered,
            acks: b.acks,
            joins: b.joins,
            reconnects: b.reconnects,
            errors: b.errors,
            stroke_p50_ms: q(&stroke.latency, 0.5),
            stroke_p90_ms: q(&stroke.latency, 0.9),
            stroke_p99_ms: q(&stroke.latency, 0.99),
            stroke_max_ms: q(&stroke.latency, 1.0),
            cursor_p99_ms: q(&cursor.latency, 0.99),
            progress_p99_ms: q(&progress.latency, 0.99),
            drag_p99_ms: q(&drag.latency, 0.99),
            ack_p99_ms: q(&b.ack_latency, 0.99),
        }
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub started_at_unix: u64,
    pub elapsed_secs: f64,
    /// The measured window, in seconds since the start (the timeline's `t`).
    pub measured_from_s: f64,
    pub measured_to_s: f64,
    /// Interrupted (Ctrl-C) before the end.
    pub aborted: bool,
    /// The drain ended with every op acknowledged and nothing more arriving; when false, the
    /// server was still working through a backlog at the end, and gaps include events in flight.
    pub settled: bool,
    pub connections: Connections,
    /// Sequenced strokes (in board mode, the final stroke of each drawing).
    pub strokes: Delivery,
    pub cursors: Delivery,
    /// Live-stroke batches (`STROKE_PROGRESS`): transient and capped by the server
    /// (`progress_per_sec`), so a ratio below 1 is reported, not a failure.
    pub progress: Delivery,
    /// Drags: `ELEMENTS_UPDATE` → `ELEMENTS_UPDATED` (sequenced).
    pub drags: Delivery,
    pub acks: Acks,
    pub joins: Joins,
    pub sequencing: Sequencing,
    /// How late the client fired its sends: a high p99 means the client, not the server,
    /// limited the run.
    pub client_send_lag: Latency,
    /// How long writes waited on the socket: a high p99 means the server stopped reading
    /// (back-pressure), not that the client was slow.
    pub socket_write_wait: Latency,
    pub timeline: Vec<Second>,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
    pub passed: bool,
}

/// Facts gathered outside the aggregate.
#[derive(Default)]
pub struct Extra {
    pub started_at_unix: u64,
    pub elapsed_secs: f64,
    pub measured_from_s: f64,
    pub measured_to_s: f64,
    pub aborted: bool,
    pub settled: bool,
    pub joined_at_end: i64,
    pub unacked_at_end: u64,
    pub joins_extra: Option<((usize, usize), Vec<f64>)>,
}

impl Report {
    pub fn build(scenario: Scenario, agg: &Aggregate, x: Extra) -> Self {
        let t = &agg.totals;
        let tl = &agg.tallies;
        let (strokes_range, samples) = match x.joins_extra {
            Some((r, s)) => (Some(r), s),
            None => (None, Vec::new()),
        };
        let mut r = Self {
            connections: Connections {
                planned: match scenario.mode {
                    Mode::Latejoin => scenario.connections + scenario.joins,
                    _ => scenario.connections,
                },
                joined_at_end: x.joined_at_end,
                connect_failures: tl.connect_failures,
                join_failures: tl.join_failures,
                room_expired: tl.room_expired,
                reconnects: t.reconnects,
                close_codes: tl.close_codes.clone(),
                errors: tl.errors.clone(),
                received_types: tl.received_types.clone(),
                parse_errors: tl.parse_errors,
            },
            strokes: Delivery::new(t.flow(Msg::Stroke)),
            cursors: Delivery::new(t.flow(Msg::Cursor)),
            progress: Delivery::new(t.flow(Msg::Progress)),
            drags: Delivery::new(t.flow(Msg::Drag)),
            acks: Acks {
                acked: t.acks,
                unacked_at_end: x.unacked_at_end,
                rejected: tl.rejected_ops,
                duplicates: tl.duplicate_acks,
                resent: tl.resent_ops,
                latency: Latency::from_us(&t.ack_latency),
                element_latency: Latency::from_us(&t.element_ack_latency),
            },
            joins: Joins {
                count: t.join_time.len(),
                time: Latency::from_us(&t.join_time),
                initial_state_bytes: Sizes::from(&t.initial_bytes),
                initial_state_strokes: strokes_range,
                samples_ms: samples,
            },
            sequencing: Sequencing::judge(&agg.seq_reports, tl.self_echo),
            client_send_lag: Latency::from_us(&t.send_lag),
            socket_write_wait: Latency::from_us(&t.send_wait),
            timeline: agg
                .timeline
                .iter()
                .enumerate()
                .map(|(i, b)| Second::from_bucket(i as u32, b))
                .collect(),
            started_at_unix: x.started_at_unix,
            elapsed_secs: x.elapsed_secs,
            measured_from_s: x.measured_from_s,
            measured_to_s: x.measured_to_s,
            aborted: x.aborted,
            settled: x.settled,
            failures: Vec::new(),
            passed: true,
            scenario,
        };
        r.failures = r.judge();
        r.passed = r.failures.is_empty();
        r
    }

    /// Loss checks (`fail_on_loss`) and checks that the run measured anything at all.
    fn judge(&self) -> Vec<String> {
        let mut f = Vec::new();
        let sc = &self.scenario;
        let s = &self.sequencing;
        if sc.fail_on_loss {
            if !self.settled && !self.aborted {
                f.push(format!(
                    "the servers had not caught up {:.0}s after sending stopped (--drain): {} ops \
                     unacknowledged; gaps below include events still in flight",
                    sc.drain.as_secs_f64(),
                    self.acks.unacked_at_end
                ));
            }
            if s.gaps > 0 {
                f.push(format!(
                    "{} seq gaps (receiver, seq) never delivered ({} of them after the last seq \
                     their receiver saw: late, not holes)",
                    s.gaps, s.tail_gaps
                ));
            }
            if s.duplicates > 0 {
                f.push(format!("{} duplicate deliveries", s.duplicates));
            }
            if s.lost_acked > 0 {
                f.push(format!(
                    "{} acknowledged ops missing at a receiver",
                    s.lost_acked
                ));
            }
            if s.out_of_order > 0 {
                f.push(format!("{} events out of seq order", s.out_of_order));
            }
            if self.acks.unacked_at_end > 0 && sc.reconnect {
                f.push(format!(
                    "{} ops never acknowledged",
                    self.acks.unacked_at_end
                ));
            }
        }
        if self.aborted {
            f.push("interrupted".to_owned());
        }
        let c = &self.connections;
        let joined_anyone = self.joins.count > 0;
        if !joined_anyone {
            f.push("no connection ever joined its room".to_owned());
        }
        if sc.mode == Mode::Traffic
            && joined_anyone
            && sc.strokes_per_sec > 0.0
            && self.strokes.sent == 0
        {
            f.push("no stroke was sent in the measured window".to_owned());
        }
        if matches!(sc.mode, Mode::Traffic | Mode::Board) && joined_anyone {
            if sc.mode == Mode::Board {
                for (what, share, sent) in [
                    ("live-stroke batch", sc.draw_share, self.progress.sent),
                    ("drag", sc.drag_share, self.drags.sent),
                ] {
                    if share > 0.0 && sent == 0 {
                        f.push(format!("no {what} was sent in the measured window"));
                    }
                }
            }
            // Live strokes may be dropped by the server's cap, but never all of them.
            for (what, d) in [
                ("strokes", &self.strokes),
                ("live-stroke batches", &self.progress),
                ("drags", &self.drags),
            ] {
                if d.expected > 0 && d.delivered == 0 {
                    f.push(format!(
                        "{what} were expected at receivers but none arrived"
                    ));
                }
            }
        }
        if c.room_expired > 0 {
            f.push(format!("{} joins answered ROOM_EXPIRED", c.room_expired));
        }
        if let (Mode::Latejoin, Some((min, _))) = (sc.mode, self.joins.initial_state_strokes)
            && min < sc.prefill
        {
            f.push(format!(
                "an INITIAL_STATE held {min} strokes, fewer than the {} put in",
                sc.prefill
            ));
        }
        f
    }

    /// The terminal summary.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let sc = &self.scenario;
        let name = sc.name();
        let what = match sc.mode {
            Mode::Latejoin => format!(
                "{} sequential joins of a room filled with {} strokes by {} connections",
                sc.joins, sc.prefill, sc.connections
            ),
            Mode::Idle => format!("{} idle connections in {} rooms", sc.connections, sc.rooms),
            Mode::Traffic => format!(
                "{} connections in {} rooms, {}/s strokes, {}/s cursor moves each",
                sc.connections, sc.rooms, sc.strokes_per_sec, sc.cursor_per_sec
            ),
            Mode::Board => format!(
                "{} connections in {} rooms (protocol {}), turns of {}s: {:.0} % drawing ({}/s \
                 STROKE_PROGRESS of {} points, {}s strokes), {:.0} % dragging ({}/s \
                 ELEMENTS_UPDATE), {}/s cursor moves each",
                sc.connections,
                sc.rooms,
                sc.protocol.as_deref().unwrap_or("1"),
                sc.turn.as_secs_f64(),
                sc.draw_share * 100.0,
                sc.progress_per_sec,
                sc.progress_points,
                sc.stroke_duration.as_secs_f64(),
                sc.drag_share * 100.0,
                sc.drag_per_sec,
                sc.cursor_per_sec
            ),
        };
        let _ = writeln!(
            o,
            "loadtest {name}: {what}; {} URL(s); measured {:.1}s of {:.1}s{}",
            sc.active_urls().len(),
            (self.measured_to_s - self.measured_from_s).max(0.0),
            self.elapsed_secs,
            if self.aborted { " [INTERRUPTED]" } else { "" }
        );
        let _ = writeln!(
            o,
            "\n{:<16}{:>10}{:>11}{:>11}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "kind",
            "sent",
            "delivered",
            "expected",
            "ratio",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9",
            "max ms"
        );
        // Counts: sent, delivered, expected, ratio.
        let row = |o: &mut String, k: &str, counts: [String; 4], l: &Latency| {
            let [sent, del, exp, ratio] = counts;
            let _ = writeln!(
                o,
                "{k:<16}{sent:>10}{del:>11}{exp:>11}{ratio:>8}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        };
        let delivery = |d: &Delivery| {
            [
                d.sent.to_string(),
                d.delivered.to_string(),
                d.expected.to_string(),
                format!("{:.4}", d.delivery_ratio),
            ]
        };
        let delivered = |n: u64| [String::new(), n.to_string(), String::new(), String::new()];
        let active = |d: &Delivery| d.sent > 0 || d.delivered > 0;
        let traffic = matches!(sc.mode, Mode::Traffic | Mode::Board);
        if traffic {
            row(
                &mut o,
                "stroke e2e",
                delivery(&self.strokes),
                &self.strokes.latency,
            );
            for (name, d) in [
                ("live stroke e2e", &self.progress),
                ("drag e2e", &self.drags),
                ("cursor e2e", &self.cursors),
            ] {
                if active(d) {
                    row(&mut o, name, delivery(d), &d.latency);
                }
            }
            let a = &self.acks;
            if a.element_latency.count > 0 {
                row(&mut o, "stroke ack", delivered(a.latency.count), &a.latency);
                let count = delivered(a.element_latency.count);
                row(&mut o, "element ack", count, &a.element_latency);
            } else {
                row(&mut o, "ack", delivered(a.acked), &a.latency);
            }
        }
        let j = &self.joins;
        row(&mut o, "join", delivered(j.count), &j.time);
        if traffic {
            row(
                &mut o,
                "client send lag",
                Default::default(),
                &self.client_send_lag,
            );
            row(
                &mut o,
                "socket write wait",
                Default::default(),
                &self.socket_write_wait,
            );
        }
        if j.initial_state_bytes.count > 0 {
            let b = &j.initial_state_bytes;
            let _ = write!(
                o,
                "\nINITIAL_STATE bytes: min {} p50 {} max {}",
                b.min, b.p50, b.max
            );
            if let Some((lo, hi)) = j.initial_state_strokes {
                let _ = write!(o, "; strokes {lo}..{hi}");
            }
            o.push('\n');
        }
        let s = &self.sequencing;
        let _ = writeln!(
            o,
            "\nseq: {} rooms, {} receivers; gaps {} duplicates {} lost-acked {} out-of-order {} \
             (replay overlap {}, snapshot resync {}, epoch changes {}, self echo {})",
            s.rooms,
            s.receivers,
            s.gaps,
            s.duplicates,
            s.lost_acked,
            s.out_of_order,
            s.replay_overlap,
            s.snapshot_resync,
            s.epoch_changes,
            s.self_echo
        );
        if !self.settled && !self.aborted {
            let _ = writeln!(
                o,
                "note: the servers were still catching up when the drain ended; gaps include events in flight"
            );
        }
        let a = &self.acks;
        let c = &self.connections;
        let _ = writeln!(
            o,
            "ops: unacked at end {} rejected {} duplicate acks {} resent {}",
            a.unacked_at_end, a.rejected, a.duplicates, a.resent
        );
        let _ = writeln!(
            o,
            "connections: connect failures {} join failures {} room expired {} reconnects {} joined when sending stopped {}",
            c.connect_failures, c.join_failures, c.room_expired, c.reconnects, c.joined_at_end
        );
        if !c.close_codes.is_empty() {
            let _ = writeln!(o, "close codes: {}", kv(&c.close_codes));
        }
        if !c.errors.is_empty() {
            let _ = writeln!(o, "errors: {}", kv(&c.errors));
        }
        if c.parse_errors > 0 {
            let _ = writeln!(o, "unparseable frames: {}", c.parse_errors);
        }
        if self.passed {
            let _ = writeln!(o, "\nresult: PASS");
        } else {
            let _ = writeln!(o, "\nresult: FAIL\n  - {}", self.failures.join("\n  - "));
        }
        o
    }
}

fn kv(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Clock, Collector, Kind, Recorder};

    fn report(scenario: Scenario, extra: Extra) -> Report {
        let c = Collector::new(Clock {
            start_us: 0,
            measure_from_us: 0,
            measure_to_us: u64::MAX,
        });
        let mut r = Recorder::new(c.clone());
        r.record(Kind::Join, 3_000, 0, 10);
        r.record(Kind::Sent(Msg::Stroke), 0, 20, 20);
        r.record(Kind::Expected(Msg::Stroke), 1, 20, 20);
        r.record(Kind::Delivered(Msg::Stroke), 1_500, 20, 1_520);
        r.finish(0, None);
        Report::build(scenario, &c.lock(), extra)
    }

    /// Other docs and scripts read the result JSON by these names.
    #[test]
    fn the_json_keeps_its_field_names() {
        let v = serde_json::to_value(report(Scenario::default(), Extra::default())).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map_or_else(Vec::new, |o| o.keys().cloned().collect());
            k.sort();
            k
        };
        let names = |list: &str| -> Vec<String> {
            let mut n: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
            n.sort();
            n
        };
        assert_eq!(
            keys(&v),
            names(
                "scenario started_at_unix elapsed_secs measured_from_s measured_to_s aborted \
                 settled connections strokes cursors progress drags acks joins sequencing \
                 client_send_lag socket_write_wait timeline failures passed"
            )
        );
        let latency = names("count p50_ms p90_ms p99_ms p999_ms max_ms mean_ms");
        for l in [
            &v["strokes"]["latency"],
            &v["progress"]["latency"],
            &v["drags"]["latency"],
            &v["acks"]["latency"],
            &v["acks"]["element_latency"],
            &v["joins"]["time"],
            &v["client_send_lag"],
            &v["socket_write_wait"],
        ] {
            assert_eq!(keys(l), latency);
        }
        for kind in ["strokes", "cursors", "progress", "drags"] {
            assert_eq!(
                keys(&v[kind]),
                names("sent delivered expected delivery_ratio replayed latency"),
                "{kind}"
            );
        }
        assert_eq!(
            keys(&v["acks"]),
            names("acked unacked_at_end rejected duplicates resent latency element_latency")
        );
        assert_eq!(keys(&v["joins"]), names("count time initial_state_bytes"));
        assert_eq!(
            keys(&v["connections"]),
            names(
                "planned joined_at_end connect_failures join_failures room_expired reconnects \
                 close_codes errors received_types parse_errors"
            )
        );
        assert_eq!(
            keys(&v["sequencing"]),
            names(
                "rooms receivers gaps duplicates lost_acked tail_gaps out_of_order stale replay_overlap \
                 snapshot_resync epoch_changes self_echo absurd_seq"
            )
        );
        assert_eq!(
            keys(&v["timeline"][0]),
            names(
                "t strokes_sent strokes_delivered strokes_replayed cursors_sent cursors_delivered \
                 progress_sent progress_delivered drags_sent drags_delivered acks joins \
                 reconnects errors stroke_p50_ms stroke_p90_ms stroke_p99_ms stroke_max_ms \
                 cursor_p99_ms progress_p99_ms drag_p99_ms ack_p99_ms"
            )
        );
        assert_eq!(v["strokes"]["latency"]["p50_ms"], 1.5);
        assert!(
            v["scenario"].get("jwt_secret").is_none(),
            "the secret stays out"
        );
    }

    #[test]
    fn loss_fails_the_run_unless_told_otherwise_but_an_interruption_always_does() {
        let settled = || Extra {
            settled: true,
            ..Extra::default()
        };
        assert!(report(Scenario::default(), settled()).passed);
        let lossy = || Extra {
            unacked_at_end: 2,
            ..settled()
        };
        let r = report(Scenario::default(), lossy());
        assert_eq!(r.failures, ["2 ops never acknowledged"]);
        let lenient = Scenario {
            fail_on_loss: false,
            ..Scenario::default()
        };
        assert!(report(lenient.clone(), lossy()).passed);
        let interrupted = Extra {
            aborted: true,
            ..lossy()
        };
        assert_eq!(report(lenient, interrupted).failures, ["interrupted"]);
        // A drain that ran out of time is a failure of its own.
        let r = report(Scenario::default(), Extra::default());
        assert!(
            r.failures[0].contains("had not caught up"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn a_run_that_measured_nothing_fails() {
        let c = Collector::new(Clock {
            start_us: 0,
            measure_from_us: 0,
            measure_to_us: u64::MAX,
        });
        let extra = Extra {
            settled: true,
            ..Extra::default()
        };
        let r = Report::build(Scenario::default(), &c.lock(), extra);
        assert_eq!(r.failures, ["no connection ever joined its room"]);
    }
}
