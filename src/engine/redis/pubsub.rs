//! The room event feed of an instance: one RESP3 connection on which it subscribes to room
//! channels, and every message handed to the hub in seq order.
//!
//! What it subscribes to is `pubsub_mode` (`docs/REDIS.md`, "Channels"): `pattern` holds one
//! `PSUBSCRIBE room:*`; `room` and `sharded` hold one `SUBSCRIBE` / `SSUBSCRIBE room:{id}` per
//! room that has local sockets, taken before a socket's first join reads the room (so nothing
//! published after that read can be missed) and dropped [`Feed`]'s linger after the last local
//! socket left.
//!
//! Ordering repair lives here. When the hub reports a hole (this instance missed messages,
//! e.g. Redis cut the subscriber off, or the feed's queue overflowed), the missing events are
//! read from the room's log and delivered first. After a reconnect every local room is
//! subscribed again and refilled from its last delivered seq the same way, and so is a room
//! subscribed late (a subscribe that failed and was retried). Where the log no longer reaches
//! back, the room's sessions re-join.
//!
//! On a Redis Cluster (`redis_mode = cluster`) the feed is one cluster connection, which sends
//! each `SSUBSCRIBE` to the master owning the room's slot (one connection per node) and each
//! `SUBSCRIBE`/`PSUBSCRIBE` to one node (a `PUBLISH` reaches every node). A node that drops its
//! connection (a restart, a failover) is treated like a lost feed: everything is subscribed
//! again, on the current owners, and refilled. A node that moves a room's slot away sends
//! `sunsubscribe` by itself: that room is subscribed again on its new owner and refilled.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::{Inner, LogRead};
use crate::config::PubsubMode;
use crate::domain::access::Control;
use crate::domain::{ConnKey, RoomId, frames};
use crate::hub::{Delivered, Delivery, Position, fingerprint};

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A subscriber that gets no answer to a PING this long after sending it is presumed dead
/// (a half-open TCP connection would otherwise look like a quiet one forever).
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads of the log tried before a room's sessions are told to re-join instead.
const FILL_ATTEMPTS: u32 = 3;
/// Messages received and not yet handed to the hub. The connection's reader cannot wait, so
/// past this a message is dropped and every local room refilled from its log (a burst this
/// large means the relay is far behind anyway).
const FEED_QUEUE: usize = 8192;
/// Room subscriptions sent in one command (or at once, for `SSUBSCRIBE`) on a resubscribe.
const SUBSCRIBE_BATCH: usize = 128;
/// How often subscriptions are compared with the rooms that have local sockets, at most.
const RECONCILE_EVERY_MAX: Duration = Duration::from_secs(1);
const RECONCILE_EVERY_MIN: Duration = Duration::from_millis(100);

/// What the feed connects with: RESP3 to one Redis, or to a cluster.
// One per instance, built once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum FeedClient {
    Single(redis::Client),
    /// The configured node and its TLS roots: each (re)connect also seeds the client with
    /// every node the engine's own connection knows then, since the configured one may be
    /// the node that just died.
    Cluster {
        seed: redis::ConnectionInfo,
        certs: Option<redis::TlsCertificates>,
    },
}

/// The feed's live connection.
#[derive(Clone)]
enum FeedConn {
    Single(MultiplexedConnection),
    /// One connection per node, each subscription on the node its channel hashes to.
    Cluster(ClusterConnection),
}

impl FeedConn {
    async fn ping(&mut self) -> redis::RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Single(c) => ping.query_async(c).await,
            // Every node: a half-open connection to any of them would stall its rooms.
            Self::Cluster(c) => ping.query_async(c).await,
        }
    }
}

