//! The reverse proxy: with `RAMPART_UPSTREAM` set, every path that is not Rampart's own
//! ([`OWN_PATHS`]) goes to the upstream app after authentication and the access rules.
//!
//! For each proxied request, in order: the session or API key is authenticated (the server's
//! auth middleware), the access rules decide ([`AccessRules::decide`]) — an anonymous browser
//! navigation (GET or HEAD accepting `text/html`) is sent to
//! `/login?return_to=<path and query>` with 303, any other anonymous call gets 401
//! `unauthenticated`, a refused caller 403 `forbidden` (audited as `access_denied`) — then the
//! request is rewritten and streamed to the upstream, and the answer streamed back.
//!
//! # Security considerations
//! - **Nothing identity-like crosses from the client.** Identity headers are removed in every
//!   spelling and case (`Remote-User`, `remote_user`, `X-Forwarded-User`, the assertion, …) by
//!   [`strip_identity_headers`](crate::gateway::strip_identity_headers) before Rampart adds its
//!   own for an authenticated caller. Forwarding headers (`X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, …) and path or method override headers (`X-Original-URL`,
//!   `X-HTTP-Method-Override`, …) are removed too, so a client can neither claim an address nor
//!   make the upstream route the request differently from what the rules saw.
//! - **Forwarding headers are Rampart's.** `X-Forwarded-For` is the peer alone for an untrusted
//!   peer; behind `RAMPART_TRUSTED_PROXIES` it is the part of the chain trusted proxies vouch
//!   for (up to and including the resolved client) followed by the peer.
//!   `X-Forwarded-Proto` and `X-Forwarded-Host` come from the public origin, never the request.
//! - **One host for the rules.** The rules are asked about the public origin's host — the one
//!   host the upstream is told about — not the request's `Host`, so a client cannot pick a
//!   host that dodges a host-specific rule. The upstream sees its own address as `Host`.
//! - **Rampart's credentials stay in Rampart.** Its cookies (`rampart_*`, `__Host-rampart_*`)
//!   are cut out of `Cookie`, other cookies pass; `Authorization` is dropped when it carried a
//!   Rampart API key. The upstream may not set or clear Rampart cookies: such `Set-Cookie`
//!   lines are removed from its answers.
//! - **Hop-by-hop headers** (`Connection` and every header it names, `Keep-Alive`, `TE`,
//!   `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) are removed both ways; `Upgrade`
//!   survives only in a WebSocket handshake.
//! - **CSRF.** The global CSRF layer needs Rampart's session-bound token, which an upstream app
//!   cannot know. For proxied paths [`ProxyCsrf`] takes its place: it removes the
//!   [`CsrfContext`] (so the global layer lets the request pass) and, for a request
//!   authenticated by the session cookie with an unsafe method, applies the origin half of the
//!   same policy — Fetch Metadata, then `Origin`, then `Referer`, none of them means refusal —
//!   unless the matching access rule says `csrf = false`. Refusals are the same 403
//!   `csrf_rejected`, audited by the auth middleware.
//! - **WebSockets** pass only when `Origin` is the public origin or a trusted origin
//!   (cross-site WebSocket hijacking rides on cookies and is not covered by CSRF checks).
//!   Established sockets are spliced byte for byte and are not bounded by timeouts; they end
//!   when either side closes.
//! - **Limits.** The upstream has `RAMPART_UPSTREAM_TIMEOUT` (30 s) for connecting and sending
//!   its response head (504 `upstream_timeout`), connection failures are 502
//!   `upstream_unavailable`, and request bodies stream under `RAMPART_PROXY_BODY_LIMIT`
//!   (10 MiB, 413 `payload_too_large`) instead of the small JSON limit of Rampart's own routes
//!   ([`BodyLimits`]). The request timeout of the server still bounds the time to the response
//!   head, upload included. Response bodies are not time-bounded once they started.
//! - The security-header layer adds its headers to upstream answers only where absent, so an
//!   upstream's own `Content-Security-Policy` is kept (and an upstream can weaken headers).

