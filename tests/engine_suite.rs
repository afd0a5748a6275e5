//! The shared `Engine` suite: every case runs once against the memory engine and once against the
//! Redis engine on a private `redis-server`, so both are held to the same contract
//! (`PROTOCOL.md` §1.2–1.4 and §3).
//!
//! Cases watch the engine the way sessions do: through hub members with their own queues. The
//! Redis engine delivers through pub/sub, so every wait is bounded, and "nothing else arrived" is
//! proved by publishing a marker afterwards and checking it is the next thing each member gets
//! (Redis relays one channel's messages in publication order), never by sleeping.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drawbridge::config::PubsubMode;
use drawbridge::domain::board::{Intent, Refusal};
use drawbridge::domain::element::{Element, ElementLimits, Patch};
use drawbridge::domain::quota::Quota;
use drawbridge::domain::{ConnKey, Identity, Point, RoomId, Stroke, StrokeId, UserId};
use drawbridge::engine::memory::MemoryEngine;
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{
    Access, Engine, EngineSettings, History, JoinOutcome, JoinRequest, Op, OpOutcome, Past,
    RateDecision, RoomView, ViewBody, now_ms,
};
use drawbridge::hub::{Delivery, Hub, Item, Member, Outbound};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::{AnyConn, AnyRedis, WAIT, wait_until};

/// The instance every fixture's connections belong to (so its own presence is never swept).
const INSTANCE: &str = "inst-a";

/// What most cases run with; a case that needs other limits says so in the suite list.
/// The suite runs in the default `pubsub_mode` unless `DRAWBRIDGE_PUBSUB_MODE` names another
/// (`scripts/test.sh` runs it in each).
fn pubsub_mode() -> PubsubMode {
    match std::env::var("DRAWBRIDGE_PUBSUB_MODE").as_deref() {
        Ok("room") => PubsubMode::Room,
        Ok("sharded") => PubsubMode::Sharded,
        Ok("pattern") | Err(_) => PubsubMode::Pattern,
        Ok(other) => panic!("DRAWBRIDGE_PUBSUB_MODE={other}: not a pubsub_mode"),
    }
}

fn settings() -> EngineSettings {
    EngineSettings {
        instance_id: INSTANCE.into(),
        room_ttl: Some(Duration::from_secs(3600)),
        log_max: 100,
        replay_max: 100,
        redo_max: 10,
        undo_max: 100,
        max_points: 5000,
        history_max: 100_000,
        snapshot_every: 500,
        quota: Quota {
            room_elements: 50_000,
            room_bytes: 32 << 20,
            user_bytes: 8 << 20,
        },
    }
}

/// One engine under test, the hub it delivers to, and (for Redis) the server behind it.
struct Fixture {
    engine: Arc<dyn Engine>,
    history: Arc<dyn History>,
    /// The same engine, seen through its access trait.
    access: Arc<dyn Access>,
    hub: Arc<Hub>,
    settings: EngineSettings,
    redis: Option<RedisBackend>,
    /// Numbers the markers, so a marker left over from an earlier check is never mistaken.
    markers: AtomicU64,
}

struct RedisBackend {
    /// Shared with a [`Fixture::twin`], a second instance on the same server.
    server: Arc<AnyRedis>,
    /// Every key and channel of this fixture starts with it.
    prefix: String,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // On a failed assertion the fixture is dropped while unwinding: stop the engine's tasks.
        self.shutdown.cancel();
    }
}

impl Fixture {
    fn memory(settings: EngineSettings) -> Self {
        let hub = Arc::new(Hub::new());
        let engine = Arc::new(MemoryEngine::new(settings.clone(), hub.clone()));
        Self {
            engine: engine.clone(),
            history: engine.clone(),
            access: engine,
            hub,
            settings,
            redis: None,
            markers: AtomicU64::new(0),
        }
    }

    async fn redis(name: &str, settings: EngineSettings) -> Self {
        Self::redis_on(
            Arc::new(AnyRedis::from_env()),
            format!("suite:{name}:"),
            settings,
        )
        .await
    }

    /// A second instance on the same Redis and keys, with its own hub.
    async fn twin(&self) -> Self {
        let backend = self.backend();
        let settings = EngineSettings {
            instance_id: "inst-b".into(),
            ..self.settings.clone()
        };
        Self::redis_on(backend.server.clone(), backend.prefix.clone(), settings).await
    }

    async fn redis_on(server: Arc<AnyRedis>, prefix: String, settings: EngineSettings) -> Self {
        let hub = Arc::new(Hub::new());
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let engine = RedisEngine::start(
            &RedisSettings {
                url: server.url(),
                mode: server.mode(),
                key_prefix: prefix.clone(),
                pool_size: 4,
                heartbeat: Duration::from_secs(5),
                pubsub_mode: pubsub_mode(),
                pubsub_linger: Duration::from_secs(2),
                tls_ca: String::new(),
                wait_replicas: 0,
                wait_timeout: Duration::from_millis(500),
            },
            settings.clone(),
            hub.clone(),
            &tasks,
            shutdown.clone(),
        )
        .await
        .expect("the redis engine starts");
        // The pub/sub subscription comes up in the background; events published before it
        // would be lost to this instance.
        wait_until("the redis engine is ready", WAIT, || async {
            engine.is_ready()
        })
        .await;
        let engine = Arc::new(engine);
        Self {
            engine: engine.clone(),
            history: engine.clone(),
            access: engine,
            hub,
            settings,
            redis: Some(RedisBackend {
                server,
                prefix,
                tasks,
                shutdown,
            }),
            markers: AtomicU64::new(0),
        }
    }

    /// Stops the engine's tasks and waits for them; the server dies with the backend.
    async fn stop(mut self) {
        if let Some(redis) = self.redis.take() {
            redis.shutdown.cancel();
            redis.tasks.close();
            assert!(
                tokio::time::timeout(WAIT, redis.tasks.wait()).await.is_ok(),
                "the redis engine's tasks did not stop"
            );
        }
    }

    fn backend(&self) -> &RedisBackend {
        self.redis.as_ref().expect("a redis-only case")
    }

    async fn room(&self) -> RoomId {
        self.engine
            .create_room(&UserId::new("creator"))
            .await
            .expect("create_room")
            .room_id
    }

    /// A connection of `user` registered with the hub for `room` (not yet joined in the engine),
    /// as a session does right before it joins.
    fn peer(&self, room: &RoomId, user: &str, n: u64) -> Peer {
        let (tx, rx) = mpsc::channel(256);
        let overflow = CancellationToken::new();
        let conn = ConnKey::new(INSTANCE, n);
        let who = identity(user);
        self.hub.add(
            room,
            Member {
                key: conn.clone(),
                who: Arc::new(who.clone()),
                generation: 0,
                tx,
                overflow: overflow.clone(),
            },
        );
        Peer {
            who,
            conn,
            rx,
            overflow,
        }
    }

    /// A new room with two users joined on connections 1 and 2.
    async fn two_joined(&self, first: &str, second: &str) -> (RoomId, Peer, Peer) {
        let room = self.room().await;
        let a = self.peer(&room, first, 1);
        let b = self.peer(&room, second, 2);
        self.join(&room, &a, None).await;
        self.join(&room, &b, None).await;
        (room, a, b)
    }

    async fn join_outcome(
        &self,
        room: &RoomId,
        peer: &Peer,
        since: Option<(u64, &str)>,
    ) -> JoinOutcome {
        self.engine
            .join(JoinRequest {
                room,
                conn: &peer.conn,
                who: &peer.who,
                since,
            })
            .await
            .expect("join")
    }

    async fn join(&self, room: &RoomId, peer: &Peer, since: Option<(u64, &str)>) -> RoomView {
        match self.join_outcome(room, peer, since).await {
            JoinOutcome::Joined(view) => view,
            JoinOutcome::Missing => panic!("room {room} is missing"),
        }
    }

    async fn apply(
        &self,
        room: &RoomId,
        peer: &Peer,
        op_id: Option<&str>,
        intent: Intent,
    ) -> OpOutcome {
        self.engine
            .apply(
                room,
                Op {
                    who: &peer.who,
                    conn: &peer.conn,
                    op_id,
                    intent,
                },
            )
            .await
            .expect("apply")
    }

    /// Draws stroke `id`; like a session, the op id defaults to the stroke id.
    /// Names the room's current seq "kept", as alice (the engine stamps the seq).
    async fn name_version(&self, room: &RoomId) -> drawbridge::domain::history::Version {
        let draft = drawbridge::domain::history::Version {
            version_id: "v1".into(),
            name: "kept".into(),
            seq: 0,
            created_by: UserId::new("alice"),
            created_at: 1,
        };
        self.history
            .add_version(room, draft)
            .await
            .expect("add")
            .expect("a room")
    }

    async fn draw(&self, room: &RoomId, peer: &Peer, id: &str) -> OpOutcome {
        let stroke = stroke(room, &peer.who, id);
        self.apply(
            room,
            peer,
            Some(id),
            Intent::Stroke(Box::new(Element::from_stroke(stroke))),
        )
        .await
    }

    /// Draws `ids` in order, each applied with the next seq from `first_seq`.
    async fn draw_each(&self, room: &RoomId, peer: &Peer, first_seq: u64, ids: &[&str]) {
        for (seq, id) in (first_seq..).zip(ids) {
            assert_eq!(self.draw(room, peer, id).await, applied(seq, id));
        }
    }

    async fn undo(&self, room: &RoomId, peer: &Peer, target: Option<&str>) -> OpOutcome {
        let target = target.map(StrokeId::new);
        self.apply(room, peer, None, Intent::Undo(target)).await
    }

    async fn redo(&self, room: &RoomId, peer: &Peer, target: Option<&str>) -> OpOutcome {
        let target = target.map(StrokeId::new);
        self.apply(room, peer, None, Intent::Redo(target)).await
    }

    async fn rate_limit(
        &self,
        kind: &str,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> RateDecision {
        self.engine
            .rate_limit(kind, subject, limit, window)
            .await
            .expect("rate_limit")
    }

    async fn leave(&self, room: &RoomId, peer: &Peer) {
        self.engine
            .leave(room, &peer.conn)
            .await
            .expect("leave is harmless");
    }

    /// Publishes a fresh marker to every member of the room and returns it.
    async fn marker(&self, room: &RoomId) -> Value {
        let n = self.markers.fetch_add(1, Ordering::Relaxed);
        let marker = json!({"type": "MARKER", "payload": {"n": n}});
        self.engine
            .publish_transient(room, &ConnKey::new("nobody", 0), marker.to_string())
            .await
            .expect("publish the marker");
        marker
    }

    /// Asserts that nothing more was delivered to `peers`: the marker must be their next item.
    async fn settle(&self, room: &RoomId, peers: &mut [&mut Peer]) {
        let marker = self.marker(room).await;
        for peer in peers.iter_mut() {
            let item = peer.item().await;
            match item {
                Item::Frame {
                    seq: None, bytes, ..
                } if parse(&bytes) == marker => {}
                other => panic!("{}: delivered unexpectedly: {}", peer.conn, show(&other)),
            }
        }
    }

    /// Discards whatever was delivered to `peers` so far.
    async fn flush(&self, room: &RoomId, peers: &mut [&mut Peer]) {
        let marker = self.marker(room).await;
        for peer in peers.iter_mut() {
            peer.until(&marker).await;
        }
    }
}

/// One connection as the hub sees it: its identity, key and queue.
struct Peer {
    who: Identity,
    conn: ConnKey,
    rx: mpsc::Receiver<Outbound>,
    overflow: CancellationToken,
}

impl Peer {
    async fn item(&mut self) -> Item {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(out)) => out.item,
            Ok(None) => panic!("{}: the hub dropped this member", self.conn),
            Err(_) => panic!("{}: nothing delivered within {WAIT:?}", self.conn),
        }
    }

    async fn frame(&mut self) -> (Option<u64>, Value) {
        match self.item().await {
            Item::Frame { seq, bytes, .. } => (seq, parse(&bytes)),
            other => panic!("{}: wanted a frame, got {}", self.conn, show(&other)),
        }
    }

    /// The next item, which must be an unsequenced frame (presence, cursors).
    async fn transient(&mut self) -> Value {
        match self.frame().await {
            (None, frame) => frame,
            (Some(seq), frame) => panic!(
                "{}: wanted a transient frame, got #{seq} {frame}",
                self.conn
            ),
        }
    }

    /// The next item, which must be a sequenced frame.
    async fn sequenced(&mut self) -> (u64, Value) {
        match self.frame().await {
            (Some(seq), frame) => (seq, frame),
            (None, frame) => panic!("{}: wanted a sequenced frame, got {frame}", self.conn),
        }
    }

    /// The next item, which must be the marker of this connection's own op.
    async fn own(&mut self) -> u64 {
        match self.item().await {
            Item::Own { seq } => seq,
            other => panic!("{}: wanted its own op, got {}", self.conn, show(&other)),
        }
    }

    /// The next events, which must carry exactly the seqs `seqs`: their frames.
    async fn events(&mut self, seqs: std::ops::RangeInclusive<u64>) -> Vec<Value> {
        let mut frames = Vec::new();
        for want in seqs {
            let (seq, frame) = self.sequenced().await;
            assert_eq!(seq, want, "{}: {frame}", self.conn);
            frames.push(frame);
        }
        frames
    }

    /// Everything delivered before `marker` (which is consumed), as JSON.
    async fn until(&mut self, marker: &Value) -> Vec<Value> {
        let mut items = Vec::new();
        loop {
            let item = self.item().await;
            if let Item::Frame {
                seq: None, bytes, ..
            } = &item
                && parse(bytes) == *marker
            {
                return items;
            }
            items.push(item_json(&item));
        }
    }
}

/// Asserts each of `peers` is delivered exactly `frames` next, in order, unsequenced.
async fn expect_transient(peers: &mut [&mut Peer], frames: &[Value]) {
    for peer in peers.iter_mut() {
        for frame in frames {
            assert_eq!(&peer.transient().await, frame, "{}", peer.conn);
        }
    }
}

/// Asserts each of `peers` is delivered `frame` next, as event `seq`.
async fn expect_event(peers: &mut [&mut Peer], seq: u64, frame: &Value) {
    for peer in peers.iter_mut() {
        assert_eq!(
            peer.sequenced().await,
            (seq, frame.clone()),
            "{}",
            peer.conn
        );
    }
}

/// A frame or stored text as JSON, with the `v` and `z` of every element left out: most cases
/// check what an element is, and [`parse_exact`] keeps them where they matter.
fn parse(bytes: &[u8]) -> Value {
    let mut value = parse_exact(bytes);
    strip_versions(&mut value);
    value
}

fn parse_exact(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn strip_versions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("kind") {
                map.remove("v");
                map.remove("z");
            }
            map.values_mut().for_each(strip_versions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_versions),
        _ => {}
    }
}

