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
