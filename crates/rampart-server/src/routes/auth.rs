//! `/api/auth/*`: login, logout, me, CSRF token, password change, own sessions, signup.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rampart_audit::{EventKind, Outcome};
use rampart_core::SecretString;
use rampart_ratelimit::LockScope;
use rampart_store_sql::{Role, User};
use serde::Deserialize;
use serde_json::{json, Value};

use super::setup::Credentials;
use crate::accounts::{create_user, hash_new_password, CreateUser};
use crate::http::input::PathParam;
use rampart_audit::NewEvent;

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{csrf_token, session_data, MaybeAuth, SessionUser};
use crate::error::{ApiError, ApiResult};
use crate::http::input::ApiJson;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/auth/csrf", get(csrf))
        .route("/api/auth/password", post(change_password))
        .route("/api/auth/sessions", get(list_sessions).delete(revoke_other_sessions))
        .route("/api/auth/sessions/{id}", delete(revoke_session))
        .route("/api/auth/signup", post(signup))
}

/// 401 `invalid_credentials`: one response for wrong password, unknown email and disabled
/// account alike.
pub fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid email or password")
}

fn no_store(res: &mut Response) {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Sets the session cookie for `id` on `res`.
pub fn set_session_cookie(state: &AppState, res: &mut Response, id: &rampart_session::SessionId) {
    res.headers_mut().append(header::SET_COOKIE, state.cookie.set_cookie(id));
    no_store(res);
}

/// Why a password check failed.
pub enum PasswordCheck {
    /// Right password for an enabled account.
    Ok(User),
    /// Locked out: 429 with `Retry-After`.
    Locked(ApiError),
    /// Wrong password, unknown email, or disabled account.
    Failed(Option<User>),
}

/// Verifies `email` / `password` with brute-force regulation, dummy work for unknown emails,
/// and an in-place upgrade of legacy or outdated hashes. Audits failures and lockouts.
pub async fn check_password(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
    password: &SecretString,
) -> ApiResult<PasswordCheck> {
    let account = state.account_key(email);
    let attempt = match state.regulator.begin(&account, meta.ip).await {
        Ok(attempt) => attempt,
        Err(locked) => return locked_out(state, meta, email, locked).await,
    };
    let found = state.db.user_by_email(email).await.map_err(|e| crate::error::store_error(&e))?;
    let verified = match &found {
        None => {
            state.hasher.dummy_verify(password.clone()).await.map_err(hash_error)?;
            None
        }
        Some(u) => Some(
            state
                .hasher
                .verify(password.clone(), u.password_hash.clone())
                .await
                .map_err(hash_error)?,
        ),
    };
    match (found, verified) {
        (Some(u), Some(v)) if v.matched && !u.user.disabled => {
            state.metrics.login("success");
            if let Err(e) = state.regulator.record_success(&account).await {
                tracing::warn!(error = %e, "could not reset login failures");
            }
            if v.needs_rehash {
                match state.hasher.hash(password.clone()).await {
                    Ok(h) => {
                        if let Err(e) =
                            state.db.set_password_hash(&u.user.id, &h, state.clock.now()).await
                        {
                            tracing::warn!(error = %crate::error::ErrorChain(&e), "could not upgrade a password hash");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not upgrade a password hash"),
                }
            }
            Ok(PasswordCheck::Ok(u.user))
        }
        (found, _) => {
            state.metrics.login("failure");
            if let Err(e) = state.regulator.fail(&account, meta.ip, attempt).await {
                tracing::warn!(error = %e, "could not count a login failure");
            }
            let user = found.map(|u| u.user);
            let mut entry = NewEvent::new(EventKind::LoginFailed, Outcome::Failure);
            // Input that names no account may be anything, a password typed into the wrong
            // field included: only its keyed pseudonym is recorded, never the text.
            entry = match &user {
                Some(u) => entry
                    .user(&u.id)
                    .email(&u.email)
                    .with(json!({"reason": if u.disabled { "disabled" } else { "bad_password" }})),
                None => entry.with(json!({
                    "email_hash": state.login_input_pseudonym(email),
                    "reason": "unknown_email",
                })),
            };
            state.audit_required(meta, entry).await?;
            Ok(PasswordCheck::Failed(user))
        }
    }
}

/// The answer to an attempt the regulator refused before verifying anything: 429
/// `login_locked` (audited), or 503 when the counters' store is down.
async fn locked_out(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
    locked: rampart_ratelimit::Locked,
) -> ApiResult<PasswordCheck> {
    let secs = locked.retry_after.as_secs().max(1);
    if locked.scope == LockScope::Unavailable {
        // The counters' store is down: refused (fail closed), but it is an outage, not a
        // lockout, so it is neither answered nor audited as one.
        return Err(ApiError::unavailable(
            "rate_limit_store_unavailable",
            "login attempts cannot be counted right now; retry shortly",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs)));
    }
    state.metrics.login("locked");
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::LoginLocked, Outcome::Denied).with(json!({
                "email_hash": state.login_input_pseudonym(email),
                "retry_after": secs,
            })),
        )
        .await?;
    let err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "login_locked",
        "too many failed logins; try again later",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs));
    Ok(PasswordCheck::Locked(err))
}

