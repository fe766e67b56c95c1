//! Login regulation: temporary bans per account after repeated failures, and a lock per client
//! address that sprays failures across accounts.
//!
//! ```text
//! before verifying:   let attempt = regulator.begin(account_key, ip)?  // Locked -> refuse
//! wrong password:     regulator.fail(account_key, ip, attempt)
//! right password:     regulator.record_success(account_key)
//! ```
//!
//! [`LoginRegulator::begin`] counts the attempt *before* the password is verified, so guesses
//! sent at the same moment cannot all pass a check that none of them has counted yet: of any
//! number of concurrent attempts on one account, at most `max_failures` are verified before the
//! ban. A right password clears the count, the reserved places of attempts still in flight
//! included. [`LoginRegulator::check`] and [`LoginRegulator::record_failure`] are the same
//! policy for callers that verify one attempt at a time.
//!
//! # Semantics (defaults of [`RegulationConfig`])
//! - **Per account**: `max_failures` (5) consecutive failures within `window` (15 min, counted
//!   from the first failure) start a ban of `base_ban` (1 min). Each further ban doubles
//!   (2, 4, 8 min) up to `max_ban` (15 min). The ban level is remembered for
//!   [`BAN_LEVEL_MEMORY`] (a day) after the latest ban, or until a success. Bans always end.
//!   Failures while banned are not counted (the caller should not have verified anything).
//! - **Per client address**: `ip_max_failures` (20) failures within `ip_window` (5 min), for
//!   any accounts, lock the address until that window ends. IPv6 addresses count by /64.
//!   Successes do not reset it, so one valid account does not launder a spraying run.
//!
//! # Store operations
//! [`RegulationStore`] has five small operations, each a single step on one key, so a shared
//! backend can implement them with a handful of commands or one short script:
//! `incr_failure` (increment, setting the expiry on the first increment), `failures`,
//! `ban`, `set_ban` and `remove`. Keys are `reg:acct:{account}:fail`,
//! `reg:acct:{account}:ban` and `reg:ip:{address}:fail`.
//!
//! # Security
//! - Call [`LoginRegulator::check`] *before* verifying the password and refuse when locked,
//!   so a guess made during a ban learns nothing.
//! - Account keys are opaque: pass a keyed hash of the normalised identifier (the server uses
//!   a keyed hash of the lowercased email), never the identifier itself, so a dump of the store
//!   names nobody. Record failures for unknown accounts too, so bans do not reveal which
//!   accounts exist.
//! - Anyone can get an account banned by failing on purpose; the bans are short and capped to
//!   keep that nuisance bounded. Users behind one NAT share the address lock.
//! - If the store fails, [`LoginRegulator::check`] fails closed ([`LockScope::Unavailable`])
//!   and logs at WARN.
//! - The memory store is bounded; a flood of distinct keys at capacity can evict a ban early.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rampart_core::SharedClock;

use crate::bounded::{BoundedMap, Write};
use crate::memory::now_ns;
use crate::rule::ip_bucket;
use crate::{RateLimitConfigError, RateLimitError};

/// How long an account's ban level is remembered after its latest ban.
pub const BAN_LEVEL_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How long to tell a caller to wait when the store is unavailable.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Thresholds and durations of login regulation. `Default` gives the values in the field docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegulationConfig {
    /// Consecutive failures per account that start a ban (5).
    pub max_failures: u32,
    /// The window those failures are counted in, from the first one (15 min).
    pub window: Duration,
    /// The first ban's length (1 min); each further ban doubles it.
    pub base_ban: Duration,
    /// The longest ban (15 min).
    pub max_ban: Duration,
    /// Failures per client address, over all accounts, that lock the address (20).
    pub ip_max_failures: u32,
    /// The window those failures are counted in (5 min); the lock lasts until it ends.
    pub ip_window: Duration,
}

impl Default for RegulationConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            base_ban: Duration::from_secs(60),
            max_ban: Duration::from_secs(15 * 60),
            ip_max_failures: 20,
            ip_window: Duration::from_secs(5 * 60),
        }
    }
}

