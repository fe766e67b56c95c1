use std::convert::Infallible;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use rampart_core::{Keyring, MasterKey, SecretString};
use tower::{Layer, ServiceExt};

use super::*;
use crate::Origin;

const TOKEN: &str = "session-token-value";

fn config() -> CsrfConfig {
    CsrfConfig::new(Origin::parse("https://app.example.com").unwrap())
        .with_trusted_origin(Origin::parse("https://admin.example.com:8443").unwrap())
        .insecure_exempt_prefix("/hooks")
        .with_origin_only_prefix("/api/auth/login")
        .with_origin_only_prefix("/api/setup")
        .with_origin_only_prefix("/api/auth/signup")
        .with_origin_only_prefix("/login")
}

#[derive(Clone, Copy)]
enum Who {
    Nobody,
    Anonymous,
    Session,
    ApiKey,
}

impl Who {
    fn context(self) -> Option<CsrfContext> {
        match self {
            Who::Nobody => None,
            Who::Anonymous => Some(CsrfContext::default()),
            Who::Session => Some(CsrfContext::session(SecretString::new(TOKEN))),
            Who::ApiKey => Some(CsrfContext::api_key()),
        }
    }
}

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    who: Who,
    form: Option<&'static str>,
    want: Result<(), CsrfReason>,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    who: Who,
    want: Result<(), CsrfReason>,
) -> Case {
    Case { name, method, path, headers, who, form: None, want }
}

const SAME: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];
const CROSS: &[(&str, &str)] = &[("sec-fetch-site", "cross-site")];
const SAME_TOKEN: &[(&str, &str)] = &[("sec-fetch-site", "same-origin"), ("x-csrf-token", TOKEN)];

fn run(policy: &CsrfPolicy, cases: Vec<Case>) {
    for c in cases {
        let mut headers = HeaderMap::new();
        for (k, v) in c.headers {
            headers.append(*k, HeaderValue::from_static(v));
        }
        let ctx = c.who.context();
        let got =
            policy.decide(&c.method, c.path, &headers, ctx.as_ref(), c.form).map_err(|r| r.reason);
        assert_eq!(got, c.want, "case: {}", c.name);
    }
}

/// A method by name (extension methods included).
fn m(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

#[test]
fn decides_by_method_path_and_credential() {
    use CsrfReason::*;
    let s = Who::Session;
    run(
        &CsrfPolicy::new(config()),
        vec![
            case("safe GET passes", Method::GET, "/api/x", CROSS, s, Ok(())),
            case("HEAD passes", Method::HEAD, "/api/x", CROSS, s, Ok(())),
            case("OPTIONS passes", Method::OPTIONS, "/api/x", CROSS, s, Ok(())),
            case("POST is checked", Method::POST, "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case("PUT is checked", Method::PUT, "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case("PATCH is checked", Method::PATCH, "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case("DELETE is checked", Method::DELETE, "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case("TRACE passes", Method::TRACE, "/api/x", CROSS, s, Ok(())),
            case("lower-case post is checked", m("post"), "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case(
                "WebDAV method is checked",
                m("PROPPATCH"),
                "/api/x",
                CROSS,
                s,
                Err(CrossSiteFetch),
            ),
            case("invented method is checked", m("FOO"), "/api/x", CROSS, s, Err(CrossSiteFetch)),
            case("exempt prefix", Method::POST, "/hooks/github", CROSS, s, Ok(())),
            case("exempt exact", Method::POST, "/hooks", CROSS, s, Ok(())),
            case("exempt is per segment", Method::POST, "/hooksx", CROSS, s, Err(CrossSiteFetch)),
            case("api key passes", Method::POST, "/api/x", CROSS, Who::ApiKey, Ok(())),
            case("no credential passes", Method::POST, "/api/x", CROSS, Who::Anonymous, Ok(())),
            case("no context passes", Method::POST, "/api/x", CROSS, Who::Nobody, Ok(())),
            case(
                "login cross-site",
                Method::POST,
                "/api/auth/login",
                CROSS,
                Who::Nobody,
                Err(CrossSiteFetch),
            ),
            case("login page form", Method::POST, "/login", SAME, Who::Anonymous, Ok(())),
            case(
                "origin-only is a text prefix",
                Method::POST,
                "/loginx",
                CROSS,
                Who::Nobody,
                Err(CrossSiteFetch),
            ),
            case(
                "setup needs no token",
                Method::POST,
                "/api/setup",
                &[("origin", "https://app.example.com")],
                Who::Nobody,
                Ok(()),
            ),
            case(
                "signup without origin",
                Method::POST,
                "/api/auth/signup",
                &[],
                Who::Nobody,
                Err(MissingOrigin),
            ),
        ],
    );
}

#[test]
fn fetch_metadata_decides_first() {
    use CsrfReason::*;
    let s = Who::Session;
    run(
        &CsrfPolicy::new(config()),
        vec![
            case("same-origin", Method::POST, "/a", SAME_TOKEN, s, Ok(())),
            case(
                "same-site refused by default",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "same-site"), ("x-csrf-token", TOKEN)],
                s,
                Err(CrossSiteFetch),
            ),
            case(
                "none refused",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "none"), ("x-csrf-token", TOKEN)],
                s,
                Err(CrossSiteFetch),
            ),
            case(
                "cross-site beats a good origin",
                Method::POST,
                "/a",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://app.example.com"),
                    ("x-csrf-token", TOKEN),
                ],
                s,
                Err(CrossSiteFetch),
            ),
            case(
                "value is case-insensitive",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "Cross-Site")],
                s,
                Err(CrossSiteFetch),
            ),
            case(
                "unknown value falls back to origin (good)",
                Method::POST,
                "/a",
                &[
                    ("sec-fetch-site", "weird"),
                    ("origin", "https://app.example.com"),
                    ("x-csrf-token", TOKEN),
                ],
                s,
                Ok(()),
            ),
            case(
                "unknown value falls back to origin (bad)",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "weird"), ("origin", "https://evil.com")],
                s,
                Err(OriginMismatch),
            ),
            case(
                "nothing at all",
                Method::POST,
                "/a",
                &[("x-csrf-token", TOKEN)],
                s,
                Err(MissingOrigin),
            ),
        ],
    );
}

