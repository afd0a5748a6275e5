//! A private Redis Cluster on loopback: `redis-server --cluster-enabled yes` per node on free
//! ports (the node's port and its bus port, port + 10000, both free), joined with
//! `redis-cli --cluster create`. Every process is killed when the handle drops.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;

/// How long a node may be unreachable before the others fail it over: short, so the failover
/// test takes seconds, not the default 15.
const NODE_TIMEOUT_MS: u64 = 1000;

pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

impl ClusterNode {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

/// A port whose cluster bus port (port + 10000) is free too.
fn free_pair(taken: &[u16]) -> u16 {
    loop {
        let listener = StdListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("port").port();
        let clashes = taken
            .iter()
            .any(|t| [*t, t + 10_000].contains(&port) || port + 10_000 == *t);
        if port > 55_000 || clashes {
            continue;
        }
        if StdListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (is redis-tools installed?)")
}

/// Runs `redis-cli`; false if it fails or is still running after `within` (it is killed).
fn cli_within(args: &[&str], within: Duration) -> bool {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli (is redis-tools installed?)");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn cli_port(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["-p", &port];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&cli(&all).stdout).into_owned()
}

impl RedisCluster {
    /// `masters` masters, each with `replicas` replicas, slots spread evenly.
    pub fn start(masters: usize, replicas: usize) -> Self {
        for _ in 0..5 {
            if let Some(cluster) = Self::try_start(masters, replicas) {
                return cluster;
            }
        }
        panic!("the redis cluster did not start (are redis-server and redis-cli installed?)");
    }

    fn try_start(masters: usize, replicas: usize) -> Option<Self> {
        let mut cluster = Self {
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let mut taken = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_pair(&taken);
            taken.push(port);
            let mut node = ClusterNode { port, child: None };
            cluster.launch(&mut node);
            cluster.nodes.push(node);
        }
        if !cluster.nodes.iter().all(|n| wait_ping(n.port)) {
            return None;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let replicas = replicas.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        // It waits for the nodes to meet, for ever if one cannot (its bus port taken meanwhile
        // by a node of another test's cluster): give up and start over on other ports.
        if !cli_within(&args, Duration::from_secs(20)) {
            return None;
        }
        cluster.wait_ok(Duration::from_secs(20)).then_some(cluster)
    }

    fn launch(&self, node: &mut ClusterNode) {
        let dir = self.dir.path().join(node.port.to_string());
        std::fs::create_dir_all(&dir).expect("node dir");
        let child = Command::new("redis-server")
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // Replicas of a killed master may take over at once, however stale they think they are.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        node.child = Some(child);
    }

    /// Every node that runs agrees the cluster is up and every slot is served.
    pub fn wait_ok(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| cli_port(n.port, &["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A seed URL: any one running node (the client discovers the rest).
    pub fn url(&self) -> String {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node");
        format!("redis://127.0.0.1:{}", node.port)
    }

    /// The port of the master that owns `key`'s slot, as a running node sees it.
    pub fn master_of(&self, key: &str) -> u16 {
        let seed = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node")
            .port;
        let slot: u16 = cli_port(seed, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        owner_of(&cli_port(seed, &["cluster", "nodes"]), slot).expect("an owner")
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        cli_port(port, &["cluster", "myid"]).trim().to_owned()
    }

    /// The ports of the running replicas of the master on `port`.
    pub fn replicas_of(&self, port: u16) -> Vec<u16> {
        let id = self.node_id(port);
        cli_port(port, &["cluster", "nodes"])
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some(id.as_str()))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|a| a.split('@').next()?.rsplit_once(':')?.1.parse().ok())
            .collect()
    }

    /// Kills a node abruptly, as a crash would.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Moves `key`'s slot from its master to the master on `to`, keys and all, the way
    /// `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE every key, then
    /// SETSLOT NODE on both and the other masters.
    pub fn move_slot(&self, key: &str, to: u16) {
        let from = self.master_of(key);
        assert_ne!(from, to, "the slot is already there");
        let slot = cli_port(from, &["cluster", "keyslot", key])
            .trim()
            .to_owned();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        assert!(cli_port(to, &["cluster", "setslot", &slot, "importing", &from_id]).contains("OK"));
        assert!(cli_port(from, &["cluster", "setslot", &slot, "migrating", &to_id]).contains("OK"));
        loop {
            let keys = cli_port(from, &["cluster", "getkeysinslot", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec![
                "migrate",
                "127.0.0.1",
                &to_port,
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
            ];
            args.extend(keys.iter().copied());
            let out = cli_port(from, &args);
            assert!(out.contains("OK"), "MIGRATE: {out}");
        }
        for port in self.masters() {
            cli_port(port, &["cluster", "setslot", &slot, "node", &to_id]);
        }
        assert_eq!(self.master_of(key), to, "the slot moved");
    }

    /// The ports of the running masters that serve slots.
    pub fn masters(&self) -> Vec<u16> {
        let seed = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node")
            .port;
        cli_port(seed, &["cluster", "nodes"])
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 8 && f[2].contains("master") && !f[2].contains("fail")
            })
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|a| a.split('@').next()?.rsplit_once(':')?.1.parse().ok())
            .collect()
    }

    pub async fn client(&self) -> ClusterConnection {
        redis::cluster::ClusterClient::new(vec![self.url()])
            .expect("cluster url")
            .get_async_connection()
            .await
            .expect("cluster connection")
    }
}

/// The port of the master serving `slot` in a `CLUSTER NODES` listing.
fn owner_of(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
            return None;
        }
        let serves = f[8..].iter().any(|range| {
            let mut ends = range.split('-');
            let lo = ends.next().and_then(|s| s.parse::<u16>().ok());
            let hi = ends.next().and_then(|s| s.parse::<u16>().ok()).or(lo);
            matches!((lo, hi), (Some(lo), Some(hi)) if (lo..=hi).contains(&slot))
        });
        serves.then(|| f[1].split('@').next()?.rsplit_once(':')?.1.parse().ok())?
    })
}

fn wait_ping(port: u16) -> bool {
    for _ in 0..100 {
        if cli_port(port, &["ping"]).contains("PONG") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
