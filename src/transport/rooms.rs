//! The room routes of `PROTOCOL.md` §6: creation (with the per-IP room limit and workspaces),
//! settings, members, deletion, and the caller's own rooms and activity. Every route of a room
//! goes through [`authz::require`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::authz::{self, Allowed, Caller, caller, require};
use super::client_ip::client_ip;
use super::error::ApiError;
use super::limits::{self, Rejection, Rule};
use super::schemas::ErrorBody;
use crate::domain::UserId;
use crate::domain::access::{AccessMode, CallerKind, Control, Grants, Role, clean_name, role_of};
use crate::domain::accounts::normalize_email;
use crate::domain::activity::{day_number, day_of_ms, streaks};
use crate::engine::access::{RoomMeta, SettingsPatch};
use crate::engine::now_ms;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/rooms/{room_id}",
            get(get_room).patch(patch_room).delete(delete_room),
        )
        .route(
            "/api/v1/rooms/{room_id}/members",
            get(list_members).post(add_member_by_email),
        )
        .route(
            "/api/v1/rooms/{room_id}/members/{user_id}",
            put(put_member).delete(remove_member),
        )
        .route("/api/v1/me/rooms", get(my_rooms))
        .route("/api/v1/me/activity", get(my_activity))
}

/// A room as §6 shows it, with the caller's role.
pub fn room_json(meta: &RoomMeta, role: Role) -> Value {
    json!({
        "roomId": meta.room_id,
        "name": meta.settings.name,
        "access": meta.settings.access.as_str(),
        "linkRole": meta.settings.link_role.as_str(),
        "owner": meta.settings.owner,
        "workspace": meta.settings.workspace,
        "role": role.as_str(),
        "createdAt": meta.created_at,
        "expiresAt": meta.expires_at,
    })
}

fn json_body(body: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|r| ApiError::bad_request(format!("the body must be JSON: {}", r.body_text())))
}

#[derive(Deserialize)]
pub struct CreateQuery {
    workspace: Option<String>,
}

/// `POST /api/v1/rooms[?workspace=]`: the room is counted against the client IP's allowance
/// (`max_rooms_per_ip`) atomically after it is made, and removed again when that is used up,
/// so two instances racing for the last slot cannot both win.
pub async fn create_room(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let rule = Rule::room(&app.config);
    limits::guarded(&app, rule, peer, &headers, async {
        let caller = caller(&app, &headers)?;
        // A board to import (§5) is read whole before the room exists: a bad one creates none.
        let import = super::history::import_body(&app, &headers, body, &caller.user).await?;
        let mut patch = SettingsPatch::default();
        if let Some(workspace) = &query.workspace {
            let found = app.access.workspace(workspace, &caller.user).await?;
            match found {
                Some((_, Some(role))) if role >= Role::Editor => {}
                Some((_, Some(_))) => {
                    return Err(authz::forbidden("create rooms in this workspace").into());
                }
                _ => return Err(workspace_not_found().into()),
            }
            patch.workspace = Some(workspace.clone());
            patch.access = Some(AccessMode::Members);
        }
        let info = app.engine.create_room(&caller.user).await?;
        let limit = app.config.max_rooms_per_ip;
        if limit > 0 {
            let ip = client_ip(peer.ip(), &headers, &app.trusted_proxies).to_string();
            if !app
                .access
                .claim_room_slot(&ip, &info.room_id, limit)
                .await?
            {
                app.access.delete_room(&info.room_id).await?;
                app.metrics.rate_limited("room_limit");
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ROOM_LIMIT",
                    format!("at most {limit} rooms per client; delete one or let one expire"),
                )
                .into());
            }
        }
        // Indexes the room under its owner (and files it in its workspace).
        app.access.update_room(&info.room_id, &patch).await?;
        if let Some(workspace) = &query.workspace {
            app.access
                .add_workspace_room(workspace, &info.room_id)
                .await?;
        }
        let mut data = json!({"roomId": info.room_id, "expiresAt": info.expires_at});
        if let Some((elements, skipped)) = import {
            let who = crate::domain::Identity::new(caller.user.clone(), caller.name.clone());
            let done =
                super::history::import_into(&app, &info.room_id, &who, elements, skipped).await?;
            data["imported"] = done.imported.into();
            data["skipped"] = done.skipped.into();
        }
        Ok::<_, Rejection>(
            (
                StatusCode::CREATED,
                Json(json!({"success": true, "data": data})),
            )
                .into_response(),
        )
    })
    .await
}

