//! Request ids, client IP resolution and the access log, applied by the outermost layer,
//! [`observe`](crate::http::observe).
//!
//! Every response carries `x-request-id`. An inbound id is kept only when the peer is a trusted
//! proxy and the id is short and plain; otherwise a fresh one is generated. The id is available
//! to handlers as [`RequestId`] and to error bodies through a task-local.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue};
use rampart_core::ClientIp;

use crate::error::RequestId;
use crate::state::AppState;

/// The request-id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    // Shared: it is set twice per request (for the inner call and for its future).
    static CURRENT_REQUEST_ID: Arc<str>;
}

/// The id of the request being handled on this task, or an empty string outside a request.
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default()
}

fn acceptable_inbound(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then(|| s.to_owned())
}

/// Resolves the client address from the socket peer and trusted forwarding headers.
pub fn client_ip_of(
    state: &AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> ClientIp {
    rampart_protect::client_ip::resolve(&state.config.trusted_proxies, peer.ip(), headers)
}

/// What the request-id part of [`observe`](crate::http::observe) sets on the way in and needs
/// on the way out.
pub(crate) struct Tagged {
    pub(crate) id: Arc<str>,
    pub(crate) header: Option<HeaderValue>,
    pub(crate) client_ip: ClientIp,
}

/// Gives `req` its request id (kept from a trusted proxy or fresh), the `x-request-id` header,
/// and the [`RequestId`] and [`ClientIp`] extensions.
pub(crate) fn tag(state: &AppState, req: &mut Request) -> Tagged {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0);
    let trusted_peer = state.config.trusted_proxies.contains(peer.ip());
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|_| trusted_peer)
        .and_then(acceptable_inbound)
        .unwrap_or_else(|| rampart_core::token::random_id(16));
    let client_ip = client_ip_of(state, peer, req.headers());
    let header = HeaderValue::from_str(&id).ok();
    if let Some(v) = &header {
        req.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
    }
    let shared = Arc::from(id.as_str());
    req.extensions_mut().insert(RequestId(id));
    req.extensions_mut().insert(client_ip);
    Tagged { id: shared, header, client_ip }
}

/// Runs `f` (the inner service's `call`) with the request id as the task-local id.
pub(crate) fn with_id<R>(id: Arc<str>, f: impl FnOnce() -> R) -> R {
    CURRENT_REQUEST_ID.sync_scope(id, f)
}

/// `fut` polled with the request id as the task-local id.
pub(crate) fn scoped<F: std::future::Future>(
    id: Arc<str>,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<str>, F> {
    CURRENT_REQUEST_ID.scope(id, fut)
}

/// Puts the id on the response and writes the access line.
pub(crate) fn finish<B>(
    tagged: Tagged,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    started: Instant,
    res: &mut axum::http::Response<B>,
) {
    let Tagged { id, header, client_ip } = tagged;
    if let Some(v) = header {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = res.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "rampart::access",
        %method,
        path = %crate::http::loggable_path(uri.path()),
        status,
        latency_ms,
        request_id = %id,
        client_ip = %client_ip,
        "request"
    );
}
