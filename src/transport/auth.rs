//! The account routes of `PROTOCOL.md` §2: sign-up with an e-mailed code, verification,
//! sign-in, rotating refresh tokens, logout and `/me`, each under `/api/v1` and its Canvas
//! alias. Rules come from [`domain::accounts`](crate::domain::accounts), state from the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use super::AppState;
use super::credentials::{access_claims, bearer};
use super::error::ApiError;
use super::limits::{self, Rejection, Rule};
use super::schemas::{
    ErrorBody, MeResponse, MessageResponse, SessionResponse, SignupResponse, UnverifiedResponse,
};
use crate::domain::accounts::{
    self, Account, OTP_MAX_TRIES, OTP_TTL, REFRESH_TTL, VERIFICATION_TTL_SECS,
};
use crate::domain::token::TokenError;
use crate::engine::{EngineError, OtpOutcome, PasswordReset, RefreshOutcome, Rotation};
use crate::mail::{reset_mail, verification_mail};

/// Argon2 takes ~20 MiB and tens of milliseconds per hash; this many at once per instance
/// keeps a burst of sign-ins from starving the blocking pool or the memory.
static HASHERS: Semaphore = Semaphore::const_new(4);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/home/signup", post(signup))
        .route("/api/v1/auth/verify-otp", post(verify_otp))
        .route("/api/home/verify-otp", post(verify_otp))
        .route("/api/v1/auth/signin", post(signin))
        .route("/api/home/signin", post(signin))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/home/refresh-token", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/home/logout", post(logout))
        .route("/api/user/logout", post(logout))
        .route("/api/v1/auth/reset/request", post(reset_request))
        .route("/api/v1/auth/reset/confirm", post(reset_confirm))
        .route("/api/v1/me", get(me))
        .route("/api/user/me", get(me))
}

#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    /// 1 to 40 printable characters.
    #[schema(required = true, value_type = String, example = "Ann")]
    name: Option<String>,
    /// Trimmed and lower-cased; the account's key.
    #[schema(required = true, value_type = String, example = "ann@example.com")]
    email: Option<String>,
    /// 8 to 128 characters.
    #[schema(required = true, value_type = String, example = "correct horse battery")]
    password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The six digits from the e-mail; a JSON number is accepted too, as some clients send one.
    #[schema(required = true, value_type = String, example = "042137")]
    otp: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct SigninRequest {
    #[schema(required = true, value_type = String, example = "ann@example.com")]
    email: Option<String>,
    #[schema(required = true, value_type = String)]
    password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    #[schema(required = true, value_type = String, example = "ann@example.com")]
    email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetConfirm {
    #[schema(required = true, value_type = String, example = "ann@example.com")]
    email: Option<String>,
    /// The 6-digit code from the e-mail (a string or a number).
    #[schema(required = true, value_type = String, example = "123456")]
    code: Option<Value>,
    /// The new password, 8 to 128 characters.
    #[schema(required = true, value_type = String)]
    password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[serde(rename = "refreshToken")]
    #[schema(required = true, value_type = String)]
    refresh_token: Option<String>,
}

/// The JSON body, or a 400 that says what was expected.
fn body<T: DeserializeOwned>(
    body: Result<Json<T>, JsonRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|rejection| {
        ApiError::bad_request(format!(
            "the body must be JSON {shape}: {}",
            rejection.body_text()
        ))
    })
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{field} is required")))
}

fn internal(what: &str) -> EngineError {
    EngineError::Internal(what.to_owned())
}

fn user_json(account: &Account) -> Value {
    json!({"userId": account.id, "name": account.name, "email": account.email})
}

async fn hash_password(password: String) -> Result<String, EngineError> {
    let _permit = HASHERS.acquire().await.map_err(|_| internal("hasher"))?;
    tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(|_| internal("hasher task"))?
        .map_err(|e| EngineError::Internal(e.to_string()))
}

