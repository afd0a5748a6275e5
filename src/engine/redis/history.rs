//! A room's past on Redis (§5): the log list is the source of truth; the room's `:history`
//! hash holds the base (the board the log's first record applies to, once old ops are folded
//! into it), the index of the snapshots (`s:<seq>`: each a copy of the board hash in
//! `:snap:<seq>`, taken and folded by `lua/apply.lua` as the op that makes one due commits,
//! spaced as `history::snapshot_due` says, the newest named with its size in `last`; derived:
//! deleting them changes no answer, only its cost) and the named versions (`v:<id>`). `lua/past.lua` reads what a question needs in one call; the board is
//! then folded in Rust by the one reducer, [`history::Board::apply`].

use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Value};

use super::board::edge_index_value;
use super::{Inner, RedisEngine, bad_reply, next, number, tagged, text, texts};
use crate::domain::board::Effect;
use crate::domain::history::{self, RoomDump, Version};
use crate::domain::quota::Usage;
use crate::domain::{RoomId, UserId};
use crate::engine::{EngineError, EngineResult, History, OpsPage, Past, now_ms};

/// What `past.lua` found.
enum Answer {
    Ops { epoch: String, records: Vec<String> },
    Board(history::Board),
}

impl Inner {
    async fn past(
        &self,
        room: &RoomId,
        mode: &str,
        at: Option<u64>,
        limit: usize,
    ) -> EngineResult<Past<Answer>> {
        let at = at.map(|s| s.to_string()).unwrap_or_default();
        let reply = self
            .room_script(&self.scripts.past, room, &[mode, &at, &limit.to_string()])
            .await?;
        let (tag, mut items) = tagged(reply)?;
        let past = match tag.as_str() {
            "missing" => Past::Missing,
            "trimmed" => Past::Trimmed {
                oldest: number(next(&mut items)?)?,
            },
            "ahead" => Past::Ahead {
                seq: number(next(&mut items)?)?,
            },
            "ops" => {
                let epoch = text(next(&mut items)?)?;
                let records = texts(next(&mut items)?)?;
                Past::Found(Answer::Ops { epoch, records })
            }
            "now" => {
                let seq = number(next(&mut items)?)?;
                let stored: Vec<String> = texts(next(&mut items)?)?
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect();
                Past::Found(Answer::Board(
                    history::Board::from_stored(seq, &stored).map_err(corrupt)?,
                ))
            }
            "board" => {
                let mut board = match next(&mut items)? {
                    Value::Nil => history::Board::empty(),
                    v => history::Board::from_snapshot(&text(v)?).map_err(corrupt)?,
                };
                board
                    .apply_all(texts(next(&mut items)?)?)
                    .map_err(corrupt)?;
                Past::Found(Answer::Board(board))
            }
            other => return Err(bad_reply(other)),
        };
        Ok(past)
    }

    async fn board_at(&self, room: &RoomId, at: Option<u64>) -> EngineResult<Past<history::Board>> {
        let past = self.past(room, "board", at, 0).await?;
        past.try_map(|answer| match answer {
            Answer::Board(board) => Ok(board),
            Answer::Ops { .. } => Err(bad_reply("ops for a board")),
        })
    }
}

/// Whether a room script answered that the room is compacted.
pub(super) fn is_frozen(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => {
            matches!(items.first(), Some(Value::BulkString(tag)) if tag == b"frozen")
        }
        _ => false,
    }
}

impl Inner {
    /// Notes that nobody is in `room` any more, from now.
    pub(super) async fn mark_idle(&self, room: &RoomId) -> EngineResult<()> {
        let mut conn = self.conn().await?;
        let now = now_ms();
        self.with_timeout(conn.zadd::<_, _, _, ()>(self.keys.idle_rooms(), room.as_str(), now))
            .await
    }

    /// Rebuilds a compacted room's live keys from its frozen snapshot.
    pub(super) async fn thaw(&self, room: &RoomId) -> EngineResult<()> {
        let key = self.keys.room_keys(room)[6].clone();
        let mut conn = self.conn().await?;
        let frozen: Option<String> = self.with_timeout(conn.hget(&key, "frozen")).await?;
        drop(conn);
        let Some(frozen) = frozen else {
            return Ok(());
        };
        let board = history::Board::from_snapshot(&frozen).map_err(corrupt)?;
        let mut args = vec![board.len().to_string()];
        for element in board.elements() {
            args.push(element.id.to_string());
            args.push(history::stored(element));
            args.push(edge_index_value(element));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.invoke_room_once(&self.scripts.thaw, room, None, &args)
            .await?;
        // Thawed by a read or an op with nobody joined: it compacts again if it stays empty.
        self.mark_idle(room).await
    }

    /// Compacts rooms left empty before `older_than` ago; returns how many were compacted.
    pub(super) async fn compact_idle(&self, older_than: Duration) -> EngineResult<usize> {
        let key = self.keys.idle_rooms();
        let due = now_ms().saturating_sub(older_than.as_millis() as u64);
        let mut conn = self.conn().await?;
        let rooms: Vec<String> = self
            .with_timeout(conn.zrangebyscore_limit(&key, 0, due, 0, 200))
            .await?;
        drop(conn);
        let mut compacted = 0;
        for raw in rooms {
            if let Some(room) = RoomId::parse(&raw) {
                let reply = self
                    .invoke_room_once(&self.scripts.freeze, &room, None, &[])
                    .await?;
                compacted += usize::from(matches!(&reply, Value::BulkString(t) if t == b"frozen"));
            }
            // Busy or gone rooms leave the set too: the next last leave puts a room back.
            let mut conn = self.conn().await?;
            self.with_timeout(conn.zrem::<_, _, ()>(&key, &raw)).await?;
        }
        Ok(compacted)
    }
}

fn corrupt(e: history::HistoryError) -> EngineError {
    EngineError::Internal(e.to_string())
}

#[async_trait]
impl History for RedisEngine {
    async fn ops(&self, room: &RoomId, since: u64, limit: usize) -> EngineResult<Past<OpsPage>> {
        let past = self.inner.past(room, "ops", Some(since), limit).await?;
        past.try_map(|answer| match answer {
            Answer::Ops { epoch, records } => Ok(OpsPage {
                epoch,
                next_since: since + records.len() as u64,
                records,
            }),
            Answer::Board(_) => Err(bad_reply("a board for ops")),
        })
    }