/// What this instance is subscribed to, shared by the relay task and joining sessions.
pub(super) struct Feed {
    mode: PubsubMode,
    /// On a Redis Cluster: a room subscription may fail for one node while the others work,
    /// and a node may drop a room's subscription by itself (its slot moved).
    cluster: bool,
    /// A room whose last local socket left stays subscribed this long, so a socket that
    /// reconnects or a room that people keep entering and leaving does not flap.
    linger: Duration,
    /// Held across a (un)subscribe's round trip, so the commands for one room reach Redis in
    /// the order they were decided in (an UNSUBSCRIBE can never overtake a later SUBSCRIBE).
    state: tokio::sync::Mutex<FeedState>,
    /// Rooms unsubscribed whose confirmation the relay has not yet read, with how many. Their
    /// messages still queued were published before the room's next subscription and before
    /// any join that needs them could read the room (such a join waits for the unsubscribe):
    /// delivering them would only start the room's position behind its joiner's snapshot and
    /// cost a useless read of the log. A plain mutex: never held across an await.
    closing: parking_lot::Mutex<HashMap<String, u32>>,
}

#[derive(Default)]
struct FeedState {
    /// The live feed connection; `None` while it is down (a reconnect then subscribes every
    /// local room and refills it).
    conn: Option<FeedConn>,
    /// Rooms subscribed on `conn` (`room`/`sharded` only), each with the moment it was first
    /// seen without local sockets.
    rooms: HashMap<RoomId, Option<Instant>>,
}

impl Feed {
    pub(super) fn new(mode: PubsubMode, linger: Duration, cluster: bool) -> Self {
        Self {
            mode,
            cluster,
            linger,
            state: tokio::sync::Mutex::default(),
            closing: parking_lot::Mutex::default(),
        }
    }

    /// The command room scripts and transient messages publish with.
    pub(super) fn publish_command(&self) -> &'static str {
        match self.mode {
            PubsubMode::Sharded => "SPUBLISH",
            PubsubMode::Pattern | PubsubMode::Room => "PUBLISH",
        }
    }

    fn reconcile_every(&self) -> Duration {
        (self.linger / 2).clamp(RECONCILE_EVERY_MIN, RECONCILE_EVERY_MAX)
    }
}

/// Makes sure `room` is subscribed before a local socket reads it (its join), so that every
/// event published after that read reaches this instance. A room that already had sockets
/// here but was not subscribed (its subscribe failed) is refilled from its log first.
/// Without a feed connection it returns at once: the reconnect will subscribe and refill.
pub(super) async fn ensure(inner: &Inner, room: &RoomId) {
    if inner.feed.mode == PubsubMode::Pattern {
        return;
    }
    let mut state = inner.feed.state.lock().await;
    if let Some(idle) = state.rooms.get_mut(room) {
        *idle = None;
        return;
    }
    let Some(conn) = state.conn.clone() else {
        return;
    };
    let channel = inner.keys.channel(room);
    let subscribed = tokio::time::timeout(
        super::OP_TIMEOUT,
        subscribe(inner.feed.mode, conn, &[channel]),
    )
    .await;
    // Only what was delivered before the subscription took effect can have a hole after it;
    // a position set later (a join that read the room since) is already covered.
    let position = inner.hub.position(room);
    match subscribed {
        Ok(Ok(())) => {
            state.rooms.insert(room.clone(), None);
            inner
                .hub
                .stats
                .subscribed_rooms
                .set(state.rooms.len() as i64);
        }
        // The reconciler retries while the room has sockets here; until then the room's
        // events come late (filled from the log), not never.
        Ok(Err(e)) => tracing::warn!(%room, error = %e, "cannot subscribe to a room"),
        Err(_) => tracing::warn!(%room, "subscribing to a room timed out"),
    }
    drop(state);
    if let Some(position) = position {
        fill(inner, room, position).await;
    }
}

/// The address of another node, over the same transport (TLS or not) as the configured one.
fn node_addr(like: &redis::ConnectionAddr, host: String, port: u16) -> redis::ConnectionAddr {
    match like {
        redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => redis::ConnectionAddr::Tcp(host, port),
    }
}

