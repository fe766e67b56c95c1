//! The token vault: third-party OAuth tokens held for users, and the per-(user, provider) lock
//! that makes refreshing them single-flight across instances.
//!
//! # Security
//! - This module stores ciphertext only. The caller seals `access_token` and `refresh_token`
//!   with associated data naming the table, column and row id, and records the sealing master
//!   key's id in `key_id`; rotation re-seals rows whose `key_id` is old ([`Db::vault_reseal`]).
//! - Every write other than an explicit replacement is conditional on the row's `revision`, so
//!   a refresh result or a rotation never overwrites a newer value.
//! - The lock is a lease with a fencing token: [`Db::vault_lock_claim`] succeeds for one caller
//!   at a time (an atomic insert-if-absent, or a take-over of an expired lease that only one
//!   concurrent `UPDATE` can win), and [`Db::vault_write_fenced`] writes only while the fence is
//!   still the holder's, so a holder whose lease lapsed cannot overwrite a newer refresh.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::db::{get_i64, get_string};
use crate::{from_micros, to_micros, Db, Result, StoreError};

/// A vault row (ciphertext).
#[derive(Clone, PartialEq, Eq)]
pub struct VaultRow {
    /// Row id (part of the associated data of both ciphertexts).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Provider name.
    pub provider: String,
    /// Sealed access token.
    pub access_token: Vec<u8>,
    /// Sealed refresh token.
    pub refresh_token: Option<Vec<u8>>,
    /// When the access token expires, if known.
    pub expires_at: Option<OffsetDateTime>,
    /// Hex id of the master key that sealed both tokens.
    pub key_id: String,
    /// Incremented by every write.
    pub revision: i64,
}

impl std::fmt::Debug for VaultRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultRow")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// New sealed contents of a row.
#[derive(Clone)]
pub struct SealedTokens {
    /// Sealed access token.
    pub access_token: Vec<u8>,
    /// Sealed refresh token.
    pub refresh_token: Option<Vec<u8>>,
    /// Access token expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Hex id of the sealing master key.
    pub key_id: String,
}

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// A held refresh lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultLock {
    /// Owner of the tokens.
    pub user_id: String,
    /// Provider.
    pub provider: String,
    /// This claim's random holder id.
    pub holder: String,
    /// The fencing token: larger than every earlier claim's.
    pub fence: i64,
}

/// The state of a lock row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultLockState {
    /// The lease ends at this time (Unix microseconds); in the past when free.
    pub lease_until: i64,
    /// When the last refresh under this lock failed (Unix microseconds), if it did.
    pub failed_at: Option<i64>,
}

const ROW_COLUMNS: &str =
    "id, user_id, provider, access_token, refresh_token, expires_at, key_id, revision";

fn row_to_vault(row: &AnyRow) -> Result<VaultRow> {
    Ok(VaultRow {
        id: get_string(row, "id")?,
        user_id: get_string(row, "user_id")?,
        provider: get_string(row, "provider")?,
        access_token: row.try_get::<Vec<u8>, _>("access_token").map_err(StoreError::from_sqlx)?,
        refresh_token: row
            .try_get::<Option<Vec<u8>>, _>("refresh_token")
            .map_err(StoreError::from_sqlx)?,
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(StoreError::from_sqlx)?
            .map(from_micros)
            .transpose()?,
        key_id: get_string(row, "key_id")?,
        revision: get_i64(row, "revision")?,
    })
}