pub fn workspace_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "WORKSPACE_NOT_FOUND",
        "workspace does not exist",
    )
}

/// `GET /api/v1/rooms/{id}`: anyone who may join.
pub async fn get_room(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Viewer).await?;
    Ok(
        Json(json!({"success": true, "data": room_json(&allowed.meta, allowed.role)}))
            .into_response(),
    )
}

/// `PATCH /api/v1/rooms/{id} {name?, access?, linkRole?}`: the owner.
#[utoipa::path(
    patch, path = "/api/v1/rooms/{room_id}", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id")
    ),
    request_body(content = Object, description = "{name?, access?: link|members, linkRole?: editor|viewer}"),
    responses(
        (status = 200, description = "the settings after, with the caller's role"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "a field is invalid; the message names each", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such room, or a members-only room the caller is not in (the same answer)", body = ErrorBody),
    )
)]
async fn patch_room(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Owner).await?;
    let body = json_body(body)?;
    let mut patch = SettingsPatch::default();
    let mut bad = Vec::new();
    if let Some(name) = body.get("name") {
        match name.as_str().and_then(clean_name) {
            Some(name) => patch.name = Some(name),
            None => bad.push("name must be a string of at most 80 printable characters"),
        }
    }
    if let Some(access) = body.get("access") {
        match access.as_str().and_then(AccessMode::parse) {
            Some(access) => patch.access = Some(access),
            None => bad.push("access must be \"link\" or \"members\""),
        }
    }
    if let Some(role) = body.get("linkRole") {
        match role.as_str().and_then(Role::grantable) {
            Some(role) => patch.link_role = Some(role),
            None => bad.push("linkRole must be \"editor\" or \"viewer\""),
        }
    }
    if !bad.is_empty() {
        return Err(ApiError::bad_request(bad.join("; ")));
    }
    let meta = app
        .access
        .update_room(&allowed.room, &patch)
        .await?
        .ok_or_else(authz::not_found)?;
    if patch.access.is_some() || patch.link_role.is_some() {
        // Anyone's rights may have changed: every session in the room re-reads its own.
        app.access
            .publish_control(&allowed.room, &Control::recheck(None))
            .await?;
    }
    Ok(Json(json!({"success": true, "data": room_json(&meta, allowed.role)})).into_response())
}

/// `DELETE /api/v1/rooms/{id}`: the owner. Every key goes, its IP slot frees up, and the
/// sockets in it are told (`ROOM_EXPIRED`) on every instance.
#[utoipa::path(
    delete, path = "/api/v1/rooms/{room_id}", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id")
    ),
    responses(
        (status = 200, description = "deleted: every key, its IP slot freed, its sockets told ROOM_EXPIRED"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such room, or a members-only room the caller is not in (the same answer)", body = ErrorBody),
    )
)]
async fn delete_room(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Owner).await?;
    app.access.delete_room(&allowed.room).await?;
    app.access
        .publish_control(&allowed.room, &Control::deleted())
        .await?;
    Ok(Json(json!({"success": true})).into_response())
}

/// Display names of accounts, by id; a user without an account (a guest) shows its id.
async fn names(app: &AppState, users: &[UserId]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let account = app.engine.account_by_id(user).await?;
        out.push(account.map_or_else(|| user.to_string(), |a| a.name));
    }
    Ok(out)
}

