//! A time limit on every operation of a session store.
//!
//! # Security
//! A store that hangs (a database behind a stalled network, a pool waiting for a connection)
//! must not hold requests for longer than the operator allowed: past the limit the operation
//! is [`SessionError::Unavailable`], which servers answer with 503, never with "not logged
//! in". The operation is dropped at the limit; a write may or may not have happened then,
//! as with any store that stops answering.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{Result, SessionError};
use crate::id::StoreKey;
use crate::record::SessionRecord;
use crate::store::SessionStore;

/// Wraps a store so that each operation fails as unavailable after `limit`.
#[derive(Debug)]
pub struct TimeoutStore {
    inner: Arc<dyn SessionStore>,
    limit: Duration,
}

impl TimeoutStore {
    /// `inner` with every operation limited to `limit`.
    pub fn new(inner: Arc<dyn SessionStore>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn limited<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limit, op).await {
            Ok(answer) => answer,
            Err(elapsed) => Err(SessionError::Unavailable(Some(Box::new(elapsed)))),
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for TimeoutStore {
    async fn create(&self, key: &StoreKey, record: &SessionRecord, ttl: Duration) -> Result<()> {
        self.limited(self.inner.create(key, record, ttl)).await
    }

    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>> {
        self.limited(self.inner.load_and_touch(key, now, touch_if_older_than, ttl)).await
    }

    fn load_and_touch_now(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Option<Result<Option<SessionRecord>>> {
        // Answered on the spot by stores that never wait: nothing to limit.
        self.inner.load_and_touch_now(key, now, touch_if_older_than, ttl)
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool> {
        self.limited(self.inner.delete(key)).await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        self.limited(self.inner.list_for_user(user_id)).await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64> {
        self.limited(self.inner.delete_for_user(user_id, handle, except)).await
    }

    async fn count(&self) -> Result<u64> {
        self.limited(self.inner.count()).await
    }
}

#[cfg(test)]
mod tests {
    use rampart_core::SystemClock;

    use super::*;
    use crate::memory::MemorySessionStore;

    /// A store that answers `count` only after a long wait, and everything else at once.
    #[derive(Debug)]
    struct Stalled(MemorySessionStore);

    #[async_trait::async_trait]
    impl SessionStore for Stalled {
        async fn create(&self, k: &StoreKey, r: &SessionRecord, ttl: Duration) -> Result<()> {
            self.0.create(k, r, ttl).await
        }
        async fn load_and_touch(
            &self,
            k: &StoreKey,
            now: OffsetDateTime,
            older: Duration,
            ttl: Duration,
        ) -> Result<Option<SessionRecord>> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            self.0.load_and_touch(k, now, older, ttl).await
        }
        async fn delete(&self, k: &StoreKey) -> Result<bool> {
            self.0.delete(k).await
        }
        async fn list_for_user(&self, u: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
            self.0.list_for_user(u).await
        }
        async fn delete_for_user(
            &self,
            u: &str,
            h: Option<&str>,
            e: Option<&StoreKey>,
        ) -> Result<u64> {
            self.0.delete_for_user(u, h, e).await
        }
        async fn count(&self) -> Result<u64> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            self.0.count().await
        }
    }

    #[tokio::test]
    async fn a_stalled_operation_is_unavailable_and_the_others_answer() {
        let inner = Stalled(MemorySessionStore::new(100, SystemClock::shared()));
        let store = TimeoutStore::new(Arc::new(inner), Duration::from_millis(50));
        let err = store.count().await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        let key = StoreKey::parse(&"07".repeat(32)).unwrap();
        let err = store
            .load_and_touch(
                &key,
                OffsetDateTime::UNIX_EPOCH,
                Duration::ZERO,
                Duration::from_secs(60),
            )
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        // Operations that answer in time pass through unchanged.
        assert!(!store.delete(&key).await.unwrap());
        assert!(store.list_for_user("u_1").await.unwrap().is_empty());
    }
}
