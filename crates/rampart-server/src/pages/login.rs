//! `GET /login` and `POST /login`: the sign-in form.
//!
//! # Security considerations
//! - **Login CSRF.** A forged login would sign the victim into the attacker's account. The CSRF
//!   layer checks the origin of `POST /login` (Fetch Metadata, `Origin`, `Referer`). On top of
//!   that the form must carry a *login token*, a signed double-submit token: `GET /login` sets a
//!   random nonce in a cookie (`__Host-rampart_login` over https, `rampart_login` over plain
//!   http; `HttpOnly`, `SameSite=Strict`, 30 minutes) and writes
//!   `<expiry>.<HMAC(nonce, expiry)>` (HMAC-SHA256 under the CSRF subkey, domain-separated
//!   from session tokens) into the hidden `csrf_token` field. `POST /login` accepts only a
//!   field whose MAC matches the cookie's nonce and whose expiry has not passed. A cross-site
//!   attacker can neither read the field nor set a `__Host-` cookie. A missing or wrong token
//!   gets 403, a fresh form, and a (rate-bounded) `csrf_rejected` audit event.
//! - **One message.** A wrong password, an unknown email and a disabled account all show
//!   "Incorrect email or password." with 401, after the same regulation, dummy hashing and
//!   audit as `POST /api/auth/login`. A locked account or address shows 429 with
//!   `Retry-After`, whether or not the account exists.
//! - **Session fixation.** A successful login always starts a new session and revokes the
//!   one the request came with.
//! - The form is re-rendered with the email typed, never the password.

use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rampart_audit::{EventKind, NewEvent, Outcome};
use rampart_core::token::{b64url, b64url_decode, random_id};
use rampart_core::{Purpose, SecretString};
use rampart_protect::headers::CspNonce;
use serde::Deserialize;
use serde_json::json;

use super::return_to::safe_return_to;
use super::{esc, hidden, html, layout, message, see_other};
use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{Auth, MaybeAuth};
use crate::error::ApiError;
use crate::routes::auth::{check_password, set_session_cookie, start_session, PasswordCheck};
use crate::state::AppState;

/// How long a login form stays valid.
pub const LOGIN_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// Cookie name over https (`__Host-`: Secure, Path=/, no Domain: only this host can set it).
pub const SECURE_LOGIN_COOKIE: &str = "__Host-rampart_login";
/// Cookie name over plain http (development).
pub const PLAIN_LOGIN_COOKIE: &str = "rampart_login";

const NONCE_BYTES: usize = 32;
const MAC_LABEL: &[u8] = b"rampart login form\0";

/// Query of `GET /login`.
#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    /// Where to go after signing in.
    pub return_to: Option<String>,
}

/// The form of `POST /login`.
#[derive(Deserialize)]
pub struct LoginForm {
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Password.
    pub password: Option<SecretString>,
    /// The login token.
    #[serde(default)]
    pub csrf_token: String,
    /// Where to go after signing in.
    pub return_to: Option<String>,
}

fn cookie_name(state: &AppState) -> &'static str {
    if state.cookie.secure {
        SECURE_LOGIN_COOKIE
    } else {
        PLAIN_LOGIN_COOKIE
    }
}

fn cookie_attributes(state: &AppState, max_age: u64) -> String {
    let secure = if state.cookie.secure { "; Secure" } else { "" };
    format!("; HttpOnly; Path=/; SameSite=Strict{secure}; Max-Age={max_age}")
}

/// The nonce from the login cookie, when well-formed (one value, 43 base64url characters).
fn read_nonce(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(state);
    let mut found: Option<&str> = None;
    for h in headers.get_all(header::COOKIE) {
        let Ok(text) = h.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=') {
                if n.trim() == name {
                    if found.is_some_and(|f| f != v.trim()) {
                        return None;
                    }
                    found = Some(v.trim());
                }
            }
        }
    }
    found.filter(|v| b64url_decode(v).is_some_and(|b| b.len() == NONCE_BYTES)).map(str::to_owned)
}

fn mac_input(nonce: &str, expires: i64) -> Vec<u8> {
    let mut data = MAC_LABEL.to_vec();
    data.extend_from_slice(nonce.as_bytes());
    data.push(0);
    data.extend_from_slice(expires.to_string().as_bytes());
    data
}

/// The form token for `nonce`, valid until `expires` (Unix seconds).
pub fn login_token(state: &AppState, nonce: &str, expires: i64) -> String {
    let tag = state.keyring.mac(Purpose::Csrf, &mac_input(nonce, expires));
    format!("{expires}.{}", b64url(&tag))
}

/// Whether `token` is a live login token for `nonce` (constant-time MAC check, any key).
pub fn verify_login_token(state: &AppState, nonce: &str, token: &str) -> bool {
    let Some((exp, tag)) = token.split_once('.') else { return false };
    let Ok(expires) = exp.parse::<i64>() else { return false };
    let now = state.clock.now().unix_timestamp();
    let ttl = i64::try_from(LOGIN_TOKEN_TTL.as_secs()).unwrap_or(i64::MAX);
    if expires <= now || expires > now.saturating_add(ttl).saturating_add(60) {
        return false;
    }
    let Some(tag) = b64url_decode(tag) else { return false };
    state.keyring.verify_mac(Purpose::Csrf, &mac_input(nonce, expires), &tag)
}