async fn verify_password(hash: Option<String>, password: String) -> Result<bool, EngineError> {
    let _permit = HASHERS.acquire().await.map_err(|_| internal("hasher"))?;
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => accounts::verify_password(&hash, &password),
        None => {
            accounts::verify_nothing(&password);
            false
        }
    })
    .await
    .map_err(|_| internal("hasher task"))
}

/// Stores a fresh code for the account and e-mails it. `false` when none was sent: the
/// address had too many codes lately, or the mail could not be delivered (logged).
async fn send_code(app: &AppState, account: &Account) -> Result<bool, Rejection> {
    match limits::check(app, Rule::otp_send(&app.config), &account.email).await {
        Ok(_) => {}
        Err(Rejection::Limited { .. }) => return Ok(false),
        Err(other) => return Err(other),
    }
    let code = accounts::new_otp();
    let hash = accounts::otp_hash(&app.otp_pepper, &account.email, &code);
    app.engine.store_otp(&account.email, &hash, OTP_TTL).await?;
    let mail = verification_mail(&account.email, &account.name, &code);
    match app.mailer.send(&mail).await {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::error!(error = %e, "the verification code could not be e-mailed");
            Ok(false)
        }
    }
}

fn verification_token(app: &AppState, account: &Account) -> Result<String, EngineError> {
    app.tokens
        .issue_verification_for(
            &account.email,
            &account.id,
            VERIFICATION_TTL_SECS,
            crate::unix_now(),
        )
        .map_err(|_| internal("token signing"))
}

/// Mints an access token and a new refresh token for a verified account: the body every
/// successful sign-in, verification and refresh answers with.
async fn session(
    app: &AppState,
    account: &Account,
    refresh_token: Option<String>,
    message: &str,
) -> Result<Response, Rejection> {
    let access = app
        .tokens
        .issue(
            &account.id,
            &account.name,
            Some(&account.email),
            account.verified,
            false,
            crate::unix_now(),
        )
        .map_err(|_| internal("token signing"))?;
    let refresh = match refresh_token {
        Some(token) => token,
        None => {
            let token = accounts::new_refresh_token();
            app.engine
                .store_refresh(&account.id, &accounts::refresh_hash(&token), REFRESH_TTL)
                .await?;
            token
        }
    };
    Ok(Json(json!({
        "success": true,
        "message": message,
        "accessToken": access,
        "refreshToken": refresh,
        "expiresIn": app.tokens.access_ttl_secs(),
        "user": user_json(account),
    }))
    .into_response())
}

/// Create an account; a 6-digit code (valid 10 minutes) goes by e-mail.
#[utoipa::path(
    post, path = "/api/v1/auth/signup", tag = "accounts",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "account created, code e-mailed", body = SignupResponse),
        (status = 400, description = "a field is missing or invalid; the message names each", body = ErrorBody),
        (status = 409, description = "a verified account has this e-mail (an unverified one is replaced)", body = ErrorBody),
        (status = 429, description = "too many sign-ups from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "shared state unreachable", body = ErrorBody),
    )
)]
pub async fn signup(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<SignupRequest>, JsonRejection>,
) -> Response {
    let rule = Rule::signup(&app.config);
    limits::guarded(&app, rule, peer, &headers, sign_up(&app, request)).await
}

async fn sign_up(
    app: &AppState,
    request: Result<Json<SignupRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{name, email, password}")?;
    let signup = accounts::validate_signup(
        request.name.as_deref(),
        request.email.as_deref(),
        request.password.as_deref(),
    )
    .map_err(|errors| ApiError::bad_request(errors.join("; ")))?;
    let taken = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "EMAIL_TAKEN",
            "an account with this e-mail already exists: sign in instead",
        )
    };
    // Checked first so that a taken address costs no hashing; create_account decides races.
    // Only a verified account holds its address: an unverified one is replaced, so nobody
    // can squat an address they cannot read mail for.
    if app
        .engine
        .account(&signup.email)
        .await?
        .is_some_and(|a| a.verified)
    {
        return Err(taken().into());
    }
    let account = Account {
        id: accounts::new_user_id(),
        name: signup.name,
        email: signup.email,
        password_hash: hash_password(signup.password).await?,
        verified: false,
        created_at: crate::engine::now_ms(),
    };
    if !app.engine.create_account(&account).await? {
        return Err(taken().into());
    }
    let message = if send_code(app, &account).await? {
        format!(
            "account created: enter the 6-digit code we e-mailed to {}",
            account.email
        )
    } else {
        "account created, but the code could not be e-mailed: sign in to get a new one".to_owned()
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "message": message,
            "verificationToken": verification_token(app, &account)?,
            "user": user_json(&account),
        })),
    )
        .into_response())
}