#[test]
fn same_site_passes_only_when_allowed() {
    let policy = CsrfPolicy::new(config().insecure_allow_same_site());
    run(
        &policy,
        vec![
            case(
                "same-site allowed",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "same-site"), ("x-csrf-token", TOKEN)],
                Who::Session,
                Ok(()),
            ),
            case(
                "cross-site still refused",
                Method::POST,
                "/a",
                CROSS,
                Who::Session,
                Err(CsrfReason::CrossSiteFetch),
            ),
        ],
    );
}

macro_rules! origin_case {
    ($name:expr, $origin:expr, $want:expr) => {
        case(
            $name,
            Method::POST,
            "/a",
            &[("origin", $origin), ("x-csrf-token", TOKEN)],
            Who::Session,
            $want,
        )
    };
}

#[test]
fn origin_must_match_exactly() {
    use CsrfReason::*;
    run(
        &CsrfPolicy::new(config()),
        vec![
            origin_case!("public origin", "https://app.example.com", Ok(())),
            origin_case!("host case-insensitive", "https://APP.Example.COM", Ok(())),
            origin_case!("explicit default port", "https://app.example.com:443", Ok(())),
            origin_case!("trusted origin", "https://admin.example.com:8443", Ok(())),
            origin_case!(
                "trusted origin wrong port",
                "https://admin.example.com",
                Err(OriginMismatch)
            ),
            origin_case!("null", "null", Err(OriginMismatch)),
            origin_case!(
                "suffix lookalike",
                "https://app.example.com.evil.com",
                Err(OriginMismatch)
            ),
            origin_case!("prefix lookalike", "https://xapp.example.com", Err(OriginMismatch)),
            origin_case!("shorter tld", "https://app.example.co", Err(OriginMismatch)),
            origin_case!("other scheme", "http://app.example.com", Err(OriginMismatch)),
            origin_case!("other port", "https://app.example.com:8443", Err(OriginMismatch)),
            origin_case!(
                "user info trick",
                "https://app.example.com@evil.com",
                Err(OriginMismatch)
            ),
            origin_case!("origin with path", "https://app.example.com/", Err(OriginMismatch)),
            origin_case!("foreign", "https://evil.com", Err(OriginMismatch)),
            origin_case!("empty", "", Err(OriginMismatch)),
            case(
                "bad origin beats good referer",
                Method::POST,
                "/a",
                &[
                    ("origin", "https://evil.com"),
                    ("referer", "https://app.example.com/x"),
                    ("x-csrf-token", TOKEN),
                ],
                Who::Session,
                Err(OriginMismatch),
            ),
        ],
    );
}

