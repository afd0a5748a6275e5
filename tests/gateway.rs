//! Whole-gateway behaviour over real sockets: one real redis-server and several drawbridge
//! instances per test where the behaviour crosses instances.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Client, Instance, Pair, RedisServer, config, create_room, get_status, header, http, join_room,
    join_room_since, metrics, stroke, stroke_ids, token, two_instances, upgrade, user_ids,
    wait_for_status,
};
use serde_json::{Value, json};

#[tokio::test]
async fn a_stroke_on_one_instance_reaches_clients_on_both_in_seq_order() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut bob = Client::joined(b.addr, "bob", &room).await;
    let mut carol = Client::joined(a.addr, "carol", &room).await;

    // The sender gets ACKs only, never its own CANVAS_UPDATE: one would come through the same
    // feed as the ACK, so before it or right after.
    for n in 1..=3 {
        alice.draw(&room, &format!("s{n}")).await;
        let frames = alice.frames_until("ACK").await;
        assert!(
            frames.iter().all(|f| f["type"] != "CANVAS_UPDATE"),
            "the sender got its own stroke back: {frames:?}"
        );
        let ack = &frames[frames.len() - 1];
        assert_eq!(ack["payload"]["seq"], n);
        assert_eq!(ack["payload"]["strokeId"], format!("s{n}"));
        assert_eq!(ack["payload"]["duplicate"], false);
    }
    for other in [&mut bob, &mut carol] {
        for n in 1..=3 {
            let update = other.until("CANVAS_UPDATE").await;
            let p = &update["payload"];
            assert_eq!(p["seq"], n);
            assert_eq!(p["userId"], "alice");
            assert_eq!(p["roomId"], room.as_str());
            assert_eq!(p["canvasData"]["strokeId"], format!("s{n}"));
            assert_eq!(
                p["canvasData"]["userId"], "alice",
                "identity comes from the token"
            );
            assert_eq!(p["canvasData"]["points"][0]["x"], 1.5);
        }
    }
    alice.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn concurrent_writers_on_two_instances_all_see_one_gap_free_order() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut clients = Vec::new();
    for (i, addr) in [a.addr, b.addr, a.addr, b.addr].into_iter().enumerate() {
        clients.push(Client::joined(addr, &format!("user{i}"), &room).await);
    }
    // Everyone sees the presence of those who joined after them; drain that first.
    for (i, c) in clients.iter_mut().enumerate() {
        for _ in i + 1..4 {
            c.until("USER_JOINED").await;
        }
    }
    const EACH: usize = 15;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let room = room.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    c.draw(&room, &format!("u{i}-{n}")).await;
                }
                // seq -> strokeId as this client learned it, from events and its own ACKs.
                let mut seen = HashMap::new();
                let mut last_event = 0;
                while seen.len() < EACH * 4 {
                    let v = c.next().await.expect("a frame");
                    let p = &v["payload"];
                    match v["type"].as_str() {
                        Some("CANVAS_UPDATE") => {
                            let seq = p["seq"].as_u64().expect("seq");
                            assert!(
                                seq > last_event,
                                "events out of order: {seq} after {last_event}"
                            );
                            last_event = seq;
                            let before = seen.insert(seq, p["canvasData"]["strokeId"].clone());
                            assert!(before.is_none(), "seq {seq} delivered twice");
                        }
                        Some("ACK") => {
                            let seq = p["seq"].as_u64().expect("seq");
                            let before = seen.insert(seq, p["strokeId"].clone());
                            assert!(
                                before.is_none(),
                                "seq {seq} both acknowledged and delivered"
                            );
                        }
                        _ => {}
                    }
                }
                seen
            })
        })
        .collect();
    let mut orders = Vec::new();
    for t in tasks {
        orders.push(t.await.expect("client task"));
    }
    let expected: Vec<u64> = (1..=(EACH * 4) as u64).collect();
    for order in &orders {
        let mut seqs: Vec<u64> = order.keys().copied().collect();
        seqs.sort_unstable();
        assert_eq!(seqs, expected, "every seq exactly once, no gaps");
        assert_eq!(order, &orders[0], "every client saw the same order");
    }
}

