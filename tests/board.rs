//! The v1.1 board (`docs/PROTOCOL.md` §4) end to end: real sockets, one real redis-server and
//! two drawbridge instances, with v1.1 and v1 clients side by side.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use common::{
    Client, Instance, Pair, RedisServer, config, create_room, elements_add, elements_delete,
    elements_update, join_room_as, metrics, stroke_ids, two_instances,
};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

fn rect(id: &str, x: f64, y: f64) -> Value {
    json!({"id": id, "kind": "rect", "x": x, "y": y, "w": 40, "h": 30})
}

fn node(id: &str) -> Value {
    json!({"id": id, "kind": "node", "x": 0, "y": 0, "w": 10, "h": 10, "text": id})
}

fn edge(id: &str, from: &str, to: &str) -> Value {
    json!({"id": id, "kind": "edge", "from": from, "to": to})
}

fn stroke_element(id: &str) -> Value {
    json!({"id": id, "kind": "stroke", "points": [{"x": 1.5, "y": 2}, {"x": 3, "y": 4}],
        "color": "#ff0000", "width": 3})
}

/// Every number as an f64, so `50` and `50.0` compare equal.
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(norm).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), norm(v))).collect())
        }
        other => other.clone(),
    }
}

/// The element without the given keys.
fn without(element: &Value, keys: &[&str]) -> Value {
    let mut e = element.clone();
    if let Some(map) = e.as_object_mut() {
        for k in keys {
            map.remove(*k);
        }
    }
    e
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| {
            let id = if e.is_string() { e } else { &e["id"] };
            id.as_str()
                .unwrap_or_else(|| panic!("no id: {e}"))
                .to_owned()
        })
        .collect()
}

fn id_set(list: &Value) -> BTreeSet<String> {
    ids_of(list).into_iter().collect()
}

/// The `elements` of an `INITIAL_STATE`, by id.
fn element<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["payload"]["elements"]
        .as_array()
        .unwrap_or_else(|| panic!("no elements in {state}"))
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {state}"))
}

fn assert_integer_z(e: &Value) {
    let z = e["z"].as_f64().unwrap_or_else(|| panic!("no z: {e}"));
    assert_eq!(z.fract(), 0.0, "z is an integer: {e}");
}

/// Asserts `frame` is exactly the ACK `{opId, seq, duplicate}` (plus `strokeId` when given).
fn assert_ack(frame: &Value, op_id: Option<&str>, seq: u64, duplicate: bool, stroke: Option<&str>) {
    assert_eq!(frame["type"], "ACK", "{frame}");
    let mut expected = json!({"opId": op_id, "seq": seq, "duplicate": duplicate});
    if let Some(s) = stroke {
        expected["strokeId"] = json!(s);
    }
    assert_eq!(frame["payload"], expected, "{frame}");
}

/// Asserts `frame` is an `ERROR` with `code`, `ref` = `op_id`, and a message that names the
/// field: it starts with one of `paths` followed by `": "`.
fn assert_error(frame: &Value, code: &str, op_id: Option<&str>, paths: &[&str]) {
    assert_eq!(frame["type"], "ERROR", "{frame}");
    let p = &frame["payload"];
    assert_eq!(p["code"], code, "{frame}");
    assert_eq!(p["ref"], json!(op_id), "{frame}");
    let message = p["message"].as_str().unwrap_or_else(|| panic!("{frame}"));
    assert!(!message.is_empty(), "{frame}");
    if !paths.is_empty() {
        assert!(
            paths.iter().any(|f| message.starts_with(&format!("{f}: "))),
            "the message should name {paths:?}: {frame}"
        );
    }
}

/// A client's own copy of the board, kept the way a page keeps it: events applied as they come
/// (they come in seq order) and the page's own ops applied when their ACK arrives.
struct View {
    user: String,
    seq: u64,
    elements: BTreeMap<String, Value>,
    sent: HashMap<String, Value>,
}

impl View {
    fn new(user: &str, seq: u64) -> Self {
        Self {
            user: user.into(),
            seq,
            elements: BTreeMap::new(),
            sent: HashMap::new(),
        }
    }

    /// Remembers an op sent with an `opId`, to apply it on its ACK.
    fn sent(&mut self, op: &Value) {
        let id = op["payload"]["opId"]
            .as_str()
            .expect("ops in a View have an opId");
        self.sent.insert(id.to_owned(), op.clone());
    }

    fn next_seq(&mut self, frame: &Value, seq: &Value) -> u64 {
        let seq = seq.as_u64().unwrap_or_else(|| panic!("no seq: {frame}"));
        assert_eq!(
            seq,
            self.seq + 1,
            "{}: a gap or a repeat: {frame}",
            self.user
        );
        self.seq = seq;
        seq
    }

    fn patch(&mut self, id: &str, patch: &Value, seq: u64) {
        let Some(e) = self.elements.get_mut(id) else {
            return;
        };
        for (k, v) in patch.as_object().expect("patch") {
            if v.is_null() {
                e.as_object_mut().expect("element").remove(k);
            } else {
                e[k] = v.clone();
            }
        }
        e["v"] = json!(seq);
    }

    fn apply(&mut self, frame: &Value) {
        let p = &frame["payload"];
        match frame["type"].as_str().unwrap_or_default() {
            "ACK" => {
                if p["duplicate"] == true {
                    return;
                }
                let seq = self.next_seq(frame, &p["seq"]);
                let op_id = p["opId"].as_str().expect("an opId");
                let op = self.sent.remove(op_id).expect("an op this view sent");
                let op = &op["payload"];
                match self.sent_type(op).as_str() {
                    "add" => {
                        for e in op["elements"].as_array().expect("elements") {
                            let mut e = e.clone();
                            e["userId"] = json!(self.user);
                            e["v"] = json!(seq);
                            self.elements
                                .insert(e["id"].as_str().expect("id").into(), e);
                        }
                    }
                    "update" => {
                        for u in op["updates"].as_array().expect("updates") {
                            self.patch(u["id"].as_str().expect("id"), &u["patch"], seq);
                        }
                    }
                    _ => {
                        for id in op["ids"].as_array().expect("ids") {
                            self.elements.remove(id.as_str().expect("id"));
                        }
                    }
                }
            }
            "ELEMENTS_ADDED" => {
                self.next_seq(frame, &p["seq"]);
                for e in p["elements"].as_array().expect("elements") {
                    self.elements
                        .insert(e["id"].as_str().expect("id").into(), e.clone());
                }
            }
            "ELEMENTS_UPDATED" => {
                let seq = self.next_seq(frame, &p["seq"]);
                for u in p["updates"].as_array().expect("updates") {
                    self.patch(u["id"].as_str().expect("id"), &u["patch"], seq);
                }
            }
            "ELEMENTS_DELETED" => {
                self.next_seq(frame, &p["seq"]);
                for id in p["ids"].as_array().expect("ids") {
                    self.elements.remove(id.as_str().expect("id"));
                }
            }
            other => panic!("{}: not a board event: {other} {frame}", self.user),
        }
    }

    fn sent_type(&self, op: &Value) -> String {
        if op.get("elements").is_some() {
            "add".into()
        } else if op.get("updates").is_some() {
            "update".into()
        } else {
            "delete".into()
        }
    }

    fn get(&self, id: &str) -> &Value {
        self.elements
            .get(id)
            .unwrap_or_else(|| panic!("{}: no {id} in its view", self.user))
    }
}

/// The `INITIAL_STATE` a v1.1 page joining on `addr` now gets.
async fn late_state(addr: std::net::SocketAddr, user: &str, room: &str) -> Value {
    let mut late = Client::connect(addr, user).await;
    let state = late.join_v11(room).await;
    late.close().await;
    state
}

