//! Benchmark: memory held by `MemorySessionStore` for 1,000,000 sessions, and its capacity
//! bound under a flood of creates.
//!
//! Run in release mode only: `cargo run --release -p rampart-session --example
//! bench_memory_store` (or `scripts/microbench`, which runs every micro-benchmark). Prints
//! progress on stderr and one JSON object as the last line of stdout.
//!
//! Memory is the growth of the process's resident set (`VmRSS` in `/proc/self/status`) while
//! the structure is filled. The baseline is the same records in a plain
//! `HashMap<String, SessionRecord>` keyed by the same store keys, filled first in the same
//! process and kept alive, so neither measurement reuses memory the other freed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::{ManualClock, SharedClock};
use rampart_session::{MemorySessionStore, SessionRecord, SessionStore, StoreKey};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

const SESSIONS: usize = 1_000_000;
const FLOOD: usize = 2_000_000;
const TARGET_MB: f64 = 300.0;
const MB: f64 = 1024.0 * 1024.0;
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128";

/// Resident set size of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kb: u64 = line.split_whitespace().nth(1).expect("VmRSS value").parse().expect("kB");
    kb * 1024
}

/// A session as the server creates it at login: user id, random handle, client address,
/// a browser `User-Agent` and application data with an email address and a role.
fn record(i: usize, now: OffsetDateTime) -> SessionRecord {
    let mut data = serde_json::Map::new();
    data.insert("email".into(), json!(format!("user{i}@example.com")));
    data.insert("role".into(), json!(if i % 50 == 0 { "admin" } else { "member" }));
    let ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    SessionRecord {
        handle: handle(i),
        user_id: format!("usr_{i:010}"),
        created_at: now,
        last_seen_at: now,
        absolute_expires_at: now + time::Duration::hours(12),
        ip: Some(ip),
        user_agent: Some(USER_AGENT.to_owned()),
        auth_method: "password".to_owned(),
        data,
    }
}

/// A well-mixed 64-bit value from a counter (splitmix64), so keys and handles look random
/// without a system call per session.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A store key like the server's: 64 lowercase hex digits (the server's is an HMAC of the
/// session id; the store only sees the text).
fn key(i: usize) -> StoreKey {
    let i = i as u64 * 4;
    let text = format!("{:016x}{:016x}{:016x}{:016x}", mix(i), mix(i + 1), mix(i + 2), mix(i + 3));
    StoreKey::parse(&text).expect("64 hex digits")
}

