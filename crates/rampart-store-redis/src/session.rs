//! [`RedisSessionStore`]: sessions shared by every Rampart instance.
//!
//! # Layout
//! - Each session is a hash `{prefix}s:{store key}` with fields `r` (the record, sealed with the
//!   keyring's session key and bound to the store key), `ls` (last seen, unix milliseconds, in
//!   clear so a touch needs no decryption) and `u` (the name of its user's index set). The hash
//!   expires with the session.
//! - Each user's index is a set `{prefix}u:{keyed hash of the user id}` of store keys. It lives
//!   at least as long as its longest-lived member; stale members are removed when listing.
//!
//! # Security
//! - Neither the session id, nor the user id, nor any record field appears in clear: keys are
//!   keyed hashes, the record is sealed (XChaCha20-Poly1305) with the store key as associated
//!   data, so a record copied under another key does not open.
//! - `create` (check, write, expire, index) is a single Lua script, atomic on the server, sent
//!   with `EVALSHA`. `load_and_touch` is one plain `HMGET` (one round trip, one command executed)
//!   while the session was seen within the touch interval; past it, a second call runs the touch
//!   script, which moves `ls` forward only if the session still exists, so a revoke racing a
//!   touch leaves the session deleted.
//! - Every call is bounded by the operation timeout; a timeout or connection failure is
//!   [`SessionError::Unavailable`], which the server answers with 503.
//!
//! # Deployment
//! - Standalone Redis or a primary with replicas; the scripts touch keys named in session
//!   fields, so Redis Cluster is not supported.
//! - `delete_for_user` lists then deletes: a session created by a concurrent login in between
//!   survives a "revoke all".
//! - `count` scans the keyspace (`SCAN MATCH`): fine for metrics, not for every request.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use rampart_core::{Keyring, Purpose};
use rampart_session::{SessionError, SessionRecord, SessionStore, StoreKey};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisResult, Script};
use time::OffsetDateTime;

use crate::conn::RedisHandle;

/// The default per-operation timeout.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);

type Result<T> = std::result::Result<T, SessionError>;

/// KEYS: session hash, user set. ARGV: sealed record, last seen ms, ttl ms, store key.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'ls', ARGV[2], 'u', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], ARGV[4])
local left = redis.call('PTTL', KEYS[2])
if left < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
",
    )
});

/// KEYS: session hash. ARGV: now ms, touch interval ms, ttl ms.
/// Moves `ls` forward and extends the expiry, only while the session exists (a revoke that won
/// the race stays a revoke) and only when `ls` is still older than the interval (a concurrent
/// touch already did the work). Returns 1 if the session exists afterwards, 0 if it is gone.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'ls', 'u')
if not v[1] then return 0 end
local now = tonumber(ARGV[1])
if now - tonumber(v[1]) >= tonumber(ARGV[2]) then
  local ttl = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'ls', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  if v[2] then
    local left = redis.call('PTTL', v[2])
    if left < ttl then redis.call('PEXPIRE', v[2], ttl) end
  end
end
return 1
",
    )
});

/// KEYS: session hash. ARGV: store key. Returns 1 if the session existed.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local u = redis.call('HGET', KEYS[1], 'u')
local n = redis.call('DEL', KEYS[1])
if u then redis.call('SREM', u, ARGV[1]) end
return n
",
    )
});

/// Sessions in Redis. See the [module docs](self).
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: ConnectionManager,
    keyring: Keyring,
    prefix: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// One listed session with the index set it was found in.
struct Listed {
    set: String,
    key: StoreKey,
    record: SessionRecord,
}

impl RedisSessionStore {
    /// A store on `conn`, naming its keys `{prefix}s:…` and `{prefix}u:…` (e.g. `rampart:`),
    /// giving up on any call after `op_timeout` ([`DEFAULT_OP_TIMEOUT`] is a good start).
    pub fn new(
        conn: ConnectionManager,
        keyring: Keyring,
        prefix: String,
        op_timeout: Duration,
    ) -> Self {
        Self { conn, keyring, prefix, op_timeout }
    }

