//! The CORS configuration, decision and layer.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::error::{error_response, request_id};
use crate::future::{after, early, ResponseFuture};
use crate::origin::Origin;

/// The allowlists. [`Default`] allows nothing: CORS is off.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    allowed_origins: Vec<Origin>,
    allowed_methods: Vec<Method>,
    allowed_headers: Vec<HeaderName>,
    exposed_headers: Vec<HeaderName>,
    max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: Vec::new(),
            allowed_headers: Vec::new(),
            exposed_headers: Vec::new(),
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsConfig {
    /// Nothing allowed; preflight answers are cached for 10 minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `origin` (with credentials).
    pub fn with_allowed_origin(mut self, origin: Origin) -> Self {
        self.allowed_origins.push(origin);
        self
    }

    /// Allows `method` in preflights.
    pub fn with_allowed_method(mut self, method: Method) -> Self {
        self.allowed_methods.push(method);
        self
    }

    /// Allows request header `name` in preflights.
    pub fn with_allowed_header(mut self, name: HeaderName) -> Self {
        self.allowed_headers.push(name);
        self
    }

    /// Lets scripts of allowed origins read response header `name`.
    pub fn with_exposed_header(mut self, name: HeaderName) -> Self {
        self.exposed_headers.push(name);
        self
    }

    /// How long browsers may cache a preflight answer (whole seconds).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Whether any origin is allowed.
    pub fn is_enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }
}

/// Why a preflight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorsReason {
    /// The origin is not on the allowlist (or is `null` or malformed).
    OriginNotAllowed,
    /// The requested method is not allowed.
    MethodNotAllowed,
    /// A requested header is not allowed.
    HeaderNotAllowed,
}

impl CorsReason {
    /// The snake_case name, for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::HeaderNotAllowed => "header_not_allowed",
        }
    }
}

/// A refused preflight, inserted into the 403 response's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRejection {
    /// Why.
    pub reason: CorsReason,
    /// The request's `Origin` header, when short printable text.
    pub origin_seen: Option<String>,
}

impl fmt::Display for CorsRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CORS preflight refused: {}", self.reason.as_str())
    }
}

impl std::error::Error for CorsRejection {}

/// Header values computed once from the configuration.
#[derive(Debug)]
struct Prepared {
    config: CorsConfig,
    origins: Vec<(Origin, HeaderValue)>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let text = items.collect::<Vec<_>>().join(", ");
    if text.is_empty() {
        None
    } else {
        HeaderValue::from_str(&text).ok()
    }
}

impl Prepared {
    fn new(config: CorsConfig) -> Self {
        let origins = config
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(&o.to_string()).ok().map(|v| (o.clone(), v)))
            .collect();
        Self {
            origins,
            allow_methods: join(config.allowed_methods.iter().map(Method::as_str)),
            allow_headers: join(config.allowed_headers.iter().map(HeaderName::as_str)),
            expose_headers: join(config.exposed_headers.iter().map(HeaderName::as_str)),
            max_age: HeaderValue::from(config.max_age.as_secs()),
            config,
        }
    }

    /// The `Access-Control-Allow-Origin` value for the request's `Origin`, if allowed.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = Origin::from_header(headers.get(ORIGIN)?.to_str().ok()?)?;
        self.origins.iter().find(|(o, _)| *o == origin).map(|(_, v)| v.clone())
    }

    fn preflight(&self, headers: &HeaderMap) -> Result<HeaderValue, CorsRejection> {
        let reject = |reason| CorsRejection { reason, origin_seen: origin_seen(headers) };
        let allow_origin =
            self.allowed_origin(headers).ok_or(reject(CorsReason::OriginNotAllowed))?;
        let method = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
            .filter(|m| self.config.allowed_methods.contains(m));
        if method.is_none() {
            return Err(reject(CorsReason::MethodNotAllowed));
        }
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let text = value.to_str().map_err(|_| reject(CorsReason::HeaderNotAllowed))?;
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let allowed = HeaderName::from_bytes(name.as_bytes())
                    .is_ok_and(|n| self.config.allowed_headers.contains(&n));
                if !allowed {
                    return Err(reject(CorsReason::HeaderNotAllowed));
                }
            }
        }
        Ok(allow_origin)
    }
}

fn origin_seen(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(ORIGIN)?.to_str().ok()?;
    (text.len() <= 256).then(|| text.to_owned())
}

/// Adds `Vary: <name>` unless the response already varies on it (or on everything).
fn add_vary(headers: &mut HeaderMap, name: &'static str) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').map(str::trim).any(|t| t == "*" || t.eq_ignore_ascii_case(name))
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static(name));
    }
}

/// Answers preflights and adds CORS headers for allowlisted origins. See the
/// [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct CorsLayer {
    prepared: Arc<Prepared>,
}

impl Default for CorsLayer {
    /// CORS off: no origin is allowed.
    fn default() -> Self {
        Self::new(CorsConfig::default())
    }
}

impl CorsLayer {
    /// A layer over `config`.
    pub fn new(config: CorsConfig) -> Self {
        Self { prepared: Arc::new(Prepared::new(config)) }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors { inner, prepared: Arc::clone(&self.prepared) }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    prepared: Arc<Prepared>,
}

/// Per-request state of [`Cors`]: the origin to allow, if any.
#[derive(Debug)]
pub struct CorsState {
    allow_origin: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, CorsState, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let headers = req.headers();
        let is_preflight = req.method() == Method::OPTIONS
            && headers.contains_key(ORIGIN)
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if is_preflight {
            return early(self.answer_preflight(headers));
        }
        let state = CorsState {
            allow_origin: self.prepared.allowed_origin(headers),
            expose_headers: self.prepared.expose_headers.clone(),
        };
        after(self.inner.call(req), state, finish)
    }
}

impl<S> Cors<S> {
    fn answer_preflight<B: From<String>>(&self, headers: &HeaderMap) -> Response<B> {
        let p = &self.prepared;
        let mut res = match p.preflight(headers) {
            Ok(allow_origin) => {
                let mut res = Response::new(B::from(String::new()));
                *res.status_mut() = StatusCode::NO_CONTENT;
                let h = res.headers_mut();
                h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
                h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
                if let Some(v) = &p.allow_methods {
                    h.insert(ACCESS_CONTROL_ALLOW_METHODS, v.clone());
                }
                if let Some(v) = &p.allow_headers {
                    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                }
                h.insert(ACCESS_CONTROL_MAX_AGE, p.max_age.clone());
                res
            }
            Err(rejection) => {
                tracing::debug!(reason = rejection.reason.as_str(), "CORS preflight refused");
                let mut res = error_response(
                    StatusCode::FORBIDDEN,
                    "cors_rejected",
                    "cross-origin request not allowed",
                    &request_id(headers),
                );
                res.extensions_mut().insert(rejection);
                res
            }
        };
        let h = res.headers_mut();
        add_vary(h, "Origin");
        add_vary(h, "Access-Control-Request-Method");
        add_vary(h, "Access-Control-Request-Headers");
        res
    }
}

fn finish<B, E>((result, state): (Result<Response<B>, E>, CorsState)) -> Result<Response<B>, E> {
    let mut res = result?;
    let h = res.headers_mut();
    h.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
    h.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
    if let Some(origin) = state.allow_origin {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        if let Some(expose) = state.expose_headers {
            h.entry(ACCESS_CONTROL_EXPOSE_HEADERS).or_insert(expose);
        }
    }
    add_vary(h, "Origin");
    Ok(res)
}
