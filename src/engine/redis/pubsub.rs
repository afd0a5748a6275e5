//! The one pub/sub connection of an instance: `PSUBSCRIBE room:*`, and every message handed to
//! the hub in seq order.
//!
//! Ordering repair lives here. When the hub reports a hole (this instance missed messages,
//! e.g. Redis cut the subscriber off), the missing events are read from the room's log and
//! delivered first. After a reconnect every local room is refilled from its last delivered
//! seq the same way. Where the log no longer reaches back, the room's sessions re-join.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::domain::access::Control;
use crate::domain::{ConnKey, RoomId, frames};
use crate::hub::{Delivered, Delivery};

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A subscriber that gets no answer to a PING this long after sending it is presumed dead
/// (a half-open TCP connection would otherwise look like a quiet one forever).
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads of the log tried before a room's sessions are told to re-join instead.
const FILL_ATTEMPTS: u32 = 3;

/// A transient message: `{"except":"<conn>","lossy":true,"frame":{...}}` (sequenced events
/// are published as their log records, `{"seq":N,...}`: see `domain::record`).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    except: Option<Cow<'a, str>>,
    #[serde(default)]
    lossy: bool,
    #[serde(borrow)]
    frame: &'a RawValue,
}

/// A published message as the hub takes it: a sequenced op's log record or a presence change
/// (their frames built here, once for every local member), or a transient envelope.
pub(super) fn parse_message(room: &RoomId, payload: &[u8]) -> Option<Vec<Delivery>> {
    if payload.starts_with(br#"{"seq":"#) {
        return Some(vec![crate::engine::delivery(
            room,
            std::str::from_utf8(payload).ok()?,
        )?]);
    }
    if payload.starts_with(br#"{"presence":"#) {
        let frames = frames::presence(room, std::str::from_utf8(payload).ok()?)?;
        return Some(
            frames
                .into_iter()
                .map(|(except, frame)| Delivery {
                    seq: None,
                    origin: except.map(|k| ConnKey::from_raw(&k)),
                    lossy: false,
                    frame: Bytes::from(frame),
                    legacy: None,
                })
                .collect(),
        );
    }
    let env: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    Some(vec![Delivery {
        seq: None,
        origin: env.except.map(|k| ConnKey::from_raw(&k)),
        lossy: env.lossy,
        frame: Bytes::copy_from_slice(env.frame.get().as_bytes()),
        legacy: None,
    }])
}

pub(super) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    while !shutdown.is_cancelled() {
        match subscribe(&inner).await {
            Ok((sink, stream)) => {
                backoff = BACKOFF_MIN;
                inner.pubsub_up.store(true, Ordering::Relaxed);
                tracing::info!("subscribed to room events");
                if !std::mem::take(&mut first) {
                    inner.hub.stats.feed_resubscribed.inc();
                }
                refill(&inner).await;
                relay(&inner, sink, stream, &shutdown).await;
                inner.pubsub_up.store(false, Ordering::Relaxed);
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!("lost the pub/sub connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to room events")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn subscribe(
    inner: &Inner,
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let connect = async {
        let pubsub = inner.client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.psubscribe(inner.keys.channel_pattern()).await?;
        Ok((sink, stream))
    };
    match tokio::time::timeout(super::OP_TIMEOUT, connect).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "timed out subscribing",
        ))),
    }
}

async fn relay(
    inner: &Inner,
    mut sink: redis::aio::PubSubSink,
    mut stream: redis::aio::PubSubStream,
    shutdown: &CancellationToken,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            msg = stream.next() => match msg {
                Some(msg) => handle(inner, msg.get_channel_name(), msg.get_payload_bytes()).await,
                None => return,
            },
            _ = ping.tick() => {
                let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<()>()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

async fn handle(inner: &Inner, channel: &str, payload: &[u8]) {
    let Some(room) = inner.keys.room_of_channel(channel) else {
        return;
    };
    // Most rooms have no member on any given instance: skip them before parsing.
    if !inner.hub.is_local(&room) {
        return;
    }
    if payload.starts_with(Control::PREFIX) {
        match Control::parse(payload) {
            Some(control) => inner.hub.control(&room, &Arc::new(control)),
            None => tracing::warn!(%room, "unreadable control record"),
        }
        return;
    }
    let Some(events) = parse_message(&room, payload) else {
        tracing::warn!(%room, "unreadable room message");
        return;
    };
    for event in &events {
        if let Delivered::Gap { after } = inner.hub.deliver(&room, event) {
            tracing::info!(%room, after, seq = ?event.seq, "filling a hole from the log");
            fill(inner, &room, after).await;
            inner.hub.deliver(&room, event);
        }
    }
}

/// Delivers the logged events after `after`; where that is impossible, makes the room re-join.
/// The read is retried briefly: right after Redis comes back, the first command on a stale
/// connection fails while the connection is re-established.
async fn fill(inner: &Inner, room: &RoomId, after: u64) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match inner.events_after(room, after).await {
            Ok(Some(slice)) => {
                for event in &slice.events {
                    if inner.hub.deliver(room, event) == Delivered::Done {
                        inner.hub.stats.filled_from_log.inc();
                    }
                }
                return;
            }
            Ok(None) => return inner.hub.resync(room),
            Err(e) if attempt >= FILL_ATTEMPTS => {
                tracing::warn!(%room, error = %e, "cannot read the log; sessions will re-join");
                return inner.hub.resync(room);
            }
            Err(_) => tokio::time::sleep(BACKOFF_MIN).await,
        }
    }
}

async fn refill(inner: &Inner) {
    for (room, position) in inner.hub.positions() {
        if let Some(after) = position {
            fill(inner, &room, after).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_every_kind() {
        let room = RoomId::new("r");
        let record = br#"{"seq":3,"origin":"a/1","user":"u","op":"delete","via":"elements","ids":["x"],"removed":[]}"#;
        let [d] = &parse_message(&room, record).expect("seq")[..] else {
            panic!("one event")
        };
        assert_eq!(d.seq, Some(3));
        assert_eq!(d.origin.as_ref().map(ConnKey::as_str), Some("a/1"));
        assert!(d.frame.starts_with(br#"{"type":"ELEMENTS_DELETED""#));
        let d = parse_message(&room, br#"{"except":"a/2","lossy":true,"frame":{}}"#)
            .expect("transient");
        assert!(d[0].lossy && d[0].seq.is_none());
        assert!(parse_message(&room, b"nope").is_none());
        // A presence change becomes its frames, in order.
        let left = parse_message(
            &room,
            br#"{"presence":{"left":"u1","count":2,"gone":true}}"#,
        )
        .expect("presence");
        let types: Vec<String> = left
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_slice(&d.frame).expect("json");
                v["type"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(types, ["CURSOR_LEAVE", "USER_LEFT", "USER_COUNT_UPDATED"]);
    }
}
