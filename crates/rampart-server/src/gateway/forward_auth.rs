//! `GET /auth/verify`: forward authentication for reverse proxies (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`).
//!
//! The proxy sends the browser's headers (cookie or `Authorization`) along with the original
//! request's method, host and URI. The auth middleware has already authenticated the cookie or
//! API key; this handler evaluates the [access rules](super::rules) against the original request
//! and answers:
//!
//! | outcome | status | headers |
//! |---|---|---|
//! | allowed | 200, empty body | identity headers ([`super::identity`]) when logged in |
//! | not logged in | 401 `unauthenticated` (302 with `?redirect=1` for browser page loads) | `Location: /login?return_to=<original URI>` |
//! | forbidden | 403 `forbidden`, audited as `access_denied` | |
//! | cross-site unsafe request with the session cookie | 403 `csrf_rejected`, audited | |
//! | session store down | 503 `session_store_unavailable` | |
//!
//! The original request is read from `X-Forwarded-Method`, `X-Forwarded-Uri` (or
//! `X-Original-URI`) and `X-Forwarded-Host`. Each must arrive at most once, non-empty and in
//! visible ASCII, and when both URI headers arrive they must agree: otherwise the answer is 403
//! (audited as `access_denied`, rule `invalid_path`), never a decision about the verify
//! request itself.
//!
//! # Security considerations
//! - Those headers are believed **only from `RAMPART_TRUSTED_PROXIES`**; from anyone else the
//!   request's own method, `Host` and URI are used (`/auth/verify` itself, which no public rule
//!   should cover), so a client calling Rampart directly cannot ask about a public path and
//!   reuse the answer.
//! - The answer is for one request: it is never cached (`Cache-Control: no-store`), and the
//!   assertion in it lives 60 seconds.
//! - The redirect target is the original URI only when it passes
//!   [`safe_return_to`], and is always relative, so the
//!   browser stays on the origin it asked for. Rampart's login page must therefore be reachable
//!   on the same origin as the app (the proxy routes `/login` and `/api/` to Rampart): the
//!   session cookie is host-only.
//! - A session store outage answers 503 (never "allowed"), except on `public` rules.
//! - `X-Forwarded-Proto` is not needed: redirects are relative.
//! - **CSRF.** An allowed unsafe request authenticated by the session cookie gets the origin
//!   half of the CSRF check, as in the reverse proxy ([`super::proxy::origin_policy`]), on the
//!   browser's `Origin`, `Sec-Fetch-Site` and `Referer`, which the proxies pass along; a rule
//!   with `csrf = false` turns it off.

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rampart_audit::{EventKind, NewEvent, Outcome};
use rampart_protect::csrf::CsrfRejection;
use serde::Deserialize;
use serde_json::json;

use super::identity::insert_identity_headers;
use super::rules::{normalize_path, AccessRules, Decision, INVALID_PATH};
use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{store_unavailable, Auth};
use crate::error::ApiError;
use crate::http::request_id::current_request_id;
use crate::pages::return_to::{encode_query_value, safe_return_to};
use crate::state::AppState;

/// The forward-auth path.
pub const VERIFY_PATH: &str = "/auth/verify";

/// The route.
pub fn routes() -> Router<AppState> {
    Router::new().route(VERIFY_PATH, get(verify))
}

/// The request the proxy is asking about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// Method.
    pub method: Method,
    /// Host (as sent; the rules normalise it).
    pub host: String,
    /// Path and query.
    pub uri: String,
}

/// The one value of a forwarding header: `Ok(None)` when absent, `Err` when it is sent more
/// than once, is empty or is not visible ASCII (a raw byte the proxy passed through).
fn single_value<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Unreadable> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Unreadable);
    }
    match value.to_str() {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text)),
        _ => Err(Unreadable),
    }
}

