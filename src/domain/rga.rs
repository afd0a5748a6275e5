//! Collaborative text (`PROTOCOL.md` §4.3): the text of an element as an RGA sequence CRDT. This
//! module owns the characters with their ids and tombstones, the checks the server makes before
//! it sequences a `TEXT_EDIT`, how a replica integrates the ops it is sent, the ops an undo
//! applies, and which tombstones may be dropped.
//!
//! **Model.** A character is one Unicode scalar value (a Rust `char`; a browser must split with
//! `for…of` or `Array.from`, not by UTF-16 unit, or an emoji becomes two characters). Its id is
//! `"<userId>:<n>"`. Each character hangs after the character it was inserted after (`null`: the
//! start); characters after the same one are ordered by id, greater first: higher `n` first, and
//! for equal `n` the greater `userId` (byte order) first. The text is that tree read depth
//! first. It is kept flat, in document order: an insert starts right after its anchor and skips
//! every character with a greater id than its own. That stops in the right place only because
//! of the **Lamport rule**: every character's `n` is greater than its anchor's. A sibling with a
//! greater id is then followed only by descendants with still greater ids (all skipped), and the
//! first smaller id is a later sibling or what follows the anchor's subtree. The server enforces
//! `first.n > after.n`; a client picks `n` = [`Rga::next_n`], greater than every `n` it has seen
//! in the element, which also keeps its ids unique and puts its insert right after its anchor.
//!
//! **Server and replicas.** [`Rga::apply`] is the server's entry: it checks everything (anchor
//! exists, ids new and the caller's, Lamport rule, limits) before changing anything, and returns
//! what it did ([`Applied`]) for undo. Replicas (the page, a replay of the log) use
//! [`Rga::integrate`] on ops the server already checked, delivered in any order that respects
//! causality (an insert after its anchor's insert, a delete after the inserts it names): the
//! result is the same whatever that order. Limits are not rechecked there, since a replica that
//! sees inserts before concurrent deletes may hold more characters for a while than the server
//! ever did.
//!
//! **Why not a crate.** `yrs` (the Yjs port) is YATA: items are `(client: u64, clock)` with left
//! *and* right origins, synced as lib0 binary updates and edited by index in transactions. Our
//! wire format is fixed, with string user ids and only a left anchor, so we would keep an id
//! table beside it, invent right origins, and validate ops by reaching into its internals.
//! `diamond-types` is built for speed, but its ops are positional with causal parent
//! versions (agent + sequence number), not per-character anchors, so every `after` would be
//! translated into a position at some version through our own id map anyway. `automerge` is
//! closest (its text is RGA-like: an insert names the element it follows, ids are Lamport
//! `counter@actor`), but it is a whole JSON-document CRDT with a change graph, hashes, binary
//! actor ids and op ids it assigns itself, so a client-chosen `"<userId>:<n>"` cannot be
//! imported as is, and it weighs tens of thousands of lines. All three bring peer-to-peer sync
//! and history machinery that a server-sequenced log does not need: here the server validates
//! and orders every op. Their B-trees and run-length encoding pay off at hundreds of
//! thousands of characters and long histories; at ≤ 10,000 characters per element a `Vec` with
//! an id index costs O(n) per op at worst. So RGA is written here, in a few hundred lines whose
//! state is exactly §4.3's `textState`.
//!
//! **Undo.** §4.3 has no "revive": undoing a delete re-inserts the same characters as a new run
//! with new ids from the undoing user ([`Rga::inverse`]).
//!
//! **Compaction.** Tombstones can be dropped ([`Rga::compact`]) when the caller says they are
//! old enough, and only where dropping cannot change how any later insert lands. An op whose
//! `after` names a dropped tombstone is refused, and its client must reload the `textState`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Longest text of a `text`, `sticky`, `node` or `edge`, in characters (§4).
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Largest `n` of a character id: 2^53 − 1, so a browser computes `n + 1` exactly in a JS number.
pub const MAX_N: u64 = (1 << 53) - 1;

/// How far past [`Rga::next_n`] a new run may start. An honest client is at most its own
/// in-flight runs ahead of the server; the bound keeps one client from pushing the counter to
/// [`MAX_N`] and so locking everyone out of the element's text.
pub const MAX_N_JUMP: u64 = 1 << 20;

/// A character's id, `"<userId>:<n>"` on the wire. The fields are in sort order: ids compare by
/// `n`, then by `user` (byte order). The user id may itself contain `:`; the last one separates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CharId {
    pub n: u64,
    pub user: String,
}

impl CharId {
    pub fn new(user: impl Into<String>, n: u64) -> Self {
        Self {
            n,
            user: user.into(),
        }
    }

    /// The id in `text`, or `None`. `n` must be written canonically (digits, no leading zero,
    /// at most [`MAX_N`]) so that one id has one spelling: clients compare ids as strings.
    pub fn parse(text: &str) -> Option<Self> {
        let (user, n) = text.rsplit_once(':')?;
        let canonical = !user.is_empty()
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'));
        if !canonical {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        (n <= MAX_N).then(|| Self::new(user, n))
    }

    /// The id `k` places further in the same run.
    fn plus(&self, k: u64) -> Self {
        Self::new(self.user.clone(), self.n + k)
    }
}

impl fmt::Display for CharId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.n)
    }
}

impl Serialize for CharId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CharId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| D::Error::custom("a character id is \"<userId>:<n>\", n ≤ 2^53 − 1"))
    }
}

/// One entry of the state: `[charId, char, deleted]` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(CharId, char, bool)", into = "(CharId, char, bool)")]
pub struct Char {
    pub id: CharId,
    pub ch: char,
    pub deleted: bool,
}

impl From<(CharId, char, bool)> for Char {
    fn from((id, ch, deleted): (CharId, char, bool)) -> Self {
        Self { id, ch, deleted }
    }
}

impl From<Char> for (CharId, char, bool) {
    fn from(c: Char) -> Self {
        (c.id, c.ch, c.deleted)
    }
}

