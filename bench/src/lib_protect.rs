//! `lib-protect`: `plain`'s handler behind the workspace's request-protection layers, as an
//! application embeds them (see `crates/rampart-protect/examples/axum_protect.rs`): security
//! headers (strict preset, with HSTS only for an https origin as in the example and the server:
//! browsers ignore it over plain HTTP), the method guard, client-IP resolution (`ClientIpLayer`,
//! no trusted proxies), the rate limiter with its default rule and memory store, CSRF protection
//! and the body limit.
//!
//! So `lib-protect ÷ plain` is the whole protection stack's cost on a `GET` over HTTP, which is
//! what an application pays for it. The `GET` is exempt from the default rate-limit rule and
//! from the CSRF token check (safe method), but both layers still run their matching; the
//! in-process micro-benchmark `bench_stack` measures a `POST` with the full CSRF check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::Extension;
use rampart_core::{Keyring, MasterKey, SystemClock, TrustedProxies};
use rampart_protect::csrf::{csrf_token_for, CsrfConfig, CsrfContext, CsrfLayer};
use rampart_protect::headers::{
    SecurityHeadersConfig, SecurityHeadersLayer, DEFAULT_CSP, PERMISSIONS_POLICY,
};
use rampart_protect::{BodyLimitLayer, ClientIpLayer, MethodGuardLayer, Origin};
use rampart_ratelimit::{MemoryRateLimitStore, RateLimitLayer, RateLimitStore};

/// Starts the server on `addr` until SIGINT/SIGTERM.
pub(crate) fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let public = Origin::parse(&format!("http://{addr}"))?;
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    // What a session layer would put in front: the CSRF context of the caller's session.
    let context = CsrfContext::session(csrf_token_for(&keyring, b"bench-session-id"));
    let limiter: Arc<dyn RateLimitStore> =
        Arc::new(MemoryRateLimitStore::with_default_capacity(SystemClock::shared()));
    // The whole stack (outermost first) around the router, as the example does: one clone of
    // the stack per request, where `Router::layer` would box it into every route and clone
    // that box per request.
    let stack = tower::ServiceBuilder::new()
        .layer(SecurityHeadersLayer::new(
            SecurityHeadersConfig::strict().with_hsts(public.is_https()),
        ))
        .layer(MethodGuardLayer::new())
        .layer(ClientIpLayer::new(TrustedProxies::none()))
        .layer(Extension(context))
        .layer(RateLimitLayer::with_default_rule(limiter))
        .layer(CsrfLayer::new(CsrfConfig::new(public)))
        .layer(BodyLimitLayer::new(64 * 1024));
    let app = stack.service(crate::servers::plain());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(crate::servers::serve_service(app, addr))
}

/// `plain` with the headers the stack above sends on `GET /api/auth/me` over plain HTTP, set by
/// one map over the response and nothing else: the cost of the header bytes alone. The script
/// checks that both answers carry the same header lines before it measures.
pub(crate) fn plain_headers() -> axum::Router {
    let headers: HeaderMap = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        (HeaderName::from_static("permissions-policy"), PERMISSIONS_POLICY),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (header::CONTENT_SECURITY_POLICY, DEFAULT_CSP),
        (header::CACHE_CONTROL, "no-store"),
    ]
    .into_iter()
    .map(|(name, value)| (name, HeaderValue::from_static(value)))
    .collect();
    let add = move |mut res: axum::response::Response| {
        for (name, value) in &headers {
            res.headers_mut().insert(name, value.clone());
        }
        res
    };
    crate::servers::plain().layer(tower::ServiceBuilder::new().map_response(add))
}