#[tokio::test]
async fn late_joiner_gets_the_board_users_seq_and_epoch() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    alice.draw_acked(&room, "s1").await;
    alice.draw_acked(&room, "s2").await;

    let mut bob = Client::connect(b.addr, "bob").await;
    bob.send(join_room(&room)).await;
    let state = bob.expect("INITIAL_STATE").await;
    let p = &state["payload"];
    assert_eq!(p["seq"], 2);
    assert!(p["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(stroke_ids(&state), ["s1", "s2"]);
    assert_eq!(user_ids(&state), ["alice", "bob"]);
    let count = bob.expect("USER_COUNT_UPDATED").await;
    assert_eq!(count["payload"]["count"], 2);

    let joined = alice.until("USER_JOINED").await;
    assert_eq!(joined["payload"]["userId"], "bob");
    assert_eq!(joined["payload"]["username"], "name-bob");
    assert!(
        joined["payload"]["color"]
            .as_str()
            .is_some_and(|c| c.starts_with('#'))
    );
    assert_eq!(
        alice.until("USER_COUNT_UPDATED").await["payload"]["count"],
        2
    );
}

#[tokio::test]
async fn undo_and_redo_are_the_owners_alone() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;
    alice.draw_acked(&room, "a1").await;
    alice.draw_acked(&room, "a2").await;
    bob.draw_acked(&room, "b1").await;

    // Bob may not undo Alice's stroke, and has nothing to redo.
    bob.undo(&room, Some("a1")).await;
    assert_eq!(bob.until("ERROR").await["payload"]["code"], "FORBIDDEN");
    bob.redo(&room).await;
    assert_eq!(
        bob.until("ERROR").await["payload"]["code"],
        "NOTHING_TO_REDO"
    );

    // Alice's UNDO without an id takes her latest stroke, not Bob's later one.
    alice.undo(&room, None).await;
    let ack = alice.until("ACK").await;
    assert_eq!(ack["payload"]["strokeId"], "a2");
    let undo = bob.until("UNDO").await;
    assert_eq!(undo["payload"]["strokeId"], "a2");
    assert_eq!(undo["payload"]["userId"], "alice");
    assert_eq!(undo["payload"]["seq"], 4);

    alice.redo(&room).await;
    assert_eq!(alice.until("ACK").await["payload"]["seq"], 5);
    let redo = bob.until("REDO").await;
    assert_eq!(redo["payload"]["stroke"]["strokeId"], "a2");
    assert_eq!(redo["payload"]["stroke"]["points"][1]["y"], 4.0);

    alice.undo(&room, Some("a1")).await;
    assert_eq!(alice.until("ACK").await["payload"]["strokeId"], "a1");
    alice.undo(&room, None).await;
    assert_eq!(
        alice.until("ACK").await["payload"]["strokeId"],
        "a2",
        "the redone stroke is her latest again"
    );
    alice.undo(&room, None).await;
    assert_eq!(
        alice.until("ERROR").await["payload"]["code"],
        "NOTHING_TO_UNDO"
    );

    let state = Client::connect(b.addr, "late").await.join(&room).await;
    assert_eq!(stroke_ids(&state), ["b1"]);
}

#[tokio::test]
async fn resending_an_op_returns_the_original_ack_and_changes_nothing() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;
    let first = alice.draw_acked(&room, "s1").await;
    assert_eq!(
        first["payload"]["opId"], "s1",
        "opId defaults to the strokeId"
    );
    bob.until("CANVAS_UPDATE").await;

    // Resent on another instance, as after a reconnect.
    let mut again = Client::joined(b.addr, "alice", &room).await;
    let dup = again.draw_acked(&room, "s1").await;
    assert_eq!(dup["payload"]["seq"], first["payload"]["seq"]);
    assert_eq!(dup["payload"]["duplicate"], true);
    bob.expect_none_of("CANVAS_UPDATE", Duration::from_millis(300))
        .await;

    let state = Client::connect(a.addr, "late").await.join(&room).await;
    assert_eq!(state["payload"]["seq"], 1);
    assert_eq!(stroke_ids(&state), ["s1"]);
}

#[tokio::test]
async fn reconnecting_to_the_other_instance_with_since_replays_exactly_the_missed_events() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut bob = Client::connect(a.addr, "bob").await;
    let state = bob.join(&room).await;
    let epoch = state["payload"]["epoch"].clone();
    alice.draw_acked(&room, "s1").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 1);
    bob.close().await;

    alice.draw_acked(&room, "s2").await;
    alice.undo(&room, None).await;
    alice.until("ACK").await;

    let mut bob = Client::connect(b.addr, "bob").await;
    bob.send(join_room_since(&room, 1, &epoch)).await;
    let replay = bob.expect("REPLAY").await;
    let p = &replay["payload"];
    assert_eq!(p["fromSeq"], 2);
    assert_eq!(p["seq"], 3);
    assert_eq!(p["epoch"], epoch);
    let events = p["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "CANVAS_UPDATE");
    assert_eq!(events[0]["payload"]["seq"], 2);
    assert_eq!(events[1]["type"], "UNDO");
    assert_eq!(events[1]["payload"]["strokeId"], "s2");
    assert_eq!(
        user_ids(&replay),
        ["alice", "bob"],
        "REPLAY lists who is present"
    );

    // A wrong epoch falls back to the full state.
    let mut carol = Client::connect(b.addr, "carol").await;
    carol.send(join_room_since(&room, 1, &json!("other"))).await;
    assert_eq!(carol.expect("INITIAL_STATE").await["payload"]["seq"], 3);

    // And live events continue after the replay without a gap.
    bob.until("USER_COUNT_UPDATED").await;
    alice.draw_acked(&room, "s3").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 4);
}

