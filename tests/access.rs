//! `PROTOCOL.md` §6 over two instances and a real Redis: roles and room settings, members by id
//! and by e-mail, members-only rooms that answer exactly like missing ones (status, body,
//! headers; timing measured and printed), live role changes across instances, guests, my rooms,
//! the per-IP room limit, room deletion, workspaces and the activity heatmap.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    Client, Instance, RedisServer, WAIT, config, create_room_as, http, http_raw, join_room, token,
};
use serde_json::{Value, json};

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    as_user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, text) = http(
        addr,
        method,
        path,
        Some(&token(as_user, &format!("name-{as_user}"))),
        body.as_ref(),
    )
    .await;
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

/// Two instances on one Redis, with the room limit as given.
async fn pair(redis: &RedisServer, rooms_per_ip: u32) -> (Instance, Instance) {
    let make = |id: &str| {
        let mut c = config(Some(redis), id);
        c.max_rooms_per_ip = rooms_per_ip;
        c.trusted_proxies = "127.0.0.1".into();
        c.activity_flush_secs = 1;
        c
    };
    (
        Instance::start(make("inst-a")).await,
        Instance::start(make("inst-b")).await,
    )
}

async fn room_of(addr: SocketAddr, owner: &str) -> String {
    create_room_as(addr, &token(owner, &format!("name-{owner}"))).await
}

/// An account straight into Redis, as sign-up would leave it verified.
async fn account(redis: &RedisServer, id: &str, email: &str, name: &str) {
    let mut conn = redis.client().await;
    let _: () = redis::pipe()
        .hset_multiple(
            format!("user:{email}"),
            &[
                ("id", id),
                ("name", name),
                ("passwordHash", "x"),
                ("verified", "1"),
                ("createdAt", "0"),
            ],
        )
        .set(format!("user-id:{id}"), email)
        .query_async(&mut conn)
        .await
        .expect("account written");
}

/// The next frame that is not presence or a cursor.
async fn next_control(client: &mut Client) -> Value {
    loop {
        let v = client
            .next()
            .await
            .unwrap_or_else(|| panic!("{}: no frame", client.user));
        let kind = v["type"].as_str().unwrap_or_default();
        if !matches!(
            kind,
            "USER_JOINED" | "USER_LEFT" | "USER_COUNT_UPDATED" | "CURSOR_MOVE" | "CURSOR_LEAVE"
        ) {
            return v;
        }
    }
}

