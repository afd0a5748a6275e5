//! One WebSocket session: reads client messages, applies them through the engine, and writes
//! what the hub queues for it, all in one task so a socket costs one task and two buffers.
//!
//! Ordering rules kept here:
//! - after a join, sequenced frames at or below the snapshot's seq are dropped (the snapshot
//!   has them), so the client sees every seq once;
//! - an op's `ACK` is sent when the hub hands back the op's own event ([`Item::Own`]), so
//!   it never overtakes an earlier event of the room, and a client can use the highest seq it
//!   has seen, ACKs included, as `since`.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::protocol::{ClientMessage, ParseError};
use super::session_end::SessionEnd;
use crate::domain::access::{CallerKind, Control, Role, role_of};
use crate::domain::board::Intent;
use crate::domain::element::{Element, ElementError, ElementLimits, MAX_BATCH, Patch, element_id};
use crate::domain::frames::Versions;
use crate::domain::record::EventFrames;
use crate::domain::rga::{CharId, TextOp};
use crate::domain::stroke::{StrokeInput, StrokeLimits};
use crate::domain::{ConnKey, Identity, PROTOCOL, RoomId, StrokeId, frames, protocol_version};
use crate::engine::{EngineError, JoinOutcome, JoinRequest, Op, OpOutcome, ViewBody};
use crate::hub::{Item, Legacy, Member, Outbound};

/// Bad frames tolerated before the connection is closed for abuse.
const MAX_STRIKES: u32 = 10;
/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How far behind what it was last sent a re-join of the same room may start and still count
/// as catching up (see [`Session::is_catch_up`]). Small: catch-ups run at the op rate and each
/// reads its events from the log, so a wide window would let one client pull many records a
/// second. The page's own catch-ups start a few events back; a far one takes the join budget.
const CATCH_UP_EVENTS: u64 = 16;
/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 64;

pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SLOW_CONSUMER: u16 = 1013;
}

/// The room this session is in.
struct Joined {
    room: RoomId,
    epoch: String,
    /// Highest seq the client has been sent.
    last_seq: u64,
    /// The client said it speaks v1.1; otherwise it is served the v1 subset.
    v11: bool,
    /// The caller's role here, checked at the join and kept current by control records
    /// (`Item::Control`): every sequenced op is checked against it without a Redis call.
    role: Role,
}

/// Transient frames a v1 client has no use for (it would ignore them), not sent to it.
const V11_ONLY: [&[u8]; 2] = [br#"{"type":"STROKE_PROGRESS""#, br#"{"type":"TEXT_CURSOR""#];

struct Session<S> {
    app: Arc<AppState>,
    socket: S,
    /// Shared with the hub, which re-announces this presence if it is ever swept.
    who: Arc<Identity>,
    /// Guests join link rooms only.
    kind: CallerKind,
    /// When the access token was issued (`None`: a guest's, never revoked).
    issued_at: Option<u64>,
    /// When this session last asked whether its user's sessions were revoked.
    revocation_checked: Option<Instant>,
    key: ConnKey,
    tx: mpsc::Sender<Outbound>,
    overflow: CancellationToken,
    joined: Option<Joined>,
    /// Bumped on every join, see [`Member::generation`].
    generation: u64,
    /// ACK frames waiting for their op's own event, by seq.
    pending_acks: VecDeque<(u64, String, Option<String>)>,
    cursor_limit: DefaultDirectRateLimiter,
    progress_limit: DefaultDirectRateLimiter,
    op_limit: DefaultDirectRateLimiter,
    /// Joins cost the room a presence broadcast and the joiner a whole board: a connection
    /// re-joining in a loop would flood both (issue 15, finding 4).
    join_limit: DefaultDirectRateLimiter,
    strikes: u32,
    /// Longest one socket write may take: two ping intervals, the same patience the liveness
    /// check has with a client that sends nothing.
    write_limit: Duration,
    /// Set once a write failed or stalled, so later writes (pending ACKs on the way out)
    /// give up at once instead of each waiting out `write_limit` again.
    write_dead: bool,
    /// The room left on the way to a close, for the session-end line.
    closed_room: Option<RoomId>,
    /// Frames read from and written to this client, for the session-end line.
    frames_in: u64,
    frames_out: u64,
}

/// One socket write, run under [`Session::write`]'s bounds.
enum Write {
    Send(Message),
    Feed(Message),
    Flush,
}

/// Why a socket write did not complete.
#[derive(Debug)]
enum WriteError {
    /// The transport failed: the peer is gone.
    Failed,
    /// Nothing moved for `write_limit`: the peer stopped reading.
    Stalled,
    /// The send queue overflowed while (or before) writing: a slow consumer.
    Overflow,
}

/// What handling one client frame asks of the loop.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// What the session needs of the access token it was opened with.
pub struct Token {
    pub who: Identity,
    /// A name-only guest: joins link rooms only.
    pub guest: bool,
    /// When it was issued, for the revocation check; `None` for guests, who have nothing to
    /// revoke.
    pub issued_at: Option<u64>,
    /// The session closes with 1008 then.
    pub expires_at: u64,
}

pub async fn run<S>(app: Arc<AppState>, socket: S, token: Token, _slot: OwnedSemaphorePermit)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let n = app.next_conn.fetch_add(1, Ordering::Relaxed);
    let key = ConnKey::new(&app.instance_id, n);
    let (tx, rx) = mpsc::channel(app.config.send_queue);
    let app_ping_secs = app.config.ping_interval_secs;
    let per_sec = |n: u32| Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
    let mut session = Session {
        cursor_limit: RateLimiter::direct(per_sec(app.config.cursor_per_sec)),
        progress_limit: RateLimiter::direct(per_sec(app.config.progress_per_sec)),
        op_limit: RateLimiter::direct(per_sec(app.config.ops_per_sec)),
        join_limit: RateLimiter::direct(join_quota(&app.config)),
        app,
        socket,
        who: Arc::new(token.who),
        kind: if token.guest {
            CallerKind::Guest
        } else {
            CallerKind::Account
        },
        issued_at: token.issued_at,
        revocation_checked: None,
        key,
        tx,
        overflow: CancellationToken::new(),
        joined: None,
        generation: 0,
        pending_acks: VecDeque::new(),
        strikes: 0,
        write_limit: Duration::from_secs(app_ping_secs * 2),
        write_dead: false,
        closed_room: None,
        frames_in: 0,
        frames_out: 0,
    };
    let started = std::time::Instant::now();
    session.app.metrics.connections.inc();
    tracing::debug!(conn = %session.key, user = %session.who.user_id, "session open");
    let (close_code, reason) = session.serve(rx, token.expires_at).await;
    let room = match session.joined.as_ref() {
        Some(joined) => Some(joined.room.clone()),
        None => session.closed_room.clone(),
    };
    session.leave_room().await;
    session.app.metrics.connections.dec();
    SessionEnd {
        conn: &session.key,
        user: &session.who.user_id,
        room: room.as_ref().map(|r| r as &dyn std::fmt::Display),
        lasted: started.elapsed(),
        close_code,
        reason,
        frames_in: session.frames_in,
        frames_out: session.frames_out,
    }
    .record(&session.app.metrics);
}

