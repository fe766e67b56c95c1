//! A bounded, sharded map with per-entry expiry and least-recently-used eviction.
//!
//! Each shard is a `HashMap<Arc<str>, u32>` into a slab of nodes linked in recency order.
//! When a shard is full and a new key arrives it makes room, in this order:
//! 1. the least recently used entry, if it has expired (O(1));
//! 2. a sweep of every expired entry in the shard, at most once per `capacity / 4` inserts
//!    (amortised O(1) per insert);
//! 3. the least recently used live entry (counted in [`BoundedMap::evictions`]).
//!
//! The total number of entries never exceeds the capacity given to [`BoundedMap::new`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

const NIL: u32 = u32::MAX;

/// What an update does to the entry.
pub(crate) enum Write<V> {
    /// Leave the entry as it is (it still counts as used).
    Keep,
    /// Store this value, dropping it once the clock reaches the expiry.
    Put(V, u64),
    /// Delete the entry.
    Remove,
}

pub(crate) struct BoundedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
    evictions: AtomicU64,
    capacity: usize,
}

struct Entry<V> {
    key: Arc<str>,
    value: V,
    expires_at: u64,
}

struct Node<V> {
    entry: Option<Entry<V>>,
    prev: u32,
    next: u32,
}

struct Shard<V> {
    map: HashMap<Arc<str>, u32>,
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    cap: usize,
    inserts_since_sweep: usize,
    swept: bool,
}

impl<V> BoundedMap<V> {
    /// A map of at most `capacity` entries (at least 1) spread over up to `shards` shards.
    pub(crate) fn new(capacity: usize, shards: usize) -> Self {
        let capacity = capacity.max(1);
        let n = shards.clamp(1, capacity);
        let shards = (0..n)
            .map(|i| {
                let cap = capacity / n + usize::from(i < capacity % n);
                Mutex::new(Shard::new(cap.min(NIL as usize - 1)))
            })
            .collect();
        Self { shards, hasher: RandomState::new(), evictions: AtomicU64::new(0), capacity }
    }

    fn shard_index(&self, key: &str) -> usize {
        let n = self.shards.len() as u64;
        usize::try_from(self.hasher.hash_one(key) % n).unwrap_or(0)
    }

    fn shard(&self, key: &str) -> &Mutex<Shard<V>> {
        &self.shards[self.shard_index(key)]
    }

    /// Which shard holds `key` (for tests that need keys in different shards).
    #[cfg(test)]
    pub(crate) fn shard_of(&self, key: &str) -> usize {
        self.shard_index(key)
    }

