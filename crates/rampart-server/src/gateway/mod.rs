//! The gateway: access rules, the identity asserted to upstream apps, and forward-auth for
//! reverse proxies that ask Rampart before serving a request.
//!
//! - [`rules`]: which requests need which caller ([`rules::AccessRules::decide`]).
//! - [`identity`]: `Remote-User`, `Remote-Email`, `Remote-Groups` and a signed
//!   `X-Rampart-Assertion` for the upstream; the JWKS at `/.well-known/jwks.json`.
//! - [`forward_auth`]: `GET /auth/verify` for nginx `auth_request`, Caddy `forward_auth` and
//!   Traefik `ForwardAuth`.
//! - [`strip_identity_headers`]: removes identity headers a client sent itself.
//!
//! # Security considerations
//! - Upstreams trust the identity headers, so every copy a client sent must be removed before
//!   Rampart's own are added, in every spelling: header names are case-insensitive and some
//!   servers treat `_` like `-` (`Remote_User` arrives as `REMOTE_USER` in CGI-style
//!   environments). [`strip_identity_headers`] compares names in lower case with `_` read as
//!   `-`. Proxies in forward-auth mode must do the same: see `docs/deploy/`.
//! - Forwarding headers that describe the original request are believed only from
//!   `RAMPART_TRUSTED_PROXIES`.

pub mod forward_auth;
pub mod identity;
pub mod proxy;
pub mod rules;

use axum::http::{HeaderMap, HeaderName};
use axum::Router;

use crate::state::AppState;

/// Identity headers (normalised: lower case, `-`) removed from every inbound request.
pub const IDENTITY_HEADERS: &[&str] = &[
    "remote-user",
    "remote-email",
    "remote-groups",
    "remote-name",
    "x-remote-user",
    "x-remote-email",
    "x-remote-groups",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-user",
    "x-user-id",
    "x-email",
    "x-auth-user",
    "x-authenticated-user",
    "x-remote-user-id",
    "remote-role",
    "remote-roles",
    "x-role",
    "x-roles",
    "x-groups",
    "remoteuser",
];

/// Prefixes (normalised) of header families removed from every inbound request.
pub const IDENTITY_HEADER_PREFIXES: &[&str] = &["x-rampart-", "x-auth-request-", "x-webauth-"];

/// Whether the header name `name` reads as `normalised` (lower case, `-`) once case is ignored
/// and `_` is read as `-`. Compares in place: it runs for every header of every proxied
/// request.
pub(crate) fn same_spelling(name: &[u8], normalised: &[u8]) -> bool {
    name.len() == normalised.len()
        && name.iter().zip(normalised).all(|(a, b)| {
            let a = if *a == b'_' { b'-' } else { a.to_ascii_lowercase() };
            a == *b
        })
}

/// Whether the header name `name` starts with `normalised` in any spelling (see
/// [`same_spelling`]).
pub(crate) fn starts_with_spelling(name: &[u8], normalised: &[u8]) -> bool {
    name.get(..normalised.len()).is_some_and(|head| same_spelling(head, normalised))
}

/// Whether `name` is an identity header in any spelling.
pub fn is_identity_header(name: &str) -> bool {
    let n = name.as_bytes();
    IDENTITY_HEADERS.iter().any(|h| same_spelling(n, h.as_bytes()))
        || IDENTITY_HEADER_PREFIXES.iter().any(|p| starts_with_spelling(n, p.as_bytes()))
}

/// Removes every inbound identity header ([`IDENTITY_HEADERS`] and the
/// [`IDENTITY_HEADER_PREFIXES`] families), whatever its case or `_`/`-` spelling.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> =
        headers.keys().filter(|n| is_identity_header(n.as_str())).cloned().collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// The gateway's own routes: `/auth/verify` and `/.well-known/jwks.json`.
pub fn routes() -> Router<AppState> {
    Router::new().merge(forward_auth::routes()).merge(identity::routes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn strips_identity_headers_in_every_spelling_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        for name in [
            "Remote-User",
            "remote_user",
            "REMOTE_EMAIL",
            "Remote-Groups",
            "remote-name",
            "X-Remote-User",
            "x_forwarded_user",
            "X-Forwarded-Email",
            "X-Forwarded-Preferred-Username",
            "X-Auth-Request-User",
            "x_auth_request_email",
            "X-Rampart-Assertion",
            "x_rampart_anything",
            "X-User",
            "x-user-id",
            "X_Email",
            "X-Auth-User",
            "X-Authenticated-User",
            "X-WEBAUTH-USER",
            "x_webauth_email",
            "Remote-Role",
            "X-Groups",
            "x_roles",
            "RemoteUser",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("admin"),
            );
        }
        for keep in ["accept", "x-forwarded-for", "x-users-choice", "remote-address", "cookie"] {
            h.insert(HeaderName::from_static(keep), HeaderValue::from_static("v"));
        }
        strip_identity_headers(&mut h);
        assert!(is_identity_header("X_RAMPART_ASSERTION") && is_identity_header("Remote_User"));
        assert!(!is_identity_header("x-rampart") && !is_identity_header("remote-user-agent"));
        assert!(!is_identity_header("x-usér") && !is_identity_header(""));
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left.len(), 5, "{left:?}");
        for keep in ["accept", "x-forwarded-for", "x-users-choice", "remote-address", "cookie"] {
            assert!(h.contains_key(keep), "{keep} removed");
        }
    }
}