#[tokio::test]
async fn concurrent_edits_of_one_shape_on_two_instances_keep_both_fields_and_converge() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let mut va = View::new("alice", 0);
    let mut vb = View::new("bob", 0);

    let add = elements_add(&room, json!([rect("r1", 10.0, 20.0)]), Some("a-add"));
    va.sent(&add);
    alice.send(add).await;
    let ack = alice.next_board_frame().await;
    assert_ack(&ack, Some("a-add"), 1, false, None);
    va.apply(&ack);
    let added = bob.expect_board("ELEMENTS_ADDED").await;
    let p = &added["payload"];
    assert_eq!(
        (&p["roomId"], &p["userId"], &p["seq"]),
        (&json!(room), &json!("alice"), &json!(1))
    );
    let stored = &p["elements"][0];
    assert_eq!(p["elements"].as_array().map(Vec::len), Some(1), "{added}");
    assert_eq!(
        norm(&without(stored, &["z"])),
        norm(
            &json!({"id": "r1", "kind": "rect", "userId": "alice", "v": 1,
            "x": 10, "y": 20, "w": 40, "h": 30})
        ),
        "the stored element: the client's fields, its creator and its version"
    );
    assert_integer_z(stored);
    vb.apply(&added);

    // Bob moves it while Alice recolours it: both are sent before either is read. A few
    // rounds, so that the two commits race at least once.
    const ROUNDS: u64 = 6;
    for round in 0..ROUNDS {
        let colour = format!("#00ff{round:02x}");
        let x = 150.5 + round as f64;
        let recolour = elements_update(
            &room,
            json!([{"id": "r1", "patch": {"color": colour}}]),
            Some(&format!("a-color-{round}")),
        );
        let mv = elements_update(
            &room,
            json!([{"id": "r1", "patch": {"x": x}}]),
            Some(&format!("b-move-{round}")),
        );
        va.sent(&recolour);
        vb.sent(&mv);
        tokio::join!(alice.send(recolour), bob.send(mv));
        for (client, view, other, patch) in [
            (&mut alice, &mut va, "bob", json!({"x": x})),
            (&mut bob, &mut vb, "alice", json!({"color": colour})),
        ] {
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let frame = client.next_board_frame().await;
                if frame["type"] == "ELEMENTS_UPDATED" {
                    let p = &frame["payload"];
                    assert_eq!(p["userId"], other, "{frame}");
                    assert_eq!(p["roomId"], json!(room), "{frame}");
                    assert_eq!(
                        norm(&p["updates"]),
                        norm(&json!([{"id": "r1", "patch": patch}])),
                        "{frame}"
                    );
                }
                kinds.push(frame["type"].as_str().unwrap_or_default().to_owned());
                view.apply(&frame);
            }
            kinds.sort();
            assert_eq!(kinds, ["ACK", "ELEMENTS_UPDATED"], "{}", client.user);
        }
        let seq = 1 + 2 * (round + 1);
        assert_eq!((va.seq, vb.seq), (seq, seq));
        let expected = vb.get("r1").clone();
        assert_eq!(
            expected["x"].as_f64(),
            Some(x),
            "Bob's move is kept: {expected}"
        );
        assert_eq!(
            expected["color"],
            json!(colour),
            "Alice's colour is kept: {expected}"
        );
        assert_eq!(expected["v"], seq);
        assert_eq!(
            norm(&without(va.get("r1"), &["z"])),
            norm(&without(&expected, &["z"]))
        );
        for (addr, who) in [(a.addr, "late-a"), (b.addr, "late-b")] {
            let state = late_state(addr, who, &room).await;
            assert_eq!(state["payload"]["seq"], seq);
            assert_eq!(
                norm(&state["payload"]["elements"]),
                norm(&json!([expected])),
                "{who}, round {round}: the stored element is what both pages show"
            );
        }
    }

    // Both set x at once: the write with the higher seq wins everywhere.
    for round in 0..3u64 {
        let (xa, xb) = (1000.0 + round as f64, 2000.0 + round as f64);
        let ma = elements_update(
            &room,
            json!([{"id": "r1", "patch": {"x": xa}}]),
            Some(&format!("a-x-{round}")),
        );
        let mb = elements_update(
            &room,
            json!([{"id": "r1", "patch": {"x": xb}}]),
            Some(&format!("b-x-{round}")),
        );
        va.sent(&ma);
        vb.sent(&mb);
        tokio::join!(alice.send(ma), bob.send(mb));
        let mut acks = HashMap::new();
        for (client, view) in [(&mut alice, &mut va), (&mut bob, &mut vb)] {
            for _ in 0..2 {
                let frame = client.next_board_frame().await;
                if frame["type"] == "ACK" {
                    acks.insert(client.user.clone(), frame["payload"]["seq"].as_u64());
                }
                view.apply(&frame);
            }
        }
        let last = 1 + 2 * ROUNDS + 2 * (round + 1);
        let (sa, sb) = (acks["alice"].expect("seq"), acks["bob"].expect("seq"));
        assert_eq!(BTreeSet::from([sa, sb]), BTreeSet::from([last - 1, last]));
        let winner = if sa > sb { xa } else { xb };
        let expected = vb.get("r1").clone();
        assert_eq!(expected["x"].as_f64(), Some(winner), "{expected}");
        assert_eq!(expected["v"], last);
        assert_eq!(va.get("r1")["x"].as_f64(), Some(winner));
        for (addr, who) in [(a.addr, "late-a2"), (b.addr, "late-b2")] {
            let state = late_state(addr, who, &room).await;
            assert_eq!(state["payload"]["seq"], last);
            assert_eq!(
                norm(&state["payload"]["elements"]),
                norm(&json!([expected])),
                "{who}, round {round}: one final x, the later seq's"
            );
        }
    }
}

