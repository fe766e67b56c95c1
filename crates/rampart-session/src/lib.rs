//! Server-side sessions for Rampart and any axum app.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_core::{Keyring, ManualClock, MasterKey, SharedClock};
//! use rampart_session::{LoadOutcome, MemorySessionStore, SessionManager, SessionTimeouts};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_session::SessionError> {
//! let clock = ManualClock::at_epoch();
//! let shared: SharedClock = Arc::new(clock.clone());
//! let store = MemorySessionStore::new(rampart_session::memory::DEFAULT_CAPACITY, shared.clone());
//! let keyring = Keyring::new(MasterKey::generate(), vec![]);
//! let sessions = SessionManager::new(Arc::new(store), keyring, SessionTimeouts::default(), shared);
//!
//! let (id, _record) = sessions.create("user-42", None, None, "password").await?;
//! // `id` goes into the cookie (see `CookieConfig::set_cookie`) and nowhere else.
//! let LoadOutcome::Active(active) = sessions.load(&id).await? else { panic!("active") };
//! assert_eq!(active.record.user_id, "user-42");
//!
//! clock.advance(time::Duration::minutes(31)); // past the 30-minute idle timeout
//! assert!(matches!(sessions.load(&id).await?, LoadOutcome::ExpiredIdle(_)));
//! assert!(matches!(sessions.load(&id).await?, LoadOutcome::Unknown));
//! # Ok(()) }
//! ```
//!
//! # Features
//! - [`SessionId`]: 256-bit ids from the OS RNG, redacted in `Debug`, zeroized, strictly parsed.
//! - [`StoreKey`]: stores file sessions under a keyed hash of the id, never the id.
//! - [`SessionStore`]: the backend trait (atomic create, one-round-trip load-and-touch that never
//!   resurrects, per-user list and revoke); [`MemorySessionStore`] is a bounded LRU
//!   implementation. The Redis backend lives in `rampart-store-redis`.
//! - [`SessionManager`]: create, load with idle and absolute timeouts, rotate, revoke.
//! - [`CookieConfig`]: `__Host-` cookie writing and strict reading.
//! - [`SessionLayer`], [`Session`], [`OptionalSession`], [`SetSession`]: axum integration.
//! - `conformance` (cargo feature `conformance`): the suite every store backend must pass.
//!
//! # Security
//! See each module: [`id`], [`store`], [`memory`], [`manager`], [`cookie`], [`layer`].

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod cookie;
pub mod error;
pub mod id;
pub mod layer;
pub mod manager;
pub mod memory;
pub mod record;
pub mod store;
pub mod timeout;

pub use cookie::{CookieConfig, CookieRead, SameSite};
pub use error::{Result, SessionError};
pub use id::{SessionId, StoreKey};
pub use layer::{
    OptionalSession, Session, SessionEvent, SessionLayer, SessionRejection, SessionRejectionKind,
    SessionService, SetSession,
};
pub use manager::{ActiveSession, CurrentSession, LoadOutcome, SessionManager};
pub use memory::MemorySessionStore;
pub use record::{SessionRecord, SessionTimeouts};
pub use store::SessionStore;
pub use timeout::TimeoutStore;
