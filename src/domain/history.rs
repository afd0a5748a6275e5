//! A room's past, rebuilt from its log (`PROTOCOL.md` §5, `docs/BOARD.md`).
//!
//! The log is the source of truth: [`Board::apply`] is the one reducer every reader of the log
//! uses (time travel, diffs, snapshots, backups, the property tests that hold a live board to
//! its log). It is a plain applier, because a record holds what its op *did*: added elements
//! as stored, the patches an update applied, the ids a delete removed, the character ops of a
//! text edit, the elements a restore wrote. The rules ran once, when the op was decided.
//!
//! Snapshots (a board at some seq) are derived data: a board is one snapshot plus the records
//! after it, folded.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use super::board::text_after;
pub use super::element::patch_between;
use super::element::{Element, ElementLimits, Kind, Patch, ZOrder, format_z};
use super::ids::{RoomId, StrokeId, UserId};
use super::rga::TextOp;

#[derive(Debug, Error, PartialEq)]
pub enum HistoryError {
    /// The log or a snapshot holds something this reducer cannot read: a bug or a hand edit.
    #[error("history record {seq}: {why}")]
    Corrupt { seq: u64, why: String },
    /// Records must follow each other without a hole.
    #[error("history expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
}

/// A board at one seq: every visible element, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Board {
    pub seq: u64,
    elements: HashMap<StrokeId, Element>,
}

#[derive(Deserialize)]
struct RecordView<'a> {
    seq: u64,
    op: &'a str,
    #[serde(default)]
    user: Option<UserId>,
    #[serde(default, borrow)]
    elements: Vec<&'a RawValue>,
    #[serde(default)]
    ids: Vec<StrokeId>,
    #[serde(default, borrow)]
    removed: Vec<&'a RawValue>,
    #[serde(default)]
    updates: Vec<IdPatch>,
    #[serde(default)]
    id: Option<StrokeId>,
    #[serde(default)]
    ops: Vec<TextOp>,
}

#[derive(Deserialize)]
struct IdPatch {
    id: StrokeId,
    patch: Patch,
}

/// Records were checked when they were decided; limits that changed since must not make
/// history unreadable.
const ANY: ElementLimits = ElementLimits {
    max_points: usize::MAX,
};

impl Board {
    /// The board before the first op.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A board from its stored elements (a snapshot, the live board).
    pub fn from_stored<S: AsRef<str>>(seq: u64, stored: &[S]) -> Result<Self, HistoryError> {
        let mut elements = HashMap::with_capacity(stored.len());
        for text in stored {
            let element = parse(seq, text.as_ref())?;
            elements.insert(element.id.clone(), element);
        }
        Ok(Self { seq, elements })
    }

