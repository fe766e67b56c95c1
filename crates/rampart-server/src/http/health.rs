//! `GET /healthz` (the process answers) and `GET /readyz` (its dependencies answer).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

/// The health routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let limit = Duration::from_secs(1);
    let mut failing = Vec::new();
    let db_ok = matches!(tokio::time::timeout(limit, state.db.ping()).await, Ok(Ok(())));
    if !db_ok {
        failing.push("database");
    }
    if state.config.redis_url.is_some() {
        let ok = match &state.redis {
            Some(r) => r.ping().await.is_ok(),
            None => false,
        };
        if !ok {
            failing.push("redis");
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failing": failing})),
        )
    }
}
