use std::convert::Infallible;

use axum::body::Body;
use http::header::{HeaderName, CACHE_CONTROL, CONTENT_TYPE, X_FRAME_OPTIONS};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use super::*;
use crate::ProtectError;

/// Answers with the status in the path (`/status/404`), as HTML when the path says so, and
/// echoes the nonce it saw.
async fn inner(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let nonce =
        req.extensions().get::<CspNonce>().map(|n| n.as_str().to_owned()).unwrap_or_default();
    let status = path
        .rsplit('/')
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = Response::new(Body::from(nonce));
    *res.status_mut() = status;
    let ct = if path.contains("html") { "text/html; charset=utf-8" } else { "application/json" };
    res.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
    res.headers_mut().insert("server", "leaky/1.0".parse().unwrap());
    res.headers_mut().insert("x-powered-by", "leaky".parse().unwrap());
    if path.contains("authed") {
        res.extensions_mut().insert(Authenticated);
    }
    if path.contains("own") {
        res.headers_mut().insert(X_FRAME_OPTIONS, "SAMEORIGIN".parse().unwrap());
        res.headers_mut().insert(CACHE_CONTROL, "max-age=60".parse().unwrap());
        res.headers_mut().insert("content-security-policy", "default-src 'self'".parse().unwrap());
    }
    if path.contains("multi") {
        for value in ["a=1; Path=/", "b=2; Path=/"] {
            res.headers_mut().append("set-cookie", value.parse().unwrap());
        }
        res.headers_mut().append("x-powered-by", "second".parse().unwrap());
        res.headers_mut().append("server", "second".parse().unwrap());
        res.headers_mut().append(X_FRAME_OPTIONS, "SAMEORIGIN".parse().unwrap());
    }
    Ok(res)
}

async fn get(config: SecurityHeadersConfig, path: &str) -> (HeaderMap, String) {
    let svc = SecurityHeadersLayer::new(config).layer(tower::service_fn(inner));
    let req = Request::get(path).body(Body::empty()).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (headers, String::from_utf8(body.to_vec()).unwrap())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_status_gets_every_header() {
    for status in [200, 404, 500, 405, 413, 429] {
        let (h, _) = get(SecurityHeadersConfig::strict(), &format!("/status/{status}")).await;
        assert_eq!(header(&h, "strict-transport-security"), Some(HSTS_VALUE), "{status}");
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&h, "referrer-policy"), Some("strict-origin-when-cross-origin"));
        assert_eq!(header(&h, "cross-origin-opener-policy"), Some("same-origin"));
        assert_eq!(header(&h, "cross-origin-resource-policy"), Some("same-origin"));
        assert_eq!(header(&h, "permissions-policy"), Some(PERMISSIONS_POLICY));
        assert_eq!(header(&h, "content-security-policy"), Some(DEFAULT_CSP));
        assert_eq!(header(&h, "server"), None);
        assert_eq!(header(&h, "x-powered-by"), None);
        assert_eq!(header(&h, "cache-control"), None, "ordinary paths stay cacheable");
    }
}

#[tokio::test]
async fn permissions_policy_denies_powerful_features() {
    for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"] {
        assert!(PERMISSIONS_POLICY.contains(feature), "{feature}");
    }
}

#[tokio::test]
async fn a_custom_template_gets_the_nonce_in_every_placeholder_wherever_it_stands() {
    let template = "{nonce}script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'{nonce}";
    let config = SecurityHeadersConfig::strict().with_html_csp(template).unwrap();
    let (h, nonce) = get(config, "/page.html").await;
    let csp = header(&h, "content-security-policy").unwrap();
    assert_eq!(csp, template.replace("{nonce}", &nonce));
    assert_eq!(csp.matches(nonce.as_str()).count(), 4, "{csp}");
}

#[tokio::test]
async fn html_gets_a_fresh_nonce_that_the_handler_saw() {
    let (h1, nonce1) = get(SecurityHeadersConfig::strict(), "/page.html").await;
    let (h2, nonce2) = get(SecurityHeadersConfig::strict(), "/page.html").await;
    assert_ne!(nonce1, nonce2);
    assert!(nonce1.len() >= 22, "128-bit nonce: {nonce1}");
    let csp1 = header(&h1, "content-security-policy").unwrap();
    let csp2 = header(&h2, "content-security-policy").unwrap();
    assert_eq!(csp1, HTML_CSP.replace("{nonce}", &nonce1));
    assert!(csp1.contains(&format!("script-src 'nonce-{nonce1}'")), "{csp1}");
    assert!(csp1.contains("frame-ancestors 'none'") && csp1.contains("base-uri 'none'"));
    assert!(csp2.contains(&nonce2) && !csp2.contains(&nonce1));
}

