//! The real binary: its command line, configuration from files and the environment, JSON logs
//! and metrics an operator reads, SIGTERM ending in exit code 0, and instance ids that a
//! restart never reuses.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Client, RedisServer, SECRET, WAIT, header, http, user_ids};

/// The binary with a clean environment: the shipped defaults (it runs in the package
/// directory, so `config/default.toml` is read), a free port, a short drain.
fn drawbridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drawbridge"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DRAWBRIDGE_LISTEN", "127.0.0.1:0")
        .env("DRAWBRIDGE_DRAIN_SECS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run drawbridge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running drawbridge with JSON logs, killed (SIGKILL) when dropped. Its stdout is read on
/// a thread into `lines`, each a parsed JSON log line.
struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    /// Lines that were not JSON, which JSON mode must never write.
    garbage: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Server {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .env("DRAWBRIDGE_LOG_FORMAT", "json")
            .spawn()
            .expect("spawn drawbridge");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let garbage = Arc::new(Mutex::new(Vec::new()));
        let (into, bad) = (lines.clone(), garbage.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => into.lock().expect("lock").push(v),
                    Err(_) => bad.lock().expect("lock").push(line),
                }
            }
        });
        let mut server = Self {
            child,
            lines,
            garbage,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let listening = server.wait_for("listening", |l| l["message"] == "listening");
        server.addr = addr_of(&listening);
        server
    }

    /// Waits for a log line matching `matches`; fails the test, naming `what`, after `WAIT`.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.lines().into_iter().find(&matches) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                panic!("drawbridge exited ({status}) before {what}: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "no {what} line in {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lock").clone()
    }

    /// The whole output so far, for "this never appears" checks.
    fn output(&self) -> String {
        let mut all: Vec<String> = self.lines().iter().map(Value::to_string).collect();
        all.extend(self.garbage.lock().expect("lock").iter().cloned());
        all.join("\n")
    }

    /// Kills the process abruptly, as a crash or the OOM killer would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn addr_of(line: &Value) -> SocketAddr {
    line["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr in {line}"))
}

/// The value of the sample `name` (with its labels, exactly as exposed) in a `/metrics` text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the server is ready (with Redis: its event feed is subscribed).
async fn ready(addr: SocketAddr) {
    common::wait_for_status(addr, "/readyz", 200, WAIT).await;
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    http(addr, "GET", path, None, None).await
}

#[test]
fn help_and_version_answer_without_serving() {
    let help = run(drawbridge().arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    let out = text(&help.stdout);
    for needle in [
        "serve",
        "check-config",
        "healthcheck",
        "--config",
        "--version",
    ] {
        assert!(out.contains(needle), "no {needle:?} in --help:\n{out}");
    }
    let version = run(drawbridge().arg("--version"));
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("drawbridge {}", env!("CARGO_PKG_VERSION"))
    );
    let unknown = run(drawbridge().arg("--no-such-flag"));
    assert_eq!(unknown.status.code(), Some(2), "clap's usage error");
}

#[test]
fn every_invalid_setting_is_reported_at_once_and_startup_fails() {
    let out = run(drawbridge()
        .env("DRAWBRIDGE_LISTEN", "not-an-address")
        .env("DRAWBRIDGE_SEND_QUEUE", "0")
        .env("DRAWBRIDGE_REDIS_URL", "redis://127.0.0.1:1"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for needle in [
        "listen must be",
        "send_queue must be",
        "jwt_secret is required",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

#[test]
fn start_up_errors_are_json_in_json_mode() {
    let out = run(drawbridge()
        .env("DRAWBRIDGE_LOG_FORMAT", "json")
        .env("DRAWBRIDGE_INSTANCE_ID", "pod-7")
        .env("DRAWBRIDGE_SEND_QUEUE", "0")
        .env("DRAWBRIDGE_LISTEN", "nowhere"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let line: Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| {
        panic!("stderr is not one JSON line ({e}):\n{stderr}");
    });
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["message"], "invalid configuration");
    assert_eq!(line["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        line["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("pod-7-")),
        "{line}"
    );
    let errors = line["errors"].as_array().expect("errors list");
    assert_eq!(errors.len(), 2, "{line}");

    // A port already taken fails after logging is set up: a JSON line too, and exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(drawbridge()
        .env("DRAWBRIDGE_LOG_FORMAT", "json")
        .env("DRAWBRIDGE_LISTEN", &addr));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let error: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in:\n{stdout}"));
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("cannot listen on {addr}"))),
        "{error}"
    );
}