/// `GET /api/v1/rooms/{id}/members`: the owner first, then the room's members.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/members", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id")
    ),
    responses(
        (status = 200, description = "{members: [{userId, name, role}]}, the owner first"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 404, description = "no such room, or a members-only room the caller is not in (the same answer)", body = ErrorBody),
    )
)]
async fn list_members(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Viewer).await?;
    let mut members = vec![(allowed.meta.settings.owner.clone(), Role::Owner)];
    members.extend(
        app.access
            .room_members(&allowed.room)
            .await?
            .into_iter()
            .filter(|(u, _)| u != &allowed.meta.settings.owner),
    );
    let users: Vec<UserId> = members.iter().map(|(u, _)| u.clone()).collect();
    let names = names(&app, &users).await?;
    let list: Vec<Value> = members
        .iter()
        .zip(names)
        .map(|((user, role), name)| json!({"userId": user, "name": name, "role": role.as_str()}))
        .collect();
    Ok(Json(json!({"success": true, "members": list})).into_response())
}

fn role_from(body: &Value) -> Result<Role, ApiError> {
    body.get("role")
        .and_then(Value::as_str)
        .and_then(Role::grantable)
        .ok_or_else(|| ApiError::bad_request("role must be \"editor\" or \"viewer\""))
}

/// Gives `user` `role` in the owner's room and tells their sessions on every instance.
async fn grant(
    app: &AppState,
    allowed: &Allowed,
    user: UserId,
    role: Option<Role>,
) -> Result<Response, ApiError> {
    if user == allowed.meta.settings.owner {
        return Err(ApiError::bad_request("the owner's role cannot change"));
    }
    if !app
        .access
        .set_room_member(&allowed.room, &user, role)
        .await?
    {
        return Err(authz::not_found());
    }
    app.access
        .publish_control(&allowed.room, &Control::recheck(Some(user.clone())))
        .await?;
    let name = names(app, std::slice::from_ref(&user)).await?.pop();
    Ok(Json(json!({
        "success": true,
        "member": {"userId": user, "name": name, "role": role.map(Role::as_str)},
    }))
    .into_response())
}

/// `PUT /api/v1/rooms/{id}/members/{userId} {role}`: the owner.
#[utoipa::path(
    put, path = "/api/v1/rooms/{room_id}/members/{user_id}", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    request_body(content = Object, description = "{role: editor|viewer}"),
    responses(
        (status = 200, description = "given; their sockets get ROLE_CHANGED"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "role must be editor or viewer", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such room, or a members-only room the caller is not in (the same answer)", body = ErrorBody),
    )
)]
async fn put_member(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((room_id, user_id)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Owner).await?;
    let role = role_from(&json_body(body)?)?;
    let user = member_id(&user_id)?;
    grant(&app, &allowed, user, Some(role)).await
}

/// User ids in paths become parts of Redis keys: bounded like every id.
pub fn member_id(text: &str) -> Result<UserId, ApiError> {
    if text.is_empty()
        || text.len() > crate::domain::ids::MAX_ID_LEN
        || text.chars().any(|c| c.is_control() || c == '{' || c == '}')
    {
        return Err(ApiError::bad_request("not a user id"));
    }
    Ok(UserId::new(text))
}

/// The account behind an e-mail address, or 404 `USER_NOT_FOUND`.
pub async fn account_id(app: &AppState, body: &Value) -> Result<UserId, ApiError> {
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("email is required"))
        .and_then(|e| normalize_email(e).map_err(ApiError::bad_request))?;
    app.engine
        .account(&email)
        .await?
        .map(|a| a.id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "USER_NOT_FOUND",
                "no account has this e-mail address",
            )
        })
}

/// `POST /api/v1/rooms/{id}/members {email, role}`: the owner.
#[utoipa::path(
    post, path = "/api/v1/rooms/{room_id}/members", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id")
    ),
    request_body(content = Object, description = "{email, role: editor|viewer}"),
    responses(
        (status = 200, description = "given; their sockets get ROLE_CHANGED"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "bad e-mail or role", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such room (ROOM_NOT_FOUND) or no account with this e-mail (USER_NOT_FOUND)", body = ErrorBody),
    )
)]
async fn add_member_by_email(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Owner).await?;
    let body = json_body(body)?;
    let role = role_from(&body)?;
    let user = account_id(&app, &body).await?;
    grant(&app, &allowed, user, Some(role)).await
}

