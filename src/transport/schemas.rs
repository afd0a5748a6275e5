//! Shapes of the bodies the handlers build, for the OpenAPI document only: the handlers write
//! JSON themselves, and these say what it looks like. Apart from `openapi.rs` so that the route
//! modules, which name them in their annotations, do not import the module that lists them.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: internal details are never included.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = false)]
    pub success: bool,
    #[schema(example = "BAD_REQUEST")]
    pub code: String,
    #[schema(example = "email must be a valid address such as ann@example.com")]
    pub message: String,
}

/// The account an auth response is about; `userId` is the id WebSocket events carry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub name: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupResponse {
    pub success: bool,
    pub message: String,
    /// Short-lived (30 min) JWT of type `verify`, for `verify-otp` only.
    pub verification_token: String,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    pub success: bool,
    pub message: String,
    /// HS256 JWT of type `access`.
    pub access_token: String,
    /// Opaque; single use: each refresh returns a new one.
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    pub user: User,
}

/// Sign-in of an account whose e-mail is not verified yet; a fresh code was e-mailed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedResponse {
    #[schema(example = false)]
    pub success: bool,
    #[schema(example = "UNVERIFIED")]
    pub code: String,
    pub message: String,
    pub verification_token: String,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub struct MessageResponse {
    pub success: bool,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeUser {
    pub user_id: String,
    pub name: String,
    /// `null` for guests.
    pub email: Option<String>,
    pub is_verified: bool,
    /// Present (true) for guests.
    pub guest: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub success: bool,
    pub user: MeUser,
}

#[derive(Serialize, ToSchema)]
pub struct GuestRequest {
    /// 1 to 40 printable characters.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestUser {
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub guest: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestResponse {
    pub success: bool,
    pub access_token: String,
    pub expires_in: u64,
    pub user: GuestUser,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomData {
    pub room_id: String,
    /// Unix milliseconds; `null` when rooms never expire.
    pub expires_at: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomCreated {
    pub success: bool,
    pub data: RoomData,
}

#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
}
