//! Accounts: the engine half run against both engines, then the whole flow over HTTP with a
//! real redis-server and a real SMTP listener started here.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use drawbridge::domain::UserId;
use drawbridge::domain::accounts::Account;
use drawbridge::engine::memory::MemoryEngine;
use drawbridge::engine::redis::{RedisEngine, RedisSettings};
use drawbridge::engine::{Engine, EngineSettings, OtpOutcome, RefreshOutcome};
use drawbridge::hub::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn settings() -> EngineSettings {
    EngineSettings {
        instance_id: "suite".into(),
        room_ttl: None,
        log_max: 100,
        redo_max: 10,
    }
}

async fn redis_engine(redis: &RedisServer, stop: &CancellationToken) -> RedisEngine {
    let tasks = TaskTracker::new();
    RedisEngine::start(
        &RedisSettings {
            url: redis.url(),
            key_prefix: String::new(),
            pool_size: 4,
        },
        settings(),
        Arc::new(Hub::new()),
        &tasks,
        stop.clone(),
    )
    .await
    .expect("redis engine")
}

fn account(id: &str, email: &str) -> Account {
    Account {
        id: UserId::new(id),
        name: format!("name of {id}"),
        email: email.to_owned(),
        password_hash: "$argon2id$not-a-real-hash".into(),
        verified: false,
        created_at: 1_700_000_000_000,
    }
}

const TTL: Duration = Duration::from_secs(60);

/// The account half of the engine contract; both engines must pass it unchanged.
async fn account_suite(engine: &dyn Engine) {
    // Accounts: one per address, found by address and by id.
    let ann = account("u-ann", "ann@x.io");
    assert!(engine.create_account(&ann).await.expect("create"));
    assert!(
        !engine
            .create_account(&account("u-other", "ann@x.io"))
            .await
            .expect("create"),
        "the address is taken"
    );
    assert_eq!(
        engine.account("ann@x.io").await.expect("get"),
        Some(ann.clone())
    );
    assert_eq!(
        engine.account_by_id(&ann.id).await.expect("get"),
        Some(ann.clone())
    );
    assert_eq!(
        engine
            .account_by_id(&UserId::new("u-other"))
            .await
            .expect("get"),
        None,
        "the refused duplicate left nothing behind"
    );
    assert_eq!(engine.account("nobody@x.io").await.expect("get"), None);

    // Codes: wrong tries count down, the right one verifies once.
    assert_eq!(
        engine.confirm_otp("ann@x.io", "h1", 3).await.expect("otp"),
        OtpOutcome::Missing
    );
    engine
        .store_otp("ann@x.io", "h1", TTL)
        .await
        .expect("store");
    assert_eq!(
        engine.confirm_otp("ann@x.io", "bad", 3).await.expect("otp"),
        OtpOutcome::Wrong { tries_left: 2 }
    );
    assert_eq!(
        engine.confirm_otp("ann@x.io", "h1", 3).await.expect("otp"),
        OtpOutcome::Verified
    );
    assert!(
        engine
            .account("ann@x.io")
            .await
            .expect("get")
            .expect("ann")
            .verified
    );
    assert_eq!(
        engine.confirm_otp("ann@x.io", "h1", 3).await.expect("otp"),
        OtpOutcome::Missing,
        "a code works once"
    );

    // Too many wrong tries kill the code, even the right one; a new code starts afresh.
    let bob = account("u-bob", "bob@x.io");
    assert!(engine.create_account(&bob).await.expect("create"));
    engine
        .store_otp("bob@x.io", "h2", TTL)
        .await
        .expect("store");
    for left in [2, 1] {
        assert_eq!(
            engine.confirm_otp("bob@x.io", "bad", 3).await.expect("otp"),
            OtpOutcome::Wrong { tries_left: left }
        );
    }
    assert_eq!(
        engine.confirm_otp("bob@x.io", "bad", 3).await.expect("otp"),
        OtpOutcome::Locked
    );
    assert_eq!(
        engine.confirm_otp("bob@x.io", "h2", 3).await.expect("otp"),
        OtpOutcome::Locked
    );
    assert!(
        !engine
            .account("bob@x.io")
            .await
            .expect("get")
            .expect("bob")
            .verified
    );
    engine
        .store_otp("bob@x.io", "h3", TTL)
        .await
        .expect("store");
    assert_eq!(
        engine.confirm_otp("bob@x.io", "h3", 3).await.expect("otp"),
        OtpOutcome::Verified
    );

    // Codes expire.
    let cat = account("u-cat", "cat@x.io");
    assert!(engine.create_account(&cat).await.expect("create"));
    engine
        .store_otp("cat@x.io", "h4", Duration::from_millis(50))
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        engine.confirm_otp("cat@x.io", "h4", 3).await.expect("otp"),
        OtpOutcome::Missing
    );

    // Refresh tokens rotate; a rotated one presented again revokes the whole family.
    engine
        .store_refresh(&ann.id, "r1", TTL)
        .await
        .expect("store");
    engine
        .store_refresh(&ann.id, "s1", TTL)
        .await
        .expect("store");
    engine
        .store_refresh(&bob.id, "b1", TTL)
        .await
        .expect("store");
    assert_eq!(
        engine
            .rotate_refresh("r1", "r2", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Rotated(ann.id.clone())
    );
    assert_eq!(
        engine
            .rotate_refresh("r2", "r3", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Rotated(ann.id.clone())
    );
    assert_eq!(
        engine.rotate_refresh("r1", "x", TTL).await.expect("rotate"),
        RefreshOutcome::Reused(ann.id.clone())
    );
    for dead in ["r3", "s1", "x"] {
        assert_eq!(
            engine.rotate_refresh(dead, "y", TTL).await.expect("rotate"),
            RefreshOutcome::Unknown,
            "{dead} was revoked with its family"
        );
    }
    assert_eq!(
        engine
            .rotate_refresh("b1", "b2", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Rotated(bob.id.clone()),
        "other users keep their sessions"
    );
    assert_eq!(
        engine
            .rotate_refresh("never", "z", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Unknown
    );

    // Logout revokes one token, and is harmless twice.
    engine.revoke_refresh("b2").await.expect("revoke");
    engine.revoke_refresh("b2").await.expect("revoke");
    assert_eq!(
        engine
            .rotate_refresh("b2", "b3", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Unknown
    );

    // Refresh tokens expire.
    engine
        .store_refresh(&cat.id, "c1", Duration::from_millis(50))
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        engine
            .rotate_refresh("c1", "c2", TTL)
            .await
            .expect("rotate"),
        RefreshOutcome::Unknown
    );
}

#[tokio::test]
async fn memory_engine_keeps_accounts() {
    let engine = MemoryEngine::new(settings(), Arc::new(Hub::new()));
    account_suite(&engine).await;
}

#[tokio::test]
async fn redis_engine_keeps_accounts() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let engine = redis_engine(&redis, &stop).await;
    account_suite(&engine).await;

    // What sits in Redis is what docs/REDIS.md says.
    let mut conn = redis.client().await;
    let fields: std::collections::HashMap<String, String> =
        redis::AsyncCommands::hgetall(&mut conn, "user:ann@x.io")
            .await
            .expect("hgetall");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["createdAt", "id", "name", "passwordHash", "verified"]
    );
    assert_eq!(fields["verified"], "1");
    let email: String = redis::AsyncCommands::get(&mut conn, "user-id:u-ann")
        .await
        .expect("get");
    assert_eq!(email, "ann@x.io");
    stop.cancel();
}
