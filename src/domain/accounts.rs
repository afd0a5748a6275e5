//! Accounts: what a valid sign-up is, password hashing (argon2id), the e-mailed one-time codes
//! and the opaque refresh tokens. No HTTP and no Redis: the transport calls these and an engine
//! stores what they produce (only hashes of secrets are ever stored).

use std::sync::LazyLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::ids::UserId;

/// Longest display name; the same bound as guest names.
pub const NAME_MAX_CHARS: usize = 40;
/// NIST SP 800-63B: at least 8 characters, no composition rules.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Bounds the work a single request can ask the hasher for.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// RFC 5321's limit on a forward path.
pub const EMAIL_MAX_LEN: usize = 254;
pub const OTP_DIGITS: usize = 6;
/// How long an e-mailed code stays valid.
pub const OTP_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong codes accepted before the code is dead (1 in 200,000 odds of a lucky guess).
pub const OTP_MAX_TRIES: u32 = 5;
/// Outlives the code it goes with, so a user who asks for a new code keeps the same token.
pub const VERIFICATION_TTL_SECS: u64 = 30 * 60;
/// Lifetime of a refresh token; each use replaces it with a new one of the same lifetime.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Refresh tokens are 64 hex characters; anything much longer is not one of ours.
const REFRESH_MAX_LEN: usize = 512;

/// An account as an engine stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    /// Normalised (trimmed, lower-case); the account's key.
    pub email: String,
    /// PHC string of an argon2id hash; the password itself is never stored.
    pub password_hash: String,
    /// Set once the e-mailed code has been confirmed; only verified accounts may sign in.
    pub verified: bool,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// A validated sign-up request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignUp {
    pub name: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Checks every field and reports every problem at once, in field order.
pub fn validate_signup(
    name: Option<&str>,
    email: Option<&str>,
    password: Option<&str>,
) -> Result<SignUp, Vec<String>> {
    let name = name
        .ok_or_else(|| "name is required".to_owned())
        .and_then(validate_name);
    let email = email
        .ok_or_else(|| "email is required".to_owned())
        .and_then(normalize_email);
    let password = password
        .ok_or_else(|| "password is required".to_owned())
        .and_then(|p| validate_password(p).map(|()| p.to_owned()));
    match (name, email, password) {
        (Ok(name), Ok(email), Ok(password)) => Ok(SignUp {
            name,
            email,
            password,
        }),
        (name, email, password) => Err([name.err(), email.err(), password.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// The trimmed name, if it is 1 to [`NAME_MAX_CHARS`] printable characters.
pub fn validate_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > NAME_MAX_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "name must be 1 to {NAME_MAX_CHARS} printable characters"
        ));
    }
    Ok(name.to_owned())
}

/// The address trimmed and lower-cased, if it looks deliverable: `local@domain.tld` with a
/// conservative alphabet (the address becomes part of a storage key).
pub fn normalize_email(raw: &str) -> Result<String, String> {
    const MESSAGE: &str = "email must be a valid address such as ann@example.com";
    let email = raw.trim().to_lowercase();
    if email.is_empty() || email.len() > EMAIL_MAX_LEN {
        return Err(MESSAGE.to_owned());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(MESSAGE.to_owned());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-'".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err(MESSAGE.to_owned())
    }
}

pub fn validate_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
        return Err(format!(
            "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        ));
    }
    Ok(())
}

/// An argon2id hash (OWASP's parameters: 19 MiB, 2 passes) in PHC string form. Takes tens of
/// milliseconds on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the stored hash. A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the same time as checking a real password, so a sign-in for an unknown address
/// cannot be told apart from a wrong password by its latency.
pub fn verify_nothing(password: &str) {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        hash_password(&hex::encode(rand::random::<[u8; 16]>())).unwrap_or_default()
    });
    let _ = verify_password(&DUMMY, password);
}

/// A new one-time code: [`OTP_DIGITS`] uniformly random decimal digits.
pub fn new_otp() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// The code as the user typed it, if it is exactly six digits (spaces around are forgiven).
pub fn parse_otp(raw: &str) -> Option<String> {
    let code = raw.trim();
    (code.len() == OTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then(|| code.to_owned())
}

/// What is stored for a code: keyed by a server secret, because a bare hash of six digits is
/// reversed by trying all million of them.
pub fn otp_hash(pepper: &[u8], email: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"drawbridge-otp\0");
    hasher.update(pepper);
    hasher.update(b"\0");
    hasher.update(email.as_bytes());
    hasher.update(b"\0");
    hasher.update(code.as_bytes());
    hex::encode(hasher.finalize())
}