mod headers;
mod upgrade;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::{ready, Either, Ready};
use http::header::{HeaderValue, CACHE_CONTROL, EXPECT, HOST, LOCATION};
use http::{StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rampart_audit::{EventKind, NewEvent, Outcome};
use rampart_core::ClientIp;
use rampart_protect::csrf::{CsrfConfig, CsrfContext, CsrfPolicy};
use rampart_protect::input::BodyLimit;
use rampart_protect::input::PayloadTooLarge;
use rampart_protect::BodyLimitLayer;
use serde_json::json;
use tokio_rustls::rustls;
use tower::{Layer, Service};

use crate::audit::{NewEventExt, RequestMeta};
use crate::auth::{Auth, AuthenticatedUser};
use crate::config::proxy::Upstream;
use crate::config::Config;
use crate::error::{ApiError, ErrorChain};
use crate::gateway::rules::{AccessRules, Decision};
use crate::http::request_id::current_request_id;
use crate::startup::StartupError;
use crate::state::AppState;

/// Rampart's own paths (whole segments: `/api` covers `/api/x`): answered by Rampart, 404 when
/// no route matches, never proxied.
pub const OWN_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api",
    "/auth",
    "/login",
    "/logout",
    "/account",
    "/.well-known",
    "/metrics",
];

/// Whether `path` is one of Rampart's own.
pub fn is_own_path(path: &str) -> bool {
    OWN_PATHS
        .iter()
        .any(|p| path.strip_prefix(p).is_some_and(|r| r.is_empty() || r.starts_with('/')))
}

type Connector = HttpsConnector<HttpConnector>;
type HttpClient = Client<Connector, Body>;

/// The proxy to the configured upstream. Built once per application.
#[derive(Debug)]
pub struct Proxy {
    upstream: Upstream,
    /// This proxy's key in each thread's clients; a thread drops its client once the proxy
    /// (the only strong holder) is gone.
    id: Arc<()>,
    /// What each thread's client connects with (TLS settings included).
    connector: Connector,
    timeout: Duration,
    body_limit: usize,
    rules: AccessRules,
    public_host: String,
    forwarded_proto: HeaderValue,
    forwarded_host: HeaderValue,
    websocket_origins: Vec<rampart_protect::Origin>,
}

