//! Who is calling: the session cookie or an API key (see [`crate::api_keys`]) is authenticated
//! once per request by [`middleware`], and handlers take the result through the extractors here.
//!
//! # Security
//! - Identity comes only from the server-side session (or API key), never from the body,
//!   query or headers of the request.
//! - A malformed, forged, expired or unknown cookie makes the request anonymous; it is never
//!   adopted, the cookie is cleared, and an audit event is written (rate-bounded).
//! - A session store outage makes requests that need a session fail with 503
//!   `session_store_unavailable`; it never turns into anonymous access to something protected.
//! - The session record carries the user's email and role as of login. Every change of role or
//!   disabled flag through the API revokes all of the user's sessions at once, so the cached
//!   role cannot outlive the change.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_audit::{EventKind, Outcome};
use rampart_session::{ActiveSession, CookieRead, LoadOutcome, SessionId};
use rampart_store_sql::Role;
use serde_json::json;
use time::OffsetDateTime;

use rampart_audit::NewEvent;

use crate::audit::{NewEventExt, RequestMeta};
use crate::error::ApiError;
use crate::state::AppState;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Session cookie.
    Session,
    /// `Authorization: Bearer rk_…`.
    ApiKey,
}

/// The authenticated caller, extracted once per request and passed into every function that
/// changes data, so each change is audited with it.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Public handle of the session (none for API keys).
    pub session_handle: Option<String>,
    /// When the user logged in (or the key was used).
    pub authenticated_at: OffsetDateTime,
    /// How.
    pub method: AuthMethod,
    /// The API key id, for API-key requests.
    pub api_key_id: Option<String>,
}

/// The request's authentication state (a request extension).
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credential, or one that did not authenticate.
    Anonymous,
    /// A live session.
    Session {
        /// The caller.
        user: AuthenticatedUser,
        /// The session.
        active: Box<ActiveSession>,
        /// The id from the cookie (for the CSRF token).
        id: Arc<SessionId>,
    },
    /// An API key.
    ApiKey(AuthenticatedUser),
    /// The session store did not answer.
    Unavailable,
}

impl Auth {
    /// The caller, if authenticated.
    pub fn user(&self) -> Option<&AuthenticatedUser> {
        match self {
            Auth::Session { user, .. } | Auth::ApiKey(user) => Some(user),
            _ => None,
        }
    }
}

/// Session data keys written at login.
const DATA_EMAIL: &str = "email";
const DATA_ROLE: &str = "role";

/// Session data for a new session of `user`.
pub fn session_data(user: &rampart_store_sql::User) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(DATA_EMAIL.into(), json!(user.email));
    m.insert(DATA_ROLE.into(), json!(user.role.as_str()));
    m.insert("user_created_at".into(), json!(crate::routes::auth::rfc3339(user.created_at)));
    m
}

fn user_of(active: &ActiveSession) -> Option<AuthenticatedUser> {
    let r = &active.record;
    Some(AuthenticatedUser {
        user_id: r.user_id.clone(),
        email: r.data.get(DATA_EMAIL)?.as_str()?.to_owned(),
        role: Role::parse(r.data.get(DATA_ROLE)?.as_str()?)?,
        session_handle: Some(r.handle.clone()),
        authenticated_at: r.created_at,
        method: AuthMethod::Session,
        api_key_id: None,
    })
}

/// Whether the session's account still exists, is enabled and has the role the session holds.
async fn account_unchanged(
    state: &AppState,
    user: &AuthenticatedUser,
) -> Result<bool, rampart_store_sql::StoreError> {
    Ok(state
        .db
        .user_by_id(&user.user_id)
        .await?
        .is_some_and(|u| !u.user.disabled && u.user.role == user.role))
}

/// The CSRF token of a session id.
pub fn csrf_token(state: &AppState, id: &SessionId) -> rampart_core::SecretString {
    rampart_protect::csrf::csrf_token_for(&state.keyring, id.expose_bytes())
}

