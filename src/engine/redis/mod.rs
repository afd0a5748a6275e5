//! The Redis engine: every piece of shared state in Redis, so any instance can serve any client.
//!
//! Each sequenced op is decided in Rust from what it touches ([`board`]: `lua/read.lua` when it
//! needs a read) and committed by one generic Lua script (`lua/apply.lua`) that checks versions,
//! assigns the room's next seq, writes the elements, appends the log record and publishes it,
//! atomically. Each instance
//! subscribes to room events as `pubsub_mode` says ([`pubsub`]: one `PSUBSCRIBE room:*`, or
//! one channel per room it has sockets in) and hands every event to its hub; a heartbeat
//! ([`liveness`]) keeps `instance:<id>` alive so other instances can sweep presence of dead ones.

mod access;
mod accounts;
mod board;
mod conn;
mod history;
mod keys;
mod liveness;
mod pubsub;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Pool, Runtime};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands, IntoConnectionInfo, Script, SetExpiry, SetOptions, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use keys::Keys;

use super::{
    Engine, EngineError, EngineResult, EngineSettings, JoinOutcome, JoinRequest, LogSlice, Op,
    OpOutcome, OtpOutcome, PasswordReset, RateDecision, RefreshOutcome, RoomInfo, RoomView,
    Rotation, ViewBody, now_ms,
};
use crate::config::{PubsubMode, RedisMode};
use crate::domain::accounts::Account;
use crate::domain::element::paint_order;
use crate::domain::ids::instance_of;
use crate::domain::{ConnKey, Identity, RoomId, UserId, frames};
use crate::hub::{Delivery, Hub, ScriptLabel};

/// How long one Redis round trip may take before the op is reported `UNAVAILABLE`.
const OP_TIMEOUT: Duration = Duration::from_secs(3);

macro_rules! room_script {
    ($name:literal) => {
        RoomScript {
            name: $name,
            script: Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $name, ".lua"))
            )),
        }
    };
}

/// A room script with its name, which its timings are reported under.
struct RoomScript {
    name: &'static str,
    script: Script,
}

impl std::ops::Deref for RoomScript {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.script
    }
}

struct Scripts {
    join: RoomScript,
    leave: RoomScript,
    announce: RoomScript,
    read: RoomScript,
    apply: RoomScript,
    migrate: RoomScript,
    events_after: RoomScript,
    rebase: RoomScript,
    past: RoomScript,
    versions: RoomScript,
    dump: RoomScript,
    load: RoomScript,
    freeze: RoomScript,
    thaw: RoomScript,
    rate: Script,
    account_create: Script,
    otp_confirm: Script,
    refresh_store: Script,
    refresh_rotate: Script,
    refresh_revoke: Script,
    refresh_revoke_all: Script,
    password_reset: Script,
}

impl Scripts {
    fn all(&self) -> [&Script; 22] {
        [
            &self.join.script,
            &self.leave.script,
            &self.announce.script,
            &self.read.script,
            &self.apply.script,
            &self.migrate.script,
            &self.events_after.script,
            &self.rebase.script,
            &self.past.script,
            &self.versions.script,
            &self.dump.script,
            &self.load.script,
            &self.freeze.script,
            &self.thaw.script,
            &self.rate,
            &self.account_create,
            &self.otp_confirm,
            &self.refresh_store,
            &self.refresh_rotate,
            &self.refresh_revoke,
            &self.refresh_revoke_all,
            &self.password_reset,
        ]
    }

    fn new() -> Self {
        Self {
            join: room_script!("join"),
            leave: room_script!("leave"),
            announce: room_script!("announce"),
            read: room_script!("read"),
            apply: room_script!("apply"),
            migrate: room_script!("migrate"),
            events_after: room_script!("events_after"),
            rebase: room_script!("rebase"),
            past: room_script!("past"),
            versions: room_script!("versions"),
            dump: room_script!("dump"),
            load: room_script!("load"),
            freeze: room_script!("freeze"),
            thaw: room_script!("thaw"),
            rate: Script::new(include_str!("lua/rate.lua")),
            account_create: Script::new(include_str!("lua/account_create.lua")),
            otp_confirm: Script::new(include_str!("lua/otp_confirm.lua")),
            refresh_store: Script::new(include_str!("lua/refresh_store.lua")),
            refresh_rotate: Script::new(include_str!("lua/refresh_rotate.lua")),
            refresh_revoke: Script::new(include_str!("lua/refresh_revoke.lua")),
            refresh_revoke_all: Script::new(include_str!("lua/refresh_revoke_all.lua")),
            password_reset: Script::new(include_str!("lua/password_reset.lua")),
        }
    }
}

