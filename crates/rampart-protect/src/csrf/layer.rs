//! The CSRF tower layer: dispatches on [`CsrfPolicy::decide`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{self, Either, Ready};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

use super::form::{form_field, is_urlencoded_form};
use super::policy::{CsrfConfig, CsrfContext, CsrfPolicy, CsrfReason, CsrfRejection};
use super::CSRF_FORM_FIELD;
use crate::error::{error_response, request_id};
use crate::input::{is_length_limit_error, PayloadTooLarge};

/// Default cap on a form body read to find the `csrf_token` field: 64 KiB.
pub const DEFAULT_FORM_LIMIT: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Applies [`CsrfPolicy`] to every request. See the [module docs](crate::csrf).
#[derive(Debug, Clone)]
#[must_use]
pub struct CsrfLayer {
    policy: CsrfPolicy,
    form_limit: usize,
}

impl CsrfLayer {
    /// A layer over `config`, reading form bodies up to [`DEFAULT_FORM_LIMIT`].
    pub fn new(config: CsrfConfig) -> Self {
        Self { policy: CsrfPolicy::new(config), form_limit: DEFAULT_FORM_LIMIT }
    }

    /// Changes the largest form body read to look for the token; larger forms that need one
    /// are answered 413 `payload_too_large`.
    pub fn with_form_limit(mut self, bytes: usize) -> Self {
        self.form_limit = bytes;
        self
    }

    /// The policy this layer applies.
    pub fn policy(&self) -> &CsrfPolicy {
        &self.policy
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = Csrf<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Csrf { inner, policy: self.policy.clone(), form_limit: self.form_limit }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Debug, Clone)]
pub struct Csrf<S> {
    inner: S,
    policy: CsrfPolicy,
    form_limit: usize,
}

/// The future of [`Csrf`]: the inner service's future when the request passes, a ready
/// refusal, or (boxed) the read of a form body that may carry the token before the inner
/// service is called.
pub type ResponseFuture<F, B, E> = Either<
    Either<F, Ready<Result<Response<B>, E>>>,
    Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>,
>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Csrf<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let verdict = self.policy.decide(
            req.method(),
            req.uri().path(),
            req.headers(),
            req.extensions().get::<CsrfContext>(),
            None,
        );
        match verdict {
            Ok(()) => Either::Left(Either::Left(self.inner.call(req))),
            Err(r) if r.reason == CsrfReason::MissingToken && is_urlencoded_form(req.headers()) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Either::Right(Box::pin(check_form(
                    inner,
                    self.policy.clone(),
                    self.form_limit,
                    req,
                )))
            }
            Err(r) => {
                let res = reject(&r, &request_id(req.headers()));
                Either::Left(Either::Right(future::ready(Ok(res))))
            }
        }
    }
}

/// Reads a form body (bounded), looks for the token field, decides again, and passes the
/// unchanged body on when the token is right.
async fn check_form<S, ReqBody, ResBody>(
    mut inner: S,
    policy: CsrfPolicy,
    limit: usize,
    req: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<String>,
{
    let rid = request_id(req.headers());
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(too_large(limit, &rid));
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if is_length_limit_error(e.as_ref()) => return Ok(too_large(limit, &rid)),
        Err(_) => {
            tracing::debug!("failed to read a form body for the CSRF check");
            return Ok(error_response(
                http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "could not read the request body",
                &rid,
            ));
        }
    };
    let token = form_field(&bytes, CSRF_FORM_FIELD);
    let verdict = policy.decide(
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        parts.extensions.get::<CsrfContext>(),
        token.as_deref(),
    );
    match verdict {
        Ok(()) => inner.call(Request::from_parts(parts, ReqBody::from(bytes))).await,
        Err(r) => Ok(reject(&r, &rid)),
    }
}

fn reject<B: From<String>>(rejection: &CsrfRejection, request_id: &str) -> Response<B> {
    tracing::debug!(
        reason = rejection.reason.as_str(),
        origin = rejection.origin_seen.as_deref().unwrap_or(""),
        "CSRF check refused a request"
    );
    rejection.to_response(request_id)
}

fn too_large<B: From<String>>(limit: usize, request_id: &str) -> Response<B> {
    PayloadTooLarge { limit }.to_response(request_id)
}