fn plus(t: OffsetDateTime, d: Duration) -> i64 {
    to_micros(t).saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Db {
    /// The row of `user_id` for `provider`.
    pub async fn vault_get(&self, user_id: &str, provider: &str) -> Result<Option<VaultRow>> {
        let sql =
            format!("SELECT {ROW_COLUMNS} FROM vault_tokens WHERE user_id = $1 AND provider = $2");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(provider)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(row_to_vault).transpose()
    }

    /// Inserts a row with id `id`; `false` if the user already has one for this provider.
    pub async fn vault_insert(
        &self,
        id: &str,
        user_id: &str,
        provider: &str,
        tokens: &SealedTokens,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO vault_tokens (id, user_id, provider, access_token, refresh_token, \
             expires_at, key_id, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) ON CONFLICT (user_id, provider) DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(provider)
        .bind(tokens.access_token.clone())
        .bind(tokens.refresh_token.clone())
        .bind(tokens.expires_at.map(to_micros))
        .bind(&tokens.key_id)
        .bind(to_micros(now))
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces the contents of row `id` (sealed for that id); `false` if it is gone.
    pub async fn vault_replace(
        &self,
        id: &str,
        tokens: &SealedTokens,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE vault_tokens SET access_token = $1, refresh_token = $2, expires_at = $3, \
             key_id = $4, revision = revision + 1, updated_at = $5 WHERE id = $6",
        )
        .bind(tokens.access_token.clone())
        .bind(tokens.refresh_token.clone())
        .bind(tokens.expires_at.map(to_micros))
        .bind(&tokens.key_id)
        .bind(to_micros(now))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Writes refreshed tokens into row `id` only if it is still at `revision` and `lock` still
    /// holds the fence; `false` otherwise (a newer write or a newer lock holder won).
    pub async fn vault_write_fenced(
        &self,
        id: &str,
        revision: i64,
        lock: &VaultLock,
        tokens: &SealedTokens,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE vault_tokens SET access_token = $1, refresh_token = $2, expires_at = $3, \
             key_id = $4, revision = revision + 1, updated_at = $5 WHERE id = $6 AND revision = $7 \
             AND EXISTS (SELECT 1 FROM vault_locks WHERE user_id = $8 AND provider = $9 \
             AND fence = $10 AND holder = $11)",
        )
        .bind(tokens.access_token.clone())
        .bind(tokens.refresh_token.clone())
        .bind(tokens.expires_at.map(to_micros))
        .bind(&tokens.key_id)
        .bind(to_micros(now))
        .bind(id)
        .bind(revision)
        .bind(&lock.user_id)
        .bind(&lock.provider)
        .bind(lock.fence)
        .bind(&lock.holder)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes the row of `user_id` for `provider`; `false` if there was none.
    pub async fn vault_delete(&self, user_id: &str, provider: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM vault_tokens WHERE user_id = $1 AND provider = $2")
            .bind(user_id)
            .bind(provider)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Up to `limit` rows sealed under a key other than `key_id`, ordered by id, after
    /// `after_id`.
    pub async fn vault_rows_not_sealed_with(
        &self,
        key_id: &str,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<VaultRow>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM vault_tokens WHERE key_id <> $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter().map(row_to_vault).collect()
    }

    /// How many rows are sealed under a key other than `key_id`.
    pub async fn vault_count_not_sealed_with(&self, key_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM vault_tokens WHERE key_id <> $1")
            .bind(key_id)
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        get_i64(&row, "n")
    }

    /// Re-sealed contents for `row`, written only if the row is unchanged since it was read
    /// (same revision and still under the old key); `false` otherwise.
    pub async fn vault_reseal(&self, row: &VaultRow, tokens: &SealedTokens) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE vault_tokens SET access_token = $1, refresh_token = $2, key_id = $3, \
             revision = revision + 1 WHERE id = $4 AND revision = $5 AND key_id = $6",
        )
        .bind(tokens.access_token.clone())
        .bind(tokens.refresh_token.clone())
        .bind(&tokens.key_id)
        .bind(&row.id)
        .bind(row.revision)
        .bind(&row.key_id)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Tries to take the refresh lock of (`user_id`, `provider`) for `lease`: `Some` with a new
    /// fencing token if it was free (or its lease had lapsed), `None` if someone holds it.
    pub async fn vault_lock_claim(
        &self,
        user_id: &str,
        provider: &str,
        holder: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<VaultLock>> {
        let until = plus(now, lease);
        let inserted = sqlx::query(
            "INSERT INTO vault_locks (user_id, provider, holder, fence, lease_until, failed_at) \
             VALUES ($1, $2, $3, 1, $4, NULL) ON CONFLICT (user_id, provider) DO NOTHING",
        )
        .bind(user_id)
        .bind(provider)
        .bind(holder)
        .bind(until)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        if inserted.rows_affected() != 1 {
            let taken = sqlx::query(
                "UPDATE vault_locks SET holder = $1, fence = fence + 1, lease_until = $2 \
                 WHERE user_id = $3 AND provider = $4 AND lease_until <= $5",
            )
            .bind(holder)
            .bind(until)
            .bind(user_id)
            .bind(provider)
            .bind(to_micros(now))
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
            if taken.rows_affected() != 1 {
                return Ok(None);
            }
        }
        let row = sqlx::query(
            "SELECT fence FROM vault_locks WHERE user_id = $1 AND provider = $2 AND holder = $3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(holder)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        // Gone already only if our lease lapsed and another claim took over at once.
        let Some(row) = row else { return Ok(None) };
        Ok(Some(VaultLock {
            user_id: user_id.to_owned(),
            provider: provider.to_owned(),
            holder: holder.to_owned(),
            fence: get_i64(&row, "fence")?,
        }))
    }

    /// Releases `lock` (if it still holds the fence), recording whether its refresh failed.
    pub async fn vault_lock_release(
        &self,
        lock: &VaultLock,
        failed: bool,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE vault_locks SET lease_until = 0, failed_at = $1 \
             WHERE user_id = $2 AND provider = $3 AND fence = $4 AND holder = $5",
        )
        .bind(failed.then(|| to_micros(now)))
        .bind(&lock.user_id)
        .bind(&lock.provider)
        .bind(lock.fence)
        .bind(&lock.holder)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// The lock row of (`user_id`, `provider`), if one was ever claimed.
    pub async fn vault_lock_state(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<VaultLockState>> {
        let row = sqlx::query(
            "SELECT lease_until, failed_at FROM vault_locks WHERE user_id = $1 AND provider = $2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| {
            Ok(VaultLockState {
                lease_until: get_i64(&r, "lease_until")?,
                failed_at: r
                    .try_get::<Option<i64>, _>("failed_at")
                    .map_err(StoreError::from_sqlx)?,
            })
        })
        .transpose()
    }
}
