//! What the end of a WebSocket session leaves for an operator: one INFO line (target
//! `drawbridge::session`) with the room, duration, close code and frame counts, and the
//! `sessions_closed` / `session_duration_seconds` metrics. The session loop builds a
//! [`SessionEnd`] when it finishes and calls [`SessionEnd::record`].

use std::fmt::Display;
use std::time::Duration;

use crate::metrics::Metrics;

pub struct SessionEnd<'a> {
    /// The connection (`<instance>/<n>`), to match the session's other lines.
    pub conn: &'a dyn Display,
    pub user: &'a dyn Display,
    /// The room it was in last, if any.
    pub room: Option<&'a dyn Display>,
    pub lasted: Duration,
    /// The WebSocket close code sent (or 1006 when the peer vanished without one).
    pub close_code: u16,
    /// Why, in a few words (`slow consumer`, `token expired`, `client closed`, …).
    pub reason: &'a str,
    pub frames_in: u64,
    pub frames_out: u64,
}

impl SessionEnd<'_> {
    pub fn record(&self, metrics: &Metrics) {
        let room = self.room.map(ToString::to_string).unwrap_or_default();
        tracing::info!(
            target: "drawbridge::session",
            conn = %self.conn,
            user = %self.user,
            room,
            duration_secs = (self.lasted.as_secs_f64() * 1e3).round() / 1e3,
            close_code = self.close_code,
            reason = self.reason,
            frames_in = self.frames_in,
            frames_out = self.frames_out,
            "session ended"
        );
        metrics.session_ended(self.close_code, self.lasted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_ended_session_is_counted_by_its_close_code() {
        let metrics = Metrics::new(Arc::new(crate::hub::Hub::new()), 10);
        SessionEnd {
            conn: &"pod-1-ab/7",
            user: &"u1",
            room: Some(&"room-1"),
            lasted: Duration::from_secs(42),
            close_code: 1001,
            reason: "instance draining",
            frames_in: 3,
            frames_out: 9,
        }
        .record(&metrics);
        let text = metrics.render();
        assert!(
            text.contains("drawbridge_sessions_closed_total{code=\"1001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("drawbridge_session_duration_seconds_count 1"),
            "{text}"
        );
    }
}
