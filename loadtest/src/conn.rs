//! One simulated client: a task that connects, joins its room, sends on its schedule, reads
//! everything the server sends, and recovers after a slow-consumer close (1013), a drain (1001)
//! or a dropped socket by re-joining with `since`/`epoch` and resending its unacknowledged ops
//! (the server answers those with `duplicate: true` if they had been applied).
//!
//! In board mode ([`Mode::Board`]) a client is a v1.1 page: it adds its rect once, then spends
//! each turn drawing (live `STROKE_PROGRESS` batches, then the final stroke), dragging its rect
//! (`ELEMENTS_UPDATE`) or resting, as [`activity`] decides.

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
use crate::scenario::{Mode, Scenario};
use crate::seq::{Mark, SeqTracker};
use crate::stats::{Kind, Msg, Recorder, Tallies, now_us};
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
    /// This connection's place among its room's members, and how many there are.
    pub room_slot: usize,
    pub room_size: usize,
    pub room_id: Arc<str>,
    /// Every target, and the one this connection starts on: when a connect fails it tries the
    /// next, as a client behind a load balancer lands on another instance when one dies.
    pub targets: Arc<[Arc<Target>]>,
    pub target_at: usize,
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

/// What a board user does during one turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Draw,
    Drag,
    Rest,
}

/// The activity of the member at `slot` of a room of `size` in turn `turn`. In any one turn the
/// members' positions `(slot + ½) / size`, shifted by the same amount, are spread evenly over
/// [0, 1), so the shares hold for the room; the shift moves by the golden ratio from turn to
/// turn, so each member's own turns mix the activities rather than run in long streaks.
pub fn activity(slot: usize, size: usize, turn: u64, draw: f64, drag: f64) -> Activity {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    let pos = (slot as f64 + 0.5) / size.max(1) as f64;
    let p = (pos + (turn % 1_000_000) as f64 * GOLDEN).fract();
    if p < draw {
        Activity::Draw
    } else if p < draw + drag {
        Activity::Drag
    } else {
        Activity::Rest
    }
}

/// A board user's plan, and its stroke being drawn.
struct Board {
    slot: usize,
    size: usize,
    draw_share: f64,
    drag_share: f64,
    turn_us: u64,
    /// Turns are counted from the run's start plus this, which differs per member so that
    /// members do not all change activity (and send their final strokes) at the same instant.
    origin_us: u64,
    batches_per_stroke: u32,
    points_per_batch: usize,
    stroke: Option<OpenStroke>,
    /// The rect was sent (its op stays pending until acknowledged, like any op).
    rect_sent: bool,
    drags: u32,
}

impl Board {
    fn activity(&self, now_us: u64) -> Activity {
        let turn = now_us.saturating_sub(self.origin_us) / self.turn_us.max(1);
        activity(self.slot, self.size, turn, self.draw_share, self.drag_share)
    }
}

/// A stroke being drawn: the id its batches and its final stroke share, and its points so far.
struct OpenStroke {
    id: StrokeTag,
    batches: u32,
    points: String,
}

/// An op sent and not yet acknowledged.
struct Pending {
    frame: Utf8Bytes,
    /// An element op (its ACK latency is kept apart from strokes').
    element: bool,
}

