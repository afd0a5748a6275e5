//! One simulated client: a task that connects, joins its room, sends on its schedule, reads
//! everything the server sends, and recovers after a slow-consumer close (1013), a drain (1001)
//! or a dropped socket by re-joining with `since`/`epoch` and resending its unacknowledged ops
//! (the server answers those with `duplicate: true` if they had been applied).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::auth::User;
use crate::proto::{self, Incoming, Outgoing, StrokeTag};
use crate::scenario::Scenario;
use crate::seq::{Mark, SeqTracker};
use crate::stats::{Kind, Recorder, Tallies, now_us};
use crate::target::Target;

pub type Ws = WebSocketStream<TcpStream>;

/// How often a connection hands its samples to the collector even when its batch is not full,
/// so the live line and the drain see fresh numbers.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Consecutive failed connection attempts before a client gives up.
const MAX_ATTEMPTS: u32 = 8;
/// How long a closing client waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A session shorter than this that ends in a drop counts toward reconnect backoff: without it,
/// clients closed as slow consumers come straight back, and every re-join's presence frames
/// overflow the other members' queues in turn (a reconnect storm).
const SHORT_SESSION: Duration = Duration::from_secs(3);

/// Whether connections should keep going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Close the socket, hand over the measurements, end.
    Closing,
}

/// Small buffers: thousands of idle sockets must not cost a 128 KiB read buffer each.
pub fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// TCP connect plus WebSocket handshake, within `limit`.
pub async fn connect(
    target: &Target,
    token: &str,
    config: WebSocketConfig,
    limit: Duration,
) -> Result<Ws, String> {
    let attempt = async {
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(target.ws_url(token), stream, Some(config))
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(resp) => format!("http {}", resp.status().as_u16()),
                    other => format!("handshake: {other}"),
                })?;
        Ok(ws)
    };
    timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err("connect: timeout".to_owned()))
}

/// What a connection is told at spawn time.
pub struct ConnPlan {
    pub index: u32,
    pub room_index: usize,
    pub room_id: Arc<str>,
    pub target: Arc<Target>,
    pub user: User,
    /// When to open the socket (ramp-up).
    pub start_at: Instant,
}

/// What every connection shares.
pub struct Shared {
    pub scenario: Arc<Scenario>,
    /// Members per room that joined once and have not given up or finished: the deliveries a
    /// send should produce, since a member dropped meanwhile gets it by `REPLAY` when it resumes.
    pub members: Arc<[AtomicI64]>,
    /// No sends at or after this.
    pub send_until: Instant,
    pub phase: watch::Receiver<Phase>,
    pub ws_config: WebSocketConfig,
}

/// The answer to a `JOIN_ROOM`.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinReply {
    Initial { bytes: usize, strokes: usize },
    Replay,
    Expired,
    Error(String),
}

/// Why a session (one socket) ended.
enum Ended {
    /// Told to close, or done.
    Finished,
    /// The server closed or the socket broke: worth reconnecting.
    Dropped,
    /// The server refused us for good (policy, bad token): do not reconnect.
    Refused,
}

/// A client's state that outlives any one socket.
pub struct Client {
    pub index: u32,
    out: Outgoing,
    pub tracker: SeqTracker,
    pub recorder: Recorder,
    /// Sent ops awaiting their ACK, by stroke number, kept for resending after a reconnect.
    pending: BTreeMap<u64, Utf8Bytes>,
    next_n: u64,
    buf: String,
    /// Ops refused with an `ERROR` over the client's life (tallies reset at every flush).
    pub rejected_total: u64,
    /// `JOIN_ROOM` sent → its answer received (before parsing it), of the last join.
    pub last_join_us: u64,
}

impl Client {
    pub fn new(
        index: u32,
        room_id: &str,
        user_id: &str,
        points: usize,
        recorder: Recorder,
    ) -> Self {
        Self {
            index,
            out: Outgoing::new(room_id, user_id, index, points),
            tracker: SeqTracker::default(),
            recorder,
            pending: BTreeMap::new(),
            next_n: 0,
            buf: String::with_capacity(256 + points * 24),
            rejected_total: 0,
            last_join_us: 0,
        }
    }

    fn unacked_delta(&self, d: i64) {
        self.recorder
            .collector()
            .unacked
            .fetch_add(d, Ordering::Relaxed);
    }

