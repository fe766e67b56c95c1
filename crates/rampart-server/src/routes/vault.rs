//! `/api/vault/{provider}`: the caller's third-party OAuth tokens.
//!
//! - `PUT` stores them (encrypted at rest), `DELETE` forgets them (204 either way).
//! - `GET …/token` answers a valid access token, refreshing it first when it expires within
//!   the configured margin (single-flight across instances; 502 `token_refresh_failed` when the
//!   provider does not refresh it).
//!
//! Storing and deleting are audited (`vault_tokens_stored`, `vault_tokens_deleted`), as is a
//! refresh the provider refused (`vault_refresh_failed`); no event ever holds a token.
//!
//! Unknown providers answer 404 `not_found`. A `token_endpoint` in the body is accepted only
//! when it equals the configured one: refreshes always go to the operator's URL, never to one a
//! user chose, since they carry the client secret.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use rampart_core::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use rampart_audit::{EventKind, NewEvent, Outcome};

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{AuthenticatedUser, CurrentUser};
use crate::config::vault::ProviderSettings;
use crate::error::{store_error, ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::http::input::PathParam;
use crate::state::AppState;
use crate::vault::{Tokens, MAX_TOKEN_LEN};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/vault/{provider}", put(store).delete(forget))
        .route("/api/vault/{provider}/token", get(token))
}

fn provider<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a ProviderSettings> {
    state.vault.provider(name).ok_or_else(ApiError::not_found)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_at: Option<Value>,
    token_endpoint: Option<String>,
}

fn parse_expiry(v: Option<&Value>) -> ApiResult<Option<OffsetDateTime>> {
    let bad = || ApiError::invalid_request("expires_at must be an RFC 3339 time or Unix seconds");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(Some)
                .map_err(|_| bad())
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn check_token(name: &str, t: &SecretString) -> ApiResult<()> {
    let v = t.expose_secret();
    if v.is_empty() || v.len() > MAX_TOKEN_LEN || v.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(format!(
            "{name} must be 1-{MAX_TOKEN_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

fn same_endpoint(given: &str, configured: &str) -> bool {
    match (reqwest::Url::parse(given.trim()), reqwest::Url::parse(configured)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An audit event about `user`'s tokens for `provider` (never the tokens themselves).
fn vault_event(
    kind: EventKind,
    outcome: Outcome,
    user: &AuthenticatedUser,
    provider: &str,
) -> NewEvent {
    NewEvent::new(kind, outcome).by(user).resource("vault", provider)
}

async fn store(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(user): CurrentUser,
    PathParam(name): PathParam,
    ApiJson(body): ApiJson<PutBody>,
) -> ApiResult<StatusCode> {
    let p = provider(&state, &name)?;
    check_token("access_token", &body.access_token)?;
    if let Some(r) = &body.refresh_token {
        check_token("refresh_token", r)?;
    }
    if let Some(given) = &body.token_endpoint {
        if !same_endpoint(given, &p.token_endpoint) {
            return Err(ApiError::invalid_request(
                "token_endpoint must equal the provider's configured token endpoint",
            ));
        }
    }
    let tokens = Tokens {
        access_token: body.access_token,
        refresh_token: body.refresh_token,
        expires_at: parse_expiry(body.expires_at.as_ref())?,
    };
    crate::vault::store(&state, &user.user_id, &name, &tokens).await?;
    let ev =
        vault_event(EventKind::VaultTokensStored, Outcome::Success, &user, &name).with(json!({
            "refresh_token": tokens.refresh_token.is_some(),
            "expires_at": tokens.expires_at.map(crate::routes::auth::rfc3339),
        }));
    state.audit_required(&meta, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn token(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(user): CurrentUser,
    PathParam(name): PathParam,
) -> ApiResult<Response> {
    let p = provider(&state, &name)?;
    let found = match crate::vault::access_token(&state, &user.user_id, &name, p).await {
        Err(e) if e.code == "token_refresh_failed" => {
            let ev = vault_event(EventKind::VaultRefreshFailed, Outcome::Failure, &user, &name);
            state.audit(&meta, ev).await;
            return Err(e);
        }
        other => other?,
    };
    let (access, expires_at) = found.ok_or_else(ApiError::not_found)?;
    let body = json!({
        "access_token": access.expose_secret(),
        "expires_at": expires_at.map(crate::routes::auth::rfc3339),
    });
    Ok(no_store(Json(body).into_response()))
}

async fn forget(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(user): CurrentUser,
    PathParam(name): PathParam,
) -> ApiResult<StatusCode> {
    provider(&state, &name)?;
    let deleted = state.db.vault_delete(&user.user_id, &name).await.map_err(|e| store_error(&e))?;
    let ev = vault_event(EventKind::VaultTokensDeleted, Outcome::Success, &user, &name)
        .with(json!({"existed": deleted}));
    state.audit_required(&meta, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