#[tokio::test]
async fn deleting_a_node_deletes_its_edges_on_every_instance_and_undo_brings_them_back() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;

    let graph = json!([node("n1"), node("n2"), edge("e1", "n1", "n2")]);
    alice.send(elements_add(&room, graph, Some("graph"))).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("graph"),
        1,
        false,
        None,
    );
    let added = bob.expect_board("ELEMENTS_ADDED").await;
    let elements = &added["payload"]["elements"];
    assert_eq!(ids_of(elements), ["n1", "n2", "e1"]);
    assert_eq!(elements[2]["from"], "n1");
    assert_eq!(elements[2]["to"], "n2");
    let zs: Vec<f64> = (0..3)
        .map(|i| elements[i]["z"].as_f64().expect("z"))
        .collect();
    assert!(
        zs.windows(2).all(|w| w[0] < w[1]),
        "z in batch order: {zs:?}"
    );
    elements
        .as_array()
        .into_iter()
        .flatten()
        .for_each(assert_integer_z);

    // An edge must join existing nodes; the error names the end that does not.
    let refused = [
        (json!([edge("e2", "n1", "ghost")]), "elements[0].to"),
        (json!([edge("e2", "ghost", "n2")]), "elements[0].from"),
        (
            json!([rect("r1", 0.0, 0.0), edge("e2", "r1", "n2")]),
            "elements[1].from",
        ),
    ];
    for (i, (batch, field)) in refused.into_iter().enumerate() {
        let op = format!("bad-edge-{i}");
        bob.send(elements_add(&room, batch, Some(&op))).await;
        assert_error(
            &bob.next_board_frame().await,
            "BAD_ELEMENT",
            Some(&op),
            &[field],
        );
    }

    let more = json!([node("n3"), edge("e2", "n2", "n1"), edge("e3", "n2", "n3")]);
    bob.send(elements_add(&room, more, Some("more"))).await;
    assert_ack(&bob.next_board_frame().await, Some("more"), 2, false, None);
    let added = alice.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(added["payload"]["seq"], 2, "nothing refused took a seq");
    assert_eq!(ids_of(&added["payload"]["elements"]), ["n3", "e2", "e3"]);

    bob.send(elements_delete(&room, json!(["n1"]), Some("del")))
        .await;
    assert_ack(&bob.next_board_frame().await, Some("del"), 3, false, None);
    let deleted = alice.expect_board("ELEMENTS_DELETED").await;
    let p = &deleted["payload"];
    assert_eq!((&p["userId"], &p["seq"]), (&json!("bob"), &json!(3)));
    assert_eq!(
        id_set(&p["ids"]),
        BTreeSet::from(["n1".into(), "e1".into(), "e2".into()]),
        "the node and every edge touching it, not e3: {deleted}"
    );
    for (addr, who) in [(a.addr, "late-a"), (b.addr, "late-b")] {
        let state = late_state(addr, who, &room).await;
        assert_eq!(
            ids_of(&state["payload"]["elements"]),
            ["n2", "n3", "e3"],
            "{who}"
        );
    }

    // Undoing the delete re-adds the node and its edges as they were, in their places.
    bob.undo(&room, None).await;
    assert_ack(&bob.next_board_frame().await, None, 4, false, None);
    let readded = alice.expect_board("ELEMENTS_ADDED").await;
    let p = &readded["payload"];
    assert_eq!((&p["userId"], &p["seq"]), (&json!("bob"), &json!(4)));
    assert_eq!(
        id_set(&p["elements"]),
        BTreeSet::from(["n1".into(), "e1".into(), "e2".into()])
    );
    let back = |id: &str| {
        p["elements"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {readded}"))
    };
    assert_eq!(back("n1")["userId"], "alice", "the creator is kept");
    assert_eq!(back("e2")["userId"], "bob");
    assert_eq!(
        back("n1")["z"].as_f64(),
        Some(zs[0]),
        "n1 back in its place"
    );
    assert_eq!(
        back("e1")["z"].as_f64(),
        Some(zs[2]),
        "e1 back in its place"
    );
    assert_eq!(back("n1")["v"], 4, "v is the seq of the last change");
    let state = late_state(b.addr, "late-b2", &room).await;
    assert_eq!(
        ids_of(&state["payload"]["elements"]),
        ["n1", "n2", "e1", "n3", "e2", "e3"]
    );
    assert_eq!(element(&state, "e1")["from"], "n1");

    // The re-added edges are known to touch n1 again: deleting it takes them again.
    alice
        .send(elements_delete(&room, json!(["n1"]), Some("del-again")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("del-again"),
        5,
        false,
        None,
    );
    let deleted = bob.expect_board("ELEMENTS_DELETED").await;
    assert_eq!(
        id_set(&deleted["payload"]["ids"]),
        BTreeSet::from(["n1".into(), "e1".into(), "e2".into()]),
        "{deleted}"
    );
}

#[tokio::test]
async fn undo_and_redo_reverse_every_kind_of_op() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let r1 = |state: &Value| element(state, "r1").clone();

    alice.undo(&room, None).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_UNDO",
        None,
        &[],
    );
    alice.redo(&room).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_REDO",
        None,
        &[],
    );

    // Add, undone (a delete) and redone (an add again, in its place).
    alice
        .send(elements_add(
            &room,
            json!([rect("r1", 10.0, 20.0)]),
            Some("add"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("add"), 1, false, None);
    let first = bob.expect_board("ELEMENTS_ADDED").await["payload"]["elements"][0].clone();
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 2, false, None);
    let undone = bob.expect_board("ELEMENTS_DELETED").await;
    assert_eq!(
        undone["payload"],
        json!({"roomId": room, "userId": "alice", "ids": ["r1"], "seq": 2})
    );
    alice.redo(&room).await;
    assert_ack(&alice.next_board_frame().await, None, 3, false, None);
    let redone = bob.expect_board("ELEMENTS_ADDED").await;
    let p = &redone["payload"];
    assert_eq!((&p["userId"], &p["seq"]), (&json!("alice"), &json!(3)));
    let mut again = first.clone();
    again["v"] = json!(3);
    assert_eq!(
        norm(&p["elements"]),
        norm(&json!([again])),
        "the same element, in its place"
    );

    // Update: Alice sets x, Bob then sets the colour; Alice's undo restores x only.
    alice
        .send(elements_update(
            &room,
            json!([{"id": "r1", "patch": {"x": 70}}]),
            Some("ax"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("ax"), 4, false, None);
    bob.expect_board("ELEMENTS_UPDATED").await;
    bob.send(elements_update(
        &room,
        json!([{"id": "r1", "patch": {"color": "#0000ff"}}]),
        Some("bc"),
    ))
    .await;
    assert_ack(&bob.next_board_frame().await, Some("bc"), 5, false, None);
    alice.expect_board("ELEMENTS_UPDATED").await;
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 6, false, None);
    let undone = bob.expect_board("ELEMENTS_UPDATED").await;
    assert_eq!(
        norm(&undone["payload"]),
        norm(&json!({"roomId": room, "userId": "alice", "seq": 6,
            "updates": [{"id": "r1", "patch": {"x": 10}}]}))
    );
    let state = late_state(a.addr, "late1", &room).await;
    assert_eq!(r1(&state)["x"].as_f64(), Some(10.0), "x restored");
    assert_eq!(r1(&state)["color"], "#0000ff", "Bob's colour kept");
    assert_eq!(r1(&state)["v"], 6);

    alice.redo(&room).await;
    assert_ack(&alice.next_board_frame().await, None, 7, false, None);
    let redone = bob.expect_board("ELEMENTS_UPDATED").await;
    assert_eq!(
        norm(&redone["payload"]["updates"]),
        norm(&json!([{"id": "r1", "patch": {"x": 70}}]))
    );
    let state = late_state(a.addr, "late2", &room).await;
    assert_eq!(r1(&state)["x"].as_f64(), Some(70.0), "x set again");
    assert_eq!(r1(&state)["color"], "#0000ff");

    // On the same field the undo is the newer write: Bob's later x is overwritten.
    bob.send(elements_update(
        &room,
        json!([{"id": "r1", "patch": {"x": 90}}]),
        Some("bx"),
    ))
    .await;
    assert_ack(&bob.next_board_frame().await, Some("bx"), 8, false, None);
    alice.expect_board("ELEMENTS_UPDATED").await;
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 9, false, None);
    let undone = bob.expect_board("ELEMENTS_UPDATED").await;
    assert_eq!(
        norm(&undone["payload"]["updates"]),
        norm(&json!([{"id": "r1", "patch": {"x": 10}}]))
    );

    // Delete, undone (re-added as it was) and redone (deleted again).
    alice
        .send(elements_delete(&room, json!(["r1"]), Some("del")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("del"),
        10,
        false,
        None,
    );
    assert_eq!(
        bob.expect_board("ELEMENTS_DELETED").await["payload"]["ids"],
        json!(["r1"])
    );
    alice.redo(&room).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_REDO",
        None,
        &[],
    );
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 11, false, None);
    let readded = bob.expect_board("ELEMENTS_ADDED").await;
    let mut was = first.clone();
    was["x"] = json!(10);
    was["color"] = json!("#0000ff");
    was["v"] = json!(11);
    assert_eq!(
        norm(&readded["payload"]),
        norm(&json!({"roomId": room, "userId": "alice", "seq": 11, "elements": [was]}))
    );
    alice.redo(&room).await;
    assert_ack(&alice.next_board_frame().await, None, 12, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_DELETED").await["payload"],
        json!({"roomId": room, "userId": "alice", "ids": ["r1"], "seq": 12})
    );
    alice.redo(&room).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_REDO",
        None,
        &[],
    );

    // Unwinding the rest: the redone delete (re-add), then the redone add (delete), then nothing.
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 13, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        13
    );
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 14, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_DELETED").await["payload"]["ids"],
        json!(["r1"])
    );
    alice.undo(&room, None).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_UNDO",
        None,
        &[],
    );
    let state = late_state(a.addr, "late3", &room).await;
    assert_eq!(state["payload"]["seq"], 14);
    assert_eq!(state["payload"]["elements"], json!([]));

    // A single stroke added as an element is undone and redone in v1 terms.
    alice
        .send(elements_add(
            &room,
            json!([stroke_element("s1")]),
            Some("s-add"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("s-add"),
        15,
        false,
        Some("s1"),
    );
    bob.expect_board("ELEMENTS_ADDED").await;
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 16, false, Some("s1"));
    assert_eq!(
        bob.expect_board("UNDO").await["payload"],
        json!({"roomId": room, "userId": "alice", "strokeId": "s1", "seq": 16})
    );
    alice.redo(&room).await;
    assert_ack(&alice.next_board_frame().await, None, 17, false, Some("s1"));
    let redo = bob.expect_board("REDO").await;
    let p = &redo["payload"];
    assert_eq!((&p["userId"], &p["seq"]), (&json!("alice"), &json!(17)));
    assert_eq!(p["stroke"]["strokeId"], "s1");
    assert_eq!(p["stroke"]["color"], "#ff0000");
    assert_eq!(p["stroke"]["points"][0]["x"], 1.5);
    let state = late_state(a.addr, "late4", &room).await;
    assert_eq!(stroke_ids(&state), ["s1"]);
}

