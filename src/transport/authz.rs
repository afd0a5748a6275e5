//! Who is calling and what they may do in a room: the one check every room route makes
//! (`PROTOCOL.md` §6). A route of a room calls [`require`] with the weakest role it needs:
//!
//! ```ignore
//! let allowed = authz::require(&app, &headers, &room_id, Role::Viewer).await?;
//! // allowed.room: RoomId, allowed.role: the caller's Role, allowed.meta: settings
//! ```
//!
//! A caller who may not see the room gets the very response a missing room gets ([`not_found`]),
//! after the same engine work ([`Access::room_facts`](crate::engine::Access::room_facts)), so
//! neither the answer nor its timing tells a hidden room from a missing one. A caller who may
//! see it but whose role is too weak gets 403.

use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::credentials::access_claims;
use super::error::ApiError;
use crate::domain::access::{CallerKind, Role, role_of};
use crate::domain::{RoomId, UserId};
use crate::engine::access::RoomMeta;

/// The verified caller of an HTTP route.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserId,
    pub name: String,
    pub kind: CallerKind,
}

/// The caller from the bearer token, or 401.
pub fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let claims = access_claims(app, headers)?;
    Ok(Caller {
        user: UserId::new(claims.user_id),
        name: claims.name,
        kind: if claims.guest {
            CallerKind::Guest
        } else {
            CallerKind::Account
        },
    })
}

/// A caller allowed into a room, with the role that allowed it.
#[derive(Clone, Debug)]
pub struct Allowed {
    pub caller: Caller,
    pub room: RoomId,
    pub meta: RoomMeta,
    pub role: Role,
}

/// The answer to a room that does not exist, has expired, or may not be seen by the caller:
/// one value, so the three can never be told apart.
pub fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ROOM_NOT_FOUND",
        "room does not exist or has expired",
    )
}

pub fn forbidden(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        format!("your role here may not {what}"),
    )
}

/// The caller's access to `room_id` if their role is at least `needed`: 401 without a valid
/// token, 404 ([`not_found`]) when they may not see the room, 403 when they may see it but not
/// do this.
pub async fn require(
    app: &AppState,
    headers: &HeaderMap,
    room_id: &str,
    needed: Role,
) -> Result<Allowed, ApiError> {
    let caller = caller(app, headers)?;
    let room = RoomId::parse(room_id).ok_or_else(not_found)?;
    let (meta, grants) = app.access.room_facts(&room, &caller.user).await?;
    let Some(meta) = meta else {
        return Err(not_found());
    };
    let Some(role) = role_of(&meta.settings, &caller.user, caller.kind, grants) else {
        return Err(not_found());
    };
    if role < needed {
        return Err(forbidden(match needed {
            Role::Owner => "change this room's settings or members",
            _ => "change this room",
        }));
    }
    Ok(Allowed {
        caller,
        room,
        meta,
        role,
    })
}
