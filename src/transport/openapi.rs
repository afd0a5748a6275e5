//! The OpenAPI 3 document of every HTTP route, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `/api-docs.json`, and `/api-docs`: one self-contained page that
//! renders it with no network access (no CDN, nothing fetched but the document itself).
//!
//! Canvas aliases are added from [`ALIASES`] as copies of their canonical operation, so the
//! two can never be documented differently.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem};
use utoipa::{Modify, OpenApi};

use super::AppState;
use super::schemas;

/// `(alias, canonical)`: every Canvas-compatible path and the route it calls.
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/home/signup", "/api/v1/auth/signup"),
    ("/api/home/verify-otp", "/api/v1/auth/verify-otp"),
    ("/api/home/signin", "/api/v1/auth/signin"),
    ("/api/home/refresh-token", "/api/v1/auth/refresh"),
    ("/api/home/logout", "/api/v1/auth/logout"),
    ("/api/user/logout", "/api/v1/auth/logout"),
    ("/api/user/me", "/api/v1/me"),
    ("/api/user/rooms", "/api/v1/rooms"),
    ("/api/user/rooms/{room_id}", "/api/v1/rooms/{room_id}"),
    ("/health", "/healthz"),
    ("/ready", "/readyz"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "drawbridge",
        description = "HTTP API of the drawbridge whiteboard gateway (PROTOCOL.md section 2). \
            Errors are `{success: false, code, message}`. Rate-limited routes answer with \
            `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, and over the limit \
            429 with `Retry-After`."
    ),
    paths(
        super::auth::signup,
        super::auth::verify_otp,
        super::auth::signin,
        super::auth::refresh,
        super::auth::logout,
        super::auth::reset_request,
        super::auth::reset_confirm,
        super::auth::me,
        super::http::guest,
        super::http::create_room,
        super::http::room_exists,
        super::history::ops,
        super::history::state,
        super::history::versions,
        super::history::create_version,
        super::history::diff,
        super::history::restore,
        super::history::export_json,
        super::history::export_svg,
        super::rooms::patch_room,
        super::rooms::delete_room,
        super::rooms::list_members,
        super::rooms::put_member,
        super::rooms::add_member_by_email,
        super::rooms::remove_member,
        super::rooms::my_rooms,
        super::rooms::my_activity,
        super::workspaces::create_workspace,
        super::workspaces::list_workspaces,
        super::workspaces::get_workspace,
        super::workspaces::rename_workspace,
        super::workspaces::delete_workspace,
        super::workspaces::list_members,
        super::workspaces::put_member,
        super::workspaces::add_member_by_email,
        super::workspaces::remove_member,
        super::workspaces::list_rooms,
        super::http::root,
        super::http::asset,
        super::http::health,
        super::http::ready,
        super::http::metrics,
        websocket,
        document,
        page,
    ),
    components(schemas(
        schemas::ErrorBody,
        schemas::User,
        schemas::SignupResponse,
        schemas::SessionResponse,
        schemas::UnverifiedResponse,
        schemas::MessageResponse,
        schemas::MeResponse,
        schemas::GuestRequest,
        schemas::GuestResponse,
        schemas::RoomCreated,
        schemas::Success,
        schemas::Status,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "accounts", description = "sign-up with an e-mailed code, sign-in, tokens"),
        (name = "rooms", description = "whiteboard rooms, their settings and members (PROTOCOL.md section 6)"),
        (name = "history", description = "the op log, past boards, versions, restore, exports (PROTOCOL.md section 5)"),
        (name = "workspaces", description = "a team's rooms under one roof, with roles that carry into each"),
        (name = "realtime", description = "the WebSocket (PROTOCOL.md section 1)"),
        (name = "operations", description = "health, readiness, metrics, these docs"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole document, aliases included.
pub fn document_value() -> Document {
    let mut doc = ApiDoc::openapi();
    for (alias, canonical) in ALIASES {
        let Some(item) = doc.paths.paths.get(*canonical).cloned() else {
            continue;
        };
        doc.paths
            .paths
            .insert((*alias).to_owned(), as_alias(item, alias, canonical));
    }
    doc
}

/// A copy of the canonical item whose operations say what they are an alias of, with
/// distinct operation ids (OpenAPI requires them unique).
fn as_alias(mut item: PathItem, alias: &str, canonical: &str) -> PathItem {
    let suffix: String = alias
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let note = |op: &mut Operation| {
        op.operation_id = op.operation_id.take().map(|id| format!("{id}_via{suffix}"));
        op.summary = Some(format!(
            "Canvas alias of {canonical}: {}",
            op.summary.take().unwrap_or_default()
        ));
    };
    for op in [&mut item.get, &mut item.post].into_iter().flatten() {
        note(op);
    }
    // Canvas calls its aliases with GET and POST only; §6's other methods are canonical-only.
    item.put = None;
    item.patch = None;
    item.delete = None;
    item
}

static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    document_value()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
});

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api-docs.json", get(document))
        .route("/api-docs", get(page))
}

/// The OpenAPI document.
#[utoipa::path(
    get, path = "/api-docs.json", tag = "operations",
    responses((status = 200, description = "this OpenAPI 3 document", content_type = "application/json"))
)]
async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT_JSON.as_str()).into_response()
}

