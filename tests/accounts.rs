//! Accounts: the engine half run against both engines, then the whole flow over HTTP with a
//! real redis-server and a real SMTP listener started here.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use drawbridge::domain::UserId;
use drawbridge::domain::accounts::Account;
use drawbridge::domain::quota::Quota;
use drawbridge::engine::memory::MemoryEngine;
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{Engine, EngineSettings, OtpOutcome, RefreshOutcome, Rotation};
use drawbridge::hub::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn settings() -> EngineSettings {
    EngineSettings {
        instance_id: "suite".into(),
        room_ttl: None,
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

async fn redis_engine(redis: &RedisServer, stop: &CancellationToken) -> RedisEngine {
    engine_on(redis.url(), drawbridge::config::RedisMode::Standalone, stop).await
}

async fn engine_on(
    url: String,
    mode: drawbridge::config::RedisMode,
    stop: &CancellationToken,
) -> RedisEngine {
    let tasks = TaskTracker::new();
    RedisEngine::start(
        &RedisSettings {
            url,
            mode,
            key_prefix: String::new(),
            pool_size: 4,
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
        stop.clone(),
    )
    .await
    .expect("redis engine")
}

fn account(id: &str, email: &str) -> Account {
    Account {
        id: UserId::new(id),
        name: format!("name of {id}"),
        email: email.to_owned(),
        password_hash: "$argon2id$not-a-real-hash".into(),
        verified: false,
        created_at: 1_700_000_000_000,
    }
}

const TTL: Duration = Duration::from_secs(60);

/// The account half of the engine contract; both engines must pass it unchanged.
async fn account_suite(engine: &dyn Engine) {
    // An unverified account is replaced by a later sign-up for its address, and its pending
    // code goes with it (issue 15, finding 7).
    let squat = account("u-squat", "ann@x.io");
    assert!(engine.create_account(&squat).await.expect("create"));
    engine
        .store_otp("ann@x.io", "h-squat", TTL)
        .await
        .expect("store");
    // Accounts: one per address, found by address and by id.
    let ann = account("u-ann", "ann@x.io");
    assert!(engine.create_account(&ann).await.expect("create"));
    assert_eq!(engine.account_by_id(&squat.id).await.expect("get"), None);
    assert_eq!(
        engine
            .confirm_otp("ann@x.io", "h-squat", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Missing,
        "the replaced account's code is gone"
    );
    let vee = Account {
        verified: true,
        ..account("u-vee", "vee@x.io")
    };
    assert!(engine.create_account(&vee).await.expect("create"));
    assert!(
        !engine
            .create_account(&account("u-other", "vee@x.io"))
            .await
            .expect("create"),
        "a verified account's address is taken"
    );
    assert_eq!(
        engine.account("ann@x.io").await.expect("get"),
        Some(ann.clone())
    );
    assert_eq!(
        engine.account_by_id(&ann.id).await.expect("get"),
        Some(ann.clone())
    );
    assert_eq!(
        engine
            .account_by_id(&UserId::new("u-other"))
            .await
            .expect("get"),
        None,
        "the refused duplicate left nothing behind"
    );
    assert_eq!(engine.account("nobody@x.io").await.expect("get"), None);

    // Codes: wrong tries count down, the right one verifies once.
    assert_eq!(
        engine
            .confirm_otp("ann@x.io", "h1", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Missing
    );
    engine
        .store_otp("ann@x.io", "h1", TTL)
        .await
        .expect("store");
    assert_eq!(
        engine
            .confirm_otp("ann@x.io", "bad", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Wrong { tries_left: 2 }
    );
    assert_eq!(
        engine
            .confirm_otp("ann@x.io", "h1", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Verified
    );
    assert!(
        engine
            .account("ann@x.io")
            .await
            .expect("get")
            .expect("ann")
            .verified
    );
    assert_eq!(
        engine
            .confirm_otp("ann@x.io", "h1", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Missing,
        "a code works once"
    );

    // Too many wrong tries kill the code, even the right one; a new code starts afresh.
    let bob = account("u-bob", "bob@x.io");
    assert!(engine.create_account(&bob).await.expect("create"));
    engine
        .store_otp("bob@x.io", "h2", TTL)
        .await
        .expect("store");
    for left in [2, 1] {
        assert_eq!(
            engine
                .confirm_otp("bob@x.io", "bad", 3, None)
                .await
                .expect("otp"),
            OtpOutcome::Wrong { tries_left: left }
        );
    }
    assert_eq!(
        engine
            .confirm_otp("bob@x.io", "bad", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Locked
    );
    assert_eq!(
        engine
            .confirm_otp("bob@x.io", "h2", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Locked
    );
    assert!(
        !engine
            .account("bob@x.io")
            .await
            .expect("get")
            .expect("bob")
            .verified
    );
    engine
        .store_otp("bob@x.io", "h3", TTL)
        .await
        .expect("store");
    assert_eq!(
        engine
            .confirm_otp("bob@x.io", "h3", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Verified
    );

    // Codes expire.
    let cat = account("u-cat", "cat@x.io");
    assert!(engine.create_account(&cat).await.expect("create"));
    engine
        .store_otp("cat@x.io", "h4", Duration::from_millis(50))
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        engine
            .confirm_otp("cat@x.io", "h4", 3, None)
            .await
            .expect("otp"),
        OtpOutcome::Missing
    );

    // Refresh tokens rotate; a rotated one presented again revokes the whole family.
    engine
        .store_refresh(&ann.id, "r1", TTL)
        .await
        .expect("store");
    engine
        .store_refresh(&ann.id, "s1", TTL)
        .await
        .expect("store");
    engine
        .store_refresh(&bob.id, "b1", TTL)
        .await
        .expect("store");
    assert_eq!(
        rotate(engine, "r1", "r2", Duration::ZERO).await,
        RefreshOutcome::Rotated(ann.id.clone())
    );
    assert_eq!(
        rotate(engine, "r2", "r3", Duration::ZERO).await,
        RefreshOutcome::Rotated(ann.id.clone())
    );
    assert_eq!(
        rotate(engine, "r1", "x", Duration::ZERO).await,
        RefreshOutcome::Reused(ann.id.clone())
    );
    for dead in ["r3", "s1", "x"] {
        assert_eq!(
            rotate(engine, dead, "y", Duration::ZERO).await,
            RefreshOutcome::Unknown,
            "{dead} was revoked with its family"
        );
    }
    assert_eq!(
        rotate(engine, "b1", "b2", Duration::ZERO).await,
        RefreshOutcome::Rotated(bob.id.clone()),
        "other users keep their sessions"
    );
    assert_eq!(
        rotate(engine, "never", "z", Duration::ZERO).await,
        RefreshOutcome::Unknown
    );

    // Logout revokes one token, and is harmless twice.
    engine.revoke_refresh("b2").await.expect("revoke");
    engine.revoke_refresh("b2").await.expect("revoke");
    assert_eq!(
        rotate(engine, "b2", "b3", Duration::ZERO).await,
        RefreshOutcome::Unknown
    );

    // Refresh tokens expire.
    engine
        .store_refresh(&cat.id, "c1", Duration::from_millis(50))
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        rotate(engine, "c1", "c2", Duration::ZERO).await,
        RefreshOutcome::Unknown
    );
}

/// Rotates `old` into `new` with a grace window of `grace`, sealing `new` as-is.
async fn rotate(engine: &dyn Engine, old: &str, new: &str, grace: Duration) -> RefreshOutcome {
    engine
        .rotate_refresh(Rotation {
            old_hash: old,
            new_hash: new,
            sealed_next: &format!("sealed-{new}"),
            ttl: TTL,
            grace,
            now: 1_000,
        })
        .await
        .expect("rotate")
}

/// Issue 15, finding 9, in both engines: a token presented again within the grace window gets
/// its rotation's sealed successor and revokes nothing; after the window it is theft, which
/// revokes the family and records when.
async fn refresh_grace_suite(engine: &dyn Engine) {
    let dee = account("u-dee", "dee@example.com");
    assert!(engine.create_account(&dee).await.expect("create"));
    engine
        .store_refresh(&dee.id, "d1", TTL)
        .await
        .expect("store");
    let grace = Duration::from_millis(300);
    assert_eq!(
        rotate(engine, "d1", "d2", grace).await,
        RefreshOutcome::Rotated(dee.id.clone())
    );
    for _ in 0..2 {
        assert_eq!(
            rotate(engine, "d1", "other", grace).await,
            RefreshOutcome::Repeated {
                user: dee.id.clone(),
                sealed_next: "sealed-d2".into()
            },
            "a retry within the window"
        );
    }
    assert_eq!(engine.revoked_at(&dee.id).await.expect("revoked"), None);
    assert_eq!(
        rotate(engine, "d2", "d3", grace).await,
        RefreshOutcome::Rotated(dee.id.clone()),
        "the successor is live"
    );
    tokio::time::sleep(grace + Duration::from_millis(200)).await;
    assert_eq!(
        rotate(engine, "d1", "x", grace).await,
        RefreshOutcome::Reused(dee.id.clone())
    );
    assert_eq!(
        rotate(engine, "d3", "y", grace).await,
        RefreshOutcome::Unknown,
        "the family is revoked"
    );
    assert_eq!(
        engine.revoked_at(&dee.id).await.expect("revoked"),
        Some(1_000)
    );
}

#[tokio::test]
async fn memory_engine_keeps_accounts() {
    let engine = MemoryEngine::new(settings(), Arc::new(Hub::new()));
    account_suite(&engine).await;
    refresh_grace_suite(&engine).await;
}

#[tokio::test]
async fn redis_engine_keeps_accounts() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let engine = redis_engine(&redis, &stop).await;
    account_suite(&engine).await;
    refresh_grace_suite(&engine).await;

    // What sits in Redis is what docs/REDIS.md says.
    let mut conn = redis.client().await;
    let fields: std::collections::HashMap<String, String> =
        redis::AsyncCommands::hgetall(&mut conn, "user:ann@x.io")
            .await
            .expect("hgetall");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["createdAt", "id", "name", "passwordHash", "verified"]
    );
    assert_eq!(fields["verified"], "1");
    let email: String = redis::AsyncCommands::get(&mut conn, "user-id:u-ann")
        .await
        .expect("get");
    assert_eq!(email, "ann@x.io");
    stop.cancel();
}

/// The same contract on a 3-master Redis Cluster, where an address's keys, a user's keys and
/// the refresh-token keys are three slots (each script touching one).
#[tokio::test]
async fn redis_cluster_keeps_accounts() {
    let cluster = common::cluster::RedisCluster::start(3, 0);
    let stop = CancellationToken::new();
    let engine = engine_on(cluster.url(), drawbridge::config::RedisMode::Cluster, &stop).await;
    account_suite(&engine).await;
    refresh_grace_suite(&engine).await;
    let mut conn = cluster.client().await;
    let verified: String = redis::AsyncCommands::hget(&mut conn, "user:{ann@x.io}", "verified")
        .await
        .expect("hget");
    assert_eq!(verified, "1");
    let email: String = redis::AsyncCommands::get(&mut conn, "user-id:{u-ann}")
        .await
        .expect("get");
    assert_eq!(email, "ann@x.io");
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: real instances, a real redis-server, and a real SMTP listener.

use common::{Client, Instance, SECRET, config, header, http};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A one-purpose SMTP server on `127.0.0.1:0`: accepts every message and hands over its DATA.
struct SmtpSink {
    port: u16,
    mails: mpsc::Receiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let (tx, mails) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                sessions.spawn(smtp_session(socket, tx.clone()));
            }
        });
        Self { port, mails, task }
    }

    /// The next message's DATA (headers and body).
    async fn next_mail(&mut self) -> String {
        tokio::time::timeout(common::WAIT, self.mails.recv())
            .await
            .expect("a mail in time")
            .expect("sink open")
    }

    /// The code in the next message, after checking it went to `to`.
    async fn next_code(&mut self, to: &str) -> String {
        let mail = self.next_mail().await;
        assert!(
            mail.lines()
                .any(|l| l.to_lowercase().starts_with("to:") && l.contains(to)),
            "mail not addressed to {to}: {mail}"
        );
        let subject = mail
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("a subject");
        let code = subject.rsplit(' ').next().expect("code").trim().to_owned();
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "{subject}"
        );
        assert!(mail.contains(&code), "the body carries the code too");
        code
    }

    /// Asserts no message arrives for a moment.
    async fn expect_none(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(300), self.mails.recv()).await;
        assert!(got.is_err(), "unexpected mail: {got:?}");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn smtp_session(socket: TcpStream, mails: mpsc::Sender<String>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(buf) = data.as_mut() {
            if line == "." {
                let _ = mails.send(std::mem::take(buf)).await;
                data = None;
                if write.write_all(b"250 queued\r\n").await.is_err() {
                    return;
                }
            } else {
                buf.push_str(line.strip_prefix('.').unwrap_or(&line));
                buf.push('\n');
            }
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
            "DATA" => {
                data = Some(String::new());
                b"354 end with <CRLF>.<CRLF>\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 ok\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// An instance's configuration with mail going to `smtp` (and, without Redis, the embedded
/// engine).
fn mail_config(
    redis: Option<&RedisServer>,
    smtp: &SmtpSink,
    instance: &str,
) -> drawbridge::config::Config {
    drawbridge::config::Config {
        smtp_host: "127.0.0.1".into(),
        smtp_port: smtp.port,
        smtp_tls: "none".into(),
        smtp_from: "drawbridge tests <tests@drawbridge.test>".into(),
        ..config(redis, instance)
    }
}

/// A request with any headers and body: status, headers (lower-cased), JSON body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = common::http_raw(addr, method, path, headers, body).await;
    (
        status,
        headers,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// POSTs JSON, optionally with a bearer token: status and JSON body.
async fn post(addr: SocketAddr, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let (status, _, body) = http(addr, "POST", path, bearer, Some(&body)).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", path, bearer, None).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Exchanges a refresh token: status and JSON body.
async fn refresh(addr: SocketAddr, token: &str) -> (u16, Value) {
    post(
        addr,
        "/api/v1/auth/refresh",
        None,
        json!({"refreshToken": token}),
    )
    .await
}

async fn sign_in(addr: SocketAddr, email: &str, password: &str) -> (u16, Value) {
    post(
        addr,
        "/api/v1/auth/signin",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// A six-digit code that is not `code`.
fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// Asserts a 429 in the shape every limited route uses: `limit` per window of `window_secs`,
/// nothing left, and when to come back.
fn assert_rate_limited(
    (status, headers, body): (u16, Vec<(String, String)>, String),
    limit: u32,
    window_secs: u64,
) {
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    let number = |name: &str| header(&headers, name).and_then(|v| v.parse::<u64>().ok());
    assert!(
        number("retry-after").is_some_and(|s| (1..=window_secs).contains(&s)),
        "{headers:?}"
    );
    assert_eq!(number("ratelimit-limit"), Some(u64::from(limit)));
    assert_eq!(number("ratelimit-remaining"), Some(0));
    assert!(
        number("ratelimit-reset").is_some_and(|s| (1..=window_secs).contains(&s)),
        "{headers:?}"
    );
}

/// Signs up and returns the verification token.
async fn sign_up(addr: SocketAddr, name: &str, email: &str, password: &str) -> String {
    let (status, body) = post(
        addr,
        "/api/v1/auth/signup",
        None,
        json!({"name": name, "email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    s(&body["verificationToken"]).to_owned()
}

async fn redis_keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let mut conn = redis.client().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.sort();
    keys
}

#[tokio::test]
async fn sign_up_verify_connect_refresh_reuse_and_logout() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    // No grace window: an immediate reuse is theft here (the window has its own test).
    let no_grace = |instance| drawbridge::config::Config {
        refresh_grace_secs: 0,
        ..mail_config(Some(&redis), &smtp, instance)
    };
    let a = Instance::start(no_grace("inst-a")).await;
    let b = Instance::start(no_grace("inst-b")).await;

    // Sign up on one instance; the code arrives by e-mail.
    let verification = sign_up(a.addr, "Ann", "Ann@Example.com", "correct horse").await;
    let code = smtp.next_code("ann@example.com").await;

    // Verify on the other (the Canvas alias): signed in, with the protocol's shape.
    let (status, body) = post(
        b.addr,
        "/api/home/verify-otp",
        Some(&verification),
        json!({"otp": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user = body["user"].clone();
    assert_eq!(user["name"], "Ann");
    assert_eq!(user["email"], "ann@example.com");
    let user_id = s(&user["userId"]).to_owned();
    let access = s(&body["accessToken"]).to_owned();
    let refresh1 = s(&body["refreshToken"]).to_owned();
    let stored = redis_keys(&redis, "refresh:*").await;
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].contains(&refresh1),
        "only the token's hash is stored"
    );

    // Both instances, under both spellings, know who the access token is.
    for (addr, path) in [(a.addr, "/api/v1/me"), (b.addr, "/api/user/me")] {
        let (status, me) = get(addr, path, Some(&access)).await;
        assert_eq!(status, 200, "{path}: {me}");
        assert_eq!(me["success"], true);
        assert_eq!(me["user"]["userId"], user_id.as_str(), "{path}");
        assert_eq!(me["user"]["email"], "ann@example.com", "{path}");
    }

    // The access token opens a WebSocket, and the room sees the account's id and name.
    let room = common::create_room_as(a.addr, &access).await;
    let mut ws = Client::connect_with(b.addr, "ann", &access).await;
    let state = ws.join(&room).await;
    assert_eq!(state["payload"]["users"][0]["userId"], user_id.as_str());
    assert_eq!(state["payload"]["users"][0]["username"], "Ann");
    ws.close().await;

    // Refresh rotates: a new pair, and the old refresh token is dead.
    let (status, body) = refresh(b.addr, &refresh1).await;
    assert_eq!(status, 200, "{body}");
    let refresh2 = s(&body["refreshToken"]).to_owned();
    assert_ne!(refresh2, refresh1);
    assert_eq!(body["user"]["userId"], user_id.as_str());
    let access2 = s(&body["accessToken"]).to_owned();
    let (status, me) = get(a.addr, "/api/v1/me", Some(&access2)).await;
    assert_eq!(
        (status, &me["user"]["userId"]),
        (200, &json!(user_id)),
        "{me}"
    );

    // Presenting the old one again is theft: 401, and the whole family goes, refresh2 too.
    let (status, body) = post(
        a.addr,
        "/api/home/refresh-token",
        None,
        json!({"refreshToken": refresh1}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "TOKEN_REUSED");
    let (status, body) = refresh(b.addr, &refresh2).await;
    assert_eq!(
        (status, s(&body["code"])),
        (401, "UNAUTHORIZED"),
        "the family was revoked: {body}"
    );
    assert!(redis_keys(&redis, "refresh:*").await.is_empty());

    // Sign in again (the Canvas alias); logout revokes that session's refresh token.
    let (status, body) = post(
        a.addr,
        "/api/home/signin",
        None,
        json!({"email": "ann@example.com", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["userId"], user_id.as_str());
    let refresh3 = s(&body["refreshToken"]).to_owned();
    assert_eq!(redis_keys(&redis, "refresh:*").await.len(), 1);
    let (status, body) = post(
        b.addr,
        "/api/user/logout",
        None,
        json!({"refreshToken": refresh3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = refresh(a.addr, &refresh3).await;
    assert_eq!(
        (status, s(&body["code"])),
        (401, "UNAUTHORIZED"),
        "logged out"
    );
    assert!(redis_keys(&redis, "refresh:*").await.is_empty());
    smtp.expect_none().await;
}

#[tokio::test]
async fn two_instances_share_the_sign_in_and_room_limits() {
    let redis = RedisServer::start();
    let smtp = SmtpSink::start().await;
    let room_limited = |instance| drawbridge::config::Config {
        room_rate_limit: 2,
        ..mail_config(Some(&redis), &smtp, instance)
    };
    let a = Instance::start(room_limited("inst-a")).await;
    let b = Instance::start(room_limited("inst-b")).await;
    let attempt = json!({"email": "nobody@example.com", "password": "wrong password"});
    for n in 1..=10u32 {
        let addr = if n % 2 == 0 { a.addr } else { b.addr };
        let (status, headers, body) =
            http(addr, "POST", "/api/v1/auth/signin", None, Some(&attempt)).await;
        assert_eq!(status, 401, "attempt {n}: {body}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("10"));
        assert_eq!(
            header(&headers, "ratelimit-remaining"),
            Some((10 - n).to_string().as_str())
        );
    }
    for addr in [a.addr, b.addr] {
        let answer = http(addr, "POST", "/api/v1/auth/signin", None, Some(&attempt)).await;
        assert_rate_limited(answer, 10, 900);
    }
    // Sign-up counts separately, so a locked-out sign-in does not block it.
    sign_up(b.addr, "Bo", "bo@example.com", "12345678").await;

    // Room creation: 2 per window per IP here, whichever instance is asked.
    let token = common::token("creator", "C");
    for addr in [a.addr, b.addr] {
        let (status, headers, body) = http(addr, "POST", "/api/v1/rooms", Some(&token), None).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("2"));
    }
    let answer = http(a.addr, "POST", "/api/user/rooms", Some(&token), None).await;
    assert_rate_limited(answer, 2, 3600);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let redis = RedisServer::start();
    let smtp = SmtpSink::start().await;
    let limited = |trusted: &str, instance| drawbridge::config::Config {
        auth_rate_limit: 1,
        trusted_proxies: trusted.into(),
        ..mail_config(Some(&redis), &smtp, instance)
    };
    let attempt = r#"{"email":"x@example.com","password":"wrong password"}"#;
    let signin = |addr, forwarded| async move {
        request(
            addr,
            "POST",
            "/api/v1/auth/signin",
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", forwarded),
            ],
            Some(attempt),
        )
        .await
        .0
    };
    // Behind a trusted proxy (this test's loopback peer), each forwarded client has its own count.
    let proxied = Instance::start(limited("127.0.0.0/8, ::1", "proxied")).await;
    assert_eq!(signin(proxied.addr, "203.0.113.1").await, 401);
    assert_eq!(signin(proxied.addr, "203.0.113.2").await, 401);
    assert_eq!(signin(proxied.addr, "203.0.113.1").await, 429);
    // A client cannot choose its address by prepending to the header.
    assert_eq!(signin(proxied.addr, "198.51.100.7, 203.0.113.2").await, 429);
    assert_eq!(
        redis_keys(&redis, "rl:signin:*").await,
        ["rl:signin:203.0.113.1", "rl:signin:203.0.113.2"]
    );
    drop(proxied);

    // From an untrusted peer the header is ignored: everyone is the peer.
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut redis.client().await)
        .await
        .expect("flush");
    let direct = Instance::start(limited("", "direct")).await;
    assert_eq!(signin(direct.addr, "203.0.113.1").await, 401);
    assert_eq!(signin(direct.addr, "203.0.113.2").await, 429);
    assert_eq!(
        redis_keys(&redis, "rl:signin:*").await,
        ["rl:signin:127.0.0.1"]
    );
}

#[tokio::test]
async fn code_checks_are_limited_per_ip_across_instances() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    let limited = |instance| drawbridge::config::Config {
        verify_rate_limit: 3,
        ..mail_config(Some(&redis), &smtp, instance)
    };
    let a = Instance::start(limited("inst-a")).await;
    let b = Instance::start(limited("inst-b")).await;
    let verification = sign_up(a.addr, "Di", "di@example.com", "correct horse").await;
    let code = smtp.next_code("di@example.com").await;
    let verify = |addr, otp: &str| {
        let token = verification.clone();
        let body = json!({"otp": otp});
        async move {
            http(
                addr,
                "POST",
                "/api/v1/auth/verify-otp",
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    let wrong = wrong_code(&code);
    for n in 1..=3u32 {
        let addr = if n % 2 == 0 { a.addr } else { b.addr };
        let (status, headers, body) = verify(addr, wrong).await;
        assert_eq!(status, 400, "attempt {n}: {body}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("3"));
        assert_eq!(
            header(&headers, "ratelimit-remaining"),
            Some((3 - n).to_string().as_str())
        );
    }

    // Over the limit even the right code is refused, on either instance, before it is checked.
    for addr in [a.addr, b.addr] {
        assert_rate_limited(verify(addr, &code).await, 3, 900);
    }
    let mut conn = redis.client().await;
    let (tries, verified): (String, String) = redis::pipe()
        .hget("otp:di@example.com", "tries")
        .hget("user:di@example.com", "verified")
        .query_async(&mut conn)
        .await
        .expect("hget");
    assert_eq!(
        (tries.as_str(), verified.as_str()),
        ("3", "0"),
        "the refused checks spent no try and verified nothing"
    );
    assert_eq!(
        redis_keys(&redis, "rl:verify:*").await,
        ["rl:verify:127.0.0.1"]
    );
}

#[tokio::test]
async fn bad_inputs_are_refused_and_change_nothing() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    let a = Instance::start(drawbridge::config::Config {
        auth_rate_limit: 100,
        verify_rate_limit: 100,
        ..mail_config(Some(&redis), &smtp, "inst-a")
    })
    .await;
    let signup = |body: Value| post(a.addr, "/api/v1/auth/signup", None, body);

    // Sign-up: every bad field is named, and nothing is stored.
    let (status, body) = signup(json!({})).await;
    assert_eq!(status, 400, "{body}");
    let message = s(&body["message"]);
    for field in [
        "name is required",
        "email is required",
        "password is required",
    ] {
        assert!(message.contains(field), "{message}");
    }
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "BAD_REQUEST");
    let (status, body) =
        signup(json!({"name": "Ann", "email": "ann@", "password": "correct horse"})).await;
    assert_eq!(status, 400);
    assert!(s(&body["message"]).contains("email must be a valid address"));
    let (status, body) =
        signup(json!({"name": "Ann", "email": "ann@example.com", "password": "short"})).await;
    assert_eq!(status, 400);
    assert!(s(&body["message"]).contains("password must be"));
    let (status, body) =
        signup(json!({"name": "", "email": "ann@example.com", "password": "correct horse"})).await;
    assert_eq!(status, 400);
    assert!(s(&body["message"]).contains("name must be"));
    let (status, body) =
        signup(json!({"name": "Ann", "email": 7, "password": "correct horse"})).await;
    assert_eq!(status, 400, "{body}");
    for (headers, raw) in [
        (&[("Content-Type", "application/json")][..], "{not json"),
        (
            &[][..],
            r#"{"name":"Ann","email":"ann@example.com","password":"correct horse"}"#,
        ),
    ] {
        let (status, _, body) =
            request(a.addr, "POST", "/api/v1/auth/signup", headers, Some(raw)).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            s(&body["message"]).contains("{name, email, password}"),
            "{body}"
        );
    }
    assert!(redis_keys(&redis, "user*").await.is_empty());
    assert!(redis_keys(&redis, "otp:*").await.is_empty());
    smtp.expect_none().await;

    // A good sign-up. (The same address again would replace it while it is unverified:
    // an_unverified_sign_up_is_replaced_by_a_later_one; a verified one's is 409.)
    let verification = sign_up(a.addr, "Ann", "ann@example.com", "correct horse").await;
    let code = smtp.next_code("ann@example.com").await;
    let mut conn = redis.client().await;

    let verify = |token: Option<String>, body: Value| async move {
        post(a.addr, "/api/v1/auth/verify-otp", token.as_deref(), body).await
    };
    let verified = || async {
        let mut conn = redis.client().await;
        let v: String = redis::AsyncCommands::hget(&mut conn, "user:ann@example.com", "verified")
            .await
            .expect("hget");
        v == "1"
    };

    // Tokens that are not this address's verification token: missing, an access token,
    // forged with another secret, `alg: none`, garbage.
    let access = common::token("someone", "S");
    let forged = drawbridge::domain::token::TokenKeys::new(b"not-the-secret-at-all", 900)
        .issue_verification("ann@example.com", 600, drawbridge::unix_now())
        .expect("forge");
    let payload = verification.split('.').nth(1).expect("payload");
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    for token in [
        None,
        Some(access.clone()),
        Some(forged),
        Some(alg_none),
        Some("x.y.z".into()),
    ] {
        let (status, body) = verify(token.clone(), json!({"otp": code})).await;
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    assert!(!verified().await);

    // Bad codes: not six digits (no try spent), then wrong ones (tries counted down).
    for bad in [
        json!({}),
        json!({"otp": "12345"}),
        json!({"otp": "abcdef"}),
        json!({"otp": true}),
    ] {
        let (status, body) = verify(Some(verification.clone()), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = verify(
        Some(verification.clone()),
        json!({"otp": wrong_code(&code)}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "INVALID_OTP");
    assert!(s(&body["message"]).contains("4 more tries"), "{body}");
    assert!(!verified().await);

    // An expired code is refused even when right.
    let _: () = redis::AsyncCommands::pexpire(&mut conn, "otp:ann@example.com", 1)
        .await
        .expect("expire");
    common::wait_until("the code has expired", common::WAIT, || async {
        redis_keys(&redis, "otp:*").await.is_empty()
    })
    .await;
    let (status, body) = verify(Some(verification.clone()), json!({"otp": code})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "OTP_EXPIRED");
    assert!(!verified().await);

    // Unverified sign-in: 403, a clear message, a fresh code and token. Wrong password: 401.
    let (status, body) = sign_in(a.addr, "ann@example.com", "correct horse").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "UNVERIFIED");
    assert!(s(&body["message"]).contains("verify your e-mail"));
    assert_eq!(body["user"]["email"], "ann@example.com");
    let verification = s(&body["verificationToken"]).to_owned();
    let code = smtp.next_code("ann@example.com").await;
    for (email, password) in [
        ("ann@example.com", "wrong horse"),
        ("nobody@example.com", "correct horse"),
        ("not an address", "correct horse"),
    ] {
        let (status, body) = sign_in(a.addr, email, password).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], "wrong e-mail or password");
    }
    let (status, _) = post(
        a.addr,
        "/api/v1/auth/signin",
        None,
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 400);
    smtp.expect_none().await;

    // Five wrong tries kill the code: even the right one is refused afterwards.
    let wrong = wrong_code(&code);
    for left in (1..=4).rev() {
        let (status, body) = verify(Some(verification.clone()), json!({"otp": wrong})).await;
        assert_eq!((status, s(&body["code"])), (400, "INVALID_OTP"), "{body}");
        assert!(
            s(&body["message"]).contains(&format!("{left} more tries")),
            "{body}"
        );
    }
    let (status, body) = verify(Some(verification.clone()), json!({"otp": wrong})).await;
    assert_eq!((status, s(&body["code"])), (400, "OTP_LOCKED"));
    let (status, body) = verify(Some(verification.clone()), json!({"otp": code})).await;
    assert_eq!((status, s(&body["code"])), (400, "OTP_LOCKED"));
    assert!(!verified().await);

    // A fresh code, given as a number, verifies.
    let (status, body) = sign_in(a.addr, "ann@example.com", "correct horse").await;
    assert_eq!((status, s(&body["code"])), (403, "UNVERIFIED"), "{body}");
    let verification = s(&body["verificationToken"]).to_owned();
    let code = smtp.next_code("ann@example.com").await;
    let numeric: Value = if code.starts_with('0') {
        json!(code)
    } else {
        json!(code.parse::<u32>().expect("digits"))
    };
    let (status, body) = verify(Some(verification.clone()), json!({"otp": numeric})).await;
    assert_eq!(status, 200, "{body}");
    assert!(verified().await);
    let access = s(&body["accessToken"]).to_owned();
    let refresh_token = s(&body["refreshToken"]).to_owned();
    let (status, body) = verify(Some(verification), json!({"otp": code})).await;
    assert_eq!((status, s(&body["code"])), (409, "ALREADY_VERIFIED"));

    // Tokens used for what they are not: each 401, and the refresh token still works after.
    for not_refresh in [access.as_str(), "garbage", &"x".repeat(600)] {
        let (status, body) = refresh(a.addr, not_refresh).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, _) = post(a.addr, "/api/v1/auth/refresh", None, json!({})).await;
    assert_eq!(status, 400);
    for not_access in [refresh_token.as_str(), verification_token().as_str()] {
        let (status, body) = get(a.addr, "/api/v1/me", Some(not_access)).await;
        assert_eq!(status, 401, "{body}");
        let (status, _, body) = http(a.addr, "POST", "/api/v1/rooms", Some(not_access), None).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(get(a.addr, "/api/v1/me", None).await.0, 401);
    let (status, _) = post(a.addr, "/api/v1/auth/logout", None, json!({})).await;
    assert_eq!(status, 400);
    let (status, body) = refresh(a.addr, &refresh_token).await;
    assert_eq!(
        status, 200,
        "refresh token unharmed by the refused attempts: {body}"
    );
}

/// A valid verification token, to present where an access token is required.
fn verification_token() -> String {
    drawbridge::domain::token::TokenKeys::new(SECRET.as_bytes(), 900)
        .issue_verification("ann@example.com", 600, drawbridge::unix_now())
        .expect("token")
}

#[tokio::test]
async fn the_embedded_engine_serves_the_same_flow() {
    let mut smtp = SmtpSink::start().await;
    let a = Instance::start(drawbridge::config::Config {
        refresh_grace_secs: 0,
        ..mail_config(None, &smtp, "solo")
    })
    .await;
    let verification = sign_up(a.addr, "Cy", "cy@example.com", "correct horse").await;
    let code = smtp.next_code("cy@example.com").await;
    let (status, body) = post(
        a.addr,
        "/api/v1/auth/verify-otp",
        Some(&verification),
        json!({"otp": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user_id = body["user"]["userId"].clone();
    let refresh1 = s(&body["refreshToken"]).to_owned();
    let (status, body) = refresh(a.addr, &refresh1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["userId"], user_id);
    let refresh2 = s(&body["refreshToken"]).to_owned();
    let (status, body) = refresh(a.addr, &refresh1).await;
    assert_eq!((status, s(&body["code"])), (401, "TOKEN_REUSED"));
    let (status, body) = refresh(a.addr, &refresh2).await;
    assert_eq!(
        (status, s(&body["code"])),
        (401, "UNAUTHORIZED"),
        "the family was revoked"
    );
    a.stop().await;
}

/// Signs up and verifies `email` on `addr`: the refresh token.
async fn verified(addr: SocketAddr, smtp: &mut SmtpSink, name: &str, email: &str) -> String {
    let verification = sign_up(addr, name, email, "correct horse").await;
    let code = smtp.next_code(email).await;
    let (status, body) = post(
        addr,
        "/api/v1/auth/verify-otp",
        Some(&verification),
        json!({"otp": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s(&body["refreshToken"]).to_owned()
}

/// Issue 15, finding 10: refreshes are limited per token, so colleagues behind one NAT do not
/// use up each other's budget; one token hammered is limited.
#[tokio::test]
async fn refresh_is_limited_per_token_not_per_ip() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    let a = Instance::start(drawbridge::config::Config {
        refresh_rate_limit: 2,
        ..mail_config(Some(&redis), &smtp, "inst-a")
    })
    .await;
    let mut tokens = Vec::new();
    for (name, email) in [("Ann", "ann@example.com"), ("Bo", "bo@example.com")] {
        tokens.push(verified(a.addr, &mut smtp, name, email).await);
    }
    // Six refreshes from one IP, three per user, each of a fresh token: all fine.
    for _ in 0..3 {
        for token in &mut tokens {
            let (status, body) = refresh(a.addr, token).await;
            assert_eq!(status, 200, "{body}");
            *token = s(&body["refreshToken"]).to_owned();
        }
    }
    // One made-up token presented over and over: refused, then limited.
    let made_up = "f".repeat(64);
    for _ in 0..2 {
        assert_eq!(refresh(a.addr, &made_up).await.0, 401);
    }
    let limited = common::http_raw(
        a.addr,
        "POST",
        "/api/v1/auth/refresh",
        &[("Content-Type", "application/json")],
        Some(&json!({"refreshToken": made_up}).to_string()),
    )
    .await;
    assert_rate_limited(limited, 2, 900);
}

/// Issue 15, finding 9, over HTTP and a socket: two tabs refreshing one token both end up with
/// the same live successor; the token presented after the grace window is theft, the family is
/// revoked, and a socket opened with an access token issued before that is closed with 1008 at
/// its next frame.
#[tokio::test]
async fn a_refresh_retried_within_the_grace_window_gets_the_same_token() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    let config = |instance| drawbridge::config::Config {
        refresh_grace_secs: 1,
        revocation_check_secs: 0,
        ..mail_config(Some(&redis), &smtp, instance)
    };
    let a = Instance::start(config("inst-a")).await;
    let b = Instance::start(config("inst-b")).await;
    let verification = sign_up(a.addr, "Ann", "ann@example.com", "correct horse").await;
    let code = smtp.next_code("ann@example.com").await;
    let (status, body) = post(
        a.addr,
        "/api/v1/auth/verify-otp",
        Some(&verification),
        json!({"otp": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = s(&body["accessToken"]).to_owned();
    let first = s(&body["refreshToken"]).to_owned();
    let room = common::create_room_as(a.addr, &access).await;
    let mut socket = common::Client::connect_with(b.addr, "ann", &access).await;
    socket.join(&room).await;

    // Two tabs (on two instances) refresh the same token at once.
    let (one, two) = tokio::join!(refresh(a.addr, &first), refresh(b.addr, &first));
    assert_eq!((one.0, two.0), (200, 200), "{one:?} {two:?}");
    let next = s(&one.1["refreshToken"]).to_owned();
    assert_eq!(
        s(&two.1["refreshToken"]),
        next,
        "both get the same successor"
    );
    assert_ne!(next, first);
    let (status, body) = refresh(a.addr, &next).await;
    assert_eq!(status, 200, "the successor is live: {body}");
    let third = s(&body["refreshToken"]).to_owned();

    // After the window, the first token again is theft: the family goes.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = refresh(a.addr, &first).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "TOKEN_REUSED");
    assert_eq!(
        refresh(a.addr, &third).await.0,
        401,
        "the family is revoked"
    );

    // The socket opened with an access token of the revoked family stops at its next frame.
    socket.draw(&room, "after-theft").await;
    let close = socket.until("CLOSE").await;
    assert_eq!(close["code"], 1008);
}

/// Issue 15, finding 7: an unverified sign-up cannot hold an address. The real owner signs up
/// again and gets it; what was sent for the first sign-up cannot verify the second (nor the
/// other way round), so the squatter cannot have the owner verify an account the squatter
/// knows the password of. A verified address stays taken.
#[tokio::test]
async fn an_unverified_sign_up_is_replaced_by_a_later_one() {
    let redis = RedisServer::start();
    let mut smtp = SmtpSink::start().await;
    let a = Instance::start(mail_config(Some(&redis), &smtp, "inst-a")).await;
    let squatter = sign_up(a.addr, "Squatter", "ann@example.com", "squatter pw 1").await;
    let squatter_code = smtp.next_code("ann@example.com").await;
    let owner = sign_up(a.addr, "Ann", "ann@example.com", "owner password").await;
    let owner_code = smtp.next_code("ann@example.com").await;
    let verify = |token: String, code: String| async move {
        post(
            a.addr,
            "/api/v1/auth/verify-otp",
            Some(&token),
            json!({"otp": code}),
        )
        .await
    };
    // The squatter's token with the owner's code (which reached the owner's mailbox): refused.
    let (status, body) = verify(squatter.clone(), owner_code.clone()).await;
    assert_eq!(status, 401, "{body}");
    // The squatter's own code died with the replaced account.
    let (status, body) = verify(owner.clone(), squatter_code).await;
    assert_ne!(status, 200, "{body}");
    let (status, body) = verify(owner, owner_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Ann");
    assert_eq!(
        sign_in(a.addr, "ann@example.com", "owner password").await.0,
        200
    );
    assert_eq!(
        sign_in(a.addr, "ann@example.com", "squatter pw 1").await.0,
        401
    );
    // Verified, the address is taken for good.
    let (status, body) = post(
        a.addr,
        "/api/v1/auth/signup",
        None,
        json!({"name": "Late", "email": "ann@example.com", "password": "another password"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

/// Issue 15, finding 7: password reset by e-mailed code, on both engines. No answer tells
/// whether an address has an account; the code has the verification code's tries; a reset
/// signs every session out.
#[tokio::test]
async fn password_reset_by_emailed_code() {
    let redis = RedisServer::start();
    for engine in ["redis", "memory"] {
        let mut smtp = SmtpSink::start().await;
        let a = Instance::start(mail_config(
            (engine == "redis").then_some(&redis),
            &smtp,
            "inst-a",
        ))
        .await;
        let refresh_token = verified(a.addr, &mut smtp, "Ann", "ann@example.com").await;
        let request = |email: &'static str| async move {
            post(
                a.addr,
                "/api/v1/auth/reset/request",
                None,
                json!({"email": email}),
            )
            .await
        };
        let confirm = |email: &'static str, code: String, password: &'static str| async move {
            post(
                a.addr,
                "/api/v1/auth/reset/confirm",
                None,
                json!({"email": email, "code": code, "password": password}),
            )
            .await
        };
        let known = request("ann@example.com").await;
        let unknown = request("nobody@example.com").await;
        assert_eq!(known, unknown, "{engine}: the same answer either way");
        assert_eq!(known.0, 200);
        let code = smtp.next_code("ann@example.com").await;
        smtp.expect_none().await;

        let wrong = confirm(
            "ann@example.com",
            wrong_code(&code).into(),
            "new password 1",
        )
        .await;
        let nobody = confirm("nobody@example.com", code.clone(), "new password 1").await;
        assert_eq!(wrong.0, 400, "{engine}: {wrong:?}");
        assert_eq!(wrong, nobody, "{engine}: the same refusal either way");

        let (status, body) = confirm("ann@example.com", code, "new password 1").await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert_eq!(
            refresh(a.addr, &refresh_token).await.0,
            401,
            "{engine}: signed out"
        );
        assert_eq!(
            sign_in(a.addr, "ann@example.com", "correct horse").await.0,
            401
        );
        assert_eq!(
            sign_in(a.addr, "ann@example.com", "new password 1").await.0,
            200
        );

        // Five wrong tries kill a code, even for the right one after them.
        request("ann@example.com").await;
        let code = smtp.next_code("ann@example.com").await;
        for _ in 0..5 {
            let wrong = confirm(
                "ann@example.com",
                wrong_code(&code).into(),
                "new password 2",
            );
            assert_eq!(wrong.await.0, 400);
        }
        let (status, _) = confirm("ann@example.com", code, "new password 2").await;
        assert_eq!(status, 400, "{engine}: locked");
        assert_eq!(
            sign_in(a.addr, "ann@example.com", "new password 1").await.0,
            200
        );
    }
}
