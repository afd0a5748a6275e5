//! A room's past on Redis (§5): the log list is the source of truth; the room's `:history`
//! hash holds the base (the board the log's first record applies to, once old ops are folded
//! into it), a snapshot every `snapshot_every` seqs (`s:<seq>`, derived: deleting them changes
//! no answer, only its cost) and the named versions (`v:<id>`). `lua/past.lua` reads what a
//! question needs in one call; the board is then folded in Rust by the one reducer,
//! [`history::Board::apply`].

use std::sync::Arc;

use async_trait::async_trait;
use redis::Value;

use super::{Inner, RedisEngine, bad_reply, next, number, tagged, text, texts};
use crate::domain::RoomId;
use crate::domain::history::{self, Version};
use crate::engine::{EngineError, EngineResult, History, OpsPage, Past};

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
        Ok(match past {
            Past::Found(Answer::Board(board)) => Past::Found(board),
            Past::Found(Answer::Ops { .. }) => return Err(bad_reply("ops for a board")),
            Past::Missing => Past::Missing,
            Past::Trimmed { oldest } => Past::Trimmed { oldest },
            Past::Ahead { seq } => Past::Ahead { seq },
        })
    }

    /// Derived history after op `seq` (a multiple of `snapshot_every`): its snapshot, built from
    /// the log, and the oldest ops folded into the base once more than the cap are kept.
    pub(super) async fn keep_history(&self, room: &RoomId, seq: u64) -> EngineResult<()> {
        let Past::Found(board) = self.board_at(room, Some(seq)).await? else {
            return Ok(());
        };
        let fold =
            history::fold_point(seq, self.settings.history_max, self.settings.snapshot_every)
                .map(|s| s.to_string())
                .unwrap_or_default();
        self.room_script(
            &self.scripts.keep,
            room,
            &[&seq.to_string(), &board.snapshot(), &fold],
        )
        .await?;
        Ok(())
    }
}

fn corrupt(e: history::HistoryError) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl RedisEngine {
    /// Called after each applied op: keeps the history's derived data off the op's own path.
    pub(super) fn after_op(&self, room: &RoomId, seq: u64) {
        let every = self.inner.settings.snapshot_every;
        if every == 0 || !seq.is_multiple_of(every) {
            return;
        }
        let inner: Arc<Inner> = self.inner.clone();
        let room = room.clone();
        self.tasks.spawn(async move {
            if let Err(e) = inner.keep_history(&room, seq).await {
                // Derived data: the next snapshot seq tries again, and answers stay right meanwhile.
                tracing::warn!(%room, seq, error = %e, "could not keep the room's history");
            }
        });
    }
}

#[async_trait]
impl History for RedisEngine {
    async fn ops(&self, room: &RoomId, since: u64, limit: usize) -> EngineResult<Past<OpsPage>> {
        let past = self.inner.past(room, "ops", Some(since), limit).await?;
        Ok(match past {
            Past::Found(Answer::Ops { epoch, records }) => Past::Found(OpsPage {
                epoch,
                next_since: since + records.len() as u64,
                records,
            }),
            Past::Found(Answer::Board(_)) => return Err(bad_reply("a board for ops")),
            Past::Missing => Past::Missing,
            Past::Trimmed { oldest } => Past::Trimmed { oldest },
            Past::Ahead { seq } => Past::Ahead { seq },
        })
    }

    async fn board_at(&self, room: &RoomId, at: Option<u64>) -> EngineResult<Past<history::Board>> {
        self.inner.board_at(room, at).await
    }

    async fn add_version(&self, room: &RoomId, version: &Version) -> EngineResult<bool> {
        let json =
            serde_json::to_string(version).map_err(|e| EngineError::Internal(e.to_string()))?;
        let reply = self
            .inner
            .room_script(
                &self.inner.scripts.versions,
                room,
                &["add", &version.version_id, &json],
            )
            .await?;
        let (tag, _) = tagged(reply)?;
        Ok(tag == "ok")
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
}