/// The nonce to use (the cookie's, or a fresh one) and the `Set-Cookie` that (re)stores it.
fn issue(state: &AppState, headers: &HeaderMap) -> (String, HeaderValue) {
    let nonce = read_nonce(state, headers).unwrap_or_else(|| random_id(NONCE_BYTES));
    let text = format!(
        "{}={nonce}{}",
        cookie_name(state),
        cookie_attributes(state, LOGIN_TOKEN_TTL.as_secs())
    );
    let mut v = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    (nonce, v)
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    let text = format!("{}={}", cookie_name(state), cookie_attributes(state, 0));
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Renders the form with a fresh token (and cookie).
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    nonce: Option<&CspNonce>,
    status: StatusCode,
    email: &str,
    return_to: Option<&str>,
    notice: Option<(&str, bool)>,
) -> Response {
    let (login_nonce, cookie) = issue(state, headers);
    let ttl = i64::try_from(LOGIN_TOKEN_TTL.as_secs()).unwrap_or(1800);
    let token = login_token(state, &login_nonce, state.clock.now().unix_timestamp() + ttl);
    let target =
        return_to.and_then(safe_return_to).map(|t| hidden("return_to", &t)).unwrap_or_default();
    let note = notice.map(|(text, err)| message(text, err)).unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{note}\
<form method=\"post\" action=\"/login\">{}{target}\
<label for=\"email\">Email</label>\
<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus \
value=\"{}\">\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
        hidden("csrf_token", &token),
        esc(email)
    );
    let mut res = html(status, layout(nonce, "Sign in", "", &body));
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

/// `GET /login`: the form, or straight on to `return_to` when already signed in.
pub async fn show(
    State(state): State<AppState>,
    MaybeAuth(auth): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    query: Result<Query<LoginQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let return_to = query.ok().and_then(|q| q.0.return_to);
    if matches!(auth, Auth::Session { .. }) {
        let target = return_to.as_deref().and_then(safe_return_to);
        return see_other(target.as_deref().unwrap_or("/"));
    }
    let nonce = nonce.map(|n| n.0);
    form_page(&state, &headers, nonce.as_ref(), StatusCode::OK, "", return_to.as_deref(), None)
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    MaybeAuth(prior): MaybeAuth,
    nonce: Option<Extension<CspNonce>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let nonce = nonce.map(|n| n.0);
    let nonce = nonce.as_ref();
    let page = |status, email: &str, return_to: Option<&str>, text: &str| {
        form_page(&state, &headers, nonce, status, email, return_to, Some((text, true)))
    };
    let Ok(Form(form)) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            "",
            None,
            "The form could not be read. Please try again.",
        );
    };
    let return_to = form.return_to.as_deref();
    let email = crate::http::loggable_path(&form.email);
    let token_ok = read_nonce(&state, &headers)
        .is_some_and(|n| verify_login_token(&state, &n, &form.csrf_token));
    if !token_ok {
        let ev = NewEvent::new(EventKind::CsrfRejected, Outcome::Denied)
            .with(json!({"reason": "login_token", "method": "POST", "path": "/login"}));
        let key = format!("csrf|{}|login_token", meta.ip_bucket());
        state.audit_bounded_key(&meta, &key, ev).await;
        return page(
            StatusCode::FORBIDDEN,
            &email,
            return_to,
            "This sign-in form has expired. Please try again.",
        );
    }
    let password = form.password.unwrap_or_else(|| SecretString::new(String::new()));
    let too_long = password.expose_secret().len() > rampart_password::policy::MAX_LEN * 4;
    let checked = if too_long {
        Ok(PasswordCheck::Failed(None))
    } else {
        check_password(&state, &meta, &form.email, &password).await
    };
    let user = match checked {
        Ok(PasswordCheck::Ok(u)) => u,
        Ok(PasswordCheck::Failed(_)) => {
            return page(
                StatusCode::UNAUTHORIZED,
                &email,
                return_to,
                "Incorrect email or password.",
            )
        }
        Ok(PasswordCheck::Locked(e)) => {
            let mut res = page(
                StatusCode::TOO_MANY_REQUESTS,
                &email,
                return_to,
                "Too many failed sign-in attempts. Please wait a few minutes and try again.",
            );
            copy_headers(&mut res, &e);
            return res;
        }
        Err(e) => return error_page(page(e.status, &email, return_to, &e.message), &e),
    };
    let (id, _) = match start_session(&state, &meta, &prior, &user, "password").await {
        Ok(s) => s,
        Err(e) => return error_page(page(e.status, &email, return_to, &e.message), &e),
    };
    let target = return_to.and_then(safe_return_to);
    let mut res = see_other(target.as_deref().unwrap_or("/"));
    set_session_cookie(&state, &mut res, &id);
    res.headers_mut().append(header::SET_COOKIE, clear_cookie(&state));
    res
}

fn copy_headers(res: &mut Response, e: &ApiError) {
    for (k, v) in &e.headers {
        res.headers_mut().insert(k.clone(), v.clone());
    }
}

fn error_page(mut res: Response, e: &ApiError) -> Response {
    copy_headers(&mut res, e);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_input_separates_nonce_and_expiry() {
        assert_ne!(mac_input("ab", 1), mac_input("a", 21));
        assert!(mac_input("n", 5).starts_with(MAC_LABEL));
    }
}
