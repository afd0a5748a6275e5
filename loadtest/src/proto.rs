//! The frames the tool sends (v1, and the v1.1 board ops of `PROTOCOL.md` §4) and the little it
//! reads of the frames it receives.
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

/// Coordinates carry the send time where no id can: a cursor's `x`, the last point of a
/// live-stroke batch and of a board stroke, a drag's `x`. The value is the sender's unix time in
/// milliseconds modulo [`CLOCK_WRAP_MS`], with microsecond fractions. The server relays
/// coordinates unchanged (parsed into an `f64` and printed back, which round-trips), and a float
/// this size keeps microseconds exactly; it is also inside the element coordinate limit (1e7).
pub const CLOCK_WRAP_MS: u64 = 1_000_000;

pub fn time_coord(now_us: u64) -> f64 {
    (now_us % (CLOCK_WRAP_MS * 1000)) as f64 / 1000.0
}

/// Microseconds between the time encoded in `x` and `now_us`; `None` if `x` is not one of ours.
pub fn coord_latency_us(x: f64, now_us: u64) -> Option<u64> {
    if !x.is_finite() || x < 0.0 || x >= CLOCK_WRAP_MS as f64 {
        return None;
    }
    let wrap = CLOCK_WRAP_MS * 1000;
    let sent = (x * 1000.0).round() as u64 % wrap;
    let now = now_us % wrap;
    Some((now + wrap - sent) % wrap)
}

/// The rect a board user adds once and drags: `rect-<conn>`.
pub fn rect_id(conn: u32) -> String {
    format!("rect-{conn}")
}

/// The connection whose rect `id` is.
pub fn rect_owner(id: &str) -> Option<u32> {
    id.strip_prefix("rect-")?.parse().ok()
}

/// Pieces of a connection's outgoing frames that never change, escaped once.
pub struct Outgoing {
    room_json: String,
    user_json: String,
    /// `"1.1"` (with quotes) when joining as a v1.1 page.
    protocol_json: Option<String>,
    conn: u32,
    /// `{"x":..,"y":..},...` (the array's items): every stroke of a connection has the same shape.
    points_json: String,
    color: String,
    width: u32,
}

impl Outgoing {
    pub fn new(room_id: &str, user_id: &str, conn: u32, points: usize) -> Self {
        let mut points_json = String::with_capacity(points * 24);
        // A little zig-zag so strokes are plausible drawings, not one repeated point.
        for i in 0..points.max(1) {
            if i > 0 {
                points_json.push(',');
            }
            let x = 100 + (conn as usize % 50) * 10 + i * 3;
            let y = 100 + (i % 7) * 5;
            let _ = write!(points_json, r#"{{"x":{x},"y":{y}}}"#);
        }
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
            protocol_json: None,
            conn,
            points_json,
            color: format!("#{:06x}", palette[conn as usize % palette.len()]),
            width: 1 + conn % 8,
        }
    }

    /// Joins as a page of `protocol` (`JOIN_ROOM {.., protocol}`); `None` is a v1 client.
    pub fn set_protocol(&mut self, protocol: Option<&str>) {
        self.protocol_json = protocol.map(json_string);
    }