fn parse_all(texts: &[String]) -> Vec<Value> {
    texts.iter().map(|t| parse(t.as_bytes())).collect()
}

fn item_json(item: &Item) -> Value {
    match item {
        Item::Frame { seq, bytes, .. } => json!({"seq": seq, "frame": parse(bytes)}),
        Item::Own { seq } => json!({"own": seq}),
        Item::Resync { .. } => json!("resync"),
        Item::Control(control) => json!({"control": control.record()}),
    }
}

/// A logged event as JSON, with its origin and lossiness.
fn event_json(event: &Delivery) -> Value {
    json!({
        "seq": event.seq, "origin": event.origin.as_ref().map(ConnKey::as_str),
        "lossy": event.lossy, "frame": parse(&event.frame)
    })
}

fn show(item: &Item) -> String {
    item_json(item).to_string()
}

fn identity(user: &str) -> Identity {
    Identity::new(UserId::new(user), format!("name-{user}"))
}

fn applied(seq: u64, id: &str) -> OpOutcome {
    OpOutcome::Applied {
        seq,
        ack_id: Some(StrokeId::new(id)),
    }
}

fn duplicate(seq: u64, id: &str) -> OpOutcome {
    OpOutcome::Duplicate {
        seq,
        ack_id: Some(StrokeId::new(id)),
    }
}

/// A valid stroke as a session hands it over: stamped with the caller and the room.
fn stroke(room: &RoomId, who: &Identity, id: &str) -> Stroke {
    Stroke {
        user_id: who.user_id.clone(),
        stroke_id: StrokeId::new(id),
        room_id: room.clone(),
        points: vec![Point { x: 1.5, y: 2.0 }, Point { x: -3.0, y: 4.25 }],
        color: "#ff8800".into(),
        width: 2.5,
    }
}

// The expected wire JSON, spelled out from PROTOCOL.md rather than taken from `frames`.

fn stroke_json(room: &RoomId, who: &Identity, id: &str) -> Value {
    json!({
        "id": id, "kind": "stroke",
        "userId": who.user_id.as_str(), "strokeId": id, "roomId": room.as_str(),
        "points": [{"x": 1.5, "y": 2.0}, {"x": -3.0, "y": 4.25}], "color": "#ff8800", "width": 2.5
    })
}

fn member_json(who: &Identity) -> Value {
    json!({"userId": who.user_id.as_str(), "username": who.username, "color": who.color})
}

fn canvas_update(room: &RoomId, who: &Identity, id: &str, seq: u64) -> Value {
    json!({"type": "CANVAS_UPDATE", "payload": {
        "roomId": room.as_str(), "canvasData": stroke_json(room, who, id),
        "userId": who.user_id.as_str(), "seq": seq
    }})
}

fn undo_frame(room: &RoomId, who: &Identity, id: &str, seq: u64) -> Value {
    json!({"type": "UNDO", "payload": {
        "roomId": room.as_str(), "userId": who.user_id.as_str(), "strokeId": id, "seq": seq
    }})
}

fn redo_frame(room: &RoomId, who: &Identity, id: &str, seq: u64) -> Value {
    json!({"type": "REDO", "payload": {
        "roomId": room.as_str(), "userId": who.user_id.as_str(),
        "stroke": stroke_json(room, who, id), "seq": seq
    }})
}

fn user_joined(room: &RoomId, who: &Identity) -> Value {
    json!({"type": "USER_JOINED", "payload": {
        "roomId": room.as_str(), "userId": who.user_id.as_str(),
        "username": who.username, "color": who.color
    }})
}

fn user_count(room: &RoomId, count: usize) -> Value {
    json!({"type": "USER_COUNT_UPDATED", "payload": {"roomId": room.as_str(), "count": count}})
}

fn user_left(room: &RoomId, user: &str, count: usize) -> Value {
    json!({"type": "USER_LEFT", "payload": {"roomId": room.as_str(), "userId": user, "count": count}})
}

fn cursor_leave(room: &RoomId, user: &str) -> Value {
    json!({"type": "CURSOR_LEAVE", "payload": {"roomId": room.as_str(), "userId": user}})
}

fn cursor_move(room: &RoomId, who: &Identity) -> Value {
    json!({"type": "CURSOR_MOVE", "payload": {
        "roomId": room.as_str(), "userId": who.user_id.as_str(), "username": who.username,
        "color": who.color, "x": 10.5, "y": -2.0
    }})
}

/// The view's users, parsed and in a fixed order (presence has none).
fn users(view: &RoomView) -> Vec<Value> {
    let mut users = parse_all(&view.users);
    users.sort_by_key(|u| u["userId"].as_str().unwrap_or_default().to_owned());
    users
}

fn snapshot(view: &RoomView) -> Vec<Value> {
    match &view.body {
        ViewBody::Snapshot(strokes) => parse_all(strokes),
        ViewBody::Replay { from_seq, .. } => {
            panic!("wanted a snapshot, got a replay from {from_seq}")
        }
    }
}

/// The frames v1.1 clients of `room` get for logged records.
fn record_frames(room: &RoomId, records: &[String]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let event = drawbridge::engine::delivery(room, r)
                .unwrap_or_else(|| panic!("not a record: {r}"));
            parse(&event.frame)
        })
        .collect()
}

fn replay(room: &RoomId, view: &RoomView) -> (u64, Vec<Value>) {
    match &view.body {
        ViewBody::Replay { from_seq, records } => (*from_seq, record_frames(room, records)),
        ViewBody::Snapshot(strokes) => {
            panic!(
                "wanted a replay, got a snapshot of {} strokes",
                strokes.len()
            )
        }
    }
}

fn view_json(view: &RoomView) -> Value {
    let body = match &view.body {
        ViewBody::Snapshot(strokes) => json!({"snapshot": parse_all(strokes)}),
        ViewBody::Replay { from_seq, records } => {
            json!({"replay": {"fromSeq": from_seq, "records": records}})
        }
    };
    json!({"seq": view.seq, "epoch": view.epoch, "users": users(view), "body": body})
}

// ---- elements -------------------------------------------------------------------------------

const LIMITS: ElementLimits = ElementLimits { max_points: 100 };

/// An element as a session hands it over, checked and stamped with `who` and `room`.
fn element(room: &RoomId, who: &Identity, value: Value) -> Element {
    Element::from_client(&value, &who.user_id, room, LIMITS).expect("a valid element")
}

fn rect(room: &RoomId, who: &Identity, id: &str) -> Element {
    element(
        room,
        who,
        json!({"id": id, "kind": "rect", "x": 0, "y": 0, "w": 10, "h": 10}),
    )
}

fn node(room: &RoomId, who: &Identity, id: &str) -> Element {
    element(
        room,
        who,
        json!({"id": id, "kind": "node", "x": 0, "y": 0, "w": 10, "h": 10, "text": id}),
    )
}

fn edge(room: &RoomId, who: &Identity, id: &str, from: &str, to: &str) -> Element {
    element(
        room,
        who,
        json!({"id": id, "kind": "edge", "from": from, "to": to}),
    )
}

fn update(id: &str, patch: Value) -> Intent {
    Intent::Update(vec![(
        StrokeId::new(id),
        Patch::from_client(&patch).expect("a patch"),
    )])
}

fn delete(ids: &[&str]) -> Intent {
    Intent::Delete(ids.iter().map(|id| StrokeId::new(*id)).collect())
}

/// Room quotas of exactly four rects (two of Alice's, two of Bob's), Alice's bytes of two.
fn rect_quota() -> Quota {
    let room = RoomId::new("r");
    let size = |user: &str| rect(&room, &identity(user), "x1").body().len() as u64;
    Quota {
        room_elements: 4,
        room_bytes: 2 * size("alice") + 2 * size("bob"),
        user_bytes: 2 * size("alice"),
    }
}

fn applied_op(seq: u64) -> OpOutcome {
    OpOutcome::Applied { seq, ack_id: None }
}

/// The board a joiner gets, each element exactly as stored (with `v` and `z`), by id.
fn board_of(view: &RoomView) -> Vec<Value> {
    match &view.body {
        ViewBody::Snapshot(elements) => {
            elements.iter().map(|e| parse_exact(e.as_bytes())).collect()
        }
        ViewBody::Replay { from_seq, .. } => {
            panic!("wanted a snapshot, got a replay from {from_seq}")
        }
    }
}

/// The stored JSON a client sees for `element` at version `v` and paint order `z`.
fn stored(element: &Element, v: u64, z: u64) -> Value {
    parse_exact(element.stored(v, &z.to_string()).as_bytes())
}

fn is_refused_bad_element(outcome: &OpOutcome, needle: &str) -> bool {
    matches!(outcome, OpOutcome::Refused(Refusal::BadElement(m)) if m.contains(needle))
}

