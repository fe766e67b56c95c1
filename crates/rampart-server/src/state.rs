//! Shared server state.

use std::sync::Arc;

use rampart_audit::{AuditSink, RateBound};
use rampart_core::{Keyring, Purpose, SharedClock};
use rampart_password::{AsyncHasher, PasswordPolicy};
use rampart_ratelimit::{LoginRegulator, RateLimitStore};
use rampart_session::{CookieConfig, SessionManager};
use rampart_store_redis::RedisHandle;
use rampart_store_sql::Db;

use crate::config::Config;

/// Everything handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// Database.
    pub db: Db,
    /// Master keys.
    pub keyring: Keyring,
    /// The signer of identity assertions for upstream apps (current key, reuse cache).
    pub assertions: crate::gateway::identity::Assertions,
    /// Clock.
    pub clock: SharedClock,
    /// Redis, when configured and reachable.
    pub redis: Option<RedisHandle>,
    /// This instance's name in the audit log.
    pub instance_id: String,
    /// Sessions.
    pub sessions: SessionManager,
    /// Session cookie settings.
    pub cookie: CookieConfig,
    /// Password hashing on low-priority worker threads.
    pub hasher: AsyncHasher,
    /// Password policy.
    pub password_policy: PasswordPolicy,
    /// Brute-force regulation of logins.
    pub regulator: LoginRegulator,
    /// Rate-limit store.
    pub rate_limits: Arc<dyn RateLimitStore>,
    /// The audit log.
    pub audit_sink: Arc<dyn AuditSink>,
    /// Bounds events caused by hostile floods.
    pub audit_bound: RateBound,
    /// Metrics.
    pub metrics: crate::metrics::Metrics,
    /// The memory session store, when that is the store (for eviction metrics).
    pub memory_sessions: Option<Arc<rampart_session::MemorySessionStore>>,
    /// The token vault (providers and the refresh HTTP client).
    pub vault: crate::vault::Vault,
    /// The access rules of the configuration, built once (forward auth asks on every request).
    pub access_rules: crate::gateway::rules::AccessRules,
    /// The CSRF origin check for requests to the app ([`crate::gateway::proxy::origin_policy`]),
    /// built once; `None` when CSRF protection is off.
    pub origin_csrf: Option<rampart_protect::csrf::CsrfPolicy>,
    /// The pseudonymization key (None: not configured, in production).
    pub pseudonym_key: Option<rampart_core::MasterKey>,
    /// Cancelled at shutdown; background tasks watch it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self { inner: Arc::new(inner) }
    }

    /// The regulation key of an email: a keyed hash of its lower-case form, never the email.
    pub fn account_key(&self, email: &str) -> String {
        format!(
            "acct:{}",
            hex::encode(self.keyring.mac(Purpose::RateLimit, email.to_lowercase().as_bytes()))
        )
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
