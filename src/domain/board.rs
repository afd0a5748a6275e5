//! The board's rules, in one pure function: [`decide`] turns what a client asked for (an
//! [`Intent`]) into what it does (an [`Effect`]), given the part of the board it touches.
//!
//! Both engines call it, so the meaning of an op (per-field last-writer-wins, the node → edge
//! cascade, what an undo restores, "nothing to undo") exists once. The effect is what the log
//! stores (`docs/BOARD.md`: log effects, not intents), so every reader of the log is a plain
//! applier of add / set fields / delete.
//!
//! The board is read through [`Board`], which may not know everything: the Redis engine reads
//! only what an op touches. [`decide`] reports what it could not see ([`Decided::Need`]); the
//! engine reads that and asks again. Every element it looked at becomes a [`Check`]: the engine
//! commits the effect only if those versions still stand, and otherwise decides again. That is
//! how two people editing one shape at once both keep their own fields.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::element::{Element, ElementError, ElementLimits, Kind, Patch, TEXT_STATE};
use super::ids::{StrokeId, UserId};
use super::rga::{Applied, CharId, Rga, TextLimits, TextOp};

/// How many entries of a user's undo or redo list an undo or redo looks through: bounded work,
/// whatever the user did before.
pub const STACK_LOOKBACK: usize = 16;

/// What a client asked for, already parsed and checked field by field.
#[derive(Clone, Debug)]
pub enum Intent {
    /// A v1 stroke (`CANVAS_UPDATE`), as a `stroke` element.
    Stroke(Box<Element>),
    Add(Vec<Element>),
    Update(Vec<(StrokeId, Patch)>),
    Delete(Vec<StrokeId>),
    /// v1 `UNDO {strokeId}`: remove that stroke of the caller's. `None` is the generic undo.
    Undo(Option<StrokeId>),
    /// `REDO`, optionally of the undo that removed that stroke.
    Redo(Option<StrokeId>),
    /// `TEXT_EDIT`: character inserts and deletes in one element's text (§4.3).
    TextEdit {
        id: StrokeId,
        ops: Vec<TextOp>,
    },
    /// `POST .../restore {at}` (§5): make the board equal `target`, the board right after `at`.
    Restore {
        at: u64,
        target: Vec<Element>,
    },
}

impl Intent {
    /// A fixed name for the op's kind (metrics, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Stroke(_) => "stroke",
            Intent::Add(_) => "add",
            Intent::Update(_) => "update",
            Intent::Delete(_) => "delete",
            Intent::Undo(_) => "undo",
            Intent::Redo(_) => "redo",
            Intent::TextEdit { .. } => "text",
            Intent::Restore { .. } => "restore",
        }
    }
}

/// Which client message led to an effect: it picks the event clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Canvas,
    Elements,
    Undo,
    Redo,
    Restore,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Canvas => "canvas",
            Via::Elements => "elements",
            Via::Undo => "undo",
            Via::Redo => "redo",
            Via::Restore => "restore",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "canvas" => Via::Canvas,
            "elements" => Via::Elements,
            "undo" => Via::Undo,
            "redo" => Via::Redo,
            "restore" => Via::Restore,
            _ => return None,
        })
    }
}

/// What an op does to the board: the only thing the log, the frames and history need.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// New elements; those without `z` are placed on top when committed.
    Add(Vec<Element>),
    /// Fields set on existing elements, with the values they overwrote and the results.
    Update {
        updates: Vec<(StrokeId, Patch)>,
        before: Vec<(StrokeId, Patch)>,
        after: Vec<Element>,
    },
    /// Elements removed, as they were.
    Delete(Vec<Element>),
    /// Character edits of one element's text: the ops as applied, what they did (for undo),
    /// and the element after them.
    Text {
        id: StrokeId,
        ops: Vec<TextOp>,
        applied: Applied,
        after: Box<Element>,
    },
    /// Several elements rewritten at once (a restore, or the undo of one): `removed` as they
    /// were, then `written` whole (added ones, and changed ones as they become); `changed` holds
    /// the changed ones as they were. `at` is the seq whose board it brings back.
    Restore {
        at: u64,
        written: Vec<Element>,
        removed: Vec<Element>,
        changed: Vec<Element>,
    },
}

impl Effect {
    pub fn op_name(&self) -> &'static str {
        match self {
            Effect::Add(_) => "add",
            Effect::Update { .. } => "update",
            Effect::Delete(_) => "delete",
            Effect::Text { .. } => "text",
            Effect::Restore { .. } => "restore",
        }
    }
}

/// An effect as read back from the log, for undo and redo.
#[derive(Clone, Debug, PartialEq)]
pub enum Logged {
    Added(Vec<Element>),
    Updated {
        updates: Vec<(StrokeId, Patch)>,
        before: Vec<(StrokeId, Patch)>,
    },
    Deleted(Vec<Element>),
    /// Characters a text edit inserted and deleted.
    Texted {
        id: StrokeId,
        applied: Applied,
    },
    /// A restore (or its undo): what it wrote, removed, and the written ones as they were.
    Restored {
        at: u64,
        written: Vec<Element>,
        removed: Vec<Element>,
        changed: Vec<Element>,
    },
}

/// How the caller's undo and redo lists change when the op commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stacks {
    /// A new op: onto the undo list; the redo list is cleared.
    Push,
    /// An undo: `undone` (when it came from the list) leaves the undo list; this op goes onto
    /// the redo list.
    Undo { undone: Option<u64> },
    /// A redo: `redone` leaves the redo list; this op goes onto the undo list.
    Redo { redone: u64 },
}

