//! Pages for a signed-in user: sign out, change password, review and revoke sessions.
//!
//! # Security considerations
//! - Every POST here is checked by the CSRF layer: origin, then the session's token in the
//!   `csrf_token` field the pages write into each form. Signing out is POST only; `GET
//!   /logout` shows a confirmation form, so a link or image cannot sign anyone out.
//! - Only a session cookie opens these pages (an API key does not); anyone else is sent to the
//!   login page with a safe `return_to`.
//! - A session is revoked by its public handle and only among the caller's own sessions.
//! - Changing the password signs out every other session and rotates the current one.

use axum::extract::rejection::FormRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use rampart_core::SecretString;
use rampart_protect::headers::CspNonce;
use serde::Deserialize;

use super::return_to::safe_return_to;
use super::{esc, hidden, html, layout, message, see_other, to_login, unavailable};
use crate::audit::RequestMeta;
use crate::auth::{csrf_token, Auth, MaybeAuth, SessionUser};
use crate::error::ApiError;
use crate::routes::auth::{
    apply_password_change, end_session, logout_headers, revoke_others, revoke_own, rfc3339,
    set_session_cookie,
};
use crate::state::AppState;

/// The signed-in session, or the response to send instead (303 to login, or 503).
fn session(auth: Auth, path: &str, nonce: Option<&CspNonce>) -> Result<SessionUser, Box<Response>> {
    match auth {
        Auth::Session { user, active, id } => Ok(SessionUser { user, active: *active, id }),
        Auth::Unavailable => Err(Box::new(unavailable(nonce))),
        Auth::Anonymous | Auth::ApiKey(_) => Err(Box::new(to_login(path))),
    }
}

fn token_field(state: &AppState, s: &SessionUser) -> String {
    hidden("csrf_token", csrf_token(state, &s.id).expose_secret())
}

/// The navigation of signed-in pages, with a sign-out button.
fn nav(state: &AppState, s: &SessionUser) -> String {
    format!(
        "<nav aria-label=\"Account\"><span>Signed in as <strong>{}</strong></span>\
<a href=\"/account/sessions\">Sessions</a><a href=\"/account/password\">Password</a>\
<form method=\"post\" action=\"/logout\">{}<button class=\"link\" type=\"submit\">Sign out</button>\
</form></nav>",
        esc(&s.user.email),
        token_field(state, s)
    )
}

fn nonce_of(n: Option<Extension<CspNonce>>) -> Option<CspNonce> {
    n.map(|e| e.0)
}

/// `GET /logout`: a confirmation form (signing out is POST only).
pub async fn logout_page(
    State(state): State<AppState>,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
) -> Response {
    let nonce = nonce_of(nonce);
    let body = match session(auth, "/logout", nonce.as_ref()) {
        Ok(s) => format!(
            "<h1>Sign out</h1><p>You are signed in as <strong>{}</strong>.</p>\
<form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Sign out</button></form>\
<p><a href=\"/\">Cancel</a></p>",
            esc(&s.user.email),
            token_field(&state, &s)
        ),
        Err(_) => "<h1>Signed out</h1><p>You are not signed in.</p>\
<p><a href=\"/login\">Sign in</a></p>"
            .to_owned(),
    };
    html(StatusCode::OK, layout(nonce.as_ref(), "Sign out", "", &body))
}

/// The form of `POST /logout`.
#[derive(Deserialize)]
pub struct LogoutForm {
    /// Where to go afterwards (default the login page).
    pub return_to: Option<String>,
}

/// `POST /logout`: ends the session and answers 303 (to `return_to` if safe, else `/login`),
/// with `Clear-Site-Data`.
pub async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let nonce = nonce_of(nonce);
    let target = form
        .ok()
        .and_then(|f| f.0.return_to)
        .and_then(|t| safe_return_to(&t))
        .unwrap_or_else(|| "/login".to_owned());
    let s = match session(auth, "/", nonce.as_ref()) {
        Ok(s) => s,
        Err(_) => return see_other(&target),
    };
    if let Err(e) = end_session(&state, &meta, &s).await {
        return failure(&state, nonce.as_ref(), &s, "Sign out", &e);
    }
    let mut res = see_other(&target);
    res.headers_mut().extend(logout_headers(&state));
    res
}

