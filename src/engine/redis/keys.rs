//! The only place a Redis key or channel name is spelled (`docs/REDIS.md` lists them all).
//!
//! Room keys carry the room id in braces, a Redis Cluster hash tag, so every key and the
//! channel of one room live in one slot and a script may touch them all; a user's keys carry
//! the user id likewise. With `redis_mode = cluster` the account keys get tags too (each
//! address's keys in one slot, every refresh-token key in one slot): a single Redis keeps
//! their old names, so upgrading one loses no account or session.

use crate::config::RedisMode;
use crate::domain::{RoomId, UserId};

/// The one hash tag of every refresh-token key in a cluster: rotation, reuse detection and the
/// revocation of a whole family stay one atomic script (`docs/REDIS.md`, "Redis Cluster").
const TOKENS_TAG: &str = "{tokens}";

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    /// Whether account keys carry hash tags (`redis_mode = cluster`).
    tagged: bool,
}

impl Keys {
    pub fn new(prefix: &str, mode: RedisMode) -> Self {
        Self {
            prefix: prefix.to_owned(),
            tagged: mode == RedisMode::Cluster,
        }
    }

    /// `<kind>:<subject>`, or `<kind>:{<subject>}` in a cluster (its own slot).
    fn own_slot(&self, kind: &str, subject: &str) -> String {
        if self.tagged {
            format!("{}{kind}:{{{subject}}}", self.prefix)
        } else {
            format!("{}{kind}:{subject}", self.prefix)
        }
    }

    /// `<kind>:`, or `<kind>:{tokens}:` in a cluster, for a refresh-token key to follow.
    fn token_prefix(&self, kind: &str) -> String {
        if self.tagged {
            format!("{}{kind}:{TOKENS_TAG}:", self.prefix)
        } else {
            format!("{}{kind}:", self.prefix)
        }
    }

    /// Metadata hash: createdAt, expiresAt, creator, epoch, seq.
    pub fn room(&self, room: &RoomId) -> String {
        format!("{}room:{{{room}}}", self.prefix)
    }

    /// The eight keys of a room, in the order the scripts expect (`lua/prelude.lua`).
    pub fn room_keys(&self, room: &RoomId) -> [String; 8] {
        let base = self.room(room);
        [
            base.clone(),
            format!("{base}:strokes"),
            format!("{base}:log"),
            format!("{base}:users"),
            format!("{base}:ops"),
            format!("{base}:edges"),
            format!("{base}:history"),
            format!("{base}:ops-prev"),
        ]
    }

    /// Sorted set: rooms the last connection left, scored by when (unix ms); compaction reads it.
    pub fn idle_rooms(&self) -> String {
        format!("{}rooms:idle", self.prefix)
    }

    /// What every room's keys match (and only the room hash itself is `room:{id}`).
    pub fn rooms_pattern(&self) -> String {
        format!("{}room:{{*}}", self.prefix)
    }

    /// What a v1 gateway's stroke lists match (the board keeps a hash under the same name).
    pub fn v1_strokes_pattern(&self) -> String {
        format!("{}room:*:strokes", self.prefix)
    }

    /// The room whose `:strokes` key this is.
    pub fn room_of_strokes_key(&self, key: &str) -> Option<RoomId> {
        let inner = key
            .strip_prefix(&self.prefix)?
            .strip_prefix("room:{")?
            .strip_suffix("}:strokes")?;
        RoomId::parse(inner)
    }

    /// A v1 gateway's redo stacks of a room, removed when the room moves to the board layout.
    pub fn v1_redo_stacks(&self, room: &RoomId) -> String {
        format!("{}:undone", self.room(room))
    }

    /// A user's undo and redo lists in a room (seqs of their ops, newest last).
    pub fn user_lists(&self, room: &RoomId, user: &UserId) -> [String; 2] {
        let base = self.room(room);
        [format!("{base}:undo:{user}"), format!("{base}:redo:{user}")]
    }

    /// The room's own members: user id → role (`editor`, `viewer`). In the room's slot, and
    /// refreshed with the room's other keys, so it expires with the room.
    pub fn room_members(&self, room: &RoomId) -> String {
        format!("{}:members", self.room(room))
    }

    /// What every key of a room matches (the per-user lists included), for deleting a room.
    pub fn room_pattern(&self, room: &RoomId) -> String {
        format!("{}:*", self.room(room))
    }

