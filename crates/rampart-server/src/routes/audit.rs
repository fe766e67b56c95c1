//! `GET /api/admin/audit` (query with filters and stable cursor paging) and
//! `GET /api/admin/audit/verify` (verify every stored chain). Admin only: mounted under
//! `/api/admin`.
//!
//! Reading the log is itself on record: every answered page and every verification is audited
//! as `audit_read` (the admin, what was read: the filter, whether a cursor was followed and how
//! many events came back, or the verification's outcome), after the read and before the answer.
//! When that event cannot be written the answer is 503 and nothing read is given out. The
//! event is never part of the answer it records; the next read sees it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use rampart_store_sql::{AuditCursor, AuditFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use rampart_audit::{EventKind, NewEvent, Outcome};

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The audit routes (relative to `/api/admin`).
pub fn admin_routes() -> Router<AppState> {
    Router::new().route("/audit", get(query)).route("/audit/verify", get(verify))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    event: Option<String>,
    user_id: Option<String>,
    ip: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn time_param(name: &str, v: Option<&str>) -> ApiResult<Option<i64>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(rampart_store_sql::to_micros)
                .map_err(|_| {
                    ApiError::invalid_request(format!("{name} must be an RFC 3339 timestamp"))
                })
        })
        .transpose()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

async fn query(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) =
        q.map_err(|_| ApiError::invalid_request("unknown or malformed query parameter"))?;
    if let Some(e) = q.event.as_deref().filter(|s| !s.is_empty()) {
        e.parse::<rampart_audit::EventKind>()
            .map_err(|_| ApiError::invalid_request("event is not a known event kind"))?;
    }
    if let Some(o) = q.outcome.as_deref().filter(|s| !s.is_empty()) {
        if !["success", "failure", "denied"].contains(&o) {
            return Err(ApiError::invalid_request("outcome must be success, failure or denied"));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_request("limit must be between 1 and 1000"));
    }
    let cursor = match non_empty(q.cursor) {
        None => None,
        Some(c) => Some(
            AuditCursor::decode(&c)
                .ok_or_else(|| ApiError::invalid_request("cursor is not valid"))?,
        ),
    };
    let filter = AuditFilter {
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        event: non_empty(q.event),
        user_id: non_empty(q.user_id),
        ip: non_empty(q.ip),
        outcome: non_empty(q.outcome),
    };
    let page = state
        .db
        .audit_page(&filter, cursor.as_ref(), limit)
        .await
        .map_err(|e| crate::error::store_error(&e))?;
    let read = json!({
        "what": "query",
        // As given, not as parsed: the record shows what the admin asked for.
        "filter": {
            "event": filter.event,
            "user_id": filter.user_id,
            "ip": filter.ip,
            "outcome": filter.outcome,
            "since": non_empty(q.since),
            "until": non_empty(q.until),
        },
        "limit": limit,
        "cursor": cursor.is_some(),
        "returned": page.events.len(),
    });
    state.audit_required(&meta, read_event(&admin, read)).await?;
    Ok(Json(json!({"events": page.events, "next_cursor": page.next.map(|c| c.encode())})))
}

async fn verify(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
) -> ApiResult<Json<Value>> {
    let report = crate::audit_store::verify(&state.db, &state.keyring, Vec::new(), |_| {})
        .await
        .map_err(|e| crate::error::store_error(&e))?;
    let read = json!({"what": "verify", "ok": report.ok, "checked": report.checked});
    state.audit_required(&meta, read_event(&admin, read)).await?;
    Ok(Json(
        serde_json::to_value(&report).map_err(|e| ApiError::internal_from("audit report", &e))?,
    ))
}

/// The `audit_read` event of `admin`'s read.
fn read_event(admin: &crate::auth::AuthenticatedUser, details: Value) -> NewEvent {
    NewEvent::new(EventKind::AuditRead, Outcome::Success).by(admin).with(details)
}