/// Subscribes `channels` on the feed connection, in the mode's command.
async fn subscribe(
    mode: PubsubMode,
    conn: FeedConn,
    channels: &[String],
) -> redis::RedisResult<()> {
    match conn {
        FeedConn::Single(mut conn) => match mode {
            PubsubMode::Pattern => conn.psubscribe(channels).await,
            PubsubMode::Room => conn.subscribe(channels).await,
            // The client has no SSUBSCRIBE outside its cluster connection. Sent raw, one
            // channel a command, its single confirmation is the command's reply (as in a
            // cluster, where one SSUBSCRIBE may only name channels of one slot anyway); many go
            // out pipelined.
            PubsubMode::Sharded => {
                let sends = channels.iter().map(|channel| {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("SSUBSCRIBE")
                            .arg(channel)
                            .query_async::<()>(&mut conn)
                            .await
                    }
                });
                futures::future::try_join_all(sends).await.map(|_| ())
            }
        },
        // One channel a command: each goes to the node its slot says (in sharded mode, the
        // one owning the room; a MOVED answer is followed by the client).
        FeedConn::Cluster(conn) => {
            let sends = channels.iter().map(|channel| {
                let mut conn = conn.clone();
                async move {
                    match mode {
                        PubsubMode::Pattern => conn.psubscribe(channel).await,
                        PubsubMode::Room => conn.subscribe(channel).await,
                        PubsubMode::Sharded => conn.ssubscribe(channel).await,
                    }
                }
            });
            futures::future::try_join_all(sends).await.map(|_| ())
        }
    }
}

async fn unsubscribe(mode: PubsubMode, conn: FeedConn, channel: &str) -> redis::RedisResult<()> {
    match (conn, mode) {
        (_, PubsubMode::Pattern) => Ok(()),
        (FeedConn::Single(mut conn), PubsubMode::Room) => conn.unsubscribe(channel).await,
        (FeedConn::Single(mut conn), PubsubMode::Sharded) => {
            redis::cmd("SUNSUBSCRIBE")
                .arg(channel)
                .query_async::<()>(&mut conn)
                .await
        }
        (FeedConn::Cluster(mut conn), PubsubMode::Room) => conn.unsubscribe(channel).await,
        (FeedConn::Cluster(mut conn), PubsubMode::Sharded) => conn.sunsubscribe(channel).await,
    }
}

/// A transient message: `{"except":"<conn>","lossy":true,"frame":{...}}` (sequenced events
/// are published as their log records, `{"seq":N,...}`: see `domain::record`).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    except: Option<Cow<'a, str>>,
    #[serde(default)]
    lossy: bool,
    #[serde(borrow)]
    frame: &'a RawValue,
}

/// A published message as the hub takes it: a sequenced op's log record or a presence change
/// (their frames built here, once for every local member), or a transient envelope.
pub(super) fn parse_message(room: &RoomId, payload: &[u8]) -> Option<Vec<Delivery>> {
    if payload.starts_with(br#"{"seq":"#) {
        return Some(vec![crate::engine::delivery(
            room,
            std::str::from_utf8(payload).ok()?,
        )?]);
    }
    if payload.starts_with(br#"{"presence":"#) {
        let frames = frames::presence(room, std::str::from_utf8(payload).ok()?)?;
        return Some(
            frames
                .into_iter()
                .map(|(except, frame)| Delivery {
                    seq: None,
                    origin: except.map(|k| ConnKey::from_raw(&k)),
                    lossy: false,
                    frame: Bytes::from(frame),
                    legacy: None,
                })
                .collect(),
        );
    }
    let env: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    Some(vec![Delivery {
        seq: None,
        origin: env.except.map(|k| ConnKey::from_raw(&k)),
        lossy: env.lossy,
        frame: Bytes::copy_from_slice(env.frame.get().as_bytes()),
        legacy: None,
    }])
}

