//! `drawbridge backup --out DIR` and `drawbridge restore --from DIR` (§5, "backups"): every room
//! as its `export.json` document plus its versions and its access settings and members (§6),
//! one file per room under `DIR/rooms/`.
//!
//! Backups are incremental: `DIR/index.json` remembers what each room's file holds (its seq and
//! its versions), and a room that has not changed since is not read whole again nor rewritten. A
//! room that has expired keeps its last file: boards are kept indefinitely. Files are written to
//! a temporary name and renamed, so a backup cut short leaves every file whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::domain::access::{AccessMode, Role};
use crate::domain::history::RoomDump;
use crate::domain::{RoomId, UserId};
use crate::engine::access::{RoomMeta, SettingsPatch};
use crate::engine::redis::{RedisEngine, RedisSettings};
use crate::engine::{Access, EngineSettings, History};
use crate::hub::Hub;

/// What one backup run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub rooms: usize,
    pub written: usize,
    pub unchanged: usize,
}

/// A room's access settings and members, as a backup file carries them beside the board.
fn access_json(meta: Option<&RoomMeta>, members: &[(UserId, Role)]) -> Value {
    let settings = meta.map(|m| {
        json!({
            "name": m.settings.name,
            "access": m.settings.access,
            "linkRole": m.settings.link_role,
            "workspace": m.settings.workspace,
        })
    });
    let members: Vec<Value> = members
        .iter()
        .map(|(user, role)| json!({"userId": user, "role": role}))
        .collect();
    json!({"settings": settings, "members": members})
}

/// What a room's file holds, to tell whether it changed: its seq, versions and access.
fn fingerprint(dump: &RoomDump, access: &Value) -> String {
    let versions: Vec<&str> = dump
        .versions
        .iter()
        .map(|v| v.version_id.as_str())
        .collect();
    format!("{}|{}|{access}", dump.board.seq, versions.join(","))
}

fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.json")
}

fn room_path(dir: &Path, room: &str) -> PathBuf {
    dir.join("rooms").join(format!("{room}.json"))
}

/// Writes `text` to `path` whole or not at all.
fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Backs up every room that changed since the last run into `dir`.
pub async fn backup(
    history: &dyn History,
    access: &dyn Access,
    dir: &Path,
) -> Result<BackupReport, String> {
    std::fs::create_dir_all(dir.join("rooms")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut index: BTreeMap<String, String> = match std::fs::read_to_string(index_path(dir)) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("index.json: {e}"))?,
        Err(_) => BTreeMap::new(),
    };
    let mut report = BackupReport::default();
    for room in history.room_ids().await.map_err(|e| e.to_string())? {
        // Gone since it was listed (expired, deleted): its last file stays.
        let Some(dump) = history.dump(&room).await.map_err(|e| e.to_string())? else {
            continue;
        };
        report.rooms += 1;
        let err = |e: crate::engine::EngineError| e.to_string();
        let (meta, _) = access.room_facts(&room, &dump.creator).await.map_err(err)?;
        let members = access.room_members(&room).await.map_err(err)?;
        let extra = access_json(meta.as_ref(), &members);
        let print = fingerprint(&dump, &extra);
        if index.get(room.as_str()) == Some(&print) && room_path(dir, room.as_str()).exists() {
            report.unchanged += 1;
            continue;
        }
        let mut more = serde_json::Map::new();
        more.insert("access".into(), extra);
        write_whole(&room_path(dir, room.as_str()), &dump.to_json_with(more))?;
        index.insert(room.to_string(), print);
        report.written += 1;
    }
    let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
    write_whole(&index_path(dir), &text)?;
    Ok(report)
}

/// Loads every room file of `dir` back, its access settings and members too; returns how many
/// rooms were restored.
pub async fn restore(
    history: &dyn History,
    access: &dyn Access,
    dir: &Path,
) -> Result<usize, String> {
    let rooms = dir.join("rooms");
    let entries = std::fs::read_dir(&rooms).map_err(|e| format!("{}: {e}", rooms.display()))?;
    let mut restored = 0;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dump = RoomDump::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        history.load(&dump).await.map_err(|e| e.to_string())?;
        restore_access(access, &dump.room_id, &text)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        restored += 1;
    }
    Ok(restored)
}

/// Puts back what `access_json` saved (a file without it leaves the room's defaults).
async fn restore_access(access: &dyn Access, room: &RoomId, text: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Settings {
        name: String,
        access: AccessMode,
        link_role: Role,
        workspace: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Member {
        user_id: UserId,
        role: Role,
    }
    #[derive(Deserialize, Default)]
    struct Saved {
        settings: Option<Settings>,
        #[serde(default)]
        members: Vec<Member>,
    }
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        access: Option<Saved>,
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let saved = doc.access.unwrap_or_default();
    let err = |e: crate::engine::EngineError| e.to_string();
    if let Some(s) = saved.settings {
        let patch = SettingsPatch {
            name: Some(s.name),
            access: Some(s.access),
            link_role: Some(s.link_role),
            workspace: s.workspace,
        };
        access.update_room(room, &patch).await.map_err(err)?;
    }
    for m in saved.members {
        access
            .set_room_member(room, &m.user_id, Some(m.role))
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// The Redis engine a one-shot command works through; stopped by cancelling `stop`.
pub async fn engine(
    config: &Config,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<RedisEngine, String> {
    if config.redis_url.is_empty() {
        return Err(
            "backup and restore need redis_url: the in-memory engine lives in one process".into(),
        );
    }
    let instance = format!("backup-{}", uuid::Uuid::new_v4().simple());
    let settings = EngineSettings::from_config(config, instance);
    let redis = RedisSettings {
        url: config.redis_url.clone(),
        mode: config.redis_mode,
        key_prefix: config.key_prefix.clone(),
        pool_size: 2,
        heartbeat: Duration::from_secs(config.heartbeat_secs),
        // What it writes is published as the gateways of this deployment subscribe to it.
        pubsub_mode: config.pubsub_mode,
        pubsub_linger: Duration::from_millis(config.pubsub_linger_ms),
        tls_ca: config.redis_tls_ca.clone(),
        wait_replicas: config.redis_wait_replicas,
        wait_timeout: Duration::from_millis(config.redis_wait_ms),
    };
    RedisEngine::start(
        &redis,
        settings,
        std::sync::Arc::new(Hub::new()),
        tasks,
        stop,
    )
    .await
    .map_err(|e| e.to_string())
}
