//! Rampart on Redis: connections ([`conn`]), sessions ([`session`]) and rate limits shared by
//! every instance.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_store_redis::RedisError> {
//! use std::time::Duration;
//! let redis = rampart_store_redis::conn::connect("redis://127.0.0.1:6379/0", None, Duration::from_secs(1)).await?;
//! redis.ping().await?;
//! # Ok(()) }
//! ```
//!
//! # Security
//! Keys never contain a raw credential: sessions are stored under a keyed hash of their id and
//! their data is encrypted. Every operation has a timeout, so an outage becomes an error the
//! server answers with 503, never a hang.

pub mod conn;
pub mod ratelimit;
pub mod session;

pub use conn::{RedisError, RedisHandle};
pub use ratelimit::{RedisRateLimitStore, RedisRegulationStore};
pub use session::RedisSessionStore;
