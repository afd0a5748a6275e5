//! Elements (`PROTOCOL.md` §4): the objects of a board, how a client's element or patch is
//! checked, and the one canonical way an element is stored and relayed.
//!
//! A stored element is `{"v":<seq>,"z":<z>,"id":..,"kind":..,"userId":..,...}`. `v` (the seq that
//! last changed it) and `z` (paint order) lead, so the Redis script that commits an op can stamp
//! them onto the body Rust serialized ([`Element::body`]) without decoding it. A `stroke` element
//! also carries `strokeId` and `roomId`: it *is* a v1 stroke, so the Canvas client reads it as one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::{MAX_ID_LEN, RoomId, StrokeId, UserId};
use super::rga::Rga;
use super::stroke::{Point, Stroke, is_color};

pub use super::rga::MAX_TEXT_CHARS;
/// Largest coordinate or size accepted.
pub const MAX_COORD: f64 = 1e7;
/// Largest `|z|`: the server's `max + 1` must stay an exact integer.
pub const MAX_Z: f64 = 1e15;
/// Most elements, updates or ids in one op.
pub const MAX_BATCH: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Stroke,
    Line,
    Arrow,
    Rect,
    Ellipse,
    Text,
    Sticky,
    Node,
    Edge,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stroke" => Self::Stroke,
            "line" => Self::Line,
            "arrow" => Self::Arrow,
            "rect" => Self::Rect,
            "ellipse" => Self::Ellipse,
            "text" => Self::Text,
            "sticky" => Self::Sticky,
            "node" => Self::Node,
            "edge" => Self::Edge,
            _ => return None,
        })
    }

    /// Kinds laid out in a frame `x, y, w, h`.
    fn framed(self) -> bool {
        matches!(
            self,
            Self::Rect | Self::Ellipse | Self::Text | Self::Sticky | Self::Node
        )
    }

    /// Whether `field` means something for this kind (§4's table).
    fn allows(self, field: Field) -> bool {
        use Field::*;
        match field {
            Z | Color => true,
            X | Y | W | H | Rotation | Fill => self.framed(),
            Points => matches!(self, Self::Stroke | Self::Line | Self::Arrow),
            Width => !matches!(self, Self::Text | Self::Sticky),
            Text => matches!(self, Self::Text | Self::Sticky | Self::Node | Self::Edge),
            From | To => self == Self::Edge,
        }
    }

    fn requires(self, field: Field) -> bool {
        use Field::*;
        match field {
            X | Y | W | H => self.framed(),
            Points => matches!(self, Self::Stroke | Self::Line | Self::Arrow),
            Color | Width => self == Self::Stroke,
            From | To => self == Self::Edge,
            _ => false,
        }
    }
}

/// The fields a client may set, in their stored order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    X,
    Y,
    W,
    H,
    Rotation,
    Points,
    Color,
    Fill,
    Width,
    Text,
    From,
    To,
    Z,
}

impl Field {
    const ALL: [Field; 13] = [
        Field::X,
        Field::Y,
        Field::W,
        Field::H,
        Field::Rotation,
        Field::Points,
        Field::Color,
        Field::Fill,
        Field::Width,
        Field::Text,
        Field::From,
        Field::To,
        Field::Z,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::X => "x",
            Field::Y => "y",
            Field::W => "w",
            Field::H => "h",
            Field::Rotation => "rotation",
            Field::Points => "points",
            Field::Color => "color",
            Field::Fill => "fill",
            Field::Width => "width",
            Field::Text => "text",
            Field::From => "from",
            Field::To => "to",
            Field::Z => "z",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// An element as stored and relayed. Serialization writes the body (no `v`, no `z`); see
/// [`Element::stored`] for the whole stored text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Element {
    #[serde(default, skip_serializing)]
    pub v: u64,
    #[serde(default, skip_serializing)]
    pub z: Option<f64>,
    pub id: StrokeId,
    pub kind: Kind,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stroke_id: Option<StrokeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<Point>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<StrokeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<StrokeId>,
    /// The text as a sequence CRDT (§4.3), once someone edited it character by character; kept
    /// equal to `text`. Never taken from a client: the server builds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_state: Option<Rga>,
}

/// The patch key of [`Element::text_state`]: set by the server, never accepted from a client.
pub const TEXT_STATE: &str = "textState";

/// Why an element or patch was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementError {
    pub field: String,
    pub reason: String,
}