/// Authenticates the request and records the outcome as the [`Auth`] extension.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = state.clock.now();
    let mut clear_cookie = false;
    // A presented `rk_` key decides the request: a bad one is refused, never replaced by the
    // cookie, and a good one means the cookie is not read at all. The audit context of the
    // request is built only where an event is written.
    let key_user = if req.headers().contains_key(header::AUTHORIZATION) {
        let meta = RequestMeta::from_request(&req);
        match crate::api_keys::authenticate_request(&state, &meta, req.headers()).await {
            Ok(u) => u,
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let cookie =
        if key_user.is_some() { CookieRead::None } else { state.cookie.read(req.headers()) };
    let auth = match cookie {
        CookieRead::None => Auth::Anonymous,
        CookieRead::Malformed => {
            clear_cookie = true;
            state
                .audit_bounded(
                    &RequestMeta::from_request(&req),
                    NewEvent::new(EventKind::InvalidToken, Outcome::Failure)
                        .with(json!({"reason": "malformed_cookie"})),
                )
                .await;
            Auth::Anonymous
        }
        CookieRead::Valid(id) => match state.sessions.load(&id).await {
            Ok(LoadOutcome::Active(active)) => match user_of(&active) {
                // Touched by this load (at most once per touch interval): the account is read
                // again, so a change made where the session store is out of reach (the
                // command line beside a server with in-memory sessions) ends the session
                // within one interval.
                Some(user) if active.record.last_seen_at >= started => {
                    match account_unchanged(&state, &user).await {
                        Ok(true) => {
                            Auth::Session { user, active: Box::new(active), id: Arc::new(id) }
                        }
                        Ok(false) => {
                            clear_cookie = true;
                            let _ = state.sessions.revoke(&active.key).await;
                            Auth::Anonymous
                        }
                        Err(e) => {
                            tracing::error!(error = %crate::error::ErrorChain(&e), "database unavailable while checking a session's account");
                            Auth::Unavailable
                        }
                    }
                }
                Some(user) => Auth::Session { user, active: Box::new(active), id: Arc::new(id) },
                None => {
                    clear_cookie = true;
                    let _ = state.sessions.revoke(&active.key).await;
                    Auth::Anonymous
                }
            },
            Ok(LoadOutcome::ExpiredIdle(record)) => {
                clear_cookie = true;
                state
                    .audit(
                        &RequestMeta::from_request(&req),
                        NewEvent::new(EventKind::SessionExpiredIdle, Outcome::Success)
                            .user(&record.user_id)
                            .session(&record.handle),
                    )
                    .await;
                Auth::Anonymous
            }
            Ok(LoadOutcome::ExpiredAbsolute(record)) => {
                clear_cookie = true;
                state
                    .audit(
                        &RequestMeta::from_request(&req),
                        NewEvent::new(EventKind::SessionExpiredMaxAge, Outcome::Success)
                            .user(&record.user_id)
                            .session(&record.handle),
                    )
                    .await;
                Auth::Anonymous
            }
            Ok(_) => {
                clear_cookie = true;
                state
                    .audit_bounded(
                        &RequestMeta::from_request(&req),
                        NewEvent::new(EventKind::InvalidToken, Outcome::Failure)
                            .with(json!({"reason": "unknown_session"})),
                    )
                    .await;
                Auth::Anonymous
            }
            Err(e) => {
                tracing::error!(error = %crate::error::ErrorChain(&e), "session store unavailable");
                Auth::Unavailable
            }
        },
    };
    let auth = key_user.map_or(auth, Auth::ApiKey);
    // The token is only compared on unsafe methods; safe requests skip computing it.
    let unsafe_method = rampart_protect::csrf::CsrfPolicy::is_checked_method(req.method());
    let csrf = rampart_protect::csrf::CsrfContext {
        expected_token: match &auth {
            Auth::Session { id, .. } if unsafe_method => Some(csrf_token(&state, id)),
            _ => None,
        },
        api_key: matches!(auth, Auth::ApiKey(_)),
    };
    let authenticated = auth.user().is_some();
    let caller = auth.user().cloned();
    // Kept for the refusals below, as shared handles: most requests are refused by nothing.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let ip = crate::audit::client_ip(req.extensions());
    let user_agent = req.headers().get(header::USER_AGENT).cloned();
    req.extensions_mut().insert(csrf);
    req.extensions_mut().insert(auth);
    let mut res = next.run(req).await;
    let csrf_rejection = res.extensions().get::<rampart_protect::csrf::CsrfRejection>().cloned();
    let rate_limited = res.extensions().get::<rampart_ratelimit::RateLimited>().cloned();
    if csrf_rejection.is_some() || rate_limited.is_some() {
        let meta = RequestMeta::from_parts(
            ip,
            user_agent.as_ref(),
            crate::http::request_id::current_request_id(),
        );
        let path = crate::http::loggable_path(uri.path());
        let rejections = (csrf_rejection, rate_limited);
        record_rejections(&state, &meta, rejections, caller.as_ref(), &method, &path).await;
    }
    if authenticated {
        res.extensions_mut().insert(rampart_protect::headers::Authenticated);
    }
    if clear_cookie && !res.headers().contains_key(header::SET_COOKIE) {
        res.headers_mut().insert(header::SET_COOKIE, state.cookie.clear_cookie());
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Audits refusals made by the CSRF and rate-limit layers (found in the response extensions),
/// bounded so a flood cannot flood the log.
async fn record_rejections(
    state: &AppState,
    meta: &RequestMeta,
    (csrf_rejection, rate_limited): (
        Option<rampart_protect::csrf::CsrfRejection>,
        Option<rampart_ratelimit::RateLimited>,
    ),
    caller: Option<&AuthenticatedUser>,
    method: &axum::http::Method,
    path: &str,
) {
    if let Some(rej) = csrf_rejection {
        state.metrics.csrf_rejected();
        let mut ev = NewEvent::new(EventKind::CsrfRejected, Outcome::Denied).with(json!({
            "reason": rej.reason.as_str(),
            "origin": rej.origin_seen,
            "method": method.as_str(),
            "path": path,
        }));
        if let Some(u) = caller {
            ev = ev.by(u);
        }
        let key = format!("csrf|{}|{}", meta.ip_bucket(), rej.reason.as_str());
        state.audit_bounded_key(meta, &key, ev).await;
    }
    if let Some(rl) = rate_limited {
        state.metrics.rate_limited();
        let mut ev = rate_limited_event(&rl, method, path);
        if let Some(u) = caller {
            ev = ev.by(u);
        }
        let key = format!("rl|{}", rl.key);
        state.audit_bounded_key(meta, &key, ev).await;
    }
}

/// The `rate_limited` event of a refusal. `bucket` is the limiter's key
/// (`rl:{rule}:{kind}:{value}`, the value being a client address or /64, a user id, an API
/// key's public id, or a route and one of those), which holds no secret. It is not named
/// `*key*`: the audit log drops details whose names look secret.
fn rate_limited_event(
    rl: &rampart_ratelimit::RateLimited,
    method: &axum::http::Method,
    path: &str,
) -> NewEvent {
    NewEvent::new(EventKind::RateLimited, Outcome::Denied).with(json!({
        "rule": rl.rule,
        "bucket": rl.key,
        "method": method.as_str(),
        "path": path,
    }))
}

fn auth_of(parts: &Parts) -> Auth {
    parts.extensions.get::<Auth>().cloned().unwrap_or(Auth::Anonymous)
}

/// Any authenticated caller (session or API key): 401 otherwise, 503 if the store is down.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub AuthenticatedUser);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match auth_of(parts) {
            Auth::Session { user, .. } | Auth::ApiKey(user) => Ok(CurrentUser(user)),
            Auth::Unavailable => Err(store_unavailable()),
            Auth::Anonymous => Err(ApiError::unauthenticated()),
        }
    }
}

