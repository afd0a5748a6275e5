//! One configuration struct, read from `config/default.toml` (or the file named by
//! `--config` or `DRAWBRIDGE_CONFIG`) and overridden by `DRAWBRIDGE_*` environment variables.
//! [`Config::validate`] reports every bad value at once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How an instance subscribes to room events. Every mode keeps the ordering guarantees of
/// `docs/PROTOCOL.md` §1.4; they differ in what each instance receives, and so in what adding
/// instances costs each of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PubsubMode {
    /// One `PSUBSCRIBE room:*`: every instance receives every room's events (any Redis).
    #[default]
    Pattern,
    /// `SUBSCRIBE room:{id}` while this instance has sockets in the room: each instance
    /// receives only its own rooms' events, but every publish is still matched on one node.
    Room,
    /// `SSUBSCRIBE`/`SPUBLISH` (Redis 7): per room as `Room`, and in a cluster each room's
    /// events stay on the node owning its slot instead of being broadcast to every node.
    Sharded,
}

impl PubsubMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pattern => "pattern",
            Self::Room => "room",
            Self::Sharded => "sharded",
        }
    }
}

/// What `redis_url` points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis (with replicas or not): every command goes to the URL's server.
    #[default]
    Standalone,
    /// A Redis Cluster: the URL names one node (any), the rest is discovered; every command
    /// goes to the node owning its key's slot (`docs/REDIS.md`, "Redis Cluster").
    Cluster,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Cluster => "cluster",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// host:port to listen on.
    #[serde(deserialize_with = "text")]
    pub listen: String,
    /// Redis URL; empty runs the embedded in-memory engine (single instance only).
    #[serde(deserialize_with = "text")]
    pub redis_url: String,
    /// With a `rediss://` URL: a PEM file of the certificates that may sign the server's (a
    /// private CA); empty trusts the system's roots, as a managed Redis needs.
    #[serde(deserialize_with = "text")]
    pub redis_tls_ca: String,
    /// `standalone` (one Redis) or `cluster` (a Redis Cluster, `redis_url` naming any node).
    pub redis_mode: RedisMode,
    /// Prepended to every Redis key and channel.
    #[serde(deserialize_with = "text")]
    pub key_prefix: String,
    /// Connections in the Redis pool.
    pub redis_pool_size: usize,
    /// Replicas that must have an op before it is acknowledged (`WAIT` after the commit, on
    /// the master that owns the room): with 1, a failover loses no acknowledged op. 0 (the
    /// default) acknowledges once the master has it.
    pub redis_wait_replicas: u32,
    /// How long an op waits for those replicas; past it the op is answered `UNAVAILABLE`
    /// (it is committed: a resend with the same `opId` is acknowledged once replicated).
    pub redis_wait_ms: u64,
    /// How this instance hears room events (`docs/PROTOCOL.md` §7, `docs/REDIS.md`).
    pub pubsub_mode: PubsubMode,
    /// With `pubsub_mode` room or sharded: how long a room stays subscribed after its last
    /// local socket left, so sockets that come and go do not make the subscription flap.
    pub pubsub_linger_ms: u64,
    /// HS256 secret shared by every instance; required with Redis.
    #[serde(deserialize_with = "text")]
    pub jwt_secret: String,
    /// Access token lifetime.
    pub access_token_ttl_secs: u64,
    /// A readable prefix for this process's instance id (e.g. the pod name); every start
    /// appends a random suffix, so a restarted process never keeps a dead one's users
    /// present. Empty uses the host name.
    #[serde(deserialize_with = "text")]
    pub instance_id: String,
    /// How often this instance renews its liveness key in Redis. After three missed renewals
    /// it counts as dead and other instances may remove its users from their rooms; it puts
    /// them back once it reaches Redis again.
    pub heartbeat_secs: u64,
    /// Rooms live this long after their last activity; 0 keeps them forever.
    pub room_ttl_secs: u64,
    /// Sequenced ops kept per room for `REPLAY`.
    pub log_max_ops: usize,
    /// Ops of history each room keeps at least (`GET .../ops`, `state?at=`, diffs, restore);
    /// older ones fold into the room's base snapshot. At least `log_max_ops`.
    pub history_max_ops: usize,
    /// Snapshots of each room's board at least this many ops apart (and as many as the last
    /// one holds elements: `history::snapshot_due`), so a past board costs one snapshot plus
    /// fewer ops than the larger of the two.
    pub snapshot_every_ops: u64,
    /// A room nobody has been in for this long is compacted: its board kept as a snapshot, its
    /// live keys (presence, idempotency records) dropped; 0 never compacts.
    pub idle_compact_secs: u64,
    /// Most elements one room holds (`QUOTA_EXCEEDED` past it).
    pub max_room_elements: u64,
    /// Most bytes of elements one room holds.
    pub max_room_bytes: u64,
    /// Most bytes one user's elements take in one room.
    pub max_user_bytes: u64,
    /// Largest body `POST /api/v1/rooms` imports (SVG or an `export.json` document).
    pub max_import_bytes: usize,
    /// Most events one `REPLAY` carries; a client further behind gets `INITIAL_STATE`.
    pub replay_max_events: usize,
    /// Undone ops a user can redo, per room.
    pub redo_max: usize,
    /// Ops of theirs a user can undo, per room.
    pub undo_max: usize,
    /// Oldest page protocol served; an older page that says its version gets
    /// `UPGRADE_REQUIRED` and reloads. Clients that name no version get the v1 subset.
    #[serde(deserialize_with = "text")]
    pub min_protocol: String,
    /// Largest accepted text frame; larger ones get `ERROR TOO_LARGE`.
    pub max_frame_bytes: usize,
    /// Most points in one stroke.
    pub max_points: usize,
    /// Frames queued per connection before it counts as a slow consumer (closed with 1013).
    pub send_queue: usize,
    /// Protocol ping interval; a connection silent for two intervals is closed.
    pub ping_interval_secs: u64,
    /// On SIGTERM, open sockets are closed with 1001 spread over this window.
    pub drain_secs: u64,
    /// Comma-separated allowed `Origin`s for the WebSocket and CORS; empty allows all.
    #[serde(deserialize_with = "text")]
    pub allowed_origins: String,
    /// WebSocket upgrades per IP per minute, shared by all instances; 0 = unlimited.
    pub ws_upgrades_per_minute: u32,
    /// Cursor moves relayed per connection per second (extra ones are dropped silently).
    pub cursor_per_sec: u32,
    /// `STROKE_PROGRESS` batches relayed per connection per second (extra ones are dropped).
    pub progress_per_sec: u32,
    /// Sequenced ops accepted per connection per second (extra ones get `RATE_LIMITED`).
    pub ops_per_sec: u32,
    /// `JOIN_ROOM`s accepted per connection per minute, on average (extra ones get
    /// `RATE_LIMITED`): each join is a presence broadcast to the room and a board to the joiner.
    pub joins_per_minute: u32,
    /// `JOIN_ROOM`s a connection may send at once before `joins_per_minute` applies.
    pub join_burst: u32,
    /// WebSocket upgrades this instance admits per second, from everyone together; more get
    /// `503` with `Retry-After` (a reconnect storm spreads over the other instances and over
    /// time). 0 = unlimited.
    pub upgrades_per_sec: u32,
    /// Open WebSocket connections this instance accepts.
    pub max_connections: usize,
    /// Time a connection has to send a request's head, from when it opens and from the end
    /// of its previous response: closes silent, trickling (slowloris) and idle keep-alive
    /// connections alike.
    pub http_header_timeout_secs: u64,
    /// Time an HTTP request may take from its head to its answer, body upload included
    /// (a body that trickles in gets 408); a WebSocket is not a request once upgraded.
    pub http_request_timeout_secs: u64,
    /// Open connections (HTTP and WebSocket) per client IP, IPv6 counted per /64; trusted
    /// proxies are exempt. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// tungstenite read buffer per connection; small keeps idle connections cheap.
    pub ws_read_buffer: usize,
    /// tungstenite write buffer per connection.
    pub ws_write_buffer: usize,
    /// Comma-separated IPs or CIDR blocks of reverse proxies whose `X-Forwarded-For` is
    /// believed; from any other peer the header is ignored.
    #[serde(deserialize_with = "text")]
    pub trusted_proxies: String,
    /// Sign-ups, and separately sign-ins, per IP per `auth_rate_window_secs`, shared by all
    /// instances; 0 = unlimited.
    pub auth_rate_limit: u32,
    pub auth_rate_window_secs: u64,
    /// Code verifications (`verify-otp`) per IP per `verify_rate_window_secs`; 0 = unlimited.
    pub verify_rate_limit: u32,
    pub verify_rate_window_secs: u64,
    /// Refreshes of one refresh token per `refresh_rate_window_secs` (a token is good for
    /// one use, plus retries); 0 = unlimited.
    pub refresh_rate_limit: u32,
    pub refresh_rate_window_secs: u64,
    /// Refreshes per IP per `refresh_rate_window_secs`, a ceiling against floods of made-up
    /// tokens, high enough for an office behind one NAT; 0 = unlimited.
    pub refresh_ip_rate_limit: u32,
    /// A refresh token presented again this soon after its rotation (a second tab, a retried
    /// request) gets the same successor instead of counting as theft; 0 = no grace.
    pub refresh_grace_secs: u64,
    /// An open socket re-checks, at most this often and only when its client sends something,
    /// whether its user's sessions were revoked (stolen refresh token detected); if so it is
    /// closed with 1008. 0 checks on every frame.
    pub revocation_check_secs: u64,
    /// Guest tokens (`/auth/guest`) per IP per `guest_rate_window_secs`; 0 = unlimited.
    pub guest_rate_limit: u32,
    pub guest_rate_window_secs: u64,
    /// Rooms created per IP per `room_rate_window_secs`; 0 = unlimited.
    pub room_rate_limit: u32,
    pub room_rate_window_secs: u64,
    /// Rooms that still exist per client IP (expired and deleted ones free their slot),
    /// counted in Redis so every instance agrees; 0 = unlimited.
    pub max_rooms_per_ip: u32,
    /// How often each instance writes its buffered activity counts (ops per user per day)
    /// to the engine; the heatmap lags by at most this much.
    pub activity_flush_secs: u64,
    /// Verification codes e-mailed per address per `otp_send_window_secs`; 0 = unlimited.
    pub otp_send_limit: u32,
    pub otp_send_window_secs: u64,
    /// SMTP server for the verification codes; empty writes each code to the log instead.
    #[serde(deserialize_with = "text")]
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `none` (plain text, local relays only), `starttls` or `tls` (implicit, usually port 465).
    #[serde(deserialize_with = "text")]
    pub smtp_tls: String,
    /// SMTP login; empty sends without authenticating.
    #[serde(deserialize_with = "text")]
    pub smtp_user: String,
    #[serde(deserialize_with = "text")]
    pub smtp_password: String,
    /// Sender of the e-mails, e.g. `drawbridge <no-reply@example.com>`.
    #[serde(deserialize_with = "text")]
    pub smtp_from: String,
    /// Threads running connections; 0 = one per CPU the process may use. Set it to the pod's
    /// CPU limit where the runtime would otherwise count the node's cores.
    pub worker_threads: usize,
    /// `text` or `json`.
    #[serde(deserialize_with = "text")]
    pub log_format: String,
    /// A `tracing` filter, e.g. `info` or `drawbridge=debug`.
    #[serde(deserialize_with = "text")]
    pub log: String,
    /// host:port of a second listener for `/metrics` (and `/healthz`, `/readyz`), which is
    /// then no longer served on `listen`; empty serves everything on `listen`.
    #[serde(deserialize_with = "text")]
    pub admin_listen: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            redis_url: String::new(),
            redis_tls_ca: String::new(),
            redis_mode: RedisMode::Standalone,
            key_prefix: String::new(),
            redis_pool_size: 16,
            redis_wait_replicas: 0,
            redis_wait_ms: 500,
            pubsub_mode: PubsubMode::Pattern,
            pubsub_linger_ms: 2000,
            jwt_secret: String::new(),
            access_token_ttl_secs: 900,
            instance_id: String::new(),
            heartbeat_secs: 5,
            room_ttl_secs: 86_400,
            log_max_ops: 10_000,
            history_max_ops: 100_000,
            snapshot_every_ops: 500,
            max_import_bytes: 5 * 1024 * 1024,
            idle_compact_secs: 300,
            max_room_elements: 50_000,
            max_room_bytes: 32 * 1024 * 1024,
            max_user_bytes: 8 * 1024 * 1024,
            replay_max_events: 1_000,
            redo_max: 100,
            undo_max: 100,
            min_protocol: crate::domain::PROTOCOL.into(),
            max_frame_bytes: 64 * 1024,
            max_points: 5_000,
            send_queue: 1_024,
            ping_interval_secs: 10,
            drain_secs: 10,
            allowed_origins: String::new(),
            ws_upgrades_per_minute: 600,
            cursor_per_sec: 20,
            progress_per_sec: 30,
            ops_per_sec: 100,
            joins_per_minute: 30,
            join_burst: 5,
            upgrades_per_sec: 500,
            max_connections: 100_000,
            http_header_timeout_secs: 10,
            http_request_timeout_secs: 30,
            max_connections_per_ip: 500,
            ws_read_buffer: 2 * 1024,
            ws_write_buffer: 4 * 1024,
            trusted_proxies: String::new(),
            auth_rate_limit: 10,
            auth_rate_window_secs: 900,
            verify_rate_limit: 30,
            verify_rate_window_secs: 900,
            refresh_rate_limit: 10,
            refresh_rate_window_secs: 900,
            refresh_ip_rate_limit: 1_000,
            refresh_grace_secs: 10,
            revocation_check_secs: 30,
            guest_rate_limit: 30,
            guest_rate_window_secs: 900,
            room_rate_limit: 20,
            room_rate_window_secs: 3_600,
            max_rooms_per_ip: 10,
            activity_flush_secs: 10,
            otp_send_limit: 5,
            otp_send_window_secs: 3_600,
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_user: String::new(),
            smtp_password: String::new(),
            smtp_from: "drawbridge <no-reply@localhost>".into(),
            worker_threads: 0,
            log_format: "text".into(),
            log: "info".into(),
            admin_listen: String::new(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file named by `DRAWBRIDGE_CONFIG` (or `config/default.toml`, if
    /// present), then `DRAWBRIDGE_*` variables.
    pub fn load() -> Result<Self, Vec<String>> {
        let named = std::env::var_os("DRAWBRIDGE_CONFIG").map(std::path::PathBuf::from);
        Self::load_from(named.as_deref())
    }

    /// Defaults, then `file`, then `DRAWBRIDGE_*` variables. A file that was named must exist
    /// (a typo in a path would otherwise start a server on the defaults); with none named,
    /// `config/default.toml` is read when present.
    pub fn load_from(file: Option<&Path>) -> Result<Self, Vec<String>> {
        let file = match file {
            Some(named) if !named.is_file() => {
                return Err(vec![format!(
                    "configuration file {} does not exist or is not a file",
                    named.display()
                )]);
            }
            Some(named) => named,
            None => Path::new("config/default.toml"),
        };
        let known = Self::keys();
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(
                // Unknown variables are reported by `unknown_env`, not fatal: the environment
                // is shared with scripts that use the prefix for their own settings.
                Env::prefixed("DRAWBRIDGE_")
                    .filter(move |k| {
                        known
                            .iter()
                            .any(|name| k.as_str().eq_ignore_ascii_case(name))
                    })
                    .map(|k| k.as_str().to_lowercase().into()),
            )
            .extract::<Config>()
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    /// `DRAWBRIDGE_*` variables that name no setting: likely typos, worth a warning.
    pub fn unknown_env() -> Vec<String> {
        let known = Self::keys();
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("DRAWBRIDGE_").map(str::to_lowercase))
            .filter(|k| k != "config" && !known.contains(k))
            .map(|k| format!("DRAWBRIDGE_{}", k.to_uppercase()))
            .collect()
    }

    /// The setting names, as in the file.
    fn keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// A copy safe to print: secrets replaced by `********`, and the password of a Redis URL.
    pub fn masked(&self) -> Config {
        const MASK: &str = "********";
        let mask = |secret: &str| {
            if secret.is_empty() {
                String::new()
            } else {
                MASK.to_owned()
            }
        };
        Config {
            jwt_secret: mask(&self.jwt_secret),
            smtp_password: mask(&self.smtp_password),
            redis_url: mask_url_password(&self.redis_url, MASK),
            ..self.clone()
        }
    }

    /// Every invalid value, so an operator fixes them all in one go.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(
            self.listen.parse::<SocketAddr>().is_ok(),
            "listen must be host:port with a literal IP, e.g. 0.0.0.0:8080",
        );
        check(
            self.redis_url.is_empty()
                || self.redis_url.starts_with("redis://")
                || self.redis_url.starts_with("rediss://")
                || self.redis_url.starts_with("redis+unix://")
                || self.redis_url.starts_with("unix://"),
            "redis_url must be empty (embedded engine) or a redis:// URL",
        );
        check(
            self.redis_mode == RedisMode::Standalone
                || self.redis_url.starts_with("redis://")
                || self.redis_url.starts_with("rediss://"),
            "redis_mode cluster needs a redis:// or rediss:// redis_url (any node of the cluster)",
        );
        check(
            self.redis_tls_ca.is_empty() || self.redis_url.starts_with("rediss://"),
            "redis_tls_ca is only used with a rediss:// redis_url",
        );
        check(
            self.redis_url.is_empty() || !self.jwt_secret.is_empty(),
            "jwt_secret is required with redis_url: every instance must verify the same tokens",
        );
        check(
            self.jwt_secret.is_empty() || self.jwt_secret.len() >= 16,
            "jwt_secret must be at least 16 bytes",
        );
        check(
            !self
                .key_prefix
                .contains(['*', '?', '[', ']', '\\', '{', '}']),
            "key_prefix must not contain glob characters or braces",
        );
        check(
            self.instance_id.is_empty()
                || self
                    .instance_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "instance_id may only hold letters, digits, '-', '_' and '.'",
        );
        check(
            self.redis_wait_replicas == 0 || self.redis_wait_ms > 0,
            "redis_wait_ms must be positive when redis_wait_replicas is set",
        );
        check(
            self.redis_pool_size > 0,
            "redis_pool_size must be at least 1",
        );
        check(self.heartbeat_secs > 0, "heartbeat_secs must be positive");
        check(
            self.access_token_ttl_secs > 0,
            "access_token_ttl_secs must be positive",
        );
        check(self.log_max_ops > 0, "log_max_ops must be at least 1");
        check(
            self.history_max_ops >= self.log_max_ops,
            "history_max_ops must be at least log_max_ops",
        );
        check(
            self.snapshot_every_ops > 0,
            "snapshot_every_ops must be at least 1",
        );
        check(
            self.max_room_elements > 0 && self.max_room_bytes > 0 && self.max_user_bytes > 0,
            "max_room_elements, max_room_bytes and max_user_bytes must be at least 1",
        );
        check(
            self.max_import_bytes > 0,
            "max_import_bytes must be at least 1",
        );
        check(
            self.replay_max_events > 0,
            "replay_max_events must be at least 1",
        );
        check(self.redo_max > 0, "redo_max must be at least 1");
        check(self.undo_max > 0, "undo_max must be at least 1");
        check(
            crate::domain::protocol_version(&self.min_protocol).is_some_and(|v| {
                v <= crate::domain::protocol_version(crate::domain::PROTOCOL).unwrap_or_default()
            }),
            "min_protocol must be a version like 1.1, at most the server's own",
        );
        check(
            self.progress_per_sec > 0,
            "progress_per_sec must be positive",
        );
        check(
            self.max_frame_bytes >= 1024,
            "max_frame_bytes must be at least 1024",
        );
        check(self.max_points > 0, "max_points must be at least 1");
        check(self.send_queue >= 8, "send_queue must be at least 8");
        check(
            self.ping_interval_secs > 0,
            "ping_interval_secs must be positive",
        );
        check(self.cursor_per_sec > 0, "cursor_per_sec must be positive");
        check(self.ops_per_sec > 0, "ops_per_sec must be positive");
        check(
            self.joins_per_minute > 0 && self.join_burst > 0,
            "joins_per_minute and join_burst must be positive",
        );
        check(self.max_connections > 0, "max_connections must be positive");
        check(
            self.http_header_timeout_secs > 0 && self.http_request_timeout_secs > 0,
            "http_header_timeout_secs and http_request_timeout_secs must be positive",
        );
        check(
            self.ws_read_buffer >= 512,
            "ws_read_buffer must be at least 512",
        );
        check(
            self.ws_write_buffer >= 512,
            "ws_write_buffer must be at least 512",
        );
        if let Err(bad) = crate::domain::ipnet::parse_list(&self.trusted_proxies) {
            errors.push(format!(
                "trusted_proxies must be comma-separated IPs or CIDR blocks; bad: {}",
                bad.join(", ")
            ));
        }
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(
            self.auth_rate_window_secs > 0
                && self.verify_rate_window_secs > 0
                && self.refresh_rate_window_secs > 0
                && self.guest_rate_window_secs > 0
                && self.room_rate_window_secs > 0
                && self.otp_send_window_secs > 0,
            "every *_window_secs must be positive",
        );
        check(
            self.activity_flush_secs > 0,
            "activity_flush_secs must be positive",
        );
        check(
            matches!(self.smtp_tls.as_str(), "none" | "starttls" | "tls"),
            "smtp_tls must be none, starttls or tls",
        );
        check(self.smtp_port > 0, "smtp_port must be positive");
        check(
            self.smtp_user.is_empty() == self.smtp_password.is_empty(),
            "smtp_user and smtp_password go together: set both or neither",
        );
        check(
            self.smtp_from.parse::<lettre::message::Mailbox>().is_ok(),
            "smtp_from must be an address such as drawbridge <no-reply@example.com>",
        );
        check(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format must be text or json",
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log).is_ok(),
            "log must be a tracing filter such as info or drawbridge=debug",
        );
        check(
            self.admin_listen.is_empty() || self.admin_listen.parse::<SocketAddr>().is_ok(),
            "admin_listen must be empty or host:port with a literal IP, e.g. 0.0.0.0:9090",
        );
        check(
            self.admin_listen.is_empty()
                || self.admin_listen != self.listen
                || self.listen.ends_with(":0"),
            "admin_listen must differ from listen",
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn room_ttl(&self) -> Option<Duration> {
        (self.room_ttl_secs > 0).then(|| Duration::from_secs(self.room_ttl_secs))
    }

    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }
}

