//! Redis memory held by idle rooms, before and after compaction (`docs/BENCHMARKS.md` §7):
//!
//!     redis-server --port 6399 --save '' --appendonly no &
//!     cargo run --release --example idle_memory -- redis://127.0.0.1:6399 10000 200
//!
//! Fills ROOMS rooms with ELEMENTS rectangles each, one op per element with an op id (as pages
//! send them), through the Redis engine's own scripts; everyone leaves; then prints Redis's
//! `used_memory` before and after every room is compacted. It FLUSHes the database first: point
//! it at a private server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drawbridge::domain::board::Intent;
use drawbridge::domain::element::{Element, ElementLimits};
use drawbridge::domain::quota::Quota;
use drawbridge::domain::{ConnKey, Identity, UserId};
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{Engine, EngineSettings, History, JoinRequest, Op};
use drawbridge::hub::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

async fn used_memory(client: &redis::Client) -> u64 {
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("redis://127.0.0.1:6399".into());
    let rooms: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let elements: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let settings = EngineSettings {
        instance_id: "idle-memory".into(),
        room_ttl: Some(Duration::from_secs(86_400)),
        log_max: 10_000,
        replay_max: 10_000,
        redo_max: 100,
        undo_max: 100,
        max_points: 5_000,
        history_max: 100_000,
        snapshot_every: 500,
        quota: Quota {
            room_elements: 50_000,
            room_bytes: 32 << 20,
            user_bytes: 8 << 20,
        },
    };
    let engine = Arc::new(
        RedisEngine::start(
            &RedisSettings {
                url: url.clone(),
                mode: drawbridge::config::RedisMode::Standalone,
                key_prefix: String::new(),
                pool_size: 8,
                heartbeat: Duration::from_secs(5),
                pubsub_mode: drawbridge::config::PubsubMode::Pattern,
                pubsub_linger: Duration::from_secs(2),
                tls_ca: String::new(),
                wait_replicas: 0,
                wait_timeout: Duration::from_millis(500),
            },
            settings,
            Arc::new(Hub::new()),
            &tasks,
            stop.clone(),
        )
        .await
        .expect("engine"),
    );
    let baseline = used_memory(&client).await;
    let started = Instant::now();
    let limits = ElementLimits { max_points: 5_000 };
    let who = Identity::new(UserId::new("filler"), "filler".into());
    let mut handles = Vec::new();
    // 32 rooms at a time, each filled op by op.
    let per_worker = rooms.div_ceil(32);
    for worker in 0..32 {
        let engine = engine.clone();
        let who = who.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_worker.min(rooms.saturating_sub(worker * per_worker)) {
                let room = engine.create_room(&who.user_id).await.expect("room").room_id;
                let conn = ConnKey::new("idle-memory", worker as u64);
                engine
                    .join(JoinRequest {
                        room: &room,
                        conn: &conn,
                        who: &who,
                        since: None,
                    })
                    .await
                    .expect("join");
                for i in 0..elements {
                    let value = serde_json::json!({"id": format!("e{i}"), "kind": "rect",
                        "x": i * 3, "y": i * 2, "w": 40, "h": 30, "color": "#1e1e1e", "fill": "#ffd43b"});
                    let element =
                        Element::from_client(&value, &who.user_id, &room, limits).expect("valid");
                    let op_id = format!("op-{}-{i}", room.as_str());
                    engine
                        .apply(
                            &room,
                            Op {
                                who: &who,
                                conn: &conn,
                                op_id: Some(&op_id),
                                intent: Intent::Add(vec![element]),
                            },
                        )
                        .await
                        .expect("apply");
                }
                engine.leave(&room, &conn).await.expect("leave");
            }
        }));
    }
    for h in handles {
        h.await.expect("worker");
    }
    let filled = used_memory(&client).await;
    let fill_secs = started.elapsed().as_secs_f64();
    let mut compacted = 0;
    loop {
        let n = engine.compact_idle(Duration::ZERO).await.expect("compact");
        if n == 0 {
            break;
        }
        compacted += n;
    }
    let after = used_memory(&client).await;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("rooms {rooms}, elements per room {elements}, filled in {fill_secs:.0} s");
    println!("used_memory empty:            {:>10.1} MiB", mib(baseline));
    println!(
        "used_memory idle, live keys: {:>10.1} MiB ({:.1} KiB per room)",
        mib(filled),
        (filled - baseline) as f64 / 1024.0 / rooms as f64
    );
    println!(
        "used_memory compacted:       {:>10.1} MiB ({:.1} KiB per room), {compacted} rooms compacted",
        mib(after),
        (after.saturating_sub(baseline)) as f64 / 1024.0 / rooms as f64
    );
    stop.cancel();
    tasks.close();
    tasks.wait().await;
}
