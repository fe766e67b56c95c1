//! Rampart SQL storage on SQLite (the embedded default) or Postgres (for several instances).
//!
//! - [`Db`]: a pool chosen by URL, with migrations that go up and down ([`Db::migrate_up`],
//!   [`Db::migrate_down`], [`Db::migration_status`]).
//! - [`users`]: accounts and the atomic first-user setup.
//! - [`admins`]: demoting, disabling and deleting users without ever leaving no active admin.
//! - [`api_keys`]: API keys stored as keyed hashes, looked up with their creator's current role.
//! - [`vault`]: sealed third-party tokens and the lease lock that makes refreshes single-flight.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_store_sql::StoreError> {
//! use rampart_store_sql::{Db, PoolConfig};
//! let db = Db::connect("sqlite://./rampart-data/rampart.db", &PoolConfig::default()).await?;
//! db.migrate_up().await?;
//! assert!(db.setup_needed().await?);
//! # Ok(()) }
//! ```
//!
//! # Security
//! Every statement is parameterised. Errors keep their source for the operational log but the
//! server never shows their text to clients.

pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod audit_query;
pub mod db;
pub mod sessions;
pub mod users;
pub mod vault;

pub use admins::{KeepAdmin, UserChange};
pub use api_keys::{ApiKeyCredential, ApiKeyRecord, NewApiKey};
pub use audit::SqlAuditSink;
pub use audit_query::{AuditCursor, AuditFilter, AuditPage};
pub use db::{Backend, Db, MigrationStatus, PoolConfig};
pub use sessions::SqlSessionStore;
pub use users::{NewUser, Role, User, UserWithHash};
pub use vault::{SealedTokens, VaultLock, VaultLockState, VaultRow};

/// Errors from the SQL store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The database did not answer (connection refused, pool timeout).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write.
    #[error("conflict with an existing row")]
    Conflict,
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(&'static str),
    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_code(&c)) => {
                StoreError::Unavailable(e)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            _ => StoreError::Database(e),
        }
    }

    /// Whether the database was unreachable (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Whether a database error code says the database cannot serve now, not that it refused the
/// statement: Postgres connection exceptions (class 08), operator intervention (57P01–57P05:
/// shutdown, database dropped, connections terminated), insufficient resources (class 53: too
/// many connections, disk full), a database that does not exist (3D000) or does not accept
/// connections (55000); SQLite busy or locked (5, 6, and their extended codes). Postgres codes
/// are five characters, SQLite's are shorter numbers.
fn unavailable_code(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08")
            || code.starts_with("57P")
            || code.starts_with("53")
            || code == "3D000"
            || code == "55000";
    }
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Unix microseconds of a timestamp.
pub fn to_micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Timestamp from Unix microseconds.
pub fn from_micros(us: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| StoreError::Corrupt("timestamp out of range"))
}

#[cfg(test)]
mod unavailable_tests {
    use super::unavailable_code;

    #[test]
    fn codes_of_a_database_that_cannot_serve_are_unavailable_and_refusals_are_not() {
        for code in [
            "08006", "08001", "57P01", "57P04", "53300", "53100", "3D000", "55000", "5", "6",
            "517", "261",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in
            ["23505", "23503", "42P01", "42601", "42501", "22001", "40001", "1", "19", "2067"]
        {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
