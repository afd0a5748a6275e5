//! The engine's connections to one Redis or to a Redis Cluster (`redis_mode`), behind one
//! connection type, so the engine's code is the same for both.
//!
//! On one Redis: a pool for request-scoped commands and one multiplexed connection for the room
//! hot path. On a Cluster: one cluster connection for both (it is multiplexed per node already),
//! which routes each command to the master owning its key's slot, follows MOVED/ASK, and
//! reconnects to a node or refreshes the slot map after a failover or a node restart.
//!
//! What a cluster forbids, this module makes explicit: a pipeline whose commands live in
//! several slots ([`Store::grouped`] sends one pipeline per slot) and a keyless `SCAN`
//! ([`Store::scan`] walks every master, or only the master owning a given key's slot).

use std::time::Duration;

use deadpool_redis::Pool;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where the engine's commands go.
pub(super) enum Store {
    Single {
        /// For request-scoped commands (HTTP routes, heartbeats, sweeps).
        pool: Pool,
        /// The room hot path (ops, joins, cursors): one multiplexed, self-reconnecting
        /// connection shared by every session. Pipelining many sessions over it beats a pool,
        /// whose every checkout costs a PING round trip.
        hot: ConnectionManager,
    },
    /// A connection to every master (and replica) of the cluster, opened lazily and kept up by
    /// the client: an instance whose cluster is down still starts and reports not-ready.
    Cluster(ClusterConnection),
}

/// One connection, from either kind of store.
pub(super) enum Conn {
    Pooled(deadpool_redis::Connection),
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Pooled(c) => c.get_db(),
            Self::Manager(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Keys looked at per `SCAN` call.
const SCAN_COUNT: usize = 1000;

impl Store {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A request-scoped connection.
    pub(super) async fn conn(&self) -> Result<Conn, deadpool_redis::PoolError> {
        match self {
            Self::Single { pool, .. } => pool.get().await.map(Conn::Pooled),
            Self::Cluster(c) => Ok(Conn::Cluster(c.clone())),
        }
    }

    /// The hot-path connection (never waits for a checkout).
    pub(super) fn hot(&self) -> Conn {
        match self {
            Self::Single { hot, .. } => Conn::Manager(hot.clone()),
            Self::Cluster(c) => Conn::Cluster(c.clone()),
        }
    }

    /// `WAIT replicas ms` on the hot connection, to the master owning `key`'s slot on a
    /// Cluster (where this instance's writes to that slot went): how many replicas have them.
    pub(super) async fn wait(
        &self,
        key: &str,
        replicas: u32,
        within: Duration,
    ) -> redis::RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(within.as_millis() as u64);
        match self {
            Self::Single { hot, .. } => wait.query_async(&mut hot.clone()).await,
            Self::Cluster(c) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(redis::cluster_routing::Route::with_key(
                        key,
                        redis::cluster_routing::SlotAddr::Master,
                    ));
                let reply = c
                    .clone()
                    .route_command(wait, RoutingInfo::SingleNode(route))
                    .await?;
                Ok(redis::from_redis_value(reply)?)
            }
        }
    }

    /// Runs independent pipelines, each on keys of one slot, and returns their replies in
    /// order: merged into one round trip on one Redis; one pipeline per slot, all at once, on a
    /// Cluster (which refuses a pipeline spanning slots). Commands must not be `ignore()`d.
    pub(super) async fn grouped(&self, groups: &[Pipeline]) -> redis::RedisResult<Vec<Value>> {
        match self {
            Self::Single { .. } => {
                let mut all = redis::pipe();
                for cmd in groups.iter().flat_map(Pipeline::cmd_iter) {
                    all.add_command(cmd.clone());
                }
                if all.is_empty() {
                    return Ok(Vec::new());
                }
                let mut conn = self.hot();
                all.query_async(&mut conn).await
            }
            Self::Cluster(c) => {
                let sends = groups.iter().filter(|p| !p.is_empty()).map(|p| {
                    let mut conn = c.clone();
                    async move { p.query_async::<Vec<Value>>(&mut conn).await }
                });
                let replies = futures::future::try_join_all(sends).await?;
                Ok(replies.into_iter().flatten().collect())
            }
        }
    }