#[test]
fn referer_is_used_only_without_origin() {
    use CsrfReason::*;
    let s = Who::Session;
    run(
        &CsrfPolicy::new(config()),
        vec![
            case(
                "referer same origin",
                Method::POST,
                "/a",
                &[("referer", "https://app.example.com/page?q=1"), ("x-csrf-token", TOKEN)],
                s,
                Ok(()),
            ),
            case(
                "referer lookalike",
                Method::POST,
                "/a",
                &[("referer", "https://app.example.com.evil.com/page")],
                s,
                Err(RefererMismatch),
            ),
            case(
                "referer other scheme",
                Method::POST,
                "/a",
                &[("referer", "http://app.example.com/")],
                s,
                Err(RefererMismatch),
            ),
            case(
                "referer garbage",
                Method::POST,
                "/a",
                &[("referer", "not a url")],
                s,
                Err(RefererMismatch),
            ),
        ],
    );
}

#[test]
fn session_requests_need_the_right_token() {
    use CsrfReason::*;
    let s = Who::Session;
    let with_form = |name, headers, form, want| Case {
        form: Some(form),
        ..case(name, Method::POST, "/a", headers, s, want)
    };
    run(
        &CsrfPolicy::new(config()),
        vec![
            case("header token", Method::POST, "/a", SAME_TOKEN, s, Ok(())),
            case("missing token", Method::POST, "/a", SAME, s, Err(MissingToken)),
            case(
                "empty header token",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "same-origin"), ("x-csrf-token", "")],
                s,
                Err(MissingToken),
            ),
            case(
                "wrong token",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "same-origin"), ("x-csrf-token", "session-token-valuf")],
                s,
                Err(BadToken),
            ),
            case(
                "token prefix",
                Method::POST,
                "/a",
                &[("sec-fetch-site", "same-origin"), ("x-csrf-token", "session-token")],
                s,
                Err(BadToken),
            ),
            case(
                "good token, bad origin",
                Method::POST,
                "/a",
                &[("origin", "https://evil.com"), ("x-csrf-token", TOKEN)],
                s,
                Err(OriginMismatch),
            ),
            with_form("form token", SAME, TOKEN, Ok(())),
            with_form("wrong form token", SAME, "nope", Err(BadToken)),
            with_form("empty form token", SAME, "", Err(MissingToken)),
            with_form(
                "header wins over form",
                &[("sec-fetch-site", "same-origin"), ("x-csrf-token", "nope")],
                TOKEN,
                Err(BadToken),
            ),
        ],
    );
}

#[test]
fn rejection_records_only_the_origin_never_tokens_or_paths() {
    let policy = CsrfPolicy::new(config());
    let mut headers = HeaderMap::new();
    headers.insert("referer", HeaderValue::from_static("https://evil.com/p?token=abc"));
    headers.insert("x-csrf-token", HeaderValue::from_static(TOKEN));
    let ctx = CsrfContext::session(SecretString::new(TOKEN));
    let r = policy.decide(&Method::POST, "/a", &headers, Some(&ctx), None).unwrap_err();
    assert_eq!(r.origin_seen.as_deref(), Some("https://evil.com"));
    let printed = format!("{r:?} {r}");
    assert!(!printed.contains(TOKEN) && !printed.contains("abc"), "{printed}");
}

#[test]
fn context_debug_does_not_print_the_token() {
    let printed = format!("{:?}", CsrfContext::session(SecretString::new(TOKEN)));
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(printed.contains("[redacted]"), "{printed}");
}

