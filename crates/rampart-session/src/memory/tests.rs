use std::sync::Arc;

use rampart_core::{Clock, ManualClock};

use super::*;
use crate::conformance::{random_key, record_for};

const HOUR: Duration = Duration::from_secs(3600);

fn store(capacity: usize) -> (MemorySessionStore, ManualClock) {
    let clock = ManualClock::at_epoch();
    (MemorySessionStore::new(capacity, Arc::new(clock.clone())), clock)
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let (s, clock) = store(DEFAULT_CAPACITY);
    crate::conformance::run_all(Arc::new(s.clone()), clock).await;
    assert!(s.is_empty(), "the suite cleans up after itself");
}

#[tokio::test]
async fn never_grows_past_capacity_under_ten_times_as_many_inserts() {
    let (s, clock) = store(100);
    let mut keys = Vec::new();
    for i in 0..1000 {
        let key = random_key();
        s.create(&key, &record_for(&format!("user-{}", i % 37), &clock), HOUR).await.unwrap();
        keys.push(key);
        assert!(s.len() <= 100);
    }
    assert_eq!(s.len(), 100);
    assert_eq!(s.evicted_live(), 900);
    assert_eq!(s.count().await.unwrap(), 100);
    // The survivors are exactly the 100 most recent.
    for (i, key) in keys.iter().enumerate() {
        let found = s.load_and_touch(key, clock.now(), HOUR, HOUR).await.unwrap().is_some();
        assert_eq!(found, i >= 900, "key {i}");
    }
    // The per-user index holds only surviving sessions.
    let st = s.state.lock();
    let users: std::collections::BTreeSet<String> =
        st.slots.iter().flatten().map(|n| n.user_id().to_owned()).collect();
    let indexed: usize = users.iter().map(|u| st.user_slots(u).len()).sum();
    assert_eq!(indexed, 100);
    assert_eq!(st.by_user.len(), users.len());
    assert!(st.slots.len() <= 100, "slots are reused, never grown past capacity");
}

#[tokio::test]
async fn evicts_the_least_recently_used_session() {
    let (s, clock) = store(3);
    let (a, b, c, d) = (random_key(), random_key(), random_key(), random_key());
    for k in [&a, &b, &c] {
        s.create(k, &record_for("u", &clock), HOUR).await.unwrap();
    }
    // Using `a` makes `b` the least recently used.
    assert!(s.load_and_touch(&a, clock.now(), HOUR, HOUR).await.unwrap().is_some());
    s.create(&d, &record_for("u", &clock), HOUR).await.unwrap();
    assert!(s.load_and_touch(&b, clock.now(), HOUR, HOUR).await.unwrap().is_none());
    for k in [&a, &c, &d] {
        assert!(s.load_and_touch(k, clock.now(), HOUR, HOUR).await.unwrap().is_some());
    }
    let listed = s.list_for_user("u").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|(k, _)| k != &b));
}

#[tokio::test]
async fn evicting_an_expired_session_is_not_counted_as_live() {
    let (s, clock) = store(2);
    s.create(&random_key(), &record_for("u", &clock), Duration::from_secs(10)).await.unwrap();
    s.create(&random_key(), &record_for("u", &clock), HOUR).await.unwrap();
    clock.advance(time::Duration::seconds(11));
    s.create(&random_key(), &record_for("u", &clock), HOUR).await.unwrap();
    assert_eq!(s.evicted_live(), 0);
    s.create(&random_key(), &record_for("u", &clock), HOUR).await.unwrap();
    assert_eq!(s.evicted_live(), 1);
}

#[tokio::test]
async fn expired_entries_are_invisible_and_swept() {
    let (s, clock) = store(10);
    let short = random_key();
    let long = random_key();
    s.create(&short, &record_for("u", &clock), Duration::from_secs(60)).await.unwrap();
    s.create(&long, &record_for("u", &clock), HOUR).await.unwrap();
    clock.advance(time::Duration::seconds(61));
    assert_eq!(s.len(), 2, "not yet swept");
    assert_eq!(s.list_for_user("u").await.unwrap().len(), 1);
    assert_eq!(s.sweep(clock.now()), 0, "listing already removed the expired entry");

    let other = random_key();
    s.create(&other, &record_for("v", &clock), Duration::from_secs(60)).await.unwrap();
    clock.advance(time::Duration::seconds(61));
    assert!(s.load_and_touch(&other, clock.now(), HOUR, HOUR).await.unwrap().is_none());
    s.create(&other, &record_for("v", &clock), Duration::from_secs(1)).await.unwrap();
    clock.advance(time::Duration::seconds(2));
    assert_eq!(s.sweep(clock.now()), 1);
    assert_eq!(s.len(), 1);
    let st = s.state.lock();
    assert!(st.user_head("v").is_none(), "empty user entries are dropped");
    assert_eq!(st.by_user.len(), 1);
}

#[tokio::test]
async fn touching_extends_the_lifetime() {
    let (s, clock) = store(10);
    let key = random_key();
    s.create(&key, &record_for("u", &clock), Duration::from_secs(100)).await.unwrap();
    clock.advance(time::Duration::seconds(90));
    s.load_and_touch(&key, clock.now(), Duration::from_secs(60), Duration::from_secs(100))
        .await
        .unwrap()
        .unwrap();
    clock.advance(time::Duration::seconds(90));
    let got =
        s.load_and_touch(&key, clock.now(), Duration::from_secs(60), Duration::from_secs(100));
    assert!(got.await.unwrap().is_some(), "180s after creation but 90s after the touch");
}