#[test]
fn a_named_configuration_file_must_exist() {
    let by_env = run(drawbridge().env("DRAWBRIDGE_CONFIG", "/nonexistent/drawbridge.toml"));
    assert_eq!(by_env.status.code(), Some(2));
    assert!(
        text(&by_env.stderr).contains("/nonexistent/drawbridge.toml does not exist"),
        "{}",
        text(&by_env.stderr)
    );
    let by_flag =
        run(drawbridge().args(["--config", "/nonexistent/drawbridge.toml", "check-config"]));
    assert_eq!(by_flag.status.code(), Some(2));
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(
        file,
        "max_connections = 4242\nsmtp_password = \"from-the-file\"\nsmtp_user = \"apikey\""
    )
    .expect("write");
    let out = run(drawbridge()
        .arg("check-config")
        .arg("--config")
        .arg(file.path())
        .env("DRAWBRIDGE_JWT_SECRET", "a-very-secret-jwt-key-123")
        .env(
            "DRAWBRIDGE_REDIS_URL",
            "redis://app:redis-password@127.0.0.1:6379/0",
        )
        .env("DRAWBRIDGE_DRAIN_SECS", "7"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for secret in [
        "a-very-secret-jwt-key-123",
        "redis-password",
        "from-the-file",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    let printed: toml::Table = stdout.parse().expect("TOML");
    assert_eq!(
        printed["max_connections"].as_integer(),
        Some(4242),
        "the file"
    );
    assert_eq!(
        printed["drain_secs"].as_integer(),
        Some(7),
        "the environment"
    );
    assert_eq!(printed["jwt_secret"].as_str(), Some("********"));
    assert_eq!(printed["smtp_password"].as_str(), Some("********"));
    assert_eq!(
        printed["redis_url"].as_str(),
        Some("redis://app:********@127.0.0.1:6379/0")
    );

    let invalid = run(drawbridge()
        .arg("check-config")
        .env("DRAWBRIDGE_SEND_QUEUE", "0"));
    assert_eq!(invalid.status.code(), Some(2));
    assert!(text(&invalid.stderr).contains("send_queue must be"));
    assert!(invalid.stdout.is_empty());
}

#[tokio::test]
async fn healthcheck_exits_zero_only_for_a_healthy_server() {
    let server = Server::start(&mut drawbridge());
    let url = format!("http://{}/healthz", server.addr);
    let ok = run(drawbridge().args(["healthcheck", &url]));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    // The default URL is /healthz on the configured listen address.
    let default = run(drawbridge()
        .arg("healthcheck")
        .env("DRAWBRIDGE_LISTEN", server.addr.to_string()));
    assert_eq!(default.status.code(), Some(0), "{}", text(&default.stderr));
    let missing = run(drawbridge().args(["healthcheck", &format!("http://{}/nope", server.addr)]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("404"));
    drop(server);
    let down = run(drawbridge().args(["healthcheck", "--timeout", "1", &url]));
    assert_eq!(down.status.code(), Some(1));
}

#[tokio::test]
async fn json_logs_are_flat_name_every_request_and_never_a_token() {
    let mut server = Server::start(drawbridge().env("DRAWBRIDGE_INSTANCE_ID", "pod-3"));
    let addr = server.addr;
    let token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.do-not-log-me";
    let (status, _) = common::upgrade(format!("ws://{addr}/ws?token={token}").as_str()).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(addr, "/api/v1/rooms/some-room?token=another-secret").await;
    assert_eq!(status, 401);

    let refused = server.wait_for("upgrade refused", |l| l["message"] == "upgrade refused");
    assert_eq!(refused["reason"], "bad_token", "{refused}");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["ip"], "127.0.0.1");
    let access = server.wait_for("a request line", |l| {
        l["message"] == "request" && l["route"] == "/api/v1/rooms/{room_id}"
    });
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 401);
    assert_eq!(access["ip"], "127.0.0.1");
    assert_eq!(access["level"], "INFO");
    assert!(access["latency_ms"].as_f64().is_some(), "{access}");
    assert_eq!(
        access["uri"], "/api/v1/rooms/some-room?token=[redacted]",
        "{access}"
    );
    let upgrade = server.wait_for("the upgrade's request line", |l| {
        l["message"] == "request" && l["route"] == "/ws"
    });
    assert_eq!(upgrade["uri"], "/ws?token=[redacted]");

    let output = server.output();
    assert!(!output.contains("do-not-log-me"), "token logged:\n{output}");
    assert!(
        !output.contains("another-secret"),
        "token logged:\n{output}"
    );
    assert!(
        server.garbage.lock().expect("lock").is_empty(),
        "non-JSON lines on stdout"
    );
    for line in server.lines() {
        assert!(line.get("fields").is_none(), "nested fields: {line}");
        assert!(
            line["instance"]
                .as_str()
                .is_some_and(|i| i.starts_with("pod-3-")),
            "{line}"
        );
        assert_eq!(line["version"], env!("CARGO_PKG_VERSION"), "{line}");
    }
}

#[tokio::test]
async fn metrics_count_requests_refusals_limits_and_the_process() {
    let mut server = Server::start(
        drawbridge()
            .env("DRAWBRIDGE_JWT_SECRET", SECRET)
            .env("DRAWBRIDGE_WS_UPGRADES_PER_MINUTE", "1")
            .env("DRAWBRIDGE_MAX_CONNECTIONS", "1234"),
    );
    let addr = server.addr;
    let url = format!("ws://{addr}/ws?token={}", common::token("u1", "U"));
    let mut first = Client::connect_with(addr, "first", &common::token("u1", "U")).await;
    let (status, headers) = common::upgrade(url.as_str()).await;
    assert_eq!(status, 429, "{headers:?}");
    let (status, _) = common::upgrade(format!("ws://{addr}/ws").as_str()).await;
    assert_eq!(status, 401);
    let room = common::create_room_as(addr, &common::token("u1", "U")).await;
    first.join(&room).await;

    let limited = server.wait_for("rate limited", |l| l["message"] == "rate limited");
    assert_eq!(limited["kind"], "ws", "{limited}");
    assert_eq!(limited["ip"], "127.0.0.1", "{limited}");
    let (status, _, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let value =
        |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
    assert_eq!(
        value(r#"drawbridge_upgrades_refused_total{reason="rate_limited"}"#),
        1.0
    );
    assert_eq!(
        value(r#"drawbridge_upgrades_refused_total{reason="no_token"}"#),
        1.0
    );
    assert_eq!(value(r#"drawbridge_rate_limited_total{kind="ws"}"#), 1.0);
    assert_eq!(
        value(r#"drawbridge_rate_limited_total{kind="signin"}"#),
        0.0,
        "known kinds start at 0"
    );
    assert_eq!(
        value(r#"drawbridge_upgrades_refused_total{reason="full"}"#),
        0.0
    );
    assert_eq!(
        value(
            r#"drawbridge_http_requests_total{method="POST",route="/api/v1/rooms",status="201"}"#
        ),
        1.0
    );
    assert_eq!(
        value(r#"drawbridge_http_requests_total{method="GET",route="/ws",status="101"}"#),
        1.0
    );
    assert!(
        metrics
            .contains(r#"drawbridge_http_request_duration_seconds_bucket{le="+Inf",route="/ws"}"#)
            || metrics.contains(
                r#"drawbridge_http_request_duration_seconds_bucket{route="/ws",le="+Inf"}"#
            ),
        "{metrics}"
    );
    assert_eq!(value("drawbridge_connections"), 1.0);
    assert_eq!(value("drawbridge_connection_limit"), 1234.0);
    assert_eq!(value("drawbridge_rooms"), 1.0);
    assert_eq!(
        value(&format!(
            r#"drawbridge_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_start_time_seconds") > 1_600_000_000.0);
    first.close().await;
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exposed() {
    let dashboard = include_str!("../deploy/grafana/drawbridge.json");
    let dashboard: Value = serde_json::from_str(dashboard).expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "{exprs:?}");
    let server = Server::start(&mut drawbridge());
    // HTTP families have series once a request was answered.
    assert_eq!(get(server.addr, "/healthz").await.0, 200);
    let (_, _, metrics) = get(server.addr, "/metrics").await;
    for expr in &exprs {
        for name in metric_names(expr) {
            // A family is declared by its `# TYPE` line even before its first sample.
            let base = ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                metrics.contains(&format!("# TYPE {base} ")),
                "the dashboard queries {name} ({expr}), which /metrics does not expose"
            );
        }
    }
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(expr) if k == "expr" => into.push(expr.clone()),
                    _ => collect_exprs(v, into),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_exprs(v, into)),
        _ => {}
    }
}

/// The `drawbridge_*` and `process_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    expr.split(|c: char| !is_name(c))
        .filter(|w| w.starts_with("drawbridge_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_admin_listener_takes_metrics_off_the_public_one() {
    let mut server = Server::start(drawbridge().env("DRAWBRIDGE_ADMIN_LISTEN", "127.0.0.1:0"));
    let admin = addr_of(&server.wait_for("admin listening", |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin listening"))
    }));
    assert_ne!(admin, server.addr);
    let (status, _, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("drawbridge_connections"), "{body}");
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200);
    assert_eq!(
        get(admin, "/api/v1/rooms/x").await.0,
        404,
        "no public API on admin"
    );
    assert_eq!(get(server.addr, "/metrics").await.0, 404);
    assert_eq!(get(server.addr, "/healthz").await.0, 200);
}

/// The ghost-user bug: a process restarted with the same configured id (a container restarted
/// in its pod) used to renew the dead process's liveness key, so the dead process's users
/// stayed "present" for ever.
#[tokio::test]
async fn a_restarted_process_does_not_keep_the_dead_ones_users_present() {
    let redis = RedisServer::start();
    let pod = |name: &str| {
        let mut cmd = drawbridge();
        cmd.env("DRAWBRIDGE_REDIS_URL", redis.url())
            .env("DRAWBRIDGE_JWT_SECRET", SECRET)
            .env("DRAWBRIDGE_INSTANCE_ID", name)
            .env("DRAWBRIDGE_HEARTBEAT_SECS", "1")
            .env("DRAWBRIDGE_WS_UPGRADES_PER_MINUTE", "0");
        cmd
    };
    let same_pod = || pod("pod-1");
    let mut first = Server::start(&mut same_pod());
    ready(first.addr).await;
    let room = common::create_room(first.addr).await;
    let _ghost = Client::joined(first.addr, "ghost", &room).await;
    let (_, headers, _) = get(first.addr, "/healthz").await;
    let first_id = header(&headers, "x-drawbridge-instance")
        .expect("instance header")
        .to_owned();
    first.kill();

    let second = Server::start(&mut same_pod());
    ready(second.addr).await;
    let (_, headers, _) = get(second.addr, "/healthz").await;
    let second_id = header(&headers, "x-drawbridge-instance").expect("instance header");
    assert!(first_id.starts_with("pod-1-"), "{first_id}");
    assert!(second_id.starts_with("pod-1-"), "{second_id}");
    assert_ne!(
        first_id, second_id,
        "a restart must not reuse the instance id"
    );

    // The dead process's key expires after three missed heartbeats (3 s); a join on any
    // instance then sweeps its entries. With a reused id the restarted process kept renewing
    // that key, and nothing was ever swept. The late joiners use another pod: on the restarted
    // one, a new connection could take the ghost's entry over by reusing its number.
    let other = Server::start(&mut pod("pod-2"));
    ready(other.addr).await;
    let deadline = Instant::now() + Duration::from_secs(12);
    for attempt in 0.. {
        let mut late = Client::connect(other.addr, &format!("late{attempt}")).await;
        let state = late.join(&room).await;
        let users = user_ids(&state);
        late.close().await;
        if !users.contains(&"ghost") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dead process's user is still present: {users:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut child = drawbridge()
        // A numeric secret must still be read as text.
        .env("DRAWBRIDGE_JWT_SECRET", "12345678901234567890")
        // Scripts share the prefix for their own settings: warned about, not fatal.
        .env("DRAWBRIDGE_BIN", "target/debug/drawbridge")
        .spawn()
        .expect("spawn drawbridge");
    let stdout = child.stdout.take().expect("stdout");
    // Kept open to the end: the drain still logs.
    let mut lines = BufReader::new(stdout).lines();
    let mut startup = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let listening = line.contains("listening");
        startup.push(line);
        if listening {
            break;
        }
    }
    let listening = startup
        .last()
        .filter(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line in {startup:#?}"));
    assert!(listening.contains("127.0.0.1:"), "{listening}");
    assert!(
        startup
            .iter()
            .any(|l| l.contains("DRAWBRIDGE_BIN") && l.contains("names no setting")),
        "no warning about DRAWBRIDGE_BIN in {startup:#?}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("drawbridge did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
