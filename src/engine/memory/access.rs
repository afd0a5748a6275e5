//! Room settings, members, workspaces, room slots and activity for the embedded engine: the
//! same semantics as the Redis engine (`engine/redis/access.rs`), checked by the same suite.
//! Settings and members live in the room itself, so they go when it expires.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{MemoryEngine, Room, State, live_room};
use crate::domain::access::{Control, Grants, Role};
use crate::domain::{RoomId, UserId};
use crate::engine::access::{Access, DayCount, RoomMeta, SettingsPatch, Workspace};
use crate::engine::{EngineResult, now_ms};

#[derive(Default)]
pub(super) struct AccessState {
    /// Rooms each user owns or was given a role in (a hint: rooms that are gone are skipped).
    user_rooms: HashMap<UserId, HashSet<RoomId>>,
    workspaces: HashMap<String, WorkspaceState>,
    /// Rooms counted against each client IP.
    slots: HashMap<String, Vec<RoomId>>,
    /// Ops per user per UTC day.
    activity: HashMap<UserId, BTreeMap<i64, u64>>,
}

struct WorkspaceState {
    workspace: Workspace,
    members: HashMap<UserId, Role>,
    rooms: Vec<RoomId>,
}

fn meta(id: &RoomId, room: &Room) -> RoomMeta {
    let now = Instant::now();
    RoomMeta {
        room_id: id.clone(),
        settings: room.settings.clone(),
        created_at: room.created_at,
        expires_at: room
            .expires
            .map(|at| now_ms() + at.saturating_duration_since(now).as_millis() as u64),
    }
}

fn grants(state: &State, room: Option<&Room>, user: &UserId) -> Grants {
    let workspace = room
        .and_then(|r| r.settings.workspace.as_ref())
        .and_then(|w| state.access.workspaces.get(w))
        .and_then(|w| w.members.get(user).copied());
    Grants {
        room: room.and_then(|r| r.members.get(user).copied()),
        workspace,
    }
}

/// Expired rooms are dropped, so `live_room` is needed before reading one.
fn facts(state: &mut State, room: &RoomId, user: &UserId) -> (Option<RoomMeta>, Grants) {
    let found = live_room(state, room).map(|r| meta(room, r));
    let grants = grants(state, state.rooms.get(room), user);
    (found, grants)
}

#[async_trait]
impl Access for MemoryEngine {
    async fn room_facts(
        &self,
        room: &RoomId,
        user: &UserId,
    ) -> EngineResult<(Option<RoomMeta>, Grants)> {
        Ok(facts(&mut self.state.lock(), room, user))
    }

