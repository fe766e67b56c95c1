//! [`SessionLayer`] and the [`Session`] / [`OptionalSession`] extractors, for any axum app.
//!
//! The layer reads the session cookie, loads the session through the [`SessionManager`] and
//! inserts the [`CurrentSession`] into the request extensions. Handlers start or end a session
//! by returning a [`SetSession`] part; the layer writes the matching `Set-Cookie`.
//!
//! # Security
//! - Anonymous requests never create a stored session: only a handler's [`SetSession::Start`]
//!   after a real login does.
//! - A malformed, unknown or expired cookie is removed from the browser (`Max-Age=0`), and a
//!   [`SessionEvent`] is put in both the request and the response extensions for the audit
//!   layer. The request then proceeds anonymously.
//! - When the store is unavailable the layer answers 503 `session_store_unavailable` rather
//!   than treating the user as signed out; the [`SessionRejection`] is put in the response
//!   extensions.
//! - Every response that sets or clears the session cookie gets `Cache-Control: no-store`, so no
//!   cache stores a response carrying a credential.
//! - A [`SetSession`] returned by a handler that is not behind this layer sets no cookie.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use futures_util::future::{self, Either, FutureExt, Join, Map, Ready};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use tower::{Layer, Service};

use crate::cookie::{CookieConfig, CookieRead};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::manager::{CurrentSession, LoadOutcome, QuickLoad, SessionManager, Unsettled};

/// What happened to the session cookie of a request, for the audit layer. Inserted into the
/// request and response extensions only when something noteworthy happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The cookie was not a well-formed id, or there were two different ones.
    InvalidToken,
    /// A well-formed id that matches no session (revoked, long expired, or forged).
    UnknownSession,
    /// The session had been idle past the idle timeout.
    ExpiredIdle {
        /// The session's user.
        user_id: String,
        /// The session's public handle.
        handle: String,
    },
    /// The session had passed its absolute lifetime.
    ExpiredAbsolute {
        /// The session's user.
        user_id: String,
        /// The session's public handle.
        handle: String,
    },
}

/// A response part asking [`SessionLayer`] to set or clear the session cookie.
#[derive(Debug, Clone)]
pub enum SetSession {
    /// Put this (new or rotated) id in the cookie.
    Start(SessionId),
    /// Remove the cookie (after logout).
    End,
}

impl IntoResponseParts for SetSession {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Infallible> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

impl IntoResponse for SetSession {
    fn into_response(self) -> Response {
        (self, StatusCode::NO_CONTENT).into_response()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejectionKind {
    /// 401 `unauthenticated`: the route needs a session and there is none.
    Unauthenticated,
    /// 503 `session_store_unavailable`: the store is down or slow.
    StoreUnavailable,
    /// 500 `internal_error`: the store failed otherwise (details in the log).
    StoreError,
}

/// A refusal by the layer or the [`Session`] extractor. Renders as the JSON error shape and
/// puts itself into the response extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRejection {
    /// What went wrong.
    pub kind: SessionRejectionKind,
    /// The request's `x-request-id`, or empty.
    pub request_id: String,
}

impl SessionRejection {
    fn new(kind: SessionRejectionKind, headers: &HeaderMap) -> Self {
        Self { kind, request_id: request_id(headers) }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            SessionRejectionKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            SessionRejectionKind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            SessionRejectionKind::StoreError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self.kind {
            SessionRejectionKind::Unauthenticated => "unauthenticated",
            SessionRejectionKind::StoreUnavailable => "session_store_unavailable",
            SessionRejectionKind::StoreError => "internal_error",
        }
    }

    fn message(&self) -> &'static str {
        match self.kind {
            SessionRejectionKind::Unauthenticated => "authentication required",
            SessionRejectionKind::StoreUnavailable => "the session store is unavailable; try again",
            SessionRejectionKind::StoreError => "internal error",
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.message(), "request_id": self.request_id }
        });
        let mut res = (self.status(), body.to_string()).into_response();
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.extensions_mut().insert(self);
        res
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Loads the request's session from its cookie. See the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    manager: SessionManager,
    cookie: CookieConfig,
}

impl SessionLayer {
    /// A layer over `manager`; the cookie's `Max-Age` is clamped to the absolute timeout.
    pub fn new(manager: SessionManager, cookie: CookieConfig) -> Self {
        let cookie = cookie.clamped(manager.timeouts().absolute);
        Self { manager, cookie }
    }

