//! The v1 frames the tool sends and the little it reads of the frames it receives.
//!
//! Outgoing frames are written by hand into a reused buffer: their shape is fixed and every
//! variable piece is either a number or a string escaped once per connection. Incoming frames are
//! dispatched on a cheap prefix check of `{"type":"...` (how drawbridge writes them) with a full
//! envelope parse as the fallback, then only the needed fields are deserialized, borrowing from
//! the frame (`Cow` only allocates for escaped strings, which our own ids never contain).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// What the sender embedded in a stroke id: who sent it, its number, and when (unix µs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrokeTag {
    pub conn: u32,
    pub n: u64,
    pub sent_us: u64,
}

impl StrokeTag {
    /// Writes `<conn>-<n>-<unix micros>` (at most 52 bytes; the server allows 64).
    pub fn write(&self, out: &mut String) {
        let _ = write!(out, "{}-{}-{}", self.conn, self.n, self.sent_us);
    }

    /// Reads a tag back; `None` for a stroke this tool did not send.
    pub fn parse(id: &str) -> Option<Self> {
        let mut it = id.splitn(3, '-');
        let conn = it.next()?.parse().ok()?;
        let n = it.next()?.parse().ok()?;
        let sent_us = it.next()?.parse().ok()?;
        Some(Self { conn, n, sent_us })
    }
}

/// Cursor positions carry the send time: `x` is the sender's unix time in milliseconds modulo
/// [`CURSOR_CLOCK_WRAP_MS`], with microsecond fractions. The server relays coordinates
/// unchanged, and a float this size keeps microseconds exactly.
pub const CURSOR_CLOCK_WRAP_MS: u64 = 1_000_000;

pub fn cursor_x_for(now_us: u64) -> f64 {
    (now_us % (CURSOR_CLOCK_WRAP_MS * 1000)) as f64 / 1000.0
}

/// Microseconds between the time encoded in `x` and `now_us`; `None` if `x` is not one of ours.
pub fn cursor_latency_us(x: f64, now_us: u64) -> Option<u64> {
    if !x.is_finite() || x < 0.0 || x >= CURSOR_CLOCK_WRAP_MS as f64 {
        return None;
    }
    let wrap = CURSOR_CLOCK_WRAP_MS * 1000;
    let sent = (x * 1000.0).round() as u64 % wrap;
    let now = now_us % wrap;
    Some((now + wrap - sent) % wrap)
}

/// Pieces of a connection's outgoing frames that never change, escaped once.
pub struct Outgoing {
    room_json: String,
    user_json: String,
    /// `[{"x":..,"y":..},...]`: every stroke of a connection has the same shape.
    points_json: String,
    color: String,
    width: u32,
}

