//! Request body size limits in the shared error shape.

use std::fmt;
use std::task::{Context, Poll};

use axum::body::Body;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Request, Response, StatusCode};
use http_body_util::{LengthLimitError, Limited};
use tower::{Layer, Service};

use crate::error::{request_id, REQUEST_ID};
use crate::future::{after, early, ResponseFuture};
use crate::util::has_media_type;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body was larger than allowed. Inserted into 413 responses' extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// The limit in bytes, when the layer that refused knows it.
    pub limit: usize,
}

impl PayloadTooLarge {
    /// A 413 response with code `payload_too_large` in the shared error shape, carrying this
    /// value in its extensions.
    pub fn to_response<B: From<String>>(&self, request_id: &str) -> Response<B> {
        let mut res = crate::error::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
            request_id,
        );
        res.extensions_mut().insert(*self);
        res
    }
}

impl fmt::Display for PayloadTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body larger than {} bytes", self.limit)
    }
}

impl std::error::Error for PayloadTooLarge {}

/// Whether `err` or any of its sources is the length-limit error of a limited body (what
/// `http_body_util::Limited`, axum's body limit and tower-http's request body limit produce).
pub fn is_length_limit_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Caps request bodies: refuses a declared `Content-Length` above the limit at once, makes
/// longer streamed bodies fail to read, and turns any plain (non-JSON) 413 answer from inner
/// services or extractors into the shared error shape.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// A limit of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self { limit: bytes }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit { inner, limit: self.limit }
    }
}

/// The service made by [`BodyLimitLayer`]. Passes an [`axum::body::Body`] on.
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

/// Per-request state of [`BodyLimit`].
#[derive(Debug)]
pub struct BodyLimitState {
    limit: usize,
    // Kept as the header value (a reference count, no copy): it is only read on a 413.
    request_id: Option<HeaderValue>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, BodyLimitState, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limit as u64) {
            let rid = request_id(req.headers());
            return early(PayloadTooLarge { limit: self.limit }.to_response(&rid));
        }
        let limit = self.limit;
        // A body already at its end has nothing to cap (most GETs): passing it on as it is
        // spares a boxed wrapper per request.
        let req = req.map(|b| {
            if http_body::Body::is_end_stream(&b) {
                Body::new(b)
            } else {
                Body::new(Limited::new(b, limit))
            }
        });
        let state = BodyLimitState { limit, request_id: req.headers().get(REQUEST_ID).cloned() };
        after(self.inner.call(req), state, finish)
    }
}

fn finish<B: From<String>, E>(
    (result, state): (Result<Response<B>, E>, BodyLimitState),
) -> Result<Response<B>, E> {
    let res = result?;
    let is_plain_413 = res.status() == StatusCode::PAYLOAD_TOO_LARGE
        && !has_media_type(res.headers(), "application/json");
    if !is_plain_413 {
        return Ok(res);
    }
    let (parts, _) = res.into_parts();
    let rid = state.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut shaped = PayloadTooLarge { limit: state.limit }.to_response::<B>(rid);
    let marker = shaped.extensions_mut().remove::<PayloadTooLarge>();
    *shaped.extensions_mut() = parts.extensions;
    if let Some(m) = marker {
        shaped.extensions_mut().insert(m);
    }
    Ok(shaped)
}
