//! The outermost layer: request id, client IP, access log and metrics for every request.
//!
//! It does its work on the way in synchronously and calls the inner service at once, so a
//! request costs no copy of the stack beneath it and no boxed future (a middleware written as
//! an async function must clone its inner service and box its future on every request).
//!
//! On the way in: the request id (`request_id::tag`: kept from a trusted proxy or fresh) as
//! the `x-request-id` header, the [`RequestId`](crate::error::RequestId) and
//! [`ClientIp`](rampart_core::ClientIp) extensions, and the task-local id that error bodies
//! read, set while the inner service is called and while its future runs. On the way out: the
//! id on the response, the access line, and the request counted by route template, method,
//! status and latency (`metrics::record`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Response, Uri};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::http::request_id::{self, Tagged};
use crate::metrics;
use crate::state::AppState;

/// Adds [`Observe`] around a service.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    /// The layer for `state`'s configuration and metrics.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, state: self.state.clone() }
    }
}

/// Request id, client IP, access log and metrics around `S`.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

/// What the way out needs from the way in.
struct Seen {
    state: AppState,
    started: Instant,
    route: Option<MatchedPath>,
    method: Method,
    uri: Uri,
    tagged: Tagged,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let tagged = request_id::tag(&self.state, &mut req);
        let method = req.method().clone();
        // A shared handle on the URI, not a copy of the path: the access line is only
        // formatted when its level is on.
        let uri = req.uri().clone();
        let inner = &mut self.inner;
        let fut = request_id::with_id(tagged.id.clone(), || inner.call(req));
        let seen = Seen { state: self.state.clone(), started, route, method, uri, tagged };
        let fut = request_id::scoped(seen.tagged.id.clone(), fut);
        ObserveFuture { inner: fut, seen: Some(seen) }
    }
}

pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: TaskLocalFuture<std::sync::Arc<str>, F>,
        seen: Option<Seen>,
    }
}

impl<F, B> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<B>, Infallible>;

    // Polling again after `Ready` is a caller's bug, which every future may answer with a
    // panic; the message says which contract was broken.
    #[allow(clippy::expect_used)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = ready!(this.inner.poll(cx));
        let Seen { state, started, route, method, uri, tagged } =
            this.seen.take().expect("response future polled after completion");
        request_id::finish(tagged, &method, &uri, started, &mut res);
        metrics::record(&state, route.as_ref(), &method, started, &res);
        Poll::Ready(Ok(res))
    }
}
