//! Room and user quotas (issue 15: one guest must not grow Redis without limit): how much an
//! effect adds to a room (elements, bytes) and to each element's creator (bytes), and whether
//! that stays within the limits. Bytes are those of each element's stored body, the same number
//! in both engines; deletes always pass, and free what they remove.

use std::collections::BTreeMap;

use super::board::Effect;
use super::element::Element;
use super::ids::{StrokeId, UserId};

/// The limits; a room never holds more, and no user's elements take more of one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub room_elements: u64,
    pub room_bytes: u64,
    pub user_bytes: u64,
}

/// What an effect changes: counts and bytes, per room and per creator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub elements: i64,
    pub bytes: i64,
    /// Bytes by the creator of the elements concerned, in a fixed order.
    pub users: BTreeMap<UserId, i64>,
}

fn size(e: &Element) -> i64 {
    e.body().len() as i64
}

impl Usage {
    /// What `effect` changes; `was` gives an updated element as it was before it.
    pub fn of(effect: &Effect, was: impl Fn(&StrokeId) -> Option<Element>) -> Self {
        let mut u = Usage::default();
        let mut add = |e: &Element, sign: i64| {
            u.bytes += sign * size(e);
            *u.users.entry(e.user_id.clone()).or_default() += sign * size(e);
        };
        match effect {
            Effect::Add(added) => {
                added.iter().for_each(|e| add(e, 1));
                u.elements = added.len() as i64;
            }
            Effect::Delete(removed) => {
                removed.iter().for_each(|e| add(e, -1));
                u.elements = -(removed.len() as i64);
            }
            Effect::Update { after, .. } => {
                for e in after {
                    add(e, 1);
                    if let Some(old) = was(&e.id) {
                        add(&old, -1);
                    }
                }
            }
            Effect::Text { after, .. } => {
                add(after, 1);
                if let Some(old) = was(&after.id) {
                    add(&old, -1);
                }
            }
            Effect::Restore {
                written,
                removed,
                changed,
                ..
            } => {
                written.iter().for_each(|e| add(e, 1));
                removed.iter().chain(changed).for_each(|e| add(e, -1));
                u.elements = (written.len() - changed.len()) as i64 - removed.len() as i64;
            }
        }
        u.users.retain(|_, v| *v != 0);
        u
    }

    /// Whether the room, holding `elements` and `bytes` with its creators at `users` bytes, can
    /// take this; `Err` names the limit in words a person can act on.
    pub fn check(
        &self,
        quota: &Quota,
        elements: u64,
        bytes: u64,
        user_bytes: impl Fn(&UserId) -> u64,
    ) -> Result<(), String> {
        let after = |now: u64, delta: i64| now.saturating_add_signed(delta);
        if self.elements > 0 && after(elements, self.elements) > quota.room_elements {
            return Err(format!(
                "this room holds at most {} elements",
                quota.room_elements
            ));
        }
        if self.bytes > 0 && after(bytes, self.bytes) > quota.room_bytes {
            return Err(format!(
                "this room holds at most {} bytes",
                quota.room_bytes
            ));
        }
        for (user, delta) in &self.users {
            if *delta > 0 && after(user_bytes(user), *delta) > quota.user_bytes {
                return Err(format!(
                    "{user}'s elements take at most {} bytes of a room",
                    quota.user_bytes
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::element::ElementLimits;
    use crate::domain::ids::RoomId;
    use serde_json::json;

    fn rect(id: &str, user: &str) -> Element {
        Element::from_client(
            &json!({"id": id, "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1}),
            &UserId::new(user),
            &RoomId::new("r"),
            ElementLimits { max_points: 10 },
        )
        .expect("valid")
    }

    #[test]
    fn adds_count_against_the_room_and_their_creator_and_deletes_free_them() {
        let (a, b) = (rect("a", "ann"), rect("b", "bob"));
        let size = a.body().len() as i64;
        let added = Usage::of(&Effect::Add(vec![a.clone(), b.clone()]), |_| None);
        assert_eq!(
            (added.elements, added.bytes),
            (2, size + b.body().len() as i64)
        );
        assert_eq!(added.users[&UserId::new("ann")], size);
        let removed = Usage::of(&Effect::Delete(vec![a]), |_| None);
        assert_eq!((removed.elements, removed.bytes), (-1, -size));
        let quota = Quota {
            room_elements: 2,
            room_bytes: 1_000,
            user_bytes: 1_000,
        };
        assert!(added.check(&quota, 0, 0, |_| 0).is_ok());
        assert!(
            added
                .check(&quota, 1, 0, |_| 0)
                .is_err_and(|e| e.contains("2 elements"))
        );
        assert!(
            added
                .check(&quota, 0, 990, |_| 0)
                .is_err_and(|e| e.contains("bytes"))
        );
        assert!(
            added
                .check(&quota, 0, 0, |_| 995)
                .is_err_and(|e| e.contains("ann"))
        );
        // Freeing is never refused, even over the limits.
        assert!(removed.check(&quota, 10, 10_000, |_| 10_000).is_ok());
    }
}