/// `scheme://user:password@host/...` with the password replaced; anything else unchanged.
fn mask_url_password(url: &str, mask: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => user,
        // `redis://secret@host`: Redis reads a lone userinfo as the password.
        None => "",
    };
    format!("{scheme}://{user}:{mask}{}", &rest[at..])
}

/// Environment values arrive typed (`DRAWBRIDGE_JWT_SECRET=1234…` is a number to figment);
/// a text setting takes any scalar as its text.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Unsigned(n) => n.to_string(),
        Scalar::Signed(n) => n.to_string(),
        Scalar::Float(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_matches_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
        let from_file: Config = Figment::from(Toml::file(path))
            .extract()
            .expect("default.toml");
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let config = Config {
            listen: "nowhere".into(),
            redis_url: "redis://127.0.0.1:1".into(),
            send_queue: 0,
            log_format: "xml".into(),
            ..Config::default()
        };
        let errors = config.validate().expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains("jwt_secret is required")));
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn pubsub_mode_is_one_of_three_names() {
        let read = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        for mode in [PubsubMode::Pattern, PubsubMode::Room, PubsubMode::Sharded] {
            let config = read(&format!("pubsub_mode = \"{}\"", mode.as_str())).expect("mode");
            assert_eq!(config.pubsub_mode, mode);
        }
        assert_eq!(Config::default().pubsub_mode, PubsubMode::Pattern);
        assert!(read("pubsub_mode = \"rooms\"").is_err());
        assert_eq!(Config::default().redis_mode, RedisMode::Standalone);
        assert_eq!(
            read("redis_mode = \"cluster\"")
                .expect("cluster")
                .redis_mode,
            RedisMode::Cluster
        );
        assert!(read("redis_mode = \"sentinel\"").is_err());
        let cluster_without_url = Config {
            redis_mode: RedisMode::Cluster,
            ..Config::default()
        };
        let errors = cluster_without_url
            .validate()
            .expect_err("a cluster needs a url");
        assert!(errors.iter().any(|e| e.contains("redis_mode cluster")));
        let plain_with_ca = Config {
            redis_url: "redis://h:1".into(),
            redis_tls_ca: "/ca.pem".into(),
            jwt_secret: "0123456789abcdef".into(),
            ..Config::default()
        };
        let errors = plain_with_ca.validate().expect_err("a CA without TLS");
        assert!(errors.iter().any(|e| e.contains("redis_tls_ca")));
    }

    #[test]
    fn masked_hides_every_secret_and_keeps_the_rest() {
        let config = Config {
            jwt_secret: "0123456789abcdef0123".into(),
            smtp_password: "hunter2".into(),
            redis_url: "redis://app:s3cret@redis.internal:6379/0".into(),
            smtp_user: "apikey".into(),
            ..Config::default()
        };
        let masked = config.masked();
        assert_eq!(masked.jwt_secret, "********");
        assert_eq!(masked.smtp_password, "********");
        assert_eq!(
            masked.redis_url,
            "redis://app:********@redis.internal:6379/0"
        );
        assert_eq!(masked.smtp_user, "apikey");
        assert_eq!(Config::default().masked(), Config::default());
        assert_eq!(
            mask_url_password("redis://only-a-password@h:1", "*"),
            "redis://:*@h:1"
        );
        assert_eq!(
            mask_url_password("redis://h:1/0", "*"),
            "redis://h:1/0",
            "no userinfo"
        );
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error() {
        let errors = Config::load_from(Some(Path::new("/nonexistent/drawbridge.toml")))
            .expect_err("missing file");
        assert!(errors[0].contains("does not exist"), "{errors:?}");
    }
}
