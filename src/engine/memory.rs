//! The embedded engine: all shared state in this process, for a single instance with no Redis
//! (development, demos, tests). Same semantics as the Redis engine, checked by the same suite.

mod accounts;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::value::RawValue;

use super::{
    Engine, EngineError, EngineResult, EngineSettings, JoinOutcome, JoinRequest, LogSlice, Op,
    OpKind, OpOutcome, OtpOutcome, RateDecision, RefreshOutcome, RoomInfo, RoomView, ViewBody,
    now_ms,
};
use crate::domain::accounts::Account;
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
}

#[derive(Clone)]
struct StoredStroke {
    user_id: UserId,
    stroke_id: StrokeId,
    json: String,
}

struct LogEntry {
    seq: u64,
    origin: ConnKey,
    frame: Bytes,
}

struct Room {
    epoch: String,
    seq: u64,
    expires: Option<Instant>,
    strokes: Vec<StoredStroke>,
    log: VecDeque<LogEntry>,
    ops: HashMap<String, (u64, StrokeId)>,
    undone: HashMap<UserId, Vec<StoredStroke>>,
    /// Connection → (user, member JSON).
    users: HashMap<ConnKey, (UserId, String)>,
}

impl Room {
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
            },
        );
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

fn raw(json: &str) -> EngineResult<&RawValue> {
    serde_json::from_str(json).map_err(|e| EngineError::Internal(format!("stored json: {e}")))
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn create_room(&self, _creator: &UserId) -> EngineResult<RoomInfo> {
        let room_id = RoomId::random();
        let room = Room {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            seq: 0,
            expires: self.expiry(),
            strokes: Vec::new(),
            log: VecDeque::new(),
            ops: HashMap::new(),
            undone: HashMap::new(),
            users: HashMap::new(),
        };
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
        room.users
            .insert(req.conn.clone(), (user.clone(), frames::member(req.who)));
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
                        .map_or(since == room.seq, |e| e.seq <= since + 1) =>
            {
                ViewBody::Replay {
                    from_seq: since + 1,
                    events: room
                        .log
                        .iter()
                        .filter(|e| e.seq > since)
                        .map(|e| String::from_utf8_lossy(&e.frame).into_owned())
                        .collect(),
                }
            }
            _ => ViewBody::Snapshot(room.strokes.iter().map(|s| s.json.clone()).collect()),
        };
        let view = RoomView {
            seq: room.seq,
            epoch: room.epoch.clone(),
            users,
            body,
        };
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
        Ok(())
    }

    async fn apply(&self, room_id: &RoomId, op: Op<'_>) -> EngineResult<OpOutcome> {
        let expires = self.expiry();
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(OpOutcome::RoomMissing);
        };
        if let Some((seq, stroke_id)) = op.op_id.and_then(|id| room.ops.get(id)) {
            return Ok(OpOutcome::Duplicate {
                seq: *seq,
                stroke_id: stroke_id.clone(),
            });
        }
        let user = &op.who.user_id;
        let seq = room.seq + 1;
        let (stroke_id, frame) = match op.kind {
            OpKind::Stroke(stroke) => {
                let json = serde_json::to_string(&stroke)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                let frame = frames::canvas_update(room_id, raw(&json)?, user, seq);
                room.undone.remove(user);
                room.strokes.push(StoredStroke {
                    user_id: user.clone(),
                    stroke_id: stroke.stroke_id.clone(),
                    json,
                });
                (stroke.stroke_id, frame)
            }
            OpKind::Undo(target) => {
                let found = room.strokes.iter().rposition(|s| match &target {
                    Some(id) => &s.stroke_id == id,
                    None => &s.user_id == user,
                });
                let Some(index) = found else {
                    return Ok(OpOutcome::NothingToUndo);
                };
                if &room.strokes[index].user_id != user {
                    return Ok(OpOutcome::Forbidden);
                }
                let stroke = room.strokes.remove(index);
                let frame = frames::undo(room_id, user, &stroke.stroke_id, seq);
                let id = stroke.stroke_id.clone();
                let stack = room.undone.entry(user.clone()).or_default();
                stack.push(stroke);
                if stack.len() > self.settings.redo_max {
                    stack.remove(0);
                }
                (id, frame)
            }
            OpKind::Redo(target) => {
                let stack = room.undone.entry(user.clone()).or_default();
                let found = match &target {
                    Some(id) => stack.iter().rposition(|s| &s.stroke_id == id),
                    None => stack.len().checked_sub(1),
                };
                let Some(index) = found else {
                    return Ok(OpOutcome::NothingToRedo);
                };
                let stroke = stack.remove(index);
                if stack.is_empty() {
                    room.undone.remove(user);
                }
                let frame = frames::redo(room_id, user, raw(&stroke.json)?, seq);
                let id = stroke.stroke_id.clone();
                room.strokes.push(stroke);
                (id, frame)
            }
        };
        room.seq = seq;
        room.expires = expires;
        let frame = Bytes::from(frame);
        room.log.push_back(LogEntry {
            seq,
            origin: op.conn.clone(),
            frame: frame.clone(),
        });
        while room.log.len() > self.settings.log_max {
            room.log.pop_front();
        }
        if let Some(id) = op.op_id {
            room.ops.insert(id.to_owned(), (seq, stroke_id.clone()));
        }
        self.hub.deliver(
            room_id,
            &Delivery {
                seq: Some(seq),
                origin: Some(op.conn.clone()),
                lossy: false,
                frame,
            },
        );
        Ok(OpOutcome::Applied { seq, stroke_id })
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
        if after > room.seq || room.log.front().is_some_and(|e| e.seq > after + 1) {
            return Ok(None);
        }
        Ok(Some(LogSlice {
            epoch: room.epoch.clone(),
            events: room
                .log
                .iter()
                .filter(|e| e.seq > after)
                .map(|e| Delivery {
                    seq: Some(e.seq),
                    origin: Some(e.origin.clone()),
                    lossy: false,
                    frame: e.frame.clone(),
                })
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
    ) -> EngineResult<OtpOutcome> {
        Ok(self.accounts.confirm_otp(email, code_hash, max_tries))
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

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        ttl: Duration,
    ) -> EngineResult<RefreshOutcome> {
        Ok(self.accounts.rotate_refresh(old_hash, new_hash, ttl))
    }

    async fn revoke_refresh(&self, token_hash: &str) -> EngineResult<()> {
        self.accounts.revoke_refresh(token_hash);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}
