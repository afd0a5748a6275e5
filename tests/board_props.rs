//! Property tests of the board: random op sequences from three users (add, update, delete, undo,
//! redo, v1 strokes, and resends of each) run against the memory engine and the Redis engine.
//!
//! For every sequence:
//! - both engines answer every op the same way and end with the same board, element for element
//!   (`v` and `z` included): the rules exist once;
//! - replaying the log records from an empty board with a plain applier (add / set fields /
//!   delete, as a page or a history reader does) gives exactly the board a joiner gets: the log
//!   stores effects, not intents;
//! - a resent op (same user, same op id) changes nothing and answers with the original seq;
//! - history (§5): the board at every seq `n` (one snapshot and the ops after it, snapshots
//!   every 3 ops) is the plain replay of the first `n` records, and a restore to `n` makes the
//!   board the one at `n` (versions aside).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drawbridge::domain::board::Intent;
use drawbridge::domain::element::{Element, ElementLimits, Patch};
use drawbridge::domain::history::{Board, stored};
use drawbridge::domain::quota::Quota;
use drawbridge::domain::{ConnKey, Identity, RoomId, StrokeId, UserId};
use drawbridge::engine::memory::MemoryEngine;
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{
    Engine, EngineSettings, History, JoinOutcome, JoinRequest, Op, OpOutcome, Past, ViewBody,
};
use drawbridge::hub::Hub;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::{RedisServer, WAIT, wait_until};

const USERS: [&str; 3] = ["ann", "bob", "cy"];
const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn settings() -> EngineSettings {
    EngineSettings {
        instance_id: "props".into(),
        room_ttl: Some(Duration::from_secs(600)),
        // Long enough that the whole history stays in the log for the replay check.
        log_max: 10_000,
        replay_max: 10_000,
        redo_max: 5,
        undo_max: 8,
        max_points: 100,
        history_max: 100_000,
        snapshot_every: 3,
        quota: Quota {
            room_elements: 50_000,
            room_bytes: 32 << 20,
            user_bytes: 8 << 20,
        },
    }
}