impl ElementError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, with the field placed inside `at` (e.g. `elements[3]`).
    pub fn at(self, at: &str) -> Self {
        Self {
            field: if self.field.is_empty() {
                at.to_owned()
            } else {
                format!("{at}.{}", self.field)
            },
            reason: self.reason,
        }
    }
}

impl std::fmt::Display for ElementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Limits that come from configuration.
#[derive(Clone, Copy, Debug)]
pub struct ElementLimits {
    pub max_points: usize,
}

/// A JSON number as `z` is written everywhere: integers without a fraction, so the value the
/// Redis script computes (`max + 1`) and the one Rust writes are the same text.
pub fn format_z(z: f64) -> String {
    if z.fract() == 0.0 && z.abs() <= MAX_Z {
        format!("{}", z as i64)
    } else {
        serde_json::to_string(&z).unwrap_or_else(|_| "0".into())
    }
}

/// Sorts stored elements into paint order: by `z`, then id (byte order), reading both from the
/// stored prefix `{"v":N,"z":Z,"id":"…"` without decoding the rest. Texts that are not
/// elements (the board hash's placeholder) are dropped.
pub fn paint_order(mut stored: Vec<String>) -> Vec<String> {
    stored.retain(|s| sort_key(s).is_some());
    stored.sort_by_cached_key(|s| sort_key(s).map(|(z, id)| (ZOrder(z), id)));
    stored
}

/// A `z` ordered totally, for sorting elements into paint order.
#[derive(Clone, Copy, Debug)]
pub struct ZOrder(pub f64);

