//! The storage trait every session backend implements.
//!
//! # Security
//! - Stores are addressed only by [`StoreKey`] (a keyed hash of the id), never by the id.
//! - [`SessionStore::create`] is an atomic insert-if-absent.
//! - [`SessionStore::load_and_touch`] never recreates a session that was deleted: a revoke
//!   racing a touch leaves the session deleted.
//! - Every backend must pass the suite in `conformance` (cargo feature `conformance`).

use std::fmt::Debug;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::Result;
use crate::id::StoreKey;
use crate::record::SessionRecord;

/// Where sessions live. Chosen at startup and held as `Arc<dyn SessionStore>`.
///
/// `ttl` arguments tell the store how long it must keep the entry; the store may forget it
/// afterwards. Timeouts are enforced by the caller against its clock, so a store may keep an
/// entry past its timeouts but must never hand out one it was told to forget.
#[async_trait::async_trait]
pub trait SessionStore: Debug + Send + Sync + 'static {
    /// Inserts `record` under `key` if no session is there; [`SessionError::Collision`]
    /// otherwise. Atomic.
    ///
    /// [`SessionError::Collision`]: crate::SessionError::Collision
    async fn create(&self, key: &StoreKey, record: &SessionRecord, ttl: Duration) -> Result<()>;

    /// Returns the record under `key` with `last_seen_at` as stored *before*
    /// this call, and, if that is at least `touch_if_older_than` before `now`, sets the stored
    /// `last_seen_at` to `now` and the entry's lifetime to `ttl`. A missing entry stays missing.
    /// Networked stores answer in one round trip when no touch is due and at most two when one
    /// is, which is why touches are throttled by `touch_if_older_than`.
    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>>;

    /// [`SessionStore::load_and_touch`] answered on the spot, for stores that never wait (in
    /// process memory): `Some` with exactly what `load_and_touch` would return, having done what
    /// it would do. Stores that may wait (network, disk) keep the default, `None`, having done
    /// nothing, and callers then use `load_and_touch`.
    fn load_and_touch_now(
        &self,
        _key: &StoreKey,
        _now: OffsetDateTime,
        _touch_if_older_than: Duration,
        _ttl: Duration,
    ) -> Option<Result<Option<SessionRecord>>> {
        None
    }

    /// Deletes the session; `true` if it existed.
    async fn delete(&self, key: &StoreKey) -> Result<bool>;

    /// Every stored session of `user_id`.
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>>;

    /// Deletes sessions of `user_id`: with `handle`, only the session with that handle (if it
    /// belongs to this user); without, all of them. A session filed under `except` is never
    /// deleted. Returns how many were deleted.
    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64>;

    /// How many sessions the store holds (entries past their lifetime may be excluded).
    async fn count(&self) -> Result<u64>;
}