/// A client's state that outlives any one socket.
pub struct Client {
    pub index: u32,
    out: Outgoing,
    pub tracker: SeqTracker,
    pub recorder: Recorder,
    /// Sent ops awaiting their ACK, by op number, kept for resending after a reconnect.
    pending: BTreeMap<u64, Pending>,
    board: Option<Board>,
    /// Points of the batch being sent (board mode).
    batch: String,
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
            board: None,
            batch: String::new(),
            next_n: 0,
            buf: String::with_capacity(256 + points * 24),
            rejected_total: 0,
            last_join_us: 0,
        }
    }

    /// Makes this client a board user of `sc` (a v1.1 page), at `slot` of a room of `size`.
    pub fn into_board(mut self, sc: &Scenario, slot: usize, size: usize) -> Self {
        let turn_us = sc.turn.as_micros().max(1) as u64;
        // Golden-ratio spacing of the members' turn starts over one turn.
        let shift = ((slot as f64 * 0.618_033_988_749_895).fract() * turn_us as f64) as u64;
        self.board = Some(Board {
            slot,
            size,
            draw_share: sc.draw_share,
            drag_share: sc.drag_share,
            turn_us,
            origin_us: self.recorder.collector().clock.start_us + shift,
            batches_per_stroke: sc.batches_per_stroke(),
            points_per_batch: sc.progress_points,
            stroke: None,
            rect_sent: false,
            drags: 0,
        });
        self.batch = String::with_capacity(sc.progress_points * 32);
        self
    }

    /// Joins as a page of `protocol` (`None`: a v1 client).
    pub fn with_protocol(mut self, protocol: Option<&str>) -> Self {
        self.out.set_protocol(protocol);
        self
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
                        if let Some(lat) = self.stroke_latency(tag, text, now) {
                            self.recorder.record(
                                Kind::Delivered(Msg::Stroke),
                                lat,
                                now.saturating_sub(lat),
                                now,
                            );
                        }
                    }
                    _ => {}
                }
                None
            }
            Incoming::ElementsUpdated { seq, id, x } => {
                Tallies::bump(&mut t.received_types, "ELEMENTS_UPDATED");
                let mark = self.tracker.live_event(seq);
                match proto::rect_owner(&id) {
                    Some(owner) if owner == self.index => t.self_echo += 1,
                    Some(_) if mark == Mark::New => {
                        if let Some(lat) = x.and_then(|x| proto::coord_latency_us(x, now)) {
                            self.recorder.record(
                                Kind::Delivered(Msg::Drag),
                                lat,
                                now.saturating_sub(lat),
                                now,
                            );
                        }
                    }
                    _ => {}
                }
                None
            }
            Incoming::Sequenced { seq, kind } => {
                Tallies::bump(&mut t.received_types, kind);
                self.tracker.live_event(seq);
                None
            }
            Incoming::Ack {
                seq,
                op_id,
                duplicate,
            } => {
                Tallies::bump(&mut t.received_types, "ACK");
                self.tracker.ack(seq);
                if let Some(tag) = op_id.as_deref().and_then(StrokeTag::parse)
                    && tag.conn == self.index
                {
                    let was_pending = self.pending.remove(&tag.n);
                    if was_pending.is_some() {
                        self.unacked_delta(-1);
                    }
                    match was_pending {
                        Some(p) if !duplicate => {
                            let lat = now.saturating_sub(tag.sent_us);
                            let kind = if p.element {
                                Kind::ElementAck
                            } else {
                                Kind::Ack
                            };
                            self.recorder.record(kind, lat, tag.sent_us, now);
                        }
                        _ => self.recorder.tallies.duplicate_acks += 1,
                    }
                }
                None
            }
            Incoming::Cursor { x } => {
                Tallies::bump(&mut t.received_types, "CURSOR_MOVE");
                if let Some(lat) = proto::coord_latency_us(x, now) {
                    self.recorder.record(
                        Kind::Delivered(Msg::Cursor),
                        lat,
                        now.saturating_sub(lat),
                        now,
                    );
                }
                None
            }
            Incoming::Progress { id, x } => {
                Tallies::bump(&mut t.received_types, "STROKE_PROGRESS");
                match StrokeTag::parse(&id) {
                    Some(tag) if tag.conn == self.index => t.self_echo += 1,
                    Some(_) => {
                        if let Some(lat) = x.and_then(|x| proto::coord_latency_us(x, now)) {
                            self.recorder.record(
                                Kind::Delivered(Msg::Progress),
                                lat,
                                now.saturating_sub(lat),
                                now,
                            );
                        }
                    }
                    None => {}
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
                                && let Some(lat) = self.stroke_latency(tag, ev.get(), now)
                            {
                                self.recorder.record(
                                    Kind::Replayed(Msg::Stroke),
                                    lat,
                                    now.saturating_sub(lat),
                                    now,
                                );
                            }
                        }
                        Ok(Incoming::ElementsUpdated { seq, id, x }) => {
                            let mark = self.tracker.replayed_event(seq);
                            if proto::rect_owner(&id).is_some_and(|o| o != self.index)
                                && mark == Mark::New
                                && let Some(lat) = x.and_then(|x| proto::coord_latency_us(x, now))
                            {
                                self.recorder.record(
                                    Kind::Replayed(Msg::Drag),
                                    lat,
                                    now.saturating_sub(lat),
                                    now,
                                );
                            }
                        }
                        Ok(Incoming::Sequenced { seq, .. }) => {
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

    /// End-to-end latency of another member's stroke received at `now`: its send time is in its
    /// id, or, for a board stroke (whose id was chosen when drawing began), in the `x` of its
    /// last point.
    fn stroke_latency(&self, tag: StrokeTag, frame: &str, now: u64) -> Option<u64> {
        if self.board.is_some() {
            proto::stroke_end_x(frame).and_then(|x| proto::coord_latency_us(x, now))
        } else {
            Some(now.saturating_sub(tag.sent_us))
        }
    }

    /// The next op's tag, sent now.
    fn next_tag(&mut self) -> StrokeTag {
        let tag = StrokeTag {
            conn: self.index,
            n: self.next_n,
            sent_us: now_us(),
        };
        self.next_n += 1;
        tag
    }

    /// Sends the op in `self.buf` as op number `n`, keeping it until acknowledged.
    async fn send_op(&mut self, ws: &mut Ws, n: u64, element: bool, sent_us: u64) -> bool {
        let frame = Utf8Bytes::from(self.buf.as_str());
        self.pending.insert(
            n,
            Pending {
                frame: frame.clone(),
                element,
            },
        );
        self.unacked_delta(1);
        self.timed_send(ws, Message::Text(frame), sent_us).await
    }

    /// Counts a send of `msg` owed to `expected` others, fired `lag_us` late.
    fn record_send(&mut self, msg: Msg, expected: u64, lag_us: Option<u64>, now: u64) {
        let r = &mut self.recorder;
        r.record(Kind::Sent(msg), 0, now, now);
        r.record(Kind::Expected(msg), expected, now, now);
        if let Some(lag) = lag_us {
            r.record(Kind::SendLag, lag, now, now);
        }
    }

    /// Builds and sends the next stroke.
    pub async fn send_stroke(&mut self, ws: &mut Ws, expected: u64, lag_us: u64) -> bool {
        let tag = self.next_tag();
        self.out.stroke(tag, &mut self.buf);
        self.record_send(Msg::Stroke, expected, Some(lag_us), tag.sent_us);
        self.send_op(ws, tag.n, false, tag.sent_us).await
    }

    /// Board: adds this user's rect, once; later drags move it.
    async fn send_rect(&mut self, ws: &mut Ws) -> bool {
        match self.board.as_mut() {
            Some(b) if !b.rect_sent => b.rect_sent = true,
            _ => return true,
        }
        let tag = self.next_tag();
        self.out.rect_add(tag, &mut self.buf);
        self.send_op(ws, tag.n, true, tag.sent_us).await
    }

    /// Board, on the live-stroke schedule: while the user's turn is a drawing one, sends the
    /// next `STROKE_PROGRESS` batch of its stroke (beginning one if none is open); after the
    /// stroke's last batch, or once the turn is over, sends the final stroke as `CANVAS_UPDATE`
    /// with the same id and every point, as the page does on pointer-up.
    async fn progress_tick(&mut self, ws: &mut Ws, expected: u64, lag_us: u64) -> bool {
        let Some(board) = self.board.as_mut() else {
            return true;
        };
        let now = now_us();
        let drawing = board.activity(now) == Activity::Draw;
        let (per_stroke, count) = (board.batches_per_stroke, board.points_per_batch);
        let mut stroke = match board.stroke.take() {
            Some(open) if !drawing => return self.finish_stroke(ws, open, expected).await,
            Some(open) => open,
            None if drawing => {
                let id = StrokeTag {
                    conn: self.index,
                    n: self.next_n,
                    sent_us: now,
                };
                self.next_n += 1;
                OpenStroke {
                    id,
                    batches: 0,
                    points: String::with_capacity(per_stroke as usize * count * 32 + 32),
                }
            }
            None => return true,
        };
        self.batch.clear();
        self.out.append_points(now, count, &mut self.batch);
        if !stroke.points.is_empty() {
            stroke.points.push(',');
        }
        stroke.points.push_str(&self.batch);
        stroke.batches += 1;
        self.out.progress(stroke.id, &self.batch, &mut self.buf);
        self.record_send(Msg::Progress, expected, Some(lag_us), now);
        let msg = Message::text(self.buf.as_str());
        if !self.timed_send(ws, msg, now).await {
            return false;
        }
        if stroke.batches >= per_stroke {
            return self.finish_stroke(ws, stroke, expected).await;
        }
        if let Some(b) = self.board.as_mut() {
            b.stroke = Some(stroke);
        }
        true
    }

    /// The final stroke: every batch's points and the pointer-up point, whose `x` carries the
    /// send time (the id carries when drawing began).
    async fn finish_stroke(&mut self, ws: &mut Ws, mut stroke: OpenStroke, expected: u64) -> bool {
        let op = StrokeTag {
            sent_us: now_us(),
            ..stroke.id
        };
        self.out.append_points(op.sent_us, 1, &mut stroke.points);
        self.out
            .final_stroke(stroke.id, op, &stroke.points, &mut self.buf);
        self.record_send(Msg::Stroke, expected, None, op.sent_us);
        self.send_op(ws, op.n, false, op.sent_us).await
    }

    /// Board, on the drag schedule: while the user's turn is a dragging one, moves its rect.
    async fn drag_tick(&mut self, ws: &mut Ws, expected: u64, lag_us: u64) -> bool {
        let y = match self.board.as_mut() {
            Some(b) if b.rect_sent && b.activity(now_us()) == Activity::Drag => {
                b.drags = b.drags.wrapping_add(1);
                400 + (b.drags % 40) * 5
            }
            _ => return true,
        };
        let tag = self.next_tag();
        self.out.drag(tag, y, &mut self.buf);
        self.record_send(Msg::Drag, expected, Some(lag_us), tag.sent_us);
        self.send_op(ws, tag.n, true, tag.sent_us).await
    }

    /// A stroke being drawn when the socket dropped is abandoned, as a page would: its
    /// provisional copy vanishes at the others when the author leaves.
    fn abandon_stroke(&mut self) {
        if let Some(b) = self.board.as_mut() {
            b.stroke = None;
        }
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
        self.record_send(Msg::Cursor, expected, Some(lag_us), now);
        let msg = Message::text(self.buf.as_str());
        self.timed_send(ws, msg, now).await
    }

    /// After a re-join: the ops whose ACK never came are sent again with the same op id.
    async fn resend_pending(&mut self, ws: &mut Ws) -> bool {
        self.recorder.tallies.resent_ops += self.pending.len() as u64;
        for p in self.pending.values() {
            if ws.feed(Message::Text(p.frame.clone())).await.is_err() {
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

/// A client's send schedules (`None`: that kind is not sent).
#[derive(Default)]
struct Schedules {
    strokes: Option<tokio::time::Interval>,
    cursors: Option<tokio::time::Interval>,
    /// Board: live-stroke batches (and final strokes).
    progress: Option<tokio::time::Interval>,
    /// Board: drags.
    drags: Option<tokio::time::Interval>,
}

impl Schedules {
    fn new(sc: &Scenario, index: u32) -> Self {
        let board = sc.mode == Mode::Board;
        let when = |on: bool, per_sec: f64, shift: u32| {
            if on {
                schedule(per_sec, index.wrapping_add(shift))
            } else {
                None
            }
        };
        Self {
            strokes: when(!board, sc.strokes_per_sec, 0),
            cursors: when(true, sc.cursor_per_sec, 7),
            progress: when(board && sc.draw_share > 0.0, sc.progress_per_sec, 3),
            drags: when(board && sc.drag_share > 0.0, sc.drag_per_sec, 5),
        }
    }

    /// Ticks missed while away are skipped, not reported as the client's own lag.
    fn reset(&mut self) {
        for iv in [
            &mut self.strokes,
            &mut self.cursors,
            &mut self.progress,
            &mut self.drags,
        ]
        .into_iter()
        .flatten()
        {
            iv.reset();
        }
    }
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
    )
    .with_protocol(sc.protocol.as_deref());
    if sc.mode == Mode::Board {
        client = client.into_board(sc, plan.room_slot, plan.room_size);
    }
    let mut phase = shared.phase.clone();
    tokio::select! {
        _ = sleep_until(plan.start_at) => {}
        _ = phase.wait_for(|p| *p == Phase::Closing) => {
            client.recorder.finish(plan.room_index, client.tracker.finish());
            return;
        }
    }
    let members = &shared.members[plan.room_index];
    let mut schedules = Schedules::default();
    let mut failures = 0u32;
    let mut sessions = 0u32;
    let mut churn = 0u32;
    // Counted in the room's members from the first join until the client stops for good.
    let mut enrolled = false;
    let mut target_at = plan.target_at;
    loop {
        if *phase.borrow() == Phase::Closing {
            break;
        }
        let mut ws = match connect(
            &plan.targets[target_at % plan.targets.len()],
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
                target_at += 1;
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
            schedules = Schedules::new(sc, plan.index);
        } else {
            schedules.reset();
        }
        let began = Instant::now();
        let ended = if client.resend_pending(&mut ws).await && client.send_rect(&mut ws).await {
            session(
                &mut client,
                &mut ws,
                &shared,
                members,
                &mut phase,
                &mut schedules,
            )
            .await
        } else {
            Ended::Dropped
        };
        client.abandon_stroke();
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
    schedules: &mut Schedules,
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
            at = tick(&mut schedules.strokes), if sending => {
                if !client.send_stroke(ws, others(), lag_us(at)).await {
                    return Ended::Dropped;
                }
            }
            at = tick(&mut schedules.cursors), if sending => {
                if !client.send_cursor(ws, others(), lag_us(at)).await {
                    return Ended::Dropped;
                }
            }
            at = tick(&mut schedules.progress), if sending => {
                if !client.progress_tick(ws, others(), lag_us(at)).await {
                    return Ended::Dropped;
                }
            }
            at = tick(&mut schedules.drags), if sending => {
                if !client.drag_tick(ws, others(), lag_us(at)).await {
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

    #[test]
    fn each_turn_keeps_the_shares_and_each_member_mixes_its_activities() {
        let (size, third) = (50, 1.0 / 3.0);
        let mut own = vec![[0u32; 3]; size];
        for turn in 0..300 {
            let mut count = [0usize; 3];
            for (slot, mine) in own.iter_mut().enumerate() {
                let i = activity(slot, size, turn, third, third) as usize;
                count[i] += 1;
                mine[i] += 1;
            }
            for c in count {
                assert!((16..=17).contains(&c), "turn {turn}: {count:?}");
            }
        }
        for (slot, mine) in own.iter().enumerate() {
            for c in mine {
                assert!((80..=120).contains(c), "slot {slot}: {mine:?}");
            }
        }
        assert_eq!(activity(0, 1, 0, 1.0, 0.0), Activity::Draw);
        assert_eq!(activity(0, 1, 7, 0.0, 1.0), Activity::Drag);
        assert_eq!(activity(3, 4, 7, 0.0, 0.0), Activity::Rest);
    }

    #[test]
    fn a_board_receiver_reads_the_time_out_of_coordinates() {
        let collector = Collector::new(Clock {
            start_us: 0,
            measure_from_us: 0,
            measure_to_us: u64::MAX,
        });
        let sc = Scenario {
            mode: Mode::Board,
            protocol: Some("1.1".into()),
            ..Scenario::default()
        };
        let mut client = Client::new(1, "r", "lt-1", 1, Recorder::new(collector.clone()))
            .with_protocol(sc.protocol.as_deref())
            .into_board(&sc, 1, 4);
        assert!(client.out.join(None).contains(r#""protocol":"1.1""#));
        let x = proto::time_coord;
        let frames = [
            r#"{"type":"INITIAL_STATE","payload":{"roomId":"r","strokes":[],"elements":[],"seq":1,"epoch":"e","users":[],"protocol":"1.1","minProtocol":"1.1"}}"#.to_owned(),
            r#"{"type":"ELEMENTS_ADDED","payload":{"roomId":"r","userId":"lt-2","elements":[{"v":2,"z":1,"id":"rect-2","kind":"rect"}],"seq":2}}"#.to_owned(),
            format!(
                r#"{{"type":"ELEMENTS_UPDATED","payload":{{"roomId":"r","userId":"lt-2","updates":[{{"id":"rect-2","patch":{{"x":{},"y":3}}}}],"seq":3}}}}"#,
                x(1_000)
            ),
            // Our own rect's update echoed back would break the contract: counted, not timed.
            format!(
                r#"{{"type":"ELEMENTS_UPDATED","payload":{{"roomId":"r","userId":"lt-1","updates":[{{"id":"rect-1","patch":{{"x":{},"y":3}}}}],"seq":4}}}}"#,
                x(1_000)
            ),
            format!(
                r##"{{"type":"STROKE_PROGRESS","payload":{{"roomId":"r","userId":"lt-2","id":"2-0-500","points":[{{"x":7.0,"y":1.0}},{{"x":{},"y":1.0}}],"color":"#000","width":1.0}}}}"##,
                x(2_000)
            ),
            format!(
                r##"{{"type":"CANVAS_UPDATE","payload":{{"roomId":"r","canvasData":{{"v":5,"z":2,"id":"2-0-500","kind":"stroke","userId":"lt-2","strokeId":"2-0-500","roomId":"r","points":[{{"x":7.0,"y":1.0}},{{"x":{},"y":1.0}}],"color":"#000","width":1.0}},"userId":"lt-2","seq":5}}}}"##,
                x(2_500)
            ),
        ];
        for f in &frames {
            client.on_frame(f, 3_000);
        }
        let Client {
            recorder, tracker, ..
        } = client;
        recorder.finish(0, tracker.finish());
        let report = Report::build(sc, &collector.lock(), Extra::default());
        assert_eq!(report.drags.delivered, 1);
        assert_eq!(report.drags.latency.max_ms, 2.0);
        assert_eq!(report.progress.delivered, 1);
        assert_eq!(report.progress.latency.max_ms, 1.0);
        assert_eq!(report.strokes.delivered, 1);
        assert_eq!(report.strokes.latency.max_ms, 0.5);
        let s = &report.sequencing;
        assert_eq!((s.gaps, s.duplicates, s.self_echo), (0, 0, 1));
        let types = &report.connections.received_types;
        for t in ["ELEMENTS_ADDED", "STROKE_PROGRESS", "CANVAS_UPDATE"] {
            assert_eq!(types.get(t), Some(&1), "{t}: {types:?}");
        }
        assert_eq!(types.get("ELEMENTS_UPDATED"), Some(&2));
    }
}
