//! Response futures of the layers that answer early or edit the inner service's response.
//!
//! [`ResponseFuture`] is either an answer the layer produced itself, or the inner service's
//! future joined with the layer's per-request state and finished by a plain function. The
//! type is spelled out from `futures-util` combinators so that no per-request allocation and
//! no `unsafe` pin projection is needed.

use futures_util::future::{self, Either, FutureExt, Join, Map, Ready};
use http::Response;

/// The function that finishes a response with the layer's per-request state `S`.
pub type Finish<S, B, E> = fn((Result<Response<B>, E>, S)) -> Result<Response<B>, E>;

/// The future of a layer whose inner future is `F`, with per-request state `S`, response
/// body `B` and error `E`.
pub type ResponseFuture<F, S, B, E> =
    Either<Ready<Result<Response<B>, E>>, Map<Join<F, Ready<S>>, Finish<S, B, E>>>;

/// A response the layer produced without calling the inner service.
pub(crate) fn early<F, S, B, E>(res: Response<B>) -> ResponseFuture<F, S, B, E>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    Either::Left(future::ready(Ok(res)))
}

/// The inner future, finished by `finish` with `state` once it completes.
pub(crate) fn after<F, S, B, E>(
    inner: F,
    state: S,
    finish: Finish<S, B, E>,
) -> ResponseFuture<F, S, B, E>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    Either::Right(future::join(inner, future::ready(state)).map(finish))
}
