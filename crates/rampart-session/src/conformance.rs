//! The behaviour every [`SessionStore`] backend must show, as a test suite (cargo feature
//! `conformance`).
//!
//! Each function panics (through `assert!`) when the store misbehaves. Call [`run_all`] from a
//! backend's tests with a fresh store whose clock (if it has one) is the given [`ManualClock`].
//! The suite uses random user ids and only relative counts, so it can share a store with other
//! tests; the store's own time-to-live handling is exercised with lifetimes of an hour, so real
//! time never matters.
//!
//! # Security
//! The suite checks the properties the rest of Rampart relies on: atomic insert-if-absent, a
//! touch never resurrecting a deleted session, and per-user revocation that never reaches
//! another user's session.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rampart_core::{Clock, ManualClock};

use crate::error::SessionError;
use crate::id::StoreKey;
use crate::record::SessionRecord;
use crate::store::SessionStore;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// A random store key, as a test fixture.
pub fn random_key() -> StoreKey {
    StoreKey::parse(&hex::encode(rampart_core::token::random_bytes())).expect("64 hex digits")
}

/// A record for `user_id` created at the clock's time, as a test fixture.
pub fn record_for(user_id: &str, clock: &ManualClock) -> SessionRecord {
    let now = clock.now();
    let mut data = serde_json::Map::new();
    data.insert("cart".into(), serde_json::json!({"items": [1, 2, 3]}));
    SessionRecord {
        handle: rampart_core::token::random_id(16),
        user_id: user_id.to_owned(),
        created_at: now,
        last_seen_at: now,
        absolute_expires_at: now + time::Duration::hours(12),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("conformance/1.0".into()),
        auth_method: "password".into(),
        data,
    }
}

fn random_user() -> String {
    format!("conformance-{}@example.test", rampart_core::token::random_id(8))
}

/// Runs every check in this module.
pub async fn run_all(store: Arc<dyn SessionStore>, clock: ManualClock) {
    let store = store.as_ref();
    create_is_insert_if_absent(store, &clock).await;
    load_of_unknown_key_is_none(store, &clock).await;
    records_round_trip_unchanged(store, &clock).await;
    touch_updates_last_seen_only_past_the_interval(store, &clock).await;
    touch_after_delete_does_not_resurrect(store, &clock).await;
    delete_reports_whether_the_session_existed(store, &clock).await;
    list_for_user_returns_only_that_users_sessions(store, &clock).await;
    revoke_one_by_handle_spares_the_others(store, &clock).await;
    foreign_handle_is_not_revoked(store, &clock).await;
    revoke_all_but_one_keeps_the_exception(store, &clock).await;
    count_follows_creates_and_deletes(store, &clock).await;
}

/// A second `create` under the same key fails with `Collision` and leaves the first record.
pub async fn create_is_insert_if_absent(store: &dyn SessionStore, clock: &ManualClock) {
    let key = random_key();
    let first = record_for(&random_user(), clock);
    store.create(&key, &first, HOUR).await.expect("first create");
    let second = record_for(&random_user(), clock);
    let err = store.create(&key, &second, HOUR).await.expect_err("second create must fail");
    assert!(matches!(err, SessionError::Collision), "expected Collision, got {err:?}");
    let got = store.load_and_touch(&key, clock.now(), MINUTE, HOUR).await.expect("load");
    assert_eq!(got.expect("still there").user_id, first.user_id);
    store.delete(&key).await.expect("cleanup");
}

/// Loading a key that was never created returns `None`.
pub async fn load_of_unknown_key_is_none(store: &dyn SessionStore, clock: &ManualClock) {
    let got = store.load_and_touch(&random_key(), clock.now(), MINUTE, HOUR).await.expect("load");
    assert!(got.is_none());
}

