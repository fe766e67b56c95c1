use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rampart_core::{Clock, ManualClock, MasterKey};

use super::*;
use crate::memory::MemorySessionStore;

/// A memory store that can be told to fail.
#[derive(Debug)]
pub(crate) struct TestStore {
    pub(crate) inner: MemorySessionStore,
    pub(crate) collisions: AtomicUsize,
    pub(crate) unavailable: AtomicBool,
    pub(crate) corrupt: AtomicBool,
    /// Whether it answers `load_and_touch_now` (as the memory store does) or only
    /// `load_and_touch` (as networked stores do).
    pub(crate) answers_now: AtomicBool,
    /// Calls of `load_and_touch`, the asynchronous one.
    pub(crate) async_loads: AtomicUsize,
}

impl TestStore {
    pub(crate) fn new(clock: &ManualClock) -> Self {
        Self {
            inner: MemorySessionStore::new(1000, Arc::new(clock.clone())),
            collisions: AtomicUsize::new(0),
            unavailable: AtomicBool::new(false),
            corrupt: AtomicBool::new(false),
            answers_now: AtomicBool::new(false),
            async_loads: AtomicUsize::new(0),
        }
    }

    fn maybe_corrupt(&self, got: Option<SessionRecord>) -> Result<Option<SessionRecord>> {
        if got.is_some() && self.corrupt.load(Ordering::SeqCst) {
            return Err(SessionError::Corrupt(None));
        }
        Ok(got)
    }

    fn check(&self) -> Result<()> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(SessionError::Unavailable(None));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionStore for TestStore {
    async fn create(&self, key: &StoreKey, record: &SessionRecord, ttl: Duration) -> Result<()> {
        self.check()?;
        if self.collisions.load(Ordering::SeqCst) > 0 {
            self.collisions.fetch_sub(1, Ordering::SeqCst);
            return Err(SessionError::Collision);
        }
        self.inner.create(key, record, ttl).await
    }
    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>> {
        self.async_loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let got = self.inner.load_and_touch(key, now, touch, ttl).await?;
        self.maybe_corrupt(got)
    }
    fn load_and_touch_now(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch: Duration,
        ttl: Duration,
    ) -> Option<Result<Option<SessionRecord>>> {
        if !self.answers_now.load(Ordering::SeqCst) {
            return None;
        }
        if let Err(e) = self.check() {
            return Some(Err(e));
        }
        let answer = self.inner.load_and_touch_now(key, now, touch, ttl)?;
        Some(answer.and_then(|got| self.maybe_corrupt(got)))
    }
    async fn delete(&self, key: &StoreKey) -> Result<bool> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        self.check()?;
        self.inner.list_for_user(user_id).await
    }
    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64> {
        self.check()?;
        self.inner.delete_for_user(user_id, handle, except).await
    }
    async fn count(&self) -> Result<u64> {
        self.check()?;
        self.inner.count().await
    }
}

fn setup() -> (SessionManager, Arc<TestStore>, ManualClock) {
    let clock = ManualClock::at_epoch();
    let store = Arc::new(TestStore::new(&clock));
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let m = SessionManager::new(
        store.clone(),
        keyring,
        SessionTimeouts::default(),
        Arc::new(clock.clone()),
    );
    (m, store, clock)
}

fn minutes(n: i64) -> time::Duration {
    time::Duration::minutes(n)
}

async fn active(m: &SessionManager, id: &SessionId) -> ActiveSession {
    match m.load(id).await.unwrap() {
        LoadOutcome::Active(a) => a,
        other => panic!("expected active, got {other:?}"),
    }
}

#[tokio::test]
async fn created_session_loads_with_its_deadlines() {
    let (m, _, clock) = setup();
    let t0 = clock.now();
    let (id, record) =
        m.create("alice", Some("192.0.2.1".into()), Some("ua".into()), "password").await.unwrap();
    assert_eq!(record.absolute_expires_at, t0 + time::Duration::hours(12));
    assert_eq!(record.handle.len(), 22);
    let a = active(&m, &id).await;
    assert_eq!(a.record, record);
    assert_eq!(a.idle_expires_at, t0 + minutes(30));
    assert_eq!(a.key, StoreKey::derive(&m.inner.keyring, &id));
}

