//! Room settings, members, workspaces, room slots and activity in Redis (`docs/REDIS.md`).
//!
//! A room's settings are fields of its hash (`name`, `access`, `linkRole`, `workspace`; the owner
//! is `creator`) and its members a hash in its slot, so both live and die with the room. A role
//! check is one pipelined round trip (room fields, the user's room role, the user's workspace
//! roles), the same commands whether or not the room exists: a members-only room and a missing
//! one cost Redis the same.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{Inner, RedisEngine, bad_reply};
use crate::domain::access::{AccessMode, Control, Grants, Role, RoomSettings};
use crate::domain::activity::{date_text, parse_date};
use crate::domain::{RoomId, UserId};
use crate::engine::access::{Access, DayCount, RoomMeta, SettingsPatch, Workspace};
use crate::engine::{EngineResult, now_ms};

/// The room hash fields a role check reads, in this order.
const META_FIELDS: [&str; 7] = [
    "creator",
    "name",
    "access",
    "linkRole",
    "workspace",
    "createdAt",
    "expiresAt",
];

/// Sets settings fields of a room that exists: KEYS[1] room hash; ARGV field, value pairs.
pub(super) static UPDATE_ROOM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1",
    )
});

/// Sets or removes (`''`) a member of a room that exists, giving a new members hash the
/// room's remaining TTL: KEYS[1] room, KEYS[2] members; ARGV[1] user, ARGV[2] role.
pub(super) static ROOM_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[2], ARGV[1])
else redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1",
    )
});

/// Counts a room against an IP: KEYS[1] the IP's sorted set; ARGV[1] limit, ARGV[2] room,
/// ARGV[3] now (ms), ARGV[4..] rooms found gone. Atomic, so two instances cannot both take
/// the last slot.
pub(super) static CLAIM_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"for i = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1",
    )
});

/// Renames a workspace that exists: KEYS[1] workspace hash; ARGV[1] name.
pub(super) static RENAME_WORKSPACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1])
return 1",
    )
});

/// A room's settings from its hash fields (see [`META_FIELDS`]); `None` when it is gone.
fn room_meta(room: &RoomId, fields: &[Option<String>]) -> Option<RoomMeta> {
    let field = |i: usize| fields.get(i).cloned().flatten();
    let created_at = field(5)?.parse().ok()?;
    Some(RoomMeta {
        room_id: room.clone(),
        settings: RoomSettings {
            owner: UserId::new(field(0).unwrap_or_default()),
            name: field(1).unwrap_or_default(),
            access: field(2)
                .and_then(|a| AccessMode::parse(&a))
                .unwrap_or(AccessMode::Link),
            link_role: field(3)
                .and_then(|r| Role::grantable(&r))
                .unwrap_or(Role::Editor),
            workspace: field(4).filter(|w| !w.is_empty()),
        },
        created_at,
        expires_at: field(6)
            .and_then(|e| e.parse::<u64>().ok())
            .filter(|e| *e > 0),
    })
}

fn roles(map: HashMap<String, String>) -> Vec<(String, Role)> {
    let mut list: Vec<(String, Role)> = map
        .into_iter()
        .filter_map(|(k, v)| Role::parse(&v).map(|r| (k, r)))
        .collect();
    list.sort();
    list
}

fn workspace_of(id: &str, fields: &[Option<String>]) -> Option<Workspace> {
    let field = |i: usize| fields.get(i).cloned().flatten();
    Some(Workspace {
        id: id.to_owned(),
        name: field(0).unwrap_or_default(),
        owner: UserId::new(field(1)?),
        created_at: field(2).and_then(|c| c.parse().ok()).unwrap_or(0),
    })
}

impl Inner {
    /// Queues the commands of one role check on `pipe`: room fields, room role, workspace roles.
    fn queue_facts(&self, pipe: &mut redis::Pipeline, room: &RoomId, user: &UserId) {
        pipe.cmd("HMGET")
            .arg(self.keys.room(room))
            .arg(&META_FIELDS[..]);
        pipe.hget(self.keys.room_members(room), user.as_str());
    }

