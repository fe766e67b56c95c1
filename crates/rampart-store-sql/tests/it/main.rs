//! Integration tests for the SQL store against real SQLite files and a real Postgres server.
#![allow(unreachable_pub, missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admins;
mod api_keys_vault;
mod audit_sink;
mod migrations;
mod sessions;
mod users;

use rampart_store_sql::{Db, PoolConfig};

/// A migrated database on each available backend: SQLite in a temp dir, and Postgres when it
/// answers (required under CI=true). The guards keep the resources alive.
pub(crate) async fn backends() -> Vec<(Db, Box<dyn std::any::Any>)> {
    let mut out: Vec<(Db, Box<dyn std::any::Any>)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let db = Db::connect(&url, &PoolConfig::default()).await.unwrap();
    out.push((db, Box::new(dir)));
    if let Some(pg) = rampart_testkit::postgres_database().await {
        let db = Db::connect(&pg.url, &PoolConfig::default()).await.unwrap();
        out.push((db, Box::new(pg)));
    }
    out
}