/// Confirm the e-mailed code (with `Bearer <verificationToken>`): the account is verified and
/// signed in. At most 5 wrong tries per code, and a limit per IP on checks of any code.
#[utoipa::path(
    post, path = "/api/v1/auth/verify-otp", tag = "accounts",
    request_body = VerifyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "verified and signed in", body = SessionResponse),
        (status = 400, description = "not six digits (BAD_REQUEST), wrong (INVALID_OTP), expired or used (OTP_EXPIRED), or too many wrong tries (OTP_LOCKED)", body = ErrorBody),
        (status = 401, description = "missing, forged, expired or wrong-type verification token", body = ErrorBody),
        (status = 409, description = "already verified (ALREADY_VERIFIED)", body = ErrorBody),
        (status = 429, description = "too many verifications from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn verify_otp(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<VerifyRequest>, JsonRejection>,
) -> Response {
    let rule = Rule::verify_otp(&app.config);
    let work = verify(&app, &headers, request);
    limits::guarded(&app, rule, peer, &headers, work).await
}

async fn verify(
    app: &AppState,
    headers: &HeaderMap,
    request: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized("send the verificationToken from sign-up as Authorization: Bearer")
    })?;
    let (email, bound_to) = app
        .tokens
        .verify_verification_for(token, crate::unix_now())
        .map_err(|e| match e {
            TokenError::Expired => {
                ApiError::unauthorized("the verification token has expired: sign in for a new one")
            }
            _ => ApiError::unauthorized("that is not a valid verification token"),
        })?;
    let request = body(request, "{otp}")?;
    let code = request
        .otp
        .and_then(|v| match v {
            Value::String(s) => accounts::parse_otp(&s),
            Value::Number(n) => accounts::parse_otp(&n.to_string()),
            _ => None,
        })
        .ok_or_else(|| ApiError::bad_request("otp must be the 6-digit code from the e-mail"))?;
    let hash = accounts::otp_hash(&app.otp_pepper, &email, &code);
    let outcome = app
        .engine
        .confirm_otp(&email, &hash, OTP_MAX_TRIES, bound_to.as_ref())
        .await?;
    let bad = |code, message: String| ApiError::new(StatusCode::BAD_REQUEST, code, message);
    match outcome {
        OtpOutcome::Verified => {}
        OtpOutcome::Wrong { tries_left } => {
            return Err(bad(
                "INVALID_OTP",
                format!("wrong code: {tries_left} more tries before it is cancelled"),
            )
            .into());
        }
        OtpOutcome::Locked => {
            return Err(bad(
                "OTP_LOCKED",
                "too many wrong codes: sign in to get a new one".to_owned(),
            )
            .into());
        }
        OtpOutcome::Missing => {
            let account = app.engine.account(&email).await?;
            return Err(match account {
                Some(a) if bound_to.as_ref().is_some_and(|b| b != &a.id) => ApiError::unauthorized(
                    "a newer sign-up replaced this one: use the code and token of that one, \
                         or sign up again",
                ),
                Some(a) if a.verified => ApiError::new(
                    StatusCode::CONFLICT,
                    "ALREADY_VERIFIED",
                    "this account is already verified: sign in",
                ),
                Some(_) => bad(
                    "OTP_EXPIRED",
                    "the code has expired or was already used: sign in to get a new one".to_owned(),
                ),
                None => ApiError::unauthorized("no account for this verification token"),
            }
            .into());
        }
    }
    let account = app
        .engine
        .account(&email)
        .await?
        .ok_or_else(|| ApiError::unauthorized("no account for this verification token"))?;
    session(app, &account, None, "e-mail verified: you are signed in").await
}

