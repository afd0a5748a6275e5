//! The room event feed in each `pubsub_mode` (PROTOCOL.md §7), two instances on one Redis:
//! fan-out across instances, reconnect replay, the feed cut off and resumed with no gap, and
//! the subscription race of per-room modes (a socket's first join while ops are in flight).

mod common;

use std::time::Duration;

use std::sync::Arc;

use common::{Client, Instance, Pair, RedisServer, WAIT, config, create_room, metrics};
use drawbridge::config::{Config, PubsubMode};
use drawbridge::domain::board::Intent;
use drawbridge::domain::element::Element;
use drawbridge::domain::{ConnKey, Identity, Point, RoomId, Stroke, StrokeId, UserId};
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{Engine, EngineSettings, JoinOutcome, JoinRequest, Op, OpOutcome};
use drawbridge::hub::{Hub, Item, Member, Outbound};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn mode_config(redis: &RedisServer, instance: &str, mode: PubsubMode, linger_ms: u64) -> Config {
    Config {
        pubsub_mode: mode,
        pubsub_linger_ms: linger_ms,
        ops_per_sec: 10_000,
        // TEST_LOG=drawbridge::engine=info shows the feed's fills when chasing a failure.
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        ..config(Some(redis), instance)
    }
}

/// The seq of a sequenced event frame (strokes, undo, redo), if it is one.
fn event_seq(v: &Value) -> Option<u64> {
    match v["type"].as_str() {
        Some("CANVAS_UPDATE" | "UNDO" | "REDO") => v["payload"]["seq"].as_u64(),
        _ => None,
    }
}

/// Room channels Redis has subscribers for, in the mode's own namespace.
async fn redis_channels(redis: &RedisServer, mode: PubsubMode) -> Vec<String> {
    let mut conn = redis.client().await;
    let what = match mode {
        PubsubMode::Sharded => "SHARDCHANNELS",
        _ => "CHANNELS",
    };
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg(what)
        .arg("room:*")
        .query_async(&mut conn)
        .await
        .expect("pubsub channels");
    channels.sort();
    channels
}

async fn fan_out_reaches_the_other_instance(mode: PubsubMode) {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_with(|i| mode_config(&redis, i, mode, 2000)).await;
    let ack = alice.draw_acked(&room, "s1").await;
    assert_eq!(ack["payload"]["seq"], 1);
    let seen = bob.until("CANVAS_UPDATE").await;
    assert_eq!(seen["payload"]["seq"], 1);
    assert_eq!(seen["payload"]["canvasData"]["strokeId"], "s1");
    // Transient events (cursors) take the same channel.
    alice
        .send(json!({"type": "CURSOR_MOVE", "payload": {"roomId": room, "x": 1, "y": 2}}))
        .await;
    assert_eq!(bob.until("CURSOR_MOVE").await["payload"]["userId"], "alice");
    // Presence too: Alice leaving reaches Bob.
    alice.close().await;
    assert_eq!(bob.until("USER_LEFT").await["payload"]["userId"], "alice");
    let value = metrics(b.addr).await;
    let subscribed = value("drawbridge_feed_subscribed_rooms");
    match mode {
        PubsubMode::Pattern => assert_eq!(subscribed, 0.0),
        _ => {
            assert_eq!(subscribed, 1.0);
            let channel = format!("room:{{{room}}}");
            assert_eq!(redis_channels(&redis, mode).await, [channel]);
        }
    }
    assert!(value("drawbridge_feed_bytes_received_total") > 0.0);
}

async fn a_reconnecting_client_gets_a_replay(mode: PubsubMode) {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_with(|i| mode_config(&redis, i, mode, 0)).await;
    alice.draw_acked(&room, "s1").await;
    let first = bob.until("CANVAS_UPDATE").await;
    let epoch = bob_epoch(&room, &b).await;
    bob.close().await;
    for n in 2..=4 {
        alice.draw_acked(&room, &format!("s{n}")).await;
    }
    // Back on the same instance, whose room subscription may be gone by now (linger 0).
    let mut bob = Client::connect(b.addr, "bob").await;
    bob.send(common::join_room_since(
        &room,
        first["payload"]["seq"].as_u64().expect("seq"),
        &epoch,
    ))
    .await;
    let replay = bob.expect("REPLAY").await;
    let seqs: Vec<u64> = replay["payload"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["payload"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [2, 3, 4]);
    alice.draw_acked(&room, "s5").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 5);
}