pub(super) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    while !shutdown.is_cancelled() {
        match connect(&inner).await {
            Ok((conn, pushes, overflow)) => {
                backoff = BACKOFF_MIN;
                inner.pubsub_up.store(true, Ordering::Relaxed);
                tracing::info!(mode = inner.feed.mode.as_str(), "subscribed to room events");
                if !std::mem::take(&mut first) {
                    inner.hub.stats.feed_resubscribed.inc();
                }
                refill(&inner).await;
                relay(&inner, conn, pushes, &overflow, &shutdown).await;
                inner.pubsub_up.store(false, Ordering::Relaxed);
                let mut state = inner.feed.state.lock().await;
                state.conn = None;
                state.rooms.clear();
                inner.feed.closing.lock().clear();
                inner.hub.stats.subscribed_rooms.set(0);
                drop(state);
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!("lost the pub/sub connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to room events")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A subscribed feed: its connection, the messages it receives, and whether any were dropped.
type Connected = (FeedConn, mpsc::Receiver<PushInfo>, Arc<AtomicBool>);

/// Opens the feed connection and subscribes what this instance needs: the pattern, or every
/// room with local sockets.
async fn connect(inner: &Inner) -> redis::RedisResult<Connected> {
    let (tx, pushes) = mpsc::channel(FEED_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let overflowed = overflow.clone();
    // Called by the connection's reader, which must not wait: a full queue drops the message
    // and flags it; the relay then refills every room from its log.
    let sender = move |info: PushInfo| match tx.try_send(info) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => {
            overflowed.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(TrySendError::Closed(_)) => Err(()),
    };
    let mode = inner.feed.mode;
    let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "timed out subscribing"));
    let connecting = async {
        match &inner.pubsub_client {
            FeedClient::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(super::OP_TIMEOUT))
                    .set_response_timeout(Some(super::OP_TIMEOUT))
                    .set_push_sender(sender);
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(FeedConn::Single)
            }
            FeedClient::Cluster { seed, certs } => {
                let mut seeds: Vec<redis::ConnectionInfo> = inner
                    .store
                    .cluster_nodes(super::OP_TIMEOUT)
                    .await
                    .into_iter()
                    .map(|(host, port)| seed.clone().set_addr(node_addr(seed.addr(), host, port)))
                    .collect();
                seeds.push(seed.clone());
                let mut builder = ClusterClientBuilder::new(seeds)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
                if let Some(certs) = certs {
                    builder = builder.certs(certs.clone());
                }
                let client = builder.build()?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(super::OP_TIMEOUT)
                    .set_response_timeout(super::OP_TIMEOUT)
                    .set_push_sender(sender);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(FeedConn::Cluster)
            }
        }
    };
    let conn = tokio::time::timeout(super::OP_TIMEOUT, connecting)
        .await
        .map_err(|_| timed_out())??;
    // Joins wait from here until every room is subscribed: each then finds its room
    // subscribed, or (had it come after the listing) subscribes it itself.
    let mut state = inner.feed.state.lock().await;
    let rooms = inner.hub.rooms();
    let channels: Vec<String> = match mode {
        PubsubMode::Pattern => vec![inner.keys.channel_pattern()],
        PubsubMode::Room | PubsubMode::Sharded => {
            rooms.iter().map(|room| inner.keys.channel(room)).collect()
        }
    };
    let mut subscribed = Vec::with_capacity(rooms.len());
    for (i, batch) in channels.chunks(SUBSCRIBE_BATCH).enumerate() {
        let done = tokio::time::timeout(super::OP_TIMEOUT, subscribe(mode, conn.clone(), batch))
            .await
            .map_err(|_| timed_out())
            .and_then(|r| r);
        match done {
            Ok(()) => subscribed.extend(rooms.iter().skip(i * SUBSCRIBE_BATCH).take(batch.len())),
            // On a cluster one node may be down (a failover under way) while the others serve:
            // the reconciler subscribes these rooms (and refills them) once it can.
            Err(e) if inner.feed.cluster && mode != PubsubMode::Pattern => {
                tracing::warn!(error = %e, "cannot subscribe some rooms yet; retrying")
            }
            Err(e) => return Err(e),
        }
    }
    state.conn = Some(conn.clone());
    state.rooms.clear();
    if mode != PubsubMode::Pattern {
        state
            .rooms
            .extend(subscribed.into_iter().map(|room| (room.clone(), None)));
    }
    inner
        .hub
        .stats
        .subscribed_rooms
        .set(state.rooms.len() as i64);
    Ok((conn, pushes, overflow))
}

