//! A bounded in-process session store.
//!
//! # Security and deployment
//! - Bounded: it holds at most `capacity` sessions. When full, inserting evicts the least
//!   recently used session in O(1) (an index-linked list over a slab plus a hash index). Evicting
//!   a session that has not expired signs that user out; it is counted in
//!   [`MemorySessionStore::evicted_live`] and logged at WARN (the first time and then every
//!   1000th time, so a flood cannot flood the log too). Size the capacity for the peak number of
//!   concurrent sessions.
//! - Expiry is checked on every access; [`MemorySessionStore::sweep`] (or the background task
//!   from [`MemorySessionStore::spawn_sweeper`]) frees expired entries.
//! - Sessions live in this process only: they are lost on restart and not shared between
//!   instances. Use the Redis store for more than one instance. Nothing is encrypted, since
//!   nothing leaves the process.
//!
//! # Memory
//! About 280 bytes per session for a typical record (22-character handle, user id, IPv4
//! address, 68-byte `User-Agent`, `data` with an email address and a role): 268 MiB of
//! resident memory for 1,000,000 sessions in the `bench_memory_store` example, against
//! 1,441 MiB for the same records in a plain `HashMap<String, SessionRecord>`. Each session is
//! an 88-byte slot (the key's 32 bytes, the times as integers, `u32` links for the
//! least-recently-used list and for its user's list) and one allocation holding the rest of
//! the record in a compact binary form (see `codec`), decoded on each load; the key index and
//! the per-user index are open-addressing tables of 4-byte slot numbers that compare the real
//! key or user id, so hash collisions cost a probe, never a wrong answer. The key index hashes
//! a key by its first 8 bytes: keys are keyed hashes of the ids, so nobody can choose keys
//! that collide. Times are kept as instants and come back in UTC.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rampart_core::SharedClock;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, SessionError};
use crate::id::StoreKey;
use crate::record::{add, SessionRecord};
use crate::store::SessionStore;

mod codec;
mod table;

use codec::{from_stamp, stamp, Stamp};
use table::SlotTable;

/// The default capacity of [`MemorySessionStore`].
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The largest capacity: slots are numbered with `u32`, and one number means "none".
const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;

const NIL: u32 = u32::MAX;

/// One session: 88 bytes plus its encoded record.
#[derive(Debug)]
struct Node {
    /// The store key's 32 bytes.
    key: [u8; 32],
    /// The record but `last_seen_at`, encoded by [`codec::encode`].
    blob: Box<[u8]>,
    last_seen_secs: i64,
    expires_secs: i64,
    last_seen_nanos: u32,
    expires_nanos: u32,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
    /// The previous (newer) session of the same user.
    user_prev: u32,
    /// The next (older) session of the same user.
    user_next: u32,
}

impl Node {
    fn last_seen(&self) -> Stamp {
        (self.last_seen_secs, self.last_seen_nanos)
    }

    fn expires(&self) -> Stamp {
        (self.expires_secs, self.expires_nanos)
    }

    fn set_expires(&mut self, (secs, nanos): Stamp) {
        self.expires_secs = secs;
        self.expires_nanos = nanos;
    }

    fn user_id(&self) -> &str {
        codec::user_id(&self.blob).unwrap_or_default()
    }

    fn record(&self) -> Result<SessionRecord> {
        from_stamp(self.last_seen())
            .and_then(|last_seen| codec::decode(&self.blob, last_seen))
            .ok_or(SessionError::Corrupt(None))
    }
}

/// The index hash of a key: its first 8 bytes (the key is a keyed hash, so these are
/// uniformly distributed; the table compares the whole key).
fn key_hash(key: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&key[..8]);
    u64::from_le_bytes(prefix)
}

fn node_at(slots: &[Option<Node>], i: u32) -> Option<&Node> {
    slots.get(i as usize).and_then(Option::as_ref)
}

#[derive(Debug)]
struct State {
    slots: Vec<Option<Node>>,
    free: Vec<u32>,
    /// Every slot in use, found by its key.
    index: SlotTable,
    /// The newest slot of each user, found by the user id; the user's other sessions follow
    /// through `user_next`.
    by_user: SlotTable,
    /// Seeds the user id hash.
    user_hasher: RandomState,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to evict.
    tail: u32,
    evicted_live: u64,
}

impl State {
    fn node(&self, i: u32) -> Option<&Node> {
        node_at(&self.slots, i)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    fn find(&self, key: &[u8; 32]) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(key_hash(key), |i| node_at(slots, i).is_some_and(|n| n.key == *key))
    }

    fn user_hash(&self, user_id: &str) -> u64 {
        self.user_hasher.hash_one(user_id)
    }

    /// The newest slot of `user_id`.
    fn user_head(&self, user_id: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_user.find(self.user_hash(user_id), |i| {
            node_at(slots, i).is_some_and(|n| n.user_id() == user_id)
        })
    }

