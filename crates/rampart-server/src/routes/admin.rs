//! `/api/admin/*`: user administration. Every route here (and every unknown path under it) is
//! behind [`crate::auth::require_admin`]: deny by default.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rampart_audit::{EventKind, Outcome};
use rampart_core::SecretString;
use rampart_store_sql::{KeepAdmin, Role, UserChange};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{create_user, CreateUser};
use crate::http::input::PathParam;
use rampart_audit::NewEvent;

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{AuthenticatedUser, CurrentUser};
use crate::error::{ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::routes::auth::{session_error, sessions_json};
use crate::state::AppState;

/// The admin routes, with the admin check around all of them.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{id}", axum::routing::patch(update_user).delete(delete_user))
        .route("/users/{id}/sessions", get(user_sessions).delete(revoke_user_sessions))
        .merge(crate::routes::audit::admin_routes())
        .fallback(|| async { ApiError::not_found() })
        // Set here, inside the admin check, so a wrong method is refused as unauthenticated or
        // forbidden first (the server-wide 405 fallback would otherwise bypass the check).
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_admin))
}

async fn list_users(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let users = state.db.list_users().await.map_err(|e| crate::error::store_error(&e))?;
    Ok(Json(json!({"users": users})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    password: SecretString,
    role: Role,
}

async fn add_user(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    ApiJson(body): ApiJson<NewUserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = create_user(
        &state.db,
        &state.hasher,
        &state.password_policy,
        state.clock.now(),
        CreateUser {
            email: &body.email,
            password: &body.password,
            role: body.role,
            first_user: false,
        },
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    state
        .audit_required(
            &meta,
            NewEvent::new(EventKind::UserCreated, Outcome::Success)
                .by(&admin)
                .resource("user", &user.id)
                .with(json!({"role": user.role.as_str()})),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    role: Option<Role>,
    disabled: Option<bool>,
}

fn last_admin() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_admin",
        "the last active admin cannot be demoted, disabled or deleted",
    )
}

/// Refuses, before any side effect, a change that would leave no active admin. Only a fast path:
/// the store re-checks atomically with the change itself (see [`rampart_store_sql::admins`]).
async fn guard_last_admin(
    state: &AppState,
    target: &rampart_store_sql::User,
    removes_admin: bool,
) -> ApiResult<()> {
    if removes_admin && target.role == Role::Admin && !target.disabled {
        let admins =
            state.db.count_active_admins().await.map_err(|e| crate::error::store_error(&e))?;
        if admins <= 1 {
            return Err(last_admin());
        }
    }
    Ok(())
}

/// The value of a change the store made only if it left an active admin.
fn kept_admin<T>(outcome: KeepAdmin<T>) -> ApiResult<T> {
    match outcome {
        KeepAdmin::Done(v) => Ok(v),
        KeepAdmin::NotFound => Err(ApiError::not_found()),
        KeepAdmin::LastAdmin => Err(last_admin()),
    }
}

async fn update_user(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    PathParam(id): PathParam,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<Value>> {
    // The check and the change are one transaction: two admins demoting or disabling each
    // other at the same moment cannot both succeed.
    let UserChange { before: target, after: updated } = kept_admin(
        state
            .db
            .update_user_keeping_admin(&id, patch.role, patch.disabled, state.clock.now())
            .await
            .map_err(|e| crate::error::store_error(&e))?,
    )?;
    let role_changes = updated.role != target.role;
    let disabled_changes = updated.disabled != target.disabled;
    // The role is cached in the user's sessions: end them all. Whenever a role is set or the
    // account disabled, changed or not, so a request retried after the session store failed
    // (the database already holding the new values) still ends the sessions.
    if patch.role.is_some() || patch.disabled == Some(true) {
        let revoked =
            state.sessions.revoke_for_user(&id, None, None).await.map_err(|e| session_error(&e))?;
        if role_changes {
            state
                .audit_required(
                    &meta,
                    NewEvent::new(EventKind::UserRoleChanged, Outcome::Success)
                        .by(&admin)
                        .resource("user", &id)
                        .with(json!({"from": target.role.as_str(), "to": updated.role.as_str()})),
                )
                .await?;
        }
        if disabled_changes {
            state
                .audit_required(
                    &meta,
                    NewEvent::new(EventKind::UserDisabled, Outcome::Success)
                        .by(&admin)
                        .resource("user", &id)
                        .with(json!({"disabled": updated.disabled})),
                )
                .await?;
        }
        if role_changes || disabled_changes || revoked > 0 {
            audit_revoked(&state, &meta, &admin, &id, revoked, "account_changed").await?;
        }
    }
    Ok(Json(json!({"user": updated})))
}

async fn delete_user(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    PathParam(id): PathParam,
) -> ApiResult<StatusCode> {
    let target = state
        .db
        .user_by_id(&id)
        .await
        .map_err(|e| crate::error::store_error(&e))?
        .ok_or_else(ApiError::not_found)?
        .user;
    guard_last_admin(&state, &target, true).await?;
    // Sessions end first, so a session store failure leaves the account in place for a retry.
    state.sessions.revoke_for_user(&id, None, None).await.map_err(|e| session_error(&e))?;
    // The authoritative check, in one transaction with the delete: an admin removed by a
    // concurrent request since the check above makes this one the last, and it is refused.
    let target = kept_admin(
        state.db.delete_user_keeping_admin(&id).await.map_err(|e| crate::error::store_error(&e))?,
    )?;
    // Again after the deletion: a login that read the account between the first revocation
    // and the deletion made a session that only this one ends.
    state.sessions.revoke_for_user(&id, None, None).await.map_err(|e| session_error(&e))?;
    state
        .audit_required(
            &meta,
            NewEvent::new(EventKind::UserDeleted, Outcome::Success)
                .by(&admin)
                .resource("user", &id)
                .with(json!({"email": target.email})),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_sessions(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> ApiResult<Json<Value>> {
    if state.db.user_by_id(&id).await.map_err(|e| crate::error::store_error(&e))?.is_none() {
        return Err(ApiError::not_found());
    }
    Ok(Json(sessions_json(&state, &id, None).await?))
}

async fn revoke_user_sessions(
    State(state): State<AppState>,
    meta: RequestMeta,
    CurrentUser(admin): CurrentUser,
    PathParam(id): PathParam,
) -> ApiResult<Json<Value>> {
    if state.db.user_by_id(&id).await.map_err(|e| crate::error::store_error(&e))?.is_none() {
        return Err(ApiError::not_found());
    }
    let n = state.sessions.revoke_for_user(&id, None, None).await.map_err(|e| session_error(&e))?;
    audit_revoked(&state, &meta, &admin, &id, n, "admin").await?;
    Ok(Json(json!({"revoked": n})))
}

/// Records that an admin ended `revoked` sessions of user `id`, and why.
async fn audit_revoked(
    state: &AppState,
    meta: &RequestMeta,
    admin: &AuthenticatedUser,
    id: &str,
    revoked: u64,
    reason: &str,
) -> ApiResult<()> {
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                .by(admin)
                .resource("user", id)
                .with(json!({"revoked": revoked, "reason": reason})),
        )
        .await
}