/// The room's epoch, as a joiner sees it.
async fn bob_epoch(room: &str, b: &Instance) -> Value {
    let mut probe = Client::connect(b.addr, "probe").await;
    probe.send(common::join_room(room)).await;
    let state = probe.expect("INITIAL_STATE").await;
    probe.close().await;
    state["payload"]["epoch"].clone()
}

async fn a_killed_feed_resumes_with_no_gap(mode: PubsubMode) {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_with(|i| mode_config(&redis, i, mode, 2000)).await;
    alice.draw_acked(&room, "s1").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 1);
    let mut conn = redis.client().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("client kill");
    assert_eq!(killed, 2, "one feed connection per instance");
    for n in 2..=6 {
        alice.draw_acked(&room, &format!("s{n}")).await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let v = bob.next().await.expect("bob stalled");
        if let Some(seq) = event_seq(&v) {
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
    alice.draw_acked(&room, "s7").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 7);
    let value = metrics(b.addr).await;
    assert_eq!(value("drawbridge_feed_resubscribed_total"), 1.0);
    assert_eq!(value("drawbridge_feed_resyncs_total"), 0.0);
    if mode != PubsubMode::Pattern {
        // The room was subscribed again on the new connection.
        assert_eq!(value("drawbridge_feed_subscribed_rooms"), 1.0);
    }
}

