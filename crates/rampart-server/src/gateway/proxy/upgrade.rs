//! WebSocket pass-through: the handshake is forwarded like any request; on `101 Switching
//! Protocols` both upgraded connections are spliced together.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{ORIGIN, UPGRADE};
use http::{HeaderMap, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rampart_protect::Origin;

/// Whether the handshake's `Origin` is the public origin or a trusted one. A handshake without
/// `Origin` is refused: browsers always send it, and the check is what stops another site's
/// page from opening a socket with the user's cookie.
pub(super) fn origin_allowed(headers: &HeaderMap, allowed: &[Origin]) -> bool {
    headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(Origin::from_header)
        .is_some_and(|o| allowed.contains(&o))
}

/// Given the upstream's answer to a forwarded handshake and the client's pending upgrade:
/// on 101, spawns the splice and returns the 101 for the client (with the upstream's
/// handshake headers); otherwise returns the upstream's answer as it is.
pub(super) fn splice(
    client: Option<OnUpgrade>,
    mut upstream: http::Response<hyper::body::Incoming>,
) -> Response {
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return upstream.map(Body::new);
    }
    let Some(client) = client else {
        // The connection cannot be upgraded (HTTP/2): nothing to splice.
        tracing::warn!("upstream accepted a WebSocket upgrade the client connection cannot make");
        return crate::error::ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upgrade could not be completed",
        )
        .into_response();
    };
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let (parts, _) = upstream.into_parts();
    // The splice outlives the HTTP connection: it keeps counting on its connection loop.
    let open = crate::workers::count_on_this_loop();
    tokio::spawn(async move {
        let _open = open;
        let (client, upstream) = match tokio::join!(client, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "WebSocket closed"),
            Err(e) => tracing::debug!(error = %e, "WebSocket ended with an error"),
        }
    });
    let mut res = Response::from_parts(parts, Body::empty());
    if !res.headers().contains_key(UPGRADE) {
        res.headers_mut().insert(UPGRADE, http::HeaderValue::from_static("websocket"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_origin_must_be_allowed_and_present() {
        let allowed = vec![Origin::parse("https://auth.example.com").unwrap()];
        let with = |o: &str| {
            let mut h = HeaderMap::new();
            h.insert(ORIGIN, o.parse().unwrap());
            h
        };
        assert!(origin_allowed(&with("https://auth.example.com"), &allowed));
        assert!(!origin_allowed(&with("https://evil.example"), &allowed));
        assert!(!origin_allowed(&with("null"), &allowed));
        assert!(!origin_allowed(&with("http://auth.example.com"), &allowed));
        assert!(!origin_allowed(&HeaderMap::new(), &allowed));
    }
}
