//! Benchmark: sustained durable audit appends per second through `SqlAuditSink` (group commit)
//! on SQLite and Postgres, beside the same inserts committed one transaction per event.
//!
//! Run in release mode only: `cargo run --release -p rampart-store-sql --example
//! bench_audit_sink` (or `scripts/microbench`). Postgres comes from `RAMPART_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`); a temporary database is created and
//! dropped. Prints progress on stderr and one JSON object as the last line of stdout.
//!
//! Every measurement uses a fresh database, 64 concurrent appenders and a fixed duration; an
//! append counts only once it has returned, that is once its transaction has committed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_audit::{AuditEvent, AuditSink, Chain, CheckpointPolicy, EventKind, NewEvent};
use rampart_core::{Keyring, MasterKey, SharedClock, SystemClock};
use rampart_store_sql::{Db, PoolConfig, SqlAuditSink};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const APPENDERS: usize = 64;
const DURATION: Duration = Duration::from_secs(5);
const SQLITE_TARGET: f64 = 20_000.0;
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128";

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn event(task: usize, n: u64) -> NewEvent {
    NewEvent::success(EventKind::UserLogin)
        .user(format!("usr_{:010}", (task as u64 * 7919 + n) % 50_000))
        .ip(format!("10.0.{}.{}", task, n % 250))
        .user_agent(USER_AGENT)
        .request_id(format!("req-{task:02}-{n:012}"))
        .session(format!("h{:021x}", n * 31 + task as u64))
        .detail("method", "password")
}

/// Result of one run: committed appends per second and the rows found afterwards.
struct Run {
    rate: f64,
    appended: u64,
    rows: i64,
}

async fn count_rows(db: &Db) -> i64 {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
        .fetch_one(db.pool())
        .await
        .expect("count rows");
    row.0
}

