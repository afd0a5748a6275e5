//! Redis going away mid-session: nothing acknowledged is lost, no connected client is left
//! with a gap or a duplicate, and none drops out of its room's presence.

mod common;

use std::time::Duration;

use common::{
    Client, Instance, Pair, Proxy, RedisServer, WAIT, config, metrics, stroke_ids, user_ids,
    wait_for_status,
};
use drawbridge::config::Config;
use redis::AsyncCommands;
use serde_json::{Value, json};

/// Reads frames until `want` distinct sequenced events (events, replayed events and own ACKs)
/// have been seen, asserting events arrive in strictly increasing seq with no repeats.
async fn collect_seqs(client: &mut Client, want: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut last_event = 0;
    while seqs.len() < want {
        let v = client
            .next()
            .await
            .unwrap_or_else(|| panic!("{}: stalled at {seqs:?}", client.user));
        let seq = v["payload"]["seq"].as_u64();
        if v["type"] == "REPLAY" {
            // A re-join after a resync: the replayed events count like live ones.
            for event in v["payload"]["events"].as_array().into_iter().flatten() {
                let seq = event["payload"]["seq"].as_u64().expect("seq");
                assert!(
                    seq > last_event,
                    "{}: replayed {seq} after {last_event}",
                    client.user
                );
                last_event = seq;
                seqs.push(seq);
            }
            continue;
        }
        match (v["type"].as_str(), seq) {
            (Some("CANVAS_UPDATE" | "UNDO" | "REDO"), Some(seq)) => {
                assert!(
                    seq > last_event,
                    "{}: {seq} after {last_event}",
                    client.user
                );
                last_event = seq;
                seqs.push(seq);
            }
            (Some("ACK"), Some(seq)) => seqs.push(seq),
            _ => {}
        }
    }
    seqs.sort_unstable();
    seqs
}

async fn wait_ready(instance: &Instance) {
    wait_for_status(instance.addr, "/readyz", 200, 2 * WAIT).await;
}