/// A caller authenticated by a session cookie (for endpoints about the session itself).
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The caller.
    pub user: AuthenticatedUser,
    /// The session.
    pub active: ActiveSession,
    /// The cookie's id.
    pub id: Arc<SessionId>,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match auth_of(parts) {
            Auth::Session { user, active, id } => Ok(SessionUser { user, active: *active, id }),
            Auth::Unavailable => Err(store_unavailable()),
            Auth::ApiKey(_) | Auth::Anonymous => Err(ApiError::unauthenticated()),
        }
    }
}

/// The request's [`Auth`] as it is (never rejects).
#[derive(Debug, Clone)]
pub struct MaybeAuth(pub Auth);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuth {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeAuth(auth_of(parts)))
    }
}

/// 503 `session_store_unavailable`.
pub fn store_unavailable() -> ApiError {
    ApiError::unavailable(
        "session_store_unavailable",
        "the session store is unavailable; retry shortly",
    )
}

/// Requires an admin for everything it wraps: 401 without a session, 403 (audited as
/// `access_denied`) for other roles. Applied to the whole `/api/admin` tree, unknown paths
/// included, so new admin routes are denied by default.
pub async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth = req.extensions().get::<Auth>().cloned().unwrap_or(Auth::Anonymous);
    match &auth {
        Auth::Unavailable => Err(store_unavailable()),
        Auth::Anonymous => Err(ApiError::unauthenticated()),
        Auth::Session { user, .. } | Auth::ApiKey(user) => {
            if user.role == Role::Admin {
                Ok(next.run(req).await)
            } else {
                let meta = RequestMeta::from_request(&req);
                // Nested under `/api/admin`, the request's own URI has the prefix stripped: record
                // the path the client asked for.
                let full = req
                    .extensions()
                    .get::<axum::extract::OriginalUri>()
                    .map_or_else(|| req.uri().path(), |u| u.0.path());
                let path = crate::http::loggable_path(full);
                state
                    .audit(
                        &meta,
                        NewEvent::new(EventKind::AccessDenied, Outcome::Denied)
                            .by(user)
                            .with(json!({"path": path, "method": req.method().as_str()})),
                    )
                    .await;
                Err(ApiError::forbidden())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_event_records_the_bucket_under_a_name_the_audit_log_keeps() {
        let rl = rampart_ratelimit::RateLimited {
            rule: "login".into(),
            key: "rl:login:ip:203.0.113.7".into(),
        };
        let ev = rate_limited_event(&rl, &axum::http::Method::POST, "/api/auth/login");
        let details = ev.details();
        assert_eq!(details.get("bucket"), Some(&json!("rl:login:ip:203.0.113.7")));
        assert_eq!(details.get("rule"), Some(&json!("login")));
        assert_eq!(details.get("method"), Some(&json!("POST")));
        assert_eq!(details.get("path"), Some(&json!("/api/auth/login")));
        // A secret-looking name would have been dropped (with a WARN): none is used.
        assert_eq!(details.len(), 4, "{details:?}");
        assert!(details.keys().all(|k| !rampart_audit::is_secret_key(k)), "{details:?}");
    }
}