/// "This element must still be at version `v`" (0: must not exist) for the effect to commit.
pub type Check = (StrokeId, u64);

/// What an op will do, and what must still hold for it to do it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub effect: Effect,
    pub via: Via,
    pub checks: Vec<Check>,
    pub stacks: Stacks,
    /// The seq of the op an undo or redo reverses.
    pub reverts: Option<u64>,
    /// The stroke id an `ACK` names (v1 ops and single-stroke undo/redo).
    pub ack_id: Option<StrokeId>,
    /// The decision relied on the edge index (a node's edges were looked up): it must not
    /// have changed either.
    pub read_edges: bool,
    /// The decision read the whole board: the room's seq must not have moved since.
    pub read_all: bool,
}

/// Why nothing was done, as the client is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    BadElement(String),
    BadStroke(String),
    NotFound,
    NothingToUndo,
    NothingToRedo,
    Forbidden(String),
    /// A room or user quota (`domain/quota.rs`).
    Quota(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadElement(_) => "BAD_ELEMENT",
            Refusal::BadStroke(_) => "BAD_STROKE",
            Refusal::NotFound => "ELEMENT_NOT_FOUND",
            Refusal::NothingToUndo => "NOTHING_TO_UNDO",
            Refusal::NothingToRedo => "NOTHING_TO_REDO",
            Refusal::Forbidden(_) => "FORBIDDEN",
            Refusal::Quota(_) => "QUOTA_EXCEEDED",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::BadElement(m)
            | Refusal::BadStroke(m)
            | Refusal::Forbidden(m)
            | Refusal::Quota(m) => m.clone(),
            Refusal::NotFound => "none of those elements exists".into(),
            Refusal::NothingToUndo => "nothing of yours to undo".into(),
            Refusal::NothingToRedo => "nothing of yours to redo".into(),
        }
    }
}

/// What the engine must read before [`decide`] can answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Need {
    pub ids: BTreeSet<StrokeId>,
    pub edges: bool,
    pub undo: bool,
    pub redo: bool,
    /// Every element of the board (a restore).
    pub all: bool,
}

impl Need {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.edges && !self.undo && !self.redo && !self.all
    }
}

#[derive(Debug)]
pub enum Decided {
    Do(Box<Decision>),
    Refuse(Refusal),
    Need(Need),
}

/// One answer of a [`Board`]: known present, known absent, or not read.
pub enum Lookup<T> {
    Found(T),
    Absent,
    Unknown,
}

/// The part of a room's board an op may look at.
pub trait Board {
    fn element(&self, id: &StrokeId) -> Lookup<Element>;
    /// Edges whose `from` or `to` is one of `nodes`; `None` when the edge index was not read.
    fn edges_touching(&self, nodes: &HashSet<StrokeId>) -> Option<Vec<StrokeId>>;
    /// The caller's undo list, newest first, with each op's logged effect (`None`: trimmed
    /// from the log); `None` when not read.
    fn undo_list(&self) -> Option<Vec<(u64, Option<Logged>)>>;
    /// Likewise the redo list: the caller's undos, newest first.
    fn redo_list(&self) -> Option<Vec<(u64, Option<Logged>)>>;
    /// Every element's id; `None` when the whole board was not read.
    fn all_ids(&self) -> Option<Vec<StrokeId>>;
}

/// Who asks, and the limits that apply.
pub struct Context<'a> {
    pub user: &'a UserId,
    pub limits: ElementLimits,
}

/// Reads the board, remembering every version relied on and everything not known.
struct Reader<'b, B: Board> {
    board: &'b B,
    /// Elements as this op has left them so far (an undo that re-adds a node, then its edge).
    staged: HashMap<StrokeId, Option<Element>>,
    checks: Vec<Check>,
    need: Need,
    /// Ids not read but assumed free (see [`Reader::is_free`]).
    assumed: BTreeSet<StrokeId>,
    read_edges: bool,
    read_all: bool,
}

impl<'b, B: Board> Reader<'b, B> {
    fn new(board: &'b B) -> Self {
        Self {
            board,
            staged: HashMap::new(),
            checks: Vec::new(),
            need: Need::default(),
            assumed: BTreeSet::new(),
            read_edges: false,
            read_all: false,
        }
    }

    fn check(&mut self, id: &StrokeId, v: u64) {
        if !self.checks.iter().any(|(c, _)| c == id) {
            self.checks.push((id.clone(), v));
        }
    }

    /// The element as this op sees it; `None` when absent or not known yet.
    fn get(&mut self, id: &StrokeId) -> Option<Element> {
        if let Some(staged) = self.staged.get(id) {
            return staged.clone();
        }
        match self.board.element(id) {
            Lookup::Found(e) => {
                self.check(id, e.v);
                Some(e)
            }
            Lookup::Absent => {
                self.check(id, 0);
                None
            }
            Lookup::Unknown => {
                self.need.ids.insert(id.clone());
                None
            }
        }
    }

    /// Whether `id` is free for a new element. Unread ids are assumed free (the commit checks
    /// it): adding costs no read, which keeps a stroke one round trip.
    fn is_free(&mut self, id: &StrokeId) -> bool {
        if let Some(staged) = self.staged.get(id) {
            return staged.is_none();
        }
        match self.board.element(id) {
            Lookup::Found(_) => false,
            Lookup::Absent => {
                self.check(id, 0);
                true
            }
            Lookup::Unknown => {
                self.check(id, 0);
                self.assumed.insert(id.clone());
                true
            }
        }
    }