/// Sign in with e-mail and password.
#[utoipa::path(
    post, path = "/api/v1/auth/signin", tag = "accounts",
    request_body = SigninRequest,
    responses(
        (status = 200, description = "signed in", body = SessionResponse),
        (status = 400, description = "a field is missing", body = ErrorBody),
        (status = 401, description = "wrong e-mail or password", body = ErrorBody),
        (status = 403, description = "e-mail not verified yet: a fresh code was sent", body = UnverifiedResponse),
        (status = 429, description = "too many sign-ins from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn signin(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<SigninRequest>, JsonRejection>,
) -> Response {
    let rule = Rule::signin(&app.config);
    limits::guarded(&app, rule, peer, &headers, sign_in(&app, request)).await
}

async fn sign_in(
    app: &AppState,
    request: Result<Json<SigninRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{email, password}")?;
    let email = required(request.email, "email")?;
    let password = required(request.password, "password")?;
    let wrong = || ApiError::unauthorized("wrong e-mail or password");
    // A malformed address is just an unknown one: the answer must not tell them apart.
    let account = match accounts::normalize_email(&email) {
        Ok(email) => app.engine.account(&email).await?,
        Err(_) => None,
    };
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    if !verify_password(hash, password).await? {
        return Err(wrong().into());
    }
    let Some(account) = account else {
        return Err(wrong().into());
    };
    if !account.verified {
        let message = if send_code(app, &account).await? {
            format!(
                "verify your e-mail first: we sent a new 6-digit code to {}",
                account.email
            )
        } else {
            "verify your e-mail first with the code we sent earlier (no new code yet: too many \
             requested, or the mail could not be sent)"
                .to_owned()
        };
        return Ok((
            StatusCode::FORBIDDEN,
            Json(json!({
                "success": false,
                "code": "UNVERIFIED",
                "message": message,
                "verificationToken": verification_token(app, &account)?,
                "user": user_json(&account),
            })),
        )
            .into_response());
    }
    session(app, &account, None, "signed in").await
}

/// Exchange a refresh token for a new access and refresh token; the presented one dies. A token
/// that was already used is taken as stolen: 401 `TOKEN_REUSED` and every session of the account
/// is signed out.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "accounts",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "a new pair", body = SessionResponse),
        (status = 400, description = "refreshToken missing", body = ErrorBody),
        (status = 401, description = "invalid, expired, revoked or reused (TOKEN_REUSED) token", body = ErrorBody),
        (status = 429, description = "too many refreshes from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn refresh(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<RefreshRequest>, JsonRejection>,
) -> Response {
    let rule = Rule::refresh_ip(&app.config);
    limits::guarded(&app, rule, peer, &headers, rotate(&app, request)).await
}

async fn rotate(
    app: &AppState,
    request: Result<Json<RefreshRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{refreshToken}")?;
    let presented = required(request.refresh_token, "refreshToken")?;
    let invalid = || ApiError::unauthorized("the refresh token is invalid, expired or revoked");
    let presented = accounts::parse_refresh_token(&presented).ok_or_else(invalid)?;
    let presented_hash = accounts::refresh_hash(presented);
    limits::check(app, Rule::refresh(&app.config), &presented_hash).await?;
    let next = accounts::new_refresh_token();
    let next_hash = accounts::refresh_hash(&next);
    let sealed_next = accounts::seal_successor(presented, &next);
    let outcome = app
        .engine
        .rotate_refresh(Rotation {
            old_hash: &presented_hash,
            new_hash: &next_hash,
            sealed_next: &sealed_next,
            ttl: REFRESH_TTL,
            grace: Duration::from_secs(app.config.refresh_grace_secs),
            now: crate::unix_now(),
        })
        .await?;
    let (user, next) = match outcome {
        RefreshOutcome::Rotated(user) => (user, next),
        // The same refresh moments ago (a second tab, a retry after a lost answer): the same
        // successor, so both callers end up holding one live token instead of a revoked family.
        RefreshOutcome::Repeated { user, sealed_next } => {
            let successor = accounts::open_successor(presented, &sealed_next)
                .ok_or_else(|| internal("sealed refresh successor"))?;
            (user, successor)
        }
        RefreshOutcome::Reused(user) => {
            tracing::warn!(%user, "a rotated refresh token was reused: every session revoked");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_REUSED",
                "this refresh token was already used: every session of this account has been \
                 signed out, sign in again",
            )
            .into());
        }
        RefreshOutcome::Unknown => return Err(invalid().into()),
    };
    let Some(account) = app.engine.account_by_id(&user).await? else {
        app.engine
            .revoke_refresh(&accounts::refresh_hash(&next))
            .await?;
        return Err(invalid().into());
    };
    session(app, &account, Some(next), "token refreshed").await
}

