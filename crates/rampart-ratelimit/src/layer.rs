//! [`RateLimitLayer`]: a tower layer that applies [`Rule`]s through a [`RateLimitStore`].
//!
//! Every rule that matches a request has its own key, and all of them are checked together
//! with one [`RateLimitStore::check_all`] call (one round trip to a shared store): the request
//! goes on only if every quota of every matching rule admits it, and only then is each rule
//! charged. If any refuses, the request stops with `429 Too Many Requests` and no rule is
//! charged. Either way the response carries the state of every matched quota.
//!
//! # Responses
//! - **429**: the JSON error body with code `rate_limited`, `Retry-After` in whole seconds
//!   (the longest wait among the refusing quotas, rounded up, at least 1), `RateLimit-Policy`
//!   and `RateLimit`; a [`RateLimited`] value naming the first refusing rule (in rule order) is
//!   put into the response extensions for the audit layer.
//! - **Admitted**: the inner response plus `RateLimit-Policy` and `RateLimit`.
//! - **Store error**: `503` with code `rate_limit_unavailable` (fail closed), the
//!   [`RateLimitError`] in the response extensions and a WARN log with the detail. To keep
//!   serving through an outage of a shared store, wrap it in a [`FallbackStore`].
//!
//! # Headers
//! In the structured-field form of the IETF rate-limit headers draft, one item per quota:
//!
//! ```text
//! RateLimit-Policy: "default:200/1m";q=200;w=60, "default:50/10s";q=50;w=10
//! RateLimit: "default:200/1m";r=199;t=1, "default:50/10s";r=49;t=1
//! ```
//!
//! Policies are named `{rule name}:{quota}` (the quota in its [`Display`](std::fmt::Display)
//! form), which is unique per response and tells a client which limit it hit. `q` is the
//! limit, `w` the period in seconds, `r` the requests left now, `t` the seconds until the
//! quota is fully available again (rounded up). On a 429 nothing was spent, so `r` and `t` are
//! the state before the request.
//!
//! # Security
//! - All matching rules are decided atomically: a request refused by one rule consumes nothing
//!   from the others, so hammering a tightly limited route does not drain a wider rule's
//!   budget, and concurrent requests (or instances sharing a store) cannot slip between the
//!   checks of two rules.
//! - Failing closed keeps an outage from disabling the limits; it also makes the store a
//!   dependency of every matched request.
//! - Key choice, client-address fallback and IPv6 grouping are described in [`crate::rule`].
//!
//! [`FallbackStore`]: crate::FallbackStore

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::future::Either;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::quota::ceil_secs;
use crate::{Decision, Quota, RateLimitError, RateLimitStore, Rule};

/// The `RateLimit-Policy` header.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Put into the extensions of a 429 response: which rule refused, for which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The refusing rule's name.
    pub rule: String,
    /// The store key (`rl:{rule}:{kind}:{value}`).
    pub key: String,
}

/// Applies rate-limit rules to requests. See the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer {
    // One shared allocation: every clone of the service (one per request under a router)
    // touches a single reference count.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn RateLimitStore>,
    rules: Vec<Rule>,
}

impl RateLimitLayer {
    /// A layer applying `rules` with state in `store`.
    pub fn new(store: Arc<dyn RateLimitStore>, rules: Vec<Rule>) -> Self {
        Self { shared: Arc::new(Shared { store, rules }) }
    }

    /// A layer applying only [`Rule::default_rule`].
    pub fn with_default_rule(store: Arc<dyn RateLimitStore>) -> Self {
        Self::new(store, vec![Rule::default_rule()])
    }

    /// The rules, in the order they are checked.
    pub fn rules(&self) -> &[Rule] {
        &self.shared.rules
    }

