//! Server-rendered HTML pages: login, logout, password change and the list of one's sessions.
//!
//! | page | methods |
//! |---|---|
//! | `/login?return_to=/path` | GET shows the form; POST (form fields `email`, `password`, `csrf_token`, `return_to`) signs in and answers 303 to `return_to` |
//! | `/logout` | GET shows a confirmation form; POST signs out (never GET) |
//! | `/account/password` | GET form; POST `current_password`, `new_password`, `confirm_password` |
//! | `/account/sessions` | GET lists the caller's sessions; POST `action=revoke&session=<id>` or `action=revoke_others` |
//!
//! The pages need no JavaScript and use the same logic as the JSON API
//! ([`crate::routes::auth`]): brute-force regulation, audit events, session rotation.
//!
//! # Security considerations
//! - **CSP.** Pages carry the strict nonce policy of the security headers layer (no script at
//!   all, `form-action 'self'`, `frame-ancestors 'none'`); the one inline `<style>` carries
//!   the response's nonce. Every value written into a page is HTML-escaped.
//! - **CSRF.** Forms of signed-in pages carry the session's CSRF token in the `csrf_token`
//!   field, checked by the CSRF layer with the origin. The login form has no session yet: the
//!   CSRF layer checks its origin, and [`login`] also requires a signed login token bound to a
//!   pre-session cookie (see there).
//! - **Redirects** go only to targets accepted by [`return_to::safe_return_to`]; anything else
//!   becomes `/`.
//! - **Caching and referrers.** Every page is `Cache-Control: no-store`; the login and
//!   password pages are also `Referrer-Policy: no-referrer` (configured by prefix in
//!   [`crate::protection`]).
//! - Signed-out visitors of account pages get 303 to `/login?return_to=…`; a session store
//!   outage gives 503, never a page for nobody.

pub mod account;
pub mod login;
pub mod return_to;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rampart_protect::headers::CspNonce;

use crate::state::AppState;

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", get(account::logout_page).post(account::logout))
        .route("/account", get(|| async { see_other("/account/sessions") }))
        .route("/account/password", get(account::password_page).post(account::change_password))
        .route("/account/sessions", get(account::sessions_page).post(account::sessions_action))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#f6f7f9;--card:#fff;--line:#c9ced6;\
--accent:#0b57d0;--err:#b3261e;--ok:#146c2e}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--bg:#111418;--card:#1b1f24;\
--line:#3a414a;--accent:#8ab4f8;--err:#f2b8b5;--ok:#8fd19e}}\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
color:var(--fg);background:var(--bg)}\
main{max-width:34rem;margin:3rem auto;padding:2rem;background:var(--card);\
border:1px solid var(--line);border-radius:12px}\
main.wide{max-width:56rem}\
h1{font-size:1.5rem;margin:0 0 1.25rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=email],input[type=password]{width:100%;padding:.6rem .7rem;font:inherit;\
color:inherit;background:transparent;border:1px solid var(--line);border-radius:8px}\
input:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid var(--accent);\
outline-offset:2px}\
button{margin-top:1.25rem;padding:.6rem 1.2rem;font:inherit;font-weight:600;color:var(--card);\
background:var(--accent);border:0;border-radius:8px;cursor:pointer}\
button.link{margin:0;padding:0;color:var(--accent);background:none;font-weight:400;\
text-decoration:underline}\
a{color:var(--accent)}\
.msg{padding:.75rem 1rem;border-radius:8px;border:1px solid currentColor;margin:0 0 1rem}\
.err{color:var(--err)}.ok{color:var(--ok)}\
nav{display:flex;gap:1rem;align-items:center;margin:0 0 1.5rem;flex-wrap:wrap}\
nav form{margin:0;display:inline}\
table{width:100%;border-collapse:collapse;font-size:.95rem}\
th,td{text-align:left;padding:.5rem;border-bottom:1px solid var(--line);vertical-align:top}\
td form button{margin:0}\
.hint{font-size:.9rem;opacity:.8}";

/// A whole page: `lang`, title, viewport, the nonce-carrying stylesheet, and `body` inside
/// `<main>`.
pub fn layout(nonce: Option<&CspNonce>, title: &str, main_class: &str, body: &str) -> String {
    let style = nonce
        .map(|n| format!("<style nonce=\"{}\">{STYLE}</style>", esc(n.as_str())))
        .unwrap_or_default();
    let class =
        if main_class.is_empty() { String::new() } else { format!(" class=\"{main_class}\"") };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Rampart</title>{style}</head><body><main{class}>{body}</main></body></html>\n",
        esc(title)
    )
}

/// A message box: `role="alert"` for errors, `role="status"` otherwise.
pub fn message(text: &str, error: bool) -> String {
    if error {
        format!("<p class=\"msg err\" role=\"alert\">{}</p>", esc(text))
    } else {
        format!("<p class=\"msg ok\" role=\"status\">{}</p>", esc(text))
    }
}

/// An HTML response, never cached.
pub fn html(status: StatusCode, page: String) -> Response {
    let mut res = (status, page).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 303 See Other to a path this module built or checked.
pub fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    res.headers_mut().insert(header::LOCATION, value);
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 303 to the login page, coming back to `path` afterwards.
pub fn to_login(path: &str) -> Response {
    see_other(&format!("/login?return_to={}", return_to::encode_query_value(path)))
}

/// The 503 page shown when the session store does not answer.
pub fn unavailable(nonce: Option<&CspNonce>) -> Response {
    let body = format!(
        "<h1>Temporarily unavailable</h1>{}",
        message("Sign-in is temporarily unavailable. Please try again shortly.", true)
    );
    let mut res = html(StatusCode::SERVICE_UNAVAILABLE, layout(nonce, "Unavailable", "", &body));
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn layout_declares_language_title_and_nonce() {
        let page = layout(Some(&CspNonce::from_text("n0nce")), "Sign <in>", "", "<h1>x</h1>");
        assert!(page.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(page.contains("<title>Sign &lt;in&gt; · Rampart</title>"));
        assert!(page.contains("<style nonce=\"n0nce\">"));
        assert!(!page.contains("<script"));
        assert!(!layout(None, "t", "", "").contains("<style"));
    }
}
