//! The embedded engine: all shared state in this process, for a single instance with no Redis
//! (development, demos, tests). Same semantics as the Redis engine, checked by the same suite.

mod access;
mod accounts;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    Engine, EngineError, EngineResult, EngineSettings, History, JoinOutcome, JoinRequest, LogSlice,
    Op, OpOutcome, OpsPage, OtpOutcome, PasswordReset, Past, RateDecision, RefreshOutcome,
    RoomInfo, RoomView, Rotation, ViewBody, delivery as engine_delivery, now_ms, op_field,
};
use crate::domain::accounts::Account;
use crate::domain::board::{
    Board, Context, Decided, Decision, Effect, Logged, Lookup, Refusal, STACK_LOOKBACK, Stacks,
    decide,
};
use crate::domain::element::{Element, ElementLimits, Kind, ZOrder, format_z};
use crate::domain::history::{self, HistoryError, RoomDump, Version};
use crate::domain::quota::Usage;
use crate::domain::record::{self, Parts};
use crate::domain::{ConnKey, RoomId, StrokeId, UserId, frames};
use crate::hub::{Delivery, Hub};

pub struct MemoryEngine {
    settings: EngineSettings,
    hub: Arc<Hub>,
    // One lock for everything: ops are short and in-memory, and publishing to the hub while
    // holding it is what keeps delivery in seq order.
    state: Mutex<State>,
    accounts: accounts::AccountStore,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, Room>,
    limits: HashMap<String, (u32, Instant)>,
    /// Access state outside any one room (`access.rs`).
    access: access::AccessState,
}

/// A stored element: parsed for the rules, and its stored text for joins.
struct Stored {
    element: Element,
    json: String,
}

struct Room {
    /// Unix milliseconds.
    created_at: u64,
    epoch: String,
    seq: u64,
    expires: Option<Instant>,
    elements: HashMap<StrokeId, Stored>,
    order: BTreeSet<(ZOrder, StrokeId)>,
    /// The greatest z this room placed (floored): an element added without one goes above it.
    ztop: f64,
    /// Log records by seq, oldest first.
    log: VecDeque<(u64, String)>,
    /// Idempotency records: `userId|opId` → (seq, ACK id), this generation and the previous
    /// one (each `log_max` seqs, as on Redis).
    ops: HashMap<String, (u64, Option<StrokeId>)>,
    ops_prev: HashMap<String, (u64, Option<StrokeId>)>,
    undo: HashMap<UserId, VecDeque<u64>>,
    redo: HashMap<UserId, VecDeque<u64>>,
    /// Connection → (user, member JSON).
    users: HashMap<ConnKey, (UserId, String)>,
    /// The board the log's first record applies to (§5: older ops folded into it).
    base: history::Board,
    /// Boards after the base, spaced by `history::snapshot_due` (derived from the log).
    snapshots: BTreeMap<u64, history::Board>,
    versions: Vec<Version>,
    /// When the last connection left (compaction, §6); `None` while anyone is in it.
    idle_since: Option<Instant>,
    /// Bytes of elements held, in all and by creator (`domain/quota.rs`).
    bytes: u64,
    user_bytes: HashMap<UserId, u64>,
    /// Owner, name, access mode, link role, workspace.
    settings: crate::domain::access::RoomSettings,
    /// Roles given in the room itself.
    members: HashMap<UserId, crate::domain::access::Role>,
}

impl Room {
    fn new(creator: UserId, expires: Option<Instant>) -> Self {
        Self {
            settings: crate::domain::access::RoomSettings {
                owner: creator,
                name: String::new(),
                access: crate::domain::access::AccessMode::Link,
                link_role: crate::domain::access::Role::Editor,
                workspace: None,
            },
            members: HashMap::new(),
            created_at: now_ms(),
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            seq: 0,
            expires,
            elements: HashMap::new(),
            order: BTreeSet::new(),
            ztop: 0.0,
            log: VecDeque::new(),
            ops: HashMap::new(),
            ops_prev: HashMap::new(),
            undo: HashMap::new(),
            redo: HashMap::new(),
            users: HashMap::new(),
            base: history::Board::empty(),
            snapshots: BTreeMap::new(),
            versions: Vec::new(),
            idle_since: None,
            bytes: 0,
            user_bytes: HashMap::new(),
        }
    }