#[tokio::test]
async fn rooms_show_their_settings_and_the_callers_role() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let room = room_of(a.addr, "olga").await;
    let (status, v) = call(
        b.addr,
        "GET",
        &format!("/api/v1/rooms/{room}"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let data = &v["data"];
    assert_eq!(data["roomId"], room.as_str());
    assert_eq!(
        (data["owner"].as_str(), data["role"].as_str()),
        (Some("olga"), Some("owner"))
    );
    assert_eq!(
        (data["access"].as_str(), data["linkRole"].as_str()),
        (Some("link"), Some("editor"))
    );
    assert!(data["createdAt"].as_u64().is_some() && data["expiresAt"].as_u64().is_some());
    // The Canvas alias answers the same way.
    let (status, v) = call(
        a.addr,
        "GET",
        &format!("/api/user/rooms/{room}"),
        "bob",
        None,
    )
    .await;
    assert_eq!((status, v["data"]["role"].as_str()), (200, Some("editor")));

    // Only the owner changes settings; everything is checked at once.
    let path = format!("/api/v1/rooms/{room}");
    let (status, v) = call(a.addr, "PATCH", &path, "bob", Some(json!({"name": "x"}))).await;
    assert_eq!((status, v["code"].as_str()), (403, Some("FORBIDDEN")));
    let bad = json!({"access": "open", "linkRole": "owner"});
    let (status, v) = call(a.addr, "PATCH", &path, "olga", Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    let good = json!({"name": "Roadmap", "linkRole": "viewer"});
    let (status, v) = call(b.addr, "PATCH", &path, "olga", Some(good)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["data"]["name"].as_str(), v["data"]["linkRole"].as_str()),
        (Some("Roadmap"), Some("viewer"))
    );
    let (_, v) = call(a.addr, "GET", &path, "bob", None).await;
    assert_eq!(v["data"]["role"], "viewer");
    a.stop().await;
    b.stop().await;
}

/// Status, body, and headers but `date` (which names the second it was sent).
async fn answer(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: &str,
) -> (u16, String, Vec<(String, String)>) {
    let bearer = format!("Bearer {}", token(user, "U"));
    let body = (method == "PATCH" || method == "PUT" || method == "POST")
        .then_some(r#"{"role":"editor","name":"x"}"#);
    let mut headers = vec![("Authorization", bearer.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, mut headers, body) = http_raw(addr, method, path, &headers, body).await;
    headers.retain(|(k, _)| k != "date");
    headers.sort();
    (status, body, headers)
}

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{name:>16}: n={} min={:.3} p10={:.3} p50={:.3} p90={:.3} p99={:.3} max={:.3} ms",
        samples.len(),
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

#[tokio::test]
async fn members_only_rooms_answer_exactly_like_missing_ones() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let hidden = room_of(a.addr, "olga").await;
    let (status, _) = call(
        a.addr,
        "PATCH",
        &format!("/api/v1/rooms/{hidden}"),
        "olga",
        Some(json!({"access": "members"})),
    )
    .await;
    assert_eq!(status, 200);
    // Same length as a real id, so not even the body's length differs.
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(missing.len(), hidden.len());
    for (method, suffix) in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/members"),
        ("POST", "/members"),
        ("PUT", "/members/bob"),
        ("DELETE", "/members/bob"),
    ] {
        let seen = answer(
            a.addr,
            method,
            &format!("/api/v1/rooms/{hidden}{suffix}"),
            "eve",
        )
        .await;
        let none = answer(
            a.addr,
            method,
            &format!("/api/v1/rooms/{missing}{suffix}"),
            "eve",
        )
        .await;
        assert_eq!(seen.0, 404, "{method} {suffix}: {seen:?}");
        assert_eq!(
            seen, none,
            "{method} {suffix}: a hidden room must look missing"
        );
    }
    // The owner still sees it; so would a member.
    let (status, _) = call(
        b.addr,
        "GET",
        &format!("/api/v1/rooms/{hidden}"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The socket says ROOM_EXPIRED for both, with the same shape.
    let mut eve = Client::connect(b.addr, "eve").await;
    eve.send(join_room(&hidden)).await;
    let one = eve.expect("ROOM_EXPIRED").await;
    eve.send(join_room(missing)).await;
    let two = eve.expect("ROOM_EXPIRED").await;
    assert_eq!(
        one.to_string().replace(&hidden, "ID"),
        two.to_string().replace(missing, "ID")
    );

    // Timing: interleaved samples of both, printed; equality is not asserted (noise on a shared
    // machine), the two paths make the same Redis calls by construction.
    let (mut hidden_t, mut missing_t) = (Vec::new(), Vec::new());
    let path_h = format!("/api/v1/rooms/{hidden}");
    let path_m = format!("/api/v1/rooms/{missing}");
    for i in 0..300 {
        for (path, into) in [(&path_h, &mut hidden_t), (&path_m, &mut missing_t)] {
            let started = Instant::now();
            let (status, _, _) = answer(a.addr, "GET", path, "eve").await;
            if i >= 20 {
                into.push(started.elapsed());
            }
            assert_eq!(status, 404);
        }
    }
    summary("members-only", &mut hidden_t);
    summary("missing", &mut missing_t);
    let (mut join_h, mut join_m) = (Vec::new(), Vec::new());
    for i in 0..200 {
        for (room, into) in [(hidden.as_str(), &mut join_h), (missing, &mut join_m)] {
            let started = Instant::now();
            eve.send(join_room(room)).await;
            eve.expect("ROOM_EXPIRED").await;
            if i >= 20 {
                into.push(started.elapsed());
            }
        }
    }
    summary("join members-only", &mut join_h);
    summary("join missing", &mut join_m);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn owners_manage_members_by_id_and_by_email() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    account(&redis, "bob", "bob@example.com", "Bob").await;
    let room = room_of(a.addr, "olga").await;
    let base = format!("/api/v1/rooms/{room}/members");
    let (status, v) = call(
        a.addr,
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        "olga",
        Some(json!({"access": "members"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // By e-mail (any case); an unknown address is 404.
    let (status, v) = call(
        b.addr,
        "POST",
        &base,
        "olga",
        Some(json!({"email": "BOB@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["member"]["name"], "Bob");
    let (status, v) = call(
        b.addr,
        "POST",
        &base,
        "olga",
        Some(json!({"email": "nobody@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (404, Some("USER_NOT_FOUND")));
    // By id; owner is not a role to give.
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{base}/carol"),
        "olga",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{base}/carol"),
        "olga",
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, v) = call(b.addr, "GET", &base, "bob", None).await;
    assert_eq!(status, 200, "{v}");
    let listed: Vec<(String, String)> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap_or("").into(),
                m["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("olga".into(), "owner".into()),
            ("bob".into(), "viewer".into()),
            ("carol".into(), "editor".into())
        ]
    );
    // A member whose role may not do it gets 403; a stranger 404.
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{base}/dan"),
        "bob",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{base}/dan"),
        "dan",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 404);
    // Removed: no longer sees it.
    let (status, _) = call(b.addr, "DELETE", &format!("{base}/bob"), "olga", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(a.addr, "GET", &format!("/api/v1/rooms/{room}"), "bob", None).await;
    assert_eq!(status, 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn viewers_cannot_change_the_board_and_roles_change_live_across_instances() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let room = room_of(a.addr, "olga").await;
    let path = format!("/api/v1/rooms/{room}");
    let mut olga = Client::joined(a.addr, "olga", &room).await;
    let mut bob = Client::joined(b.addr, "bob", &room).await;
    // A v1.1 page, which is sent strokes in progress (v1 clients never are).
    let mut wanda = Client::joined_v11(a.addr, "wanda", &room).await;

    // The link turns read-only: bob, on the other instance, is told and may no longer draw.
    let (status, _) = call(
        a.addr,
        "PATCH",
        &path,
        "olga",
        Some(json!({"linkRole": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    let changed = next_control(&mut bob).await;
    assert_eq!(changed["type"], "ROLE_CHANGED", "{changed}");
    assert_eq!(
        changed["payload"],
        json!({"roomId": room, "userId": "bob", "role": "viewer"})
    );
    bob.send(common::stroke(&room, "b1")).await;
    let refused = next_control(&mut bob).await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["payload"]["code"].as_str()
        ),
        (Some("ERROR"), Some("FORBIDDEN"))
    );
    bob.send(json!({"type": "UNDO", "payload": {"roomId": room}}))
        .await;
    assert_eq!(next_control(&mut bob).await["payload"]["code"], "FORBIDDEN");
    // A stroke being drawn is not shown (it could never be stored); cursors still go through.
    bob.send(
        json!({"type": "STROKE_PROGRESS", "payload": {"roomId": room, "id": "b9",
        "points": [{"x": 1, "y": 2}], "color": "#000", "width": 2}}),
    )
    .await;
    bob.send(json!({"type": "CURSOR_MOVE", "payload": {"roomId": room, "x": 1, "y": 2}}))
        .await;
    let seen = wanda.frames_until("CURSOR_MOVE").await;
    assert!(
        seen.iter().all(|f| f["type"] != "STROKE_PROGRESS"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(|f| f["payload"]["userId"].clone()),
        Some(json!("bob"))
    );
    olga.until("CURSOR_MOVE").await;
    // The owner saw no stroke of bob's; bob still sees hers.
    olga.draw_acked(&room, "o1").await;
    assert_eq!(next_control(&mut bob).await["type"], "CANVAS_UPDATE");
    // The viewer's stroke changed nothing: a newcomer's board holds the owner's stroke only.
    let mut carl = Client::connect(b.addr, "carl").await;
    assert_eq!(common::stroke_ids(&carl.join(&room).await), ["o1"]);
    carl.close().await;

    // Made editor by id: the very next op goes through.
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{path}/members/bob"),
        "olga",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    let changed = next_control(&mut bob).await;
    assert_eq!(
        (
            changed["type"].as_str(),
            changed["payload"]["role"].as_str()
        ),
        (Some("ROLE_CHANGED"), Some("editor"))
    );
    assert_eq!(bob.draw_acked(&room, "b2").await["type"], "ACK");
    let got = olga.until("CANVAS_UPDATE").await;
    assert_eq!(got["payload"]["canvasData"]["strokeId"], "b2");

    // The room goes members-only without him: out, on his instance, and he cannot come back.
    let (status, _) = call(
        b.addr,
        "DELETE",
        &format!("{path}/members/bob"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let changed = next_control(&mut bob).await;
    assert_eq!(
        (
            changed["type"].as_str(),
            changed["payload"]["role"].as_str()
        ),
        (Some("ROLE_CHANGED"), Some("viewer"))
    );
    let (status, _) = call(
        b.addr,
        "PATCH",
        &path,
        "olga",
        Some(json!({"access": "members"})),
    )
    .await;
    assert_eq!(status, 200);
    let revoked = next_control(&mut bob).await;
    assert_eq!(
        revoked,
        json!({"type": "ACCESS_REVOKED", "payload": {"roomId": room}})
    );
    // Wanda (a link member, no role of her own) is put out by the same change: the two
    // USER_LEFTs come in either order.
    let mut left = Vec::new();
    while !left.contains(&"bob".to_owned()) && left.len() < 2 {
        let frame = olga.until("USER_LEFT").await;
        left.push(frame["payload"]["userId"].as_str().unwrap_or("").to_owned());
    }
    assert!(left.contains(&"bob".to_owned()), "USER_LEFT for {left:?}");
    bob.send(common::stroke(&room, "b3")).await;
    assert_eq!(
        next_control(&mut bob).await["payload"]["code"],
        "NOT_IN_ROOM"
    );
    bob.send(join_room(&room)).await;
    bob.expect("ROOM_EXPIRED").await;
    // The owner was never interrupted.
    olga.expect_none_of("ACCESS_REVOKED", Duration::from_millis(200))
        .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn guests_join_link_rooms_only() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let (status, _, text) = http(
        a.addr,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(&json!({"name": "Gus"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let guest: Value = serde_json::from_str(&text).expect("json");
    let access = guest["accessToken"].as_str().expect("token").to_owned();
    let open = room_of(a.addr, "olga").await;
    let closed = room_of(a.addr, "olga").await;
    let gid = guest["user"]["userId"].as_str().expect("id").to_owned();
    let (status, _) = call(
        a.addr,
        "PATCH",
        &format!("/api/v1/rooms/{closed}"),
        "olga",
        Some(json!({"access": "members"})),
    )
    .await;
    assert_eq!(status, 200);
    // Even named as a member, a guest stays out of a members-only room.
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("/api/v1/rooms/{closed}/members/{gid}"),
        "olga",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    let mut gus = Client::connect_with(b.addr, "gus", &access).await;
    gus.join(&open).await;
    gus.send(join_room(&closed)).await;
    gus.expect("ROOM_EXPIRED").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn my_rooms_lists_owned_and_shared_rooms_that_still_exist() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let mine = room_of(a.addr, "olga").await;
    let shared = room_of(b.addr, "bob").await;
    let gone = room_of(a.addr, "olga").await;
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("/api/v1/rooms/{shared}/members/olga"),
        "bob",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        a.addr,
        "DELETE",
        &format!("/api/v1/rooms/{gone}"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(b.addr, "GET", "/api/v1/me/rooms", "olga", None).await;
    assert_eq!(status, 200, "{v}");
    let mut rooms: Vec<(String, String)> = v["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| {
            (
                r["roomId"].as_str().unwrap_or("").into(),
                r["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    rooms.sort();
    let mut want = vec![(mine, "owner".to_owned()), (shared, "editor".to_owned())];
    want.sort();
    // A link room's editor link outranks the viewer grant.
    assert_eq!(rooms, want);
    a.stop().await;
    b.stop().await;
}

async fn create_from(addr: SocketAddr, ip: &str, user: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", token(user, "U"));
    let (status, _, body) = http_raw(
        addr,
        "POST",
        "/api/v1/rooms",
        &[("Authorization", &bearer), ("X-Forwarded-For", ip)],
        None,
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_ip_holds_a_limited_number_of_rooms_and_deleting_frees_one() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 2).await;
    let (s1, first) = create_from(a.addr, "203.0.113.7", "olga").await;
    let (s2, _) = create_from(b.addr, "203.0.113.7", "olga").await;
    assert_eq!((s1, s2), (201, 201));
    let (status, v) = create_from(a.addr, "203.0.113.7", "bob").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("ROOM_LIMIT")),
        "{v}"
    );
    let (status, _) = create_from(b.addr, "203.0.113.8", "olga").await;
    assert_eq!(status, 201, "another address has its own allowance");

    // Only the owner deletes; a socket in the room is told, on the other instance.
    let room = first["data"]["roomId"].as_str().expect("room").to_owned();
    let mut bob = Client::joined(b.addr, "bob", &room).await;
    let (status, _) = call(
        a.addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}"),
        "bob",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        a.addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        next_control(&mut bob).await,
        json!({"type": "ROOM_EXPIRED", "payload": {"roomId": room}})
    );
    let mut conn = redis.client().await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("room:{{{room}}}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(left.is_empty(), "every key of the room is gone: {left:?}");
    let (status, _) = call(
        a.addr,
        "GET",
        &format!("/api/v1/rooms/{room}"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = create_from(a.addr, "203.0.113.7", "olga").await;
    assert_eq!(status, 201, "the deleted room's slot is free again");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn workspaces_share_their_rooms_with_their_members() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    account(&redis, "bob", "bob@example.com", "Bob").await;
    let (status, v) = call(
        a.addr,
        "POST",
        "/api/v1/workspaces",
        "olga",
        Some(json!({"name": "Team"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let ws = v["data"]["workspaceId"].as_str().expect("id").to_owned();
    let wpath = format!("/api/v1/workspaces/{ws}");
    let (status, _) = call(
        b.addr,
        "POST",
        &format!("{wpath}/members"),
        "olga",
        Some(json!({"email": "bob@example.com", "role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        b.addr,
        "PUT",
        &format!("{wpath}/members/vic"),
        "olga",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    // Editors create rooms in it; viewers may not; strangers see no workspace.
    let bearer = format!("Bearer {}", token("bob", "Bob"));
    let (status, _, body) = http_raw(
        a.addr,
        "POST",
        &format!("/api/v1/rooms?workspace={ws}"),
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let room = serde_json::from_str::<Value>(&body).expect("json")["data"]["roomId"]
        .as_str()
        .expect("room")
        .to_owned();
    let vic = format!("Bearer {}", token("vic", "Vic"));
    let (status, _, _) = http_raw(
        a.addr,
        "POST",
        &format!("/api/v1/rooms?workspace={ws}"),
        &[("Authorization", &vic)],
        None,
    )
    .await;
    assert_eq!(status, 403);
    let eve = format!("Bearer {}", token("eve", "Eve"));
    let (status, _, _) = http_raw(
        a.addr,
        "POST",
        &format!("/api/v1/rooms?workspace={ws}"),
        &[("Authorization", &eve)],
        None,
    )
    .await;
    assert_eq!(status, 404);
    for (who, want) in [("olga", 200), ("vic", 200), ("eve", 404)] {
        assert_eq!(
            call(b.addr, "GET", &wpath, who, None).await.0,
            want,
            "{who}"
        );
    }
    // The room is members-only; workspace roles carry into it.
    let rpath = format!("/api/v1/rooms/{room}");
    let (_, v) = call(b.addr, "GET", &rpath, "olga", None).await;
    assert_eq!(
        (v["data"]["access"].as_str(), v["data"]["role"].as_str()),
        (Some("members"), Some("owner"))
    );
    assert_eq!(
        call(b.addr, "GET", &rpath, "vic", None).await.1["data"]["role"],
        "viewer"
    );
    assert_eq!(call(b.addr, "GET", &rpath, "eve", None).await.0, 404);
    // The higher of workspace and room role.
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{rpath}/members/vic"),
        "bob",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(b.addr, "GET", &rpath, "vic", None).await.1["data"]["role"],
        "editor"
    );
    let (status, v) = call(a.addr, "GET", &format!("{wpath}/rooms"), "vic", None).await;
    assert_eq!(
        (status, v["rooms"][0]["roomId"].as_str()),
        (200, Some(room.as_str()))
    );
    let (status, v) = call(a.addr, "GET", "/api/v1/workspaces", "vic", None).await;
    assert_eq!(
        (status, v["workspaces"][0]["role"].as_str()),
        (200, Some("viewer"))
    );
    // Only owners manage it.
    assert_eq!(
        call(
            a.addr,
            "PATCH",
            &wpath,
            "bob",
            Some(json!({"name": "Mine"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            a.addr,
            "PATCH",
            &wpath,
            "olga",
            Some(json!({"name": "Crew"}))
        )
        .await
        .1["data"]["name"],
        "Crew"
    );
    // Leaving the workspace takes a member out of its rooms, live, on any instance (bob
    // created the room, so he owns it whatever his workspace role).
    let (status, _) = call(
        a.addr,
        "PUT",
        &format!("{wpath}/members/wes"),
        "olga",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(status, 200);
    let mut wes = Client::joined(b.addr, "wes", &room).await;
    let (status, _) = call(
        a.addr,
        "DELETE",
        &format!("{wpath}/members/wes"),
        "olga",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(next_control(&mut wes).await["type"], "ACCESS_REVOKED");
    assert_eq!(call(b.addr, "GET", &rpath, "wes", None).await.0, 404);
    assert_eq!(
        call(b.addr, "GET", &rpath, "bob", None).await.1["data"]["role"],
        "owner"
    );
    assert_eq!(call(b.addr, "DELETE", &wpath, "olga", None).await.0, 200);
    assert_eq!(call(b.addr, "GET", &wpath, "olga", None).await.0, 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn activity_counts_sequenced_ops_per_day_with_streaks() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis, 0).await;
    let room = room_of(a.addr, "olga").await;
    let mut ann = Client::joined(a.addr, "ann", &room).await;
    for id in ["s1", "s2", "s3"] {
        ann.draw_acked(&room, id).await;
    }
    // Counted on instance a; b sees them once a has flushed (every second here).
    let deadline = Instant::now() + WAIT;
    let v = loop {
        let (status, v) = call(b.addr, "GET", "/api/v1/me/activity", "ann", None).await;
        assert_eq!(status, 200, "{v}");
        if v["total"] == 3 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(
        (v["currentStreak"].as_u64(), v["longestStreak"].as_u64()),
        (Some(1), Some(1))
    );
    let days = v["days"].as_object().expect("days");
    assert_eq!(days.len(), 1);
    assert!(v["year"].as_i64().is_some());
    let (status, v) = call(a.addr, "GET", "/api/v1/me/activity?year=2001", "ann", None).await;
    assert_eq!((status, v["total"].as_u64()), (200, Some(0)));
    assert_eq!(
        call(a.addr, "GET", "/api/v1/me/activity?year=1", "ann", None)
            .await
            .0,
        400
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn activity_buffered_in_an_instance_is_flushed_when_it_stops() {
    let redis = RedisServer::start();
    let make = |id: &str, flush: u64| {
        let mut c = config(Some(&redis), id);
        c.activity_flush_secs = flush;
        c
    };
    // Instance a would not flush for an hour on its own.
    let a = Instance::start(make("inst-a", 3600)).await;
    let b = Instance::start(make("inst-b", 1)).await;
    let room = room_of(a.addr, "olga").await;
    let mut ann = Client::joined(a.addr, "ann", &room).await;
    for id in ["s1", "s2"] {
        ann.draw_acked(&room, id).await;
    }
    let (_, v) = call(b.addr, "GET", "/api/v1/me/activity", "ann", None).await;
    assert_eq!(v["total"], 0, "still buffered in a: {v}");
    ann.close().await;
    a.stop().await;
    let (_, v) = call(b.addr, "GET", "/api/v1/me/activity", "ann", None).await;
    assert_eq!(v["total"], 2, "flushed on shutdown: {v}");
    b.stop().await;
}