    async fn update_room(
        &self,
        room_id: &RoomId,
        patch: &SettingsPatch,
    ) -> EngineResult<Option<RoomMeta>> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(None);
        };
        let settings = &mut room.settings;
        if let Some(name) = &patch.name {
            settings.name.clone_from(name);
        }
        if let Some(access) = patch.access {
            settings.access = access;
        }
        if let Some(role) = patch.link_role {
            settings.link_role = role;
        }
        if let Some(workspace) = &patch.workspace {
            settings.workspace = Some(workspace.clone());
        }
        let owner = settings.owner.clone();
        let meta = meta(room_id, room);
        state
            .access
            .user_rooms
            .entry(owner)
            .or_default()
            .insert(room_id.clone());
        Ok(Some(meta))
    }

    async fn set_room_member(
        &self,
        room_id: &RoomId,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<bool> {
        let mut state = self.state.lock();
        let Some(room) = live_room(&mut state, room_id) else {
            return Ok(false);
        };
        match role {
            Some(role) => {
                room.members.insert(user.clone(), role);
                state
                    .access
                    .user_rooms
                    .entry(user.clone())
                    .or_default()
                    .insert(room_id.clone());
            }
            None => {
                room.members.remove(user);
                if let Some(rooms) = state.access.user_rooms.get_mut(user) {
                    rooms.remove(room_id);
                }
            }
        }
        Ok(true)
    }

    async fn room_members(&self, room_id: &RoomId) -> EngineResult<Vec<(UserId, Role)>> {
        let mut state = self.state.lock();
        let mut members: Vec<(UserId, Role)> = live_room(&mut state, room_id)
            .map(|r| r.members.iter().map(|(u, r)| (u.clone(), *r)).collect())
            .unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn user_rooms(&self, user: &UserId) -> EngineResult<Vec<(RoomMeta, Grants)>> {
        let mut state = self.state.lock();
        let ids: Vec<RoomId> = state
            .access
            .user_rooms
            .get(user)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for id in ids {
            if let (Some(meta), grants) = facts(&mut state, &id, user) {
                out.push((meta, grants));
            } else if let Some(rooms) = state.access.user_rooms.get_mut(user) {
                rooms.remove(&id);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0.created_at));
        Ok(out)
    }

    async fn delete_room(&self, room: &RoomId) -> EngineResult<bool> {
        let mut state = self.state.lock();
        if live_room(&mut state, room).is_none() {
            return Ok(false);
        }
        state.rooms.remove(room);
        Ok(true)
    }

    async fn publish_control(&self, room: &RoomId, control: &Control) -> EngineResult<()> {
        self.hub.control(room, &Arc::new(control.clone()));
        Ok(())
    }

    async fn claim_room_slot(&self, ip: &str, room: &RoomId, limit: u32) -> EngineResult<bool> {
        let mut state = self.state.lock();
        let mut held = state.access.slots.remove(ip).unwrap_or_default();
        held.retain(|r| live_room(&mut state, r).is_some());
        let free = held.len() < limit as usize;
        if free {
            held.push(room.clone());
        }
        state.access.slots.insert(ip.to_owned(), held);
        Ok(free)
    }

    async fn create_workspace(&self, owner: &UserId, name: &str) -> EngineResult<Workspace> {
        let workspace = Workspace {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            owner: owner.clone(),
            created_at: now_ms(),
        };
        self.state.lock().access.workspaces.insert(
            workspace.id.clone(),
            WorkspaceState {
                workspace: workspace.clone(),
                members: HashMap::from([(owner.clone(), Role::Owner)]),
                rooms: Vec::new(),
            },
        );
        Ok(workspace)
    }

    async fn workspace(
        &self,
        id: &str,
        user: &UserId,
    ) -> EngineResult<Option<(Workspace, Option<Role>)>> {
        Ok(self
            .state
            .lock()
            .access
            .workspaces
            .get(id)
            .map(|w| (w.workspace.clone(), w.members.get(user).copied())))
    }

    async fn rename_workspace(&self, id: &str, name: &str) -> EngineResult<Option<Workspace>> {
        Ok(self.state.lock().access.workspaces.get_mut(id).map(|w| {
            w.workspace.name = name.to_owned();
            w.workspace.clone()
        }))
    }

    async fn delete_workspace(&self, id: &str) -> EngineResult<Vec<RoomId>> {
        let mut state = self.state.lock();
        let Some(gone) = state.access.workspaces.remove(id) else {
            return Ok(Vec::new());
        };
        for room in &gone.rooms {
            if let Some(r) = state.rooms.get_mut(room) {
                r.settings.workspace = None;
            }
        }
        Ok(gone.rooms)
    }

    async fn set_workspace_member(
        &self,
        id: &str,
        user: &UserId,
        role: Option<Role>,
    ) -> EngineResult<()> {
        if let Some(w) = self.state.lock().access.workspaces.get_mut(id) {
            match role {
                Some(role) => w.members.insert(user.clone(), role),
                None => w.members.remove(user),
            };
        }
        Ok(())
    }

    async fn workspace_members(&self, id: &str) -> EngineResult<Vec<(UserId, Role)>> {
        let state = self.state.lock();
        let mut members: Vec<(UserId, Role)> = state
            .access
            .workspaces
            .get(id)
            .map(|w| w.members.iter().map(|(u, r)| (u.clone(), *r)).collect())
            .unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn user_workspaces(&self, user: &UserId) -> EngineResult<Vec<(Workspace, Role)>> {
        let state = self.state.lock();
        let mut out: Vec<(Workspace, Role)> = state
            .access
            .workspaces
            .values()
            .filter_map(|w| w.members.get(user).map(|r| (w.workspace.clone(), *r)))
            .collect();
        out.sort_by_key(|w| w.0.created_at);
        Ok(out)
    }

    async fn add_workspace_room(&self, id: &str, room: &RoomId) -> EngineResult<()> {
        if let Some(w) = self.state.lock().access.workspaces.get_mut(id) {
            w.rooms.push(room.clone());
        }
        Ok(())
    }

    async fn workspace_rooms(&self, id: &str) -> EngineResult<Vec<RoomMeta>> {
        let mut state = self.state.lock();
        let ids = state
            .access
            .workspaces
            .get(id)
            .map(|w| w.rooms.clone())
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter_map(|r| live_room(&mut state, r).map(|room| meta(r, room)))
            .collect())
    }

    async fn add_activity(&self, counts: &[DayCount]) -> EngineResult<()> {
        let mut state = self.state.lock();
        for c in counts {
            *state
                .access
                .activity
                .entry(c.user.clone())
                .or_default()
                .entry(c.day)
                .or_default() += c.ops;
        }
        Ok(())
    }

    async fn activity(&self, user: &UserId, from: i64, to: i64) -> EngineResult<Vec<(i64, u64)>> {
        Ok(self
            .state
            .lock()
            .access
            .activity
            .get(user)
            .map(|days| days.range(from..=to).map(|(d, n)| (*d, *n)).collect())
            .unwrap_or_default())
    }
}
