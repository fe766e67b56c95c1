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
        format!("acct:{}", rate_limit_mac_hex(&self.keyring, &email.to_lowercase()))
    }

    /// What the audit log records of login input that names no account: see
    /// [`login_input_pseudonym`].
    pub fn login_input_pseudonym(&self, input: &str) -> String {
        login_input_pseudonym(&self.keyring, input)
    }
}

/// A keyed, non-reversible pseudonym of submitted login input (64 hex characters): the keyed
/// hash the regulation key is made of (HMAC-SHA256 under the rate-limit subkey), of the input
/// trimmed and in lower case.
///
/// # Security
/// Login input that names no account may be anything the person typed, a password in the wrong
/// field included, so the audit log never stores it; the pseudonym still links repeated
/// attempts with one input. Whoever holds the master key can test guesses against it.
pub fn login_input_pseudonym(keyring: &Keyring, input: &str) -> String {
    rate_limit_mac_hex(keyring, &input.trim().to_lowercase())
}

/// HMAC-SHA256 of `text` under the rate-limit subkey, in hex: what regulation keys and login
/// input pseudonyms are made of.
fn rate_limit_mac_hex(keyring: &Keyring, text: &str) -> String {
    hex::encode(keyring.mac(Purpose::RateLimit, text.as_bytes()))
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::MasterKey;

    use super::*;

    fn keyring(byte: u8) -> Keyring {
        let bytes = (0..32u8).map(|i| i.wrapping_mul(31) ^ byte).collect();
        Keyring::new(MasterKey::from_bytes(bytes).unwrap(), Vec::new())
    }

    #[test]
    fn login_input_pseudonym_hides_the_input_and_ignores_case_and_surrounding_space() {
        let k = keyring(7);
        let p = login_input_pseudonym(&k, "MySecretPassw0rd!");
        assert_eq!(p.len(), 64);
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{p}");
        assert!(!p.to_lowercase().contains("mysecret"), "{p}");
        assert_eq!(login_input_pseudonym(&k, "  mysecretpassw0rd!\t"), p);
        assert_ne!(login_input_pseudonym(&k, "MySecretPassw0rd?"), p);
        // Keyed: another master key gives another pseudonym.
        assert_ne!(login_input_pseudonym(&keyring(8), "MySecretPassw0rd!"), p);
    }
}
