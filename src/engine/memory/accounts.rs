//! Accounts, one-time codes and refresh tokens for the embedded engine: the same semantics as
//! the Redis scripts, with expiry checked against `Instant`s when an entry is read.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::domain::UserId;
use crate::domain::accounts::Account;
use crate::engine::{OtpOutcome, PasswordReset, RefreshOutcome, Rotation};

#[derive(Default)]
pub struct AccountStore {
    // Its own lock: account calls never touch rooms, so they need not wait on strokes.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By normalised e-mail.
    accounts: HashMap<String, Account>,
    /// User id → e-mail, to find the account a refresh token belongs to.
    emails: HashMap<UserId, String>,
    otps: HashMap<String, Otp>,
    /// Live refresh tokens by hash.
    refresh: HashMap<String, Expiring<UserId>>,
    /// Rotated (dead) refresh tokens by hash, remembered so that reuse can be detected.
    used: HashMap<String, Expiring<UserId>>,
    /// Each user's live refresh token hashes, so all of them can be revoked at once.
    families: HashMap<UserId, HashSet<String>>,
    /// Tokens rotated moments ago, with their successor sealed, for the grace window.
    grace: HashMap<String, Expiring<String>>,
    /// When each user's family was last revoked (Unix seconds).
    revoked: HashMap<UserId, u64>,
}

struct Otp {
    code_hash: String,
    tries: u32,
    expires: Instant,
}

struct Expiring<T> {
    value: T,
    expires: Instant,
}

impl<T: Clone> Expiring<T> {
    fn live(&self, now: Instant) -> Option<T> {
        (self.expires > now).then(|| self.value.clone())
    }
}

impl AccountStore {
    pub fn create(&self, account: &Account) -> bool {
        let mut state = self.state.lock();
        match state.accounts.get(&account.email) {
            Some(existing) if existing.verified => return false,
            // An unverified account is replaced, with its pending code (see the trait).
            Some(existing) => {
                let old = existing.id.clone();
                state.emails.remove(&old);
                state.otps.remove(&account.email);
            }
            None => {}
        }
        state
            .emails
            .insert(account.id.clone(), account.email.clone());
        state
            .accounts
            .insert(account.email.clone(), account.clone());
        true
    }

    pub fn by_email(&self, email: &str) -> Option<Account> {
        self.state.lock().accounts.get(email).cloned()
    }

    pub fn by_id(&self, user: &UserId) -> Option<Account> {
        let state = self.state.lock();
        let email = state.emails.get(user)?;
        state.accounts.get(email).cloned()
    }

    pub fn store_otp(&self, email: &str, code_hash: &str, ttl: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock();
        // Sending codes is rare; a fine moment to forget the expired ones.
        state.otps.retain(|_, o| o.expires > now);
        state.otps.insert(
            email.to_owned(),
            Otp {
                code_hash: code_hash.to_owned(),
                tries: 0,
                expires: now + ttl,
            },
        );
    }

    pub fn confirm_otp(
        &self,
        email: &str,
        code_hash: &str,
        max_tries: u32,
        account: Option<&UserId>,
    ) -> OtpOutcome {
        let now = Instant::now();
        let mut state = self.state.lock();
        let current = state.accounts.get(email).map(|a| a.id.clone());
        if account.is_some_and(|want| current.as_ref() != Some(want)) {
            return OtpOutcome::Missing;
        }
        let Some(otp) = state.otps.get_mut(email).filter(|o| o.expires > now) else {
            return OtpOutcome::Missing;
        };
        if otp.tries >= max_tries {
            return OtpOutcome::Locked;
        }
        if otp.code_hash == code_hash {
            state.otps.remove(email);
            return match state.accounts.get_mut(email) {
                Some(account) => {
                    account.verified = true;
                    OtpOutcome::Verified
                }
                None => OtpOutcome::Missing,
            };
        }
        otp.tries += 1;
        if otp.tries >= max_tries {
            OtpOutcome::Locked
        } else {
            OtpOutcome::Wrong {
                tries_left: max_tries - otp.tries,
            }
        }
    }

