//! First-user setup: `GET /api/setup` and `POST /api/setup`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rampart_audit::{EventKind, Outcome};
use rampart_core::SecretString;
use rampart_store_sql::Role;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{create_user, CreateUser};
use rampart_audit::NewEvent;

use crate::audit::RequestMeta;
use crate::error::{ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/setup", get(needed).post(setup))
}

async fn needed(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let needed = state.db.setup_needed().await.map_err(|e| crate::error::store_error(&e))?;
    Ok(Json(json!({"needed": needed})))
}

/// `{"email","password"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Email.
    pub email: String,
    /// Password.
    pub password: SecretString,
}

fn already_done() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "setup_already_done", "setup has already been completed")
}

async fn setup(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = create_user(
        &state.db,
        &state.hasher,
        &state.password_policy,
        state.clock.now(),
        CreateUser {
            email: &body.email,
            password: &body.password,
            role: Role::Admin,
            first_user: true,
        },
    )
    .await?
    .ok_or_else(already_done)?;
    state
        .audit_required(
            &meta,
            NewEvent::new(EventKind::SetupCompleted, Outcome::Success)
                .user(&user.id)
                .email(&user.email)
                .resource("user", &user.id),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user}))))
}