#[tokio::test]
async fn resending_an_element_op_after_reconnecting_elsewhere_is_acked_again_and_changes_nothing() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let add = elements_add(&room, json!([rect("r1", 0.0, 0.0)]), Some("op-add"));
    let upd = elements_update(
        &room,
        json!([{"id": "r1", "patch": {"x": 10}}]),
        Some("op-upd"),
    );
    let del = elements_delete(&room, json!(["r1"]), Some("op-del"));

    alice.send(add.clone()).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-add"),
        1,
        false,
        None,
    );
    assert_eq!(
        bob.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        1
    );
    alice.send(upd.clone()).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-upd"),
        2,
        false,
        None,
    );
    assert_eq!(
        bob.expect_board("ELEMENTS_UPDATED").await["payload"]["seq"],
        2
    );
    bob.send(elements_update(
        &room,
        json!([{"id": "r1", "patch": {"x": 20}}]),
        Some("b-1"),
    ))
    .await;
    assert_ack(&bob.next_board_frame().await, Some("b-1"), 3, false, None);

    // Alice reconnects to the other instance and resends both.
    alice.close().await;
    let mut alice = Client::joined_v11(b.addr, "alice", &room).await;
    alice.send(add.clone()).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-add"),
        1,
        true,
        None,
    );
    alice.send(upd.clone()).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-upd"),
        2,
        true,
        None,
    );
    let state = late_state(a.addr, "late1", &room).await;
    assert_eq!(state["payload"]["seq"], 3);
    assert_eq!(
        element(&state, "r1")["x"].as_f64(),
        Some(20.0),
        "Bob's x stands"
    );
    assert_eq!(element(&state, "r1")["v"], 3);

    alice.send(del.clone()).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-del"),
        4,
        false,
        None,
    );
    let deleted = bob.expect_board("ELEMENTS_DELETED").await;
    assert_eq!(deleted["payload"]["seq"], 4, "the resends reached nobody");

    // And back on the first instance: every resend is a duplicate, even of ops whose
    // elements are gone.
    alice.close().await;
    let mut alice = Client::joined_v11(a.addr, "alice", &room).await;
    alice.send(del).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-del"),
        4,
        true,
        None,
    );
    alice.send(add).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-add"),
        1,
        true,
        None,
    );
    alice.send(upd).await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("op-upd"),
        2,
        true,
        None,
    );

    // Bob's ops with the same opIds are his own, and applied.
    bob.send(elements_add(
        &room,
        json!([rect("r2", 5.0, 5.0)]),
        Some("op-add"),
    ))
    .await;
    assert_ack(
        &bob.next_board_frame().await,
        Some("op-add"),
        5,
        false,
        None,
    );
    let added = alice.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(
        (&added["payload"]["seq"], &added["payload"]["userId"]),
        (&json!(5), &json!("bob")),
        "the resends reached nobody: {added}"
    );
    assert_eq!(ids_of(&added["payload"]["elements"]), ["r2"]);
    bob.send(elements_update(
        &room,
        json!([{"id": "r2", "patch": {"x": 6}}]),
        Some("op-upd"),
    ))
    .await;
    assert_ack(
        &bob.next_board_frame().await,
        Some("op-upd"),
        6,
        false,
        None,
    );
    assert_eq!(
        alice.expect_board("ELEMENTS_UPDATED").await["payload"]["seq"],
        6
    );
    bob.send(elements_delete(&room, json!(["r2"]), Some("op-del")))
        .await;
    assert_ack(
        &bob.next_board_frame().await,
        Some("op-del"),
        7,
        false,
        None,
    );
    assert_eq!(
        alice.expect_board("ELEMENTS_DELETED").await["payload"]["seq"],
        7
    );
    bob.expect_none_of("ELEMENTS_ADDED", QUIET).await;

    // An undo resent with its opId is not a second undo.
    let undo = json!({"type": "UNDO", "payload": {"roomId": room, "opId": "u-1"}});
    bob.send(undo.clone()).await;
    assert_ack(&bob.next_board_frame().await, Some("u-1"), 8, false, None);
    let readded = alice.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(readded["payload"]["seq"], 8);
    assert_eq!(ids_of(&readded["payload"]["elements"]), ["r2"]);
    bob.send(undo).await;
    assert_ack(&bob.next_board_frame().await, Some("u-1"), 8, true, None);
    bob.send(json!({"type": "REDO", "payload": {"roomId": room, "opId": "r-1"}}))
        .await;
    assert_ack(&bob.next_board_frame().await, Some("r-1"), 9, false, None);
    let redone = alice.expect_board("ELEMENTS_DELETED").await;
    assert_eq!(
        (&redone["payload"]["seq"], &redone["payload"]["ids"]),
        (&json!(9), &json!(["r2"])),
        "the resent undo undid nothing more: {redone}"
    );

    let state = late_state(b.addr, "late2", &room).await;
    assert_eq!(state["payload"]["seq"], 9);
    assert_eq!(state["payload"]["elements"], json!([]));
}

