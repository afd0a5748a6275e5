//! Sequenced ops on Redis, decided in Rust (`docs/BOARD.md`, design B): read what the op
//! touches (`lua/read.lua`), run the board's rules ([`decide`]), then commit the effect with one
//! generic script (`lua/apply.lua`) that applies it only if every version the rules relied on
//! still stands. A conflict (someone changed one of those elements in between) reads again and
//! decides again. A stroke touches nothing it must read, so it stays one round trip.

use std::collections::{HashMap, HashSet};

use redis::Value;

use super::{Inner, bad_reply, next, number, tagged, text};
use crate::domain::board::{
    Board, Context, Decided, Decision, Effect, Logged, Lookup, Need, Refusal, STACK_LOOKBACK,
    Stacks, decide,
};
use crate::domain::element::{Element, ElementLimits, Kind, format_z};
use crate::domain::quota::Usage;
use crate::domain::record::{self, Parts};
use crate::domain::{RoomId, StrokeId};
use crate::engine::{
    EngineError, EngineResult, MAX_ATTEMPTS, Op, OpOutcome, ack_text, op_field, parse_op_record,
};

/// What has been read of a room's board for one op.
#[derive(Default)]
struct Known {
    elements: HashMap<StrokeId, Option<Element>>,
    /// Edge id → (from, to), when the edge index was read.
    edges: Option<Vec<(StrokeId, StrokeId, StrokeId)>>,
    /// The edge index's version, when it was read.
    edges_version: Option<String>,
    undo: Option<Vec<(u64, Option<Logged>)>>,
    redo: Option<Vec<(u64, Option<Logged>)>>,
    /// Every element id and the room's seq at that read, when the whole board was read.
    all: Option<(Vec<StrokeId>, u64)>,
}

impl Board for Known {
    fn element(&self, id: &StrokeId) -> Lookup<Element> {
        match self.elements.get(id) {
            Some(Some(e)) => Lookup::Found(e.clone()),
            Some(None) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    fn edges_touching(&self, nodes: &HashSet<StrokeId>) -> Option<Vec<StrokeId>> {
        let edges = self.edges.as_ref()?;
        let mut ids: Vec<StrokeId> = edges
            .iter()
            .filter(|(_, from, to)| nodes.contains(from) || nodes.contains(to))
            .map(|(id, _, _)| id.clone())
            .collect();
        ids.sort();
        Some(ids)
    }

    fn undo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
        self.undo.clone()
    }

    fn redo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
        self.redo.clone()
    }

    fn all_ids(&self) -> Option<Vec<StrokeId>> {
        self.all.as_ref().map(|(ids, _)| ids.clone())
    }
}

enum Read {
    Missing,
    Duplicate(u64, Option<StrokeId>),
    Done,
}

enum Committed {
    Applied(u64),
    Quota(String),
    Duplicate(u64, Option<StrokeId>),
    Conflict,
    Missing,
}

impl Inner {
    pub(super) async fn apply_op(&self, room: &RoomId, op: &Op<'_>) -> EngineResult<OpOutcome> {
        let user = &op.who.user_id;
        let field = op.op_id.map(|id| op_field(user, id)).unwrap_or_default();
        let cx = Context {
            user,
            limits: ElementLimits {
                max_points: self.settings.max_points,
            },
        };
        let mut known = Known::default();
        let mut need = Need::default();
        for _ in 0..MAX_ATTEMPTS {
            if !need.is_empty() {
                match self.read(room, &field, &need, &mut known, op).await? {
                    Read::Missing => return Ok(OpOutcome::RoomMissing),
                    Read::Duplicate(seq, ack_id) => {
                        return Ok(OpOutcome::Duplicate { seq, ack_id });
                    }
                    Read::Done => {}
                }
            }
            let decision = match decide(&op.intent, &cx, &known) {
                Decided::Do(decision) => decision,
                Decided::Refuse(refusal) => return Ok(OpOutcome::Refused(refusal)),
                Decided::Need(more) => {
                    need = more;
                    continue;
                }
            };
            match self.commit(room, &field, op, &decision, &known).await? {
                Committed::Applied(seq) => {
                    return Ok(OpOutcome::Applied {
                        seq,
                        ack_id: decision.ack_id,
                    });
                }
                Committed::Duplicate(seq, ack_id) => {
                    return Ok(OpOutcome::Duplicate { seq, ack_id });
                }
                Committed::Missing => return Ok(OpOutcome::RoomMissing),
                Committed::Quota(why) => return Ok(OpOutcome::Refused(Refusal::Quota(why))),
                Committed::Conflict => {
                    // Read afresh everything the decision stood on.
                    need = Need {
                        ids: decision.checks.iter().map(|(id, _)| id.clone()).collect(),
                        edges: known.edges.is_some(),
                        undo: known.undo.is_some(),
                        redo: known.redo.is_some(),
                        all: known.all.is_some(),
                    };
                    known = Known::default();
                }
            }
        }
        Err(EngineError::Unavailable(
            "the elements kept changing under this op; retry with the same opId".into(),
        ))
    }

