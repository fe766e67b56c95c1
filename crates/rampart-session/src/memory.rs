//! A bounded in-process session store.
//!
//! # Security and deployment
//! - Bounded: it holds at most `capacity` sessions. When full, inserting evicts the least
//!   recently used session in O(1) (an index-linked list over a slab plus a hash map). Evicting
//!   a session that has not expired signs that user out; it is counted in
//!   [`MemorySessionStore::evicted_live`] and logged at WARN (the first time and then every
//!   1000th time, so a flood cannot flood the log too). Size the capacity for the peak number of
//!   concurrent sessions.
//! - Expiry is checked on every access; [`MemorySessionStore::sweep`] (or the background task
//!   from [`MemorySessionStore::spawn_sweeper`]) frees expired entries.
//! - Sessions live in this process only: they are lost on restart and not shared between
//!   instances. Use the Redis store for more than one instance. Nothing is encrypted, since
//!   nothing leaves the process.

use std::collections::{HashMap, HashSet};
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

/// The default capacity of [`MemorySessionStore`].
pub const DEFAULT_CAPACITY: usize = 100_000;

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node {
    key: StoreKey,
    record: SessionRecord,
    expires_at: OffsetDateTime,
    /// Towards the most recently used end.
    prev: usize,
    /// Towards the least recently used end.
    next: usize,
}

#[derive(Debug)]
struct State {
    slots: Vec<Option<Node>>,
    free: Vec<usize>,
    index: HashMap<StoreKey, usize>,
    by_user: HashMap<String, HashSet<usize>>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to evict.
    tail: usize,
    evicted_live: u64,
}

impl State {
    fn node(&self, i: usize) -> Option<&Node> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    fn unlink(&mut self, i: usize) {
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

    fn push_front(&mut self, i: usize) {
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

    fn touch_lru(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn remove(&mut self, i: usize) -> Option<Node> {
        self.node(i)?;
        self.unlink(i);
        let node = self.slots.get_mut(i).and_then(Option::take)?;
        self.free.push(i);
        self.index.remove(&node.key);
        if let Some(set) = self.by_user.get_mut(&node.record.user_id) {
            set.remove(&i);
            if set.is_empty() {
                self.by_user.remove(&node.record.user_id);
            }
        }
        Some(node)
    }

    fn insert(&mut self, node: Node) {
        let user = node.record.user_id.clone();
        let key = node.key.clone();
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = Some(node);
                }
                i
            }
            None => {
                self.slots.push(Some(node));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, i);
        self.by_user.entry(user).or_default().insert(i);
        self.push_front(i);
    }

    fn live(&self, i: usize, now: OffsetDateTime) -> bool {
        self.node(i).is_some_and(|n| n.expires_at > now)
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
    /// A store holding at most `capacity` sessions (at least 1; [`DEFAULT_CAPACITY`] is a
    /// good start), judging expiry by `clock`.
    pub fn new(capacity: usize, clock: SharedClock) -> Self {
        let state = State {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            by_user: HashMap::new(),
            head: NIL,
            tail: NIL,
            evicted_live: 0,
        };
        Self { state: Arc::new(Mutex::new(state)), capacity: capacity.max(1), clock }
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
        let mut st = self.state.lock();
        let expired: Vec<usize> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().filter(|n| n.expires_at <= now).map(|_| i))
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

    fn make_room(&self, st: &mut State, now: OffsetDateTime) {
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
        let now = self.clock.now();
        let mut st = self.state.lock();
        if let Some(&i) = st.index.get(key) {
            if st.live(i, now) {
                return Err(SessionError::Collision);
            }
            st.remove(i);
        }
        self.make_room(&mut st, now);
        st.insert(Node {
            key: key.clone(),
            record: record.clone(),
            expires_at: add(now, ttl),
            prev: NIL,
            next: NIL,
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
        let mut st = self.state.lock();
        let Some(&i) = st.index.get(key) else { return Ok(None) };
        if !st.live(i, now) {
            st.remove(i);
            return Ok(None);
        }
        st.touch_lru(i);
        let Some(node) = st.node_mut(i) else { return Ok(None) };
        let before = node.record.clone();
        if now - node.record.last_seen_at >= crate::record::to_time(touch_if_older_than) {
            node.record.last_seen_at = now;
            node.expires_at = add(now, ttl);
        }
        Ok(Some(before))
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool> {
        let now = self.clock.now();
        let mut st = self.state.lock();
        let Some(&i) = st.index.get(key) else { return Ok(false) };
        let live = st.live(i, now);
        st.remove(i);
        Ok(live)
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        let now = self.clock.now();
        let mut st = self.state.lock();
        let slots: Vec<usize> =
            st.by_user.get(user_id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let mut out = Vec::with_capacity(slots.len());
        for i in slots {
            if st.live(i, now) {
                if let Some(n) = st.node(i) {
                    out.push((n.key.clone(), n.record.clone()));
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
        let now = self.clock.now();
        let mut st = self.state.lock();
        let slots: Vec<usize> =
            st.by_user.get(user_id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let mut deleted = 0;
        for i in slots {
            let Some(n) = st.node(i) else { continue };
            let matches = n.record.user_id == user_id
                && handle.is_none_or(|h| n.record.handle == h)
                && except != Some(&n.key);
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
