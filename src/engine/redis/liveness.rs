//! This instance's heartbeat (`instance:<id>`), the periodic sweep of presence left behind
//! by instances that died without cleaning up, and the re-announcement of this instance's own
//! presence when it was taken for dead.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::Inner;

/// Heartbeats missed before the instance key expires and the instance counts as dead.
pub(super) const MISSED_BEATS: u32 = 3;
/// How often the presence of this instance's rooms is checked for dead instances.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Heartbeats that re-announce presence after the instance key was found gone: the one that
/// found it, and the next, because a sweep that saw the key missing just before it was renewed
/// may still be removing entries after the first re-announcement.
const ANNOUNCE_BEATS: u32 = 2;

pub(super) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut beat = tokio::time::interval(inner.heartbeat_every);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut announce_beats = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = beat.tick() => match inner.heartbeat().await {
                Ok(renewed) => {
                    if !renewed {
                        // Also the first beat to reach Redis after starting without it, with
                        // nobody joined yet: then there is nothing to announce.
                        tracing::info!("instance key was gone: re-announcing local presence");
                        announce_beats = ANNOUNCE_BEATS;
                    }
                    // Counted down only when every room was reached, so a failure is retried.
                    if announce_beats > 0 && announce(&inner).await {
                        announce_beats -= 1;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat did not reach redis"),
            },
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

/// Re-announces the presence of every local member in every local room; true when every room
/// was reached.
async fn announce(inner: &Inner) -> bool {
    let mut reached_all = true;
    for (room, members) in inner.hub.presence() {
        match inner.announce_presence(&room, &members).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(%room, restored = n, "put back swept presence"),
            Err(e) => {
                tracing::warn!(%room, error = %e, "presence re-announcement failed; retrying");
                reached_all = false;
            }
        }
    }
    reached_all
}