/// A public handle like the server's: 22 base64url characters.
fn handle(i: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (a, b) = (mix(!(i as u64)), mix((i as u64) << 1 | 1));
    (0..22)
        .map(|n| {
            let bits = if n < 11 { a >> (n * 6) } else { b >> ((n - 11) * 6) };
            char::from(ALPHABET[(bits & 63) as usize])
        })
        .collect()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MB
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let now = datetime!(2030-01-01 00:00 UTC);
    let clock = ManualClock::new(now);
    let shared: SharedClock = Arc::new(clock.clone());
    let ttl = Duration::from_secs(12 * 3600);

    let rss_start = rss_bytes();

    // Baseline: a plain map holding the same records under the same keys. Only the insert
    // calls are timed (building a record is the same work on both sides).
    eprintln!("[bench_memory_store] baseline: {SESSIONS} records in a HashMap");
    let mut plain: HashMap<String, SessionRecord> = HashMap::new();
    let mut plain_time = Duration::ZERO;
    for i in 0..SESSIONS {
        let (k, r) = (key(i).as_str().to_owned(), record(i, now));
        let t = Instant::now();
        plain.insert(k, r);
        plain_time += t.elapsed();
    }
    let rss_plain = rss_bytes();
    let plain_bytes = rss_plain.saturating_sub(rss_start);

    // For scale: the same map with the data map left empty.
    let mut bare: HashMap<String, SessionRecord> = HashMap::new();
    for i in 0..SESSIONS {
        let mut r = record(i, now);
        r.data = serde_json::Map::new();
        bare.insert(key(i).as_str().to_owned(), r);
    }
    let rss_bare = rss_bytes();
    let bare_bytes = rss_bare.saturating_sub(rss_plain);

    eprintln!("[bench_memory_store] store: {SESSIONS} sessions in MemorySessionStore");
    let store = MemorySessionStore::new(SESSIONS, shared);
    let mut store_time = Duration::ZERO;
    for i in 0..SESSIONS {
        let (k, r) = (key(i), record(i, now));
        let t = Instant::now();
        store.create(&k, &r, ttl).await.expect("create");
        store_time += t.elapsed();
    }
    let rss_store = rss_bytes();
    let store_bytes = rss_store.saturating_sub(rss_bare);
    assert_eq!(store.len(), SESSIONS);

    eprintln!("[bench_memory_store] flood: {FLOOD} more creates");
    let mut max_len = store.len();
    let evicted_before = store.evicted_live();
    let mut flood_time = Duration::ZERO;
    for i in SESSIONS..SESSIONS + FLOOD {
        let (k, r) = (key(i), record(i, now));
        let t = Instant::now();
        store.create(&k, &r, ttl).await.expect("create");
        flood_time += t.elapsed();
        max_len = max_len.max(store.len());
    }
    let evictions = store.evicted_live() - evicted_before;
    let rss_flood = rss_bytes();
    drop(plain);
    drop(bare);
    let (plain_secs, store_secs) = (plain_time.as_secs_f64(), store_time.as_secs_f64());
    let flood_secs = flood_time.as_secs_f64();

    let store_mb = mb(store_bytes);
    let plain_mb = mb(plain_bytes);
    let per_store = store_bytes as f64 / SESSIONS as f64;
    let per_plain = plain_bytes as f64 / SESSIONS as f64;
    let store_rate = SESSIONS as f64 / store_secs;
    let plain_rate = SESSIONS as f64 / plain_secs;
    let bounded = max_len <= store.capacity();

    let report = json!({
        "bench": "session-memory-store",
        "crate": "rampart-session",
        "title": "MemorySessionStore: resident memory for 1,000,000 sessions and the capacity bound",
        "figures": [
            {
                "name": "resident memory, 1,000,000 sessions",
                "value": round(store_mb, 1), "unit": "MiB",
                "baseline": round(plain_mb, 1), "baseline_name": "HashMap<String, SessionRecord>",
                "ratio": round(store_mb / plain_mb, 2), "better": "lower",
                "target": format!("<= {TARGET_MB} MiB"), "met": store_mb <= TARGET_MB,
            },
            {
                "name": "resident bytes per session",
                "value": per_store.round(), "unit": "B",
                "baseline": per_plain.round(), "baseline_name": "HashMap<String, SessionRecord>",
                "ratio": round(per_store / per_plain, 2), "better": "lower",
                "target": Value::Null, "met": Value::Null,
            },
            {
                "name": "creates per second while filling (create call only)",
                "value": store_rate.round(), "unit": "ops/s",
                "baseline": plain_rate.round(), "baseline_name": "HashMap insert, same records",
                "ratio": round(store_rate / plain_rate, 2), "better": "higher",
                "target": Value::Null, "met": Value::Null,
            },
            {
                "name": "largest len() during 2,000,000 further creates",
                "value": max_len, "unit": "sessions",
                "baseline": store.capacity(), "baseline_name": "capacity",
                "ratio": round(max_len as f64 / store.capacity() as f64, 3), "better": "lower",
                "target": "<= capacity", "met": bounded,
            },
        ],
        "facts": {
            "sessions": SESSIONS,
            "capacity": store.capacity(),
            "flood_creates": FLOOD,
            "evicted_live_during_flood": evictions,
            "len_after_flood": store.len(),
            "flood_creates_per_sec_evicting": (FLOOD as f64 / flood_secs).round(),
            "rss_start_mib": round(mb(rss_start), 1),
            "rss_after_baseline_mib": round(mb(rss_plain), 1),
            "baseline_without_data_map_mib": round(mb(bare_bytes), 1),
            "size_of_session_record_bytes": std::mem::size_of::<SessionRecord>(),
            "rss_after_store_mib": round(mb(rss_store), 1),
            "rss_after_flood_mib": round(mb(rss_flood), 1),
        },
        "notes": [
            "Memory is VmRSS growth while filling; the baseline maps are filled first and kept alive, so the store's growth is measured on top of them with no freed memory to reuse.",
            "baseline_without_data_map_mib: the baseline map again with every data map empty, to show what the {email, role} map costs.",
            "Each record: user id, 22-character handle, IPv4 address, 68-character User-Agent, auth method, data map {email, role}; one distinct user per session (the per-user index at its largest). Keys are 64 hex digits like the server's HMAC store keys (made from a counter here, to spare a system call per session).",
            "Rates time only the insert/create calls, not building the records.",
            "The clock does not move, so every eviction during the flood drops a live session (counted by evicted_live).",
        ],
    });
    println!("{report}");
}