fn hash_error(e: rampart_password::PasswordError) -> ApiError {
    ApiError::from(crate::accounts::AccountError::Hash(e))
}

/// Starts a session for `user` after a successful login, revoking any session the request came
/// with (a new id whatever cookie came in). Returns the response with the cookie.
pub async fn start_session(
    state: &AppState,
    meta: &RequestMeta,
    prior: &crate::auth::Auth,
    user: &User,
    method: &str,
) -> ApiResult<(rampart_session::SessionId, rampart_session::SessionRecord)> {
    if let crate::auth::Auth::Session { active, .. } = prior {
        let _ = state.sessions.revoke(&active.key).await;
    }
    let (id, record) = state
        .sessions
        .create_with_data(
            &user.id,
            Some(meta.ip.to_string()),
            meta.user_agent.clone(),
            method,
            session_data(user),
        )
        .await
        .map_err(|e| session_error(&e))?;
    // The account may have been demoted, disabled or deleted while the password was checked:
    // that change ended the sessions the user had then, not this one. Read the account again
    // now that the session exists (a change after this read ends it like the others) and give
    // it up when the account is no longer what it was signed in as.
    let current = state.db.user_by_id(&user.id).await;
    if !matches!(&current, Ok(Some(u)) if !u.user.disabled && u.user.role == user.role) {
        let _ = state.sessions.revoke(&state.sessions.key_of(&id)).await;
        return Err(match current {
            Err(e) => crate::error::store_error(&e),
            Ok(_) => account_changed_while_signing_in(),
        });
    }
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::UserLogin, Outcome::Success)
                .user(&user.id)
                .email(&user.email)
                .session(&record.handle)
                .with(json!({"method": method})),
        )
        .await?;
    trim_sessions(state, meta, user, &id).await;
    Ok((id, record))
}

/// 409 `account_changed`: the account was changed (role, disabled, deleted) while it was being
/// signed in; the session made for it is already gone. Signing in again sees the change.
fn account_changed_while_signing_in() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "account_changed",
        "the account changed while signing in; sign in again",
    )
}

/// Ends the user's least recently used sessions beyond `RAMPART_SESSION_MAX_PER_USER`, never
/// the new one. A store error is logged: the login itself has succeeded.
async fn trim_sessions(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    new: &rampart_session::SessionId,
) {
    let max = state.config.session.max_per_user;
    let keep = state.sessions.key_of(new);
    match state.sessions.trim_for_user(&user.id, max, &keep).await {
        Ok(revoked) if revoked.is_empty() => {}
        Ok(revoked) => {
            let handles: Vec<&str> = revoked.iter().map(|r| r.handle.as_str()).collect();
            state
                .audit(
                    meta,
                    NewEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                        .user(&user.id)
                        .with(json!({
                            "reason": "session_limit",
                            "revoked": revoked.len(),
                            "sessions": handles,
                            "limit": max,
                        })),
                )
                .await;
        }
        Err(e) => {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "could not trim the user's sessions");
        }
    }
}

