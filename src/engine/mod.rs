//! All shared state lives behind [`Engine`]: rooms, strokes, the op log, presence, rate-limit
//! counters, accounts, one-time codes and refresh tokens. [`memory::MemoryEngine`] serves a
//! single instance with no Redis; [`redis::RedisEngine`] lets any number of instances share one
//! Redis. Both deliver room events to the local
//! [`Hub`](crate::hub::Hub) and pass the same test suite (`tests/engine_suite.rs`).

pub mod access;
pub mod activity;
pub mod memory;
pub mod redis;

pub use access::Access;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use bytes::Bytes;

use crate::domain::accounts::Account;
use crate::domain::board::{Intent, Refusal};
use crate::domain::history::{Board, RoomDump, Version};
use crate::domain::quota::Quota;
use crate::domain::record::EventFrames;
use crate::domain::{ConnKey, Identity, RoomId, StrokeId, UserId};
use crate::hub::Delivery;

#[derive(Debug, Error)]
pub enum EngineError {
    /// Shared state is out of reach: nothing was applied; the client may retry.
    #[error("shared state is unreachable: {0}")]
    Unavailable(String),
    /// A bug or corrupted state: logged with details, reported to clients without them.
    #[error("engine failure: {0}")]
    Internal(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Settings every engine shares, taken from the configuration.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Identifies this instance in presence entries and its liveness key.
    pub instance_id: String,
    /// Idle lifetime of a room; `None` keeps rooms forever.
    pub room_ttl: Option<Duration>,
    /// How many sequenced ops each room's log keeps for `REPLAY`.
    pub log_max: usize,
    /// Most events one `REPLAY` carries (at most `log_max`): a client further behind gets the
    /// board instead, decided where the log is read.
    pub replay_max: usize,
    /// How many undone ops a user can redo, per room.
    pub redo_max: usize,
    /// How many of their ops a user can undo, per room.
    pub undo_max: usize,
    /// Most points of a stroke, line or arrow (element patches are checked against it).
    pub max_points: usize,
    /// How many ops of history each room keeps at least (§5); older ones fold into its base.
    pub history_max: usize,
    /// Snapshots of the board are at least this many ops apart, and at least as many as the
    /// last one holds elements (`history::snapshot_due`): a past board costs one snapshot plus
    /// fewer ops than the larger of the two.
    pub snapshot_every: u64,
    /// What one room, and one user's elements in it, may hold.
    pub quota: Quota,
}

impl EngineSettings {
    pub fn from_config(config: &crate::config::Config, instance_id: String) -> Self {
        Self {
            instance_id,
            room_ttl: config.room_ttl(),
            log_max: config.log_max_ops,
            replay_max: config.replay_max_events.min(config.log_max_ops),
            redo_max: config.redo_max,
            undo_max: config.undo_max,
            max_points: config.max_points,
            history_max: config.history_max_ops,
            snapshot_every: config.snapshot_every_ops,
            quota: Quota {
                room_elements: config.max_room_elements,
                room_bytes: config.max_room_bytes,
                user_bytes: config.max_user_bytes,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    pub room_id: RoomId,
    /// Unix milliseconds; `None` when rooms never expire.
    pub expires_at: Option<u64>,
}

pub struct JoinRequest<'a> {
    pub room: &'a RoomId,
    pub conn: &'a ConnKey,
    pub who: &'a Identity,
    /// `(last seq seen, epoch)` from a reconnecting client.
    pub since: Option<(u64, &'a str)>,
}

#[derive(Debug)]
pub enum JoinOutcome {
    /// The room does not exist or has expired.
    Missing,
    Joined(RoomView),
}

/// The room as the joiner gets it: stored JSON texts, spliced into the reply unparsed.
#[derive(Debug)]
pub struct RoomView {
    pub seq: u64,
    pub epoch: String,
    /// One entry per distinct user present.
    pub users: Vec<String>,
    pub body: ViewBody,
    /// Whether the room was told (its count, and the user if new). Not when the socket was
    /// already present as it is (a re-join to catch up): the joiner then gets its count from
    /// its session, and the room hears nothing.
    pub announced: bool,
}

#[derive(Debug)]
pub enum ViewBody {
    /// Every element as stored, in paint order (strokes among them).
    Snapshot(Vec<String>),
    /// The log records of the events after the client's `since`, in order.
    Replay { from_seq: u64, records: Vec<String> },
}

/// A sequenced op.
pub struct Op<'a> {
    pub who: &'a Identity,
    pub conn: &'a ConnKey,
    /// Makes the op idempotent for this user; `None` applies it unconditionally.
    pub op_id: Option<&'a str>,
    pub intent: Intent,
}

#[derive(Debug, PartialEq)]
pub enum OpOutcome {
    /// `ack_id` is the stroke the `ACK` names, when the op was about one.
    Applied {
        seq: u64,
        ack_id: Option<StrokeId>,
    },
    /// The user sent this op id before: the original result, nothing changed.
    Duplicate {
        seq: u64,
        ack_id: Option<StrokeId>,
    },
    RoomMissing,
    /// The board's rules said no; nothing changed and no seq was used.
    Refused(Refusal),
}

/// How an op's idempotency record is keyed: per user, so two users' op ids never collide.
pub fn op_field(user: &UserId, op_id: &str) -> String {
    format!("{user}|{op_id}")
}

/// The `seq|ackId` an idempotency record holds, read back.
pub fn parse_op_record(text: &str) -> Option<(u64, Option<StrokeId>)> {
    let (seq, ack) = text.split_once('|')?;
    let ack = (!ack.is_empty()).then(|| StrokeId::new(ack));
    Some((seq.parse().ok()?, ack))
}

/// A log record as the hub delivers it: the frames built once, shared by every local member.
pub fn delivery(room: &RoomId, record: &str) -> Option<Delivery> {
    let frames = EventFrames::build(room, record)?;
    Some(Delivery {
        seq: Some(frames.seq),
        origin: Some(frames.origin),
        lossy: false,
        frame: Bytes::from(frames.frame),
        legacy: frames
            .legacy
            .map(|l| l.into_iter().map(Bytes::from).collect::<Vec<_>>().into()),
    })
}

/// Attempts at an op whose elements keep changing under it before it gives up as unavailable.
pub const MAX_ATTEMPTS: usize = 16;

/// The ACK id stored with an idempotency record.
pub(crate) fn ack_text(ack: Option<&StrokeId>) -> &str {
    ack.map_or("", StrokeId::as_str)
}

/// The log after some seq, for filling a hole in local delivery.
#[derive(Debug)]
pub struct LogSlice {
    pub epoch: String,
    pub events: Vec<crate::hub::Delivery>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32, reset: Duration },
    Limited { retry_after: Duration },
}

impl RateDecision {
    /// The decision for the `hits`-th hit of a window with `left` to run.
    pub fn from_hits(hits: u64, limit: u32, left: Duration) -> Self {
        match u32::try_from(hits) {
            Ok(hits) if hits <= limit => Self::Allowed {
                remaining: limit - hits,
                reset: left,
            },
            _ => Self::Limited { retry_after: left },
        }
    }
}

/// What checking an e-mailed code did.
#[derive(Debug, PartialEq, Eq)]
pub enum OtpOutcome {
    /// The code was right: it is consumed and the account is now verified.
    Verified,
    /// Wrong code; this many more tries are allowed.
    Wrong { tries_left: u32 },
    /// Too many wrong tries: this code is dead even if right; a new one must be sent.
    Locked,
    /// No live code for this address (expired, used, or never sent), or no such account.
    Missing,
}

/// A password reset by e-mailed code.
#[derive(Clone, Copy, Debug)]
pub struct PasswordReset<'a> {
    pub email: &'a str,
    pub code_hash: &'a str,
    pub max_tries: u32,
    pub password_hash: &'a str,
    /// Now, in Unix seconds: recorded as the revocation time of the user's sessions.
    pub now: u64,
    /// How long that revocation time is kept (as long as any refresh token could live).
    pub keep: Duration,
}

/// One refresh: the presented token's hash and its successor's.
#[derive(Clone, Copy, Debug)]
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    /// The successor token sealed with the presented one
    /// ([`seal_successor`](crate::domain::accounts::seal_successor)): kept for `grace`, so a
    /// retry of the same refresh gets the same successor, and useless to anyone without the
    /// presented token.
    pub sealed_next: &'a str,
    /// Lifetime of the new token (and of the memory of the old one, for reuse detection).
    pub ttl: Duration,
    /// How long after this rotation presenting the old token again is a retry, not theft.
    pub grace: Duration,
    /// Now, in Unix seconds: recorded as the revocation time if the family is revoked.
    pub now: u64,
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was live: it is dead now and the new one is stored in its place.
    Rotated(UserId),
    /// The token was rotated less than the grace window ago (two tabs, a retried request): the
    /// successor it was rotated into, still sealed with the presented token.
    Repeated { user: UserId, sealed_next: String },
    /// The token had already been rotated: presumed stolen, so every refresh token of the user
    /// has been revoked.
    Reused(UserId),
    /// Never issued, expired, logged out, or revoked.
    Unknown,
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    async fn create_room(&self, creator: &UserId) -> EngineResult<RoomInfo>;

