//! Who may do what in a room (`PROTOCOL.md` §6): roles, a room's access settings, and the one
//! function that turns them into a caller's role. Pure: the engine supplies the facts (settings,
//! the caller's room and workspace roles), this module decides.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::UserId;

/// What a caller may do in a room, weakest first, so `max` picks the stronger of two grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees the board and cursors, moves its own cursor; no sequenced op.
    Viewer,
    /// Draws, edits, deletes, undoes, names versions, restores.
    Editor,
    /// Everything, and the room's settings and members.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    /// Whether this role may send sequenced ops (draw, edit, undo, ...).
    pub fn can_edit(self) -> bool {
        self >= Self::Editor
    }

    /// A role that can be granted to a member (owners are made by creating, not by granting).
    pub fn grantable(text: &str) -> Option<Self> {
        Self::parse(text).filter(|r| *r != Self::Owner)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may join a room at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Anyone holding the room id, with the room's link role (the Canvas behaviour).
    Link,
    /// Only the owner and listed members (room or workspace); everyone else sees no room.
    Members,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Members => "members",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "link" => Some(Self::Link),
            "members" => Some(Self::Members),
            _ => None,
        }
    }
}

/// Whether the caller holds an account or is a name-only guest from an invite link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerKind {
    Account,
    Guest,
}

/// A room's access settings as stored with the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// The creator; always `Owner`, whatever else is stored.
    pub owner: UserId,
    pub name: String,
    pub access: AccessMode,
    /// The role of anyone joining a link room by its id (`Editor` or `Viewer`).
    pub link_role: Role,
    /// The workspace the room belongs to, whose members' roles carry into it.
    pub workspace: Option<String>,
}

/// The facts about one caller and one room that decide the caller's role.
#[derive(Clone, Copy, Debug)]
pub struct Grants {
    /// A role given in the room itself.
    pub room: Option<Role>,
    /// The caller's role in the room's workspace.
    pub workspace: Option<Role>,
}

/// The caller's role in a room, or `None` when the caller may not see it at all (and must be
/// told it does not exist). Guests never hold member roles: they join link rooms only (or
/// rooms they created themselves).
pub fn role_of(
    settings: &RoomSettings,
    caller: &UserId,
    kind: CallerKind,
    grants: Grants,
) -> Option<Role> {
    // A guest may own the room it created: guests create rooms to invite others to them.
    if &settings.owner == caller {
        return Some(Role::Owner);
    }
    if kind == CallerKind::Guest {
        return (settings.access == AccessMode::Link).then_some(settings.link_role);
    }
    let member = grants.room.max(grants.workspace);
    match settings.access {
        AccessMode::Link => Some(member.map_or(settings.link_role, |m| m.max(settings.link_role))),
        AccessMode::Members => member,
    }
}

/// Longest room or workspace name accepted.
pub const MAX_NAME_CHARS: usize = 80;

/// A trimmed name of 0 to [`MAX_NAME_CHARS`] printable characters, or `None`.
pub fn clean_name(text: &str) -> Option<String> {
    let name = text.trim();
    (name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control))
        .then(|| name.to_owned())
}

