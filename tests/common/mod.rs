//! Test harness: a real `redis-server` on a free loopback port, drawbridge instances served
//! in-process on `127.0.0.1:0`, and a WebSocket client speaking the v1 protocol.
//! Everything started here is stopped when its handle drops.

#![allow(dead_code)]

pub mod cluster;

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drawbridge::config::Config;
use drawbridge::domain::UserId;
use drawbridge::domain::token::TokenKeys;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private redis-server, persisting every write (AOF, fsync always) so a restart keeps
/// what was acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Further command-line options (`--replicaof` for a replica).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// A replica of `primary` (`--replicaof`), waited for until its first sync is done.
    pub fn start_replica(primary: &RedisServer) -> Self {
        let replica = Self::start_with(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        for _ in 0..100 {
            if replica
                .info("replication")
                .contains("master_link_status:up")
            {
                return replica;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the replica never synced");
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut server = Self {
            port: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            extra,
        };
        // A port found free can be taken before redis binds it; try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
            server.stop();
        }
        panic!("redis-server did not start (is it installed?)");
    }

    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One section of `INFO`, read with a blocking connection (empty if unreachable).
    pub fn info(&self, section: &str) -> String {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("INFO").arg(section).query::<String>(&mut c))
            .unwrap_or_default()
    }

    /// Kills the server abruptly, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "redis-server did not come back");
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Redis a suite runs against: one server, or a 3-master cluster when
/// `DRAWBRIDGE_REDIS_MODE=cluster` (`scripts/test.sh` runs the engine suite both ways).
pub enum AnyRedis {
    Single(RedisServer),
    Cluster(cluster::RedisCluster),
}

impl AnyRedis {
    pub fn from_env() -> Self {
        match std::env::var("DRAWBRIDGE_REDIS_MODE").as_deref() {
            Ok("cluster") => Self::Cluster(cluster::RedisCluster::start(3, 0)),
            Ok("standalone") | Err(_) => Self::Single(RedisServer::start()),
            Ok(other) => panic!("DRAWBRIDGE_REDIS_MODE={other}: not a redis_mode"),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Single(s) => s.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    pub fn mode(&self) -> drawbridge::config::RedisMode {
        match self {
            Self::Single(_) => drawbridge::config::RedisMode::Standalone,
            Self::Cluster(_) => drawbridge::config::RedisMode::Cluster,
        }
    }

    /// A connection for a test's own look at the keys (routed by slot on a cluster).
    pub async fn client(&self) -> AnyConn {
        match self {
            Self::Single(s) => AnyConn::Single(s.client().await),
            Self::Cluster(c) => AnyConn::Cluster(c.client().await),
        }
    }
}

#[derive(Clone)]
pub enum AnyConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for AnyConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A TCP proxy in front of Redis, as the address instances are configured with when Redis
/// fails over (a virtual IP, a DNS name, or a proxy that follows Sentinel). [`Proxy::switch`]
/// points it at another server and cuts every connection it carries, as a moved VIP does.
pub struct Proxy {
    pub port: u16,
    target: std::sync::Arc<std::sync::atomic::AtomicU16>,
    cut: std::sync::Arc<parking_lot::Mutex<tokio_util::sync::CancellationToken>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(target));
        let cut = std::sync::Arc::new(parking_lot::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let (to, cuts) = (target.clone(), cut.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::SeqCst);
                let cut = cuts.lock().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        Self {
            port,
            target,
            cut,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// New connections go to `port`; those open now are cut.
    pub fn switch(&self, port: u16) {
        self.target.store(port, std::sync::atomic::Ordering::SeqCst);
        std::mem::take(&mut *self.cut.lock()).cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut.lock().cancel();
    }
}

/// The configuration tests start from: fast pings, a short drain, no upgrade limit.
pub fn config(redis: Option<&RedisServer>, instance: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        redis_url: redis.map(RedisServer::url).unwrap_or_default(),
        jwt_secret: SECRET.into(),
        instance_id: instance.into(),
        drain_secs: 1,
        ws_upgrades_per_minute: 0,
        // Tests join and re-join far faster than people; the join-limit tests set their own.
        joins_per_minute: 1_000_000,
        join_burst: 10_000,
        // Tests make many rooms from one address; `tests/access.rs` sets its own limit.
        max_rooms_per_ip: 0,
        log: "warn".into(),
        ..Config::default()
    }
}

/// A drawbridge instance served in-process.
pub struct Instance {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    pub async fn start(config: Config) -> Self {
        let instance = Self::start_unready(config).await;
        wait_for_status(instance.addr, "/readyz", 200, WAIT).await;
        instance
    }

    /// Starts an instance without waiting for it to be ready (one whose Redis refuses it).
    pub async fn start_unready(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = drawbridge::app::run_with_listener(config, listener, stopped).await {
                panic!("instance failed: {e}");
            }
        });
        Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown (as SIGTERM does) and waits for the drain to finish.
    pub async fn stop(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

pub fn token(user: &str, name: &str) -> String {
    TokenKeys::new(SECRET.as_bytes(), 900)
        .issue(
            &UserId::new(user),
            name,
            None,
            true,
            false,
            drawbridge::unix_now(),
        )
        .expect("token")
}

/// Polls `check` every 20 ms until it holds; fails the test, naming `what`, after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of a plain `GET path` (0 when nothing answered).
pub async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    http(addr, "GET", path, None, None).await.0
}

/// Waits until `GET path` answers `status`.
pub async fn wait_for_status(addr: SocketAddr, path: &str, status: u16, within: Duration) {
    wait_until(&format!("{path} answers {status}"), within, || async move {
        get_status(addr, path).await == status
    })
    .await;
}

/// A header's value, by its lower-cased name, from what `http` returns.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Tries a WebSocket upgrade and drops the socket if one opens: 101, or the refusal's status and
/// (lower-cased) headers.
pub async fn upgrade(request: impl IntoClientRequest + Unpin) -> (u16, Vec<(String, String)>) {
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => (101, Vec::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), v)
                })
                .collect();
            (response.status().as_u16(), headers)
        }
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// A minimal HTTP/1.1 request: returns status, headers (lower-cased) and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    let authorization = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(value) = &authorization {
        headers.push(("Authorization", value.as_str()));
    }
    let body = body.map(Value::to_string);
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http_raw(addr, method, path, &headers, body.as_deref()).await
}

