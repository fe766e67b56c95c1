use axum::body::{Body, Bytes};
use axum::routing::post;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    name: String,
    age: u32,
}

async fn person(ApiJson(p): ApiJson<Person>) -> String {
    format!("{}:{}", p.name, p.age)
}

async fn value(ApiJson(v): ApiJson<serde_json::Value>) -> String {
    v.to_string()
}

fn app() -> Router {
    Router::new().route("/person", post(person)).route("/value", post(value))
}

struct Answer {
    status: StatusCode,
    code: String,
    message: String,
    request_id: String,
    kind: Option<JsonRejectionKind>,
    body: String,
}

async fn call(
    app: Router,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Answer {
    let mut b = Request::post(path).header("x-request-id", "rid-1");
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let res = app.oneshot(b.body(body.into()).unwrap()).await.unwrap();
    let status = res.status();
    let kind = res.extensions().get::<JsonRejection>().map(JsonRejection::kind);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let field = |k: &str| v["error"][k].as_str().unwrap_or_default().to_owned();
    Answer {
        status,
        code: field("code"),
        message: field("message"),
        request_id: field("request_id"),
        kind,
        body,
    }
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn accepts_json_with_or_without_utf8_charset() {
    for ct in [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
    ] {
        let a = call(app(), "/person", Some(ct), r#"{"name":"ann","age":3}"#).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ann:3"), "{ct}");
    }
}

#[tokio::test]
async fn refuses_other_media_types_with_415() {
    for ct in [
        None,
        Some("text/plain"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let a = call(app(), "/person", ct, r#"{"name":"ann","age":3}"#).await;
        assert_eq!(
            (a.status, a.code.as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            "{ct:?}"
        );
        assert_eq!(a.kind, Some(JsonRejectionKind::UnsupportedMediaType));
        assert_eq!(a.request_id, "rid-1");
    }
}

#[tokio::test]
async fn refuses_bodies_over_the_limit_with_413() {
    let big = format!(r#"{{"name":"{}","age":1}}"#, "a".repeat(70 * 1024));
    let a = call(app(), "/person", JSON, big).await;
    assert_eq!((a.status, a.code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    let small_limit = app().layer(Extension(JsonLimits { max_body: 10, max_depth: 32 }));
    let a = call(small_limit, "/person", JSON, r#"{"name":"ann","age":3}"#).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.kind, Some(JsonRejectionKind::PayloadTooLarge));
}

#[tokio::test]
async fn refuses_a_declared_length_over_the_limit_before_reading() {
    let req = Request::post("/person")
        .header("content-type", "application/json")
        .header("content-length", "999999")
        .body(Body::from("{}"))
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn refuses_invalid_utf8_and_nul_as_invalid_request() {
    let bodies: [Vec<u8>; 3] = [
        b"{\"name\":\"\xff\",\"age\":1}".to_vec(),
        b"{\"name\":\"a\0\",\"age\":1}".to_vec(),
        br#"{"name":"a\u0000","age":1}"#.to_vec(),
    ];
    for body in bodies {
        let a = call(app(), "/person", JSON, body).await;
        assert_eq!(
            (a.status, a.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn refuses_deep_nesting_before_parsing() {
    let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
    let a = call(app(), "/value", JSON, deep).await;
    assert_eq!((a.status, a.code.as_str()), (StatusCode::BAD_REQUEST, "invalid_json"));
    assert_eq!(a.kind, Some(JsonRejectionKind::TooDeep));

    let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
    assert_eq!(call(app(), "/value", JSON, ok).await.status, StatusCode::OK);

    let shallow = app().layer(Extension(JsonLimits { max_body: 1024, max_depth: 2 }));
    let a = call(shallow, "/value", JSON, "[[[1]]]").await;
    assert_eq!(a.kind, Some(JsonRejectionKind::TooDeep));
}

#[tokio::test]
async fn malformed_json_is_invalid_json_without_echo() {
    for body in [r#"{"name": "<script>s3cr3t"#, "", "{} trailing-s3cr3t", "{'s3cr3t':1}"] {
        let a = call(app(), "/person", JSON, body).await;
        assert_eq!(
            (a.status, a.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_json"),
            "{body}"
        );
        assert!(!a.body.contains("s3cr3t") && !a.body.contains("<script"), "{}", a.body);
        assert!(a.message.contains("line"), "{}", a.message);
    }
}

#[tokio::test]
async fn shape_mismatch_is_invalid_request_naming_fields_not_values() {
    let cases = [
        (r#"{"name":"ann","age":"s3cr3t"}"#, "wrong type"),
        (r#"{"name":"ann"}"#, "missing field `age`"),
        (r#"{"name":"ann","age":1,"admin":true}"#, "unknown field `admin`"),
        (r#"{"name":"ann","age":-5}"#, "not acceptable"),
        (r#"[1,2]"#, ""),
    ];
    for (body, expected) in cases {
        let a = call(app(), "/person", JSON, body).await;
        assert_eq!(
            (a.status, a.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        assert_eq!(a.kind, Some(JsonRejectionKind::DoesNotFit));
        assert!(a.message.contains(expected), "{body}: {}", a.message);
        assert!(!a.body.contains("s3cr3t") && !a.body.contains("-5"), "{}", a.body);
    }
}

#[tokio::test]
async fn unknown_field_names_that_are_not_identifiers_are_not_echoed() {
    let a = call(app(), "/person", JSON, r#"{"name":"a","age":1,"<img src=x>":1}"#).await;
    assert_eq!(a.code, "invalid_request");
    assert!(a.message.starts_with("unknown field"), "{}", a.message);
    assert!(!a.body.contains("<img"), "{}", a.body);
}

// ---- BodyLimitLayer ----

async fn bytes(b: Bytes) -> String {
    b.len().to_string()
}

fn limited(limit: usize) -> Router {
    Router::new()
        .route("/raw", post(bytes))
        .route("/person", post(person))
        .layer(BodyLimitLayer::new(limit))
}

#[tokio::test]
async fn body_limit_refuses_declared_length_with_shaped_413() {
    let req = Request::post("/raw")
        .header("content-length", "100")
        .header("x-request-id", "rid-9")
        .body(Body::from("x".repeat(100)))
        .unwrap();
    let res = limited(10).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.extensions().get::<PayloadTooLarge>(), Some(&PayloadTooLarge { limit: 10 }));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert_eq!(v["error"]["request_id"], "rid-9");
}

#[tokio::test]
async fn body_limit_maps_extractor_length_errors_into_the_error_shape() {
    let a = call(limited(10), "/raw", None, "x".repeat(100)).await;
    assert_eq!(
        (a.status, a.code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{}",
        a.body
    );
    assert_eq!(a.request_id, "rid-1");
    let a = call(limited(10), "/person", JSON, "x".repeat(100)).await;
    assert_eq!((a.status, a.code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
}

#[tokio::test]
async fn body_limit_passes_small_bodies() {
    let a = call(limited(10), "/raw", None, "12345").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "5"));
}

#[tokio::test]
async fn length_limit_errors_are_found_through_wrappers() {
    let body = http_body_util::Full::new(Bytes::from_static(b"abc"));
    let err = http_body_util::Limited::new(body, 1).collect().await.unwrap_err();
    let wrapped = axum::Error::new(axum::Error::new(err));
    assert!(is_length_limit_error(&wrapped));
    assert!(!is_length_limit_error(&std::io::Error::other("x")));
}