    /// Sends `JOIN_ROOM` (resuming when possible) and waits for its answer, handling whatever
    /// else arrives meanwhile.
    pub async fn join(&mut self, ws: &mut Ws, limit: Duration) -> Result<JoinReply, String> {
        let frame = self.out.join(self.tracker.resume_point());
        let sent = now_us();
        ws.send(Message::text(frame))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let wait = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let now = now_us();
                        if let Some(reply) = self.on_frame(&t, now) {
                            return Ok((reply, now));
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Err(format!("closed {}", close_code(f.as_ref())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("read: {e}")),
                    None => return Err("eof".to_owned()),
                }
            }
        };
        let (reply, now) = timeout(limit, wait)
            .await
            .unwrap_or_else(|_| Err("join: timeout".to_owned()))?;
        if matches!(reply, JoinReply::Initial { .. } | JoinReply::Replay) {
            self.last_join_us = now.saturating_sub(sent);
            self.recorder
                .record(Kind::Join, self.last_join_us, now, now);
        }
        if let JoinReply::Initial { bytes, .. } = reply {
            self.recorder
                .record(Kind::InitialBytes, bytes as u64, now, now);
        }
        Ok(reply)
    }

    /// Handles one server frame; returns a join answer if it was one.
    pub fn on_frame(&mut self, text: &str, now: u64) -> Option<JoinReply> {
        self.recorder.frame();
        let msg = match proto::parse(text) {
            Ok(m) => m,
            Err(_) => {
                self.recorder.tallies.parse_errors += 1;
                return None;
            }
        };
        let t = &mut self.recorder.tallies;
        match msg {
            Incoming::CanvasUpdate { seq, stroke_id } => {
                Tallies::bump(&mut t.received_types, "CANVAS_UPDATE");
                let mark = self.tracker.live_event(seq);
                match StrokeTag::parse(&stroke_id) {
                    Some(tag) if tag.conn == self.index => t.self_echo += 1,
                    Some(tag) if mark == Mark::New => {
                        let lat = now.saturating_sub(tag.sent_us);
                        self.recorder
                            .record(Kind::StrokeDelivered, lat, tag.sent_us, now);
                    }
                    _ => {}
                }
                None
            }
            Incoming::Sequenced { seq } => {
                self.tracker.live_event(seq);
                None
            }
            Incoming::Ack {
                seq,
                stroke_id,
                duplicate,
            } => {
                Tallies::bump(&mut t.received_types, "ACK");
                self.tracker.ack(seq);
                if let Some(tag) = StrokeTag::parse(&stroke_id)
                    && tag.conn == self.index
                {
                    let was_pending = self.pending.remove(&tag.n).is_some();
                    if was_pending {
                        self.unacked_delta(-1);
                    }
                    if duplicate || !was_pending {
                        self.recorder.tallies.duplicate_acks += 1;
                    } else {
                        let lat = now.saturating_sub(tag.sent_us);
                        self.recorder.record(Kind::Ack, lat, tag.sent_us, now);
                    }
                }
                None
            }
            Incoming::Cursor { x } => {
                Tallies::bump(&mut t.received_types, "CURSOR_MOVE");
                if let Some(lat) = proto::cursor_latency_us(x, now) {
                    self.recorder
                        .record(Kind::CursorDelivered, lat, now.saturating_sub(lat), now);
                }
                None
            }
            Incoming::InitialState {
                seq,
                epoch,
                strokes,
            } => {
                Tallies::bump(&mut t.received_types, "INITIAL_STATE");
                self.tracker.initial_state(seq, &epoch);
                Some(JoinReply::Initial {
                    bytes: text.len(),
                    strokes,
                })
            }
            Incoming::Replay { epoch, events, .. } => {
                Tallies::bump(&mut t.received_types, "REPLAY");
                self.tracker.replay_epoch(&epoch);
                for ev in events {
                    match proto::parse(ev.get()) {
                        Ok(Incoming::CanvasUpdate { seq, stroke_id }) => {
                            let mark = self.tracker.replayed_event(seq);
                            if let Some(tag) = StrokeTag::parse(&stroke_id)
                                && tag.conn != self.index
                                && mark == Mark::New
                            {
                                let lat = now.saturating_sub(tag.sent_us);
                                self.recorder
                                    .record(Kind::StrokeReplayed, lat, tag.sent_us, now);
                            }
                        }
                        Ok(Incoming::Sequenced { seq }) => {
                            self.tracker.replayed_event(seq);
                        }
                        _ => self.recorder.tallies.parse_errors += 1,
                    }
                }
                Some(JoinReply::Replay)
            }
            Incoming::RoomExpired => {
                t.room_expired += 1;
                Some(JoinReply::Expired)
            }
            Incoming::Error { code, reference } => {
                // A refused op will never be acknowledged: stop waiting for it.
                if let Some(tag) = reference.as_deref().and_then(StrokeTag::parse)
                    && tag.conn == self.index
                    && self.pending.remove(&tag.n).is_some()
                {
                    t.rejected_ops += 1;
                    self.rejected_total += 1;
                    self.unacked_delta(-1);
                }
                self.recorder.error(&code, now);
                Some(JoinReply::Error(code.into_owned()))
            }
            Incoming::Other { kind } => {
                Tallies::bump(&mut t.received_types, &kind);
                None
            }
        }
    }

    /// Builds and sends the next stroke.
    pub async fn send_stroke(&mut self, ws: &mut Ws, expected: u64, lag_us: u64) -> bool {
        let now = now_us();
        let tag = StrokeTag {
            conn: self.index,
            n: self.next_n,
            sent_us: now,
        };
        self.next_n += 1;
        self.out.stroke(tag, &mut self.buf);
        let text = Utf8Bytes::from(self.buf.as_str());
        self.pending.insert(tag.n, text.clone());
        self.unacked_delta(1);
        let r = &mut self.recorder;
        r.record(Kind::StrokeSent, 0, now, now);
        r.record(Kind::StrokeExpected, expected, now, now);
        r.record(Kind::SendLag, lag_us, now, now);
        self.timed_send(ws, Message::Text(text), now).await
    }

    /// Sends one frame, recording how long the write waited (a server that stops reading makes
    /// this grow, which tells its back-pressure apart from a starved client).
    async fn timed_send(&mut self, ws: &mut Ws, msg: Message, sent_us: u64) -> bool {
        let began = Instant::now();
        let ok = ws.send(msg).await.is_ok();
        let waited = began.elapsed().as_micros() as u64;
        self.recorder
            .record(Kind::SendWait, waited, sent_us, sent_us);
        ok
    }

    async fn send_cursor(&mut self, ws: &mut Ws, expected: u64, lag_us: u64) -> bool {
        let now = now_us();
        self.out.cursor(now, self.index, &mut self.buf);
        let r = &mut self.recorder;
        r.record(Kind::CursorSent, 0, now, now);
        r.record(Kind::CursorExpected, expected, now, now);
        r.record(Kind::SendLag, lag_us, now, now);
        let msg = Message::text(self.buf.as_str());
        self.timed_send(ws, msg, now).await
    }

    /// After a re-join: the ops whose ACK never came are sent again with the same op id.
    async fn resend_pending(&mut self, ws: &mut Ws) -> bool {
        self.recorder.tallies.resent_ops += self.pending.len() as u64;
        for f in self.pending.values() {
            if ws.feed(Message::Text(f.clone())).await.is_err() {
                return false;
            }
        }
        ws.flush().await.is_ok()
    }

    /// Number of ops still unacknowledged.
    pub fn unacked(&self) -> usize {
        self.pending.len()
    }
}