    /// The cookie configuration in effect.
    pub fn cookie(&self) -> &CookieConfig {
        &self.cookie
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService { inner, manager: self.manager.clone(), cookie: self.cookie }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
    cookie: CookieConfig,
}

/// What a request needs once the inner service answered: the cookie settings and what
/// happened to the session cookie.
type Finishing = (CookieConfig, Option<SessionEvent>);

/// Finishes the inner service's response with [`Finishing`].
type FinishFn<E> = fn((Result<Response, E>, Finishing)) -> Result<Response, E>;

/// The future of [`SessionService`] around the inner future `F`: an answer of the layer's own
/// (the store failed), the inner future finished in place (the session was decided without
/// waiting, as with the memory store: no allocation), or a boxed future that first waits for
/// the store.
pub type ResponseFuture<F, E> = Either<
    Either<Ready<Result<Response, E>>, Map<Join<F, Ready<Finishing>>, FinishFn<E>>>,
    Pin<Box<dyn Future<Output = Result<Response, E>> + Send + 'static>>,
>;

/// What the boxed path still has to wait for.
enum Pending {
    /// The whole load.
    Load(SessionId),
    /// Deleting an expired or unreadable session that was already loaded.
    Settle(Unsettled),
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let cookie = self.cookie;
        let event = match cookie.read(req.headers()) {
            CookieRead::None => None,
            CookieRead::Malformed => Some(SessionEvent::InvalidToken),
            CookieRead::Valid(id) => match self.manager.load_now(&id) {
                QuickLoad::Done(Ok(outcome)) => apply(outcome, &mut req),
                QuickLoad::Done(Err(e)) => {
                    return Either::Left(Either::Left(future::ready(Ok(store_failure(
                        &e,
                        req.headers(),
                    )))));
                }
                QuickLoad::Settle(u) => return self.wait(req, Pending::Settle(u)),
                QuickLoad::Wait => return self.wait(req, Pending::Load(id)),
            },
        };
        if let Some(ev) = &event {
            req.extensions_mut().insert(ev.clone());
        }
        // Called now, on the instance that was polled ready.
        let inner = self.inner.call(req);
        let finish: FinishFn<S::Error> = finish_response;
        Either::Left(Either::Right(future::join(inner, future::ready((cookie, event))).map(finish)))
    }
}

impl<S> SessionService<S> {
    /// The path through a store that must be waited for.
    fn wait<B>(
        &mut self,
        mut req: Request<B>,
        pending: Pending,
    ) -> ResponseFuture<S::Future, S::Error>
    where
        S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        // Use the instance that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        let cookie = self.cookie;
        Either::Right(Box::pin(async move {
            let loaded = match pending {
                Pending::Load(id) => manager.load(&id).await,
                Pending::Settle(u) => manager.settle(u).await,
            };
            let event = match loaded {
                Ok(outcome) => apply(outcome, &mut req),
                Err(e) => return Ok(store_failure(&e, req.headers())),
            };
            if let Some(ev) = &event {
                req.extensions_mut().insert(ev.clone());
            }
            let mut res = inner.call(req).await?;
            finish(&mut res, &cookie, event);
            Ok(res)
        }))
    }
}

/// Puts a live session into the request; otherwise what happened to the cookie.
fn apply<B>(outcome: LoadOutcome, req: &mut Request<B>) -> Option<SessionEvent> {
    match outcome {
        LoadOutcome::Active(session) => {
            req.extensions_mut().insert::<CurrentSession>(Arc::new(session));
            None
        }
        LoadOutcome::ExpiredIdle(r) => {
            Some(SessionEvent::ExpiredIdle { user_id: r.user_id, handle: r.handle })
        }
        LoadOutcome::ExpiredAbsolute(r) => {
            Some(SessionEvent::ExpiredAbsolute { user_id: r.user_id, handle: r.handle })
        }
        _ => Some(SessionEvent::UnknownSession),
    }
}

fn finish_response<E>(
    (result, (cookie, event)): (Result<Response, E>, Finishing),
) -> Result<Response, E> {
    let mut res = result?;
    finish(&mut res, &cookie, event);
    Ok(res)
}

fn store_failure(err: &SessionError, headers: &HeaderMap) -> Response {
    let kind = if err.is_unavailable() {
        tracing::warn!(error = ?err, "session store unavailable");
        SessionRejectionKind::StoreUnavailable
    } else {
        tracing::error!(error = ?err, "session store failed");
        SessionRejectionKind::StoreError
    };
    SessionRejection::new(kind, headers).into_response()
}

/// Writes the cookie the handler asked for, or clears a bad one, and marks such responses
/// uncacheable.
fn finish(res: &mut Response, cookie: &CookieConfig, event: Option<SessionEvent>) {
    let name = cookie.name().as_bytes();
    let handler_set_cookie =
        res.headers().get_all(SET_COOKIE).iter().any(|v| {
            v.as_bytes().strip_prefix(name).is_some_and(|rest| rest.first() == Some(&b'='))
        });
    let header = match res.extensions_mut().remove::<SetSession>() {
        Some(SetSession::Start(id)) => Some(cookie.set_cookie(&id)),
        Some(SetSession::End) => Some(cookie.clear_cookie()),
        None if event.is_some() && !handler_set_cookie => Some(cookie.clear_cookie()),
        None => None,
    };
    let touched_cookie = header.is_some() || handler_set_cookie;
    if let Some(h) = header {
        res.headers_mut().append(SET_COOKIE, h);
    }
    if touched_cookie {
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(ev) = event {
        res.extensions_mut().insert(ev);
    }
}

/// The signed-in session; rejects with 401 `unauthenticated` when there is none. Requires
/// [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct Session(pub CurrentSession);

impl std::ops::Deref for Session {
    type Target = CurrentSession;

    fn deref(&self) -> &CurrentSession {
        &self.0
    }
}

impl<St: Send + Sync> FromRequestParts<St> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<CurrentSession>() {
            Some(s) => Ok(Session(s.clone())),
            None => {
                Err(SessionRejection::new(SessionRejectionKind::Unauthenticated, &parts.headers))
            }
        }
    }
}

impl<St: Send + Sync> OptionalFromRequestParts<St> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &St,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<CurrentSession>().cloned().map(Session))
    }
}

/// The session if there is one; never rejects.
#[derive(Debug, Clone)]
pub struct OptionalSession(pub Option<CurrentSession>);

impl<St: Send + Sync> FromRequestParts<St> for OptionalSession {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        Ok(OptionalSession(parts.extensions.get::<CurrentSession>().cloned()))
    }
}

#[cfg(test)]
mod tests;