    pub fn reset_password(&self, reset: PasswordReset<'_>) -> OtpOutcome {
        let now = Instant::now();
        let mut state = self.state.lock();
        let Some(user) = state
            .accounts
            .get(reset.email)
            .filter(|a| a.verified)
            .map(|a| a.id.clone())
        else {
            return OtpOutcome::Missing;
        };
        let Some(otp) = state.otps.get_mut(reset.email).filter(|o| o.expires > now) else {
            return OtpOutcome::Missing;
        };
        if otp.tries >= reset.max_tries {
            return OtpOutcome::Locked;
        }
        if otp.code_hash != reset.code_hash {
            otp.tries += 1;
            return if otp.tries >= reset.max_tries {
                OtpOutcome::Locked
            } else {
                OtpOutcome::Wrong {
                    tries_left: reset.max_tries - otp.tries,
                }
            };
        }
        state.otps.remove(reset.email);
        if let Some(account) = state.accounts.get_mut(reset.email) {
            account.password_hash = reset.password_hash.to_owned();
        }
        for hash in state.families.remove(&user).unwrap_or_default() {
            state.refresh.remove(&hash);
        }
        state.revoked.insert(user, reset.now);
        OtpOutcome::Verified
    }

    pub fn store_refresh(&self, user: &UserId, hash: &str, ttl: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.refresh.retain(|_, t| t.expires > now);
        state.used.retain(|_, t| t.expires > now);
        let State {
            refresh, families, ..
        } = &mut *state;
        families.retain(|_, family| {
            family.retain(|h| refresh.contains_key(h));
            !family.is_empty()
        });
        refresh.insert(
            hash.to_owned(),
            Expiring {
                value: user.clone(),
                expires: now + ttl,
            },
        );
        families
            .entry(user.clone())
            .or_default()
            .insert(hash.to_owned());
    }

    pub fn rotate_refresh(&self, rotation: Rotation<'_>) -> RefreshOutcome {
        let Rotation {
            old_hash: old,
            new_hash: new,
            ttl,
            ..
        } = rotation;
        let now = Instant::now();
        let mut state = self.state.lock();
        state.grace.retain(|_, g| g.expires > now);
        let live = state.refresh.remove(old).and_then(|t| t.live(now));
        if let Some(user) = live {
            let expires = now + ttl;
            state.refresh.insert(
                new.to_owned(),
                Expiring {
                    value: user.clone(),
                    expires,
                },
            );
            state.used.insert(
                old.to_owned(),
                Expiring {
                    value: user.clone(),
                    expires,
                },
            );
            if !rotation.grace.is_zero() {
                state.grace.insert(
                    old.to_owned(),
                    Expiring {
                        value: rotation.sealed_next.to_owned(),
                        expires: now + rotation.grace,
                    },
                );
            }
            let family = state.families.entry(user.clone()).or_default();
            family.remove(old);
            family.insert(new.to_owned());
            return RefreshOutcome::Rotated(user);
        }
        let Some(user) = state.used.get(old).and_then(|t| t.live(now)) else {
            return RefreshOutcome::Unknown;
        };
        if let Some(sealed_next) = state.grace.get(old).and_then(|g| g.live(now)) {
            return RefreshOutcome::Repeated { user, sealed_next };
        }
        for hash in state.families.remove(&user).unwrap_or_default() {
            state.refresh.remove(&hash);
        }
        state.revoked.insert(user.clone(), rotation.now);
        RefreshOutcome::Reused(user)
    }

    pub fn revoked_at(&self, user: &UserId) -> Option<u64> {
        self.state.lock().revoked.get(user).copied()
    }

    pub fn revoke_refresh(&self, hash: &str) {
        let mut state = self.state.lock();
        if let Some(token) = state.refresh.remove(hash)
            && let Some(family) = state.families.get_mut(&token.value)
        {
            family.remove(hash);
        }
    }
}
