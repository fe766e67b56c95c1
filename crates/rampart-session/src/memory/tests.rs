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
    let indexed: usize = st.by_user.values().map(HashSet::len).sum();
    assert_eq!(indexed, 100);
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
    assert!(!s.state.lock().by_user.contains_key("v"), "empty user entries are dropped");
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
