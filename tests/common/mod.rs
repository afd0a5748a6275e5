//! Test harness: a real `redis-server` on a free loopback port, drawbridge instances served
//! in-process on `127.0.0.1:0`, and a WebSocket client speaking the v1 protocol.
//! Everything started here is stopped when its handle drops.

#![allow(dead_code)]

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
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
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

/// The configuration tests start from: fast pings, a short drain, no upgrade limit.
pub fn config(redis: Option<&RedisServer>, instance: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        redis_url: redis.map(RedisServer::url).unwrap_or_default(),
        jwt_secret: SECRET.into(),
        instance_id: instance.into(),
        drain_secs: 1,
        ws_upgrades_per_minute: 0,
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
        let instance = Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        };
        for _ in 0..100 {
            if http(addr, "GET", "/readyz", None, None).await.0 == 200 {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance never became ready");
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
    let (status, _, body) = http(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&token("creator", "C")),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["data"]["roomId"].as_str().expect("roomId").to_owned()
}

/// A WebSocket client speaking the v1 protocol.
pub struct Client {
    pub user: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        let url = format!(
            "ws://{addr}/ws?token={}",
            token(user, &format!("name-{user}"))
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Self {
            user: user.to_owned(),
            ws,
        }
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
        loop {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("{}: no {kind} arrived", self.user));
            if v["type"] == kind {
                return v;
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
        self.send(json!({"type": "JOIN_ROOM", "payload": {"roomId": room}}))
            .await;
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