/// Draws until the stroke is acknowledged, retrying with the same id while Redis is away.
async fn draw_until_acked(client: &mut Client, room: &str, id: &str) -> Value {
    for _ in 0..100 {
        client.draw(room, id).await;
        loop {
            let v = client.next().await.expect("a frame");
            match v["type"].as_str() {
                Some("ACK") if v["payload"]["strokeId"] == id => return v,
                Some("ERROR") => {
                    assert_eq!(v["payload"]["code"], "UNAVAILABLE", "{v}");
                    break;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} was never acknowledged");
}

#[tokio::test]
async fn a_redis_restart_loses_no_acknowledged_stroke_and_leaves_no_gap() {
    let mut redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;
    for n in 1..=3 {
        alice.draw_acked(&room, &format!("before{n}")).await;
    }
    assert_eq!(collect_seqs(&mut bob, 3).await, [1, 2, 3]);

    redis.restart();
    // While Redis is down or the instances are reconnecting, ops are refused, not lost.
    for n in 1..=3 {
        draw_until_acked(&mut alice, &room, &format!("after{n}")).await;
    }
    wait_ready(&a).await;
    wait_ready(&b).await;
    assert_eq!(collect_seqs(&mut bob, 3).await, [4, 5, 6]);

    let state = Client::connect(b.addr, "late").await.join(&room).await;
    assert_eq!(
        stroke_ids(&state),
        [
            "before1", "before2", "before3", "after1", "after2", "after3"
        ]
    );
}

#[tokio::test]
async fn an_instance_cut_off_from_pubsub_fills_the_hole_from_the_log() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start(&redis).await;
    alice.draw_acked(&room, "s1").await;
    assert_eq!(collect_seqs(&mut bob, 1).await, [1]);

    // Redis drops every subscriber (as it does when one overflows its output buffer). The
    // instances reconnect after a backoff; strokes written meanwhile reach nobody live.
    let mut conn = redis.client().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("client kill");
    assert_eq!(killed, 2, "one subscriber per instance");
    for n in 2..=6 {
        alice.draw(&room, &format!("s{n}")).await;
    }
    // Every ACK still arrives, in order, and Bob sees every event once.
    assert_eq!(collect_seqs(&mut alice, 5).await, [2, 3, 4, 5, 6]);
    assert_eq!(collect_seqs(&mut bob, 5).await, [2, 3, 4, 5, 6]);
    alice.draw_acked(&room, "s7").await;
    assert_eq!(collect_seqs(&mut bob, 1).await, [7]);
    bob.send(json!({"type": "PING", "payload": {}})).await;
    bob.expect("PONG").await;
    // Operators can see the repair: Bob's instance resubscribed and read s2..s6 from the log.
    let value = metrics(b.addr).await;
    assert_eq!(value("drawbridge_feed_resubscribed_total"), 1.0);
    assert_eq!(value("drawbridge_feed_filled_from_log_total"), 5.0);
    assert_eq!(value("drawbridge_feed_resyncs_total"), 0.0);
}

#[tokio::test]
async fn presence_swept_while_an_instance_looked_dead_is_put_back() {
    let redis = RedisServer::start();
    let fast_heartbeat = |instance: &str| Config {
        heartbeat_secs: 1,
        ..config(Some(&redis), instance)
    };
    let Pair {
        a: _a,
        b,
        room,
        alice: _alice,
        mut bob,
    } = Pair::start_with(fast_heartbeat).await;

    // What Redis looks like after A was cut off for longer than its key's TTL and B swept the
    // room: A's key is gone and so is Alice's entry, though her socket is open.
    let users = format!("room:{{{room}}}:users");
    let mut conn = redis.client().await;
    let fields: Vec<String> = conn.hkeys(&users).await.expect("hkeys");
    // Entries are tagged `<instance>/<conn>`, and every start adds a suffix to the configured id.
    let alice_field = fields
        .into_iter()
        .find(|f| f.starts_with("inst-a-"))
        .expect("alice's entry");
    let (instance_a, _) = alice_field.split_once('/').expect("tagged entry");
    let instance_key = format!("instance:{instance_a}");
    redis::pipe()
        .atomic()
        .del(&instance_key)
        .hdel(&users, &alice_field)
        .query_async::<()>(&mut conn)
        .await
        .expect("forget instance a");

    // A's next heartbeat finds its key gone and puts Alice back; the room is told.
    let joined = bob.until("USER_JOINED").await;
    assert_eq!(joined["payload"]["userId"], "alice", "{joined}");
    let count = bob.until("USER_COUNT_UPDATED").await;
    assert_eq!(count["payload"]["count"], 2, "{count}");
    let back: bool = conn.hexists(&users, &alice_field).await.expect("hexists");
    assert!(back, "alice's entry is back under her connection");
    let alive: bool = conn.exists(&instance_key).await.expect("exists");
    assert!(alive);

    let state = Client::connect(b.addr, "late").await.join(&room).await;
    assert_eq!(user_ids(&state), ["alice", "bob", "late"]);
}

#[tokio::test]
async fn scripts_are_in_redis_before_the_first_op() {
    let redis = RedisServer::start();
    let a = Instance::start(config(Some(&redis), "inst-a")).await;
    let room = common::create_room(a.addr).await;
    let mut alice = Client::joined(a.addr, "alice", &room).await;
    alice.draw_acked(&room, "s1").await;
    // A script missing from Redis's cache fails its EVALSHA with NOSCRIPT: after a restart
    // every first join would, all at once, and each would resend the script's body.
    let mut conn = redis.client().await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("info");
    let evalsha = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .expect("scripts ran");
    assert!(evalsha.contains("failed_calls=0"), "{evalsha}");
}

/// A client's board as it would draw it: strokes from its last `INITIAL_STATE` and every
/// event since, checking that each event is the one after the last (no gap, no repeat).
#[derive(Default)]
struct Board {
    strokes: Vec<String>,
    seq: u64,
    snapshots: usize,
}

impl Board {
    fn take(&mut self, who: &str, v: &Value) {
        let payload = &v["payload"];
        match v["type"].as_str() {
            Some("INITIAL_STATE") => {
                self.strokes = stroke_ids(v).into_iter().map(str::to_owned).collect();
                self.seq = payload["seq"].as_u64().expect("seq");
                self.snapshots += 1;
            }
            Some("REPLAY") => {
                for event in payload["events"].as_array().into_iter().flatten() {
                    self.take(who, event);
                }
            }
            Some("CANVAS_UPDATE") => {
                let seq = payload["seq"].as_u64().expect("seq");
                assert_eq!(seq, self.seq + 1, "{who}: {seq} after {}", self.seq);
                self.seq = seq;
                let id = payload["canvasData"]["strokeId"]
                    .as_str()
                    .expect("strokeId");
                self.strokes.push(id.to_owned());
            }
            _ => {}
        }
    }

    /// Reads `client`'s frames until its board is `want`, or fails after `within`.
    async fn until(&mut self, client: &mut Client, want: &[&str], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.strokes != want {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, client.next()).await {
                Ok(Some(v)) => self.take(&client.user, &v),
                Ok(None) => {}
                Err(_) => panic!(
                    "{}: board {:?} at seq {}, never became {want:?}",
                    client.user, self.strokes, self.seq
                ),
            }
        }
    }
}

/// Finding 8 of issue 15. Redis fails over to a replica that did not have the last writes
/// (Sentinel's partition case: the replica is promoted while the old primary, still reachable
/// by the instances, keeps taking writes; those are lost when the old one goes). The seqs
/// those writes had come back with other events under the same epoch. Every client must end
/// with the promoted server's board, with no gap and nothing acknowledged after the failover
/// lost: the instance that notices gives the room a new epoch, and every session re-joins.
///
/// The instances reach Redis through their own proxy each (as a VIP or DNS name moved by the
/// operator or by Sentinel), switched one after the other, so one instance meets the promoted
/// server only after the other has written there under the reused seqs.
#[tokio::test]
async fn a_failover_to_a_lagging_replica_resyncs_every_client_to_the_true_board() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_replica(&primary);
    let (proxy_a, proxy_b) = (
        Proxy::start(primary.port).await,
        Proxy::start(primary.port).await,
    );
    let (url_a, url_b) = (proxy_a.url(), proxy_b.url());
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_with(|instance| Config {
        redis_url: if instance == "inst-a" { &url_a } else { &url_b }.clone(),
        ..config(None, instance)
    })
    .await;
    let mut board = Board::default();
    for n in 1..=3 {
        alice.draw_acked(&room, &format!("kept{n}")).await;
    }
    board
        .until(&mut bob, &["kept1", "kept2", "kept3"], WAIT)
        .await;
    let mut conn = primary.client().await;
    let synced: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .expect("wait");
    assert_eq!(synced, 1, "the replica has the first three strokes");

    // The replica is promoted; the old primary still takes (and confirms) five more strokes.
    let mut promoted = replica.client().await;
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(&mut promoted)
        .await
        .expect("promote");
    let lost = ["lost1", "lost2", "lost3", "lost4", "lost5"];
    for id in lost {
        alice.draw_acked(&room, id).await;
    }
    board
        .until(
            &mut bob,
            &[
                "kept1", "kept2", "kept3", "lost1", "lost2", "lost3", "lost4", "lost5",
            ],
            WAIT,
        )
        .await;

    // The old primary dies. A's address moves first; Alice draws on the promoted server,
    // which hands out seqs 4..8 again.
    primary.stop();
    proxy_a.switch(replica.port);
    let new = ["new1", "new2", "new3", "new4", "new5"];
    for id in new {
        draw_until_acked(&mut alice, &room, id).await;
    }
    // Then B's address moves: B had delivered seqs 4..8 as the lost strokes.
    proxy_b.switch(replica.port);
    wait_ready(&a).await;
    wait_ready(&b).await;
    let truth = [
        "kept1", "kept2", "kept3", "new1", "new2", "new3", "new4", "new5",
    ];
    board.until(&mut bob, &truth, 4 * WAIT).await;
    assert!(board.snapshots >= 1, "bob was given the board again");

    // From there the room goes on under its new epoch, live and gap-free.
    draw_until_acked(&mut alice, &room, "after").await;
    let mut all = truth.to_vec();
    all.push("after");
    board.until(&mut bob, &all, 4 * WAIT).await;
    let late = Client::connect(b.addr, "late").await.join(&room).await;
    assert_eq!(stroke_ids(&late), all);
    let value = metrics(a.addr).await;
    let rebased = value("drawbridge_feed_rebases_total")
        + metrics(b.addr).await("drawbridge_feed_rebases_total");
    assert!(rebased >= 1.0, "the loss was noticed");
}