    /// A board from a snapshot's text, as [`Board::snapshot`] writes it.
    pub fn from_snapshot(text: &str) -> Result<Self, HistoryError> {
        #[derive(Deserialize)]
        struct Snapshot<'a> {
            seq: u64,
            #[serde(borrow)]
            elements: Vec<&'a RawValue>,
        }
        let snap: Snapshot<'_> = serde_json::from_str(text).map_err(|e| HistoryError::Corrupt {
            seq: 0,
            why: format!("snapshot: {e}"),
        })?;
        let stored: Vec<&str> = snap.elements.iter().map(|e| e.get()).collect();
        Self::from_stored(snap.seq, &stored)
    }

    /// `{"seq":N,"elements":[stored...]}`, elements in paint order.
    pub fn snapshot(&self) -> String {
        format!(
            r#"{{"seq":{},"elements":[{}]}}"#,
            self.seq,
            self.stored().join(",")
        )
    }

    /// The reducer: the board after one more record. Records must come in seq order, each
    /// right after the last.
    pub fn apply(&mut self, record: &str) -> Result<(), HistoryError> {
        let r: RecordView<'_> =
            serde_json::from_str(record).map_err(|e| HistoryError::Corrupt {
                seq: self.seq + 1,
                why: e.to_string(),
            })?;
        if r.seq != self.seq + 1 {
            return Err(HistoryError::Gap {
                expected: self.seq + 1,
                found: r.seq,
            });
        }
        let seq = r.seq;
        let corrupt = |why: &str| HistoryError::Corrupt {
            seq,
            why: why.to_owned(),
        };
        match r.op {
            // A restore writes its elements whole, like an add; what it removed goes.
            "add" | "restore" => {
                for stored in &r.removed {
                    let gone = parse(seq, stored.get())?;
                    self.elements.remove(&gone.id);
                }
                for stored in &r.elements {
                    let element = parse(seq, stored.get())?;
                    self.elements.insert(element.id.clone(), element);
                }
            }
            "delete" => {
                for id in &r.ids {
                    self.elements.remove(id);
                }
            }
            "update" => {
                for IdPatch { id, patch } in &r.updates {
                    let current = self
                        .elements
                        .get(id)
                        .ok_or_else(|| corrupt("updates an element that is not there"))?;
                    let (mut next, _) = current
                        .patched(patch, ANY)
                        .map_err(|e| corrupt(&e.to_string()))?;
                    next.v = seq;
                    self.elements.insert(id.clone(), next);
                }
            }
            "text" => {
                let id =
                    r.id.as_ref()
                        .ok_or_else(|| corrupt("a text edit names no element"))?;
                let user = r.user.as_ref().ok_or_else(|| corrupt("no user"))?;
                let current = self
                    .elements
                    .get(id)
                    .ok_or_else(|| corrupt("edits an element that is not there"))?;
                let (mut next, _) =
                    text_after(current, &r.ops, user).map_err(|why| corrupt(&why))?;
                next.v = seq;
                self.elements.insert(id.clone(), next);
            }
            other => return Err(corrupt(&format!("unknown op {other}"))),
        }
        self.seq = seq;
        Ok(())
    }

    /// Folds records in order (see [`Board::apply`]).
    pub fn apply_all<S: AsRef<str>>(
        &mut self,
        records: impl IntoIterator<Item = S>,
    ) -> Result<(), HistoryError> {
        records
            .into_iter()
            .try_for_each(|record| self.apply(record.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.elements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    pub fn get(&self, id: &StrokeId) -> Option<&Element> {
        self.elements.get(id)
    }

    /// Every element in paint order (z, then id).
    pub fn elements(&self) -> Vec<&Element> {
        let mut list: Vec<&Element> = self.elements.values().collect();
        list.sort_by(|a, b| {
            (ZOrder(a.z.unwrap_or(0.0)), &a.id).cmp(&(ZOrder(b.z.unwrap_or(0.0)), &b.id))
        });
        list
    }

    /// Every element's stored text, in paint order.
    pub fn stored(&self) -> Vec<String> {
        self.elements().into_iter().map(stored).collect()
    }

    /// Whether two boards hold the same elements, versions aside (a restore rewrites an
    /// element as it was, at a new version).
    pub fn same_elements(&self, other: &Board) -> bool {
        self.elements.len() == other.elements.len()
            && self
                .elements
                .iter()
                .all(|(id, e)| other.elements.get(id).is_some_and(|o| e.same_as(o)))
    }
}

fn parse(seq: u64, stored: &str) -> Result<Element, HistoryError> {
    Element::from_stored(stored).ok_or_else(|| HistoryError::Corrupt {
        seq,
        why: "an element that does not parse".into(),
    })
}

/// An element's stored text (its version and paint order in front).
pub fn stored(e: &Element) -> String {
    e.stored(e.v, &format_z(e.z.unwrap_or(0.0)))
}

/// One element that two boards hold differently.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub before: Element,
    pub after: Element,
}

/// What turns one board into another, element by element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<Element>,
    pub removed: Vec<Element>,
    pub changed: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What changed from `from` to `to`, in `to`'s paint order (removed ones in `from`'s).
pub fn diff(from: &Board, to: &Board) -> Diff {
    let mut d = Diff::default();
    for after in to.elements() {
        match from.get(&after.id) {
            None => d.added.push(after.clone()),
            Some(before) if !before.same_as(after) => d.changed.push(Change {
                before: before.clone(),
                after: after.clone(),
            }),
            Some(_) => {}
        }
    }
    d.removed = from
        .elements()
        .into_iter()
        .filter(|e| to.get(&e.id).is_none())
        .cloned()
        .collect();
    d
}

