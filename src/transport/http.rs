//! The handlers of `PROTOCOL.md` §2 that belong to no resource module (guest sign-in, room
//! creation and the Canvas existence check), health and readiness, metrics, and the bundled
//! whiteboard page. `router.rs` puts them together with the other modules' routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::limits::{self, Rejection, Rule};
use super::schemas;
use super::ws;
use crate::domain::UserId;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Web;

/// `/` is the page for browsers and the WebSocket for Canvas clients, which connect to the
/// bare host.
#[utoipa::path(
    get, path = "/", tag = "realtime",
    responses(
        (status = 200, description = "the whiteboard page", content_type = "text/html"),
        (status = 101, description = "with `Upgrade: websocket`: the WebSocket, exactly as /ws"),
    )
)]
pub(super) async fn root(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<std::net::SocketAddr>,
    request: Request,
) -> Response {
    if ws::wants_upgrade(request.headers()) {
        return ws::upgrade(state, peer, request).await;
    }
    serve_asset("index.html")
}

/// A file of the bundled whiteboard page.
#[utoipa::path(
    get, path = "/assets/{file}", tag = "operations",
    params(("file" = String, Path, description = "file name")),
    responses(
        (status = 200, description = "the file"),
        (status = 404, description = "no such file", body = schemas::ErrorBody),
    )
)]
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    serve_asset(&file)
}

fn serve_asset(file: &str) -> Response {
    let Some(content) = Web::get(file) else {
        return ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such file").into_response();
    };
    let mime = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    (
        [(CONTENT_TYPE, mime), (CACHE_CONTROL, "no-cache")],
        content.data.into_owned(),
    )
        .into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = schemas::Status))
)]
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 503 while Redis is unreachable or the instance drains.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready", body = schemas::Status),
        (status = 503, description = "draining or Redis unreachable", body = schemas::Status),
    )
)]
pub(super) async fn ready(State(app): State<Arc<AppState>>) -> Response {
    if app.draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response()
    } else if !app.engine.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "redis unreachable"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ready"})).into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub(super) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct GuestRequest {
    name: Option<String>,
}

const MAX_NAME_CHARS: usize = 40;

/// A name-only access token: guests join rooms through invite links without an account.
#[utoipa::path(
    post, path = "/api/v1/auth/guest", tag = "accounts",
    request_body = schemas::GuestRequest,
    responses(
        (status = 200, description = "a guest access token", body = schemas::GuestResponse),
        (status = 400, description = "bad name", body = schemas::ErrorBody),
        (status = 429, description = "too many guest tokens from this IP", body = schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub(super) async fn guest(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Option<Json<GuestRequest>>,
) -> Response {
    let rule = Rule::guest(&app.config);
    limits::guarded(&app, rule, peer, &headers, async {
        Ok::<_, Rejection>(issue_guest(&app, body)?)
    })
    .await
}

fn issue_guest(app: &AppState, body: Option<Json<GuestRequest>>) -> Result<Response, ApiError> {
    let name = body
        .and_then(|Json(b)| b.name)
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    let user = UserId::new(format!("guest-{}", uuid::Uuid::new_v4().simple()));
    let token = app
        .tokens
        .issue(&user, &name, None, true, true, crate::unix_now())
        .map_err(|_| {
            ApiError::from(crate::engine::EngineError::Internal("token signing".into()))
        })?;
    Ok(Json(json!({
        "success": true,
        "accessToken": token,
        "expiresIn": app.tokens.access_ttl_secs(),
        "user": {"userId": user, "name": name, "email": null, "guest": true},
    }))
    .into_response())
}

/// Create a room. The body is optional and ignored: Canvas posts nothing, not even a content
/// type.
#[utoipa::path(
    post, path = "/api/v1/rooms", tag = "rooms",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the new room", body = schemas::RoomCreated),
        (status = 401, description = "missing or invalid access token", body = schemas::ErrorBody),
        (status = 429, description = "too many rooms from this IP", body = schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub(super) async fn create_room(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<std::net::SocketAddr>,
    query: axum::extract::Query<super::rooms::CreateQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    super::rooms::create_room(state, peer, query, headers, body).await
}

/// A room's settings and the caller's role; 404 when it does not exist, has expired, or is a
/// members-only room the caller is not in (the three answer alike).
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}", tag = "rooms",
    security(("bearer" = [])),
    params(("room_id" = String, Path, description = "the room id")),
    responses(
        (status = 200, description = "it exists and the caller may join it", body = schemas::Success),
        (status = 401, description = "missing or invalid access token", body = schemas::ErrorBody),
        (status = 404, description = "no such room, or expired", body = schemas::ErrorBody),
    )
)]
pub(super) async fn room_exists(
    state: State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    room_id: Path<String>,
) -> Result<Response, ApiError> {
    super::rooms::get_room(state, headers, room_id).await
}
