//! Smoke: the load generator against an in-process drawbridge (memory engine) on port 0.

use std::time::Duration;

use drawbridge::config::Config;
use loadtest::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_one_instance_loses_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let secret = "smoke-secret-smoke-secret-smoke-secret";
    let config = Config {
        listen: addr.to_string(),
        jwt_secret: secret.into(),
        ws_upgrades_per_minute: 0,
        ..Config::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(drawbridge::app::run_with_listener(
        config,
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));

    let scenario = Scenario {
        urls: vec![format!("ws://{addr}")],
        connections: 4,
        rooms: 1,
        strokes_per_sec: 10.0,
        cursor_per_sec: 10.0,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        ramp_up: Duration::from_millis(200),
        drain: Duration::from_secs(3),
        jwt_secret: Some(secret.into()),
        ..Scenario::default()
    };
    let report = loadtest::run(scenario).await.expect("run");
    let _ = stop_tx.send(());
    let _ = server.await;

    assert!(report.passed, "{}", report.table());
    assert!(report.strokes.sent >= 60, "{}", report.table());
    assert_eq!(report.strokes.delivered, report.strokes.expected);
    assert_eq!(report.sequencing.gaps + report.sequencing.duplicates, 0);
    assert_eq!(report.acks.acked, report.strokes.sent);
}
