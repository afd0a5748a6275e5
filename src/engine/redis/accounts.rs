//! Accounts, one-time codes and refresh tokens in Redis (`user:<email>`, `user-id:<id>`,
//! `otp:<email>`, `refresh:<sha256>`, `refresh-used:<sha256>`, `refresh-grace:<sha256>`,
//! `refresh-family:<id>`, `revoked:<id>`).
//! Every change that reads before it writes is one Lua script, so two instances racing on the
//! same code or token cannot both win. Each script touches one slot (an address's keys, or the
//! refresh-token keys); what spans both is two scripts in a safe order (a sign-up's id
//! mapping, a password reset's revocation), the same on one Redis as on a Cluster.

use std::collections::HashMap;
use std::time::Duration;

use redis::{AsyncCommands, Value};

use super::{Inner, bad_reply, next, number, tagged, text};
use crate::domain::UserId;
use crate::domain::accounts::Account;
use crate::engine::{EngineResult, OtpOutcome, PasswordReset, RefreshOutcome, Rotation};

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Inner {
    pub(super) async fn create_account(&self, account: &Account) -> EngineResult<bool> {
        // The id mapping first: until the account exists it maps to an address whose account
        // has another id (or none), which reads as no account; never the other way round.
        let mapping = self.keys.user_id(&account.id);
        {
            let mut conn = self.conn().await?;
            self.with_timeout(conn.set::<_, _, ()>(&mapping, &account.email))
                .await?;
        }
        let mut invocation = self.scripts.account_create.prepare_invoke();
        invocation
            .key(self.keys.user(&account.email))
            .key(self.keys.otp(&account.email))
            .arg(account.id.as_str())
            .arg(&account.name)
            .arg(&account.password_hash)
            .arg(if account.verified { "1" } else { "0" })
            .arg(account.created_at);
        let reply: Value = self.invoke(&invocation).await?;
        let Value::Array(items) = reply else {
            return Err(bad_reply("account_create"));
        };
        let mut items = items.into_iter();
        let created = number(next(&mut items)?)? == 1;
        // Harmless if left behind (see `Keys::user_id`), so a failure here is only logged.
        let stale = if created {
            match items.next().map(text).transpose()? {
                Some(old) if !old.is_empty() => Some(self.keys.user_id(&UserId::new(old))),
                _ => None,
            }
        } else {
            Some(mapping)
        };
        if let Some(stale) = stale {
            let mut conn = self.conn().await?;
            if let Err(e) = self.with_timeout(conn.del::<_, ()>(&stale)).await {
                tracing::debug!(error = %e, "could not delete a stale account id mapping");
            }
        }
        Ok(created)
    }

    pub(super) async fn account(&self, email: &str) -> EngineResult<Option<Account>> {
        let mut conn = self.conn().await?;
        let fields: HashMap<String, String> = self
            .with_timeout(conn.hgetall(self.keys.user(email)))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| bad_reply(&format!("account without {name}")))
        };
        Ok(Some(Account {
            id: UserId::new(field("id")?),
            name: field("name")?,
            email: email.to_owned(),
            password_hash: field("passwordHash")?,
            verified: field("verified")? == "1",
            created_at: field("createdAt")?
                .parse()
                .map_err(|_| bad_reply("account createdAt"))?,
        }))
    }

    pub(super) async fn account_by_id(&self, user: &UserId) -> EngineResult<Option<Account>> {
        let email: Option<String> = {
            let mut conn = self.conn().await?;
            self.with_timeout(conn.get(self.keys.user_id(user))).await?
        };
        match email {
            Some(email) => Ok(self.account(&email).await?.filter(|a| &a.id == user)),
            None => Ok(None),
        }
    }

    pub(super) async fn store_otp(
        &self,
        email: &str,
        code_hash: &str,
        ttl: Duration,
    ) -> EngineResult<()> {
        let key = self.keys.otp(email);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .hset_multiple(&key, &[("codeHash", code_hash), ("tries", "0")])
            .pexpire(&key, millis(ttl) as i64);
        let mut conn = self.conn().await?;
        self.with_timeout(pipe.query_async::<()>(&mut conn)).await
    }

    pub(super) async fn confirm_otp(
        &self,
        email: &str,
        code_hash: &str,
        max_tries: u32,
        account: Option<&UserId>,
    ) -> EngineResult<OtpOutcome> {
        let mut invocation = self.scripts.otp_confirm.prepare_invoke();
        invocation
            .key(self.keys.otp(email))
            .key(self.keys.user(email))
            .arg(code_hash)
            .arg(max_tries)
            .arg(account.map_or("", UserId::as_str));
        otp_outcome(self.invoke(&invocation).await?)
    }

    /// A reset code's check, and with `password_hash` its commit (`lua/password_reset.lua`).
    async fn reset_step(
        &self,
        reset: &PasswordReset<'_>,
        password_hash: &str,
    ) -> EngineResult<(OtpOutcome, Option<UserId>)> {
        let mut invocation = self.scripts.password_reset.prepare_invoke();
        invocation
            .key(self.keys.otp(reset.email))
            .key(self.keys.user(reset.email))
            .arg(reset.code_hash)
            .arg(reset.max_tries)
            .arg(password_hash);
        let reply: Value = self.invoke(&invocation).await?;
        let (tag, mut items) = tagged(reply.clone())?;
        let user = match tag.as_str() {
            "verified" => Some(UserId::new(text(next(&mut items)?)?)),
            _ => None,
        };
        Ok((otp_outcome(reply)?, user))
    }

    /// Kills every refresh token of `user` and records when (`lua/refresh_revoke_all.lua`).
    async fn revoke_all(&self, user: &UserId, now: u64, keep: Duration) -> EngineResult<()> {
        let mut invocation = self.scripts.refresh_revoke_all.prepare_invoke();
        invocation
            .key(self.keys.refresh_family(user))
            .key(self.keys.revoked(user))
            .arg(self.keys.refresh_prefix())
            .arg(now)
            .arg(millis(keep));
        self.invoke(&invocation).await
    }

    /// Check, revoke, commit, revoke again: the account's keys and the token keys are two
    /// slots in a cluster, so no one script can do both. Revoking before the password changes
    /// means a failure at any step leaves the code valid to try again and never leaves the old
    /// sessions alive with the new password; revoking after it catches a session signed in
    /// with the old password in between.
    pub(super) async fn reset_password(
        &self,
        reset: PasswordReset<'_>,
    ) -> EngineResult<OtpOutcome> {
        let (outcome, user) = self.reset_step(&reset, "").await?;
        let Some(user) = user else {
            return Ok(outcome);
        };
        self.revoke_all(&user, reset.now, reset.keep).await?;
        let (outcome, committed) = self.reset_step(&reset, reset.password_hash).await?;
        if committed.is_some()
            && let Err(e) = self.revoke_all(&user, reset.now, reset.keep).await
        {
            tracing::warn!(%user, error = %e, "password reset: the second revocation failed");
        }
        Ok(outcome)
    }
}