    /// The matching rules for a request and the store key for each: the pure part of the
    /// policy.
    pub fn plan<B>(&self, req: &Request<B>) -> Vec<(usize, String)> {
        let path = req.uri().path();
        self.shared
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(req.method(), path))
            .map(|(i, r)| (i, r.key_for(req)))
            .collect()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit { inner, layer: self.clone() }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

/// The future returned by [`RateLimit`]: the inner service's own future when no rule matches
/// (nothing to check, nothing to add), else a boxed check-then-call.
pub type ResponseFuture<F, E> =
    Either<F, Pin<Box<dyn Future<Output = Result<Response, E>> + Send + 'static>>>;

impl<S, B> Service<Request<B>> for RateLimit<S>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let plan = self.layer.plan(&req);
        if plan.is_empty() {
            return Either::Left(self.inner.call(req));
        }
        // The service that was made ready goes with the future; a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.layer.shared);
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Either::Right(Box::pin(async move {
            let matched: Vec<(&Rule, String)> = plan
                .into_iter()
                .filter_map(|(index, key)| shared.rules.get(index).map(|rule| (rule, key)))
                .collect();
            let checks: Vec<(&str, &[Quota])> =
                matched.iter().map(|(rule, key)| (key.as_str(), rule.quotas.as_slice())).collect();
            let decisions = match shared.store.check_all(&checks).await {
                Ok(decisions) if decisions.len() == checks.len() => Ok(decisions),
                Ok(_) => Err(RateLimitError::InvalidState {
                    detail: "rate-limit store returned a wrong number of decisions",
                }),
                Err(error) => Err(error),
            };
            let decisions = match decisions {
                Ok(decisions) => decisions,
                Err(error) => {
                    let rules: Vec<&str> = matched.iter().map(|(r, _)| r.name.as_str()).collect();
                    tracing::warn!(rules = ?rules, error = %error,
                        source = ?std::error::Error::source(&error).map(ToString::to_string),
                        "rate-limit store failed; refusing the request (fail closed)");
                    return Ok(unavailable(&request_id, error));
                }
            };
            let seen: Vec<(&Rule, Decision)> =
                matched.iter().map(|(rule, _)| *rule).zip(decisions).collect();
            if let Some(first) = seen.iter().position(|(_, d)| !d.allowed) {
                let retry_after = seen
                    .iter()
                    .filter(|(_, d)| !d.allowed)
                    .map(|(_, d)| d.retry_after)
                    .max()
                    .unwrap_or_default();
                let (rule, key) = &matched[first];
                tracing::debug!(rule = %rule.name, "request refused by rate limit");
                let limited = RateLimited { rule: rule.name.clone(), key: key.clone() };
                return Ok(too_many_requests(&request_id, retry_after, &seen, limited));
            }
            let mut response = inner.call(req).await?;
            set_headers(&mut response, &seen);
            Ok(response)
        }))
    }
}

fn too_many_requests(
    request_id: &str,
    retry_after: Duration,
    seen: &[(&Rule, Decision)],
    limited: RateLimited,
) -> Response {
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests; retry later.",
        request_id,
    );
    let secs = ceil_secs(retry_after).max(1);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    set_headers(&mut response, seen);
    response.extensions_mut().insert(limited);
    response
}

fn unavailable(request_id: &str, error: RateLimitError) -> Response {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "rate_limit_unavailable",
        "The service is temporarily unavailable; retry later.",
        request_id,
    );
    response.extensions_mut().insert(error);
    response
}

/// The project's JSON error response.
fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message, "request_id": request_id } });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn set_headers(response: &mut Response, seen: &[(&Rule, Decision)]) {
    let (policy, state) = header_values(seen);
    if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state))
    {
        if !policy.is_empty() {
            response.headers_mut().insert(RATELIMIT_POLICY, policy);
            response.headers_mut().insert(RATELIMIT, state);
        }
    }
}

/// The `RateLimit-Policy` and `RateLimit` values for the decisions made for one request.
pub fn header_values(decisions: &[(&Rule, Decision)]) -> (String, String) {
    let mut policy = String::new();
    let mut state = String::new();
    for (rule, decision) in decisions {
        for qs in &decision.quotas {
            let sep = if policy.is_empty() { "" } else { ", " };
            let name = sf_string(&format!("{}:{}", rule.name, qs.quota));
            let _ = write!(policy, "{sep}{name};q={};w={}", qs.quota.limit, qs.quota.window_secs());
            let _ = write!(state, "{sep}{name};r={};t={}", qs.remaining, ceil_secs(qs.reset));
        }
    }
    (policy, state)
}

/// A structured-field string: quoted, `"` and `\` escaped, anything else outside printable
/// ASCII replaced by `_`.
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