/// Every field survives the store unchanged.
pub async fn records_round_trip_unchanged(store: &dyn SessionStore, clock: &ManualClock) {
    let key = random_key();
    let record = record_for(&random_user(), clock);
    store.create(&key, &record, HOUR).await.expect("create");
    let got = store.load_and_touch(&key, clock.now(), MINUTE, HOUR).await.expect("load");
    assert_eq!(got.as_ref(), Some(&record));
    store.delete(&key).await.expect("cleanup");
}

/// `last_seen_at` is written only once it is at least the interval old; the returned record
/// shows the value stored before the call.
pub async fn touch_updates_last_seen_only_past_the_interval(
    store: &dyn SessionStore,
    clock: &ManualClock,
) {
    let key = random_key();
    let record = record_for(&random_user(), clock);
    let t0 = record.last_seen_at;
    store.create(&key, &record, HOUR).await.expect("create");

    clock.advance(time::Duration::seconds(30));
    let got = store.load_and_touch(&key, clock.now(), MINUTE, HOUR).await.expect("load").unwrap();
    assert_eq!(got.last_seen_at, t0, "first load shows the stored value");
    let got = store.load_and_touch(&key, clock.now(), MINUTE, HOUR).await.expect("load").unwrap();
    assert_eq!(got.last_seen_at, t0, "30s < 60s interval: no touch");

    clock.advance(time::Duration::seconds(31));
    let t1 = clock.now();
    let got = store.load_and_touch(&key, t1, MINUTE, HOUR).await.expect("load").unwrap();
    assert_eq!(got.last_seen_at, t0, "returned record is the one before the touch");
    let got = store.load_and_touch(&key, t1, MINUTE, HOUR).await.expect("load").unwrap();
    assert_eq!(got.last_seen_at, t1, "61s >= 60s interval: touched");
    assert_eq!(got.created_at, record.created_at);
    store.delete(&key).await.expect("cleanup");
}

/// A touch of a deleted session returns `None` and does not bring it back.
pub async fn touch_after_delete_does_not_resurrect(store: &dyn SessionStore, clock: &ManualClock) {
    let key = random_key();
    let user = random_user();
    store.create(&key, &record_for(&user, clock), HOUR).await.expect("create");
    assert!(store.delete(&key).await.expect("delete"));
    clock.advance(time::Duration::seconds(120));
    for _ in 0..2 {
        let got =
            store.load_and_touch(&key, clock.now(), Duration::ZERO, HOUR).await.expect("load");
        assert!(got.is_none(), "a deleted session must stay deleted");
    }
    assert!(store.list_for_user(&user).await.expect("list").is_empty());
    assert!(!store.delete(&key).await.expect("delete again"));
}

/// `delete` returns `true` once, then `false`.
pub async fn delete_reports_whether_the_session_existed(
    store: &dyn SessionStore,
    clock: &ManualClock,
) {
    let key = random_key();
    assert!(!store.delete(&key).await.expect("delete missing"));
    store.create(&key, &record_for(&random_user(), clock), HOUR).await.expect("create");
    assert!(store.delete(&key).await.expect("delete"));
    assert!(!store.delete(&key).await.expect("delete again"));
}

async fn sessions_for(
    store: &dyn SessionStore,
    clock: &ManualClock,
    user: &str,
    n: usize,
) -> Vec<(StoreKey, SessionRecord)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let key = random_key();
        let record = record_for(user, clock);
        store.create(&key, &record, HOUR).await.expect("create");
        out.push((key, record));
    }
    out
}

fn handles(list: &[(StoreKey, SessionRecord)]) -> Vec<String> {
    let mut h: Vec<String> = list.iter().map(|(_, r)| r.handle.clone()).collect();
    h.sort();
    h
}

