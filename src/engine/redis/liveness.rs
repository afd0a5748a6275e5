//! This instance's heartbeat (`instance:<id>`) and the periodic sweep of presence left behind
//! by instances that died without cleaning up.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::Inner;

/// Heartbeats missed before the instance key expires and the instance counts as dead.
pub(super) const MISSED_BEATS: u32 = 3;
/// How often the presence of this instance's rooms is checked for dead instances.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub(super) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut beat = tokio::time::interval(inner.heartbeat_every);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = beat.tick() => {
                if !inner.heartbeat().await {
                    tracing::warn!("heartbeat did not reach redis");
                }
            }
            _ = sweep.tick() => {
                for room in inner.hub.rooms() {
                    match inner.sweep_presence(&room).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(%room, swept = n, "removed presence of dead instances"),
                        Err(e) => tracing::debug!(%room, error = %e, "presence sweep failed"),
                    }
                }
            }
        }
    }
    // A clean exit: others may sweep this instance's leftovers at once.
    if let Ok(mut conn) = inner.conn().await {
        let key = inner.keys.instance(&inner.settings.instance_id);
        let _ = inner.with_timeout(conn.del::<_, ()>(key)).await;
    }
}