    /// The live board, as the history module reads boards.
    fn board(&self) -> history::Board {
        let stored: Vec<&str> = self.elements.values().map(|s| s.json.as_str()).collect();
        // Our own stored texts: they parse.
        history::Board::from_stored(self.seq, &stored).unwrap_or_default()
    }

    /// The board right after `at`: the nearest snapshot, then the log after it.
    fn board_at(&self, at: u64) -> Result<history::Board, HistoryError> {
        if at == self.seq {
            return Ok(self.board());
        }
        let mut board = self
            .snapshots
            .range(..=at)
            .next_back()
            .map_or_else(|| self.base.clone(), |(_, b)| b.clone());
        let records = (board.seq + 1..=at).filter_map(|seq| self.record(seq));
        board.apply_all(records)?;
        Ok(board)
    }

    /// After op `seq`: a snapshot when one is due, and the oldest ops folded into the base
    /// once more than the history cap are kept (never the replay window).
    fn keep_history(&mut self, settings: &EngineSettings) {
        let seq = self.seq;
        let last = self.snapshots.values().next_back().unwrap_or(&self.base);
        if !history::snapshot_due(seq, last.seq, last.len(), settings.snapshot_every) {
            return;
        }
        self.snapshots.insert(seq, self.board());
        let Some(fold) = history::fold_point(seq, settings.history_max, settings.snapshot_every)
        else {
            return;
        };
        if fold <= self.base.seq {
            return;
        }
        let newest = self.snapshots.range(..=fold).next_back().map(|(s, _)| *s);
        if let Some(base) = newest.and_then(|s| self.snapshots.remove(&s)) {
            let fold = base.seq;
            self.base = base;
            self.snapshots.retain(|&s, _| s > fold);
            while self.log.front().is_some_and(|(s, _)| *s <= fold) {
                self.log.pop_front();
            }
        }
    }

    fn distinct_users(&self) -> Vec<&(UserId, String)> {
        let mut seen = std::collections::HashSet::new();
        self.users
            .values()
            .filter(|(user, _)| seen.insert(user))
            .collect()
    }

    fn has_user(&self, user: &UserId) -> bool {
        self.users.values().any(|(u, _)| u == user)
    }

    fn record(&self, seq: u64) -> Option<&str> {
        let first = self.log.front()?.0;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.log.get(index).map(|(_, r)| r.as_str())
    }

    /// Writes an element at version `v`: on top when it has no `z` (above every z the room
    /// ever placed, as the Redis script's `ztop`), else where its `z` says.
    fn put(&mut self, element: &Element, v: u64, z: Option<f64>) -> String {
        let z = match z {
            Some(z) => {
                self.ztop = self.ztop.max(z.floor());
                z
            }
            None => {
                self.ztop += 1.0;
                self.ztop
            }
        };
        self.remove(&element.id);
        let json = element.stored(v, &format_z(z));
        let mut element = element.clone();
        element.v = v;
        element.z = Some(z);
        self.order.insert((ZOrder(z), element.id.clone()));
        self.elements.insert(
            element.id.clone(),
            Stored {
                element,
                json: json.clone(),
            },
        );
        json
    }

    fn remove(&mut self, id: &StrokeId) {
        if let Some(old) = self.elements.remove(id) {
            self.order
                .remove(&(ZOrder(old.element.z.unwrap_or(0.0)), id.clone()));
        }
    }
}

/// The memory engine's board: all of it is known.
struct Whole<'a> {
    room: &'a Room,
    user: &'a UserId,
}

impl Whole<'_> {
    fn list(&self, stacks: &HashMap<UserId, VecDeque<u64>>) -> Vec<(u64, Option<Logged>)> {
        stacks.get(self.user).map_or_else(Vec::new, |list| {
            list.iter()
                .rev()
                .take(STACK_LOOKBACK)
                .map(|&seq| (seq, self.room.record(seq).and_then(record::logged)))
                .collect()
        })
    }
}

