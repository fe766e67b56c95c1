//! The crate's error type and the shared JSON error response.
//!
//! [`ProtectError`] covers configuration mistakes (an origin that does not parse, a header value
//! that is not valid). Requests that a layer refuses are not errors of the layer: they become
//! responses in the project's single JSON error shape,
//! `{"error":{"code":"…","message":"…","request_id":"…"}}`, with the layer's typed rejection
//! value in the response extensions.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

/// A configuration value this crate cannot accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtectError {
    /// An origin or URL could not be parsed into scheme, host and port.
    #[error("invalid origin {input:?}: {reason}")]
    InvalidOrigin {
        /// The text as given (configuration, never a request value).
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A header value override is not a valid HTTP header value.
    #[error("invalid value for header {header}")]
    InvalidHeaderValue {
        /// The header's name.
        header: String,
        /// The parser's error.
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    /// A content security policy template is unusable.
    #[error("invalid content security policy template: {reason}")]
    InvalidCspTemplate {
        /// Why it was refused.
        reason: &'static str,
    },
}

/// `Result` with [`ProtectError`].
pub type Result<T, E = ProtectError> = std::result::Result<T, E>;

/// The request header that carries the request id (a constant: no name parsing per request).
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's `x-request-id` header, or an empty string when absent or not text.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or_default()
}

/// The JSON body of the shared error shape.
pub(crate) fn error_body(code: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "error": { "code": code, "message": message, "request_id": request_id }
    })
    .to_string()
}

/// A response in the shared error shape, generic over the response body type.
pub(crate) fn error_response<B: From<String>>(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<B> {
    let mut res = Response::new(B::from(error_body(code, message, request_id)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_uses_the_shared_shape_and_request_id() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("req-7"));
        let res: Response<String> =
            error_response(StatusCode::FORBIDDEN, "csrf_rejected", "no", &request_id(&headers));
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(v["error"]["code"], "csrf_rejected");
        assert_eq!(v["error"]["message"], "no");
        assert_eq!(v["error"]["request_id"], "req-7");
    }

    #[test]
    fn missing_request_id_becomes_empty_string() {
        assert_eq!(request_id(&HeaderMap::new()), "");
    }
}