impl RegulationConfig {
    /// Checks that thresholds and durations are non-zero and `base_ban <= max_ban`.
    pub fn validate(&self) -> Result<(), RateLimitConfigError> {
        let bad =
            |setting, reason| Err(RateLimitConfigError::InvalidRegulation { setting, reason });
        let positive = [
            ("max_failures", self.max_failures == 0),
            ("ip_max_failures", self.ip_max_failures == 0),
            ("window", self.window.is_zero()),
            ("ip_window", self.ip_window.is_zero()),
            ("base_ban", self.base_ban.is_zero()),
        ];
        if let Some((setting, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return bad(setting, "must not be zero");
        }
        if self.max_ban < self.base_ban {
            return bad("max_ban", "must not be shorter than base_ban");
        }
        Ok(())
    }

    /// The length of a ban given the number of earlier remembered bans: `base_ban * 2^level`,
    /// at most `max_ban`.
    pub fn ban_duration(&self, level: u32) -> Duration {
        2u32.checked_pow(level)
            .and_then(|factor| self.base_ban.checked_mul(factor))
            .map_or(self.max_ban, |d| d.min(self.max_ban))
    }
}

/// A failure counter as read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures counted in the current window.
    pub count: u32,
    /// Time until the counter resets.
    pub reset_in: Duration,
}

/// An account's ban as read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanState {
    /// How many bans are remembered (the current one included).
    pub level: u32,
    /// Time until the current ban ends; zero once it has ended (the level is still remembered).
    pub remaining: Duration,
}

/// Where regulation state lives. Durations are relative, so each backend uses its own clock.
#[async_trait]
pub trait RegulationStore: Debug + Send + Sync + 'static {
    /// Adds one failure to `key` and returns the new count. The first failure starts a window
    /// of `window`, at the end of which the counter disappears.
    async fn incr_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<FailureCount, RateLimitError>;
    /// Reads a failure counter.
    async fn failures(&self, key: &str) -> Result<Option<FailureCount>, RateLimitError>;
    /// Reads a ban.
    async fn ban(&self, key: &str) -> Result<Option<BanState>, RateLimitError>;
    /// Stores a ban of `level` lasting `ban_for`, remembered for `remember_for`.
    async fn set_ban(
        &self,
        key: &str,
        level: u32,
        ban_for: Duration,
        remember_for: Duration,
    ) -> Result<(), RateLimitError>;
    /// Deletes a counter or ban.
    async fn remove(&self, key: &str) -> Result<(), RateLimitError>;
}

/// What a lock applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockScope {
    /// The account is banned after repeated failures.
    Account,
    /// The client address failed too often across accounts.
    ClientIp,
    /// The regulation store failed; refused to be safe.
    Unavailable,
}

/// A login attempt refused before verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed login attempts; retry later")]
#[non_exhaustive]
pub struct Locked {
    /// How long until an attempt is accepted again.
    pub retry_after: Duration,
    /// What is locked.
    pub scope: LockScope,
}

/// A login attempt counted by [`LoginRegulator::begin`], to hand to
/// [`LoginRegulator::fail`] when the password turns out wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a wrong password must be reported with `fail`"]
pub struct Attempt {
    counted: u32,
}

/// Regulates login attempts. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LoginRegulator {
    store: Arc<dyn RegulationStore>,
    config: RegulationConfig,
}

impl LoginRegulator {
    /// A regulator over `store`. Zero thresholds are treated as 1 (see
    /// [`RegulationConfig::validate`] to reject them instead).
    pub fn new(store: Arc<dyn RegulationStore>, config: RegulationConfig) -> Self {
        let config = RegulationConfig {
            max_failures: config.max_failures.max(1),
            ip_max_failures: config.ip_max_failures.max(1),
            max_ban: config.max_ban.max(config.base_ban),
            ..config
        };
        Self { store, config }
    }

    /// The settings in force.
    pub fn config(&self) -> &RegulationConfig {
        &self.config
    }