    /// `JOIN_ROOM {roomId, protocol?}` or, when recovering, `JOIN_ROOM {roomId, protocol?,
    /// since, epoch}`.
    pub fn join(&self, resume: Option<(u64, &str)>) -> String {
        let mut out = format!(
            r#"{{"type":"JOIN_ROOM","payload":{{"roomId":{}"#,
            self.room_json
        );
        if let Some(p) = &self.protocol_json {
            let _ = write!(out, r#","protocol":{p}"#);
        }
        if let Some((since, epoch)) = resume {
            let _ = write!(out, r#","since":{since},"epoch":{}"#, json_string(epoch));
        }
        out.push_str("}}");
        out
    }

    /// `CANVAS_UPDATE` whose stroke id (and op id) is `tag`, written into `out` (cleared first).
    pub fn stroke(&self, tag: StrokeTag, out: &mut String) {
        self.canvas_update(tag, tag, &self.points_json, out);
    }

    /// A board stroke's final `CANVAS_UPDATE`: the id its live batches had (`id`), its own op id
    /// (`op`, carrying the send time for the ACK), and `points`, the array's items.
    pub fn final_stroke(&self, id: StrokeTag, op: StrokeTag, points: &str, out: &mut String) {
        self.canvas_update(id, op, points, out);
    }

    fn canvas_update(&self, id: StrokeTag, op: StrokeTag, points: &str, out: &mut String) {
        out.clear();
        out.push_str(r#"{"type":"CANVAS_UPDATE","payload":{"roomId":"#);
        out.push_str(&self.room_json);
        out.push_str(r#","canvasData":{"strokeId":""#);
        id.write(out);
        out.push_str(r#"","roomId":"#);
        out.push_str(&self.room_json);
        out.push_str(r#","userId":"#);
        out.push_str(&self.user_json);
        out.push_str(r#","points":["#);
        out.push_str(points);
        let _ = write!(
            out,
            r#"],"color":"{}","width":{}}},"opId":""#,
            self.color, self.width
        );
        op.write(out);
        out.push_str(r#""}}"#);
    }

    /// `STROKE_PROGRESS {roomId, id, points, color, width}`; `points` are the array's items.
    pub fn progress(&self, id: StrokeTag, points: &str, out: &mut String) {
        out.clear();
        out.push_str(r#"{"type":"STROKE_PROGRESS","payload":{"roomId":"#);
        out.push_str(&self.room_json);
        out.push_str(r#","id":""#);
        id.write(out);
        out.push_str(r#"","points":["#);
        out.push_str(points);
        let _ = write!(
            out,
            r#"],"color":"{}","width":{}}}}}"#,
            self.color, self.width
        );
    }

    /// Appends `count` points to `out` (a JSON array's items, no brackets): a short run to the
    /// right, zig-zagging in `y`, whose last point's `x` is [`time_coord`]`(now_us)` exactly.
    pub fn append_points(&self, now_us: u64, count: usize, out: &mut String) {
        let end = time_coord(now_us);
        let y0 = 100 + (self.conn % 50) * 10;
        for i in 0..count {
            if !out.is_empty() {
                out.push(',');
            }
            let x = end - (count - 1 - i) as f64 * 4.0;
            let _ = write!(out, r#"{{"x":{x},"y":{}}}"#, y0 + (i as u32 % 7) * 5);
        }
    }

    /// `ELEMENTS_ADD` of this connection's rect ([`rect_id`]), once per user.
    pub fn rect_add(&self, op: StrokeTag, out: &mut String) {
        out.clear();
        let x = 100 + (self.conn % 50) * 20;
        let _ = write!(
            out,
            r#"{{"type":"ELEMENTS_ADD","payload":{{"roomId":{},"elements":[{{"id":"{}","kind":"rect","x":{x},"y":400,"w":80,"h":50,"color":"{}","fill":null}}],"opId":""#,
            self.room_json,
            rect_id(self.conn),
            self.color
        );
        op.write(out);
        out.push_str(r#""}}"#);
    }

    /// `ELEMENTS_UPDATE` moving the rect: its `x` is [`time_coord`]`(now_us)` (it slides right
    /// at one unit per millisecond), `y` the caller's.
    pub fn drag(&self, op: StrokeTag, y: u32, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"type":"ELEMENTS_UPDATE","payload":{{"roomId":{},"updates":[{{"id":"{}","patch":{{"x":{},"y":{y}}}}}],"opId":""#,
            self.room_json,
            rect_id(self.conn),
            time_coord(op.sent_us)
        );
        op.write(out);
        out.push_str(r#""}}"#);
    }

    /// `CURSOR_MOVE` whose `x` carries `now_us` (see [`time_coord`]).
    pub fn cursor(&self, now_us: u64, y: u32, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"type":"CURSOR_MOVE","payload":{{"roomId":{},"x":{},"y":{y}}}}}"#,
            self.room_json,
            time_coord(now_us)
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
    /// Another member's drag: the first update's element id and patched `x`.
    ElementsUpdated {
        seq: u64,
        id: Cow<'a, str>,
        x: Option<f64>,
    },
    /// Another sequenced event (`UNDO`, `REDO`, `ELEMENTS_ADDED`, `ELEMENTS_DELETED`, ...):
    /// only its `seq` matters here.
    Sequenced {
        seq: u64,
        kind: &'a str,
    },
    Ack {
        seq: u64,
        /// The op's id: `opId`, else (an op sent without one) the `strokeId`. Element ops'
        /// ACKs name no stroke.
        op_id: Option<Cow<'a, str>>,
        duplicate: bool,
    },
    Cursor {
        x: f64,
    },
    /// Another member's live-stroke batch: its stroke id and its last point's `x`.
    Progress {
        id: Cow<'a, str>,
        x: Option<f64>,
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
    #[serde(default, borrow)]
    op_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stroke_id: Option<Cow<'a, str>>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct UpdatedPayload<'a> {
    seq: u64,
    #[serde(borrow)]
    updates: Vec<IdPatch<'a>>,
}

#[derive(Deserialize)]
struct IdPatch<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    patch: XOnly,
}

#[derive(Deserialize)]
struct XOnly {
    #[serde(default)]
    x: Option<f64>,
}

#[derive(Deserialize)]
struct ProgressPayload<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    points: Vec<XOnly>,
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

/// The `x` of the last point of the first `points` array in `frame` (a board stroke's
/// `CANVAS_UPDATE`, live or inside a `REPLAY`, carries its send time there), read without
/// parsing the frame: points hold only numbers, so the array ends at the first `]`.
pub fn stroke_end_x(frame: &str) -> Option<f64> {
    const POINTS: &str = "\"points\":[";
    let rest = &frame[frame.find(POINTS)? + POINTS.len()..];
    let points = &rest[..rest.find(']')?];
    let x = &points[points.rfind("\"x\":")? + 4..];
    x[..x.find([',', '}'])?].trim().parse().ok()
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
        "ELEMENTS_UPDATED" => {
            let p: UpdatedPayload = payload(text)?;
            let first = p.updates.into_iter().next();
            Incoming::ElementsUpdated {
                seq: p.seq,
                x: first.as_ref().and_then(|u| u.patch.x),
                id: first.map_or(Cow::Borrowed(""), |u| u.id),
            }
        }
        // Every other sequenced event of v1 and v1.1 (§1.2, §4.2, §4.3, §5).
        "UNDO" | "REDO" | "ELEMENTS_ADDED" | "ELEMENTS_DELETED" | "TEXT_EDITED"
        | "ROOM_RESTORED" => Incoming::Sequenced {
            seq: payload::<SeqOnly>(text)?.seq,
            kind,
        },
        "ACK" => {
            let p: AckPayload = payload(text)?;
            Incoming::Ack {
                seq: p.seq,
                op_id: p.op_id.or(p.stroke_id),
                duplicate: p.duplicate,
            }
        }
        "CURSOR_MOVE" => Incoming::Cursor {
            x: payload::<CursorPayload>(text)?.x,
        },
        "STROKE_PROGRESS" => {
            let p: ProgressPayload = payload(text)?;
            Incoming::Progress {
                id: p.id,
                x: p.points.last().and_then(|pt| pt.x),
            }
        }
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
        let x = time_coord(now);
        let json = format!("{{\"type\":\"CURSOR_MOVE\",\"payload\":{{\"x\":{x}}}}}");
        let Ok(Incoming::Cursor { x }) = parse(&json) else {
            panic!("cursor frame")
        };
        assert_eq!(coord_latency_us(x, now + 1_234), Some(1_234));
        let wrap = CLOCK_WRAP_MS * 1000;
        let before_wrap = wrap * 1_700 - 10;
        assert_eq!(
            coord_latency_us(time_coord(before_wrap), before_wrap + 20),
            Some(20)
        );
        assert_eq!(coord_latency_us(-1.0, now), None);
    }

    #[test]
    fn board_frames_are_valid_json_with_the_contract_fields() {
        let mut out = Outgoing::new("room-1", "lt-3", 3, 4);
        out.set_protocol(Some("1.1"));
        let v: serde_json::Value = serde_json::from_str(&out.join(None)).expect("json");
        assert_eq!(v["payload"]["protocol"], "1.1");
        assert!(v["payload"].get("since").is_none());
        let v: serde_json::Value = serde_json::from_str(&out.join(Some((9, "e")))).expect("json");
        assert_eq!(
            (
                v["payload"]["since"].as_u64(),
                v["payload"]["protocol"].as_str()
            ),
            (Some(9), Some("1.1"))
        );

        let tag = |n, sent_us| StrokeTag {
            conn: 3,
            n,
            sent_us,
        };
        let mut points = String::new();
        out.append_points(1_700_000_000_123_456, 3, &mut points);
        let mut buf = String::new();
        out.progress(tag(5, 1), &points, &mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["type"], "STROKE_PROGRESS");
        assert_eq!(v["payload"]["id"], "3-5-1");
        let pts = v["payload"]["points"].as_array().expect("points");
        assert_eq!(pts.len(), 3);
        assert_eq!(
            pts[2]["x"].as_f64(),
            Some(time_coord(1_700_000_000_123_456))
        );
        out.append_points(1_700_000_000_200_000, 1, &mut points);
        out.final_stroke(tag(5, 1), tag(5, 2), &points, &mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["payload"]["canvasData"]["strokeId"], "3-5-1");
        assert_eq!(v["payload"]["opId"], "3-5-2");
        assert_eq!(
            v["payload"]["canvasData"]["points"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        assert_eq!(stroke_end_x(&buf), Some(time_coord(1_700_000_000_200_000)));

        out.rect_add(tag(0, 7), &mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["payload"]["elements"][0]["id"], "rect-3");
        assert_eq!(v["payload"]["opId"], "3-0-7");
        out.drag(tag(6, 1_700_000_000_300_000), 410, &mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        let u = &v["payload"]["updates"][0];
        assert_eq!(u["id"], "rect-3");
        assert_eq!(
            u["patch"]["x"].as_f64(),
            Some(time_coord(1_700_000_000_300_000))
        );
        assert_eq!(v["payload"]["opId"], "3-6-1700000000300000");
        assert_eq!(rect_owner("rect-3"), Some(3));
        assert_eq!(rect_owner("3-5-1"), None);
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
        let update = frames::canvas_update_raw(&room, stroke_raw, user_raw, Some(42));
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
            Ok(Incoming::Ack { seq: 42, op_id: Some(ref op), duplicate: true }) if op == id
        ));
        // An op sent without an opId is named by its stroke.
        let ack = frames::ack(None, 42, Some(&StrokeId::new(id)), false);
        assert!(matches!(
            parse(&ack),
            Ok(Incoming::Ack { op_id: Some(ref op), duplicate: false, .. }) if op == id
        ));
        let x = time_coord(1_700_000_123_456_789);
        let who = Identity::new(user.clone(), "lt-2".into());
        assert!(matches!(
            parse(&frames::cursor_move(&room, &who, x, 5.0)),
            Ok(Incoming::Cursor { x: got }) if got == x
        ));
        let undo = frames::undo_raw(&room, user_raw, &StrokeId::new(id), Some(43));
        assert!(matches!(
            parse(&undo),
            Ok(Incoming::Sequenced {
                seq: 43,
                kind: "UNDO"
            })
        ));
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
            Ok(Incoming::Sequenced { seq: 43, .. })
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

    /// The board frames this tool sends, taken apart the way the gateway's session does and
    /// rebuilt by the gateway's own record and frame builders (`domain::record`,
    /// `domain::frames`): the send time must come back out of what other members receive.
    #[test]
    fn board_ops_survive_the_gateways_own_path() {
        use drawbridge::domain::board::{Decision, Effect, Stacks, Via};
        use drawbridge::domain::element::{Element, ElementLimits, Patch};
        use drawbridge::domain::frames;
        use drawbridge::domain::ids::{ConnKey, RoomId, StrokeId, UserId};
        use drawbridge::domain::record::{EventFrames, Parts};
        use drawbridge::domain::stroke::{Point, StrokeInput, StrokeLimits};
        use serde_json::Value;

        let room = RoomId::new("room-1");
        let user = UserId::new("lt-3");
        let conn = ConnKey::new("a", 1);
        let limits = ElementLimits { max_points: 5000 };
        let payload = |frame: &str| -> Value {
            let v: Value = serde_json::from_str(frame).expect("json");
            v["payload"].clone()
        };
        // What the gateway logs for an op, and the frame everyone else gets from it.
        let event = |effect: Effect, via: Via, op: &str, seq: u64, added: &[String]| {
            let decision = Decision {
                effect,
                via,
                checks: vec![],
                stacks: Stacks::Push,
                reverts: None,
                ack_id: None,
                read_edges: false,
                read_all: false,
            };
            let record = Parts::new(&decision, &conn, &user, Some(op)).assemble(seq, added);
            EventFrames::build(&room, &record).expect("a record").frame
        };
        let mut out = Outgoing::new(room.as_str(), user.as_str(), 3, 4);
        out.set_protocol(Some("1.1"));
        let mut buf = String::new();
        let tag = |n, sent_us| StrokeTag {
            conn: 3,
            n,
            sent_us,
        };
        let t0 = 1_700_000_000_123_456u64;

        // The rect, added once.
        out.rect_add(tag(0, t0), &mut buf);
        let p = payload(&buf);
        let rect = Element::from_client(&p["elements"][0], &user, &room, limits).expect("a rect");
        let added = event(
            Effect::Add(vec![rect.clone()]),
            Via::Elements,
            p["opId"].as_str().expect("opId"),
            40,
            &[rect.stored(40, "1")],
        );
        assert!(matches!(
            parse(&added),
            Ok(Incoming::Sequenced {
                seq: 40,
                kind: "ELEMENTS_ADDED"
            })
        ));

        // A drag: the patch's x is the send time.
        let sent = t0 + 50_000;
        out.drag(tag(1, sent), 405, &mut buf);
        let p = payload(&buf);
        let u = &p["updates"][0];
        let id = StrokeId::new(u["id"].as_str().expect("id"));
        let patch = Patch::from_client(&u["patch"]).expect("a patch");
        let updated = event(
            Effect::Update {
                updates: vec![(id.clone(), patch)],
                before: vec![(id, Patch::default())],
                after: vec![],
            },
            Via::Elements,
            p["opId"].as_str().expect("opId"),
            41,
            &[],
        );
        let Ok(Incoming::ElementsUpdated { seq: 41, id, x }) = parse(&updated) else {
            panic!("elements updated: {updated}")
        };
        assert_eq!(rect_owner(&id), Some(3));
        assert_eq!(x.and_then(|x| coord_latency_us(x, sent + 900)), Some(900));
        // Its ACK names the op only.
        let ack = frames::ack(p["opId"].as_str(), 41, None, false);
        let Ok(Incoming::Ack {
            seq: 41,
            op_id: Some(op),
            duplicate: false,
        }) = parse(&ack)
        else {
            panic!("ack: {ack}")
        };
        assert_eq!(StrokeTag::parse(&op), Some(tag(1, sent)));

        // A live batch, relayed as the session relays it.
        let mut points = String::new();
        let batch_at = t0 + 100_000;
        out.append_points(batch_at, 3, &mut points);
        out.progress(tag(2, t0 + 90_000), &points, &mut buf);
        let p = payload(&buf);
        let batch: Vec<Point> = serde_json::from_value(p["points"].clone()).expect("points");
        let relayed = frames::stroke_progress(
            &room,
            &user,
            &StrokeId::new(p["id"].as_str().expect("id")),
            &batch,
            p["color"].as_str().expect("color"),
            p["width"].as_f64().expect("width"),
        );
        let Ok(Incoming::Progress { id, x }) = parse(&relayed) else {
            panic!("progress: {relayed}")
        };
        assert_eq!(StrokeTag::parse(&id), Some(tag(2, t0 + 90_000)));
        assert_eq!(
            x.and_then(|x| coord_latency_us(x, batch_at + 700)),
            Some(700)
        );

        // The final stroke: the same id, every point, the send time in the last one.
        let final_at = t0 + 200_000;
        out.append_points(final_at, 1, &mut points);
        out.final_stroke(tag(2, t0 + 90_000), tag(2, final_at), &points, &mut buf);
        let p = payload(&buf);
        let input: StrokeInput = serde_json::from_value(p["canvasData"].clone()).expect("input");
        let stroke = input
            .validate(&user, &room, StrokeLimits { max_points: 5000 })
            .expect("a valid stroke");
        let stroke = Element::from_stroke(stroke);
        let update = event(
            Effect::Add(vec![stroke.clone()]),
            Via::Canvas,
            p["opId"].as_str().expect("opId"),
            42,
            &[stroke.stored(42, "2")],
        );
        assert!(
            matches!(
                fast_canvas_update(&update),
                Some(Incoming::CanvasUpdate { seq: 42, ref stroke_id }) if stroke_id == "3-2-1700000000213456"
            ),
            "{update}"
        );
        assert_eq!(
            stroke_end_x(&update).and_then(|x| coord_latency_us(x, final_at + 1_500)),
            Some(1_500)
        );
        // And inside a REPLAY.
        let events: Vec<&RawValue> = [&update, &updated]
            .iter()
            .map(|f| serde_json::from_str(f).expect("raw event"))
            .collect();
        let replay = frames::replay(&room, "ep", 40, 42, &events, &[], None);
        let Ok(Incoming::Replay { events, .. }) = parse(&replay) else {
            panic!("replay")
        };
        assert_eq!(stroke_end_x(events[0].get()), Some(time_coord(final_at)));
        assert!(matches!(
            parse(events[1].get()),
            Ok(Incoming::ElementsUpdated { seq: 41, .. })
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
        let m = parse(r#"{"type":"ACK","payload":{"opId":"1-2-3","seq":5,"duplicate":true}}"#)
            .expect("ack");
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
            Ok(Incoming::Sequenced { seq: 4, .. })
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