#[tokio::test]
async fn idle_timeout_ends_an_unused_session_and_deletes_it() {
    let (m, store, clock) = setup();
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    clock.advance(minutes(29));
    let a = active(&m, &id).await;
    assert_eq!(a.record.last_seen_at, clock.now(), "touched: older than the touch interval");
    assert_eq!(a.idle_expires_at, clock.now() + minutes(30));
    clock.advance(minutes(29));
    active(&m, &id).await;
    clock.advance(minutes(30));
    match m.load(&id).await.unwrap() {
        LoadOutcome::ExpiredIdle(r) => assert_eq!(r.user_id, "alice"),
        other => panic!("expected idle expiry, got {other:?}"),
    }
    assert_eq!(m.load(&id).await.unwrap(), LoadOutcome::Unknown);
    assert_eq!(store.inner.len(), 0);
}

#[tokio::test]
async fn last_seen_is_written_at_most_once_per_touch_interval() {
    let (m, _, clock) = setup();
    let t0 = clock.now();
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    clock.advance(time::Duration::seconds(30));
    let a = active(&m, &id).await;
    assert_eq!(a.record.last_seen_at, t0);
    assert_eq!(a.idle_expires_at, t0 + minutes(30), "idle expiry is up to one interval early");
    clock.advance(time::Duration::seconds(30));
    assert_eq!(active(&m, &id).await.record.last_seen_at, t0 + minutes(1));
}

#[tokio::test]
async fn absolute_timeout_ends_even_an_active_session() {
    let (m, _, clock) = setup();
    let (id, record) = m.create("alice", None, None, "password").await.unwrap();
    for _ in 0..35 {
        clock.advance(minutes(20));
        let a = active(&m, &id).await;
        assert!(a.idle_expires_at <= record.absolute_expires_at);
    }
    // 11h40m elapsed; the idle deadline is capped by the absolute one.
    assert_eq!(active(&m, &id).await.idle_expires_at, record.absolute_expires_at);
    clock.advance(minutes(20));
    assert!(matches!(m.load(&id).await.unwrap(), LoadOutcome::ExpiredAbsolute(_)));
    assert_eq!(m.load(&id).await.unwrap(), LoadOutcome::Unknown);
}

#[tokio::test]
async fn rotation_kills_the_old_id_and_keeps_the_session() {
    let (m, _, clock) = setup();
    let mut data = serde_json::Map::new();
    data.insert("k".into(), serde_json::json!(1));
    let (old, record) =
        m.create_with_data("alice", None, None, "password", data.clone()).await.unwrap();
    clock.advance(minutes(5));
    let a = active(&m, &old).await;
    let (new, rotated) = m.rotate(&a).await.unwrap();
    assert_ne!(new, old);
    assert_eq!(m.load(&old).await.unwrap(), LoadOutcome::Unknown);
    let b = active(&m, &new).await;
    assert_eq!(b.record, rotated);
    assert_eq!(
        (&b.record.user_id, &b.record.handle, b.record.created_at, &b.record.data),
        (&record.user_id, &record.handle, record.created_at, &data)
    );
    assert_eq!(b.record.absolute_expires_at, record.absolute_expires_at);
    assert_eq!(b.record.last_seen_at, clock.now());
    // A second rotation of the stale session finds it gone and creates nothing.
    assert!(matches!(m.rotate(&a).await, Err(SessionError::NotFound)));
    assert_eq!(m.list_for_user("alice").await.unwrap().len(), 1);
}

#[tokio::test]
async fn revoked_sessions_are_unknown() {
    let (m, _, _) = setup();
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    let a = active(&m, &id).await;
    assert!(m.revoke(&a.key).await.unwrap());
    assert_eq!(m.load(&id).await.unwrap(), LoadOutcome::Unknown);
    assert!(!m.revoke(&a.key).await.unwrap());
}

#[tokio::test]
async fn list_and_revoke_for_user_skip_expired_and_keep_the_current() {
    let (m, _, clock) = setup();
    let (old, _) = m.create("alice", None, None, "password").await.unwrap();
    clock.advance(minutes(20));
    let (cur, _) = m.create("alice", None, None, "password").await.unwrap();
    clock.advance(minutes(5));
    let (newest, _) = m.create("alice", None, None, "password").await.unwrap();
    m.create("bob", None, None, "password").await.unwrap();
    clock.advance(minutes(7));
    // `old` is now 32 minutes idle: listed no more.
    let list = m.list_for_user("alice").await.unwrap();
    let cur_key = StoreKey::derive(&m.inner.keyring, &cur);
    let newest_key = StoreKey::derive(&m.inner.keyring, &newest);
    assert_eq!(
        list.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![newest_key, cur_key.clone()]
    );
    assert!(matches!(m.load(&old).await.unwrap(), LoadOutcome::ExpiredIdle(_)));
    assert_eq!(m.revoke_for_user("alice", None, Some(&cur_key)).await.unwrap(), 1);
    assert_eq!(m.load(&newest).await.unwrap(), LoadOutcome::Unknown);
    active(&m, &cur).await;
    assert_eq!(m.list_for_user("bob").await.unwrap().len(), 1);
}