/// `APPENDERS` tasks appending through the group-commit sink for `DURATION`.
async fn group_commit(db: Db, keyring: Keyring, clock: SharedClock) -> Run {
    let shutdown = CancellationToken::new();
    let (sink, writer) = SqlAuditSink::open(
        db.clone(),
        keyring,
        "bench-group",
        clock,
        CheckpointPolicy::default(),
        shutdown.clone(),
    )
    .await
    .expect("open sink");
    let sink = Arc::new(sink);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|task| {
            let (sink, stop, done) = (sink.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sink.append(event(task, n)).await.expect("append");
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(DURATION).await;
    let appended_at_deadline = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("appender");
    }
    shutdown.cancel();
    writer.await.expect("writer");
    let appended = done.load(Ordering::Relaxed);
    let rows = count_rows(&db).await;
    Run { rate: appended_at_deadline as f64 / elapsed, appended, rows }
}

/// Inserts `rows` in one transaction with the same statement the sink uses.
async fn insert_tx(db: &Db, rows: &[AuditEvent]) {
    let mut tx = db.pool().begin().await.expect("begin");
    for ev in rows {
        let body = serde_json::to_string(ev).expect("encode");
        sqlx::query(
            "INSERT INTO audit_events (instance, seq, id, ts_micros, event, outcome, user_id, ip, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&ev.instance)
        .bind(i64::try_from(ev.seq).unwrap_or(i64::MAX))
        .bind(&ev.id)
        .bind(ev.ts_micros())
        .bind(ev.event.as_str())
        .bind(ev.outcome.as_str())
        .bind(ev.actor.as_ref().and_then(|a| a.user_id.clone()))
        .bind(ev.ip.clone())
        .bind(body)
        .bind(&ev.prev_hash)
        .bind(&ev.hash)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
}

/// Baseline: the same appenders, each event sealed and committed in its own transaction while
/// holding the chain (events must be stored in chain order), so nothing is grouped.
async fn one_tx_per_event(db: Db, keyring: Keyring, clock: SharedClock) -> Run {
    let chain = Arc::new(tokio::sync::Mutex::new(Chain::new("bench-single")));
    let policy = CheckpointPolicy::default();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|task| {
            let (db, keyring, clock) = (db.clone(), keyring.clone(), clock.clone());
            let (chain, stop, done) = (chain.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut chain = chain.lock().await;
                    let now = clock.now();
                    let mut rows = vec![chain.seal(event(task, n), now)];
                    if chain.checkpoint_due(&policy, now) {
                        rows.push(chain.checkpoint(&keyring, now).1);
                    }
                    insert_tx(&db, &rows).await;
                    drop(chain);
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(DURATION).await;
    let appended_at_deadline = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("appender");
    }
    let appended = done.load(Ordering::Relaxed);
    let rows = count_rows(&db).await;
    Run { rate: appended_at_deadline as f64 / elapsed, appended, rows }
}

async fn fresh_db(url: &str) -> Db {
    let db = Db::connect(url, &PoolConfig::default()).await.expect("connect");
    db.migrate_up().await.expect("migrate");
    db
}

fn figure(backend: &str, group: &Run, single: &Run, target: Option<f64>) -> Value {
    json!({
        "name": format!("{backend}: durable appends/s, {APPENDERS} appenders, group commit"),
        "value": group.rate.round(), "unit": "events/s",
        "baseline": single.rate.round(),
        "baseline_name": "one transaction per event, no group commit",
        "ratio": round(group.rate / single.rate, 2), "better": "higher",
        "target": target.map(|t| format!(">= {t} events/s")),
        "met": target.map(|t| group.rate >= t),
    })
}

fn facts(backend: &str, group: &Run, single: &Run) -> Value {
    json!({
        format!("{backend}_group_appended"): group.appended,
        format!("{backend}_group_rows_stored"): group.rows,
        format!("{backend}_single_appended"): single.appended,
        format!("{backend}_single_rows_stored"): single.rows,
    })
}

#[tokio::main]
async fn main() {
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let clock = SystemClock::shared();
    let mut figures = Vec::new();
    let mut all_facts = serde_json::Map::new();
    let mut notes = vec![
        json!("Each figure counts appends that returned (committed) within the run, over a fresh database, on a 2-worker tokio runtime in the same process as the database client."),
        json!("The baseline holds the chain across seal + INSERT + COMMIT so stored order matches chain order, which is what the sink must guarantee; the writer of the sink does the same per batch of up to 1024 events."),
        json!("SQLite: WAL, synchronous=NORMAL (Db::connect's settings), temp file. Postgres: synchronous_commit as configured on the server (default on), same machine."),
    ];

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    eprintln!("[bench_audit_sink] SQLite, group commit, {}s", DURATION.as_secs());
    let group =
        group_commit(fresh_db(&sqlite_url("group.db")).await, keyring.clone(), clock.clone()).await;
    eprintln!("[bench_audit_sink] SQLite, one transaction per event, {}s", DURATION.as_secs());
    let single =
        one_tx_per_event(fresh_db(&sqlite_url("single.db")).await, keyring.clone(), clock.clone())
            .await;
    figures.push(figure("SQLite", &group, &single, Some(SQLITE_TARGET)));
    if let Value::Object(m) = facts("sqlite", &group, &single) {
        all_facts.extend(m);
    }

    match rampart_testkit::postgres_database().await {
        Some(group_db) => {
            let single_db = rampart_testkit::postgres_database().await.expect("second database");
            eprintln!("[bench_audit_sink] Postgres, group commit, {}s", DURATION.as_secs());
            let db = fresh_db(&group_db.url).await;
            let group = group_commit(db.clone(), keyring.clone(), clock.clone()).await;
            db.close().await;
            eprintln!("[bench_audit_sink] Postgres, one transaction per event");
            let db = fresh_db(&single_db.url).await;
            let single = one_tx_per_event(db.clone(), keyring.clone(), clock.clone()).await;
            db.close().await;
            figures.push(figure("Postgres", &group, &single, None));
            if let Value::Object(m) = facts("postgres", &group, &single) {
                all_facts.extend(m);
            }
            // Dropping the handles drops the temporary databases.
            drop((group_db, single_db));
        }
        None => {
            notes.push(json!("Postgres did not answer: its figures are missing from this run."))
        }
    }

    all_facts.insert("appenders".into(), json!(APPENDERS));
    all_facts.insert("seconds_per_run".into(), json!(DURATION.as_secs()));
    let out = json!({
        "bench": "sql-audit-sink",
        "crate": "rampart-store-sql",
        "title": "SqlAuditSink: sustained durable audit appends with group commit",
        "figures": figures,
        "facts": all_facts,
        "notes": notes,
    });
    println!("{out}");
}