impl Proxy {
    /// The proxy of `config`, `None` when no upstream is configured.
    ///
    /// # Errors
    /// A [`StartupError`] naming `RAMPART_UPSTREAM_CA_FILE` when the CA file cannot be read or
    /// holds no certificate.
    pub fn from_config(config: &Config) -> Result<Option<Self>, StartupError> {
        let Some(upstream) = config.proxy.upstream.clone() else { return Ok(None) };
        let origin = &config.public_origin;
        let default_port = if origin.is_https() { 443 } else { 80 };
        let host = if origin.port == default_port {
            origin.host.clone()
        } else {
            format!("{}:{}", origin.host, origin.port)
        };
        let header = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| StartupError::new("RAMPART_PUBLIC_ORIGIN", "not a valid header value"))
        };
        let mut websocket_origins = vec![config.csrf.public_origin.clone()];
        websocket_origins.extend(config.csrf.trusted.iter().cloned());
        Ok(Some(Self {
            id: Arc::new(()),
            connector: build_connector(config)?,
            timeout: config.proxy.timeout,
            body_limit: config.proxy.body_limit,
            rules: AccessRules::from_config(config),
            public_host: origin.host.clone(),
            forwarded_proto: header(&origin.scheme)?,
            forwarded_host: header(&host)?,
            websocket_origins,
            upstream,
        }))
    }

    /// Handles one request that no Rampart route matched.
    pub async fn handle(&self, state: &AppState, mut req: Request) -> Response {
        if is_own_path(req.uri().path()) {
            return ApiError::not_found().into_response();
        }
        // The request is consumed here: take the caller rather than copy it.
        let auth = req.extensions_mut().remove::<Auth>().unwrap_or(Auth::Anonymous);
        if matches!(auth, Auth::Unavailable) {
            return crate::auth::store_unavailable().into_response();
        }
        match self.rules.decide(&self.public_host, req.uri().path(), req.method(), auth.user()) {
            Decision::Allow => {}
            Decision::Unauthenticated => return unauthenticated(&req),
            Decision::Forbidden { rule } => {
                let denial = Denial {
                    meta: RequestMeta::from_request(&req),
                    path: crate::http::loggable_path(req.uri().path()),
                    method: req.method().to_string(),
                    rule,
                };
                return forbidden(state, denial, auth.user()).await;
            }
        }
        let websocket = headers::is_websocket_upgrade(req.headers());
        if websocket && !upgrade::origin_allowed(req.headers(), &self.websocket_origins) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_rejected",
                "this origin may not open a WebSocket here",
            )
            .into_response();
        }
        let client_upgrade =
            if websocket { req.extensions_mut().remove::<OnUpgrade>() } else { None };
        let outbound = match self.outbound(state, req, &auth, websocket) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let sent = self.with_client(|client| client.request(outbound));
        let answer = match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => {
                tracing::warn!(upstream = %self.upstream.to_url(), "the upstream did not answer in time");
                return ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream application did not answer in time",
                )
                .into_response();
            }
            Ok(Err(e)) => return self.failure(&e),
            Ok(Ok(res)) => res,
        };
        let mut res =
            if websocket { upgrade::splice(client_upgrade, answer) } else { answer.map(Body::new) };
        let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::remove_hop_by_hop(res.headers_mut(), switching);
        headers::strip_rampart_set_cookies(res.headers_mut());
        res
    }

    /// The request to send upstream: the upstream's address with the original path and query,
    /// rewritten headers, the body streamed as it arrives.
    fn outbound(
        &self,
        state: &AppState,
        req: Request,
        auth: &Auth,
        websocket: bool,
    ) -> Result<http::Request<Body>, ApiError> {
        let (parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ApiError::invalid_request("invalid request target"))?;
        let peer = peer_ip(&parts.extensions);
        let xff: Vec<&str> = parts
            .headers
            .get_all(&headers::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let forwarded: Vec<&str> = parts
            .headers
            .get_all(http::header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let forwarded_for =
            headers::forwarded_for(&state.config.trusted_proxies, peer, &xff, &forwarded);
        let mut h = parts.headers;
        headers::remove_hop_by_hop(&mut h, websocket);
        crate::gateway::strip_identity_headers(&mut h);
        headers::strip_forwarding(&mut h);
        headers::strip_rampart_cookies(&mut h);
        headers::strip_api_key(&mut h, matches!(auth, Auth::ApiKey(_)));
        h.remove(HOST);
        h.remove(EXPECT);
        if let Ok(v) = HeaderValue::try_from(forwarded_for) {
            h.insert(headers::X_FORWARDED_FOR.clone(), v);
        }
        h.insert(headers::X_FORWARDED_PROTO.clone(), self.forwarded_proto.clone());
        h.insert(headers::X_FORWARDED_HOST.clone(), self.forwarded_host.clone());
        if let Some(user) = auth.user() {
            crate::gateway::identity::insert_identity_headers(state, user, &mut h);
        }
        let mut out = http::Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = h;
        Ok(out)
    }

    /// Runs `f` with this thread's client of this proxy, made on first use. Each thread keeps
    /// its own pool of upstream connections: a connection is opened, driven and reused by the
    /// thread (the connection loop, see [`crate::workers`]) that serves the requests going
    /// over it, so the upstream exchange never waits for another thread. A thread's clients
    /// live until the proxy is dropped (the thread forgets it at its next new client); idle
    /// upstream connections close after 30 s either way.
    fn with_client<R>(&self, f: impl FnOnce(&HttpClient) -> R) -> R {
        thread_local! {
            static CLIENTS: RefCell<Vec<(Weak<()>, HttpClient)>> = const { RefCell::new(Vec::new()) };
        }
        CLIENTS.with_borrow_mut(|clients| {
            let mine = Arc::downgrade(&self.id);
            if let Some((_, client)) = clients.iter().find(|(id, _)| id.ptr_eq(&mine)) {
                return f(client);
            }
            clients.retain(|(id, _)| id.strong_count() > 0);
            let client = new_client(self.connector.clone());
            let answer = f(&client);
            clients.push((mine, client));
            answer
        })
    }

    /// 413 when the body outgrew the limit while streaming, 400 when the client's body could
    /// not be read (broken chunked framing, fewer bytes than its `Content-Length`), else 502.
    fn failure(&self, e: &hyper_util::client::legacy::Error) -> Response {
        if rampart_protect::input::is_length_limit_error(e) {
            return PayloadTooLarge { limit: self.body_limit }.to_response(&current_request_id());
        }
        if is_request_body_error(e) {
            tracing::info!(error = %ErrorChain(e), "the client's request body could not be read");
            return ApiError::invalid_request("the request body could not be read").into_response();
        }
        tracing::warn!(upstream = %self.upstream.to_url(), error = %ErrorChain(e), "the upstream is unavailable");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upstream application is unavailable",
        )
        .into_response()
    }
}