#[tokio::test]
async fn every_invalid_element_op_is_refused_naming_the_field_and_changes_nothing() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    alice
        .send(elements_add(
            &room,
            json!([rect("r1", 1.0, 2.0)]),
            Some("ok-1"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("ok-1"),
        1,
        false,
        None,
    );
    let original = bob.expect_board("ELEMENTS_ADDED").await["payload"]["elements"][0].clone();

    let with = |base: Value, extra: Value| {
        let mut e = base;
        for (k, v) in extra.as_object().expect("object") {
            e[k] = v.clone();
        }
        e
    };
    let r = |extra: Value| with(rect("rx", 0.0, 0.0), extra);
    let sticky = json!({"id": "st", "kind": "sticky", "x": 0, "y": 0, "w": 1, "h": 1});
    let many =
        |n: usize| -> Vec<Value> { (0..n).map(|i| rect(&format!("m{i}"), 0.0, 0.0)).collect() };
    let add = |elements: Value| ("add", elements);
    let cases: Vec<((&str, Value), Vec<&str>)> = vec![
        (
            add(json!([{"id": "k", "kind": "blob"}])),
            vec!["elements[0].kind"],
        ),
        (add(json!([{"id": "k"}])), vec!["elements[0].kind"]),
        (
            add(json!([{"id": "k", "kind": "rect", "x": 0, "y": 0, "w": 1}])),
            vec!["elements[0].h"],
        ),
        (
            add(json!([{"id": "k", "kind": "sticky", "y": 0, "w": 1, "h": 1}])),
            vec!["elements[0].x"],
        ),
        (
            add(json!([{"id": "k", "kind": "line", "points": [{"x": 0, "y": 0}]}])),
            vec!["elements[0].points"],
        ),
        (
            add(
                json!([{"id": "k", "kind": "stroke", "points": [{"x": 0, "y": 0}], "color": "#000"}]),
            ),
            vec!["elements[0].width"],
        ),
        (
            add(json!([{"id": "k", "kind": "edge", "from": "r1"}])),
            vec!["elements[0].to"],
        ),
        (
            add(json!([r(json!({"width": 0}))])),
            vec!["elements[0].width"],
        ),
        (
            add(json!([r(json!({"width": 100.5}))])),
            vec!["elements[0].width"],
        ),
        (add(json!([r(json!({"w": -1}))])), vec!["elements[0].w"]),
        (add(json!([r(json!({"x": 2e7}))])), vec!["elements[0].x"]),
        (add(json!([r(json!({"y": "1"}))])), vec!["elements[0].y"]),
        (
            add(json!([r(json!({"color": "red"}))])),
            vec!["elements[0].color"],
        ),
        (
            add(json!([r(json!({"fill": "#12"}))])),
            vec!["elements[0].fill"],
        ),
        (
            add(json!([with(
                sticky.clone(),
                json!({"text": "x".repeat(10_001)})
            )])),
            vec!["elements[0].text"],
        ),
        (
            add(json!([r(json!({"text": "no text on a rect"}))])),
            vec!["elements[0].text"],
        ),
        (
            add(json!([r(json!({"points": [{"x": 0, "y": 0}]}))])),
            vec!["elements[0].points"],
        ),
        (
            add(json!([with(node("nx"), json!({"from": "r1"}))])),
            vec!["elements[0].from"],
        ),
        (
            add(json!([with(sticky.clone(), json!({"width": 2}))])),
            vec!["elements[0].width"],
        ),
        (add(json!([r(json!({"z": 1e16}))])), vec!["elements[0].z"]),
        (add(json!([r(json!({"id": ""}))])), vec!["elements[0].id"]),
        (
            add(json!([r(json!({"id": "x".repeat(65)}))])),
            vec!["elements[0].id"],
        ),
        // An id already in the room, behind a valid element that must not be added either.
        (
            add(json!([rect("r9", 0.0, 0.0), rect("r1", 0.0, 0.0)])),
            vec!["elements[1].id"],
        ),
        (
            add(json!([rect("r3", 0.0, 0.0), rect("r3", 1.0, 1.0)])),
            vec!["elements[1].id"],
        ),
        (add(json!([])), vec!["elements"]),
        (add(json!(many(501))), vec!["elements"]),
        (("update", json!([])), vec!["updates"]),
        (
            (
                "update",
                json!(vec![json!({"id": "r1", "patch": {"x": 1}}); 501]),
            ),
            vec!["updates"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"id": "r2"}}])),
            vec!["updates[0].patch.id"],
        ),
        (
            (
                "update",
                json!([{"id": "r1", "patch": {"kind": "ellipse"}}]),
            ),
            vec!["updates[0].patch.kind"],
        ),
        (
            (
                "update",
                json!([{"id": "r1", "patch": {"userId": "mallory"}}]),
            ),
            vec!["updates[0].patch.userId"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"junk": 1}}])),
            vec!["updates[0].patch"],
        ),
        (
            ("update", json!([{"id": "", "patch": {"x": 1}}])),
            vec!["updates[0].id"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"w": null}}])),
            vec!["updates[0].w", "updates[0].patch.w"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"color": "red"}}])),
            vec!["updates[0].color", "updates[0].patch.color"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"text": "hi"}}])),
            vec!["updates[0].text", "updates[0].patch.text"],
        ),
        (
            ("update", json!([{"id": "r1", "patch": {"width": 0}}])),
            vec!["updates[0].width", "updates[0].patch.width"],
        ),
        // The first patch is fine; the second is not, so neither applies.
        (
            (
                "update",
                json!([{"id": "r1", "patch": {"x": 500}}, {"id": "r1", "patch": {"h": -3}}]),
            ),
            vec!["updates[1].h", "updates[1].patch.h"],
        ),
        (("delete", json!([])), vec!["ids"]),
        (("delete", json!(vec![json!("r1"); 501])), vec!["ids"]),
        (("delete", json!(["r1", ""])), vec!["ids[1]", "ids[1].id"]),
    ];
    for (i, ((kind, body), fields)) in cases.into_iter().enumerate() {
        let op = format!("bad-{i}");
        let message = match kind {
            "add" => elements_add(&room, body, Some(&op)),
            "update" => elements_update(&room, body, Some(&op)),
            _ => elements_delete(&room, body, Some(&op)),
        };
        alice.send(message).await;
        let answer = alice.next_board_frame().await;
        assert_error(&answer, "BAD_ELEMENT", Some(&op), &fields);
    }
    // Updating or deleting only elements that do not exist uses no seq either.
    alice
        .send(elements_update(
            &room,
            json!([{"id": "ghost", "patch": {"x": 1}}]),
            Some("nf-1"),
        ))
        .await;
    assert_error(
        &alice.next_board_frame().await,
        "ELEMENT_NOT_FOUND",
        Some("nf-1"),
        &[],
    );
    alice
        .send(elements_delete(
            &room,
            json!(["ghost", "ghost2"]),
            Some("nf-2"),
        ))
        .await;
    assert_error(
        &alice.next_board_frame().await,
        "ELEMENT_NOT_FOUND",
        Some("nf-2"),
        &[],
    );

    // The next op gets the next seq, and Bob saw nothing in between. Values at the edges of
    // the ranges are accepted.
    let edgy = json!({"id": "r2", "kind": "rect", "x": -1e7, "y": 1e7, "w": 0, "h": 0,
        "width": 100, "color": "#abc", "fill": "#12345678", "rotation": -3.5});
    let long = "é".repeat(10_000);
    let sticky =
        json!({"id": "st1", "kind": "sticky", "x": 0, "y": 0, "w": 1, "h": 1, "text": long});
    let line = json!({"id": "l1", "kind": "line", "points": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]});
    alice
        .send(elements_add(
            &room,
            json!([edgy, sticky, line]),
            Some("ok-2"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("ok-2"),
        2,
        false,
        None,
    );
    let added = bob.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(added["payload"]["seq"], 2);
    assert_eq!(ids_of(&added["payload"]["elements"]), ["r2", "st1", "l1"]);

    // A batch of exactly 500.
    alice
        .send(elements_add(&room, json!(many(500)), Some("ok-3")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("ok-3"),
        3,
        false,
        None,
    );
    let added = bob.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(added["payload"]["seq"], 3);
    assert_eq!(
        added["payload"]["elements"].as_array().map(Vec::len),
        Some(500)
    );

    // Ids that do not exist are skipped when others do.
    alice
        .send(elements_update(
            &room,
            json!([{"id": "ghost", "patch": {"x": 1}}, {"id": "r2", "patch": {"x": 7, "fill": null}}]),
            Some("ok-4"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("ok-4"),
        4,
        false,
        None,
    );
    let updated = bob.expect_board("ELEMENTS_UPDATED").await;
    assert_eq!(
        norm(&updated["payload"]["updates"]),
        norm(&json!([{"id": "r2", "patch": {"x": 7, "fill": null}}])),
        "{updated}"
    );
    alice
        .send(elements_delete(&room, json!(["ghost", "l1"]), Some("ok-5")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("ok-5"),
        5,
        false,
        None,
    );
    let deleted = bob.expect_board("ELEMENTS_DELETED").await;
    assert_eq!(deleted["payload"]["ids"], json!(["l1"]), "{deleted}");

    let state = late_state(b.addr, "late", &room).await;
    assert_eq!(state["payload"]["seq"], 5);
    let ids = ids_of(&state["payload"]["elements"]);
    assert_eq!(ids.len(), 503, "r1, r2, st1 and m0..m499");
    assert_eq!(ids[..3], ["r1", "r2", "st1"]);
    assert_eq!(element(&state, "r1"), &original, "r1 untouched");
    let r2 = element(&state, "r2");
    assert_eq!(
        (r2["x"].as_f64(), r2.get("fill")),
        (Some(7.0), None),
        "{r2}"
    );
    assert_eq!(
        (r2["width"].as_f64(), r2["w"].as_f64()),
        (Some(100.0), Some(0.0))
    );
    assert_eq!(element(&state, "st1")["text"], json!(long));
}

#[tokio::test]
async fn the_protocol_version_picks_what_a_joiner_is_served() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut bob = Client::joined_v11(b.addr, "bob", &room).await;

    // Too old, or not a version: refused, and not joined.
    for said in ["1.0", "0.9", "banana"] {
        let mut old = Client::connect(a.addr, "old").await;
        old.send(join_room_as(&room, said, None)).await;
        let err = old.expect("ERROR").await;
        assert_eq!(err["payload"]["code"], "UPGRADE_REQUIRED", "{said}: {err}");
        old.send(elements_add(
            &room,
            json!([rect("r0", 0.0, 0.0)]),
            Some("x"),
        ))
        .await;
        assert_eq!(
            old.expect("ERROR").await["payload"]["code"],
            "NOT_IN_ROOM",
            "{said}"
        );
        old.close().await;
    }

    let mut alice = Client::connect(a.addr, "alice").await;
    let state = alice.join_v11(&room).await;
    let p = &state["payload"];
    assert_eq!(
        (&p["protocol"], &p["minProtocol"]),
        (&json!("1.1"), &json!("1.1"))
    );
    assert_eq!((&p["elements"], &p["strokes"]), (&json!([]), &json!([])));
    let joined = bob.expect("USER_JOINED").await;
    assert_eq!(
        joined["payload"]["userId"], "alice",
        "the refused joins were never present"
    );

    let board = json!([rect("r1", 0.0, 0.0), stroke_element("s1"), node("n1")]);
    alice.send(elements_add(&room, board, Some("b"))).await;
    assert_ack(&alice.next_board_frame().await, Some("b"), 1, false, None);

    // v1 (no protocol): strokes only, and none of the v1.1 fields.
    let mut carol = Client::connect(b.addr, "carol").await;
    let v1 = carol.join(&room).await;
    let keys: BTreeSet<&str> = v1["payload"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        BTreeSet::from(["roomId", "strokes", "seq", "epoch", "users"]),
        "{v1}"
    );
    assert_eq!(stroke_ids(&v1), ["s1"]);
    let v11 = late_state(b.addr, "dave", &room).await;
    assert_eq!(stroke_ids(&v11), ["s1"]);
    assert_eq!(ids_of(&v11["payload"]["elements"]), ["r1", "n1"]);

    // An instance configured to serve older pages says so.
    let mut cfg = config(Some(&redis), "inst-c");
    cfg.min_protocol = "1.0".into();
    let c = Instance::start(cfg).await;
    let mut old = Client::connect(c.addr, "old").await;
    let state = old
        .join_with(join_room_as(&room, "1.0", None), "INITIAL_STATE")
        .await;
    let p = &state["payload"];
    assert_eq!(
        (&p["protocol"], &p["minProtocol"]),
        (&json!("1.1"), &json!("1.0"))
    );
    assert_eq!(ids_of(&p["elements"]), ["r1", "n1"]);
}

#[tokio::test]
async fn replay_after_a_reconnect_carries_element_events_in_each_protocols_terms() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined_v11(a.addr, "alice", &room).await;
    let mut bob = Client::joined_v11(a.addr, "bob", &room).await;
    let mut carol = Client::connect(a.addr, "carol").await;
    let epoch = carol.join(&room).await["payload"]["epoch"].clone();
    alice
        .send(elements_add(
            &room,
            json!([rect("r0", 0.0, 0.0)]),
            Some("op1"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("op1"), 1, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        1
    );
    assert_eq!(
        carol.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        1
    );
    bob.close().await;
    carol.close().await;

    let ops = [
        elements_add(&room, json!([rect("r1", 0.0, 0.0)]), Some("op2")),
        elements_update(&room, json!([{"id": "r1", "patch": {"x": 9}}]), Some("op3")),
        elements_add(&room, json!([stroke_element("s1")]), Some("op4")),
        elements_delete(&room, json!(["r1", "s1"]), Some("op5")),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        alice.send(op).await;
        let ack = alice.next_board_frame().await;
        assert_eq!(ack["payload"]["seq"], i + 2, "{ack}");
    }

    let mut bob = Client::connect(b.addr, "bob").await;
    let replay = bob
        .join_with(join_room_as(&room, "1.1", Some((1, &epoch))), "REPLAY")
        .await;
    let p = &replay["payload"];
    assert_eq!(
        (&p["fromSeq"], &p["seq"], &p["epoch"]),
        (&json!(2), &json!(5), &epoch)
    );
    assert_eq!(
        (&p["protocol"], &p["minProtocol"]),
        (&json!("1.1"), &json!("1.1"))
    );
    let events = p["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "ELEMENTS_ADDED",
            "ELEMENTS_UPDATED",
            "ELEMENTS_ADDED",
            "ELEMENTS_DELETED"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["payload"]["seq"], i + 2, "{e}");
        assert_eq!(e["payload"]["userId"], "alice", "{e}");
    }
    assert_eq!(ids_of(&events[0]["payload"]["elements"]), ["r1"]);
    assert_eq!(
        norm(&events[1]["payload"]["updates"]),
        norm(&json!([{"id": "r1", "patch": {"x": 9}}]))
    );
    assert_eq!(ids_of(&events[2]["payload"]["elements"]), ["s1"]);
    assert_eq!(
        id_set(&events[3]["payload"]["ids"]),
        BTreeSet::from(["r1".into(), "s1".into()])
    );

    // A v1 page replays the same log: the stroke part in v1 terms, the rest as it is.
    let mut carol = Client::connect(b.addr, "carol").await;
    carol.send(common::join_room_since(&room, 1, &epoch)).await;
    let replay = carol.expect("REPLAY").await;
    carol.until("USER_COUNT_UPDATED").await;
    let p = &replay["payload"];
    assert!(
        p.get("protocol").is_none() && p.get("minProtocol").is_none(),
        "{replay}"
    );
    let events = p["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "ELEMENTS_ADDED",
            "ELEMENTS_UPDATED",
            "CANVAS_UPDATE",
            "UNDO"
        ]
    );
    let seqs: Vec<&Value> = events.iter().map(|e| &e["payload"]["seq"]).collect();
    assert_eq!(seqs, [&json!(2), &json!(3), &json!(4), &json!(5)]);
    assert_eq!(events[2]["payload"]["canvasData"]["strokeId"], "s1");
    assert_eq!(events[3]["payload"]["strokeId"], "s1");

    // Live events carry on after the replay, with no gap.
    alice
        .send(elements_add(
            &room,
            json!([rect("r2", 0.0, 0.0)]),
            Some("op6"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("op6"), 6, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        6
    );
    assert_eq!(
        carol.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
        6
    );
}

fn progress(room: &str, id: &str, x: f64, color: &str, width: f64) -> Value {
    json!({"type": "STROKE_PROGRESS", "payload": {"roomId": room, "id": id,
        "points": [{"x": x, "y": 1}, {"x": x + 1.0, "y": 2}], "color": color, "width": width}})
}

#[tokio::test]
async fn stroke_progress_reaches_v11_peers_elsewhere_only() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let mut carol = Client::joined(b.addr, "carol", &room).await;
    let mut dave = Client::joined(a.addr, "dave", &room).await;
    for user in ["carol", "dave"] {
        assert_eq!(bob.until("USER_JOINED").await["payload"]["userId"], user);
        assert_eq!(alice.until("USER_JOINED").await["payload"]["userId"], user);
    }
    assert_eq!(
        carol.until("USER_JOINED").await["payload"]["userId"],
        "dave"
    );

    // Invalid batches are dropped without a word; the valid one after them is the first relayed.
    let invalid = [
        progress(&room, "p1", 0.0, "#000", 0.0),
        progress(&room, "p1", 0.0, "#000", 101.0),
        progress(&room, "p1", 0.0, "black", 2.0),
        progress(&room, "", 0.0, "#000", 2.0),
        json!({"type": "STROKE_PROGRESS", "payload": {"roomId": room, "id": "p1",
            "points": [], "color": "#000", "width": 2}}),
    ];
    for frame in invalid {
        alice.send(frame).await;
    }
    alice.send(progress(&room, "p1", 5.0, "#00ff00", 2.5)).await;
    let relayed = bob.expect_board("STROKE_PROGRESS").await;
    assert_eq!(
        norm(&relayed["payload"]),
        norm(&json!({"roomId": room, "userId": "alice", "id": "p1",
            "points": [{"x": 5, "y": 1}, {"x": 6, "y": 2}], "color": "#00ff00", "width": 2.5}))
    );
    // Neither the sender nor a v1 page gets it; a frame sent after it reaches them first.
    alice
        .send(json!({"type": "CURSOR_MOVE", "payload": {"roomId": room, "x": 1, "y": 1}}))
        .await;
    for peer in [&mut carol, &mut dave] {
        let next = peer.next_board_frame().await;
        assert_eq!(next["type"], "CURSOR_MOVE", "{}: {next}", peer.user);
    }
    assert_eq!(
        bob.expect("CURSOR_MOVE").await["payload"]["userId"],
        "alice"
    );
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        client.expect_none_of("STROKE_PROGRESS", QUIET).await;
    }
    // The ERROR of an invalid one would have come before this PONG.
    alice.send(json!({"type": "PING", "payload": {}})).await;
    alice.expect("PONG").await;

    // Not sequenced: the next op is seq 1.
    alice
        .send(elements_add(
            &room,
            json!([stroke_element("p1")]),
            Some("p1"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("p1"),
        1,
        false,
        Some("p1"),
    );
}

#[tokio::test]
async fn stroke_progress_is_capped_per_connection() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11_with(&redis, |cfg| cfg.progress_per_sec = 5).await;
    let started = std::time::Instant::now();
    for i in 0..40 {
        alice
            .send(progress(&room, "p", f64::from(i), "#000", 1.0))
            .await;
    }
    let sending = started.elapsed().as_secs_f64();
    let mut received = Vec::new();
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(500), bob.next()).await {
        if v["type"] == "STROKE_PROGRESS" {
            received.push(v["payload"]["points"][0]["x"].as_f64().expect("x"));
        }
    }
    let allowed = 5 + (5.0 * sending).ceil() as usize + 1;
    assert!(
        (5..=allowed).contains(&received.len()),
        "{} relayed, {allowed} allowed after {sending:.3}s",
        received.len()
    );
    assert_eq!(
        received[..5],
        [0.0, 1.0, 2.0, 3.0, 4.0],
        "the burst passes in order"
    );
}

#[tokio::test]
async fn a_v1_page_sees_the_stroke_part_of_element_events_in_v1_terms() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::joined_v11(a.addr, "alice", &room).await;
    let mut carol = Client::joined(b.addr, "carol", &room).await;

    alice
        .send(elements_add(
            &room,
            json!([stroke_element("s1")]),
            Some("o1"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("o1"),
        1,
        false,
        Some("s1"),
    );
    let update = carol.expect_board("CANVAS_UPDATE").await;
    let p = &update["payload"];
    assert_eq!(
        (&p["userId"], &p["seq"], &p["roomId"]),
        (&json!("alice"), &json!(1), &json!(room))
    );
    let s = &p["canvasData"];
    assert_eq!(
        (&s["strokeId"], &s["userId"], &s["roomId"]),
        (&json!("s1"), &json!("alice"), &json!(room))
    );
    assert_eq!(
        norm(&s["points"]),
        norm(&json!([{"x": 1.5, "y": 2}, {"x": 3, "y": 4}]))
    );
    assert_eq!(
        (&s["color"], s["width"].as_f64()),
        (&json!("#ff0000"), Some(3.0))
    );

    alice
        .send(elements_add(
            &room,
            json!([rect("r1", 0.0, 0.0)]),
            Some("o2"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("o2"), 2, false, None);
    let added = carol.expect_board("ELEMENTS_ADDED").await;
    assert_eq!(added["payload"]["seq"], 2, "no hole in the v1 page's seqs");
    assert_eq!(ids_of(&added["payload"]["elements"]), ["r1"]);

    alice
        .send(elements_delete(&room, json!(["s1"]), Some("o3")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("o3"),
        3,
        false,
        Some("s1"),
    );
    assert_eq!(
        carol.expect_board("UNDO").await["payload"],
        json!({"roomId": room, "userId": "alice", "strokeId": "s1", "seq": 3})
    );

    // Mixed batches: the v1 page gets the stroke part only.
    alice
        .send(elements_add(
            &room,
            json!([rect("r2", 0.0, 0.0), stroke_element("s2")]),
            Some("o4"),
        ))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("o4"), 4, false, None);
    let update = carol.expect_board("CANVAS_UPDATE").await;
    assert_eq!(
        (
            &update["payload"]["seq"],
            &update["payload"]["canvasData"]["strokeId"]
        ),
        (&json!(4), &json!("s2"))
    );
    alice
        .send(elements_delete(&room, json!(["r2", "s2"]), Some("o5")))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("o5"), 5, false, None);
    assert_eq!(
        carol.expect_board("UNDO").await["payload"],
        json!({"roomId": room, "userId": "alice", "strokeId": "s2", "seq": 5})
    );

    // And what the v1 page draws reaches the v1.1 page as a stroke element would.
    carol.draw_acked(&room, "c1").await;
    let drawn = alice.expect_board("CANVAS_UPDATE").await;
    assert_eq!(drawn["payload"]["seq"], 6);
    assert_eq!(drawn["payload"]["canvasData"]["strokeId"], "c1");
    let state = carol.join(&room).await;
    assert_eq!(stroke_ids(&state), ["c1"]);
    assert!(state["payload"].get("elements").is_none());
    let state = late_state(a.addr, "late", &room).await;
    assert_eq!(stroke_ids(&state), ["c1"]);
    assert_eq!(ids_of(&state["payload"]["elements"]), ["r1"]);
}

#[tokio::test]
async fn paint_order_is_z_and_an_element_without_one_goes_on_top() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    // Adds one element and returns the z the room got.
    let mut seq = 0;
    let mut add = async |element: Value| {
        seq += 1;
        let op = format!("op{seq}");
        let stroke = (element["kind"] == "stroke")
            .then(|| element["id"].as_str().unwrap_or_default().to_owned());
        alice
            .send(elements_add(&room, json!([element]), Some(&op)))
            .await;
        let ack = alice.next_board_frame().await;
        assert_ack(&ack, Some(&op), seq, false, stroke.as_deref());
        let added = bob.expect_board("ELEMENTS_ADDED").await;
        let e = added["payload"]["elements"][0].clone();
        assert_eq!(e["v"], seq, "{added}");
        e["z"].as_f64().unwrap_or_else(|| panic!("no z: {added}"))
    };
    let z1 = add(rect("r1", 0.0, 0.0)).await;
    assert_eq!(z1.fract(), 0.0);
    let mut r2 = rect("r2", 0.0, 0.0);
    r2["z"] = json!(-5);
    assert_eq!(add(r2).await, -5.0, "a given z is kept");
    assert_eq!(add(rect("r3", 0.0, 0.0)).await, z1 + 1.0, "max + 1");
    let mut r4 = rect("r4", 0.0, 0.0);
    r4["z"] = json!(100);
    assert_eq!(add(r4).await, 100.0);
    assert_eq!(add(rect("r5", 0.0, 0.0)).await, 101.0);
    assert_eq!(
        add(stroke_element("s1")).await,
        102.0,
        "strokes share the order"
    );
    let state = late_state(a.addr, "late1", &room).await;
    assert_eq!(
        ids_of(&state["payload"]["elements"]),
        ["r2", "r1", "r3", "r4", "r5"]
    );
    assert_eq!(stroke_ids(&state), ["s1"]);

    // Moving one to the front is an update of z.
    alice
        .send(elements_update(
            &room,
            json!([{"id": "r1", "patch": {"z": 200}}]),
            Some("front"),
        ))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("front"),
        7,
        false,
        None,
    );
    bob.expect_board("ELEMENTS_UPDATED").await;
    let state = late_state(a.addr, "late2", &room).await;
    assert_eq!(
        ids_of(&state["payload"]["elements"]),
        ["r2", "r3", "r4", "r5", "r1"]
    );
    assert_eq!(element(&state, "r1")["z"].as_f64(), Some(200.0));

    // A v1 stroke goes on top too.
    bob.draw_acked(&room, "c1").await;
    let drawn = alice.expect_board("CANVAS_UPDATE").await;
    assert_eq!(drawn["payload"]["seq"], 8);
    let state = late_state(a.addr, "late3", &room).await;
    assert_eq!(stroke_ids(&state), ["s1", "c1"]);
    let c1 = &state["payload"]["strokes"][1];
    assert_eq!(c1["z"].as_f64(), Some(201.0), "{c1}");
}

#[tokio::test]
async fn undo_skips_ops_that_can_no_longer_be_undone() {
    let redis = RedisServer::start();
    let Pair {
        a: _a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    for (seq, op) in [
        elements_add(&room, json!([rect("r1", 0.0, 0.0)]), Some("o1")),
        elements_add(&room, json!([rect("r2", 0.0, 0.0)]), Some("o2")),
        elements_update(&room, json!([{"id": "r2", "patch": {"x": 5}}]), Some("o3")),
    ]
    .into_iter()
    .enumerate()
    {
        alice.send(op).await;
        assert_eq!(alice.next_board_frame().await["payload"]["seq"], seq + 1);
        assert_eq!(bob.next_board_frame().await["payload"]["seq"], seq + 1);
    }
    bob.send(elements_delete(&room, json!(["r2"]), Some("b1")))
        .await;
    assert_ack(&bob.next_board_frame().await, Some("b1"), 4, false, None);
    alice.expect_board("ELEMENTS_DELETED").await;

    // Alice's update and add of r2 have nothing left to act on: her undo takes the add of r1.
    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 5, false, None);
    assert_eq!(
        bob.expect_board("ELEMENTS_DELETED").await["payload"],
        json!({"roomId": room, "userId": "alice", "ids": ["r1"], "seq": 5})
    );
    alice.undo(&room, None).await;
    assert_error(
        &alice.next_board_frame().await,
        "NOTHING_TO_UNDO",
        None,
        &[],
    );

    // Bob's undo brings r2 back as it was deleted, Alice's x included.
    bob.undo(&room, None).await;
    assert_ack(&bob.next_board_frame().await, None, 6, false, None);
    let back = alice.expect_board("ELEMENTS_ADDED").await;
    let r2 = &back["payload"]["elements"][0];
    assert_eq!((&r2["id"], &r2["userId"]), (&json!("r2"), &json!("alice")));
    assert_eq!(r2["x"].as_f64(), Some(5.0));
    let state = late_state(b.addr, "late", &room).await;
    assert_eq!(ids_of(&state["payload"]["elements"]), ["r2"]);
}

/// §4.1: undo of an update restores the fields it overwrote, i.e. their values before the op,
/// also when one op patched the same field twice (both patches of one op apply in order).
#[tokio::test]
async fn undoing_an_update_restores_every_field_it_overwrote_as_it_was_before() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let mut r1 = rect("r1", 10.0, 20.0);
    r1["fill"] = json!("#ffffff");
    alice
        .send(elements_add(&room, json!([r1]), Some("add")))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("add"), 1, false, None);
    let original = bob.expect_board("ELEMENTS_ADDED").await["payload"]["elements"][0].clone();

    // One op: x set twice (a drag sent as one batch), a colour added, the fill cleared.
    let patches = json!([
        {"id": "r1", "patch": {"x": 1}},
        {"id": "r1", "patch": {"x": 2, "color": "#000000", "fill": null}}
    ]);
    alice
        .send(elements_update(&room, patches.clone(), Some("drag")))
        .await;
    assert_ack(
        &alice.next_board_frame().await,
        Some("drag"),
        2,
        false,
        None,
    );
    let updated = bob.expect_board("ELEMENTS_UPDATED").await;
    assert_eq!(norm(&updated["payload"]["updates"]), norm(&patches));
    let state = late_state(a.addr, "late1", &room).await;
    let after = element(&state, "r1");
    assert_eq!(after["x"].as_f64(), Some(2.0), "patches apply in order");
    assert_eq!(
        (&after["color"], after.get("fill")),
        (&json!("#000000"), None)
    );

    alice.undo(&room, None).await;
    assert_ack(&alice.next_board_frame().await, None, 3, false, None);
    let undone = bob.expect_board("ELEMENTS_UPDATED").await;
    let state = late_state(a.addr, "late2", &room).await;
    let mut expected = original.clone();
    expected["v"] = json!(3);
    assert_eq!(
        norm(element(&state, "r1")),
        norm(&expected),
        "the undo must restore x to 10 (its value before the op), the fill, and no colour; \
         it was broadcast as {undone}"
    );

    alice.redo(&room).await;
    assert_ack(&alice.next_board_frame().await, None, 4, false, None);
    bob.expect_board("ELEMENTS_UPDATED").await;
    let state = late_state(a.addr, "late3", &room).await;
    let again = element(&state, "r1");
    assert_eq!(again["x"].as_f64(), Some(2.0));
    assert_eq!(
        (&again["color"], again.get("fill")),
        (&json!("#000000"), None)
    );
}

/// §4.1: ops are serialized by seq, and deleting a node deletes the edges that touch it. So when
/// an edge to a node and the node's delete race on two instances, either the delete comes first
/// (the edge is refused) or the edge does (the delete takes it): never an edge left pointing at a
/// deleted node.
#[tokio::test]
async fn an_edge_added_while_its_node_is_deleted_is_refused_or_deleted_with_it() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    const ROUNDS: usize = 40;
    let mut seq = 0u64;
    let mut dangling = Vec::new();
    for round in 0..ROUNDS {
        let (x, y, e) = (
            format!("x{round}"),
            format!("y{round}"),
            format!("e{round}"),
        );
        let nodes = format!("nodes-{round}");
        alice
            .send(elements_add(
                &room,
                json!([node(&x), node(&y)]),
                Some(&nodes),
            ))
            .await;
        seq += 1;
        assert_ack(
            &alice.next_board_frame().await,
            Some(&nodes),
            seq,
            false,
            None,
        );
        assert_eq!(
            bob.expect_board("ELEMENTS_ADDED").await["payload"]["seq"],
            seq
        );

        // Alice deletes x while Bob links x to y, from the other instance, at once.
        let del = elements_delete(&room, json!([x]), Some(&format!("del-{round}")));
        let add = elements_add(
            &room,
            json!([edge(&e, &x, &y)]),
            Some(&format!("edge-{round}")),
        );
        tokio::join!(alice.send(del), bob.send(add));
        let (mut answer, mut deleted) = (None, None);
        while answer.is_none() || deleted.is_none() {
            let frame = bob.next_board_frame().await;
            match frame["type"].as_str() {
                Some("ACK" | "ERROR") => answer = Some(frame),
                Some("ELEMENTS_DELETED") => deleted = Some(frame),
                _ => panic!("bob: unexpected {frame}"),
            }
        }
        let (answer, deleted) = (answer.expect("answer"), deleted.expect("delete"));
        let sa = deleted["payload"]["seq"].as_u64().expect("seq");
        if answer["type"] == "ERROR" {
            // The delete came first: the edge is refused.
            assert_error(
                &answer,
                "BAD_ELEMENT",
                Some(&format!("edge-{round}")),
                &["elements[0].from"],
            );
            assert_eq!(deleted["payload"]["ids"], json!([x]));
            seq += 1;
            assert_eq!(sa, seq);
            assert_eq!(alice.next_board_frame().await["payload"]["seq"], sa);
            continue;
        }
        let sb = answer["payload"]["seq"].as_u64().expect("seq");
        seq += 2;
        assert_eq!(BTreeSet::from([sa, sb]), BTreeSet::from([seq - 1, seq]));
        assert!(
            sb < sa,
            "round {round}: edge {e} was added at seq {sb} to node {x}, deleted at seq {sa}"
        );
        let ids = id_set(&deleted["payload"]["ids"]);
        if !ids.contains(&e) {
            dangling.push(format!(
                "round {round}: edge {e} added at seq {sb}, node {x} deleted at seq {sa} \
                 with ids {ids:?}"
            ));
        }
        // Alice: her ACK and Bob's edge, in seq order.
        for _ in 0..2 {
            let frame = alice.next_board_frame().await;
            assert!(
                frame["type"] == "ACK" || frame["type"] == "ELEMENTS_ADDED",
                "alice: {frame}"
            );
        }
    }
    let state = late_state(a.addr, "late", &room).await;
    let elements = state["payload"]["elements"].as_array().expect("elements");
    let present: BTreeSet<&str> = elements.iter().filter_map(|e| e["id"].as_str()).collect();
    let orphans: Vec<&str> = elements
        .iter()
        .filter(|e| e["kind"] == "edge")
        .filter(|e| {
            [&e["from"], &e["to"]]
                .iter()
                .any(|end| !end.as_str().is_some_and(|id| present.contains(id)))
        })
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        dangling.is_empty() && orphans.is_empty(),
        "a node deleted after an edge to it was added must take the edge with it; in {} of \
         {ROUNDS} rounds it did not:\n{}\nedges left pointing at deleted nodes: {orphans:?}",
        dangling.len(),
        dangling.join("\n")
    );
}