#[test]
fn tokens_are_stable_per_session_and_differ_between_sessions() {
    let ring = Keyring::new(MasterKey::generate(), vec![]);
    let a1 = csrf_token_for(&ring, b"session-a");
    let a2 = csrf_token_for(&ring, b"session-a");
    let b = csrf_token_for(&ring, b"session-b");
    assert_eq!(a1.expose_secret(), a2.expose_secret());
    assert_ne!(a1.expose_secret(), b.expose_secret());
    assert_eq!(a1.len(), 43);
    let other_ring = Keyring::new(MasterKey::generate(), vec![]);
    assert_ne!(csrf_token_for(&other_ring, b"session-a").expose_secret(), a1.expose_secret());
    assert_eq!(format!("{a1:?}"), "[redacted]");
}

// ---- the layer, end to end ----

async fn echo(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let bytes = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Ok(Response::new(Body::from(bytes)))
}

fn request(
    method: Method,
    headers: &[(&str, &str)],
    ctx: Option<CsrfContext>,
    body: &str,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri("/api/thing");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_owned())).unwrap();
    if let Some(ctx) = ctx {
        req.extensions_mut().insert(ctx);
    }
    req
}

async fn send(req: Request<Body>) -> (StatusCode, Option<CsrfRejection>, String) {
    let svc = CsrfLayer::new(config()).with_form_limit(1024).layer(tower::service_fn(echo));
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let rejection = res.extensions().get::<CsrfRejection>().cloned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, rejection, String::from_utf8(body.to_vec()).unwrap())
}

fn session() -> Option<CsrfContext> {
    Some(CsrfContext::session(SecretString::new(TOKEN)))
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn layer_refuses_cross_site_with_403_json_and_extension() {
    let req = request(
        Method::POST,
        &[("sec-fetch-site", "cross-site"), ("x-request-id", "r1")],
        session(),
        "",
    );
    let (status, rejection, body) = send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(rejection.unwrap().reason, CsrfReason::CrossSiteFetch);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "csrf_rejected");
    assert_eq!(v["error"]["request_id"], "r1");
}

#[tokio::test]
async fn layer_passes_header_token() {
    let req = request(Method::POST, SAME_TOKEN, session(), "payload");
    assert_eq!(send(req).await, (StatusCode::OK, None, "payload".to_owned()));
}

#[tokio::test]
async fn layer_reads_form_token_and_passes_the_body_unchanged() {
    let body = format!("name=x%20y&csrf_token={TOKEN}&z=1");
    let req = request(Method::POST, &[("sec-fetch-site", "same-origin"), FORM], session(), &body);
    assert_eq!(send(req).await, (StatusCode::OK, None, body));
}

#[tokio::test]
async fn layer_refuses_wrong_or_missing_form_token() {
    let req = request(
        Method::POST,
        &[("sec-fetch-site", "same-origin"), FORM],
        session(),
        "csrf_token=nope",
    );
    let (status, rejection, _) = send(req).await;
    assert_eq!(
        (status, rejection.map(|r| r.reason)),
        (StatusCode::FORBIDDEN, Some(CsrfReason::BadToken))
    );
    let req = request(Method::POST, &[("sec-fetch-site", "same-origin"), FORM], session(), "a=1");
    let (status, rejection, _) = send(req).await;
    assert_eq!(
        (status, rejection.map(|r| r.reason)),
        (StatusCode::FORBIDDEN, Some(CsrfReason::MissingToken))
    );
}

#[tokio::test]
async fn layer_does_not_read_bodies_that_are_not_forms() {
    let req = request(
        Method::POST,
        &[("sec-fetch-site", "same-origin"), ("content-type", "text/plain")],
        session(),
        &format!("csrf_token={TOKEN}"),
    );
    let (status, rejection, _) = send(req).await;
    assert_eq!(
        (status, rejection.map(|r| r.reason)),
        (StatusCode::FORBIDDEN, Some(CsrfReason::MissingToken))
    );
}

#[tokio::test]
async fn layer_answers_413_for_oversized_forms() {
    let body = format!("pad={}&csrf_token={TOKEN}", "a".repeat(2000));
    let req = request(Method::POST, &[("sec-fetch-site", "same-origin"), FORM], session(), &body);
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("payload_too_large"), "{body}");
}

#[tokio::test]
async fn layer_lets_anonymous_requests_through() {
    let req = request(Method::POST, &[("sec-fetch-site", "cross-site")], None, "x");
    assert_eq!(send(req).await.0, StatusCode::OK);
}
