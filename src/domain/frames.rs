//! Server→client frames (`PROTOCOL.md` §1.2), built once as JSON text and shared by every recipient.
//!
//! Stored pieces (strokes, users, log entries) are already JSON, so they are spliced in as
//! [`RawValue`]s rather than parsed and printed again. The Redis scripts build the sequenced and
//! presence frames themselves; the shared engine suite checks both engines agree on the result.

use serde::Serialize;
use serde_json::value::RawValue;

use super::element::{Kind, stored_kind};
use super::identity::Identity;
use super::ids::{RoomId, StrokeId, UserId};
use super::rga::CharId;
use super::stroke::Point;

#[derive(Serialize)]
struct Message<'a, P> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: P,
}

/// `{"type": kind, "payload": payload}` as one JSON text.
pub fn message<P: Serialize>(kind: &str, payload: P) -> String {
    // Serializing our own structs and RawValues cannot fail; keep a valid frame regardless.
    serde_json::to_string(&Message { kind, payload })
        .unwrap_or_else(|_| format!(r#"{{"type":"{kind}","payload":{{}}}}"#))
}

/// Turns stored JSON texts into raw values for splicing; an entry that is not JSON (which only
/// a hand edit in `redis-cli` could produce) is left out rather than corrupting the frame.
pub fn raw_list(items: &[String]) -> Vec<&RawValue> {
    items
        .iter()
        .filter_map(|s| serde_json::from_str::<&RawValue>(s).ok())
        .collect()
}

/// The protocol versions a v1.1 client is told on every join (`PROTOCOL.md` §4.2).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions<'a> {
    pub protocol: &'a str,
    pub min_protocol: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitialState<'a> {
    room_id: &'a RoomId,
    strokes: Vec<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elements: Option<Vec<&'a RawValue>>,
    seq: u64,
    epoch: &'a str,
    users: Vec<&'a RawValue>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    versions: Option<Versions<'a>>,
}

/// `board` is every stored element in paint order. v1 clients (`versions` is `None`) get the
/// strokes only; v1.1 clients get the other kinds in `elements` and the protocol versions.
pub fn initial_state(
    room: &RoomId,
    board: &[String],
    seq: u64,
    epoch: &str,
    users: &[String],
    versions: Option<Versions<'_>>,
) -> String {
    let (strokes, others): (Vec<&RawValue>, Vec<&RawValue>) = raw_list(board)
        .into_iter()
        .partition(|e| stored_kind(e.get()) == Some(Kind::Stroke));
    message(
        "INITIAL_STATE",
        InitialState {
            room_id: room,
            strokes,
            elements: versions.is_some().then_some(others),
            seq,
            epoch,
            users: raw_list(users),
            versions,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Replay<'a> {
    room_id: &'a RoomId,
    epoch: &'a str,
    from_seq: u64,
    seq: u64,
    events: &'a [&'a RawValue],
    /// Beyond v1: who is present now, which the missed events cannot tell.
    users: Vec<&'a RawValue>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    versions: Option<Versions<'a>>,
}

/// `events` are the frames of the missed sequenced events, in order.
pub fn replay(
    room: &RoomId,
    epoch: &str,
    from_seq: u64,
    seq: u64,
    events: &[&RawValue],
    users: &[String],
    versions: Option<Versions<'_>>,
) -> String {
    message(
        "REPLAY",
        Replay {
            room_id: room,
            epoch,
            from_seq,
            seq,
            events,
            users: raw_list(users),
            versions,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanvasUpdate<'a> {
    room_id: &'a RoomId,
    canvas_data: &'a RawValue,
    user_id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// `user` is the user id as JSON, as records carry it. `seq` is `None` for the second and later
/// v1 frames of one event, so that a v1 client counting seqs sees each seq once.
pub fn canvas_update_raw(
    room: &RoomId,
    stroke: &RawValue,
    user: &RawValue,
    seq: Option<u64>,
) -> String {
    message(
        "CANVAS_UPDATE",
        CanvasUpdate {
            room_id: room,
            canvas_data: stroke,
            user_id: user,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Undo<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    stroke_id: &'a StrokeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// `seq` as in [`canvas_update_raw`].
pub fn undo_raw(room: &RoomId, user: &RawValue, stroke: &StrokeId, seq: Option<u64>) -> String {
    message(
        "UNDO",
        Undo {
            room_id: room,
            user_id: user,
            stroke_id: stroke,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Redo<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    stroke: &'a RawValue,
    seq: u64,
}

pub fn redo_raw(room: &RoomId, user: &RawValue, stroke: &RawValue, seq: u64) -> String {
    message(
        "REDO",
        Redo {
            room_id: room,
            user_id: user,
            stroke,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ElementsAdded<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    elements: &'a [&'a RawValue],
    seq: u64,
}

pub fn elements_added(room: &RoomId, user: &RawValue, elements: &[&RawValue], seq: u64) -> String {
    message(
        "ELEMENTS_ADDED",
        ElementsAdded {
            room_id: room,
            user_id: user,
            elements,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ElementsUpdated<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    updates: &'a RawValue,
    seq: u64,
}

pub fn elements_updated(room: &RoomId, user: &RawValue, updates: &RawValue, seq: u64) -> String {
    message(
        "ELEMENTS_UPDATED",
        ElementsUpdated {
            room_id: room,
            user_id: user,
            updates,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ElementsDeleted<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    ids: &'a RawValue,
    seq: u64,
}

pub fn elements_deleted(room: &RoomId, user: &RawValue, ids: &RawValue, seq: u64) -> String {
    message(
        "ELEMENTS_DELETED",
        ElementsDeleted {
            room_id: room,
            user_id: user,
            ids,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomRestored<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    seq: u64,
    at: u64,
    added: &'a [&'a RawValue],
    removed: &'a [StrokeId],
    changed: &'a RawValue,
}

/// `ROOM_RESTORED` (§5): a restore, or the undo or redo of one.
pub fn room_restored(
    room: &RoomId,
    user: &RawValue,
    seq: u64,
    at: u64,
    added: &[&RawValue],
    removed: &[StrokeId],
    changed: &RawValue,
) -> String {
    message(
        "ROOM_RESTORED",
        RoomRestored {
            room_id: room,
            user_id: user,
            seq,
            at,
            added,
            removed,
            changed,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextEdited<'a> {
    room_id: &'a RoomId,
    user_id: &'a RawValue,
    id: &'a RawValue,
    ops: &'a RawValue,
    seq: u64,
}

pub fn text_edited(
    room: &RoomId,
    user: &RawValue,
    id: &RawValue,
    ops: &RawValue,
    seq: u64,
) -> String {
    message(
        "TEXT_EDITED",
        TextEdited {
            room_id: room,
            user_id: user,
            id,
            ops,
            seq,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextCursor<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
    id: &'a StrokeId,
    after: Option<&'a CharId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<Option<&'a CharId>>,
}

/// Where someone's caret (and, with `anchor`, selection) is in an element's text.
pub fn text_cursor(
    room: &RoomId,
    user: &UserId,
    id: &StrokeId,
    after: Option<&CharId>,
    anchor: Option<Option<&CharId>>,
) -> String {
    message(
        "TEXT_CURSOR",
        TextCursor {
            room_id: room,
            user_id: user,
            id,
            after,
            anchor,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StrokeProgress<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
    id: &'a StrokeId,
    points: &'a [Point],
    color: &'a str,
    width: f64,
}

/// A stroke still being drawn: the points added since the last progress of `id`.
pub fn stroke_progress(
    room: &RoomId,
    user: &UserId,
    id: &StrokeId,
    points: &[Point],
    color: &str,
    width: f64,
) -> String {
    message(
        "STROKE_PROGRESS",
        StrokeProgress {
            room_id: room,
            user_id: user,
            id,
            points,
            color,
            width,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ack<'a> {
    op_id: Option<&'a str>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stroke_id: Option<&'a StrokeId>,
    duplicate: bool,
}

/// `strokeId` is there when the op was about one stroke (v1 ops, and undo/redo of one).
pub fn ack(op_id: Option<&str>, seq: u64, stroke: Option<&StrokeId>, duplicate: bool) -> String {
    message(
        "ACK",
        Ack {
            op_id,
            seq,
            stroke_id: stroke,
            duplicate,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CursorMove<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
    username: &'a str,
    color: &'a str,
    x: f64,
    y: f64,
}

pub fn cursor_move(room: &RoomId, who: &Identity, x: f64, y: f64) -> String {
    message(
        "CURSOR_MOVE",
        CursorMove {
            room_id: room,
            user_id: &who.user_id,
            username: &who.username,
            color: &who.color,
            x,
            y,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomUser<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
}

pub fn cursor_leave(room: &RoomId, user: &UserId) -> String {
    message(
        "CURSOR_LEAVE",
        RoomUser {
            room_id: room,
            user_id: user,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserJoined<'a> {
    room_id: &'a RoomId,
    #[serde(flatten)]
    who: &'a Identity,
}

pub fn user_joined(room: &RoomId, who: &Identity) -> String {
    message("USER_JOINED", UserJoined { room_id: room, who })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserLeft<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
    count: usize,
}

pub fn user_left(room: &RoomId, user: &UserId, count: usize) -> String {
    message(
        "USER_LEFT",
        UserLeft {
            room_id: room,
            user_id: user,
            count,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Count<'a> {
    room_id: &'a RoomId,
    count: usize,
}

pub fn user_count(room: &RoomId, count: usize) -> String {
    message(
        "USER_COUNT_UPDATED",
        Count {
            room_id: room,
            count,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomOnly<'a> {
    room_id: &'a str,
}

pub fn room_expired(room: &str) -> String {
    message("ROOM_EXPIRED", RoomOnly { room_id: room })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoleChanged<'a> {
    room_id: &'a RoomId,
    user_id: &'a UserId,
    role: &'a str,
}

/// `ROLE_CHANGED {roomId, userId, role}`: the caller's rights in the room changed (§6).
pub fn role_changed(room: &RoomId, user: &UserId, role: &str) -> String {
    message(
        "ROLE_CHANGED",
        RoleChanged {
            room_id: room,
            user_id: user,
            role,
        },
    )
}

/// `ACCESS_REVOKED {roomId}`: the caller may no longer see the room and has been taken out.
pub fn access_revoked(room: &str) -> String {
    message("ACCESS_REVOKED", RoomOnly { room_id: room })
}

#[derive(Serialize)]
struct ErrorPayload<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#ref: Option<&'a str>,
}

/// `ERROR {code, message, ref?}`; `ref` echoes the offending op's id when there is one.
pub fn error(code: &str, text: &str, reference: Option<&str>) -> String {
    message(
        "ERROR",
        ErrorPayload {
            code,
            message: text,
            r#ref: reference,
        },
    )
}

pub fn pong() -> String {
    message("PONG", serde_json::Map::new())
}

/// A presence change as the Redis scripts publish it (`{"presence":{...}}`), turned into the
/// frames it means, in order, each with the connection it must skip.
pub fn presence(room: &RoomId, record: &str) -> Option<Vec<(Option<String>, String)>> {
    /// A presence entry as stored: ours, so read back as the identity it was written from.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Member {
        user_id: UserId,
        username: String,
        color: String,
    }
    #[derive(serde::Deserialize)]
    struct Change {
        #[serde(default)]
        joined: Option<Member>,
        #[serde(default)]
        except: Option<String>,
        #[serde(default)]
        left: Option<UserId>,
        #[serde(default)]
        gone: bool,
        #[serde(default)]
        count: Option<usize>,
    }
    #[derive(serde::Deserialize)]
    struct Record {
        presence: Change,
    }
    let change = serde_json::from_str::<Record>(record).ok()?.presence;
    let mut out = Vec::with_capacity(3);
    if let Some(user) = &change.left {
        out.push((None, cursor_leave(room, user)));
        if change.gone {
            out.push((None, user_left(room, user, change.count.unwrap_or(0))));
        }
    }
    if let Some(m) = change.joined {
        let who = Identity {
            user_id: m.user_id,
            username: m.username,
            color: m.color,
        };
        out.push((change.except.clone(), user_joined(room, &who)));
    }
    if let Some(count) = change.count {
        out.push((None, user_count(room, count)));
    }
    Some(out)
}

/// A presence entry as stored and as listed in `INITIAL_STATE.users`.
pub fn member(who: &Identity) -> String {
    serde_json::to_string(who).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let room = RoomId::new("r");
        let who = Identity::new(UserId::new("u"), "Ann".into());
        let v: serde_json::Value = serde_json::from_str(&user_joined(&room, &who)).expect("json");
        assert_eq!(v["type"], "USER_JOINED");
        assert_eq!(v["payload"]["roomId"], "r");
        assert_eq!(v["payload"]["username"], "Ann");
        assert_eq!(v["payload"]["color"], who.color.as_str());

        let stroke = serde_json::from_str::<&RawValue>(r#"{"a":1.5}"#).expect("raw");
        let user = serde_json::from_str::<&RawValue>(r#""u""#).expect("raw");
        let v: serde_json::Value =
            serde_json::from_str(&canvas_update_raw(&room, stroke, user, Some(7))).expect("json");
        assert_eq!(v["payload"]["canvasData"]["a"], 1.5);
        assert_eq!(v["payload"]["seq"], 7);
    }

    #[test]
    fn initial_state_skips_entries_that_are_not_json_and_splits_by_kind() {
        let board = [
            r#"{"v":1,"z":1,"id":"s","kind":"stroke"}"#.into(),
            "not json".into(),
            r#"{"v":2,"z":2,"id":"r","kind":"rect"}"#.into(),
        ];
        let versions = Versions {
            protocol: "1.1",
            min_protocol: "1.1",
        };
        let v11: serde_json::Value = serde_json::from_str(&initial_state(
            &RoomId::new("r"),
            &board,
            3,
            "e1",
            &[],
            Some(versions),
        ))
        .expect("json");
        assert_eq!(v11["payload"]["strokes"].as_array().map(Vec::len), Some(1));
        assert_eq!(v11["payload"]["elements"][0]["id"], "r");
        assert_eq!(v11["payload"]["minProtocol"], "1.1");
        assert_eq!(v11["payload"]["epoch"], "e1");
        let v1: serde_json::Value = serde_json::from_str(&initial_state(
            &RoomId::new("r"),
            &board,
            3,
            "e1",
            &[],
            None,
        ))
        .expect("json");
        assert!(v1["payload"].get("elements").is_none() && v1["payload"].get("protocol").is_none());
    }
}
