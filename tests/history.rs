//! History (`docs/PROTOCOL.md` §5) end to end: real sockets and HTTP, one real redis-server and
//! two drawbridge instances. A restore made on one instance is seen live on the other, the
//! history routes answer as the contract says, and boards are imported at creation.

mod common;

use common::{
    Client, Pair, RedisServer, WAIT, config, create_room, elements_add, http, http_raw, token,
    wait_until,
};
use serde_json::{Value, json};

fn rect(id: &str, x: f64) -> Value {
    json!({"id": id, "kind": "rect", "x": x, "y": 0, "w": 40, "h": 30})
}

fn alice_token() -> String {
    token("alice", "name-alice")
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", path, Some(&alice_token()), None).await;
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

async fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = http(addr, "POST", path, Some(&alice_token()), Some(&body)).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Elements by id, versions aside (a restore writes elements back at a new version).
fn board(state: &Value) -> std::collections::BTreeMap<String, Value> {
    state["strokes"]
        .as_array()
        .into_iter()
        .chain(state["elements"].as_array())
        .flatten()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().map(|m| m.remove("v"));
            (e["id"].as_str().unwrap_or_default().to_owned(), e)
        })
        .collect()
}

async fn add(client: &mut Client, room: &str, elements: Value) -> u64 {
    client.send(elements_add(room, elements, None)).await;
    client.until("ACK").await["payload"]["seq"]
        .as_u64()
        .expect("seq")
}