/// The same loss seen from a reconnecting client: it saw seqs the room no longer has. Its join
/// gives the room a new epoch (so every client that saw them takes the board, not a replay of
/// seqs that will be reused), at most once a minute, since any client can claim any `since`.
#[tokio::test]
async fn a_join_from_beyond_the_room_seq_rebases_the_room_once() {
    let redis = RedisServer::start();
    let Pair {
        b, room, mut alice, ..
    } = Pair::start(&redis).await;
    alice.draw_acked(&room, "s1").await;
    let state = Client::connect(b.addr, "first").await.join(&room).await;
    let epoch = state["payload"]["epoch"].clone();
    let mut late = Client::connect(b.addr, "late").await;
    late.send(common::join_room_since(&room, 40, &epoch)).await;
    let answer = late.until("INITIAL_STATE").await;
    let rebased = answer["payload"]["epoch"].clone();
    assert_ne!(rebased, epoch, "a new epoch");
    assert_eq!(stroke_ids(&answer), ["s1"]);
    // Everyone else in the room is given the board under it.
    let again = alice.until("INITIAL_STATE").await;
    assert_eq!(again["payload"]["epoch"], rebased);
    // A second claim within the minute changes nothing.
    let mut liar = Client::connect(b.addr, "liar").await;
    liar.send(common::join_room_since(&room, 90, &rebased))
        .await;
    let answer = liar.until("INITIAL_STATE").await;
    assert_eq!(answer["payload"]["epoch"], rebased);
    alice
        .expect_none_of("INITIAL_STATE", Duration::from_millis(500))
        .await;
}