/// Whether the board after op `seq` is snapshotted, given the newest snapshot (or the base):
/// `last`, holding `last_elements` elements. Due on a multiple of `every` once `every` ops, and
/// as many ops as that snapshot holds elements, have passed since it. A snapshot writes the
/// whole board; spacing snapshots by the previous one's size keeps that to about one element
/// per op (plus what the ops themselves added) however big the board grows, and keeps all of
/// them together about as big as the log they summarise. A past board then replays at most
/// max(`every`, its snapshot's elements) ops: never more work than reading the snapshot.
pub fn snapshot_due(seq: u64, last: u64, last_elements: usize, every: u64) -> bool {
    every > 0
        && seq.is_multiple_of(every)
        && seq.saturating_sub(last) >= (last_elements as u64).max(every)
}

/// How far the oldest ops may fold into the base after op `seq`: the newest multiple of `every`
/// that still leaves at least `keep` ops after it (the base becomes the newest snapshot at or
/// before it). `None`: nothing to fold yet. The Redis engine applies this rule and
/// [`snapshot_due`] inside its commit script (`lua/apply.lua`, `keep_history`), which cannot
/// call Rust; the engine suite holds both engines to the same answers.
pub fn fold_point(seq: u64, keep: usize, every: u64) -> Option<u64> {
    let limit = seq.checked_sub(keep as u64)?;
    let point = limit.checked_div(every)? * every;
    (point > 0).then_some(point)
}

/// A named checkpoint of a room's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version_id: String,
    pub name: String,
    pub seq: u64,
    pub created_by: UserId,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// Versions as they are listed: newest seq first (and, for one seq, newest first).
pub fn newest_first(list: &mut [Version]) {
    list.sort_by_key(|v| std::cmp::Reverse((v.seq, v.created_at)));
}

/// Most characters of a version's name.
pub const MAX_VERSION_NAME: usize = 100;

/// A version's name as given, trimmed; `Err` says why it is not one.
pub fn version_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_VERSION_NAME {
        return Err(format!(
            "name must be at most {MAX_VERSION_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

/// The `export.json` document (§5): the board at `seq`, strokes apart as in `INITIAL_STATE`.
pub fn export_json(room: &RoomId, board: &Board) -> String {
    let (strokes, others): (Vec<String>, Vec<String>) =
        board.elements().into_iter().partition_map_kind();
    format!(
        r#"{{"format":"drawbridge-board","version":1,"roomId":{},"seq":{},"strokes":[{}],"elements":[{}]}}"#,
        serde_json::to_string(room).unwrap_or_default(),
        board.seq,
        strokes.join(","),
        others.join(",")
    )
}

/// A room as a backup keeps it: its board now, its versions, and what identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomDump {
    pub room_id: RoomId,
    /// Unix milliseconds.
    pub created_at: u64,
    pub creator: UserId,
    pub board: Board,
    pub versions: Vec<Version>,
}

impl RoomDump {
    /// An `export.json` document with what a backup adds: `createdAt`, `creator`, `versions`.
    pub fn to_json(&self) -> String {
        self.to_json_with(serde_json::Map::new())
    }

    /// [`RoomDump::to_json`] with `more` fields beside its own (what a backup adds about the
    /// room), written in one pass: the board's elements are never parsed again.
    pub fn to_json_with(&self, mut more: serde_json::Map<String, Value>) -> String {
        let doc = export_json(&self.room_id, &self.board);
        more.insert("createdAt".into(), self.created_at.into());
        more.insert("creator".into(), serde_json::json!(self.creator));
        more.insert("versions".into(), serde_json::json!(self.versions));
        // `doc` ends with `}`; the extra fields go right before it.
        let extra = Value::Object(more).to_string();
        format!("{},{}", &doc[..doc.len() - 1], &extra[1..])
    }

    /// Reads [`RoomDump::to_json`]'s document back.
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc<'a> {
            format: &'a str,
            room_id: RoomId,
            seq: u64,
            #[serde(borrow)]
            strokes: Vec<&'a RawValue>,
            #[serde(borrow)]
            elements: Vec<&'a RawValue>,
            #[serde(default)]
            created_at: u64,
            creator: UserId,
            #[serde(default)]
            versions: Vec<Version>,
        }
        let doc: Doc<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if doc.format != "drawbridge-board" {
            return Err(format!("format {:?} is not drawbridge-board", doc.format));
        }
        let stored: Vec<&str> = doc
            .strokes
            .iter()
            .chain(&doc.elements)
            .map(|e| e.get())
            .collect();
        let board = Board::from_stored(doc.seq, &stored).map_err(|e| e.to_string())?;
        Ok(Self {
            room_id: doc.room_id,
            created_at: doc.created_at,
            creator: doc.creator,
            board,
            versions: doc.versions,
        })
    }
}