#[tokio::test]
async fn sessions_from_before_a_key_rotation_still_load() {
    let clock = ManualClock::at_epoch();
    let store: Arc<dyn SessionStore> =
        Arc::new(MemorySessionStore::new(10, Arc::new(clock.clone())));
    let old_key = MasterKey::generate();
    let before = SessionManager::new(
        store.clone(),
        Keyring::new(old_key.clone(), vec![]),
        SessionTimeouts::default(),
        Arc::new(clock.clone()),
    );
    let (id, _) = before.create("alice", None, None, "password").await.unwrap();
    let after = SessionManager::new(
        store.clone(),
        Keyring::new(MasterKey::generate(), vec![old_key]),
        SessionTimeouts::default(),
        Arc::new(clock.clone()),
    );
    let a = active(&after, &id).await;
    assert_eq!(a.key, StoreKey::derive(&before.inner.keyring, &id));
    let dropped = SessionManager::new(
        store,
        Keyring::new(MasterKey::generate(), vec![]),
        SessionTimeouts::default(),
        Arc::new(clock),
    );
    assert_eq!(dropped.load(&id).await.unwrap(), LoadOutcome::Unknown);
}

#[tokio::test]
async fn create_retries_on_collision_then_gives_up() {
    let (m, store, _) = setup();
    store.collisions.store(2, Ordering::SeqCst);
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    active(&m, &id).await;
    store.collisions.store(10, Ordering::SeqCst);
    assert!(matches!(m.create("alice", None, None, "pw").await, Err(SessionError::Collision)));
}

#[tokio::test]
async fn unavailable_store_is_an_error_not_an_unknown_session() {
    let (m, store, _) = setup();
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    store.unavailable.store(true, Ordering::SeqCst);
    assert!(m.load(&id).await.unwrap_err().is_unavailable());
    assert!(m.create("alice", None, None, "password").await.unwrap_err().is_unavailable());
}

#[tokio::test]
async fn corrupt_records_are_deleted_and_reported_unknown() {
    let (m, store, _) = setup();
    let (id, _) = m.create("alice", None, None, "password").await.unwrap();
    store.corrupt.store(true, Ordering::SeqCst);
    assert_eq!(m.load(&id).await.unwrap(), LoadOutcome::Unknown);
    assert_eq!(store.inner.len(), 0);
}

#[tokio::test]
async fn long_user_agents_are_truncated_on_a_char_boundary() {
    let (m, _, _) = setup();
    let ua = "é".repeat(200);
    let (_, r) = m.create("alice", None, Some(ua), "password").await.unwrap();
    let kept = r.user_agent.unwrap();
    assert_eq!(kept.len(), 256);
    assert!(kept.chars().all(|c| c == 'é'));
}

#[test]
fn debug_never_shows_the_id_or_keys() {
    let (m, _, _) = setup();
    let shown = format!("{m:?}");
    assert!(shown.contains("SessionManager") && !shown.contains("keyring"), "{shown}");
}

#[tokio::test]
async fn trim_for_user_keeps_the_new_session_and_the_most_recently_used() {
    let (m, _, clock) = setup();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(m.create("alice", None, None, "password").await.unwrap().0);
        clock.advance(minutes(2));
    }
    let (bob, _) = m.create("bob", None, None, "password").await.unwrap();
    // The oldest session was used most recently: it stays, the next oldest go.
    active(&m, &ids[0]).await;
    let newest = m.key_of(&ids[4]);
    assert!(m.trim_for_user("alice", 5, &newest).await.unwrap().is_empty(), "at the limit");
    let revoked = m.trim_for_user("alice", 3, &newest).await.unwrap();
    assert_eq!(revoked.len(), 2);
    let left: Vec<StoreKey> =
        m.list_for_user("alice").await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left.len(), 3);
    for kept in [0, 3, 4] {
        assert!(left.contains(&m.key_of(&ids[kept])), "session {kept} was revoked");
    }
    for gone in [1, 2] {
        assert_eq!(m.load(&ids[gone]).await.unwrap(), LoadOutcome::Unknown, "session {gone}");
    }
    // A limit of one keeps only the session named, whatever was used last.
    assert_eq!(m.trim_for_user("alice", 1, &newest).await.unwrap().len(), 2);
    assert_eq!(m.list_for_user("alice").await.unwrap().len(), 1);
    active(&m, &ids[4]).await;
    active(&m, &bob).await;
}
