//! Header rewriting for the proxy: hop-by-hop removal, forwarding headers, Rampart's own
//! credentials kept from the upstream. Pure functions over header maps, tested here.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, COOKIE,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::Method;
use rampart_core::TrustedProxies;

use crate::gateway::{same_spelling, starts_with_spelling};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
/// non-standard `Proxy-Connection`.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Forwarding and override headers a client must never choose: the proxy sets the forwarding
/// ones itself; the others let some frameworks re-route a request (path or method) after the
/// access rules have looked at it.
/// `Proxy` itself is here too: CGI-style applications read it as `HTTP_PROXY`, the proxy for
/// their own outbound requests. `HTTP2-Settings` belongs to the client's connection only.
const CLIENT_FORBIDDEN: &[&str] = &[
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-original-host",
    "x-host",
    "front-end-https",
    "x-url-scheme",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "proxy",
    "http2-settings",
];

/// Families of client headers never forwarded, whatever follows the prefix: every
/// `X-Forwarded-*` and every `Proxy-*` (proxy credentials and status are for the hop they
/// were sent on).
const CLIENT_FORBIDDEN_PREFIXES: &[&str] = &["x-forwarded-", "proxy-"];

/// The `X-Forwarded-For` header.
pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The `X-Forwarded-Proto` header.
pub(super) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The `X-Forwarded-Host` header.
pub(super) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The comma-separated tokens of every `Connection` header, lower case.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether the request asks for a WebSocket upgrade (HTTP/1.1 `Connection: upgrade` and
/// `Upgrade: websocket`).
pub(super) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    connection_tokens(headers).iter().any(|t| t == "upgrade")
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `keep_upgrade`
/// (a WebSocket handshake) `Connection: upgrade` and the `Upgrade` header are put back.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests and answers carry none of them: look at the names present once rather
    // than removing each hop-by-hop name in turn.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let upgrade = headers.get(UPGRADE).cloned();
    for token in connection_tokens(headers) {
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        if let Some(upgrade) = upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, upgrade);
        }
    }
}