impl Outgoing {
    pub fn new(room_id: &str, user_id: &str, conn: u32, points: usize) -> Self {
        let mut points_json = String::with_capacity(points * 24 + 2);
        points_json.push('[');
        // A little zig-zag so strokes are plausible drawings, not one repeated point.
        for i in 0..points.max(1) {
            if i > 0 {
                points_json.push(',');
            }
            let x = 100 + (conn as usize % 50) * 10 + i * 3;
            let y = 100 + (i % 7) * 5;
            let _ = write!(points_json, r#"{{"x":{x},"y":{y}}}"#);
        }
        points_json.push(']');
        let palette = [
            0x1f77b4u32,
            0xff7f0e,
            0x2ca02c,
            0xd62728,
            0x9467bd,
            0x8c564b,
        ];
        Self {
            room_json: json_string(room_id),
            user_json: json_string(user_id),
            points_json,
            color: format!("#{:06x}", palette[conn as usize % palette.len()]),
            width: 1 + conn % 8,
        }
    }

    /// `JOIN_ROOM {roomId}` or, when recovering, `JOIN_ROOM {roomId, since, epoch}`.
    pub fn join(&self, resume: Option<(u64, &str)>) -> String {
        match resume {
            None => format!(
                r#"{{"type":"JOIN_ROOM","payload":{{"roomId":{}}}}}"#,
                self.room_json
            ),
            Some((since, epoch)) => format!(
                r#"{{"type":"JOIN_ROOM","payload":{{"roomId":{},"since":{since},"epoch":{}}}}}"#,
                self.room_json,
                json_string(epoch)
            ),
        }
    }

    /// `CANVAS_UPDATE` whose stroke id (and op id) is `tag`, written into `out` (cleared first).
    pub fn stroke(&self, tag: StrokeTag, out: &mut String) {
        out.clear();
        out.push_str(r#"{"type":"CANVAS_UPDATE","payload":{"roomId":"#);
        out.push_str(&self.room_json);
        out.push_str(r#","canvasData":{"strokeId":""#);
        tag.write(out);
        out.push_str(r#"","roomId":"#);
        out.push_str(&self.room_json);
        out.push_str(r#","userId":"#);
        out.push_str(&self.user_json);
        out.push_str(r#","points":"#);
        out.push_str(&self.points_json);
        let _ = write!(
            out,
            r#","color":"{}","width":{}}},"opId":""#,
            self.color, self.width
        );
        tag.write(out);
        out.push_str(r#""}}"#);
    }

    /// `CURSOR_MOVE` whose `x` carries `now_us` (see [`cursor_x_for`]).
    pub fn cursor(&self, now_us: u64, y: u32, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"type":"CURSOR_MOVE","payload":{{"roomId":{},"x":{},"y":{y}}}}}"#,
            self.room_json,
            cursor_x_for(now_us)
        );
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The parts of a server frame the tool acts on.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// Another member's stroke.
    CanvasUpdate {
        seq: u64,
        stroke_id: Cow<'a, str>,
    },
    /// Another sequenced event (`UNDO`, `REDO`): only its `seq` matters here.
    Sequenced {
        seq: u64,
    },
    Ack {
        seq: u64,
        stroke_id: Cow<'a, str>,
        duplicate: bool,
    },
    Cursor {
        x: f64,
    },
    InitialState {
        seq: u64,
        epoch: Cow<'a, str>,
        strokes: usize,
    },
    Replay {
        epoch: Cow<'a, str>,
        seq: u64,
        events: Vec<&'a RawValue>,
    },
    RoomExpired,
    Error {
        code: Cow<'a, str>,
        /// The offending op's id, when the error is about one.
        reference: Option<Cow<'a, str>>,
    },
    /// Anything else (presence, counts, pongs): counted by type, not parsed.
    Other {
        kind: Cow<'a, str>,
    },
}

#[derive(Deserialize)]
struct Env<P> {
    payload: P,
}

#[derive(Deserialize)]
struct AnyEnv<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CanvasPayload<'a> {
    #[serde(borrow)]
    canvas_data: StrokeIdOnly<'a>,
    seq: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrokeIdOnly<'a> {
    #[serde(borrow)]
    stroke_id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckPayload<'a> {
    seq: u64,
    #[serde(borrow)]
    stroke_id: Cow<'a, str>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct CursorPayload {
    x: f64,
}

#[derive(Deserialize)]
struct InitialPayload<'a> {
    seq: u64,
    #[serde(borrow)]
    epoch: Cow<'a, str>,
    strokes: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct ReplayPayload<'a> {
    #[serde(borrow)]
    epoch: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorPayload<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(default, borrow, rename = "ref")]
    reference: Option<Cow<'a, str>>,
}

/// The `type` of a frame written as `{"type":"...",` without parsing the rest.
fn fast_kind(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"type":""#)?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Parses one server frame.
pub fn parse(text: &str) -> Result<Incoming<'_>, serde_json::Error> {
    if let Some(kind) = fast_kind(text) {
        return parse_kind(kind, text);
    }
    let env: AnyEnv = serde_json::from_str(text)?;
    match env.kind {
        Cow::Borrowed(kind) => parse_kind(kind, text),
        Cow::Owned(kind) => Ok(Incoming::Other {
            kind: Cow::Owned(kind),
        }),
    }
}

/// The bulk of a run's frames are `CANVAS_UPDATE`s, which drawbridge writes with `seq` last and
/// a `canvasData` that starts `{"userId":..,"strokeId":..`: read those two without walking the
/// points. Anything else shaped (another field order, an escape in the id) is left to serde.
fn fast_canvas_update(text: &str) -> Option<Incoming<'_>> {
    const STROKE_ID: &str = ",\"strokeId\":\"";
    let (head, seq) = text.strip_suffix("}}")?.rsplit_once(",\"seq\":")?;
    let seq = seq.parse().ok()?;
    let data = &head[head.find("\"canvasData\":{")?..];
    let id = &data[data.find(STROKE_ID)? + STROKE_ID.len()..];
    let id = &id[..id.find('"')?];
    if id.contains('\\') {
        return None;
    }
    Some(Incoming::CanvasUpdate {
        seq,
        stroke_id: Cow::Borrowed(id),
    })
}

/// The `payload` of a frame, as `P`.
fn payload<'a, P: Deserialize<'a>>(text: &'a str) -> Result<P, serde_json::Error> {
    serde_json::from_str::<Env<P>>(text).map(|env| env.payload)
}

fn parse_kind<'a>(kind: &'a str, text: &'a str) -> Result<Incoming<'a>, serde_json::Error> {
    Ok(match kind {
        "CANVAS_UPDATE" => match fast_canvas_update(text) {
            Some(fast) => fast,
            None => {
                let p: CanvasPayload = payload(text)?;
                Incoming::CanvasUpdate {
                    seq: p.seq,
                    stroke_id: p.canvas_data.stroke_id,
                }
            }
        },
        "UNDO" | "REDO" => Incoming::Sequenced {
            seq: payload::<SeqOnly>(text)?.seq,
        },
        "ACK" => {
            let p: AckPayload = payload(text)?;
            Incoming::Ack {
                seq: p.seq,
                stroke_id: p.stroke_id,
                duplicate: p.duplicate,
            }
        }
        "CURSOR_MOVE" => Incoming::Cursor {
            x: payload::<CursorPayload>(text)?.x,
        },
        "INITIAL_STATE" => {
            let p: InitialPayload = payload(text)?;
            Incoming::InitialState {
                seq: p.seq,
                epoch: p.epoch,
                strokes: p.strokes.len(),
            }
        }
        "REPLAY" => {
            let p: ReplayPayload = payload(text)?;
            Incoming::Replay {
                epoch: p.epoch,
                seq: p.seq,
                events: p.events,
            }
        }
        "ROOM_EXPIRED" => Incoming::RoomExpired,
        "ERROR" => {
            let p: ErrorPayload = payload(text)?;
            Incoming::Error {
                code: p.code,
                reference: p.reference,
            }
        }
        other => Incoming::Other {
            kind: Cow::Borrowed(other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stroke_frames_are_valid_json_with_the_contract_fields() {
        let out = Outgoing::new("room-1", "lt-3", 3, 4);
        let tag = StrokeTag {
            conn: 3,
            n: 17,
            sent_us: 1_700_000_000_123_456,
        };
        let mut buf = String::new();
        out.stroke(tag, &mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["type"], "CANVAS_UPDATE");
        let p = &v["payload"];
        assert_eq!(p["roomId"], "room-1");
        assert_eq!(p["opId"], "3-17-1700000000123456");
        let s = &p["canvasData"];
        assert_eq!(s["strokeId"], "3-17-1700000000123456");
        assert_eq!(s["points"].as_array().map(Vec::len), Some(4));
        assert!(s["color"].as_str().is_some_and(|c| c.len() == 7));
        assert!(s["width"].as_u64().is_some_and(|w| w > 0 && w <= 100));
        assert_eq!(StrokeTag::parse("3-17-1700000000123456"), Some(tag));
        assert_eq!(StrokeTag::parse("someone-else"), None);

        let v: serde_json::Value =
            serde_json::from_str(&out.join(Some((9, "e\"1")))).expect("json");
        assert_eq!(v["payload"]["since"], 9);
        assert_eq!(v["payload"]["epoch"], "e\"1");
    }

    #[test]
    fn cursor_time_survives_the_round_trip_and_the_wrap() {
        let now = 1_700_000_123_456_789u64;
        let x = cursor_x_for(now);
        let json = format!("{{\"type\":\"CURSOR_MOVE\",\"payload\":{{\"x\":{x}}}}}");
        let Ok(Incoming::Cursor { x }) = parse(&json) else {
            panic!("cursor frame")
        };
        assert_eq!(cursor_latency_us(x, now + 1_234), Some(1_234));
        let wrap = CURSOR_CLOCK_WRAP_MS * 1000;
        let before_wrap = wrap * 1_700 - 10;
        assert_eq!(
            cursor_latency_us(cursor_x_for(before_wrap), before_wrap + 20),
            Some(20)
        );
    }

    /// The frames as drawbridge itself builds them (it is a dev-dependency): should their shape
    /// drift, this fails, rather than the fast path quietly giving way to a full parse.
    #[test]
    fn reads_the_frames_the_gateway_builds() {
        use drawbridge::domain::element::Element;
        use drawbridge::domain::frames;
        use drawbridge::domain::identity::Identity;
        use drawbridge::domain::ids::{RoomId, StrokeId, UserId};
        use drawbridge::domain::stroke::{Point, Stroke};

        let room = RoomId::new("room-1");
        let user = UserId::new("lt-2");
        let id = "2-7-1700000000123456";
        // A stroke as the gateway stores and relays it: an element stamped with `v` and `z`.
        let stroke = Element::from_stroke(Stroke {
            user_id: user.clone(),
            stroke_id: StrokeId::new(id),
            room_id: room.clone(),
            points: vec![Point { x: 1.0, y: 2.0 }; 3],
            color: "#1f77b4".into(),
            width: 2.0,
        })
        .stored(42, "7");
        let stroke_raw: &RawValue = serde_json::from_str(&stroke).expect("raw stroke");
        let user_raw = serde_json::to_string(&user).expect("user");
        let user_raw: &RawValue = serde_json::from_str(&user_raw).expect("raw user");
        let update = frames::canvas_update_raw(&room, stroke_raw, user_raw, 42);
        assert!(
            matches!(
                fast_canvas_update(&update),
                Some(Incoming::CanvasUpdate { seq: 42, stroke_id: Cow::Borrowed(s) }) if s == id
            ),
            "the fast path declined {update}"
        );
        let ack = frames::ack(Some(id), 42, Some(&StrokeId::new(id)), true);
        assert!(matches!(
            parse(&ack),
            Ok(Incoming::Ack { seq: 42, ref stroke_id, duplicate: true }) if stroke_id == id
        ));
        let x = cursor_x_for(1_700_000_123_456_789);
        let who = Identity::new(user.clone(), "lt-2".into());
        assert!(matches!(
            parse(&frames::cursor_move(&room, &who, x, 5.0)),
            Ok(Incoming::Cursor { x: got }) if got == x
        ));
        let undo = frames::undo_raw(&room, user_raw, &StrokeId::new(id), 43);
        assert!(matches!(parse(&undo), Ok(Incoming::Sequenced { seq: 43 })));
        let initial = frames::initial_state(&room, &[stroke.clone(), stroke], 43, "ep", &[], None);
        assert!(matches!(
            parse(&initial),
            Ok(Incoming::InitialState { seq: 43, ref epoch, strokes: 2 }) if epoch == "ep"
        ));
        let events: Vec<&RawValue> = [&update, &undo]
            .iter()
            .map(|f| serde_json::from_str(f).expect("raw event"))
            .collect();
        let replay = frames::replay(&room, "ep", 41, 43, &events, &[], None);
        let Ok(Incoming::Replay {
            epoch,
            seq: 43,
            events,
        }) = parse(&replay)
        else {
            panic!("replay: {replay}")
        };
        assert_eq!(epoch, "ep");
        assert!(matches!(
            parse(events[0].get()),
            Ok(Incoming::CanvasUpdate { seq: 42, .. })
        ));
        assert!(matches!(
            parse(events[1].get()),
            Ok(Incoming::Sequenced { seq: 43 })
        ));
        let refused = frames::error("RATE_LIMITED", "slow down", Some(id));
        assert!(matches!(
            parse(&refused),
            Ok(Incoming::Error { ref code, reference: Some(ref r) }) if code == "RATE_LIMITED" && r == id
        ));
        assert!(matches!(
            parse(&frames::room_expired("room-1")),
            Ok(Incoming::RoomExpired)
        ));
        assert!(matches!(
            parse(&frames::pong()),
            Ok(Incoming::Other { ref kind }) if kind == "PONG"
        ));
    }

    #[test]
    fn parses_what_the_server_sends() {
        let m = parse(r##"{"type":"CANVAS_UPDATE","payload":{"roomId":"r","canvasData":{"userId":"u","strokeId":"1-2-3","roomId":"r","points":[{"x":1,"y":2}],"color":"#abc","width":1},"userId":"u","seq":42}}"##).expect("cu");
        assert!(
            matches!(m, Incoming::CanvasUpdate { seq: 42, ref stroke_id } if stroke_id == "1-2-3")
        );
        // The fast path and serde agree; serde takes what the fast path declines.
        for text in [
            r##"{"type":"CANVAS_UPDATE","payload":{"roomId":"r","canvasData":{"userId":"u\"x","strokeId":"1-2-3","points":[]},"userId":"u","seq":42}}"##,
            r##"{"type":"CANVAS_UPDATE","payload":{"roomId":"r","canvasData":{"userId":"u","strokeId":"1-\u0032-3","points":[]},"userId":"u","seq":42}}"##,
            r##"{"type":"CANVAS_UPDATE","payload":{"seq":42,"roomId":"r","canvasData":{"strokeId":"1-2-3","userId":"u"}}}"##,
        ] {
            let m = parse(text).expect("cu");
            assert!(
                matches!(m, Incoming::CanvasUpdate { seq: 42, ref stroke_id } if stroke_id == "1-2-3"),
                "{text}: {m:?}"
            );
        }
        assert!(fast_canvas_update(r#"{"type":"CANVAS_UPDATE","payload":{"canvasData":{"userId":"u","strokeId":"1-\u0032-3"},"seq":4}}"#).is_none());
        assert!(
            parse(r#"{"type":"CANVAS_UPDATE","payload":{"canvasData":{"userId":"u"},"seq":4}}"#)
                .is_err()
        );
        let m = parse(r#"{"type":"ACK","payload":{"opId":"1-2-3","seq":5,"strokeId":"1-2-3","duplicate":true}}"#).expect("ack");
        assert!(matches!(
            m,
            Incoming::Ack {
                seq: 5,
                duplicate: true,
                ..
            }
        ));
        let m = parse(r#"{"type":"INITIAL_STATE","payload":{"roomId":"r","strokes":[{},{}],"seq":9,"epoch":"e","users":[]}}"#).expect("is");
        assert!(matches!(
            m,
            Incoming::InitialState {
                seq: 9,
                strokes: 2,
                ..
            }
        ));
        let m = parse(r#"{"type":"REPLAY","payload":{"roomId":"r","epoch":"e","fromSeq":3,"seq":4,"events":[{"type":"UNDO","payload":{"seq":4}}]}}"#).expect("replay");
        let Incoming::Replay { events, seq: 4, .. } = m else {
            panic!("replay")
        };
        assert!(matches!(
            parse(events[0].get()),
            Ok(Incoming::Sequenced { seq: 4 })
        ));
        // Field order is not part of the contract: the fallback path handles any order.
        let m = parse(r#"{"payload":{"code":"RATE_LIMITED","message":"m"},"type":"ERROR"}"#)
            .expect("err");
        assert!(
            matches!(m, Incoming::Error { ref code, reference: None } if code == "RATE_LIMITED")
        );
        assert!(matches!(
            parse(r#"{"type":"PONG","payload":{}}"#),
            Ok(Incoming::Other { .. })
        ));
        assert!(parse("not json").is_err());
    }
}