/// Maps a session store error.
pub fn session_error(e: &rampart_session::SessionError) -> ApiError {
    if e.is_unavailable() {
        tracing::error!(error = %crate::error::ErrorChain(e), "session store unavailable");
        crate::auth::store_unavailable()
    } else {
        ApiError::internal_from("session store error", e)
    }
}

async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    MaybeAuth(prior): MaybeAuth,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Response> {
    if body.password.len() > rampart_password::policy::MAX_LEN * 4 {
        return Err(invalid_credentials());
    }
    let user = match check_password(&state, &meta, &body.email, &body.password).await? {
        PasswordCheck::Ok(u) => u,
        PasswordCheck::Locked(e) => return Err(e),
        PasswordCheck::Failed(_) => return Err(invalid_credentials()),
    };
    let (id, _) = start_session(&state, &meta, &prior, &user, "password").await?;
    let token = csrf_token(&state, &id);
    let mut res = Json(json!({"user": user, "csrf_token": token.expose_secret()})).into_response();
    set_session_cookie(&state, &mut res, &id);
    Ok(res)
}

/// Ends the session: deleted on the server, cookie expired, browser data cleared.
pub async fn end_session(state: &AppState, meta: &RequestMeta, s: &SessionUser) -> ApiResult<()> {
    state.sessions.revoke(&s.active.key).await.map_err(|e| session_error(&e))?;
    state
        .audit_required(meta, NewEvent::new(EventKind::UserLogout, Outcome::Success).by(&s.user))
        .await
}

/// Headers that clear the session cookie and the browser's data for this origin.
pub fn logout_headers(state: &AppState) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::SET_COOKIE, state.cookie.clear_cookie());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("clear-site-data", HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""));
    h
}