    /// Whether an attempt for `account_key` from `ip` may be verified now.
    pub async fn check(&self, account_key: &str, ip: IpAddr) -> Result<(), Locked> {
        let ban = self.store.ban(&ban_key(account_key)).await;
        let ip_failures = self.store.failures(&ip_key(ip)).await;
        let (ban, ip_failures) = match (ban, ip_failures) {
            (Ok(b), Ok(f)) => (b, f),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(error = %error, "login regulation store failed; refusing the attempt");
                return Err(Locked {
                    retry_after: UNAVAILABLE_RETRY,
                    scope: LockScope::Unavailable,
                });
            }
        };
        let account = ban
            .filter(|b| !b.remaining.is_zero())
            .map(|b| Locked { retry_after: b.remaining, scope: LockScope::Account });
        let address = ip_failures
            .filter(|f| f.count >= self.config.ip_max_failures && !f.reset_in.is_zero())
            .map(|f| Locked { retry_after: f.reset_in, scope: LockScope::ClientIp });
        match longer(account, address) {
            Some(locked) => Err(locked),
            None => Ok(()),
        }
    }

    /// [`check`](Self::check), then counts the attempt as a failure before anything is
    /// verified. Refused when the attempts already counted for the account fill its allowance
    /// (other attempts are being verified right now): the ban that follows is not written yet,
    /// so the refusal names the ban the account is heading for. An attempt that ends with
    /// neither [`fail`](Self::fail) nor [`record_success`](Self::record_success) (an error
    /// before the verification finished) stays counted as a failure: the safe side.
    pub async fn begin(&self, account_key: &str, ip: IpAddr) -> Result<Attempt, Locked> {
        self.check(account_key, ip).await?;
        let c = &self.config;
        let counted = match self.store.incr_failure(&fail_key(account_key), c.window).await {
            Ok(n) => n.count,
            Err(error) => {
                tracing::warn!(error = %error, "login regulation store failed; refusing the attempt");
                return Err(Locked {
                    retry_after: UNAVAILABLE_RETRY,
                    scope: LockScope::Unavailable,
                });
            }
        };
        if counted > c.max_failures {
            let level =
                self.store.ban(&ban_key(account_key)).await.ok().flatten().map_or(0, |b| b.level);
            return Err(Locked { retry_after: c.ban_duration(level), scope: LockScope::Account });
        }
        Ok(Attempt { counted })
    }

    /// Records a wrong password (or unknown account) for an attempt counted by
    /// [`begin`](Self::begin). Returns the lock now in force, if any, so the caller can audit a
    /// ban as it starts.
    pub async fn fail(
        &self,
        account_key: &str,
        ip: IpAddr,
        attempt: Attempt,
    ) -> Result<Option<Locked>, RateLimitError> {
        self.settle_failure(account_key, ip, Some(attempt.counted)).await
    }

    /// Records a wrong password (or unknown account) of an attempt checked with
    /// [`check`](Self::check) and not counted yet. Returns the lock now in force, if any, so
    /// the caller can audit a ban as it starts.
    pub async fn record_failure(
        &self,
        account_key: &str,
        ip: IpAddr,
    ) -> Result<Option<Locked>, RateLimitError> {
        self.settle_failure(account_key, ip, None).await
    }

    /// Counts the failure against the address, and against the account unless `counted`
    /// (the account's count when [`begin`](Self::begin) counted it); starts a ban when the
    /// count reaches the threshold.
    async fn settle_failure(
        &self,
        account_key: &str,
        ip: IpAddr,
        counted: Option<u32>,
    ) -> Result<Option<Locked>, RateLimitError> {
        let c = &self.config;
        let ip_count = self.store.incr_failure(&ip_key(ip), c.ip_window).await?;
        let address = (ip_count.count >= c.ip_max_failures)
            .then_some(Locked { retry_after: ip_count.reset_in, scope: LockScope::ClientIp });

        let ban_key = ban_key(account_key);
        let ban = self.store.ban(&ban_key).await?;
        if let Some(active) = ban.filter(|b| !b.remaining.is_zero()) {
            let account = Locked { retry_after: active.remaining, scope: LockScope::Account };
            return Ok(longer(Some(account), address));
        }
        let fail_key = fail_key(account_key);
        let count = match counted {
            Some(n) => n,
            None => self.store.incr_failure(&fail_key, c.window).await?.count,
        };
        if count < c.max_failures {
            return Ok(address);
        }
        let level = ban.map_or(0, |b| b.level);
        let ban_for = c.ban_duration(level);
        self.store
            .set_ban(&ban_key, level.saturating_add(1), ban_for, BAN_LEVEL_MEMORY.max(ban_for))
            .await?;
        self.store.remove(&fail_key).await?;
        tracing::info!(
            level = level.saturating_add(1),
            ban_secs = ban_for.as_secs(),
            "account temporarily banned after repeated login failures"
        );
        Ok(longer(Some(Locked { retry_after: ban_for, scope: LockScope::Account }), address))
    }

    /// Records a successful login: the account's failure count and ban level are cleared.
    pub async fn record_success(&self, account_key: &str) -> Result<(), RateLimitError> {
        self.store.remove(&fail_key(account_key)).await?;
        self.store.remove(&ban_key(account_key)).await
    }
}

