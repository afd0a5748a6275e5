//! Assembly and lifecycle: build the engine, hub and router from a [`Config`], serve until
//! the shutdown future resolves, then drain.
//!
//! Drain order on shutdown: readiness turns 503 and new upgrades are refused while the listener
//! keeps answering (so a load balancer sees the instance leave), open sockets close with 1001
//! spread over `drain_secs`, then the HTTP server and the engine's tasks stop.
//!
//! With `admin_listen` set, `/metrics` (and the probes) are served on a second listener, and
//! `/metrics` no longer on the public one.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::token::TokenKeys;
use crate::engine::activity::ActivityBuffer;
use crate::engine::memory::MemoryEngine;
use crate::engine::redis::{RedisEngine, RedisSettings};
use crate::engine::{Access, Engine, EngineError, EngineSettings, History};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::transport::server::ServeLimits;
use crate::transport::{AppState, admin_router, router};

/// Time allowed past the drain window for sessions and tasks to finish before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    #[error("cannot start the engine: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `config.listen` and runs as `instance_id` (from [`unique_instance_id`]: the caller
/// has already put it on its log lines) until `shutdown` resolves.
pub async fn run(
    config: Config,
    instance_id: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.validate().map_err(StartError::Config)?;
    let listener = bind(&config.listen).await?;
    serve(config, instance_id, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0`) until `shutdown` resolves.
pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let instance_id = unique_instance_id(&config.instance_id);
    serve(config, instance_id, listener, shutdown).await
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

async fn serve(
    config: Config,
    instance_id: String,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.validate().map_err(StartError::Config)?;
    let admin_listener = if config.admin_listen.is_empty() {
        None
    } else {
        Some(bind(&config.admin_listen).await?)
    };
    let secret = if config.jwt_secret.is_empty() {
        tracing::warn!(
            "no jwt_secret configured: using a random one. Tokens die with this process and no \
             other instance can verify them. Set DRAWBRIDGE_JWT_SECRET for anything but local use."
        );
        hex::encode(rand::random::<[u8; 32]>())
    } else {
        config.jwt_secret.clone()
    };

    let hub = Arc::new(Hub::new());
    let tasks = TaskTracker::new();
    let stop_tasks = CancellationToken::new();
    let settings = EngineSettings::from_config(&config, instance_id.clone());
    // One engine, seen through one trait per concern.
    type Engines = (Arc<dyn Engine>, Arc<dyn History>, Arc<dyn Access>);
    let (engine, history, access): Engines = if config.redis_url.is_empty() {
        tracing::info!("no redis_url: embedded in-memory engine, single instance only");
        let memory = Arc::new(MemoryEngine::new(settings, hub.clone()));
        (memory.clone(), memory.clone(), memory)
    } else {
        let redis = RedisSettings {
            url: config.redis_url.clone(),
            mode: config.redis_mode,
            key_prefix: config.key_prefix.clone(),
            pool_size: config.redis_pool_size,
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            pubsub_mode: config.pubsub_mode,
            pubsub_linger: Duration::from_millis(config.pubsub_linger_ms),
            tls_ca: config.redis_tls_ca.clone(),
            wait_replicas: config.redis_wait_replicas,
            wait_timeout: Duration::from_millis(config.redis_wait_ms),
        };
        let redis = Arc::new(
            RedisEngine::start(&redis, settings, hub.clone(), &tasks, stop_tasks.clone()).await?,
        );
        (redis.clone(), redis.clone(), redis)
    };
    let activity = Arc::new(ActivityBuffer::default());
    tasks.spawn(crate::engine::activity::run(
        activity.clone(),
        access.clone(),
        Duration::from_secs(config.activity_flush_secs),
        stop_tasks.clone(),
    ));

    if config.idle_compact_secs > 0 {
        let idle = Duration::from_secs(config.idle_compact_secs);
        tasks.spawn(compact_idle_rooms(
            history.clone(),
            idle,
            stop_tasks.clone(),
        ));
    }

    let mailer =
        crate::mail::from_config(&config).map_err(|e| StartError::Config(vec![e.to_string()]))?;
    let trusted_proxies = crate::domain::ipnet::parse_list(&config.trusted_proxies)
        .map_err(|bad| StartError::Config(vec![format!("trusted_proxies: {}", bad.join(", "))]))?;
    let metrics = Metrics::new(hub.clone(), config.max_connections);
    let state = Arc::new(AppState {
        origins: config.origins(),
        instance_id: instance_id.clone(),
        engine,
        history,
        access,
        activity,
        hub,
        tokens: TokenKeys::new(secret.as_bytes(), config.access_token_ttl_secs),
        draining: CancellationToken::new(),
        sessions: TaskTracker::new(),
        connection_slots: Arc::new(Semaphore::new(config.max_connections)),
        admission: std::num::NonZeroU32::new(config.upgrades_per_sec)
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n))),
        next_conn: AtomicU64::new(0),
        metrics,
        mailer,
        otp_pepper: secret.as_bytes().to_vec(),
        trusted_proxies,
        config,
    });

    let addr = listener.local_addr()?;
    tracing::info!(%addr, instance = %instance_id, "listening");
    let stop_http = CancellationToken::new();
    let limits = ServeLimits {
        header_timeout: Duration::from_secs(state.config.http_header_timeout_secs),
        per_ip: state.config.max_connections_per_ip,
        trusted: state.trusted_proxies.clone(),
        refused: state.metrics.connections_refused_per_ip.clone(),
    };
    let server = tokio::spawn(crate::transport::server::serve(
        listener,
        router(state.clone()),
        limits.clone(),
        stop_http.clone(),
    ));
    let admin = match admin_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "admin listening (/metrics, /healthz, /readyz)");
            Some(tokio::spawn(crate::transport::server::serve(
                listener,
                admin_router(state.clone()),
                limits,
                stop_http.clone(),
            )))
        }
        None => None,
    };

    shutdown.await;
    let drain = Duration::from_secs(state.config.drain_secs);
    tracing::info!(?drain, "draining");
    state.draining.cancel();
    state.sessions.close();
    if tokio::time::timeout(drain + SHUTDOWN_GRACE, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after the drain window");
    }
    stop_http.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("http server did not stop in time");
    }
    if let Some(admin) = admin
        && tokio::time::timeout(SHUTDOWN_GRACE, admin).await.is_err()
    {
        tracing::warn!("admin server did not stop in time");
    }
    stop_tasks.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// This process's instance id: the configured id (or, when none is, the host name) as a
/// readable prefix, and a random suffix drawn at every start.
///
/// The suffix is not optional. Presence entries are tagged with their instance and swept once
/// that instance's liveness key expires; a restarted process that reused its predecessor's id
/// (a container restarted in the same pod, whose name is the configured id) would renew the
/// dead process's key and keep its users "present" for ever.
pub fn unique_instance_id(configured: &str) -> String {
    let prefix = if configured.is_empty() {
        host_name()
    } else {
        configured.to_owned()
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{prefix}-{suffix}")
}

/// The host name, reduced to the characters an instance id may hold; `drawbridge` if none.
fn host_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    if host.is_empty() {
        "drawbridge".into()
    } else {
        host
    }
}

/// Compacts rooms nobody has been in for `idle` (§6), checking a few times per `idle` (at most
/// every 30 s). Every instance runs it; compacting a room twice is harmless.
async fn compact_idle_rooms(history: Arc<dyn History>, idle: Duration, stop: CancellationToken) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match history.compact_idle(idle).await {
            Ok(0) => {}
            Ok(rooms) => tracing::debug!(rooms, "idle rooms compacted"),
            Err(e) => tracing::warn!(error = %e, "could not compact idle rooms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_gets_its_own_instance_id() {
        let first = unique_instance_id("pod-1");
        let second = unique_instance_id("pod-1");
        assert_ne!(first, second);
        assert!(first.starts_with("pod-1-"), "{first}");
        assert!(!unique_instance_id("").is_empty());
    }
}
