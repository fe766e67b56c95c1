//! Strict input handling: the [`ApiJson`] extractor and a [`BodyLimitLayer`].
//!
//! ```
//! use axum::{routing::post, Router};
//! use rampart_protect::input::{ApiJson, BodyLimitLayer};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Rename { name: String }
//!
//! async fn rename(ApiJson(body): ApiJson<Rename>) -> String {
//!     body.name
//! }
//!
//! let app: Router = Router::new().route("/rename", post(rename)).layer(BodyLimitLayer::new(1 << 20));
//! ```
//!
//! # Security considerations
//! - **Media type.** Only `application/json` (optionally `; charset=utf-8`) is accepted, so a
//!   cross-site HTML form (`text/plain`, `application/x-www-form-urlencoded`) can never reach
//!   a JSON handler without a CORS preflight. Anything else is 415 `unsupported_media_type`.
//! - **Size before work.** The body is read through a limit (64 KiB unless a [`JsonLimits`]
//!   request extension says otherwise); a larger declared `Content-Length` is refused before
//!   reading. Both give 413 `payload_too_large`.
//! - **Depth before parsing.** A byte scan that respects strings and escapes refuses nesting
//!   deeper than `max_depth` (32) before the parser runs, so deeply nested input cannot exhaust
//!   the stack or time of the deserializer (400 `invalid_json`).
//! - **No NUL.** Raw NUL bytes and `\u0000` escapes are refused (400 `invalid_request`): they
//!   truncate strings in C libraries, databases and logs and hide content from reviewers.
//!   Invalid UTF-8 is refused the same way.
//! - **No echo.** Error messages never repeat request content: a syntax error gives its line
//!   and column; a type mismatch names at most a field of the expected type (an unknown field
//!   name is shown only when it is a short identifier), never a value.
//! - [`BodyLimitLayer`] caps every body, also for extractors other than [`ApiJson`], and
//!   rewrites their plain-text 413 answers into the shared JSON error shape.

mod json;
mod limit;
mod scan;
#[cfg(test)]
mod tests;

pub use json::{ApiJson, JsonLimits, JsonRejection, JsonRejectionKind};
pub use limit::{
    is_length_limit_error, BodyLimit, BodyLimitLayer, BodyLimitState, PayloadTooLarge,
};
