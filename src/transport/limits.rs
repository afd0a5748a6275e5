//! Per-IP limits on the HTTP routes, counted by the engine so every instance shares them, and
//! the answers they produce: `RateLimit-*` headers on every counted response, and over the
//! limit a 429 with `Retry-After`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::client_ip::client_ip;
use super::error::ApiError;
use crate::config::Config;
use crate::domain::ipnet::{IpNet, subject};
use crate::engine::{EngineError, RateDecision};

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// One limit: `limit` hits of `kind` per `window`; a limit of 0 is no limit.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The counter's name, part of its key (`rl:<kind>:<subject>`).
    pub kind: &'static str,
    pub limit: u32,
    pub window: Duration,
}

impl Rule {
    pub fn signup(config: &Config) -> Self {
        Self::new(
            "signup",
            config.auth_rate_limit,
            config.auth_rate_window_secs,
        )
    }

    pub fn signin(config: &Config) -> Self {
        Self::new(
            "signin",
            config.auth_rate_limit,
            config.auth_rate_window_secs,
        )
    }

    /// Code checks per IP, on top of the tries per code and the codes per address: caps how
    /// fast one client can guess across many pending sign-ups.
    pub fn verify_otp(config: &Config) -> Self {
        Self::new(
            "verify",
            config.verify_rate_limit,
            config.verify_rate_window_secs,
        )
    }

    /// Refreshes of one refresh token (counted by its hash): a token is used once, plus the
    /// retries of a flaky network or a second tab. Per token rather than per IP, so an office
    /// behind one NAT is not locked out by its own colleagues.
    pub fn refresh(config: &Config) -> Self {
        Self::new(
            "refresh",
            config.refresh_rate_limit,
            config.refresh_rate_window_secs,
        )
    }

    /// Refreshes per IP: a ceiling high enough for a large office, against floods of made-up
    /// tokens (each still costs a lookup).
    pub fn refresh_ip(config: &Config) -> Self {
        Self::new(
            "refresh",
            config.refresh_ip_rate_limit,
            config.refresh_rate_window_secs,
        )
    }

    /// Password-reset requests per IP (the sign-up budget's size and window): each may send
    /// a mail, on top of the codes-per-address limit.
    pub fn reset(config: &Config) -> Self {
        Self::new(
            "reset",
            config.auth_rate_limit,
            config.auth_rate_window_secs,
        )
    }

    /// Guest tokens per IP: each is a fresh identity, so an unlimited supply would let one
    /// client step around every per-user limit.
    pub fn guest(config: &Config) -> Self {
        Self::new(
            "guest",
            config.guest_rate_limit,
            config.guest_rate_window_secs,
        )
    }

    /// WebSocket upgrades per IP per minute.
    pub fn ws_upgrade(config: &Config) -> Self {
        Self::new("ws", config.ws_upgrades_per_minute, 60)
    }

    pub fn room(config: &Config) -> Self {
        Self::new("room", config.room_rate_limit, config.room_rate_window_secs)
    }

    /// Counted per e-mail address rather than per IP.
    pub fn otp_send(config: &Config) -> Self {
        Self::new("otp", config.otp_send_limit, config.otp_send_window_secs)
    }

    fn new(kind: &'static str, limit: u32, window_secs: u64) -> Self {
        Self {
            kind,
            limit,
            window: Duration::from_secs(window_secs),
        }
    }
}

/// What is left of an allowance, for the response headers.
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

impl Quota {
    /// Adds the `RateLimit-*` headers to a response.
    pub fn stamp(self, mut response: Response) -> Response {
        stamp(
            response.headers_mut(),
            self.limit,
            self.remaining,
            self.reset,
        );
        response
    }
}

/// Why a rate-limited route refused: an ordinary API error, or too many requests.
#[derive(Debug)]
pub enum Rejection {
    Api(ApiError),
    Limited { limit: u32, retry_after: Duration },
}

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<EngineError> for Rejection {
    fn from(e: EngineError) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Limited { limit, retry_after } => {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("too many requests: retry in {} s", whole_secs(retry_after)),
                )
                .into_response();
                let headers = response.headers_mut();
                headers.insert(RETRY_AFTER, HeaderValue::from(whole_secs(retry_after)));
                stamp(headers, limit, 0, retry_after);
                response
            }
        }
    }
}

/// Rounded up, at least 1: a client told 0 would retry at once and be refused again.
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn stamp(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: Duration) {
    headers.insert(LIMIT, HeaderValue::from(limit));
    headers.insert(REMAINING, HeaderValue::from(remaining));
    headers.insert(RESET, HeaderValue::from(whole_secs(reset)));
}

/// Runs `work` if the request's client IP is within `rule`, stamping the `RateLimit-*`
/// headers on whatever it answers, errors included.
pub async fn guarded(
    app: &AppState,
    rule: Rule,
    peer: SocketAddr,
    headers: &HeaderMap,
    work: impl Future<Output = Result<Response, Rejection>>,
) -> Response {
    match check_ip(app, rule, peer, headers).await {
        Err(rejection) => rejection.into_response(),
        Ok(quota) => {
            let response = work.await.unwrap_or_else(IntoResponse::into_response);
            match quota {
                // A 429 from a narrower limit inside `work` (per token, per address) carries
                // that limit's headers, which are the ones the client must obey.
                Some(_) if response.status() == StatusCode::TOO_MANY_REQUESTS => response,
                Some(quota) => quota.stamp(response),
                None => response,
            }
        }
    }
}

/// Counts one hit of `rule` for the request's client IP.
pub async fn check_ip(
    app: &AppState,
    rule: Rule,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Option<Quota>, Rejection> {
    let ip = client_ip(peer.ip(), headers, &app.trusted_proxies);
    check(app, rule, &subject(ip)).await
}

/// Counts one hit of `rule` for `subject`; `None` when the rule is off.
pub async fn check(app: &AppState, rule: Rule, subject: &str) -> Result<Option<Quota>, Rejection> {
    if rule.limit == 0 {
        return Ok(None);
    }
    match app
        .engine
        .rate_limit(rule.kind, subject, rule.limit, rule.window)
        .await?
    {
        RateDecision::Allowed { remaining, reset } => Ok(Some(Quota {
            limit: rule.limit,
            remaining,
            reset,
        })),
        RateDecision::Limited { retry_after } => {
            // IPs (and /64 blocks) are logged; other subjects (e-mail addresses, token hashes)
            // are personal data or secrets and are not.
            let ip = IpNet::parse(subject).map(|_| subject);
            tracing::info!(
                kind = rule.kind,
                limit = rule.limit,
                retry_after_secs = whole_secs(retry_after),
                ip = ip.map(tracing::field::display),
                "rate limited"
            );
            app.metrics.rate_limited(rule.kind);
            Err(Rejection::Limited {
                limit: rule.limit,
                retry_after,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 1);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_secs(Duration::from_secs(900)), 900);
    }

    #[test]
    fn too_many_requests_carries_retry_after_and_ratelimit_headers() {
        let response = Rejection::Limited {
            limit: 10,
            retry_after: Duration::from_millis(4_200),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = response.headers();
        assert_eq!(h[RETRY_AFTER], "5");
        assert_eq!(h[LIMIT], "10");
        assert_eq!(h[REMAINING], "0");
        assert_eq!(h[RESET], "5");
    }
}