    /// Every key matching `pattern` (of `kind`, if given). With `slot_of`, only the node that
    /// owns that key's slot is scanned: enough for a pattern under one hash tag. Otherwise
    /// every master is. `per_call` bounds each round trip.
    pub(super) async fn scan(
        &self,
        pattern: &str,
        kind: Option<&str>,
        slot_of: Option<&str>,
        per_call: Duration,
    ) -> redis::RedisResult<Vec<String>> {
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            if let Some(kind) = kind {
                cmd.arg("TYPE").arg(kind);
            }
            cmd
        };
        let mut found = Vec::new();
        match self {
            Self::Single { pool, .. } => {
                let mut conn = pool.get().await.map_err(pool_error)?;
                let mut cursor = 0_u64;
                loop {
                    let (next, keys): (u64, Vec<String>) =
                        timed(per_call, scan(cursor).query_async(&mut conn)).await?;
                    found.extend(keys);
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            Self::Cluster(c) => {
                let nodes = match slot_of {
                    Some(key) => vec![SingleNodeRoutingInfo::SpecificNode(
                        redis::cluster_routing::Route::with_key(
                            key,
                            redis::cluster_routing::SlotAddr::Master,
                        ),
                    )],
                    None => masters(c, per_call).await?,
                };
                for node in nodes {
                    let mut cursor = 0_u64;
                    loop {
                        let mut conn = c.clone();
                        let reply = timed(
                            per_call,
                            conn.route_command(scan(cursor), RoutingInfo::SingleNode(node.clone())),
                        )
                        .await?;
                        let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                        found.extend(keys);
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
                    }
                }
            }
        }
        Ok(found)
    }
}

impl Store {
    /// Every healthy node of the cluster (masters and replicas), as this instance's connection
    /// sees it now; empty on one Redis or when the cluster cannot be asked.
    pub(super) async fn cluster_nodes(&self, per_call: Duration) -> Vec<(String, u16)> {
        let Self::Cluster(c) = self else {
            return Vec::new();
        };
        let mut conn = c.clone();
        let listing: redis::RedisResult<String> = timed(
            per_call,
            redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn),
        )
        .await;
        listing
            .map(|text| parse_nodes(&text, false))
            .unwrap_or_default()
    }
}

/// The cluster's masters that serve slots, as `CLUSTER NODES` lists them.
async fn masters(
    conn: &ClusterConnection,
    per_call: Duration,
) -> redis::RedisResult<Vec<SingleNodeRoutingInfo>> {
    let mut conn = conn.clone();
    let text: String = timed(
        per_call,
        redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn),
    )
    .await?;
    Ok(parse_nodes(&text, true)
        .into_iter()
        .map(|(host, port)| SingleNodeRoutingInfo::ByAddress { host, port })
        .collect())
}

/// `(host, port)` of each healthy node (with `masters`, each master holding slots), from
/// `CLUSTER NODES`: lines of
/// `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`.
fn parse_nodes(nodes: &str, masters: bool) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let serving = fields.len() > 8;
            let is_master = flags.split(',').any(|f| f == "master");
            if flags.contains("fail") || flags.contains("noaddr") {
                return None;
            }
            if masters && !(is_master && serving) {
                return None;
            }
            let address = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

fn pool_error(e: deadpool_redis::PoolError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "redis pool", e.to_string()))
}

async fn timed<T>(
    within: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(within, fut)
        .await
        .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "redis did not answer in time").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_the_serving_healthy_ones() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave b2 0 0 2 connected
e5 10.0.0.5:6379@16379,redis-5.svc master - 0 0 5 connected 10923-16383
f6 127.0.0.1:7006@17006 master - 0 0 6 connected
";
        assert_eq!(parse_nodes(nodes, false).len(), 5);
        assert_eq!(
            parse_nodes(nodes, true),
            [
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("10.0.0.5".to_owned(), 6379),
            ]
        );
    }
}
