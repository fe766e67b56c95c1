//! Rampart rate limiting: GCRA quotas, a store trait with a bounded memory store, a tower layer
//! that answers with IETF `RateLimit` headers, and login regulation per account and address.
//!
//! - [`quota`]: [`Quota`], written `200/60s`, `5/1m`, `1000/1h`.
//! - [`gcra`]: the algorithm as pure functions ([`gcra::evaluate`], [`gcra::evaluate_all`]), for
//!   stores to call or mirror.
//! - [`store`]: [`RateLimitStore`] (all quotas of all keys of a request checked atomically) and
//!   [`FallbackStore`].
//! - [`memory`]: [`MemoryRateLimitStore`], sharded, bounded, expired-first then LRU eviction.
//! - [`rule`]: [`Rule`] and [`KeyKind`] (client IP, user, API key, per route), readable from TOML.
//! - [`layer`]: [`RateLimitLayer`]: `429` with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
//! - [`regulation`]: [`LoginRegulator`]: doubling bans per account, locks per client address.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use axum::{body::Body, routing::post, Router};
//! use http::{Request, StatusCode};
//! use rampart_core::{ClientIp, ManualClock};
//! use rampart_ratelimit::{MemoryRateLimitStore, RateLimitLayer, Rule};
//! use tower::ServiceExt;
//!
//! let store = Arc::new(MemoryRateLimitStore::new(10_000, Arc::new(ManualClock::at_epoch())));
//! let rule = Rule { quotas: vec!["2/1m".parse().unwrap()], ..Rule::default_rule() };
//! let app = Router::new().route("/items", post(|| async { "created" })).layer(RateLimitLayer::new(store, vec![rule]));
//!
//! let request = || {
//!     let mut req = Request::post("/items").body(Body::empty()).unwrap();
//!     req.extensions_mut().insert(ClientIp("203.0.113.7".parse().unwrap()));
//!     req
//! };
//! assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! let refused = app.oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "30");
//! assert_eq!(refused.headers()["ratelimit"], r#""default:2/1m";r=0;t=60"#);
//! # }
//! ```
//!
//! # Security
//! Each module documents its own considerations. In short: refused requests consume nothing,
//! from any of the rules that matched them; in-memory state is bounded; the layer fails closed
//! when its store fails (use [`FallbackStore`] to degrade to per-process limits instead);
//! anonymous requests under a per-user rule are limited by address; time comes only from the
//! injected [`rampart_core::Clock`].

pub mod error;
pub mod gcra;
pub mod layer;
pub mod memory;
pub mod quota;
pub mod regulation;
pub mod rule;
pub mod store;

mod bounded;

pub use error::{RateLimitConfigError, RateLimitError, Result};
pub use gcra::{Decision, QuotaState};
pub use layer::{RateLimit, RateLimitLayer, RateLimited, RATELIMIT, RATELIMIT_POLICY};
pub use memory::{MemoryRateLimitStore, DEFAULT_CAPACITY};
pub use quota::Quota;
pub use regulation::{
    Attempt, BanState, FailureCount, LockScope, Locked, LoginRegulator, MemoryRegulationStore,
    RegulationConfig, RegulationStore,
};
pub use rule::{KeyKind, RateLimitSubject, Rule};
pub use store::{FallbackStore, RateLimitStore};
