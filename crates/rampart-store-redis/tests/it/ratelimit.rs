//! `RedisRateLimitStore` and `RedisRegulationStore` against a real Redis.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy::Commands;
use rampart_ratelimit::{
    LockScope, LoginRegulator, Quota, RateLimitError, RateLimitStore, RegulationConfig,
    RegulationStore,
};
use rampart_store_redis::conn::{connect, RedisHandle};
use rampart_store_redis::{RedisRateLimitStore, RedisRegulationStore};
use tokio::task::JoinSet;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn handle() -> Option<(String, RedisHandle)> {
    let url = rampart_testkit::redis_url().await?;
    let handle = connect(&url, None, TIMEOUT).await.unwrap();
    Some((url, handle))
}

fn prefix() -> String {
    format!("test:rl:{}:", rampart_testkit::random_suffix())
}

fn quotas(texts: &[&str]) -> Vec<Quota> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

async fn hash(handle: &RedisHandle, key: &str) -> Vec<(String, String)> {
    let mut conn = handle.manager();
    let mut fields: Vec<(String, String)> =
        redis::cmd("HGETALL").arg(key).query_async(&mut conn).await.unwrap();
    fields.sort();
    fields
}

async fn pttl(handle: &RedisHandle, key: &str) -> i64 {
    let mut conn = handle.manager();
    redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn burst_is_admitted_then_refused_with_retry_after() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let q = quotas(&["5/10s"]);
    for remaining in (0..5).rev() {
        let d = store.check("client", &q).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.quotas[0].remaining, remaining);
    }
    let refused = store.check("client", &q).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after > Duration::ZERO);
    assert!(refused.retry_after <= Duration::from_secs(2));
    assert_eq!(refused.quotas[0].remaining, 0);
    assert!(refused.quotas[0].reset > Duration::from_secs(9));
    // Another key is independent.
    assert!(store.check("other", &q).await.unwrap().allowed);
    // The key expires when its state stops mattering (about one period here).
    let ttl = pttl(&handle, &store.redis_key("client")).await;
    assert!(ttl > 9_000 && ttl <= 10_000, "ttl {ttl}");
}

#[tokio::test]
async fn refusal_consumes_nothing() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let q = quotas(&["2/1h"]);
    assert!(store.check("k", &q).await.unwrap().allowed);
    assert!(store.check("k", &q).await.unwrap().allowed);
    let key = store.redis_key("k");
    let before = hash(&handle, &key).await;
    let first = store.check("k", &q).await.unwrap();
    for _ in 0..10 {
        let d = store.check("k", &q).await.unwrap();
        assert!(!d.allowed);
        // Hammering does not push recovery further away.
        assert!(d.retry_after <= first.retry_after);
    }
    assert_eq!(hash(&handle, &key).await, before);
}

#[tokio::test]
async fn quotas_are_all_or_nothing() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let q = quotas(&["5/1h", "2/1h"]);
    assert!(store.check("k", &q).await.unwrap().allowed);
    assert!(store.check("k", &q).await.unwrap().allowed);
    let key = store.redis_key("k");
    let before = hash(&handle, &key).await;
    assert_eq!(before.len(), 2);
    for _ in 0..5 {
        let d = store.check("k", &q).await.unwrap();
        assert!(!d.allowed);
        // The first quota still has 3 left: the refusal by the second did not drain it.
        assert_eq!(d.quotas[0].remaining, 3);
        assert_eq!(d.quotas[1].remaining, 0);
    }
    assert_eq!(hash(&handle, &key).await, before);
    // The first quota alone still admits exactly its 3 remaining.
    let first = &q[..1];
    let mut admitted = 0;
    for _ in 0..6 {
        admitted += u32::from(store.check("k", first).await.unwrap().allowed);
    }
    assert_eq!(admitted, 3);
}

#[tokio::test]
async fn invalid_quota_refuses_and_writes_nothing() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let q = [Quota { limit: 0, period: Duration::from_secs(1) }, "5/1m".parse().unwrap()];
    let d = store.check("k", &q).await.unwrap();
    assert!(!d.allowed);
    assert!(hash(&handle, &store.redis_key("k")).await.is_empty());
    assert!(store.check("k", &[]).await.unwrap().allowed);
}

#[tokio::test]
async fn concurrent_instances_share_one_quota() {
    let Some((url, _)) = handle().await else { return };
    let prefix = prefix();
    let q = Arc::new(quotas(&["20/1h"]));
    let mut tasks = JoinSet::new();
    for _ in 0..3 {
        // A separate connection per "instance".
        let store = Arc::new(RedisRateLimitStore::new(
            connect(&url, None, TIMEOUT).await.unwrap(),
            prefix.clone(),
        ));
        for _ in 0..30 {
            let (store, q) = (store.clone(), q.clone());
            tasks.spawn(async move { store.check("shared", &q).await.unwrap().allowed });
        }
    }
    let mut admitted = 0;
    while let Some(allowed) = tasks.join_next().await {
        admitted += u32::from(allowed.unwrap());
    }
    assert_eq!(admitted, 20);
}

