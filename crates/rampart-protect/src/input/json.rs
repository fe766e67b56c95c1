//! The [`ApiJson`] extractor and its [`JsonRejection`].

use std::fmt;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::limit::is_length_limit_error;
use super::scan::{scan, ScanError};
use crate::error::{error_response, request_id};

/// Limits for [`ApiJson`]. Put one into the request extensions to override the defaults
/// for a route or a whole router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Largest body read, in bytes. Default 64 KiB.
    pub max_body: usize,
    /// Deepest nesting of arrays and objects. Default 32.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self { max_body: 64 * 1024, max_depth: 32 }
    }
}

/// A JSON request body deserialized into `T`, after strict checks. See the
/// [module docs](crate::input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T> {
    /// The deserialized value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Which check refused the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonRejectionKind {
    /// `Content-Type` is not `application/json` (optionally `; charset=utf-8`): 415.
    UnsupportedMediaType,
    /// The body is larger than the limit: 413.
    PayloadTooLarge,
    /// The body could not be read: 400 `invalid_request`.
    BodyUnreadable,
    /// The body is not UTF-8: 400 `invalid_request`.
    InvalidUtf8,
    /// The body contains a NUL character, raw or as `\u0000`: 400 `invalid_request`.
    ContainsNul,
    /// Arrays and objects nest deeper than the limit: 400 `invalid_json`.
    TooDeep,
    /// The body is not JSON: 400 `invalid_json`.
    Malformed,
    /// The JSON does not fit the expected type: 400 `invalid_request`.
    DoesNotFit,
}

impl JsonRejectionKind {
    /// The response status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The error code in the response body.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooDeep | Self::Malformed => "invalid_json",
            Self::BodyUnreadable | Self::InvalidUtf8 | Self::ContainsNul | Self::DoesNotFit => {
                "invalid_request"
            }
        }
    }
}

/// Why [`ApiJson`] refused a body. The message never repeats request content; at most it
/// names a field of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRejection {
    kind: JsonRejectionKind,
    message: String,
    request_id: String,
}

impl JsonRejection {
    fn new(kind: JsonRejectionKind, message: impl Into<String>, request_id: &str) -> Self {
        Self { kind, message: message.into(), request_id: request_id.to_owned() }
    }

    /// Which check failed.
    pub fn kind(&self) -> JsonRejectionKind {
        self.kind
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JsonRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for JsonRejection {}

impl IntoResponse for JsonRejection {
    fn into_response(self) -> Response {
        let mut res =
            error_response(self.kind.status(), self.kind.code(), &self.message, &self.request_id);
        res.extensions_mut().insert(self);
        res
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = JsonRejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        use JsonRejectionKind as K;
        let rid = request_id(req.headers());
        if !is_json(req.headers()) {
            let msg = "expected Content-Type: application/json";
            return Err(JsonRejection::new(K::UnsupportedMediaType, msg, &rid));
        }
        let limits = req.extensions().get::<JsonLimits>().copied().unwrap_or_default();
        let too_large = || {
            let msg = format!("request body is larger than {} bytes", limits.max_body);
            JsonRejection::new(K::PayloadTooLarge, msg, &rid)
        };
        if declared_length(req.headers()).is_some_and(|n| n > limits.max_body as u64) {
            return Err(too_large());
        }
        let bytes = match Limited::new(req.into_body(), limits.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if is_length_limit_error(e.as_ref()) => return Err(too_large()),
            Err(_) => {
                let msg = "could not read the request body";
                return Err(JsonRejection::new(K::BodyUnreadable, msg, &rid));
            }
        };
        decode(&bytes, limits.max_depth)
            .map(ApiJson)
            .map_err(|(kind, msg)| JsonRejection::new(kind, msg, &rid))
    }
}

/// `application/json`, with no parameter other than `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.map(str::trim).filter(|p| !p.is_empty()).all(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                let v = v.trim().trim_matches('"');
                k.trim().eq_ignore_ascii_case("charset") && v.eq_ignore_ascii_case("utf-8")
            })
        })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The checks after reading, in order: raw NUL, UTF-8, depth and `\u0000`, then parsing.
pub(super) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, (JsonRejectionKind, String)> {
    use JsonRejectionKind as K;
    if bytes.contains(&0) {
        return Err((K::ContainsNul, "request body contains a NUL character".into()));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err((K::InvalidUtf8, "request body is not valid UTF-8".into()));
    }
    match scan(bytes, max_depth) {
        Ok(()) => {}
        Err(ScanError::NulEscape) => {
            return Err((K::ContainsNul, "request body contains a NUL character".into()))
        }
        Err(ScanError::TooDeep) => {
            let msg = format!("JSON nests deeper than {max_depth} levels");
            return Err((K::TooDeep, msg));
        }
    }
    // Syntax first, whatever `T` is, so that malformed input is always `invalid_json`.
    let checked = serde_json::from_slice::<IgnoredAny>(bytes).map(|_| ());
    checked.and_then(|()| serde_json::from_slice(bytes)).map_err(|e| {
        let at = format!(" (line {}, column {})", e.line(), e.column());
        if e.is_data() {
            (K::DoesNotFit, format!("{}{at}", describe_data_error(&e)))
        } else {
            (K::Malformed, format!("request body is not valid JSON{at}"))
        }
    })
}

/// A short description of a type mismatch that names at most a field, never a value.
fn describe_data_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let named = |prefix: &str, what: &str| -> Option<String> {
        let rest = text.strip_prefix(prefix)?;
        let name = rest.split('`').next().unwrap_or_default();
        Some(if is_plain_name(name) { format!("{what} `{name}`") } else { what.to_owned() })
    };
    named("missing field `", "missing field")
        .or_else(|| named("unknown field `", "unknown field"))
        .or_else(|| named("duplicate field `", "duplicate field"))
        .unwrap_or_else(|| {
            let generic = if text.starts_with("invalid type") {
                "a value has the wrong type"
            } else if text.starts_with("invalid value") {
                "a value is not acceptable"
            } else if text.starts_with("invalid length") {
                "an array or object has the wrong number of elements"
            } else if text.starts_with("unknown variant") {
                "a value is not one of the accepted variants"
            } else {
                "request body does not have the expected shape"
            };
            generic.to_owned()
        })
}

/// Field names echoed back must be short identifiers.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
