//! [`MemoryRateLimitStore`]: a bounded in-process [`RateLimitStore`].
//!
//! Keys are spread over 16 shards, each a `parking_lot::Mutex` around a hash map and a
//! recency list (see the eviction order below). One entry holds the key once (shared between
//! the map and the list) and one TAT (`u64`) per quota.
//!
//! # Memory per key
//! Roughly `110 + key length` bytes for a key with two quotas on a 64-bit target, before
//! allocator rounding: the list node (48 bytes: key pointer, boxed TAT slice pointer, expiry,
//! links), the map slot (key pointer and index, 24 bytes, about 28 at the map's maximum load
//! factor of 7/8 plus a control byte; up to twice that just after the map has grown), the
//! shared key allocation (16 bytes of reference counts + the key) and the TATs (8 bytes per
//! quota). A key like `rl:default:ip:203.0.113.7` is 25 bytes, so about 135 bytes per key, and
//! the default capacity of 1 000 000 keys needs in the order of 135 to 200 MB when full. The
//! test `memory_per_key_is_in_the_documented_range` recomputes this estimate from the types.
//!
//! # Eviction
//! The store never holds more than its capacity. When a shard is full, it drops expired
//! entries first (an entry expires once its latest TAT has passed: it then carries no
//! information), else the least recently used one; every check, admitted or refused, counts
//! as a use. Only live entries dropped are counted by [`MemoryRateLimitStore::evictions`].
//!
//! # Security
//! - The limits are per process: behind a load balancer with `n` instances a client can get
//!   up to `n` times the quota. Use a shared store for a strict global limit.
//! - A flood of distinct keys (many addresses) can evict live entries when the store is full,
//!   resetting those clients' limits; watch [`MemoryRateLimitStore::evictions`] and size the
//!   capacity so that it stays at zero in normal operation.
//! - Shard selection and the maps use a per-process random hash seed, so clients cannot aim
//!   collisions at one shard.

use std::fmt;

use async_trait::async_trait;
use rampart_core::{Clock, SharedClock};

use crate::bounded::{BoundedMap, Write};
use crate::{gcra, Decision, Quota, RateLimitError, RateLimitStore};

/// The default number of keys a memory store holds.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

const SHARDS: usize = 16;

/// A bounded, sharded in-memory rate-limit store with an injected clock.
pub struct MemoryRateLimitStore {
    map: BoundedMap<Box<[u64]>>,
    clock: SharedClock,
}

impl MemoryRateLimitStore {
    /// A store holding at most `capacity` keys (at least 1), reading time from `clock`.
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        Self::with_shards(capacity, SHARDS, clock)
    }

    pub(crate) fn with_shards(capacity: usize, shards: usize, clock: SharedClock) -> Self {
        Self { map: BoundedMap::new(capacity, shards), clock }
    }

    /// A store with [`DEFAULT_CAPACITY`].
    pub fn with_default_capacity(clock: SharedClock) -> Self {
        Self::new(DEFAULT_CAPACITY, clock)
    }

    /// Keys currently held (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store holds.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// How many live entries were dropped to make room for new keys.
    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }

    /// Drops every expired entry now; returns how many. Optional: expired entries are also
    /// dropped lazily when their key is read or when room is needed.
    pub fn purge_expired(&self) -> usize {
        self.map.purge_expired(now_ns(self.clock.as_ref()))
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The synchronous form of [`RateLimitStore::check`].
    pub fn check_now(&self, key: &str, quotas: &[Quota]) -> Decision {
        if quotas.is_empty() {
            return Decision::unlimited();
        }
        let now = now_ns(self.clock.as_ref());
        self.map.update(key, now, |stored| {
            let tats: Vec<Option<u64>> = match stored {
                Some(tats) if tats.len() == quotas.len() => tats.iter().map(|&t| Some(t)).collect(),
                _ => Vec::new(),
            };
            match gcra::evaluate(now, &tats, quotas) {
                (decision, Some(new)) => {
                    let expires_at = gcra::expires_at(&new);
                    (Write::Put(new.into_boxed_slice(), expires_at), decision)
                }
                (decision, None) => (Write::Keep, decision),
            }
        })
    }
}

impl fmt::Debug for MemoryRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimitStore")
            .field("capacity", &self.capacity())
            .field("evictions", &self.evictions())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimitStore {
    async fn check(&self, key: &str, quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        Ok(self.check_now(key, quotas))
    }
}

