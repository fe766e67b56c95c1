use std::sync::Arc;
use std::time::Duration;

use rampart_core::{Clock, Keyring, ManualClock, MasterKey, SharedClock};
use rampart_session::conformance::{random_key, record_for};
use rampart_session::{LoadOutcome, SessionError, SessionManager, SessionStore, SessionTimeouts};
use rampart_store_redis::RedisSessionStore;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOUR: Duration = Duration::from_secs(3600);

/// A store on the test Redis with a fresh key prefix, or `None` (skip) when Redis is absent
/// outside CI.
async fn store(keyring: Keyring) -> Option<(RedisSessionStore, ConnectionManager, String)> {
    let url = rampart_testkit::redis_url().await?;
    let client = redis::Client::open(url).expect("redis url");
    let conn = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
        .await
        .expect("connect in time")
        .expect("connect");
    let prefix = format!("rampart-test:{}:", rampart_testkit::random_suffix());
    let store =
        RedisSessionStore::new(conn.clone(), keyring, prefix.clone(), Duration::from_secs(2));
    Some((store, conn, prefix))
}

async fn keys(conn: &mut ConnectionManager, prefix: &str) -> Vec<String> {
    conn.keys(format!("{prefix}*")).await.unwrap()
}

async fn cleanup(mut conn: ConnectionManager, prefix: &str) {
    for k in keys(&mut conn, prefix).await {
        let _: () = conn.del(k).await.unwrap();
    }
}

fn ring() -> Keyring {
    Keyring::new(MasterKey::generate(), vec![])
}

#[tokio::test]
async fn redis_store_passes_the_conformance_suite() {
    let Some((store, conn, prefix)) = store(ring()).await else { return };
    rampart_session::conformance::run_all(Arc::new(store), ManualClock::at_epoch()).await;
    let mut c = conn.clone();
    let left = keys(&mut c, &prefix).await;
    assert!(left.iter().all(|k| !k.starts_with(&format!("{prefix}s:"))), "{left:?}");
    cleanup(conn, &prefix).await;
}

#[tokio::test]
async fn redis_dump_holds_no_cookie_value_and_no_plaintext_user_data() {
    let Some((_, conn, prefix)) = store(ring()).await else { return };
    let clock = ManualClock::at_epoch();
    let shared: SharedClock = Arc::new(clock.clone());
    let keyring = ring();
    // The manager and the store must share the keyring; build the store again with it.
    let store = RedisSessionStore::new(
        conn.clone(),
        keyring.clone(),
        prefix.clone(),
        Duration::from_secs(2),
    );
    let manager = SessionManager::new(Arc::new(store), keyring, SessionTimeouts::default(), shared);
    let mut data = serde_json::Map::new();
    data.insert("note".into(), serde_json::json!("plaintext-marker-7731"));
    let (id, record) = manager
        .create_with_data(
            "alice@example.com",
            Some("198.51.100.23".into()),
            Some("MarkerAgent/9.9".into()),
            "password",
            data,
        )
        .await
        .unwrap();

    let mut c = conn.clone();
    let mut dump: Vec<u8> = Vec::new();
    let names = keys(&mut c, &prefix).await;
    assert_eq!(names.len(), 2, "one session hash and one user index: {names:?}");
    for name in &names {
        dump.extend_from_slice(name.as_bytes());
        let kind: String = redis::cmd("TYPE").arg(name).query_async(&mut c).await.unwrap();
        match kind.as_str() {
            "hash" => {
                let fields: Vec<(Vec<u8>, Vec<u8>)> = c.hgetall(name).await.unwrap();
                for (f, v) in fields {
                    dump.extend_from_slice(&f);
                    dump.extend_from_slice(&v);
                }
            }
            "set" => {
                let members: Vec<Vec<u8>> = c.smembers(name).await.unwrap();
                members.iter().for_each(|m| dump.extend_from_slice(m));
            }
            other => panic!("unexpected key type {other}"),
        }
    }
    let cookie = id.to_cookie_value();
    let id_hex = hex::encode(id.expose_bytes());
    let contains = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    for needle in [
        cookie.expose_secret().as_bytes(),
        id.expose_bytes().as_slice(),
        id_hex.as_bytes(),
        b"alice@example.com",
        b"alice",
        b"plaintext-marker-7731",
        b"198.51.100.23",
        b"MarkerAgent",
        record.handle.as_bytes(),
    ] {
        assert!(!contains(needle), "dump contains {:?}", String::from_utf8_lossy(needle));
    }

    // And the session still works.
    let LoadOutcome::Active(active) = manager.load(&id).await.unwrap() else { panic!("active") };
    assert_eq!(active.record.data["note"], "plaintext-marker-7731");
    assert_eq!(manager.list_for_user("alice@example.com").await.unwrap().len(), 1);
    cleanup(conn, &prefix).await;
}

