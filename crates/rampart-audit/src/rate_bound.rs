//! [`RateBound`]: at most one audit event per key per window.
//!
//! # Security
//! Some events are caused by whoever sends requests: `invalid_token`, `rate_limited`,
//! `api_key_auth_failed`. Recording each one would let a flood of bad requests flood the audit
//! log (and the disk under it). Gate them on a key such as `"invalid_token:<client ip>"`: the
//! first occurrence per window is recorded, and [`RateBound::admit`] tells how many were
//! suppressed since, so the next recorded event can say so.
//!
//! Memory is bounded: at most `capacity` keys are remembered (100 000 by default); past that,
//! the oldest are forgotten first, which at worst lets an attacker with very many source keys
//! get one extra event per forgotten key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rampart_core::SharedClock;
use time::OffsetDateTime;

/// Default number of keys remembered.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
struct Entry {
    allowed_at: OffsetDateTime,
    suppressed: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Arc<str>, Entry>,
    // Keys in the order they were last allowed; stale duplicates are skipped when popped.
    order: VecDeque<(Arc<str>, OffsetDateTime)>,
}

/// Lets an event through at most once per key per window. See the [module docs](self).
#[derive(Debug)]
pub struct RateBound {
    per: Duration,
    capacity: usize,
    clock: SharedClock,
    state: Mutex<State>,
}

impl RateBound {
    /// At most one event per key every `per`, remembering up to [`DEFAULT_CAPACITY`] keys.
    pub fn new(per: Duration, clock: SharedClock) -> Self {
        Self { per, capacity: DEFAULT_CAPACITY, clock, state: Mutex::new(State::default()) }
    }

    /// Remembers at most `capacity` keys (at least 1).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Whether an event for `key` may be recorded now. True at most once per key per window.
    pub fn allow(&self, key: &str) -> bool {
        self.admit(key).is_some()
    }

    /// Like [`RateBound::allow`], but when allowed returns how many events for `key` were
    /// suppressed since the last allowed one (0 for a key not seen within the window).
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut state, now);
        if let Some(entry) = state.entries.get_mut(key) {
            if now - entry.allowed_at < self.per {
                entry.suppressed = entry.suppressed.saturating_add(1);
                return None;
            }
        }
        let key: Arc<str> = Arc::from(key);
        let suppressed = state
            .entries
            .insert(key.clone(), Entry { allowed_at: now, suppressed: 0 })
            .map_or(0, |old| old.suppressed);
        state.order.push_back((key, now));
        while state.order.len() > self.capacity {
            if let Some((old, at)) = state.order.pop_front() {
                remove_if_current(&mut state, &old, at);
            }
        }
        Some(suppressed)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets, oldest first, keys whose window has passed and that suppressed nothing (a key
    /// with a pending count is kept so the count can be reported, until capacity evicts it).
    fn expire(&self, state: &mut State, now: OffsetDateTime) {
        while let Some((key, at)) = state.order.front().cloned() {
            match state.entries.get(&key).filter(|e| e.allowed_at == at) {
                // Superseded by a later admission of the same key.
                None => {}
                Some(e) if now - at >= self.per && e.suppressed == 0 => {
                    state.entries.remove(&key);
                }
                Some(_) => break,
            }
            state.order.pop_front();
        }
    }
}

fn remove_if_current(state: &mut State, key: &Arc<str>, at: OffsetDateTime) {
    if state.entries.get(key).is_some_and(|e| e.allowed_at == at) {
        state.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::ManualClock;

    fn bound(clock: &ManualClock) -> RateBound {
        RateBound::new(Duration::from_secs(60), Arc::new(clock.clone()))
    }

    #[test]
    fn allows_once_per_key_per_window() {
        let clock = ManualClock::at_epoch();
        let rb = bound(&clock);
        assert!(rb.allow("invalid_token:192.0.2.1"));
        assert!(!rb.allow("invalid_token:192.0.2.1"));
        assert!(rb.allow("invalid_token:192.0.2.2"));
        clock.advance(time::Duration::seconds(59));
        assert!(!rb.allow("invalid_token:192.0.2.1"));
        clock.advance(time::Duration::seconds(1));
        assert!(rb.allow("invalid_token:192.0.2.1"));
    }

    #[test]
    fn admit_reports_how_many_were_suppressed() {
        let clock = ManualClock::at_epoch();
        let rb = bound(&clock);
        assert_eq!(rb.admit("k"), Some(0));
        assert_eq!(rb.admit("k"), None);
        assert_eq!(rb.admit("k"), None);
        clock.advance(time::Duration::seconds(30));
        // Other keys arriving after the window must not lose k's count.
        assert_eq!(rb.admit("other"), Some(0));
        clock.advance(time::Duration::seconds(31));
        assert_eq!(rb.admit("other2"), Some(0));
        assert_eq!(rb.admit("k"), Some(2));
        assert_eq!(rb.admit("k"), None);
    }

    #[test]
    fn memory_stays_within_capacity_by_forgetting_the_oldest() {
        let clock = ManualClock::at_epoch();
        let rb = bound(&clock).with_capacity(100);
        for i in 0..1000 {
            assert!(rb.allow(&format!("k{i}")));
        }
        assert_eq!(rb.len(), 100);
        // The newest keys are still limited; the oldest were forgotten.
        assert!(!rb.allow("k999"));
        assert!(rb.allow("k0"));
    }

    #[test]
    fn quiet_keys_are_forgotten_once_their_window_passes() {
        let clock = ManualClock::at_epoch();
        let rb = bound(&clock);
        for i in 0..10 {
            rb.allow(&format!("k{i}"));
        }
        clock.advance(time::Duration::seconds(61));
        rb.allow("fresh");
        assert_eq!(rb.len(), 1);
        assert!(!rb.is_empty());
    }
}