/// Nanoseconds since the Unix epoch, clamped to `u64` (0 before 1970).
pub(crate) fn now_ns(clock: &dyn Clock) -> u64 {
    u64::try_from(clock.now().unix_timestamp_nanos().max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rampart_core::ManualClock;

    use super::*;

    fn setup(capacity: usize) -> (MemoryRateLimitStore, ManualClock) {
        let clock = ManualClock::at_epoch();
        (MemoryRateLimitStore::new(capacity, Arc::new(clock.clone())), clock)
    }

    fn q(text: &str) -> Quota {
        text.parse().unwrap()
    }

    fn advance(clock: &ManualClock, d: Duration) {
        clock.advance(time::Duration::try_from(d).unwrap());
    }

    #[tokio::test]
    async fn burst_is_fully_available_then_refused() {
        let (store, _) = setup(100);
        let quotas = [q("50/10s")];
        for i in 0..50 {
            let d = store.check("k", &quotas).await.unwrap();
            assert!(d.allowed, "request {i}");
            assert_eq!(d.quotas[0].remaining, 49 - i);
        }
        let d = store.check("k", &quotas).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        assert_eq!(d.quotas[0].remaining, 0);
    }

    #[tokio::test]
    async fn sustained_rate_refills_one_request_per_emission_interval() {
        let (store, clock) = setup(100);
        let quotas = [q("5/10s")];
        for _ in 0..5 {
            assert!(store.check_now("k", &quotas).allowed);
        }
        // Over the next 60 s, exactly one request per 2 s gets through.
        let mut admitted = 0;
        for _ in 0..600 {
            advance(&clock, Duration::from_millis(100));
            if store.check_now("k", &quotas).allowed {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 30);
    }

    #[tokio::test]
    async fn refused_requests_consume_nothing() {
        let (store, clock) = setup(100);
        let quotas = [q("2/10s")];
        assert!(store.check_now("k", &quotas).allowed);
        assert!(store.check_now("k", &quotas).allowed);
        for _ in 0..100 {
            assert!(!store.check_now("k", &quotas).allowed);
        }
        // One interval later exactly one request is admitted, as if the refusals never happened.
        advance(&clock, Duration::from_secs(5));
        assert!(store.check_now("k", &quotas).allowed);
        assert!(!store.check_now("k", &quotas).allowed);
    }

    #[tokio::test]
    async fn multiple_quotas_are_all_or_nothing() {
        let (store, clock) = setup(100);
        let quotas = [q("3/1s"), q("4/1m")];
        for _ in 0..3 {
            assert!(store.check_now("k", &quotas).allowed);
        }
        // The 1s quota refuses; the minute quota must not be charged for it.
        let d = store.check_now("k", &quotas);
        assert!(!d.allowed);
        assert_eq!(d.quotas[1].remaining, 1);
        advance(&clock, Duration::from_secs(1));
        let d = store.check_now("k", &quotas);
        assert!(d.allowed);
        assert_eq!(d.quotas[1].remaining, 0);
        // Now the minute quota refuses and the second one is not charged either.
        advance(&clock, Duration::from_secs(1));
        let d = store.check_now("k", &quotas);
        assert!(!d.allowed);
        assert_eq!(d.quotas[0].remaining, 3);
        assert_eq!(d.retry_after, Duration::from_secs(13));
    }

    #[tokio::test]
    async fn retry_after_is_exactly_when_the_next_request_passes() {
        let (store, clock) = setup(100);
        let quotas = [q("10/1m")];
        for _ in 0..10 {
            assert!(store.check_now("k", &quotas).allowed);
        }
        advance(&clock, Duration::from_secs(1));
        let d = store.check_now("k", &quotas);
        assert_eq!(d.retry_after, Duration::from_secs(5));
        advance(&clock, d.retry_after - Duration::from_millis(1));
        assert!(!store.check_now("k", &quotas).allowed);
        advance(&clock, Duration::from_millis(1));
        assert!(store.check_now("k", &quotas).allowed);
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let (store, _) = setup(100);
        let quotas = [q("1/1m")];
        assert!(store.check_now("a", &quotas).allowed);
        assert!(!store.check_now("a", &quotas).allowed);
        assert!(store.check_now("b", &quotas).allowed);
    }

    #[tokio::test]
    async fn never_exceeds_capacity_with_ten_times_as_many_keys() {
        let (store, _) = setup(1_000);
        let quotas = [q("5/1h")];
        for i in 0..10_000 {
            assert!(store.check_now(&format!("rl:r:ip:{i}"), &quotas).allowed);
            assert!(store.len() <= 1_000);
        }
        assert!(store.len() > 900, "shards should fill up, held {}", store.len());
        assert!(store.evictions() >= 9_000);
    }

    #[tokio::test]
    async fn evicts_expired_entries_before_live_ones() {
        // One shard, so that "full" does not depend on how keys hash.
        let clock = ManualClock::at_epoch();
        let store = MemoryRateLimitStore::with_shards(64, 1, Arc::new(clock.clone()));
        let short = [q("1/1s")];
        let long = [q("1/1h")];
        for i in 0..32 {
            store.check_now(&format!("live{i}"), &long);
        }
        for i in 0..32 {
            store.check_now(&format!("short{i}"), &short);
        }
        advance(&clock, Duration::from_secs(2));
        for i in 0..32 {
            store.check_now(&format!("new{i}"), &long);
            assert!(store.len() <= 64);
        }
        assert_eq!(store.evictions(), 0);
        // The long-lived entries kept their state: still refused.
        for i in 0..32 {
            assert!(!store.check_now(&format!("live{i}"), &long).allowed, "live{i} was evicted");
        }
    }

    #[test]
    fn memory_per_key_is_in_the_documented_range() {
        use std::mem::size_of;
        let key = "rl:default:ip:203.0.113.7";
        let node = crate::bounded::NODE_SIZE;
        let map_slot = size_of::<(Arc<str>, u32)>() as f64 * 8.0 / 7.0 + 1.0;
        let key_alloc = 2 * size_of::<usize>() + key.len();
        let tats = 2 * size_of::<u64>();
        let total = node as f64 + map_slot + key_alloc as f64 + tats as f64;
        println!("approximate bytes per key with two quotas: {total:.0}");
        assert!((120.0..220.0).contains(&total), "estimate {total} drifted from the docs");
    }

    #[test]
    fn empty_quota_list_admits_and_stores_nothing() {
        let (store, _) = setup(10);
        assert!(store.check_now("k", &[]).allowed);
        assert!(store.is_empty());
    }
}
