//! Smoke: the load generator against an in-process drawbridge (memory engine) on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use drawbridge::config::Config;
use loadtest::target::Target;
use loadtest::{Mode, Preset, Report, Scenario};
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

/// Runs `scenario` against a server of its own (URL and secret filled in); the report must pass.
async fn run_passing(scenario: Scenario) -> Report {
    let server = Server::start().await;
    let scenario = Scenario {
        urls: vec![format!("ws://{}", server.addr)],
        jwt_secret: Some(SECRET.into()),
        ..scenario
    };
    let report = loadtest::run(scenario).await.expect("run");
    server.stop().await;
    assert!(report.passed, "{}", report.table());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_one_instance_loses_nothing() {
    let report = run_passing(Scenario {
        connections: 4,
        rooms: 1,
        strokes_per_sec: 10.0,
        cursor_per_sec: 10.0,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        ramp_up: Duration::from_millis(200),
        drain: Duration::from_secs(3),
        ..Scenario::default()
    })
    .await;
    let table = report.table();
    assert!(report.settled, "{table}");
    // Four members of one room: each send is owed to the three others, all of whom had joined
    // by the time the measured window opened.
    for (kind, d) in [("strokes", &report.strokes), ("cursors", &report.cursors)] {
        assert!(d.sent >= 60, "{kind}: {table}");
        assert_eq!(d.expected, 3 * d.sent, "{kind}: {table}");
        assert_eq!(d.delivered, d.expected, "{kind}: {table}");
        // Every delivery has a latency, and a plausible one (a broken clock reads as minutes).
        assert_eq!(d.latency.count, d.delivered, "{kind}: {table}");
        assert!(d.latency.p50_ms > 0.0, "{kind}: {table}");
        assert!(d.latency.max_ms < 60_000.0, "{kind}: {table}");
    }
    let a = &report.acks;
    assert_eq!((a.acked, a.latency.count), (report.strokes.sent, a.acked));
    assert_eq!((a.unacked_at_end, a.duplicates, a.resent), (0, 0, 0));
    let q = &report.sequencing;
    assert_eq!((q.rooms, q.receivers), (1, 4), "{table}");
    assert_eq!(
        (
            q.gaps,
            q.duplicates,
            q.lost_acked,
            q.out_of_order,
            q.self_echo
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(report.joins.count, 4);
    let c = &report.connections;
    assert!(c.close_codes.is_empty() && c.errors.is_empty(), "{table}");
    assert_eq!(c.parse_errors, 0);
    // The timeline covers the whole run, warm-up included; the totals only the window.
    let timeline_sent: u64 = report.timeline.iter().map(|s| s.strokes_sent).sum();
    assert!(timeline_sent > report.strokes.sent, "{table}");
    // Clients closed when told to, not when the runner gave up waiting on them (15 s).
    assert!(report.elapsed_secs < 12.0, "{table}");
}

/// The board preset, shrunk: v1.1 pages drawing live strokes and dragging their rects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_board_run_times_live_strokes_and_drags() {
    let report = run_passing(Scenario {
        connections: 6,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        ramp_up: Duration::from_millis(200),
        drain: Duration::from_secs(3),
        turn: Duration::from_millis(600),
        stroke_duration: Duration::from_millis(300),
        ..Scenario::preset(Preset::Board)
    })
    .await;
    let table = report.table();
    assert!(report.settled, "{table}");
    assert_eq!(report.scenario.protocol.as_deref(), Some("1.1"));
    // Live batches are transient (capped by the server, far above this rate), final strokes
    // and drags are sequenced: owed to the five others, all joined before the window opened.
    for (kind, d) in [
        ("live strokes", &report.progress),
        ("strokes", &report.strokes),
        ("drags", &report.drags),
    ] {
        assert!(d.sent >= 5, "{kind}: {table}");
        assert_eq!(d.expected, 5 * d.sent, "{kind}: {table}");
        assert!(
            d.delivered > 0 && d.delivered <= d.expected,
            "{kind}: {table}"
        );
        assert_eq!(d.latency.count, d.delivered, "{kind}: {table}");
        assert!(d.latency.p50_ms > 0.0, "{kind}: {table}");
        assert!(d.latency.max_ms < 60_000.0, "{kind}: {table}");
    }
    for (kind, d) in [("strokes", &report.strokes), ("drags", &report.drags)] {
        assert_eq!(d.delivered, d.expected, "{kind}: {table}");
    }
    // About a third of the users draw and a third drag: at 15 batches/s and 20 drags/s over
    // 3 s, roughly 150 batches and 200 drags; wide bounds, the point is the mix is live.
    assert!(report.progress.sent > 60, "{table}");
    assert!(report.drags.sent > 80, "{table}");
    // Every op in the window was acknowledged, strokes and drags apart; the rects were added
    // during ramp-up, before it.
    let a = &report.acks;
    assert_eq!(a.acked, report.strokes.sent + report.drags.sent, "{table}");
    assert_eq!(a.latency.count, report.strokes.sent, "{table}");
    assert_eq!(a.element_latency.count, report.drags.sent, "{table}");
    assert_eq!((a.unacked_at_end, a.duplicates, a.rejected), (0, 0, 0));
    let q = &report.sequencing;
    assert_eq!((q.rooms, q.receivers), (1, 6), "{table}");
    assert_eq!(
        (
            q.gaps,
            q.duplicates,
            q.lost_acked,
            q.out_of_order,
            q.self_echo
        ),
        (0, 0, 0, 0, 0),
        "{table}"
    );
    let c = &report.connections;
    assert!(c.close_codes.is_empty() && c.errors.is_empty(), "{table}");
    assert_eq!(c.parse_errors, 0);
    for t in [
        "ELEMENTS_ADDED",
        "ELEMENTS_UPDATED",
        "STROKE_PROGRESS",
        "CANVAS_UPDATE",
    ] {
        assert!(c.received_types.contains_key(t), "{t}: {table}");
    }
    for row in ["live stroke e2e", "drag e2e", "element ack"] {
        assert!(table.contains(row), "{row}: {table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latejoin_measures_each_join_of_a_filled_room() {
    let report = run_passing(Scenario {
        mode: Mode::Latejoin,
        connections: 2,
        prefill: 30,
        joins: 3,
        ..Scenario::default()
    })
    .await;
    let table = report.table();
    let j = &report.joins;
    assert_eq!(j.count, 3, "{table}");
    assert_eq!(j.samples_ms.len(), 3);
    assert!(j.samples_ms.iter().all(|&ms| ms > 0.0));
    assert_eq!(j.initial_state_strokes, Some((30, 30)), "{table}");
    assert_eq!(j.initial_state_bytes.count, 3);
    assert!(j.initial_state_bytes.min > 30 * 100, "{table}");
    assert_eq!(report.connections.join_failures, 0);
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