/// `DELETE /api/v1/rooms/{id}/members/{userId}`: the owner.
#[utoipa::path(
    delete, path = "/api/v1/rooms/{room_id}/members/{user_id}", tag = "rooms",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    responses(
        (status = 200, description = "removed; their sockets get ROLE_CHANGED or ACCESS_REVOKED"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such room, or a members-only room the caller is not in (the same answer)", body = ErrorBody),
    )
)]
async fn remove_member(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((room_id, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let allowed = require(&app, &headers, &room_id, Role::Owner).await?;
    let user = member_id(&user_id)?;
    grant(&app, &allowed, user, None).await
}

/// The caller's role in a room from the facts, as the room routes compute it.
pub fn role_for(caller: &Caller, meta: &RoomMeta, grants: Grants) -> Option<Role> {
    role_of(&meta.settings, &caller.user, caller.kind, grants)
}

/// `GET /api/v1/me/rooms`: rooms the caller owns or is a member of, newest first.
#[utoipa::path(
    get, path = "/api/v1/me/rooms", tag = "rooms",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "{rooms: [{roomId, name, role, access, linkRole, owner, createdAt, expiresAt}]}, newest first"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
    )
)]
async fn my_rooms(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller(&app, &headers)?;
    let rooms: Vec<Value> = if caller.kind == CallerKind::Guest {
        Vec::new()
    } else {
        app.access
            .user_rooms(&caller.user)
            .await?
            .iter()
            .filter_map(|(meta, grants)| {
                role_for(&caller, meta, *grants).map(|role| room_json(meta, role))
            })
            .collect()
    };
    Ok(Json(json!({"success": true, "rooms": rooms})).into_response())
}

#[derive(Deserialize)]
struct ActivityQuery {
    year: Option<i32>,
}

/// `GET /api/v1/me/activity?year=`: the caller's sequenced ops per UTC day of `year` (this
/// year by default), with streaks. This instance's unflushed counts for the caller are written
/// first, so a caller sees their own latest ops.
#[utoipa::path(
    get, path = "/api/v1/me/activity", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "{year, days: {YYYY-MM-DD: n}, total, currentStreak, longestStreak}"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "year out of range", body = ErrorBody),
    )
)]
async fn my_activity(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ActivityQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(&app, &headers)?;
    let today = day_of_ms(now_ms());
    let this_year = crate::domain::activity::civil(today).0;
    let year = query.year.unwrap_or(this_year);
    if !(1970..=9999).contains(&year) {
        return Err(ApiError::bad_request("year must be between 1970 and 9999"));
    }
    app.activity
        .flush(app.access.as_ref(), Some(&caller.user))
        .await;
    let from = day_number(year, 1, 1);
    let to = day_number(year, 12, 31);
    // The current streak may reach back into last year.
    let days = app.access.activity(&caller.user, from - 366, to).await?;
    let active: Vec<i64> = days
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| *d)
        .collect();
    let in_year: Vec<(i64, u64)> = days.into_iter().filter(|(d, _)| *d >= from).collect();
    let (current, _) = streaks(&active, today);
    let year_days: Vec<i64> = in_year.iter().map(|(d, _)| *d).collect();
    let (_, longest) = streaks(&year_days, to);
    let current = if (from..=to).contains(&today) {
        current
    } else {
        0
    };
    let total: u64 = in_year.iter().map(|(_, n)| n).sum();
    let map: serde_json::Map<String, Value> = in_year
        .iter()
        .map(|(d, n)| (crate::domain::activity::date_text(*d), json!(n)))
        .collect();
    Ok(Json(json!({
        "success": true,
        "year": year,
        "days": map,
        "total": total,
        "currentStreak": current,
        "longestStreak": longest,
    }))
    .into_response())
}
