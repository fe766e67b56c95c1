//! The session lifecycle: create, load (with both timeouts checked on every access), rotate,
//! revoke.
//!
//! # Security
//! - Ids are generated here and handed to the caller once, for the cookie; the store only ever
//!   sees their keyed hash.
//! - Both timeouts are checked against the injected clock on every load, whatever the store's
//!   own expiry does; an expired session is deleted when it is seen.
//! - [`SessionManager::rotate`] deletes the old session *before* creating the new one, so a
//!   failure logs the user out rather than leaving the old id alive, and a rotation racing a
//!   revoke cannot bring the session back.
//! - After a master key rotation, sessions filed under the previous key are still found (all
//!   keys are tried, current first) until they expire; keep the previous key for at least the
//!   absolute timeout.
//! - Stores keep expired entries a few minutes past their idle timeout so the manager can
//!   report why a session ended; they are never handed out as active.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::{Keyring, SharedClock};
use time::OffsetDateTime;

use crate::error::{Result, SessionError};
use crate::id::{SessionId, StoreKey};
use crate::record::{add, to_time, SessionRecord, SessionTimeouts};
use crate::store::SessionStore;

/// How long stores keep a session past its idle deadline, so that a late request is answered
/// "expired" (and audited as such) rather than "unknown".
const EXPIRED_RETENTION: Duration = Duration::from_secs(5 * 60);
/// Longest `User-Agent` kept in a record, in bytes.
const MAX_USER_AGENT: usize = 256;
/// Ids tried before giving up on collisions (a collision of 256-bit ids means a broken RNG).
const CREATE_ATTEMPTS: usize = 3;

/// A session that passed both timeout checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSession {
    /// The store key (derived from the id; not a credential).
    pub key: StoreKey,
    /// The record, with `last_seen_at` as of this request.
    pub record: SessionRecord,
    /// When the session ends if unused (never after `absolute_expires_at`).
    pub idle_expires_at: OffsetDateTime,
}

/// The current request's session, as the layer inserts it into request extensions: shared, so
/// the extractors and other layers that read it clone a pointer, not the record.
pub type CurrentSession = Arc<ActiveSession>;

/// What [`SessionManager::load`] found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// A live session.
    Active(ActiveSession),
    /// The session was unused for longer than the idle timeout (now deleted).
    ExpiredIdle(SessionRecord),
    /// The session passed its absolute lifetime (now deleted).
    ExpiredAbsolute(SessionRecord),
    /// No such session (never existed, revoked, or long gone).
    Unknown,
}

/// What [`SessionManager::load_now`] could decide without waiting.
pub(crate) enum QuickLoad {
    /// The outcome; nothing is left to do.
    Done(Result<LoadOutcome>),
    /// Found expired or unreadable: [`SessionManager::settle`] deletes it.
    Settle(Unsettled),
    /// The store answers only asynchronously: use [`SessionManager::load`].
    Wait,
}

/// A loaded session whose entry must still be deleted.
pub(crate) enum Unsettled {
    /// Past a timeout; `outcome` says which (boxed: this is the rare path).
    Expired { key: StoreKey, outcome: Box<LoadOutcome> },
    /// The store could not read the record back (corrupt, or sealed under a key no longer held).
    Unreadable { key: StoreKey },
}

fn unreadable(key: StoreKey, source: Option<&(dyn std::error::Error + Send + Sync)>) -> Unsettled {
    tracing::warn!(key = ?key, error = ?source, "unreadable session record deleted");
    Unsettled::Unreadable { key }
}

struct Inner {
    store: Arc<dyn SessionStore>,
    keyring: Keyring,
    timeouts: SessionTimeouts,
    clock: SharedClock,
}