    async fn read(
        &self,
        room: &RoomId,
        field: &str,
        need: &Need,
        known: &mut Known,
        op: &Op<'_>,
    ) -> EngineResult<Read> {
        let depth = |wanted: bool| {
            if wanted {
                STACK_LOOKBACK.to_string()
            } else {
                "0".into()
            }
        };
        let mut args = vec![
            field.to_owned(),
            if need.edges { "1" } else { "0" }.to_owned(),
            depth(need.undo),
            depth(need.redo),
            if need.all { "1" } else { "0" }.to_owned(),
        ];
        let ids: Vec<&StrokeId> = need.ids.iter().collect();
        args.extend(ids.iter().map(|id| id.as_str().to_owned()));
        let reply = self
            .user_script(&self.scripts.read, room, &op.who.user_id, &args)
            .await?;
        let (tag, mut items) = tagged(reply)?;
        match tag.as_str() {
            "missing" => return Ok(Read::Missing),
            "duplicate" => {
                let (seq, ack) = parse_op_record(&text(next(&mut items)?)?)
                    .ok_or_else(|| bad_reply("op record"))?;
                return Ok(Read::Duplicate(seq, ack));
            }
            "ok" => {}
            other => return Err(bad_reply(other)),
        }
        let Value::Array(elements) = next(&mut items)? else {
            return Err(bad_reply("elements"));
        };
        for (id, value) in ids.into_iter().zip(elements) {
            let element = match value {
                Value::Nil => None,
                v => Some(Element::from_stored(&text(v)?).ok_or_else(|| bad_reply("element"))?),
            };
            known.elements.insert(id.clone(), element);
        }
        if let Value::Array(index) = next(&mut items)? {
            let mut index = index.into_iter();
            known.edges_version = Some(text(next(&mut index)?)?);
            let Value::Array(flat) = next(&mut index)? else {
                return Err(bad_reply("edge index"));
            };
            let mut edges = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(id), Some(ends)) = (flat.next(), flat.next()) {
                let (from, to): (StrokeId, StrokeId) =
                    serde_json::from_str(&text(ends)?).map_err(|_| bad_reply("edge index"))?;
                edges.push((StrokeId::new(text(id)?), from, to));
            }
            known.edges = Some(edges);
        }
        if need.undo {
            known.undo = Some(entries(next(&mut items)?)?);
        } else {
            next(&mut items)?;
        }
        if need.redo {
            known.redo = Some(entries(next(&mut items)?)?);
        } else {
            next(&mut items)?;
        }
        let seq = number(next(&mut items)?)?;
        if let Value::Array(all) = next(&mut items)? {
            let mut ids = Vec::with_capacity(all.len());
            for value in all {
                let stored = text(value)?;
                // The placeholder that keeps the hash alive is no element.
                if stored.is_empty() {
                    continue;
                }
                let element = Element::from_stored(&stored).ok_or_else(|| bad_reply("element"))?;
                ids.push(element.id.clone());
                known.elements.insert(element.id.clone(), Some(element));
            }
            known.all = Some((ids, seq));
        }
        Ok(Read::Done)
    }

    async fn commit(
        &self,
        room: &RoomId,
        field: &str,
        op: &Op<'_>,
        decision: &Decision,
        known: &Known,
    ) -> EngineResult<Committed> {
        let edges_version = known.edges_version.as_deref();
        let user = &op.who.user_id;
        let parts = Parts::new(decision, op.conn, user, op.op_id);
        let (stacks, leaving) = match decision.stacks {
            Stacks::Push => ("push", String::new()),
            Stacks::Undo { undone } => ("undo", undone.map(|s| s.to_string()).unwrap_or_default()),
            Stacks::Redo { redone } => ("redo", redone.to_string()),
        };
        let usage = Usage::of(&decision.effect, |id| {
            known.elements.get(id).cloned().flatten()
        });
        let quota = &self.settings.quota;
        let mut args = vec![
            field.to_owned(),
            ack_text(decision.ack_id.as_ref()).to_owned(),
            format!(
                "{} {} {} {} {} {} {} {} {}",
                quota.room_elements,
                quota.room_bytes,
                quota.user_bytes,
                usage.elements,
                usage.bytes,
                usage.users.len(),
                self.settings.log_max.max(1),
                self.settings.snapshot_every,
                self.settings.history_max,
            ),
            self.settings.undo_max.to_string(),
            self.settings.redo_max.to_string(),
            stacks.to_owned(),
            leaving,
            parts.head,
            parts.tail,
            edges_version
                .filter(|_| decision.read_edges)
                .unwrap_or_default()
                .to_owned(),
        ];
        // A check that an added id is free is made by the HSETNX that writes it ('!' below).
        let written: HashSet<&StrokeId> = match &decision.effect {
            Effect::Add(elements) => elements.iter().map(|e| &e.id).collect(),
            _ => HashSet::new(),
        };
        let mut checks: Vec<(&str, u64)> = decision
            .checks
            .iter()
            .filter(|(id, v)| !(*v == 0 && written.contains(id)))
            .map(|(id, v)| (id.as_str(), *v))
            .collect();
        // Read whole, the board must not have moved at all: the room's seq says so in one check.
        if let (true, Some((_, seq))) = (decision.read_all, &known.all) {
            checks = vec![("", *seq)];
        }
        args.push(checks.len().to_string());
        for (id, v) in checks {
            args.push(id.to_owned());
            args.push(v.to_string());
        }
        // A put's z: '' places it on top, '=z' keeps its own, 'z' places it there.
        let keep = |e: &Element| format!("={}", format_z(e.z.unwrap_or(0.0)));
        let (puts, dels): (Vec<(&Element, String)>, Vec<&Element>) = match &decision.effect {
            Effect::Add(elements) => (
                elements
                    .iter()
                    .map(|e| (e, format!("!{}", e.z.map(format_z).unwrap_or_default())))
                    .collect(),
                Vec::new(),
            ),
            Effect::Update { updates, after, .. } => (
                after
                    .iter()
                    .map(|e| {
                        let moved = updates
                            .iter()
                            .any(|(id, patch)| id == &e.id && patch.0.contains_key("z"));
                        let z = if moved {
                            format_z(e.z.unwrap_or(0.0))
                        } else {
                            keep(e)
                        };
                        (e, z)
                    })
                    .collect(),
                Vec::new(),
            ),
            Effect::Delete(removed) => (Vec::new(), removed.iter().collect()),
            Effect::Text { after, .. } => (vec![(after.as_ref(), keep(after))], Vec::new()),
            // Written back where they were: added ones must be free, the others are replaced.
            Effect::Restore {
                written,
                removed,
                changed,
                ..
            } => (
                written
                    .iter()
                    .map(|e| {
                        let z = format_z(e.z.unwrap_or(0.0));
                        let fresh = !changed.iter().any(|c| c.id == e.id);
                        (e, if fresh { format!("!{z}") } else { z })
                    })
                    .collect(),
                removed.iter().collect(),
            ),
        };
        args.push(puts.len().to_string());
        for (element, z) in puts {
            args.push(element.id.to_string());
            args.push(z);
            // Without its opening brace: the script puts `{"v":..,"z":..,` in front.
            let body = element.body();
            args.push(body.strip_prefix('{').unwrap_or(&body).to_owned());
            args.push(edge_index_value(element));
        }
        args.push(dels.len().to_string());
        for element in dels {
            args.push(element.id.to_string());
            args.push(if element.kind == Kind::Edge { "1" } else { "0" }.to_owned());
        }
        // Last, so the script finds them from the end before it writes anything.
        for (user, delta) in &usage.users {
            args.push(user.to_string());
            args.push(delta.to_string());
        }
        let reply = self
            .user_script(&self.scripts.apply, room, user, &args)
            .await?;
        let (tag, mut items) = tagged(reply)?;
        Ok(match tag.as_str() {
            "ok" => Committed::Applied(number(next(&mut items)?)?),
            "duplicate" => {
                let (seq, ack) = parse_op_record(&text(next(&mut items)?)?)
                    .ok_or_else(|| bad_reply("op record"))?;
                Committed::Duplicate(seq, ack)
            }
            "conflict" => Committed::Conflict,
            "quota" => Committed::Quota(text(next(&mut items)?)?),
            "missing" => Committed::Missing,
            other => return Err(bad_reply(other)),
        })
    }
}

/// An edge's `["from","to"]` for the edge index; empty for other kinds.
pub(super) fn edge_index_value(element: &Element) -> String {
    match (&element.kind, &element.from, &element.to) {
        (Kind::Edge, Some(from), Some(to)) => {
            serde_json::to_string(&(from, to)).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// An undo or redo list as read: `{seq, record or nil}` entries, newest first.
fn entries(value: Value) -> EngineResult<Vec<(u64, Option<Logged>)>> {
    let Value::Array(list) = value else {
        return Ok(Vec::new());
    };
    list.into_iter()
        .map(|entry| {
            let Value::Array(pair) = entry else {
                return Err(bad_reply("stack entry"));
            };
            let mut pair = pair.into_iter();
            let seq = number(next(&mut pair)?)?;
            let logged = match next(&mut pair)? {
                Value::Nil => None,
                v => record::logged(&text(v)?),
            };
            Ok((seq, logged))
        })
        .collect()
}