/// Runs `PTTL` on `key`.
async fn pttl(conn: &mut AnyConn, key: &str) -> i64 {
    ::redis::cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// Every key has a TTL above `above` ms and at most `ttl`.
async fn assert_pttls(conn: &mut AnyConn, keys: &[String], above: i64, ttl: i64) {
    for key in keys {
        let remaining = pttl(conn, key).await;
        assert!(
            remaining > above && remaining <= ttl,
            "{key}: PTTL {remaining}"
        );
    }
}

mod cases {
    use super::*;
    use drawbridge::domain::access::{AccessMode, Control, Grants, Role};
    use drawbridge::engine::access::{DayCount, SettingsPatch};

    fn grants(room: Option<Role>, workspace: Option<Role>) -> Grants {
        Grants { room, workspace }
    }

    pub async fn room_settings_and_members_live_with_the_room(fx: &Fixture) {
        let owner = UserId::new("creator");
        let ann = UserId::new("ann");
        let room = fx.room().await;
        let (meta, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        let meta = meta.expect("the room exists");
        assert_eq!(meta.settings.owner, owner);
        assert_eq!(meta.settings.access, AccessMode::Link);
        assert_eq!(meta.settings.link_role, Role::Editor);
        assert_eq!((g.room, g.workspace), (None, None));
        assert!(meta.created_at > 0 && meta.expires_at.is_some());

        let patch = SettingsPatch {
            name: Some("Plan".into()),
            access: Some(AccessMode::Members),
            link_role: Some(Role::Viewer),
            workspace: None,
        };
        let after = fx.access.update_room(&room, &patch).await.expect("update");
        let after = after.expect("still there");
        assert_eq!(after.settings.name, "Plan");
        assert_eq!(after.settings.access, AccessMode::Members);
        assert_eq!(after.settings.link_role, Role::Viewer);

        assert!(
            fx.access
                .set_room_member(&room, &ann, Some(Role::Viewer))
                .await
                .expect("set")
        );
        let (_, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        assert_eq!(g.room, Some(Role::Viewer));
        assert!(
            fx.access
                .set_room_member(&room, &ann, Some(Role::Editor))
                .await
                .expect("set")
        );
        assert_eq!(
            fx.access.room_members(&room).await.expect("members"),
            vec![(ann.clone(), Role::Editor)]
        );
        let mine = fx.access.user_rooms(&ann).await.expect("user rooms");
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].0.room_id, room);
        assert_eq!(mine[0].1.room, Some(Role::Editor));
        let owned = fx.access.user_rooms(&owner).await.expect("owner rooms");
        assert_eq!(owned.len(), 1, "the owner's room is indexed by update_room");

        assert!(
            fx.access
                .set_room_member(&room, &ann, None)
                .await
                .expect("remove")
        );
        let (_, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        assert_eq!(g.room, None);
        assert!(fx.access.user_rooms(&ann).await.expect("rooms").is_empty());

        // Gone rooms: no facts, no members to set, dropped from lists.
        assert!(fx.access.delete_room(&room).await.expect("delete"));
        assert!(!fx.access.delete_room(&room).await.expect("delete twice"));
        let (meta, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        assert!(meta.is_none() && g.room.is_none());
        assert!(
            !fx.access
                .set_room_member(&room, &ann, Some(Role::Viewer))
                .await
                .expect("set")
        );
        assert!(
            fx.access
                .user_rooms(&owner)
                .await
                .expect("rooms")
                .is_empty()
        );
        assert!(
            fx.access
                .update_room(&room, &patch)
                .await
                .expect("update")
                .is_none()
        );
        let missing = RoomId::new("no-such-room");
        assert!(
            fx.access
                .room_facts(&missing, &ann)
                .await
                .expect("facts")
                .0
                .is_none()
        );
    }

    pub async fn workspace_roles_carry_into_its_rooms(fx: &Fixture) {
        let owner = UserId::new("creator");
        let ann = UserId::new("ann");
        let ws = fx
            .access
            .create_workspace(&owner, "Team")
            .await
            .expect("create");
        let (found, role) = fx
            .access
            .workspace(&ws.id, &owner)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!((found.name.as_str(), role), ("Team", Some(Role::Owner)));
        assert_eq!(
            fx.access
                .workspace(&ws.id, &ann)
                .await
                .expect("get")
                .map(|w| w.1),
            Some(None)
        );
        fx.access
            .set_workspace_member(&ws.id, &ann, Some(Role::Editor))
            .await
            .expect("member");
        let room = fx.room().await;
        let patch = SettingsPatch {
            workspace: Some(ws.id.clone()),
            access: Some(AccessMode::Members),
            ..SettingsPatch::default()
        };
        fx.access.update_room(&room, &patch).await.expect("update");
        fx.access
            .add_workspace_room(&ws.id, &room)
            .await
            .expect("file");
        let (meta, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        assert_eq!(
            meta.expect("room").settings.workspace.as_deref(),
            Some(ws.id.as_str())
        );
        assert_eq!((g.room, g.workspace), (None, Some(Role::Editor)));
        assert_eq!(
            fx.access
                .workspace_rooms(&ws.id)
                .await
                .expect("rooms")
                .len(),
            1
        );
        assert_eq!(
            fx.access.workspace_members(&ws.id).await.expect("members"),
            vec![(ann.clone(), Role::Editor), (owner.clone(), Role::Owner)]
        );
        let listed = fx.access.user_workspaces(&ann).await.expect("mine");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, Role::Editor);
        let renamed = fx
            .access
            .rename_workspace(&ws.id, "Crew")
            .await
            .expect("rename");
        assert_eq!(renamed.map(|w| w.name).as_deref(), Some("Crew"));
        fx.access
            .set_workspace_member(&ws.id, &ann, None)
            .await
            .expect("remove");
        let (_, g) = fx.access.room_facts(&room, &ann).await.expect("facts");
        assert_eq!(g.workspace, None);
        // Deleting the workspace leaves its rooms, outside any workspace.
        assert_eq!(
            fx.access.delete_workspace(&ws.id).await.expect("delete"),
            vec![room.clone()]
        );
        assert!(
            fx.access
                .workspace(&ws.id, &owner)
                .await
                .expect("get")
                .is_none()
        );
        let (meta, _) = fx.access.room_facts(&room, &owner).await.expect("facts");
        assert_eq!(meta.expect("room").settings.workspace, None);
        assert!(
            fx.access
                .user_workspaces(&owner)
                .await
                .expect("mine")
                .is_empty()
        );
        let _ = grants(None, None);
    }

    pub async fn room_slots_count_rooms_that_still_exist(fx: &Fixture) {
        let first = fx.room().await;
        let second = fx.room().await;
        let third = fx.room().await;
        assert!(
            fx.access
                .claim_room_slot("10.0.0.1", &first, 2)
                .await
                .expect("claim")
        );
        assert!(
            fx.access
                .claim_room_slot("10.0.0.1", &second, 2)
                .await
                .expect("claim")
        );
        assert!(
            !fx.access
                .claim_room_slot("10.0.0.1", &third, 2)
                .await
                .expect("claim")
        );
        assert!(
            fx.access
                .claim_room_slot("10.0.0.2", &third, 2)
                .await
                .expect("other ip")
        );
        fx.access.delete_room(&first).await.expect("delete");
        let fourth = fx.room().await;
        assert!(
            fx.access
                .claim_room_slot("10.0.0.1", &fourth, 2)
                .await
                .expect("freed")
        );
    }

    pub async fn activity_adds_up_per_user_and_day(fx: &Fixture) {
        let ann = UserId::new("ann");
        let day = drawbridge::domain::activity::day_number(2026, 11, 28);
        let count = |user: &UserId, day: i64, ops: u64| DayCount {
            user: user.clone(),
            day,
            ops,
        };
        fx.access
            .add_activity(&[
                count(&ann, day, 3),
                count(&ann, day - 1, 1),
                count(&UserId::new("bob"), day, 9),
            ])
            .await
            .expect("add");
        fx.access
            .add_activity(&[count(&ann, day, 2)])
            .await
            .expect("add");
        assert_eq!(
            fx.access.activity(&ann, day - 10, day).await.expect("read"),
            vec![(day - 1, 1), (day, 5)]
        );
        assert_eq!(
            fx.access
                .activity(&ann, day - 10, day - 1)
                .await
                .expect("read"),
            vec![(day - 1, 1)]
        );
    }

    pub async fn control_records_reach_the_sessions_they_concern(fx: &Fixture) {
        let (room, mut ann, mut bob) = fx.two_joined("ann", "bob").await;
        fx.flush(&room, &mut [&mut ann, &mut bob]).await;
        fx.access
            .publish_control(&room, &Control::recheck(Some(UserId::new("ann"))))
            .await
            .expect("publish");
        fx.access
            .publish_control(&room, &Control::deleted())
            .await
            .expect("publish");
        let want = |c: &Control| json!({"control": c.record()});
        assert_eq!(
            item_json(&ann.item().await),
            want(&Control::recheck(Some(UserId::new("ann"))))
        );
        assert_eq!(item_json(&ann.item().await), want(&Control::deleted()));
        assert_eq!(
            item_json(&bob.item().await),
            want(&Control::deleted()),
            "bob only gets what concerns him"
        );
    }

    // ---- history (§5) ---------------------------------------------------------------------

    /// A run of every op kind, with the board (as `state` tells it) after each: `boards[n]` is
    /// the board after seq `n`.
    async fn history_run(fx: &Fixture, room: &RoomId, a: &Peer, b: &Peer) -> Vec<Vec<String>> {
        let now = |fx: &Fixture| {
            let room = room.clone();
            let history = fx.history.clone();
            async move {
                match history.board_at(&room, None).await.expect("board_at") {
                    Past::Found(board) => board.stored(),
                    other => panic!("no board now: {other:?}"),
                }
            }
        };
        let mut boards = vec![now(fx).await];
        let (wa, wb) = (a.who.clone(), b.who.clone());
        let ops: Vec<(&Peer, Intent)> = vec![
            (
                a,
                Intent::Add(vec![rect(room, &wa, "r1"), node(room, &wa, "n1")]),
            ),
            (b, Intent::Add(vec![node(room, &wb, "n2")])),
            (b, Intent::Add(vec![edge(room, &wb, "e1", "n1", "n2")])),
            (a, update("r1", json!({"x": 40, "fill": "#00ff00"}))),
            (
                b,
                Intent::TextEdit {
                    id: StrokeId::new("n1"),
                    ops: serde_json::from_value(
                        json!([{"after": null, "first": "bob:1", "text": "hi "}]),
                    )
                    .expect("ops"),
                },
            ),
            (
                a,
                Intent::Stroke(Box::new(Element::from_stroke(stroke(room, &wa, "s1")))),
            ),
            (a, Intent::Delete(vec![StrokeId::new("n2")])),
            (
                b,
                Intent::Stroke(Box::new(Element::from_stroke(stroke(room, &wb, "s2")))),
            ),
            (a, Intent::Undo(None)),
            (b, update("r1", json!({"z": -5}))),
            (a, Intent::Add(vec![rect(room, &wa, "r2")])),
            (b, Intent::Undo(None)),
            (b, Intent::Redo(None)),
            (b, Intent::Delete(vec![StrokeId::new("n1")])),
        ];
        for (peer, intent) in ops {
            let outcome = fx.apply(room, peer, None, intent).await;
            assert!(
                matches!(outcome, OpOutcome::Applied { .. }),
                "every op of the run applies: {outcome:?}"
            );
            boards.push(now(fx).await);
        }
        boards
    }

    pub async fn any_past_board_is_one_snapshot_and_the_ops_after_it(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        let boards = history_run(fx, &room, &a, &b).await;
        let last = boards.len() as u64 - 1;
        for (at, want) in boards.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
            match fx
                .history
                .board_at(&room, Some(at as u64))
                .await
                .expect("board_at")
            {
                Past::Found(board) => {
                    assert_eq!(board.seq, at as u64);
                    assert_eq!(&board.stored(), want, "the board after seq {at}");
                }
                other => panic!("at {at}: {other:?}"),
            }
        }
        assert_eq!(
            fx.history
                .board_at(&room, Some(last + 1))
                .await
                .expect("ahead"),
            Past::Ahead { seq: last }
        );
        assert_eq!(
            fx.history
                .board_at(&RoomId::new("nosuchroom"), None)
                .await
                .expect("missing"),
            Past::Missing
        );
        // The op log pages through every record, in order.
        let mut since = 0;
        let mut seqs = Vec::new();
        loop {
            let Past::Found(page) = fx.history.ops(&room, since, 5).await.expect("ops") else {
                panic!("ops answers")
            };
            if page.records.is_empty() {
                break;
            }
            assert!(page.records.len() <= 5);
            for r in &page.records {
                seqs.push(serde_json::from_str::<Value>(r).expect("json")["seq"].as_u64());
            }
            since = page.next_since;
        }
        assert_eq!(seqs, (1..=last).map(Some).collect::<Vec<_>>());
        assert_eq!(
            fx.history.ops(&room, last + 1, 5).await.expect("ops"),
            Past::Ahead { seq: last }
        );
    }

    pub async fn old_history_folds_into_the_base(fx: &Fixture) {
        let (room, a, _b) = fx.two_joined("alice", "bob").await;
        let mut boards = vec![Vec::new()];
        // One rect, then moved: a board smaller than `snapshot_every`, so snapshots every 4 ops.
        for i in 1..=30 {
            let intent = match i {
                1 => Intent::Add(vec![rect(&room, &a.who, "r")]),
                _ => update("r", json!({ "x": i })),
            };
            assert_eq!(fx.apply(&room, &a, None, intent).await, applied_op(i));
            let Past::Found(board) = fx.history.board_at(&room, None).await.expect("now") else {
                panic!("a board")
            };
            boards.push(board.stored());
        }
        // Seq 30: the newest snapshot leaving 8 ops after it is 20.
        wait_until("the oldest ops fold into the base", WAIT, || async {
            fx.history
                .board_at(&room, Some(19))
                .await
                .expect("board_at")
                == Past::Trimmed { oldest: 20 }
        })
        .await;
        assert_eq!(
            fx.history.ops(&room, 0, 10).await.expect("ops"),
            Past::Trimmed { oldest: 20 }
        );
        for at in 20..=30 {
            let Past::Found(board) = fx.history.board_at(&room, Some(at)).await.expect("at") else {
                panic!("seq {at} is kept")
            };
            assert_eq!(
                board.stored(),
                boards[at as usize],
                "the board after seq {at}"
            );
        }
        let Past::Found(page) = fx.history.ops(&room, 20, 100).await.expect("ops") else {
            panic!("ops from the base")
        };
        assert_eq!((page.records.len(), page.next_since), (10, 30));
    }

    pub async fn restore_brings_a_past_board_back_as_one_undoable_op(fx: &Fixture) {
        let (room, mut a, mut b) = fx.two_joined("alice", "bob").await;
        let boards = history_run(fx, &room, &a, &b).await;
        fx.flush(&room, &mut [&mut a, &mut b]).await;
        let seq = boards.len() as u64 - 1;
        let at = 6;
        let board = |n: u64| {
            let history = fx.history.clone();
            let room = room.clone();
            async move {
                match history.board_at(&room, Some(n)).await.expect("board_at") {
                    Past::Found(board) => board,
                    other => panic!("{other:?}"),
                }
            }
        };
        let target = board(at).await;
        let before = board(seq).await;
        let restore = Intent::Restore {
            at,
            target: target.elements().into_iter().cloned().collect(),
        };
        assert_eq!(
            fx.apply(&room, &a, None, restore).await,
            applied_op(seq + 1)
        );
        let now = board(seq + 1).await;
        assert!(
            now.same_elements(&target),
            "the board is the one after seq {at} again"
        );
        assert_eq!(a.own().await, seq + 1);
        let (_, frame) = b.sequenced().await;
        assert_eq!(frame["type"], "ROOM_RESTORED");
        assert_eq!(frame["payload"]["at"], at);
        let removed = frame["payload"]["removed"]
            .as_array()
            .expect("removed")
            .len();
        let added = frame["payload"]["added"].as_array().expect("added").len();
        let changed = frame["payload"]["changed"]
            .as_array()
            .expect("changed")
            .len();
        let d = drawbridge::domain::history::diff(&before, &target);
        assert_eq!(
            (added, removed, changed),
            (d.added.len(), d.removed.len(), d.changed.len())
        );
        assert!(
            changed > 0 && removed > 0 && added > 0,
            "this run changes, removes and adds"
        );
        // Its author undoes it: the board before the restore is back; redo restores again.
        assert_eq!(fx.undo(&room, &a, None).await, applied_op(seq + 2));
        assert!(board(seq + 2).await.same_elements(&before));
        let (_, frame) = b.sequenced().await;
        assert_eq!(frame["type"], "ROOM_RESTORED");
        assert_eq!(fx.redo(&room, &a, None).await, applied_op(seq + 3));
        assert!(board(seq + 3).await.same_elements(&target));
        // Restoring the board it already is changes nothing but still takes a seq.
        let again = Intent::Restore {
            at,
            target: target.elements().into_iter().cloned().collect(),
        };
        assert_eq!(fx.apply(&room, &b, None, again).await, applied_op(seq + 4));
        assert!(board(seq + 4).await.same_elements(&target));
        // A late joiner sees what the log says.
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        let mut joined: Vec<Value> = board_of(&view);
        let mut state: Vec<Value> = board(seq + 4)
            .await
            .stored()
            .iter()
            .map(|s| parse_exact(s.as_bytes()))
            .collect();
        joined.sort_by_key(|v| v["id"].to_string());
        state.sort_by_key(|v| v["id"].to_string());
        assert_eq!(joined, state);
    }

    pub async fn versions_name_seqs_newest_first(fx: &Fixture) {
        let (room, a, _b) = fx.two_joined("alice", "bob").await;
        let version = |name: &str, seq: u64, at: u64| drawbridge::domain::history::Version {
            version_id: format!("id-{name}"),
            name: name.into(),
            seq,
            created_by: UserId::new("alice"),
            created_at: at,
        };
        fx.draw(&room, &a, "s1").await;
        // The engine names the seq it holds, whatever the draft says.
        let first = fx
            .history
            .add_version(&room, version("first", 99, 10))
            .await
            .expect("add");
        assert_eq!(first, Some(version("first", 1, 10)));
        fx.draw(&room, &a, "s2").await;
        let second = fx
            .history
            .add_version(&room, version("second", 0, 20))
            .await
            .expect("add");
        assert_eq!(second, Some(version("second", 2, 20)));
        let list = fx
            .history
            .versions(&room)
            .await
            .expect("list")
            .expect("a room");
        let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["second", "first"]);
        assert_eq!(list[1], version("first", 1, 10));
        let nowhere = RoomId::new("nosuchroom");
        assert_eq!(
            fx.history
                .add_version(&nowhere, version("x", 1, 1))
                .await
                .expect("add"),
            None
        );
        assert_eq!(fx.history.versions(&nowhere).await.expect("list"), None);
    }

    pub async fn a_dumped_room_loads_back_as_it_was(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        history_run(fx, &room, &a, &b).await;
        let version = fx.name_version(&room).await;
        let dump = fx.history.dump(&room).await.expect("dump").expect("a room");
        assert_eq!(dump.creator, UserId::new("creator"));
        assert_eq!(dump.versions, vec![version.clone()]);
        assert!(fx.history.room_ids().await.expect("ids").contains(&room));
        // Later ops, then the backup is loaded over the room: it is as it was dumped.
        fx.draw(&room, &a, "later").await;
        fx.history.load(&dump).await.expect("load");
        let again = fx.history.dump(&room).await.expect("dump").expect("a room");
        assert_eq!(again, dump);
        // History starts at the dump's seq; the room takes ops after it, and joiners see it.
        let seq = dump.board.seq;
        assert_eq!(
            fx.history.board_at(&room, Some(seq - 1)).await.expect("at"),
            Past::Trimmed { oldest: seq }
        );
        assert_eq!(fx.draw(&room, &a, "after").await, applied(seq + 1, "after"));
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(board_of(&view).len(), dump.board.len() + 1);
        assert_eq!(
            fx.history
                .dump(&RoomId::new("nosuchroom"))
                .await
                .expect("dump"),
            None
        );
    }

    pub async fn idle_rooms_are_compacted_and_come_back(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        history_run(fx, &room, &a, &b).await;
        let seq = fx
            .history
            .dump(&room)
            .await
            .expect("dump")
            .expect("room")
            .board
            .seq;
        assert_eq!(fx.draw(&room, &a, "kept").await, applied(seq + 1, "kept"));
        let version = fx.name_version(&room).await;
        let before = fx.history.dump(&room).await.expect("dump").expect("room");
        let at3 = fx.history.board_at(&room, Some(3)).await.expect("at 3");
        assert_eq!(
            fx.history
                .compact_idle(Duration::ZERO)
                .await
                .expect("compact"),
            0,
            "in use"
        );
        fx.leave(&room, &a).await;
        fx.leave(&room, &b).await;
        assert_eq!(
            fx.history
                .compact_idle(Duration::from_secs(3600))
                .await
                .expect("compact"),
            0
        );
        assert_eq!(
            fx.history
                .compact_idle(Duration::ZERO)
                .await
                .expect("compact"),
            1
        );
        if let Some(backend) = &fx.redis {
            let mut conn = backend.server.client().await;
            let base = format!("{}room:{{{room}}}", backend.prefix);
            for key in ["strokes", "ops", "users", "edges"] {
                let exists: bool = ::redis::cmd("EXISTS")
                    .arg(format!("{base}:{key}"))
                    .query_async(&mut conn)
                    .await
                    .expect("exists");
                assert!(!exists, "{key} is dropped");
            }
        }
        // History, versions and backups read a compacted room as it was (and leave it so).
        assert_eq!(
            fx.history.dump(&room).await.expect("dump"),
            Some(before.clone())
        );
        assert_eq!(
            fx.history.board_at(&room, Some(3)).await.expect("at 3"),
            at3
        );
        assert_eq!(
            fx.history.versions(&room).await.expect("versions"),
            Some(vec![version])
        );
        // Joining it again works as before; idempotency records are gone with the live keys, so
        // a resent stroke is now refused for its id rather than answered as a duplicate.
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(
            (view.seq, board_of(&view).len()),
            (seq + 1, before.board.len())
        );
        assert!(matches!(
            fx.draw(&room, &a, "kept").await,
            OpOutcome::Refused(Refusal::BadStroke(_))
        ));
        assert_eq!(fx.draw(&room, &c, "new").await, applied(seq + 2, "new"));
        assert_eq!(
            fx.history
                .compact_idle(Duration::ZERO)
                .await
                .expect("compact"),
            0
        );
    }

    /// Limits sized from the rects themselves (see the suite list): Alice's elements may take
    /// two of her rects, the room four rects of two each.
    pub async fn quotas_refuse_growth_and_never_freeing(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        let add = |peer: &Peer, id: &str| Intent::Add(vec![rect(&room, &peer.who, id)]);
        let refused = |o: OpOutcome| match o {
            OpOutcome::Refused(Refusal::Quota(why)) => why,
            other => panic!("wanted QUOTA_EXCEEDED, got {other:?}"),
        };
        let q = fx.settings.quota;
        assert_eq!(
            fx.apply(&room, &a, None, add(&a, "a1")).await,
            applied_op(1)
        );
        assert_eq!(
            fx.apply(&room, &a, None, add(&a, "a2")).await,
            applied_op(2)
        );
        assert_eq!(
            refused(fx.apply(&room, &a, None, add(&a, "a3")).await),
            format!(
                "alice's elements take at most {} bytes of a room",
                q.user_bytes
            )
        );
        assert_eq!(
            fx.apply(&room, &b, None, add(&b, "b1")).await,
            applied_op(3)
        );
        assert_eq!(
            fx.apply(&room, &b, None, add(&b, "b2")).await,
            applied_op(4)
        );
        assert_eq!(
            refused(fx.apply(&room, &b, None, add(&b, "b3")).await),
            "this room holds at most 4 elements"
        );
        // Freeing is never refused, and frees: Bob deletes one of Alice's, she adds again.
        let delete = Intent::Delete(vec![StrokeId::new("a1")]);
        assert_eq!(fx.apply(&room, &b, None, delete).await, applied_op(5));
        assert_eq!(
            fx.apply(&room, &a, None, add(&a, "a3")).await,
            applied_op(6)
        );
        // Growing an element counts too: the room's bytes are full.
        assert_eq!(
            refused(
                fx.apply(&room, &b, None, update("b1", json!({"fill": "#123456"})))
                    .await
            ),
            format!("this room holds at most {} bytes", q.room_bytes)
        );
        let shrink = Intent::Delete(vec![StrokeId::new("b1"), StrokeId::new("b2")]);
        assert_eq!(fx.apply(&room, &b, None, shrink).await, applied_op(7));
    }

    pub async fn idempotency_records_live_two_replay_windows(fx: &Fixture) {
        let (room, a, _b) = fx.two_joined("alice", "bob").await;
        assert_eq!(fx.draw(&room, &a, "s1").await, applied(1, "s1"));
        for (seq, id) in (2..=6).zip(["s2", "s3", "s4", "s5", "s6"]) {
            assert_eq!(fx.draw(&room, &a, id).await, applied(seq, id));
        }
        // s1 is a generation back (rotated at seq 4): still known.
        assert_eq!(
            fx.draw(&room, &a, "s1").await,
            OpOutcome::Duplicate {
                seq: 1,
                ack_id: Some(StrokeId::new("s1"))
            }
        );
        for (seq, id) in (7..=8).zip(["s7", "s8"]) {
            assert_eq!(fx.draw(&room, &a, id).await, applied(seq, id));
        }
        // Rotated again at seq 8: s1's record is gone (its stroke is still there, so the resend
        // is refused for its id), s5's is one generation back.
        assert!(matches!(
            fx.draw(&room, &a, "s1").await,
            OpOutcome::Refused(Refusal::BadStroke(_))
        ));
        assert!(matches!(
            fx.draw(&room, &a, "s5").await,
            OpOutcome::Duplicate { seq: 5, .. }
        ));
        if let Some(backend) = &fx.redis {
            let mut conn = backend.server.client().await;
            let base = format!("{}room:{{{room}}}", backend.prefix);
            let mut records = 0;
            for key in ["ops", "ops-prev"] {
                let n: u64 = ::redis::cmd("HLEN")
                    .arg(format!("{base}:{key}"))
                    .query_async(&mut conn)
                    .await
                    .expect("hlen");
                records += n;
            }
            assert!(records <= 2 * 4 + 2, "{records} records kept");
        }
    }

    /// Redis: a growing board's snapshots are spaced by its size (`last` names the newest).
    pub async fn growing_boards_are_snapshotted_further_apart(fx: &Fixture) {
        let (room, a, _b) = fx.two_joined("alice", "bob").await;
        let backend = fx.backend();
        let key = format!("{}room:{{{room}}}:history", backend.prefix);
        let mut conn = backend.server.client().await;
        // One stroke per op, snapshots at least 4 ops apart: due at 4, 8, 16 and 32, each taken
        // by the commit of its op.
        for seq in 1..=33 {
            fx.draw(&room, &a, &format!("s{seq}")).await;
        }
        let mut snapshots: Vec<String> = ::redis::cmd("HKEYS")
            .arg(&key)
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect("hkeys")
            .into_iter()
            .filter(|f| f.starts_with("s:"))
            .collect();
        snapshots.sort_by_key(|f| f[2..].parse::<u64>().unwrap_or(0));
        assert_eq!(snapshots, ["s:4", "s:8", "s:16", "s:32"]);
        let last: Option<String> = ::redis::cmd("HGET")
            .arg(&key)
            .arg("last")
            .query_async(&mut conn)
            .await
            .expect("hget");
        assert_eq!(last.as_deref(), Some("32:32"));
        let copy = format!("{}room:{{{room}}}:snap:32", backend.prefix);
        let elements: u64 = ::redis::cmd("HLEN")
            .arg(&copy)
            .query_async(&mut conn)
            .await
            .expect("hlen");
        assert_eq!(elements, 33, "the board after 32, its placeholder included");
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&copy)
            .query_async(&mut conn)
            .await
            .expect("pttl");
        assert!(ttl > 0, "a snapshot expires with its room: {ttl}");
        for at in [3, 16, 30] {
            let Past::Found(board) = fx.history.board_at(&room, Some(at)).await.expect("at") else {
                panic!("a board at {at}")
            };
            assert_eq!(board.len() as u64, at, "the board after seq {at}");
        }
        // A backup loaded over the room leaves none of the old room's snapshots behind.
        let dump = fx.history.dump(&room).await.expect("dump").expect("a room");
        fx.history.load(&dump).await.expect("load");
        let left: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}room:{{{room}}}:snap:*", backend.prefix))
            .query_async(&mut conn)
            .await
            .expect("keys");
        assert_eq!(left, Vec::<String>::new());
    }

    /// Redis: deleting every snapshot changes no answer.
    pub async fn snapshots_are_derived_data(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        let boards = history_run(fx, &room, &a, &b).await;
        let backend = fx.backend();
        let key = format!("{}room:{{{room}}}:history", backend.prefix);
        let conn = backend.server.client().await;
        wait_until("snapshots are written", WAIT, || {
            let key = key.clone();
            let mut conn = conn.clone();
            async move {
                let fields: Vec<String> = ::redis::cmd("HKEYS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                fields.iter().filter(|f| f.starts_with("s:")).count() >= 3
            }
        })
        .await;
        let answers = |fx: &Fixture| {
            let history = fx.history.clone();
            let room = room.clone();
            let n = boards.len() as u64;
            async move {
                let mut out = Vec::new();
                for at in 0..n {
                    if let Past::Found(board) =
                        history.board_at(&room, Some(at)).await.expect("board_at")
                    {
                        out.push(board.stored());
                    }
                }
                out
            }
        };
        let with = answers(fx).await;
        let run = |cmd: &str, args: &[&str]| {
            let mut c = ::redis::cmd(cmd);
            c.arg(args);
            let mut conn = conn.clone();
            async move {
                c.query_async::<::redis::Value>(&mut conn)
                    .await
                    .expect("redis")
            }
        };
        // A snapshot is the key `:snap:<seq>` (a copy of the board hash) and its `s:<seq>` field.
        let snap = format!("{}room:{{{room}}}:snap:8", backend.prefix);
        assert_eq!(run("EXISTS", &[&snap]).await, ::redis::Value::Int(1));
        let fields: Vec<String> = ::redis::cmd("HKEYS")
            .arg(&key)
            .query_async(&mut conn.clone())
            .await
            .expect("hkeys");
        for f in fields.iter().filter(|f| f.starts_with("s:")) {
            let copy = format!("{}room:{{{room}}}:snap:{}", backend.prefix, &f[2..]);
            run("HDEL", &[&key, f]).await;
            run("DEL", &[&copy]).await;
        }
        assert_eq!(answers(fx).await, with);
        assert_eq!(with.len(), boards.len());
        // And they are what answers are built from: an (artificially) emptied snapshot at seq 8
        // shows in the board after seq 9, which is read as that snapshot plus one op.
        run("HSET", &[&key, "s:8", ""]).await;
        run("HSET", &[&snap, "", ""]).await;
        let nine = |fx: &Fixture| {
            let history = fx.history.clone();
            let room = room.clone();
            async move {
                match history.board_at(&room, Some(9)).await.expect("at 9") {
                    Past::Found(board) => board.len(),
                    other => panic!("a board at 9: {other:?}"),
                }
            }
        };
        assert!(
            nine(fx).await < with[9].len(),
            "the board after 9 was read from the snapshot at 8"
        );
        // An older gateway's snapshot, its board as text in the field, is read too.
        run("DEL", &[&snap]).await;
        run("HSET", &[&key, "s:8", r#"{"seq":8,"elements":[]}"#]).await;
        assert!(nine(fx).await < with[9].len(), "read from the text at s:8");
    }

    pub async fn text_edits_merge_character_by_character(fx: &Fixture) {
        let (room, mut ann, mut bob) = fx.two_joined("ann", "bob").await;
        let note = element(
            &room,
            &ann.who,
            json!({"id": "n", "kind": "sticky", "x": 0, "y": 0, "w": 9, "h": 9, "text": "ab"}),
        );
        assert_eq!(
            fx.apply(&room, &ann, None, Intent::Add(vec![note])).await,
            applied_op(1)
        );
        fx.flush(&room, &mut [&mut ann, &mut bob]).await;
        let edit = |ops: Value| Intent::TextEdit {
            id: StrokeId::new("n"),
            ops: serde_json::from_value(ops).expect("ops"),
        };
        // Both type after "b" at once (the text "ab" has the derived ids ann:1, ann:2). Equal
        // n: the greater user id goes first, whatever the order they are applied in.
        let (one, two) = tokio::join!(
            fx.apply(
                &room,
                &ann,
                Some("t1"),
                edit(json!([{"after": "ann:2", "first": "ann:3", "text": "YZ"}]))
            ),
            fx.apply(
                &room,
                &bob,
                Some("t2"),
                edit(json!([{"after": "ann:2", "first": "bob:3", "text": "X"}]))
            ),
        );
        assert!(
            matches!(
                (&one, &two),
                (OpOutcome::Applied { .. }, OpOutcome::Applied { .. })
            ),
            "{one:?} {two:?}"
        );
        // Ann gets her own op's marker and Bob's event, in seq order.
        let mut frame = Value::Null;
        for _ in 0..2 {
            if let Item::Frame {
                seq: Some(_),
                bytes,
                ..
            } = ann.item().await
            {
                frame = parse(&bytes);
            }
        }
        assert_eq!(frame["type"], "TEXT_EDITED");
        assert_eq!(
            frame["payload"]["ops"],
            json!([{"after": "ann:2", "first": "bob:3", "text": "X"}])
        );
        let board = |view: &RoomView| board_of(view).remove(0);
        let c = fx.peer(&room, "cy", 3);
        let note = board(&fx.join(&room, &c, None).await);
        assert_eq!(note["text"], "abXYZ");
        assert_eq!(note["textState"][2], json!(["bob:3", "X", false]));

        // Deletes are tombstones; the plain text follows.
        assert!(matches!(
            fx.apply(
                &room,
                &bob,
                None,
                edit(json!([{"delete": ["ann:1", "bob:3"]}]))
            )
            .await,
            OpOutcome::Applied { .. }
        ));
        assert_eq!(board(&fx.join(&room, &c, None).await)["text"], "bYZ");
        // Bob's undo brings back what he deleted (as new characters of his), and only that.
        assert!(matches!(
            fx.undo(&room, &bob, None).await,
            OpOutcome::Applied { .. }
        ));
        assert_eq!(board(&fx.join(&room, &c, None).await)["text"], "abXYZ");
        // Ann's undo takes back her run.
        assert!(matches!(
            fx.undo(&room, &ann, None).await,
            OpOutcome::Applied { .. }
        ));
        assert_eq!(board(&fx.join(&room, &c, None).await)["text"], "abX");

        // Bad edits are refused, naming the op; nothing changes.
        let refused =
            |o: OpOutcome, needle: &str| assert!(is_refused_bad_element(&o, needle), "{o:?}");
        refused(
            fx.apply(
                &room,
                &ann,
                None,
                edit(json!([{"after": "zed:9", "first": "ann:50", "text": "q"}])),
            )
            .await,
            "ops[0]",
        );
        refused(
            fx.apply(
                &room,
                &ann,
                None,
                edit(json!([{"after": null, "first": "bob:50", "text": "q"}])),
            )
            .await,
            "sender",
        );
        refused(
            fx.apply(
                &room,
                &ann,
                None,
                edit(json!([{"after": "bob:3", "first": "ann:1", "text": "q"}])),
            )
            .await,
            "ops[0]",
        );
        assert_eq!(
            fx.apply(
                &room,
                &ann,
                None,
                Intent::TextEdit {
                    id: StrokeId::new("gone"),
                    ops: vec![]
                }
            )
            .await,
            OpOutcome::Refused(Refusal::NotFound)
        );
        assert_eq!(
            fx.apply(
                &room,
                &ann,
                None,
                Intent::Add(vec![rect(&room, &ann.who, "r")])
            )
            .await,
            applied_op(7)
        );
        refused(
            fx.apply(
                &room,
                &ann,
                None,
                Intent::TextEdit {
                    id: StrokeId::new("r"),
                    ops: vec![],
                },
            )
            .await,
            "no text",
        );

        // Setting the whole text starts a new state, with ids past every old one.
        let replaced = fx
            .apply(&room, &bob, None, update("n", json!({"text": "new"})))
            .await;
        assert_eq!(replaced, applied_op(8));
        let note = board(&fx.join(&room, &c, None).await);
        assert_eq!(note["text"], "new");
        // The old state went up to n = 6 (Bob's undo re-inserted two characters as 5 and 6).
        assert_eq!(note["textState"][0][0], "bob:7");
        // Deleting what is already deleted changes nothing, and is no error: it happens when two
        // people erase the same word at once.
        let first = note["textState"][0][0].as_str().expect("an id").to_owned();
        let erase = || edit(json!([{"delete": [first.clone()]}]));
        assert_eq!(fx.apply(&room, &ann, None, erase()).await, applied_op(9));
        assert_eq!(fx.apply(&room, &bob, None, erase()).await, applied_op(10));
        assert_eq!(board(&fx.join(&room, &c, None).await)["text"], "ew");
    }

    /// A room a v1 gateway wrote (strokes in a list) is moved at start-up, keeping its board.
    pub async fn v1_rooms_move_to_the_board_layout(fx: &Fixture) {
        let redis = fx.backend();
        let mut conn = redis.server.client().await;
        let room = fx.room().await;
        let base = format!("{}room:{{{room}}}", redis.prefix);
        let a = identity("alice");
        let v1 = |id: &str| {
            format!(
                r##"{{"userId":"alice","strokeId":"{id}","roomId":"{room}","points":[{{"x":1.5,"y":2.0}},{{"x":-3.0,"y":4.25}}],"color":"#ff8800","width":2.5}}"##
            )
        };
        // What a v1 gateway left: no board hash, strokes in a list.
        ::redis::pipe()
            .del(format!("{base}:strokes"))
            .del(format!("{base}:ops"))
            .rpush(format!("{base}:strokes"), vec![v1("s1"), v1("s\\\"2")])
            .rpush(
                format!("{base}:log"),
                r#"{"seq":2,"origin":"x/1","frame":{}}"#,
            )
            .hset(format!("{base}:undone"), "alice", "[]")
            .hset(&base, "seq", 2)
            .query_async::<()>(&mut conn)
            .await
            .expect("seed a v1 room");
        let twin = fx.twin().await;
        let mut c = twin.peer(&room, "carol", 3);
        let view = twin.join(&room, &c, None).await;
        assert_eq!(view.seq, 2);
        let board = board_of(&view);
        assert_eq!(board.len(), 2);
        assert_eq!(
            (board[0]["id"].clone(), board[0]["z"].clone()),
            (json!("s1"), json!(1))
        );
        assert_eq!(board[1]["strokeId"], json!("s\"2"));
        assert_eq!(snapshot(&view)[0], stroke_json(&room, &a, "s1"));
        // The moved room works: the next stroke is on top, and its author may undo the old ones.
        let who = twin.peer(&room, "alice", 1);
        twin.join(&room, &who, None).await;
        twin.flush(&room, &mut [&mut c]).await;
        assert_eq!(twin.draw(&room, &who, "s3").await, applied(3, "s3"));
        assert_eq!(twin.undo(&room, &who, Some("s1")).await, applied(4, "s1"));
        let kind: String = ::redis::cmd("TYPE")
            .arg(format!("{base}:undone"))
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        assert_eq!(kind, "none");
        // A since from before the move gets the board, not a replay of records it cannot read.
        let d = twin.peer(&room, "dave", 4);
        let view = twin.join(&room, &d, Some((1, view.epoch.as_str()))).await;
        assert_eq!(board_of(&view).len(), 2);
        twin.stop().await;
    }

    pub async fn element_ops_are_sequenced_and_fanned_out(fx: &Fixture) {
        let (room, mut a, mut b) = fx.two_joined("alice", "bob").await;
        fx.flush(&room, &mut [&mut a, &mut b]).await;

        let r1 = rect(&room, &a.who, "r1");
        let e1 = element(
            &room,
            &a.who,
            json!({"id": "e1", "kind": "ellipse", "x": 1, "y": 2, "w": 3, "h": 4, "z": 7.5}),
        );
        let added = Intent::Add(vec![r1.clone(), e1.clone()]);
        assert_eq!(fx.apply(&room, &a, Some("add"), added).await, applied_op(1));
        assert_eq!(a.own().await, 1);
        // One event; the server placed r1 on top (z 1: the board was empty) and kept e1's z.
        let Item::Frame {
            seq: Some(1),
            bytes,
            ..
        } = b.item().await
        else {
            panic!("wanted event 1")
        };
        let frame = parse_exact(&bytes);
        assert_eq!(
            frame["payload"]["elements"],
            json!([
                stored(&r1, 1, 1),
                parse_exact(e1.stored(1, "7.5").as_bytes())
            ])
        );
        assert_eq!(frame["type"], "ELEMENTS_ADDED");
        assert_eq!(frame["payload"]["userId"], "alice");

        let moved = update("r1", json!({"x": 5, "color": "#112233"}));
        assert_eq!(
            fx.apply(&room, &b, Some("move"), moved).await,
            applied_op(2)
        );
        assert_eq!(b.own().await, 2);
        let (seq, frame) = a.sequenced().await;
        assert_eq!(seq, 2);
        assert_eq!(
            frame,
            json!({"type": "ELEMENTS_UPDATED", "payload": {"roomId": room.as_str(), "userId": "bob",
                "updates": [{"id": "r1", "patch": {"x": 5, "color": "#112233"}}], "seq": 2}})
        );
        assert_eq!(
            fx.apply(&room, &b, None, delete(&["e1", "nope"])).await,
            applied_op(3)
        );
        let (_, frame) = a.sequenced().await;
        assert_eq!(frame["type"], "ELEMENTS_DELETED");
        assert_eq!(frame["payload"]["ids"], json!(["e1"]));
        fx.settle(&room, &mut [&mut a]).await;

        // Ids that do not exist are refused with no seq used.
        assert_eq!(
            fx.apply(&room, &b, None, update("nope", json!({"x": 1})))
                .await,
            OpOutcome::Refused(Refusal::NotFound)
        );
        assert_eq!(
            fx.apply(&room, &b, None, delete(&["e1"])).await,
            OpOutcome::Refused(Refusal::NotFound)
        );

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 3);
        let mut r1_after = r1.clone();
        r1_after.x = Some(5.0);
        r1_after.color = Some("#112233".into());
        assert_eq!(board_of(&view), [stored(&r1_after, 2, 1)]);
    }

    pub async fn elements_take_paint_order_and_strokes_stay_v1(fx: &Fixture) {
        let room = fx.room().await;
        let a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.draw_each(&room, &a, 1, &["s1"]).await;
        let low = element(
            &room,
            &a.who,
            json!({"id": "low", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1, "z": -3}),
        );
        assert_eq!(
            fx.apply(
                &room,
                &a,
                None,
                Intent::Add(vec![rect(&room, &a.who, "top"), low.clone()])
            )
            .await,
            applied_op(2)
        );
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        // z order: low (-3), s1 (1), top (2).
        let ids: Vec<Value> = board_of(&view).iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids, [json!("low"), json!("s1"), json!("top")]);
        let s1 = &board_of(&view)[1];
        assert_eq!(
            (s1["v"].clone(), s1["z"].clone(), s1["strokeId"].clone()),
            (json!(1), json!(1), json!("s1"))
        );
        // A stroke id already on the board is refused for a stroke as for an element.
        let again = fx.draw(&room, &a, "s1-again").await;
        assert_eq!(again, applied(3, "s1-again"));
        let dup = Intent::Stroke(Box::new(Element::from_stroke(stroke(&room, &a.who, "s1"))));
        assert!(
            matches!(fx.apply(&room, &a, Some("other-op"), dup).await, OpOutcome::Refused(Refusal::BadStroke(m)) if m.contains("s1"))
        );
        assert!(is_refused_bad_element(
            &fx.apply(
                &room,
                &a,
                None,
                Intent::Add(vec![rect(&room, &a.who, "top")])
            )
            .await,
            "already exists"
        ));
        assert_eq!(fx.draw(&room, &a, "s2").await, applied(4, "s2"));
    }

    pub async fn deleting_a_node_deletes_its_edges(fx: &Fixture) {
        let room = fx.room().await;
        let mut a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        let who = a.who.clone();
        let graph = Intent::Add(vec![
            node(&room, &who, "n1"),
            node(&room, &who, "n2"),
            node(&room, &who, "n3"),
            edge(&room, &who, "e12", "n1", "n2"),
            edge(&room, &who, "e23", "n2", "n3"),
        ]);
        assert_eq!(fx.apply(&room, &a, None, graph).await, applied_op(1));
        // An edge must join nodes of the room.
        let dangling = Intent::Add(vec![edge(&room, &who, "e9", "n1", "ghost")]);
        assert!(is_refused_bad_element(
            &fx.apply(&room, &a, None, dangling).await,
            "elements[0].to"
        ));
        let to_rect = Intent::Add(vec![
            rect(&room, &who, "r"),
            edge(&room, &who, "e9", "n1", "r"),
        ]);
        assert!(is_refused_bad_element(
            &fx.apply(&room, &a, None, to_rect).await,
            "not a node"
        ));
        let mut b = fx.peer(&room, "bob", 2);
        fx.join(&room, &b, None).await;
        fx.flush(&room, &mut [&mut a, &mut b]).await;

        assert_eq!(
            fx.apply(&room, &a, None, delete(&["n1"])).await,
            applied_op(2)
        );
        let (_, frame) = b.sequenced().await;
        assert_eq!(frame["payload"]["ids"], json!(["n1", "e12"]));
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        let ids: Vec<Value> = board_of(&view).iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids, [json!("n2"), json!("n3"), json!("e23")]);
        fx.flush(&room, &mut [&mut b]).await;
        // Undo brings the node back before its edge.
        assert_eq!(fx.undo(&room, &a, None).await, applied_op(3));
        let (_, frame) = b.sequenced().await;
        assert_eq!(frame["type"], "ELEMENTS_ADDED");
        let back: Vec<Value> = frame["payload"]["elements"]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["id"].clone())
            .collect();
        assert_eq!(back, [json!("n1"), json!("e12")]);
    }

    pub async fn undo_and_redo_reverse_every_kind(fx: &Fixture) {
        let (room, mut a, mut b) = fx.two_joined("alice", "bob").await;
        let who = a.who.clone();
        assert_eq!(
            fx.apply(&room, &a, None, Intent::Add(vec![rect(&room, &who, "r")]))
                .await,
            applied_op(1)
        );
        assert_eq!(
            fx.apply(&room, &a, None, update("r", json!({"x": 50})))
                .await,
            applied_op(2)
        );
        // Bob changes another field, then the same one... no: another field only.
        assert_eq!(
            fx.apply(&room, &b, None, update("r", json!({"color": "#ff0000"})))
                .await,
            applied_op(3)
        );
        fx.flush(&room, &mut [&mut a, &mut b]).await;

        // Alice's undo restores her field and keeps Bob's.
        assert_eq!(fx.undo(&room, &a, None).await, applied_op(4));
        assert_eq!(a.own().await, 4);
        let (_, frame) = b.sequenced().await;
        assert_eq!(
            frame["payload"]["updates"],
            json!([{"id": "r", "patch": {"x": 0.0}}])
        );
        // Bob's undo of his own colour is his alone.
        assert_eq!(fx.undo(&room, &b, None).await, applied_op(5));
        assert_eq!(b.own().await, 5);
        let (_, frame) = a.sequenced().await;
        assert_eq!(
            frame["payload"]["updates"],
            json!([{"id": "r", "patch": {"color": null}}])
        );
        assert_eq!(
            fx.undo(&room, &b, None).await,
            OpOutcome::Refused(Refusal::NothingToUndo)
        );
        // Alice's next undo reverses her add; redo brings the rect back where it was.
        assert_eq!(fx.undo(&room, &a, None).await, applied_op(6));
        let (_, frame) = b.sequenced().await;
        assert_eq!(
            (frame["type"].clone(), frame["payload"]["ids"].clone()),
            (json!("ELEMENTS_DELETED"), json!(["r"]))
        );
        assert_eq!(
            fx.undo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToUndo)
        );
        assert_eq!(fx.redo(&room, &a, None).await, applied_op(7));
        let (_, frame) = b.sequenced().await;
        assert_eq!(frame["type"], "ELEMENTS_ADDED");
        assert_eq!(
            parse_exact(frame.to_string().as_bytes())["payload"]["elements"][0]["id"],
            "r"
        );
        assert_eq!(fx.redo(&room, &a, None).await, applied_op(8));
        let (_, frame) = b.sequenced().await;
        assert_eq!(
            frame["payload"]["updates"],
            json!([{"id": "r", "patch": {"x": 50.0}}])
        );
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );

        // Undo of a delete re-adds it, with its paint order.
        assert_eq!(
            fx.apply(&room, &a, None, delete(&["r"])).await,
            applied_op(9)
        );
        assert_eq!(fx.undo(&room, &a, None).await, applied_op(10));
        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        let board = board_of(&view);
        assert_eq!(
            (
                board[0]["id"].clone(),
                board[0]["z"].clone(),
                board[0]["v"].clone(),
                board[0]["x"].clone()
            ),
            (json!("r"), json!(1), json!(10), json!(50.0))
        );
        // A new op ends the redo chain.
        assert_eq!(
            fx.apply(&room, &a, None, update("r", json!({"y": 1})))
                .await,
            applied_op(11)
        );
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
    }

    pub async fn element_ops_are_idempotent_per_user(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        let add = || Intent::Add(vec![rect(&room, &a.who, "r")]);
        assert_eq!(
            fx.apply(&room, &a, Some("op-1"), add()).await,
            applied_op(1)
        );
        assert_eq!(
            fx.apply(&room, &a, Some("op-1"), add()).await,
            OpOutcome::Duplicate {
                seq: 1,
                ack_id: None
            }
        );
        let moved = || update("r", json!({"x": 3}));
        assert_eq!(
            fx.apply(&room, &a, Some("op-2"), moved()).await,
            applied_op(2)
        );
        assert_eq!(
            fx.apply(&room, &a, Some("op-2"), moved()).await,
            OpOutcome::Duplicate {
                seq: 2,
                ack_id: None
            }
        );
        // The same op id from someone else is another op.
        assert_eq!(
            fx.apply(&room, &b, Some("op-2"), moved()).await,
            applied_op(3)
        );
        assert_eq!(
            fx.apply(&room, &a, Some("op-3"), delete(&["r"])).await,
            applied_op(4)
        );
        assert_eq!(
            fx.apply(&room, &a, Some("op-3"), delete(&["r"])).await,
            OpOutcome::Duplicate {
                seq: 4,
                ack_id: None
            }
        );
        // Strokes too: the duplicate names the stroke.
        assert_eq!(fx.draw(&room, &a, "s1").await, applied(5, "s1"));
        assert_eq!(fx.draw(&room, &a, "s1").await, duplicate(5, "s1"));
        assert_eq!(
            fx.apply(&room, &b, Some("op-9"), moved()).await,
            OpOutcome::Refused(Refusal::NotFound)
        );
    }

    pub async fn concurrent_updates_merge_per_field(fx: &Fixture) {
        let (room, a, b) = fx.two_joined("alice", "bob").await;
        assert_eq!(
            fx.apply(&room, &a, None, Intent::Add(vec![rect(&room, &a.who, "r")]))
                .await,
            applied_op(1)
        );
        for round in 0..10_u32 {
            let x = json!({"x": round});
            let color = json!({"color": format!("#00000{round}")});
            let (one, two) = tokio::join!(
                fx.apply(&room, &a, None, update("r", x)),
                fx.apply(&room, &b, None, update("r", color)),
            );
            let seqs: Vec<u64> = [one, two]
                .into_iter()
                .map(|o| match o {
                    OpOutcome::Applied { seq, .. } => seq,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                seqs.iter().sum::<u64>(),
                4 * u64::from(round) + 5,
                "two consecutive seqs"
            );
            let c = fx.peer(&room, "carol", 3);
            let board = board_of(&fx.join(&room, &c, None).await);
            assert_eq!(board[0]["x"], json!(f64::from(round)));
            assert_eq!(board[0]["color"], json!(format!("#00000{round}")));
            fx.leave(&room, &c).await;
        }
    }

    /// Two Redis engines (two instances) on one Redis, writing the same element at once.
    pub async fn two_instances_converge_per_field(fx: &Fixture) {
        let twin = fx.twin().await;
        let room = fx.room().await;
        let mut a = fx.peer(&room, "alice", 1);
        let mut b = twin.peer(&room, "bob", 2);
        fx.join(&room, &a, None).await;
        twin.join(&room, &b, None).await;
        assert_eq!(
            fx.apply(&room, &a, None, Intent::Add(vec![rect(&room, &a.who, "r")]))
                .await,
            applied_op(1)
        );
        let mut finals = Vec::new();
        for round in 0..20_u64 {
            let (one, two) = tokio::join!(
                fx.apply(
                    &room,
                    &a,
                    None,
                    update("r", json!({"x": round, "w": round}))
                ),
                twin.apply(
                    &room,
                    &b,
                    None,
                    update("r", json!({"y": round, "w": round + 100}))
                ),
            );
            let seq_of = |o: OpOutcome| match o {
                OpOutcome::Applied { seq, .. } => seq,
                other => panic!("{other:?}"),
            };
            let (sa, sb) = (seq_of(one), seq_of(two));
            // Both fields of their own win; the shared field is the later seq's.
            let w = if sa > sb { round } else { round + 100 };
            finals.push((round, w));
        }
        let (round, w) = *finals.last().expect("rounds");
        for engine in [fx, &twin] {
            let c = engine.peer(&room, "carol", 7);
            let board = board_of(&engine.join(&room, &c, None).await);
            assert_eq!(
                (
                    board[0]["x"].clone(),
                    board[0]["y"].clone(),
                    board[0]["w"].clone()
                ),
                (json!(round as f64), json!(round as f64), json!(w as f64))
            );
            engine.leave(&room, &c).await;
        }
        // Both instances delivered the same 41 events in the same order.
        let mut seen_a = Vec::new();
        let mut seen_b = Vec::new();
        while seen_a.len() < 41 {
            match a.item().await {
                Item::Own { seq } => seen_a.push(json!({"own": seq})),
                Item::Frame {
                    seq: Some(seq),
                    bytes,
                    ..
                } => seen_a.push(json!({"seq": seq, "frame": parse(&bytes)})),
                _ => {}
            }
        }
        while seen_b.len() < 41 {
            match b.item().await {
                Item::Own { seq } => seen_b.push(json!({"own": seq})),
                Item::Frame {
                    seq: Some(seq),
                    bytes,
                    ..
                } => seen_b.push(json!({"seq": seq, "frame": parse(&bytes)})),
                _ => {}
            }
        }
        let seqs = |seen: &[Value]| -> Vec<u64> {
            seen.iter()
                .map(|v| v["seq"].as_u64().or(v["own"].as_u64()).unwrap_or(0))
                .collect()
        };
        assert_eq!(seqs(&seen_a), (1..=41).collect::<Vec<_>>());
        assert_eq!(seqs(&seen_b), (1..=41).collect::<Vec<_>>());
        twin.stop().await;
    }

    pub async fn rooms_exist_once_created(fx: &Fixture) {
        let before = now_ms();
        let info = fx
            .engine
            .create_room(&UserId::new("creator"))
            .await
            .expect("create_room");
        let ttl = fx.settings.room_ttl.expect("a ttl").as_millis() as u64;
        let at = info.expires_at.expect("rooms with a ttl have an expiry");
        assert!(
            at >= before + ttl && at <= now_ms() + ttl,
            "expires_at {at} is not creation + ttl"
        );
        assert!(fx.engine.room_exists(&info.room_id).await.expect("exists"));
        let other = fx.room().await;
        assert_ne!(other, info.room_id);
        assert!(fx.engine.room_exists(&other).await.expect("exists"));
    }

    pub async fn unknown_rooms_are_missing(fx: &Fixture) {
        let room = RoomId::random();
        assert!(!fx.engine.room_exists(&room).await.expect("exists"));
        let mut watcher = fx.peer(&room, "watcher", 900);
        let alice = fx.peer(&room, "alice", 1);
        let joined = fx.join_outcome(&room, &alice, None).await;
        assert!(matches!(joined, JoinOutcome::Missing), "{joined:?}");
        assert_eq!(fx.draw(&room, &alice, "a1").await, OpOutcome::RoomMissing);
        assert_eq!(fx.undo(&room, &alice, None).await, OpOutcome::RoomMissing);
        assert_eq!(
            fx.redo(&room, &alice, Some("a1")).await,
            OpOutcome::RoomMissing
        );
        assert!(
            fx.engine
                .events_after(&room, 0)
                .await
                .expect("events_after")
                .is_none()
        );
        fx.leave(&room, &alice).await;
        // None of that brought the room into being or told anyone anything.
        assert!(!fx.engine.room_exists(&room).await.expect("exists"));
        fx.settle(&room, &mut [&mut watcher]).await;
    }

    pub async fn join_returns_a_snapshot_and_tells_the_others(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a1 = fx.peer(&room, "alice", 1);
        let view = fx.join(&room, &a1, None).await;
        assert_eq!(view.seq, 0);
        assert!(!view.epoch.is_empty());
        let epoch = view.epoch.clone();
        assert_eq!(users(&view), [member_json(&a1.who)]);
        assert_eq!(snapshot(&view), Vec::<Value>::new());
        assert_eq!(watcher.transient().await, user_joined(&room, &a1.who));
        assert_eq!(watcher.transient().await, user_count(&room, 1));
        // The joiner gets the count, but not its own USER_JOINED.
        assert_eq!(a1.transient().await, user_count(&room, 1));

        // A second connection of the same user is the same user.
        let mut a2 = fx.peer(&room, "alice", 2);
        let view = fx.join(&room, &a2, None).await;
        assert_eq!((view.seq, view.epoch.as_str()), (0, epoch.as_str()));
        assert_eq!(users(&view), [member_json(&a1.who)]);
        expect_transient(
            &mut [&mut watcher, &mut a1, &mut a2],
            &[user_count(&room, 1)],
        )
        .await;

        let mut b1 = fx.peer(&room, "bob", 3);
        let view = fx.join(&room, &b1, None).await;
        assert_eq!(users(&view), [member_json(&a1.who), member_json(&b1.who)]);
        expect_transient(
            &mut [&mut watcher, &mut a1, &mut a2],
            &[user_joined(&room, &b1.who), user_count(&room, 2)],
        )
        .await;
        assert_eq!(b1.transient().await, user_count(&room, 2));
        fx.settle(&room, &mut [&mut watcher, &mut a1, &mut a2, &mut b1])
            .await;
    }

    pub async fn strokes_are_sequenced_and_fanned_out(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a = fx.peer(&room, "alice", 1);
        let mut b = fx.peer(&room, "bob", 2);
        fx.join(&room, &a, None).await;
        fx.join(&room, &b, None).await;
        fx.flush(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        assert_eq!(fx.draw(&room, &a, "a1").await, applied(1, "a1"));
        assert_eq!(a.own().await, 1);
        let frame = canvas_update(&room, &a.who, "a1", 1);
        expect_event(&mut [&mut b, &mut watcher], 1, &frame).await;

        assert_eq!(fx.draw(&room, &b, "b1").await, applied(2, "b1"));
        assert_eq!(b.own().await, 2);
        let frame = canvas_update(&room, &b.who, "b1", 2);
        expect_event(&mut [&mut a, &mut watcher], 2, &frame).await;

        // An op without an op id is applied all the same.
        let a2 = stroke(&room, &a.who, "a2");
        assert_eq!(
            fx.apply(
                &room,
                &a,
                None,
                Intent::Stroke(Box::new(Element::from_stroke(a2)))
            )
            .await,
            applied(3, "a2")
        );
        assert_eq!(a.own().await, 3);
        let frame = canvas_update(&room, &a.who, "a2", 3);
        expect_event(&mut [&mut b, &mut watcher], 3, &frame).await;
        fx.settle(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 3);
        assert_eq!(
            snapshot(&view),
            [
                stroke_json(&room, &a.who, "a1"),
                stroke_json(&room, &b.who, "b1"),
                stroke_json(&room, &a.who, "a2"),
            ]
        );
    }

    pub async fn op_ids_make_ops_idempotent(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.flush(&room, &mut [&mut watcher, &mut a]).await;

        assert_eq!(fx.draw(&room, &a, "a1").await, applied(1, "a1"));
        assert_eq!(a.own().await, 1);
        let frame = canvas_update(&room, &a.who, "a1", 1);
        expect_event(&mut [&mut watcher], 1, &frame).await;
        assert_eq!(fx.draw(&room, &a, "a1").await, duplicate(1, "a1"));
        // The op id decides, whatever the resent op holds.
        let other = stroke(&room, &a.who, "a1-retry");
        assert_eq!(
            fx.apply(
                &room,
                &a,
                Some("a1"),
                Intent::Stroke(Box::new(Element::from_stroke(other))),
            )
            .await,
            duplicate(1, "a1")
        );
        fx.settle(&room, &mut [&mut watcher, &mut a]).await;

        assert_eq!(fx.draw(&room, &a, "a2").await, applied(2, "a2"));
        assert_eq!(a.own().await, 2);
        let frame = canvas_update(&room, &a.who, "a2", 2);
        expect_event(&mut [&mut watcher], 2, &frame).await;

        // Undo is idempotent under its op id too: resending it undoes nothing more.
        assert_eq!(
            fx.apply(&room, &a, Some("u1"), Intent::Undo(None)).await,
            applied(3, "a2")
        );
        assert_eq!(a.own().await, 3);
        let frame = undo_frame(&room, &a.who, "a2", 3);
        expect_event(&mut [&mut watcher], 3, &frame).await;
        assert_eq!(
            fx.apply(&room, &a, Some("u1"), Intent::Undo(None)).await,
            duplicate(3, "a2")
        );
        fx.settle(&room, &mut [&mut watcher, &mut a]).await;

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 3);
        assert_eq!(snapshot(&view), [stroke_json(&room, &a.who, "a1")]);
    }

    pub async fn undo_removes_own_strokes_only(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a = fx.peer(&room, "alice", 1);
        let mut b = fx.peer(&room, "bob", 2);
        fx.join(&room, &a, None).await;
        fx.join(&room, &b, None).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2"]).await;
        fx.draw_each(&room, &b, 3, &["b1"]).await;
        fx.flush(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        // No id: the caller's latest stroke, not the room's latest.
        assert_eq!(fx.undo(&room, &a, None).await, applied(4, "a2"));
        assert_eq!(a.own().await, 4);
        let frame = undo_frame(&room, &a.who, "a2", 4);
        expect_event(&mut [&mut b, &mut watcher], 4, &frame).await;

        assert_eq!(fx.undo(&room, &a, Some("a1")).await, applied(5, "a1"));
        assert_eq!(a.own().await, 5);
        let frame = undo_frame(&room, &a.who, "a1", 5);
        expect_event(&mut [&mut b, &mut watcher], 5, &frame).await;

        assert_eq!(
            fx.undo(&room, &a, Some("b1")).await,
            OpOutcome::Refused(Refusal::Forbidden(
                "that stroke belongs to someone else".into()
            ))
        );
        assert_eq!(
            fx.undo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToUndo)
        );
        assert_eq!(
            fx.undo(&room, &a, Some("a1")).await,
            OpOutcome::Refused(Refusal::NothingToUndo),
            "already undone"
        );
        assert_eq!(
            fx.undo(&room, &a, Some("nope")).await,
            OpOutcome::Refused(Refusal::NothingToUndo)
        );
        fx.settle(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 5);
        assert_eq!(snapshot(&view), [stroke_json(&room, &b.who, "b1")]);
        // Refused ops took no seq.
        assert_eq!(fx.undo(&room, &b, None).await, applied(6, "b1"));
    }

    pub async fn redo_restores_undone_strokes(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a = fx.peer(&room, "alice", 1);
        let mut b = fx.peer(&room, "bob", 2);
        let c = fx.peer(&room, "carol", 3);
        fx.join(&room, &a, None).await;
        fx.join(&room, &b, None).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2", "a3"]).await;
        fx.draw_each(&room, &b, 4, &["b1"]).await;
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        assert_eq!(fx.undo(&room, &a, None).await, applied(5, "a3"));
        assert_eq!(fx.undo(&room, &a, Some("a1")).await, applied(6, "a1"));
        fx.flush(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        // No id: the most recently undone.
        assert_eq!(fx.redo(&room, &a, None).await, applied(7, "a1"));
        assert_eq!(a.own().await, 7);
        let frame = redo_frame(&room, &a.who, "a1", 7);
        expect_event(&mut [&mut b, &mut watcher], 7, &frame).await;
        // Redo stacks are per user.
        assert_eq!(
            fx.redo(&room, &b, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        assert_eq!(
            fx.redo(&room, &b, Some("a3")).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        assert_eq!(fx.redo(&room, &a, Some("a3")).await, applied(8, "a3"));
        assert_eq!(a.own().await, 8);
        let frame = redo_frame(&room, &a.who, "a3", 8);
        expect_event(&mut [&mut b, &mut watcher], 8, &frame).await;
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        fx.settle(&room, &mut [&mut watcher, &mut a, &mut b]).await;

        // A redone stroke goes back to its place in the paint order (its `z`).
        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 8);
        assert_eq!(
            snapshot(&view),
            [
                stroke_json(&room, &a.who, "a1"),
                stroke_json(&room, &a.who, "a2"),
                stroke_json(&room, &a.who, "a3"),
                stroke_json(&room, &b.who, "b1"),
            ]
        );

        // A new stroke of the user ends the user's redo chain...
        assert_eq!(fx.undo(&room, &a, None).await, applied(9, "a3"));
        assert_eq!(fx.draw(&room, &a, "a4").await, applied(10, "a4"));
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        assert_eq!(
            fx.redo(&room, &a, Some("a3")).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        // ...but someone else's stroke does not.
        assert_eq!(fx.undo(&room, &a, None).await, applied(11, "a4"));
        assert_eq!(fx.draw(&room, &b, "b2").await, applied(12, "b2"));
        assert_eq!(fx.redo(&room, &a, None).await, applied(13, "a4"));

        let view = fx.join(&room, &c, None).await;
        assert_eq!(view.seq, 13);
        assert_eq!(
            snapshot(&view),
            // Paint order: a4 kept its z (5), which b2 also got while a4 was undone; equal
            // z's order by id, as in a Redis sorted set.
            [
                stroke_json(&room, &a.who, "a1"),
                stroke_json(&room, &a.who, "a2"),
                stroke_json(&room, &b.who, "b1"),
                stroke_json(&room, &a.who, "a4"),
                stroke_json(&room, &b.who, "b2"),
            ]
        );
    }

    /// Runs with `redo_max: 2`.
    pub async fn redo_stack_is_capped(fx: &Fixture) {
        let room = fx.room().await;
        let a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2", "a3"]).await;
        assert_eq!(fx.undo(&room, &a, None).await, applied(4, "a3"));
        assert_eq!(fx.undo(&room, &a, None).await, applied(5, "a2"));
        assert_eq!(fx.undo(&room, &a, None).await, applied(6, "a1"));
        // Only the two most recent undos can be redone.
        assert_eq!(
            fx.redo(&room, &a, Some("a3")).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
        assert_eq!(fx.redo(&room, &a, None).await, applied(7, "a1"));
        assert_eq!(fx.redo(&room, &a, None).await, applied(8, "a2"));
        assert_eq!(
            fx.redo(&room, &a, None).await,
            OpOutcome::Refused(Refusal::NothingToRedo)
        );
    }

    pub async fn replay_covers_the_missed_events(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let a = fx.peer(&room, "alice", 1);
        let epoch = fx.join(&room, &a, None).await.epoch;
        fx.flush(&room, &mut [&mut watcher]).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2", "a3"]).await;
        assert_eq!(fx.undo(&room, &a, None).await, applied(4, "a3"));
        assert_eq!(fx.redo(&room, &a, None).await, applied(5, "a3"));
        let frames = watcher.events(1..=5).await;

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, Some((2, &epoch))).await;
        assert_eq!((view.seq, view.epoch.as_str()), (5, epoch.as_str()));
        assert_eq!(users(&view), [member_json(&a.who), member_json(&c.who)]);
        assert_eq!(replay(&room, &view), (3, frames[2..].to_vec()));

        let view = fx.join(&room, &c, Some((0, &epoch))).await;
        assert_eq!(replay(&room, &view), (1, frames.clone()));

        let view = fx.join(&room, &c, Some((5, &epoch))).await;
        assert_eq!(replay(&room, &view), (6, Vec::new()));

        let strokes: Vec<Value> = ["a1", "a2", "a3"]
            .iter()
            .map(|id| stroke_json(&room, &a.who, id))
            .collect();
        let view = fx.join(&room, &c, Some((2, "another-epoch"))).await;
        assert_eq!(view.seq, 5);
        assert_eq!(snapshot(&view), strokes);
        // A client ahead of the room saw another history.
        let view = fx.join(&room, &c, Some((6, &epoch))).await;
        assert_eq!(snapshot(&view), strokes);
    }

    /// Runs with `log_max: 3`.
    pub async fn trimmed_log_falls_back_to_a_snapshot(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let a = fx.peer(&room, "alice", 1);
        let epoch = fx.join(&room, &a, None).await.epoch;
        fx.flush(&room, &mut [&mut watcher]).await;
        let ids = ["a1", "a2", "a3", "a4", "a5"];
        fx.draw_each(&room, &a, 1, &ids).await;
        let frames = watcher.events(1..=5).await;
        let strokes: Vec<Value> = ids
            .iter()
            .map(|id| stroke_json(&room, &a.who, id))
            .collect();

        let c = fx.peer(&room, "carol", 3);
        let view = fx.join(&room, &c, Some((2, &epoch))).await;
        assert_eq!(replay(&room, &view), (3, frames[2..].to_vec()));
        for since in [1, 0] {
            let view = fx.join(&room, &c, Some((since, &epoch))).await;
            assert_eq!(view.seq, 5);
            assert_eq!(snapshot(&view), strokes, "since {since}");
        }
        let view = fx.join(&room, &c, Some((5, &epoch))).await;
        assert_eq!(replay(&room, &view), (6, Vec::new()));

        let slice = fx
            .engine
            .events_after(&room, 2)
            .await
            .expect("events_after")
            .expect("the log reaches back to 3");
        let got: Vec<(Option<u64>, Value)> = slice
            .events
            .iter()
            .map(|e| (e.seq, parse(&e.frame)))
            .collect();
        let want: Vec<(Option<u64>, Value)> = (3..=5)
            .map(|s| (Some(s), frames[s as usize - 1].clone()))
            .collect();
        assert_eq!(got, want);
        for after in [1, 0] {
            assert!(
                fx.engine
                    .events_after(&room, after)
                    .await
                    .expect("events_after")
                    .is_none(),
                "after {after}: the log no longer reaches back"
            );
        }
    }

    pub async fn events_after_reads_the_log(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let a = fx.peer(&room, "alice", 1);
        let b = fx.peer(&room, "bob", 2);
        let epoch = fx.join(&room, &a, None).await.epoch;
        fx.join(&room, &b, None).await;
        fx.flush(&room, &mut [&mut watcher]).await;
        assert_eq!(fx.draw(&room, &a, "a1").await, applied(1, "a1"));
        assert_eq!(fx.draw(&room, &b, "b1").await, applied(2, "b1"));
        assert_eq!(fx.draw(&room, &a, "a2").await, applied(3, "a2"));
        assert_eq!(fx.undo(&room, &a, None).await, applied(4, "a2"));
        let frames = watcher.events(1..=4).await;
        let origins = [&a.conn, &b.conn, &a.conn, &a.conn];

        for after in [0, 1, 3, 4] {
            let slice = fx
                .engine
                .events_after(&room, after)
                .await
                .expect("events_after")
                .unwrap_or_else(|| panic!("after {after}: the log reaches back"));
            assert_eq!(slice.epoch, epoch);
            let got: Vec<Value> = slice.events.iter().map(event_json).collect();
            let want: Vec<Value> = (after + 1..=4)
                .map(|s| {
                    let i = s as usize - 1;
                    json!({
                        "seq": s, "origin": origins[i].as_str(), "lossy": false,
                        "frame": frames[i]
                    })
                })
                .collect();
            assert_eq!(got, want, "after {after}");
        }
        assert!(
            fx.engine
                .events_after(&RoomId::random(), 0)
                .await
                .expect("events_after")
                .is_none()
        );
    }

    pub async fn leave_tells_the_room(fx: &Fixture) {
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let a1 = fx.peer(&room, "alice", 1);
        let mut a2 = fx.peer(&room, "alice", 2);
        let mut b = fx.peer(&room, "bob", 3);
        for peer in [&a1, &a2, &b] {
            fx.join(&room, peer, None).await;
        }
        fx.flush(&room, &mut [&mut watcher, &mut a2, &mut b]).await;

        // As a session does: out of the hub first, then out of the room.
        fx.hub.remove(&room, &a1.conn);
        fx.leave(&room, &a1).await;
        // Alice is still here on her other connection: no USER_LEFT.
        expect_transient(
            &mut [&mut watcher, &mut a2, &mut b],
            &[cursor_leave(&room, "alice"), user_count(&room, 2)],
        )
        .await;
        fx.settle(&room, &mut [&mut watcher, &mut a2, &mut b]).await;

        fx.hub.remove(&room, &a2.conn);
        fx.leave(&room, &a2).await;
        expect_transient(
            &mut [&mut watcher, &mut b],
            &[
                cursor_leave(&room, "alice"),
                user_left(&room, "alice", 1),
                user_count(&room, 1),
            ],
        )
        .await;

        // Leaving twice, or without having joined, is harmless and tells no one.
        fx.leave(&room, &a2).await;
        fx.leave(&room, &a1).await;
        let stranger = fx.peer(&room, "stranger", 77);
        fx.leave(&room, &stranger).await;
        fx.engine
            .leave(&RoomId::random(), &a1.conn)
            .await
            .expect("leaving an unknown room is harmless");
        fx.settle(&room, &mut [&mut watcher, &mut b]).await;

        let c = fx.peer(&room, "carol", 4);
        let view = fx.join(&room, &c, None).await;
        assert_eq!(users(&view), [member_json(&b.who), member_json(&c.who)]);
    }

    pub async fn transient_frames_skip_the_sender_and_are_lossy(fx: &Fixture) {
        let (room, mut sender, mut other) = fx.two_joined("alice", "bob").await;
        fx.flush(&room, &mut [&mut sender, &mut other]).await;
        // A member whose queue is full.
        let (tx, mut full_rx) = mpsc::channel(1);
        let full_overflow = CancellationToken::new();
        tx.try_send(Outbound {
            generation: 0,
            item: Item::Resync { rebased: false },
        })
        .expect("room for one");
        fx.hub.add(
            &room,
            Member {
                key: ConnKey::new(INSTANCE, 3),
                who: Arc::new(identity("full")),
                generation: 0,
                tx,
                overflow: full_overflow.clone(),
            },
        );
        let dropped = fx.hub.stats.dropped_lossy.get();

        let cursor = cursor_move(&room, &sender.who);
        fx.engine
            .publish_transient(&room, &sender.conn, cursor.to_string())
            .await
            .expect("publish_transient");
        assert_eq!(other.transient().await, cursor);
        // Delivered in the same pass: lossy, so the full member just misses it.
        assert_eq!(fx.hub.stats.dropped_lossy.get(), dropped + 1);
        assert!(
            !full_overflow.is_cancelled(),
            "a lossy frame cut a member loose"
        );
        fx.settle(&room, &mut [&mut sender, &mut other]).await;

        // A sequenced event is not lossy: the full member is cut loose instead.
        assert_eq!(fx.draw(&room, &sender, "a1").await, applied(1, "a1"));
        let frame = canvas_update(&room, &sender.who, "a1", 1);
        expect_event(&mut [&mut other], 1, &frame).await;
        assert!(full_overflow.is_cancelled());
        assert!(matches!(
            full_rx.try_recv().map(|o| o.item),
            Ok(Item::Resync { .. })
        ));
        assert!(full_rx.try_recv().is_err());
        assert!(!sender.overflow.is_cancelled() && !other.overflow.is_cancelled());
    }

    pub async fn rate_limit_counts_hits_per_window(fx: &Fixture) {
        let window = Duration::from_secs(30);
        for want in [2, 1, 0] {
            match fx.rate_limit("ws", "10.0.0.1", 3, window).await {
                RateDecision::Allowed { remaining, reset } => {
                    assert_eq!(remaining, want);
                    assert!(reset > Duration::ZERO && reset <= window, "{reset:?}");
                }
                other => panic!("hit {}: {other:?}", 3 - want),
            }
        }
        for _ in 0..2 {
            match fx.rate_limit("ws", "10.0.0.1", 3, window).await {
                RateDecision::Limited { retry_after } => {
                    assert!(
                        retry_after > Duration::ZERO && retry_after <= window,
                        "{retry_after:?}"
                    );
                }
                other => panic!("over the limit: {other:?}"),
            }
        }
        // Counters are per subject and per kind.
        for (kind, subject) in [("ws", "10.0.0.2"), ("login", "10.0.0.1")] {
            assert!(matches!(
                fx.rate_limit(kind, subject, 3, window).await,
                RateDecision::Allowed { remaining: 2, .. }
            ));
        }

        // A new window starts afresh.
        let short = Duration::from_millis(300);
        assert!(matches!(
            fx.rate_limit("short", "10.0.0.1", 1, short).await,
            RateDecision::Allowed { remaining: 0, .. }
        ));
        let retry_after = match fx.rate_limit("short", "10.0.0.1", 1, short).await {
            RateDecision::Limited { retry_after } => retry_after,
            other => panic!("over the limit: {other:?}"),
        };
        assert!(retry_after <= short, "{retry_after:?}");
        tokio::time::sleep(retry_after + Duration::from_millis(50)).await;
        assert!(matches!(
            fx.rate_limit("short", "10.0.0.1", 1, short).await,
            RateDecision::Allowed { remaining: 0, .. }
        ));
    }

    /// Runs with a 1.5 s room TTL: idle rooms vanish, activity keeps them.
    pub async fn rooms_expire_when_idle(fx: &Fixture) {
        let step = Duration::from_millis(900);
        let room = fx.room().await;
        let a = fx.peer(&room, "alice", 1);
        tokio::time::sleep(step).await;
        fx.join(&room, &a, None).await;
        tokio::time::sleep(step).await;
        // Older than the TTL, but active within it.
        assert!(fx.engine.room_exists(&room).await.expect("exists"));
        assert_eq!(fx.draw(&room, &a, "a1").await, applied(1, "a1"));
        tokio::time::sleep(step * 2).await;
        assert!(!fx.engine.room_exists(&room).await.expect("exists"));
        assert_eq!(fx.draw(&room, &a, "a2").await, OpOutcome::RoomMissing);
        let joined = fx.join_outcome(&room, &a, None).await;
        assert!(matches!(joined, JoinOutcome::Missing), "{joined:?}");
    }

    // Redis only.

    pub async fn sweep_removes_presence_of_dead_instances(fx: &Fixture) {
        let redis = fx.backend();
        let mut conn = redis.server.client().await;
        let room = fx.room().await;
        let mut watcher = fx.peer(&room, "watcher", 900);
        let mut a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.flush(&room, &mut [&mut watcher, &mut a]).await;

        let users_key = format!("{}room:{{{room}}}:users", redis.prefix);
        // Written as the gateway writes presence: `userId` first (the scripts rely on it).
        let hset = |field: &str, member: &str| {
            let mut cmd = ::redis::cmd("HSET");
            cmd.arg(&users_key).arg(field).arg(member);
            cmd
        };
        let live = r##"{"userId":"o","username":"O","color":"#654321"}"##;
        hset(
            "ghost/1",
            r##"{"userId":"g","username":"G","color":"#123456"}"##,
        )
        .query_async::<()>(&mut conn)
        .await
        .expect("HSET");
        ::redis::cmd("SET")
            .arg(format!("{}instance:other", redis.prefix))
            .arg("1")
            .arg("PX")
            .arg(60_000)
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
        hset("other/1", live)
            .query_async::<()>(&mut conn)
            .await
            .expect("HSET");

        assert_eq!(fx.engine.sweep_presence(&room).await.expect("sweep"), 1);
        expect_transient(
            &mut [&mut watcher, &mut a],
            &[
                cursor_leave(&room, "g"),
                user_left(&room, "g", 2),
                user_count(&room, 2),
            ],
        )
        .await;
        let mut fields: Vec<String> = ::redis::cmd("HKEYS")
            .arg(&users_key)
            .query_async(&mut conn)
            .await
            .expect("HKEYS");
        fields.sort();
        assert_eq!(fields, [a.conn.as_str(), "other/1"]);
        assert_eq!(fx.engine.sweep_presence(&room).await.expect("sweep"), 0);
        fx.settle(&room, &mut [&mut watcher, &mut a]).await;

        // A joiner never sees the presence of a dead instance.
        hset(
            "ghost/2",
            r##"{"userId":"g2","username":"G2","color":"#123456"}"##,
        )
        .query_async::<()>(&mut conn)
        .await
        .expect("HSET");
        let b = fx.peer(&room, "bob", 2);
        let view = fx.join(&room, &b, None).await;
        assert_eq!(
            users(&view),
            [
                member_json(&a.who),
                member_json(&b.who),
                parse(live.as_bytes())
            ]
        );
        expect_transient(
            &mut [&mut watcher],
            &[
                cursor_leave(&room, "g2"),
                user_left(&room, "g2", 2),
                user_count(&room, 2),
                user_joined(&room, &b.who),
                user_count(&room, 3),
            ],
        )
        .await;
        fx.settle(&room, &mut [&mut watcher]).await;
    }

    /// Runs with a 60 s room TTL.
    pub async fn room_keys_expire_after_activity(fx: &Fixture) {
        let redis = fx.backend();
        let mut conn = redis.server.client().await;
        let ttl = 60_000;
        let room = fx.room().await;
        let base = format!("{}room:{{{room}}}", redis.prefix);
        assert_pttls(&mut conn, std::slice::from_ref(&base), 0, ttl).await;

        // A member: the members hash lives and dies with the room's other keys.
        fx.access
            .set_room_member(&room, &UserId::new("bob"), Some(Role::Editor))
            .await
            .expect("member");
        let a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2", "a3"]).await;
        assert_eq!(fx.undo(&room, &a, None).await, applied(4, "a3"));
        let keys: Vec<String> = [
            "",
            ":strokes",
            ":log",
            ":users",
            ":ops",
            ":members",
            ":undo:alice",
            ":redo:alice",
        ]
        .iter()
        .map(|suffix| format!("{base}{suffix}"))
        .collect();
        assert_pttls(&mut conn, &keys, 0, ttl).await;

        async fn run(conn: &mut AnyConn, cmd: &str, key: &str) {
            let mut c = ::redis::cmd(cmd);
            c.arg(key);
            if cmd == "PEXPIRE" {
                c.arg(5_000);
            }
            c.query_async::<()>(conn).await.expect(cmd);
        }
        // Activity (here one that keeps every key in being) gives every key a whole TTL again.
        for key in &keys {
            run(&mut conn, "PEXPIRE", key).await;
        }
        let before = now_ms();
        assert_eq!(fx.undo(&room, &a, None).await, applied(5, "a2"));
        assert_pttls(&mut conn, &keys, 5_000, ttl).await;

        // A stroke refreshes only once a tenth of the TTL has passed, but a key it creates in
        // between gets the TTL at once: none is ever left without one.
        // (`:strokes` and `:ops` are created with the room, with its TTL, and kept by a
        // placeholder field: ops never create them.)
        for key in [":log", ":undo:alice"] {
            run(&mut conn, "DEL", &format!("{base}{key}")).await;
        }
        assert_eq!(fx.draw(&room, &a, "a4").await, applied(6, "a4"));
        assert_pttls(&mut conn, &keys[..7], 50_000, ttl).await;
        // Past a tenth of the TTL, a stroke refreshes every key (the stroke ended the redo
        // chain, so `:redo:alice` is gone).
        for key in &keys[..7] {
            run(&mut conn, "PEXPIRE", key).await;
        }
        assert_eq!(fx.draw(&room, &a, "a5").await, applied(7, "a5"));
        assert_pttls(&mut conn, &keys[..7], 5_000, ttl).await;
        let expires_at: u64 = ::redis::cmd("HGET")
            .arg(&base)
            .arg("expiresAt")
            .query_async(&mut conn)
            .await
            .expect("HGET expiresAt");
        assert!(
            expires_at >= before + ttl as u64 && expires_at <= now_ms() + ttl as u64,
            "expiresAt {expires_at}"
        );
    }

    /// Snapshot copies are not among any script's keys: `touch()` finds them through the
    /// history hash and refreshes them with the room's other keys.
    pub async fn snapshots_live_as_long_as_their_room(fx: &Fixture) {
        let redis = fx.backend();
        let mut conn = redis.server.client().await;
        let (room, a, _b) = fx.two_joined("alice", "bob").await;
        fx.draw_each(&room, &a, 1, &["a1", "a2", "a3", "a4"]).await;
        let base = format!("{}room:{{{room}}}", redis.prefix);
        let keys = [
            base.clone(),
            format!("{base}:strokes"),
            format!("{base}:snap:4"),
        ];
        assert_pttls(&mut conn, &keys, 0, 60_000).await;
        for key in &keys {
            let _: () = ::redis::cmd("PEXPIRE")
                .arg(key)
                .arg(5_000)
                .query_async(&mut conn)
                .await
                .expect("PEXPIRE");
        }
        // Past a tenth of the TTL, the next op refreshes every key of the room, the copy too.
        assert_eq!(fx.draw(&room, &a, "a5").await, applied(5, "a5"));
        assert_pttls(&mut conn, &keys, 5_000, 60_000).await;
    }

    /// Runs with no room TTL.
    pub async fn rooms_without_ttl_never_expire(fx: &Fixture) {
        let redis = fx.backend();
        let mut conn = redis.server.client().await;
        let info = fx
            .engine
            .create_room(&UserId::new("creator"))
            .await
            .expect("create_room");
        assert_eq!(info.expires_at, None);
        let room = info.room_id;
        let a = fx.peer(&room, "alice", 1);
        fx.join(&room, &a, None).await;
        fx.draw_each(&room, &a, 1, &["a1", "a2"]).await;
        assert_eq!(fx.undo(&room, &a, None).await, applied(3, "a2"));
        let base = format!("{}room:{{{room}}}", redis.prefix);
        for suffix in [
            "",
            ":strokes",
            ":log",
            ":users",
            ":ops",
            ":undo:alice",
            ":redo:alice",
        ] {
            let key = format!("{base}{suffix}");
            assert_eq!(pttl(&mut conn, &key).await, -1, "{key} has a TTL");
        }
    }
}

/// Picks a case's settings: the suite default unless the list names others.
macro_rules! settings_or_default {
    () => {
        settings()
    };
    ($settings:expr) => {
        $settings
    };
}

/// One `#[tokio::test]` per case per engine: `memory::<case>` and `redis::<case>`.
macro_rules! engine_suite {
    (
        shared { $($case:ident $(with $settings:expr)?;)* }
        redis_only { $($rcase:ident $(with $rsettings:expr)?;)* }
    ) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let fx = Fixture::memory(settings_or_default!($($settings)?));
                    cases::$case(&fx).await;
                    fx.stop().await;
                }
            )*
        }

        mod redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let fx =
                        Fixture::redis(stringify!($case), settings_or_default!($($settings)?)).await;
                    cases::$case(&fx).await;
                    fx.stop().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $rcase() {
                    let fx =
                        Fixture::redis(stringify!($rcase), settings_or_default!($($rsettings)?))
                            .await;
                    cases::$rcase(&fx).await;
                    fx.stop().await;
                }
            )*
        }
    };
}