fn failure(
    state: &AppState,
    nonce: Option<&CspNonce>,
    s: &SessionUser,
    title: &str,
    e: &ApiError,
) -> Response {
    let body = format!("{}<h1>{}</h1>{}", nav(state, s), esc(title), message(&e.message, true));
    let mut res = html(e.status, layout(nonce, title, "", &body));
    for (k, v) in &e.headers {
        res.headers_mut().insert(k.clone(), v.clone());
    }
    res
}

/// Query of the account pages: what just happened.
#[derive(Deserialize, Default)]
pub struct DoneQuery {
    /// `changed` after a password change.
    pub changed: Option<String>,
    /// How many sessions were just revoked.
    pub revoked: Option<u64>,
}

fn password_form(
    state: &AppState,
    nonce: Option<&CspNonce>,
    s: &SessionUser,
    status: StatusCode,
    notice: Option<(&str, bool)>,
) -> Response {
    let note = notice.map(|(t, e)| message(t, e)).unwrap_or_default();
    let min = state.config.password.min_length;
    let body = format!(
        "{}<h1>Change password</h1>{note}\
<form method=\"post\" action=\"/account/password\">{}\
<label for=\"current_password\">Current password</label>\
<input id=\"current_password\" name=\"current_password\" type=\"password\" \
autocomplete=\"current-password\" required>\
<label for=\"new_password\">New password</label>\
<input id=\"new_password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" \
minlength=\"{min}\" aria-describedby=\"new_password_hint\" required>\
<p id=\"new_password_hint\" class=\"hint\">At least {min} characters. A long passphrase is best.</p>\
<label for=\"confirm_password\">Repeat the new password</label>\
<input id=\"confirm_password\" name=\"confirm_password\" type=\"password\" \
autocomplete=\"new-password\" required>\
<button type=\"submit\">Change password</button></form>\
<p class=\"hint\">Changing your password signs out all your other sessions.</p>",
        nav(state, s),
        token_field(state, s)
    );
    html(status, layout(nonce, "Change password", "", &body))
}

/// `GET /account/password`.
pub async fn password_page(
    State(state): State<AppState>,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let nonce = nonce_of(nonce);
    let s = match session(auth, "/account/password", nonce.as_ref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let done = query.is_ok_and(|q| q.0.changed.is_some());
    let notice =
        done.then_some(("Your password was changed. Your other sessions were signed out.", false));
    password_form(&state, nonce.as_ref(), &s, StatusCode::OK, notice)
}

/// The form of `POST /account/password`.
#[derive(Deserialize)]
pub struct PasswordForm {
    /// The current password.
    pub current_password: SecretString,
    /// The new password.
    pub new_password: SecretString,
    /// The new password again.
    pub confirm_password: SecretString,
}

/// `POST /account/password`: 303 back to the page on success (with the rotated session
/// cookie), the form with the reason otherwise.
pub async fn change_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let nonce = nonce_of(nonce);
    let nonce = nonce.as_ref();
    let s = match session(auth, "/account/password", nonce) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(Form(f)) = form else {
        let text = "Please fill in every field.";
        return password_form(&state, nonce, &s, StatusCode::BAD_REQUEST, Some((text, true)));
    };
    if !rampart_core::ct::ct_eq(
        f.new_password.expose_secret().as_bytes(),
        f.confirm_password.expose_secret().as_bytes(),
    ) {
        let text = "The new passwords do not match.";
        return password_form(&state, nonce, &s, StatusCode::BAD_REQUEST, Some((text, true)));
    }
    match apply_password_change(&state, &meta, &s, &f.current_password, &f.new_password).await {
        Ok(id) => {
            let mut res = see_other("/account/password?changed=1");
            set_session_cookie(&state, &mut res, &id);
            res
        }
        Err(e) => {
            let text = if e.code == "invalid_credentials" {
                "The current password is incorrect."
            } else {
                e.message.as_str()
            };
            let mut res = password_form(&state, nonce, &s, e.status, Some((text, true)));
            for (k, v) in &e.headers {
                res.headers_mut().insert(k.clone(), v.clone());
            }
            res
        }
    }
}

fn when(t: time::OffsetDateTime) -> String {
    let text = rfc3339(t);
    // 2030-01-02T03:04:05.123Z -> 2030-01-02 03:04 UTC
    match (text.get(..10), text.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => text,
    }
}