    /// Every slot of `user_id`, newest first.
    fn user_slots(&self, user_id: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = self.user_head(user_id).unwrap_or(NIL);
        while let Some(n) = self.node(i) {
            out.push(i);
            i = n.user_next;
        }
        out
    }

    fn unlink(&mut self, i: u32) {
        let Some((prev, next)) = self.node(i).map(|n| (n.prev, n.next)) else { return };
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old_head = self.head;
        if let Some(n) = self.node_mut(i) {
            n.prev = NIL;
            n.next = old_head;
        }
        match self.node_mut(old_head) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn touch_lru(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Takes `i` out of its user's list, updating the user's entry in `by_user` when `i` was
    /// the newest.
    fn unlink_user(&mut self, i: u32) {
        let Some(n) = self.node(i) else { return };
        let (up, un) = (n.user_prev, n.user_next);
        if up == NIL {
            let hash = self.user_hash(n.user_id());
            let (slots, hasher) = (&self.slots, &self.user_hasher);
            if un == NIL {
                self.by_user.remove(
                    hash,
                    |s| s == i,
                    |s| node_at(slots, s).map_or(0, |n| hasher.hash_one(n.user_id())),
                );
            } else {
                self.by_user.replace(hash, |s| s == i, un);
            }
        } else if let Some(p) = self.node_mut(up) {
            p.user_next = un;
        }
        if let Some(next) = self.node_mut(un) {
            next.user_prev = up;
        }
    }

    fn remove(&mut self, i: u32) -> Option<Node> {
        let key = self.node(i)?.key;
        self.unlink(i);
        self.unlink_user(i);
        let slots = &self.slots;
        self.index.remove(
            key_hash(&key),
            |s| s == i,
            |s| node_at(slots, s).map_or(0, |n| key_hash(&n.key)),
        );
        let node = self.slots.get_mut(i as usize).and_then(Option::take)?;
        self.free.push(i);
        Some(node)
    }

    /// Files `node` (whose key is not present) as the most recently used and its user's
    /// newest session.
    fn insert(&mut self, mut node: Node) {
        let key = node.key;
        let user_hash = self.user_hash(node.user_id());
        let user_head = self.user_head(node.user_id());
        node.user_prev = NIL;
        node.user_next = user_head.unwrap_or(NIL);
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slots.get_mut(i as usize) {
                    *slot = Some(node);
                }
                i
            }
            None => {
                // The capacity keeps the slot count below `NIL`.
                let i = u32::try_from(self.slots.len()).unwrap_or(NIL);
                self.slots.push(Some(node));
                i
            }
        };
        let (slots, hasher) = (&self.slots, &self.user_hasher);
        self.index.insert(key_hash(&key), i, |s| node_at(slots, s).map_or(0, |n| key_hash(&n.key)));
        match user_head {
            Some(h) => {
                self.by_user.replace(user_hash, |s| s == h, i);
                if let Some(old) = self.node_mut(h) {
                    old.user_prev = i;
                }
            }
            None => self.by_user.insert(user_hash, i, |s| {
                node_at(slots, s).map_or(0, |n| hasher.hash_one(n.user_id()))
            }),
        }
        self.push_front(i);
    }

    fn live(&self, i: u32, now: Stamp) -> bool {
        self.node(i).is_some_and(|n| n.expires() > now)
    }
}

/// A bounded, least-recently-used session store in process memory. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct MemorySessionStore {
    state: Arc<Mutex<State>>,
    capacity: usize,
    clock: SharedClock,
}

impl MemorySessionStore {
    /// [`SessionStore::load_and_touch`]: one short critical section, no waiting.
    fn load_and_touch_sync(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>> {
        let key = key.to_bytes();
        let now_stamp = stamp(now);
        // Decoding allocates every field: it happens after letting go of the lock, on a copy
        // of the bytes (on the stack when they fit).
        let mut small = [0u8; 512];
        let mut large = Vec::new();
        let (len, last_seen) = {
            let mut st = self.state.lock();
            let Some(i) = st.find(&key) else { return Ok(None) };
            if !st.live(i, now_stamp) {
                st.remove(i);
                return Ok(None);
            }
            st.touch_lru(i);
            let Some(node) = st.node_mut(i) else { return Ok(None) };
            let last_seen = from_stamp(node.last_seen()).ok_or(SessionError::Corrupt(None))?;
            if now - last_seen >= crate::record::to_time(touch_if_older_than) {
                (node.last_seen_secs, node.last_seen_nanos) = now_stamp;
                node.set_expires(stamp(add(now, ttl)));
            }
            let len = node.blob.len();
            match small.get_mut(..len) {
                Some(dst) => dst.copy_from_slice(&node.blob),
                None => large.extend_from_slice(&node.blob),
            }
            (len, last_seen)
        };
        let blob = small.get(..len).filter(|_| large.is_empty()).unwrap_or(&large);
        codec::decode(blob, last_seen).map(Some).ok_or(SessionError::Corrupt(None))
    }

    /// A store holding at most `capacity` sessions (at least 1, at most `u32::MAX - 1`;
    /// [`DEFAULT_CAPACITY`] is a good start), judging expiry by `clock`.
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        let state = State {
            slots: Vec::new(),
            free: Vec::new(),
            index: SlotTable::default(),
            by_user: SlotTable::default(),
            user_hasher: RandomState::new(),
            head: NIL,
            tail: NIL,
            evicted_live: 0,
        };
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        Self { state: Arc::new(Mutex::new(state)), capacity, clock }
    }