    /// Runs `f` on the live value of `key` (None if absent or expired at `now`) under the
    /// shard's lock, then applies the [`Write`] it returns.
    pub(crate) fn update<R>(
        &self,
        key: &str,
        now: u64,
        f: impl FnOnce(Option<&V>) -> (Write<V>, R),
    ) -> R {
        let mut shard = self.shard(key).lock();
        let mut live = shard.map.get(key).copied();
        if let Some(i) = live {
            if shard.expired(i, now) {
                shard.remove(i);
                live = None;
            }
        }
        let current = live.and_then(|i| shard.nodes[i as usize].entry.as_ref()).map(|e| &e.value);
        let (write, out) = f(current);
        if shard.apply(key, live, write, now) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    /// Like [`update`](Self::update) for several keys at once, atomically: `f` sees the live
    /// value of every key (in the order given) and returns one [`Write`] per key, all applied
    /// before any other thread can read one of the keys. A key given twice is read twice and
    /// written in order (the last write wins).
    ///
    /// The shards involved are locked in ascending index order, the only place that holds more
    /// than one shard lock, so concurrent calls cannot deadlock.
    pub(crate) fn update_many<R>(
        &self,
        keys: &[&str],
        now: u64,
        f: impl FnOnce(&[Option<&V>]) -> (Vec<Write<V>>, R),
    ) -> R {
        let shard_of: Vec<usize> = keys.iter().map(|k| self.shard_index(k)).collect();
        let mut locked = shard_of.clone();
        locked.sort_unstable();
        locked.dedup();
        let mut guards: Vec<_> = locked.iter().map(|&i| self.shards[i].lock()).collect();
        // Position of each key's shard among the guards.
        let slot: Vec<usize> =
            shard_of.iter().map(|i| locked.binary_search(i).unwrap_or_default()).collect();
        for (key, &g) in keys.iter().zip(&slot) {
            let shard = &mut guards[g];
            if let Some(i) = shard.map.get(*key).copied() {
                if shard.expired(i, now) {
                    shard.remove(i);
                }
            }
        }
        let (writes, out) = {
            let current: Vec<Option<&V>> = keys
                .iter()
                .zip(&slot)
                .map(|(key, &g)| {
                    let shard = &guards[g];
                    let i = shard.map.get(*key).copied()?;
                    shard.nodes[i as usize].entry.as_ref().map(|e| &e.value)
                })
                .collect();
            f(&current)
        };
        for ((key, &g), write) in keys.iter().zip(&slot).zip(writes) {
            let shard = &mut guards[g];
            // Looked up again: an earlier write of this batch may have inserted or evicted it.
            let live = shard.map.get(*key).copied();
            if shard.apply(key, live, write, now) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        out
    }

    /// Entries held, including expired ones not yet dropped.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// The most entries held at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live entries dropped to make room.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Drops every entry expired at `now`; returns how many.
    pub(crate) fn purge_expired(&self, now: u64) -> usize {
        self.shards.iter().map(|s| s.lock().sweep(now)).sum()
    }
}

impl<V> Shard<V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            cap,
            inserts_since_sweep: 0,
            swept: false,
        }
    }

    /// Applies `write` to `key`, held at `live` (None if absent); returns whether a live entry
    /// had to be evicted to make room.
    fn apply(&mut self, key: &str, live: Option<u32>, write: Write<V>, now: u64) -> bool {
        match (write, live) {
            (Write::Keep, Some(i)) => self.touch(i),
            (Write::Put(value, expires_at), Some(i)) => {
                if let Some(e) = self.nodes[i as usize].entry.as_mut() {
                    e.value = value;
                    e.expires_at = expires_at;
                }
                self.touch(i);
            }
            (Write::Put(value, expires_at), None) => {
                return self.insert(key, value, expires_at, now);
            }
            (Write::Remove, Some(i)) => self.remove(i),
            (Write::Keep | Write::Remove, None) => {}
        }
        false
    }

    fn expired(&self, i: u32, now: u64) -> bool {
        self.nodes[i as usize].entry.as_ref().is_none_or(|e| e.expires_at <= now)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        if let Some(e) = self.nodes[i as usize].entry.take() {
            self.map.remove(&e.key);
        }
        self.free.push(i);
    }

    /// Inserts a new key; returns whether a live entry had to be evicted for it.
    fn insert(&mut self, key: &str, value: V, expires_at: u64, now: u64) -> bool {
        let evicted = self.map.len() >= self.cap && self.make_room(now);
        if self.map.len() >= self.cap {
            return evicted;
        }
        let key: Arc<str> = Arc::from(key);
        let entry = Some(Entry { key: Arc::clone(&key), value, expires_at });
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize].entry = entry;
                i
            }
            None => {
                self.nodes.push(Node { entry, prev: NIL, next: NIL });
                // The capacity bound keeps the slab below `NIL`.
                u32::try_from(self.nodes.len() - 1).unwrap_or(NIL - 1)
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
        self.inserts_since_sweep += 1;
        evicted
    }

    /// Frees at least one slot; returns whether a live entry was evicted.
    fn make_room(&mut self, now: u64) -> bool {
        let tail = self.tail;
        if tail == NIL {
            return false;
        }
        if self.expired(tail, now) {
            self.remove(tail);
            return false;
        }
        let sweep_due = !self.swept || self.inserts_since_sweep >= (self.cap / 4).max(1);
        if sweep_due && self.sweep(now) > 0 {
            return false;
        }
        self.remove(self.tail);
        true
    }

    fn sweep(&mut self, now: u64) -> usize {
        self.swept = true;
        self.inserts_since_sweep = 0;
        let expired: Vec<u32> = (0..self.nodes.len())
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| self.nodes[i as usize].entry.as_ref().is_some_and(|e| e.expires_at <= now))
            .collect();
        for &i in &expired {
            self.remove(i);
        }
        expired.len()
    }
}

/// The size of one recency-list node holding a boxed TAT slice (for the memory estimate).
#[cfg(test)]
pub(crate) const NODE_SIZE: usize = std::mem::size_of::<Node<Box<[u64]>>>();

#[cfg(test)]
mod tests {
    use super::*;

    fn put(m: &BoundedMap<u32>, key: &str, value: u32, exp: u64, now: u64) {
        m.update(key, now, |_| (Write::Put(value, exp), ()));
    }

    fn get(m: &BoundedMap<u32>, key: &str, now: u64) -> Option<u32> {
        m.update(key, now, |v| (Write::Keep, v.copied()))
    }