/// Whether sending failed because the request body (the client's, streamed through) failed to
/// read: the client's fault, not the upstream's. The HTTP client reports an error of the body
/// it was given as a user error.
fn is_request_body_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_user) {
            return true;
        }
        current = err.source();
    }
    false
}

fn peer_ip(ext: &http::Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| ext.get::<ClientIp>().map(|c| c.0))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// 303 to the login page for a browser navigation, 401 for anything else.
fn unauthenticated(req: &Request) -> Response {
    if !headers::is_navigation(req.method(), req.headers()) {
        return ApiError::unauthenticated().into_response();
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = HeaderValue::try_from(headers::login_location(target))
        .unwrap_or(HeaderValue::from_static("/login"));
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(LOCATION, location);
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// What an `access_denied` event records.
struct Denial {
    meta: RequestMeta,
    path: String,
    method: String,
    rule: String,
}

/// 403, audited as `access_denied` (at most once a minute per caller and rule: the path is
/// recorded but not counted, or a caller cycling through paths would write an event per
/// request).
async fn forbidden(state: &AppState, d: Denial, user: Option<&AuthenticatedUser>) -> Response {
    let Denial { meta, path, method, rule } = d;
    let mut ev = NewEvent::new(EventKind::AccessDenied, Outcome::Denied).with(json!({
        "path": path,
        "method": method,
        "rule": rule,
        "via": "proxy",
    }));
    let who = match user {
        Some(u) => {
            ev = ev.by(u);
            u.user_id.clone()
        }
        None => meta.ip_bucket(),
    };
    state.audit_bounded_key(&meta, &format!("denied|{who}|{rule}"), ev).await;
    ApiError::forbidden().into_response()
}

fn build_connector(config: &Config) -> Result<Connector, StartupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match &config.proxy.ca_file {
        None => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| StartupError::new("RAMPART_UPSTREAM", e.to_string()))?,
        Some(path) => {
            let roots = crate::tls::load_roots(path)
                .map_err(|m| StartupError::new("RAMPART_UPSTREAM_CA_FILE", m))?;
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| StartupError::new("RAMPART_UPSTREAM_CA_FILE", e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.proxy.timeout));
    // HTTP/1.1 only: WebSocket upgrades need it, and it is what upstream apps speak.
    Ok(tls.https_or_http().enable_http1().wrap_connector(http))
}

fn new_client(connector: Connector) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Makes the proxy the router's fallback when an upstream is configured. With a CA file that
/// cannot be loaded (startup refuses that before getting here) proxied paths answer 502.
pub fn install(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    match Proxy::from_config(&state.config) {
        Ok(None) => router,
        Ok(Some(proxy)) => {
            let proxy = Arc::new(proxy);
            router.fallback(move |State(state): State<AppState>, req: Request| {
                let proxy = Arc::clone(&proxy);
                async move { proxy.handle(&state, req).await }
            })
        }
        Err(e) => {
            tracing::error!("the proxy is off: {e}");
            router.fallback(|req: Request| async move {
                if is_own_path(req.uri().path()) {
                    return ApiError::not_found();
                }
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "the upstream application is unavailable",
                )
            })
        }
    }
}

/// The request body limits: the JSON limit for Rampart's own routes, the proxy limit for
/// proxied paths.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    own: BodyLimitLayer,
    proxied: Option<BodyLimitLayer>,
}

impl BodyLimits {
    /// `own` for Rampart's routes; `RAMPART_PROXY_BODY_LIMIT` for proxied paths when an
    /// upstream is configured.
    pub fn new(own: BodyLimitLayer, config: &Config) -> Self {
        let proxied =
            config.proxy.upstream.as_ref().map(|_| BodyLimitLayer::new(config.proxy.body_limit));
        Self { own, proxied }
    }
}

impl<S: Clone> Layer<S> for BodyLimits {
    type Service = PathBodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PathBodyLimit {
            proxied: self.proxied.map(|l| l.layer(inner.clone())),
            own: self.own.layer(inner),
        }
    }
}

/// Applies [`BodyLimits`] by path. Bodies still stream: the limit counts bytes as they pass.
#[derive(Debug, Clone)]
pub struct PathBodyLimit<S> {
    own: BodyLimit<S>,
    proxied: Option<BodyLimit<S>>,
}