/// A browsable page rendering the document, self-contained (works offline).
#[utoipa::path(
    get, path = "/api-docs", tag = "operations",
    responses((status = 200, description = "HTML page", content_type = "text/html"))
)]
async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("api_docs.html"),
    )
        .into_response()
}

/// The WebSocket upgrade (documented here; served by `transport::ws`). Every check happens
/// before the `101` and is answered with a plain status and a JSON error body.
#[utoipa::path(
    get, path = "/ws", tag = "realtime",
    params(
        ("token" = Option<String>, Query, description = "access token; or `Authorization: Bearer`, or the subprotocol `bearer.<jwt>`"),
    ),
    responses(
        (status = 101, description = "switching to the v1 WebSocket protocol"),
        (status = 401, description = "token missing, malformed, badly signed, expired or not an access token", body = schemas::ErrorBody),
        (status = 403, description = "account not verified, or Origin not allowed", body = schemas::ErrorBody),
        (status = 429, description = "too many upgrades from this IP", body = schemas::ErrorBody),
        (status = 503, description = "instance draining, full, or Redis unreachable", body = schemas::ErrorBody),
    )
)]
#[allow(dead_code)]
async fn websocket() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the routers serve (`http::router`, `auth::routes`, `rooms::routes`,
    /// `workspaces::routes`, `routes` above); a route
    /// added there must be added here and documented.
    const ROUTES: &[(&str, &str)] = &[
        ("get", "/"),
        ("get", "/ws"),
        ("get", "/assets/{file}"),
        ("get", "/healthz"),
        ("get", "/health"),
        ("get", "/readyz"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("post", "/api/v1/auth/guest"),
        ("post", "/api/v1/rooms"),
        ("post", "/api/user/rooms"),
        ("get", "/api/v1/rooms/{room_id}"),
        ("get", "/api/user/rooms/{room_id}"),
        ("get", "/api/v1/rooms/{room_id}/ops"),
        ("get", "/api/v1/rooms/{room_id}/state"),
        ("get", "/api/v1/rooms/{room_id}/versions"),
        ("post", "/api/v1/rooms/{room_id}/versions"),
        ("get", "/api/v1/rooms/{room_id}/diff"),
        ("post", "/api/v1/rooms/{room_id}/restore"),
        ("get", "/api/v1/rooms/{room_id}/export.json"),
        ("get", "/api/v1/rooms/{room_id}/export.svg"),
        ("post", "/api/v1/auth/signup"),
        ("post", "/api/home/signup"),
        ("post", "/api/v1/auth/verify-otp"),
        ("post", "/api/home/verify-otp"),
        ("post", "/api/v1/auth/signin"),
        ("post", "/api/home/signin"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/home/refresh-token"),
        ("post", "/api/v1/auth/logout"),
        ("post", "/api/v1/auth/reset/request"),
        ("post", "/api/v1/auth/reset/confirm"),
        ("post", "/api/home/logout"),
        ("post", "/api/user/logout"),
        ("get", "/api/v1/me"),
        ("get", "/api/user/me"),
        ("get", "/api-docs.json"),
        ("get", "/api-docs"),
        ("patch", "/api/v1/rooms/{room_id}"),
        ("delete", "/api/v1/rooms/{room_id}"),
        ("get", "/api/v1/rooms/{room_id}/members"),
        ("post", "/api/v1/rooms/{room_id}/members"),
        ("put", "/api/v1/rooms/{room_id}/members/{user_id}"),
        ("delete", "/api/v1/rooms/{room_id}/members/{user_id}"),
        ("get", "/api/v1/me/rooms"),
        ("get", "/api/v1/me/activity"),
        ("post", "/api/v1/workspaces"),
        ("get", "/api/v1/workspaces"),
        ("get", "/api/v1/workspaces/{id}"),
        ("patch", "/api/v1/workspaces/{id}"),
        ("delete", "/api/v1/workspaces/{id}"),
        ("get", "/api/v1/workspaces/{id}/members"),
        ("post", "/api/v1/workspaces/{id}/members"),
        ("put", "/api/v1/workspaces/{id}/members/{user_id}"),
        ("delete", "/api/v1/workspaces/{id}/members/{user_id}"),
        ("get", "/api/v1/workspaces/{id}/rooms"),
    ];

    #[test]
    fn every_route_is_documented_once_with_a_unique_operation_id() {
        let doc: serde_json::Value =
            serde_json::from_str(&DOCUMENT_JSON).expect("the document is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = doc["paths"].as_object().expect("paths");
        let mut ids = std::collections::HashSet::new();
        for (method, path) in ROUTES {
            let op = &paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not documented"))[*method];
            assert!(op.is_object(), "{method} {path} is not documented");
            assert!(!op["responses"].as_object().expect("responses").is_empty());
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
        }
        let documented: usize = paths
            .values()
            .map(|item| {
                ["get", "post", "put", "patch", "delete"]
                    .iter()
                    .filter(|m| item[**m].is_object())
                    .count()
            })
            .sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "nothing documented that is not served"
        );
        assert!(
            paths["/api/home/signin"]["post"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("Canvas alias of /api/v1/auth/signin"))
        );
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn the_page_fetches_nothing_but_the_document() {
        let page = include_str!("api_docs.html");
        assert!(page.contains("api-docs.json"));
        for remote in ["http://", "https://", "//cdn", "src=\"//", "@import"] {
            assert!(!page.contains(remote), "the page refers to {remote}");
        }
    }
}
