//! Credentials presented over HTTP, read in one place for every route.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::AppState;
use super::error::ApiError;
use crate::domain::token::AccessClaims;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The caller's verified access-token claims, or 401.
pub fn access_claims(app: &AppState, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    app.tokens
        .verify(token, crate::unix_now())
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}
