//! The WebSocket upgrade: every check of `PROTOCOL.md` §1 happens here, before the `101`,
//! and is answered with a plain status and a short JSON body. Each refusal is logged at INFO
//! and counted by its reason, one of [`Refusal::reason`]'s fixed names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{ORIGIN, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::credentials::bearer;
use super::error::ApiError;
use super::limits::{self, Rejection, Rule};
use super::session;
use crate::domain::token::TokenError;
use crate::engine::EngineError;

/// Hard cap enforced by tungstenite; frames between the configured limit and this get a polite
/// `ERROR TOO_LARGE`, larger ones end the connection.
const HARD_FRAME_CAP_FACTOR: usize = 4;

/// Whether a request asks for a WebSocket (so `/` can serve both the page and Canvas clients).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let ip = super::client_ip::client_ip(peer.ip(), &parts.headers, &app.trusted_proxies);
    let checked = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => check(&app, ip, &parts.headers, parts.uri.query())
            .await
            .map(|admitted| (ws, admitted)),
        Err(rejection) => Err(Refusal {
            reason: "not_websocket",
            response: rejection.into_response(),
        }),
    };
    match checked {
        Ok((ws, admitted)) => accept(app, ws, admitted),
        Err(Refusal { reason, response }) => {
            let status = response.status().as_u16();
            tracing::info!(%ip, status, reason, "upgrade refused");
            app.metrics.upgrade_refused(reason);
            response
        }
    }
}

/// Why an upgrade was refused, and the answer.
struct Refusal {
    /// A fixed name, a metric label: `not_websocket`, `origin`, `no_token`, `bad_token`,
    /// `unverified`, `draining`, `not_ready`, `rate_limited`, `limit_unavailable`, `full`,
    /// `admission`.
    reason: &'static str,
    response: Response,
}

struct Admitted {
    token: session::Token,
    protocol: Option<String>,
    slot: tokio::sync::OwnedSemaphorePermit,
}

fn refuse(reason: &'static str, status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        reason,
        response: ApiError::new(status, code, message).into_response(),
    }
}

async fn check(
    app: &Arc<AppState>,
    ip: IpAddr,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Admitted, Refusal> {
    if !app.origins.is_empty() {
        let origin = headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !app
            .origins
            .iter()
            .any(|o| o == origin.trim_end_matches('/'))
        {
            return Err(refuse(
                "origin",
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "origin not allowed",
            ));
        }
    }
    let (token, protocol) = token_of(headers, query).ok_or_else(|| {
        refuse(
            "no_token",
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing token",
        )
    })?;
    let now = crate::unix_now();
    let (who, expires_at, guest) = app.tokens.identity(&token, now).map_err(|e| match e {
        TokenError::Unverified => refuse(
            "unverified",
            StatusCode::FORBIDDEN,
            "UNVERIFIED",
            &e.to_string(),
        ),
        other => refuse(
            "bad_token",
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            &other.to_string(),
        ),
    })?;
    // Guests have no refresh tokens, so nothing of theirs is ever revoked.
    let issued_at = app
        .tokens
        .verify(&token, now)
        .ok()
        .filter(|claims| !claims.guest)
        .map(|claims| claims.iat);
    if app.draining.is_cancelled() {
        return Err(refuse(
            "draining",
            StatusCode::SERVICE_UNAVAILABLE,
            "DRAINING",
            "instance is shutting down; reconnect",
        ));
    }
    if !app.engine.is_ready() {
        let unreachable = EngineError::Unavailable("engine not ready".into());
        return Err(Refusal {
            reason: "not_ready",
            response: ApiError::from(unreachable).into_response(),
        });
    }
    if let Some(refusal) = admit(app) {
        return Err(refusal);
    }
    // Counted like the HTTP limits (shared by every instance), answered the same way: 429
    // with Retry-After and RateLimit-* headers, or 503 when Redis cannot count.
    let subject = crate::domain::ipnet::subject(ip);
    limits::check(app, Rule::ws_upgrade(&app.config), &subject)
        .await
        .map_err(|rejection| Refusal {
            reason: match rejection {
                Rejection::Limited { .. } => "rate_limited",
                Rejection::Api(_) => "limit_unavailable",
            },
            response: rejection.into_response(),
        })?;
    let slot = app
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            refuse(
                "full",
                StatusCode::SERVICE_UNAVAILABLE,
                "FULL",
                "instance is at its connection limit",
            )
        })?;
    Ok(Admitted {
        token: session::Token {
            who,
            guest,
            issued_at,
            expires_at,
        },
        protocol,
        slot,
    })
}

/// This instance's admission rate: in a reconnect storm (an instance died and all its
/// clients come at once) the upgrades beyond it are turned away before they cost a Redis
/// call, told when to come back, with jitter so they do not all come back together.
fn admit(app: &AppState) -> Option<Refusal> {
    let admission = app.admission.as_ref()?;
    admission.check().err().map(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let retry_after = wait.as_secs() + 1 + rand::random_range(0..=ADMISSION_JITTER_SECS);
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BUSY",
            "too many connections arriving at once; retry later",
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        Refusal {
            reason: "admission",
            response,
        }
    })
}

/// Extra seconds, drawn at random, added to an admission refusal's `Retry-After`.
const ADMISSION_JITTER_SECS: u64 = 4;

/// The token from `?token=`, `Authorization: Bearer`, or the subprotocol `bearer.<jwt>` (the
/// one way a browser can send it without the URL); the subprotocol must then be echoed.
fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<(String, Option<String>)> {
    if let Some(token) =
        query.and_then(|q| url_params(q).find(|(k, _)| k == "token").map(|(_, v)| v))
    {
        return Some((token, None));
    }
    if let Some(token) = bearer(headers) {
        return Some((token.to_owned(), None));
    }
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| {
            p.strip_prefix("bearer.")
                .map(|t| (t.to_owned(), Some(p.to_owned())))
        })
}

fn url_params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn accept(app: Arc<AppState>, ws: WebSocketUpgrade, admitted: Admitted) -> Response {
    let config = &app.config;
    let mut ws = ws
        .read_buffer_size(config.ws_read_buffer)
        .write_buffer_size(config.ws_write_buffer)
        .max_message_size(config.max_frame_bytes * HARD_FRAME_CAP_FACTOR)
        .max_frame_size(config.max_frame_bytes * HARD_FRAME_CAP_FACTOR);
    if let Some(protocol) = admitted.protocol {
        ws = ws.protocols([protocol]);
    }
    let sessions = app.sessions.clone();
    ws.on_upgrade(move |socket| {
        sessions.track_future(session::run(app, socket, admitted.token, admitted.slot))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_query_header_or_subprotocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of(&headers, Some("a=1&token=t%2E1")),
            Some(("t.1".into(), None))
        );
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            "json, bearer.abc".parse().expect("header"),
        );
        assert_eq!(
            token_of(&headers, None),
            Some(("abc".into(), Some("bearer.abc".into())))
        );
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer xyz".parse().expect("header"),
        );
        assert_eq!(token_of(&headers, None), Some(("xyz".into(), None)));
        assert_eq!(token_of(&HeaderMap::new(), Some("a=1")), None);
    }
}