fn longer(a: Option<Locked>, b: Option<Locked>) -> Option<Locked> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.retry_after > a.retry_after { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn fail_key(account: &str) -> String {
    format!("reg:acct:{account}:fail")
}

fn ban_key(account: &str) -> String {
    format!("reg:acct:{account}:ban")
}

fn ip_key(ip: IpAddr) -> String {
    format!("reg:ip:{}:fail", ip_bucket(ip))
}

#[derive(Debug, Clone, Copy)]
enum RegEntry {
    Failures { count: u32, reset_at: u64 },
    Ban { level: u32, until: u64 },
}

/// A bounded in-memory [`RegulationStore`] with an injected clock (same eviction as
/// [`MemoryRateLimitStore`](crate::MemoryRateLimitStore): expired entries first, then least
/// recently used).
pub struct MemoryRegulationStore {
    map: BoundedMap<RegEntry>,
    clock: SharedClock,
}

impl MemoryRegulationStore {
    /// A store of at most `capacity` keys (at least 1).
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        Self { map: BoundedMap::new(capacity, 16), clock }
    }

    /// Keys held (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many live entries were dropped to make room.
    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }

    fn now(&self) -> u64 {
        now_ns(self.clock.as_ref())
    }
}

impl Debug for MemoryRegulationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegulationStore")
            .field("capacity", &self.map.capacity())
            .field("evictions", &self.evictions())
            .finish_non_exhaustive()
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn until(now: u64, at: u64) -> Duration {
    Duration::from_nanos(at.saturating_sub(now))
}

#[async_trait]
impl RegulationStore for MemoryRegulationStore {
    async fn incr_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<FailureCount, RateLimitError> {
        let now = self.now();
        Ok(self.map.update(key, now, |entry| {
            let (count, reset_at) = match entry {
                Some(RegEntry::Failures { count, reset_at }) => {
                    (count.saturating_add(1), *reset_at)
                }
                _ => (1, now.saturating_add(ns(window))),
            };
            let out = FailureCount { count, reset_in: until(now, reset_at) };
            (Write::Put(RegEntry::Failures { count, reset_at }, reset_at), out)
        }))
    }

    async fn failures(&self, key: &str) -> Result<Option<FailureCount>, RateLimitError> {
        let now = self.now();
        Ok(self.map.update(key, now, |entry| match entry {
            Some(RegEntry::Failures { count, reset_at }) => {
                (Write::Keep, Some(FailureCount { count: *count, reset_in: until(now, *reset_at) }))
            }
            _ => (Write::Keep, None),
        }))
    }

    async fn ban(&self, key: &str) -> Result<Option<BanState>, RateLimitError> {
        let now = self.now();
        Ok(self.map.update(key, now, |entry| match entry {
            Some(RegEntry::Ban { level, until: end }) => {
                (Write::Keep, Some(BanState { level: *level, remaining: until(now, *end) }))
            }
            _ => (Write::Keep, None),
        }))
    }

    async fn set_ban(
        &self,
        key: &str,
        level: u32,
        ban_for: Duration,
        remember_for: Duration,
    ) -> Result<(), RateLimitError> {
        let now = self.now();
        let end = now.saturating_add(ns(ban_for));
        let forget_at = now.saturating_add(ns(remember_for.max(ban_for)));
        self.map
            .update(key, now, |_| (Write::Put(RegEntry::Ban { level, until: end }, forget_at), ()));
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), RateLimitError> {
        self.map.update(key, self.now(), |_| (Write::Remove, ()));
        Ok(())
    }
}

#[cfg(test)]
#[path = "regulation_tests.rs"]
mod tests;
