//! Cross-site request forgery protection: Fetch Metadata, then `Origin`/`Referer`, then a
//! session-bound token.
//!
//! Every method but the safe GET, HEAD, OPTIONS and TRACE is checked (POST, PUT, PATCH and
//! DELETE, and any other method an application might act on). A request is checked when it carries an
//! ambient credential (the server put a [`CsrfContext`] with an `expected_token` into the
//! request extensions because a session cookie authenticated it) or when its path is one of
//! the origin-only prefixes (login, setup, sign-up: no session yet, but login CSRF is still an
//! attack). Requests authenticated by an API key, and requests with no credential at all, pass:
//! a forged request that carries no credential gains the attacker nothing.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use rampart_protect::csrf::{CsrfConfig, CsrfContext, CsrfPolicy, CsrfReason};
//! use rampart_protect::Origin;
//! use rampart_core::SecretString;
//!
//! let policy = CsrfPolicy::new(CsrfConfig::new(Origin::parse("https://auth.example.com")?));
//! let ctx = CsrfContext::session(SecretString::new("tok"));
//! let mut headers = HeaderMap::new();
//! headers.insert("sec-fetch-site", "cross-site".parse()?);
//! let refused = policy.decide(&Method::POST, "/api/x", &headers, Some(&ctx), None);
//! assert_eq!(refused.unwrap_err().reason, CsrfReason::CrossSiteFetch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security considerations
//! - **Fetch Metadata first.** `Sec-Fetch-Site` is set by the browser and cannot be forged
//!   by page scripts, and it is present on every request from current browsers, including
//!   those where `Origin` is withheld. `same-origin` passes; `same-site` passes only with
//!   [`CsrfConfig::insecure_allow_same_site`] (a sibling subdomain is a different security
//!   principal); `cross-site` and `none` are refused. Only when the header is absent (older
//!   browsers, non-browser clients) or unknown does the check fall back to `Origin`, and when
//!   `Origin` is absent, to the origin of `Referer`. With none of them, the request is refused.
//! - **Exact origins.** Origins are compared as (scheme, host, port) tuples with
//!   [`Origin`](crate::Origin); `null`, lookalike suffixes and other schemes or ports never match.
//! - **Tokens are session-bound HMACs.** [`csrf_token_for`] is the HMAC of the session id under
//!   a CSRF-only subkey. It needs no storage, cannot be computed without the server key, is
//!   useless with another session, and is stable for the whole session, so several tabs and
//!   the back button keep working. A new session id (issued at login and on privilege change)
//!   gives a new token; rotating the keyring's current key also changes it, so pages rendered
//!   before a rotation must be reloaded. The token is compared in constant time.
//! - **Where the token travels.** Scripts send the `X-CSRF-Token` header. HTML forms send the
//!   `csrf_token` field of an `application/x-www-form-urlencoded` body: only then does the
//!   layer buffer the body (up to 64 KiB, otherwise 413 `payload_too_large`) and pass it on
//!   unchanged. Multipart forms are not parsed: they must send the header.
//! - **Exempt prefixes weaken the check.** Everything under an exempt prefix is unprotected,
//!   even with a session cookie. Use them only for endpoints that authenticate each request
//!   explicitly (webhook signatures), never for anything a browser session can reach.
//! - **Rejections carry no secrets.** [`CsrfRejection`] holds the reason and the claimed
//!   origin, never a token; it is inserted into the 403 `csrf_rejected` response's extensions
//!   for the audit layer.

mod form;
mod layer;
mod policy;
#[cfg(test)]
mod tests;

pub use layer::{Csrf, CsrfLayer, ResponseFuture, DEFAULT_FORM_LIMIT};
pub use policy::{
    csrf_token_for, CsrfConfig, CsrfContext, CsrfPolicy, CsrfReason, CsrfRejection,
    CSRF_FORM_FIELD, CSRF_HEADER,
};
