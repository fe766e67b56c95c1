//! A guard that answers 405 to every method outside a fixed safe set.
//!
//! # Security considerations
//! Only GET, HEAD, OPTIONS, POST, PUT, PATCH and DELETE reach the application. TRACE (which
//! echoes requests, cookies included, and enabled cross-site tracing) and CONNECT (tunnels)
//! are refused, as is every extension method: a gateway that forwards unknown methods lets
//! clients reach upstream handlers that were never reviewed for them, and some frameworks
//! route unknown methods to GET handlers. The answer is 405 `method_not_allowed` in the shared
//! error shape with an `Allow` header, and a [`MethodNotAllowed`] in the response extensions.

use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::header::{HeaderValue, ALLOW};
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::error::{error_response, request_id};

/// The methods the guard lets through, in `Allow` header order.
pub const ALLOWED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

const ALLOW_VALUE: &str = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

/// A request used a method outside [`ALLOWED_METHODS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodNotAllowed {
    /// The method the request used.
    pub method: Method,
}

/// Refuses methods outside [`ALLOWED_METHODS`] with 405.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct MethodGuardLayer;

impl MethodGuardLayer {
    /// The guard.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for MethodGuardLayer {
    type Service = MethodGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MethodGuard { inner }
    }
}

/// The service made by [`MethodGuardLayer`].
#[derive(Debug, Clone)]
pub struct MethodGuard<S> {
    inner: S,
}

/// The future of [`MethodGuard`]: the refusal, or the inner service's future untouched.
pub type MethodGuardFuture<F, B, E> = Either<Ready<Result<Response<B>, E>>, F>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MethodGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = MethodGuardFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if ALLOWED_METHODS.contains(req.method()) {
            return Either::Right(self.inner.call(req));
        }
        let mut res = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed",
            &request_id(req.headers()),
        );
        res.headers_mut().insert(ALLOW, HeaderValue::from_static(ALLOW_VALUE));
        res.extensions_mut().insert(MethodNotAllowed { method: req.method().clone() });
        Either::Left(futures_util::future::ready(Ok(res)))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn ok(_: Request<Body>) -> Result<Response<Body>, Infallible> {
        Ok(Response::new(Body::from("ok")))
    }

    async fn send(method: Method) -> Response<Body> {
        let req = Request::builder()
            .method(method)
            .uri("/x")
            .header("x-request-id", "m-1")
            .body(Body::empty())
            .unwrap();
        MethodGuardLayer::new().layer(tower::service_fn(ok)).oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn allowed_methods_reach_the_inner_service() {
        for m in ALLOWED_METHODS {
            assert_eq!(send(m.clone()).await.status(), StatusCode::OK, "{m}");
        }
    }

    #[tokio::test]
    async fn trace_connect_and_extension_methods_get_405_with_allow() {
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        for m in [Method::TRACE, Method::CONNECT, custom] {
            let res = send(m.clone()).await;
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
            assert_eq!(res.headers()[ALLOW], ALLOW_VALUE);
            assert_eq!(res.headers()["content-type"], "application/json");
            assert_eq!(res.extensions().get::<MethodNotAllowed>().unwrap().method, m);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "method_not_allowed");
            assert_eq!(v["error"]["request_id"], "m-1");
        }
    }
}