    /// A store on a [`RedisHandle`], with its timeout.
    pub fn from_handle(handle: &RedisHandle, keyring: Keyring, prefix: String) -> Self {
        Self::new(handle.manager(), keyring, prefix, handle.timeout())
    }

    fn session_key(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.prefix, key.as_str())
    }

    /// Index set names for `user_id`, current master key first.
    fn user_sets(&self, user_id: &str) -> Vec<String> {
        let mut input = b"rampart/session-user\0".to_vec();
        input.extend_from_slice(user_id.as_bytes());
        self.keyring
            .mac_all(Purpose::Session, &input)
            .into_iter()
            .map(|tag| format!("{}u:{}", self.prefix, hex::encode(tag)))
            .collect()
    }

    async fn run<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Err(_) => Err(SessionError::Unavailable(None)),
            Ok(Err(e)) if unavailable(&e) => Err(SessionError::Unavailable(Some(Box::new(e)))),
            Ok(Err(e)) => Err(SessionError::Backend(Box::new(e))),
            Ok(Ok(v)) => Ok(v),
        }
    }

    fn open(&self, key: &StoreKey, sealed: &[u8]) -> Result<SessionRecord> {
        let json = self
            .keyring
            .open(Purpose::Session, key.as_str().as_bytes(), sealed)
            .map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
        serde_json::from_slice(&json).map_err(|e| SessionError::Corrupt(Some(Box::new(e))))
    }

    /// Every indexed session of `user_id`, removing index members whose session is gone.
    async fn listed(&self, user_id: &str) -> Result<Vec<Listed>> {
        let sets = self.user_sets(user_id);
        let mut pipe = redis::pipe();
        for set in &sets {
            pipe.smembers(set);
        }
        let mut conn = self.conn.clone();
        let members: Vec<Vec<String>> = self.run(pipe.query_async(&mut conn)).await?;

        let mut candidates = Vec::new();
        let mut stale = redis::pipe();
        let mut any_stale = false;
        for (set, keys) in sets.iter().zip(members) {
            for member in keys {
                match StoreKey::parse(&member) {
                    Some(key) => candidates.push((set.clone(), key)),
                    None => {
                        stale.srem(set, &member).ignore();
                        any_stale = true;
                    }
                }
            }
        }
        let mut out = Vec::new();
        if !candidates.is_empty() {
            let mut pipe = redis::pipe();
            for (_, key) in &candidates {
                pipe.cmd("HMGET").arg(self.session_key(key)).arg("r").arg("ls");
            }
            let rows: Vec<(Option<Vec<u8>>, Option<String>)> =
                self.run(pipe.query_async(&mut conn)).await?;
            for ((set, key), (sealed, ls)) in candidates.into_iter().zip(rows) {
                let Some(sealed) = sealed else {
                    stale.srem(&set, key.as_str()).ignore();
                    any_stale = true;
                    continue;
                };
                match self.open(&key, &sealed).and_then(|r| with_last_seen(r, ls.as_deref())) {
                    Ok(record) if record.user_id == user_id => {
                        out.push(Listed { set, key, record })
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(key = ?key, error = ?e, "unreadable session skipped"),
                }
            }
        }
        if any_stale {
            // Best effort: a failure leaves members the next listing removes.
            let _: Result<()> = self.run(stale.query_async(&mut conn)).await;
        }
        Ok(out)
    }
}

fn unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                | ErrorKind::ClusterDown
        )
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The record with `last_seen_at` taken from the plain `ls` field, which touches update.
fn with_last_seen(mut record: SessionRecord, ls: Option<&str>) -> Result<SessionRecord> {
    let ms: i64 = ls.and_then(|s| s.parse().ok()).ok_or(SessionError::Corrupt(None))?;
    record.last_seen_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| SessionError::Corrupt(Some(Box::new(e))))?;
    Ok(record)
}