/// A change of access published on a room's channel, so that every instance's sessions in the
/// room act on it at once. Compact, like the other records on the channel: each instance turns
/// it into what its own clients see (`ROLE_CHANGED`, `ACCESS_REVOKED`, `ROOM_EXPIRED`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Whose access may have changed; `None`: anyone's (the room's settings changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// The room is gone: every session leaves it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Control {
    /// Prefix every control record starts with, so a reader can tell it from the others
    /// without parsing.
    pub const PREFIX: &'static [u8] = br#"{"control":"#;

    pub fn recheck(user: Option<UserId>) -> Self {
        Self {
            user,
            deleted: false,
        }
    }

    pub fn deleted() -> Self {
        Self {
            user: None,
            deleted: true,
        }
    }

    /// `{"control":{...}}`.
    pub fn record(&self) -> String {
        let inner = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        format!(r#"{{"control":{inner}}}"#)
    }

    pub fn parse(record: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Record {
            control: Control,
        }
        serde_json::from_slice::<Record>(record)
            .ok()
            .map(|r| r.control)
    }

    /// Whether a session of `user` must act on it.
    pub fn concerns(&self, user: &UserId) -> bool {
        self.user.as_ref().is_none_or(|u| u == user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(access: AccessMode, link_role: Role) -> RoomSettings {
        RoomSettings {
            owner: UserId::new("owner"),
            name: String::new(),
            access,
            link_role,
            workspace: None,
        }
    }

    const NONE: Grants = Grants {
        room: None,
        workspace: None,
    };

    fn grants(room: Option<Role>, workspace: Option<Role>) -> Grants {
        Grants { room, workspace }
    }

    #[test]
    fn owners_own_and_link_rooms_admit_anyone_with_the_link_role() {
        let link = settings(AccessMode::Link, Role::Viewer);
        let owner = UserId::new("owner");
        let ann = UserId::new("ann");
        assert_eq!(
            role_of(&link, &owner, CallerKind::Account, NONE),
            Some(Role::Owner)
        );
        assert_eq!(
            role_of(&link, &ann, CallerKind::Account, NONE),
            Some(Role::Viewer)
        );
        // A member role above the link role wins; below it, the link role does.
        let editor = grants(Some(Role::Editor), None);
        assert_eq!(
            role_of(&link, &ann, CallerKind::Account, editor),
            Some(Role::Editor)
        );
        let link_editor = settings(AccessMode::Link, Role::Editor);
        let viewer = grants(Some(Role::Viewer), None);
        assert_eq!(
            role_of(&link_editor, &ann, CallerKind::Account, viewer),
            Some(Role::Editor)
        );
    }

    #[test]
    fn members_rooms_admit_members_only_with_the_higher_of_room_and_workspace_roles() {
        let members = settings(AccessMode::Members, Role::Editor);
        let ann = UserId::new("ann");
        assert_eq!(role_of(&members, &ann, CallerKind::Account, NONE), None);
        let both = grants(Some(Role::Viewer), Some(Role::Editor));
        assert_eq!(
            role_of(&members, &ann, CallerKind::Account, both),
            Some(Role::Editor)
        );
        let both = grants(Some(Role::Editor), Some(Role::Viewer));
        assert_eq!(
            role_of(&members, &ann, CallerKind::Account, both),
            Some(Role::Editor)
        );
        let ws_owner = grants(None, Some(Role::Owner));
        assert_eq!(
            role_of(&members, &ann, CallerKind::Account, ws_owner),
            Some(Role::Owner)
        );
    }

    #[test]
    fn guests_join_link_rooms_only_and_never_as_members() {
        let guest = UserId::new("guest-1");
        let mut own = settings(AccessMode::Link, Role::Viewer);
        own.owner = guest.clone();
        assert_eq!(
            role_of(&own, &guest, CallerKind::Guest, NONE),
            Some(Role::Owner)
        );
        let member = grants(Some(Role::Editor), Some(Role::Editor));
        let members = settings(AccessMode::Members, Role::Editor);
        assert_eq!(role_of(&members, &guest, CallerKind::Guest, member), None);
        let link = settings(AccessMode::Link, Role::Viewer);
        assert_eq!(
            role_of(&link, &guest, CallerKind::Guest, member),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn roles_parse_and_order() {
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
        assert!(Role::Editor.can_edit() && !Role::Viewer.can_edit());
        assert_eq!(Role::grantable("owner"), None);
        assert_eq!(Role::grantable("viewer"), Some(Role::Viewer));
        assert_eq!(AccessMode::parse("members"), Some(AccessMode::Members));
        assert_eq!(clean_name("  Plan  ").as_deref(), Some("Plan"));
        assert_eq!(clean_name("a\u{7}"), None);
    }

    #[test]
    fn control_records_round_trip() {
        let c = Control::recheck(Some(UserId::new("u1")));
        assert_eq!(c.record(), r#"{"control":{"user":"u1"}}"#);
        assert!(c.record().as_bytes().starts_with(Control::PREFIX));
        assert_eq!(Control::parse(c.record().as_bytes()), Some(c.clone()));
        assert!(c.concerns(&UserId::new("u1")) && !c.concerns(&UserId::new("u2")));
        let d = Control::deleted();
        assert_eq!(Control::parse(d.record().as_bytes()), Some(d));
        assert_eq!(Control::parse(b"{}"), None);
    }
}