    /// The most sessions this store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held right now, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.state.lock().index.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many sessions that had not expired were evicted to make room.
    pub fn evicted_live(&self) -> u64 {
        self.state.lock().evicted_live
    }

    /// Removes every entry expired at `now`; returns how many.
    pub fn sweep(&self, now: OffsetDateTime) -> usize {
        let now = stamp(now);
        let mut st = self.state.lock();
        let expired: Vec<u32> = (0..st.slots.len())
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| st.node(i).is_some_and(|n| n.expires() <= now))
            .collect();
        for &i in &expired {
            st.remove(i);
        }
        expired.len()
    }

    /// Runs [`MemorySessionStore::sweep`] every `interval` (at least one second) until
    /// `shutdown` is cancelled.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let interval = interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        let removed = store.sweep(store.clock.now());
                        if removed > 0 {
                            tracing::debug!(removed, "swept expired sessions");
                        }
                    }
                }
            }
        })
    }

    fn make_room(&self, st: &mut State, now: Stamp) {
        while st.index.len() >= self.capacity {
            let victim = st.tail;
            let was_live = st.live(victim, now);
            if st.remove(victim).is_none() {
                break;
            }
            if was_live {
                st.evicted_live += 1;
                if st.evicted_live == 1 || st.evicted_live % 1000 == 0 {
                    tracing::warn!(
                        capacity = self.capacity,
                        evicted_live = st.evicted_live,
                        "memory session store full: evicted the least recently used live session; \
                         raise the capacity or use a shared store"
                    );
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for MemorySessionStore {
    async fn create(&self, key: &StoreKey, record: &SessionRecord, ttl: Duration) -> Result<()> {
        let key = key.to_bytes();
        let blob = codec::encode(record);
        let (last_seen_secs, last_seen_nanos) = stamp(record.last_seen_at);
        let now = self.clock.now();
        let (expires_secs, expires_nanos) = stamp(add(now, ttl));
        let now = stamp(now);
        let mut st = self.state.lock();
        if let Some(i) = st.find(&key) {
            if st.live(i, now) {
                return Err(SessionError::Collision);
            }
            st.remove(i);
        }
        self.make_room(&mut st, now);
        st.insert(Node {
            key,
            blob,
            last_seen_secs,
            expires_secs,
            last_seen_nanos,
            expires_nanos,
            prev: NIL,
            next: NIL,
            user_prev: NIL,
            user_next: NIL,
        });
        Ok(())
    }

    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>> {
        self.load_and_touch_sync(key, now, touch_if_older_than, ttl)
    }

    fn load_and_touch_now(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Option<Result<Option<SessionRecord>>> {
        Some(self.load_and_touch_sync(key, now, touch_if_older_than, ttl))
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool> {
        let key = key.to_bytes();
        let now = stamp(self.clock.now());
        let mut st = self.state.lock();
        let Some(i) = st.find(&key) else { return Ok(false) };
        let live = st.live(i, now);
        st.remove(i);
        Ok(live)
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        let now = stamp(self.clock.now());
        let mut st = self.state.lock();
        let slots = st.user_slots(user_id);
        let mut out = Vec::with_capacity(slots.len());
        for i in slots {
            if st.live(i, now) {
                if let Some(n) = st.node(i).filter(|n| n.user_id() == user_id) {
                    out.push((StoreKey::from_bytes(&n.key), n.record()?));
                }
            } else {
                st.remove(i);
            }
        }
        Ok(out)
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64> {
        let except = except.map(|k| k.to_bytes());
        let now = stamp(self.clock.now());
        let mut st = self.state.lock();
        let slots = st.user_slots(user_id);
        let mut deleted = 0;
        for i in slots {
            let Some(n) = st.node(i) else { continue };
            let handle_matches = match handle {
                None => true,
                Some(h) => n.record()?.handle == h,
            };
            let matches = n.user_id() == user_id && handle_matches && except != Some(n.key);
            if matches {
                let live = st.live(i, now);
                st.remove(i);
                deleted += u64::from(live);
            }
        }
        Ok(deleted)
    }

    async fn count(&self) -> Result<u64> {
        self.sweep(self.clock.now());
        Ok(self.len() as u64)
    }
}

#[cfg(test)]
mod tests;