/// The forwarding headers of a trusted proxy describe no request that can be judged: one is
/// repeated, empty, not visible ASCII, or the two URI headers disagree. Refused, never
/// replaced by the verify request's own method, host or URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// The original request: from the forwarding headers when `trusted`, else the request's own.
///
/// # Errors
/// [`Unreadable`] when `trusted` and a forwarding header cannot be read as exactly one value,
/// or `X-Forwarded-Uri` and `X-Original-URI` are both sent and differ (a client can add the
/// one its proxy does not set, and proxies pass client headers on to the auth request).
pub fn original_request(
    trusted: bool,
    headers: &HeaderMap,
    own_method: &Method,
    own_uri: &axum::http::Uri,
) -> Result<OriginalRequest, Unreadable> {
    let own_host = || {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| own_uri.authority().map(|a| a.to_string()))
            .unwrap_or_default()
    };
    let own_path = || own_uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.to_string());
    if !trusted {
        return Ok(OriginalRequest {
            method: own_method.clone(),
            host: own_host(),
            uri: own_path(),
        });
    }
    let method = match single_value(headers, "x-forwarded-method")? {
        Some(m) => Method::from_bytes(m.trim().as_bytes()).map_err(|_| Unreadable)?,
        None => own_method.clone(),
    };
    let uri =
        match (single_value(headers, "x-forwarded-uri")?, single_value(headers, "x-original-uri")?)
        {
            (Some(a), Some(b)) if a != b => return Err(Unreadable),
            (Some(u), _) | (None, Some(u)) => u.to_owned(),
            (None, None) => own_path(),
        };
    let host = match single_value(headers, "x-forwarded-host")? {
        Some(h) => match h.split(',').next().map(str::trim) {
            Some(first) if !first.is_empty() => first.to_owned(),
            _ => return Err(Unreadable),
        },
        None => own_host(),
    };
    Ok(OriginalRequest { method, host, uri })
}

#[derive(Deserialize, Default)]
struct VerifyQuery {
    redirect: Option<String>,
}