#[tokio::test]
async fn each_check_is_exactly_one_evalsha() {
    let Some(url) = rampart_testkit::redis_url().await else { return };
    let Some(proxy) = Commands::start(&url).await else { return };
    let handle = connect(&proxy.url, None, TIMEOUT).await.unwrap();
    let store = RedisRateLimitStore::new(handle, prefix());
    let q = quotas(&["3/1m", "100/1h"]);
    // Warm up: the first call may also load the script.
    store.check("k", &q).await.unwrap();
    proxy.take();
    for _ in 0..10 {
        store.check("k", &q).await.unwrap();
    }
    assert_eq!(proxy.take(), vec!["EVALSHA"; 10]);

    // Two rules (and a rule without quotas) are still one command per request, admitted or
    // refused.
    let narrow = quotas(&["2/1m"]);
    let checks: [(&str, &[Quota]); 3] = [("wide", &q), ("free", &[]), ("narrow", &narrow)];
    let mut refused = 0;
    for _ in 0..10 {
        let decisions = store.check_all(&checks).await.unwrap();
        assert_eq!(decisions.len(), 3);
        refused += u32::from(!decisions.iter().all(|d| d.allowed));
    }
    assert_eq!(refused, 8);
    assert_eq!(proxy.take(), vec!["EVALSHA"; 10]);
    // Nothing to limit: no command at all.
    store.check_all(&[("free", &[])]).await.unwrap();
    assert!(proxy.take().is_empty());
}

#[tokio::test]
async fn a_batch_refused_by_one_key_consumes_nothing_on_any() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let wide = quotas(&["3/1h", "10/1d"]);
    let narrow = quotas(&["1/1s"]);
    let checks: [(&str, &[Quota]); 2] = [("wide", &wide), ("narrow", &narrow)];
    // Spend the second key on its own.
    assert!(store.check("narrow", &narrow).await.unwrap().allowed);
    let narrow_before = hash(&handle, &store.redis_key("narrow")).await;
    for _ in 0..5 {
        let d = store.check_all(&checks).await.unwrap();
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!(d[0].quotas[0].remaining, 3, "the first key was charged");
        assert_eq!(d[0].quotas[1].remaining, 10);
        assert!(d[1].retry_after > Duration::ZERO && d[1].retry_after <= Duration::from_secs(1));
        assert!(hash(&handle, &store.redis_key("wide")).await.is_empty());
        assert_eq!(hash(&handle, &store.redis_key("narrow")).await, narrow_before);
    }
    // Once the second key frees up, the first still has its whole quota.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let d = store.check_all(&checks).await.unwrap();
    assert!(d.iter().all(|d| d.allowed));
    assert_eq!(d[0].quotas[0].remaining, 2);
    assert_eq!(hash(&handle, &store.redis_key("wide")).await.len(), 2);
    let mut admitted = 1;
    for _ in 0..5 {
        admitted += u32::from(store.check("wide", &wide).await.unwrap().allowed);
    }
    assert_eq!(admitted, 3);
}

#[tokio::test]
async fn a_check_with_fewer_quotas_never_shortens_the_expiry() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    // Two rules sharing a key (same name), one with an hourly second quota.
    assert!(store.check("k", &quotas(&["5/1s", "1/1h"])).await.unwrap().allowed);
    assert!(store.check("k", &quotas(&["5/1s"])).await.unwrap().allowed);
    let ttl = pttl(&handle, &store.redis_key("k")).await;
    assert!(ttl > 3_590_000, "ttl {ttl}");
    // So the hourly quota is still spent.
    assert!(!store.check("k", &quotas(&["5/1s", "1/1h"])).await.unwrap().allowed);
}

#[tokio::test]
async fn a_key_repeated_in_a_batch_is_charged_per_entry_or_not_at_all() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let q = quotas(&["3/1h"]);
    let twice: [(&str, &[Quota]); 2] = [("k", &q), ("k", &q)];
    let d = store.check_all(&twice).await.unwrap();
    assert!(d.iter().all(|d| d.allowed));
    assert_eq!(d[1].quotas[0].remaining, 1);
    let d = store.check_all(&twice).await.unwrap();
    assert!(d[0].allowed && !d[1].allowed);
    assert!(store.check("k", &q).await.unwrap().allowed);
    assert!(!store.check("k", &q).await.unwrap().allowed);
}

