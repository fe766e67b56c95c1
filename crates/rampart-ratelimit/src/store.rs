//! [`RateLimitStore`], the storage contract, and [`FallbackStore`], which keeps limiting with a
//! local memory store while a shared store is down.
//!
//! # Contract for implementations
//! `check_all` decides one request against every key it is given (one per matching rule) in
//! one atomic step using [`gcra::evaluate_all`]: load the TATs of every key, evaluate, and
//! write the new TATs of every key only when every quota of every key admits the request
//! (each key with an expiry of [`gcra::expires_at`]); when any refuses, write nothing on any
//! key. It returns one [`Decision`] per key, in order, so that callers can report each rule's
//! state; the request may be retried after the longest `retry_after` among the refusals. A
//! shared backend does this server-side (for example in one script call for all the keys) so
//! that concurrent instances cannot both spend the last unit. `check` is the same for one key
//! and by default calls `check_all`.
//!
//! # Security
//! [`FallbackStore`] fails *soft*: while the primary is down, limits are enforced per process
//! by the local store, so a client gets at most the quota from each instance, never more, and
//! never unlimited access. The first success from the primary switches back at once.
//!
//! [`gcra::evaluate_all`]: crate::gcra::evaluate_all
//! [`gcra::expires_at`]: crate::gcra::expires_at

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::memory::now_ns;
use crate::{Decision, MemoryRateLimitStore, Quota, RateLimitError};

/// Where rate-limit state lives.
#[async_trait]
pub trait RateLimitStore: Debug + Send + Sync + 'static {
    /// Checks one request against several keys, each with its quotas, in one atomic step: the
    /// request is admitted only if every quota of every key admits it, and then each key is
    /// charged; if any refuses, nothing is consumed on any key. Returns one decision per entry
    /// of `checks`, in order (see the [module docs](self) and [`gcra::evaluate_all`]); an entry
    /// without quotas gets [`Decision::unlimited`].
    ///
    /// [`gcra::evaluate_all`]: crate::gcra::evaluate_all
    async fn check_all(&self, checks: &[(&str, &[Quota])])
        -> Result<Vec<Decision>, RateLimitError>;

    /// Checks one request for `key` against all `quotas` at once: admitted only if every quota
    /// admits it; a refused request changes nothing.
    async fn check(&self, key: &str, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        let mut decisions = self.check_all(&[(key, quotas)]).await?;
        match (decisions.pop(), decisions.is_empty()) {
            (Some(decision), true) => Ok(decision),
            _ => Err(RateLimitError::InvalidState {
                detail: "rate-limit store returned a wrong number of decisions",
            }),
        }
    }
}

#[async_trait]
impl<T: RateLimitStore + ?Sized> RateLimitStore for Arc<T> {
    async fn check_all(
        &self,
        checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        (**self).check_all(checks).await
    }

    async fn check(&self, key: &str, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        (**self).check(key, quotas).await
    }
}

/// How often [`FallbackStore`] logs that the primary store failed.
pub const FALLBACK_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Uses `primary`, and `local` for any call where `primary` fails.
#[derive(Debug)]
pub struct FallbackStore {
    primary: Arc<dyn RateLimitStore>,
    local: MemoryRateLimitStore,
    warn_gate: WarnGate,
    degraded: AtomicBool,
}

impl FallbackStore {
    /// Wraps `primary`, falling back to `local` on error.
    pub fn new(primary: Arc<dyn RateLimitStore>, local: MemoryRateLimitStore) -> Self {
        Self {
            primary,
            local,
            warn_gate: WarnGate::new(FALLBACK_WARN_INTERVAL),
            degraded: AtomicBool::new(false),
        }
    }

    /// The local store used during outages.
    pub fn local(&self) -> &MemoryRateLimitStore {
        &self.local
    }

    /// Whether the last call fell back to the local store.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}

impl FallbackStore {
    /// Records the primary's success.
    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("rate-limit store recovered; using the shared store again");
        }
    }

    /// Records the primary's failure, logging it at most once per [`FALLBACK_WARN_INTERVAL`].
    fn failed(&self, error: &RateLimitError) {
        self.degraded.store(true, Ordering::Relaxed);
        if self.warn_gate.should_log(now_ns(self.local.clock().as_ref())) {
            tracing::warn!(
                error = %error,
                source = ?std::error::Error::source(error).map(ToString::to_string),
                "rate-limit store failed; limiting with the local memory store"
            );
        }
    }
}

#[async_trait]
impl RateLimitStore for FallbackStore {
    /// All keys go to the primary in one call; if it fails, all of them are decided by the
    /// local store, with the same all-or-nothing rule.
    async fn check_all(
        &self,
        checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        match self.primary.check_all(checks).await {
            Ok(decisions) => {
                self.recovered();
                Ok(decisions)
            }
            Err(error) => {
                self.failed(&error);
                self.local.check_all(checks).await
            }
        }
    }

