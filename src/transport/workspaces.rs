//! The workspace routes of `PROTOCOL.md` §6: a team's boards under one roof. Members hold a
//! role in the workspace that carries into each of its rooms (the higher of that and a room's
//! own grant). Non-members get 404 on every route, as for a workspace that does not exist.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::authz::{Caller, caller, forbidden};
use super::error::ApiError;
use super::rooms::{account_id, member_id, room_json, workspace_not_found};
use super::schemas::ErrorBody;
use crate::domain::UserId;
use crate::domain::access::{CallerKind, Control, Grants, Role, clean_name, role_of};
use crate::engine::access::Workspace;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route(
            "/api/v1/workspaces/{id}",
            get(get_workspace)
                .patch(rename_workspace)
                .delete(delete_workspace),
        )
        .route(
            "/api/v1/workspaces/{id}/members",
            get(list_members).post(add_member_by_email),
        )
        .route(
            "/api/v1/workspaces/{id}/members/{user_id}",
            put(put_member).delete(remove_member),
        )
        .route("/api/v1/workspaces/{id}/rooms", get(list_rooms))
}

fn workspace_json(w: &Workspace, role: Role) -> Value {
    json!({
        "workspaceId": w.id,
        "name": w.name,
        "owner": w.owner,
        "role": role.as_str(),
        "createdAt": w.created_at,
    })
}

fn body_of(body: Result<Json<Value>, JsonRejection>) -> Result<Value, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|r| ApiError::bad_request(format!("the body must be JSON: {}", r.body_text())))
}

fn name_of(body: &Value) -> Result<String, ApiError> {
    body.get("name")
        .and_then(Value::as_str)
        .and_then(clean_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name must be 1 to 80 printable characters"))
}

/// An account holder (guests hold no workspaces).
fn account(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = caller(app, headers)?;
    if caller.kind == CallerKind::Guest {
        return Err(forbidden("use workspaces without an account"));
    }
    Ok(caller)
}

/// The workspace and the caller's role in it if at least `needed`; 404 for non-members.
async fn require(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    needed: Role,
) -> Result<(Caller, Workspace, Role), ApiError> {
    let caller = caller(app, headers)?;
    let found = if caller.kind == CallerKind::Guest || id.len() > 64 {
        None
    } else {
        app.access.workspace(id, &caller.user).await?
    };
    let Some((workspace, Some(role))) = found else {
        return Err(workspace_not_found());
    };
    if role < needed {
        return Err(forbidden("manage this workspace"));
    }
    Ok((caller, workspace, role))
}

#[utoipa::path(
    post, path = "/api/v1/workspaces", tag = "workspaces",
    security(("bearer" = [])),
    request_body(content = Object, description = "{name}"),
    responses(
        (status = 201, description = "the new workspace; the caller owns it"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "name must be 1 to 80 printable characters", body = ErrorBody),
        (status = 403, description = "guests hold no workspaces", body = ErrorBody),
    )
)]
async fn create_workspace(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = account(&app, &headers)?;
    let name = name_of(&body_of(body)?)?;
    let workspace = app.access.create_workspace(&caller.user, &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "data": workspace_json(&workspace, Role::Owner)})),
    )
        .into_response())
}

#[utoipa::path(
    get, path = "/api/v1/workspaces", tag = "workspaces",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "{workspaces: [...]}, the caller's"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 403, description = "guests hold no workspaces", body = ErrorBody),
    )
)]
async fn list_workspaces(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = account(&app, &headers)?;
    let list: Vec<Value> = app
        .access
        .user_workspaces(&caller.user)
        .await?
        .iter()
        .map(|(w, r)| workspace_json(w, *r))
        .collect();
    Ok(Json(json!({"success": true, "workspaces": list})).into_response())
}

