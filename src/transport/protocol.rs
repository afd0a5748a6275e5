//! Client→server messages (`PROTOCOL.md` §1.1), parsed in two steps: the envelope, then the
//! payload of the type it names, so every failure can be answered precisely.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::stroke::{Point, StrokeInput};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    pub room_id: String,
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub epoch: Option<String>,
    /// The page's protocol version (`"1.1"`); absent for v1 clients.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// Elements and patches stay JSON here: the domain checks them field by field, so an error
/// can name the field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElementsAdd {
    pub room_id: String,
    pub elements: Vec<Value>,
    #[serde(default)]
    pub op_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ElementUpdate {
    pub id: Value,
    pub patch: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElementsUpdate {
    pub room_id: String,
    pub updates: Vec<ElementUpdate>,
    #[serde(default)]
    pub op_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElementsDelete {
    pub room_id: String,
    pub ids: Vec<Value>,
    #[serde(default)]
    pub op_id: Option<String>,
}

/// `ops` stay JSON until the session checks them one by one, so an error can name the op.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextEdit {
    pub room_id: String,
    pub id: Value,
    pub ops: Vec<Value>,
    #[serde(default)]
    pub op_id: Option<String>,
}

/// `after` and `anchor` are character ids or `null`; `anchor` may be absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextCursor {
    pub room_id: String,
    pub id: Value,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub anchor: Option<Option<String>>,
}

/// Tells an absent field (`None`) from a `null` one (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrokeProgress {
    pub room_id: String,
    pub id: Value,
    pub points: Vec<Point>,
    pub color: String,
    pub width: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanvasUpdate {
    pub room_id: String,
    pub canvas_data: StrokeInput,
    #[serde(default)]
    pub op_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorMove {
    pub room_id: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undo {
    pub room_id: String,
    #[serde(default)]
    pub stroke_id: Option<String>,
    #[serde(default)]
    pub op_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrokeRef {
    #[serde(default)]
    pub stroke_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redo {
    pub room_id: String,
    #[serde(default)]
    pub stroke: Option<StrokeRef>,
    #[serde(default)]
    pub op_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRoom {
    pub room_id: String,
}

#[derive(Debug)]
pub enum ClientMessage {
    JoinRoom(JoinRoom),
    CanvasUpdate(CanvasUpdate),
    CursorMove(CursorMove),
    Undo(Undo),
    Redo(Redo),
    LeaveRoom(LeaveRoom),
    ElementsAdd(ElementsAdd),
    ElementsUpdate(ElementsUpdate),
    ElementsDelete(ElementsDelete),
    StrokeProgress(StrokeProgress),
    TextEdit(TextEdit),
    TextCursor(TextCursor),
    Ping,
}

#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// Not JSON, no `type`, or a payload that does not fit the type.
    Bad(String),
    Unknown(String),
}

impl ClientMessage {
    /// The wire type, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JoinRoom(_) => "JOIN_ROOM",
            Self::CanvasUpdate(_) => "CANVAS_UPDATE",
            Self::CursorMove(_) => "CURSOR_MOVE",
            Self::Undo(_) => "UNDO",
            Self::Redo(_) => "REDO",
            Self::LeaveRoom(_) => "LEAVE_ROOM",
            Self::ElementsAdd(_) => "ELEMENTS_ADD",
            Self::ElementsUpdate(_) => "ELEMENTS_UPDATE",
            Self::ElementsDelete(_) => "ELEMENTS_DELETE",
            Self::StrokeProgress(_) => "STROKE_PROGRESS",
            Self::TextEdit(_) => "TEXT_EDIT",
            Self::TextCursor(_) => "TEXT_CURSOR",
            Self::Ping => "PING",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let env: Envelope<'_> = serde_json::from_str(text)
            .map_err(|e| ParseError::Bad(format!("expected {{type, payload}}: {e}")))?;
        let payload = env.payload.map_or("{}", RawValue::get);
        fn body<'a, T: Deserialize<'a>>(kind: &str, payload: &'a str) -> Result<T, ParseError> {
            serde_json::from_str(payload).map_err(|e| ParseError::Bad(format!("{kind}: {e}")))
        }
        Ok(match env.kind {
            "JOIN_ROOM" => Self::JoinRoom(body(env.kind, payload)?),
            "CANVAS_UPDATE" => Self::CanvasUpdate(body(env.kind, payload)?),
            "CURSOR_MOVE" => Self::CursorMove(body(env.kind, payload)?),
            "UNDO" => Self::Undo(body(env.kind, payload)?),
            "REDO" => Self::Redo(body(env.kind, payload)?),
            "LEAVE_ROOM" => Self::LeaveRoom(body(env.kind, payload)?),
            "ELEMENTS_ADD" => Self::ElementsAdd(body(env.kind, payload)?),
            "ELEMENTS_UPDATE" => Self::ElementsUpdate(body(env.kind, payload)?),
            "ELEMENTS_DELETE" => Self::ElementsDelete(body(env.kind, payload)?),
            "STROKE_PROGRESS" => Self::StrokeProgress(body(env.kind, payload)?),
            "TEXT_EDIT" => Self::TextEdit(body(env.kind, payload)?),
            "TEXT_CURSOR" => Self::TextCursor(body(env.kind, payload)?),
            "PING" => Self::Ping,
            other => return Err(ParseError::Unknown(other.chars().take(64).collect())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_types_and_names_the_unknown() {
        assert!(matches!(
            ClientMessage::parse(
                r#"{"type":"JOIN_ROOM","payload":{"roomId":"r","since":3,"epoch":"e"}}"#
            ),
            Ok(ClientMessage::JoinRoom(JoinRoom { since: Some(3), .. }))
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"PING"}"#),
            Ok(ClientMessage::Ping)
        ));
        assert_eq!(
            ClientMessage::parse(r#"{"type":"DANCE","payload":{}}"#).map(|_| ()),
            Err(ParseError::Unknown("DANCE".into()))
        );
        for bad in [
            "nope",
            "{}",
            r#"{"type":"CURSOR_MOVE","payload":{"roomId":"r","x":"a","y":1}}"#,
        ] {
            assert!(
                matches!(ClientMessage::parse(bad), Err(ParseError::Bad(_))),
                "{bad}"
            );
        }
    }
}