/// Ops from A in a tight loop while sockets on B join and leave the room again and again.
/// With no linger every join on B is the room's first there, so B subscribes while ops are in
/// flight: each B socket must see every seq after its snapshot, once, in order.
async fn joins_racing_ops_see_no_gap_and_no_duplicate(mode: PubsubMode) {
    const OPS: usize = 600;
    const AFTER_JOIN: u64 = 3;
    let redis = RedisServer::start();
    let a = Instance::start(mode_config(&redis, "inst-a", mode, 0)).await;
    let b = Instance::start(mode_config(&redis, "inst-b", mode, 0)).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let drawing = {
        let room = room.clone();
        tokio::spawn(async move {
            for n in 0..OPS {
                alice.draw(&room, &format!("s{n}")).await;
                if n % 10 == 9 {
                    // A few in flight at a time, so the loop does not outrun the rate of one
                    // socket's queue; then the rest of the ACKs.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut acked = 0;
            while acked < OPS {
                let v = alice.next().await.expect("alice stalled");
                if v["type"] == "ACK" {
                    acked += 1;
                }
                assert_ne!(v["type"], "ERROR", "{v}");
            }
            alice
        })
    };
    let mut joins = 0;
    let mut last_seen = 0;
    while !drawing.is_finished() {
        let mut bob = Client::connect(b.addr, &format!("bob{joins}")).await;
        bob.send(common::join_room(&room)).await;
        let state = bob.expect("INITIAL_STATE").await;
        let from = state["payload"]["seq"].as_u64().expect("snapshot seq");
        if from as usize >= OPS {
            bob.close().await;
            break;
        }
        // Every event after the snapshot, in order, until a few have come (or the last op).
        let want = (from + AFTER_JOIN).min(OPS as u64);
        let mut expected = from + 1;
        while expected <= want {
            let v = bob
                .next()
                .await
                .unwrap_or_else(|| panic!("bob{joins}: stalled waiting for {expected}"));
            if let Some(seq) = event_seq(&v) {
                assert_eq!(seq, expected, "bob{joins} joined at {from}: {v}");
                expected += 1;
            }
        }
        last_seen = last_seen.max(want);
        bob.close().await;
        joins += 1;
    }
    let _alice = drawing.await.expect("alice");
    assert!(joins >= 5, "only {joins} joins raced the ops");
    assert!(last_seen > 0);
    let value = metrics(b.addr).await;
    // Fills from the log are allowed here: they are the repair path, and what each socket saw
    // above is what §1.4 promises. (About one run in ten under a loaded machine, sharded, B
    // fills one event it may already have had; not yet explained.) That a join never needs
    // one is checked where the ordering is forced: `subscription_race_forced`.
    assert_eq!(value("drawbridge_feed_resyncs_total"), 0.0);
    if mode != PubsubMode::Pattern {
        // B's last socket has left and nothing lingers: its subscription goes (A keeps its own).
        common::wait_until("B unsubscribes the room", WAIT, || async {
            metrics(b.addr).await("drawbridge_feed_subscribed_rooms") == 0.0
        })
        .await;
        let mut conn = redis.client().await;
        let what = if mode == PubsubMode::Sharded {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg(what)
            .arg(format!("room:{{{room}}}"))
            .query_async(&mut conn)
            .await
            .expect("numsub");
        assert_eq!(counts[0].1, 1, "only A's subscription is left");
    }
}

/// Many local sockets in one room share one subscription, and an instance with no sockets in
/// a room receives none of its traffic (except in pattern mode, where it receives all of it).
async fn one_subscription_per_room_and_only_own_rooms_traffic(mode: PubsubMode) {
    let redis = RedisServer::start();
    let a = Instance::start(mode_config(&redis, "inst-a", mode, 2000)).await;
    let b = Instance::start(mode_config(&redis, "inst-b", mode, 2000)).await;
    let c = Instance::start(mode_config(&redis, "inst-c", mode, 2000)).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut bobs = Vec::new();
    for n in 0..3 {
        bobs.push(Client::joined(b.addr, &format!("bob{n}"), &room).await);
    }
    let before = metrics(c.addr).await("drawbridge_feed_bytes_received_total");
    for n in 0..20 {
        alice.draw_acked(&room, &format!("s{n}")).await;
    }
    for bob in &mut bobs {
        let mut last = 0;
        while last < 20 {
            let v = bob.next().await.expect("bob stalled");
            if let Some(seq) = event_seq(&v) {
                assert_eq!(seq, last + 1);
                last = seq;
            }
        }
    }
    let value_b = metrics(b.addr).await;
    let received_c = metrics(c.addr).await("drawbridge_feed_bytes_received_total") - before;
    match mode {
        PubsubMode::Pattern => assert!(received_c > 0.0, "pattern: C receives every room"),
        _ => {
            assert_eq!(value_b("drawbridge_feed_subscribed_rooms"), 1.0);
            assert_eq!(received_c, 0.0, "C has no socket in the room");
            let mut conn = redis.client().await;
            let what = if mode == PubsubMode::Sharded {
                "SHARDNUMSUB"
            } else {
                "NUMSUB"
            };
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg(what)
                .arg(format!("room:{{{room}}}"))
                .query_async(&mut conn)
                .await
                .expect("numsub");
            assert_eq!(counts[0].1, 2, "one subscription on A, one on B");
        }
    }
}

/// One instance's engine and hub, without the HTTP layer, so a test can order the steps of a
/// join itself.
struct Node {
    engine: RedisEngine,
    hub: Arc<Hub>,
    _tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn node(redis: &RedisServer, instance: &str, mode: PubsubMode) -> Node {
    let hub = Arc::new(Hub::new());
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let config = mode_config(redis, instance, mode, 0);
    let engine = RedisEngine::start(
        &RedisSettings {
            url: redis.url(),
            mode: drawbridge::config::RedisMode::Standalone,
            key_prefix: String::new(),
            pool_size: 2,
            heartbeat: Duration::from_secs(5),
            pubsub_mode: mode,
            pubsub_linger: Duration::ZERO,
            tls_ca: String::new(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
        },
        EngineSettings::from_config(&config, instance.to_owned()),
        hub.clone(),
        &tasks,
        shutdown.clone(),
    )
    .await
    .expect("engine");
    common::wait_until("the feed is up", WAIT, || async { engine.is_ready() }).await;
    Node {
        engine,
        hub,
        _tasks: tasks,
        shutdown,
    }
}

fn draw_op<'a>(room: &RoomId, who: &'a Identity, conn: &'a ConnKey, id: &str) -> Op<'a> {
    Op {
        who,
        conn,
        op_id: None,
        intent: Intent::Stroke(Box::new(Element::from_stroke(Stroke {
            user_id: who.user_id.clone(),
            stroke_id: StrokeId::new(id),
            room_id: room.clone(),
            points: vec![Point { x: 1.0, y: 2.0 }, Point { x: 3.0, y: 4.0 }],
            color: "#000000".into(),
            width: 1.0,
        }))),
    }
}

/// The sequenced events a member has been handed so far.
fn seqs_queued(rx: &mut mpsc::Receiver<Outbound>) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Ok(out) = rx.try_recv() {
        if let Item::Frame { seq: Some(seq), .. } = out.item {
            seqs.push(seq);
        }
    }
    seqs
}

/// The race forced step by step: B's socket is in B's hub (as a session puts it there before
/// its join) but B's join has not run, so B is not subscribed, when A's op is published: B's
/// feed cannot see it. B's join must then subscribe before it reads the room, so that the op is
/// in what it reads, and the next op arrives live, once, with no fill from the log needed.
async fn an_op_published_before_the_first_subscribe_is_in_the_join(mode: PubsubMode) {
    let redis = RedisServer::start();
    let a = node(&redis, "inst-a", mode).await;
    let b = node(&redis, "inst-b", mode).await;
    let alice = Identity::new(UserId::new("alice"), "Alice".into());
    let bob = Identity::new(UserId::new("bob"), "Bob".into());
    let alice_conn = ConnKey::new("inst-a", 1);
    let bob_conn = ConnKey::new("inst-b", 1);
    let room = a
        .engine
        .create_room(&alice.user_id)
        .await
        .expect("room")
        .room_id;
    let (tx, mut rx) = mpsc::channel(64);
    b.hub.add(
        &room,
        Member {
            key: bob_conn.clone(),
            who: Arc::new(bob.clone()),
            generation: 0,
            tx,
            overflow: CancellationToken::new(),
        },
    );
    let first = a
        .engine
        .apply(&room, draw_op(&room, &alice, &alice_conn, "s1"))
        .await;
    assert!(
        matches!(first, Ok(OpOutcome::Applied { seq: 1, .. })),
        "{first:?}"
    );
    // Published before B subscribed (per-room modes): wait long enough that it would have come.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let joined = b
        .engine
        .join(JoinRequest {
            room: &room,
            conn: &bob_conn,
            who: &bob,
            since: None,
        })
        .await
        .expect("join");
    let JoinOutcome::Joined(view) = joined else {
        panic!("the room exists")
    };
    assert_eq!(
        view.seq, 1,
        "the op before the subscription is in what the join read"
    );
    b.hub.note_seq(&room, view.seq, &view.epoch);
    let second = a
        .engine
        .apply(&room, draw_op(&room, &alice, &alice_conn, "s2"))
        .await;
    assert!(
        matches!(second, Ok(OpOutcome::Applied { seq: 2, .. })),
        "{second:?}"
    );
    let mut seen = Vec::new();
    common::wait_until("the next op arrives live", WAIT, || {
        seen.extend(seqs_queued(&mut rx));
        let done = seen.contains(&2);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    seen.extend(seqs_queued(&mut rx));
    // In pattern mode B's feed had op 1 too (it holds every room) and handed it over before
    // the join: a session drops what its snapshot covers. Never twice, never missing 2.
    let expected: &[u64] = if mode == PubsubMode::Pattern {
        &[1, 2]
    } else {
        &[2]
    };
    assert_eq!(seen, expected);
    assert_eq!(b.hub.stats.filled_from_log.get(), 0);
}

macro_rules! in_mode {
    ($name:ident, $mode:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn fan_out() {
                fan_out_reaches_the_other_instance($mode).await;
            }

            #[tokio::test]
            async fn reconnect_replay() {
                a_reconnecting_client_gets_a_replay($mode).await;
            }

            #[tokio::test]
            async fn feed_killed_and_resumed() {
                a_killed_feed_resumes_with_no_gap($mode).await;
            }

            #[tokio::test]
            async fn subscription_race() {
                joins_racing_ops_see_no_gap_and_no_duplicate($mode).await;
            }

            #[tokio::test]
            async fn subscription_race_forced() {
                an_op_published_before_the_first_subscribe_is_in_the_join($mode).await;
            }

            #[tokio::test]
            async fn subscriptions_follow_local_rooms() {
                one_subscription_per_room_and_only_own_rooms_traffic($mode).await;
            }
        }
    };
}

in_mode!(pattern, PubsubMode::Pattern);
in_mode!(room, PubsubMode::Room);
in_mode!(sharded, PubsubMode::Sharded);