engine_suite! {
    shared {
        rooms_exist_once_created;
        unknown_rooms_are_missing;
        join_returns_a_snapshot_and_tells_the_others;
        strokes_are_sequenced_and_fanned_out;
        op_ids_make_ops_idempotent;
        undo_removes_own_strokes_only;
        redo_restores_undone_strokes;
        redo_stack_is_capped with EngineSettings { redo_max: 2, ..settings() };
        replay_covers_the_missed_events;
        trimmed_log_falls_back_to_a_snapshot with EngineSettings { log_max: 3, replay_max: 3, ..settings() };
        events_after_reads_the_log;
        leave_tells_the_room;
        transient_frames_skip_the_sender_and_are_lossy;
        rate_limit_counts_hits_per_window;
        rooms_expire_when_idle
            with EngineSettings { room_ttl: Some(Duration::from_millis(1500)), ..settings() };
        element_ops_are_sequenced_and_fanned_out;
        elements_take_paint_order_and_strokes_stay_v1;
        deleting_a_node_deletes_its_edges;
        undo_and_redo_reverse_every_kind;
        element_ops_are_idempotent_per_user;
        concurrent_updates_merge_per_field;
        text_edits_merge_character_by_character;
        any_past_board_is_one_snapshot_and_the_ops_after_it
            with EngineSettings { snapshot_every: 4, ..settings() };
        old_history_folds_into_the_base
            with EngineSettings { snapshot_every: 4, history_max: 8, log_max: 8, ..settings() };
        restore_brings_a_past_board_back_as_one_undoable_op;
        versions_name_seqs_newest_first;
        a_dumped_room_loads_back_as_it_was;
        idle_rooms_are_compacted_and_come_back;
        quotas_refuse_growth_and_never_freeing
            with EngineSettings { quota: rect_quota(), ..settings() };
        idempotency_records_live_two_replay_windows
            with EngineSettings { log_max: 4, ..settings() };
        room_settings_and_members_live_with_the_room;
        workspace_roles_carry_into_its_rooms;
        room_slots_count_rooms_that_still_exist;
        activity_adds_up_per_user_and_day;
        control_records_reach_the_sessions_they_concern;
    }
    redis_only {
        snapshots_are_derived_data with EngineSettings { snapshot_every: 4, ..settings() };
        growing_boards_are_snapshotted_further_apart
            with EngineSettings { snapshot_every: 4, ..settings() };
        snapshots_live_as_long_as_their_room
            with EngineSettings {
                snapshot_every: 4,
                room_ttl: Some(Duration::from_secs(60)),
                ..settings()
            };
        sweep_removes_presence_of_dead_instances;
        room_keys_expire_after_activity
            with EngineSettings { room_ttl: Some(Duration::from_secs(60)), ..settings() };
        rooms_without_ttl_never_expire with EngineSettings { room_ttl: None, ..settings() };
        two_instances_converge_per_field;
        v1_rooms_move_to_the_board_layout;
    }
}

