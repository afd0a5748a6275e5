//! One INFO line and one metric sample per HTTP request: method, route template, status,
//! latency and client IP, and the URI with any token removed (a browser may still put its
//! access token in `?token=`, and access logs end up in many hands).
//!
//! Probes and scrapes (`/healthz`, `/readyz`, `/metrics` and their aliases) log under the target
//! `drawbridge::access::probe`, so an operator can quiet them alone, e.g.
//! `log = "info,drawbridge::access::probe=warn"`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::client_ip::client_ip;
use crate::metrics::HttpLabels;

/// Query parameters whose value is never logged.
const SECRET_PARAMS: [&str; 3] = ["token", "access_token", "refresh_token"];

/// Routes polled by machines, logged under their own target.
const PROBE_ROUTES: [&str; 5] = ["/healthz", "/health", "/readyz", "/ready", "/metrics"];

/// The middleware: wraps every route, after routing, so the route template is known.
pub async fn observe(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let uri = redact(request.uri());
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| client_ip(peer.ip(), request.headers(), &app.trusted_proxies));
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // Microsecond precision: more digits are noise in a log line.
    let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
    if PROBE_ROUTES.contains(&route.as_str()) {
        tracing::info!(target: "drawbridge::access::probe", method, route, status, latency_ms, ip, uri, "request");
    } else {
        tracing::info!(target: "drawbridge::access", method, route, status, latency_ms, ip, uri, "request");
    }
    app.metrics.http_request(
        HttpLabels {
            method,
            route,
            status,
        },
        elapsed,
    );
    response
}

/// A bounded label for the method: the ones routes use, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The path and query, with the value of every secret parameter replaced by `[redacted]`.
pub fn redact(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let decoded = form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if SECRET_PARAMS
                .iter()
                .any(|s| decoded.eq_ignore_ascii_case(s))
            {
                format!("{name}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(uri: &str) -> String {
        redact(&uri.parse().expect("uri"))
    }

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(redacted("/ws?token=eyJ.abc.def"), "/ws?token=[redacted]");
        assert_eq!(
            redacted("/ws?room=1&token=eyJ&x=2"),
            "/ws?room=1&token=[redacted]&x=2"
        );
        // Percent-encoded names are decoded before the comparison.
        assert_eq!(redacted("/?%74oken=eyJ"), "/?%74oken=[redacted]");
        assert_eq!(redacted("/?TOKEN=eyJ"), "/?TOKEN=[redacted]");
        assert_eq!(
            redacted("/x?access_token=a&refresh_token=b"),
            "/x?access_token=[redacted]&refresh_token=[redacted]"
        );
        assert_eq!(redacted("/healthz"), "/healthz");
        assert_eq!(redacted("/a?tokens=1"), "/a?tokens=1");
    }
}