async fn relay(
    inner: &Inner,
    mut conn: FeedConn,
    mut pushes: mpsc::Receiver<PushInfo>,
    overflow: &AtomicBool,
    shutdown: &CancellationToken,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut reconcile = tokio::time::interval(inner.feed.reconcile_every());
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_room = inner.feed.mode != PubsubMode::Pattern;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            push = pushes.recv() => match push {
                Some(push) => {
                    if !handle_push(inner, push).await {
                        return;
                    }
                    if overflow.swap(false, Ordering::Relaxed) {
                        tracing::warn!("the room event feed overflowed; refilling from the logs");
                        inner.hub.stats.feed_overflows.inc();
                        refill(inner).await;
                    }
                }
                None => return,
            },
            _ = ping.tick() => {
                let answered = tokio::time::timeout(PING_TIMEOUT, conn.ping());
                if !matches!(answered.await, Ok(Ok(()))) {
                    if !inner.feed.cluster {
                        return;
                    }
                    // A cluster with a node down (a failover under way, a replica restarting)
                    // still serves the other nodes' rooms: starting the feed over would only
                    // make this instance unready until the node is back. The node's dropped
                    // connection already started the feed over; what a ping can still catch
                    // is a silent one, so every room is subscribed again (a no-op where it
                    // holds) and refilled.
                    tracing::warn!("a cluster node does not answer the feed's ping");
                    if per_room {
                        inner.feed.state.lock().await.rooms.clear();
                    } else {
                        refill(inner).await;
                    }
                }
            }
            _ = reconcile.tick(), if per_room => reconcile_rooms(inner).await,
        }
    }
}

/// One message from the connection; false when it reports the connection lost.
async fn handle_push(inner: &Inner, push: PushInfo) -> bool {
    let mut data = push.data.into_iter();
    let (channel, payload) = match push.kind {
        // On a cluster, any node's connection: the client reconnects it and subscribes again,
        // but what was published meanwhile is only in the logs, so the feed starts over.
        PushKind::Disconnection => return false,
        // Our own unsubscribes; and on a cluster, a node's `sunsubscribe` sent by itself when
        // the room's slot moved to another node.
        PushKind::Unsubscribe | PushKind::SUnsubscribe => {
            if let Some(Value::BulkString(channel)) = data.next() {
                let channel = String::from_utf8_lossy(&channel);
                let ours = {
                    let mut closing = inner.feed.closing.lock();
                    match closing.get_mut(channel.as_ref()) {
                        Some(n) => {
                            *n -= 1;
                            if *n == 0 {
                                closing.remove(channel.as_ref());
                            }
                            true
                        }
                        None => false,
                    }
                };
                if !ours && let Some(room) = inner.keys.room_of_channel(&channel) {
                    // No longer subscribed: the reconciler subscribes it on the slot's new
                    // owner and refills it from the log, as after any lost subscription.
                    tracing::info!(%room, "a node dropped the room's subscription (slot moved)");
                    inner.feed.state.lock().await.rooms.remove(&room);
                }
            }
            return true;
        }
        PushKind::Message | PushKind::SMessage => (data.next(), data.next()),
        PushKind::PMessage => (data.nth(1), data.next()),
        // Subscription confirmations and anything else carry no room event.
        _ => return true,
    };
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (channel, payload)
    else {
        return true;
    };
    let stats = &inner.hub.stats;
    stats.feed_messages.inc();
    stats
        .feed_bytes
        .inc_by((channel.len() + payload.len()) as u64);
    let Ok(channel) = std::str::from_utf8(&channel) else {
        return true;
    };
    if inner.feed.closing.lock().contains_key(channel) {
        return true;
    }
    handle(inner, channel, &payload).await;
    true
}

