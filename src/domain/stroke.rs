//! Strokes: what a client may send, how it is checked, and the one canonical way it is stored.

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use super::ids::{MAX_ID_LEN, RoomId, StrokeId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// A stroke as stored and relayed. Field order is part of the contract with the Redis scripts:
/// `userId` then `strokeId` come first so a script can find "this user's stroke" by prefix
/// without decoding the points.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stroke {
    pub user_id: UserId,
    pub stroke_id: StrokeId,
    pub room_id: RoomId,
    pub points: Vec<Point>,
    pub color: String,
    pub width: f64,
}

/// A stroke as a client sends it: every field optional so a missing one gets a precise error
/// rather than a generic parse failure; unknown fields are dropped by serde.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrokeInput {
    #[serde(default, deserialize_with = "string_or_number")]
    pub stroke_id: Option<String>,
    #[serde(default)]
    pub points: Option<Vec<Point>>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub width: Option<f64>,
}

/// Limits that come from configuration.
#[derive(Clone, Copy, Debug)]
pub struct StrokeLimits {
    pub max_points: usize,
}

#[derive(Debug, Error, PartialEq)]
pub enum StrokeError {
    #[error("strokeId must be a non-empty string of at most {MAX_ID_LEN} bytes")]
    BadId,
    #[error("a stroke needs at least one point")]
    NoPoints,
    #[error("a stroke may have at most {0} points")]
    TooManyPoints(usize),
    #[error("every coordinate must be a finite number")]
    NonFinite,
    #[error("width must be a number in (0, 100]")]
    BadWidth,
    #[error("color must be #rgb, #rrggbb or #rrggbbaa")]
    BadColor,
}

impl StrokeInput {
    /// Checks the input and stamps it with the caller's identity and room: whatever the client
    /// claimed for `userId` and `roomId` is ignored.
    pub fn validate(
        self,
        user: &UserId,
        room: &RoomId,
        limits: StrokeLimits,
    ) -> Result<Stroke, StrokeError> {
        let stroke_id = self
            .stroke_id
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .ok_or(StrokeError::BadId)?;
        let points = self.points.unwrap_or_default();
        if points.is_empty() {
            return Err(StrokeError::NoPoints);
        }
        if points.len() > limits.max_points {
            return Err(StrokeError::TooManyPoints(limits.max_points));
        }
        if !points.iter().all(|p| p.x.is_finite() && p.y.is_finite()) {
            return Err(StrokeError::NonFinite);
        }
        let width = self.width.ok_or(StrokeError::BadWidth)?;
        if !(width > 0.0 && width <= 100.0) {
            return Err(StrokeError::BadWidth);
        }
        let color = self
            .color
            .filter(|c| is_color(c))
            .ok_or(StrokeError::BadColor)?;
        Ok(Stroke {
            user_id: user.clone(),
            stroke_id: StrokeId::new(stroke_id),
            room_id: room.clone(),
            points,
            color,
            width,
        })
    }
}

pub(crate) fn is_color(c: &str) -> bool {
    let Some(hex) = c.strip_prefix('#') else {
        return false;
    };
    matches!(hex.len(), 3 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Some clients mint numeric ids (`Date.now()`); they are kept as their decimal text.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(serde_json::Number),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StrokeLimits = StrokeLimits { max_points: 3 };

    fn input(json: &str) -> StrokeInput {
        serde_json::from_str(json).expect("test json")
    }

    fn check(json: &str) -> Result<Stroke, StrokeError> {
        input(json).validate(&UserId::new("u1"), &RoomId::new("r1"), LIMITS)
    }

    #[test]
    fn valid_stroke_is_stamped_with_caller_and_room_and_loses_unknown_fields() {
        let s = check(r##"{"strokeId":"s1","userId":"mallory","roomId":"other","points":[{"x":1,"y":2}],"color":"#abc","width":2,"evil":1}"##)
            .expect("valid");
        assert_eq!(s.user_id.as_str(), "u1");
        assert_eq!(s.room_id.as_str(), "r1");
        let json = serde_json::to_string(&s).expect("serialize");
        assert!(
            json.starts_with(r#"{"userId":"u1","strokeId":"s1","#),
            "{json}"
        );
        assert!(!json.contains("evil"));
    }

    #[test]
    fn numeric_stroke_ids_are_kept_as_text() {
        let s = check(
            r##"{"strokeId":1700000000000,"points":[{"x":1,"y":2}],"color":"#abcdef","width":1}"##,
        )
        .expect("valid");
        assert_eq!(s.stroke_id.as_str(), "1700000000000");
    }

    #[test]
    fn every_bad_field_is_named() {
        let p = r#""points":[{"x":1,"y":2}]"#;
        let cases = [
            (format!(r##"{{"strokeId":"",{p},"color":"#abc","width":1}}"##), StrokeError::BadId),
            (format!(r##"{{"strokeId":"{}",{p},"color":"#abc","width":1}}"##, "x".repeat(65)), StrokeError::BadId),
            (r##"{"strokeId":"s","points":[],"color":"#abc","width":1}"##.to_owned(), StrokeError::NoPoints),
            (r##"{"strokeId":"s","points":[{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":1}],"color":"#abc","width":1}"##.to_owned(), StrokeError::TooManyPoints(3)),
            (format!(r##"{{"strokeId":"s",{p},"color":"#abc","width":0}}"##), StrokeError::BadWidth),
            (format!(r##"{{"strokeId":"s",{p},"color":"#abc","width":100.5}}"##), StrokeError::BadWidth),
            (format!(r#"{{"strokeId":"s",{p},"color":"red","width":1}}"#), StrokeError::BadColor),
            (format!(r##"{{"strokeId":"s",{p},"color":"#abcd","width":1}}"##), StrokeError::BadColor),
        ];
        for (json, want) in cases {
            assert_eq!(check(&json), Err(want), "{json}");
        }
        assert!(
            check(r##"{"strokeId":"s","points":[{"x":1,"y":2}],"color":"#11223344","width":100}"##)
                .is_ok()
        );
    }

    #[test]
    fn non_finite_coordinates_are_refused() {
        let mut i =
            input(r##"{"strokeId":"s","points":[{"x":1,"y":2}],"color":"#abc","width":1}"##);
        i.points = Some(vec![Point {
            x: f64::NAN,
            y: 0.0,
        }]);
        assert_eq!(
            i.validate(&UserId::new("u"), &RoomId::new("r"), LIMITS),
            Err(StrokeError::NonFinite)
        );
    }
}
