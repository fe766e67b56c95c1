//! Rampart protect: request protection as tower layers, on by default in the Rampart server
//! and usable alone in any axum or tower stack.
//!
//! ```
//! use axum::{body::Body, routing::post, Extension, Router};
//! use http::{Request, StatusCode};
//! use rampart_core::SecretString;
//! use rampart_protect::csrf::{CsrfConfig, CsrfContext, CsrfLayer};
//! use rampart_protect::headers::{SecurityHeadersConfig, SecurityHeadersLayer};
//! use rampart_protect::{BodyLimitLayer, CorsLayer, MethodGuardLayer, Origin};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let public = Origin::parse("https://auth.example.com")?;
//! let app = Router::new()
//!     .route("/api/items", post(|| async { "created" }))
//!     .layer(BodyLimitLayer::new(1 << 20))
//!     .layer(CsrfLayer::new(CsrfConfig::new(public).with_origin_only_prefix("/api/auth/login")))
//!     // The server inserts this after authenticating the session cookie.
//!     .layer(Extension(CsrfContext::session(SecretString::new("token-of-this-session"))))
//!     .layer(CorsLayer::default())
//!     .layer(MethodGuardLayer::new())
//!     .layer(SecurityHeadersLayer::new(SecurityHeadersConfig::strict()));
//!
//! // A forged cross-site POST riding on the session cookie is refused, with security headers.
//! let forged = Request::post("/api/items").header("sec-fetch-site", "cross-site").body(Body::empty())?;
//! let res = app.clone().oneshot(forged).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(res.headers()["x-frame-options"], "DENY");
//!
//! // The page's own script sends the token.
//! let genuine = Request::post("/api/items")
//!     .header("sec-fetch-site", "same-origin")
//!     .header("x-csrf-token", "token-of-this-session")
//!     .body(Body::empty())?;
//! assert_eq!(app.oneshot(genuine).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Placement
//! The layers work on a router (`Router::layer`, as above) or around it. For a whole stack
//! in production, prefer one `tower::ServiceBuilder` with every layer around the router
//! (`ServiceBuilder::new().layer(..).service(router)`, served with
//! `axum::ServiceExt::into_make_service_with_connect_info`; see `examples/axum_protect.rs`):
//! the stack then also covers what the router answers itself, and a request clones it once,
//! where `Router::layer` boxes it into every route and clones that box per request (about
//! 900 fewer instructions per request in the benchmark; ADR 0009).
//!
//! # Features
//! - [`csrf`]: CSRF protection from Fetch Metadata, then `Origin`/`Referer`, then a
//!   session-bound HMAC token in a header or form field ([`csrf::CsrfLayer`]).
//! - [`client_ip`]: [`ClientIpLayer`] resolves the client address (socket peer, or forwarding
//!   headers from trusted proxies only) for the rate limiter and the audit log.
//! - [`method`]: [`MethodGuardLayer`] answers 405 to TRACE, CONNECT and extension methods.
//! - [`headers`]: [`headers::SecurityHeadersLayer`] adds HSTS, framing, sniffing, referrer,
//!   isolation, permissions and cache headers and a per-response CSP nonce.
//! - [`cors`]: [`CorsLayer`], an exact-allowlist CORS layer that is off by default.
//! - [`input`]: the [`ApiJson`] extractor (media type, size, UTF-8, NUL, depth, shape) and
//!   [`BodyLimitLayer`].
//! - [`Origin`]: strict (scheme, host, port) origins shared by CSRF and CORS.
//!
//! Every refusal is a JSON body `{"error":{"code","message","request_id"}}` whose
//! `request_id` is the request's `x-request-id` header, and the layer's typed rejection
//! ([`csrf::CsrfRejection`], [`method::MethodNotAllowed`], [`cors::CorsRejection`],
//! [`input::JsonRejection`], [`input::PayloadTooLarge`]) is in the response extensions for the
//! audit layer.
//!
//! # Layer order
//! Outermost first: security headers (so every answer gets them), method guard, client IP
//! (before anything that counts or records clients), CORS (answers preflights), the server's
//! authentication (inserts [`csrf::CsrfContext`]), CSRF, body limit,
//! then the routes.

pub mod client_ip;
pub mod cors;
pub mod csrf;
mod error;
pub mod future;
pub mod headers;
pub mod input;
pub mod method;
pub mod origin;
mod util;

pub use client_ip::ClientIpLayer;
pub use cors::CorsLayer;
pub use csrf::CsrfLayer;
pub use error::{ProtectError, Result};
pub use headers::SecurityHeadersLayer;
pub use input::{ApiJson, BodyLimitLayer};
pub use method::MethodGuardLayer;
pub use origin::Origin;