/// One op of a `TEXT_EDIT`, exactly as on the wire. Unknown fields are refused rather than
/// dropped: an object naming both `first` and `delete` must not silently lose one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum TextOp {
    /// `{"after": charId | null, "first": charId, "text": "..."}`: the run's characters get
    /// `first`, then the same user with `n + 1`, `n + 2`, …
    Insert {
        after: Option<CharId>,
        first: CharId,
        text: String,
    },
    /// `{"delete": [charId, ...]}`: tombstones.
    Delete { delete: Vec<CharId> },
}

/// What an op did, for the caller's undo: the ids it inserted, and the ids that went from
/// visible to deleted (a tombstone deleted again is not listed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub inserted: Vec<CharId>,
    pub deleted: Vec<CharId>,
}

/// Bounds the server keeps an element's text within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextLimits {
    /// Longest run, and longest visible text.
    pub max_chars: usize,
    /// Most characters counting tombstones: bounds the work per op and the stored state, which
    /// deletes alone never shrink (only [`Rga::compact`] or a new text does).
    pub max_entries: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            max_chars: MAX_TEXT_CHARS,
            max_entries: 2 * MAX_TEXT_CHARS,
        }
    }
}

/// Why an op was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("no character {0} in this text")]
    UnknownChar(CharId),
    #[error("character {0} already exists")]
    Duplicate(CharId),
    #[error("an inserted run's ids must be the sender's")]
    NotAuthor,
    #[error("first.n must be greater than after.n")]
    NotAfter,
    #[error("nothing to insert or delete")]
    Empty,
    #[error("the text would be longer than allowed")]
    TooLong,
    #[error("the text holds too many deleted characters")]
    Full,
    #[error("character counter out of range")]
    BadId,
}

/// An element's text: its characters in document order, tombstones included.
#[derive(Clone, Debug, Default)]
pub struct Rga {
    chars: Vec<Char>,
    /// Id → position. Right for every position below `indexed`; an insert shifts what follows
    /// it, so positions from `indexed` on are re-read lazily, once per op rather than per lookup.
    index: HashMap<CharId, usize>,
    indexed: usize,
    visible: usize,
    /// The greatest `n` present. Compaction keeps the character that holds it, so it never goes
    /// back and an honest client never reuses a dropped id.
    max_n: u64,
}

impl PartialEq for Rga {
    fn eq(&self, other: &Self) -> bool {
        self.chars == other.chars
    }
}

impl Eq for Rga {}

impl Rga {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text from a stored or received `textState`; refused if an id repeats.
    pub fn from_state(chars: Vec<Char>) -> Result<Self, TextError> {
        let mut rga = Self {
            visible: chars.iter().filter(|c| !c.deleted).count(),
            max_n: chars.iter().map(|c| c.id.n).max().unwrap_or(0),
            chars,
            ..Self::default()
        };
        for (i, c) in rga.chars.iter().enumerate() {
            if c.id.user.is_empty() || c.id.n > MAX_N {
                return Err(TextError::BadId);
            }
            if rga.index.insert(c.id.clone(), i).is_some() {
                return Err(TextError::Duplicate(c.id.clone()));
            }
        }
        rga.indexed = rga.chars.len();
        Ok(rga)
    }

    /// A new text, as one run by `user` from `first_n` (e.g. when `ELEMENTS_UPDATE` sets `text`;
    /// starting past the old state's [`Rga::next_n`] keeps stale ops from matching new ids).
    pub fn from_text(text: &str, user: &str, first_n: u64) -> Result<Self, TextError> {
        let count = text.chars().count() as u64;
        if user.is_empty() || first_n.saturating_add(count.saturating_sub(1)) > MAX_N {
            return Err(TextError::BadId);
        }
        let first = CharId::new(user, first_n);
        let chars = text
            .chars()
            .zip(0..)
            .map(|(ch, k)| Char {
                id: first.plus(k),
                ch,
                deleted: false,
            })
            .collect();
        Self::from_state(chars)
    }

    /// The state, `[[charId, char, deleted], …]` in document order.
    pub fn state(&self) -> &[Char] {
        &self.chars
    }

