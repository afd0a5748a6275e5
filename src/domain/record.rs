//! The log record of a sequenced op, and the client frames built from it.
//!
//! A record is what an op *did* (`docs/BOARD.md`): one compact JSON text, stored in the room's
//! log and published on its channel, the same in both engines:
//!
//! ```text
//! {"seq":7,"origin":"<conn>","user":"<userId>","op":"add","via":"canvas","elements":[<stored element>]}
//! {"seq":8,...,"op":"update","via":"elements","updates":[{"id":..,"patch":{..}}],"before":[..]}
//! {"seq":9,...,"op":"delete","via":"undo","reverts":5,"ids":[..],"removed":[<stored element>]}
//! ```
//!
//! Every instance builds the frames its clients see from the record ([`EventFrames::build`]),
//! once per event: frames exist in Rust only. An add's elements come last, because the Redis
//! script stamps each with its `v` and `z` and splices them in between [`Parts::head`] and
//! [`Parts::tail`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::board::{Decision, Effect, Logged, Via};
use super::element::{Element, Kind, Patch, format_z, stored_kind};
use super::frames;
use super::ids::{ConnKey, RoomId, StrokeId, UserId};
use super::rga::Applied;

/// A record without its seq and, for an add, without its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Parts {
    /// Follows `{"seq":N,`.
    pub head: String,
    /// Follows the added elements (joined by commas); for other ops they are none.
    pub tail: String,
}

