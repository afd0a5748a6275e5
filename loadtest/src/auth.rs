//! Access tokens for the simulated users: minted locally when the tool knows the servers' HS256
//! secret (fast, any number of users), otherwise fetched from the guest endpoint one per user.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::http;
use crate::target::Target;

/// A simulated user's identity and token.
#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub token: String,
}

/// Access-token claims as `PROTOCOL.md` §2 fixes them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Claims<'a> {
    sub: &'a str,
    user_id: &'a str,
    name: &'a str,
    email: &'a str,
    is_verified: bool,
    typ: &'a str,
    iat: u64,
    exp: u64,
}

/// Mints tokens with the servers' secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    iat: u64,
    exp: u64,
}

impl Minter {
    /// Tokens valid from now for `ttl_secs`; `now` is an argument so tests need no clock.
    pub fn new(secret: &str, now: u64, ttl_secs: u64) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            iat: now,
            exp: now + ttl_secs,
        }
    }

    /// The token of user `lt-<n>`.
    pub fn user(&self, n: usize) -> Result<User> {
        let user_id = format!("lt-{n}");
        let email = format!("{user_id}@loadtest.invalid");
        let claims = Claims {
            sub: &user_id,
            user_id: &user_id,
            name: &user_id,
            email: &email,
            is_verified: true,
            typ: "access",
            iat: self.iat,
            exp: self.exp,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key).context("sign token")?;
        Ok(User { user_id, token })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuestResponse {
    access_token: String,
    user: GuestUser,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuestUser {
    user_id: String,
}

/// `POST /api/v1/auth/guest {"name":"lt-<n>"}`.
pub async fn guest(target: &Target, n: usize) -> Result<User> {
    let body = format!(r#"{{"name":"lt-{n}"}}"#);
    let parsed: GuestResponse = http::call(target, "POST", "/api/v1/auth/guest", None, Some(&body))
        .await?
        .json()
        .with_context(|| format!("guest token from {}", target.url))?;
    Ok(User {
        user_id: parsed.user.user_id,
        token: parsed.access_token,
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_carry_the_contract_claims() {
        let user = Minter::new("s3cret", 1_000, 60).user(7).expect("mint");
        assert_eq!(user.user_id, "lt-7");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &user.token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .expect("verifies");
        let c = data.claims;
        assert_eq!(c["userId"], "lt-7");
        assert_eq!(c["sub"], "lt-7");
        assert_eq!(c["typ"], "access");
        assert_eq!(c["isVerified"], true);
        assert_eq!(c["exp"], 1_060);
    }
}