#[tokio::test]
async fn headers_already_set_by_the_response_are_kept() {
    let (h, _) = get(SecurityHeadersConfig::strict(), "/api/auth/own").await;
    assert_eq!(header(&h, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(header(&h, "cache-control"), Some("max-age=60"));
    assert_eq!(header(&h, "content-security-policy"), Some("default-src 'self'"));
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn every_value_of_a_repeated_response_header_is_kept_and_nothing_is_doubled() {
    let (h, _) = get(SecurityHeadersConfig::strict(), "/multi/html").await;
    let all =
        |name: &str| -> Vec<&str> { h.get_all(name).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("set-cookie"), ["a=1; Path=/", "b=2; Path=/"]);
    assert_eq!(all("x-frame-options"), ["SAMEORIGIN"]);
    assert!(all("server").is_empty() && all("x-powered-by").is_empty());
    assert_eq!(all("content-type"), ["text/html; charset=utf-8"]);
    for name in ["x-content-type-options", "referrer-policy", "content-security-policy"] {
        assert_eq!(all(name).len(), 1, "{name}");
    }
    assert!(all("content-security-policy")[0].contains("'nonce-"));
}

#[tokio::test]
async fn a_response_policy_on_an_html_page_is_kept() {
    let (h, _) = get(SecurityHeadersConfig::strict(), "/own/html").await;
    assert_eq!(header(&h, "content-security-policy"), Some("default-src 'self'"));
}

#[tokio::test]
async fn no_store_under_prefixes_and_for_authenticated_responses() {
    let (h, _) = get(SecurityHeadersConfig::strict(), "/api/auth/session").await;
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    let (h, _) = get(SecurityHeadersConfig::strict(), "/api/authx").await;
    assert_eq!(header(&h, "cache-control"), None);
    let (h, _) = get(SecurityHeadersConfig::strict(), "/app/authed").await;
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    let config = SecurityHeadersConfig::strict().with_no_store_prefix("/account");
    let (h, _) = get(config, "/account/keys").await;
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
}

#[tokio::test]
async fn login_pages_get_no_referrer() {
    let config = SecurityHeadersConfig::strict().with_no_referrer_prefix("/login");
    let (h, _) = get(config.clone(), "/login/page.html").await;
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    let (h, _) = get(config, "/home").await;
    assert_eq!(header(&h, "referrer-policy"), Some("strict-origin-when-cross-origin"));
}

#[tokio::test]
async fn hsts_can_be_turned_off_for_plain_http() {
    let (h, _) = get(SecurityHeadersConfig::strict().with_hsts(false), "/").await;
    assert_eq!(header(&h, "strict-transport-security"), None);
    assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn individual_values_can_be_overridden_or_dropped() {
    let config = SecurityHeadersConfig::strict()
        .with_header(X_FRAME_OPTIONS, "SAMEORIGIN")
        .unwrap()
        .with_header(HeaderName::from_static("strict-transport-security"), "max-age=300")
        .unwrap()
        .with_header(HeaderName::from_static("x-extra"), "1")
        .unwrap()
        .with_html_csp("default-src 'self'; script-src 'nonce-{nonce}'; connect-src 'self'")
        .unwrap()
        .insecure_without_header(&HeaderName::from_static("cross-origin-opener-policy"));
    let (h, nonce) = get(config, "/x.html").await;
    assert_eq!(header(&h, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(header(&h, "strict-transport-security"), Some("max-age=300"));
    assert_eq!(header(&h, "x-extra"), Some("1"));
    assert_eq!(header(&h, "cross-origin-opener-policy"), None);
    let csp = header(&h, "content-security-policy").unwrap();
    assert_eq!(csp, format!("default-src 'self'; script-src 'nonce-{nonce}'; connect-src 'self'"));
}

#[test]
fn bad_overrides_are_refused() {
    let no_placeholder = SecurityHeadersConfig::strict().with_html_csp("default-src 'none'");
    assert!(matches!(no_placeholder, Err(ProtectError::InvalidCspTemplate { .. })));
    let bad_value = SecurityHeadersConfig::strict().with_header(X_FRAME_OPTIONS, "a\nb");
    assert!(matches!(bad_value, Err(ProtectError::InvalidHeaderValue { .. })));
}

#[test]
fn a_nonce_is_drawn_once_and_shared_by_its_clones() {
    let a = CspNonce::default();
    let b = a.clone();
    // Drawn through the clone: the original sees the same text.
    let text = b.as_str().to_owned();
    assert_eq!(a.as_str(), text);
    assert_eq!(text.len(), 22, "128 bits in base64url");
    assert_ne!(CspNonce::default().as_str(), text, "each response gets its own");
    assert_eq!(CspNonce::from_text("fixed").as_str(), "fixed");
}

#[tokio::test]
async fn no_store_and_no_referrer_together_and_own_cache_control_wins() {
    let config = SecurityHeadersConfig::strict().with_no_referrer_prefix("/api/auth/login");
    let (h, _) = get(config.clone(), "/api/auth/login").await;
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
    // The response's own Cache-Control beats the prefix's no-store, even with no-referrer.
    let (h, _) = get(config, "/api/auth/login/own").await;
    assert_eq!(header(&h, "cache-control"), Some("max-age=60"));
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&h, "x-frame-options"), Some("SAMEORIGIN"));
    // The variants share nothing: a plain path still gets neither.
    let (h, _) = get(SecurityHeadersConfig::strict(), "/home").await;
    assert_eq!(header(&h, "cache-control"), None);
    assert_eq!(header(&h, "referrer-policy"), Some("strict-origin-when-cross-origin"));
}

#[test]
fn html_is_recognised_by_its_media_type_only() {
    let cases: &[(&[u8], bool)] = &[
        (b"text/html", true),
        (b"text/html; charset=utf-8", true),
        (b"Text/HTML;charset=utf-8", true),
        (b"  text/html  ; q=1", true),
        (b"\ttext/html\t", true),
        (b"application/xhtml+xml", true),
        (b"APPLICATION/XHTML+XML; charset=utf-8", true),
        (b"text/htmlx", false),
        (b"text/html-sandboxed", false),
        (b"text/htm", false),
        (b"application/json", false),
        (b"text/plain; x=text/html", false),
        (b"", false),
        (b"\xfftext/html", false),
        (b"text/html\xff", false),
    ];
    for (value, want) in cases {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, http::HeaderValue::from_bytes(value).unwrap());
        assert_eq!(layer::is_html(&h), *want, "{:?}", String::from_utf8_lossy(value));
    }
    assert!(!layer::is_html(&HeaderMap::new()));
}