#[utoipa::path(
    get, path = "/api/v1/workspaces/{id}", tag = "workspaces",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    responses(
        (status = 200, description = "the workspace and the caller's role"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn get_workspace(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, workspace, role) = require(&app, &headers, &id, Role::Viewer).await?;
    Ok(Json(json!({"success": true, "data": workspace_json(&workspace, role)})).into_response())
}

#[utoipa::path(
    patch, path = "/api/v1/workspaces/{id}", tag = "workspaces",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    request_body(content = Object, description = "{name}"),
    responses(
        (status = 200, description = "renamed"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "bad name", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn rename_workspace(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (_, _, role) = require(&app, &headers, &id, Role::Owner).await?;
    let name = name_of(&body_of(body)?)?;
    let workspace = app
        .access
        .rename_workspace(&id, &name)
        .await?
        .ok_or_else(workspace_not_found)?;
    Ok(Json(json!({"success": true, "data": workspace_json(&workspace, role)})).into_response())
}

/// Tells every session in the workspace's rooms that `user`'s rights (everyone's, for `None`)
/// may have changed.
async fn recheck_rooms(app: &AppState, id: &str, user: Option<&UserId>) -> Result<(), ApiError> {
    for meta in app.access.workspace_rooms(id).await? {
        app.access
            .publish_control(&meta.room_id, &Control::recheck(user.cloned()))
            .await?;
    }
    Ok(())
}

#[utoipa::path(
    delete, path = "/api/v1/workspaces/{id}", tag = "workspaces",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    responses(
        (status = 200, description = "deleted; its rooms stay, outside any workspace"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn delete_workspace(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&app, &headers, &id, Role::Owner).await?;
    for room in app.access.delete_workspace(&id).await? {
        app.access
            .publish_control(&room, &Control::recheck(None))
            .await?;
    }
    Ok(Json(json!({"success": true})).into_response())
}

#[utoipa::path(
    get, path = "/api/v1/workspaces/{id}/members", tag = "workspaces",
    operation_id = "workspace_list_members",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    responses(
        (status = 200, description = "{members: [{userId, name, role}]}"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn list_members(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&app, &headers, &id, Role::Viewer).await?;
    let mut list = Vec::new();
    for (user, role) in app.access.workspace_members(&id).await? {
        let name = app
            .engine
            .account_by_id(&user)
            .await?
            .map_or_else(|| user.to_string(), |a| a.name);
        list.push(json!({"userId": user, "name": name, "role": role.as_str()}));
    }
    Ok(Json(json!({"success": true, "members": list})).into_response())
}

async fn grant(
    app: &AppState,
    workspace: &Workspace,
    user: UserId,
    role: Option<Role>,
) -> Result<Response, ApiError> {
    if user == workspace.owner {
        return Err(ApiError::bad_request("the owner's role cannot change"));
    }
    app.access
        .set_workspace_member(&workspace.id, &user, role)
        .await?;
    recheck_rooms(app, &workspace.id, Some(&user)).await?;
    Ok(Json(json!({
        "success": true,
        "member": {"userId": user, "role": role.map(Role::as_str)},
    }))
    .into_response())
}

fn role_from(body: &Value) -> Result<Role, ApiError> {
    body.get("role")
        .and_then(Value::as_str)
        .and_then(Role::grantable)
        .ok_or_else(|| ApiError::bad_request("role must be \"editor\" or \"viewer\""))
}

#[utoipa::path(
    put, path = "/api/v1/workspaces/{id}/members/{user_id}", tag = "workspaces",
    operation_id = "workspace_put_member",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    request_body(content = Object, description = "{role: editor|viewer}"),
    responses(
        (status = 200, description = "given; their sockets in its rooms re-check"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "role must be editor or viewer", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn put_member(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (_, workspace, _) = require(&app, &headers, &id, Role::Owner).await?;
    let role = role_from(&body_of(body)?)?;
    grant(&app, &workspace, member_id(&user_id)?, Some(role)).await
}

#[utoipa::path(
    post, path = "/api/v1/workspaces/{id}/members", tag = "workspaces",
    operation_id = "workspace_add_member_by_email",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    request_body(content = Object, description = "{email, role: editor|viewer}"),
    responses(
        (status = 200, description = "given"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 400, description = "bad e-mail or role", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such workspace, or no account with this e-mail (USER_NOT_FOUND)", body = ErrorBody),
    )
)]
async fn add_member_by_email(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (_, workspace, _) = require(&app, &headers, &id, Role::Owner).await?;
    let body = body_of(body)?;
    let role = role_from(&body)?;
    let user = account_id(&app, &body).await?;
    grant(&app, &workspace, user, Some(role)).await
}

#[utoipa::path(
    delete, path = "/api/v1/workspaces/{id}/members/{user_id}", tag = "workspaces",
    operation_id = "workspace_remove_member",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id"),
        ("user_id" = String, Path, description = "the member's user id")
    ),
    responses(
        (status = 200, description = "removed; their sockets in its rooms re-check"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 403, description = "the caller's role may not do this", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn remove_member(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, workspace, _) = require(&app, &headers, &id, Role::Owner).await?;
    grant(&app, &workspace, member_id(&user_id)?, None).await
}

/// The workspace's rooms, each with the caller's role through the workspace.
#[utoipa::path(
    get, path = "/api/v1/workspaces/{id}/rooms", tag = "workspaces",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "the workspace id")
    ),
    responses(
        (status = 200, description = "{rooms: [...]}, with the caller's role in each"),
        (status = 401, description = "missing or invalid access token", body = ErrorBody),
        (status = 404, description = "no such workspace, or the caller is not a member (the same answer)", body = ErrorBody),
    )
)]
async fn list_rooms(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, _, role) = require(&app, &headers, &id, Role::Viewer).await?;
    let grants = Grants {
        room: None,
        workspace: Some(role),
    };
    let rooms: Vec<Value> = app
        .access
        .workspace_rooms(&id)
        .await?
        .iter()
        .filter_map(|meta| {
            role_of(&meta.settings, &caller.user, caller.kind, grants).map(|r| room_json(meta, r))
        })
        .collect();
    Ok(Json(json!({"success": true, "rooms": rooms})).into_response())
}
