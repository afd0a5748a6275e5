//! Access tokens: HS256 JWTs minted and checked here. The current time is an argument, so expiry
//! is tested without touching the clock.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::identity::Identity;
use super::ids::UserId;

/// The claims of an access token, as `PROTOCOL.md` §2 fixes them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessClaims {
    pub sub: String,
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    pub is_verified: bool,
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
    /// Guests join by name through invite links and have no account.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
}

/// The claims of a verification token: names the address that signed up, and is good for
/// `verify-otp` only (its `typ` is `verify`, so it is never taken as an access token).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct VerifyClaims {
    sub: String,
    typ: String,
    iat: u64,
    exp: u64,
    /// The account the token was minted for: a later sign-up that replaced that (unverified)
    /// account under the same address must not be verified with it. Absent in tokens minted
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
}

#[derive(Debug, Error, PartialEq)]
pub enum TokenError {
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token is not an access token")]
    WrongType,
    #[error("account is not verified")]
    Unverified,
}

/// Signs and verifies access tokens with one shared secret (every instance must hold the same).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl_secs: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl_secs: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl_secs,
        }
    }

    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Mints an access token valid from `now` (unix seconds).
    pub fn issue(
        &self,
        user: &UserId,
        name: &str,
        email: Option<&str>,
        verified: bool,
        guest: bool,
        now: u64,
    ) -> Result<String, TokenError> {
        let claims = AccessClaims {
            sub: user.as_str().to_owned(),
            user_id: user.as_str().to_owned(),
            name: name.to_owned(),
            email: email.map(str::to_owned),
            is_verified: verified,
            typ: "access".to_owned(),
            iat: now,
            exp: now + self.access_ttl_secs,
            guest,
        };
        self.sign(&claims)
    }

    /// Verifies signature, algorithm (HS256 only: `alg: none` and others are refused), type and
    /// expiry against `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<AccessClaims, TokenError> {
        self.decode(token, "access", now, |c: &AccessClaims| (&c.typ, c.exp))
    }

    /// Mints a verification token for `email`, valid `ttl_secs` from `now`.
    pub fn issue_verification(
        &self,
        email: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<String, TokenError> {
        let claims = VerifyClaims {
            sub: email.to_owned(),
            typ: "verify".to_owned(),
            iat: now,
            exp: now + ttl_secs,
            uid: None,
        };
        self.sign(&claims)
    }

    /// A verification token for `email` bound to the account `user`.
    pub fn issue_verification_for(
        &self,
        email: &str,
        user: &UserId,
        ttl_secs: u64,
        now: u64,
    ) -> Result<String, TokenError> {
        let claims = VerifyClaims {
            sub: email.to_owned(),
            typ: "verify".to_owned(),
            iat: now,
            exp: now + ttl_secs,
            uid: Some(user.to_string()),
        };
        self.sign(&claims)
    }

    /// Like [`verify_verification`](Self::verify_verification), with the account the token is
    /// bound to, if it names one.
    pub fn verify_verification_for(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(String, Option<UserId>), TokenError> {
        let claims = self.decode(token, "verify", now, |c: &VerifyClaims| (&c.typ, c.exp))?;
        Ok((claims.sub, claims.uid.map(UserId::new)))
    }

    /// The e-mail address a verification token was minted for. Same checks as
    /// [`verify`](Self::verify); any other `typ` (an access token) is [`TokenError::WrongType`].
    pub fn verify_verification(&self, token: &str, now: u64) -> Result<String, TokenError> {
        let claims = self.decode(token, "verify", now, |c: &VerifyClaims| (&c.typ, c.exp))?;
        Ok(claims.sub)
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Checks the signature (HS256 only), that `typ` is `want`, and expiry against the caller's
    /// clock with no leeway (the library's own expiry check is off for that reason).
    fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        want: &str,
        now: u64,
        typ_and_exp: impl Fn(&C) -> (&String, u64),
    ) -> Result<C, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<C>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        let (typ, exp) = typ_and_exp(&claims);
        if typ != want {
            return Err(TokenError::WrongType);
        }
        if exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Verifies a token for a WebSocket session: like [`verify`](Self::verify), and the account
    /// must be verified. Returns who, when the token expires, and whether it is a guest's.
    pub fn identity(&self, token: &str, now: u64) -> Result<(Identity, u64, bool), TokenError> {
        let claims = self.verify(token, now)?;
        if !claims.is_verified {
            return Err(TokenError::Unverified);
        }
        let name = if claims.name.is_empty() {
            claims.user_id.clone()
        } else {
            claims.name
        };
        let guest = claims.guest;
        Ok((
            Identity::new(UserId::new(claims.user_id), name),
            claims.exp,
            guest,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"test-secret", 900)
    }

    #[test]
    fn round_trip_and_expiry_at_the_given_time() {
        let k = keys();
        let t = k
            .issue(&UserId::new("u1"), "Ann", None, true, false, 1_000)
            .expect("issue");
        let (id, exp, _) = k.identity(&t, 1_000).expect("valid");
        assert_eq!(id.user_id.as_str(), "u1");
        assert_eq!(exp, 1_900);
        assert_eq!(k.verify(&t, 1_899).map(|c| c.exp), Ok(1_900));
        assert_eq!(k.verify(&t, 1_900), Err(TokenError::Expired));
    }

    #[test]
    fn other_secret_alg_none_and_garbage_are_invalid() {
        let t = TokenKeys::new(b"other", 900)
            .issue(&UserId::new("u1"), "Ann", None, true, false, 1_000)
            .expect("issue");
        assert_eq!(keys().verify(&t, 1_000), Err(TokenError::Invalid));
        assert_eq!(keys().verify("garbage", 1_000), Err(TokenError::Invalid));
        // {"alg":"none"} header with the same claims and an empty signature.
        let payload = t.split('.').nth(1).expect("payload");
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(keys().verify(&none, 1_000), Err(TokenError::Invalid));
    }

    #[test]
    fn verification_and_access_tokens_are_not_interchangeable() {
        let k = keys();
        let v = k.issue_verification("a@x.io", 600, 1_000).expect("issue");
        assert_eq!(k.verify_verification(&v, 1_599).as_deref(), Ok("a@x.io"));
        assert_eq!(k.verify_verification(&v, 1_600), Err(TokenError::Expired));
        assert_eq!(k.verify(&v, 1_000).map(|_| ()), Err(TokenError::Invalid));
        let a = k
            .issue(&UserId::new("u1"), "Ann", None, true, false, 1_000)
            .expect("issue");
        assert_eq!(k.verify_verification(&a, 1_000), Err(TokenError::WrongType));
        let other = TokenKeys::new(b"other", 900)
            .issue_verification("a@x.io", 600, 1_000)
            .expect("issue");
        assert_eq!(
            k.verify_verification(&other, 1_000),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn unverified_accounts_cannot_open_sessions() {
        let k = keys();
        let t = k
            .issue(
                &UserId::new("u1"),
                "Ann",
                Some("a@x.io"),
                false,
                false,
                1_000,
            )
            .expect("issue");
        assert!(k.verify(&t, 1_000).is_ok());
        assert_eq!(
            k.identity(&t, 1_000).map(|_| ()),
            Err(TokenError::Unverified)
        );
    }
}