#[tokio::test]
async fn concurrent_instances_share_quotas_across_batches() {
    let Some((url, _)) = handle().await else { return };
    let prefix = prefix();
    let (a, b) = (Arc::new(quotas(&["15/1h"])), Arc::new(quotas(&["25/1h", "100/1d"])));
    let mut tasks = JoinSet::new();
    for instance in 0..3 {
        let store = Arc::new(RedisRateLimitStore::new(
            connect(&url, None, TIMEOUT).await.unwrap(),
            prefix.clone(),
        ));
        for i in 0..40 {
            let (store, a, b) = (store.clone(), a.clone(), b.clone());
            tasks.spawn(async move {
                match (instance + i) % 3 {
                    0 => (store.check_all(&[("a", &a), ("b", &b)]).await.unwrap(), true),
                    1 => (store.check_all(&[("b", &b), ("a", &a)]).await.unwrap(), true),
                    _ => (store.check_all(&[("b", &b)]).await.unwrap(), false),
                }
            });
        }
    }
    let (mut both, mut only) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (decisions, needs_a) = result.unwrap();
        if decisions.iter().all(|d| d.allowed) {
            if needs_a {
                both += 1;
            } else {
                only += 1;
            }
        }
    }
    assert!(both <= 15, "a admitted {both} of 15");
    assert_eq!(both + only, 25, "b admitted {} of 25", both + only);
    // a was charged exactly for the admitted batches that named it.
    let store = RedisRateLimitStore::new(connect(&url, None, TIMEOUT).await.unwrap(), prefix);
    let mut rest = 0;
    for _ in 0..20 {
        rest += u32::from(store.check("a", &a).await.unwrap().allowed);
    }
    assert_eq!(both + rest, 15);
}

#[tokio::test]
async fn each_regulation_operation_is_one_command() {
    let Some(url) = rampart_testkit::redis_url().await else { return };
    let Some(proxy) = Commands::start(&url).await else { return };
    let handle = connect(&proxy.url, None, TIMEOUT).await.unwrap();
    let store = RedisRegulationStore::new(handle, prefix());
    let minute = Duration::from_secs(60);
    let run = || async {
        store.incr_failure("f", minute).await.unwrap();
        store.failures("f").await.unwrap();
        store.set_ban("b", 1, minute, minute).await.unwrap();
        store.ban("b").await.unwrap();
        store.remove("f").await.unwrap();
    };
    run().await;
    proxy.take();
    run().await;
    assert_eq!(proxy.take(), ["EVALSHA", "EVALSHA", "EVALSHA", "EVALSHA", "DEL"]);
}

#[tokio::test]
async fn redis_errors_and_outages_are_unavailable() {
    let Some((url, handle)) = handle().await else { return };
    let store = RedisRateLimitStore::new(handle.clone(), prefix());
    let mut conn = handle.manager();
    let _: () = redis::cmd("SET")
        .arg(store.redis_key("k"))
        .arg("not a hash")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let q = quotas(&["1/1s"]);
    assert!(matches!(store.check("k", &q).await, Err(RateLimitError::Unavailable { .. })));

    let Some(proxy) = Commands::start(&url).await else { return };
    let store = RedisRateLimitStore::new(
        connect(&proxy.url, None, Duration::from_millis(500)).await.unwrap(),
        prefix(),
    );
    assert!(store.check("k", &q).await.unwrap().allowed);
    drop(proxy);
    // Let the runtime run the aborts that close the proxied connections.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(store.check("k", &q).await, Err(RateLimitError::Unavailable { .. })));
}

#[tokio::test]
async fn failures_count_within_a_window_then_expire() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRegulationStore::new(handle.clone(), prefix());
    let window = Duration::from_secs(60);
    assert_eq!(store.failures("f").await.unwrap(), None);
    for n in 1..=3 {
        let c = store.incr_failure("f", window).await.unwrap();
        assert_eq!(c.count, n);
        assert!(c.reset_in <= window && c.reset_in > Duration::from_secs(55));
    }
    let read = store.failures("f").await.unwrap().unwrap();
    assert_eq!(read.count, 3);
    let ttl = pttl(&handle, &store.redis_key("f")).await;
    assert!(ttl > 55_000 && ttl <= 60_000, "ttl {ttl}");
    // A later failure does not extend the window.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let c = store.incr_failure("f", Duration::from_secs(3600)).await.unwrap();
    assert!(c.reset_in <= window - Duration::from_millis(30));

    let short = Duration::from_millis(50);
    assert_eq!(store.incr_failure("g", short).await.unwrap().count, 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.failures("g").await.unwrap(), None);
    assert_eq!(store.incr_failure("g", short).await.unwrap().count, 1);
    store.remove("f").await.unwrap();
    assert_eq!(store.failures("f").await.unwrap(), None);
}