    /// A user's keys share a hash tag of their own (`user:{<id>}:…`), so all of one user's
    /// keys live in one slot. (Account keys are `user:<email>`: an e-mail holds an `@`, a user
    /// id never does, so the two cannot meet.)
    fn user_base(&self, user: &UserId) -> String {
        format!("{}user:{{{user}}}", self.prefix)
    }

    /// The rooms a user owns or was given a role in (a set; rooms that are gone are dropped
    /// when it is read).
    pub fn user_rooms(&self, user: &UserId) -> String {
        format!("{}:rooms", self.user_base(user))
    }

    /// A user's workspaces: workspace id → role, the copy a role check reads in the same
    /// round trip as the room.
    pub fn user_workspaces(&self, user: &UserId) -> String {
        format!("{}:workspaces", self.user_base(user))
    }

    /// A user's sequenced ops per UTC day: `YYYY-MM-DD` → count.
    pub fn user_activity(&self, user: &UserId) -> String {
        format!("{}:activity", self.user_base(user))
    }

    /// A workspace: name, owner, createdAt.
    pub fn workspace(&self, id: &str) -> String {
        format!("{}workspace:{{{id}}}", self.prefix)
    }

    /// A workspace's members: user id → role.
    pub fn workspace_members(&self, id: &str) -> String {
        format!("{}:members", self.workspace(id))
    }

    /// A workspace's rooms (a set of room ids).
    pub fn workspace_rooms(&self, id: &str) -> String {
        format!("{}:rooms", self.workspace(id))
    }

    /// The rooms counted against a client IP: room id scored by creation time (unix ms).
    pub fn room_slots(&self, ip: &str) -> String {
        format!("{}room-slots:{ip}", self.prefix)
    }

    /// The channel a room's events are published on (same name as its hash: channels and keys
    /// are separate namespaces).
    pub fn channel(&self, room: &RoomId) -> String {
        self.room(room)
    }

    pub fn channel_pattern(&self) -> String {
        format!("{}room:*", self.prefix)
    }

    /// The room a channel belongs to, if it is one of ours.
    pub fn room_of_channel(&self, channel: &str) -> Option<RoomId> {
        let inner = channel
            .strip_prefix(&self.prefix)?
            .strip_prefix("room:{")?
            .strip_suffix('}')?;
        RoomId::parse(inner)
    }

    pub fn instance(&self, instance: &str) -> String {
        format!("{}instance:{instance}", self.prefix)
    }

    pub fn rate(&self, kind: &str, subject: &str) -> String {
        format!("{}rl:{kind}:{subject}", self.prefix)
    }

    /// Account hash: id, name, passwordHash, verified, createdAt. In a cluster, in the
    /// address's slot with its pending code, so a code check is one script.
    pub fn user(&self, email: &str) -> String {
        self.own_slot("user", email)
    }

    /// User id → e-mail, to find the account behind a refresh token. Written apart from the
    /// account (another slot in a cluster): a mapping whose account now has another id is
    /// ignored when read, so one left behind is harmless.
    pub fn user_id(&self, user: &UserId) -> String {
        self.own_slot("user-id", user.as_str())
    }

    /// The pending one-time code of an address: codeHash, tries.
    pub fn otp(&self, email: &str) -> String {
        self.own_slot("otp", email)
    }

    /// A live refresh token: the user id, under the token's sha256.
    pub fn refresh(&self, hash: &str) -> String {
        format!("{}{hash}", self.refresh_prefix())
    }

    /// Scripts append a stored hash to this to reach a token's key.
    pub fn refresh_prefix(&self) -> String {
        self.token_prefix("refresh")
    }

    /// A rotated refresh token, remembered (user id) so that its reuse is recognised.
    pub fn refresh_used(&self, hash: &str) -> String {
        format!("{}{hash}", self.token_prefix("refresh-used"))
    }

    /// A token rotated moments ago: its successor sealed with it, for the grace window.
    pub fn refresh_grace(&self, hash: &str) -> String {
        format!("{}{hash}", self.token_prefix("refresh-grace"))
    }

    /// When a user's refresh-token family was last revoked (Unix seconds).
    pub fn revoked(&self, user: &UserId) -> String {
        format!("{}{user}", self.revoked_prefix())
    }

    /// Scripts append a user id (read from a token's key) to this.
    pub fn revoked_prefix(&self) -> String {
        self.token_prefix("revoked")
    }