    async fn facts_of(
        &self,
        rooms: &[RoomId],
        user: &UserId,
    ) -> EngineResult<Vec<(Option<RoomMeta>, Grants)>> {
        // One round trip on one Redis; on a Cluster one pipeline per slot (the user's and
        // each room's), all at once.
        let mut groups = Vec::with_capacity(rooms.len() + 1);
        let mut first = redis::pipe();
        first.hgetall(self.keys.user_workspaces(user));
        groups.push(first);
        for room in rooms {
            let mut pipe = redis::pipe();
            self.queue_facts(&mut pipe, room, user);
            groups.push(pipe);
        }
        let reply = self.grouped(&groups).await?;
        let mut reply = reply.into_iter();
        let workspaces: HashMap<String, String> =
            redis::from_redis_value(reply.next().ok_or_else(|| bad_reply("short pipeline"))?)
                .map_err(|_| bad_reply("workspace roles"))?;
        let mut out = Vec::with_capacity(rooms.len());
        for room in rooms {
            let fields: Vec<Option<String>> =
                redis::from_redis_value(reply.next().ok_or_else(|| bad_reply("short pipeline"))?)
                    .map_err(|_| bad_reply("room fields"))?;
            let role: Option<String> =
                redis::from_redis_value(reply.next().ok_or_else(|| bad_reply("short pipeline"))?)
                    .map_err(|_| bad_reply("room role"))?;
            let meta = room_meta(room, &fields);
            let workspace = meta
                .as_ref()
                .and_then(|m| m.settings.workspace.as_ref())
                .and_then(|w| workspaces.get(w))
                .and_then(|r| Role::parse(r));
            let grants = Grants {
                room: meta.as_ref().and(role).and_then(|r| Role::grantable(&r)),
                workspace,
            };
            out.push((meta, grants));
        }
        Ok(out)
    }

    async fn metas(&self, rooms: &[RoomId]) -> EngineResult<Vec<Option<RoomMeta>>> {
        // An empty pipeline is not a valid query.
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let groups: Vec<redis::Pipeline> = rooms
            .iter()
            .map(|room| {
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(self.keys.room(room))
                    .arg(&META_FIELDS[..]);
                pipe
            })
            .collect();
        let reply = self.grouped(&groups).await?;
        rooms
            .iter()
            .zip(reply)
            .map(|(room, fields)| {
                let fields: Vec<Option<String>> =
                    redis::from_redis_value(fields).map_err(|_| bad_reply("room fields"))?;
                Ok(room_meta(room, &fields))
            })
            .collect()
    }
}

#[async_trait]
impl Access for RedisEngine {
    async fn room_facts(
        &self,
        room: &RoomId,
        user: &UserId,
    ) -> EngineResult<(Option<RoomMeta>, Grants)> {
        let mut facts = self
            .inner
            .facts_of(std::slice::from_ref(room), user)
            .await?;
        facts.pop().ok_or_else(|| bad_reply("no facts"))
    }

    async fn update_room(
        &self,
        room: &RoomId,
        patch: &SettingsPatch,
    ) -> EngineResult<Option<RoomMeta>> {
        let inner = &self.inner;
        let mut invocation = UPDATE_ROOM.prepare_invoke();
        invocation.key(inner.keys.room(room));
        if let Some(access) = patch.access {
            invocation.arg("access").arg(access.as_str());
        }
        if let Some(name) = &patch.name {
            invocation.arg("name").arg(name);
        }
        if let Some(role) = patch.link_role {
            invocation.arg("linkRole").arg(role.as_str());
        }
        if let Some(workspace) = &patch.workspace {
            invocation.arg("workspace").arg(workspace);
        }
        let done: i64 = inner.invoke(&invocation).await?;
        if done == 0 {
            return Ok(None);
        }
        let Some(meta) = inner
            .metas(std::slice::from_ref(room))
            .await?
            .pop()
            .flatten()
        else {
            return Ok(None);
        };
        let mut conn = inner.conn().await?;
        inner
            .with_timeout(
                conn.sadd::<_, _, ()>(inner.keys.user_rooms(&meta.settings.owner), room.as_str()),
            )
            .await?;
        Ok(Some(meta))
    }