#[tokio::test]
async fn bans_are_stored_read_and_removed() {
    let Some((_, handle)) = handle().await else { return };
    let store = RedisRegulationStore::new(handle.clone(), prefix());
    assert_eq!(store.ban("b").await.unwrap(), None);
    let hour = Duration::from_secs(3600);
    store.set_ban("b", 2, Duration::from_secs(30), hour).await.unwrap();
    let ban = store.ban("b").await.unwrap().unwrap();
    assert_eq!(ban.level, 2);
    assert!(ban.remaining <= Duration::from_secs(30));
    assert!(ban.remaining > Duration::from_secs(29));
    let ttl = pttl(&handle, &store.redis_key("b")).await;
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "ttl {ttl}");

    // An ended ban keeps its level until the memory expires.
    store.set_ban("c", 3, Duration::from_millis(5), hour).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let ended = store.ban("c").await.unwrap().unwrap();
    assert_eq!((ended.level, ended.remaining), (3, Duration::ZERO));

    store.remove("b").await.unwrap();
    assert_eq!(store.ban("b").await.unwrap(), None);
}

#[tokio::test]
async fn login_regulator_bans_an_account_through_redis() {
    let Some((_, handle)) = handle().await else { return };
    let store = Arc::new(RedisRegulationStore::new(handle, prefix()));
    let regulator = LoginRegulator::new(store, RegulationConfig::default());
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    for _ in 0..4 {
        assert_eq!(regulator.record_failure("acct", ip).await.unwrap(), None);
    }
    let locked = regulator.record_failure("acct", ip).await.unwrap().unwrap();
    assert_eq!(locked.scope, LockScope::Account);
    let err = regulator.check("acct", ip).await.unwrap_err();
    assert_eq!(err.scope, LockScope::Account);
    assert!(err.retry_after > Duration::from_secs(55));
    regulator.record_success("acct").await.unwrap();
    assert!(regulator.check("acct", ip).await.is_ok());
}

/// A TCP proxy in front of Redis that records the name of every command clients send, to
/// count round trips exactly, whatever else runs on the same server at the same time.
mod proxy {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinSet;

    pub(super) struct Commands {
        pub(super) url: String,
        seen: Arc<Mutex<Vec<String>>>,
        accept: tokio::task::JoinHandle<()>,
    }

    impl Drop for Commands {
        fn drop(&mut self) {
            // Dropping the accept task drops its JoinSet, which aborts every connection.
            self.accept.abort();
        }
    }

    impl Commands {
        /// A proxy to the Redis at `url`; `None` (skip) for TLS URLs.
        pub(super) async fn start(url: &str) -> Option<Self> {
            let rest = url.strip_prefix("redis://")?;
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (format!("{u}@"), h),
                None => (String::new(), authority),
            };
            let upstream = if hostport.contains(':') {
                hostport.to_owned()
            } else {
                format!("{hostport}:6379")
            };
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let recorder = seen.clone();
            let accept = tokio::spawn(async move {
                let mut connections = JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(&upstream).await.unwrap();
                    connections.spawn(relay(client, server, recorder.clone()));
                }
            });
            Some(Self { url: format!("redis://{userinfo}127.0.0.1:{port}/{path}"), seen, accept })
        }

        /// The commands seen since the last call.
        pub(super) fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    async fn relay(client: TcpStream, server: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut server_rd, mut server_wr) = server.into_split();
        let upstream = async {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = client_rd.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some((name, used)) = next_command(&pending) {
                    seen.lock().unwrap().push(name);
                    pending.drain(..used);
                }
                if server_wr.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        };
        let downstream = async {
            let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
        };
        tokio::join!(upstream, downstream);
    }

    /// Parses one complete RESP command (`*N` then N bulk strings) from the start of `buf`:
    /// its upper-cased name and the bytes it takes, or `None` if incomplete.
    fn next_command(buf: &[u8]) -> Option<(String, usize)> {
        fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
            let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
            let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
            Some((n, end + 2))
        }
        assert_eq!(buf.first().copied().unwrap_or(b'*'), b'*', "unexpected inline command");
        let (count, mut at) = line(buf, 0)?;
        let mut name = String::new();
        for i in 0..count {
            let (len, start) = line(buf, at)?;
            let end = start + len;
            if buf.len() < end + 2 {
                return None;
            }
            if i == 0 {
                name = String::from_utf8_lossy(&buf[start..end]).to_uppercase();
            }
            at = end + 2;
        }
        Some((name, at))
    }
}
