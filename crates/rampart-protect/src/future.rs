//! Response futures of the layers that answer early or edit the inner service's response.
//!
//! [`ResponseFuture`] is either an answer the layer produced itself, or the inner service's
//! future with the layer's per-request state, finished by a plain function when the inner
//! future completes. No per-request allocation; the inner output goes straight to the finishing
//! function, without being parked in a combinator first.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

/// The function that finishes a response with the layer's per-request state `S`.
pub type Finish<S, B, E> = fn((Result<Response<B>, E>, S)) -> Result<Response<B>, E>;

pin_project! {
    /// The future of a layer whose inner future is `F`, with per-request state `S`, response
    /// body `B` and error `E`.
    #[project = Projection]
    pub struct ResponseFuture<F, S, B, E> {
        #[pin]
        kind: Kind<F, S, B, E>,
    }
}

pin_project! {
    #[project = KindProjection]
    enum Kind<F, S, B, E> {
        Early { answer: Option<Result<Response<B>, E>> },
        After { #[pin] inner: F, state: Option<(S, Finish<S, B, E>)> },
    }
}

impl<F, S, B, E> Future for ResponseFuture<F, S, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    // Polling again after `Ready` is a caller's bug, which every future may answer with a
    // panic; the message says which contract was broken.
    #[allow(clippy::expect_used)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Early { answer } => {
                Poll::Ready(answer.take().expect("response future polled after completion"))
            }
            KindProjection::After { inner, state } => {
                let result = ready!(inner.poll(cx));
                let (state, finish) =
                    state.take().expect("response future polled after completion");
                Poll::Ready(finish((result, state)))
            }
        }
    }
}

/// A response the layer produced without calling the inner service.
pub(crate) fn early<F, S, B, E>(res: Response<B>) -> ResponseFuture<F, S, B, E> {
    ResponseFuture { kind: Kind::Early { answer: Some(Ok(res)) } }
}

/// The inner future, finished by `finish` with `state` once it completes.
pub(crate) fn after<F, S, B, E>(
    inner: F,
    state: S,
    finish: Finish<S, B, E>,
) -> ResponseFuture<F, S, B, E> {
    ResponseFuture { kind: Kind::After { inner, state: Some((state, finish)) } }
}
