//! The access side of shared state (`PROTOCOL.md` §6), split from [`Engine`](super::Engine):
//! room settings and members, workspaces, who may hold how many rooms, and the activity
//! counts. Both engines implement it over the same state their rooms live in, so a room's
//! settings and members expire and disappear with it.

use async_trait::async_trait;

use super::EngineResult;
use crate::domain::access::{AccessMode, Control, Grants, Role, RoomSettings};
use crate::domain::{RoomId, UserId};

/// A room's settings and lifetime, as `GET /api/v1/rooms/{id}` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMeta {
    pub room_id: RoomId,
    pub settings: RoomSettings,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms; `None` when rooms never expire.
    pub expires_at: Option<u64>,
}

/// Settings to change; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub access: Option<AccessMode>,
    pub link_role: Option<Role>,
    pub workspace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub owner: UserId,
    /// Unix ms.
    pub created_at: u64,
}

/// One day's count of a user's sequenced ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayCount {
    pub user: UserId,
    /// UTC day number (`domain::activity`).
    pub day: i64,
    pub ops: u64,
}

#[async_trait]
pub trait Access: Send + Sync + 'static {
    /// Everything that decides `user`'s role in `room`: the room's settings (`None` when it does
    /// not exist) and the user's room and workspace grants. It does the same work whether or
    /// not the room exists or the user may see it, so the answer's timing tells nothing.
    async fn room_facts(
        &self,
        room: &RoomId,
        user: &UserId,
    ) -> EngineResult<(Option<RoomMeta>, Grants)>;

    /// Applies `patch` to a room's settings; the settings after, or `None` if the room is gone.
    /// The room's owner is indexed under their rooms.
    async fn update_room(
        &self,
        room: &RoomId,
        patch: &SettingsPatch,
    ) -> EngineResult<Option<RoomMeta>>;

    /// Gives `user` a role in the room, or takes it away (`None`). `false`: no such room.
    async fn set_room_member(
        &self,
        room: &RoomId,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<bool>;

    /// The room's own members (the owner and workspace members are not listed here).
    async fn room_members(&self, room: &RoomId) -> EngineResult<Vec<(UserId, Role)>>;

    /// Rooms `user` owns or was given a role in, that still exist, with the user's grants.
    async fn user_rooms(&self, user: &UserId) -> EngineResult<Vec<(RoomMeta, Grants)>>;

    /// Removes every key of the room. `false`: there was no such room.
    async fn delete_room(&self, room: &RoomId) -> EngineResult<bool>;

    /// Tells every instance's sessions in the room about an access change.
    async fn publish_control(&self, room: &RoomId, control: &Control) -> EngineResult<()>;

    /// Counts `room` against `ip`'s allowance of `limit` rooms that still exist, atomically
    /// with the check; `false` (and nothing counted) when the allowance is used up.
    async fn claim_room_slot(&self, ip: &str, room: &RoomId, limit: u32) -> EngineResult<bool>;

    async fn create_workspace(&self, owner: &UserId, name: &str) -> EngineResult<Workspace>;

    /// The workspace and `user`'s role in it (`None` for non-members); `None` if it does not
    /// exist. Same work either way.
    async fn workspace(
        &self,
        id: &str,
        user: &UserId,
    ) -> EngineResult<Option<(Workspace, Option<Role>)>>;

    async fn rename_workspace(&self, id: &str, name: &str) -> EngineResult<Option<Workspace>>;

    /// Removes the workspace and its membership; its rooms stay, without the workspace.
    /// Returns them, so their sessions can be told.
    async fn delete_workspace(&self, id: &str) -> EngineResult<Vec<RoomId>>;

    /// Gives `user` a role in the workspace or takes it away (`None`).
    async fn set_workspace_member(
        &self,
        id: &str,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<()>;

    async fn workspace_members(&self, id: &str) -> EngineResult<Vec<(UserId, Role)>>;

    /// The workspaces `user` holds a role in.
    async fn user_workspaces(&self, user: &UserId) -> EngineResult<Vec<(Workspace, Role)>>;

    /// Files a room under a workspace.
    async fn add_workspace_room(&self, id: &str, room: &RoomId) -> EngineResult<()>;

    /// The workspace's rooms that still exist.
    async fn workspace_rooms(&self, id: &str) -> EngineResult<Vec<RoomMeta>>;

    /// Adds counts of sequenced ops, one batch at a time (see `transport::activity`).
    async fn add_activity(&self, counts: &[DayCount]) -> EngineResult<()>;

    /// `user`'s `(day, ops)` for the days in `from..=to`.
    async fn activity(&self, user: &UserId, from: i64, to: i64) -> EngineResult<Vec<(i64, u64)>>;
}