async fn sessions_view(
    state: &AppState,
    nonce: Option<&CspNonce>,
    s: &SessionUser,
    status: StatusCode,
    notice: Option<(&str, bool)>,
) -> Response {
    let list = match state.sessions.list_for_user(&s.user.user_id).await {
        Ok(l) => l,
        Err(e) => {
            let err = crate::routes::auth::session_error(&e);
            return failure(state, nonce, s, "Your sessions", &err);
        }
    };
    let token = token_field(state, s);
    let mut rows = String::new();
    let mut others = 0usize;
    for (key, r) in &list {
        let current = *key == s.active.key;
        let action = if current {
            "<strong>This session</strong>".to_owned()
        } else {
            others += 1;
            format!(
                "<form method=\"post\" action=\"/account/sessions\">{token}{}{}\
<button class=\"link\" type=\"submit\">Sign out<span class=\"hint\"> this session</span></button></form>",
                hidden("action", "revoke"),
                hidden("session", &r.handle)
            )
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(r.user_agent.as_deref().unwrap_or("unknown")),
            esc(r.ip.as_deref().unwrap_or("unknown")),
            when(r.created_at),
            when(r.last_seen_at),
        ));
    }
    let all_others = if others > 0 {
        format!(
            "<form method=\"post\" action=\"/account/sessions\">{token}{}\
<button type=\"submit\">Sign out all other sessions</button></form>",
            hidden("action", "revoke_others")
        )
    } else {
        "<p>No other sessions are signed in.</p>".to_owned()
    };
    let note = notice.map(|(t, e)| message(t, e)).unwrap_or_default();
    let body = format!(
        "{}<h1>Your sessions</h1>{note}\
<table><caption class=\"hint\">Where your account is signed in</caption>\
<thead><tr><th scope=\"col\">Browser</th><th scope=\"col\">IP address</th>\
<th scope=\"col\">Signed in</th><th scope=\"col\">Last active</th><th scope=\"col\">\
<span class=\"hint\">Action</span></th></tr></thead><tbody>{rows}</tbody></table>{all_others}",
        nav(state, s)
    );
    html(status, layout(nonce, "Your sessions", "wide", &body))
}

/// `GET /account/sessions`.
pub async fn sessions_page(
    State(state): State<AppState>,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    query: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let nonce = nonce_of(nonce);
    let s = match session(auth, "/account/sessions", nonce.as_ref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let text = query.ok().and_then(|q| q.0.revoked).map(|n| match n {
        1 => "1 session was signed out.".to_owned(),
        n => format!("{n} sessions were signed out."),
    });
    let notice = text.as_deref().map(|t| (t, false));
    sessions_view(&state, nonce.as_ref(), &s, StatusCode::OK, notice).await
}

/// The form of `POST /account/sessions`.
#[derive(Deserialize)]
pub struct SessionsForm {
    /// `revoke` (with `session`) or `revoke_others`.
    pub action: String,
    /// The public handle of the session to revoke.
    pub session: Option<String>,
}

/// `POST /account/sessions`: revokes one session or all others, then 303 back.
pub async fn sessions_action(
    State(state): State<AppState>,
    meta: RequestMeta,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    form: Result<Form<SessionsForm>, FormRejection>,
) -> Response {
    let nonce = nonce_of(nonce);
    let nonce = nonce.as_ref();
    let s = match session(auth, "/account/sessions", nonce) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let form = form.ok().map(|f| f.0);
    let result = match form.as_ref().map(|f| (f.action.as_str(), f.session.as_deref())) {
        Some(("revoke", Some(handle))) => revoke_own(&state, &meta, &s, handle).await.map(|()| 1),
        Some(("revoke_others", _)) => revoke_others(&state, &meta, &s).await,
        _ => Err(ApiError::invalid_request("unknown action")),
    };
    match result {
        Ok(n) => see_other(&format!("/account/sessions?revoked={n}")),
        Err(e) => {
            let text = match e.code {
                "not_found" => "That session is no longer signed in.",
                "invalid_request" => "That action is not available.",
                _ => e.message.as_str(),
            };
            sessions_view(&state, nonce, &s, e.status, Some((text, true))).await
        }
    }
}
