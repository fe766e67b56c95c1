//! API keys: create, list, delete, and the lookup that authenticates a presented key.
//!
//! # Security
//! - Only a keyed hash of a key is stored (`key_hash`, computed by the caller with the API-key
//!   subkey of the master key), with the id of the master key that made it (`hash_key_id`), so
//!   a database dump holds no usable credential and rotation can tell which hashes are old.
//! - [`Db::api_key_credential`] returns the creator's *current* role and disabled flag, joined
//!   in the same statement, so a key never acts with more than its creator may do now. Deleting
//!   a user deletes their keys (`ON DELETE CASCADE`).

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use crate::db::{get_i64, get_string};
use crate::{from_micros, to_micros, Db, Result, Role, StoreError};

/// An API key as listed (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// The public id (also inside the key text).
    pub id: String,
    /// A label chosen by its creator.
    pub name: String,
    /// The id of the user who created it.
    pub created_by: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it last authenticated a request (written at most once a minute).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// A key to store.
#[derive(Clone)]
pub struct NewApiKey {
    /// Public id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Hex keyed hash of the full key text.
    pub key_hash: String,
    /// Hex id of the master key that made `key_hash`.
    pub hash_key_id: String,
    /// Creator's user id.
    pub created_by: String,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What authenticating a key needs: the stored hash and the creator as they are now.
#[derive(Clone)]
pub struct ApiKeyCredential {
    /// The key.
    pub record: ApiKeyRecord,
    /// Hex keyed hash.
    pub key_hash: String,
    /// Hex id of the master key that made the hash.
    pub hash_key_id: String,
    /// The creator's email.
    pub creator_email: String,
    /// The creator's current role.
    pub creator_role: Role,
    /// Whether the creator is disabled.
    pub creator_disabled: bool,
}

impl std::fmt::Debug for ApiKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCredential").field("record", &self.record).finish_non_exhaustive()
    }
}

const KEY_COLUMNS: &str = "k.id, k.name, k.created_by, k.created_at, k.expires_at, k.last_used_at";

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<OffsetDateTime>> {
    row.try_get::<Option<i64>, _>(col).map_err(StoreError::from_sqlx)?.map(from_micros).transpose()
}

fn row_to_record(row: &AnyRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: get_string(row, "id")?,
        name: get_string(row, "name")?,
        created_by: get_string(row, "created_by")?,
        created_at: from_micros(get_i64(row, "created_at")?)?,
        expires_at: opt_time(row, "expires_at")?,
        last_used_at: opt_time(row, "last_used_at")?,
    })
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Db {
    /// Stores a new key; [`StoreError::Conflict`] if the id is taken.
    pub async fn create_api_key(
        &self,
        new: &NewApiKey,
        now: OffsetDateTime,
    ) -> Result<ApiKeyRecord> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, hash_key_id, created_by, created_at, \
             expires_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.key_hash)
        .bind(&new.hash_key_id)
        .bind(&new.created_by)
        .bind(to_micros(now))
        .bind(new.expires_at.map(to_micros))
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(ApiKeyRecord {
            id: new.id.clone(),
            name: new.name.clone(),
            created_by: new.created_by.clone(),
            created_at: from_micros(to_micros(now))?,
            expires_at: new.expires_at.map(|t| from_micros(to_micros(t))).transpose()?,
            last_used_at: None,
        })
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k ORDER BY k.created_at, k.id");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await.map_err(StoreError::from_sqlx)?;
        rows.iter().map(row_to_record).collect()
    }

    /// A key by id, as listed.
    pub async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(row_to_record).transpose()
    }

    /// Deletes a key; `false` if there was none.
    pub async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// The key with id `id` and its creator as they are now; `None` if the key or the creator
    /// does not exist.
    pub async fn api_key_credential(&self, id: &str) -> Result<Option<ApiKeyCredential>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, k.key_hash, k.hash_key_id, u.email, u.role, u.disabled \
             FROM api_keys k JOIN users u ON u.id = k.created_by WHERE k.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        let Some(row) = row else { return Ok(None) };
        let role = get_string(&row, "role")?;
        Ok(Some(ApiKeyCredential {
            record: row_to_record(&row)?,
            key_hash: get_string(&row, "key_hash")?,
            hash_key_id: get_string(&row, "hash_key_id")?,
            creator_email: get_string(&row, "email")?,
            creator_role: Role::parse(&role).ok_or(StoreError::Corrupt("unknown role"))?,
            creator_disabled: get_i64(&row, "disabled")? != 0,
        }))
    }

    /// Records a use at `now` unless one was recorded less than `interval` ago; `true` if it
    /// wrote.
    pub async fn touch_api_key(
        &self,
        id: &str,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool> {
        let now_us = to_micros(now);
        let res = sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now_us)
        .bind(id)
        .bind(now_us.saturating_sub(micros(interval)))
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces a key's hash (made under an old master key) with one under the current key,
    /// only if the stored hash is still `old_hash`.
    pub async fn rehash_api_key(
        &self,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        new_key_id: &str,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE api_keys SET key_hash = $1, hash_key_id = $2 WHERE id = $3 AND key_hash = $4",
        )
        .bind(new_hash)
        .bind(new_key_id)
        .bind(id)
        .bind(old_hash)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// How many keys exist.
    pub async fn count_api_keys(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        get_i64(&row, "n")
    }

    /// How many keys are hashed under a master key other than `key_id`.
    pub async fn count_api_keys_not_hashed_with(&self, key_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE hash_key_id <> $1")
            .bind(key_id)
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        get_i64(&row, "n")
    }
}