    /// The visible text: the element's plain `text`.
    pub fn text(&self) -> String {
        self.chars
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| c.ch)
            .collect()
    }

    /// Visible characters.
    pub fn visible_len(&self) -> usize {
        self.visible
    }

    /// Characters, tombstones included.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Whether the id is here, visible or not.
    pub fn contains(&self, id: &CharId) -> bool {
        self.position(id).is_some()
    }

    /// The `n` a new run should start at: greater than every `n` in the element.
    pub fn next_n(&self) -> u64 {
        self.max_n + 1
    }

    /// The server's entry: checks the op from `author` against this text and the limits, and
    /// applies it only if every check passes.
    pub fn apply(
        &mut self,
        op: &TextOp,
        author: &str,
        limits: TextLimits,
    ) -> Result<Applied, TextError> {
        self.reindex();
        match op {
            TextOp::Insert { after, first, text } => {
                let run: Vec<char> = text.chars().collect();
                if run.is_empty() {
                    return Err(TextError::Empty);
                }
                if run.len() > limits.max_chars {
                    return Err(TextError::TooLong);
                }
                if first.user != author {
                    return Err(TextError::NotAuthor);
                }
                let last = first.n.checked_add(run.len() as u64 - 1);
                if last.is_none_or(|last| last > MAX_N)
                    || first.n > self.next_n().saturating_add(MAX_N_JUMP)
                {
                    return Err(TextError::BadId);
                }
                let anchor = match after {
                    Some(a) => {
                        let at = self.index.get(a).copied();
                        let at = at.ok_or_else(|| TextError::UnknownChar(a.clone()))?;
                        if first.n <= a.n {
                            return Err(TextError::NotAfter);
                        }
                        Some(at)
                    }
                    None => None,
                };
                let ids: Vec<CharId> = (0..run.len() as u64).map(|k| first.plus(k)).collect();
                if let Some(taken) = ids.iter().find(|id| self.index.contains_key(id)) {
                    return Err(TextError::Duplicate(taken.clone()));
                }
                if self.visible + run.len() > limits.max_chars {
                    return Err(TextError::TooLong);
                }
                if self.chars.len() + run.len() > limits.max_entries {
                    return Err(TextError::Full);
                }
                self.insert_run(anchor, &ids, &run);
                Ok(Applied {
                    inserted: ids,
                    deleted: Vec::new(),
                })
            }
            TextOp::Delete { delete } => {
                if delete.is_empty() {
                    return Err(TextError::Empty);
                }
                let mut at = Vec::with_capacity(delete.len());
                for id in delete {
                    let p = self.index.get(id).copied();
                    at.push(p.ok_or_else(|| TextError::UnknownChar(id.clone()))?);
                }
                Ok(self.tombstone(&at))
            }
        }
    }

    /// Several ops of one `TEXT_EDIT`, all or nothing: on a refusal, the index of the refused op
    /// and why, and the text is as it was.
    pub fn apply_all(
        &mut self,
        ops: &[TextOp],
        author: &str,
        limits: TextLimits,
    ) -> Result<Vec<Applied>, (usize, TextError)> {
        if let [op] = ops {
            return self
                .apply(op, author, limits)
                .map(|a| vec![a])
                .map_err(|e| (0, e));
        }
        // A later op may rely on an earlier one, so each is checked against the text as the
        // earlier ones left it: on a copy, kept only if all pass.
        let mut draft = self.clone();
        let applied = ops
            .iter()
            .enumerate()
            .map(|(i, op)| draft.apply(op, author, limits).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        *self = draft;
        Ok(applied)
    }

    /// A replica's entry, for ops the server already checked, delivered causally in any order.
    /// Checks only what keeps the text well formed: an insert's anchor must be here (otherwise
    /// the op came too early) and its run must be wholly new or wholly here already (then it is
    /// a duplicate delivery and does nothing). Ids a delete names that are not here are ignored:
    /// they can only be tombstones this replica compacted away. Do not replay ops older than the
    /// last compaction: a run whose every character was dropped would come back.
    pub fn integrate(&mut self, op: &TextOp) -> Result<Applied, TextError> {
        self.reindex();
        match op {
            TextOp::Insert { after, first, text } => {
                let run: Vec<char> = text.chars().collect();
                if run.is_empty() {
                    return Err(TextError::Empty);
                }
                let last = first.n.checked_add(run.len() as u64 - 1);
                if last.is_none_or(|last| last > MAX_N) {
                    return Err(TextError::BadId);
                }
                let anchor = match after {
                    Some(a) => Some(
                        self.index
                            .get(a)
                            .copied()
                            .ok_or_else(|| TextError::UnknownChar(a.clone()))?,
                    ),
                    None => None,
                };
                let ids: Vec<CharId> = (0..run.len() as u64).map(|k| first.plus(k)).collect();
                let present = ids.iter().filter(|id| self.index.contains_key(id)).count();
                if present == ids.len() {
                    return Ok(Applied::default());
                }
                if let Some(taken) = ids.iter().find(|id| self.index.contains_key(id)) {
                    return Err(TextError::Duplicate(taken.clone()));
                }
                self.insert_run(anchor, &ids, &run);
                Ok(Applied {
                    inserted: ids,
                    deleted: Vec::new(),
                })
            }
            TextOp::Delete { delete } => {
                let at: Vec<usize> = delete
                    .iter()
                    .filter_map(|id| self.index.get(id).copied())
                    .collect();
                Ok(self.tombstone(&at))
            }
        }
    }

    /// The ops that undo `applied`, by `user`, against the text as it is now: a delete of the
    /// inserted characters still visible, and for the deleted ones a re-insertion of the same
    /// characters as new runs with new ids from `user` (§4.3 has no revive). Deleted characters
    /// with no visible character between them form one run, placed after the character (visible
    /// or not) just before the first of them; as its ids are the greatest in the element it lands
    /// right there. Apply the ops in the order given; empty when there is nothing left to undo
    /// (e.g. the inserted text was deleted since, or the tombstones were compacted away).
    pub fn inverse(&self, applied: &Applied, user: &str) -> Vec<TextOp> {
        let inserted: HashSet<&CharId> = applied.inserted.iter().collect();
        let deleted: HashSet<&CharId> = applied.deleted.iter().collect();
        let mut ops = Vec::new();
        let still: Vec<CharId> = applied
            .inserted
            .iter()
            .filter(|id| self.position(id).is_some_and(|p| !self.chars[p].deleted))
            .cloned()
            .collect();
        if !still.is_empty() {
            ops.push(TextOp::Delete { delete: still });
        }
        let mut n = self.next_n();
        let mut run: Option<(Option<CharId>, String)> = None;
        for (i, c) in self.chars.iter().enumerate() {
            // A character both inserted and deleted (a merged batch) did not exist before.
            if c.deleted && deleted.contains(&c.id) && !inserted.contains(&c.id) {
                let (_, text) = run.get_or_insert_with(|| {
                    let after = i.checked_sub(1).map(|p| self.chars[p].id.clone());
                    (after, String::new())
                });
                text.push(c.ch);
            } else if !c.deleted {
                Self::flush_run(&mut run, &mut n, user, &mut ops);
            }
        }
        Self::flush_run(&mut run, &mut n, user, &mut ops);
        ops
    }

    fn flush_run(
        run: &mut Option<(Option<CharId>, String)>,
        n: &mut u64,
        user: &str,
        ops: &mut Vec<TextOp>,
    ) {
        if let Some((after, text)) = run.take() {
            let first = CharId::new(user, *n);
            *n = n.saturating_add(text.chars().count() as u64);
            ops.push(TextOp::Insert { after, first, text });
        }
    }

    /// Drops tombstones, and returns how many. A tombstone goes only if `droppable` says so (the
    /// caller's policy: e.g. deleted long enough ago that no op in flight names it) and if
    /// dropping it cannot change where any later insert lands: the next character kept after it
    /// has a smaller id, or there is none. Then an insert that would stop at the tombstone stops
    /// at that next character instead, in the same place, so a replica that still holds the
    /// tombstone (a page open since before) and one that does not (the server, a late joiner)
    /// keep converging. In practice: trailing deletions, and deleted text that had been typed
    /// into older text, go; a tombstone followed by newer text (text typed left to right, then
    /// partly deleted) stays. The character with the greatest id always stays, so
    /// [`Rga::next_n`] never goes back. The visible text and the order of what remains are
    /// unchanged.
    ///
    /// The risk is the caller's: an op whose `after` names a dropped tombstone is refused with
    /// [`TextError::UnknownChar`], and its client must reload the `textState`. Compact the
    /// authoritative text and the snapshot it is stored in together, and replay only later ops.
    pub fn compact(&mut self, droppable: impl Fn(&CharId) -> bool) -> usize {
        let Some(top) = self.chars.iter().map(|c| &c.id).max() else {
            return 0;
        };
        let mut keep = vec![true; self.chars.len()];
        let mut next: Option<&CharId> = None;
        for (i, c) in self.chars.iter().enumerate().rev() {
            let drop = c.deleted
                && c.id != *top
                && next.is_none_or(|next| *next < c.id)
                && droppable(&c.id);
            if drop {
                keep[i] = false;
            } else {
                next = Some(&c.id);
            }
        }
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped > 0 {
            let mut keep = keep.into_iter();
            self.chars.retain(|_| keep.next().unwrap_or(true));
            self.index.clear();
            self.indexed = 0;
        }
        dropped
    }

    /// Puts a run, already checked, after `anchor` (`None`: the start), skipping the characters
    /// with greater ids than the run's first: the module doc says why that is the right place.
    /// The rest of the run follows contiguously: its ids are greater than the first's, and what
    /// comes after the place found has a smaller id than the first.
    fn insert_run(&mut self, anchor: Option<usize>, ids: &[CharId], run: &[char]) {
        let Some(first) = ids.first() else {
            return;
        };
        let mut at = anchor.map_or(0, |p| p + 1);
        while self.chars.get(at).is_some_and(|c| c.id > *first) {
            at += 1;
        }
        let new = ids.iter().zip(run).map(|(id, &ch)| Char {
            id: id.clone(),
            ch,
            deleted: false,
        });
        self.chars.splice(at..at, new);
        self.indexed = self.indexed.min(at);
        self.visible += run.len();
        self.max_n = self.max_n.max(first.n + run.len() as u64 - 1);
    }

    /// Marks those positions deleted; reports those that were visible.
    fn tombstone(&mut self, at: &[usize]) -> Applied {
        let mut applied = Applied::default();
        for &p in at {
            if let Some(c) = self.chars.get_mut(p)
                && !c.deleted
            {
                c.deleted = true;
                self.visible -= 1;
                applied.deleted.push(c.id.clone());
            }
        }
        applied
    }

    /// Brings the index up to date (the positions an insert shifted, and the new ids).
    fn reindex(&mut self) {
        for (i, c) in self.chars.iter().enumerate().skip(self.indexed) {
            match self.index.get_mut(&c.id) {
                Some(p) => *p = i,
                None => {
                    self.index.insert(c.id.clone(), i);
                }
            }
        }
        self.indexed = self.chars.len();
    }

    /// Where `id` is, without `&mut`: the index if it is up to date there, else a scan of the
    /// part an insert shifted (stale entries always point at or past `indexed`).
    fn position(&self, id: &CharId) -> Option<usize> {
        if let Some(&p) = self.index.get(id)
            && p < self.indexed
            && self.chars.get(p).is_some_and(|c| c.id == *id)
        {
            return Some(p);
        }
        let shifted = self.chars.get(self.indexed..).unwrap_or_default();
        shifted
            .iter()
            .position(|c| c.id == *id)
            .map(|p| p + self.indexed)
    }
}

