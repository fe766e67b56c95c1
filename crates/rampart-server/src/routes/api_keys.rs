//! `/api/keys`: list, create and delete API keys. Keys are shared resources: any authenticated
//! caller may manage them, and every change is audited with who made it and the key id.
//!
//! The full key is in the creation response only (with `Cache-Control: no-store`); listings
//! show its public prefix.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use rampart_audit::EventKind;
use rampart_store_sql::{ApiKeyRecord, NewApiKey, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_keys::{current_key_id, display_prefix, generate, hash, key_event};
use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::CurrentUser;
use crate::error::{store_error, ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::http::input::PathParam;
use crate::state::AppState;

/// Longest key name, in characters.
pub const MAX_NAME_LEN: usize = 100;
/// Longest lifetime, in days.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/keys", get(list).post(create)).route("/api/keys/{id}", delete(remove))
}

fn key_json(k: &ApiKeyRecord) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or_else(|_| json!({}));
    v["prefix"] = json!(display_prefix(&k.id));
    v
}

async fn list(State(state): State<AppState>, _caller: CurrentUser) -> ApiResult<Json<Value>> {
    let keys = state.db.list_api_keys().await.map_err(|e| store_error(&e))?;
    Ok(Json(json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    expires_in_days: Option<u32>,
}

async fn create(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> ApiResult<Response> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_request(format!(
            "name must be 1-{MAX_NAME_LEN} characters without control characters"
        )));
    }
    if body.expires_in_days.is_some_and(|d| !(1..=MAX_EXPIRES_IN_DAYS).contains(&d)) {
        return Err(ApiError::invalid_request(format!(
            "expires_in_days must be between 1 and {MAX_EXPIRES_IN_DAYS}"
        )));
    }
    // Bounds the table and every listing. Checked before the insert, so creations racing each
    // other may pass the limit by as many as run at once; it is a bound, not a quota.
    let limit = state.config.limits.api_key_limit;
    let count = state.db.count_api_keys().await.map_err(|e| store_error(&e))?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= limit {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api_key_limit",
            format!("at most {limit} API keys may exist; delete one first"),
        ));
    }
    let now = state.clock.now();
    let expires_at =
        body.expires_in_days.map(|d| now + std::time::Duration::from_secs(u64::from(d) * 86_400));
    let (generated, record) = loop {
        let generated = generate();
        let new = NewApiKey {
            id: generated.id.clone(),
            name: name.to_owned(),
            key_hash: hash(&state, generated.key.expose_secret()),
            hash_key_id: current_key_id(&state),
            created_by: user.user_id.clone(),
            expires_at,
        };
        match state.db.create_api_key(&new, now).await {
            Ok(record) => break (generated, record),
            // A 64-bit id collision: draw again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(store_error(&e)),
        }
    };
    let ev = key_event(EventKind::ApiKeyCreated, &user, &record.id).with(json!({
        "name": record.name,
        "expires_at": record.expires_at.map(crate::routes::auth::rfc3339),
    }));
    if let Err(e) = state.audit_required(&meta, ev).await {
        // Unrecorded keys must not exist; this one was never shown to anyone.
        let _ = state.db.delete_api_key(&record.id).await;
        return Err(e);
    }
    let mut body = key_json(&record);
    body["key"] = json!(generated.key.expose_secret());
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn remove(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(user): CurrentUser,
    PathParam(id): PathParam,
) -> ApiResult<StatusCode> {
    let record = state
        .db
        .api_key_by_id(&id)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(ApiError::not_found)?;
    if !state.db.delete_api_key(&id).await.map_err(|e| store_error(&e))? {
        return Err(ApiError::not_found());
    }
    state
        .audit_required(
            &meta,
            key_event(EventKind::ApiKeyDeleted, &user, &id)
                .with(json!({"name": record.name, "created_by": record.created_by})),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