    fn stage(&mut self, id: &StrokeId, element: Option<Element>) {
        self.staged.insert(id.clone(), element);
    }

    /// Every element id, or `None` (and a need) until the whole board is read.
    fn all_ids(&mut self) -> Option<Vec<StrokeId>> {
        match self.board.all_ids() {
            Some(mut ids) => {
                self.read_all = true;
                ids.sort();
                Some(ids)
            }
            None => {
                self.need.all = true;
                None
            }
        }
    }

    fn edges_touching(&mut self, nodes: &HashSet<StrokeId>) -> Vec<StrokeId> {
        if nodes.is_empty() {
            return Vec::new();
        }
        match self.board.edges_touching(nodes) {
            Some(edges) => {
                self.read_edges = true;
                edges
            }
            None => {
                self.need.edges = true;
                Vec::new()
            }
        }
    }

    /// The answer, unless something it depends on was not read. A refusal is only given on
    /// what was read: an id merely assumed free might exist, and the answer must be the one a
    /// whole board gives (the memory engine's).
    fn finish(mut self, result: Result<Decision, Refusal>) -> Decided {
        let refused = result.is_err();
        if !self.need.is_empty() || (refused && !self.assumed.is_empty()) {
            self.need.ids.append(&mut self.assumed);
            return Decided::Need(self.need);
        }
        match result {
            Ok(mut decision) => {
                decision.checks = self.checks;
                decision.read_edges = self.read_edges;
                decision.read_all = self.read_all;
                Decided::Do(Box::new(decision))
            }
            Err(refusal) => Decided::Refuse(refusal),
        }
    }
}

/// Decides what `intent` does to the board. Pure: the same board and intent give the same
/// answer on every instance and in both engines.
pub fn decide(intent: &Intent, cx: &Context<'_>, board: &impl Board) -> Decided {
    let mut r = Reader::new(board);
    let result = match intent {
        Intent::Stroke(stroke) => add(&mut r, std::slice::from_ref(stroke.as_ref()), Via::Canvas),
        Intent::Add(elements) => add(&mut r, elements, Via::Elements),
        Intent::Update(updates) => update(&mut r, cx, updates),
        Intent::Delete(ids) => delete(&mut r, ids),
        Intent::Undo(Some(stroke)) => undo_stroke(&mut r, cx, stroke),
        Intent::Undo(None) => undo(&mut r, cx),
        Intent::Redo(target) => redo(&mut r, cx, target.as_ref()),
        Intent::TextEdit { id, ops } => text_edit(&mut r, cx, id, ops),
        Intent::Restore { at, target } => restore(&mut r, *at, target),
    };
    r.finish(result)
}

type Step = Result<Decision, Refusal>;

fn decision(effect: Effect, via: Via, stacks: Stacks, reverts: Option<u64>) -> Decision {
    let ack_id = match &effect {
        Effect::Add(e) | Effect::Delete(e) if e.len() == 1 && e[0].kind == Kind::Stroke => {
            Some(e[0].id.clone())
        }
        _ => None,
    };
    Decision {
        effect,
        via,
        checks: Vec::new(),
        stacks,
        reverts,
        ack_id,
        read_edges: false,
        read_all: false,
    }
}

fn bad(via: Via, message: String) -> Refusal {
    if via == Via::Canvas {
        Refusal::BadStroke(message)
    } else {
        Refusal::BadElement(message)
    }
}

fn add<B: Board>(r: &mut Reader<'_, B>, elements: &[Element], via: Via) -> Step {
    let mut seen = HashSet::new();
    for (i, element) in elements.iter().enumerate() {
        if !seen.insert(&element.id) {
            return Err(bad(
                via,
                format!("elements[{i}].id: {} appears twice", element.id),
            ));
        }
        if !r.is_free(&element.id) {
            let what = if via == Via::Canvas { "strokeId" } else { "id" };
            return Err(bad(
                via,
                format!(
                    "elements[{i}].{what}: {} already exists in this room",
                    element.id
                ),
            ));
        }
    }
    for element in elements {
        r.stage(&element.id, Some(element.clone()));
    }
    for (i, element) in elements.iter().enumerate() {
        if element.kind == Kind::Edge {
            endpoints_are_nodes(r, element)
                .map_err(|e| Refusal::BadElement(e.at(&format!("elements[{i}]")).to_string()))?;
        }
    }
    Ok(decision(
        Effect::Add(elements.to_vec()),
        via,
        Stacks::Push,
        None,
    ))
}

/// An edge's `from` and `to` name nodes that exist (or that this op adds).
fn endpoints_are_nodes<B: Board>(
    r: &mut Reader<'_, B>,
    edge: &Element,
) -> Result<(), ElementError> {
    for (name, id) in [("from", &edge.from), ("to", &edge.to)] {
        let Some(id) = id else { continue };
        let is_node = r.get(id).is_some_and(|e| e.kind == Kind::Node);
        if !is_node && r.need.ids.is_empty() {
            return Err(ElementError {
                field: name.into(),
                reason: format!("{id} is not a node of this room"),
            });
        }
    }
    Ok(())
}