#[tokio::test]
async fn touch_extends_the_session_and_index_lifetimes() {
    let Some((store, conn, prefix)) = store(ring()).await else { return };
    let clock = ManualClock::at_epoch();
    let key = random_key();
    store.create(&key, &record_for("u-ttl", &clock), Duration::from_secs(60)).await.unwrap();
    let mut c = conn.clone();
    let skey = format!("{prefix}s:{}", key.as_str());
    let ttl: i64 = c.pttl(&skey).await.unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
    let set: String = c.hget(&skey, "u").await.unwrap();
    assert!(set.starts_with(&format!("{prefix}u:")));

    // Not older than the interval: no write, lifetime unchanged.
    store.load_and_touch(&key, clock.now(), Duration::from_secs(60), HOUR).await.unwrap().unwrap();
    let ttl: i64 = c.pttl(&skey).await.unwrap();
    assert!(ttl <= 60_000, "{ttl}");

    clock.advance(time::Duration::seconds(61));
    store.load_and_touch(&key, clock.now(), Duration::from_secs(60), HOUR).await.unwrap().unwrap();
    let ttl: i64 = c.pttl(&skey).await.unwrap();
    assert!(ttl > 3_500_000, "{ttl}");
    let set_ttl: i64 = c.pttl(&set).await.unwrap();
    assert!(set_ttl >= ttl - 1000, "the index outlives its members: {set_ttl} < {ttl}");
    let ls: i64 = c.hget(&skey, "ls").await.unwrap();
    assert_eq!(ls, clock.now().unix_timestamp() * 1000);
    cleanup(conn, &prefix).await;
}

#[tokio::test]
async fn a_record_moved_to_another_key_does_not_open() {
    let Some((store, conn, prefix)) = store(ring()).await else { return };
    let clock = ManualClock::at_epoch();
    let (a, b) = (random_key(), random_key());
    store.create(&a, &record_for("victim", &clock), HOUR).await.unwrap();
    store.create(&b, &record_for("attacker", &clock), HOUR).await.unwrap();
    let mut c = conn.clone();
    let sealed: Vec<u8> = c.hget(format!("{prefix}s:{}", a.as_str()), "r").await.unwrap();
    let _: () = c.hset(format!("{prefix}s:{}", b.as_str()), "r", sealed).await.unwrap();
    let got = store.load_and_touch(&b, clock.now(), HOUR, HOUR).await;
    assert!(matches!(got, Err(SessionError::Corrupt(_))), "{got:?}");
    // Listing skips the unreadable record instead of failing.
    assert!(store.list_for_user("attacker").await.unwrap().is_empty());
    cleanup(conn, &prefix).await;
}