/// The close code recorded when the peer vanished without a close handshake.
const ABNORMAL: u16 = 1006;

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    /// Runs the session until it ends: the close code sent (or [`ABNORMAL`]) and why.
    async fn serve(
        &mut self,
        mut rx: mpsc::Receiver<Outbound>,
        expires_at: u64,
    ) -> (u16, &'static str) {
        let ping_every = Duration::from_secs(self.app.config.ping_interval_secs);
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut last_heard = Instant::now();
        let token_left = Duration::from_secs(expires_at.saturating_sub(crate::unix_now()));
        let expiry = tokio::time::sleep(token_left);
        tokio::pin!(expiry);
        // On SIGTERM each session waits a random share of the drain window before closing, so
        // the reconnecting clients spread over the other instances instead of stampeding.
        let draining = self.app.draining.clone();
        let drain_ms = self.app.config.drain_secs * 1000;
        let drain = async move {
            draining.cancelled().await;
            let spread = if drain_ms == 0 {
                0
            } else {
                rand::random_range(0..drain_ms)
            };
            tokio::time::sleep(Duration::from_millis(spread)).await;
        };
        tokio::pin!(drain);
        let overflow = self.overflow.clone();
        loop {
            // A reply to the client's own frame (an ERROR, a PONG) can be the write that
            // stalls; it gives up without ending the loop, so the loop checks here.
            if self.write_dead {
                return (ABNORMAL, "write stalled");
            }
            // Unbiased on purpose: a busy client must not starve its own outbound queue (nor
            // a busy room its inbound ops); tokio picks a ready branch at random.
            let flow = tokio::select! {
                () = overflow.cancelled() => self.slow_consumer(),
                () = &mut drain => Flow::Close(close::GOING_AWAY, "instance draining: reconnect"),
                () = &mut expiry => Flow::Close(close::POLICY, "token expired"),
                incoming = self.socket.next() => match incoming {
                    // The client closed (the library answers its close frame).
                    Some(Ok(Message::Close(frame))) => {
                        return (frame.map_or(1005, |f| f.code), "client closed");
                    }
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.on_message(message).await
                    }
                    // A frame over the hard cap: tungstenite refuses it before reading it
                    // in. The connection is still writable, so say why (1009) instead of
                    // dropping it.
                    Some(Err(e)) if too_long(&e) => {
                        Flow::Close(close::TOO_BIG, "frame too large")
                    }
                    _ => return (ABNORMAL, "client went away"),
                },
                Some(out) = rx.recv() => match self.write_batch(out, &mut rx).await {
                    Ok(flow) => flow,
                    Err(e) => match self.after_write_error(e) {
                        Ok(flow) => flow,
                        Err(end) => return end,
                    },
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        return (ABNORMAL, "missed two pings");
                    }
                    match self.write(Write::Send(Message::Ping(Default::default()))).await {
                        Ok(()) => Flow::Continue,
                        Err(e) => match self.after_write_error(e) {
                            Ok(flow) => flow,
                            Err(end) => return end,
                        },
                    }
                }
            };
            if let Flow::Close(code, reason) = flow {
                // Leave first: the room learns at once, whatever the close handshake costs
                // with a client whose socket buffer is full.
                self.closed_room = self.joined.as_ref().map(|j| j.room.clone());
                self.leave_room().await;
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                // Our close may wait behind a full buffer (a slow consumer that still reads
                // gets its 1013 this way), but no longer than any other write. Then wait
                // briefly for the client's close: dropping the socket with unread data would
                // reset the connection, and the client could lose the code.
                let close = Message::Close(Some(frame));
                let sent = tokio::time::timeout(self.write_limit, self.socket.send(close)).await;
                if matches!(sent, Ok(Ok(()))) {
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(message)) = self.socket.next().await {
                            if matches!(message, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
                return (code, reason);
            }
        }
    }

    /// How the loop goes on after a failed write: a 1013 close for an overflow (attempted,
    /// bounded by [`CLOSE_WAIT`]), or the session's end for a dead socket.
    fn after_write_error(&self, e: WriteError) -> Result<Flow, (u16, &'static str)> {
        match e {
            WriteError::Overflow => Ok(self.slow_consumer()),
            WriteError::Stalled => Err((ABNORMAL, "write stalled")),
            WriteError::Failed => Err((ABNORMAL, "write failed")),
        }
    }

    fn slow_consumer(&self) -> Flow {
        self.app.metrics.slow_consumers.inc();
        Flow::Close(close::SLOW_CONSUMER, "slow consumer: reconnect with since")
    }

    /// Every socket write goes through here, so none can hold the session longer than
    /// `write_limit`, and a queue overflow (the hub cancelling `overflow`) interrupts a write
    /// that is stuck on a client that reads nothing. Without this a full socket buffer parks
    /// the loop inside a write, where neither the 1013 close nor the ping timeout can fire.
    async fn write(&mut self, write: Write) -> Result<(), WriteError> {
        if self.write_dead {
            return Err(WriteError::Stalled);
        }
        if self.overflow.is_cancelled() {
            return Err(WriteError::Overflow);
        }
        let overflow = self.overflow.clone();
        let limit = self.write_limit;
        let socket = &mut self.socket;
        let io = async move {
            match write {
                Write::Send(message) => socket.send(message).await,
                Write::Feed(message) => socket.feed(message).await,
                Write::Flush => socket.flush().await,
            }
        };
        // The write first: one that completes at once (most feeds) never polls, and so never
        // registers, the timer or the overflow waiter.
        let result = tokio::select! {
            biased;
            done = io => done.map_err(|_| WriteError::Failed),
            () = overflow.cancelled() => Err(WriteError::Overflow),
            () = tokio::time::sleep(limit) => Err(WriteError::Stalled),
        };
        if matches!(result, Err(WriteError::Failed | WriteError::Stalled)) {
            self.write_dead = true;
        }
        result
    }

    async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), WriteError> {
        self.app.metrics.frames_out.inc();
        self.frames_out += 1;
        self.write(Write::Send(Message::Text(text.into()))).await
    }

    /// Buffers a frame without flushing; [`write_batch`](Self::write_batch) flushes.
    async fn feed_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), WriteError> {
        self.app.metrics.frames_out.inc();
        self.frames_out += 1;
        self.write(Write::Feed(Message::Text(text.into()))).await
    }

    /// Writes `first` and whatever else is already queued (up to a bound, so inbound gets its
    /// turn), then flushes once: one syscall for a burst instead of one per frame.
    async fn write_batch(
        &mut self,
        first: Outbound,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Result<Flow, WriteError> {
        self.app
            .metrics
            .send_queue_depth
            .observe((rx.len() + 1) as f64);
        let mut flow = self.on_outbound(first).await?;
        for _ in 1..WRITE_BATCH {
            if !matches!(flow, Flow::Continue) {
                break;
            }
            match rx.try_recv() {
                Ok(out) => flow = self.on_outbound(out).await?,
                Err(_) => break,
            }
        }
        self.write(Write::Flush).await?;
        Ok(flow)
    }

    /// Best effort: a failed write shows up as the socket ending on the next read.
    async fn reply(&mut self, text: String) {
        let _ = self.send_text(text).await;
    }

    async fn error(&mut self, code: &str, message: &str, reference: Option<&str>) {
        self.reply(frames::error(code, message, reference)).await;
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<Flow, WriteError> {
        if out.generation != self.generation || self.joined.is_none() {
            return Ok(Flow::Continue);
        }
        match out.item {
            Item::Frame {
                seq: None, bytes, ..
            } => {
                let v1 = self.joined.as_ref().is_some_and(|j| !j.v11);
                if !(v1 && V11_ONLY.iter().any(|p| bytes.starts_with(p))) {
                    self.feed_shared(bytes).await?;
                }
            }
            Item::Frame {
                seq: Some(seq),
                bytes,
                legacy,
            } => {
                let Some(joined) = self.joined.as_mut() else {
                    return Ok(Flow::Continue);
                };
                if seq <= joined.last_seq {
                    return Ok(Flow::Continue);
                }
                joined.last_seq = seq;
                match legacy.filter(|_| !joined.v11) {
                    Some(frames) => self.feed_legacy(&frames).await?,
                    None => self.feed_shared(bytes).await?,
                }
            }
            Item::Own { seq } => {
                if let Some(joined) = self.joined.as_mut() {
                    joined.last_seq = joined.last_seq.max(seq);
                }
                while self.pending_acks.front().is_some_and(|(s, ..)| *s <= seq) {
                    if let Some((_, ack, _)) = self.pending_acks.pop_front() {
                        self.feed_text(ack).await?;
                    }
                }
            }
            Item::Control(control) => return Ok(self.on_control(&control).await),
            Item::Resync { rebased } => {
                if let Some(joined) = self.joined.take() {
                    // Their ops are committed, and the events that would have released them
                    // may be the ones this instance missed: they go out now, before the board.
                    // After Redis lost writes, only for ops the room still holds; the others
                    // are answered as a timeout is, so the client resends them.
                    while let Some((_, ack, op_id)) = self.pending_acks.pop_front() {
                        let kept = match (&op_id, rebased) {
                            (Some(op_id), true) => self
                                .app
                                .engine
                                .op_recorded(&joined.room, &self.who.user_id, op_id)
                                .await
                                .unwrap_or(false),
                            _ => true,
                        };
                        if kept {
                            self.feed_text(ack).await?;
                        } else {
                            let error = frames::error(
                                "UNAVAILABLE",
                                "the shared state lost this op: not applied; retry with the same opId",
                                op_id.as_deref(),
                            );
                            self.feed_text(error).await?;
                        }
                    }
                    let since = Some((joined.last_seq, joined.epoch.clone()));
                    if !self.join(joined.room, since, joined.v11).await {
                        // The client is no longer in step and we cannot bring it back:
                        // closing makes it reconnect and re-join with its `since`.
                        return Ok(Flow::Close(
                            close::INTERNAL,
                            "lost sync: reconnect with since",
                        ));
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Someone's access to the room changed: re-read this caller's role, so the very next op is
    /// judged by it, and tell the client; out of the room if it may no longer see it.
    async fn on_control(&mut self, control: &Control) -> Flow {
        let Some(room) = self.joined.as_ref().map(|j| j.room.clone()) else {
            return Flow::Continue;
        };
        if control.deleted {
            self.leave_room().await;
            self.reply(frames::room_expired(room.as_str())).await;
            return Flow::Continue;
        }
        let role = match self.role_in(&room).await {
            Ok(role) => role,
            Err(e) => {
                // Unsure whether the caller keeps its rights: fail closed, out of the room. The
                // client re-joins and is checked afresh.
                tracing::warn!(%room, conn = %self.key, error = %e, "role re-check failed");
                None
            }
        };
        match role {
            None => {
                self.leave_room().await;
                self.reply(frames::access_revoked(room.as_str())).await;
            }
            Some(role) => {
                if let Some(joined) = self.joined.as_mut()
                    && joined.role != role
                {
                    joined.role = role;
                    let frame = frames::role_changed(&room, &self.who.user_id, role.as_str());
                    self.reply(frame).await;
                }
            }
        }
        Flow::Continue
    }

    /// This caller's role in `room`; `None` when it may not see it.
    async fn role_in(&mut self, room: &RoomId) -> Result<Option<Role>, EngineError> {
        let (meta, grants) = self.app.access.room_facts(room, &self.who.user_id).await?;
        Ok(meta.and_then(|m| role_of(&m.settings, &self.who.user_id, self.kind, grants)))
    }

    async fn feed_legacy(&mut self, frames: &Legacy) -> Result<(), WriteError> {
        for bytes in frames.iter() {
            self.feed_shared(bytes.clone()).await?;
        }
        Ok(())
    }

    async fn feed_shared(&mut self, bytes: bytes::Bytes) -> Result<(), WriteError> {
        match Utf8Bytes::try_from(bytes) {
            Ok(text) => self.feed_text(text).await,
            // Frames come from our own serializer; a non-UTF-8 one is a bug, not worth a close.
            Err(_) => Ok(()),
        }
    }

    /// Whether a join only catches this session up in the room it is in: same room and epoch,
    /// from at most [`CATCH_UP_EVENTS`] before what it was last sent.
    fn is_catch_up(&self, room: &RoomId, since: Option<&(u64, String)>) -> bool {
        match (&self.joined, since) {
            (Some(joined), Some((seq, epoch))) => {
                &joined.room == room
                    && &joined.epoch == epoch
                    && seq.saturating_add(CATCH_UP_EVENTS) >= joined.last_seq
            }
            _ => false,
        }
    }

    /// Whether the user's sessions were revoked after this token was issued (a stolen
    /// refresh token was detected, or the password was reset). Asked at most every
    /// `revocation_check_secs`, and only when the client sends a message: a socket that only
    /// watches costs nothing, and one that acts is stopped within that bound. An unreachable engine counts as not revoked: ops
    /// fail on their own then, and a blip must not close every socket.
    async fn revoked(&mut self) -> bool {
        let Some(issued_at) = self.issued_at else {
            return false;
        };
        let every = Duration::from_secs(self.app.config.revocation_check_secs);
        if self
            .revocation_checked
            .is_some_and(|at| at.elapsed() < every)
        {
            return false;
        }
        self.revocation_checked = Some(Instant::now());
        match self.app.engine.revoked_at(&self.who.user_id).await {
            Ok(Some(at)) => issued_at <= at,
            Ok(None) | Err(_) => false,
        }
    }

    async fn strike(&mut self, code: &str, message: &str, close_code: u16) -> Flow {
        self.strikes += 1;
        self.error(code, message, None).await;
        if self.strikes >= MAX_STRIKES {
            Flow::Close(close_code, "too many bad frames")
        } else {
            Flow::Continue
        }
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        self.app.metrics.frames_in.inc();
        self.frames_in += 1;
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self
                    .strike(
                        "BAD_MESSAGE",
                        "binary frames are not supported",
                        close::POLICY,
                    )
                    .await;
            }
            // Pings are answered by the library; pongs and closes only prove liveness here.
            _ => return Flow::Continue,
        };
        // Only what the client sends checks: pongs would make every idle socket ask Redis.
        if self.revoked().await {
            return Flow::Close(close::POLICY, "session revoked: sign in again");
        }
        if text.len() > self.app.config.max_frame_bytes {
            let message = format!("frame exceeds {} bytes", self.app.config.max_frame_bytes);
            return self.strike("TOO_LARGE", &message, close::TOO_BIG).await;
        }
        let parsed = ClientMessage::parse(text.as_str());
        let kind = parsed.as_ref().map_or("unknown", ClientMessage::kind);
        self.app.metrics.frame_type(kind);
        match parsed {
            Ok(message) => self.dispatch(message).await,
            Err(ParseError::Unknown(kind)) => {
                self.error("UNKNOWN_TYPE", &format!("unknown type {kind}"), None)
                    .await;
                Flow::Continue
            }
            Err(ParseError::Bad(why)) => self.strike("BAD_MESSAGE", &why, close::POLICY).await,
        }
    }

    async fn dispatch(&mut self, message: ClientMessage) -> Flow {
        match message {
            ClientMessage::Ping => self.reply(frames::pong()).await,
            ClientMessage::JoinRoom(join) => {
                let v11 = match join.protocol.as_deref() {
                    None => false,
                    Some(said) => {
                        let min = protocol_version(&self.app.config.min_protocol);
                        if protocol_version(said).is_none_or(|v| Some(v) < min) {
                            let message = format!(
                                "this page speaks protocol {said}; the server needs at least {}: reload",
                                self.app.config.min_protocol
                            );
                            self.error("UPGRADE_REQUIRED", &message, None).await;
                            return Flow::Continue;
                        }
                        true
                    }
                };
                let Some(room) = RoomId::parse(&join.room_id) else {
                    self.reply(frames::room_expired(&join.room_id)).await;
                    return Flow::Continue;
                };
                let since = join.since.zip(join.epoch);
                // The page re-joins its own room with `since` after each of its undos and redos
                // (a REPLAY tells it their effect) and to repair a gap: that is as frequent as
                // ops and as cheap, so it counts against the op budget. Any other join (another
                // room, a whole board, a far-back replay) counts against the join budget.
                let limit = if self.is_catch_up(&room, since.as_ref()) {
                    &self.op_limit
                } else {
                    &self.join_limit
                };
                if limit.check().is_err() {
                    self.app.metrics.rate_limited("join");
                    self.error(
                        "RATE_LIMITED",
                        "too many joins on this connection; wait and join again",
                        None,
                    )
                    .await;
                    return Flow::Continue;
                }
                self.join(room, since, v11).await;
            }
            ClientMessage::LeaveRoom(leave) => {
                if self.in_room(&leave.room_id).await.is_some() {
                    self.leave_room().await;
                }
            }
            ClientMessage::CursorMove(cursor) => {
                let Some(room) = self.in_room(&cursor.room_id).await else {
                    return Flow::Continue;
                };
                if !(cursor.x.is_finite() && cursor.y.is_finite()) {
                    return Flow::Continue;
                }
                if self.cursor_limit.check().is_err() {
                    self.app.metrics.rate_limited("cursor");
                    return Flow::Continue;
                }
                let frame = frames::cursor_move(&room, &self.who, cursor.x, cursor.y);
                // Cursors are ephemeral: one lost while Redis blips is not worth an error.
                let _ = self
                    .app
                    .engine
                    .publish_transient(&room, &self.key, frame)
                    .await;
            }
            ClientMessage::CanvasUpdate(update) => {
                let Some(room) = self.in_room(&update.room_id).await else {
                    return Flow::Continue;
                };
                let limits = StrokeLimits {
                    max_points: self.app.config.max_points,
                };
                let claimed_id = update.canvas_data.stroke_id.clone();
                match update
                    .canvas_data
                    .validate(&self.who.user_id, &room, limits)
                {
                    Ok(stroke) => {
                        let op_id = update.op_id.unwrap_or_else(|| stroke.stroke_id.to_string());
                        let intent = Intent::Stroke(Box::new(Element::from_stroke(stroke)));
                        self.apply(room, Some(op_id), intent).await;
                    }
                    Err(e) => {
                        let reference = update.op_id.or(claimed_id);
                        self.error("BAD_STROKE", &e.to_string(), reference.as_deref())
                            .await;
                    }
                }
            }
            ClientMessage::Undo(undo) => {
                if let Some(room) = self.in_room(&undo.room_id).await {
                    let target = undo.stroke_id.map(StrokeId::new);
                    self.apply(room, undo.op_id, Intent::Undo(target)).await;
                }
            }
            ClientMessage::Redo(redo) => {
                if let Some(room) = self.in_room(&redo.room_id).await {
                    let target = redo.stroke.and_then(|s| s.stroke_id).map(StrokeId::new);
                    self.apply(room, redo.op_id, Intent::Redo(target)).await;
                }
            }
            ClientMessage::ElementsAdd(add) => {
                let Some(room) = self.in_room(&add.room_id).await else {
                    return Flow::Continue;
                };
                let limits = self.element_limits();
                let parsed = batch("elements", &add.elements).and_then(|_| {
                    add.elements
                        .iter()
                        .enumerate()
                        .map(|(i, e)| {
                            Element::from_client(e, &self.who.user_id, &room, limits)
                                .map_err(|err| err.at(&format!("elements[{i}]")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                });
                self.apply_checked(room, add.op_id, parsed.map(Intent::Add))
                    .await;
            }
            ClientMessage::ElementsUpdate(update) => {
                let Some(room) = self.in_room(&update.room_id).await else {
                    return Flow::Continue;
                };
                let parsed = batch("updates", &update.updates).and_then(|_| {
                    update
                        .updates
                        .iter()
                        .enumerate()
                        .map(|(i, u)| {
                            let at = format!("updates[{i}]");
                            let id = element_id(&u.id).map_err(|e| e.at(&at))?;
                            Ok((id, Patch::from_client(&u.patch).map_err(|e| e.at(&at))?))
                        })
                        .collect::<Result<Vec<_>, ElementError>>()
                });
                self.apply_checked(room, update.op_id, parsed.map(Intent::Update))
                    .await;
            }
            ClientMessage::ElementsDelete(delete) => {
                let Some(room) = self.in_room(&delete.room_id).await else {
                    return Flow::Continue;
                };
                let parsed = batch("ids", &delete.ids).and_then(|_| {
                    delete
                        .ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| element_id(id).map_err(|e| e.at(&format!("ids[{i}]"))))
                        .collect::<Result<Vec<_>, _>>()
                });
                self.apply_checked(room, delete.op_id, parsed.map(Intent::Delete))
                    .await;
            }
            ClientMessage::TextEdit(edit) => {
                let Some(room) = self.in_room(&edit.room_id).await else {
                    return Flow::Continue;
                };
                let parsed = element_id(&edit.id).and_then(|id| {
                    batch("ops", &edit.ops)?;
                    let ops = edit
                        .ops
                        .iter()
                        .enumerate()
                        .map(|(i, op)| {
                            serde_json::from_value::<TextOp>(op.clone()).map_err(|_| ElementError {
                                field: format!("ops[{i}]"),
                                reason: "must be {after, first, text} or {delete: [charId]}".into(),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Intent::TextEdit { id, ops })
                });
                self.apply_checked(room, edit.op_id, parsed).await;
            }
            ClientMessage::TextCursor(cursor) => {
                let Some(room) = self.in_room(&cursor.room_id).await else {
                    return Flow::Continue;
                };
                // Transient like a mouse cursor: a bad or excess one is dropped without a word.
                let char_id = |c: &Option<String>| match c {
                    None => Some(None),
                    Some(text) => CharId::parse(text).map(Some),
                };
                let (Ok(id), Some(after)) = (element_id(&cursor.id), char_id(&cursor.after)) else {
                    return Flow::Continue;
                };
                let anchor = match &cursor.anchor {
                    None => None,
                    Some(anchor) => match char_id(anchor) {
                        Some(anchor) => Some(anchor),
                        None => return Flow::Continue,
                    },
                };
                if self.cursor_limit.check().is_err() {
                    self.app.metrics.rate_limited("cursor");
                    return Flow::Continue;
                }
                let frame = frames::text_cursor(
                    &room,
                    &self.who.user_id,
                    &id,
                    after.as_ref(),
                    anchor.as_ref().map(Option::as_ref),
                );
                let _ = self
                    .app
                    .engine
                    .publish_transient(&room, &self.key, frame)
                    .await;
            }
            ClientMessage::StrokeProgress(progress) => {
                let Some(room) = self.in_room(&progress.room_id).await else {
                    return Flow::Continue;
                };
                // A viewer's stroke will never be stored: others must not see it being drawn.
                if self.joined.as_ref().is_some_and(|j| !j.role.can_edit()) {
                    return Flow::Continue;
                }
                // Transient like a cursor: a bad or excess batch is dropped without a word. It is
                // checked as the stroke it will become.
                let input = StrokeInput {
                    stroke_id: element_id(&progress.id).ok().map(|id| id.to_string()),
                    points: Some(progress.points),
                    color: Some(progress.color),
                    width: Some(progress.width),
                };
                let limits = StrokeLimits {
                    max_points: self.app.config.max_points,
                };
                let Ok(stroke) = input.validate(&self.who.user_id, &room, limits) else {
                    return Flow::Continue;
                };
                if self.progress_limit.check().is_err() {
                    self.app.metrics.rate_limited("progress");
                    return Flow::Continue;
                }
                let frame = frames::stroke_progress(
                    &room,
                    &self.who.user_id,
                    &stroke.stroke_id,
                    &stroke.points,
                    &stroke.color,
                    stroke.width,
                );
                let _ = self
                    .app
                    .engine
                    .publish_transient(&room, &self.key, frame)
                    .await;
            }
        }
        Flow::Continue
    }

    fn element_limits(&self) -> ElementLimits {
        ElementLimits {
            max_points: self.app.config.max_points,
        }
    }

    /// Applies a parsed element op, or tells the client which field was wrong.
    async fn apply_checked(
        &mut self,
        room: RoomId,
        op_id: Option<String>,
        parsed: Result<Intent, ElementError>,
    ) {
        match parsed {
            Ok(intent) => self.apply(room, op_id, intent).await,
            Err(e) => {
                self.error("BAD_ELEMENT", &e.to_string(), op_id.as_deref())
                    .await
            }
        }
    }

    /// The joined room, if `room_id` names it; otherwise tells the client `NOT_IN_ROOM`.
    async fn in_room(&mut self, room_id: &str) -> Option<RoomId> {
        match &self.joined {
            Some(joined) if joined.room.as_str() == room_id => Some(joined.room.clone()),
            _ => {
                self.error("NOT_IN_ROOM", "join the room first", None).await;
                None
            }
        }
    }

    /// Joins `room`, answering with `INITIAL_STATE`, `REPLAY` or why not; true when joined.
    async fn join(&mut self, room: RoomId, since: Option<(u64, String)>, v11: bool) -> bool {
        match &self.joined {
            // Re-joining the same room (a client repairing a gap) keeps its presence: no
            // leave and come back for the others. Its pending ACKs go out now, because their
            // events were queued under the old generation.
            Some(joined) if joined.room == room => {
                while let Some((_, ack, _)) = self.pending_acks.pop_front() {
                    self.reply(ack).await;
                }
            }
            Some(_) => self.leave_room().await,
            None => {}
        }
        // A room the caller may not see answers exactly as one that does not exist (§6).
        let role = match self.role_in(&room).await {
            Ok(Some(role)) => role,
            Ok(None) => {
                if self.joined.as_ref().is_some_and(|j| j.room == room) {
                    self.leave_room().await;
                }
                self.reply(frames::room_expired(room.as_str())).await;
                return false;
            }
            Err(e) => {
                self.engine_error(e, None).await;
                return false;
            }
        };
        let app = self.app.clone();
        self.generation += 1;
        app.hub.add(
            &room,
            Member {
                key: self.key.clone(),
                who: self.who.clone(),
                generation: self.generation,
                tx: self.tx.clone(),
                overflow: self.overflow.clone(),
            },
        );
        // A client far behind gets the board, not a long replay: the engine decides that where
        // it reads the log (`EngineSettings::replay_max`), in the same call.
        let outcome = app
            .engine
            .join(JoinRequest {
                room: &room,
                conn: &self.key,
                who: &self.who,
                since: since.as_ref().map(|(seq, epoch)| (*seq, epoch.as_str())),
            })
            .await;
        let view = match outcome {
            Ok(JoinOutcome::Joined(view)) => view,
            Ok(JoinOutcome::Missing) => {
                app.hub.remove(&room, &self.key);
                self.reply(frames::room_expired(room.as_str())).await;
                return false;
            }
            Err(e) => {
                app.hub.remove(&room, &self.key);
                self.engine_error(e, None).await;
                return false;
            }
        };
        app.hub.note_seq(&room, view.seq, &view.epoch);
        let versions = v11.then_some(Versions {
            protocol: PROTOCOL,
            min_protocol: &app.config.min_protocol,
        });
        let frame = match &view.body {
            ViewBody::Snapshot(board) => {
                frames::initial_state(&room, board, view.seq, &view.epoch, &view.users, versions)
            }
            ViewBody::Replay { from_seq, records } => {
                let events = replay_frames(&room, records, v11);
                let events = frames::raw_list(&events);
                frames::replay(
                    &room,
                    &view.epoch,
                    *from_seq,
                    view.seq,
                    &events,
                    &view.users,
                    versions,
                )
            }
        };
        let count = (!view.announced).then(|| frames::user_count(&room, view.users.len()));
        self.joined = Some(Joined {
            room,
            epoch: view.epoch,
            last_seq: view.seq,
            v11,
            role,
        });
        self.reply(frame).await;
        // The room was not told of a re-join; the joiner still gets its count after the state.
        if let Some(count) = count {
            self.reply(count).await;
        }
        true
    }

    /// Leaves the current room: presence removed and the room told, then the pending ACKs go
    /// out (their ops are durable); queued frames of the room are dropped. The room is told
    /// first because writing the ACKs can take up to the write bound on a stuck socket.
    async fn leave_room(&mut self) {
        let Some(joined) = self.joined.take() else {
            return;
        };
        self.app.hub.remove(&joined.room, &self.key);
        if let Err(e) = self.app.engine.leave(&joined.room, &self.key).await {
            // Presence of a live instance can only be cleared by that instance: if this fails,
            // the entry lingers until the room expires; log it.
            tracing::warn!(room = %joined.room, conn = %self.key, error = %e, "leave failed");
        }
        while let Some((_, ack, _)) = self.pending_acks.pop_front() {
            self.reply(ack).await;
        }
    }

    async fn apply(&mut self, room: RoomId, op_id: Option<String>, intent: Intent) {
        // The op id is stored with the op (idempotency record, log): bounded like any id.
        if op_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > crate::domain::ids::MAX_ID_LEN)
        {
            let message = format!(
                "opId must be 1 to {} bytes; nothing was applied",
                crate::domain::ids::MAX_ID_LEN
            );
            self.error("BAD_MESSAGE", &message, None).await;
            return;
        }
        if self.joined.as_ref().is_some_and(|j| !j.role.can_edit()) {
            self.error(
                "FORBIDDEN",
                "viewers cannot change the board; nothing was applied",
                op_id.as_deref(),
            )
            .await;
            return;
        }
        if self.op_limit.check().is_err() {
            self.app.metrics.rate_limited("ops");
            self.error(
                "RATE_LIMITED",
                "too many operations; slow down",
                op_id.as_deref(),
            )
            .await;
            return;
        }
        let app = self.app.clone();
        let started = std::time::Instant::now();
        let kind = intent.name();
        let op = Op {
            who: &self.who,
            conn: &self.key,
            op_id: op_id.as_deref(),
            intent,
        };
        let outcome = app.engine.apply(&room, op).await;
        app.metrics.op_done(kind, started.elapsed());
        let reference = op_id.as_deref();
        match outcome {
            Ok(OpOutcome::Applied { seq, ack_id }) => {
                app.metrics.ops_applied.inc();
                app.activity.record(&self.who.user_id);
                let ack = frames::ack(reference, seq, ack_id.as_ref(), false);
                self.pending_acks.push_back((seq, ack, op_id.clone()));
            }
            Ok(OpOutcome::Duplicate { seq, ack_id }) => {
                self.reply(frames::ack(reference, seq, ack_id.as_ref(), true))
                    .await;
            }
            Ok(OpOutcome::RoomMissing) => {
                self.joined = None;
                app.hub.remove(&room, &self.key);
                self.reply(frames::room_expired(room.as_str())).await;
            }
            Ok(OpOutcome::Refused(refusal)) => {
                self.error(refusal.code(), &refusal.message(), reference)
                    .await;
            }
            Err(e) => self.engine_error(e, reference).await,
        }
    }

    async fn engine_error(&mut self, e: EngineError, reference: Option<&str>) {
        let message = match &e {
            EngineError::Unavailable(detail) => {
                // A timeout cannot tell whether Redis ran the op: say so. A resend with the same
                // opId is safe either way (answered from the idempotency record if it ran).
                tracing::warn!(conn = %self.key, %detail, "op unconfirmed: redis unavailable");
                "shared state did not answer: the op may not have been applied; resend it with the same opId (never applied twice)".to_owned()
            }
            EngineError::Internal(detail) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(error_id = %id, conn = %self.key, %detail, "engine failure");
                format!(
                    "internal error {id}: the op may not have been applied; resend it with the same opId (never applied twice)"
                )
            }
        };
        self.error("UNAVAILABLE", &message, reference).await;
    }
}

/// `joins_per_minute` on average, `join_burst` at once (a page joins once, and again only
/// to repair a gap).
fn join_quota(config: &crate::config::Config) -> Quota {
    let per_minute = NonZeroU32::new(config.joins_per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(config.join_burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

/// Whether a read failed because the client sent more than the hard frame cap.
fn too_long(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// A batch holds 1 to [`MAX_BATCH`] items.
fn batch<T>(name: &str, items: &[T]) -> Result<(), ElementError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ElementError {
            field: name.to_owned(),
            reason: format!("must hold 1 to {MAX_BATCH} items"),
        });
    }
    Ok(())
}

/// The frames of logged records as a joiner of that protocol sees them, in order.
fn replay_frames(room: &RoomId, records: &[String], v11: bool) -> Vec<String> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let Some(event) = EventFrames::build(room, record) else {
            continue;
        };
        match event.legacy.filter(|_| !v11) {
            Some(legacy) => out.extend(legacy),
            None => out.push(event.frame),
        }
    }
    out
}