/// Connection settings for [`RedisEngine::start`].
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    /// One Redis or a Cluster (`url` then names any node of it).
    pub mode: RedisMode,
    /// Prepended to every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    pub pool_size: usize,
    /// How often this instance renews its liveness key; after [`liveness::MISSED_BEATS`]
    /// missed renewals it counts as dead and others may sweep its presence.
    pub heartbeat: Duration,
    /// How room events reach instances (`docs/REDIS.md`, "Channels").
    pub pubsub_mode: PubsubMode,
    /// See [`crate::config::Config::pubsub_linger_ms`].
    pub pubsub_linger: Duration,
    /// A PEM file of CA certificates for a `rediss://` URL; empty trusts the system's roots.
    pub tls_ca: String,
    /// See [`crate::config::Config::redis_wait_replicas`].
    pub wait_replicas: u32,
    /// See [`crate::config::Config::redis_wait_ms`].
    pub wait_timeout: Duration,
}

pub struct RedisEngine {
    inner: Arc<Inner>,
}

/// What the log holds after a delivered position, as the feed's repair reads it.
enum LogRead {
    /// The events after it, the epoch in force, and the event the log holds *at* the position
    /// (`None` when the log no longer holds it), to compare with the one delivered there.
    Events {
        epoch: String,
        events: Vec<Delivery>,
        at: Option<Delivery>,
    },
    /// The room's seq is below the position: Redis lost writes it had confirmed.
    Behind { epoch: String },
    /// Gone, or the log no longer reaches back (or too far to be worth replaying).
    Unavailable,
}

struct Inner {
    /// Where every command goes: one Redis, or the master owning the key's slot.
    store: conn::Store,
    /// For the feed's connection, which the store cannot provide: RESP3, whose push messages
    /// let one connection hold subscriptions and still answer commands (`SSUBSCRIBE` included).
    pubsub_client: pubsub::FeedClient,
    /// What the feed is subscribed to; joins go through it (`pubsub::ensure`).
    feed: pubsub::Feed,
    keys: Keys,
    settings: EngineSettings,
    /// See [`RedisSettings::heartbeat`].
    heartbeat_every: Duration,
    /// Replicas an op's commit must reach before it is acknowledged, and for how long to wait.
    wait_replicas: u32,
    wait_timeout: Duration,
    hub: Arc<Hub>,
    scripts: Scripts,
    /// The pub/sub connection is subscribed and relaying.
    pubsub_up: AtomicBool,
    /// The last heartbeat reached Redis.
    redis_up: AtomicBool,
}