/// The same ops on both engines, recorded as everything they return and deliver, with the room
/// id and epoch (which differ by construction) blanked out.
async fn transcript(fx: &Fixture) -> Vec<Value> {
    let room = fx.room().await;
    let mut record = Vec::new();
    let mut watcher = fx.peer(&room, "watcher", 900);
    let mut a1 = fx.peer(&room, "alice", 1);
    let mut a2 = fx.peer(&room, "alice", 2);
    let mut b = fx.peer(&room, "bob", 3);
    let mut c = fx.peer(&room, "carol", 4);
    let first = fx.join(&room, &a1, None).await;
    let epoch = first.epoch.clone();
    record.push(view_json(&first));
    record.push(view_json(&fx.join(&room, &a2, None).await));
    record.push(view_json(&fx.join(&room, &b, None).await));
    let outcomes = [
        fx.draw(&room, &a1, "a1").await,
        fx.draw(&room, &b, "b1").await,
        fx.draw(&room, &a2, "a2").await,
        fx.draw(&room, &a1, "a1").await,
        fx.undo(&room, &a1, None).await,
        fx.undo(&room, &a1, Some("b1")).await,
        fx.redo(&room, &a2, None).await,
        fx.undo(&room, &b, None).await,
        fx.redo(&room, &b, Some("b1")).await,
        fx.redo(&room, &b, None).await,
        fx.undo(&room, &a1, Some("a1")).await,
        fx.draw(&room, &a1, "a3").await,
        fx.redo(&room, &a1, None).await,
    ];
    record.extend(outcomes.iter().map(|o| json!(format!("{o:?}"))));
    fx.engine
        .publish_transient(&room, &a1.conn, cursor_move(&room, &a1.who).to_string())
        .await
        .expect("publish_transient");
    record.push(view_json(&fx.join(&room, &c, Some((3, &epoch))).await));
    record.push(view_json(&fx.join(&room, &c, Some((3, "stale"))).await));
    let slice = fx
        .engine
        .events_after(&room, 2)
        .await
        .expect("events_after")
        .expect("the log reaches back");
    record.push(json!(slice.epoch));
    record.extend(slice.events.iter().map(event_json));
    fx.leave(&room, &a2).await;
    fx.leave(&room, &a1).await;
    fx.leave(&room, &b).await;
    let marker = fx.marker(&room).await;
    for peer in [&mut watcher, &mut a1, &mut a2, &mut b, &mut c] {
        let items = peer.until(&marker).await;
        record.push(json!({"conn": peer.conn.as_str(), "items": items}));
    }
    record
        .into_iter()
        .map(|v| {
            let text = v
                .to_string()
                .replace(room.as_str(), "<room>")
                .replace(&epoch, "<epoch>");
            serde_json::from_str(&text).expect("still JSON")
        })
        .collect()
}

#[tokio::test]
async fn both_engines_produce_the_same_frames() {
    let memory = Fixture::memory(settings());
    let want = transcript(&memory).await;
    memory.stop().await;
    let redis = Fixture::redis("same_frames", settings()).await;
    let got = transcript(&redis).await;
    redis.stop().await;
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            got, want,
            "entry {i}: redis (left) differs from memory (right)"
        );
    }
    assert_eq!(got.len(), want.len());
}
