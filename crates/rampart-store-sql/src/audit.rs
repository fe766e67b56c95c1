//! The audit log in SQL: an append-only table written by a group-commit writer, plus paging
//! queries, export and verification reads.
//!
//! # Durability
//! [`SqlAuditSink::append`] returns only after the event's transaction has committed.
//! Concurrent appends are gathered by one writer task and committed together (group commit), so
//! a burst of requests costs one transaction, not one each. If a commit fails, every event of
//! that batch gets the error and the in-memory chain is rolled back, so no answered request ever
//! refers to an event that is not stored.
//!
//! # Tamper evidence
//! Events are sealed into this instance's hash chain (`rampart_audit::Chain`) in commit order;
//! signed checkpoints are appended when due and mirrored to the operational log. No code path
//! here updates or deletes audit rows; on Postgres a trigger refuses both.

use std::time::Duration;

use async_trait::async_trait;
use rampart_audit::{AuditError, AuditEvent, AuditSink, Chain, CheckpointPolicy, NewEvent};
use rampart_core::{Keyring, SharedClock};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::db::{get_i64, get_string};
use crate::{Backend, Db, StoreError};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Most appends waiting for the writer; further appends wait for room (back-pressure).
pub const QUEUE: usize = 16_384;

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<AuditEvent, AuditError>>,
}