#[tokio::test]
async fn cursors_are_relayed_to_others_with_identity_and_capped() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;

    let started = std::time::Instant::now();
    for i in 0..60 {
        alice
            .send(json!({"type": "CURSOR_MOVE", "payload": {"roomId": room, "x": i, "y": 2}}))
            .await;
    }
    let sending = started.elapsed().as_secs_f64();
    let first = bob.expect("CURSOR_MOVE").await;
    let p = &first["payload"];
    assert_eq!(p["userId"], "alice");
    assert_eq!(p["username"], "name-alice");
    assert_eq!(p["x"], 0.0);
    let mut received = 1;
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(500), bob.next()).await {
        if v["type"] == "CURSOR_MOVE" {
            received += 1;
        }
    }
    // The cap is 20/s with a burst of 20: the burst passes, then 20 for every second the
    // sending took (on a loaded machine the 60 moves may take a while to go out).
    let allowed = 20 + (20.0 * sending).ceil() as usize + 1;
    assert!(
        (20..=allowed).contains(&received),
        "{received} cursor moves relayed, {allowed} allowed after {sending:.3}s"
    );
    assert!(received < 60 || allowed >= 60, "the cap dropped nothing");
    alice.expect_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn leaving_and_disconnecting_tell_the_room() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut bob = Client::joined(b.addr, "bob", &room).await;
    let carol = Client::joined(b.addr, "carol", &room).await;
    for user in ["bob", "carol"] {
        assert_eq!(alice.until("USER_JOINED").await["payload"]["userId"], user);
    }

    bob.send(json!({"type": "LEAVE_ROOM", "payload": {"roomId": room}}))
        .await;
    assert_eq!(
        alice.until("CURSOR_LEAVE").await["payload"]["userId"],
        "bob"
    );
    let left = alice.until("USER_LEFT").await;
    assert_eq!(left["payload"]["userId"], "bob");
    assert_eq!(left["payload"]["count"], 2);
    assert_eq!(
        alice.until("USER_COUNT_UPDATED").await["payload"]["count"],
        2
    );

    carol.close().await;
    assert_eq!(
        alice.until("CURSOR_LEAVE").await["payload"]["userId"],
        "carol"
    );
    let left = alice.until("USER_LEFT").await;
    assert_eq!(left["payload"]["userId"], "carol");
    assert_eq!(left["payload"]["count"], 1);

    // Bob is out of the room: his ops are refused.
    bob.draw(&room, "late").await;
    assert_eq!(bob.until("ERROR").await["payload"]["code"], "NOT_IN_ROOM");
}

#[tokio::test]
async fn every_auth_rejection_gets_its_status_before_the_upgrade() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.allowed_origins = "https://board.example".into();
    cfg.ws_upgrades_per_minute = 3;
    let a = Instance::start(cfg).await;
    let keys = drawbridge::domain::token::TokenKeys::new(common::SECRET.as_bytes(), 900);
    let now = drawbridge::unix_now();
    let user = drawbridge::domain::UserId::new("u1");
    let expired = drawbridge::domain::token::TokenKeys::new(common::SECRET.as_bytes(), 1)
        .issue(&user, "U", None, true, false, now - 100)
        .expect("token");
    let unverified = keys
        .issue(&user, "U", Some("u@x.io"), false, false, now)
        .expect("token");
    let forged = drawbridge::domain::token::TokenKeys::new(b"another-secret-of-16b", 900)
        .issue(&user, "U", None, true, false, now)
        .expect("token");
    let good = token("u1", "U");
    let origin = "https://board.example";

    // An upgrade from `origin`, with `token` if there is one: status and headers.
    let attempt = |token: Option<String>, origin: &'static str| {
        let mut url = format!("ws://{}/ws", a.addr);
        if let Some(t) = token {
            url.push_str(&format!("?token={t}"));
        }
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("origin"));
        upgrade(request)
    };
    let status = |token, origin| {
        let answer = attempt(token, origin);
        async move { answer.await.0 }
    };
    assert_eq!(status(None, origin).await, 401, "missing");
    assert_eq!(
        status(Some("not.a.jwt".into()), origin).await,
        401,
        "malformed"
    );
    assert_eq!(status(Some(forged), origin).await, 401, "bad signature");
    assert_eq!(status(Some(expired), origin).await, 401, "expired");
    assert_eq!(status(Some(unverified), origin).await, 403, "unverified");
    assert_eq!(
        status(Some(good.clone()), "https://evil.example").await,
        403,
        "origin"
    );
    assert_eq!(status(Some(good.clone()), origin).await, 101);
    assert_eq!(status(Some(good.clone()), origin).await, 101);
    assert_eq!(status(Some(good.clone()), origin).await, 101);
    // Over the per-IP limit; the refusal says when to come back, like every other limited route.
    let (status, headers) = attempt(Some(good.clone()), origin).await;
    assert_eq!(status, 429, "over the per-IP limit");
    let number = |name: &str| header(&headers, name).and_then(|v| v.parse::<u64>().ok());
    assert!(number("retry-after").is_some_and(|s| (1..=60).contains(&s)));
    assert_eq!(number("ratelimit-limit"), Some(3));
    assert_eq!(number("ratelimit-remaining"), Some(0));
    a.stop().await;
}

