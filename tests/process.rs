//! The real binary: configuration from the environment, and SIGTERM ending in exit code 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn drawbridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drawbridge"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DRAWBRIDGE_CONFIG", "/nonexistent.toml")
        .env("DRAWBRIDGE_LISTEN", "127.0.0.1:0")
        .env("DRAWBRIDGE_DRAIN_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn every_invalid_setting_is_reported_at_once_and_startup_fails() {
    let out = drawbridge()
        .env("DRAWBRIDGE_LISTEN", "not-an-address")
        .env("DRAWBRIDGE_SEND_QUEUE", "0")
        .env("DRAWBRIDGE_REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run drawbridge");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listen must be",
        "send_queue must be",
        "jwt_secret is required",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
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
