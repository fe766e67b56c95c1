use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::header::{CONTENT_TYPE, VARY};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use super::*;
use crate::Origin;

/// A teapot that reflects any origin and varies on encoding, to show what the layer removes
/// and keeps.
async fn teapot(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut res = Response::new(Body::from("tea"));
    *res.status_mut() = StatusCode::IM_A_TEAPOT;
    if let Some(o) = req.headers().get("origin") {
        res.headers_mut().insert("access-control-allow-origin", o.clone());
    }
    res.headers_mut().insert(VARY, "Accept-Encoding".parse().unwrap());
    Ok(res)
}

fn config() -> CorsConfig {
    CorsConfig::new()
        .with_allowed_origin(Origin::parse("https://app.example.com").unwrap())
        .with_allowed_origin(Origin::parse("http://localhost:3000").unwrap())
        .with_allowed_method(Method::GET)
        .with_allowed_method(Method::POST)
        .with_allowed_header(CONTENT_TYPE)
        .with_allowed_header("x-csrf-token".parse().unwrap())
        .with_exposed_header("x-request-id".parse().unwrap())
        .with_max_age(Duration::from_secs(300))
}

async fn send(
    layer: CorsLayer,
    method: Method,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Option<CorsRejection>, String) {
    let mut b = Request::builder().method(method).uri("/api/x");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = layer
        .layer(tower::service_fn(teapot))
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let h = res.headers().clone();
    let rejection = res.extensions().get::<CorsRejection>().cloned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, h, rejection, String::from_utf8(body.to_vec()).unwrap())
}

fn vary(h: &HeaderMap) -> Vec<String> {
    h.get_all(VARY).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn get(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn allowlisted_origin_gets_acao_and_credentials() {
    let (status, h, _, _) =
        send(CorsLayer::new(config()), Method::GET, &[("origin", "https://app.example.com")]).await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(get(&h, "access-control-allow-origin").as_deref(), Some("https://app.example.com"));
    assert_eq!(get(&h, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(get(&h, "access-control-expose-headers").as_deref(), Some("x-request-id"));
    assert_eq!(vary(&h), ["Accept-Encoding", "Origin"]);
}

#[tokio::test]
async fn acao_is_the_canonical_allowlist_entry_not_the_request_text() {
    let (_, h, _, _) =
        send(CorsLayer::new(config()), Method::GET, &[("origin", "https://APP.example.com:443")])
            .await;
    assert_eq!(get(&h, "access-control-allow-origin").as_deref(), Some("https://app.example.com"));
}

#[tokio::test]
async fn other_origins_null_and_lookalikes_get_nothing_but_vary() {
    for origin in [
        "https://evil.com",
        "null",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "http://localhost:3001",
    ] {
        let (status, h, _, _) =
            send(CorsLayer::new(config()), Method::POST, &[("origin", origin)]).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT, "{origin}");
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            None,
            "{origin}: upstream reflection removed"
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), None, "{origin}");
        assert!(vary(&h).contains(&"Origin".to_owned()), "{origin}");
    }
}

#[tokio::test]
async fn requests_without_origin_still_vary_on_origin() {
    let (_, h, _, _) = send(CorsLayer::new(config()), Method::GET, &[]).await;
    assert_eq!(get(&h, "access-control-allow-origin"), None);
    assert_eq!(vary(&h), ["Accept-Encoding", "Origin"]);
}

const PREFLIGHT_OK: &[(&str, &str)] = &[
    ("origin", "http://localhost:3000"),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "Content-Type, X-CSRF-Token"),
];

#[tokio::test]
async fn allowed_preflight_is_answered_204_listing_only_allowed_values() {
    let (status, h, rejection, body) =
        send(CorsLayer::new(config()), Method::OPTIONS, PREFLIGHT_OK).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "answered here, not by the teapot");
    assert!(rejection.is_none() && body.is_empty());
    assert_eq!(get(&h, "access-control-allow-origin").as_deref(), Some("http://localhost:3000"));
    assert_eq!(get(&h, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(get(&h, "access-control-allow-methods").as_deref(), Some("GET, POST"));
    assert_eq!(
        get(&h, "access-control-allow-headers").as_deref(),
        Some("content-type, x-csrf-token")
    );
    assert_eq!(get(&h, "access-control-max-age").as_deref(), Some("300"));
    assert!(vary(&h).contains(&"Origin".to_owned()));
}

#[tokio::test]
async fn disallowed_preflight_is_403_cors_rejected() {
    let cases: [(&[(&str, &str)], CorsReason); 4] = [
        (
            &[("origin", "https://evil.com"), ("access-control-request-method", "POST")],
            CorsReason::OriginNotAllowed,
        ),
        (
            &[("origin", "null"), ("access-control-request-method", "POST")],
            CorsReason::OriginNotAllowed,
        ),
        (
            &[("origin", "https://app.example.com"), ("access-control-request-method", "DELETE")],
            CorsReason::MethodNotAllowed,
        ),
        (
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type, x-admin"),
            ],
            CorsReason::HeaderNotAllowed,
        ),
    ];
    for (headers, reason) in cases {
        let (status, h, rejection, body) =
            send(CorsLayer::new(config()), Method::OPTIONS, headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(rejection.map(|r| r.reason), Some(reason));
        assert_eq!(get(&h, "access-control-allow-origin"), None);
        assert!(vary(&h).contains(&"Origin".to_owned()));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "cors_rejected");
    }
}

#[tokio::test]
async fn options_without_request_method_is_not_a_preflight() {
    let (status, _, _, _) =
        send(CorsLayer::new(config()), Method::OPTIONS, &[("origin", "https://app.example.com")])
            .await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
}

#[tokio::test]
async fn default_layer_allows_no_origin() {
    assert!(!CorsConfig::default().is_enabled());
    let (status, h, _, _) =
        send(CorsLayer::default(), Method::GET, &[("origin", "https://app.example.com")]).await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(get(&h, "access-control-allow-origin"), None);
    let (status, _, _, _) = send(CorsLayer::default(), Method::OPTIONS, PREFLIGHT_OK).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