fn update<B: Board>(
    r: &mut Reader<'_, B>,
    cx: &Context<'_>,
    updates: &[(StrokeId, Patch)],
) -> Step {
    let mut applied = Vec::new();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (i, (id, patch)) in updates.iter().enumerate() {
        // Several patches of one element in one op apply in order, as if sent one by one.
        let Some(current) = r.get(id) else { continue };
        let (mut next, mut old) = current
            .patched(patch, cx.limits)
            .map_err(|e| Refusal::BadElement(e.at(&format!("updates[{i}].patch")).to_string()))?;
        let mut patch = patch.clone();
        // Setting the whole text starts a new text state, with ids no earlier op can name.
        if patch.0.contains_key("text") && current.text_state.is_some() {
            let first_n = current.text_state.as_ref().map_or(1, Rga::next_n);
            next.text_state = next
                .text
                .as_deref()
                .and_then(|t| Rga::from_text(t, cx.user.as_str(), first_n).ok());
            let state = serde_json::to_value(&next.text_state).unwrap_or_default();
            patch.0.insert(TEXT_STATE.into(), state);
            let was = serde_json::to_value(&current.text_state).unwrap_or_default();
            old.0.insert(TEXT_STATE.into(), was);
        }
        if next.kind == Kind::Edge && patch.endpoints().next().is_some() {
            endpoints_are_nodes(r, &next).map_err(|e| {
                Refusal::BadElement(e.at(&format!("updates[{i}].patch")).to_string())
            })?;
        }
        r.stage(id, Some(next.clone()));
        applied.push((id.clone(), patch));
        before.push((id.clone(), old));
        after.retain(|e: &Element| &e.id != id);
        after.push(next);
    }
    if applied.is_empty() {
        return Err(Refusal::NotFound);
    }
    let effect = Effect::Update {
        updates: applied,
        before,
        after,
    };
    Ok(decision(effect, Via::Elements, Stacks::Push, None))
}

/// The elements `ids` name that exist, plus the edges touching any node among them: what a
/// delete of `ids` removes.
fn removal<B: Board>(r: &mut Reader<'_, B>, ids: &[StrokeId]) -> Vec<Element> {
    let mut removed: Vec<Element> = Vec::new();
    for id in ids {
        if removed.iter().any(|e| &e.id == id) {
            continue;
        }
        if let Some(element) = r.get(id) {
            removed.push(element);
        }
    }
    let nodes: HashSet<StrokeId> = removed
        .iter()
        .filter(|e| e.kind == Kind::Node)
        .map(|e| e.id.clone())
        .collect();
    for edge in r.edges_touching(&nodes) {
        if removed.iter().any(|e| e.id == edge) {
            continue;
        }
        if let Some(element) = r.get(&edge) {
            removed.push(element);
        }
    }
    for element in &removed {
        r.stage(&element.id, None);
    }
    removed
}

fn delete<B: Board>(r: &mut Reader<'_, B>, ids: &[StrokeId]) -> Step {
    let removed = removal(r, ids);
    if removed.is_empty() {
        return Err(Refusal::NotFound);
    }
    Ok(decision(
        Effect::Delete(removed),
        Via::Elements,
        Stacks::Push,
        None,
    ))
}

fn undo_stroke<B: Board>(r: &mut Reader<'_, B>, cx: &Context<'_>, id: &StrokeId) -> Step {
    match r.get(id) {
        Some(e) if e.kind == Kind::Stroke && &e.user_id == cx.user => {}
        Some(e) if e.kind == Kind::Stroke => {
            return Err(Refusal::Forbidden(
                "that stroke belongs to someone else".into(),
            ));
        }
        _ => return Err(Refusal::NothingToUndo),
    }
    let removed = removal(r, std::slice::from_ref(id));
    Ok(decision(
        Effect::Delete(removed),
        Via::Undo,
        Stacks::Undo { undone: None },
        None,
    ))
}

/// The effect that reverses `logged` on the board as it is now, or `None` when nothing of it
/// can be reversed any more (what it added is gone, what it removed is back, ...). Only the
/// fields an update set are restored: later changes to other fields by anyone are kept, and
/// a later change to the same field is overwritten (the undo is the newer write).
fn reverse<B: Board>(r: &mut Reader<'_, B>, cx: &Context<'_>, logged: &Logged) -> Option<Effect> {
    match logged {
        Logged::Added(elements) => {
            let ids: Vec<StrokeId> = elements.iter().map(|e| e.id.clone()).collect();
            let removed = removal(r, &ids);
            (!removed.is_empty()).then_some(Effect::Delete(removed))
        }
        Logged::Deleted(elements) => {
            let mut added = Vec::new();
            // Nodes first, so that edges between re-added nodes find them.
            let (nodes, others): (Vec<_>, Vec<_>) =
                elements.iter().partition(|e| e.kind == Kind::Node);
            for element in nodes.into_iter().chain(others) {
                if !r.is_free(&element.id) {
                    continue;
                }
                if element.kind == Kind::Edge && endpoints_are_nodes(r, element).is_err() {
                    continue;
                }
                r.stage(&element.id, Some(element.clone()));
                added.push(element.clone());
            }
            (!added.is_empty()).then_some(Effect::Add(added))
        }
        Logged::Texted { id, applied } => {
            let current = r.get(id)?;
            let rga = current.rga()?;
            let ops = rga.inverse(applied, cx.user.as_str());
            let (after, applied) = edited(&current, rga, &ops, cx).ok()?;
            r.stage(id, Some(after.clone()));
            Some(Effect::Text {
                id: id.clone(),
                ops,
                applied,
                after: Box::new(after),
            })
        }
        Logged::Restored {
            at,
            written,
            removed,
            changed,
        } => reverse_restore(r, cx, *at, written, removed, changed),
        Logged::Updated { before, .. } => {
            let mut updates = Vec::new();
            let mut olds = Vec::new();
            let mut after: Vec<Element> = Vec::new();
            // Last first: when one op patched an element twice, the first patch's `before`
            // holds the value from before the op, and must be the one that stays.
            for (id, patch) in before.iter().rev() {
                let Some(current) = r.get(id) else { continue };
                let Ok((next, old)) = current.patched(patch, cx.limits) else {
                    continue;
                };
                if next.kind == Kind::Edge
                    && patch.endpoints().next().is_some()
                    && endpoints_are_nodes(r, &next).is_err()
                {
                    continue;
                }
                r.stage(id, Some(next.clone()));
                updates.push((id.clone(), patch.clone()));
                olds.push((id.clone(), old));
                after.retain(|e| &e.id != id);
                after.push(next);
            }
            (!updates.is_empty()).then_some(Effect::Update {
                updates,
                before: olds,
                after,
            })
        }
    }
}

