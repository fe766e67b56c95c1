//! The security headers layer.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY,
    SERVER, STRICT_TRANSPORT_SECURITY,
};
use http::{Request, Response};
use rampart_core::token::random_id;
use tower::{Layer, Service};

use super::config::SecurityHeadersConfig;
use crate::future::{after, ResponseFuture};
use crate::util::{has_media_type, under_any};

/// `X-Powered-By`, which no response keeps (a constant: no name parsing per response).
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Bytes of randomness in a CSP nonce (128 bits).
const NONCE_BYTES: usize = 16;

/// The CSP nonce of the current response, in the request extensions for HTML handlers.
/// base64url, so it can be written into a `nonce="…"` attribute as is.
///
/// Drawn on first use: a JSON response, which never carries a nonce, costs no random draw.
/// Clones share the one value, so the handler's page and the layer's `Content-Security-Policy`
/// always agree.
#[derive(Debug, Clone, Default)]
pub struct CspNonce(Arc<OnceLock<String>>);

impl CspNonce {
    /// A nonce with the given text (tests and fixed pages).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(Arc::new(OnceLock::from(text.into())))
    }

    /// The nonce text, drawn now if it was not yet.
    pub fn as_str(&self) -> &str {
        self.0.get_or_init(|| random_id(NONCE_BYTES))
    }
}

impl PartialEq for CspNonce {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CspNonce {}

/// Response extension marker: the response was produced for an authenticated request and
/// gets `Cache-Control: no-store` unless it sets its own `Cache-Control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Authenticated;

/// Adds security headers to every response. See the [module docs](super).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SecurityHeadersLayer {
    config: Arc<SecurityHeadersConfig>,
}

impl SecurityHeadersLayer {
    /// A layer sending what `config` says.
    pub fn new(config: SecurityHeadersConfig) -> Self {
        Self { config: Arc::new(config) }
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner, config: Arc::clone(&self.config) }
    }
}

/// The service made by [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    config: Arc<SecurityHeadersConfig>,
}

/// Per-request state of [`SecurityHeaders`]: the nonce and what the path asked for.
#[derive(Debug)]
pub struct HeadersState {
    config: Arc<SecurityHeadersConfig>,
    nonce: CspNonce,
    no_referrer: bool,
    no_store: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, HeadersState, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let nonce = CspNonce::default();
        req.extensions_mut().insert(nonce.clone());
        let path = req.uri().path();
        let state = HeadersState {
            no_referrer: under_any(path, &self.config.no_referrer_prefixes),
            no_store: under_any(path, &self.config.no_store_prefixes),
            config: Arc::clone(&self.config),
            nonce,
        };
        after(self.inner.call(req), state, finish)
    }
}

fn finish<B, E>((result, state): (Result<Response<B>, E>, HeadersState)) -> Result<Response<B>, E> {
    let mut res = result?;
    let authenticated = res.extensions().get::<Authenticated>().is_some();
    let is_html =
        ["text/html", "application/xhtml+xml"].iter().any(|m| has_media_type(res.headers(), m));
    let config = &state.config;
    let headers = res.headers_mut();
    // Room for everything added below at once, instead of growing the map step by step.
    headers.reserve(config.fixed.len() + 4);
    headers.remove(SERVER);
    headers.remove(X_POWERED_BY);
    if state.no_store || authenticated {
        set_if_absent(headers, CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if config.hsts {
        set_if_absent(headers, STRICT_TRANSPORT_SECURITY, config.hsts_value.clone());
    }
    for (name, value) in &config.fixed {
        set_if_absent(headers, name.clone(), value.clone());
    }
    let referrer = if state.no_referrer {
        Some(HeaderValue::from_static("no-referrer"))
    } else {
        config.referrer_policy.clone()
    };
    if let Some(value) = referrer {
        set_if_absent(headers, REFERRER_POLICY, value);
    }
    let csp =
        if is_html { config.html_csp_for(state.nonce.as_str()) } else { config.other_csp.clone() };
    if let Some(value) = csp {
        set_if_absent(headers, CONTENT_SECURITY_POLICY, value);
    }
    Ok(res)
}

fn set_if_absent(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    headers.entry(name).or_insert(value);
}
