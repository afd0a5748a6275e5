//! Counts of sequenced ops per user per UTC day, for the heatmap (`GET /api/v1/me/activity`).
//!
//! An op must not wait on an extra Redis call for this: sessions add to an in-process buffer
//! (a mutex held for one map update), and one tracked task flushes the buffer to the
//! [`Access`] engine in a single pipelined batch every `activity_flush_secs`, and once more on
//! shutdown. A crash loses at most one interval's counts, which a heatmap can afford.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::access::{Access, DayCount};
use super::now_ms;
use crate::domain::UserId;
use crate::domain::activity::day_of_ms;

#[derive(Default)]
pub struct ActivityBuffer {
    /// (user, UTC day) → ops not yet flushed.
    pending: Mutex<HashMap<(UserId, i64), u64>>,
}

impl ActivityBuffer {
    /// Counts one sequenced op of `user`, today.
    pub fn record(&self, user: &UserId) {
        let day = day_of_ms(now_ms());
        *self.pending.lock().entry((user.clone(), day)).or_default() += 1;
    }

    fn take(&self, only: Option<&UserId>) -> Vec<DayCount> {
        let mut pending = self.pending.lock();
        let keys: Vec<(UserId, i64)> = pending
            .keys()
            .filter(|(u, _)| only.is_none_or(|o| o == u))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                pending.remove(&key).map(|ops| DayCount {
                    user: key.0,
                    day: key.1,
                    ops,
                })
            })
            .collect()
    }

    fn put_back(&self, counts: Vec<DayCount>) {
        let mut pending = self.pending.lock();
        for c in counts {
            *pending.entry((c.user, c.day)).or_default() += c.ops;
        }
    }

    /// Writes what is pending (only `user`'s, when given). On failure the counts are kept for
    /// the next flush.
    pub async fn flush(&self, access: &dyn Access, only: Option<&UserId>) {
        let batch = self.take(only);
        if batch.is_empty() {
            return;
        }
        if let Err(e) = access.add_activity(&batch).await {
            tracing::debug!(error = %e, "activity not flushed; kept for the next try");
            self.put_back(batch);
        }
    }
}

/// Flushes `buffer` every `every` until `shutdown`, then once more.
pub async fn run(
    buffer: Arc<ActivityBuffer>,
    access: Arc<dyn Access>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => buffer.flush(access.as_ref(), None).await,
        }
    }
    buffer.flush(access.as_ref(), None).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_aggregate_per_user_and_day_and_come_back_on_failure() {
        let buffer = ActivityBuffer::default();
        let ann = UserId::new("ann");
        buffer.record(&ann);
        buffer.record(&ann);
        buffer.record(&UserId::new("bob"));
        let mine = buffer.take(Some(&ann));
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].ops, 2);
        buffer.put_back(mine);
        let all = buffer.take(None);
        assert_eq!(all.iter().map(|c| c.ops).sum::<u64>(), 3);
        assert!(buffer.take(None).is_empty());
    }
}
