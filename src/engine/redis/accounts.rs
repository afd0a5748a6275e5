//! Accounts, one-time codes and refresh tokens in Redis (`user:<email>`, `user-id:<id>`,
//! `otp:<email>`, `refresh:<sha256>`, `refresh-used:<sha256>`, `refresh-grace:<sha256>`,
//! `refresh-family:<id>`, `revoked:<id>`).
//! Every change that reads before it writes is one Lua script, so two instances racing on the
//! same code or token cannot both win.

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
        let mut invocation = self.scripts.account_create.prepare_invoke();
        invocation
            .key(self.keys.user(&account.email))
            .key(self.keys.user_id(&account.id))
            .key(self.keys.otp(&account.email))
            .arg(account.id.as_str())
            .arg(&account.name)
            .arg(&account.password_hash)
            .arg(if account.verified { "1" } else { "0" })
            .arg(account.created_at)
            .arg(&account.email)
            .arg(self.keys.user_id_prefix());
        let created: i64 = self.invoke(&invocation).await?;
        Ok(created == 1)
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

    pub(super) async fn reset_password(
        &self,
        reset: PasswordReset<'_>,
    ) -> EngineResult<OtpOutcome> {
        let mut invocation = self.scripts.password_reset.prepare_invoke();
        invocation
            .key(self.keys.otp(reset.email))
            .key(self.keys.user(reset.email))
            .arg(reset.code_hash)
            .arg(reset.max_tries)
            .arg(reset.password_hash)
            .arg(self.keys.refresh_prefix())
            .arg(self.keys.refresh_family_prefix())
            .arg(self.keys.revoked_prefix())
            .arg(reset.now)
            .arg(millis(reset.keep));
        otp_outcome(self.invoke(&invocation).await?)
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