impl PartialEq for ZOrder {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for ZOrder {}

impl PartialOrd for ZOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ZOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn sort_key(stored: &str) -> Option<(f64, String)> {
    let rest = stored.strip_prefix(r#"{"v":"#)?;
    let rest = &rest[rest.find(',')?..];
    let rest = rest.strip_prefix(r#","z":"#)?;
    let comma = rest.find(',')?;
    let z: f64 = rest[..comma].parse().ok()?;
    let rest = rest[comma..].strip_prefix(r#","id":"#)?;
    // The id is a JSON string: let serde read exactly that token.
    let mut ids = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    let id = ids.next()?.ok()?;
    Some((z, id))
}

/// The `kind` of a stored element, read without decoding the rest of it. Stored JSON is ours,
/// with `"kind"` right after `"id"`; an unescaped `,"kind":"` cannot occur inside a JSON string.
pub fn stored_kind(json: &str) -> Option<Kind> {
    let start = json.find(r#","kind":""#)? + 9;
    let rest = &json[start..];
    Kind::parse(&rest[..rest.find('"')?])
}

impl Element {
    /// The body as JSON text: everything but `v` and `z`, starting with `{"id":`.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The whole stored text for a given version and paint order.
    pub fn stored(&self, v: u64, z: &str) -> String {
        stamp(&self.body(), v, z)
    }

    /// Equal but for the version (a restore writes an element back as it was, at a new one).
    pub fn same_as(&self, other: &Element) -> bool {
        self.id == other.id && {
            let mut other = other.clone();
            other.v = self.v;
            *self == other
        }
    }

    /// Parses stored JSON (ours, so a failure means a hand edit or a bug).
    pub fn from_stored(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    /// The v1 stroke this element is, when it is one.
    pub fn from_stroke(stroke: Stroke) -> Self {
        Self {
            v: 0,
            z: None,
            id: stroke.stroke_id.clone(),
            kind: Kind::Stroke,
            user_id: stroke.user_id,
            stroke_id: Some(stroke.stroke_id),
            room_id: Some(stroke.room_id),
            x: None,
            y: None,
            w: None,
            h: None,
            rotation: None,
            points: Some(stroke.points),
            color: Some(stroke.color),
            fill: None,
            width: Some(stroke.width),
            text: None,
            from: None,
            to: None,
            text_state: None,
        }
    }

    /// Whether this kind holds text (and so may be edited character by character).
    pub fn has_text(&self) -> bool {
        self.kind.allows(Field::Text)
    }

    /// The element's text as a CRDT: its `textState`, or, before the first character edit,
    /// one derived from `text` the way every client derives it (§4.3 leaves this open): ids
    /// `<creator>:1`, `<creator>:2`, … in order.
    pub fn rga(&self) -> Option<Rga> {
        match &self.text_state {
            Some(state) => Some(state.clone()),
            None => {
                Rga::from_text(self.text.as_deref().unwrap_or(""), self.user_id.as_str(), 1).ok()
            }
        }
    }

    /// Parses and checks an element a client sent, stamping it with the caller and the room.
    /// Unknown fields are dropped; a field that does not fit the kind is refused.
    pub fn from_client(
        value: &Value,
        user: &UserId,
        room: &RoomId,
        limits: ElementLimits,
    ) -> Result<Self, ElementError> {
        let map = value
            .as_object()
            .ok_or_else(|| ElementError::new("", "must be an object"))?;
        let id = map
            .get("id")
            .and_then(id_text)
            .ok_or_else(|| ElementError::new("id", id_reason()))?;
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::parse)
            .ok_or_else(|| {
                ElementError::new(
                    "kind",
                    "must be one of stroke, line, arrow, rect, ellipse, text, sticky, node, edge",
                )
            })?;
        let mut element = Self::blank(StrokeId::new(id), kind, user.clone(), room);
        for field in Field::ALL {
            match map.get(field.name()) {
                None | Some(Value::Null) => {}
                Some(value) => element.set(field, value, limits)?,
            }
        }
        element.check(limits)?;
        Ok(element)
    }

    fn blank(id: StrokeId, kind: Kind, user_id: UserId, room: &RoomId) -> Self {
        let stroke = kind == Kind::Stroke;
        Self {
            v: 0,
            z: None,
            stroke_id: stroke.then(|| id.clone()),
            room_id: stroke.then(|| room.clone()),
            id,
            kind,
            user_id,
            x: None,
            y: None,
            w: None,
            h: None,
            rotation: None,
            points: None,
            color: None,
            fill: None,
            width: None,
            text: None,
            from: None,
            to: None,
            text_state: None,
        }
    }

    /// Sets one field from a client's value, checking its type and range (not the kind).
    fn set(
        &mut self,
        field: Field,
        value: &Value,
        limits: ElementLimits,
    ) -> Result<(), ElementError> {
        let name = field.name();
        if !self.kind.allows(field) {
            let kind = serde_json::to_string(&self.kind).unwrap_or_default();
            return Err(ElementError::new(
                name,
                format!("does not apply to a {kind}"),
            ));
        }
        let number = |range: &dyn Fn(f64) -> bool, why: &str| {
            value
                .as_f64()
                .filter(|n| n.is_finite() && range(*n))
                .ok_or_else(|| ElementError::new(name, why.to_owned()))
        };
        let coord = |n: f64| n.abs() <= MAX_COORD;
        let size = |n: f64| (0.0..=MAX_COORD).contains(&n);
        match field {
            Field::X => self.x = Some(number(&coord, "must be a finite number, |x| <= 1e7")?),
            Field::Y => self.y = Some(number(&coord, "must be a finite number, |y| <= 1e7")?),
            Field::W => self.w = Some(number(&size, "must be a number in [0, 1e7]")?),
            Field::H => self.h = Some(number(&size, "must be a number in [0, 1e7]")?),
            Field::Rotation => {
                self.rotation = Some(number(&|_| true, "must be a finite number (radians)")?)
            }
            Field::Z => {
                self.z = Some(number(
                    &|n: f64| n.abs() <= MAX_Z,
                    "must be a finite number, |z| <= 1e15",
                )?)
            }
            Field::Width => {
                self.width = Some(number(
                    &|n| n > 0.0 && n <= 100.0,
                    "must be a number in (0, 100]",
                )?)
            }
            Field::Points => {
                let points: Vec<Point> = serde_json::from_value(value.clone())
                    .map_err(|_| ElementError::new(name, "must be a list of {x, y}"))?;
                if !points.iter().all(|p| p.x.is_finite() && p.y.is_finite()) {
                    return Err(ElementError::new(
                        name,
                        "every coordinate must be a finite number",
                    ));
                }
                if points.len() > limits.max_points {
                    return Err(ElementError::new(
                        name,
                        format!("at most {} points", limits.max_points),
                    ));
                }
                self.points = Some(points);
            }
            Field::Color | Field::Fill => {
                let color = value
                    .as_str()
                    .filter(|c| is_color(c))
                    .ok_or_else(|| ElementError::new(name, "must be #rgb, #rrggbb or #rrggbbaa"))?
                    .to_owned();
                if field == Field::Color {
                    self.color = Some(color);
                } else {
                    self.fill = Some(color);
                }
            }
            Field::Text => {
                let text = value
                    .as_str()
                    .filter(|t| t.chars().count() <= MAX_TEXT_CHARS)
                    .ok_or_else(|| {
                        ElementError::new(
                            name,
                            format!("must be a string of at most {MAX_TEXT_CHARS} characters"),
                        )
                    })?;
                self.text = Some(text.to_owned());
            }
            Field::From | Field::To => {
                let id = id_text(value).ok_or_else(|| ElementError::new(name, id_reason()))?;
                let id = Some(StrokeId::new(id));
                if field == Field::From {
                    self.from = id;
                } else {
                    self.to = id;
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self, field: Field) {
        match field {
            Field::X => self.x = None,
            Field::Y => self.y = None,
            Field::W => self.w = None,
            Field::H => self.h = None,
            Field::Rotation => self.rotation = None,
            Field::Points => self.points = None,
            Field::Color => self.color = None,
            Field::Fill => self.fill = None,
            Field::Width => self.width = None,
            Field::Text => self.text = None,
            Field::From => self.from = None,
            Field::To => self.to = None,
            Field::Z => self.z = None,
        }
    }

    /// The field's current value as JSON (`null` when absent).
    fn get(&self, field: Field) -> Value {
        let json = |v: Option<Value>| v.unwrap_or(Value::Null);
        let num = |n: Option<f64>| {
            json(n.and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)))
        };
        match field {
            Field::X => num(self.x),
            Field::Y => num(self.y),
            Field::W => num(self.w),
            Field::H => num(self.h),
            Field::Rotation => num(self.rotation),
            Field::Width => num(self.width),
            Field::Z => num(self.z),
            Field::Points => json(
                self.points
                    .as_ref()
                    .and_then(|p| serde_json::to_value(p).ok()),
            ),
            Field::Color => json(self.color.clone().map(Value::String)),
            Field::Fill => json(self.fill.clone().map(Value::String)),
            Field::Text => json(self.text.clone().map(Value::String)),
            Field::From => json(self.from.as_ref().map(|i| Value::String(i.to_string()))),
            Field::To => json(self.to.as_ref().map(|i| Value::String(i.to_string()))),
        }
    }

    /// Required fields are present and the whole fits its kind.
    fn check(&self, limits: ElementLimits) -> Result<(), ElementError> {
        for field in Field::ALL {
            if self.kind.requires(field) && self.get(field).is_null() {
                return Err(ElementError::new(field.name(), "is required for this kind"));
            }
        }
        if matches!(self.kind, Kind::Line | Kind::Arrow)
            && self.points.as_ref().is_some_and(|p| p.len() < 2)
        {
            return Err(ElementError::new(
                "points",
                "a line or arrow needs at least 2 points",
            ));
        }
        if self.kind == Kind::Stroke && self.points.as_ref().is_some_and(Vec::is_empty) {
            return Err(ElementError::new(
                "points",
                "a stroke needs at least one point",
            ));
        }
        if self
            .points
            .as_ref()
            .is_some_and(|p| p.len() > limits.max_points)
        {
            return Err(ElementError::new(
                "points",
                format!("at most {} points", limits.max_points),
            ));
        }
        Ok(())
    }

    /// Applies a checked patch: returns the element after it and the values it overwrote
    /// (`null` for a field that was absent), both as patches keyed like the input.
    pub fn patched(
        &self,
        patch: &Patch,
        limits: ElementLimits,
    ) -> Result<(Element, Patch), ElementError> {
        let mut after = self.clone();
        let mut before = Map::new();
        for (name, value) in &patch.0 {
            // Only the server's own patches (undo, a text replaced) carry the text state.
            if name == TEXT_STATE {
                before.insert(
                    name.clone(),
                    serde_json::to_value(&self.text_state).unwrap_or(Value::Null),
                );
                after.text_state = serde_json::from_value(value.clone())
                    .map_err(|_| ElementError::new(TEXT_STATE, "is not a text state"))?;
                continue;
            }
            let Some(field) = Field::named(name) else {
                continue;
            };
            before.insert(name.clone(), self.get(field));
            if value.is_null() {
                if self.kind.requires(field) || field == Field::Z {
                    return Err(ElementError::new(
                        name.clone(),
                        "is required for this kind and cannot be cleared",
                    ));
                }
                after.clear(field);
            } else {
                after.set(field, value, limits)?;
            }
        }
        after.check(limits)?;
        Ok((after, Patch(before)))
    }
}

/// The fields that differ from `before` to `after`, with `after`'s values (`null`: absent
/// there), `z` and the text state included: what a client applies to get from one to the other.
pub fn patch_between(before: &Element, after: &Element) -> Patch {
    let map = |e: &Element| -> Map<String, Value> {
        let mut m = match serde_json::to_value(e) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        m.insert(
            "z".into(),
            e.z.and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
        );
        m
    };
    let (b, a) = (map(before), map(after));
    let mut patch = Map::new();
    for (k, v) in &a {
        if b.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    Patch(patch)
}

/// Stamps a body (`{"id":...}`) with its version and paint order, as the Redis script does.
pub fn stamp(body: &str, v: u64, z: &str) -> String {
    let rest = body.strip_prefix('{').unwrap_or(body);
    format!(r#"{{"v":{v},"z":{z},{rest}"#)
}

/// A partial element: field name → new value, `null` clearing an optional field. Only the
/// settable fields survive [`Patch::from_client`]; order is kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patch(pub Map<String, Value>);

impl Patch {
    /// Keeps the settable fields of a client's patch; refuses `id`, `kind` and `userId`, and an
    /// empty result. Values are checked against the element's kind when applied.
    pub fn from_client(value: &Value) -> Result<Self, ElementError> {
        let map = value
            .as_object()
            .ok_or_else(|| ElementError::new("patch", "must be an object"))?;
        let mut kept = Map::new();
        for (name, value) in map {
            match name.as_str() {
                "id" | "kind" | "userId" => {
                    return Err(ElementError::new(
                        format!("patch.{name}"),
                        "cannot be changed",
                    ));
                }
                other if Field::named(other).is_some() => {
                    kept.insert(name.clone(), value.clone());
                }
                _ => {}
            }
        }
        if kept.is_empty() {
            return Err(ElementError::new("patch", "sets no field"));
        }
        Ok(Self(kept))
    }

    /// The node ids an `edge` patch points to.
    pub fn endpoints(&self) -> impl Iterator<Item = StrokeId> + '_ {
        ["from", "to"]
            .into_iter()
            .filter_map(|k| self.0.get(k).and_then(Value::as_str))
            .map(StrokeId::new)
    }
}

/// An element id as a client sends it (in an op, a patch target, a delete): a string, or a
/// number kept as its text, 1 to 64 bytes.
pub fn element_id(value: &Value) -> Result<StrokeId, ElementError> {
    id_text(value)
        .map(StrokeId::new)
        .ok_or_else(|| ElementError::new("id", id_reason()))
}

fn id_text(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => s.clone(),
        // Some clients mint numeric ids (`Date.now()`), kept as their decimal text.
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ID_LEN).then_some(id)
}

fn id_reason() -> String {
    format!("must be a non-empty string of at most {MAX_ID_LEN} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: ElementLimits = ElementLimits { max_points: 10 };

    fn parse(v: Value) -> Result<Element, ElementError> {
        Element::from_client(&v, &UserId::new("u1"), &RoomId::new("r1"), LIMITS)
    }

    fn field_of(v: Value) -> String {
        parse(v).expect_err("refused").field
    }

    #[test]
    fn a_rect_is_stamped_and_stored_with_v_and_z_first() {
        let e = parse(
            json!({"id": "r1", "kind": "rect", "x": 1, "y": 2, "w": 3, "h": 4,
            "userId": "mallory", "fill": null, "evil": 1}),
        )
        .expect("valid");
        assert_eq!(e.user_id.as_str(), "u1");
        let stored = e.stored(7, "3");
        assert!(
            stored.starts_with(r#"{"v":7,"z":3,"id":"r1","kind":"rect","userId":"u1","#),
            "{stored}"
        );
        assert!(!stored.contains("evil"));
        let back = Element::from_stored(&stored).expect("parses");
        assert_eq!((back.v, back.z), (7, Some(3.0)));
        assert_eq!(stored_kind(&stored), Some(Kind::Rect));
    }

    #[test]
    fn a_stroke_element_is_a_v1_stroke() {
        let e = parse(
            json!({"id": 17, "kind": "stroke", "points": [{"x": 1, "y": 2}],
            "color": "#abc", "width": 2}),
        )
        .expect("valid");
        let v: Value = serde_json::from_str(&e.body()).expect("json");
        assert_eq!(v["strokeId"], "17");
        assert_eq!(v["roomId"], "r1");
    }

    #[test]
    fn every_bad_field_is_named() {
        let rect = |extra: Value| {
            let mut base = json!({"id": "r", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1});
            for (k, v) in extra.as_object().expect("object") {
                base[k] = v.clone();
            }
            base
        };
        assert_eq!(field_of(json!({"id": "", "kind": "rect"})), "id");
        assert_eq!(
            field_of(json!({"id": "x".repeat(65), "kind": "rect"})),
            "id"
        );
        assert_eq!(field_of(json!({"id": "a", "kind": "blob"})), "kind");
        assert_eq!(
            field_of(json!({"id": "a", "kind": "rect", "x": 0, "y": 0, "w": 1})),
            "h"
        );
        assert_eq!(field_of(rect(json!({"x": 2e7}))), "x");
        assert_eq!(field_of(rect(json!({"w": -1}))), "w");
        assert_eq!(field_of(rect(json!({"width": 0}))), "width");
        assert_eq!(field_of(rect(json!({"color": "red"}))), "color");
        assert_eq!(field_of(rect(json!({"fill": "#12"}))), "fill");
        assert_eq!(field_of(rect(json!({"text": "no text on a rect"}))), "text");
        assert_eq!(
            field_of(rect(json!({"points": [{"x": 0, "y": 0}]}))),
            "points"
        );
        assert_eq!(field_of(rect(json!({"z": 1e16}))), "z");
        assert_eq!(field_of(rect(json!({"x": "1"}))), "x");
        assert_eq!(
            field_of(
                json!({"id": "s", "kind": "sticky", "x": 0, "y": 0, "w": 1, "h": 1,
                "text": "x".repeat(MAX_TEXT_CHARS + 1)})
            ),
            "text"
        );
        assert_eq!(
            field_of(json!({"id": "l", "kind": "line", "points": [{"x": 0, "y": 0}]})),
            "points"
        );
        assert_eq!(
            field_of(json!({"id": "e", "kind": "edge", "from": "a"})),
            "to"
        );
        assert_eq!(
            field_of(
                json!({"id": "s", "kind": "stroke", "points": [{"x": 0, "y": 0}], "color": "#000"})
            ),
            "width"
        );
        let many: Vec<Value> = (0..11).map(|i| json!({"x": i, "y": i})).collect();
        assert_eq!(
            field_of(json!({"id": "l", "kind": "line", "points": many})),
            "points"
        );
    }

    #[test]
    fn patches_set_and_clear_fields_and_report_what_they_overwrote() {
        let e = parse(
            json!({"id": "r", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1, "fill": "#fff"}),
        )
        .expect("valid");
        let patch = Patch::from_client(&json!({"x": 5, "fill": null, "color": "#000", "junk": 1}))
            .expect("patch");
        let (after, before) = e.patched(&patch, LIMITS).expect("applies");
        assert_eq!(
            (after.x, after.fill.as_deref(), after.color.as_deref()),
            (Some(5.0), None, Some("#000"))
        );
        assert_eq!(
            Value::Object(before.0),
            json!({"x": 0.0, "fill": "#fff", "color": null})
        );
        let clear_required = Patch::from_client(&json!({"w": null})).expect("patch");
        assert_eq!(
            e.patched(&clear_required, LIMITS)
                .expect_err("required")
                .field,
            "w"
        );
        assert!(Patch::from_client(&json!({"kind": "ellipse"})).is_err());
        assert!(Patch::from_client(&json!({"junk": 1})).is_err());
    }

    #[test]
    fn paint_order_is_z_then_id_read_from_the_prefix() {
        let e = |id: &str, z: &str| {
            parse(json!({"id": id, "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1}))
                .expect("valid")
                .stored(1, z)
        };
        let sorted = paint_order(vec![
            e("b", "2"),
            String::new(),
            e("a", "2"),
            e("c", "-1.5"),
            e(r#"q"x"#, "10"),
        ]);
        let ids: Vec<String> = sorted
            .iter()
            .filter_map(|s| sort_key(s))
            .map(|(_, id)| id)
            .collect();
        assert_eq!(ids, ["c", "a", "b", r#"q"x"#]);
    }

    #[test]
    fn z_is_written_as_an_integer_when_it_is_one() {
        assert_eq!(format_z(3.0), "3");
        assert_eq!(format_z(-2.5), "-2.5");
    }
}