    async fn room_exists(&self, room: &RoomId) -> EngineResult<bool>;

    /// Whether the room still holds `user`'s op `op_id` (its idempotency record): after Redis
    /// lost confirmed writes, what an ACK still owed may be sent for.
    async fn op_recorded(&self, room: &RoomId, user: &UserId, op_id: &str) -> EngineResult<bool>;

    /// Adds the connection to the room's presence (telling the room) and returns the state to
    /// send it: a replay when `since` allows, a snapshot otherwise.
    async fn join(&self, req: JoinRequest<'_>) -> EngineResult<JoinOutcome>;

    /// Removes the connection's presence and tells the room. Leaving twice is harmless.
    async fn leave(&self, room: &RoomId, conn: &ConnKey) -> EngineResult<()>;

    /// Applies a sequenced op atomically: next seq, log, visible strokes, publication.
    async fn apply(&self, room: &RoomId, op: Op<'_>) -> EngineResult<OpOutcome>;

    /// Relays an unsequenced frame (cursor moves) to the room, except `except`.
    async fn publish_transient(
        &self,
        room: &RoomId,
        except: &ConnKey,
        frame: String,
    ) -> EngineResult<()>;

    /// The logged events after `after`, or `None` when the log no longer reaches back that far.
    async fn events_after(&self, room: &RoomId, after: u64) -> EngineResult<Option<LogSlice>>;

    /// Removes presence entries of instances that are no longer alive, telling the room.
    async fn sweep_presence(&self, room: &RoomId) -> EngineResult<usize>;

    /// Counts one hit of `kind` by `subject` (an IP) against `limit` per `window`, shared by
    /// every instance.
    async fn rate_limit(
        &self,
        kind: &str,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> EngineResult<RateDecision>;

    /// Stores a new account unless a verified account has its e-mail; `false` then. An
    /// unverified account under the address is replaced, with its pending code (an address
    /// is held only by whoever proves it is theirs).
    async fn create_account(&self, account: &Account) -> EngineResult<bool>;

    /// The account registered under a (normalised) e-mail address.
    async fn account(&self, email: &str) -> EngineResult<Option<Account>>;

    /// The account with this id.
    async fn account_by_id(&self, user: &UserId) -> EngineResult<Option<Account>>;

    /// Stores the hash of a new code for `email`, replacing any previous one and its tries.
    async fn store_otp(&self, email: &str, code_hash: &str, ttl: Duration) -> EngineResult<()>;

    /// Checks a code's hash and, atomically with a match, consumes it and marks the account
    /// verified. Every wrong try counts, even concurrent ones.
    /// With `account`, the code verifies only that account: one that replaced it under the
    /// same address finds the code [`OtpOutcome::Missing`].
    async fn confirm_otp(
        &self,
        email: &str,
        code_hash: &str,
        max_tries: u32,
        account: Option<&UserId>,
    ) -> EngineResult<OtpOutcome>;

    /// Checks a password-reset code (stored with [`store_otp`](Engine::store_otp)) of a
    /// verified account, with the same tries and lockout as a verification code; on a match,
    /// atomically: the code is consumed, the password hash replaced, every refresh token of
    /// the user revoked and the time recorded (see [`revoked_at`](Engine::revoked_at)).
    /// [`OtpOutcome::Verified`] means done.
    async fn reset_password(&self, reset: PasswordReset<'_>) -> EngineResult<OtpOutcome>;

    /// Stores a new refresh token (by hash) for `user`, in that user's family.
    async fn store_refresh(
        &self,
        user: &UserId,
        token_hash: &str,
        ttl: Duration,
    ) -> EngineResult<()>;

    /// Atomically kills the presented token and stores its successor; or, for a token rotated
    /// within the grace window, returns that rotation's sealed successor; or detects reuse of
    /// an older rotated token and then revokes the user's whole family, recording when (see
    /// [`revoked_at`](Engine::revoked_at)).
    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> EngineResult<RefreshOutcome>;

    /// When the user's refresh-token family was last revoked (Unix seconds): access tokens
    /// issued up to then are no longer honoured on open sockets.
    async fn revoked_at(&self, user: &UserId) -> EngineResult<Option<u64>>;

    /// Kills one refresh token (logout). Unknown tokens are ignored.
    async fn revoke_refresh(&self, token_hash: &str) -> EngineResult<()>;

    /// Whether shared state is reachable and room events are flowing.
    fn is_ready(&self) -> bool;
}

/// What a question about a room's past found.
#[derive(Debug, PartialEq)]
pub enum Past<T> {
    /// No such room.
    Missing,
    /// Asked about a seq older than the history kept: `oldest` is the earliest answerable.
    Trimmed {
        oldest: u64,
    },
    /// Asked about a seq the room has not reached: `seq` is its latest.
    Ahead {
        seq: u64,
    },
    Found(T),
}

impl<T> Past<T> {
    /// The same answer, with what was found turned into something else.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Past<U>, E> {
        Ok(match self {
            Past::Found(t) => Past::Found(f(t)?),
            Past::Missing => Past::Missing,
            Past::Trimmed { oldest } => Past::Trimmed { oldest },
            Past::Ahead { seq } => Past::Ahead { seq },
        })
    }
}

/// A page of the op log.
#[derive(Debug, PartialEq)]
pub struct OpsPage {
    pub epoch: String,
    /// Log records, in order.
    pub records: Vec<String>,
    /// The `since` that continues after this page.
    pub next_since: u64,
}

/// A room's past (§5): the op log as the source of truth, snapshots as derived data, named
/// versions. Restores are ops ([`Intent::Restore`] through [`Engine::apply`]).
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// At most `limit` log records after `since`.
    async fn ops(&self, room: &RoomId, since: u64, limit: usize) -> EngineResult<Past<OpsPage>>;

    /// The board right after `at` (`None`: now): one snapshot and the ops after it.
    async fn board_at(&self, room: &RoomId, at: Option<u64>) -> EngineResult<Past<Board>>;

    /// Names the room's seq at this moment: stores `version` with its `seq` set to it, in the
    /// same step that reads it. `None` when the room does not exist.
    async fn add_version(&self, room: &RoomId, version: Version) -> EngineResult<Option<Version>>;

    /// The room's versions, newest first; `None` when the room does not exist.
    async fn versions(&self, room: &RoomId) -> EngineResult<Option<Vec<Version>>>;

    /// Compacts the rooms nobody has been in for `older_than` (§6): each keeps its board, its
    /// history and versions, and drops its live keys (presence, idempotency records); joining
    /// it again works as before. Returns how many were compacted.
    async fn compact_idle(&self, older_than: Duration) -> EngineResult<usize>;

    /// Every room's id, for backups.
    async fn room_ids(&self) -> EngineResult<Vec<RoomId>>;

    /// The room as a backup keeps it, read at one moment; `None` when it does not exist.
    async fn dump(&self, room: &RoomId) -> EngineResult<Option<RoomDump>>;

    /// Writes a room from a backup, replacing any room of that id. Its history starts at the
    /// dump's seq, under a new epoch (a client that saw later seqs gets the board, not a replay).
    async fn load(&self, dump: &RoomDump) -> EngineResult<()>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