    async fn set_room_member(
        &self,
        room: &RoomId,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<bool> {
        let inner = &self.inner;
        let mut invocation = ROOM_MEMBER.prepare_invoke();
        invocation
            .key(inner.keys.room(room))
            .key(inner.keys.room_members(room))
            .arg(user.as_str())
            .arg(role.map_or("", Role::as_str));
        let done: i64 = inner.invoke(&invocation).await?;
        if done == 0 {
            return Ok(false);
        }
        // The user's index is in the user's slot: a second command, not part of the script.
        // It is only a hint (rooms are checked when it is read), so a lost write costs nothing.
        let mut conn = inner.conn().await?;
        let key = inner.keys.user_rooms(user);
        if role.is_some() {
            inner
                .with_timeout(conn.sadd::<_, _, ()>(key, room.as_str()))
                .await?;
        } else {
            inner
                .with_timeout(conn.srem::<_, _, ()>(key, room.as_str()))
                .await?;
        }
        Ok(true)
    }

    async fn room_members(&self, room: &RoomId) -> EngineResult<Vec<(UserId, Role)>> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        let map: HashMap<String, String> = inner
            .with_timeout(conn.hgetall(inner.keys.room_members(room)))
            .await?;
        Ok(roles(map)
            .into_iter()
            .map(|(u, r)| (UserId::new(u), r))
            .collect())
    }

