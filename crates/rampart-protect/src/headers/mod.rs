//! Security response headers, with a fresh Content-Security-Policy nonce per response.
//!
//! [`SecurityHeadersLayer`] adds, to every response of any status (including errors produced
//! by inner layers and CORS preflight answers when it is the outer layer):
//!
//! | header | value |
//! |---|---|
//! | `Strict-Transport-Security` | `max-age=63072000; includeSubDomains` when [`SecurityHeadersConfig::hsts`] |
//! | `X-Content-Type-Options` | `nosniff` |
//! | `X-Frame-Options` | `DENY` |
//! | `Referrer-Policy` | `strict-origin-when-cross-origin`; `no-referrer` under the configured prefixes |
//! | `Cross-Origin-Opener-Policy` | `same-origin` |
//! | `Cross-Origin-Resource-Policy` | `same-origin` |
//! | `Permissions-Policy` | every powerful feature denied (camera, microphone, geolocation, payment, usb, …) |
//! | `Content-Security-Policy` | HTML: [`HTML_CSP`] with the response's nonce; else [`DEFAULT_CSP`] |
//! | `Cache-Control` | `no-store` under the configured prefixes (default `/api/auth`) and on responses marked [`Authenticated`], unless already set |
//!
//! and removes `Server` and `X-Powered-By`. The nonce is put into the request extensions as
//! [`CspNonce`] before the inner service runs, so an HTML handler can write
//! `<script nonce="…">`.
//!
//! ```
//! use axum::{extract::Extension, response::Html, routing::get, Router};
//! use rampart_protect::headers::{CspNonce, SecurityHeadersConfig, SecurityHeadersLayer};
//!
//! async fn page(Extension(nonce): Extension<CspNonce>) -> Html<String> {
//!     Html(format!("<script nonce=\"{}\">start()</script>", nonce.as_str()))
//! }
//!
//! let config = SecurityHeadersConfig::strict().with_no_referrer_prefix("/login");
//! let app: Router = Router::new().route("/login", get(page)).layer(SecurityHeadersLayer::new(config));
//! ```
//!
//! # Security considerations
//! - **Only where absent.** Every header is added only when the response does not already
//!   carry it, so a handler (or a proxied upstream) keeps its own, deliberate values. This
//!   means an upstream can weaken them; review what upstreams send.
//! - **The nonce policy is for Rampart's own HTML.** HTML from an upstream that sets no CSP
//!   receives the strict nonce policy too, and since it does not know the nonce its inline
//!   scripts are blocked. Such upstreams should send their own CSP, or be wrapped by a layer
//!   configured with [`SecurityHeadersConfig::with_html_csp`]. The nonce is 128 bits from the
//!   thread-local CSPRNG (seeded and reseeded from the OS), drawn per response and never
//!   reused; a nonce that leaked or repeated would let injected markup run.
//! - The strict HTML policy has no `connect-src`: pages that call `fetch` need a template that
//!   adds `connect-src 'self'`.
//! - **HSTS** is ignored by browsers over plain HTTP, so it is harmless there; the server sets
//!   `hsts` from the scheme of its public origin. `includeSubDomains` forces HTTPS on every
//!   subdomain: deploy it only on a domain where that is true.
//! - **Caching.** `no-store` keeps credentials, session data and per-user pages out of shared
//!   and browser caches. Responses outside the configured prefixes are cacheable unless the
//!   server marks them [`Authenticated`].
//! - Removing `Server` and `X-Powered-By` does not hide the software, but gives scanners less.

mod config;
mod layer;
#[cfg(test)]
mod tests;

pub use config::{SecurityHeadersConfig, DEFAULT_CSP, HSTS_VALUE, HTML_CSP, PERMISSIONS_POLICY};
pub use layer::{Authenticated, CspNonce, HeadersState, SecurityHeaders, SecurityHeadersLayer};