/// The effect that undoes a restore as far as the board still allows: what it added goes,
/// what it removed comes back where its id is free, and the fields it changed get their old
/// values back (later changes to other fields are kept, as for an update).
fn reverse_restore<B: Board>(
    r: &mut Reader<'_, B>,
    cx: &Context<'_>,
    at: u64,
    written: &[Element],
    removed: &[Element],
    changed: &[Element],
) -> Option<Effect> {
    let was: HashMap<&StrokeId, &Element> = changed.iter().map(|e| (&e.id, e)).collect();
    let added: Vec<StrokeId> = written
        .iter()
        .filter(|e| !was.contains_key(&e.id))
        .map(|e| e.id.clone())
        .collect();
    let gone = removal(r, &added);
    let mut out_written = Vec::new();
    let mut out_changed = Vec::new();
    for restored in written.iter().filter(|e| was.contains_key(&e.id)) {
        let (Some(current), Some(before)) = (r.get(&restored.id), was.get(&restored.id)) else {
            continue;
        };
        let patch = super::element::patch_between(restored, before);
        // A patch sets only what a client may set: an element that was another kind, or
        // someone else's (an id reused after a delete), comes back whole.
        let next = match current.patched(&patch, cx.limits) {
            Ok((next, _)) if next.kind == before.kind && next.user_id == before.user_id => next,
            _ => (*before).clone(),
        };
        r.stage(&next.id, Some(next.clone()));
        out_changed.push(current);
        out_written.push(next);
    }
    let (nodes, others): (Vec<_>, Vec<_>) = removed.iter().partition(|e| e.kind == Kind::Node);
    for element in nodes.into_iter().chain(others) {
        if !r.is_free(&element.id)
            || (element.kind == Kind::Edge && endpoints_are_nodes(r, element).is_err())
        {
            continue;
        }
        r.stage(&element.id, Some(element.clone()));
        out_written.push(element.clone());
    }
    // A restore that changed nothing is undone as nothing, like an update that set the values
    // already there: the undo must not reach past it to an older op.
    let was_empty = written.is_empty() && removed.is_empty();
    (was_empty || !(gone.is_empty() && out_written.is_empty())).then_some(Effect::Restore {
        at,
        written: out_written,
        removed: gone,
        changed: out_changed,
    })
}

