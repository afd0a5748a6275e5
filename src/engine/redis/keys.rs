//! The only place a Redis key or channel name is spelled (`docs/REDIS.md` lists them all).
//!
//! Room keys carry the room id in braces, a Redis Cluster hash tag, so every key and the
//! channel of one room live in one slot and a script may touch them all.

use crate::domain::RoomId;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Metadata hash: createdAt, expiresAt, creator, epoch, seq.
    pub fn room(&self, room: &RoomId) -> String {
        format!("{}room:{{{room}}}", self.prefix)
    }

    /// The six keys of a room, in the order the scripts expect.
    pub fn room_keys(&self, room: &RoomId) -> [String; 6] {
        let base = self.room(room);
        [
            base.clone(),
            format!("{base}:strokes"),
            format!("{base}:log"),
            format!("{base}:users"),
            format!("{base}:ops"),
            format!("{base}:undone"),
        ]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_share_the_hash_tag_in_script_order() {
        let keys = Keys::new("p:");
        let room = RoomId::new("3f2a");
        assert_eq!(
            keys.room_keys(&room),
            [
                "p:room:{3f2a}",
                "p:room:{3f2a}:strokes",
                "p:room:{3f2a}:log",
                "p:room:{3f2a}:users",
                "p:room:{3f2a}:ops",
                "p:room:{3f2a}:undone",
            ]
        );
        assert_eq!(keys.room_of_channel("p:room:{3f2a}"), Some(room));
        assert_eq!(keys.room_of_channel("room:{3f2a}"), None);
        assert_eq!(keys.channel_pattern(), "p:room:*");
    }
}
