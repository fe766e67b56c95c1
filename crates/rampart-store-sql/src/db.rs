//! Connecting to SQLite or Postgres (chosen by URL) and running migrations.
//!
//! Both backends go through one pool type; every statement uses `$N` placeholders, which both
//! backends accept, and is parameterised (no SQL is built from strings anywhere in this crate).
//! Timestamps are stored as integer microseconds since the Unix epoch so the same SQL runs on both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{AnyPool, Executor, Row};

use crate::{Result, StoreError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://…`
    Sqlite,
    /// `postgres://…` or `postgresql://…`
    Postgres,
}

impl Backend {
    /// The backend for a database URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolConfig {
    /// Most connections held.
    pub max_connections: u32,
    /// Fewest connections kept open.
    pub min_connections: u32,
    /// How long a request waits for a connection before failing.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Connections are replaced after this long.
    pub max_lifetime: Duration,
    /// Ping a connection before handing it out.
    pub test_before_acquire: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            test_before_acquire: true,
        }
    }
}

/// State of one migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    /// Version number.
    pub version: i64,
    /// Description from the file name.
    pub description: String,
    /// Whether it is applied.
    pub applied: bool,
}

/// A database handle: a pool plus the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). SQLite files are created if
    /// missing and run with WAL, a busy timeout and foreign keys on.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(Some(config.idle_timeout))
            .max_lifetime(Some(config.max_lifetime))
            .test_before_acquire(config.test_before_acquire);
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(StoreError::from_sqlx)?;
        Ok(Self { pool, backend })
    }

    /// The pool, for repositories in this crate.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs a trivial query; an error means the database does not answer.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every pending migration; returns the versions applied.
    pub async fn migrate_up(&self) -> Result<Vec<i64>> {
        let before = self.applied_versions().await?;
        self.migrator().run(&self.pool).await.map_err(StoreError::Migration)?;
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Reverts the latest applied migration; returns its version, or `None` if none was applied.
    pub async fn migrate_down(&self) -> Result<Option<i64>> {
        let applied = self.applied_versions().await?;
        let Some(latest) = applied.last().copied() else {
            return Ok(None);
        };
        let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
        self.migrator().undo(&self.pool, target).await.map_err(StoreError::Migration)?;
        Ok(Some(latest))
    }

    /// Every migration known to this build and whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>> {
        let applied = self.applied_versions().await?;
        Ok(self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    /// How many migrations are not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize> {
        Ok(self.migration_status().await?.iter().filter(|m| !m.applied).count())
    }

    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
        conn.ensure_migrations_table().await.map_err(StoreError::Migration)?;
        let mut v: Vec<i64> = conn
            .list_applied_migrations()
            .await
            .map_err(StoreError::Migration)?
            .into_iter()
            .map(|m| m.version)
            .collect();
        v.sort_unstable();
        Ok(v)
    }
}

/// Reads an `i64` column.
pub(crate) fn get_i64(row: &AnyRow, col: &str) -> Result<i64> {
    row.try_get::<i64, _>(col).map_err(StoreError::from_sqlx)
}

/// Reads a text column.
pub(crate) fn get_string(row: &AnyRow, col: &str) -> Result<String> {
    row.try_get::<String, _>(col).map_err(StoreError::from_sqlx)
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Backend::from_url(s)
    }
}
