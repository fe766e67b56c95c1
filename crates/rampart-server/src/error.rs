//! The one error shape every response uses:
//! `{"error":{"code":"snake_case_code","message":"…","request_id":"…"}}`.
//!
//! # Security
//! Messages are fixed texts chosen here; internal errors (SQL, I/O, panics) are logged with the
//! request id and answered with a generic 500, so no internal detail reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The request id of the current request, inserted into request extensions by the request-id
/// middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An API error: status, code and a client-safe message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code (part of the API contract).
    pub code: &'static str,
    /// Client-safe message.
    pub message: String,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new() }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "authentication required")
    }

    /// 403 `forbidden`.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "you are not allowed to do this")
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    /// 500 `internal_error`; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    /// 503 with a code.
    pub fn unavailable(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// Logs an internal error with its source and returns the generic 500.
    pub fn internal_from(context: &str, err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %ErrorChain(err), "{context}");
        Self::internal()
    }
}

/// Displays an error with its source chain, for the operational log only.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

/// Builds the JSON error body. `request_id` may be empty when unknown; the request-id
/// middleware fills it in on the way out.
pub fn error_body(code: &str, message: &str, request_id: &str) -> String {
    json!({"error": {"code": code, "message": message, "request_id": request_id}}).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = crate::http::request_id::current_request_id();
        let mut res =
            (self.status, error_body(self.code, &self.message, &request_id)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res.extensions_mut().insert(ErrorCode(self.code));
        res
    }
}

/// Marks a response as an error of this code (for metrics and the request-id filler).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Maps a storage error: unavailability to 503 `database_unavailable`, anything else to a
/// logged generic 500.
pub fn store_error(e: &rampart_store_sql::StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::error!(error = %ErrorChain(e), "database unavailable");
        ApiError::unavailable("database_unavailable", "the database is unavailable; retry shortly")
    } else {
        ApiError::internal_from("database error", e)
    }
}