#[async_trait::async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, key: &StoreKey, record: &SessionRecord, ttl: Duration) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(|e| SessionError::Backend(Box::new(e)))?;
        let sealed = self.keyring.seal(Purpose::Session, key.as_str().as_bytes(), &json);
        let set = self.user_sets(&record.user_id).into_iter().next().unwrap_or_default();
        let mut inv = CREATE.prepare_invoke();
        inv.key(self.session_key(key))
            .key(set)
            .arg(sealed)
            .arg(unix_ms(record.last_seen_at))
            .arg(ttl_ms(ttl))
            .arg(key.as_str());
        let mut conn = self.conn.clone();
        let created: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(SessionError::Collision)
        }
    }

    async fn load_and_touch(
        &self,
        key: &StoreKey,
        now: OffsetDateTime,
        touch_if_older_than: Duration,
        ttl: Duration,
    ) -> Result<Option<SessionRecord>> {
        // The common case is one plain HMGET: one round trip and one command executed. Only when
        // `ls` is older than the touch interval does a second call (the TOUCH script) follow.
        let hash = self.session_key(key);
        let mut conn = self.conn.clone();
        let fields: (Option<Vec<u8>>, Option<String>) = self
            .run(redis::cmd("HMGET").arg(&hash).arg("r").arg("ls").query_async(&mut conn))
            .await?;
        let (Some(sealed), ls) = fields else { return Ok(None) };
        let record = self.open(key, &sealed)?;
        let record = with_last_seen(record, ls.as_deref())?;
        let now_ms = unix_ms(now);
        let interval = i64::try_from(touch_if_older_than.as_millis()).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(unix_ms(record.last_seen_at)) < interval {
            return Ok(Some(record));
        }
        let mut inv = TOUCH.prepare_invoke();
        inv.key(hash).arg(now_ms).arg(interval).arg(ttl_ms(ttl));
        let alive: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        // Like the other stores, the record keeps `last_seen_at` as it was before this access,
        // so the caller's idle check sees the gap.
        Ok((alive == 1).then_some(record))
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool> {
        let mut inv = DELETE.prepare_invoke();
        inv.key(self.session_key(key)).arg(key.as_str());
        let mut conn = self.conn.clone();
        let n: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        Ok(n > 0)
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<(StoreKey, SessionRecord)>> {
        Ok(self.listed(user_id).await?.into_iter().map(|l| (l.key, l.record)).collect())
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        handle: Option<&str>,
        except: Option<&StoreKey>,
    ) -> Result<u64> {
        let targets: Vec<Listed> = self
            .listed(user_id)
            .await?
            .into_iter()
            .filter(|l| handle.is_none_or(|h| l.record.handle == h) && except != Some(&l.key))
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for t in &targets {
            pipe.del(self.session_key(&t.key));
            pipe.srem(&t.set, t.key.as_str()).ignore();
        }
        let mut conn = self.conn.clone();
        let deleted: Vec<u64> = self.run(pipe.query_async(&mut conn)).await?;
        Ok(deleted.into_iter().sum())
    }

    async fn count(&self) -> Result<u64> {
        let pattern = format!("{}s:*", glob_escape(&self.prefix));
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut total: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, keys): (u64, Vec<String>) = self.run(cmd.query_async(&mut conn)).await?;
            total += keys.len() as u64;
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("app:*[x]?\\"), "app:\\*\\[x\\]\\?\\\\");
        assert_eq!(glob_escape("rampart:"), "rampart:");
    }

    #[test]
    fn last_seen_comes_from_the_plain_field() {
        let t = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let record = SessionRecord {
            handle: "h".into(),
            user_id: "u".into(),
            created_at: t,
            last_seen_at: t,
            absolute_expires_at: t,
            ip: None,
            user_agent: None,
            auth_method: "password".into(),
            data: serde_json::Map::new(),
        };
        let later = unix_ms(t) + 90_500;
        let got = with_last_seen(record.clone(), Some(&later.to_string())).unwrap();
        assert_eq!(got.last_seen_at, t + time::Duration::milliseconds(90_500));
        assert!(matches!(with_last_seen(record.clone(), Some("x")), Err(SessionError::Corrupt(_))));
        assert!(matches!(with_last_seen(record, None), Err(SessionError::Corrupt(_))));
    }

    #[test]
    fn ttl_is_at_least_one_millisecond() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
    }
}