async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    s: SessionUser,
) -> ApiResult<Response> {
    end_session(&state, &meta, &s).await?;
    Ok((StatusCode::NO_CONTENT, logout_headers(&state)).into_response())
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

async fn me(s: SessionUser) -> Json<Value> {
    let r = &s.active.record;
    Json(json!({
        "user": {
            "id": s.user.user_id,
            "email": s.user.email,
            "role": s.user.role,
            "disabled": false,
            "created_at": r.data.get("user_created_at").cloned().unwrap_or(Value::Null),
        },
        "session": {
            "id": r.handle,
            "created_at": rfc3339(r.created_at),
            "last_seen_at": rfc3339(r.last_seen_at),
            "idle_expires_at": rfc3339(s.active.idle_expires_at),
            "absolute_expires_at": rfc3339(r.absolute_expires_at),
        }
    }))
}

async fn csrf(State(state): State<AppState>, s: SessionUser) -> Json<Value> {
    Json(json!({"csrf_token": csrf_token(&state, &s.id).expose_secret()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: SecretString,
    new_password: SecretString,
}

/// Changes the caller's password: every other session is revoked and the current one rotated.
pub async fn apply_password_change(
    state: &AppState,
    meta: &RequestMeta,
    s: &SessionUser,
    current: &SecretString,
    new: &SecretString,
) -> ApiResult<rampart_session::SessionId> {
    let user = match check_password(state, meta, &s.user.email, current).await? {
        PasswordCheck::Ok(u) if u.id == s.user.user_id => u,
        PasswordCheck::Locked(e) => return Err(e),
        _ => return Err(invalid_credentials()),
    };
    let hash = hash_new_password(&state.hasher, &state.password_policy, &user.email, new).await?;
    state
        .db
        .set_password_hash(&user.id, &hash, state.clock.now())
        .await
        .map_err(|e| crate::error::store_error(&e))?;
    let revoked = state
        .sessions
        .revoke_for_user(&user.id, None, Some(&s.active.key))
        .await
        .map_err(|e| session_error(&e))?;
    let (id, _) = state.sessions.rotate(&s.active).await.map_err(|e| session_error(&e))?;
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::PasswordChanged, Outcome::Success).by(&s.user),
        )
        .await?;
    if revoked > 0 {
        state
            .audit_required(
                meta,
                NewEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                    .by(&s.user)
                    .with(json!({"revoked": revoked, "reason": "password_changed"})),
            )
            .await?;
    }
    Ok(id)
}

async fn change_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    s: SessionUser,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Response> {
    let id = apply_password_change(&state, &meta, &s, &body.current_password, &body.new_password)
        .await?;
    let mut res =
        Json(json!({"csrf_token": csrf_token(&state, &id).expose_secret()})).into_response();
    set_session_cookie(&state, &mut res, &id);
    Ok(res)
}

/// The sessions of `user_id` as the API lists them; `current` marks the caller's own.
pub async fn sessions_json(
    state: &AppState,
    user_id: &str,
    current: Option<&rampart_session::StoreKey>,
) -> ApiResult<Value> {
    let list = state.sessions.list_for_user(user_id).await.map_err(|e| session_error(&e))?;
    let items: Vec<Value> = list
        .iter()
        .map(|(k, r)| {
            json!({
                "id": r.handle,
                "created_at": rfc3339(r.created_at),
                "last_seen_at": rfc3339(r.last_seen_at),
                "ip": r.ip,
                "user_agent": r.user_agent,
                "current": current.is_some_and(|c| c == k),
            })
        })
        .collect();
    Ok(json!({"sessions": items}))
}

async fn list_sessions(State(state): State<AppState>, s: SessionUser) -> ApiResult<Json<Value>> {
    Ok(Json(sessions_json(&state, &s.user.user_id, Some(&s.active.key)).await?))
}

/// Revokes one of the caller's sessions by public handle: 404 if it is not theirs.
pub async fn revoke_own(
    state: &AppState,
    meta: &RequestMeta,
    s: &SessionUser,
    handle: &str,
) -> ApiResult<()> {
    if handle.len() > 64 {
        return Err(ApiError::not_found());
    }
    let n = state
        .sessions
        .revoke_for_user(&s.user.user_id, Some(handle), None)
        .await
        .map_err(|e| session_error(&e))?;
    if n == 0 {
        return Err(ApiError::not_found());
    }
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                .by(&s.user)
                .resource("session", handle)
                .with(json!({"revoked": n})),
        )
        .await
}

async fn revoke_session(
    State(state): State<AppState>,
    meta: RequestMeta,
    s: SessionUser,
    PathParam(handle): PathParam,
) -> ApiResult<StatusCode> {
    revoke_own(&state, &meta, &s, &handle).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every session of the caller but the current one.
pub async fn revoke_others(
    state: &AppState,
    meta: &RequestMeta,
    s: &SessionUser,
) -> ApiResult<u64> {
    let n = state
        .sessions
        .revoke_for_user(&s.user.user_id, None, Some(&s.active.key))
        .await
        .map_err(|e| session_error(&e))?;
    state
        .audit_required(
            meta,
            NewEvent::new(EventKind::SessionsRevoked, Outcome::Success)
                .by(&s.user)
                .with(json!({"revoked": n, "reason": "all_others"})),
        )
        .await?;
    Ok(n)
}

async fn revoke_other_sessions(
    State(state): State<AppState>,
    meta: RequestMeta,
    s: SessionUser,
) -> ApiResult<Json<Value>> {
    let n = revoke_others(&state, &meta, &s).await?;
    Ok(Json(json!({"revoked": n})))
}

async fn signup(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !state.config.signup_open {
        return Err(ApiError::not_found());
    }
    // A signup before first-user setup would take setup's place (any user marks it done) and
    // leave the instance without an admin: whoever reached a fresh instance first could block
    // its bootstrap. Signup never marks setup done itself unless it was done already.
    if state.db.setup_needed().await.map_err(|e| crate::error::store_error(&e))? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "setup_required",
            "sign-up opens once first-user setup is done",
        ));
    }
    let user = create_user(
        &state.db,
        &state.hasher,
        &state.password_policy,
        state.clock.now(),
        CreateUser {
            email: &body.email,
            password: &body.password,
            role: Role::User,
            first_user: false,
        },
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    state
        .audit_required(
            &meta,
            NewEvent::new(EventKind::UserCreated, Outcome::Success)
                .user(&user.id)
                .email(&user.email)
                .resource("user", &user.id)
                .with(json!({"via": "signup"})),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user}))))
}