/// Revoke a refresh token. An unknown token is not an error: the caller is signed out either way.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "accounts",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "signed out", body = MessageResponse),
        (status = 400, description = "refreshToken missing", body = ErrorBody),
    )
)]
pub async fn logout(
    State(app): State<Arc<AppState>>,
    request: Result<Json<RefreshRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{refreshToken}")?;
    let presented = required(request.refresh_token, "refreshToken")?;
    if let Some(token) = accounts::parse_refresh_token(&presented) {
        app.engine
            .revoke_refresh(&accounts::refresh_hash(token))
            .await?;
    }
    Ok(Json(json!({"success": true, "message": "signed out"})).into_response())
}

/// The caller, from `Bearer <accessToken>` (accounts and guests).
#[utoipa::path(
    get, path = "/api/v1/me", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller", body = MeResponse),
        (status = 401, description = "missing, invalid or expired access token", body = ErrorBody),
    )
)]
pub async fn me(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Rejection> {
    let claims = access_claims(&app, &headers)?;
    let user_id = crate::domain::UserId::new(claims.user_id.clone());
    let account = if claims.guest {
        None
    } else {
        app.engine.account_by_id(&user_id).await?
    };
    let user = match account {
        Some(a) => json!({
            "userId": a.id, "name": a.name, "email": a.email, "isVerified": a.verified,
        }),
        None => json!({
            "userId": claims.user_id, "name": claims.name, "email": claims.email,
            "isVerified": claims.is_verified, "guest": claims.guest,
        }),
    };
    Ok(Json(json!({"success": true, "user": user})).into_response())
}

/// What a reset code is hashed under: never the same as a verification code of the address,
/// so one can never be used as the other.
fn reset_subject(email: &str) -> String {
    format!("reset\0{email}")
}

/// Ask for a password-reset code by e-mail. The answer is the same whether or not an account
/// has the address, and is given before anything is looked up, so neither it nor its timing
/// tells who has an account.
#[utoipa::path(
    post, path = "/api/v1/auth/reset/request", tag = "accounts",
    request_body = ResetRequest,
    responses(
        (status = 200, description = "if a verified account has this address, a code is on its way", body = MessageResponse),
        (status = 400, description = "not an e-mail address", body = ErrorBody),
        (status = 429, description = "too many requests from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn reset_request(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<ResetRequest>, JsonRejection>,
) -> Response {
    let rule = Rule::reset(&app.config);
    limits::guarded(&app, rule, peer, &headers, request_reset(&app, request)).await
}

async fn request_reset(
    app: &Arc<AppState>,
    request: Result<Json<ResetRequest>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{email}")?;
    let email = request
        .email
        .as_deref()
        .ok_or_else(|| "email is required".to_owned())
        .and_then(accounts::normalize_email)
        .map_err(ApiError::bad_request)?;
    // Tracked with the sessions, so a drain waits for a mail being sent.
    let background = app.clone();
    app.sessions.spawn(async move {
        if let Err(e) = send_reset_code(&background, &email).await {
            tracing::warn!(error = ?e, "a password-reset code could not be sent");
        }
    });
    Ok(Json(json!({
        "success": true,
        "message": "if an account has this address, a code to reset its password is on its way",
    }))
    .into_response())
}

async fn send_reset_code(app: &AppState, email: &str) -> Result<(), Rejection> {
    let Some(account) = app.engine.account(email).await?.filter(|a| a.verified) else {
        // An unverified account is claimed by signing up again, not by a reset.
        return Ok(());
    };
    if limits::check(app, Rule::otp_send(&app.config), email)
        .await
        .is_err()
    {
        return Ok(());
    }
    let code = accounts::new_otp();
    let hash = accounts::otp_hash(&app.otp_pepper, &reset_subject(email), &code);
    app.engine.store_otp(email, &hash, OTP_TTL).await?;
    if let Err(e) = app
        .mailer
        .send(&reset_mail(email, &account.name, &code))
        .await
    {
        tracing::error!(error = %e, "the password-reset code could not be e-mailed");
    }
    Ok(())
}

/// Set a new password with the e-mailed code: every refresh token of the account is revoked
/// (and its open sockets close at their next check). A code has 5 tries, like a verification
/// code, and checks are limited per IP like `verify-otp`. Every failure gets the same answer,
/// so it does not tell whether the address has an account.
#[utoipa::path(
    post, path = "/api/v1/auth/reset/confirm", tag = "accounts",
    request_body = ResetConfirm,
    responses(
        (status = 200, description = "password changed; every session signed out", body = MessageResponse),
        (status = 400, description = "a field is invalid (BAD_REQUEST), or the code is wrong, expired or used up (INVALID_CODE)", body = ErrorBody),
        (status = 429, description = "too many code checks from this IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn reset_confirm(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<Json<ResetConfirm>, JsonRejection>,
) -> Response {
    let rule = Rule::verify_otp(&app.config);
    limits::guarded(&app, rule, peer, &headers, confirm_reset(&app, request)).await
}

async fn confirm_reset(
    app: &AppState,
    request: Result<Json<ResetConfirm>, JsonRejection>,
) -> Result<Response, Rejection> {
    let request = body(request, "{email, code, password}")?;
    let email = request
        .email
        .as_deref()
        .ok_or_else(|| "email is required".to_owned())
        .and_then(accounts::normalize_email)
        .map_err(ApiError::bad_request)?;
    let code = request
        .code
        .and_then(|v| match v {
            Value::String(s) => accounts::parse_otp(&s),
            Value::Number(n) => accounts::parse_otp(&n.to_string()),
            _ => None,
        })
        .ok_or_else(|| ApiError::bad_request("code must be the 6-digit code from the e-mail"))?;
    let password = request
        .password
        .ok_or_else(|| "password is required".to_owned())
        .and_then(|p| accounts::validate_password(&p).map(|()| p))
        .map_err(ApiError::bad_request)?;
    let code_hash = accounts::otp_hash(&app.otp_pepper, &reset_subject(&email), &code);
    let password_hash = hash_password(password).await?;
    let outcome = app
        .engine
        .reset_password(PasswordReset {
            email: &email,
            code_hash: &code_hash,
            max_tries: OTP_MAX_TRIES,
            password_hash: &password_hash,
            now: crate::unix_now(),
            keep: REFRESH_TTL,
        })
        .await?;
    if outcome != OtpOutcome::Verified {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "the code is wrong, has expired or has been tried too often: request a new one",
        )
        .into());
    }
    Ok(Json(json!({
        "success": true,
        "message": "password changed; every session was signed out: sign in with the new password",
    }))
    .into_response())
}
