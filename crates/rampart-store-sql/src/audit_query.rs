//! Reading the audit log: filtered, newest-first pages with a stable cursor; every event in
//! chain order for verification; JSON lines for export.

use base64::Engine;
use rampart_audit::AuditEvent;
use sqlx::Row;

use crate::db::{get_i64, get_string};
use crate::{Db, StoreError};

/// Filters of an audit query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Event kind name.
    pub event: Option<String>,
    /// Actor user id.
    pub user_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Outcome name.
    pub outcome: Option<String>,
    /// Not before (Unix microseconds).
    pub since: Option<i64>,
    /// Before (Unix microseconds).
    pub until: Option<i64>,
}

/// A position in the newest-first order: `(ts_micros, instance, seq)` of the last event shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    ts: i64,
    instance: String,
    seq: i64,
}

impl AuditCursor {
    /// Encodes as opaque text.
    pub fn encode(&self) -> String {
        let raw = format!("{}|{}|{}", self.ts, self.seq, self.instance);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes text from [`AuditCursor::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 512 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut parts = raw.splitn(3, '|');
        let ts = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let instance = parts.next()?.to_owned();
        Some(Self { ts, instance, seq })
    }
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Events, newest first.
    pub events: Vec<AuditEvent>,
    /// Where the next page starts, if there may be one.
    pub next: Option<AuditCursor>,
}

fn decode(body: &str) -> Result<AuditEvent, StoreError> {
    serde_json::from_str(body).map_err(|_| StoreError::Corrupt("audit event body"))
}

impl Db {
    /// A page of events matching `filter`, newest first, after `cursor`.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        cursor: Option<&AuditCursor>,
        limit: u32,
    ) -> crate::Result<AuditPage> {
        let limit = limit.clamp(1, 1000);
        let rows = sqlx::query(
            "SELECT body, ts_micros, instance, seq FROM audit_events \
             WHERE ($1 IS NULL OR event = $1) AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR ip = $3) \
             AND ($4 IS NULL OR outcome = $4) AND ($5 IS NULL OR ts_micros >= $5) AND ($6 IS NULL OR ts_micros < $6) \
             AND ($7 IS NULL OR ts_micros < $7 OR (ts_micros = $7 AND (instance < $8 OR (instance = $8 AND seq < $9)))) \
             ORDER BY ts_micros DESC, instance DESC, seq DESC LIMIT $10",
        )
        .bind(filter.event.clone())
        .bind(filter.user_id.clone())
        .bind(filter.ip.clone())
        .bind(filter.outcome.clone())
        .bind(filter.since)
        .bind(filter.until)
        .bind(cursor.map(|c| c.ts))
        .bind(cursor.map(|c| c.instance.clone()))
        .bind(cursor.map(|c| c.seq))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            events.push(decode(&get_string(r, "body")?)?);
            last = Some(AuditCursor {
                ts: get_i64(r, "ts_micros")?,
                instance: get_string(r, "instance")?,
                seq: get_i64(r, "seq")?,
            });
        }
        let next = if rows.len() == limit as usize { last } else { None };
        Ok(AuditPage { events, next })
    }

    /// Up to `limit` events in chain order (`instance`, `seq`) after the position `after`
    /// (an instance and seq, typically the last event of the previous chunk), optionally only
    /// those not older than `since` (Unix microseconds). An empty result means the end.
    pub async fn audit_chunk(
        &self,
        after: Option<(&str, u64)>,
        since: Option<i64>,
        limit: u32,
    ) -> crate::Result<Vec<AuditEvent>> {
        let rows = self.audit_rows(after, since, limit).await?;
        Ok(rows.into_iter().map(|(ev, _)| ev).collect())
    }

    /// Like [`Db::audit_chunk`] (without `since`), with whether each row's query columns
    /// (`instance`, `seq`, `id`, `ts_micros`, `event`, `outcome`, `user_id`, `ip`) still say
    /// what its sealed body says. Only the body is hashed; the columns are copies for searching
    /// and ordering, so an edit to them alone would hide an event from searches without
    /// breaking the chain.
    pub async fn audit_chunk_with_index_check(
        &self,
        after: Option<(&str, u64)>,
        limit: u32,
    ) -> crate::Result<Vec<(AuditEvent, bool)>> {
        self.audit_rows(after, None, limit).await
    }

    /// The rows of [`Db::audit_chunk`], each with whether its query columns match its body.
    async fn audit_rows(
        &self,
        after: Option<(&str, u64)>,
        since: Option<i64>,
        limit: u32,
    ) -> crate::Result<Vec<(AuditEvent, bool)>> {
        let rows = sqlx::query(
            "SELECT instance, seq, id, ts_micros, event, outcome, user_id, ip, body \
             FROM audit_events \
             WHERE ($1 IS NULL OR instance > $1 OR (instance = $1 AND seq > $2)) \
             AND ($3 IS NULL OR ts_micros >= $3) \
             ORDER BY instance, seq LIMIT $4",
        )
        .bind(after.map(|a| a.0.to_owned()))
        .bind(after.map_or(0, |a| i64::try_from(a.1).unwrap_or(i64::MAX)))
        .bind(since)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                let ev = decode(&get_string(r, "body")?)?;
                let optional = |name: &str| {
                    r.try_get::<Option<String>, _>(name).map_err(StoreError::from_sqlx)
                };
                let agrees = get_string(r, "instance")? == ev.instance
                    && u64::try_from(get_i64(r, "seq")?).ok() == Some(ev.seq)
                    && get_string(r, "id")? == ev.id
                    && get_i64(r, "ts_micros")? == ev.ts_micros()
                    && get_string(r, "event")? == ev.event.as_str()
                    && get_string(r, "outcome")? == ev.outcome.as_str()
                    && optional("user_id")? == ev.actor.as_ref().and_then(|a| a.user_id.clone())
                    && optional("ip")? == ev.ip;
                Ok((ev, agrees))
            })
            .collect()
    }

    /// How many audit events are stored.
    pub async fn audit_count(&self) -> crate::Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(u64::try_from(get_i64(&row, "n")?).unwrap_or(0))
    }
}

impl Db {
    /// The stored prune anchors (one per instance and pruned range).
    pub async fn audit_anchors(&self) -> crate::Result<Vec<rampart_audit::PruneAnchor>> {
        let rows = sqlx::query("SELECT body FROM audit_anchors ORDER BY instance, seq")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body").map_err(StoreError::from_sqlx)?;
                serde_json::from_str(&body).map_err(|_| StoreError::Corrupt("prune anchor body"))
            })
            .collect()
    }

    /// For each instance, the newest event older than `before` (Unix microseconds): what a
    /// prune up to `before` would remove through.
    pub async fn audit_prune_points(&self, before: i64) -> crate::Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT e.body FROM audit_events e JOIN \
             (SELECT instance, MAX(seq) AS seq FROM audit_events WHERE ts_micros < $1 GROUP BY instance) p \
             ON e.instance = p.instance AND e.seq = p.seq ORDER BY e.instance",
        )
        .bind(before)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("body")
                    .map_err(StoreError::from_sqlx)
                    .and_then(|b| decode(&b))
            })
            .collect()
    }

    /// Removes an instance's events up to and including `anchor.seq`, storing the signed anchor
    /// in the same transaction so verification accepts the chain's new start. The only code path
    /// that deletes audit rows; on Postgres it sets `rampart.audit_prune` for this transaction so
    /// the append-only trigger lets the delete through.
    pub async fn audit_prune(&self, anchor: &rampart_audit::PruneAnchor) -> crate::Result<u64> {
        let body =
            serde_json::to_string(anchor).map_err(|_| StoreError::Corrupt("prune anchor"))?;
        let seq = i64::try_from(anchor.seq).unwrap_or(i64::MAX);
        let mut tx = self.pool().begin().await.map_err(StoreError::from_sqlx)?;
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT set_config('rampart.audit_prune', 'on', true)")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        sqlx::query("INSERT INTO audit_anchors (instance, seq, body) VALUES ($1, $2, $3) ON CONFLICT (instance, seq) DO NOTHING")
            .bind(&anchor.instance)
            .bind(seq)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let res = sqlx::query("DELETE FROM audit_events WHERE instance = $1 AND seq <= $2")
            .bind(&anchor.instance)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected())
    }
}
