//! `lib-memory`: an axum application that uses the workspace's `rampart-session` crate with its
//! memory store, the way an application embeds the library (see
//! `crates/rampart-session/examples/axum_sessions.rs`), and nothing else of Rampart.
//!
//! - `POST /login` creates a session for the benchmark user (no password check: the login flood
//!   and Argon2id are measured elsewhere) and sets the `rampart_session` cookie (204).
//! - `GET /api/auth/me` answers the same JSON shape as `plain` after the session layer loaded
//!   and checked the session (401 without one).
//!
//! So `lib-memory ÷ plain` is the cost of the session library on an authenticated request:
//! cookie parsing, the keyed store lookup, both timeout checks and the touch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rampart_core::{Keyring, MasterKey, SystemClock};
use rampart_session::memory::DEFAULT_CAPACITY;
use rampart_session::{
    CookieConfig, MemorySessionStore, Session, SessionLayer, SessionManager, SessionTimeouts,
    SetSession,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::servers::{rfc3339, serve, EMAIL, USER_CREATED_AT, USER_ID};

/// Starts the server on `addr` until SIGINT/SIGTERM.
pub(crate) fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let clock = SystemClock::shared();
        let store = MemorySessionStore::new(DEFAULT_CAPACITY, clock.clone());
        let shutdown = CancellationToken::new();
        let sweeper = store.spawn_sweeper(Duration::from_secs(60), shutdown.clone());
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        // Rampart's defaults: 30 minutes idle, 12 hours absolute, touch at most once a minute.
        let sessions =
            SessionManager::new(Arc::new(store), keyring, SessionTimeouts::default(), clock);
        let layer = SessionLayer::new(sessions.clone(), CookieConfig::for_origin_https(false));
        let app = Router::new()
            .route("/login", post(login))
            .route("/api/auth/me", get(me))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(sessions)
            .layer(layer);
        let served = serve(app, addr).await;
        shutdown.cancel();
        let _ = sweeper.await;
        served
    })
}

async fn login(State(sessions): State<SessionManager>) -> Response {
    let mut data = serde_json::Map::new();
    data.insert("email".into(), json!(EMAIL));
    data.insert("role".into(), json!("admin"));
    match sessions.create_with_data(USER_ID, None, None, "password", data).await {
        Ok((id, _record)) => (SetSession::Start(id), StatusCode::NO_CONTENT).into_response(),
        Err(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn me(session: Session) -> Json<Value> {
    let r = &session.record;
    let field = |k: &str| r.data.get(k).cloned().unwrap_or(Value::Null);
    Json(json!({
        "user": {
            "id": r.user_id,
            "email": field("email"),
            "role": field("role"),
            "disabled": false,
            "created_at": USER_CREATED_AT,
        },
        "session": {
            "id": r.handle,
            "created_at": rfc3339(r.created_at),
            "last_seen_at": rfc3339(r.last_seen_at),
            "idle_expires_at": rfc3339(session.idle_expires_at),
            "absolute_expires_at": rfc3339(r.absolute_expires_at),
        }
    }))
}