impl Board for Whole<'_> {
    fn element(&self, id: &StrokeId) -> Lookup<Element> {
        self.room
            .elements
            .get(id)
            .map_or(Lookup::Absent, |s| Lookup::Found(s.element.clone()))
    }

    fn edges_touching(&self, nodes: &HashSet<StrokeId>) -> Option<Vec<StrokeId>> {
        let touches = |id: &Option<StrokeId>| id.as_ref().is_some_and(|n| nodes.contains(n));
        let mut edges: Vec<StrokeId> = self
            .room
            .elements
            .values()
            .filter(|s| s.element.kind == Kind::Edge)
            .filter(|s| touches(&s.element.from) || touches(&s.element.to))
            .map(|s| s.element.id.clone())
            .collect();
        edges.sort();
        Some(edges)
    }

    fn undo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
        Some(self.list(&self.room.undo))
    }

    fn redo_list(&self) -> Option<Vec<(u64, Option<Logged>)>> {
        Some(self.list(&self.room.redo))
    }

    fn all_ids(&self) -> Option<Vec<StrokeId>> {
        Some(self.room.elements.keys().cloned().collect())
    }
}

impl MemoryEngine {
    pub fn new(settings: EngineSettings, hub: Arc<Hub>) -> Self {
        Self {
            settings,
            hub,
            state: Mutex::new(State::default()),
            accounts: accounts::AccountStore::default(),
        }
    }

    fn expiry(&self) -> Option<Instant> {
        self.settings.room_ttl.map(|ttl| Instant::now() + ttl)
    }

    /// Hands an unsequenced frame to the hub. Presence events must arrive (`lossy` false);
    /// cursor moves may be dropped for a slow member.
    fn transient(&self, room: &RoomId, except: Option<&ConnKey>, frame: String, lossy: bool) {
        self.hub.deliver(
            room,
            &Delivery {
                seq: None,
                origin: except.cloned(),
                lossy,
                frame: Bytes::from(frame),
                legacy: None,
            },
        );
    }

    /// Commits a decision as the Redis script does: next seq, elements, log, idempotency
    /// record, undo/redo lists, delivery.
    fn commit(&self, room_id: &RoomId, room: &mut Room, op: &Op<'_>, decision: &Decision) -> u64 {
        let seq = room.seq + 1;
        room.seq = seq;
        let user = &op.who.user_id;
        let mut added = Vec::new();
        match &decision.effect {
            Effect::Add(elements) => {
                for element in elements {
                    added.push(room.put(element, seq, element.z));
                }
            }
            Effect::Update { after, .. } => {
                for element in after {
                    room.put(element, seq, element.z);
                }
            }
            Effect::Delete(removed) => {
                for element in removed {
                    room.remove(&element.id);
                }
            }
            Effect::Text { after, .. } => {
                room.put(after, seq, after.z);
            }
            Effect::Restore {
                written, removed, ..
            } => {
                for element in removed {
                    room.remove(&element.id);
                }
                for element in written {
                    added.push(room.put(element, seq, element.z));
                }
            }
        }
        let parts = Parts::new(decision, op.conn, user, op.op_id);
        let record = parts.assemble(seq, &added);
        let delivery = engine_delivery(room_id, &record);
        room.log.push_back((seq, record));
        room.keep_history(&self.settings);
        if let Some(id) = op.op_id {
            room.ops
                .insert(op_field(user, id), (seq, decision.ack_id.clone()));
        }
        if seq.is_multiple_of(self.settings.log_max.max(1) as u64) {
            room.ops_prev = std::mem::take(&mut room.ops);
        }
        // Trimmed as the Redis script trims: back to `cap` once an eighth over it.
        let push = |lists: &mut HashMap<UserId, VecDeque<u64>>, cap: usize| {
            let list = lists.entry(user.clone()).or_default();
            list.push_back(seq);
            if list.len() > cap + cap / 8 {
                list.drain(..list.len() - cap);
            }
        };
        let take = |lists: &mut HashMap<UserId, VecDeque<u64>>, seq: u64| {
            if let Some(list) = lists.get_mut(user)
                && let Some(at) = list.iter().rposition(|&s| s == seq)
            {
                list.remove(at);
            }
        };
        match decision.stacks {
            Stacks::Push => {
                push(&mut room.undo, self.settings.undo_max);
                room.redo.remove(user);
            }
            Stacks::Undo { undone } => {
                if let Some(undone) = undone {
                    take(&mut room.undo, undone);
                }
                push(&mut room.redo, self.settings.redo_max);
            }
            Stacks::Redo { redone } => {
                take(&mut room.redo, redone);
                push(&mut room.undo, self.settings.undo_max);
            }
        }
        if let Some(delivery) = delivery {
            self.hub.deliver(room_id, &delivery);
        }
        seq
    }
}