/// An [`AuditSink`] on the SQL database with group commit.
#[derive(Debug, Clone)]
pub struct SqlAuditSink {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// The last sealed position of an instance's chain in the database.
pub async fn chain_head(db: &Db, instance: &str) -> crate::Result<Option<(u64, String)>> {
    let row = sqlx::query(
        "SELECT seq, hash FROM audit_events WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::from_sqlx)?;
    match row {
        None => Ok(None),
        Some(r) => {
            Ok(Some((u64::try_from(get_i64(&r, "seq")?).unwrap_or(0), get_string(&r, "hash")?)))
        }
    }
}

async fn load_chain(db: &Db, instance: &str) -> Result<Chain, AuditError> {
    match chain_head(db, instance).await.map_err(AuditError::store)? {
        None => Ok(Chain::new(instance)),
        Some((seq, hash)) => Chain::resume(instance, seq, &hash),
    }
}

impl SqlAuditSink {
    /// Opens the sink for `instance`, resuming its chain from the database, and starts the
    /// writer task. The writer drains what is queued and stops when `shutdown` is cancelled.
    pub async fn open(
        db: Db,
        keyring: Keyring,
        instance: &str,
        clock: SharedClock,
        policy: CheckpointPolicy,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        Self::open_with_stream(db, keyring, instance, clock, policy, shutdown, None).await
    }

    /// Like [`SqlAuditSink::open`], also writing every committed event as one JSON line to
    /// `stream` (a file or standard output feeding a SIEM). Stream write errors are logged and
    /// never fail an append: the database is the record.
    pub async fn open_with_stream(
        db: Db,
        keyring: Keyring,
        instance: &str,
        clock: SharedClock,
        policy: CheckpointPolicy,
        shutdown: CancellationToken,
        stream: Option<Box<dyn std::io::Write + Send>>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        let chain = load_chain(&db, instance).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer { db, conn: None, keyring, clock, policy, chain, stream };
        let handle = tokio::spawn(writer.run(rx, shutdown));
        Ok((Self { tx }, handle))
    }
}

#[async_trait]
impl AuditSink for SqlAuditSink {
    async fn append(&self, event: NewEvent) -> Result<AuditEvent, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { event, reply }).await.map_err(|_| AuditError::store(Closed))?;
        rx.await.map_err(|_| AuditError::store(Closed))?
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the audit writer has stopped")]
struct Closed;

struct Writer {
    db: Db,
    /// The writer's own connection, kept between batches. On SQLite a connection's page cache
    /// stays valid only while no other connection writes, so taking whichever pooled
    /// connection is free would start most batches with a cold cache. Dropped after an error
    /// and taken again from the pool for the next batch.
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    keyring: Keyring,
    clock: SharedClock,
    policy: CheckpointPolicy,
    chain: Chain,
    stream: Option<Box<dyn std::io::Write + Send>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Closing the pool waits for every connection to come back, the writer's own included.
        let pool_closing = self.db.pool().close_event();
        tokio::pin!(pool_closing);
        let mut closing = false;
        loop {
            let first = tokio::select! {
                () = &mut pool_closing, if !closing => {
                    closing = true;
                    self.conn = None;
                    continue;
                }
                job = rx.recv() => match job {
                    Some(j) => j,
                    None => break,
                },
                _ = tick.tick() => {
                    self.checkpoint_if_due(Vec::new()).await;
                    continue;
                }
                () = shutdown.cancelled() => {
                    rx.close();
                    while let Some(j) = rx.recv().await {
                        self.commit(vec![j]).await;
                    }
                    break;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.commit(batch).await;
        }
    }

    async fn checkpoint_if_due(
        &mut self,
        sealed: Vec<AuditEvent>,
    ) -> Option<(Vec<AuditEvent>, Option<rampart_audit::Checkpoint>)> {
        let now = self.clock.now();
        if sealed.is_empty() && !self.chain.checkpoint_due(&self.policy, now) {
            return None;
        }
        let snapshot = self.chain.clone();
        let mut rows = sealed;
        let mut cp = None;
        if self.chain.checkpoint_due(&self.policy, now) {
            let (checkpoint, event) = self.chain.checkpoint(&self.keyring, now);
            rows.push(event);
            cp = Some(checkpoint);
        }
        if rows.is_empty() {
            return None;
        }
        // A kept connection is never used once the pool is closing: the batch then fails like
        // any other acquire from a closed pool.
        let conn = match self.conn.take() {
            Some(c) if !self.db.pool().is_closed() => Ok(c),
            _ => self.db.pool().acquire().await.map_err(StoreError::from_sqlx),
        };
        let written = match conn {
            Ok(mut c) => {
                let r = insert(&mut c, self.db.backend(), &rows).await;
                // Kept for the next batch unless it failed or the pool is closing meanwhile.
                if r.is_ok() && !self.db.pool().is_closed() {
                    self.conn = Some(c);
                }
                r
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {
                if let Some(c) = &cp {
                    rampart_audit::mirror_checkpoint(c);
                }
                if let Some(out) = self.stream.as_mut() {
                    let written = rows
                        .iter()
                        .try_for_each(|ev| rampart_audit::write_json_line(out, ev))
                        .and_then(|()| out.flush().map_err(AuditError::from));
                    if let Err(e) = written {
                        tracing::warn!(error = %e, "audit stream write failed (the database has the events)");
                    }
                }
                Some((rows, cp))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit commit failed; the batch is refused");
                self.chain = snapshot;
                None
            }
        }
    }

    async fn commit(&mut self, batch: Vec<Job>) {
        let now = self.clock.now();
        let snapshot = self.chain.clone();
        let mut sealed = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(e) = job.event.check() {
                let _ = job.reply.send(Err(e));
                continue;
            }
            sealed.push(self.chain.seal(job.event, now));
            replies.push(job.reply);
        }
        if sealed.is_empty() {
            return;
        }
        let n = sealed.len();
        match self.checkpoint_if_due(sealed).await {
            Some((rows, _)) => {
                for (reply, ev) in replies.into_iter().zip(rows.into_iter().take(n)) {
                    let _ = reply.send(Ok(ev));
                }
            }
            None => {
                // Another writer may have extended this instance's chain (two processes with one
                // instance id): reload the head so the next batch continues it.
                self.chain = match load_chain(&self.db, snapshot.instance()).await {
                    Ok(c) => c,
                    Err(_) => snapshot,
                };
                for reply in replies {
                    let _ = reply.send(Err(AuditError::store(Closed)));
                }
            }
        }
    }
}

/// Columns of one audit row, in the order of [`insert_sql`]'s placeholders.
const COLUMNS: usize = 11;
/// Rows per `INSERT` statement: 704 parameters, well under every backend's limit.
const ROWS_PER_INSERT: usize = 64;

/// `INSERT … VALUES (…), (…), …` for `rows` rows: only placeholders are generated, every value
/// is bound. Postgres numbers its placeholders (`$1`, `$2`, …). SQLite gets anonymous `?`
/// placeholders, bound in order: numbered ones make binding look each name up in a list, which
/// grows with the statement and showed as a tenth of the writer's time in a profile.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (instance, seq, id, ts_micros, event, outcome, user_id, ip, body, prev_hash, hash) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..COLUMNS {
            if col > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * COLUMNS + col + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// One `INSERT` of `chunk`'s rows.
fn insert_query<'q>(
    sql: &'q str,
    chunk: &'q [AuditEvent],
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    let mut query = sqlx::query(sql);
    for ev in chunk {
        let body = serde_json::to_string(ev)
            .map_err(|_| StoreError::Corrupt("audit event does not encode"))?;
        query = query
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
            .bind(&ev.hash);
    }
    Ok(query)
}

/// Writes a batch atomically, many rows per statement (one statement per row costs a round
/// trip to the database each). A batch that fits one statement is that statement alone, which
/// is atomic by itself: one round trip instead of three (`BEGIN`, `INSERT`, `COMMIT`). A larger
/// batch runs its statements in one transaction.
async fn insert(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[AuditEvent],
) -> Result<(), StoreError> {
    use sqlx::Connection as _;
    if rows.len() <= ROWS_PER_INSERT {
        let sql = insert_sql(backend, rows.len());
        insert_query(&sql, rows)?.execute(&mut *conn).await.map_err(StoreError::from_sqlx)?;
        return Ok(());
    }
    let mut tx = conn.begin().await.map_err(StoreError::from_sqlx)?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(backend, chunk.len());
        insert_query(&sql, chunk)?.execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
    }
    tx.commit().await.map_err(StoreError::from_sqlx)
}

#[cfg(test)]
mod insert_sql_tests {
    use super::*;

    #[test]
    fn postgres_placeholders_number_every_column_of_every_row() {
        assert_eq!(
            insert_sql(Backend::Postgres, 1).split("VALUES ").nth(1).unwrap(),
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let two = insert_sql(Backend::Postgres, 2);
        assert!(two.ends_with("($12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"), "{two}");
        assert_eq!(
            insert_sql(Backend::Postgres, ROWS_PER_INSERT).matches('$').count(),
            ROWS_PER_INSERT * COLUMNS
        );
    }

    #[test]
    fn sqlite_placeholders_are_anonymous_one_per_column_of_every_row() {
        assert_eq!(
            insert_sql(Backend::Sqlite, 1).split("VALUES ").nth(1).unwrap(),
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let sql = insert_sql(Backend::Sqlite, ROWS_PER_INSERT);
        assert_eq!(sql.matches('?').count(), ROWS_PER_INSERT * COLUMNS);
        assert!(!sql.contains('$'));
    }
}
