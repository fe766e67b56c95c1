//! Writing audit events from the server: who (the authenticated caller), when (the clock),
//! where (client IP, user agent, request id) and what (event, resource, details).
//!
//! # Durability
//! State-changing actions call [`AppState::audit_required`], which returns only after the event is
//! committed; if the audit log cannot be written the request fails instead of going unrecorded.
//! Events caused by hostile traffic (invalid tokens, rate limiting) go through
//! [`AppState::audit_bounded`]: at most one per kind and client address per minute, so a flood
//! cannot flood the log.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use rampart_audit::{EventKind, NewEvent, Outcome};
use rampart_core::ClientIp;
use serde_json::Value;

use crate::auth::AuthenticatedUser;
use crate::error::{ApiError, ApiResult, RequestId};
use crate::state::AppState;

/// Longest user agent kept.
pub const MAX_USER_AGENT: usize = 256;

/// Where a request came from, for audit events.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// Resolved client address.
    pub ip: IpAddr,
    /// `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: String,
}

impl RequestMeta {
    fn build(ext: &axum::http::Extensions, headers: &HeaderMap) -> Self {
        Self::from_parts(
            client_ip(ext),
            headers.get(axum::http::header::USER_AGENT),
            ext.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
        )
    }

    /// From the resolved address, the `User-Agent` header and the request id.
    pub fn from_parts(
        ip: IpAddr,
        user_agent: Option<&axum::http::HeaderValue>,
        request_id: String,
    ) -> Self {
        Self {
            ip,
            user_agent: user_agent
                .and_then(|v| v.to_str().ok())
                .map(|s| rampart_core::redact::truncate(s, MAX_USER_AGENT)),
            request_id,
        }
    }

    /// From a whole request (in middleware).
    pub fn from_request(req: &Request) -> Self {
        Self::build(req.extensions(), req.headers())
    }

    /// The client as bounded audit events count it: an IPv4 address, or the /64 network of an
    /// IPv6 one (the same grouping as rate limiting), so a host cycling through the addresses
    /// of its /64 still writes one event per window.
    pub fn ip_bucket(&self) -> String {
        rampart_ratelimit::rule::ip_bucket(self.ip)
    }
}

/// The resolved client address of a request (loopback when none was resolved).
pub fn client_ip(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<ClientIp>().map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0)
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::build(&parts.extensions, &parts.headers))
    }
}

/// Server conveniences on [`NewEvent`].
pub trait NewEventExt {
    /// Sets the actor and session from the authenticated caller.
    fn by(self, user: &AuthenticatedUser) -> Self;
    /// Merges a JSON object into the details.
    fn with(self, details: Value) -> Self;
}

impl NewEventExt for NewEvent {
    fn by(self, user: &AuthenticatedUser) -> Self {
        let mut ev = self.user(&user.user_id).email(&user.email);
        if let Some(h) = &user.session_handle {
            ev = ev.session(h);
        }
        if let Some(k) = &user.api_key_id {
            ev = ev.detail("credential", format!("api:{k}"));
        }
        ev
    }

    fn with(self, details: Value) -> Self {
        match details {
            Value::Object(map) => self.details_from(map),
            _ => self,
        }
    }
}

fn with_meta(meta: &RequestMeta, ev: NewEvent) -> NewEvent {
    let mut ev = ev.ip(meta.ip.to_string()).request_id(&meta.request_id);
    if let Some(ua) = &meta.user_agent {
        ev = ev.user_agent(ua);
    }
    ev
}

impl AppState {
    /// Writes an event and waits for it to be committed; an error fails the request.
    pub async fn audit_required(&self, meta: &RequestMeta, ev: NewEvent) -> ApiResult<()> {
        let kind = ev.kind();
        let started = std::time::Instant::now();
        let res = self.audit_sink.append(with_meta(meta, ev)).await;
        self.metrics.audit_write(started.elapsed());
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(event = kind.as_str(), error = %crate::error::ErrorChain(&e), "audit write failed");
                Err(ApiError::unavailable(
                    "audit_unavailable",
                    "the audit log is unavailable; nothing was recorded",
                ))
            }
        }
    }

    /// Writes an event; a failure is logged, not returned.
    pub async fn audit(&self, meta: &RequestMeta, ev: NewEvent) {
        let _ = self.audit_required(meta, ev).await;
    }

    /// Writes an event at most once per kind and client address per window.
    pub async fn audit_bounded(&self, meta: &RequestMeta, ev: NewEvent) {
        let key = format!("{}|{}", ev.kind().as_str(), meta.ip_bucket());
        self.audit_bounded_key(meta, &key, ev).await;
    }

    /// Writes an event at most once per `key` per window.
    pub async fn audit_bounded_key(&self, meta: &RequestMeta, key: &str, ev: NewEvent) {
        if self.audit_bound.allow(key) {
            self.audit(meta, ev).await;
        }
    }
}

/// Writes an event caused by a CLI command (no request).
pub async fn record_cli(
    state: &AppState,
    kind: EventKind,
    user: &rampart_store_sql::User,
    details: Value,
) {
    let meta = RequestMeta {
        ip: IpAddr::from([127, 0, 0, 1]),
        user_agent: Some("rampart-cli".into()),
        request_id: String::new(),
    };
    let ev = NewEvent::new(kind, Outcome::Success).resource("user", &user.id).with(details);
    state.audit(&meta, ev).await;
}