#[tokio::test]
async fn a_restore_on_one_instance_is_seen_live_on_the_other_and_undone_by_its_author() {
    let redis = RedisServer::start();
    let mut p = Pair::start_v11(&redis).await;
    let room = p.room.clone();
    assert_eq!(add(&mut p.alice, &room, json!([rect("r1", 0.0)])).await, 1);
    assert_eq!(add(&mut p.alice, &room, json!([rect("r2", 10.0)])).await, 2);
    let (_, at2) = get(p.a.addr, &format!("/api/v1/rooms/{room}/state?at=2")).await;
    p.alice
        .send(
            json!({"type": "ELEMENTS_UPDATE", "payload": {"roomId": room,
            "updates": [{"id": "r1", "patch": {"x": 99}}]}}),
        )
        .await;
    p.alice.until("ACK").await;
    p.alice
        .send(json!({"type": "ELEMENTS_DELETE", "payload": {"roomId": room, "ids": ["r2"]}}))
        .await;
    p.alice.until("ACK").await;
    assert_eq!(add(&mut p.alice, &room, json!([rect("r3", 5.0)])).await, 5);
    let (_, before) = get(p.a.addr, &format!("/api/v1/rooms/{room}/state")).await;

    // Alice restores seq 2 through instance b's HTTP API.
    let (status, body) = post(
        p.b.addr,
        &format!("/api/v1/rooms/{room}/restore"),
        json!({"at": 2}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"seq": 6})));
    for client in [&mut p.alice, &mut p.bob] {
        let event = client.until("ROOM_RESTORED").await["payload"].clone();
        assert_eq!(
            (event["seq"].as_u64(), event["at"].as_u64()),
            (Some(6), Some(2))
        );
        assert_eq!(event["userId"], "alice");
        let ids = |k: &str| -> Vec<String> {
            event[k]
                .as_array()
                .expect("a list")
                .iter()
                .map(|e| {
                    e.as_str()
                        .map_or_else(|| e["id"].as_str().unwrap_or("").to_owned(), str::to_owned)
                })
                .collect()
        };
        assert_eq!(ids("added"), ["r2"]);
        assert_eq!(ids("removed"), ["r3"]);
        assert_eq!(event["changed"], json!([{"id": "r1", "patch": {"x": 0.0}}]));
    }
    let (_, now) = get(p.b.addr, &format!("/api/v1/rooms/{room}/state")).await;
    assert_eq!(
        board(&now),
        board(&at2),
        "the board is the one after seq 2 again"
    );
    assert_eq!(now["seq"], 6);

    // The restore is Alice's op: her UNDO on the socket (instance a) reverses it for everyone.
    p.alice
        .send(json!({"type": "UNDO", "payload": {"roomId": room}}))
        .await;
    assert_eq!(p.bob.until("ROOM_RESTORED").await["payload"]["seq"], 7);
    let (_, undone) = get(p.a.addr, &format!("/api/v1/rooms/{room}/state")).await;
    assert_eq!(board(&undone), board(&before));

    // A late joiner on either instance gets the same board the history says.
    let mut carol = Client::connect(p.b.addr, "carol").await;
    carol
        .send(json!({"type": "JOIN_ROOM", "payload": {"roomId": room, "protocol": "1.1"}}))
        .await;
    let state = carol.expect("INITIAL_STATE").await["payload"].clone();
    assert_eq!(board(&state), board(&undone));
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test]
async fn the_history_routes_answer_as_the_contract_says() {
    let redis = RedisServer::start();
    let mut c = config(Some(&redis), "inst-a");
    c.log_max_ops = 10;
    c.history_max_ops = 10;
    c.snapshot_every_ops = 5;
    let a = common::Instance::start(c).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::connect(a.addr, "alice").await;
    alice
        .send(json!({"type": "JOIN_ROOM", "payload": {"roomId": room, "protocol": "1.1"}}))
        .await;
    alice.expect("INITIAL_STATE").await;
    for i in 1..=4 {
        add(
            &mut alice,
            &room,
            json!([rect(&format!("r{i}"), f64::from(i))]),
        )
        .await;
    }
    let base = format!("/api/v1/rooms/{room}");

    // Versions: named, listed newest first, usable wherever a seq is.
    let (status, v1) = post(
        a.addr,
        &format!("{base}/versions"),
        json!({"name": " first "}),
    )
    .await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(
        (v1["name"].as_str(), v1["seq"].as_u64()),
        (Some("first"), Some(4))
    );
    assert_eq!(v1["createdBy"], "alice");
    let (status, bad) = post(a.addr, &format!("{base}/versions"), json!({"name": ""})).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("BAD_REQUEST")));
    add(&mut alice, &room, json!([rect("r5", 5.0)])).await;
    let (_, v2) = post(
        a.addr,
        &format!("{base}/versions"),
        json!({"name": "second"}),
    )
    .await;
    let (_, list) = get(a.addr, &format!("{base}/versions")).await;
    let names: Vec<&str> = list["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["second", "first"]);

    // state?at= a seq or a version; ops pages; diff between versions.
    let id1 = v1["versionId"].as_str().expect("id");
    let (status, at_v1) = get(a.addr, &format!("{base}/state?at={id1}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (at_v1["seq"].as_u64(), at_v1["roomId"].as_str()),
        (Some(4), Some(room.as_str()))
    );
    assert_eq!(at_v1["elements"].as_array().map(Vec::len), Some(4));
    let (_, page) = get(a.addr, &format!("{base}/ops?since=1&limit=2")).await;
    assert_eq!(page["nextSince"], 3);
    let types: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["ELEMENTS_ADDED", "ELEMENTS_ADDED"]);
    assert_eq!(page["events"][0]["payload"]["seq"], 2);
    let id2 = v2["versionId"].as_str().expect("id");
    let (_, diff) = get(a.addr, &format!("{base}/diff?from={id1}&to={id2}")).await;
    assert_eq!(
        (diff["from"].as_u64(), diff["to"].as_u64()),
        (Some(4), Some(5))
    );
    assert_eq!(diff["added"][0]["id"], "r5");
    assert_eq!(diff["removed"], json!([]));
    let (status, body) = get(a.addr, &format!("{base}/diff?from=nosuchversion")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("VERSION_NOT_FOUND"))
    );
    let (status, body) = get(a.addr, &format!("{base}/state?at=99")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_REQUEST")));

    // Exports: JSON as the contract's document, SVG as a standalone document.
    let (status, doc) = get(a.addr, &format!("{base}/export.json?at=4")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            doc["format"].as_str(),
            doc["version"].as_u64(),
            doc["seq"].as_u64()
        ),
        (Some("drawbridge-board"), Some(1), Some(4))
    );
    let (status, headers, svg) = http(
        a.addr,
        "GET",
        &format!("{base}/export.svg"),
        Some(&alice_token()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        common::header(&headers, "content-type").is_some_and(|t| t.starts_with("image/svg+xml"))
    );
    assert!(svg.contains("<svg") && svg.contains("r5"), "{svg}");

    // Past the history cap, the oldest ops fold into the base: 410 with the oldest seq.
    for i in 6..=30 {
        add(
            &mut alice,
            &room,
            json!([rect(&format!("r{i}"), f64::from(i))]),
        )
        .await;
    }
    wait_until("old history is folded", WAIT, || async {
        get(a.addr, &format!("{base}/state?at=1")).await.0 == 410
    })
    .await;
    let (_, gone) = get(a.addr, &format!("{base}/ops?since=0")).await;
    assert_eq!(gone["code"], "HISTORY_TRIMMED");
    let oldest = gone["oldestSeq"].as_u64().expect("oldestSeq");
    // A snapshot's seq (a multiple of 5, further apart as the board grows) that leaves at
    // least the 10 ops of the cap after it.
    assert!(oldest % 5 == 0 && (5..=20).contains(&oldest), "{gone}");
    let (status, kept) = get(a.addr, &format!("{base}/state?at={oldest}")).await;
    assert_eq!((status, kept["seq"].as_u64()), (200, Some(oldest)));
    assert_eq!(
        kept["elements"].as_array().map(Vec::len),
        Some(oldest as usize)
    );

    // An unknown room is 404 on every route; a missing token is 401.
    for path in [
        "ops",
        "state",
        "versions",
        "diff?from=0",
        "export.json",
        "export.svg",
    ] {
        let (status, _) = get(a.addr, &format!("/api/v1/rooms/nosuchroom/{path}")).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = http(a.addr, "GET", &format!("{base}/state"), None, None).await;
    assert_eq!(status, 401);
    a.stop().await;
}

#[tokio::test]
async fn boards_are_imported_at_creation_from_export_json_and_svg() {
    let redis = RedisServer::start();
    let mut c = config(Some(&redis), "inst-a");
    c.max_import_bytes = 4096;
    let a = common::Instance::start(c).await;
    let room = create_room(a.addr).await;
    let mut alice = Client::connect(a.addr, "alice").await;
    alice
        .send(json!({"type": "JOIN_ROOM", "payload": {"roomId": room, "protocol": "1.1"}}))
        .await;
    alice.expect("INITIAL_STATE").await;
    add(
        &mut alice,
        &room,
        json!([
            rect("r1", 1.0),
            {"id": "n1", "kind": "node", "x": 0, "y": 0, "w": 10, "h": 10, "text": "a <b> & c"},
            {"id": "n2", "kind": "node", "x": 50, "y": 0, "w": 10, "h": 10},
            {"id": "e1", "kind": "edge", "from": "n1", "to": "n2"},
            {"id": "s1", "kind": "stroke", "points": [{"x": 0, "y": 0}, {"x": 5, "y": 5}], "color": "#ff0000", "width": 3},
        ]),
    )
    .await;
    let (_, doc) = get(a.addr, &format!("/api/v1/rooms/{room}/export.json")).await;

    // export.json → a new room holding the same board.
    let (status, created) = post(a.addr, "/api/v1/rooms", doc.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["data"]["imported"].as_u64(),
            created["data"]["skipped"].as_u64()
        ),
        (Some(5), Some(0))
    );
    let copy = created["data"]["roomId"].as_str().expect("roomId");
    let (_, state) = get(a.addr, &format!("/api/v1/rooms/{copy}/state")).await;
    let shape = |state: &Value| -> Vec<(String, String)> {
        board(state)
            .into_values()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or("").to_owned(),
                    e["kind"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(shape(&state), shape(&doc));
    assert_eq!(board(&state)["n1"]["text"], "a <b> & c");
    assert_eq!(
        board(&state)["s1"]["roomId"],
        copy,
        "strokes name their new room"
    );

    // An SVG → elements, unsupported ones counted.
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">
        <rect x="10" y="10" width="20" height="20" fill="#ff0000"/>
        <g transform="translate(5 5)"><circle cx="50" cy="50" r="10"/></g>
        <path d="M 0 0 L 10 10 L 20 0" stroke="#0000ff" stroke-width="2" fill="none"/>
        <image href="x.png" width="5" height="5"/>
    </svg>"##;
    let headers = [
        ("Authorization", format!("Bearer {}", alice_token())),
        ("Content-Type", "image/svg+xml".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, body) = http_raw(a.addr, "POST", "/api/v1/rooms", &headers, Some(svg)).await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (
            created["data"]["imported"].as_u64(),
            created["data"]["skipped"].as_u64()
        ),
        (Some(3), Some(1))
    );

    // Too big → 413; unreadable → 400; neither creates a room.
    let big = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\">{}</svg>",
        "<rect width=\"1\" height=\"1\"/>".repeat(200)
    );
    let (status, _, body) = http_raw(a.addr, "POST", "/api/v1/rooms", &headers, Some(&big)).await;
    assert_eq!(status, 413, "{body}");
    let (status, _, body) = http_raw(a.addr, "POST", "/api/v1/rooms", &headers, Some("<svg")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BAD_IMPORT"), "{body}");
    let (status, bad) = post(a.addr, "/api/v1/rooms", json!({"format": "something-else"})).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("BAD_IMPORT")));
    // A Canvas client's empty JSON body still just creates a room.
    let (status, plain) = post(a.addr, "/api/v1/rooms", json!({})).await;
    assert_eq!(status, 201);
    assert!(plain["data"].get("imported").is_none());
    a.stop().await;
}