impl RedisEngine {
    /// Connects lazily: an instance whose Redis is down still starts, reports not-ready, and
    /// keeps retrying in the background.
    pub async fn start(
        redis: &RedisSettings,
        settings: EngineSettings,
        hub: Arc<Hub>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> EngineResult<Self> {
        if redis.heartbeat.is_zero() {
            return Err(EngineError::Internal(
                "the heartbeat must be positive".into(),
            ));
        }
        // Every connection is latency-bound request/response traffic: no Nagle.
        let info = redis
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| EngineError::Internal(format!("bad redis url: {e}")))?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let bad_url = |e: redis::RedisError| EngineError::Internal(format!("bad redis url: {e}"));
        let certs = if redis.tls_ca.is_empty() {
            None
        } else {
            let pem = tokio::fs::read(&redis.tls_ca).await.map_err(|e| {
                EngineError::Internal(format!("redis_tls_ca {}: {e}", redis.tls_ca))
            })?;
            Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            })
        };
        let cluster_seed = info.clone();
        let client = match &certs {
            None => redis::Client::open(info).map_err(bad_url)?,
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()).map_err(bad_url)?,
        };
        // The client's info carries the TLS roots, so the pool and the feed trust the same.
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let (store, pubsub_client) = match redis.mode {
            RedisMode::Standalone => {
                let pubsub_client =
                    redis::Client::open(info.clone().set_redis_settings(resp3)).map_err(bad_url)?;
                let pool = Pool::builder(deadpool_redis::Manager::new(info).map_err(unavailable)?)
                    .max_size(redis.pool_size)
                    .wait_timeout(Some(OP_TIMEOUT))
                    .create_timeout(Some(OP_TIMEOUT))
                    .recycle_timeout(Some(OP_TIMEOUT))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|e| EngineError::Internal(format!("redis pool: {e}")))?;
                let hot = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(OP_TIMEOUT))
                        .set_response_timeout(Some(OP_TIMEOUT))
                        .set_number_of_retries(1),
                )
                .map_err(|e| EngineError::Internal(format!("redis connection: {e}")))?;
                (
                    conn::Store::Single { pool, hot },
                    pubsub::FeedClient::Single(pubsub_client),
                )
            }
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new([cluster_seed.clone()])
                    .tcp_settings(TcpSettings::default().set_nodelay(true));
                if let Some(certs) = &certs {
                    builder = builder.certs(certs.clone());
                }
                let cluster = builder.build().map_err(bad_url)?;
                // Pending: connected in the background and on every command until it works,
                // so an instance whose cluster is down still starts (and reports not-ready).
                let conn = cluster.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(OP_TIMEOUT)
                        .set_response_timeout(OP_TIMEOUT),
                );
                (
                    conn::Store::Cluster(conn),
                    pubsub::FeedClient::Cluster {
                        seed: cluster_seed.clone(),
                        certs: certs.clone(),
                    },
                )
            }
        };
        let inner = Arc::new(Inner {
            feed: pubsub::Feed::new(redis.pubsub_mode, redis.pubsub_linger, store.is_cluster()),
            keys: Keys::new(&redis.key_prefix, redis.mode),
            store,
            pubsub_client,
            settings,
            heartbeat_every: redis.heartbeat,
            wait_replicas: redis.wait_replicas,
            wait_timeout: redis.wait_timeout,
            hub,
            scripts: Scripts::new(),
            pubsub_up: AtomicBool::new(false),
            redis_up: AtomicBool::new(false),
        });
        // Announce this instance before it serves anyone, so no other instance sweeps the
        // presence of its first clients. Unreachable Redis is retried by the liveness task.
        if let Err(e) = inner.heartbeat().await {
            tracing::debug!(error = %e, "first heartbeat did not reach redis");
        }
        inner.load_scripts().await;
        match inner.migrate_v1_rooms().await {
            Ok(0) => {}
            Ok(rooms) => tracing::info!(rooms, "v1 rooms moved to the board layout"),
            Err(e) => tracing::warn!(error = %e, "could not look for v1 rooms to move"),
        }
        tasks.spawn(pubsub::run(inner.clone(), shutdown.clone()));
        tasks.spawn(liveness::run(inner.clone(), shutdown));
        Ok(Self { inner })
    }
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

fn bad_reply(what: &str) -> EngineError {
    EngineError::Internal(format!("unexpected reply from redis: {what}"))
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn text(value: Value) -> EngineResult<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| bad_reply("non-utf8")),
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(bad_reply(&format!("{other:?}"))),
    }
}

fn number(value: Value) -> EngineResult<u64> {
    match value {
        Value::Int(n) => u64::try_from(n).map_err(|_| bad_reply("negative")),
        other => text(other)?.parse().map_err(|_| bad_reply("not a number")),
    }
}

fn texts(value: Value) -> EngineResult<Vec<String>> {
    match value {
        Value::Array(items) => items.into_iter().map(text).collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(bad_reply(&format!("{other:?}"))),
    }
}

/// A script reply `{tag, ...}` split into its tag and the rest.
fn tagged(value: Value) -> EngineResult<(String, std::vec::IntoIter<Value>)> {
    let Value::Array(items) = value else {
        return Err(bad_reply("not an array"));
    };
    let mut items = items.into_iter();
    let tag = text(items.next().ok_or_else(|| bad_reply("empty"))?)?;
    Ok((tag, items))
}

fn next(items: &mut std::vec::IntoIter<Value>) -> EngineResult<Value> {
    items.next().ok_or_else(|| bad_reply("too short"))
}

