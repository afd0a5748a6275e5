//! Managed-Redis connection settings (PROTOCOL.md §7): a `rediss://` URL (TLS, rustls) and a
//! password or an ACL user in the URL, for the pool (HTTP routes), the hot connection (room
//! scripts) and the feed connection (fan-out) alike. Each test runs its own redis-server on
//! free loopback ports; the TLS one makes its certificate here.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Instance, Pair, get_status};
use drawbridge::config::{Config, PubsubMode};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A redis-server started with `args` on a free port (TLS or plain), stopped on drop.
struct Server {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a started server answered: up, or gone with what it printed.
enum Started {
    Up(Server),
    Exited(String),
}

fn start(tls: bool, extra: &[&str], dir: tempfile::TempDir) -> Started {
    for _ in 0..5 {
        let port = free_port();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if tls {
            let file = |name: &str| dir.path().join(name).display().to_string();
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cert-file", &file("cert.pem")])
                .args(["--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("cert.pem")])
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &port.to_string()]);
        }
        let mut child = command
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redis-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Started::Up(Server {
                    port,
                    child,
                    _dir: dir,
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().expect("output");
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                if said.contains("Address already in use") {
                    break;
                }
                return Started::Exited(said);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("redis-server did not start");
}

/// A certificate for 127.0.0.1 written as `cert.pem` and `key.pem` in `dir`.
fn write_certificate(dir: &Path) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key.pem");
}

/// An ACL user that may do everything, and a default user that may do nothing.
const ACL: [&str; 10] = [
    "--user",
    "app",
    "on",
    ">s3cret-pass",
    "~*",
    "&*",
    "+@all",
    "--user",
    "default",
    "off",
];

fn instance_config(url: &str, ca: &str, mode: PubsubMode, instance: &str) -> Config {
    Config {
        redis_url: url.to_owned(),
        redis_tls_ca: ca.to_owned(),
        pubsub_mode: mode,
        ..common::config(None, instance)
    }
}

/// Two instances on `url` exchange a stroke: the pool (room creation), the hot connection (the
/// stroke's script) and the feed (fan-out to the other instance) all got through.
async fn two_instances_work(url: &str, ca: &str, mode: PubsubMode) {
    let Pair {
        a: _a,
        b: _b,
        room,
        mut alice,
        mut bob,
    } = Pair::start_with(|i| instance_config(url, ca, mode, i)).await;
    let ack = alice.draw_acked(&room, "s1").await;
    assert_eq!(ack["payload"]["seq"], 1);
    assert_eq!(bob.until("CANVAS_UPDATE").await["payload"]["seq"], 1);
}

#[tokio::test]
async fn rediss_with_an_acl_user_serves_every_connection() {
    let dir = tempfile::tempdir().expect("dir");
    write_certificate(dir.path());
    let ca = dir.path().join("cert.pem").display().to_string();
    let server = match start(true, &ACL, dir) {
        Started::Up(server) => server,
        Started::Exited(said) if said.contains("tls") || said.contains("TLS") => {
            eprintln!("SKIPPED: this redis-server was built without TLS: {said}");
            return;
        }
        Started::Exited(said) => panic!("redis-server with TLS did not start: {said}"),
    };
    let url = format!("rediss://app:s3cret-pass@127.0.0.1:{}", server.port);
    for mode in [PubsubMode::Pattern, PubsubMode::Room, PubsubMode::Sharded] {
        two_instances_work(&url, &ca, mode).await;
    }
    // Without the CA the server's certificate is refused: the instance never becomes ready.
    let untrusted = Instance::start_unready(instance_config(&url, "", PubsubMode::Room, "x")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_status(untrusted.addr, "/readyz").await, 503);
}

#[tokio::test]
async fn a_password_or_an_acl_user_in_the_url_is_used() {
    let dir = tempfile::tempdir().expect("dir");
    let Started::Up(server) = start(false, &["--requirepass", "pw-only"], dir) else {
        panic!("redis-server did not start");
    };
    let url = format!("redis://:pw-only@127.0.0.1:{}", server.port);
    two_instances_work(&url, "", PubsubMode::Room).await;

    let dir = tempfile::tempdir().expect("dir");
    let Started::Up(server) = start(false, &ACL, dir) else {
        panic!("redis-server did not start");
    };
    let url = format!("redis://app:s3cret-pass@127.0.0.1:{}", server.port);
    two_instances_work(&url, "", PubsubMode::Sharded).await;
    // A wrong password: not ready, and no room can be made.
    let url = format!("redis://app:wrong@127.0.0.1:{}", server.port);
    let refused = Instance::start_unready(instance_config(&url, "", PubsubMode::Room, "y")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_status(refused.addr, "/readyz").await, 503);
}