impl Parts {
    pub fn new(decision: &Decision, origin: &ConnKey, user: &UserId, op_id: Option<&str>) -> Self {
        let mut head = format!(
            r#""origin":{},"user":{},"op":"{}","via":"{}""#,
            json(origin.as_str()),
            json(user),
            decision.effect.op_name(),
            decision.via.name(),
        );
        if let Some(op_id) = op_id {
            head.push_str(&format!(r#","opId":{}"#, json(op_id)));
        }
        if let Some(seq) = decision.reverts {
            head.push_str(&format!(r#","reverts":{seq}"#));
        }
        let tail = match &decision.effect {
            Effect::Add(_) => {
                head.push_str(r#","elements":["#);
                "]}".to_owned()
            }
            Effect::Update {
                updates, before, ..
            } => {
                head.push_str(&format!(
                    r#","updates":{},"before":{}}}"#,
                    id_patches(updates),
                    id_patches(before)
                ));
                String::new()
            }
            Effect::Text {
                id, ops, applied, ..
            } => {
                head.push_str(&format!(
                    r#","id":{},"ops":{},"inserted":{},"deleted":{}}}"#,
                    json(id),
                    json(ops),
                    json(&applied.inserted),
                    json(&applied.deleted)
                ));
                String::new()
            }
            Effect::Restore {
                at,
                written,
                removed,
                changed,
            } => {
                let patches: Vec<(StrokeId, Patch)> = changed
                    .iter()
                    .filter_map(|was| {
                        let now = written.iter().find(|w| w.id == was.id)?;
                        Some((was.id.clone(), super::element::patch_between(was, now)))
                    })
                    .collect();
                let was: Vec<String> = changed.iter().map(stored_as_was).collect();
                let gone: Vec<String> = removed.iter().map(stored_as_was).collect();
                head.push_str(&format!(
                    r#","at":{at},"removed":[{}],"changed":{},"was":[{}],"elements":["#,
                    gone.join(","),
                    id_patches(&patches),
                    was.join(",")
                ));
                "]}".to_owned()
            }
            Effect::Delete(removed) => {
                let ids: Vec<&StrokeId> = removed.iter().map(|e| &e.id).collect();
                let stored: Vec<String> = removed.iter().map(stored_as_was).collect();
                head.push_str(&format!(
                    r#","ids":{},"removed":[{}]}}"#,
                    json(&ids),
                    stored.join(",")
                ));
                String::new()
            }
        };
        Self { head, tail }
    }

    /// The whole record, given its seq and the stored texts of the elements it adds.
    pub fn assemble(&self, seq: u64, added: &[String]) -> String {
        format!(
            r#"{{"seq":{seq},{}{}{}"#,
            self.head,
            added.join(","),
            self.tail
        )
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn stored_as_was(e: &Element) -> String {
    e.stored(e.v, &format_z(e.z.unwrap_or(0.0)))
}

fn id_patches(list: &[(StrokeId, Patch)]) -> String {
    #[derive(serde::Serialize)]
    struct IdPatch<'a> {
        id: &'a StrokeId,
        patch: &'a Patch,
    }
    let list: Vec<IdPatch<'_>> = list
        .iter()
        .map(|(id, patch)| IdPatch { id, patch })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

#[derive(Deserialize)]
struct View<'a> {
    seq: u64,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    #[serde(borrow)]
    user: &'a RawValue,
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow)]
    via: Cow<'a, str>,
    #[serde(default, borrow)]
    elements: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    ids: Option<&'a RawValue>,
    #[serde(default, borrow)]
    removed: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    updates: Option<&'a RawValue>,
    #[serde(default, borrow)]
    before: Option<&'a RawValue>,
    /// A text edit's element, ops and what they did.
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    ops: Option<&'a RawValue>,
    #[serde(default, borrow)]
    inserted: Option<&'a RawValue>,
    #[serde(default, borrow)]
    deleted: Option<&'a RawValue>,
    /// A restore's: the seq it brings back, the patches of the elements it changed and those
    /// elements as they were.
    #[serde(default)]
    at: Option<u64>,
    #[serde(default, borrow)]
    changed: Option<&'a RawValue>,
    #[serde(default, borrow)]
    was: Vec<&'a RawValue>,
}

/// The frames of one sequenced event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFrames {
    pub seq: u64,
    /// The connection whose op it is.
    pub origin: ConnKey,
    /// What v1.1 clients get (and v1 clients, when `legacy` is `None`).
    pub frame: String,
    /// What v1 clients get instead: the stroke part of an element event in v1 terms. Empty:
    /// nothing.
    pub legacy: Option<Vec<String>>,
}

impl EventFrames {
    /// Builds the frames of a record; `None` for text that is not a record of ours.
    pub fn build(room: &RoomId, record: &str) -> Option<Self> {
        let r: View<'_> = serde_json::from_str(record).ok()?;
        let user = r.user;
        let via = Via::parse(&r.via)?;
        let is_stroke = |raw: &RawValue| stored_kind(raw.get()) == Some(Kind::Stroke);
        let single_stroke = |list: &[&RawValue]| list.len() == 1 && is_stroke(list[0]);
        let (frame, legacy) = match (r.op.as_ref(), via) {
            ("add", Via::Canvas) if !r.elements.is_empty() => (
                frames::canvas_update_raw(room, r.elements[0], user, Some(r.seq)),
                None,
            ),
            ("add", Via::Redo) if single_stroke(&r.elements) => {
                (frames::redo_raw(room, user, r.elements[0], r.seq), None)
            }
            ("delete", Via::Undo) if single_stroke(&r.removed) => {
                let id = stroke_id_of(r.removed[0])?;
                (frames::undo_raw(room, user, &id, Some(r.seq)), None)
            }
            ("add", _) => {
                let legacy: Vec<String> = r
                    .elements
                    .iter()
                    .filter(|e| is_stroke(e))
                    .enumerate()
                    .map(|(i, e)| frames::canvas_update_raw(room, e, user, first(i, r.seq)))
                    .collect();
                (
                    frames::elements_added(room, user, &r.elements, r.seq),
                    Some(legacy),
                )
            }
            ("update", _) => (
                frames::elements_updated(room, user, r.updates?, r.seq),
                None,
            ),
            ("text", _) => (frames::text_edited(room, user, r.id?, r.ops?, r.seq), None),
            ("restore", _) => restored(room, &r)?,
            ("delete", _) => {
                let legacy = r
                    .removed
                    .iter()
                    .filter(|e| is_stroke(e))
                    .filter_map(|e| stroke_id_of(e))
                    .enumerate()
                    .map(|(i, id)| frames::undo_raw(room, user, &id, first(i, r.seq)))
                    .collect();
                (
                    frames::elements_deleted(room, user, r.ids?, r.seq),
                    Some(legacy),
                )
            }
            _ => return None,
        };
        // An element event with no stroke in it goes to v1 clients as it is: they ignore the
        // type, and a client counting seqs sees no hole.
        let legacy = legacy.filter(|l: &Vec<String>| !l.is_empty());
        Some(Self {
            seq: r.seq,
            origin: ConnKey::from_raw(&r.origin),
            frame,
            legacy,
        })
    }
}

/// `ROOM_RESTORED`, and for v1 clients the strokes it added and removed in v1 terms.
fn restored(room: &RoomId, r: &View<'_>) -> Option<(String, Option<Vec<String>>)> {
    let changed = r.changed?;
    let was: Vec<StrokeId> = r.was.iter().filter_map(|e| stroke_id_of(e)).collect();
    let added: Vec<&RawValue> = r
        .elements
        .iter()
        .filter(|e| stroke_id_of(e).is_some_and(|id| !was.contains(&id)))
        .copied()
        .collect();
    let removed: Vec<StrokeId> = r.removed.iter().filter_map(|e| stroke_id_of(e)).collect();
    let is_stroke = |raw: &RawValue| stored_kind(raw.get()) == Some(Kind::Stroke);
    let mut legacy = Vec::new();
    for id in r
        .removed
        .iter()
        .filter(|e| is_stroke(e))
        .filter_map(|e| stroke_id_of(e))
    {
        let seq = first(legacy.len(), r.seq);
        legacy.push(frames::undo_raw(room, r.user, &id, seq));
    }
    for e in added.iter().filter(|e| is_stroke(e)) {
        let seq = first(legacy.len(), r.seq);
        legacy.push(frames::canvas_update_raw(room, e, r.user, seq));
    }
    let frame = frames::room_restored(room, r.user, r.seq, r.at?, &added, &removed, changed);
    Some((frame, Some(legacy)))
}

/// An event's seq on its first v1 frame only.
fn first(index: usize, seq: u64) -> Option<u64> {
    (index == 0).then_some(seq)
}

fn stroke_id_of(stored: &RawValue) -> Option<StrokeId> {
    #[derive(Deserialize)]
    struct Id {
        id: StrokeId,
    }
    serde_json::from_str::<Id>(stored.get()).ok().map(|i| i.id)
}

/// The effect a record logged, for undo and redo; `None` for text that is not one.
pub fn logged(record: &str) -> Option<Logged> {
    let r: View<'_> = serde_json::from_str(record).ok()?;
    let elements = |list: &[&RawValue]| -> Option<Vec<Element>> {
        list.iter().map(|e| Element::from_stored(e.get())).collect()
    };
    let id_patches = |raw: Option<&RawValue>| -> Option<Vec<(StrokeId, Patch)>> {
        #[derive(Deserialize)]
        struct IdPatch {
            id: StrokeId,
            patch: Patch,
        }
        let list: Vec<IdPatch> = serde_json::from_str(raw?.get()).ok()?;
        Some(list.into_iter().map(|p| (p.id, p.patch)).collect())
    };
    Some(match r.op.as_ref() {
        "add" => Logged::Added(elements(&r.elements)?),
        "delete" => Logged::Deleted(elements(&r.removed)?),
        "update" => Logged::Updated {
            updates: id_patches(r.updates)?,
            before: id_patches(r.before)?,
        },
        "restore" => Logged::Restored {
            at: r.at?,
            written: elements(&r.elements)?,
            removed: elements(&r.removed)?,
            changed: elements(&r.was)?,
        },
        "text" => Logged::Texted {
            id: serde_json::from_str(r.id?.get()).ok()?,
            applied: Applied {
                inserted: serde_json::from_str(r.inserted?.get()).ok()?,
                deleted: serde_json::from_str(r.deleted?.get()).ok()?,
            },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::Stacks;
    use crate::domain::element::ElementLimits;
    use serde_json::{Value, json};

    fn element(v: Value) -> Element {
        Element::from_client(
            &v,
            &UserId::new("ann"),
            &RoomId::new("r"),
            ElementLimits { max_points: 10 },
        )
        .expect("valid")
    }

    fn decision(effect: Effect, via: Via) -> Decision {
        Decision {
            effect,
            via,
            checks: vec![],
            stacks: Stacks::Push,
            reverts: None,
            ack_id: None,
            read_edges: false,
            read_all: false,
        }
    }

    fn frame(record: &str) -> (Value, Option<Vec<Value>>) {
        let f = EventFrames::build(&RoomId::new("r"), record).expect("a record");
        let parse = |s: &str| serde_json::from_str::<Value>(s).expect("json");
        (
            parse(&f.frame),
            f.legacy.map(|l| l.iter().map(|s| parse(s)).collect()),
        )
    }

    #[test]
    fn an_add_record_is_spliced_around_its_elements_and_read_back() {
        let rect = element(json!({"id": "r1", "kind": "rect", "x": 1, "y": 2, "w": 3, "h": 4}));
        let parts = Parts::new(
            &decision(Effect::Add(vec![rect.clone()]), Via::Elements),
            &ConnKey::new("i", 1),
            &UserId::new("ann"),
            Some("op1"),
        );
        let record = parts.assemble(5, &[rect.stored(5, "1")]);
        let (f, legacy) = frame(&record);
        assert_eq!(f["type"], "ELEMENTS_ADDED");
        assert_eq!(f["payload"]["elements"][0]["z"], 1);
        assert_eq!(f["payload"]["seq"], 5);
        assert_eq!(legacy, None, "no stroke in it: v1 clients get it as it is");
        let Some(Logged::Added(back)) = logged(&record) else {
            panic!("added")
        };
        assert_eq!((back[0].v, back[0].x), (5, Some(1.0)));
    }

    #[test]
    fn stroke_parts_of_element_events_are_told_to_v1_clients_in_v1_terms() {
        let stroke = element(
            json!({"id": "s1", "kind": "stroke", "points": [{"x": 0, "y": 0}], "color": "#000", "width": 1}),
        );
        let mut removed = stroke.clone();
        removed.v = 3;
        removed.z = Some(1.0);
        let record = Parts::new(
            &decision(Effect::Delete(vec![removed]), Via::Elements),
            &ConnKey::new("i", 1),
            &UserId::new("bob"),
            None,
        )
        .assemble(9, &[]);
        let (f, legacy) = frame(&record);
        assert_eq!(f["type"], "ELEMENTS_DELETED");
        assert_eq!(f["payload"]["ids"], json!(["s1"]));
        let legacy = legacy.expect("v1 frames");
        assert_eq!(legacy[0]["type"], "UNDO");
        assert_eq!(legacy[0]["payload"]["strokeId"], "s1");
        // A v1 undo of one stroke is an UNDO for everyone.
        let record = Parts::new(
            &decision(Effect::Delete(vec![stroke]), Via::Undo),
            &ConnKey::new("i", 1),
            &UserId::new("bob"),
            None,
        )
        .assemble(10, &[]);
        let (f, legacy) = frame(&record);
        assert_eq!((f["type"].as_str(), legacy), (Some("UNDO"), None));
    }
}