impl<S> Service<Request> for PathBodyLimit<S>
where
    BodyLimit<S>: Service<Request>,
{
    type Response = <BodyLimit<S> as Service<Request>>::Response;
    type Error = <BodyLimit<S> as Service<Request>>::Error;
    type Future = <BodyLimit<S> as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.own.poll_ready(cx))?;
        match &mut self.proxied {
            Some(proxied) => proxied.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match &mut self.proxied {
            Some(proxied) if !is_own_path(req.uri().path()) => proxied.call(req),
            _ => self.own.call(req),
        }
    }
}

/// The proxy's CSRF check (see the [module docs](self)); `None` inside when there is no
/// upstream or CSRF protection is off.
#[derive(Debug, Clone)]
pub struct ProxyCsrf(Option<Arc<CsrfGuard>>);

#[derive(Debug)]
struct CsrfGuard {
    rules: AccessRules,
    policy: CsrfPolicy,
    public_host: String,
}

impl ProxyCsrf {
    /// From the state: the access rules and the origin policy built once at startup (the same
    /// origins, same-site switch and exempt prefixes as the global CSRF layer).
    pub fn from_state(state: &AppState) -> Self {
        if state.config.proxy.upstream.is_none() {
            return Self(None);
        }
        let Some(policy) = state.origin_csrf.clone() else { return Self(None) };
        Self(Some(Arc::new(CsrfGuard {
            rules: state.access_rules.clone(),
            policy,
            public_host: state.config.public_origin.host.clone(),
        })))
    }
}

/// The origin half of the CSRF policy for requests to the upstream app, which cannot know
/// Rampart's token: Fetch Metadata, then `Origin`, then `Referer`, with the same trusted
/// origins, same-site switch and exempt prefixes as the global layer. `None` when CSRF
/// protection is off.
pub fn origin_policy(config: &Config) -> Option<CsrfPolicy> {
    if config.insecure.disable_csrf {
        return None;
    }
    let mut cfg = CsrfConfig::new(config.csrf.public_origin.clone()).with_origin_only_prefix("/");
    for o in &config.csrf.trusted {
        cfg = cfg.with_trusted_origin(o.clone());
    }
    for p in &config.csrf.exempt_prefixes {
        cfg = cfg.insecure_exempt_prefix(p.clone());
    }
    if config.csrf.allow_same_site {
        cfg = cfg.insecure_allow_same_site();
    }
    Some(CsrfPolicy::new(cfg))
}

impl<S> Layer<S> for ProxyCsrf {
    type Service = ProxyCsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyCsrfService { inner, guard: self.0.clone() }
    }
}

/// Sits between authentication and the global CSRF layer and checks proxied paths only.
#[derive(Debug, Clone)]
pub struct ProxyCsrfService<S> {
    inner: S,
    guard: Option<Arc<CsrfGuard>>,
}

impl<S> Service<Request> for ProxyCsrfService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(g) = self.guard.as_deref() {
            if !is_own_path(req.uri().path()) {
                if let Some(refused) = g.refusal(&mut req) {
                    return Either::Left(ready(Ok(refused)));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

impl CsrfGuard {
    /// For a proxied path: takes the [`CsrfContext`] out of the request (so the global layer
    /// lets it pass) and, for a request made with the session cookie, applies the origin
    /// policy unless the matching rule turns CSRF off. The answer is the refusal, if any.
    fn refusal(&self, req: &mut Request) -> Option<Response> {
        let context = req.extensions_mut().remove::<CsrfContext>();
        let by_cookie = context.is_some_and(|c| c.expected_token.is_some());
        if by_cookie && self.rules.csrf_applies(&self.public_host, req.uri().path(), req.method()) {
            if let Err(rejection) =
                self.policy.decide(req.method(), req.uri().path(), req.headers(), None, None)
            {
                return Some(rejection.to_response(&current_request_id()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths_match_whole_segments() {
        for own in ["/api", "/api/auth/me", "/login", "/login/totp", "/.well-known/x", "/metrics"] {
            assert!(is_own_path(own), "{own}");
        }
        for proxied in ["/", "/apix", "/app/api", "/loginx", "/metrics.html", "//api/x"] {
            assert!(!is_own_path(proxied), "{proxied}");
        }
    }
}
