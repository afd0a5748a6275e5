//! Smoke: the load generator against an in-process drawbridge (memory engine) on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use drawbridge::config::Config;
use loadtest::Scenario;
use loadtest::target::Target;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &str = "smoke-secret-smoke-secret-smoke-secret";

/// A drawbridge on 127.0.0.1:0; `stop` ends it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), drawbridge::app::StartError>>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            listen: addr.to_string(),
            jwt_secret: SECRET.into(),
            ws_upgrades_per_minute: 0,
            ..Config::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(drawbridge::app::run_with_listener(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_one_instance_loses_nothing() {
    let server = Server::start().await;
    let scenario = Scenario {
        urls: vec![format!("ws://{}", server.addr)],
        connections: 4,
        rooms: 1,
        strokes_per_sec: 10.0,
        cursor_per_sec: 10.0,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        ramp_up: Duration::from_millis(200),
        drain: Duration::from_secs(3),
        jwt_secret: Some(SECRET.into()),
        ..Scenario::default()
    };
    let report = loadtest::run(scenario).await.expect("run");
    server.stop().await;

    assert!(report.passed, "{}", report.table());
    assert!(report.strokes.sent >= 60, "{}", report.table());
    assert_eq!(report.strokes.delivered, report.strokes.expected);
    assert_eq!(report.sequencing.gaps + report.sequencing.duplicates, 0);
    assert_eq!(report.acks.acked, report.strokes.sent);
}

#[tokio::test]
async fn guest_tokens_and_rooms_come_from_the_http_api() {
    let server = Server::start().await;
    let target = Target::resolve(&format!("http://{}", server.addr), false)
        .await
        .expect("target");
    // A panic below drops the runtime, and the in-process server with it.
    let user = loadtest::auth::guest(&target, 1)
        .await
        .expect("guest token");
    assert!(user.user_id.starts_with("guest-"), "{}", user.user_id);
    let room = loadtest::http::create_room(&target, &user.token).await;
    assert!(!room.expect("room").is_empty());
    let refused = loadtest::http::create_room(&target, "not-a-token").await;
    let e = format!("{:#}", refused.expect_err("a bad token is refused"));
    assert!(e.contains("answered 401"), "{e}");
    server.stop().await;
}