/// The live room, after dropping it if it has expired.
fn live_room<'a>(state: &'a mut State, id: &RoomId) -> Option<&'a mut Room> {
    let expired = state
        .rooms
        .get(id)
        .is_some_and(|r| r.expires.is_some_and(|at| at <= Instant::now()));
    if expired {
        state.rooms.remove(id);
    }
    state.rooms.get_mut(id)
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn create_room(&self, creator: &UserId) -> EngineResult<RoomInfo> {
        let room_id = RoomId::random();
        let room = Room::new(creator.clone(), self.expiry());
        let mut state = self.state.lock();
        // Creating rooms is rare; it is a fine moment to forget the expired ones.
        let now = Instant::now();
        state
            .rooms
            .retain(|_, r| r.expires.is_none_or(|at| at > now));
        state.rooms.insert(room_id.clone(), room);
        let expires_at = self
            .settings
            .room_ttl
            .map(|ttl| now_ms() + ttl.as_millis() as u64);
        Ok(RoomInfo {
            room_id,
            expires_at,
        })
    }

    /// This engine never loses a write it confirmed.
    async fn op_recorded(&self, _: &RoomId, _: &UserId, _: &str) -> EngineResult<bool> {
        Ok(true)
    }

    async fn room_exists(&self, room: &RoomId) -> EngineResult<bool> {
        Ok(live_room(&mut self.state.lock(), room).is_some())
    }

    async fn join(&self, req: JoinRequest<'_>) -> EngineResult<JoinOutcome> {
        let expires = self.expiry();
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, req.room) else {
            return Ok(JoinOutcome::Missing);
        };
        room.expires = expires;
        let user = &req.who.user_id;
        let was_present = room.has_user(user);
        let entry = (user.clone(), frames::member(req.who));
        // A socket already here as it is (a re-join to catch up) changes nothing for the room.
        let announced = room.users.get(req.conn) != Some(&entry);
        room.users.insert(req.conn.clone(), entry);
        room.idle_since = None;
        let users: Vec<String> = room
            .distinct_users()
            .into_iter()
            .map(|(_, m)| m.clone())
            .collect();
        let body = match req.since {
            Some((since, epoch))
                if epoch == room.epoch
                    && since <= room.seq
                    && room
                        .log
                        .front()
                        .map_or(since == room.seq, |(seq, _)| *seq <= since + 1)
                    && room.seq - since <= self.settings.replay_max as u64 =>
            {
                ViewBody::Replay {
                    from_seq: since + 1,
                    records: room
                        .log
                        .iter()
                        .filter(|(seq, _)| *seq > since)
                        .map(|(_, record)| record.clone())
                        .collect(),
                }
            }
            _ => ViewBody::Snapshot(
                room.order
                    .iter()
                    .filter_map(|(_, id)| room.elements.get(id).map(|s| s.json.clone()))
                    .collect(),
            ),
        };
        let view = RoomView {
            seq: room.seq,
            epoch: room.epoch.clone(),
            users,
            body,
            announced,
        };
        if !announced {
            return Ok(JoinOutcome::Joined(view));
        }
        let count = view.users.len();
        if !was_present {
            self.transient(
                req.room,
                Some(req.conn),
                frames::user_joined(req.room, req.who),
                false,
            );
        }
        self.transient(req.room, None, frames::user_count(req.room, count), false);
        Ok(JoinOutcome::Joined(view))
    }

    async fn leave(&self, room_id: &RoomId, conn: &ConnKey) -> EngineResult<()> {
        let mut state = self.state.lock();
        let Some(room) = state.rooms.get_mut(room_id) else {
            return Ok(());
        };
        let Some((user, _)) = room.users.remove(conn) else {
            return Ok(());
        };
        let still_present = room.has_user(&user);
        let count = room.distinct_users().len();
        self.transient(room_id, None, frames::cursor_leave(room_id, &user), false);
        if !still_present {
            self.transient(
                room_id,
                None,
                frames::user_left(room_id, &user, count),
                false,
            );
        }
        self.transient(room_id, None, frames::user_count(room_id, count), false);
        if room.users.is_empty() {
            room.idle_since = Some(Instant::now());
        }
        Ok(())
    }

    async fn apply(&self, room_id: &RoomId, op: Op<'_>) -> EngineResult<OpOutcome> {
        let expires = self.expiry();
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(OpOutcome::RoomMissing);
        };
        let user = &op.who.user_id;
        let recorded = op
            .op_id
            .map(|id| op_field(user, id))
            .and_then(|field| room.ops.get(&field).or_else(|| room.ops_prev.get(&field)));
        if let Some((seq, ack_id)) = recorded {
            return Ok(OpOutcome::Duplicate {
                seq: *seq,
                ack_id: ack_id.clone(),
            });
        }
        let cx = Context {
            user,
            limits: ElementLimits {
                max_points: self.settings.max_points,
            },
        };
        let decision = match decide(&op.intent, &cx, &Whole { room, user }) {
            Decided::Do(decision) => decision,
            Decided::Refuse(refusal) => return Ok(OpOutcome::Refused(refusal)),
            Decided::Need(need) => {
                return Err(EngineError::Internal(format!(
                    "the whole board was not enough: {need:?}"
                )));
            }
        };
        let usage = Usage::of(&decision.effect, |id| {
            room.elements.get(id).map(|s| s.element.clone())
        });
        let counted = |user: &UserId| room.user_bytes.get(user).copied().unwrap_or(0);
        if let Err(why) = usage.check(
            &self.settings.quota,
            room.elements.len() as u64,
            room.bytes,
            counted,
        ) {
            return Ok(OpOutcome::Refused(Refusal::Quota(why)));
        }
        room.bytes = room.bytes.saturating_add_signed(usage.bytes);
        for (user, delta) in usage.users {
            let bytes = room.user_bytes.entry(user).or_default();
            *bytes = bytes.saturating_add_signed(delta);
        }
        room.expires = expires;
        let seq = self.commit(room_id, room, &op, &decision);
        Ok(OpOutcome::Applied {
            seq,
            ack_id: decision.ack_id,
        })
    }

    async fn publish_transient(
        &self,
        room: &RoomId,
        except: &ConnKey,
        frame: String,
    ) -> EngineResult<()> {
        self.transient(room, Some(except), frame, true);
        Ok(())
    }

    async fn events_after(&self, room_id: &RoomId, after: u64) -> EngineResult<Option<LogSlice>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(None);
        };
        // A position beyond the room's seq means the caller saw another history (the room was
        // recreated): no slice can repair that, as with Redis.
        if after > room.seq
            || room.log.front().is_some_and(|(seq, _)| *seq > after + 1)
            || room.seq - after > self.settings.log_max as u64
        {
            return Ok(None);
        }
        Ok(Some(LogSlice {
            epoch: room.epoch.clone(),
            events: room
                .log
                .iter()
                .filter(|(seq, _)| *seq > after)
                .filter_map(|(_, record)| engine_delivery(room_id, record))
                .collect(),
        }))
    }

    async fn sweep_presence(&self, _room: &RoomId) -> EngineResult<usize> {
        // One process holds every connection: presence can never outlive its instance.
        Ok(0)
    }

    async fn rate_limit(
        &self,
        kind: &str,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> EngineResult<RateDecision> {
        let key = format!("{kind}:{subject}");
        let now = Instant::now();
        let mut state = self.state.lock();
        state.limits.retain(|_, (_, reset)| *reset > now);
        let (count, reset) = state.limits.entry(key).or_insert((0, now + window));
        *count += 1;
        let left = reset.saturating_duration_since(now);
        Ok(RateDecision::from_hits(u64::from(*count), limit, left))
    }

    async fn create_account(&self, account: &Account) -> EngineResult<bool> {
        Ok(self.accounts.create(account))
    }

    async fn account(&self, email: &str) -> EngineResult<Option<Account>> {
        Ok(self.accounts.by_email(email))
    }

    async fn account_by_id(&self, user: &UserId) -> EngineResult<Option<Account>> {
        Ok(self.accounts.by_id(user))
    }

    async fn store_otp(&self, email: &str, code_hash: &str, ttl: Duration) -> EngineResult<()> {
        self.accounts.store_otp(email, code_hash, ttl);
        Ok(())
    }

    async fn confirm_otp(
        &self,
        email: &str,
        code_hash: &str,
        max_tries: u32,
        account: Option<&UserId>,
    ) -> EngineResult<OtpOutcome> {
        Ok(self
            .accounts
            .confirm_otp(email, code_hash, max_tries, account))
    }

    async fn reset_password(&self, reset: PasswordReset<'_>) -> EngineResult<OtpOutcome> {
        Ok(self.accounts.reset_password(reset))
    }

    async fn store_refresh(
        &self,
        user: &UserId,
        token_hash: &str,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.accounts.store_refresh(user, token_hash, ttl);
        Ok(())
    }

    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> EngineResult<RefreshOutcome> {
        Ok(self.accounts.rotate_refresh(rotation))
    }

    async fn revoked_at(&self, user: &UserId) -> EngineResult<Option<u64>> {
        Ok(self.accounts.revoked_at(user))
    }

    async fn revoke_refresh(&self, token_hash: &str) -> EngineResult<()> {
        self.accounts.revoke_refresh(token_hash);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[async_trait]
impl History for MemoryEngine {
    async fn ops(&self, room_id: &RoomId, since: u64, limit: usize) -> EngineResult<Past<OpsPage>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(Past::Missing);
        };
        if since < room.base.seq {
            return Ok(Past::Trimmed {
                oldest: room.base.seq,
            });
        }
        if since > room.seq {
            return Ok(Past::Ahead { seq: room.seq });
        }
        let last = room.seq.min(since.saturating_add(limit as u64));
        let records: Vec<String> = (since + 1..=last)
            .filter_map(|seq| room.record(seq).map(str::to_owned))
            .collect();
        Ok(Past::Found(OpsPage {
            epoch: room.epoch.clone(),
            next_since: since + records.len() as u64,
            records,
        }))
    }

    async fn board_at(
        &self,
        room_id: &RoomId,
        at: Option<u64>,
    ) -> EngineResult<Past<history::Board>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(Past::Missing);
        };
        let at = at.unwrap_or(room.seq);
        if at < room.base.seq {
            return Ok(Past::Trimmed {
                oldest: room.base.seq,
            });
        }
        if at > room.seq {
            return Ok(Past::Ahead { seq: room.seq });
        }
        room.board_at(at)
            .map(Past::Found)
            .map_err(|e| EngineError::Internal(e.to_string()))
    }

    async fn add_version(
        &self,
        room_id: &RoomId,
        version: Version,
    ) -> EngineResult<Option<Version>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(None);
        };
        let version = Version {
            seq: room.seq,
            ..version
        };
        room.versions.push(version.clone());
        Ok(Some(version))
    }

    async fn versions(&self, room_id: &RoomId) -> EngineResult<Option<Vec<Version>>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(None);
        };
        let mut list = room.versions.clone();
        history::newest_first(&mut list);
        Ok(Some(list))
    }

    async fn compact_idle(&self, older_than: Duration) -> EngineResult<usize> {
        let now = Instant::now();
        let mut compacted = 0;
        for room in self.state.lock().rooms.values_mut() {
            if room
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= older_than)
            {
                // In memory the board is its own snapshot; the live keys are these.
                room.ops.clear();
                room.ops_prev.clear();
                room.users.clear();
                room.idle_since = None;
                compacted += 1;
            }
        }
        Ok(compacted)
    }

    async fn room_ids(&self) -> EngineResult<Vec<RoomId>> {
        let now = Instant::now();
        let state = self.state.lock();
        Ok(state
            .rooms
            .iter()
            .filter(|(_, r)| r.expires.is_none_or(|at| at > now))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn dump(&self, room_id: &RoomId) -> EngineResult<Option<RoomDump>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(None);
        };
        let mut versions = room.versions.clone();
        history::newest_first(&mut versions);
        Ok(Some(RoomDump {
            room_id: room_id.clone(),
            created_at: room.created_at,
            creator: room.settings.owner.clone(),
            board: room.board(),
            versions,
        }))
    }

    async fn load(&self, dump: &RoomDump) -> EngineResult<()> {
        let mut room = Room::new(dump.creator.clone(), self.expiry());
        room.created_at = dump.created_at;
        room.seq = dump.board.seq;
        for element in dump.board.elements() {
            room.put(element, element.v, element.z);
        }
        room.base = dump.board.clone();
        room.versions = dump.versions.clone();
        let all = Effect::Add(dump.board.elements().into_iter().cloned().collect());
        let usage = Usage::of(&all, |_| None);
        room.bytes = usage.bytes.max(0) as u64;
        room.user_bytes = usage
            .users
            .into_iter()
            .map(|(u, b)| (u, b.max(0) as u64))
            .collect();
        self.state.lock().rooms.insert(dump.room_id.clone(), room);
        Ok(())
    }
}
