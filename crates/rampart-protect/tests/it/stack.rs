//! Every layer together around an axum router, driven with `oneshot`.

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_core::SecretString;
use rampart_protect::cors::CorsConfig;
use rampart_protect::csrf::{CsrfConfig, CsrfContext, CsrfRejection};
use rampart_protect::headers::{CspNonce, SecurityHeadersConfig, HSTS_VALUE};
use rampart_protect::input::{JsonRejection, PayloadTooLarge};
use rampart_protect::method::MethodNotAllowed;
use rampart_protect::{
    ApiJson, BodyLimitLayer, CorsLayer, CsrfLayer, MethodGuardLayer, Origin, SecurityHeadersLayer,
};
use tower::ServiceExt;

const TOKEN: &str = "stack-session-token";

fn app() -> Router {
    let public = Origin::parse("https://auth.example.com").unwrap();
    let csrf = CsrfConfig::new(public).with_origin_only_prefix("/api/auth/login");
    let cors = CorsConfig::new()
        .with_allowed_origin(Origin::parse("https://app.example.com").unwrap())
        .with_allowed_method(Method::POST);
    Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/boom", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/slow-down", get(|| async { (StatusCode::TOO_MANY_REQUESTS, "later") }))
        .route(
            "/page",
            get(|Extension(n): Extension<CspNonce>| async move {
                axum::response::Html(format!("<script nonce=\"{}\"></script>", n.as_str()))
            }),
        )
        .route("/echo", post(|ApiJson(v): ApiJson<serde_json::Value>| async move { v.to_string() }))
        .layer(BodyLimitLayer::new(256))
        .layer(CsrfLayer::new(csrf))
        .layer(Extension(CsrfContext::session(SecretString::new(TOKEN))))
        .layer(CorsLayer::new(cors))
        .layer(MethodGuardLayer::new())
        .layer(SecurityHeadersLayer::new(SecurityHeadersConfig::strict()))
}

async fn send(req: Request<Body>) -> (StatusCode, HeaderMap, http::Extensions, String) {
    let res = app().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, parts.extensions, String::from_utf8_lossy(&body).into_owned())
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    assert_eq!(h["strict-transport-security"], HSTS_VALUE, "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin", "{what}");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin", "{what}");
    assert_eq!(h["cross-origin-resource-policy"], "same-origin", "{what}");
    assert!(h.contains_key("permissions-policy"), "{what}");
    assert!(h.contains_key("content-security-policy"), "{what}");
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn every_answer_of_the_stack_carries_the_security_headers() {
    let same = |b: http::request::Builder| {
        b.header("sec-fetch-site", "same-origin").header("x-csrf-token", TOKEN)
    };
    let cases: Vec<(&str, Request<Body>, StatusCode)> = vec![
        ("200", Request::get("/ok").body(Body::empty()).unwrap(), StatusCode::OK),
        ("404", Request::get("/missing").body(Body::empty()).unwrap(), StatusCode::NOT_FOUND),
        (
            "500",
            Request::get("/boom").body(Body::empty()).unwrap(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            "429",
            Request::get("/slow-down").body(Body::empty()).unwrap(),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            "405 guard",
            Request::builder().method(Method::TRACE).uri("/ok").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "405 router",
            same(Request::delete("/ok")).body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "413",
            same(Request::post("/echo"))
                .header("content-type", "application/json")
                .body(Body::from("1".repeat(1000)))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "403 csrf",
            Request::post("/echo")
                .header("sec-fetch-site", "cross-site")
                .body(Body::empty())
                .unwrap(),
            StatusCode::FORBIDDEN,
        ),
        (
            "204 preflight",
            Request::options("/echo")
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NO_CONTENT,
        ),
    ];
    for (what, req, status) in cases {
        let (got, h, _, _) = send(req).await;
        assert_eq!(got, status, "{what}");
        assert_security_headers(&h, what);
    }
}

#[tokio::test]
async fn refusals_use_the_error_shape_and_carry_their_rejection() {
    let (status, _, ext, body) = send(
        Request::builder()
            .method(Method::CONNECT)
            .uri("/ok")
            .header("x-request-id", "r-5")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert!(ext.get::<MethodNotAllowed>().is_some());
    assert!(body.contains("\"request_id\":\"r-5\""), "{body}");

    let req = Request::post("/echo")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let (status, _, ext, body) = send(req).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::FORBIDDEN, "csrf_rejected"));
    assert!(ext.get::<CsrfRejection>().is_some());

    let req = Request::post("/echo")
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", TOKEN)
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, ext, body) = send(req).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    assert!(ext.get::<JsonRejection>().is_some());

    let req = Request::post("/echo")
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", TOKEN)
        .header("content-type", "application/json")
        .header("content-length", "1000")
        .body(Body::from("1".repeat(1000)))
        .unwrap();
    let (status, _, ext, body) = send(req).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(ext.get::<PayloadTooLarge>().is_some());
}

#[tokio::test]
async fn html_pages_get_their_own_nonce_in_the_csp() {
    let (status, h, _, body) = send(Request::get("/page").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let csp = h["content-security-policy"].to_str().unwrap();
    let nonce = body.split('"').nth(1).unwrap();
    assert!(csp.contains(&format!("'nonce-{nonce}'")), "{csp} / {body}");
    let (_, h2, _, _) = send(Request::get("/page").body(Body::empty()).unwrap()).await;
    assert_ne!(h2["content-security-policy"], h["content-security-policy"]);
}

#[tokio::test]
async fn a_genuine_request_passes_every_layer() {
    let req = Request::post("/echo")
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", TOKEN)
        .header("origin", "https://app.example.com")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"a":[1,2]}"#))
        .unwrap();
    let (status, h, _, body) = send(req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"a":[1,2]}"#));
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["vary"], "Origin");
}