    /// The set of a user's live refresh token hashes.
    pub fn refresh_family(&self, user: &UserId) -> String {
        format!("{}{user}", self.refresh_family_prefix())
    }

    /// Scripts append a user id (read from a token's key) to this to reach its family.
    pub fn refresh_family_prefix(&self) -> String {
        self.token_prefix("refresh-family")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_share_the_hash_tag_in_script_order() {
        let keys = Keys::new("p:", RedisMode::Standalone);
        let room = RoomId::new("3f2a");
        assert_eq!(
            keys.room_keys(&room),
            [
                "p:room:{3f2a}",
                "p:room:{3f2a}:strokes",
                "p:room:{3f2a}:log",
                "p:room:{3f2a}:users",
                "p:room:{3f2a}:ops",
                "p:room:{3f2a}:edges",
                "p:room:{3f2a}:history",
                "p:room:{3f2a}:ops-prev",
            ]
        );
        assert_eq!(
            keys.user_lists(&room, &UserId::new("u1")),
            ["p:room:{3f2a}:undo:u1", "p:room:{3f2a}:redo:u1"]
        );
        assert_eq!(keys.room_of_channel("p:room:{3f2a}"), Some(room.clone()));
        assert_eq!(
            keys.room_of_strokes_key("p:room:{3f2a}:strokes"),
            Some(room)
        );
        assert_eq!(keys.room_of_channel("room:{3f2a}"), None);
        assert_eq!(keys.channel_pattern(), "p:room:*");
    }

    #[test]
    fn account_keys() {
        let keys = Keys::new("p:", RedisMode::Standalone);
        let user = UserId::new("u1");
        assert_eq!(keys.user("a@b.io"), "p:user:a@b.io");
        assert_eq!(keys.user_id(&user), "p:user-id:u1");
        assert_eq!(keys.otp("a@b.io"), "p:otp:a@b.io");
        assert_eq!(keys.refresh("ab12"), "p:refresh:ab12");
        assert_eq!(keys.refresh_used("ab12"), "p:refresh-used:ab12");
        assert_eq!(keys.refresh_family(&user), "p:refresh-family:u1");
        assert_eq!(keys.refresh_grace("ab12"), "p:refresh-grace:ab12");
        assert_eq!(keys.revoked(&user), "p:revoked:u1");
        // A cluster: each address in its own slot, every token key in one.
        let keys = Keys::new("p:", RedisMode::Cluster);
        assert_eq!(keys.user("a@b.io"), "p:user:{a@b.io}");
        assert_eq!(keys.otp("a@b.io"), "p:otp:{a@b.io}");
        assert_eq!(keys.user_id(&user), "p:user-id:{u1}");
        assert_eq!(keys.refresh("ab12"), "p:refresh:{tokens}:ab12");
        assert_eq!(keys.refresh_used("ab12"), "p:refresh-used:{tokens}:ab12");
        assert_eq!(keys.refresh_grace("ab12"), "p:refresh-grace:{tokens}:ab12");
        assert_eq!(keys.refresh_family(&user), "p:refresh-family:{tokens}:u1");
        assert_eq!(keys.revoked(&user), "p:revoked:{tokens}:u1");
        assert_eq!(keys.user_rooms(&user), "p:user:{u1}:rooms");
    }

    #[test]
    fn access_keys_keep_a_room_or_a_user_in_one_slot() {
        let keys = Keys::new("p:", RedisMode::Standalone);
        let room = RoomId::new("3f2a");
        let user = UserId::new("u1");
        assert_eq!(keys.room_members(&room), "p:room:{3f2a}:members");
        assert_eq!(keys.room_pattern(&room), "p:room:{3f2a}:*");
        assert_eq!(keys.user_rooms(&user), "p:user:{u1}:rooms");
        assert_eq!(keys.user_workspaces(&user), "p:user:{u1}:workspaces");
        assert_eq!(keys.user_activity(&user), "p:user:{u1}:activity");
        assert_eq!(keys.workspace("w1"), "p:workspace:{w1}");
        assert_eq!(keys.workspace_members("w1"), "p:workspace:{w1}:members");
        assert_eq!(keys.workspace_rooms("w1"), "p:workspace:{w1}:rooms");
        assert_eq!(keys.room_slots("10.0.0.1"), "p:room-slots:10.0.0.1");
        // A room's channel pattern must not take user keys for rooms.
        assert_eq!(keys.room_of_channel("p:user:{u1}:rooms"), None);
    }
}
