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
//! # Several keys at once
//! [`check_all`](RateLimitStore::check_all) locks the shards of all its keys, in ascending
//! shard order (so two batches can never wait on each other in a cycle), reads every key,
//! decides with [`gcra::evaluate_all`] and writes the new TATs of every key, or of none, before
//! releasing any lock. A single check locks one shard. The TATs of a key are kept index by
//! index, like the fields of the Redis hash: a check with fewer quotas than were stored leaves
//! the others as they are.
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
        self.check_all_now(&[(key, quotas)]).pop().unwrap_or_else(Decision::unlimited)
    }

    /// The synchronous form of [`RateLimitStore::check_all`]: every key of `checks` decided
    /// under the locks of all the shards involved, with [`gcra::evaluate_all`].
    pub fn check_all_now(&self, checks: &[(&str, &[Quota])]) -> Vec<Decision> {
        let mut out = vec![Decision::unlimited(); checks.len()];
        // Entries without quotas are unlimited and touch nothing.
        let limited: Vec<usize> = (0..checks.len()).filter(|&i| !checks[i].1.is_empty()).collect();
        if limited.is_empty() {
            return out;
        }
        // Distinct keys, and which of them each limited entry uses.
        let mut keys: Vec<&str> = Vec::with_capacity(limited.len());
        let key_of: Vec<usize> = limited
            .iter()
            .map(|&i| {
                let key = checks[i].0;
                keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        let now = now_ns(self.clock.as_ref());
        let decisions = self.map.update_many(&keys, now, |stored| {
            let read: Vec<Vec<Option<u64>>> = stored
                .iter()
                .map(|tats| tats.map_or_else(Vec::new, |t| t.iter().map(|&t| Some(t)).collect()))
                .collect();
            let entries: Vec<gcra::Entry<'_, usize>> = limited
                .iter()
                .zip(&key_of)
                .map(|(&i, &k)| (k, read[k].as_slice(), checks[i].1))
                .collect();
            let (decisions, new) = gcra::evaluate_all(now, &entries);
            let writes = match new {
                None => keys.iter().map(|_| Write::Keep).collect(),
                Some(new) => {
                    let mut merged: Vec<Vec<u64>> =
                        stored.iter().map(|t| t.map_or_else(Vec::new, |t| t.to_vec())).collect();
                    for (tats, &k) in new.iter().zip(&key_of) {
                        gcra::overwrite(&mut merged[k], tats);
                    }
                    merged
                        .into_iter()
                        .map(|tats| {
                            let expires_at = gcra::expires_at(&tats);
                            Write::Put(tats.into_boxed_slice(), expires_at)
                        })
                        .collect()
                }
            };
            (writes, decisions)
        });
        for (i, decision) in limited.into_iter().zip(decisions) {
            out[i] = decision;
        }
        out
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

    async fn check_all(
        &self,
        checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        Ok(self.check_all_now(checks))
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

    #[tokio::test]
    async fn batch_refused_by_the_second_key_consumes_nothing_from_the_first() {
        let (store, clock) = setup(100);
        let (wide, narrow) = ([q("3/1h")], [q("1/10s")]);
        // Spend the second key on its own.
        assert!(store.check_now("narrow", &narrow).allowed);
        for _ in 0..20 {
            let d = store.check_all(&[("wide", &wide), ("narrow", &narrow)]).await.unwrap();
            assert!(d[0].allowed && !d[1].allowed);
            assert_eq!(d[0].quotas[0].remaining, 3, "the first key was charged");
            assert_eq!(d[1].retry_after, Duration::from_secs(10));
        }
        // Once the second key frees up, the first still has its whole quota.
        advance(&clock, Duration::from_secs(10));
        let d = store.check_all_now(&[("wide", &wide), ("narrow", &narrow)]);
        assert!(d[0].allowed && d[1].allowed);
        assert_eq!(d[0].quotas[0].remaining, 2);
        let mut admitted = 1;
        for _ in 0..5 {
            admitted += u32::from(store.check_now("wide", &wide).allowed);
        }
        assert_eq!(admitted, 3);
    }

    #[tokio::test]
    async fn batch_admits_only_when_every_key_admits_and_then_charges_each() {
        let (store, _) = setup(100);
        let (a, b) = ([q("2/1m")], [q("5/1m"), q("3/1h")]);
        let checks: [(&str, &[Quota]); 3] = [("a", &a), ("free", &[]), ("b", &b)];
        for left in [1, 0] {
            let d = store.check_all_now(&checks);
            assert!(d.iter().all(|d| d.allowed));
            assert_eq!(d[0].quotas[0].remaining, left);
            assert_eq!(d[1], Decision::unlimited());
        }
        let d = store.check_all_now(&checks);
        assert!(!d[0].allowed && d[2].allowed);
        assert_eq!(d[2].quotas[1].remaining, 1);
        // The refused batch left `b` at one unit of its hourly quota.
        assert!(store.check_now("b", &b).allowed);
        assert!(!store.check_now("b", &b).allowed);
        assert!(!store.is_empty());
        assert_eq!(store.check_all_now(&[]), Vec::<Decision>::new());
    }

    #[tokio::test]
    async fn repeated_key_in_a_batch_is_charged_once_per_entry_or_not_at_all() {
        let (store, _) = setup(100);
        let quotas = [q("3/1h")];
        let twice = [("k", &quotas[..]), ("k", &quotas[..])];
        let d = store.check_all_now(&twice);
        assert!(d.iter().all(|d| d.allowed));
        assert_eq!(d[1].quotas[0].remaining, 1);
        // One unit left, two needed: refused, and the last unit is still there.
        assert!(!store.check_all_now(&twice)[1].allowed);
        assert!(store.check_now("k", &quotas).allowed);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_check_with_fewer_quotas_keeps_the_others_and_their_expiry() {
        let (store, clock) = setup(100);
        // Two rules sharing a key (same name), one with an hourly second quota.
        let (two, one) = ([q("5/1s"), q("1/1h")], [q("5/1s")]);
        assert!(store.check_now("k", &two).allowed);
        assert!(store.check_now("k", &one).allowed);
        advance(&clock, Duration::from_secs(2));
        assert_eq!(store.purge_expired(), 0);
        assert!(!store.check_now("k", &two).allowed);
    }

    #[test]
    fn concurrent_batches_never_admit_more_than_any_key_allows() {
        let clock = ManualClock::at_epoch();
        let store = MemoryRateLimitStore::new(1_000, Arc::new(clock));
        // Two keys in different shards, so that batches lock two shards in either order.
        let a = "rl:wide:ip:192.0.2.1";
        let b = (0..)
            .map(|i| format!("rl:narrow:ip:192.0.2.{i}"))
            .find(|k| store.map.shard_of(k) != store.map.shard_of(a))
            .unwrap();
        let b = b.as_str();
        let (qa, qb) = ([q("40/1h")], [q("60/1h"), q("1000/1d")]);
        let (qa, qb) = (&qa[..], &qb[..]);
        // Per thread: admitted requests that needed both keys, and those that needed only b.
        let counts: Vec<(u32, u32)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || {
                        let (mut both, mut only) = (0, 0);
                        for i in 0..300 {
                            let d = match (t + i) % 3 {
                                0 => store.check_all_now(&[(a, qa), (b, qb)]),
                                1 => store.check_all_now(&[(b, qb), (a, qa)]),
                                _ => {
                                    only += u32::from(store.check_now(b, qb).allowed);
                                    continue;
                                }
                            };
                            // The request passes only if every decision admits it.
                            both += u32::from(d.iter().all(|d| d.allowed));
                        }
                        (both, only)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let both: u32 = counts.iter().map(|c| c.0).sum();
        let only: u32 = counts.iter().map(|c| c.1).sum();
        assert!(both <= 40, "key a admitted {both} of 40");
        // No time passes, so b, asked far more often than it allows, ends exactly spent.
        assert_eq!(both + only, 60, "key b admitted {} of 60", both + only);
        // a was charged exactly for the batches admitted: refused batches took nothing.
        let mut rest = 0;
        for _ in 0..50 {
            rest += u32::from(store.check_now(a, qa).allowed);
        }
        assert_eq!(both + rest, 40);
    }

    #[test]
    fn empty_quota_list_admits_and_stores_nothing() {
        let (store, _) = setup(10);
        assert!(store.check_now("k", &[]).allowed);
        assert!(store.is_empty());
    }
}