/// `drawbridge backup` and `drawbridge restore`, the real binary against the real server.
fn run_binary(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DRAWBRIDGE_REDIS_URL", redis.url())
        .env("DRAWBRIDGE_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run drawbridge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_owned()
}

#[tokio::test]
async fn a_backup_restores_every_board_version_and_seq_after_redis_is_flushed() {
    let redis = RedisServer::start();
    let a = common::Instance::start(config(Some(&redis), "inst-a")).await;
    let mut rooms = Vec::new();
    let mut alice = Client::connect(a.addr, "alice").await;
    for r in 0..3 {
        let room = create_room(a.addr).await;
        alice
            .send(json!({"type": "JOIN_ROOM", "payload": {"roomId": room, "protocol": "1.1"}}))
            .await;
        alice.expect("INITIAL_STATE").await;
        for i in 0..=r {
            add(
                &mut alice,
                &room,
                json!([rect(&format!("r{i}"), f64::from(i))]),
            )
            .await;
        }
        post(
            a.addr,
            &format!("/api/v1/rooms/{room}/versions"),
            json!({"name": format!("v{r}")}),
        )
        .await;
        rooms.push(room);
    }
    // The first room is private: a backup keeps who may see it.
    let owner = token("creator", "C");
    let private = json!({"access": "members", "name": "plans"});
    let (status, _, body) = http(
        a.addr,
        "PATCH",
        &format!("/api/v1/rooms/{}", rooms[0]),
        Some(&owner),
        Some(&private),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("utf-8 path");
    assert_eq!(
        run_binary(&redis, &["backup", "--out", out]),
        "backup: 3 rooms, 3 written, 0 unchanged"
    );
    assert_eq!(
        run_binary(&redis, &["backup", "--out", out]),
        "backup: 3 rooms, 0 written, 3 unchanged"
    );
    add(&mut alice, &rooms[2], json!([rect("late", 9.0)])).await;
    assert_eq!(
        run_binary(&redis, &["backup", "--out", out]),
        "backup: 3 rooms, 1 written, 2 unchanged"
    );

    let owned = |path: String| {
        let owner = owner.clone();
        async move {
            let (_, _, body) = http(a.addr, "GET", &path, Some(&owner), None).await;
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
        }
    };
    let mut before = Vec::new();
    for room in &rooms {
        let state = owned(format!("/api/v1/rooms/{room}/state")).await;
        let versions = owned(format!("/api/v1/rooms/{room}/versions")).await;
        before.push((state, versions));
    }
    let mut conn = redis.client().await;
    let _: () = ::redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let (status, _) = get(a.addr, &format!("/api/v1/rooms/{}/state", rooms[0])).await;
    assert_eq!(status, 404, "the boards are gone");

    assert_eq!(
        run_binary(&redis, &["restore", "--from", out]),
        "restore: 3 rooms"
    );
    for (room, (state, versions)) in rooms.iter().zip(&before) {
        let after = owned(format!("/api/v1/rooms/{room}/state")).await;
        assert_eq!(&after, state, "{room}: the same board at the same seq");
        let listed = owned(format!("/api/v1/rooms/{room}/versions")).await;
        assert_eq!(&listed, versions);
    }
    let settings = owned(format!("/api/v1/rooms/{}", rooms[0])).await;
    assert_eq!(
        (
            settings["data"]["access"].as_str(),
            settings["data"]["name"].as_str()
        ),
        (Some("members"), Some("plans"))
    );
    let (status, _) = get(a.addr, &format!("/api/v1/rooms/{}/state", rooms[0])).await;
    assert_eq!(status, 404, "still private to Alice, who is no member");
    // A restored room is live: it is joined and drawn on as before.
    let mut bob = Client::connect(a.addr, "bob").await;
    bob.send(json!({"type": "JOIN_ROOM", "payload": {"roomId": rooms[1], "protocol": "1.1"}}))
        .await;
    let state = bob.expect("INITIAL_STATE").await;
    assert_eq!(state["payload"]["seq"], 2);
    assert_eq!(add(&mut bob, &rooms[1], json!([rect("new", 1.0)])).await, 3);
    a.stop().await;
}
