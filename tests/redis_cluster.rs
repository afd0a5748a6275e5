//! drawbridge on a real Redis Cluster (`redis_mode = cluster`): two instances in each
//! `pubsub_mode` sharing rooms spread over every master, a failover under writes, and a room
//! whose slot moves to another master while it is used.
//!
//! The clusters are private (`common::cluster`), on free loopback ports, killed on drop.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::RedisCluster;
use common::{Client, Instance, config, create_room};
use drawbridge::config::{Config, PubsubMode, RedisMode};
use serde_json::Value;

fn cluster_config(
    cluster: &RedisCluster,
    instance: &str,
    mode: PubsubMode,
    prefix: &str,
) -> Config {
    Config {
        redis_url: cluster.url(),
        redis_mode: RedisMode::Cluster,
        key_prefix: prefix.into(),
        pubsub_mode: mode,
        pubsub_linger_ms: 500,
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        ..config(None, instance)
    }
}

/// The seq of a sequenced event frame, if it is one.
fn event_seq(v: &Value) -> Option<u64> {
    match v["type"].as_str() {
        Some("CANVAS_UPDATE" | "UNDO" | "REDO") => v["payload"]["seq"].as_u64(),
        _ => None,
    }
}

#[tokio::test]
async fn two_instances_share_rooms_on_every_master_in_each_pubsub_mode() {
    let cluster = RedisCluster::start(3, 0);
    for mode in [PubsubMode::Pattern, PubsubMode::Room, PubsubMode::Sharded] {
        let prefix = format!("{}:", mode.as_str());
        let a = Instance::start(cluster_config(&cluster, "inst-a", mode, &prefix)).await;
        let b = Instance::start(cluster_config(&cluster, "inst-b", mode, &prefix)).await;
        // Rooms until every master owns two (room ids are random: their slots too).
        let mut per_master: std::collections::HashMap<u16, usize> = Default::default();
        let mut rooms = Vec::new();
        while per_master.len() < 3 || per_master.values().any(|n| *n < 2) {
            assert!(rooms.len() < 60, "room ids spread over every master");
            let room = create_room(a.addr).await;
            let n = per_master
                .entry(cluster.master_of(&format!("{prefix}room:{{{room}}}")))
                .or_default();
            if *n < 2 {
                *n += 1;
                rooms.push(room);
            }
        }
        for (i, room) in rooms.iter().enumerate() {
            let room = room.as_str();
            let mut alice = Client::joined(a.addr, "alice", room).await;
            let mut bob = Client::joined(b.addr, "bob", room).await;
            alice.until("USER_JOINED").await;
            let ack = alice.draw_acked(room, &format!("a{i}")).await;
            assert_eq!(ack["payload"]["seq"], 1, "{mode:?}");
            let seen = bob.until("CANVAS_UPDATE").await;
            assert_eq!(seen["payload"]["seq"], 1, "{mode:?}");
            bob.draw_acked(room, &format!("b{i}")).await;
            assert_eq!(alice.until("CANVAS_UPDATE").await["payload"]["seq"], 2);
            bob.undo(room, None).await;
            assert_eq!(alice.until("UNDO").await["payload"]["seq"], 3, "{mode:?}");
            // A late joiner on either instance reads the room from its slot's master.
            let mut carol = Client::connect(b.addr, "carol").await;
            let state = carol.join(room).await;
            assert_eq!(common::stroke_ids(&state), [format!("a{i}")], "{mode:?}");
        }
        a.stop().await;
        b.stop().await;
    }
}