/// Removes every forwarding header (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, …), the path
/// and method override headers, `Proxy` and `Proxy-*`, in any case and with `_` for `-`.
pub(super) fn strip_forwarding(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            // Spelling-insensitive: some servers treat `X_Forwarded_For` like `X-Forwarded-For`.
            let n = n.as_str().as_bytes();
            CLIENT_FORBIDDEN_PREFIXES.iter().any(|p| starts_with_spelling(n, p.as_bytes()))
                || CLIENT_FORBIDDEN.iter().any(|f| same_spelling(n, f.as_bytes()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The `X-Forwarded-For` value to send: from an untrusted peer just the peer; from a trusted
/// proxy the hops its chain vouches for (read right to left up to and including the first
/// untrusted hop, the client) followed by the peer. The chain is `X-Forwarded-For`, or the
/// `for=` addresses of `Forwarded` when the proxy sent no `X-Forwarded-For` (the same choice
/// the client-IP resolver makes). Whatever a client wrote further left is dropped.
pub(super) fn forwarded_for(
    trusted: &TrustedProxies,
    peer: IpAddr,
    xff: &[&str],
    forwarded: &[&str],
) -> String {
    let peer = canonical_ip(peer);
    if !trusted.contains(peer) {
        return rampart_core::client_ip::ip_text(peer);
    }
    let hops: Vec<Option<IpAddr>> = if xff.iter().any(|v| !v.trim().is_empty()) {
        xff.iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(parse_hop)
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|e| !e.trim().is_empty())
            .map(rampart_core::client_ip::forwarded_element_ip)
            .collect()
    };
    let mut kept: Vec<IpAddr> = Vec::new();
    for hop in hops.iter().rev() {
        let Some(ip) = *hop else { break };
        let ip = canonical_ip(ip);
        kept.push(ip);
        if !trusted.contains(ip) {
            break;
        }
    }
    let mut out = String::with_capacity(16 * (kept.len() + 1));
    for ip in kept.iter().rev().chain([&peer]) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        rampart_core::client_ip::push_ip(&mut out, *ip);
    }
    out
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An `X-Forwarded-For` hop: an address, optionally `v4:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok().filter(IpAddr::is_ipv4)
}

/// Whether a cookie name belongs to Rampart: its session cookie in either spelling, or any
/// cookie Rampart may add under its `rampart_` prefix.
pub(super) fn is_rampart_cookie(name: &str) -> bool {
    let bare =
        name.strip_prefix("__Host-").or_else(|| name.strip_prefix("__Secure-")).unwrap_or(name);
    bare.starts_with("rampart_")
}

/// Rewrites the `Cookie` headers without Rampart's cookies, joined into one header (the
/// HTTP/1.1 form); removes the header when nothing is left.
pub(super) fn strip_rampart_cookies(headers: &mut HeaderMap) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split(|b| *b == b'=').next().unwrap_or(pair).trim_ascii();
            if !is_rampart_cookie(&String::from_utf8_lossy(name)) {
                kept.push(pair.to_vec());
            }
        }
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.insert(COOKIE, v);
        }
    }
}

/// Removes upstream `Set-Cookie` headers that would set or clear a Rampart cookie (an
/// upstream must not be able to plant or end a Rampart session).
pub(super) fn strip_rampart_set_cookies(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for v in values {
        let name = v.as_bytes().split(|b| *b == b'=').next().unwrap_or_default().trim_ascii();
        if !is_rampart_cookie(&String::from_utf8_lossy(name)) {
            headers.append(SET_COOKIE, v);
        }
    }
}

/// Whether an `Authorization` value carries a Rampart API key (`Bearer rk_…`).
pub(super) fn is_rampart_api_key(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    v.len() > 7
        && v[..7].eq_ignore_ascii_case(b"bearer ")
        && v[7..].trim_ascii().starts_with(b"rk_")
}

/// Removes `Authorization` when it carried a Rampart API key.
pub(super) fn strip_api_key(headers: &mut HeaderMap, authenticated_by_key: bool) {
    let rampart = headers.get_all(AUTHORIZATION).iter().any(is_rampart_api_key);
    if rampart || authenticated_by_key {
        headers.remove(AUTHORIZATION);
    }
}

/// A browser navigation: GET or HEAD whose `Accept` includes `text/html`.
pub(super) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (*method == Method::GET || *method == Method::HEAD)
        && headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// `/login?return_to=<path and query, percent-encoded>`.
pub(super) fn login_location(path_and_query: &str) -> String {
    let mut out = String::from("/login?return_to=");
    for b in path_and_query.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_headers_and_those_named_in_connection() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn keeps_the_upgrade_of_a_websocket_handshake() {
        let mut h = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_websocket_upgrade(&map(&[("connection", "upgrade"), ("upgrade", "h2c")])));
    }

    #[test]
    fn strips_forwarding_and_override_headers_in_every_spelling() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("X_Forwarded_Host", "evil"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-prefix", "/evil"),
            ("Forwarded", "for=6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Original-Method", "DELETE"),
            ("Client-IP", "6.6.6.6"),
            ("CF-Connecting-IP", "6.6.6.6"),
            ("x_cluster_client_ip", "6.6.6.6"),
            ("X-Forwarded", "for=6.6.6.6"),
            ("Forwarded-For", "6.6.6.6"),
            ("X-Original-Host", "evil"),
            ("x-host", "evil"),
            ("Front-End-Https", "on"),
            ("X-Url-Scheme", "https"),
            ("Proxy", "http://evil.example:8080"),
            ("Proxy-Custom", "c"),
            ("proxy_status", "s"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ("x-request-id", "keep"),
            ("x-forwardedness", "keep"),
            ("proxyman", "keep"),
            ("via", "1.1 keep"),
        ]);
        strip_forwarding(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["proxyman", "via", "x-forwardedness", "x-request-id"], "{h:?}");
    }

    #[test]
    fn forwarded_for_trusts_only_what_trusted_proxies_vouch_for() {
        let none = TrustedProxies::none();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(forwarded_for(&none, peer, &["6.6.6.6"], &[]), "203.0.113.9");
        let lan = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            forwarded_for(&lan, proxy, &["6.6.6.6, 198.51.100.7", "10.0.0.2"], &[]),
            "198.51.100.7, 10.0.0.2, 10.0.0.1"
        );
        assert_eq!(forwarded_for(&lan, proxy, &[], &[]), "10.0.0.1");
        assert_eq!(forwarded_for(&lan, proxy, &["garbage, 10.0.0.3"], &[]), "10.0.0.3, 10.0.0.1");
        assert_eq!(
            forwarded_for(&lan, proxy, &["[2001:db8::1]:443"], &[]),
            "2001:db8::1, 10.0.0.1"
        );
        // A trusted proxy that sends only `Forwarded`: its `for=` chain, read the same way.
        let fwd = ["for=6.6.6.6, for=198.51.100.7;proto=https", "for=\"10.0.0.2:8080\""];
        assert_eq!(forwarded_for(&lan, proxy, &[], &fwd), "198.51.100.7, 10.0.0.2, 10.0.0.1");
        assert_eq!(forwarded_for(&lan, proxy, &[], &["for=8.8.8.8"]), "8.8.8.8, 10.0.0.1");
        assert_eq!(
            forwarded_for(&lan, proxy, &[], &["for=_hidden, for=10.0.0.3"]),
            "10.0.0.3, 10.0.0.1"
        );
        // `X-Forwarded-For` wins when both are sent; an untrusted peer's `Forwarded` is ignored.
        assert_eq!(forwarded_for(&lan, proxy, &["7.7.7.7"], &["for=8.8.8.8"]), "7.7.7.7, 10.0.0.1");
        assert_eq!(forwarded_for(&none, peer, &[], &["for=8.8.8.8"]), "203.0.113.9");
    }

    #[test]
    fn strips_only_rampart_cookies() {
        let mut h = map(&[
            ("cookie", "app=1; rampart_session=abc; __Host-rampart_session=def"),
            ("cookie", "theme=dark"),
        ]);
        strip_rampart_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "app=1; theme=dark");
        let mut only = map(&[("cookie", "__Host-rampart_session=x")]);
        strip_rampart_cookies(&mut only);
        assert!(!only.contains_key("cookie"));
        assert!(!is_rampart_cookie("session"));
        assert!(is_rampart_cookie("__Secure-rampart_login"));
    }

    #[test]
    fn upstream_cannot_set_rampart_cookies() {
        let mut h = map(&[
            ("set-cookie", "app=1; Path=/"),
            ("set-cookie", "__Host-rampart_session=planted; Path=/; Secure"),
            ("set-cookie", "rampart_session=; Max-Age=0"),
        ]);
        strip_rampart_set_cookies(&mut h);
        let left: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(left, vec!["app=1; Path=/"]);
    }

    #[test]
    fn drops_authorization_only_when_it_is_a_rampart_key() {
        let mut h = map(&[("authorization", "Bearer rk_abc")]);
        strip_api_key(&mut h, false);
        assert!(!h.contains_key("authorization"));
        let mut h = map(&[("authorization", "bearer  rk_abc")]);
        strip_api_key(&mut h, false);
        assert!(!h.contains_key("authorization"));
        let mut h = map(&[("authorization", "Bearer upstream-token")]);
        strip_api_key(&mut h, false);
        assert!(h.contains_key("authorization"));
        strip_api_key(&mut h, true);
        assert!(!h.contains_key("authorization"));
    }

    #[test]
    fn only_html_gets_and_heads_are_navigations() {
        let html = map(&[("accept", "text/html,application/xhtml+xml;q=0.9")]);
        assert!(is_navigation(&Method::GET, &html));
        assert!(is_navigation(&Method::HEAD, &html));
        assert!(!is_navigation(&Method::POST, &html));
        assert!(!is_navigation(&Method::GET, &map(&[("accept", "application/json")])));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn login_location_percent_encodes_the_return_path() {
        assert_eq!(
            login_location("/docs/a b?x=1&y=%2F"),
            "/login?return_to=/docs/a%20b%3Fx%3D1%26y%3D%252F"
        );
        assert_eq!(login_location("/"), "/login?return_to=/");
    }
}