impl Inner {
    pub(super) async fn store_refresh(
        &self,
        user: &UserId,
        hash: &str,
        ttl: Duration,
    ) -> EngineResult<()> {
        let mut invocation = self.scripts.refresh_store.prepare_invoke();
        invocation
            .key(self.keys.refresh(hash))
            .key(self.keys.refresh_family(user))
            .arg(user.as_str())
            .arg(millis(ttl))
            .arg(hash)
            .arg(self.keys.refresh_prefix());
        self.invoke(&invocation).await
    }

    pub(super) async fn rotate_refresh(
        &self,
        rotation: Rotation<'_>,
    ) -> EngineResult<RefreshOutcome> {
        let mut invocation = self.scripts.refresh_rotate.prepare_invoke();
        invocation
            .key(self.keys.refresh(rotation.old_hash))
            .key(self.keys.refresh(rotation.new_hash))
            .key(self.keys.refresh_used(rotation.old_hash))
            .key(self.keys.refresh_grace(rotation.old_hash))
            .arg(rotation.old_hash)
            .arg(rotation.new_hash)
            .arg(millis(rotation.ttl))
            .arg(self.keys.refresh_prefix())
            .arg(self.keys.refresh_family_prefix())
            .arg(rotation.sealed_next)
            .arg(millis(rotation.grace))
            .arg(self.keys.revoked_prefix())
            .arg(rotation.now);
        let reply: Value = self.invoke(&invocation).await?;
        let (tag, mut items) = tagged(reply)?;
        Ok(match tag.as_str() {
            "rotated" => RefreshOutcome::Rotated(UserId::new(text(next(&mut items)?)?)),
            "repeated" => RefreshOutcome::Repeated {
                user: UserId::new(text(next(&mut items)?)?),
                sealed_next: text(next(&mut items)?)?,
            },
            "reused" => RefreshOutcome::Reused(UserId::new(text(next(&mut items)?)?)),
            "unknown" => RefreshOutcome::Unknown,
            other => return Err(bad_reply(other)),
        })
    }

    pub(super) async fn revoked_at(&self, user: &UserId) -> EngineResult<Option<u64>> {
        let mut conn = self.conn().await?;
        let at: Option<u64> = self.with_timeout(conn.get(self.keys.revoked(user))).await?;
        Ok(at)
    }

    pub(super) async fn revoke_refresh(&self, hash: &str) -> EngineResult<()> {
        let mut invocation = self.scripts.refresh_revoke.prepare_invoke();
        invocation
            .key(self.keys.refresh(hash))
            .arg(hash)
            .arg(self.keys.refresh_family_prefix());
        self.invoke(&invocation).await
    }
}

/// The reply of the code-checking scripts.
fn otp_outcome(reply: Value) -> EngineResult<OtpOutcome> {
    let (tag, mut items) = tagged(reply)?;
    Ok(match tag.as_str() {
        "verified" => OtpOutcome::Verified,
        "wrong" => OtpOutcome::Wrong {
            tries_left: u32::try_from(number(next(&mut items)?)?)
                .map_err(|_| bad_reply("tries left"))?,
        },
        "locked" => OtpOutcome::Locked,
        "missing" => OtpOutcome::Missing,
        other => return Err(bad_reply(other)),
    })
}