    async fn board_at(&self, room: &RoomId, at: Option<u64>) -> EngineResult<Past<history::Board>> {
        self.inner.board_at(room, at).await
    }

    async fn add_version(&self, room: &RoomId, version: Version) -> EngineResult<Option<Version>> {
        let json =
            serde_json::to_string(&version).map_err(|e| EngineError::Internal(e.to_string()))?;
        let reply = self
            .inner
            .room_script(
                &self.inner.scripts.versions,
                room,
                &["add", &version.version_id, &json],
            )
            .await?;
        let (tag, mut items) = tagged(reply)?;
        if tag != "ok" {
            return Ok(None);
        }
        let seq = texts(next(&mut items)?)?
            .first()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| EngineError::Internal("versions.lua: no seq".into()))?;
        Ok(Some(Version { seq, ..version }))
    }

    async fn versions(&self, room: &RoomId) -> EngineResult<Option<Vec<Version>>> {
        let reply = self
            .inner
            .room_script(&self.inner.scripts.versions, room, &["list"])
            .await?;
        let (tag, mut items) = tagged(reply)?;
        if tag != "ok" {
            return Ok(None);
        }
        let mut list: Vec<Version> = texts(next(&mut items)?)?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        history::newest_first(&mut list);
        Ok(Some(list))
    }

    async fn compact_idle(&self, older_than: Duration) -> EngineResult<usize> {
        self.inner.compact_idle(older_than).await
    }

    async fn room_ids(&self) -> EngineResult<Vec<RoomId>> {
        let inner = &self.inner;
        // The pattern also matches a room's other hashes (`...}:strokes`): only the room hash
        // itself names a room. On a Cluster every master is scanned.
        let mut rooms: Vec<RoomId> = inner
            .scan(&inner.keys.rooms_pattern(), Some("hash"), None)
            .await?
            .iter()
            .filter_map(|k| inner.keys.room_of_channel(k))
            .collect();
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    async fn dump(&self, room: &RoomId) -> EngineResult<Option<RoomDump>> {
        let reply = self
            .inner
            .room_script(&self.inner.scripts.dump, room, &[])
            .await?;
        let (tag, mut items) = tagged(reply)?;
        if tag != "ok" {
            return Ok(None);
        }
        let created_at = text(next(&mut items)?)?.parse().unwrap_or(0);
        let creator = UserId::new(text(next(&mut items)?)?);
        let seq = number(next(&mut items)?)?;
        let stored: Vec<String> = texts(next(&mut items)?)?
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let mut versions: Vec<Version> = texts(next(&mut items)?)?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        history::newest_first(&mut versions);
        let board = match next(&mut items)? {
            Value::Nil => history::Board::from_stored(seq, &stored),
            frozen => history::Board::from_snapshot(&text(frozen)?),
        }
        .map_err(corrupt)?;
        Ok(Some(RoomDump {
            room_id: room.clone(),
            created_at,
            creator,
            board,
            versions,
        }))
    }

    async fn load(&self, dump: &RoomDump) -> EngineResult<()> {
        let board = &dump.board;
        let ztop = board
            .elements()
            .iter()
            .filter_map(|e| e.z)
            .fold(0.0_f64, |top, z| top.max(z.floor()));
        let mut args = vec![
            dump.created_at.to_string(),
            dump.creator.to_string(),
            uuid::Uuid::new_v4().simple().to_string(),
            board.seq.to_string(),
            format!("{ztop:.0}"),
            board.snapshot(),
            board.len().to_string(),
        ];
        for element in board.elements() {
            args.push(element.id.to_string());
            args.push(history::stored(element));
            args.push(edge_index_value(element));
        }
        let all = Effect::Add(board.elements().into_iter().cloned().collect());
        let usage = Usage::of(&all, |_| None);
        args.push((usage.users.len() + 1).to_string());
        args.push("bytes".into());
        args.push(usage.bytes.to_string());
        for (user, bytes) in &usage.users {
            args.push(format!("b:{user}"));
            args.push(bytes.to_string());
        }
        for version in &dump.versions {
            args.push(version.version_id.clone());
            args.push(
                serde_json::to_string(version).map_err(|e| EngineError::Internal(e.to_string()))?,
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.inner
            .room_script(&self.inner.scripts.load, &dump.room_id, &args)
            .await?;
        Ok(())
    }
}
