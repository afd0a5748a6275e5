//! Newtypes for the ids that travel on the wire, so a room id is never passed where a user id belongs.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted from a client; rooms are UUIDs and user ids are ours, so this is generous.
pub const MAX_ID_LEN: usize = 64;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A room: a UUID minted by `POST /rooms`.
    RoomId
);
string_id!(
    /// A user, taken only from a verified token.
    UserId
);
string_id!(
    /// A stroke, chosen by the client that drew it.
    StrokeId
);

impl RoomId {
    /// Room ids become part of Redis keys and channel names, so only a safe alphabet is accepted.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= MAX_ID_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(value.to_owned()))
    }

    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// One connection, unique across all instances: `<instance id>/<counter>`. The instance part
/// tags presence entries so those of a dead instance can be swept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey(Arc<str>);

impl ConnKey {
    pub fn new(instance: &str, n: u64) -> Self {
        Self(format!("{instance}/{n}").into())
    }

    pub fn from_raw(raw: &str) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The instance part of a connection key (as stored in presence entries).
pub fn instance_of(conn: &str) -> &str {
    conn.rsplit_once('/').map_or(conn, |(instance, _)| instance)
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_accept_uuids_and_refuse_key_breakers() {
        assert!(RoomId::parse("3f2a9c1e-0000-4000-8000-000000000000").is_some());
        for bad in ["", "a}b", "a b", "room:*", &"x".repeat(65)] {
            assert!(RoomId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn conn_key_knows_its_instance() {
        assert_eq!(instance_of(ConnKey::new("pod-a.1", 7).as_str()), "pod-a.1");
    }
}