/// One step of a random session.
#[derive(Clone, Debug)]
enum Step {
    AddRect {
        id: usize,
        z: Option<i8>,
    },
    AddNode {
        id: usize,
    },
    AddEdge {
        id: usize,
        from: usize,
        to: usize,
    },
    Stroke {
        id: usize,
    },
    Move {
        id: usize,
        x: i16,
    },
    /// One op patching one element twice (the second patch wins where they overlap).
    MoveTwice {
        id: usize,
        x: i16,
        y: i16,
    },
    Recolor {
        id: usize,
        color: u8,
    },
    ClearFill {
        id: usize,
    },
    Delete {
        ids: Vec<usize>,
    },
    Undo,
    Redo,
    /// Restores the board as it was `back` seqs ago.
    Restore {
        back: u64,
    },
    /// Sends again the op this user sent `back` ops ago (by its op id).
    Resend {
        back: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS.len();
    prop_oneof![
        (id.clone(), proptest::option::of(-3_i8..3)).prop_map(|(id, z)| Step::AddRect { id, z }),
        id.clone().prop_map(|id| Step::AddNode { id }),
        (id.clone(), id.clone(), id.clone()).prop_map(|(id, from, to)| Step::AddEdge {
            id,
            from,
            to
        }),
        id.clone().prop_map(|id| Step::Stroke { id }),
        (id.clone(), -50_i16..50).prop_map(|(id, x)| Step::Move { id, x }),
        (id.clone(), -50_i16..50, -50_i16..50).prop_map(|(id, x, y)| Step::MoveTwice { id, x, y }),
        (id.clone(), 0_u8..8).prop_map(|(id, color)| Step::Recolor { id, color }),
        id.clone().prop_map(|id| Step::ClearFill { id }),
        proptest::collection::vec(id, 1..3).prop_map(|ids| Step::Delete { ids }),
        Just(Step::Undo),
        Just(Step::Redo),
        (0_u64..6).prop_map(|back| Step::Restore { back }),
        (0_usize..3).prop_map(|back| Step::Resend { back }),
    ]
}

fn who(user: usize) -> Identity {
    Identity::new(UserId::new(USERS[user]), USERS[user].into())
}

fn intent(room: &RoomId, user: usize, step: &Step) -> Option<Intent> {
    let me = who(user).user_id;
    let limits = ElementLimits { max_points: 100 };
    let element = |v: Value| Element::from_client(&v, &me, room, limits).expect("valid");
    let patch = |v: Value| Patch::from_client(&v).expect("patch");
    Some(match step {
        Step::AddRect { id, z } => {
            let mut v = json!({"id": IDS[*id], "kind": "rect", "x": 0, "y": 0, "w": 5, "h": 5, "fill": "#eee"});
            if let Some(z) = z {
                v["z"] = json!(z);
            }
            Intent::Add(vec![element(v)])
        }
        Step::AddNode { id } => Intent::Add(vec![element(
            json!({"id": IDS[*id], "kind": "node", "x": 1, "y": 1, "w": 5, "h": 5, "text": IDS[*id]}),
        )]),
        Step::AddEdge { id, from, to } => Intent::Add(vec![element(
            json!({"id": IDS[*id], "kind": "edge", "from": IDS[*from], "to": IDS[*to]}),
        )]),
        Step::Stroke { id } => Intent::Stroke(Box::new(element(json!({
            "id": IDS[*id], "kind": "stroke", "points": [{"x": 1, "y": 2}], "color": "#123", "width": 2
        })))),
        Step::Move { id, x } => {
            Intent::Update(vec![(StrokeId::new(IDS[*id]), patch(json!({"x": x})))])
        }
        Step::MoveTwice { id, x, y } => Intent::Update(vec![
            (StrokeId::new(IDS[*id]), patch(json!({"x": x}))),
            (
                StrokeId::new(IDS[*id]),
                patch(json!({"x": y, "y": x, "color": "#abc"})),
            ),
        ]),
        Step::Recolor { id, color } => Intent::Update(vec![(
            StrokeId::new(IDS[*id]),
            patch(json!({"color": format!("#00000{color}")})),
        )]),
        Step::ClearFill { id } => Intent::Update(vec![(
            StrokeId::new(IDS[*id]),
            patch(json!({"fill": null})),
        )]),
        Step::Delete { ids } => {
            Intent::Delete(ids.iter().map(|i| StrokeId::new(IDS[*i])).collect())
        }
        Step::Undo => Intent::Undo(None),
        Step::Redo => Intent::Redo(None),
        Step::Resend { .. } | Step::Restore { .. } => return None,
    })
}

/// An engine with a room, and what each of its ops answered.
struct Run {
    engine: Arc<dyn Engine>,
    history: Arc<dyn History>,
    room: RoomId,
}

impl Run {
    async fn apply(&self, user: usize, op_id: &str, intent: Intent) -> OpOutcome {
        let who = who(user);
        self.engine
            .apply(
                &self.room,
                Op {
                    who: &who,
                    conn: &ConnKey::new("props", user as u64),
                    op_id: Some(op_id),
                    intent,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"))
    }

    /// The board after `at` as history tells it.
    async fn board_at(&self, at: Option<u64>) -> Board {
        match self
            .history
            .board_at(&self.room, at)
            .await
            .expect("board_at")
        {
            Past::Found(board) => board,
            other => panic!("no board at {at:?}: {other:?}"),
        }
    }

    /// The board by id, without versions (`v`): what a person sees.
    async fn visible(&self) -> BTreeMap<String, Value> {
        let (board, _) = self.board_and_log().await;
        unversioned(&board)
    }

    /// The board a joiner gets (stored texts, parsed), and the whole log.
    async fn board_and_log(&self) -> (Vec<Value>, Vec<String>) {
        let who = who(0);
        let conn = ConnKey::new("props", 99);
        let join = |since| JoinRequest {
            room: &self.room,
            conn: &conn,
            who: &who,
            since,
        };
        let JoinOutcome::Joined(view) = self.engine.join(join(None)).await.expect("join") else {
            panic!("room missing")
        };
        let ViewBody::Snapshot(board) = view.body else {
            panic!("a snapshot")
        };
        let epoch = view.epoch.clone();
        let JoinOutcome::Joined(all) = self
            .engine
            .join(join(Some((0, &epoch))))
            .await
            .expect("join")
        else {
            panic!("room missing")
        };
        let ViewBody::Replay { records, .. } = all.body else {
            panic!("the whole log is kept")
        };
        let board = board
            .iter()
            .map(|e| serde_json::from_str(e).expect("json"))
            .collect();
        (board, records)
    }
}

/// A board by id, versions aside.
fn unversioned(board: &[Value]) -> BTreeMap<String, Value> {
    by_id(board)
        .into_iter()
        .map(|(id, mut e)| {
            if let Some(e) = e.as_object_mut() {
                e.remove("v");
            }
            (id, e)
        })
        .collect()
}

/// Plays `steps` on an engine: every op's answer, in order.
async fn play(run: &Run, steps: &[(usize, Step)]) -> Vec<String> {
    // Each user's ops as sent: op id, intent, and the seq it was applied at (if it was).
    let mut sent: Vec<Vec<(String, Intent, Option<u64>)>> = vec![Vec::new(); USERS.len()];
    let mut answers = Vec::new();
    // The last applied op: who, whether it was an undo, and the board before it.
    let mut last: Option<(usize, bool, BTreeMap<String, Value>)> = None;
    for (n, (user, step)) in steps.iter().enumerate() {
        let (op_id, intent, first) = match intent(&run.room, *user, step) {
            Some(intent) => (format!("op-{n}"), intent, None),
            None if matches!(step, Step::Restore { .. }) => {
                let Step::Restore { back } = step else {
                    unreachable!()
                };
                let now = run.board_at(None).await.seq;
                let target = run.board_at(Some(now.saturating_sub(*back))).await;
                let intent = Intent::Restore {
                    at: target.seq,
                    target: target.elements().into_iter().cloned().collect(),
                };
                (format!("op-{n}"), intent, None)
            }
            None => {
                let Step::Resend { back } = step else {
                    unreachable!()
                };
                let mine = &sent[*user];
                let Some(previous) = mine.len().checked_sub(back + 1).map(|i| mine[i].clone())
                else {
                    continue;
                };
                previous
            }
        };
        let before = run.visible().await;
        let outcome = run.apply(*user, &op_id, intent.clone()).await;
        if let OpOutcome::Applied { .. } = outcome {
            // An undo right after the user's own op (nobody acting in between) puts the board
            // back exactly as it was before that op.
            if let (Step::Undo, Some((by, false, board))) = (step, &last)
                && by == user
            {
                assert_eq!(&run.visible().await, board, "undo of {user}'s last op");
            }
            last = Some((*user, matches!(step, Step::Undo), before));
            if let Intent::Restore { target, .. } = &intent {
                let target: Vec<Value> = target
                    .iter()
                    .map(|e| serde_json::from_str(&stored(e)).expect("json"))
                    .collect();
                assert_eq!(run.visible().await, unversioned(&target), "a restore");
            }
        }
        match (step, first) {
            // An applied op sent again changes nothing and answers with its seq. (A refused
            // one left no record: sending it again is a new try.)
            (Step::Resend { .. }, Some(seq)) => assert!(
                matches!(outcome, OpOutcome::Duplicate { seq: s, .. } if s == seq),
                "resent {op_id} (applied at {seq}): {outcome:?}"
            ),
            (Step::Resend { .. }, None) => {}
            _ => {
                let seq = match outcome {
                    OpOutcome::Applied { seq, .. } => Some(seq),
                    _ => None,
                };
                sent[*user].push((op_id, intent, seq));
            }
        }
        answers.push(format!("{user} {step:?} -> {outcome:?}"));
    }
    answers
}

/// Replays records with nothing but add / set fields / delete, keyed by id.
fn replay(records: &[String]) -> BTreeMap<String, Value> {
    let mut board: BTreeMap<String, Value> = BTreeMap::new();
    for record in records {
        let r: Value = serde_json::from_str(record).expect("a record");
        let seq = r["seq"].clone();
        match r["op"].as_str() {
            Some("add") => {
                for e in r["elements"].as_array().expect("elements") {
                    board.insert(e["id"].as_str().expect("id").to_owned(), e.clone());
                }
            }
            Some("update") => {
                for u in r["updates"].as_array().expect("updates") {
                    let e = board
                        .get_mut(u["id"].as_str().expect("id"))
                        .expect("updated exists");
                    let e: &mut Map<String, Value> = e.as_object_mut().expect("object");
                    for (field, value) in u["patch"].as_object().expect("patch") {
                        if value.is_null() {
                            e.remove(field);
                        } else {
                            e.insert(field.clone(), value.clone());
                        }
                    }
                    e.insert("v".into(), seq.clone());
                }
            }
            Some("delete") => {
                for id in r["ids"].as_array().expect("ids") {
                    board.remove(id.as_str().expect("id"));
                }
            }
            Some("restore") => {
                for e in r["removed"].as_array().expect("removed") {
                    board.remove(e["id"].as_str().expect("id"));
                }
                for e in r["elements"].as_array().expect("elements") {
                    board.insert(e["id"].as_str().expect("id").to_owned(), e.clone());
                }
            }
            other => panic!("unknown op {other:?}"),
        }
    }
    board
}

/// The board by id, numbers compared as numbers (`5` and `5.0` alike).
fn by_id(board: &[Value]) -> BTreeMap<String, Value> {
    board
        .iter()
        .map(|e| (e["id"].as_str().expect("id").to_owned(), normalize(e)))
        .collect()
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

async fn check(server: &RedisServer, steps: Vec<(usize, Step)>) {
    let memory = Arc::new(MemoryEngine::new(settings(), Arc::new(Hub::new())));
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let redis = RedisEngine::start(
        &RedisSettings {
            url: server.url(),
            mode: drawbridge::config::RedisMode::Standalone,
            key_prefix: "props:".into(),
            pool_size: 2,
            heartbeat: Duration::from_secs(5),
            pubsub_mode: drawbridge::config::PubsubMode::Pattern,
            pubsub_linger: Duration::from_secs(2),
            tls_ca: String::new(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
        },
        settings(),
        Arc::new(Hub::new()),
        &tasks,
        shutdown.clone(),
    )
    .await
    .expect("redis engine");
    wait_until("redis ready", WAIT, || async { redis.is_ready() }).await;
    let redis = Arc::new(redis);
    let creator = UserId::new("creator");
    let runs = [
        Run {
            room: memory.create_room(&creator).await.expect("room").room_id,
            history: memory.clone(),
            engine: memory,
        },
        Run {
            room: redis.create_room(&creator).await.expect("room").room_id,
            history: redis.clone(),
            engine: redis,
        },
    ];
    let mut answers = Vec::new();
    let mut boards = Vec::new();
    for run in &runs {
        answers.push(play(run, &steps).await);
        let (board, log) = run.board_and_log().await;
        let board = by_id(&board);
        let replayed: BTreeMap<String, Value> = replay(&log)
            .iter()
            .map(|(k, v)| (k.clone(), normalize(v)))
            .collect();
        assert_eq!(replayed, board, "replaying the log gives the board");
        // Every past board is the replay of the log up to it.
        for n in 0..=log.len() {
            let past = run.board_at(Some(n as u64)).await;
            let past: Vec<Value> = past
                .stored()
                .iter()
                .map(|e| serde_json::from_str(e).expect("json"))
                .collect();
            let replayed: BTreeMap<String, Value> = replay(&log[..n])
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect();
            assert_eq!(by_id(&past), replayed, "the board after seq {n}");
        }
        boards.push(board);
    }
    assert_eq!(answers[0], answers[1], "both engines answer alike");
    // Each engine has its own room: strokes name it.
    for board in &mut boards {
        for e in board.values_mut() {
            if let Some(room) = e.get_mut("roomId") {
                *room = json!("the room");
            }
        }
    }
    assert_eq!(boards[0], boards[1], "both engines hold the same board");
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

/// A plain test driving proptest's runner, so the Redis server it starts is stopped (dropped)
/// when the test ends: a `static` server would outlive the test process's tests.
#[test]
fn engines_agree_and_the_log_replays_to_the_board() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let steps = proptest::collection::vec((0..USERS.len(), step()), 1..40);
    let result = TestRunner::new(config).run(&steps, |steps| {
        runtime.block_on(check(&server, steps));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