#[tokio::test]
async fn an_expired_key_can_be_created_again() {
    let (s, clock) = store(10);
    let key = random_key();
    s.create(&key, &record_for("u", &clock), Duration::from_secs(1)).await.unwrap();
    assert!(matches!(
        s.create(&key, &record_for("u", &clock), HOUR).await,
        Err(SessionError::Collision)
    ));
    clock.advance(time::Duration::seconds(2));
    s.create(&key, &record_for("w", &clock), HOUR).await.unwrap();
    assert_eq!(s.list_for_user("u").await.unwrap().len(), 0);
    assert_eq!(s.list_for_user("w").await.unwrap().len(), 1);
}

#[tokio::test]
async fn sweeper_removes_expired_entries_and_stops_on_shutdown() {
    let (s, clock) = store(10);
    s.create(&random_key(), &record_for("u", &clock), Duration::from_secs(1)).await.unwrap();
    clock.advance(time::Duration::seconds(5));
    let token = CancellationToken::new();
    let task = s.spawn_sweeper(Duration::from_secs(30), token.clone());
    // The first tick is immediate.
    for _ in 0..200 {
        if s.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.is_empty());
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// A key whose first 8 bytes (the index hash) are `prefix` and whose rest is random.
fn key_with_prefix(prefix: [u8; 8]) -> StoreKey {
    let mut bytes: [u8; 32] = rampart_core::token::random_bytes();
    bytes[..8].copy_from_slice(&prefix);
    StoreKey::from_bytes(&bytes)
}

#[tokio::test]
async fn keys_sharing_the_index_hash_are_told_apart() {
    let (s, clock) = store(100);
    let keys: Vec<StoreKey> = (0..20).map(|_| key_with_prefix(*b"samehash")).collect();
    let hashes: std::collections::BTreeSet<u64> =
        keys.iter().map(|k| key_hash(&k.to_bytes())).collect();
    assert_eq!(hashes.len(), 1, "every key has the same index hash");
    for (i, k) in keys.iter().enumerate() {
        s.create(k, &record_for(&format!("user-{i}"), &clock), HOUR).await.unwrap();
    }
    assert_eq!(s.len(), 20, "a shared prefix is not a collision");
    // The real key decides: a second create under an existing key still collides.
    assert!(matches!(
        s.create(&keys[3], &record_for("other", &clock), HOUR).await,
        Err(SessionError::Collision)
    ));
    for (i, k) in keys.iter().enumerate() {
        let got = s.load_and_touch(k, clock.now(), HOUR, HOUR).await.unwrap().unwrap();
        assert_eq!(got.user_id, format!("user-{i}"));
    }
    assert!(s
        .load_and_touch(&key_with_prefix(*b"samehash"), clock.now(), HOUR, HOUR)
        .await
        .unwrap()
        .is_none());
    // Deleting keys from the middle of the probe run leaves the others reachable.
    for k in keys.iter().step_by(2) {
        assert!(s.delete(k).await.unwrap());
    }
    for (i, k) in keys.iter().enumerate() {
        let found = s.load_and_touch(k, clock.now(), HOUR, HOUR).await.unwrap().is_some();
        assert_eq!(found, i % 2 == 1, "key {i}");
    }
    assert_eq!(s.len(), 10);
}

#[tokio::test]
async fn user_lists_survive_removal_from_any_position() {
    let (s, clock) = store(100);
    let keys: Vec<StoreKey> = (0..5).map(|_| random_key()).collect();
    for k in &keys {
        s.create(k, &record_for("u", &clock), HOUR).await.unwrap();
        s.create(&random_key(), &record_for("other", &clock), HOUR).await.unwrap();
    }
    // Newest, oldest, then a middle one.
    for k in [&keys[4], &keys[0], &keys[2]] {
        assert!(s.delete(k).await.unwrap());
    }
    let mut listed: Vec<StoreKey> =
        s.list_for_user("u").await.unwrap().into_iter().map(|(k, _)| k).collect();
    listed.sort();
    let mut expected = vec![keys[1].clone(), keys[3].clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(s.list_for_user("other").await.unwrap().len(), 5);
    assert_eq!(s.delete_for_user("u", None, Some(&keys[3])).await.unwrap(), 1);
    assert_eq!(s.list_for_user("u").await.unwrap().len(), 1);
    assert_eq!(s.delete_for_user("u", None, None).await.unwrap(), 1);
    assert!(s.state.lock().user_head("u").is_none());
    assert_eq!(s.list_for_user("other").await.unwrap().len(), 5);
}

#[tokio::test]
async fn records_come_back_exactly_with_their_last_seen_time() {
    let (s, clock) = store(10);
    let key = random_key();
    let mut record = record_for("u", &clock);
    record.last_seen_at = clock.now() - time::Duration::nanoseconds(1_234_567_891);
    record.user_agent = None;
    s.create(&key, &record, HOUR).await.unwrap();
    let got = s.load_and_touch(&key, clock.now(), HOUR, HOUR).await.unwrap().unwrap();
    assert_eq!(got, record);
    let listed = s.list_for_user("u").await.unwrap();
    assert_eq!(listed, vec![(key, record)]);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_slot_takes_88_bytes() {
    assert_eq!(std::mem::size_of::<Option<Node>>(), 88);
}
