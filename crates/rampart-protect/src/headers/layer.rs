//! The security headers layer.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    REFERRER_POLICY, SERVER,
};
use http::{Request, Response};
use rampart_core::token::random_id;
use tower::{Layer, Service};

use super::config::SecurityHeadersConfig;
use crate::future::{after, ResponseFuture};
use crate::util::under_any;

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
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityHeadersLayer {
    prepared: Arc<Prepared>,
}

/// The configuration and the header sets built from it once, shared by every response.
#[derive(Debug)]
struct Prepared {
    config: SecurityHeadersConfig,
    /// The starting set for each combination of the per-path choices, indexed by
    /// [`variant`]: `Cache-Control: no-store` and `Referrer-Policy: no-referrer` are already in
    /// the sets that need them, so a response only copies one map instead of inserting them.
    bases: [HeaderMap; 4],
}

/// The index into [`Prepared::bases`] for a response's choices.
fn variant(no_store: bool, no_referrer: bool) -> usize {
    usize::from(no_store) | usize::from(no_referrer) << 1
}

impl SecurityHeadersLayer {
    /// A layer sending what `config` says.
    pub fn new(config: SecurityHeadersConfig) -> Self {
        let bases = [(false, false), (true, false), (false, true), (true, true)].map(
            |(no_store, no_referrer)| {
                let mut base = config.base_headers();
                if no_store {
                    base.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
                if no_referrer {
                    base.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
                }
                base
            },
        );
        Self { prepared: Arc::new(Prepared { config, bases }) }
    }
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::new(SecurityHeadersConfig::default())
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner, prepared: Arc::clone(&self.prepared) }
    }
}

/// The service made by [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    prepared: Arc<Prepared>,
}

/// Per-request state of [`SecurityHeaders`]: the nonce and what the path asked for.
#[derive(Debug)]
pub struct HeadersState {
    prepared: Arc<Prepared>,
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
        let config = &self.prepared.config;
        let state = HeadersState {
            no_referrer: under_any(path, &config.no_referrer_prefixes),
            no_store: under_any(path, &config.no_store_prefixes),
            prepared: Arc::clone(&self.prepared),
            nonce,
        };
        after(self.inner.call(req), state, finish)
    }
}

/// Builds the response's headers: a copy of the prepared set for this response's choices, the
/// HTML policy on top when the response is HTML, and the response's own headers over both (so
/// whatever the response set itself wins), less `Server` and `X-Powered-By`. One copy and a
/// hashed insert per own header, instead of a lookup and insert per security header.
fn finish<B, E>((result, state): (Result<Response<B>, E>, HeadersState)) -> Result<Response<B>, E> {
    let mut res = result?;
    let authenticated = res.extensions().get::<Authenticated>().is_some();
    let own = std::mem::take(res.headers_mut());
    let Prepared { config, bases } = &*state.prepared;
    let mut headers = bases[variant(state.no_store || authenticated, state.no_referrer)].clone();
    if is_html(&own) {
        match config.html_csp_for(state.nonce.as_str()) {
            Some(value) => headers.insert(CONTENT_SECURITY_POLICY, value),
            None => headers.remove(CONTENT_SECURITY_POLICY),
        };
    }
    overlay(&mut headers, own);
    *res.headers_mut() = headers;
    Ok(res)
}

/// Whether the `Content-Type` essence is `text/html` or `application/xhtml+xml` (ASCII case
/// ignored, parameters and surrounding blanks allowed). Works on the bytes: no UTF-8 or
/// visible-ASCII pass over the value first.
pub(super) fn is_html(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let bytes = value.as_bytes();
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(bytes.len());
    let rest = &bytes[start..];
    [&b"text/html"[..], b"application/xhtml+xml"].iter().any(|essence| {
        rest.len() >= essence.len()
            && rest[..essence.len()].eq_ignore_ascii_case(essence)
            && rest[essence.len()..]
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t'))
                .is_none_or(|b| *b == b';')
    })
}

/// Puts every header of `own` into `headers`, replacing what `headers` had under the same
/// name and keeping all of `own`'s values; `Server` and `X-Powered-By` are left out.
fn overlay(headers: &mut HeaderMap, own: HeaderMap) {
    // `HeaderMap::into_iter` gives the name with the first value of each name only.
    let mut current: Option<HeaderName> = None;
    for (name, value) in own {
        if let Some(name) = name {
            current = (name != SERVER && name != X_POWERED_BY).then_some(name);
            if let Some(name) = &current {
                headers.insert(name, value);
            }
        } else if let Some(name) = &current {
            headers.append(name, value);
        }
    }
}
