//! Cross-origin resource sharing with an exact allowlist. Off by default.
//!
//! ```
//! use http::{header::CONTENT_TYPE, Method};
//! use rampart_protect::cors::{CorsConfig, CorsLayer};
//! use rampart_protect::Origin;
//!
//! let layer = CorsLayer::new(
//!     CorsConfig::new()
//!         .with_allowed_origin(Origin::parse("https://app.example.com")?)
//!         .with_allowed_method(Method::GET)
//!         .with_allowed_method(Method::POST)
//!         .with_allowed_header(CONTENT_TYPE)
//!         .with_allowed_header("x-csrf-token".parse()?),
//! );
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security considerations
//! - **Never reflection.** `Access-Control-Allow-Origin` is only ever the serialization of an
//!   allowlisted [`Origin`](crate::Origin) that equals the request's `Origin` exactly (scheme,
//!   host, port). An arbitrary origin, a lookalike, or `null` (sandboxed frames, `file:`
//!   pages, redirects) never gets it. Since credentials are allowed for allowlisted origins,
//!   each one must be fully trusted: a script there acts with the user's session.
//! - `Access-Control-Allow-Credentials: true` is sent only together with an allowed origin.
//! - `Vary: Origin` is on every response so that caches never serve one origin's answer to
//!   another.
//! - The layer owns CORS: `Access-Control-Allow-Origin` and `-Credentials` set by inner
//!   services or proxied upstreams are removed, so an upstream that reflects origins cannot
//!   undo the allowlist.
//! - **Preflights** (OPTIONS with `Access-Control-Request-Method`) are answered here and never
//!   reach the application: 204 listing only the allowed methods and headers and a
//!   `Access-Control-Max-Age`, when the origin, the method and every requested header are
//!   allowed. Otherwise the answer is 403 `cors_rejected` in the shared error shape with a
//!   [`CorsRejection`] in the extensions (the choice over a bare 204 without CORS headers:
//!   it is explicit in logs and audit records; browsers fail the request either way).
//! - CORS only relaxes the browser's same-origin policy for reading responses. It is not
//!   access control and not CSRF protection: keep the CSRF layer on.

mod layer;
#[cfg(test)]
mod tests;

pub use layer::{Cors, CorsConfig, CorsLayer, CorsReason, CorsRejection, CorsState};