/// Creates, loads, rotates and revokes sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.inner.store)
            .field("timeouts", &self.inner.timeouts)
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// A manager over `store`. The timeouts are [normalized](SessionTimeouts::normalized).
    pub fn new(
        store: Arc<dyn SessionStore>,
        keyring: Keyring,
        timeouts: SessionTimeouts,
        clock: SharedClock,
    ) -> Self {
        let timeouts = timeouts.normalized();
        Self { inner: Arc::new(Inner { store, keyring, timeouts, clock }) }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> SessionTimeouts {
        self.inner.timeouts
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Starts a session for `user_id`. The returned id goes into the cookie and nowhere else.
    pub async fn create(
        &self,
        user_id: impl Into<String>,
        ip: Option<String>,
        user_agent: Option<String>,
        auth_method: impl Into<String>,
    ) -> Result<(SessionId, SessionRecord)> {
        self.create_with_data(user_id, ip, user_agent, auth_method, serde_json::Map::new()).await
    }

    /// Like [`SessionManager::create`], with initial application data.
    pub async fn create_with_data(
        &self,
        user_id: impl Into<String>,
        ip: Option<String>,
        user_agent: Option<String>,
        auth_method: impl Into<String>,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(SessionId, SessionRecord)> {
        let now = self.inner.clock.now();
        let record = SessionRecord {
            handle: rampart_core::token::random_id(16),
            user_id: user_id.into(),
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: add(now, self.inner.timeouts.absolute),
            ip,
            user_agent: user_agent.map(truncate_user_agent),
            auth_method: auth_method.into(),
            data,
        };
        self.insert_new(record, now).await
    }

    async fn insert_new(
        &self,
        record: SessionRecord,
        now: OffsetDateTime,
    ) -> Result<(SessionId, SessionRecord)> {
        let remaining = (record.absolute_expires_at - now).max(time::Duration::ZERO);
        let remaining = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
        let ttl = self.inner.timeouts.idle.min(remaining) + EXPIRED_RETENTION;
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate();
            let key = StoreKey::derive(&self.inner.keyring, &id);
            match self.inner.store.create(&key, &record, ttl).await {
                Ok(()) => return Ok((id, record)),
                Err(SessionError::Collision) => {
                    tracing::error!("session id collision; is the OS random generator broken?");
                }
                Err(e) => return Err(e),
            }
        }
        Err(SessionError::Collision)
    }

    /// Looks up the session for `id`, checks both timeouts against the clock, deletes it if
    /// expired, and refreshes its last-seen time at most once per touch interval.
    ///
    /// A record the store cannot read back (corrupt, or sealed under a key no longer held) is
    /// deleted and reported as [`LoadOutcome::Unknown`].
    pub async fn load(&self, id: &SessionId) -> Result<LoadOutcome> {
        let now = self.inner.clock.now();
        let t = self.inner.timeouts;
        let ttl = t.idle + EXPIRED_RETENTION;
        for key in StoreKey::candidates(&self.inner.keyring, id) {
            let answer = self.inner.store.load_and_touch(&key, now, t.touch_interval, ttl).await;
            match self.judge(key, answer, now) {
                Some(QuickLoad::Settle(u)) => return self.settle(u).await,
                Some(QuickLoad::Done(outcome)) => return outcome,
                Some(QuickLoad::Wait) | None => {}
            }
        }
        Ok(LoadOutcome::Unknown)
    }

    /// [`SessionManager::load`] decided on the spot when the store answers without waiting
    /// ([`SessionStore::load_and_touch_now`]): the memory store always does, so a request with
    /// a live session costs no future, no allocation for one and no task switch. It has the
    /// same effects as `load` would have had up to the point it stops at.
    pub(crate) fn load_now(&self, id: &SessionId) -> QuickLoad {
        let now = self.inner.clock.now();
        let t = self.inner.timeouts;
        let ttl = t.idle + EXPIRED_RETENTION;
        for key in StoreKey::candidates(&self.inner.keyring, id) {
            // `None` before any record was returned: nothing was touched, `load` can start over.
            let Some(answer) =
                self.inner.store.load_and_touch_now(&key, now, t.touch_interval, ttl)
            else {
                return QuickLoad::Wait;
            };
            if let Some(step) = self.judge(key, answer, now) {
                return step;
            }
        }
        QuickLoad::Done(Ok(LoadOutcome::Unknown))
    }

    /// What one key's answer from the store decides, shared by [`SessionManager::load`] and
    /// [`SessionManager::load_now`]; `None` when the key holds nothing and the next candidate
    /// is tried. Never [`QuickLoad::Wait`].
    fn judge(
        &self,
        key: StoreKey,
        answer: Result<Option<SessionRecord>>,
        now: OffsetDateTime,
    ) -> Option<QuickLoad> {
        match answer {
            Ok(Some(record)) => Some(match self.assess(key, record, now) {
                Ok(active) => QuickLoad::Done(Ok(LoadOutcome::Active(active))),
                Err(expired) => QuickLoad::Settle(expired),
            }),
            Ok(None) => None,
            Err(SessionError::Corrupt(source)) => {
                Some(QuickLoad::Settle(unreadable(key, source.as_deref())))
            }
            Err(e) => Some(QuickLoad::Done(Err(e))),
        }
    }

    /// Deletes the entry of an expired or unreadable session and gives the outcome.
    pub(crate) async fn settle(&self, u: Unsettled) -> Result<LoadOutcome> {
        match u {
            Unsettled::Expired { key, outcome } => {
                // Fail closed either way: if this delete fails, the next access finds it
                // expired again.
                if let Err(e) = self.inner.store.delete(&key).await {
                    tracing::warn!(error = ?e, "could not delete an expired session");
                }
                Ok(*outcome)
            }
            Unsettled::Unreadable { key } => {
                self.inner.store.delete(&key).await?;
                Ok(LoadOutcome::Unknown)
            }
        }
    }

    /// The live session, or an expired one whose entry is still to be deleted.
    fn assess(
        &self,
        key: StoreKey,
        mut record: SessionRecord,
        now: OffsetDateTime,
    ) -> std::result::Result<ActiveSession, Unsettled> {
        let t = self.inner.timeouts;
        let idle_for = now - record.last_seen_at;
        let outcome = if now >= record.absolute_expires_at {
            LoadOutcome::ExpiredAbsolute(record)
        } else if idle_for >= to_time(t.idle) {
            LoadOutcome::ExpiredIdle(record)
        } else {
            if idle_for >= to_time(t.touch_interval) {
                // The store has just written this value (same rule as the store's).
                record.last_seen_at = now;
            }
            let idle_expires_at = add(record.last_seen_at, t.idle).min(record.absolute_expires_at);
            return Ok(ActiveSession { key, record, idle_expires_at });
        };
        Err(Unsettled::Expired { key, outcome: Box::new(outcome) })
    }

    /// Replaces the session's id (after login, privilege change or re-authentication): the old
    /// session is deleted first, then a new one is created with the same user, handle, data,
    /// creation time and absolute expiry. [`SessionError::NotFound`] if the old session was
    /// already gone (revoked meanwhile), in which case nothing is created.
    pub async fn rotate(&self, active: &ActiveSession) -> Result<(SessionId, SessionRecord)> {
        let now = self.inner.clock.now();
        if !self.inner.store.delete(&active.key).await? || now >= active.record.absolute_expires_at
        {
            return Err(SessionError::NotFound);
        }
        let mut record = active.record.clone();
        record.last_seen_at = now;
        self.insert_new(record, now).await
    }

    /// Ends one session (logout); `true` if it existed.
    pub async fn revoke(&self, key: &StoreKey) -> Result<bool> {
        self.inner.store.delete(key).await
    }

    /// The user's live sessions, most recently used first.
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        let now = self.inner.clock.now();
        let idle = to_time(self.inner.timeouts.idle);
        let mut list = self.inner.store.list_for_user(user_id).await?;
        list.retain(|(_, r)| now < r.absolute_expires_at && now - r.last_seen_at < idle);
        list.sort_by_key(|(_, r)| std::cmp::Reverse(r.last_seen_at));
        Ok(list)
    }

    /// The store key of a session created by this manager (under the current key).
    pub fn key_of(&self, id: &SessionId) -> StoreKey {
        StoreKey::derive(&self.inner.keyring, id)
    }

    /// Keeps at most `max` live sessions for the user: revokes the least recently used beyond
    /// that, never the one under `keep` (typically the session just created), and returns the
    /// revoked records. Run after a login, it bounds how many sessions one account can hold,
    /// so a user logging in over and over cannot fill a store shared by everyone.
    pub async fn trim_for_user(
        &self,
        user_id: &str,
        max: usize,
        keep: &StoreKey,
    ) -> Result<Vec<SessionRecord>> {
        let list = self.list_for_user(user_id).await?;
        if list.len() <= max {
            return Ok(Vec::new());
        }
        // Most recently used first: the kept session takes one place, the others fill the rest.
        let others = list.into_iter().filter(|(k, _)| k != keep);
        let mut revoked = Vec::new();
        for (key, record) in others.skip(max.saturating_sub(1)) {
            if self.inner.store.delete(&key).await? {
                revoked.push(record);
            }
        }
        Ok(revoked)
    }

    /// Revokes the user's session with `handle`, or with `None` all of the user's sessions;
    /// in both cases never the one under `except` (typically the caller's own). Returns how
    /// many were revoked.
    pub async fn revoke_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64> {
        self.inner.store.delete_for_user(user_id, handle, except).await
    }
}

fn truncate_user_agent(mut ua: String) -> String {
    if ua.len() > MAX_USER_AGENT {
        let mut end = MAX_USER_AGENT;
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        ua.truncate(end);
    }
    ua
}

#[cfg(test)]
pub(crate) mod tests;