/// `{roomId, seq, strokes, elements}` for `state?at=`.
pub fn state_json(room: &RoomId, board: &Board) -> String {
    let (strokes, others) = board.elements().into_iter().partition_map_kind();
    format!(
        r#"{{"roomId":{},"seq":{},"strokes":[{}],"elements":[{}]}}"#,
        serde_json::to_string(room).unwrap_or_default(),
        board.seq,
        strokes.join(","),
        others.join(",")
    )
}

trait PartitionKind {
    fn partition_map_kind(self) -> (Vec<String>, Vec<String>);
}

impl<'a, I: Iterator<Item = &'a Element>> PartitionKind for I {
    fn partition_map_kind(self) -> (Vec<String>, Vec<String>) {
        let mut strokes = Vec::new();
        let mut others = Vec::new();
        for e in self {
            if e.kind == Kind::Stroke {
                strokes.push(stored(e));
            } else {
                others.push(stored(e));
            }
        }
        (strokes, others)
    }
}

/// The elements of an `export.json` document, for an import: each as a client would send it
/// (the importer becomes their author). `None` when it is not such a document.
pub fn export_json_elements(doc: &Value) -> Option<Vec<Value>> {
    let obj = doc.as_object()?;
    if obj.get("format")?.as_str()? != "drawbridge-board" {
        return None;
    }
    let list = |k: &str| {
        obj.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Some(
        list("strokes")
            .into_iter()
            .chain(list("elements"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_are_spaced_by_the_board_they_write() {
        // A small board: every multiple of `every`.
        assert!(snapshot_due(500, 0, 0, 500));
        assert!(!snapshot_due(501, 0, 0, 500));
        assert!(snapshot_due(1000, 500, 499, 500));
        // After a snapshot of 1,200 elements: not until 1,200 ops later, on a multiple of `every`.
        assert!(!snapshot_due(2000, 1000, 1200, 500));
        assert!(snapshot_due(2500, 1000, 1200, 500));
        // A board growing by one element per op is snapshotted at doubling seqs; by ten per op,
        // less often still, but never not at all (either way about 1 + growth elements per op).
        let schedule = |per_op: u64| {
            let (mut last, mut elements, mut taken) = (0, 0, Vec::new());
            for seq in 1..=20_000 {
                if snapshot_due(seq, last, elements, 500) {
                    (last, elements) = (seq, (seq * per_op) as usize);
                    taken.push(seq);
                }
            }
            taken
        };
        assert_eq!(schedule(1), [500, 1000, 2000, 4000, 8000, 16000]);
        assert_eq!(schedule(10), [500, 5500]);
        // Off: never.
        assert!(!snapshot_due(500, 0, 0, 0));
    }

    fn record(v: Value) -> String {
        v.to_string()
    }

    fn rect(id: &str, v: u64, z: f64, x: f64) -> Value {
        json!({"v": v, "z": z, "id": id, "kind": "rect", "userId": "ann", "x": x, "y": 0, "w": 1, "h": 1})
    }

    #[test]
    fn the_reducer_applies_add_update_delete_and_restore() {
        let mut b = Board::empty();
        b.apply(&record(json!({"seq": 1, "op": "add", "user": "ann",
            "elements": [rect("a", 1, 1.0, 0.0), rect("b", 1, 2.0, 5.0)]})))
            .expect("add");
        b.apply(&record(json!({"seq": 2, "op": "update", "user": "ann",
            "updates": [{"id": "a", "patch": {"x": 9, "fill": "#ff0000"}}], "before": []})))
            .expect("update");
        let a = b.get(&StrokeId::new("a")).expect("a");
        assert_eq!(
            (a.v, a.x, a.fill.as_deref()),
            (2, Some(9.0), Some("#ff0000"))
        );
        b.apply(&record(
            json!({"seq": 3, "op": "delete", "user": "ann", "ids": ["b"], "removed": []}),
        ))
        .expect("delete");
        assert_eq!(b.len(), 1);
        b.apply(&record(json!({"seq": 4, "op": "restore", "user": "ann",
            "removed": [rect("a", 2, 1.0, 9.0)], "elements": [rect("b", 4, 2.0, 5.0)]})))
            .expect("restore");
        let ids: Vec<&str> = b.elements().iter().map(|e| e.id.as_str()).collect();
        assert_eq!((ids, b.seq), (vec!["b"], 4));
    }

    #[test]
    fn a_hole_or_a_bad_record_is_an_error_and_changes_nothing() {
        let mut b = Board::empty();
        let err = b.apply(&record(json!({"seq": 2, "op": "delete", "ids": []})));
        assert_eq!(
            err,
            Err(HistoryError::Gap {
                expected: 1,
                found: 2
            })
        );
        assert!(b.apply("not json").is_err());
        assert!(
            b.apply(&record(json!({"seq": 1, "op": "update",
            "updates": [{"id": "zz", "patch": {"x": 1}}]})))
                .is_err()
        );
        assert_eq!(b, Board::empty());
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_board() {
        let mut b = Board::empty();
        b.apply(&record(json!({"seq": 1, "op": "add", "user": "ann",
            "elements": [rect("a", 1, 1.5, 0.0), rect("b", 1, 1.0, 5.0)]})))
            .expect("add");
        let back = Board::from_snapshot(&b.snapshot()).expect("snapshot");
        assert_eq!(back, b);
        assert_eq!(
            back.stored()[0],
            stored(b.get(&StrokeId::new("b")).expect("b"))
        );
    }

    #[test]
    fn diff_and_patch_name_every_changed_field() {
        let from = Board::from_stored(
            1,
            &[
                rect("a", 1, 1.0, 0.0).to_string(),
                rect("b", 1, 2.0, 0.0).to_string(),
            ],
        )
        .expect("from");
        let mut changed = rect("a", 7, 3.0, 4.0);
        changed["fill"] = json!("#000000");
        let to = Board::from_stored(
            7,
            &[changed.to_string(), rect("c", 7, 4.0, 0.0).to_string()],
        )
        .expect("to");
        let d = diff(&from, &to);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.removed[0].id.as_str(), "b");
        let patch = patch_between(&d.changed[0].before, &d.changed[0].after);
        assert_eq!(
            Value::Object(patch.0),
            json!({"x": 4.0, "fill": "#000000", "z": 3.0})
        );
        // Versions alone are no change.
        let same_but_v = Board::from_stored(
            9,
            &[
                rect("a", 9, 1.0, 0.0).to_string(),
                rect("b", 3, 2.0, 0.0).to_string(),
            ],
        )
        .expect("v");
        assert!(diff(&from, &same_but_v).is_empty());
        assert!(from.same_elements(&same_but_v));
    }

    #[test]
    fn a_room_dump_reads_back_as_itself() {
        let board = Board::from_stored(7, &[rect("a", 3, 1.0, 2.0).to_string()]).expect("board");
        let dump = RoomDump {
            room_id: RoomId::new("r1"),
            created_at: 5,
            creator: UserId::new("ann"),
            board,
            versions: vec![Version {
                version_id: "v".into(),
                name: "first".into(),
                seq: 3,
                created_by: UserId::new("ann"),
                created_at: 9,
            }],
        };
        assert_eq!(RoomDump::from_json(&dump.to_json()), Ok(dump));
        assert!(RoomDump::from_json("{}").is_err());
    }

    #[test]
    fn version_names_are_checked() {
        assert_eq!(version_name("  v1 "), Ok("v1".into()));
        assert!(version_name(" ").is_err());
        assert!(version_name(&"x".repeat(101)).is_err());
        assert!(version_name("a\nb").is_err());
    }

    #[test]
    fn an_export_document_lists_strokes_apart_and_imports_back() {
        let stroke = json!({"v": 1, "z": 1, "id": "s", "kind": "stroke", "userId": "ann",
            "strokeId": "s", "roomId": "r", "points": [{"x": 0, "y": 0}], "color": "#000000", "width": 2});
        let b = Board::from_stored(3, &[stroke.to_string(), rect("a", 2, 2.0, 0.0).to_string()])
            .expect("board");
        let doc: Value = serde_json::from_str(&export_json(&RoomId::new("r"), &b)).expect("json");
        assert_eq!(doc["format"], "drawbridge-board");
        assert_eq!(
            (doc["seq"].as_u64(), doc["strokes"][0]["id"].as_str()),
            (Some(3), Some("s"))
        );
        assert_eq!(export_json_elements(&doc).map(|l| l.len()), Some(2));
        assert_eq!(export_json_elements(&json!({"format": "other"})), None);
    }
}