/// An instance's `/metrics`, as a lookup of one sample's value by its name.
pub async fn metrics(addr: SocketAddr) -> impl Fn(&str) -> f64 {
    let (status, _, text) = http(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "/metrics: {text}");
    move |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    }
}

/// An HTTP/1.1 request with any headers and a raw body; status 0 when nothing answered.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, Vec::new(), String::new());
    };
    let body = body.unwrap_or("");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, Vec::new(), String::new());
    }
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

pub async fn create_room(addr: SocketAddr) -> String {
    create_room_as(addr, &token("creator", "C")).await
}

/// Creates a room with the caller's access token and returns its id.
pub async fn create_room_as(addr: SocketAddr, access: &str) -> String {
    let (status, _, body) = http(addr, "POST", "/api/v1/rooms", Some(access), None).await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["data"]["roomId"].as_str().expect("roomId").to_owned()
}

/// Two instances on one redis-server.
pub async fn two_instances(redis: &RedisServer) -> (Instance, Instance) {
    (
        Instance::start(config(Some(redis), "inst-a")).await,
        Instance::start(config(Some(redis), "inst-b")).await,
    )
}

/// Two instances, a room, Alice joined on A and Bob on B.
pub struct Pair {
    pub a: Instance,
    pub b: Instance,
    pub room: String,
    pub alice: Client,
    pub bob: Client,
}

impl Pair {
    pub async fn start(redis: &RedisServer) -> Self {
        Self::start_with(|instance| config(Some(redis), instance)).await
    }

    /// With each instance's configuration made by `config` from its id.
    pub async fn start_with(config: impl Fn(&str) -> Config) -> Self {
        Self::start_speaking(config, false).await
    }

    /// Two instances, a room, Alice on a and Bob on b joined (speaking v1.1 when `v11`), and
    /// settled: Alice has seen Bob arrive, so tests start from a quiet room.
    async fn start_speaking(config: impl Fn(&str) -> Config, v11: bool) -> Self {
        let a = Instance::start(config("inst-a")).await;
        let b = Instance::start(config("inst-b")).await;
        let room = create_room(a.addr).await;
        let (mut alice, bob) = if v11 {
            (
                Client::joined_v11(a.addr, "alice", &room).await,
                Client::joined_v11(b.addr, "bob", &room).await,
            )
        } else {
            (
                Client::joined(a.addr, "alice", &room).await,
                Client::joined(b.addr, "bob", &room).await,
            )
        };
        assert_eq!(alice.until("USER_JOINED").await["payload"]["userId"], "bob");
        assert_eq!(
            alice.until("USER_COUNT_UPDATED").await["payload"]["count"],
            2
        );
        Self {
            a,
            b,
            room,
            alice,
            bob,
        }
    }
}