    async fn user_rooms(&self, user: &UserId) -> EngineResult<Vec<(RoomMeta, Grants)>> {
        let inner = &self.inner;
        let ids: Vec<String> = {
            let mut conn = inner.conn().await?;
            inner
                .with_timeout(conn.smembers(inner.keys.user_rooms(user)))
                .await?
        };
        let rooms: Vec<RoomId> = ids.iter().filter_map(|r| RoomId::parse(r)).collect();
        let facts = inner.facts_of(&rooms, user).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (room, (meta, grants)) in rooms.iter().zip(facts) {
            match meta {
                Some(meta) => out.push((meta, grants)),
                None => gone.push(room.as_str().to_owned()),
            }
        }
        if !gone.is_empty() {
            let mut conn = inner.conn().await?;
            inner
                .with_timeout(conn.srem::<_, _, ()>(inner.keys.user_rooms(user), gone))
                .await?;
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0.created_at));
        Ok(out)
    }

    async fn delete_room(&self, room: &RoomId) -> EngineResult<bool> {
        let inner = &self.inner;
        // Per-user lists (`:undo:<userId>`) are not known by name: find every key of the room
        // (on a Cluster, only on the node owning the room's slot, where they all are).
        let room_key = inner.keys.room(room);
        let mut keys: Vec<String> = inner
            .scan(&inner.keys.room_pattern(room), None, Some(&room_key))
            .await?;
        keys.push(room_key);
        let mut conn = inner.conn().await?;
        let deleted: u64 = inner
            .with_timeout(redis::cmd("UNLINK").arg(&keys).query_async(&mut conn))
            .await?;
        Ok(deleted > 0)
    }

    async fn publish_control(&self, room: &RoomId, control: &Control) -> EngineResult<()> {
        let inner = &self.inner;
        let mut conn = inner.hot();
        // SPUBLISH in sharded mode, like every other room event.
        let mut publish = redis::cmd(inner.feed.publish_command());
        publish.arg(inner.keys.channel(room)).arg(control.record());
        inner
            .with_timeout(publish.query_async::<()>(&mut conn))
            .await
    }

    async fn claim_room_slot(&self, ip: &str, room: &RoomId, limit: u32) -> EngineResult<bool> {
        let inner = &self.inner;
        let key = inner.keys.room_slots(ip);
        let held: Vec<String> = {
            let mut conn = inner.conn().await?;
            inner.with_timeout(conn.zrange(&key, 0, -1)).await?
        };
        // Which counted rooms are gone (expired or deleted) is read outside the script: room
        // keys live in other slots. A room id is never reused, so one found gone stays gone.
        let gone: Vec<&String> = if held.is_empty() {
            Vec::new()
        } else {
            let checks: Vec<redis::Pipeline> = held
                .iter()
                .map(|id| {
                    let mut pipe = redis::pipe();
                    match RoomId::parse(id) {
                        Some(r) => pipe.exists(inner.keys.room(&r)),
                        None => pipe.exists(""),
                    };
                    pipe
                })
                .collect();
            let alive = inner.grouped(&checks).await?;
            held.iter()
                .zip(alive)
                .filter_map(|(id, alive)| (alive != redis::Value::Int(1)).then_some(id))
                .collect()
        };
        let mut invocation = CLAIM_SLOT.prepare_invoke();
        invocation
            .key(&key)
            .arg(limit)
            .arg(room.as_str())
            .arg(now_ms());
        for id in gone {
            invocation.arg(id);
        }
        let claimed: i64 = inner.invoke(&invocation).await?;
        Ok(claimed == 1)
    }

    async fn create_workspace(&self, owner: &UserId, name: &str) -> EngineResult<Workspace> {
        let inner = &self.inner;
        let workspace = Workspace {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            owner: owner.clone(),
            created_at: now_ms(),
        };
        let mut pipe = redis::pipe();
        let mut owner_copy = redis::pipe();
        pipe.hset_multiple(
            inner.keys.workspace(&workspace.id),
            &[
                ("name", workspace.name.clone()),
                ("owner", owner.to_string()),
                ("createdAt", workspace.created_at.to_string()),
            ],
        )
        .hset(
            inner.keys.workspace_members(&workspace.id),
            owner.as_str(),
            Role::Owner.as_str(),
        );
        // The owner's copy is in the owner's slot.
        owner_copy.hset(
            inner.keys.user_workspaces(owner),
            &workspace.id,
            Role::Owner.as_str(),
        );
        inner.grouped(&[pipe, owner_copy]).await?;
        Ok(workspace)
    }

    async fn workspace(
        &self,
        id: &str,
        user: &UserId,
    ) -> EngineResult<Option<(Workspace, Option<Role>)>> {
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(inner.keys.workspace(id))
            .arg(&["name", "owner", "createdAt"][..])
            .hget(inner.keys.workspace_members(id), user.as_str());
        let mut conn = inner.conn().await?;
        let (fields, role): (Vec<Option<String>>, Option<String>) =
            inner.with_timeout(pipe.query_async(&mut conn)).await?;
        Ok(workspace_of(id, &fields).map(|w| (w, role.and_then(|r| Role::parse(&r)))))
    }

    async fn rename_workspace(&self, id: &str, name: &str) -> EngineResult<Option<Workspace>> {
        let inner = &self.inner;
        let mut invocation = RENAME_WORKSPACE.prepare_invoke();
        invocation.key(inner.keys.workspace(id)).arg(name);
        let done: i64 = inner.invoke(&invocation).await?;
        if done == 0 {
            return Ok(None);
        }
        let mut conn = inner.conn().await?;
        let fields: Vec<Option<String>> = inner
            .with_timeout(
                redis::cmd("HMGET")
                    .arg(inner.keys.workspace(id))
                    .arg(&["name", "owner", "createdAt"][..])
                    .query_async(&mut conn),
            )
            .await?;
        Ok(workspace_of(id, &fields))
    }

    async fn delete_workspace(&self, id: &str) -> EngineResult<Vec<RoomId>> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        let (rooms, members): (Vec<String>, Vec<String>) = inner
            .with_timeout(
                redis::pipe()
                    .smembers(inner.keys.workspace_rooms(id))
                    .hkeys(inner.keys.workspace_members(id))
                    .query_async(&mut conn),
            )
            .await?;
        drop(conn);
        let rooms: Vec<RoomId> = rooms.iter().filter_map(|r| RoomId::parse(r)).collect();
        // The workspace's keys, each member's copy and each room: a slot each on a Cluster.
        let mut groups = Vec::with_capacity(1 + members.len() + rooms.len());
        let mut own = redis::pipe();
        own.del(&[
            inner.keys.workspace(id),
            inner.keys.workspace_members(id),
            inner.keys.workspace_rooms(id),
        ]);
        groups.push(own);
        for member in &members {
            let mut pipe = redis::pipe();
            pipe.hdel(
                inner.keys.user_workspaces(&UserId::new(member.as_str())),
                id,
            );
            groups.push(pipe);
        }
        for room in &rooms {
            let mut pipe = redis::pipe();
            pipe.hdel(inner.keys.room(room), "workspace");
            groups.push(pipe);
        }
        inner.grouped(&groups).await?;
        Ok(rooms)
    }

    async fn set_workspace_member(
        &self,
        id: &str,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<()> {
        let inner = &self.inner;
        // Two copies, the workspace's list and the user's (which role checks read): in one
        // MULTI on a single Redis; two slots on a Cluster, so two commands there, the user's
        // copy (the one role checks read) last, so a role is never granted before it is listed.
        let mut list = redis::pipe();
        let mut copy = redis::pipe();
        match role {
            Some(role) => {
                list.hset(
                    inner.keys.workspace_members(id),
                    user.as_str(),
                    role.as_str(),
                );
                copy.hset(inner.keys.user_workspaces(user), id, role.as_str());
            }
            None => {
                list.hdel(inner.keys.workspace_members(id), user.as_str());
                copy.hdel(inner.keys.user_workspaces(user), id);
            }
        }
        if inner.store.is_cluster() {
            inner.grouped(&[list]).await?;
            inner.grouped(&[copy]).await?;
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for cmd in list.cmd_iter().chain(copy.cmd_iter()) {
            pipe.add_command(cmd.clone());
        }
        let mut conn = inner.conn().await?;
        inner.with_timeout(pipe.query_async::<()>(&mut conn)).await
    }

    async fn workspace_members(&self, id: &str) -> EngineResult<Vec<(UserId, Role)>> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        let map: HashMap<String, String> = inner
            .with_timeout(conn.hgetall(inner.keys.workspace_members(id)))
            .await?;
        Ok(roles(map)
            .into_iter()
            .map(|(u, r)| (UserId::new(u), r))
            .collect())
    }

    async fn user_workspaces(&self, user: &UserId) -> EngineResult<Vec<(Workspace, Role)>> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        let map: HashMap<String, String> = inner
            .with_timeout(conn.hgetall(inner.keys.user_workspaces(user)))
            .await?;
        let list = roles(map);
        if list.is_empty() {
            return Ok(Vec::new());
        }
        drop(conn);
        let groups: Vec<redis::Pipeline> = list
            .iter()
            .map(|(id, _)| {
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(inner.keys.workspace(id))
                    .arg(&["name", "owner", "createdAt"][..]);
                pipe
            })
            .collect();
        let fields: Vec<Vec<Option<String>>> = inner
            .grouped(&groups)
            .await?
            .into_iter()
            .map(|v| redis::from_redis_value(v).map_err(|_| bad_reply("workspace fields")))
            .collect::<EngineResult<_>>()?;
        let mut out: Vec<(Workspace, Role)> = list
            .iter()
            .zip(fields)
            .filter_map(|((id, role), f)| workspace_of(id, &f).map(|w| (w, *role)))
            .collect();
        out.sort_by_key(|w| w.0.created_at);
        Ok(out)
    }

    async fn add_workspace_room(&self, id: &str, room: &RoomId) -> EngineResult<()> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        inner
            .with_timeout(conn.sadd(inner.keys.workspace_rooms(id), room.as_str()))
            .await
    }

    async fn workspace_rooms(&self, id: &str) -> EngineResult<Vec<RoomMeta>> {
        let inner = &self.inner;
        let ids: Vec<String> = {
            let mut conn = inner.conn().await?;
            inner
                .with_timeout(conn.smembers(inner.keys.workspace_rooms(id)))
                .await?
        };
        let rooms: Vec<RoomId> = ids.iter().filter_map(|r| RoomId::parse(r)).collect();
        let metas = inner.metas(&rooms).await?;
        let mut out: Vec<RoomMeta> = metas.into_iter().flatten().collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    async fn add_activity(&self, counts: &[DayCount]) -> EngineResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        // One round trip on one Redis; per user's slot on a Cluster.
        let groups: Vec<redis::Pipeline> = counts
            .iter()
            .map(|c| {
                let mut pipe = redis::pipe();
                pipe.hincr(inner.keys.user_activity(&c.user), date_text(c.day), c.ops);
                pipe
            })
            .collect();
        inner.grouped(&groups).await?;
        Ok(())
    }

    async fn activity(&self, user: &UserId, from: i64, to: i64) -> EngineResult<Vec<(i64, u64)>> {
        let inner = &self.inner;
        let mut conn = inner.conn().await?;
        let map: HashMap<String, u64> = inner
            .with_timeout(conn.hgetall(inner.keys.user_activity(user)))
            .await?;
        let mut days: Vec<(i64, u64)> = map
            .iter()
            .filter_map(|(date, n)| parse_date(date).map(|d| (d, *n)))
            .filter(|(d, _)| (from..=to).contains(d))
            .collect();
        days.sort_unstable();
        Ok(days)
    }
}