/// Makes the board equal `target` in one effect: removes what it lacks, writes back what it
/// has that differs or is missing. Versions aside, the board after it is `target`.
fn restore<B: Board>(r: &mut Reader<'_, B>, at: u64, target: &[Element]) -> Step {
    let empty = Effect::Restore {
        at,
        written: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    let Some(ids) = r.all_ids() else {
        return Ok(decision(empty, Via::Restore, Stacks::Push, None));
    };
    let wanted: HashMap<&StrokeId, &Element> = target.iter().map(|e| (&e.id, e)).collect();
    let mut removed = Vec::new();
    let mut changed = Vec::new();
    let mut present = HashSet::new();
    for id in &ids {
        let Some(current) = r.get(id) else { continue };
        present.insert(id.clone());
        match wanted.get(id) {
            None => removed.push(current),
            Some(t) if !t.same_as(&current) => changed.push(current),
            Some(_) => {}
        }
    }
    let rewritten: HashSet<&StrokeId> = changed.iter().map(|e| &e.id).collect();
    let written: Vec<Element> = target
        .iter()
        .filter(|t| !present.contains(&t.id) || rewritten.contains(&t.id))
        .cloned()
        .collect();
    for e in &removed {
        r.stage(&e.id, None);
    }
    for e in &written {
        r.stage(&e.id, Some(e.clone()));
    }
    let effect = Effect::Restore {
        at,
        written,
        removed,
        changed,
    };
    Ok(decision(effect, Via::Restore, Stacks::Push, None))
}

/// `current` after a logged text edit's ops by `user`: how the log's readers replay one.
pub(crate) fn text_after(
    current: &Element,
    ops: &[TextOp],
    user: &UserId,
) -> Result<(Element, Applied), String> {
    let rga = current
        .rga()
        .ok_or_else(|| format!("the text of {} cannot be edited", current.id))?;
    let cx = Context {
        user,
        limits: ElementLimits {
            max_points: usize::MAX,
        },
    };
    edited(current, rga, ops, &cx)
}

/// Walks a list newest first for the first entry that still reverses to something.
fn first_reversible<B: Board>(
    r: &mut Reader<'_, B>,
    cx: &Context<'_>,
    list: &[(u64, Option<Logged>)],
    wanted: impl Fn(&Logged) -> bool,
) -> Option<(u64, Effect)> {
    for (seq, logged) in list.iter().take(STACK_LOOKBACK) {
        let Some(logged) = logged.as_ref().filter(|l| wanted(l)) else {
            continue;
        };
        // Look from a clean slate each time: a candidate that is skipped changes nothing.
        let staged = r.staged.clone();
        let checks = r.checks.len();
        if let Some(mut effect) = reverse(r, cx, logged) {
            // Undoing a restore brings back, near enough, the board from before this op.
            if let Effect::Restore { at, .. } = &mut effect {
                *at = seq.saturating_sub(1);
            }
            return Some((*seq, effect));
        }
        r.staged = staged;
        r.checks.truncate(checks);
    }
    None
}

/// Most tombstones an element keeps beside its visible characters before the old ones are
/// dropped: the state stays bounded for a note edited for hours.
const TOMBSTONE_SLACK: usize = 256;

/// `current` after `ops` by the caller: its text and text state, and what the ops did.
fn edited(
    current: &Element,
    mut rga: Rga,
    ops: &[TextOp],
    cx: &Context<'_>,
) -> Result<(Element, Applied), String> {
    let limits = TextLimits::default();
    let done = rga
        .apply_all(ops, cx.user.as_str(), limits)
        .map_err(|(i, e)| format!("ops[{i}]: {e}"))?;
    let mut applied = Applied::default();
    for a in done {
        applied.inserted.extend(a.inserted);
        applied.deleted.extend(a.deleted);
    }
    // Drop old tombstones once they outnumber the text (the module keeps every one a later
    // insert's placement depends on). An op in flight that names a dropped one is refused,
    // and its client reloads the text.
    if rga.len() - rga.visible_len() > rga.visible_len().max(TOMBSTONE_SLACK) {
        let fresh: std::collections::HashSet<CharId> = applied.deleted.iter().cloned().collect();
        rga.compact(|id| !fresh.contains(id));
    }
    let mut after = current.clone();
    after.text = Some(rga.text());
    after.text_state = Some(rga);
    Ok((after, applied))
}

fn text_edit<B: Board>(
    r: &mut Reader<'_, B>,
    cx: &Context<'_>,
    id: &StrokeId,
    ops: &[TextOp],
) -> Step {
    let Some(current) = r.get(id) else {
        return Err(Refusal::NotFound);
    };
    if !current.has_text() {
        return Err(Refusal::BadElement(format!(
            "id: {id} is a {:?}, which holds no text",
            current.kind
        )));
    }
    let rga = current
        .rga()
        .ok_or_else(|| Refusal::BadElement(format!("id: the text of {id} cannot be edited")))?;
    // An edit that changes nothing (deleting what someone else just deleted) is still applied
    // and acknowledged: it is a normal outcome of editing at the same time, not an error.
    let (after, applied) = edited(&current, rga, ops, cx).map_err(Refusal::BadElement)?;
    r.stage(id, Some(after.clone()));
    let effect = Effect::Text {
        id: id.clone(),
        ops: ops.to_vec(),
        applied,
        after: Box::new(after),
    };
    Ok(decision(effect, Via::Elements, Stacks::Push, None))
}

fn undo<B: Board>(r: &mut Reader<'_, B>, cx: &Context<'_>) -> Step {
    let Some(list) = r.board.undo_list() else {
        r.need.undo = true;
        return Err(Refusal::NothingToUndo);
    };
    match first_reversible(r, cx, &list, |_| true) {
        Some((seq, effect)) => Ok(decision(
            effect,
            Via::Undo,
            Stacks::Undo { undone: Some(seq) },
            Some(seq),
        )),
        None => Err(Refusal::NothingToUndo),
    }
}

fn redo<B: Board>(r: &mut Reader<'_, B>, cx: &Context<'_>, stroke: Option<&StrokeId>) -> Step {
    let Some(list) = r.board.redo_list() else {
        r.need.redo = true;
        return Err(Refusal::NothingToRedo);
    };
    let names = |logged: &Logged| match (stroke, logged) {
        (None, _) => true,
        (Some(id), Logged::Deleted(removed)) => removed.iter().any(|e| &e.id == id),
        _ => false,
    };
    match first_reversible(r, cx, &list, names) {
        Some((seq, effect)) => Ok(decision(
            effect,
            Via::Redo,
            Stacks::Redo { redone: seq },
            Some(seq),
        )),
        None => Err(Refusal::NothingToRedo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::RoomId;
    use serde_json::json;

    const LIMITS: ElementLimits = ElementLimits { max_points: 100 };

    /// A whole board in memory, as the memory engine has it.
    #[derive(Default)]
    struct Full {
        elements: HashMap<StrokeId, Element>,
        undo: Vec<(u64, Option<Logged>)>,
        redo: Vec<(u64, Option<Logged>)>,
    }

    impl Board for Full {
        fn element(&self, id: &StrokeId) -> Lookup<Element> {
            self.elements
                .get(id)
                .cloned()
                .map_or(Lookup::Absent, Lookup::Found)
        }
        fn edges_touching(&self, nodes: &HashSet<StrokeId>) -> Option<Vec<StrokeId>> {
            let touching = |e: &&Element| {
                e.kind == Kind::Edge
                    && [&e.from, &e.to]
                        .iter()
                        .any(|n| n.as_ref().is_some_and(|n| nodes.contains(n)))
            };
            let mut ids: Vec<_> = self
                .elements
                .values()
                .filter(touching)
                .map(|e| e.id.clone())
                .collect();
            ids.sort();
            Some(ids)
        }
        fn undo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
            Some(self.undo.clone())
        }
        fn redo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
            Some(self.redo.clone())
        }
        fn all_ids(&self) -> Option<Vec<StrokeId>> {
            Some(self.elements.keys().cloned().collect())
        }
    }

    /// A board that knows only what was read, as the Redis engine has it.
    struct Partial<'a>(&'a Full, HashSet<StrokeId>, bool);

    impl Board for Partial<'_> {
        fn element(&self, id: &StrokeId) -> Lookup<Element> {
            if self.1.contains(id) {
                self.0.element(id)
            } else {
                Lookup::Unknown
            }
        }
        fn edges_touching(&self, nodes: &HashSet<StrokeId>) -> Option<Vec<StrokeId>> {
            if self.2 {
                self.0.edges_touching(nodes)
            } else {
                None
            }
        }
        fn undo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
            None
        }
        fn redo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
            None
        }
        fn all_ids(&self) -> Option<Vec<StrokeId>> {
            None
        }
    }

    fn el(v: serde_json::Value) -> Element {
        Element::from_client(&v, &UserId::new("ann"), &RoomId::new("r"), LIMITS).expect("valid")
    }

    fn node(id: &str) -> Element {
        el(json!({"id": id, "kind": "node", "x": 0, "y": 0, "w": 10, "h": 10}))
    }

    fn edge(id: &str, from: &str, to: &str) -> Element {
        el(json!({"id": id, "kind": "edge", "from": from, "to": to}))
    }

    fn board(elements: Vec<Element>) -> Full {
        let mut full = Full::default();
        for (v, mut e) in (1..).zip(elements) {
            e.v = v;
            full.elements.insert(e.id.clone(), e);
        }
        full
    }

    fn run(intent: Intent, board: &impl Board) -> Decided {
        decide(
            &intent,
            &Context {
                user: &UserId::new("ann"),
                limits: LIMITS,
            },
            board,
        )
    }

    fn done(d: Decided) -> Decision {
        match d {
            Decided::Do(d) => *d,
            other => panic!("wanted a decision, got {other:?}"),
        }
    }

    fn id(s: &str) -> StrokeId {
        StrokeId::new(s)
    }

    fn patch(v: serde_json::Value) -> Patch {
        Patch::from_client(&v).expect("patch")
    }

    #[test]
    fn a_restore_reads_the_whole_board_and_rewrites_only_what_differs() {
        let full = board(vec![node("n1"), node("n2"), edge("e", "n1", "n2")]);
        let mut moved = node("n1");
        moved.x = Some(5.0);
        let target = vec![moved.clone(), node("n3")];
        let intent = || Intent::Restore {
            at: 3,
            target: target.clone(),
        };
        let partial = Partial(&full, HashSet::new(), false);
        match run(intent(), &partial) {
            Decided::Need(need) => assert!(need.all),
            other => panic!("a restore must see the whole board: {other:?}"),
        }
        let d = done(run(intent(), &full));
        assert!(d.read_all);
        let Effect::Restore {
            written,
            removed,
            changed,
            ..
        } = d.effect
        else {
            panic!("a restore effect")
        };
        let ids = |l: &[Element]| l.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&written), ["n1", "n3"]);
        assert_eq!(ids(&removed), ["e", "n2"]);
        assert_eq!(ids(&changed), ["n1"]);
        assert_eq!(written[0].x, Some(5.0));
    }

    #[test]
    fn adding_an_existing_id_is_refused_and_an_edge_needs_two_nodes() {
        let full = board(vec![node("n1")]);
        assert!(matches!(
            run(Intent::Add(vec![node("n1")]), &full),
            Decided::Refuse(Refusal::BadElement(_))
        ));
        match run(Intent::Add(vec![edge("e1", "n1", "zz")]), &full) {
            Decided::Refuse(Refusal::BadElement(m)) => assert!(m.contains("elements[0].to"), "{m}"),
            other => panic!("{other:?}"),
        }
        let d = done(run(
            Intent::Add(vec![node("n2"), edge("e1", "n1", "n2")]),
            &full,
        ));
        assert_eq!(d.checks, vec![(id("n2"), 0), (id("e1"), 0), (id("n1"), 1)]);
    }

    #[test]
    fn an_add_needs_no_read_until_an_edge_names_a_node() {
        let full = board(vec![node("n1")]);
        let nothing = Partial(&full, HashSet::new(), false);
        let d = done(run(Intent::Add(vec![node("n2")]), &nothing));
        assert_eq!(d.checks, vec![(id("n2"), 0)]);
        match run(Intent::Add(vec![edge("e", "n1", "n2")]), &nothing) {
            // The edge's own id, assumed free, is read too: any refusal then rests on it.
            Decided::Need(need) => assert_eq!(need.ids, [id("e"), id("n1"), id("n2")].into()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn updates_merge_per_field_and_skip_missing_ids() {
        let full = board(vec![el(
            json!({"id": "r", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1}),
        )]);
        let d = done(run(
            Intent::Update(vec![
                (id("gone"), patch(json!({"x": 1}))),
                (id("r"), patch(json!({"x": 5, "color": "#000"}))),
            ]),
            &full,
        ));
        let Effect::Update {
            updates,
            before,
            after,
        } = d.effect
        else {
            panic!("update")
        };
        assert_eq!(updates.len(), 1);
        assert_eq!(
            serde_json::to_value(&before[0].1).expect("json"),
            json!({"x": 0.0, "color": null})
        );
        assert_eq!(after[0].x, Some(5.0));
        assert_eq!(d.checks, vec![(id("gone"), 0), (id("r"), 1)]);
        assert!(matches!(
            run(
                Intent::Update(vec![(id("gone"), patch(json!({"x": 1})))]),
                &full
            ),
            Decided::Refuse(Refusal::NotFound)
        ));
    }

    #[test]
    fn deleting_a_node_deletes_its_edges_after_reading_the_index() {
        let full = board(vec![
            node("a"),
            node("b"),
            node("c"),
            edge("ab", "a", "b"),
            edge("bc", "b", "c"),
        ]);
        let d = done(run(Intent::Delete(vec![id("a")]), &full));
        let Effect::Delete(removed) = d.effect else {
            panic!("delete")
        };
        let ids: Vec<_> = removed.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "ab"]);
        // Partially known: first the node, then the index, then the edge.
        let read_a = Partial(&full, [id("a")].into(), false);
        assert!(matches!(run(Intent::Delete(vec![id("a")]), &read_a), Decided::Need(n) if n.edges));
        let read_index = Partial(&full, [id("a")].into(), true);
        assert!(
            matches!(run(Intent::Delete(vec![id("a")]), &read_index), Decided::Need(n) if n.ids.contains(&id("ab")))
        );
    }

    #[test]
    fn undo_reverses_the_newest_op_that_still_can_be() {
        let mut full = board(vec![el(
            json!({"id": "r", "kind": "rect", "x": 9, "y": 0, "w": 1, "h": 1}),
        )]);
        full.undo = vec![
            // Newest: added something that someone else has deleted since: skipped.
            (3, Some(Logged::Added(vec![node("gone")]))),
            (
                2,
                Some(Logged::Updated {
                    updates: vec![(id("r"), patch(json!({"x": 9})))],
                    before: vec![(id("r"), patch(json!({"x": 1})))],
                }),
            ),
        ];
        let d = done(run(Intent::Undo(None), &full));
        assert_eq!(d.stacks, Stacks::Undo { undone: Some(2) });
        let Effect::Update { after, .. } = d.effect else {
            panic!("update")
        };
        assert_eq!(after[0].x, Some(1.0));
        full.undo.clear();
        assert!(matches!(
            run(Intent::Undo(None), &full),
            Decided::Refuse(Refusal::NothingToUndo)
        ));
    }

    #[test]
    fn undoing_a_delete_re_adds_nodes_before_their_edges() {
        let mut full = board(vec![]);
        full.undo = vec![(
            5,
            Some(Logged::Deleted(vec![
                edge("ab", "a", "b"),
                node("a"),
                node("b"),
            ])),
        )];
        let d = done(run(Intent::Undo(None), &full));
        let Effect::Add(added) = d.effect else {
            panic!("add")
        };
        let ids: Vec<_> = added.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "ab"]);
    }

    #[test]
    fn a_note_edited_for_hours_keeps_a_bounded_text_state() {
        let mut full = board(vec![el(
            json!({"id": "n", "kind": "sticky", "x": 0, "y": 0, "w": 9, "h": 9}),
        )]);
        // Type a character and delete it, two thousand times: without compaction the state
        // would hold 2,000 tombstones.
        for round in 0..2000_u64 {
            let current = full.elements[&id("n")].rga().expect("text");
            let first = CharId::new("ann", current.next_n());
            let ops: Vec<TextOp> = serde_json::from_value(json!([
                {"after": null, "first": first.to_string(), "text": "x"},
                {"delete": [first.to_string()]},
            ]))
            .expect("ops");
            let d = done(run(Intent::TextEdit { id: id("n"), ops }, &full));
            let Effect::Text { mut after, .. } = d.effect else {
                panic!("text")
            };
            after.v = round + 2;
            full.elements.insert(id("n"), *after);
        }
        let state = full.elements[&id("n")].text_state.clone().expect("a state");
        assert_eq!(state.text(), "");
        assert!(
            state.len() <= TOMBSTONE_SLACK + 2,
            "{} characters kept",
            state.len()
        );
    }

    #[test]
    fn v1_undo_of_a_named_stroke_checks_its_owner() {
        let stroke = |user: &str| {
            Element::from_client(
                &json!({"id": "s", "kind": "stroke", "points": [{"x": 0, "y": 0}], "color": "#000", "width": 1}),
                &UserId::new(user),
                &RoomId::new("r"),
                LIMITS,
            )
            .expect("valid")
        };
        let mine = board(vec![stroke("ann")]);
        let d = done(run(Intent::Undo(Some(id("s"))), &mine));
        assert_eq!((d.via, d.ack_id.clone()), (Via::Undo, Some(id("s"))));
        let theirs = board(vec![stroke("bob")]);
        assert!(matches!(
            run(Intent::Undo(Some(id("s"))), &theirs),
            Decided::Refuse(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            run(Intent::Undo(Some(id("x"))), &theirs),
            Decided::Refuse(Refusal::NothingToUndo)
        ));
    }
}
