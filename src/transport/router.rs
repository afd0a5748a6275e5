//! Every route of the public listener, and of the admin one when `admin_listen` is set: the
//! resource modules' routes merged with the handlers of `http.rs` and the OpenAPI document,
//! under the layers every response shares (CORS, request timeout, instance header, access log).

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{get, post};
use axum::{Router, middleware};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::http::{asset, create_room, guest, health, metrics, ready, room_exists, root};
use super::{AppState, access, auth, history, openapi, rooms, workspaces, ws};

/// Every HTTP response names the instance that served it, for debugging behind a balancer.
const INSTANCE_HEADER: &str = "x-drawbridge-instance";

pub fn router(app: Arc<AppState>) -> Router {
    let cors = cors(&app.origins);
    let mut routes = Router::new();
    // With an admin listener, metrics stay off the public one (and so off the proxy).
    if app.config.admin_listen.is_empty() {
        routes = routes.route("/metrics", get(metrics));
    }
    routes
        .route("/", get(root))
        .route("/ws", get(ws::upgrade))
        .route("/assets/{file}", get(asset))
        .route("/healthz", get(health))
        .route("/health", get(health))
        .route("/readyz", get(ready))
        .route("/ready", get(ready))
        .route("/api/v1/auth/guest", post(guest))
        .route("/api/v1/rooms", post(create_room))
        .route("/api/user/rooms", post(create_room))
        .route("/api/user/rooms/{room_id}", get(room_exists))
        .merge(rooms::routes())
        .merge(workspaces::routes())
        .merge(auth::routes())
        .merge(history::routes())
        .merge(openapi::routes())
        .layer(cors)
        // A request whose body trickles in (or whose handler hangs) is answered 408 and its
        // connection closed: the header timeout only covers the head.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(app.config.http_request_timeout_secs),
        ))
        .layer(instance_header(&app))
        .layer(middleware::from_fn_with_state(app.clone(), access::observe))
        .with_state(app)
}

/// The routes of the admin listener: metrics and the probes, never the public API.
pub fn admin_router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .layer(instance_header(&app))
        .layer(middleware::from_fn_with_state(app.clone(), access::observe))
        .with_state(app)
}

fn instance_header(app: &AppState) -> SetResponseHeaderLayer<HeaderValue> {
    let instance = HeaderValue::from_str(&app.instance_id)
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    SetResponseHeaderLayer::overriding(HeaderName::from_static(INSTANCE_HEADER), instance)
}

/// With an allow-list, a listed origin is echoed and credentials are allowed. With none, any
/// origin may call, but never with credentials: echoing every origin together with
/// `Allow-Credentials: true` would let any site make credentialed calls as its visitors.
/// The API authenticates with bearer tokens, which CORS credentials do not cover, so pages
/// keep working either way.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([CONTENT_TYPE, AUTHORIZATION]);
    if origins.is_empty() {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
    }
}