/// Brings the room subscriptions in line with the rooms that have local sockets: rooms left
/// for longer than the linger are unsubscribed, and a room with sockets but no subscription
/// (its subscribe failed) is subscribed and refilled.
async fn reconcile_rooms(inner: &Inner) {
    let mut state = inner.feed.state.lock().await;
    let Some(conn) = state.conn.clone() else {
        return;
    };
    let local: HashSet<RoomId> = inner.hub.rooms().into_iter().collect();
    let now = Instant::now();
    let mut gone = Vec::new();
    for (room, idle) in state.rooms.iter_mut() {
        if local.contains(room) {
            *idle = None;
        } else if now.duration_since(*idle.get_or_insert(now)) >= inner.feed.linger {
            gone.push(room.clone());
        }
    }
    for room in gone {
        let channel = inner.keys.channel(&room);
        *inner
            .feed
            .closing
            .lock()
            .entry(channel.clone())
            .or_default() += 1;
        let done = tokio::time::timeout(
            super::OP_TIMEOUT,
            unsubscribe(inner.feed.mode, conn.clone(), &channel),
        )
        .await;
        if matches!(done, Ok(Ok(()))) {
            state.rooms.remove(&room);
        } else {
            // Still subscribed as far as we know; the next pass tries again.
            tracing::debug!(%room, "cannot unsubscribe from a room");
        }
    }
    let missing: Vec<RoomId> = local
        .into_iter()
        .filter(|room| !state.rooms.contains_key(room))
        .collect();
    let mut added = Vec::new();
    for room in missing {
        let channel = inner.keys.channel(&room);
        let done = tokio::time::timeout(
            super::OP_TIMEOUT,
            subscribe(inner.feed.mode, conn.clone(), &[channel]),
        )
        .await;
        if matches!(done, Ok(Ok(()))) {
            state.rooms.insert(room.clone(), None);
            // As in `ensure`: the position when the subscription took effect.
            if let Some(position) = inner.hub.position(&room) {
                added.push((room, position));
            }
        }
    }
    inner
        .hub
        .stats
        .subscribed_rooms
        .set(state.rooms.len() as i64);
    drop(state);
    for (room, position) in added {
        fill(inner, &room, position).await;
    }
}

async fn handle(inner: &Inner, channel: &str, payload: &[u8]) {
    let Some(room) = inner.keys.room_of_channel(channel) else {
        return;
    };
    // Most rooms have no member on any given instance: skip them before parsing.
    if !inner.hub.is_local(&room) {
        return;
    }
    if payload.starts_with(REBASED) {
        // Another instance (or a join) found the room gone back in time and gave it a new
        // epoch: every session re-joins, and gets the board.
        tracing::warn!(%room, "the room lost confirmed writes; its sessions re-join");
        inner.hub.rebased(&room);
        return;
    }
    if payload.starts_with(Control::PREFIX) {
        match Control::parse(payload) {
            Some(control) => inner.hub.control(&room, &Arc::new(control)),
            None => tracing::warn!(%room, "unreadable control record"),
        }
        return;
    }
    let Some(events) = parse_message(&room, payload) else {
        tracing::warn!(%room, "unreadable room message");
        return;
    };
    for event in &events {
        match inner.hub.deliver(&room, event) {
            Delivered::Gap { after } => {
                tracing::info!(%room, after, seq = ?event.seq, "filling a hole from the log");
                if let Some(position) = inner.hub.position(&room) {
                    fill(inner, &room, position).await;
                }
                inner.hub.deliver(&room, event);
            }
            Delivered::Diverged => {
                // Another event under the seq last delivered: the log says which is true.
                tracing::warn!(%room, seq = ?event.seq, "a seq came back with another event");
                if let Some(position) = inner.hub.position(&room) {
                    fill(inner, &room, position).await;
                }
            }
            Delivered::Done | Delivered::Stale => {}
        }
    }
}

/// What a rebased room's message starts with (`lua/rebase.lua`, `lua/join.lua`).
const REBASED: &[u8] = br#"{"rebased":"#;

/// Delivers the logged events after the delivered `position`; where that is impossible, makes
/// the room re-join. The read is retried briefly: right after Redis comes back, the first
/// command on a stale connection fails while the connection is re-established.
///
/// It is also where a room that went back in time is noticed (Redis lost confirmed writes: a
/// failover to a lagging replica, a lost AOF tail): its seq is below the position, or the
/// event the log holds at the position is not the one delivered there, or its epoch is not the
/// one the position belongs to. The room then gets a new epoch and its sessions re-join (see
/// [`rebase`]).
async fn fill(inner: &Inner, room: &RoomId, position: Position) {
    let mut attempt = 0;
    let read = loop {
        attempt += 1;
        match inner.log_after(room, position.seq).await {
            Ok(read) => break read,
            Err(e) if attempt >= FILL_ATTEMPTS => {
                tracing::warn!(%room, error = %e, "cannot read the log; sessions will re-join");
                return inner.hub.resync(room);
            }
            Err(_) => tokio::time::sleep(BACKOFF_MIN).await,
        }
    };
    let other_epoch = |epoch: &str| position.epoch.as_deref().is_some_and(|e| e != epoch);
    match read {
        // Rebased (or restored from a backup) since: our seqs mean nothing there.
        LogRead::Events { epoch, .. } | LogRead::Behind { epoch } if other_epoch(&epoch) => {
            inner.hub.rebased(room)
        }
        LogRead::Behind { epoch } => rebase(inner, room, &epoch).await,
        LogRead::Events { epoch, at, .. }
            if position
                .mark
                .zip(at.as_ref())
                .is_some_and(|(mark, at)| fingerprint(at) != mark) =>
        {
            rebase(inner, room, &epoch).await
        }
        LogRead::Events { events, .. } => {
            for event in &events {
                if inner.hub.deliver(room, event) == Delivered::Done {
                    inner.hub.stats.filled_from_log.inc();
                }
            }
        }
        LogRead::Unavailable => inner.hub.resync(room),
    }
}