fn text_edit(room: &str, id: &str, ops: Value, op_id: &str) -> Value {
    json!({"type": "TEXT_EDIT", "payload": {"roomId": room, "id": id, "ops": ops, "opId": op_id}})
}

#[tokio::test]
async fn two_people_typing_in_one_note_on_two_instances_both_keep_their_words() {
    let redis = RedisServer::start();
    let Pair {
        a,
        b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_v11(&redis).await;
    let note = json!({"id": "n", "kind": "sticky", "x": 0, "y": 0, "w": 50, "h": 50, "text": "hi"});
    alice
        .send(elements_add(&room, json!([note]), Some("add")))
        .await;
    assert_ack(&alice.next_board_frame().await, Some("add"), 1, false, None);
    bob.expect_board("ELEMENTS_ADDED").await;

    // "hi" has the derived ids alice:1, alice:2. Both type after it at once, each a word in
    // two runs, the second after the first (their own Lamport n).
    alice
        .send(text_edit(
            &room,
            "n",
            json!([{"after": "alice:2", "first": "alice:3", "text": " one"}]),
            "a1",
        ))
        .await;
    bob.send(text_edit(
        &room,
        "n",
        json!([{"after": "alice:2", "first": "bob:3", "text": " two"}]),
        "b1",
    ))
    .await;
    alice
        .send(text_edit(
            &room,
            "n",
            json!([{"after": "alice:6", "first": "alice:7", "text": "!"}]),
            "a2",
        ))
        .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let f = alice.next_board_frame().await;
        seen.push(f["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(seen.iter().filter(|t| *t == "ACK").count(), 2, "{seen:?}");
    assert_eq!(
        seen.iter().filter(|t| *t == "TEXT_EDITED").count(),
        1,
        "{seen:?}"
    );
    let mut edits = Vec::new();
    for _ in 0..3 {
        let f = bob.next_board_frame().await;
        if f["type"] == "TEXT_EDITED" {
            edits.push(f);
        }
    }
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert_eq!(edits[0]["payload"]["id"], "n");
    assert_eq!(edits[0]["payload"]["userId"], "alice");

    // Every late joiner, on either instance, reads both words intact: equal n, the greater
    // user id first.
    for addr in [a.addr, b.addr] {
        let state = late_state(addr, "late", &room).await;
        let n = element(&state, "n");
        assert_eq!(n["text"], "hi two one!", "{n}");
        let ids: Vec<&str> = n["textState"]
            .as_array()
            .expect("a text state")
            .iter()
            .filter_map(|c| c[0].as_str())
            .collect();
        assert_eq!(ids[..3], ["alice:1", "alice:2", "bob:3"]);
    }

    // A run claiming someone else's ids is refused, naming the op.
    bob.send(text_edit(
        &room,
        "n",
        json!([{"after": null, "first": "alice:99", "text": "x"}]),
        "b2",
    ))
    .await;
    assert_error(
        &bob.next_board_frame().await,
        "BAD_ELEMENT",
        Some("b2"),
        &["ops[0]"],
    );

    // Carets: relayed to v1.1 peers elsewhere with who they are, not to v1 pages.
    let mut carol = Client::joined(a.addr, "carol", &room).await;
    alice.until("USER_JOINED").await;
    bob.until("USER_JOINED").await;
    alice
        .send(json!({"type": "TEXT_CURSOR", "payload": {"roomId": room, "id": "n", "after": "bob:5", "anchor": null}}))
        .await;
    let caret = bob.expect_board("TEXT_CURSOR").await;
    assert_eq!(
        caret["payload"],
        json!({"roomId": room, "userId": "alice", "id": "n", "after": "bob:5", "anchor": null})
    );
    alice
        .send(json!({"type": "CURSOR_MOVE", "payload": {"roomId": room, "x": 1, "y": 1}}))
        .await;
    assert_eq!(carol.next_board_frame().await["type"], "CURSOR_MOVE");

    // The scripts' round trips are timed by name: three text edits and a refused one read
    // nothing and were committed (or not) by `apply`.
    let value = metrics(a.addr).await;
    assert!(value(r#"drawbridge_redis_script_seconds_count{script="apply"}"#) >= 3.0);
    assert!(value(r#"drawbridge_redis_script_seconds_count{script="join"}"#) >= 2.0);
    assert!(value(r#"drawbridge_op_duration_seconds_count{kind="text"}"#) >= 2.0);
}