/// `list_for_user` returns exactly the user's sessions, with their keys.
pub async fn list_for_user_returns_only_that_users_sessions(
    store: &dyn SessionStore,
    clock: &ManualClock,
) {
    let (alice, bob) = (random_user(), random_user());
    let a = sessions_for(store, clock, &alice, 3).await;
    let b = sessions_for(store, clock, &bob, 1).await;
    let listed = store.list_for_user(&alice).await.expect("list");
    assert_eq!(handles(&listed), handles(&a));
    for (key, record) in &listed {
        let (k, r) = a.iter().find(|(_, r)| r.handle == record.handle).expect("known handle");
        assert_eq!(key, k);
        assert_eq!(record, r);
    }
    assert_eq!(handles(&store.list_for_user(&bob).await.expect("list")), handles(&b));
    assert!(store.list_for_user(&random_user()).await.expect("list").is_empty());
    store.delete_for_user(&alice, None, None).await.expect("cleanup");
    store.delete_for_user(&bob, None, None).await.expect("cleanup");
}

/// Revoking by handle deletes that session only.
pub async fn revoke_one_by_handle_spares_the_others(store: &dyn SessionStore, clock: &ManualClock) {
    let alice = random_user();
    let a = sessions_for(store, clock, &alice, 3).await;
    let n = store.delete_for_user(&alice, Some(&a[1].1.handle), None).await.expect("revoke");
    assert_eq!(n, 1);
    let left = store.list_for_user(&alice).await.expect("list");
    assert_eq!(handles(&left), handles(&[a[0].clone(), a[2].clone()]));
    let gone = store.load_and_touch(&a[1].0, clock.now(), MINUTE, HOUR).await.expect("load");
    assert!(gone.is_none());
    let n = store.delete_for_user(&alice, Some(&a[1].1.handle), None).await.expect("again");
    assert_eq!(n, 0);
    store.delete_for_user(&alice, None, None).await.expect("cleanup");
}

/// A handle belonging to another user is not revoked.
pub async fn foreign_handle_is_not_revoked(store: &dyn SessionStore, clock: &ManualClock) {
    let (alice, mallory) = (random_user(), random_user());
    let a = sessions_for(store, clock, &alice, 1).await;
    sessions_for(store, clock, &mallory, 1).await;
    let n = store.delete_for_user(&mallory, Some(&a[0].1.handle), None).await.expect("revoke");
    assert_eq!(n, 0);
    let still = store.load_and_touch(&a[0].0, clock.now(), MINUTE, HOUR).await.expect("load");
    assert!(still.is_some(), "another user's session must survive");
    store.delete_for_user(&alice, None, None).await.expect("cleanup");
    store.delete_for_user(&mallory, None, None).await.expect("cleanup");
}

/// Revoking all sessions but one keeps that one and deletes the rest.
pub async fn revoke_all_but_one_keeps_the_exception(store: &dyn SessionStore, clock: &ManualClock) {
    let (alice, bob) = (random_user(), random_user());
    let a = sessions_for(store, clock, &alice, 4).await;
    let b = sessions_for(store, clock, &bob, 2).await;
    let keep = &a[2].0;
    let n = store.delete_for_user(&alice, None, Some(keep)).await.expect("revoke");
    assert_eq!(n, 3);
    let left = store.list_for_user(&alice).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].0, keep);
    let n = store.delete_for_user(&alice, Some(&a[2].1.handle), Some(keep)).await.expect("again");
    assert_eq!(n, 0, "the exception is kept even when named by handle");
    assert_eq!(store.list_for_user(&bob).await.expect("list").len(), b.len());
    assert_eq!(store.delete_for_user(&alice, None, None).await.expect("all"), 1);
    assert!(store.list_for_user(&alice).await.expect("list").is_empty());
    store.delete_for_user(&bob, None, None).await.expect("cleanup");
}

/// `count` follows creates and deletes.
pub async fn count_follows_creates_and_deletes(store: &dyn SessionStore, clock: &ManualClock) {
    let before = store.count().await.expect("count");
    let user = random_user();
    let s = sessions_for(store, clock, &user, 2).await;
    assert_eq!(store.count().await.expect("count"), before + 2);
    store.delete(&s[0].0).await.expect("delete");
    assert_eq!(store.count().await.expect("count"), before + 1);
    store.delete_for_user(&user, None, None).await.expect("cleanup");
    assert_eq!(store.count().await.expect("count"), before);
}