/// The room went back in time under `epoch`: gives it a new one, once for every instance
/// (the first to notice wins), and has its sessions re-join. The new epoch's message reaches
/// every instance, this one included, and resyncs them; when another instance had already
/// rebased the room, that message may have been missed here, so this one resyncs itself.
async fn rebase(inner: &Inner, room: &RoomId, epoch: &str) {
    inner.hub.stats.rebases.inc();
    tracing::warn!(%room, "the room lost confirmed writes (a Redis failover?); giving it a new epoch");
    match inner.rebase(room, epoch).await {
        Ok((_, true)) => {}
        Ok((_, false)) => inner.hub.rebased(room),
        Err(e) => {
            tracing::warn!(%room, error = %e, "cannot rebase the room; sessions re-join");
            inner.hub.rebased(room);
        }
    }
}

async fn refill(inner: &Inner) {
    for (room, position) in inner.hub.positions() {
        if let Some(position) = position {
            fill(inner, &room, position).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_mode_publishes_with_spublish_and_reconciles_within_bounds() {
        let feed = |mode, linger_ms| Feed::new(mode, Duration::from_millis(linger_ms), false);
        assert_eq!(feed(PubsubMode::Sharded, 0).publish_command(), "SPUBLISH");
        assert_eq!(feed(PubsubMode::Room, 0).publish_command(), "PUBLISH");
        assert_eq!(feed(PubsubMode::Pattern, 0).publish_command(), "PUBLISH");
        // No linger still leaves a pause between passes; a long one still unsubscribes soon.
        assert_eq!(
            feed(PubsubMode::Room, 0).reconcile_every(),
            RECONCILE_EVERY_MIN
        );
        assert_eq!(
            feed(PubsubMode::Room, 600).reconcile_every(),
            Duration::from_millis(300)
        );
        assert_eq!(
            feed(PubsubMode::Room, 60_000).reconcile_every(),
            RECONCILE_EVERY_MAX
        );
    }

    #[test]
    fn messages_parse_every_kind() {
        let room = RoomId::new("r");
        let record = br#"{"seq":3,"origin":"a/1","user":"u","op":"delete","via":"elements","ids":["x"],"removed":[]}"#;
        let [d] = &parse_message(&room, record).expect("seq")[..] else {
            panic!("one event")
        };
        assert_eq!(d.seq, Some(3));
        assert_eq!(d.origin.as_ref().map(ConnKey::as_str), Some("a/1"));
        assert!(d.frame.starts_with(br#"{"type":"ELEMENTS_DELETED""#));
        let d = parse_message(&room, br#"{"except":"a/2","lossy":true,"frame":{}}"#)
            .expect("transient");
        assert!(d[0].lossy && d[0].seq.is_none());
        assert!(parse_message(&room, b"nope").is_none());
        // A presence change becomes its frames, in order.
        let left = parse_message(
            &room,
            br#"{"presence":{"left":"u1","count":2,"gone":true}}"#,
        )
        .expect("presence");
        let types: Vec<String> = left
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_slice(&d.frame).expect("json");
                v["type"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(types, ["CURSOR_LEAVE", "USER_LEFT", "USER_COUNT_UPDATED"]);
    }
}
