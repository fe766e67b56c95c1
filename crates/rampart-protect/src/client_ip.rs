//! [`ClientIpLayer`]: resolves the client address once per request and puts it in the request
//! extensions as [`rampart_core::ClientIp`], for the rate limiter, brute-force regulation and the
//! audit log to share.
//!
//! # Security considerations
//! - The client is the socket peer (axum's `ConnectInfo<SocketAddr>`), unless the peer is inside
//!   the [`TrustedProxies`]; only then are `X-Forwarded-For` (or `Forwarded`) believed, read
//!   right to left, skipping trusted hops ([`TrustedProxies::resolve`]). Forwarding headers
//!   from any other peer are ignored, so a client cannot pick its own address.
//! - The app must be served with `into_make_service_with_connect_info::<SocketAddr>()`. Without
//!   the peer the layer inserts nothing: layers below fall back as they document (the rate
//!   limiter puts every such request into one shared bucket, which fails closed).
//! - A `ClientIp` already in the extensions is replaced: only this layer's answer counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use http::header::{HeaderName, FORWARDED};
use http::{HeaderMap, Request};
use rampart_core::{ClientIp, TrustedProxies};
use tower::{Layer, Service};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Resolves [`ClientIp`] for every request. See the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientIpLayer {
    proxies: Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// A layer believing forwarding headers only from `proxies`
    /// ([`TrustedProxies::none`]: never).
    pub fn new(proxies: TrustedProxies) -> Self {
        Self { proxies: Arc::new(proxies) }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService { inner, proxies: Arc::clone(&self.proxies) }
    }
}

/// The service made by [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    proxies: Arc<TrustedProxies>,
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        match peer {
            Some(peer) => {
                let ip = resolve(&self.proxies, peer, req.headers());
                req.extensions_mut().insert(ip);
            }
            None => {
                req.extensions_mut().remove::<ClientIp>();
            }
        }
        self.inner.call(req)
    }
}

/// The client address of a request from `peer` with `headers`.
pub fn resolve(proxies: &TrustedProxies, peer: std::net::IpAddr, headers: &HeaderMap) -> ClientIp {
    if !proxies.contains(peer) {
        // The common case, and the only answer for an untrusted peer: no header is read.
        return proxies.resolve(peer, &[], &[]);
    }
    let values = |name: &HeaderName| -> Vec<&str> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    };
    proxies.resolve(peer, &values(&X_FORWARDED_FOR), &values(&FORWARDED))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::IpAddr;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// Answers with the `ClientIp` it saw, or `none`.
    async fn echo(req: Request<Body>) -> Result<String, Infallible> {
        Ok(req.extensions().get::<ClientIp>().map_or_else(|| "none".to_owned(), |c| c.to_string()))
    }

    async fn seen(proxies: &str, peer: Option<&str>, headers: &[(&str, &str)]) -> String {
        let svc = ClientIpLayer::new(TrustedProxies::parse_list(proxies).unwrap())
            .layer(tower::service_fn(echo));
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        for (k, v) in headers {
            req.headers_mut().append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        if let Some(p) = peer {
            let addr = SocketAddr::new(p.parse::<IpAddr>().unwrap(), 40_000);
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        // A value planted by someone else is never what the layer passes on.
        req.extensions_mut().insert(ClientIp("192.0.2.99".parse().unwrap()));
        svc.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn untrusted_peers_are_the_client_whatever_they_forward() {
        let spoof = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")];
        assert_eq!(seen("", Some("203.0.113.5"), &spoof).await, "203.0.113.5");
        assert_eq!(seen("10.0.0.0/8", Some("203.0.113.5"), &spoof).await, "203.0.113.5");
    }

    #[tokio::test]
    async fn trusted_proxies_are_skipped_right_to_left() {
        let xff = [("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2")];
        assert_eq!(seen("10.0.0.0/8", Some("10.0.0.1"), &xff).await, "198.51.100.7");
        let fwd = [("forwarded", "for=198.51.100.8")];
        assert_eq!(seen("10.0.0.0/8", Some("10.0.0.1"), &fwd).await, "198.51.100.8");
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        assert_eq!(seen("10.0.0.0/8", Some("::ffff:10.0.0.1"), &xff).await, "198.51.100.7");
    }

    #[tokio::test]
    async fn without_the_peer_nothing_is_passed_on() {
        assert_eq!(seen("", None, &[("x-forwarded-for", "1.2.3.4")]).await, "none");
    }
}