/// Draws `id` until it is acknowledged (an op refused as `UNAVAILABLE` during the failover is
/// sent again with the same id, which the gateway answers from the op's record if it had been
/// committed). Returns the ACK's seq.
async fn draw_until_acked(client: &mut Client, room: &str, id: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        client.draw(room, id).await;
        loop {
            // None: nothing within the harness's wait; send again.
            let Some(frame) = client.next().await else {
                break;
            };
            match frame["type"].as_str() {
                Some("ACK") => return frame["payload"]["seq"].as_u64().expect("seq"),
                Some("ERROR") => break,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} was not acknowledged in {within:?}");
}

/// Kills the master of a room while a client writes to it: writes resume on the promoted
/// replica, every acknowledged stroke is on the board afterwards (`redis_wait_replicas = 1`:
/// nothing is acknowledged before a replica has it), and the watcher on the other instance
/// receives every seq in order, with no hole.
#[tokio::test]
async fn a_failover_loses_no_acknowledged_op_and_leaves_no_gap() {
    for mode in [PubsubMode::Sharded, PubsubMode::Pattern] {
        // Two replicas a master: the promoted one still has a replica, so ops that must reach
        // one (`redis_wait_replicas = 1`) resume at once.
        let mut cluster = RedisCluster::start(3, 2);
        let prefix = format!("f{}:", mode.as_str());
        let durable = |instance: &str| Config {
            redis_wait_replicas: 1,
            redis_wait_ms: 1000,
            ..cluster_config(&cluster, instance, mode, &prefix)
        };
        let a = Instance::start(durable("inst-a")).await;
        let b = Instance::start(durable("inst-b")).await;
        // The room on the node the instances were configured with: its death must not leave
        // them unable to reconnect (they reseed from the nodes they know).
        let seed: u16 = cluster
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("seed port");
        let mut room = create_room(a.addr).await;
        for _ in 0..60 {
            if cluster.master_of(&format!("{prefix}room:{{{room}}}")) == seed {
                break;
            }
            room = create_room(a.addr).await;
        }
        let key = format!("{prefix}room:{{{room}}}");
        let master = cluster.master_of(&key);
        assert_eq!(master, seed, "a room on the seed node");
        assert!(
            !cluster.replicas_of(master).is_empty(),
            "the room's master has a replica"
        );
        let mut alice = Client::joined(a.addr, "alice", &room).await;
        let mut bob = Client::joined(b.addr, "bob", &room).await;
        alice.until("USER_JOINED").await;

        let mut acked = BTreeSet::new();
        for i in 0..40 {
            if i == 10 {
                cluster.kill(master);
            }
            let id = format!("s{i}");
            draw_until_acked(&mut alice, &room, &id, Duration::from_secs(30)).await;
            acked.insert(id);
        }
        assert!(
            cluster.wait_ok(Duration::from_secs(10)),
            "the cluster recovered"
        );
        assert_ne!(cluster.master_of(&key), master, "a replica took over");

        // Bob saw every stroke exactly once, in seq order, with no hole (a re-join would show
        // as an INITIAL_STATE or REPLAY, after which the seqs go on from its seq).
        let mut seen = BTreeSet::new();
        let mut last = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < acked.len() && Instant::now() < deadline {
            let Some(frame) = bob.next().await else {
                break;
            };
            if let Some(seq) = event_seq(&frame) {
                assert_eq!(seq, last + 1, "{mode:?}: bob saw a gap: {frame}");
                last = seq;
                if let Some(id) = frame["payload"]["canvasData"]["strokeId"].as_str() {
                    seen.insert(id.to_owned());
                }
            } else if matches!(frame["type"].as_str(), Some("INITIAL_STATE" | "REPLAY")) {
                last = frame["payload"]["seq"].as_u64().unwrap_or(last);
                for id in common::stroke_ids(&frame) {
                    seen.insert(id.to_owned());
                }
            }
        }
        assert_eq!(seen, acked, "{mode:?}: bob has every acknowledged stroke");
        // And the board, read afresh from the new master, holds every acknowledged stroke.
        common::wait_for_status(b.addr, "/readyz", 200, Duration::from_secs(20)).await;
        let mut carol = Client::connect(b.addr, "carol").await;
        let state = carol.join(&room).await;
        let board: BTreeSet<String> = common::stroke_ids(&state)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert!(
            board.is_superset(&acked),
            "{mode:?}: lost {:?}",
            acked.difference(&board)
        );
        a.stop().await;
        b.stop().await;
    }
}

/// A room whose slot is moved to another master while clients use it: the node's own
/// `sunsubscribe` and the commands' MOVED answers are followed, and nothing is missed.
#[tokio::test]
async fn a_room_keeps_working_while_its_slot_moves() {
    let cluster = RedisCluster::start(3, 0);
    for mode in [PubsubMode::Sharded, PubsubMode::Room] {
        let prefix = format!("m{}:", mode.as_str());
        let a = Instance::start(cluster_config(&cluster, "inst-a", mode, &prefix)).await;
        let b = Instance::start(cluster_config(&cluster, "inst-b", mode, &prefix)).await;
        let room = create_room(a.addr).await;
        let key = format!("{prefix}room:{{{room}}}");
        let mut alice = Client::joined(a.addr, "alice", &room).await;
        let mut bob = Client::joined(b.addr, "bob", &room).await;
        alice.until("USER_JOINED").await;
        for i in 0..5 {
            alice.draw_acked(&room, &format!("s{i}")).await;
        }
        let from = cluster.master_of(&key);
        let to = cluster
            .masters()
            .into_iter()
            .find(|p| *p != from)
            .expect("another master");
        cluster.move_slot(&key, to);
        // Ops keep working, and Bob keeps receiving them (refilled from the log where the
        // move cut his instance's subscription).
        for i in 5..15 {
            draw_until_acked(&mut alice, &room, &format!("s{i}"), Duration::from_secs(10)).await;
        }
        let mut last = 0;
        while last < 15 {
            let frame = tokio::time::timeout(Duration::from_secs(10), bob.until("CANVAS_UPDATE"))
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: bob stopped at seq {last}"));
            let seq = event_seq(&frame).expect("seq");
            assert_eq!(seq, last + 1, "{mode:?}: bob saw a gap");
            last = seq;
        }
        // The channel is subscribed on the slot's new owner again (sharded: only it carries it).
        if mode == PubsubMode::Sharded {
            common::wait_until(
                "the room is subscribed on its new master",
                common::WAIT,
                || {
                    let channel = key.clone();
                    async move {
                        let out = std::process::Command::new("redis-cli")
                            .args(["-p", &to.to_string(), "pubsub", "shardnumsub", &channel])
                            .output()
                            .expect("redis-cli");
                        String::from_utf8_lossy(&out.stdout).lines().nth(1) == Some("2")
                    }
                },
            )
            .await;
        }
        a.stop().await;
        b.stop().await;
    }
}