#[tokio::test]
async fn upgrades_get_503_while_redis_is_unreachable_and_readiness_says_so() {
    let mut redis = RedisServer::start();
    let a = Instance::start(config(Some(&redis), "inst-a")).await;
    redis.stop();
    // Readiness must turn 503 when redis is gone.
    wait_for_status(a.addr, "/readyz", 503, Duration::from_secs(10)).await;
    assert_eq!(get_status(a.addr, "/ready").await, 503);
    assert_eq!(
        get_status(a.addr, "/healthz").await,
        200,
        "liveness stays up"
    );
    assert_eq!(upgrade(a.ws_url(&token("u1", "U"))).await.0, 503);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;

    let points = |n: usize| (0..n).map(|i| json!({"x": i, "y": i})).collect::<Vec<_>>();
    let bad_strokes = [
        (
            json!({"strokeId": "x", "points": [], "color": "#000", "width": 1}),
            "BAD_STROKE",
        ),
        // Over the frame size limit long before the 5000-point limit is looked at.
        (
            json!({"strokeId": "x", "points": points(5001), "color": "#000", "width": 1}),
            "TOO_LARGE",
        ),
        (
            json!({"strokeId": "x", "points": points(1), "color": "#000", "width": 0}),
            "BAD_STROKE",
        ),
        (
            json!({"strokeId": "x", "points": points(1), "color": "#000", "width": 101}),
            "BAD_STROKE",
        ),
        (
            json!({"strokeId": "x", "points": points(1), "color": "blue", "width": 1}),
            "BAD_STROKE",
        ),
        (
            json!({"strokeId": "", "points": points(1), "color": "#000", "width": 1}),
            "BAD_STROKE",
        ),
        (
            json!({"strokeId": "x".repeat(65), "points": points(1), "color": "#000", "width": 1}),
            "BAD_STROKE",
        ),
        // Not the shape of a stroke at all: the message does not parse.
        (
            json!({"strokeId": "x", "points": [{"x": "a", "y": 1}], "color": "#000", "width": 1}),
            "BAD_MESSAGE",
        ),
    ];
    for (i, (canvas, code)) in bad_strokes.into_iter().enumerate() {
        alice
            .send(
                json!({"type": "CANVAS_UPDATE", "payload": {"roomId": room, "canvasData": canvas}}),
            )
            .await;
        let err = alice.expect("ERROR").await;
        assert_eq!(err["payload"]["code"], code, "case {i}: {err}");
        assert!(
            err["payload"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}: {err}"
        );
    }
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await;
    assert_eq!(
        alice.expect("ERROR").await["payload"]["code"],
        "BAD_MESSAGE"
    );
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await;
    assert_eq!(
        alice.expect("ERROR").await["payload"]["code"],
        "BAD_MESSAGE"
    );
    alice.send(json!({"type": "TELEPORT", "payload": {}})).await;
    assert_eq!(
        alice.expect("ERROR").await["payload"]["code"],
        "UNKNOWN_TYPE"
    );
    // An op id is bounded like any id (it is stored with the op).
    let long_op = json!({"type": "CANVAS_UPDATE", "payload": {"roomId": room, "opId": "o".repeat(65),
        "canvasData": {"strokeId": "ok", "points": points(1), "color": "#000", "width": 1}}});
    alice.send(long_op).await;
    let err = alice.expect("ERROR").await;
    assert_eq!(err["payload"]["code"], "BAD_MESSAGE", "{err}");
    assert!(
        err["payload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("opId"))
    );
    alice
        .send(json!({"type": "CANVAS_UPDATE", "payload": {"roomId": "elsewhere"}}))
        .await;
    assert_eq!(
        alice.expect("ERROR").await["payload"]["code"],
        "BAD_MESSAGE"
    );
    alice.send(stroke("elsewhere", "s")).await;
    assert_eq!(
        alice.expect("ERROR").await["payload"]["code"],
        "NOT_IN_ROOM"
    );
    let big = "x".repeat(70 * 1024);
    alice
        .send(json!({"type": "PING", "payload": {"pad": big}}))
        .await;
    assert_eq!(alice.expect("ERROR").await["payload"]["code"], "TOO_LARGE");
    alice.send(json!({"type": "PING", "payload": {}})).await;
    alice.expect("PONG").await;

    // Nothing reached the room and nothing was stored.
    bob.expect_quiet(Duration::from_millis(300)).await;
    let mut late = Client::connect(b.addr, "late").await;
    let state = late.join(&room).await;
    assert_eq!(state["payload"]["seq"], 0);
    assert_eq!(state["payload"]["strokes"], json!([]));

    // Joining a room that does not exist.
    let missing = "00000000-0000-4000-8000-000000000000";
    late.send(join_room(missing)).await;
    let expired = late.until("ROOM_EXPIRED").await;
    assert_eq!(expired["payload"]["roomId"], missing, "{expired}");
}

#[tokio::test]
async fn repeated_bad_frames_close_the_connection_with_1008() {
    let a = Instance::start(config(None, "solo")).await;
    let mut c = Client::connect(a.addr, "u").await;
    // Each bad frame is answered; the tenth is the last one tolerated.
    for n in 1..=10 {
        c.send_raw(tokio_tungstenite::tungstenite::Message::text("garbage"))
            .await;
        let err = c.expect("ERROR").await;
        assert_eq!(err["payload"]["code"], "BAD_MESSAGE", "frame {n}: {err}");
    }
    assert_eq!(c.expect("CLOSE").await["code"], 1008);
}

#[tokio::test]
async fn sigterm_drain_closes_sockets_with_1001_and_refuses_new_upgrades() {
    let redis = RedisServer::start();
    let mut a = Instance::start(config(Some(&redis), "inst-a")).await;
    let addr = a.addr;
    let room = create_room(addr).await;
    let mut alice = Client::joined(addr, "alice", &room).await;
    a.signal_stop();
    // During the drain (1 s here) the listener still answers: readiness 503, upgrades 503.
    wait_for_status(addr, "/readyz", 503, Duration::from_millis(500)).await;
    assert_eq!(upgrade(a.ws_url(&token("x", "X"))).await.0, 503);
    let close = alice.until("CLOSE").await;
    assert_eq!(close["code"], 1001);
    a.stop().await;
}

#[tokio::test]
async fn the_embedded_engine_serves_a_whole_session_without_redis() {
    let a = Instance::start(config(None, "solo")).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut bob = Client::joined(a.addr, "bob", &room).await;
    assert_eq!(alice.draw_acked(&room, "s1").await["payload"]["seq"], 1);
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 1);
    let value = metrics(a.addr).await;
    assert_eq!(value("drawbridge_ops_applied_total"), 1.0);
    assert_eq!(value("drawbridge_connections"), 2.0);
    // Presence: Alice's count; Bob's arrival to Alice and the count to both. Then Alice's own
    // event (her ACK) and Bob's CANVAS_UPDATE.
    assert_eq!(value("drawbridge_hub_delivered_total"), 6.0);
    assert_eq!(value("drawbridge_hub_dropped_lossy_total"), 0.0);
    // By type, and how long the op and each fan-out took.
    assert_eq!(
        value(r#"drawbridge_frames_in_by_type_total{kind="CANVAS_UPDATE"}"#),
        1.0
    );
    assert_eq!(
        value(r#"drawbridge_frames_in_by_type_total{kind="JOIN_ROOM"}"#),
        2.0
    );
    assert_eq!(
        value(r#"drawbridge_op_duration_seconds_count{kind="stroke"}"#),
        1.0
    );
    assert!(value("drawbridge_fanout_seconds_count") >= 4.0);
    assert!(value("drawbridge_send_queue_depth_count") >= 1.0);

    // Rooms are looked up by id (and the Canvas alias); unknown and malformed ids are 404.
    let lookup = |path: String, token: String| async move {
        let (status, _, body) = http(a.addr, "GET", &path, Some(&token), None).await;
        (status, serde_json::from_str::<Value>(&body).expect("json"))
    };
    let (status, body) = lookup(format!("/api/v1/rooms/{room}"), token("u", "U")).await;
    assert_eq!((status, &body["success"]), (200, &json!(true)), "{body}");
    for id in ["00000000-0000-4000-8000-000000000000", "nope"] {
        let (status, body) = lookup(format!("/api/user/rooms/{id}"), token("u", "U")).await;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("ROOM_NOT_FOUND")),
            "{id}"
        );
    }
    let (status, _, body) = http(
        a.addr,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(&json!({"name": "Guest"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let guest: Value = serde_json::from_str(&body).expect("json");
    let guest_token = guest["accessToken"].as_str().expect("token").to_owned();
    let (status, _, body) = http(a.addr, "POST", "/api/user/rooms", Some(&guest_token), None).await;
    assert_eq!(
        status, 201,
        "guest tokens may create rooms, with an empty body: {body}"
    );
    let created: Value = serde_json::from_str(&body).expect("json");
    let guest_room = created["data"]["roomId"].as_str().expect("roomId");
    let (status, body) = lookup(format!("/api/v1/rooms/{guest_room}"), guest_token).await;
    assert_eq!(status, 200, "the guest's room exists: {body}");
    let (status, _, _) = http(
        a.addr,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(&json!({"name": ""})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = http(a.addr, "POST", "/api/v1/rooms", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_connection_that_misses_two_pings_is_closed_and_leaves_the_room() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.ping_interval_secs = 1;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    // A raw socket that joins and then never reads again, so it never answers a ping.
    let url = a.ws_url(&token("mute", "Mute"));
    let (mut mute, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    use futures::{SinkExt, StreamExt};
    mute.send(tokio_tungstenite::tungstenite::Message::text(
        join_room(&room).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(
        alice.until("USER_JOINED").await["payload"]["userId"],
        "mute"
    );
    // Alice keeps answering pings (her client reads), so only the mute socket is dropped.
    let left = tokio::time::timeout(Duration::from_secs(6), alice.until("USER_LEFT"))
        .await
        .expect("the silent connection is dropped within about two ping intervals");
    assert_eq!(left["payload"]["userId"], "mute");
    // And the socket itself is closed: reading now finds the end after whatever was queued.
    let ended = tokio::time::timeout(common::WAIT, async {
        while let Some(Ok(message)) = mute.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent socket was left open");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_with_1013_and_never_slows_the_room() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    // Hundreds of 60 KB strokes from one writer: far past the default quotas on purpose.
    cfg.max_user_bytes = 1 << 30;
    cfg.max_room_bytes = 1 << 30;
    cfg.send_queue = 8;
    cfg.ops_per_sec = 10_000;
    cfg.ws_write_buffer = 1024;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut writer = Client::joined(a.addr, "writer", &room).await;
    let mut fast = Client::joined(a.addr, "fast", &room).await;
    let mut slow = Client::joined(a.addr, "slow", &room).await;
    // Big strokes fill the socket buffers quickly; the slow client stops reading.
    let points: Vec<Value> = (0..2500).map(|i| json!({"x": i, "y": i})).collect();
    const STROKES: u64 = 150;
    let fast_reader = tokio::spawn(async move {
        let mut last = 0;
        while last < STROKES {
            let v = fast.next().await.expect("fast client gets every stroke");
            if v["type"] == "CANVAS_UPDATE" {
                let seq = v["payload"]["seq"].as_u64().expect("seq");
                assert_eq!(seq, last + 1, "no gap for the fast client");
                last = seq;
            }
        }
    });
    for n in 0..STROKES {
        writer
            .send(
                json!({"type": "CANVAS_UPDATE", "payload": {"roomId": room, "canvasData": {
                "strokeId": format!("big{n}"), "points": points, "color": "#000", "width": 1}}}),
            )
            .await;
        writer.until("ACK").await;
    }
    fast_reader.await.expect("fast reader");
    // The slow client finds, after whatever was buffered, a 1013 close.
    let close = slow.until("CLOSE").await;
    assert_eq!(close["code"], 1013);
}

#[tokio::test]
async fn rejoining_the_same_room_on_a_socket_causes_no_presence_churn() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;
    let state = bob.join(&room).await;
    assert_eq!(user_ids(&state), ["alice", "bob"]);
    // Whatever the re-join told Alice arrived before her next ACK (one feed, in order).
    alice.draw(&room, "s1").await;
    let seen = alice.frames_until("ACK").await;
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 1);
    let churn = ["USER_LEFT", "USER_JOINED", "CURSOR_LEAVE"];
    assert!(
        seen.iter()
            .all(|f| churn.iter().all(|kind| f["type"] != *kind)),
        "presence churn: {seen:?}"
    );
    for kind in churn {
        alice.expect_none_of(kind, Duration::from_millis(200)).await;
    }
}

/// Issue 15, finding 5: a client that reads nothing at all, not even pings, while its room is
/// busy. Its socket buffers fill, so the session's writes cannot complete; the overflow close
/// and the write bound must still end it and remove its presence.
#[tokio::test]
async fn a_client_that_reads_nothing_at_all_is_dropped_and_leaves_the_room() {
    use tokio::io::AsyncWriteExt;
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.send_queue = 8;
    cfg.ping_interval_secs = 1;
    cfg.ops_per_sec = 10_000;
    cfg.ws_write_buffer = 1024;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut writer = Client::joined(a.addr, "writer", &room).await;
    let mut mute = common::raw_ws(a.addr, &common::token("mute", "Mute"), 4096).await;
    mute.write_all(&common::masked_text(&join_room(&room).to_string()))
        .await
        .expect("join");
    while alice.until("USER_JOINED").await["payload"]["userId"] != "mute" {}
    let points: Vec<Value> = (0..2500).map(|i| json!({"x": i, "y": i})).collect();
    let flood = tokio::spawn({
        let room = room.clone();
        async move {
            for n in 0..2_000 {
                writer
                    .send(json!({"type": "CANVAS_UPDATE", "payload": {"roomId": room,
                        "canvasData": {"strokeId": format!("big{n}"), "points": points,
                        "color": "#000", "width": 1}}}))
                    .await;
                writer.until("ACK").await;
            }
        }
    });
    // Alice reads everything; she must see the mute client leave while the flood goes on.
    let left = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let v = alice.next().await.expect("alice keeps receiving");
            if v["type"] == "USER_LEFT" && v["payload"]["userId"] == "mute" {
                return v;
            }
        }
    })
    .await;
    flood.abort();
    let left = left.expect("the client that reads nothing was never dropped");
    assert_eq!(left["payload"]["count"], 2);
}

/// Issue 15, finding 4: a connection that sends `JOIN_ROOM` in a loop is limited; the room
/// sees a bounded number of presence frames and the joiner a clear `RATE_LIMITED`.
#[tokio::test]
async fn join_room_is_rate_limited_per_connection() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.joins_per_minute = 6;
    cfg.join_burst = 3;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    let mut looper = Client::connect(a.addr, "looper").await;
    const JOINS: usize = 40;
    for _ in 0..JOINS {
        looper.send(join_room(&room)).await;
    }
    looper.send(json!({"type": "PING", "payload": {}})).await;
    let frames = looper.frames_until("PONG").await;
    let count = |kind: &str| frames.iter().filter(|f| f["type"] == kind).count();
    let limited: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "ERROR" && f["payload"]["code"] == "RATE_LIMITED")
        .collect();
    assert_eq!(count("INITIAL_STATE"), 3, "the burst is served");
    assert_eq!(
        limited.len(),
        JOINS - 3,
        "the rest are refused, each with an ERROR"
    );
    // The bystander got presence for the served joins only: everything the joins published
    // reached her before a stroke published after them (one channel, in order).
    looper.draw_acked(&room, "after-joins").await;
    let seen = alice.frames_until("CANVAS_UPDATE").await;
    let presence = seen
        .iter()
        .filter(|f| f["type"] == "USER_COUNT_UPDATED")
        .count();
    assert!(
        presence <= 3,
        "{presence} presence frames for 3 served joins"
    );
}

/// Issue 15, finding 10: the addresses of one IPv6 /64 are one client to the limits.
#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.trusted_proxies = "127.0.0.1".into();
    cfg.ws_upgrades_per_minute = 2;
    let a = Instance::start(cfg).await;
    let good = token("u1", "U");
    let from = |client: &'static str| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                a.ws_url(&good),
            )
            .expect("request");
        request
            .headers_mut()
            .insert("X-Forwarded-For", client.parse().expect("header"));
        upgrade(request)
    };
    assert_eq!(from("2001:db8:1:2::1").await.0, 101);
    assert_eq!(from("2001:db8:1:2::2").await.0, 101);
    assert_eq!(from("2001:db8:1:2:ffff::3").await.0, 429, "same /64");
    assert_eq!(from("2001:db8:1:3::1").await.0, 101, "another /64");
    a.stop().await;
}

/// Issue 15, finding 10: with no allow-list any origin may call, but never with credentials;
/// with one, a listed origin gets credentials and others get nothing.
#[tokio::test]
async fn an_empty_origin_list_never_grants_credentials() {
    let open = Instance::start(config(None, "open")).await;
    let preflight = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    for (method, path, headers) in [
        ("GET", "/healthz", &preflight[..1]),
        ("OPTIONS", "/api/v1/rooms", &preflight[..]),
    ] {
        let (_, headers, _) = common::http_raw(open.addr, method, path, headers, None).await;
        assert_eq!(
            header(&headers, "access-control-allow-credentials"),
            None,
            "{method} {path}: {headers:?}"
        );
        assert_ne!(
            header(&headers, "access-control-allow-origin"),
            Some("https://evil.example"),
            "{method} {path}: the origin is not echoed"
        );
    }
    let mut cfg = config(None, "listed");
    cfg.allowed_origins = "https://board.example".into();
    let listed = Instance::start(cfg).await;
    let (_, headers, _) = common::http_raw(
        listed.addr,
        "GET",
        "/healthz",
        &[("Origin", "https://board.example")],
        None,
    )
    .await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://board.example")
    );
    assert_eq!(
        header(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    let (_, headers, _) = common::http_raw(
        listed.addr,
        "GET",
        "/healthz",
        &[("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

/// Issue 15, finding 10: a frame over the hard cap (four times `max_frame_bytes`) is answered
/// with a 1009 close, not a dropped connection.
#[tokio::test]
async fn a_frame_over_the_hard_cap_closes_with_1009() {
    let mut cfg = config(None, "solo");
    cfg.max_frame_bytes = 1024;
    let a = Instance::start(cfg).await;
    let mut client = Client::connect(a.addr, "big").await;
    let huge = format!(
        r#"{{"type":"PING","payload":{{"pad":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    client
        .send_raw(tokio_tungstenite::tungstenite::Message::text(huge))
        .await;
    let close = client
        .next()
        .await
        .expect("a close frame, not a dropped connection");
    assert_eq!(close, json!({"type": "CLOSE", "code": 1009}));
}

/// Issue 15, finding 10: guest tokens are limited per IP.
#[tokio::test]
async fn guest_tokens_are_limited_per_ip() {
    let mut cfg = config(None, "solo");
    cfg.guest_rate_limit = 2;
    let a = Instance::start(cfg).await;
    let body = json!({"name": "Guest"});
    for _ in 0..2 {
        let (status, _, text) = http(a.addr, "POST", "/api/v1/auth/guest", None, Some(&body)).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, headers, _) = http(a.addr, "POST", "/api/v1/auth/guest", None, Some(&body)).await;
    assert_eq!(status, 429);
    assert!(header(&headers, "retry-after").is_some());
}

/// Issue 15, finding 6: connections that send nothing, trickle a request head, or sit idle
/// after a response are closed once `http_header_timeout_secs` has passed.
#[tokio::test]
async fn silent_trickling_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config(None, "solo");
    cfg.http_header_timeout_secs = 1;
    let a = Instance::start(cfg).await;
    let mut sockets = Vec::new();
    for i in 0..12 {
        let mut socket = tokio::net::TcpStream::connect(a.addr)
            .await
            .expect("connect");
        let sent: &[u8] = match i % 3 {
            0 => b"",
            1 => b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a",
            _ => b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        };
        socket.write_all(sent).await.expect("write");
        sockets.push(socket);
    }
    for (i, mut socket) in sockets.into_iter().enumerate() {
        let mut seen = Vec::new();
        let ended =
            tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut seen)).await;
        assert!(ended.is_ok(), "connection {i} was left open");
        if i % 3 == 2 {
            assert!(
                seen.starts_with(b"HTTP/1.1 200"),
                "the idle one was answered first"
            );
        }
    }
}

/// Issue 15, finding 6: open connections per client IP are capped, WebSockets included, and
/// a closed one frees its slot.
#[tokio::test]
async fn open_connections_per_ip_are_capped() {
    let mut cfg = config(None, "solo");
    cfg.max_connections_per_ip = 3;
    let a = Instance::start(cfg).await;
    let first = Client::connect(a.addr, "one").await;
    let _second = Client::connect(a.addr, "two").await;
    let _idle = tokio::net::TcpStream::connect(a.addr)
        .await
        .expect("connect");
    let (status, _, _) = http(a.addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 0, "a fourth connection from the same IP is refused");
    first.close().await;
    common::wait_until("a slot is given back", common::WAIT, || async {
        http(a.addr, "GET", "/healthz", None, None).await.0 == 200
    })
    .await;
    let metric = metrics(a.addr).await;
    assert!(metric("drawbridge_connections_refused_per_ip_total") >= 1.0);
}

/// Issue 15, finding 11: upgrades beyond this instance's admission rate are turned away with
/// 503 and a `Retry-After`, before they cost anything else.
#[tokio::test]
async fn upgrades_beyond_the_admission_rate_get_503_with_retry_after() {
    let mut cfg = config(None, "solo");
    cfg.upgrades_per_sec = 2;
    let a = Instance::start(cfg).await;
    let good = token("u1", "U");
    assert_eq!(upgrade(a.ws_url(&good)).await.0, 101);
    assert_eq!(upgrade(a.ws_url(&good)).await.0, 101);
    let (status, headers) = upgrade(a.ws_url(&good)).await;
    assert_eq!(status, 503, "{headers:?}");
    let retry = header(&headers, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| (1..=10).contains(&s)), "{headers:?}");
}

/// Issue 15, finding 11: a client further behind than `replay_max_events` gets the board, not
/// one huge `REPLAY`; a client a little behind still gets its `REPLAY`.
#[tokio::test]
async fn a_client_far_behind_gets_the_board_instead_of_a_long_replay() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.replay_max_events = 3;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::connect(a.addr, "alice").await;
    let state = alice.join(&room).await;
    let epoch = state["payload"]["epoch"].clone();
    for n in 0..5 {
        alice.draw_acked(&room, &format!("s{n}")).await;
    }
    let mut far = Client::connect(a.addr, "far").await;
    let board = far
        .join_with(join_room_since(&room, 0, &epoch), "INITIAL_STATE")
        .await;
    assert_eq!(stroke_ids(&board).len(), 5);
    let mut near = Client::connect(a.addr, "near").await;
    let replay = near
        .join_with(join_room_since(&room, 3, &epoch), "REPLAY")
        .await;
    assert_eq!(
        replay["payload"]["events"].as_array().map(Vec::len),
        Some(2)
    );
}

/// Issue 15, finding 4: what the page does after each undo, re-join its room with `since` to
/// learn the effect, is catching up, not joining: it counts against the op budget, so a burst
/// of undos is never refused as too many joins.
#[tokio::test]
async fn catching_up_in_the_same_room_is_not_limited_as_a_join() {
    let redis = RedisServer::start();
    let mut cfg = config(Some(&redis), "inst-a");
    cfg.joins_per_minute = 6;
    cfg.join_burst = 3;
    let a = Instance::start(cfg).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::connect(a.addr, "alice").await;
    let state = alice.join(&room).await;
    let epoch = state["payload"]["epoch"].clone();
    for n in 0..10u64 {
        let ack = alice.draw_acked(&room, &format!("s{n}")).await;
        let seq = ack["payload"]["seq"].as_u64().expect("seq");
        let replay = alice
            .join_with(join_room_since(&room, seq - 1, &epoch), "REPLAY")
            .await;
        assert_eq!(replay["payload"]["seq"], seq, "catch-up {n}");
    }
}

/// Issue 15, finding 6: a request whose body trickles in is answered 408 once
/// `http_request_timeout_secs` has passed, and its connection closed.
#[tokio::test]
async fn a_request_body_that_never_arrives_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config(None, "solo");
    cfg.http_request_timeout_secs = 1;
    let a = Instance::start(cfg).await;
    let mut socket = tokio::net::TcpStream::connect(a.addr)
        .await
        .expect("connect");
    socket
        .write_all(
            b"POST /api/v1/auth/guest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "the connection was left open");
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Issue 15, finding 4 (second half): a socket re-joining the room it is in, to catch up, gets
/// the events it missed (`REPLAY`, not the board) and its count, and the room hears nothing:
/// no `USER_JOINED`, `USER_LEFT` or count update for the others. Redis and the embedded engine.
async fn rejoin_is_cheap_for_the_room(a: SocketAddr, b: SocketAddr) {
    let room = create_room(a).await;
    let mut alice = Client::connect(a, "alice").await;
    let state = alice.join(&room).await;
    let epoch = state["payload"]["epoch"].clone();
    let mut bob = Client::joined(b, "bob", &room).await;
    alice.until("USER_COUNT_UPDATED").await;
    bob.draw_acked(&room, "s1").await;
    alice.until("CANVAS_UPDATE").await;
    for _ in 0..5 {
        alice.send(join_room_since(&room, 0, &epoch)).await;
        let replay = alice.expect("REPLAY").await;
        assert_eq!(
            replay["payload"]["events"].as_array().map(Vec::len),
            Some(1)
        );
        let count = alice.expect("USER_COUNT_UPDATED").await;
        assert_eq!(count["payload"]["count"], 2, "{count}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, bob.next()).await {
        let kind = v["type"].as_str().unwrap_or_default();
        assert!(!common::PRESENCE.contains(&kind), "bob heard {v}");
    }
    // A new socket of a user already present is still counted, and a new user announced.
    let _second = Client::joined(a, "alice", &room).await;
    assert_eq!(bob.until("USER_COUNT_UPDATED").await["payload"]["count"], 2);
}

#[tokio::test]
async fn a_rejoin_of_the_same_room_is_cheap_for_the_room_redis() {
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    rejoin_is_cheap_for_the_room(a.addr, b.addr).await;
}

#[tokio::test]
async fn a_rejoin_of_the_same_room_is_cheap_for_the_room_embedded() {
    let a = Instance::start(config(None, "solo")).await;
    rejoin_is_cheap_for_the_room(a.addr, a.addr).await;
}