/// The code of a close frame, as text ("none" when the server sent no code).
pub fn close_code(f: Option<&tungstenite::protocol::CloseFrame>) -> String {
    f.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string())
}

/// A send schedule at `per_sec`, phase-shifted per connection so sends spread over the period.
fn schedule(per_sec: f64, index: u32) -> Option<tokio::time::Interval> {
    if per_sec <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_sec);
    // Golden-ratio spacing spreads any number of connections evenly over one period.
    let frac = (f64::from(index) * 0.618_033_988_749_895).fract();
    let mut iv = interval_at(Instant::now() + period.mul_f64(frac), period);
    // A stall (or a reconnect) must not turn into a burst the server never sees from real users.
    iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
    Some(iv)
}

async fn tick(iv: &mut Option<tokio::time::Interval>) -> Instant {
    match iv {
        Some(iv) => iv.tick().await,
        None => std::future::pending().await,
    }
}

fn lag_us(scheduled: Instant) -> u64 {
    Instant::now()
        .saturating_duration_since(scheduled)
        .as_micros() as u64
}

/// Runs one client until the run closes (or it gives up).
pub async fn run_client(plan: ConnPlan, shared: Arc<Shared>, recorder: Recorder) {
    let sc = &shared.scenario;
    let mut client = Client::new(
        plan.index,
        &plan.room_id,
        &plan.user.user_id,
        sc.points_per_stroke,
        recorder,
    );
    let mut phase = shared.phase.clone();
    tokio::select! {
        _ = sleep_until(plan.start_at) => {}
        _ = phase.wait_for(|p| *p == Phase::Closing) => {
            client.recorder.finish(plan.room_index, client.tracker.finish());
            return;
        }
    }
    let members = &shared.members[plan.room_index];
    let mut strokes = None;
    let mut cursors = None;
    let mut failures = 0u32;
    let mut sessions = 0u32;
    let mut churn = 0u32;
    // Counted in the room's members from the first join until the client stops for good.
    let mut enrolled = false;
    loop {
        if *phase.borrow() == Phase::Closing {
            break;
        }
        let mut ws = match connect(
            &plan.target,
            &plan.user.token,
            shared.ws_config,
            sc.connect_timeout,
        )
        .await
        {
            Ok(ws) => ws,
            Err(e) => {
                client.recorder.tallies.connect_failures += 1;
                client.recorder.error(&e, now_us());
                // A refused upgrade (bad token, policy) would only be refused again.
                if e.starts_with("http 4") || !retry(&mut failures, sc.reconnect, &mut phase).await
                {
                    break;
                }
                continue;
            }
        };
        if sessions > 0 {
            let now = now_us();
            client.recorder.record(Kind::Reconnect, 0, now, now);
        }
        sessions += 1;
        match client.join(&mut ws, sc.connect_timeout).await {
            Ok(JoinReply::Initial { .. } | JoinReply::Replay) => failures = 0,
            Ok(JoinReply::Expired) => {
                client.recorder.tallies.join_failures += 1;
                break;
            }
            Ok(JoinReply::Error(_)) | Err(_) => {
                client.recorder.tallies.join_failures += 1;
                let _ = ws.close(None).await;
                if !retry(&mut failures, sc.reconnect, &mut phase).await {
                    break;
                }
                continue;
            }
        }
        client
            .recorder
            .collector()
            .joined
            .fetch_add(1, Ordering::Relaxed);
        if !enrolled {
            enrolled = true;
            members.fetch_add(1, Ordering::Relaxed);
            strokes = schedule(sc.strokes_per_sec, plan.index);
            cursors = schedule(sc.cursor_per_sec, plan.index.wrapping_add(7));
        } else {
            // Ticks missed while away are skipped, not reported as the client's own lag.
            for iv in [&mut strokes, &mut cursors].into_iter().flatten() {
                iv.reset();
            }
        }
        let began = Instant::now();
        let ended = if client.resend_pending(&mut ws).await {
            session(
                &mut client,
                &mut ws,
                &shared,
                members,
                &mut phase,
                &mut strokes,
                &mut cursors,
            )
            .await
        } else {
            Ended::Dropped
        };
        client
            .recorder
            .collector()
            .joined
            .fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Finished | Ended::Refused => break,
            Ended::Dropped if !sc.reconnect => break,
            Ended::Dropped => {
                churn = if began.elapsed() < SHORT_SESSION {
                    churn + 1
                } else {
                    0
                };
                if churn > 0 {
                    backoff(churn, &mut phase).await;
                }
            }
        }
    }
    if enrolled {
        members.fetch_sub(1, Ordering::Relaxed);
    }
    client
        .recorder
        .finish(plan.room_index, client.tracker.finish());
}