/// A new opaque refresh token: 256 random bits, hex.
pub fn new_refresh_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The only form in which a refresh token is stored (`refresh:<sha256 hex>`). The token has
/// 256 bits of entropy, so an unkeyed hash is enough.
pub fn refresh_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The successor of a refresh token, sealed with that token (XOR with a SHA-512 keystream of
/// it) so that what the store keeps for the grace window is useless without the presented
/// token, which the store never had in clear.
pub fn seal_successor(presented: &str, successor: &str) -> String {
    hex::encode(xor_keystream(presented, successor.as_bytes()))
}

/// The successor sealed by [`seal_successor`], given the same presented token; `None` if the
/// seal is not ours.
pub fn open_successor(presented: &str, sealed: &str) -> Option<String> {
    let bytes = hex::decode(sealed).ok()?;
    let opened = String::from_utf8(xor_keystream(presented, &bytes)).ok()?;
    // Our tokens are hex; anything else means a different presented token opened it.
    (!opened.is_empty() && opened.bytes().all(|b| b.is_ascii_hexdigit())).then_some(opened)
}

fn xor_keystream(presented: &str, data: &[u8]) -> Vec<u8> {
    use sha2::Sha512;
    let mut out = Vec::with_capacity(data.len());
    for (block, chunk) in data.chunks(64).enumerate() {
        let key = Sha512::new()
            .chain_update(b"drawbridge refresh grace\0")
            .chain_update((block as u64).to_be_bytes())
            .chain_update(presented.as_bytes())
            .finalize();
        out.extend(chunk.iter().zip(key.iter()).map(|(d, k)| d ^ k));
    }
    out
}

/// The trimmed token, unless it is empty or far too long to be one of ours.
pub fn parse_refresh_token(raw: &str) -> Option<&str> {
    let token = raw.trim();
    (!token.is_empty() && token.len() <= REFRESH_MAX_LEN).then_some(token)
}

/// A fresh account id.
pub fn new_user_id() -> UserId {
    UserId::new(uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_successor_opens_only_with_the_presented_token() {
        let (old, next) = (new_refresh_token(), new_refresh_token());
        let sealed = seal_successor(&old, &next);
        assert!(!sealed.contains(&next));
        assert_eq!(open_successor(&old, &sealed), Some(next));
        assert_eq!(open_successor(&new_refresh_token(), &sealed), None);
        assert_eq!(open_successor(&old, "zz"), None);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = validate_signup(None, Some("nope"), Some("short")).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("name is required"));
        assert!(errors[1].contains("valid address"));
        assert!(errors[2].contains("8 to 128"));
        let ok = validate_signup(
            Some("  Ann "),
            Some(" Ann@Example.COM "),
            Some("long enough"),
        )
        .expect("valid");
        assert_eq!(ok.name, "Ann");
        assert_eq!(ok.email, "ann@example.com");
    }

    #[test]
    fn email_shapes() {
        for good in ["a@b.io", "first.last+tag@sub.example.org", "o'neil@x-y.com"] {
            assert!(normalize_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.io",
            "a@.io",
            "a@b..io",
            "a b@c.io",
            "a@b.c",
            "a@b.i0",
            ".a@b.io",
            "a..b@c.io",
            "a@-b.io",
            "a@b.io@c.io",
            "a{x}@b.io",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let long = format!("{}@b.io", "a".repeat(300));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn names_and_passwords() {
        assert!(validate_name("").is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{7}b").is_err());
        assert!(validate_name(&"x".repeat(41)).is_err());
        assert_eq!(validate_name(" Zoë ").as_deref(), Ok("Zoë"));
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn password_hashes_are_argon2id_and_salted() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn codes_are_six_digits_and_hashed_with_the_pepper() {
        for _ in 0..100 {
            let code = new_otp();
            assert_eq!(parse_otp(&code).as_deref(), Some(code.as_str()));
        }
        assert_eq!(parse_otp(" 012345 ").as_deref(), Some("012345"));
        for bad in ["12345", "1234567", "12a456", ""] {
            assert_eq!(parse_otp(bad), None, "{bad}");
        }
        let h = otp_hash(b"k1", "a@b.io", "123456");
        assert_eq!(h.len(), 64);
        assert_ne!(h, otp_hash(b"k2", "a@b.io", "123456"));
        assert_ne!(h, otp_hash(b"k1", "c@b.io", "123456"));
        assert_ne!(h, otp_hash(b"k1", "a@b.io", "123457"));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_sha256() {
        let t = new_refresh_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_refresh_token());
        assert_eq!(
            refresh_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_refresh_token("  x "), Some("x"));
        assert_eq!(parse_refresh_token(""), None);
        assert_eq!(parse_refresh_token(&"x".repeat(600)), None);
    }
}
