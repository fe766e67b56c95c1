//! `POST /api/pseudonymize` `{"purpose","values":[…]}` → `{"pseudonyms":[…]}`, admin only
//! (behind [`crate::auth::require_admin`]: 401 without credentials, 403 audited for others).
//!
//! Every answer is audited first as `pseudonymized` with the purpose and the number of values
//! (never the values): pseudonymizing guessed identities is how a pseudonymized export would be
//! re-identified, so who did it, when and for what purpose is on record. No audit, no answer.
//!
//! At most [`MAX_VALUES`] values of at most [`MAX_VALUE_LEN`] bytes each; purposes as for
//! `rampart pseudonymize`. Without a pseudonymization key (production without
//! `RAMPART_PSEUDONYMIZATION_KEY`) the answer is 503 `pseudonymization_unavailable`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use rampart_audit::{EventKind, NewEvent, Outcome};

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::pseudonymize::{valid_purpose, MAX_VALUES, MAX_VALUE_LEN};
use crate::state::AppState;

/// The route, with the admin check around it.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new().route("/api/pseudonymize", post(pseudonymize)).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_admin),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    purpose: String,
    values: Vec<String>,
}

async fn pseudonymize(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    ApiJson(body): ApiJson<Body>,
) -> ApiResult<Json<Value>> {
    if !valid_purpose(&body.purpose) {
        return Err(ApiError::invalid_request("purpose must be 1-64 of a-z, 0-9, _, - and ."));
    }
    if body.values.len() > MAX_VALUES {
        return Err(ApiError::invalid_request(format!("at most {MAX_VALUES} values per request")));
    }
    if body.values.iter().any(|v| v.len() > MAX_VALUE_LEN) {
        return Err(ApiError::invalid_request(format!(
            "each value must be at most {MAX_VALUE_LEN} bytes"
        )));
    }
    let Some(key) = &state.pseudonym_key else {
        return Err(ApiError::unavailable(
            "pseudonymization_unavailable",
            "pseudonymization is not configured (RAMPART_PSEUDONYMIZATION_KEY)",
        ));
    };
    state
        .audit_required(
            &meta,
            NewEvent::new(EventKind::Pseudonymized, Outcome::Success)
                .by(&admin)
                .with(json!({"purpose": body.purpose, "count": body.values.len()})),
        )
        .await?;
    let pseudonyms: Vec<String> = body
        .values
        .iter()
        .map(|v| rampart_core::pseudonym::pseudonymize(key, &body.purpose, v))
        .collect();
    Ok(Json(json!({"pseudonyms": pseudonyms})))
}