/// Counts a failed connect or join; backs off and returns true if the client should try again.
async fn retry(failures: &mut u32, reconnect: bool, phase: &mut watch::Receiver<Phase>) -> bool {
    *failures += 1;
    if !reconnect || *failures >= MAX_ATTEMPTS {
        return false;
    }
    backoff(*failures, phase).await;
    true
}

/// Exponential backoff from 100 ms up to 3 s, with jitter so clients dropped together do not
/// return together.
async fn backoff(failures: u32, phase: &mut watch::Receiver<Phase>) {
    let cap = Duration::from_millis(100u64 << failures.min(5)).min(Duration::from_secs(3));
    // Cheap jitter: the clock's microseconds are as good as random here.
    let wait = cap.mul_f64(0.5 + (now_us() % 1000) as f64 / 2000.0);
    tokio::select! {
        _ = sleep(wait) => {}
        _ = phase.wait_for(|p| *p == Phase::Closing) => {}
    }
}

/// One socket's life after its join.
async fn session(
    client: &mut Client,
    ws: &mut Ws,
    shared: &Shared,
    members: &AtomicI64,
    phase: &mut watch::Receiver<Phase>,
    strokes: &mut Option<tokio::time::Interval>,
    cursors: &mut Option<tokio::time::Interval>,
) -> Ended {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let others = || members.load(Ordering::Relaxed).saturating_sub(1).max(0) as u64;
    // Registered once for the session: a `changed()` per pass would add and remove a waiter on
    // the channel every connection shares for every frame received.
    let closing = async {
        let _ = phase.wait_for(|p| *p == Phase::Closing).await;
    };
    tokio::pin!(closing);
    loop {
        let sending = Instant::now() < shared.send_until;
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    client.on_frame(&t, now_us());
                }
                Some(Ok(Message::Close(f))) => {
                    let code = close_code(f.as_ref());
                    Tallies::bump(&mut client.recorder.tallies.close_codes, &code);
                    // Policy (1008), too big (1009): a reconnect would only repeat it.
                    return if matches!(code.as_str(), "1008" | "1009") {
                        Ended::Refused
                    } else {
                        Ended::Dropped
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    client.recorder.error(&format!("read: {}", short(&e)), now_us());
                    return Ended::Dropped;
                }
                None => {
                    Tallies::bump(&mut client.recorder.tallies.close_codes, "eof");
                    return Ended::Dropped;
                }
            },
            at = tick(strokes), if sending => {
                if !client.send_stroke(ws, others(), lag_us(at)).await {
                    return Ended::Dropped;
                }
            }
            at = tick(cursors), if sending => {
                if !client.send_cursor(ws, others(), lag_us(at)).await {
                    return Ended::Dropped;
                }
            }
            _ = flush.tick() => client.recorder.flush(),
            () = &mut closing => {
                close_gracefully(client, ws).await;
                return Ended::Finished;
            }
        }
    }
}

