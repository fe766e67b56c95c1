//! Test support: real Postgres databases and Redis connections for integration tests.
//!
//! Tests that need a service call [`postgres_database`] or [`redis_url`]. When the service does
//! not answer they return `None` and print a skip line, except under `CI=true`, where they panic:
//! in CI a missing service is a failure, never a silent skip.

#![allow(clippy::panic, clippy::expect_used)]

use std::time::Duration;

use rand::Rng;
use sqlx::{Connection, Executor};

/// Whether this run is CI (`CI=true`), where missing services fail tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn unavailable(what: &str, why: &str) {
    if in_ci() {
        panic!("{what} is required under CI=true but is unavailable: {why}");
    }
    eprintln!("SKIP: {what} unavailable ({why}); set CI=true to make this a failure");
}

/// The admin URL of the test Postgres server (`RAMPART_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn postgres_admin_url() -> String {
    std::env::var("RAMPART_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A throwaway Postgres database, dropped when this value is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = postgres_admin_url();
        // Best effort, on a separate thread so it works inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = c
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// Creates a fresh, empty Postgres database, or `None` (skip) when Postgres does not answer
/// outside CI.
pub async fn postgres_database() -> Option<PgDatabase> {
    let admin = postgres_admin_url();
    let connect =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
    let mut conn = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            unavailable("Postgres", &e.to_string());
            return None;
        }
        Err(_) => {
            unavailable("Postgres", "connect timed out");
            return None;
        }
    };
    let name = format!("rampart_t_{:016x}", rand::thread_rng().gen::<u64>());
    // The name is generated above from hex digits only.
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    Some(PgDatabase { url: format!("{base}/{name}"), name })
}

/// The test Redis URL (`RAMPART_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) if Redis
/// answers, else `None` (skip) outside CI.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("RAMPART_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let addr =
        url.trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_owned();
    let addr = addr.rsplit('@').next().unwrap_or(&addr).to_owned();
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await
    {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            unavailable("Redis", &e.to_string());
            None
        }
        Err(_) => {
            unavailable("Redis", "connect timed out");
            None
        }
    }
}

/// A random lowercase hex string, for key prefixes and names.
pub fn random_suffix() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}