/// The stroke ids of an `INITIAL_STATE`, in board order.
pub fn stroke_ids(state: &Value) -> Vec<&str> {
    state["payload"]["strokes"]
        .as_array()
        .unwrap_or_else(|| panic!("no strokes in {state}"))
        .iter()
        .map(|s| s["strokeId"].as_str().unwrap_or_else(|| panic!("{s}")))
        .collect()
}

/// The user ids listed in an `INITIAL_STATE` or `REPLAY`, sorted.
pub fn user_ids(state: &Value) -> Vec<&str> {
    let mut users: Vec<&str> = state["payload"]["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {state}"))
        .iter()
        .map(|u| u["userId"].as_str().unwrap_or_else(|| panic!("{u}")))
        .collect();
    users.sort_unstable();
    users
}

/// A client WebSocket, for tests that drive one by hand.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the v1 protocol.
pub struct Client {
    pub user: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects as `user` (named `name-<user>`) with a token made here.
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        Self::connect_with(addr, user, &token(user, &format!("name-{user}"))).await
    }

    /// Connects with an access token from elsewhere; `label` names the client in failures.
    pub async fn connect_with(addr: SocketAddr, label: &str, access: &str) -> Self {
        let url = format!("ws://{addr}/ws?token={access}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Self {
            user: label.to_owned(),
            ws,
        }
    }

    /// Connects as `user` and joins `room`.
    pub async fn joined(addr: SocketAddr, user: &str, room: &str) -> Self {
        let mut client = Self::connect(addr, user).await;
        client.join(room).await;
        client
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON, or the close frame as `{"type":"CLOSE","code":..}`.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.ok()??;
            match msg {
                Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
                Ok(Message::Close(frame)) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    return Some(json!({"type": "CLOSE", "code": code}));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next frame, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self
            .next()
            .await
            .unwrap_or_else(|| panic!("{}: no frame, wanted {kind}", self.user));
        assert_eq!(v["type"], kind, "{}: got {v}", self.user);
        v
    }

    /// Skips frames until one of type `kind` arrives.
    pub async fn until(&mut self, kind: &str) -> Value {
        let mut frames = self.frames_until(kind).await;
        frames.pop().expect("frames_until ends with the frame")
    }

    /// Every frame up to and including the first of type `kind`.
    pub async fn frames_until(&mut self, kind: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("{}: no {kind} arrived; got only {frames:?}", self.user));
            let done = v["type"] == kind;
            frames.push(v);
            if done {
                return frames;
            }
        }
    }

    /// Asserts nothing but pings arrives for `quiet`.
    pub async fn expect_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(quiet, self.ws.next()).await
        {
            panic!("{}: expected silence, got {text}", self.user);
        }
    }

    /// Asserts no frame of type `kind` arrives for `quiet` (others are skipped).
    pub async fn expect_none_of(&mut self, kind: &str, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.next()).await {
            assert_ne!(v["type"], kind, "{}: unexpected {v}", self.user);
        }
    }

    /// Joins and returns the `INITIAL_STATE`/`REPLAY`, consuming the count update that follows.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(join_room(room)).await;
        let state = self.expect("INITIAL_STATE").await;
        self.until("USER_COUNT_UPDATED").await;
        state
    }

    pub async fn draw(&mut self, room: &str, stroke_id: &str) {
        self.send(stroke(room, stroke_id)).await;
    }

    /// Draws and waits for the ACK, skipping other frames.
    pub async fn draw_acked(&mut self, room: &str, stroke_id: &str) -> Value {
        self.draw(room, stroke_id).await;
        self.until("ACK").await
    }

    /// Sends `UNDO`, of `target` or (without one) of the caller's latest stroke.
    pub async fn undo(&mut self, room: &str, target: Option<&str>) {
        let mut payload = json!({"roomId": room});
        if let Some(id) = target {
            payload["strokeId"] = json!(id);
        }
        self.send(json!({"type": "UNDO", "payload": payload})).await;
    }

    /// Sends `REDO` of the caller's most recently undone stroke.
    pub async fn redo(&mut self, room: &str) {
        self.send(json!({"type": "REDO", "payload": {"roomId": room}}))
            .await;
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn stroke(room: &str, stroke_id: &str) -> Value {
    json!({"type": "CANVAS_UPDATE", "payload": {"roomId": room, "canvasData": {
        "strokeId": stroke_id, "points": [{"x": 1.5, "y": 2}, {"x": 3, "y": 4}],
        "color": "#ff0000", "width": 3
    }}})
}

pub fn join_room(room: &str) -> Value {
    json!({"type": "JOIN_ROOM", "payload": {"roomId": room}})
}

/// A `JOIN_ROOM` asking to replay what came after `since` in `epoch`.
pub fn join_room_since(room: &str, since: u64, epoch: &Value) -> Value {
    json!({"type": "JOIN_ROOM", "payload": {"roomId": room, "since": since, "epoch": epoch}})
}

// ---- v1.1 (PROTOCOL.md §4) helpers ----

/// A `JOIN_ROOM` naming the page's `protocol`, optionally replaying after `since` in `epoch`.
pub fn join_room_as(room: &str, protocol: &str, since: Option<(u64, &Value)>) -> Value {
    let mut payload = json!({"roomId": room, "protocol": protocol});
    if let Some((seq, epoch)) = since {
        payload["since"] = json!(seq);
        payload["epoch"] = epoch.clone();
    }
    json!({"type": "JOIN_ROOM", "payload": payload})
}

pub fn elements_add(room: &str, elements: Value, op_id: Option<&str>) -> Value {
    let mut payload = json!({"roomId": room, "elements": elements});
    if let Some(op) = op_id {
        payload["opId"] = json!(op);
    }
    json!({"type": "ELEMENTS_ADD", "payload": payload})
}

/// `updates` is `[{id, patch}]`.
pub fn elements_update(room: &str, updates: Value, op_id: Option<&str>) -> Value {
    let mut payload = json!({"roomId": room, "updates": updates});
    if let Some(op) = op_id {
        payload["opId"] = json!(op);
    }
    json!({"type": "ELEMENTS_UPDATE", "payload": payload})
}

pub fn elements_delete(room: &str, ids: Value, op_id: Option<&str>) -> Value {
    let mut payload = json!({"roomId": room, "ids": ids});
    if let Some(op) = op_id {
        payload["opId"] = json!(op);
    }
    json!({"type": "ELEMENTS_DELETE", "payload": payload})
}

/// Presence frames: what a test of board events usually skips.
pub const PRESENCE: [&str; 4] = [
    "USER_JOINED",
    "USER_LEFT",
    "USER_COUNT_UPDATED",
    "CURSOR_LEAVE",
];

impl Client {
    /// Connects as `user` and joins `room` speaking protocol 1.1.
    pub async fn joined_v11(addr: SocketAddr, user: &str, room: &str) -> Self {
        let mut client = Self::connect(addr, user).await;
        client.join_v11(room).await;
        client
    }

    /// Joins speaking protocol 1.1 and returns the `INITIAL_STATE`, consuming the count update.
    pub async fn join_v11(&mut self, room: &str) -> Value {
        self.join_with(join_room_as(room, "1.1", None), "INITIAL_STATE")
            .await
    }

    /// Sends a `JOIN_ROOM`, expects `kind` (`INITIAL_STATE` or `REPLAY`) as the next frame
    /// and returns it, consuming the count update that follows.
    pub async fn join_with(&mut self, join: Value, kind: &str) -> Value {
        self.send(join).await;
        let state = self.expect(kind).await;
        self.until("USER_COUNT_UPDATED").await;
        state
    }

    /// The next frame that is not presence (see [`PRESENCE`]).
    pub async fn next_board_frame(&mut self) -> Value {
        loop {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("{}: no frame arrived", self.user));
            if !PRESENCE.iter().any(|p| v["type"] == *p) {
                return v;
            }
        }
    }

    /// Like [`Client::expect`], skipping presence frames.
    pub async fn expect_board(&mut self, kind: &str) -> Value {
        let v = self.next_board_frame().await;
        assert_eq!(v["type"], kind, "{}: got {v}", self.user);
        v
    }
}

impl Pair {
    /// Like [`Pair::start`], with both clients joined speaking protocol 1.1.
    pub async fn start_v11(redis: &RedisServer) -> Self {
        Self::start_v11_with(redis, |_| {}).await
    }

    /// Like [`Pair::start_v11`], with each instance's configuration adjusted by `tweak`.
    pub async fn start_v11_with(redis: &RedisServer, tweak: impl Fn(&mut Config)) -> Self {
        let config = |id: &str| {
            let mut c = config(Some(redis), id);
            tweak(&mut c);
            c
        };
        Self::start_speaking(config, true).await
    }
}

// ---- raw sockets, for clients that misbehave below the WebSocket library ----

/// A TCP connection with a small receive buffer (so the server's writes back up quickly)
/// that has completed a WebSocket handshake with `token` and then reads nothing more unless
/// the test does.
pub async fn raw_ws(addr: SocketAddr, token: &str, recv_buffer: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    // Byte by byte, so nothing after the response head is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("handshake answer in time")
            .expect("read");
        assert_eq!(n, 1, "closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A client-to-server text frame (masked, as the protocol requires of clients).
pub fn masked_text(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
