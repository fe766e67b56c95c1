//! Sessions in SQLite or Postgres (`RAMPART_SESSION_STORE=sql`), so a single instance without
//! Redis keeps sessions across restarts.
//!
//! # Security
//! Rows are keyed by the keyed hash of the session id ([`StoreKey`]); the record is sealed with
//! the session subkey, bound to its store key, so a database dump holds no usable cookie and no
//! readable session data. `last_seen_at`, `expires_at`, the user id and the public handle are
//! kept in plain columns for touching, sweeping and the per-user index.

use std::time::Duration;

use async_trait::async_trait;
use rampart_core::{Keyring, Purpose, SharedClock};
use rampart_session::{SessionError, SessionRecord, SessionStore, StoreKey};
use time::OffsetDateTime;

use crate::db::{get_i64, get_string};
use crate::{from_micros, to_micros, Db, StoreError};

/// A [`SessionStore`] on the SQL database.
#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    db: Db,
    keyring: Keyring,
    clock: SharedClock,
}

impl SqlSessionStore {
    /// A store on `db`, sealing records with `keyring`.
    pub fn new(db: Db, keyring: Keyring, clock: SharedClock) -> Self {
        Self { db, keyring, clock }
    }

    /// Deletes every expired row; returns how many.
    pub async fn sweep(&self) -> Result<u64, SessionError> {
        let res = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(to_micros(self.clock.now()))
            .execute(self.db.pool())
            .await
            .map_err(map_sqlx)?;
        Ok(res.rows_affected())
    }

    fn seal(&self, key: &StoreKey, record: &SessionRecord) -> Result<Vec<u8>, SessionError> {
        let json =
            serde_json::to_vec(record).map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
        Ok(self.keyring.seal(Purpose::Session, key.as_str().as_bytes(), &json))
    }

    fn open(
        &self,
        key: &StoreKey,
        sealed: &[u8],
        last_seen_us: i64,
    ) -> Result<SessionRecord, SessionError> {
        let json = self
            .keyring
            .open(Purpose::Session, key.as_str().as_bytes(), sealed)
            .map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
        let mut record: SessionRecord =
            serde_json::from_slice(&json).map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
        record.last_seen_at =
            from_micros(last_seen_us).map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
        Ok(record)
    }
}

fn map_sqlx(e: sqlx::Error) -> SessionError {
    match StoreError::from_sqlx(e) {
        StoreError::Unavailable(e) => SessionError::Unavailable(Some(Box::new(e))),
        StoreError::Conflict => SessionError::Collision,
        other => SessionError::Backend(Box::new(other)),
    }
}

fn map_store(e: StoreError) -> SessionError {
    SessionError::Backend(Box::new(e))
}

fn plus(t: OffsetDateTime, d: Duration) -> i64 {
    to_micros(t).saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        ttl: Duration,
    ) -> rampart_session::Result<()> {
        let now = self.clock.now();
        let sealed = self.seal(key, record)?;
        let res = sqlx::query(
            "INSERT INTO sessions (store_key, user_id, handle, sealed, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (store_key) DO NOTHING",
        )
        .bind(key.as_str())
        .bind(&record.user_id)
        .bind(&record.handle)
        .bind(sealed)
        .bind(to_micros(record.last_seen_at))
        .bind(plus(now, ttl))
        .execute(self.db.pool())
        .await
        .map_err(map_sqlx)?;
        if res.rows_affected() == 1 {
            Ok(())
        } else {
            Err(SessionError::Collision)
        }
    }

    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> rampart_session::Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT sealed, last_seen_at FROM sessions WHERE store_key = $1 AND expires_at > $2",
        )
        .bind(key.as_str())
        .bind(to_micros(now))
        .fetch_optional(self.db.pool())
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = sqlx::Row::try_get(&row, "sealed").map_err(map_sqlx)?;
        let last_seen = get_i64(&row, "last_seen_at").map_err(map_store)?;
        let record = self.open(key, &sealed, last_seen)?;
        let threshold = to_micros(now)
            .saturating_sub(i64::try_from(touch_if_older_than.as_micros()).unwrap_or(i64::MAX));
        if last_seen <= threshold {
            // An UPDATE never inserts: a session deleted meanwhile stays deleted.
            sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE store_key = $3 AND last_seen_at = $4")
                .bind(to_micros(now))
                .bind(plus(now, ttl))
                .bind(key.as_str())
                .bind(last_seen)
                .execute(self.db.pool())
                .await
                .map_err(map_sqlx)?;
        }
        Ok(Some(record))
    }

    async fn delete(&self, key: &StoreKey) -> rampart_session::Result<bool> {
        let res = sqlx::query("DELETE FROM sessions WHERE store_key = $1")
            .bind(key.as_str())
            .execute(self.db.pool())
            .await
            .map_err(map_sqlx)?;
        Ok(res.rows_affected() > 0)
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> rampart_session::Result<Vec<(StoreKey, SessionRecord)>> {
        let rows = sqlx::query(
            "SELECT store_key, sealed, last_seen_at FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .bind(to_micros(self.clock.now()))
        .fetch_all(self.db.pool())
        .await
        .map_err(map_sqlx)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let text = get_string(&row, "store_key").map_err(map_store)?;
            let key = StoreKey::parse(&text).ok_or(SessionError::Corrupt(None))?;
            let sealed: Vec<u8> = sqlx::Row::try_get(&row, "sealed").map_err(map_sqlx)?;
            let last_seen = get_i64(&row, "last_seen_at").map_err(map_store)?;
            match self.open(&key, &sealed, last_seen) {
                Ok(record) => out.push((key, record)),
                Err(e) => tracing::warn!(error = %e, "skipping a session row that does not open"),
            }
        }
        Ok(out)
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> rampart_session::Result<u64> {
        let except = except.map_or("", StoreKey::as_str);
        let res =
            match handle {
                Some(h) => sqlx::query(
                    "DELETE FROM sessions WHERE user_id = $1 AND handle = $2 AND store_key <> $3",
                )
                .bind(user_id)
                .bind(h)
                .bind(except)
                .execute(self.db.pool())
                .await,
                None => {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND store_key <> $2")
                        .bind(user_id)
                        .bind(except)
                        .execute(self.db.pool())
                        .await
                }
            }
            .map_err(map_sqlx)?;
        Ok(res.rows_affected())
    }

    async fn count(&self) -> rampart_session::Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1")
            .bind(to_micros(self.clock.now()))
            .fetch_one(self.db.pool())
            .await
            .map_err(map_sqlx)?;
        Ok(u64::try_from(get_i64(&row, "n").map_err(map_store)?).unwrap_or(0))
    }
}