/// Sends a close frame and reads until the server's, so nothing in flight is counted as lost
/// because we hung up first.
async fn close_gracefully(client: &mut Client, ws: &mut Ws) {
    if ws.close(None).await.is_err() {
        return;
    }
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                client.on_frame(&t, now_us());
            }
        }
    })
    .await;
}

/// An error's text without the long tail some tungstenite errors carry.
fn short(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("io {:?}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol {p}"),
        tungstenite::Error::Capacity(c) => format!("capacity {c}"),
        other => {
            let s = other.to_string();
            s.chars().take(60).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Extra, Report};
    use crate::stats::{Clock, Collector};

    fn stroke_from_conn_2(seq: u64) -> String {
        format!(
            r#"{{"type":"CANVAS_UPDATE","payload":{{"roomId":"r","canvasData":{{"userId":"lt-2","strokeId":"2-{seq}-1000","points":[]}},"userId":"lt-2","seq":{seq}}}}}"#
        )
    }

    #[test]
    fn what_a_receiver_sees_reaches_the_report_and_the_verdict() {
        let collector = Collector::new(Clock {
            start_us: 0,
            measure_from_us: 0,
            measure_to_us: u64::MAX,
        });
        let mut client = Client::new(1, "r", "lt-1", 1, Recorder::new(collector.clone()));
        let joined = client.on_frame(
            r#"{"type":"INITIAL_STATE","payload":{"roomId":"r","strokes":[{}],"seq":1,"epoch":"e","users":[]}}"#,
            1_000,
        );
        assert!(matches!(
            joined,
            Some(JoinReply::Initial { strokes: 1, .. })
        ));
        // 2, then 4 twice (a duplicate), then 3 late (out of order), then 5 never comes although
        // the receiver's own ACK of 6 shows the room went past it.
        for seq in [2, 4, 4, 3] {
            assert_eq!(client.on_frame(&stroke_from_conn_2(seq), 3_000), None);
        }
        client.on_frame(
            r#"{"type":"ACK","payload":{"opId":"1-0-2000","seq":6,"strokeId":"1-0-2000","duplicate":false}}"#,
            2_500,
        );
        let Client {
            recorder, tracker, ..
        } = client;
        recorder.finish(0, tracker.finish());

        let report = Report::build(Scenario::default(), &collector.lock(), Extra::default());
        let s = &report.sequencing;
        assert_eq!((s.rooms, s.receivers), (1, 1));
        assert_eq!((s.duplicates, s.out_of_order, s.gaps), (1, 1, 1));
        assert_eq!(
            report.strokes.delivered, 3,
            "the duplicate is not a delivery"
        );
        assert_eq!(report.strokes.latency.max_ms, 2.0);
        assert_eq!(
            report.connections.received_types.get("CANVAS_UPDATE"),
            Some(&4)
        );
        assert!(!report.passed);
        for what in ["duplicate deliveries", "out of seq order", "seq gaps"] {
            assert!(
                report.failures.iter().any(|f| f.contains(what)),
                "{what}: {:?}",
                report.failures
            );
        }
    }
}
