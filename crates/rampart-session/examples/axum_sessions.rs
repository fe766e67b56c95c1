//! A small axum app with server-side sessions: `POST /login`, a protected `GET /me`,
//! `POST /logout`.
//!
//! Run with `cargo run -p rampart-session --example axum_sessions`, then:
//! `curl -c jar -X POST 'http://127.0.0.1:3000/login?user=alice'` and
//! `curl -b jar http://127.0.0.1:3000/me`.
//! The example serves plain HTTP on localhost, so it uses the non-`Secure` cookie; behind
//! HTTPS use `CookieConfig::for_origin_https(true)` (the default).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
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
use tokio_util::sync::CancellationToken;

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

async fn login(State(sessions): State<SessionManager>, Query(form): Query<Login>) -> Response {
    // A real app verifies a password here.
    match sessions.create(form.user, None, None, "password").await {
        Ok((id, _record)) => (SetSession::Start(id), "signed in\n").into_response(),
        Err(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn me(session: Session) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": session.record.user_id,
        "session": session.record.handle,
        "idle_expires_at": session.idle_expires_at.unix_timestamp(),
    }))
}

async fn logout(State(sessions): State<SessionManager>, session: Session) -> Response {
    match sessions.revoke(&session.key).await {
        Ok(_) => SetSession::End.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let clock = SystemClock::shared();
    let store = MemorySessionStore::new(DEFAULT_CAPACITY, clock.clone());
    let shutdown = CancellationToken::new();
    let sweeper = store.spawn_sweeper(Duration::from_secs(60), shutdown.clone());

    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let sessions = SessionManager::new(Arc::new(store), keyring, SessionTimeouts::default(), clock);
    let layer = SessionLayer::new(sessions.clone(), CookieConfig::for_origin_https(false));

    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .with_state(sessions)
        .layer(layer);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    shutdown.cancel();
    let _ = sweeper.await;
    Ok(())
}