/// The login page URL for an original URI: `/login?return_to=…` when the URI is a safe target.
pub fn login_location(original_uri: &str) -> String {
    match safe_return_to(original_uri) {
        Some(t) if t != "/" => format!("/login?return_to={}", encode_query_value(&t)),
        _ => "/login".to_owned(),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

async fn verify(
    State(state): State<AppState>,
    meta: RequestMeta,
    query: Result<Query<VerifyQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let trusted = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| state.config.trusted_proxies.contains(c.0.ip()));
    let auth = req.extensions().get::<Auth>().cloned().unwrap_or(Auth::Anonymous);
    let user = auth.user();
    let Ok(original) = original_request(trusted, req.headers(), req.method(), req.uri()) else {
        return unreadable(&state, &meta, user).await;
    };
    let rules = &state.access_rules;
    let decision = rules.decide(&original.host, &original.uri, &original.method, user);
    let mut res = match decision {
        Decision::Allow => {
            if let Some(rejection) = csrf_rejection(&state, rules, &auth, &original, req.headers())
            {
                let mut res = rejection.to_response(&current_request_id());
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return res;
            }
            let mut res = StatusCode::OK.into_response();
            if let Some(u) = user {
                insert_identity_headers(&state, u, res.headers_mut());
            }
            res
        }
        _ if matches!(auth, Auth::Unavailable) => store_unavailable().into_response(),
        Decision::Unauthenticated => {
            let location = login_location(&original.uri);
            let redirect = query.is_ok_and(|q| q.0.redirect.as_deref() == Some("1"))
                && matches!(original.method, Method::GET | Method::HEAD)
                && wants_html(req.headers());
            let mut res = if redirect {
                StatusCode::FOUND.into_response()
            } else {
                ApiError::unauthenticated().into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
        Decision::Forbidden { rule } => {
            let path = normalize_path(&original.uri)
                .map_or_else(|| "(unreadable)".to_owned(), |p| crate::http::loggable_path(&p));
            let details = json!({
                "via": "forward_auth",
                "rule": rule,
                "host": crate::http::loggable_path(&original.host),
                "path": path,
                "method": original.method.as_str(),
            });
            denied(&state, &meta, user, &rule, details).await
        }
    };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 403 `forbidden`, audited as `access_denied` with `details`: at most once per caller and
/// rule within the bound, not per path, so a caller cycling through paths does not write an
/// event per request.
async fn denied(
    state: &AppState,
    meta: &RequestMeta,
    user: Option<&crate::auth::AuthenticatedUser>,
    rule: &str,
    details: serde_json::Value,
) -> Response {
    let mut ev = NewEvent::new(EventKind::AccessDenied, Outcome::Denied).with(details);
    let who = match user {
        Some(u) => {
            ev = ev.by(u);
            u.user_id.clone()
        }
        None => meta.ip_bucket(),
    };
    state.audit_bounded_key(meta, &format!("deny|{who}|{rule}"), ev).await;
    ApiError::forbidden().into_response()
}

/// 403 for forwarding headers that describe no readable request ([`Unreadable`]), audited
/// under the rule name [`INVALID_PATH`].
async fn unreadable(
    state: &AppState,
    meta: &RequestMeta,
    user: Option<&crate::auth::AuthenticatedUser>,
) -> Response {
    let details = json!({
        "via": "forward_auth",
        "rule": INVALID_PATH,
        "reason": "unreadable_forwarding_headers",
    });
    let mut res = denied(state, meta, user, INVALID_PATH, details).await;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The proxy's CSRF check for an allowed request: it applies to unsafe requests authenticated
/// by the session cookie whose matching rule does not say `csrf = false`, as in the reverse
/// proxy. The browser's `Origin`, `Sec-Fetch-Site` and `Referer` arrive with the other
/// forwarded headers. `Some` when the request is refused (the rejection travels in the
/// response so the auth middleware audits it).
fn csrf_rejection(
    state: &AppState,
    rules: &AccessRules,
    auth: &Auth,
    original: &OriginalRequest,
    headers: &HeaderMap,
) -> Option<CsrfRejection> {
    if !matches!(auth, Auth::Session { .. })
        || !rules.csrf_applies(&original.host, &original.uri, &original.method)
    {
        return None;
    }
    let policy = state.origin_csrf.as_ref()?;
    let path = original.uri.split('?').next().unwrap_or("/");
    policy.decide(&original.method, path, headers, None, None).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_peers() {
        let h = headers(&[
            ("host", "rampart.internal:8080"),
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/public/x?y=1"),
            ("x-forwarded-host", "app.example.com, evil.example"),
        ]);
        let uri: axum::http::Uri = "/auth/verify?redirect=1".parse().unwrap();
        let own = original_request(false, &h, &Method::GET, &uri).unwrap();
        assert_eq!(
            own,
            OriginalRequest {
                method: Method::GET,
                host: "rampart.internal:8080".into(),
                uri: "/auth/verify?redirect=1".into()
            }
        );
        let fwd = original_request(true, &h, &Method::GET, &uri).unwrap();
        assert_eq!(
            fwd,
            OriginalRequest {
                method: Method::POST,
                host: "app.example.com".into(),
                uri: "/public/x?y=1".into()
            }
        );
        let h = headers(&[("host", "h"), ("x-original-uri", "/o")]);
        assert_eq!(original_request(true, &h, &Method::GET, &uri).unwrap().uri, "/o");
        // Both URI headers, in agreement: read.
        let h = headers(&[("x-forwarded-uri", "/o"), ("x-original-uri", "/o")]);
        assert_eq!(original_request(true, &h, &Method::GET, &uri).unwrap().uri, "/o");
    }

    #[test]
    fn unreadable_forwarding_headers_are_refused_not_replaced() {
        let uri: axum::http::Uri = "/auth/verify".parse().unwrap();
        let raw = |name: &str, bytes: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(bytes).unwrap(),
            );
            h
        };
        let cases = [
            // A raw byte the proxy passed through: not visible ASCII.
            raw("x-forwarded-uri", b"/admin/\xff/../users"),
            raw("x-original-uri", b"/secret/\xff"),
            raw("x-forwarded-host", b"app.example\xff"),
            raw("x-forwarded-method", b"P\xffST"),
            // Empty or blank.
            raw("x-forwarded-uri", b""),
            raw("x-forwarded-uri", b"   "),
            raw("x-forwarded-host", b" , app.example"),
            // Not a method token.
            raw("x-forwarded-method", b"GET /x"),
            // The two URI headers disagree: the client added the one its proxy does not set.
            headers(&[("x-forwarded-uri", "/pub"), ("x-original-uri", "/admin")]),
            // Sent twice.
            headers(&[("x-forwarded-uri", "/pub"), ("x-forwarded-uri", "/admin")]),
            headers(&[("x-forwarded-method", "GET"), ("x-forwarded-method", "POST")]),
            headers(&[("x-forwarded-host", "a.example"), ("x-forwarded-host", "b.example")]),
        ];
        for h in cases {
            assert_eq!(original_request(true, &h, &Method::GET, &uri), Err(Unreadable), "{h:?}");
            // From an untrusted peer the headers are not read at all.
            assert_eq!(
                original_request(false, &h, &Method::GET, &uri).unwrap().uri,
                "/auth/verify"
            );
        }
    }

    #[test]
    fn login_location_keeps_only_safe_targets() {
        assert_eq!(login_location("/app/x?a=1&b=2"), "/login?return_to=%2Fapp%2Fx%3Fa%3D1%26b%3D2");
        assert_eq!(login_location("//evil.example/"), "/login");
        assert_eq!(login_location("/"), "/login");
    }
}