impl Inner {
    async fn conn(&self) -> EngineResult<conn::Conn> {
        self.store.conn().await.map_err(unavailable)
    }

    /// The room hot path's connection.
    fn hot(&self) -> conn::Conn {
        self.store.hot()
    }

    /// Runs pipelines of one slot each (`conn::Store::grouped`).
    async fn grouped(&self, groups: &[redis::Pipeline]) -> EngineResult<Vec<Value>> {
        self.with_timeout(self.store.grouped(groups)).await
    }

    /// Every key matching `pattern` (`conn::Store::scan`).
    async fn scan(
        &self,
        pattern: &str,
        kind: Option<&str>,
        slot_of: Option<&str>,
    ) -> EngineResult<Vec<String>> {
        self.store
            .scan(pattern, kind, slot_of, OP_TIMEOUT)
            .await
            .map_err(unavailable)
    }

    async fn with_timeout<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> EngineResult<T> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable("redis did not answer in time")),
        }
    }

    /// Runs a script on a pooled connection (request-scoped work: accounts, rate limits).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> EngineResult<T> {
        let mut conn = self.conn().await?;
        self.with_timeout(invocation.invoke_async(&mut conn)).await
    }

    /// Runs a room script with the room keys and the four common arguments.
    async fn room_script(
        &self,
        script: &RoomScript,
        room: &RoomId,
        args: &[&str],
    ) -> EngineResult<Value> {
        self.invoke_room(script, room, None, args).await
    }

    /// Runs a room script that acts for `user`: their undo and redo lists follow the room keys.
    async fn user_script(
        &self,
        script: &RoomScript,
        room: &RoomId,
        user: &UserId,
        args: &[String],
    ) -> EngineResult<Value> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.invoke_room(script, room, Some(user), &args).await
    }

    /// Runs a room script; a compacted room (`{'frozen'}`) is thawed and the script run again.
    async fn invoke_room(
        &self,
        script: &RoomScript,
        room: &RoomId,
        user: Option<&UserId>,
        args: &[&str],
    ) -> EngineResult<Value> {
        let reply = self.invoke_room_once(script, room, user, args).await?;
        if !history::is_frozen(&reply) {
            return Ok(reply);
        }
        self.thaw(room).await?;
        self.invoke_room_once(script, room, user, args).await
    }

    async fn invoke_room_once(
        &self,
        script: &RoomScript,
        room: &RoomId,
        user: Option<&UserId>,
        args: &[&str],
    ) -> EngineResult<Value> {
        let ttl_ms = self.settings.room_ttl.map_or(0, |t| t.as_millis() as u64);
        let expires_at = if ttl_ms == 0 { 0 } else { now_ms() + ttl_ms };
        let mut keys: Vec<String> = self.keys.room_keys(room).into();
        if let Some(user) = user {
            keys.extend(self.keys.user_lists(room, user));
        }
        // Last, after the keys scripts name by position: only `touch()` (which walks every key)
        // uses it, so the members expire with the room however long activity keeps it alive.
        keys.push(self.keys.room_members(room));
        let common = [
            self.keys.channel(room),
            ttl_ms.to_string(),
            expires_at.to_string(),
            self.feed.publish_command().to_owned(),
        ];
        let mut conn = self.hot();
        let started = std::time::Instant::now();
        let reply = if self.wait_replicas > 0 && script.name == "apply" {
            self.commit_durably(script, &keys, &common, args, &mut conn)
                .await
        } else {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in common
                .iter()
                .map(String::as_str)
                .chain(args.iter().copied())
            {
                invocation.arg(arg);
            }
            self.with_timeout(invocation.invoke_async(&mut conn)).await
        };
        self.hub
            .stats
            .script_seconds
            .get_or_create(&ScriptLabel {
                script: script.name,
            })
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    /// Runs the commit script and `WAIT`s for `wait_replicas` replicas in one pipeline: on the
    /// same connection (WAIT counts that connection's writes) and, on a Cluster, the same node
    /// (the pipeline goes where the script's keys are). Fewer replicas in time: `Unavailable`,
    /// though the op is committed; its resend is answered from the op id once replicated.
    async fn commit_durably(
        &self,
        script: &RoomScript,
        keys: &[String],
        common: &[String],
        args: &[&str],
        conn: &mut conn::Conn,
    ) -> EngineResult<Value> {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(common)
            .arg(args);
        pipe.cmd("WAIT")
            .arg(self.wait_replicas)
            .arg(self.wait_timeout.as_millis() as u64);
        let within = OP_TIMEOUT + self.wait_timeout;
        let run = |conn: &mut conn::Conn| {
            let pipe = pipe.clone();
            let mut conn = match conn {
                conn::Conn::Cluster(c) => conn::Conn::Cluster(c.clone()),
                _ => self.hot(),
            };
            async move {
                tokio::time::timeout(within, pipe.query_async::<(Value, u32)>(&mut conn))
                    .await
                    .unwrap_or_else(|_| {
                        Err((redis::ErrorKind::Io, "redis did not answer in time").into())
                    })
            }
        };
        let (reply, replicas) = match run(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.with_timeout(script.load_async(conn)).await?;
                run(conn).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        if replicas < self.wait_replicas {
            return Err(unavailable(format!(
                "committed but on {replicas} of {} replicas in time",
                self.wait_replicas
            )));
        }
        Ok(reply)
    }

    async fn events_after(&self, room: &RoomId, after: u64) -> EngineResult<Option<LogSlice>> {
        Ok(match self.log_after(room, after).await? {
            LogRead::Events { epoch, events, .. } => Some(LogSlice { epoch, events }),
            LogRead::Behind { .. } | LogRead::Unavailable => None,
        })
    }

    /// The logged events after `after`, with what the feed needs to notice that the room went
    /// back in time (see [`LogRead`]).
    async fn log_after(&self, room: &RoomId, after: u64) -> EngineResult<LogRead> {
        let reply = self
            .room_script(
                &self.scripts.events_after,
                room,
                &[&after.to_string(), &self.settings.log_max.to_string()],
            )
            .await?;
        let (tag, mut items) = tagged(reply)?;
        let events = |value| -> EngineResult<Vec<Delivery>> {
            Ok(texts(value)?
                .iter()
                .filter_map(|record| super::delivery(room, record))
                .collect())
        };
        match tag.as_str() {
            "ok" => {
                let _seq = number(next(&mut items)?)?;
                let epoch = text(next(&mut items)?)?;
                let events = events(next(&mut items)?)?;
                let at = text(next(&mut items)?)?;
                Ok(LogRead::Events {
                    epoch,
                    events,
                    at: super::delivery(room, &at),
                })
            }
            "behind" => {
                let _seq = number(next(&mut items)?)?;
                let epoch = text(next(&mut items)?)?;
                Ok(LogRead::Behind { epoch })
            }
            _ => Ok(LogRead::Unavailable),
        }
    }

    /// Replaces the room's epoch if it is still `stale` (see `lua/rebase.lua`); the epoch in
    /// force afterwards, and whether this call set it.
    async fn rebase(&self, room: &RoomId, stale: &str) -> EngineResult<(String, bool)> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let reply = self
            .room_script(&self.scripts.rebase, room, &[stale, &fresh])
            .await?;
        let (tag, mut items) = tagged(reply)?;
        if tag != "ok" {
            return Ok((String::new(), false));
        }
        let epoch = text(next(&mut items)?)?;
        let ours = epoch == fresh;
        Ok((epoch, ours))
    }

    async fn leave(&self, room: &RoomId, field: &str) -> EngineResult<()> {
        let left = self
            .room_script(&self.scripts.leave, room, &[field])
            .await?;
        // The last one out: the room may be compacted once it stays empty (`history.rs`).
        if matches!(left, Value::Int(0)) {
            self.mark_idle(room).await?;
        }
        Ok(())
    }

    /// Moves rooms a v1 gateway wrote (strokes in a list) to the board layout, so an upgrade
    /// keeps every board. Each room moves atomically; a room already moved is left alone.
    async fn migrate_v1_rooms(&self) -> EngineResult<usize> {
        let found: Vec<RoomId> = self
            .scan(&self.keys.v1_strokes_pattern(), Some("list"), None)
            .await?
            .iter()
            .filter_map(|k| self.keys.room_of_strokes_key(k))
            .collect();
        let mut moved = 0;
        for room in &found {
            let mut invocation = self.scripts.migrate.prepare_invoke();
            for key in self.keys.room_keys(room) {
                invocation.key(key);
            }
            invocation.key(self.keys.v1_redo_stacks(room));
            invocation
                .arg(self.keys.channel(room))
                .arg(0)
                .arg(0)
                .arg(self.feed.publish_command());
            let strokes: u64 = self.invoke(&invocation).await?;
            tracing::info!(%room, strokes, "moved a v1 room to the board layout");
            moved += 1;
        }
        Ok(moved)
    }

    /// Loads every script into Redis's cache up front. Otherwise the first burst of joins
    /// after a start all miss it (NOSCRIPT) and each sends the script body again. Best
    /// effort: an invocation that misses the cache still loads the script itself.
    async fn load_scripts(&self) {
        let Ok(mut conn) = self.conn().await else {
            return;
        };
        // The access scripts too: room creation runs one of them.
        let access = [
            &*access::UPDATE_ROOM,
            &*access::ROOM_MEMBER,
            &*access::CLAIM_SLOT,
            &*access::RENAME_WORKSPACE,
        ];
        for script in self.scripts.all().into_iter().chain(access) {
            if let Err(e) = self.with_timeout(script.load_async(&mut conn)).await {
                tracing::debug!(error = %e, "could not preload a script");
                return;
            }
        }
    }

    /// Renews this instance's liveness key. `Ok(false)` when the key was gone (it expired
    /// while Redis was out of reach, or Redis lost it): other instances may have swept this
    /// instance's presence since.
    async fn heartbeat(&self) -> EngineResult<bool> {
        let key = self.keys.instance(&self.settings.instance_id);
        let ttl = self.heartbeat_every * liveness::MISSED_BEATS;
        // SET .. GET tells whether the key was still there in the same round trip.
        let options = SetOptions::default()
            .get(true)
            .with_expiration(SetExpiry::PX(ttl.as_millis() as u64));
        let renewed: EngineResult<bool> = async {
            let mut conn = self.conn().await?;
            let previous: Option<String> = self
                .with_timeout(conn.set_options(key, now_ms(), options))
                .await?;
            Ok(previous.is_some())
        }
        .await;
        self.redis_up.store(renewed.is_ok(), Ordering::Relaxed);
        renewed
    }

    /// Puts back the presence entries of `members` (this instance's connections in `room`)
    /// that are missing, telling the room about users it had lost. Returns how many were
    /// missing.
    async fn announce_presence(
        &self,
        room: &RoomId,
        members: &[(ConnKey, Arc<Identity>)],
    ) -> EngineResult<usize> {
        let mut args = Vec::with_capacity(members.len() * 3);
        for (conn, who) in members {
            args.push(conn.as_str().to_owned());
            args.push(frames::member(who));
            args.push(json(&who.user_id));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let restored = number(
            self.room_script(&self.scripts.announce, room, &args)
                .await?,
        )?;
        // A member that left meanwhile may have been put back after its leave ran: its
        // session is gone from the hub by then, so leave again (leaving is idempotent)
        // rather than leave a ghost that no sweep would remove while this instance lives.
        if restored > 0 {
            for (conn, _) in members {
                if !self.hub.is_member(room, conn) {
                    self.leave(room, conn.as_str()).await?;
                }
            }
        }
        Ok(restored as usize)
    }

    async fn sweep_presence(&self, room: &RoomId) -> EngineResult<usize> {
        let [_, _, _, users, ..] = self.keys.room_keys(room);
        let mut conn = self.conn().await?;
        let fields: Vec<String> = self.with_timeout(conn.hkeys(&users)).await?;
        let others: Vec<&str> = fields
            .iter()
            .map(|f| instance_of(f))
            .filter(|i| *i != self.settings.instance_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        drop(conn);
        // Every join sweeps: one round trip for all the other instances, not one each (one per
        // instance key's slot on a Cluster, all at once).
        let checks: Vec<redis::Pipeline> = others
            .iter()
            .map(|instance| {
                let mut pipe = redis::pipe();
                pipe.exists(self.keys.instance(instance));
                pipe
            })
            .collect();
        let alive: Vec<bool> = self
            .grouped(&checks)
            .await?
            .into_iter()
            .map(|v| matches!(v, Value::Int(1)))
            .collect();
        let dead: Vec<&str> = others
            .into_iter()
            .zip(alive)
            .filter_map(|(instance, alive)| (!alive).then_some(instance))
            .collect();
        let mut swept = 0;
        for field in &fields {
            if dead.contains(&instance_of(field)) {
                self.leave(room, field).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }
}

#[async_trait]
impl Engine for RedisEngine {
    async fn create_room(&self, creator: &UserId) -> EngineResult<RoomInfo> {
        let inner = &self.inner;
        let room_id = RoomId::random();
        let now = now_ms();
        let ttl = inner.settings.room_ttl;
        let expires_at = ttl.map(|t| now + t.as_millis() as u64);
        let key = inner.keys.room(&room_id);
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        let mut pipe = redis::pipe();
        pipe.atomic().hset_multiple(
            &key,
            &[
                ("createdAt", now.to_string()),
                ("expiresAt", expires_at.unwrap_or(0).to_string()),
                ("creator", creator.to_string()),
                ("epoch", epoch),
                ("seq", "0".to_owned()),
            ],
        );
        // The board and idempotency hashes exist from the start, kept by a placeholder field,
        // so an op writing into them never has to give them a TTL of its own.
        let [_, board, _, _, ops, ..] = inner.keys.room_keys(&room_id);
        pipe.hset(&board, "", "").hset(&ops, "", "");
        if let Some(ttl) = ttl {
            for key in [&key, &board, &ops] {
                pipe.pexpire(key, ttl.as_millis() as i64);
            }
        }
        let mut conn = inner.conn().await?;
        inner
            .with_timeout(pipe.query_async::<()>(&mut conn))
            .await?;
        Ok(RoomInfo {
            room_id,
            expires_at,
        })
    }

    async fn op_recorded(&self, room: &RoomId, user: &UserId, op_id: &str) -> EngineResult<bool> {
        let keys = self.inner.keys.room_keys(room);
        let field = super::op_field(user, op_id);
        let mut conn = self.inner.conn().await?;
        let (now, before): (bool, bool) = self
            .inner
            .with_timeout(
                redis::pipe()
                    .hexists(&keys[4], &field)
                    .hexists(&keys[7], &field)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(now || before)
    }

    async fn room_exists(&self, room: &RoomId) -> EngineResult<bool> {
        let mut conn = self.inner.conn().await?;
        self.inner
            .with_timeout(conn.exists(self.inner.keys.room(room)))
            .await
    }

    async fn join(&self, req: JoinRequest<'_>) -> EngineResult<JoinOutcome> {
        let inner = &self.inner;
        // Subscribed before the join reads the room: every event after what it reads then
        // reaches this instance (PROTOCOL.md §1.4; the subscription race of pubsub_mode room).
        pubsub::ensure(inner, req.room).await;
        // Sweeping here means a joiner never sees ghosts left by a crashed instance.
        if let Err(e) = inner.sweep_presence(req.room).await {
            tracing::debug!(room = %req.room, error = %e, "presence sweep failed");
        }
        let (since, epoch) = req
            .since
            .map_or((String::new(), ""), |(s, e)| (s.to_string(), e));
        let reply = inner
            .room_script(
                &inner.scripts.join,
                req.room,
                &[
                    req.conn.as_str(),
                    &frames::member(req.who),
                    &json(&req.who.user_id),
                    &since,
                    epoch,
                    &json(req.conn.as_str()),
                    &inner.settings.replay_max.to_string(),
                    // The room's next epoch, should this join find that it went back in time.
                    &uuid::Uuid::new_v4().simple().to_string(),
                ],
            )
            .await?;
        let (tag, mut items) = tagged(reply)?;
        if tag == "missing" {
            return Ok(JoinOutcome::Missing);
        }
        let seq = number(next(&mut items)?)?;
        let epoch = text(next(&mut items)?)?;
        let users = texts(next(&mut items)?)?;
        let list = texts(next(&mut items)?)?;
        let announced = number(next(&mut items)?)? != 0;
        let body = match tag.as_str() {
            "replay" => ViewBody::Replay {
                from_seq: req.since.map_or(0, |(s, _)| s) + 1,
                records: list,
            },
            "snapshot" => ViewBody::Snapshot(paint_order(list)),
            other => return Err(bad_reply(other)),
        };
        Ok(JoinOutcome::Joined(RoomView {
            seq,
            epoch,
            users,
            body,
            announced,
        }))
    }

    async fn leave(&self, room: &RoomId, conn: &ConnKey) -> EngineResult<()> {
        self.inner.leave(room, conn.as_str()).await
    }

    async fn apply(&self, room: &RoomId, op: Op<'_>) -> EngineResult<OpOutcome> {
        let outcome = self.inner.apply_op(room, &op).await?;
        // A resent op id found by the read (not by the commit, whose pipeline waited): its
        // ACK too waits for the replicas, or the first answer's UNAVAILABLE would be undone.
        let inner = &self.inner;
        if inner.wait_replicas > 0 && matches!(outcome, OpOutcome::Duplicate { .. }) {
            let replicas = inner
                .with_timeout(inner.store.wait(
                    &inner.keys.room(room),
                    inner.wait_replicas,
                    inner.wait_timeout,
                ))
                .await?;
            if replicas < inner.wait_replicas {
                return Err(unavailable("the op is not yet on enough replicas"));
            }
        }
        Ok(outcome)
    }

    async fn publish_transient(
        &self,
        room: &RoomId,
        except: &ConnKey,
        frame: String,
    ) -> EngineResult<()> {
        let inner = &self.inner;
        let envelope = format!(
            r#"{{"except":{},"lossy":true,"frame":{frame}}}"#,
            json(except.as_str())
        );
        let mut conn = inner.hot();
        let mut publish = redis::cmd(inner.feed.publish_command());
        publish.arg(inner.keys.channel(room)).arg(envelope);
        inner
            .with_timeout(publish.query_async::<()>(&mut conn))
            .await
    }

    async fn events_after(&self, room: &RoomId, after: u64) -> EngineResult<Option<LogSlice>> {
        self.inner.events_after(room, after).await
    }

    async fn sweep_presence(&self, room: &RoomId) -> EngineResult<usize> {
        self.inner.sweep_presence(room).await
    }

    async fn rate_limit(
        &self,
        kind: &str,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> EngineResult<RateDecision> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.rate.prepare_invoke();
        invocation
            .key(inner.keys.rate(kind, subject))
            .arg(window.as_millis() as u64);
        let (hits, left_ms): (u64, i64) = inner.invoke(&invocation).await?;
        let left = Duration::from_millis(left_ms.max(0) as u64);
        Ok(RateDecision::from_hits(hits, limit, left))
    }

    async fn create_account(&self, account: &Account) -> EngineResult<bool> {
        self.inner.create_account(account).await
    }

    async fn account(&self, email: &str) -> EngineResult<Option<Account>> {
        self.inner.account(email).await
    }

    async fn account_by_id(&self, user: &UserId) -> EngineResult<Option<Account>> {
        self.inner.account_by_id(user).await
    }

    async fn store_otp(&self, email: &str, code_hash: &str, ttl: Duration) -> EngineResult<()> {
        self.inner.store_otp(email, code_hash, ttl).await
    }

    async fn confirm_otp(
        &self,
        email: &str,
        code_hash: &str,
        max_tries: u32,
        account: Option<&UserId>,
    ) -> EngineResult<OtpOutcome> {
        self.inner
            .confirm_otp(email, code_hash, max_tries, account)
            .await
    }

    async fn reset_password(&self, reset: PasswordReset<'_>) -> EngineResult<OtpOutcome> {
        self.inner.reset_password(reset).await
    }

    async fn store_refresh(
        &self,
        user: &UserId,
        token_hash: &str,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.inner.store_refresh(user, token_hash, ttl).await
    }

    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> EngineResult<RefreshOutcome> {
        self.inner.rotate_refresh(rotation).await
    }

    async fn revoked_at(&self, user: &UserId) -> EngineResult<Option<u64>> {
        self.inner.revoked_at(user).await
    }

    async fn revoke_refresh(&self, token_hash: &str) -> EngineResult<()> {
        self.inner.revoke_refresh(token_hash).await
    }

    fn is_ready(&self) -> bool {
        self.inner.pubsub_up.load(Ordering::Relaxed) && self.inner.redis_up.load(Ordering::Relaxed)
    }
}