    async fn check(&self, key: &str, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        match self.primary.check(key, quotas).await {
            Ok(decision) => {
                self.recovered();
                Ok(decision)
            }
            Err(error) => {
                self.failed(&error);
                self.local.check(key, quotas).await
            }
        }
    }
}

/// Lets a message through at most once per interval.
#[derive(Debug)]
pub(crate) struct WarnGate {
    interval_ns: u64,
    last: Mutex<Option<u64>>,
}

impl WarnGate {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            last: Mutex::new(None),
        }
    }

    /// Whether to log now; records the time when it answers yes.
    pub(crate) fn should_log(&self, now_ns: u64) -> bool {
        let mut last = self.last.lock();
        match *last {
            Some(t) if now_ns.saturating_sub(t) < self.interval_ns && now_ns >= t => false,
            _ => {
                *last = Some(now_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::ManualClock;

    use super::*;

    /// A primary that fails while `down` is set, otherwise always admits.
    #[derive(Debug, Default)]
    struct Flaky {
        down: AtomicBool,
    }

    #[async_trait]
    impl RateLimitStore for Flaky {
        async fn check_all(
            &self,
            checks: &[(&str, &[Quota])],
        ) -> Result<Vec<Decision>, RateLimitError> {
            if self.down.load(Ordering::Relaxed) {
                Err(RateLimitError::unavailable(std::io::Error::other("connection refused")))
            } else {
                Ok(vec![Decision::unlimited(); checks.len()])
            }
        }
    }

    fn setup() -> (Arc<Flaky>, FallbackStore) {
        let primary = Arc::new(Flaky::default());
        let local = MemoryRateLimitStore::new(100, Arc::new(ManualClock::at_epoch()));
        let store = FallbackStore::new(primary.clone(), local);
        (primary, store)
    }

    #[tokio::test]
    async fn uses_local_quota_while_primary_fails_and_never_admits_more() {
        let (primary, store) = setup();
        let quotas = ["3/1m".parse().unwrap()];
        primary.down.store(true, Ordering::Relaxed);
        let mut admitted = 0;
        for _ in 0..10 {
            let d = store.check("k", &quotas).await.unwrap();
            admitted += u32::from(d.allowed);
        }
        assert_eq!(admitted, 3);
        assert!(store.is_degraded());
    }

    #[tokio::test]
    async fn returns_to_primary_on_the_next_success() {
        let (primary, store) = setup();
        let quotas = ["1/1m".parse().unwrap()];
        primary.down.store(true, Ordering::Relaxed);
        assert!(store.check("k", &quotas).await.unwrap().allowed);
        assert!(!store.check("k", &quotas).await.unwrap().allowed);
        primary.down.store(false, Ordering::Relaxed);
        // The primary admits everything, so the answer now comes from it.
        assert!(store.check("k", &quotas).await.unwrap().allowed);
        assert!(!store.is_degraded());
    }

    #[tokio::test]
    async fn batches_fall_back_whole_and_stay_all_or_nothing() {
        let (primary, store) = setup();
        let (wide, narrow) = (["5/1m".parse().unwrap()], ["1/1m".parse().unwrap()]);
        let checks: [(&str, &[Quota]); 2] = [("wide", &wide), ("narrow", &narrow)];
        primary.down.store(true, Ordering::Relaxed);
        let d = store.check_all(&checks).await.unwrap();
        assert!(d.iter().all(|d| d.allowed));
        assert!(store.is_degraded());
        // The local store refuses on `narrow` and charges `wide` nothing for it.
        for _ in 0..3 {
            let d = store.check_all(&checks).await.unwrap();
            assert!(d[0].allowed && !d[1].allowed);
            assert_eq!(d[0].quotas[0].remaining, 4);
        }
        primary.down.store(false, Ordering::Relaxed);
        let d = store.check_all(&checks).await.unwrap();
        assert_eq!(d, vec![Decision::unlimited(); 2]);
        assert!(!store.is_degraded());
    }

    /// Answers every batch with no decision at all.
    #[derive(Debug)]
    struct Mute;

    #[async_trait]
    impl RateLimitStore for Mute {
        async fn check_all(
            &self,
            _checks: &[(&str, &[Quota])],
        ) -> Result<Vec<Decision>, RateLimitError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn default_check_is_a_batch_of_one() {
        let quotas = ["2/1m".parse().unwrap()];
        assert_eq!(Flaky::default().check("k", &quotas).await.unwrap(), Decision::unlimited());
        assert!(matches!(Mute.check("k", &quotas).await, Err(RateLimitError::InvalidState { .. })));
    }

    #[test]
    fn warn_gate_lets_one_message_through_per_interval() {
        let gate = WarnGate::new(Duration::from_secs(10));
        let s = 1_000_000_000;
        assert!(gate.should_log(100 * s));
        assert!(!gate.should_log(101 * s));
        assert!(!gate.should_log(109 * s));
        assert!(gate.should_log(110 * s));
        assert!(!gate.should_log(115 * s));
        // A clock that stepped back does not silence the gate forever.
        assert!(gate.should_log(50 * s));
    }
}