    #[test]
    fn never_exceeds_capacity_with_many_distinct_keys() {
        let m = BoundedMap::new(100, 16);
        for i in 0..1_000 {
            put(&m, &format!("k{i}"), i, u64::MAX, 0);
            assert!(m.len() <= 100);
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evictions(), 900);
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let m = BoundedMap::new(3, 1);
        for k in ["a", "b", "c"] {
            put(&m, k, 1, u64::MAX, 0);
        }
        assert_eq!(get(&m, "a", 0), Some(1)); // "b" is now the oldest
        put(&m, "d", 1, u64::MAX, 0);
        assert_eq!(get(&m, "b", 0), None);
        assert_eq!(get(&m, "a", 0), Some(1));
        assert_eq!(get(&m, "c", 0), Some(1));
    }

    #[test]
    fn evicts_expired_entries_before_live_ones() {
        let m = BoundedMap::new(4, 1);
        put(&m, "live1", 1, 1_000, 0);
        put(&m, "old1", 1, 10, 0);
        put(&m, "old2", 1, 10, 0);
        put(&m, "live2", 1, 1_000, 0);
        // "live1" is the least recently used, but the expired ones go first.
        put(&m, "new1", 1, 1_000, 20);
        put(&m, "new2", 1, 1_000, 20);
        assert_eq!(m.evictions(), 0);
        assert_eq!(get(&m, "live1", 20), Some(1));
        assert_eq!(get(&m, "live2", 20), Some(1));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn expired_entries_read_as_absent_and_can_be_purged() {
        let m = BoundedMap::new(10, 2);
        put(&m, "a", 7, 5, 0);
        put(&m, "b", 8, 50, 0);
        assert_eq!(get(&m, "a", 4), Some(7));
        assert_eq!(get(&m, "a", 5), None);
        put(&m, "c", 9, 6, 0);
        assert_eq!(m.purge_expired(10), 1);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn remove_and_reuse_keep_the_structure_consistent() {
        let m = BoundedMap::new(8, 1);
        for round in 0..50u32 {
            for k in 0..12u32 {
                put(&m, &format!("k{k}"), round, u64::MAX, 0);
                if k % 3 == 0 {
                    m.update(&format!("k{}", (k + round) % 12), 0, |_| (Write::Remove, ()));
                }
            }
            assert!(m.len() <= 8);
        }
        // Every key still reachable reads back the last value written to it.
        let held = (0..12).filter(|k| get(&m, &format!("k{k}"), 0).is_some()).count();
        assert_eq!(held, m.len());
    }

    #[test]
    fn update_many_reads_and_writes_every_key_and_handles_repeats() {
        let m = BoundedMap::new(100, 4);
        put(&m, "a", 1, u64::MAX, 0);
        put(&m, "old", 1, 5, 0);
        let seen = m.update_many(&["a", "b", "a", "old"], 10, |values| {
            let seen: Vec<Option<u32>> = values.iter().map(|v| v.copied()).collect();
            let writes = vec![
                Write::Put(2, u64::MAX),
                Write::Put(3, u64::MAX),
                Write::Put(4, u64::MAX),
                Write::Keep,
            ];
            (writes, seen)
        });
        // Expired entries read as absent; a repeated key reads the same value twice.
        assert_eq!(seen, [Some(1), None, Some(1), None]);
        assert_eq!(get(&m, "a", 10), Some(4));
        assert_eq!(get(&m, "b", 10), Some(3));
        assert_eq!(m.len(), 2);
        // A new key written twice is inserted once.
        m.update_many(&["c", "c"], 10, |_| {
            (vec![Write::Put(5, u64::MAX), Write::Put(6, u64::MAX)], ())
        });
        assert_eq!(get(&m, "c", 10), Some(6));
        assert_eq!(m.len(), 3);
        m.update_many(&["c", "b"], 10, |_| (vec![Write::Remove, Write::Keep], ()));
        assert_eq!(get(&m, "c", 10), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn update_many_keeps_the_bound_and_the_structure_when_it_evicts() {
        let m = BoundedMap::new(4, 1);
        for round in 0..40u32 {
            let keys: Vec<String> = (0..3).map(|k| format!("k{}", (round * 2 + k) % 9)).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            m.update_many(&keys, 0, |_| {
                (keys.iter().map(|_| Write::Put(round, u64::MAX)).collect(), ())
            });
            assert!(m.len() <= 4);
            for k in &keys {
                assert_eq!(get(&m, k, 0), Some(round), "round {round} key {k}");
            }
        }
        let held = (0..9).filter(|k| get(&m, &format!("k{k}"), 0).is_some()).count();
        assert_eq!(held, m.len());
    }

    #[test]
    fn tiny_capacity_still_stores_every_key_somewhere() {
        let m = BoundedMap::new(0, 16);
        assert_eq!(m.capacity(), 1);
        put(&m, "x", 1, u64::MAX, 0);
        assert_eq!(get(&m, "x", 0), Some(1));
    }
}