impl Serialize for Rga {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.chars.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rga {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_state(Vec::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const BIG: TextLimits = TextLimits {
        max_chars: 100_000,
        max_entries: 100_000,
    };

    fn id(s: &str) -> CharId {
        CharId::parse(s).expect("test id")
    }

    fn ins(after: Option<&str>, first: &str, text: &str) -> TextOp {
        TextOp::Insert {
            after: after.map(id),
            first: id(first),
            text: text.into(),
        }
    }

    fn del(ids: &[&str]) -> TextOp {
        TextOp::Delete {
            delete: ids.iter().map(|s| id(s)).collect(),
        }
    }

    /// "hello" typed by `a` as a run: a:1..a:5.
    fn hello() -> Rga {
        let mut rga = Rga::new();
        rga.apply(&ins(None, "a:1", "hello"), "a", BIG)
            .expect("hello");
        rga
    }

    fn ids_of(rga: &Rga) -> Vec<String> {
        rga.state().iter().map(|c| c.id.to_string()).collect()
    }

    #[test]
    fn char_ids_parse_canonically() {
        assert_eq!(id("u1:5"), CharId::new("u1", 5));
        assert_eq!(id("a:b:7"), CharId::new("a:b", 7));
        assert_eq!(id("u:0").n, 0);
        assert_eq!(CharId::new("a:b", 7).to_string(), "a:b:7");
        let max = format!("u:{MAX_N}");
        assert_eq!(id(&max).n, MAX_N);
        let over = format!("u:{}", MAX_N + 1);
        for bad in [
            "", "u", ":5", "u:", "u:05", "u:+5", "u:-1", "u:5 ", "u:1e3", &over,
        ] {
            assert_eq!(CharId::parse(bad), None, "{bad:?}");
        }
        assert!(serde_json::from_value::<CharId>(json!("u:007")).is_err());
        assert!(serde_json::from_value::<CharId>(json!(5)).is_err());
    }

    #[test]
    fn ids_order_by_n_then_user() {
        assert!(id("a:2") > id("z:1"));
        assert!(id("b:2") > id("a:2"));
    }

    #[test]
    fn ops_have_the_wire_shapes() {
        let op = ins(None, "a:1", "hi");
        let wire = json!({"after": null, "first": "a:1", "text": "hi"});
        assert_eq!(serde_json::to_value(&op).unwrap(), wire);
        assert_eq!(serde_json::from_value::<TextOp>(wire).unwrap(), op);
        let op = ins(Some("b:3"), "a:4", "x");
        let wire = json!({"after": "b:3", "first": "a:4", "text": "x"});
        assert_eq!(serde_json::to_value(&op).unwrap(), wire);
        assert_eq!(serde_json::from_value::<TextOp>(wire).unwrap(), op);
        let op = del(&["a:1", "b:2"]);
        let wire = json!({"delete": ["a:1", "b:2"]});
        assert_eq!(serde_json::to_value(&op).unwrap(), wire);
        assert_eq!(serde_json::from_value::<TextOp>(wire).unwrap(), op);
        for bad in [
            json!({"after": null, "first": "a:1", "text": "x", "delete": ["a:1"]}),
            json!({"first": "a:01", "text": "x"}),
            json!({"after": null, "text": "x"}),
            json!({"delete": "a:1"}),
            json!({}),
            json!([]),
        ] {
            assert!(
                serde_json::from_value::<TextOp>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let wire = json!([
            ["a:1", "h", false],
            ["a:2", "😀", true],
            ["b:3", "é", false]
        ]);
        let rga: Rga = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(rga.text(), "hé");
        assert_eq!(rga.visible_len(), 2);
        assert_eq!(rga.len(), 3);
        assert_eq!(rga.next_n(), 4);
        assert_eq!(serde_json::to_value(&rga).unwrap(), wire);
        for bad in [
            json!([["a:1", "h", false], ["a:1", "i", false]]),
            json!([["a:1", "hi", false]]),
            json!([["a:1", "", false]]),
            json!([["a:1", "h"]]),
            json!({"a:1": "h"}),
        ] {
            assert!(serde_json::from_value::<Rga>(bad.clone()).is_err(), "{bad}");
        }
        let empty: Rga = serde_json::from_value(json!([])).unwrap();
        assert_eq!((empty.text(), empty.next_n()), (String::new(), 1));
    }

    #[test]
    fn a_run_gets_consecutive_ids_after_its_anchor() {
        let mut rga = hello();
        assert_eq!(ids_of(&rga), ["a:1", "a:2", "a:3", "a:4", "a:5"]);
        let done = rga.apply(&ins(Some("a:2"), "b:6", "XY"), "b", BIG).unwrap();
        assert_eq!(done.inserted, [id("b:6"), id("b:7")]);
        assert!(done.deleted.is_empty());
        assert_eq!(rga.text(), "heXYllo");
        rga.apply(&ins(None, "c:8", ">"), "c", BIG).unwrap();
        assert_eq!(rga.text(), ">heXYllo");
        rga.apply(&ins(Some("a:5"), "c:9", "!"), "c", BIG).unwrap();
        assert_eq!(rga.text(), ">heXYllo!");
        assert_eq!(rga.next_n(), 10);
    }

    #[test]
    fn concurrent_inserts_after_one_char_put_the_greater_id_first() {
        // Both typed after "h" having seen only "hello": higher n first, whatever the order.
        let (x, y) = (ins(Some("a:1"), "b:6", "BB"), ins(Some("a:1"), "c:7", "C"));
        for order in [[&x, &y], [&y, &x]] {
            let mut rga = hello();
            for op in order {
                rga.integrate(op).unwrap();
            }
            assert_eq!(rga.text(), "hCBBello");
        }
        // Same n: the greater user id first.
        let (x, y) = (ins(Some("a:1"), "b:6", "B"), ins(Some("a:1"), "c:6", "C"));
        for order in [[&x, &y], [&y, &x]] {
            let mut rga = hello();
            for op in order {
                rga.integrate(op).unwrap();
            }
            assert_eq!(rga.text(), "hCBello");
        }
    }

    #[test]
    fn refused_ops_change_nothing() {
        let limits = TextLimits {
            max_chars: 8,
            max_entries: 10,
        };
        let cases = [
            (
                ins(Some("z:1"), "a:6", "x"),
                "a",
                TextError::UnknownChar(id("z:1")),
            ),
            (ins(Some("a:5"), "a:4", "x"), "a", TextError::NotAfter),
            (ins(Some("a:5"), "a:5", "x"), "a", TextError::NotAfter),
            (ins(None, "a:3", "x"), "a", TextError::Duplicate(id("a:3"))),
            // The run's later ids collide too.
            (
                ins(None, "a:0", "xyz"),
                "a",
                TextError::Duplicate(id("a:1")),
            ),
            (ins(None, "b:6", "x"), "a", TextError::NotAuthor),
            (ins(None, "a:6", ""), "a", TextError::Empty),
            (ins(None, "a:6", "123456789"), "a", TextError::TooLong),
            (ins(None, "a:6", "1234"), "a", TextError::TooLong),
            (
                ins(None, &format!("a:{MAX_N}"), "xy"),
                "a",
                TextError::BadId,
            ),
            (
                ins(None, &format!("a:{}", 7 + MAX_N_JUMP), "x"),
                "a",
                TextError::BadId,
            ),
            (del(&["a:1", "z:9"]), "a", TextError::UnknownChar(id("z:9"))),
            (del(&[]), "a", TextError::Empty),
        ];
        for (op, author, error) in cases {
            let mut rga = hello();
            assert_eq!(rga.apply(&op, author, limits), Err(error), "{op:?}");
            assert_eq!(rga, hello(), "{op:?}");
        }
        // Tombstones count towards the entries.
        let mut rga = hello();
        rga.apply(&del(&["a:1", "a:2", "a:3"]), "a", limits)
            .unwrap();
        let before = rga.clone();
        let full = rga.apply(&ins(None, "a:6", "123456"), "a", limits);
        assert_eq!(full, Err(TextError::Full));
        assert_eq!(rga, before);
        // The largest jump is allowed.
        let mut rga = hello();
        let far = ins(None, &format!("a:{}", 6 + MAX_N_JUMP), "x");
        assert!(rga.apply(&far, "a", limits).is_ok());
    }

    #[test]
    fn deleting_a_tombstone_again_is_a_no_op() {
        let mut rga = hello();
        let done = rga.apply(&del(&["a:2", "a:2", "a:3"]), "b", BIG).unwrap();
        assert_eq!(done.deleted, [id("a:2"), id("a:3")]);
        assert_eq!(rga.text(), "hlo");
        let again = rga.apply(&del(&["a:2"]), "c", BIG).unwrap();
        assert_eq!(again, Applied::default());
        assert_eq!(rga.text(), "hlo");
        assert_eq!(rga.len(), 5);
        // A tombstone is still an anchor.
        rga.apply(&ins(Some("a:2"), "c:6", "E"), "c", BIG).unwrap();
        assert_eq!(rga.text(), "hElo");
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let mut rga = hello();
        let ops = [ins(Some("a:5"), "b:6", "!"), ins(Some("b:6"), "b:7", "?")];
        let done = rga.apply_all(&ops, "b", BIG).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(rga.text(), "hello!?");
        let ops = [del(&["a:1"]), ins(Some("q:1"), "b:8", "x")];
        let before = rga.clone();
        let refused = rga.apply_all(&ops, "b", BIG);
        assert_eq!(refused, Err((1, TextError::UnknownChar(id("q:1")))));
        assert_eq!(rga, before);
    }

    #[test]
    fn integrate_is_idempotent_and_needs_the_anchor() {
        let mut rga = hello();
        let op = ins(Some("a:2"), "b:6", "XY");
        rga.integrate(&op).unwrap();
        assert_eq!(rga.integrate(&op), Ok(Applied::default()));
        assert_eq!(rga.text(), "heXYllo");
        let overlap = ins(Some("a:2"), "b:7", "YZ");
        assert_eq!(
            rga.integrate(&overlap),
            Err(TextError::Duplicate(id("b:7")))
        );
        let early = ins(Some("c:9"), "c:10", "x");
        assert_eq!(
            rga.integrate(&early),
            Err(TextError::UnknownChar(id("c:9")))
        );
        // Ids it does not hold (compacted away) are skipped in a delete.
        let done = rga.integrate(&del(&["q:1", "a:1"])).unwrap();
        assert_eq!(done.deleted, [id("a:1")]);
        assert_eq!(rga.text(), "eXYllo");
    }

    #[test]
    fn inverse_of_an_insert_deletes_what_is_still_visible() {
        let mut rga = hello();
        let done = rga
            .apply(&ins(Some("a:5"), "b:6", "abc"), "b", BIG)
            .unwrap();
        rga.apply(&del(&["b:7"]), "c", BIG).unwrap();
        let undo = rga.inverse(&done, "b");
        assert_eq!(undo, [del(&["b:6", "b:8"])]);
        rga.apply(&undo[0], "b", BIG).unwrap();
        assert_eq!(rga.text(), "hello");
        assert!(rga.inverse(&done, "b").is_empty());
    }

    #[test]
    fn inverse_of_a_delete_reinserts_new_runs_in_place() {
        let mut rga = hello();
        let done = rga.apply(&del(&["a:1", "a:3", "a:4"]), "b", BIG).unwrap();
        assert_eq!(rga.text(), "eo");
        let undo = rga.inverse(&done, "b");
        assert_eq!(
            undo,
            [ins(None, "b:6", "h"), ins(Some("a:2"), "b:7", "ll")],
            "two runs: a visible \"e\" separates them"
        );
        for op in &undo {
            rga.apply(op, "b", BIG).unwrap();
        }
        assert_eq!(rga.text(), "hello");
    }

    #[test]
    fn undoing_a_delete_keeps_what_others_typed_since() {
        let mut rga = hello();
        let done = rga.apply(&del(&["a:2", "a:3", "a:4"]), "b", BIG).unwrap();
        // Someone types into the gap, after the deleted "l" at a:3.
        rga.apply(&ins(Some("a:3"), "c:6", "X"), "c", BIG).unwrap();
        assert_eq!(rga.text(), "hXo");
        for op in rga.inverse(&done, "b") {
            rga.apply(&op, "b", BIG).unwrap();
        }
        assert_eq!(rga.text(), "helXlo");
    }

    #[test]
    fn compaction_drops_only_tombstones_that_cannot_matter() {
        // "hello" then "XY" typed into it after "e" and deleted, and the trailing "o" deleted.
        let mut rga = hello();
        rga.apply(&ins(Some("a:2"), "b:6", "XY"), "b", BIG).unwrap();
        rga.apply(&ins(Some("a:5"), "b:8", "!"), "b", BIG).unwrap();
        rga.apply(&del(&["b:6", "b:7", "a:3", "b:8"]), "b", BIG)
            .unwrap();
        assert_eq!(rga.text(), "helo");
        let before = rga.text();
        let dropped = rga.compact(|_| true);
        // b:6 and b:7 go (the next kept, a:3, is older); a:3 stays (a:4 is newer); b:8 stays
        // (the greatest id).
        assert_eq!(dropped, 2);
        assert_eq!(ids_of(&rga), ["a:1", "a:2", "a:3", "a:4", "a:5", "b:8"]);
        assert_eq!(rga.text(), before);
        assert_eq!(rga.next_n(), 9);
        // An op naming a dropped tombstone is refused; the client must resync.
        let stale = ins(Some("b:7"), "c:9", "z");
        assert_eq!(
            rga.apply(&stale, "c", BIG),
            Err(TextError::UnknownChar(id("b:7")))
        );
        // The caller's policy is respected.
        let mut rga = hello();
        rga.apply(&ins(Some("a:2"), "b:6", "XY"), "b", BIG).unwrap();
        rga.apply(&ins(Some("a:5"), "c:8", "!"), "c", BIG).unwrap();
        rga.apply(&del(&["b:6", "b:7"]), "b", BIG).unwrap();
        assert_eq!(rga.compact(|id| id.n != 7), 0, "b:6 is followed by b:7");
        assert_eq!(rga.compact(|id| id.n != 6), 1);
        assert_eq!(
            ids_of(&rga),
            ["a:1", "a:2", "b:6", "a:3", "a:4", "a:5", "c:8"]
        );
    }

    #[test]
    fn from_text_is_one_run() {
        let rga = Rga::from_text("hé😀", "u", 7).unwrap();
        assert_eq!(ids_of(&rga), ["u:7", "u:8", "u:9"]);
        assert_eq!(rga.text(), "hé😀");
        assert_eq!(Rga::from_text("x", "", 1), Err(TextError::BadId));
        assert_eq!(Rga::from_text("xy", "u", MAX_N), Err(TextError::BadId));
    }

    #[test]
    fn typing_a_full_element_char_by_char_stays_linear() {
        let mut rga = Rga::new();
        let mut after = None;
        for k in 0..MAX_TEXT_CHARS as u64 {
            let first = CharId::new("u", k + 1);
            let op = TextOp::Insert {
                after: after.replace(first.clone()),
                first,
                text: "x".into(),
            };
            rga.apply(&op, "u", TextLimits::default()).unwrap();
        }
        assert_eq!(rga.visible_len(), MAX_TEXT_CHARS);
        let one_more = ins(None, &format!("u:{}", rga.next_n()), "x");
        let refused = rga.apply(&one_more, "u", TextLimits::default());
        assert_eq!(refused, Err(TextError::TooLong));
    }

    // ---- Random sessions ------------------------------------------------------------------

    const ALPHABET: [char; 6] = ['a', 'b', ' ', 'é', '😀', 'z'];

    /// One step of a session: a replica edits its own view, sends its oldest unsent op to the
    /// server, or receives the next op the server sequenced.
    #[derive(Clone, Debug)]
    enum Step {
        Edit {
            r: usize,
            a: u32,
            b: u32,
            len: usize,
        },
        Send {
            r: usize,
        },
        Recv {
            r: usize,
        },
    }

    fn step(replicas: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..replicas, any::<u32>(), any::<u32>(), 1_usize..4)
                .prop_map(|(r, a, b, len)| Step::Edit { r, a, b, len }),
            2 => (0..replicas).prop_map(|r| Step::Send { r }),
            2 => (0..replicas).prop_map(|r| Step::Recv { r }),
        ]
    }

    struct Replica {
        user: String,
        view: Rga,
        unsent: std::collections::VecDeque<TextOp>,
        received: usize,
        /// A typist only ever types on after what it typed last.
        typist: bool,
        cursor: Option<CharId>,
    }

    struct Session {
        server: Rga,
        /// What the server sequenced, with the replica it came from.
        log: Vec<(usize, TextOp)>,
        replicas: Vec<Replica>,
    }

    impl Session {
        fn new(replicas: usize, typists: usize) -> Self {
            Self {
                server: Rga::new(),
                log: Vec::new(),
                replicas: (0..replicas)
                    .map(|r| Replica {
                        user: format!("user{r}"),
                        view: Rga::new(),
                        unsent: Default::default(),
                        received: 0,
                        typist: r < typists,
                        cursor: None,
                    })
                    .collect(),
            }
        }

        fn run(&mut self, steps: &[Step]) {
            for step in steps {
                match *step {
                    Step::Edit { r, a, b, len } => self.edit(r, a, b, len),
                    Step::Send { r } => self.send(r),
                    Step::Recv { r } => self.recv(r),
                }
            }
            for r in 0..self.replicas.len() {
                while !self.replicas[r].unsent.is_empty() {
                    self.send(r);
                }
            }
            for r in 0..self.replicas.len() {
                while self.replicas[r].received < self.log.len() {
                    self.recv(r);
                }
            }
        }

        /// An edit made against the replica's own view, with the Lamport `n` a client uses.
        fn edit(&mut self, r: usize, a: u32, b: u32, len: usize) {
            let me = &mut self.replicas[r];
            let state = me.view.state();
            let insert = me.typist || !a.is_multiple_of(3) || me.view.visible_len() == 0;
            let op = if insert {
                let after = match (&me.cursor, me.typist) {
                    (Some(cursor), true) => Some(cursor.clone()),
                    _ => (b as usize % (state.len() + 1))
                        .checked_sub(1)
                        .map(|i| state[i].id.clone()),
                };
                let text: String = (0..len)
                    .map(|k| ALPHABET[(a as usize + 5 * k) % ALPHABET.len()])
                    .collect();
                let first = CharId::new(me.user.clone(), me.view.next_n());
                me.cursor = Some(first.plus(len as u64 - 1));
                TextOp::Insert { after, first, text }
            } else {
                let visible: Vec<&CharId> =
                    state.iter().filter(|c| !c.deleted).map(|c| &c.id).collect();
                let delete = (0..len)
                    .map(|k| visible[(b as usize + 7 * k) % visible.len()].clone())
                    .collect();
                TextOp::Delete { delete }
            };
            // A client's op passes the server's checks against its own view.
            me.view.apply(&op, &me.user, BIG).expect("valid locally");
            me.unsent.push_back(op);
        }

        fn send(&mut self, r: usize) {
            let me = &mut self.replicas[r];
            if let Some(op) = me.unsent.pop_front() {
                // Sent in order, so every id it names reached the server before it.
                self.server
                    .apply(&op, &me.user, BIG)
                    .expect("server accepts");
                self.log.push((r, op));
            }
        }

        fn recv(&mut self, r: usize) {
            let me = &mut self.replicas[r];
            if let Some((from, op)) = self.log.get(me.received) {
                me.received += 1;
                if *from != r {
                    me.view.integrate(op).expect("causal delivery");
                }
            }
        }
    }

    /// A tiny deterministic generator for delivery orders.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// The server's ops in a random order that still respects causality.
    fn causal_shuffle(log: &[(usize, TextOp)], seed: u64) -> Vec<TextOp> {
        let mut made_by = HashMap::new();
        for (i, (_, op)) in log.iter().enumerate() {
            if let TextOp::Insert { first, text, .. } = op {
                for k in 0..text.chars().count() as u64 {
                    made_by.insert(first.plus(k), i);
                }
            }
        }
        let needs: Vec<Vec<usize>> = log
            .iter()
            .map(|(_, op)| match op {
                TextOp::Insert { after, .. } => after.iter().map(|a| made_by[a]).collect(),
                TextOp::Delete { delete } => delete.iter().map(|d| made_by[d]).collect(),
            })
            .collect();
        let mut rng = XorShift(seed | 1);
        let mut done = vec![false; log.len()];
        let mut order = Vec::new();
        while order.len() < log.len() {
            let ready: Vec<usize> = (0..log.len())
                .filter(|&i| !done[i] && needs[i].iter().all(|&d| done[d]))
                .collect();
            let pick = ready[rng.below(ready.len())];
            done[pick] = true;
            order.push(log[pick].1.clone());
        }
        order
    }

    fn session(replicas: usize, typists: usize, steps: &[Step]) -> Session {
        let mut s = Session::new(replicas, typists);
        s.run(steps);
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn replicas_converge_whatever_the_causal_order(
            steps in proptest::collection::vec(step(4), 0..80),
            seeds in proptest::collection::vec(any::<u64>(), 3),
        ) {
            let s = session(4, 0, &steps);
            for r in &s.replicas {
                prop_assert_eq!(r.view.state(), s.server.state());
                prop_assert_eq!(r.view.text(), s.server.text());
            }
            for seed in seeds {
                let mut fresh = Rga::new();
                for op in causal_shuffle(&s.log, seed) {
                    prop_assert!(fresh.integrate(&op).is_ok());
                }
                prop_assert_eq!(fresh.state(), s.server.state());
                prop_assert_eq!(fresh.text(), s.server.text());
                prop_assert_eq!(fresh.visible_len(), s.server.text().chars().count());
            }
            let json = serde_json::to_string(&s.server).unwrap();
            let back: Rga = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, s.server);
        }

        #[test]
        fn what_one_replica_types_in_order_stays_in_order(
            steps in proptest::collection::vec(step(4), 0..80),
        ) {
            // Three typists each keep typing where they left off; the fourth edits anywhere.
            let s = session(4, 3, &steps);
            for r in &s.replicas[..3] {
                let typed: Vec<u64> = s.server.state().iter()
                    .filter(|c| c.id.user == r.user)
                    .map(|c| c.id.n)
                    .collect();
                prop_assert!(typed.windows(2).all(|w| w[0] < w[1]), "{}: {:?}", r.user, typed);
            }
        }

        #[test]
        fn an_inverse_restores_the_text(
            steps in proptest::collection::vec(step(3), 0..60),
            a in any::<u32>(), b in any::<u32>(), len in 1_usize..5,
        ) {
            let mut s = session(3, 0, &steps);
            let mut rga = s.server.clone();
            // One more edit by replica 0, made on the server's state.
            s.replicas[0].view = rga.clone();
            s.edit(0, a, b, len);
            let op = s.replicas[0].unsent.pop_back().unwrap();
            let user = s.replicas[0].user.clone();
            let before = rga.text();
            let done = rga.apply(&op, &user, BIG).unwrap();
            let after = rga.text();
            let undo = rga.inverse(&done, &user);
            let mut undone = Vec::new();
            for op in &undo {
                undone.push(rga.apply(op, &user, BIG).unwrap());
            }
            prop_assert_eq!(rga.text(), before);
            // And undoing the undo (a redo) brings the edit back.
            let redo: Vec<TextOp> = undone.iter().flat_map(|u| rga.inverse(u, &user)).collect();
            for op in &redo {
                rga.apply(op, &user, BIG).unwrap();
            }
            prop_assert_eq!(rga.text(), after);
        }

        #[test]
        fn compaction_keeps_text_order_and_later_inserts(
            steps in proptest::collection::vec(step(3), 0..80),
            drop_seed in any::<u64>(),
            later in proptest::collection::vec(
                (any::<u32>(), any::<u32>(), 0_u64..4, 0_usize..4, 1_usize..3),
                0..30,
            ),
        ) {
            let s = session(3, 0, &steps);
            let mut full = s.server.clone();
            let mut compact = s.server.clone();
            let droppable = |id: &CharId| (id.n ^ drop_seed).count_ones().is_multiple_of(2);
            compact.compact(droppable);
            let same_order = |full: &Rga, compact: &Rga| {
                let kept: Vec<&Char> =
                    full.state().iter().filter(|c| compact.contains(&c.id)).collect();
                kept.len() == compact.len()
                    && kept.iter().zip(compact.state()).all(|(a, b)| **a == *b)
                    && full.text() == compact.text()
            };
            prop_assert!(same_order(&full, &compact));
            // Also once reloaded: the character with the greatest n was kept.
            let reloaded = Rga::from_state(compact.state().to_vec()).unwrap();
            prop_assert_eq!(reloaded.next_n(), full.next_n());
            // Later inserts anywhere, by anyone, with any n the server accepts (not only an
            // honest client's next_n) land in the same place on both.
            let users = ["user0", "user1", "user2", "zed"];
            for (a, b, extra, who, len) in later {
                let state = compact.state();
                let op = if a.is_multiple_of(4) && compact.visible_len() > 0 {
                    let visible: Vec<&Char> = state.iter().filter(|c| !c.deleted).collect();
                    TextOp::Delete { delete: vec![visible[b as usize % visible.len()].id.clone()] }
                } else {
                    let after = (b as usize % (state.len() + 1))
                        .checked_sub(1)
                        .map(|i| state[i].id.clone());
                    let n = after.as_ref().map_or(0, |a| a.n + 1) + extra;
                    let first = CharId::new(users[who], n);
                    TextOp::Insert { after, first, text: "q".repeat(len) }
                };
                if full.apply(&op, users[who], BIG).is_ok() {
                    prop_assert!(compact.apply(&op, users[who], BIG).is_ok());
                }
                prop_assert!(same_order(&full, &compact));
            }
        }
    }
}