#[tokio::test]
async fn stale_index_members_are_removed_when_listing() {
    let Some((store, conn, prefix)) = store(ring()).await else { return };
    let clock = ManualClock::at_epoch();
    let (a, b) = (random_key(), random_key());
    store.create(&a, &record_for("stale-user", &clock), HOUR).await.unwrap();
    store.create(&b, &record_for("stale-user", &clock), HOUR).await.unwrap();
    let mut c = conn.clone();
    let skey = format!("{prefix}s:{}", a.as_str());
    let set: String = c.hget(&skey, "u").await.unwrap();
    // Simulate expiry: the hash goes, the index member stays.
    let _: () = c.del(&skey).await.unwrap();
    assert_eq!(c.scard::<_, i64>(&set).await.unwrap(), 2);
    let listed = store.list_for_user("stale-user").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, b);
    assert_eq!(c.scard::<_, i64>(&set).await.unwrap(), 1);
    cleanup(conn, &prefix).await;
}

#[tokio::test]
async fn sessions_survive_a_master_key_rotation() {
    let old = MasterKey::generate();
    let Some((before, conn, prefix)) = store(Keyring::new(old.clone(), vec![])).await else {
        return;
    };
    let clock = ManualClock::at_epoch();
    let shared: SharedClock = Arc::new(clock.clone());
    let m1 = SessionManager::new(
        Arc::new(before),
        Keyring::new(old.clone(), vec![]),
        SessionTimeouts::default(),
        shared.clone(),
    );
    let (id, _) = m1.create("rotating-user", None, None, "password").await.unwrap();
    let rotated = Keyring::new(MasterKey::generate(), vec![old]);
    let after = RedisSessionStore::new(
        conn.clone(),
        rotated.clone(),
        prefix.clone(),
        Duration::from_secs(2),
    );
    let m2 = SessionManager::new(Arc::new(after), rotated, SessionTimeouts::default(), shared);
    assert!(matches!(m2.load(&id).await.unwrap(), LoadOutcome::Active(_)));
    m2.create("rotating-user", None, None, "password").await.unwrap();
    assert_eq!(m2.list_for_user("rotating-user").await.unwrap().len(), 2);
    assert_eq!(m2.revoke_for_user("rotating-user", None, None).await.unwrap(), 2);
    cleanup(conn, &prefix).await;
}

/// A server that completes the connection handshake, then never answers.
async fn silent_server() -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = Arc::new(AtomicBool::new(false));
    let flag = silent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = sock.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(used) = complete_command(&buf) {
                        buf.drain(..used);
                        if !flag.load(Ordering::SeqCst) && sock.write_all(b"+OK\r\n").await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("redis://{addr}"), silent)
}

/// The length of the first complete RESP command (an array of bulk strings) in `buf`.
fn complete_command(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        if *buf.get(at)? != tag {
            return None;
        }
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (args, mut at) = line(buf, 0, b'*')?;
    for _ in 0..args {
        let (len, start) = line(buf, at, b'$')?;
        at = start + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

#[tokio::test]
async fn a_silent_server_makes_every_call_unavailable_within_the_timeout() {
    use std::sync::atomic::Ordering;
    let (url, silent) = silent_server().await;
    let client = redis::Client::open(url).unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
        .await
        .expect("handshake in time")
        .expect("handshake");
    silent.store(true, Ordering::SeqCst);
    let store = RedisSessionStore::new(conn, ring(), "t:".into(), Duration::from_millis(200));
    let clock = ManualClock::at_epoch();
    let key = random_key();
    let started = std::time::Instant::now();
    let results = [
        store.load_and_touch(&key, clock.now(), HOUR, HOUR).await.map(|_| ()),
        store.create(&key, &record_for("u", &clock), HOUR).await,
        store.delete(&key).await.map(|_| ()),
        store.list_for_user("u").await.map(|_| ()),
        store.delete_for_user("u", None, None).await.map(|_| ()),
        store.count().await.map(|_| ()),
    ];
    for r in results {
        assert!(matches!(r, Err(SessionError::Unavailable(_))), "{r:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "each call gave up after its timeout");
}
