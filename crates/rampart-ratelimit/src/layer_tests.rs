use std::convert::Infallible;

use async_trait::async_trait;
use http::Method;
use rampart_core::{ClientIp, ManualClock};
use tower::{service_fn, ServiceExt};

use super::*;
use crate::{KeyKind, MemoryRateLimitStore, Quota, RateLimitSubject};

fn store() -> (Arc<MemoryRateLimitStore>, ManualClock) {
    let clock = ManualClock::at_epoch();
    (Arc::new(MemoryRateLimitStore::new(1_000, Arc::new(clock.clone()))), clock)
}

fn request(method: Method, path: &str, ip: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-request-id", "req-123")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ClientIp(ip.parse().unwrap()));
    req
}

async fn call(layer: &RateLimitLayer, req: Request<Body>) -> Response {
    let svc = layer.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    }));
    svc.oneshot(req).await.unwrap()
}

async fn body_json(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(response: &'a Response, name: &HeaderName) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn rule(name: &str, methods: Vec<Method>, prefix: &str, quotas: &[&str]) -> Rule {
    Rule {
        name: name.into(),
        methods,
        path_prefix: prefix.into(),
        key: KeyKind::ClientIp,
        quotas: quotas.iter().map(|q| q.parse::<Quota>().unwrap()).collect(),
    }
}

#[tokio::test]
async fn admitted_responses_carry_policy_and_state_headers() {
    let (store, _) = store();
    let layer = RateLimitLayer::with_default_rule(store);
    let response = call(&layer, request(Method::POST, "/x", "203.0.113.7")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, &RATELIMIT_POLICY),
        r#""default:200/1m";q=200;w=60, "default:50/10s";q=50;w=10"#
    );
    assert_eq!(
        header(&response, &RATELIMIT),
        r#""default:200/1m";r=199;t=1, "default:50/10s";r=49;t=1"#
    );
}

#[tokio::test]
async fn refuses_with_429_json_body_retry_after_and_audit_extension() {
    let (store, _) = store();
    let layer = RateLimitLayer::new(store, vec![rule("writes", vec![], "/", &["2/1m"])]);
    for _ in 0..2 {
        assert_eq!(
            call(&layer, request(Method::POST, "/x", "203.0.113.7")).await.status(),
            StatusCode::OK
        );
    }
    let response = call(&layer, request(Method::POST, "/x", "203.0.113.7")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, &RETRY_AFTER), "30");
    assert_eq!(header(&response, &CONTENT_TYPE), "application/json");
    assert_eq!(header(&response, &RATELIMIT_POLICY), r#""writes:2/1m";q=2;w=60"#);
    assert_eq!(header(&response, &RATELIMIT), r#""writes:2/1m";r=0;t=60"#);
    let limited = response.extensions().get::<RateLimited>().cloned().unwrap();
    assert_eq!(
        limited,
        RateLimited { rule: "writes".into(), key: "rl:writes:ip:203.0.113.7".into() }
    );
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["request_id"], "req-123");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn retry_after_is_rounded_up_and_at_least_one_second() {
    let (store, _) = store();
    let layer = RateLimitLayer::new(store, vec![rule("r", vec![], "/", &["10/1s"])]);
    for _ in 0..10 {
        call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    }
    // Next unit in 100 ms: rounds up to 1 s.
    let response = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(header(&response, &RETRY_AFTER), "1");
    // 2/3s with 1.5 s left rounds up to 2.
    let layer =
        RateLimitLayer::new(layer.shared.store.clone(), vec![rule("s", vec![], "/", &["2/3s"])]);
    call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    let response = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(header(&response, &RETRY_AFTER), "2");
}

#[tokio::test]
async fn safe_methods_are_exempt_under_the_default_rule() {
    let (store, _) = store();
    let layer = RateLimitLayer::with_default_rule(store);
    for _ in 0..60 {
        let response = call(&layer, request(Method::GET, "/page", "203.0.113.7")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(RATELIMIT).is_none());
    }
    // 50 writes in 10 s are fine; the 51st is refused.
    for _ in 0..50 {
        assert_eq!(
            call(&layer, request(Method::DELETE, "/item", "203.0.113.7")).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&layer, request(Method::PUT, "/item", "203.0.113.7")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Reading still works, and another client is unaffected.
    assert_eq!(
        call(&layer, request(Method::HEAD, "/item", "203.0.113.7")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&layer, request(Method::POST, "/item", "203.0.113.8")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn rules_match_by_method_and_prefix() {
    let (store, _) = store();
    let layer = RateLimitLayer::new(
        store,
        vec![
            rule("login", vec![Method::POST], "/login", &["1/1m"]),
            rule("api", vec![], "/api/", &["1/1m"]),
        ],
    );
    let plan = |m: Method, p: &str| -> Vec<usize> {
        layer.plan(&request(m, p, "192.0.2.1")).into_iter().map(|(i, _)| i).collect()
    };
    assert_eq!(plan(Method::POST, "/login"), vec![0]);
    assert_eq!(plan(Method::GET, "/login"), Vec::<usize>::new());
    assert_eq!(plan(Method::GET, "/api/x"), vec![1]);
    assert_eq!(plan(Method::POST, "/other"), Vec::<usize>::new());

    assert_eq!(
        call(&layer, request(Method::POST, "/login", "192.0.2.1")).await.status(),
        StatusCode::OK
    );
    let refused = call(&layer, request(Method::POST, "/login", "192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other routes and methods have their own budget or none.
    assert_eq!(
        call(&layer, request(Method::GET, "/login", "192.0.2.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&layer, request(Method::POST, "/api/v1", "192.0.2.1")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_matching_rule_must_admit() {
    let (store, _) = store();
    let layer = RateLimitLayer::new(
        store,
        vec![rule("wide", vec![], "/", &["10/1m"]), rule("narrow", vec![], "/upload", &["1/1m"])],
    );
    let ok = call(&layer, request(Method::POST, "/upload", "192.0.2.1")).await;
    assert_eq!(header(&ok, &RATELIMIT), r#""wide:10/1m";r=9;t=6, "narrow:1/1m";r=0;t=60"#);
    let refused = call(&layer, request(Method::POST, "/upload", "192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.extensions().get::<RateLimited>().map(|r| r.rule.as_str()), Some("narrow"));
    // The 429 shows every matched rule; the wide one was not charged for the refusal.
    assert_eq!(header(&refused, &RATELIMIT), r#""wide:10/1m";r=9;t=6, "narrow:1/1m";r=0;t=60"#);
    assert_eq!(header(&refused, &RETRY_AFTER), "60");
}

#[tokio::test]
async fn a_request_refused_by_a_later_rule_consumes_nothing_from_earlier_rules() {
    let (store, clock) = store();
    let mut per_user = rule("uploads", vec![], "/upload", &["1/1m"]);
    per_user.key = KeyKind::UserId;
    let layer = RateLimitLayer::new(store, vec![rule("per-ip", vec![], "/", &["3/1h"]), per_user]);
    let upload = |ip: &str| {
        let mut req = request(Method::POST, "/upload", ip);
        req.extensions_mut()
            .insert(RateLimitSubject { user_id: Some("alice".into()), api_key_id: None });
        req
    };
    // Alice spends her upload from one address...
    assert_eq!(call(&layer, upload("192.0.2.9")).await.status(), StatusCode::OK);
    // ...so from another one the second rule refuses, again and again.
    for _ in 0..10 {
        let refused = call(&layer, upload("192.0.2.1")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.extensions().get::<RateLimited>().map(|r| r.key.as_str()),
            Some("rl:uploads:user:alice")
        );
        assert_eq!(
            header(&refused, &RATELIMIT),
            r#""per-ip:3/1h";r=3;t=0, "uploads:1/1m";r=0;t=60"#
        );
    }
    // Once the upload key frees up, the first rule still has its full quota for this address.
    clock.advance(time::Duration::minutes(1));
    let ok = call(&layer, upload("192.0.2.1")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, &RATELIMIT), r#""per-ip:3/1h";r=2;t=1200, "uploads:1/1m";r=0;t=60"#);
    for _ in 0..2 {
        assert_eq!(
            call(&layer, request(Method::POST, "/x", "192.0.2.1")).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&layer, request(Method::POST, "/x", "192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn retry_after_is_the_longest_wait_among_refusing_rules() {
    let (store, _) = store();
    let layer = RateLimitLayer::new(
        store,
        vec![rule("a", vec![], "/", &["1/10s"]), rule("b", vec![], "/", &["1/1m", "100/1h"])],
    );
    assert_eq!(
        call(&layer, request(Method::POST, "/", "192.0.2.1")).await.status(),
        StatusCode::OK
    );
    let refused = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(header(&refused, &RETRY_AFTER), "60");
    assert_eq!(refused.extensions().get::<RateLimited>().map(|r| r.rule.as_str()), Some("a"));
}

/// Counts `check_all` calls and how many keys each carried, deciding with a memory store.
#[derive(Debug)]
struct Counting {
    inner: MemoryRateLimitStore,
    calls: parking_lot::Mutex<Vec<usize>>,
}

#[async_trait]
impl RateLimitStore for Counting {
    async fn check_all(
        &self,
        checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        self.calls.lock().push(checks.len());
        self.inner.check_all(checks).await
    }

    async fn check(&self, _key: &str, _quotas: &[Quota]) -> Result<Decision, RateLimitError> {
        unreachable!("the layer checks all its rules with one check_all call")
    }
}

#[tokio::test]
async fn the_store_is_called_once_per_request_with_every_matching_rule() {
    let store = Arc::new(Counting {
        inner: MemoryRateLimitStore::new(100, Arc::new(ManualClock::at_epoch())),
        calls: parking_lot::Mutex::new(Vec::new()),
    });
    let layer = RateLimitLayer::new(
        store.clone(),
        vec![
            rule("wide", vec![], "/", &["10/1m"]),
            rule("narrow", vec![], "/upload", &["1/1m"]),
            rule("reads", vec![Method::GET], "/", &["10/1m"]),
        ],
    );
    call(&layer, request(Method::POST, "/upload", "192.0.2.1")).await;
    call(&layer, request(Method::POST, "/upload", "192.0.2.1")).await;
    call(&layer, request(Method::POST, "/other", "192.0.2.1")).await;
    call(&layer, request(Method::GET, "/upload", "192.0.2.1")).await;
    call(&layer, request(Method::DELETE, "/nothing-matches-but-wide", "192.0.2.1")).await;
    assert_eq!(*store.calls.lock(), vec![2, 2, 1, 3, 1]);
}

/// Answers with fewer decisions than keys.
#[derive(Debug)]
struct Short;

#[async_trait]
impl RateLimitStore for Short {
    async fn check_all(
        &self,
        _checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        Ok(vec![Decision::unlimited()])
    }
}

#[tokio::test]
async fn a_store_answering_the_wrong_number_of_decisions_fails_closed() {
    let layer = RateLimitLayer::new(
        Arc::new(Short),
        vec![rule("a", vec![], "/", &["1/1s"]), rule("b", vec![], "/", &["1/1s"])],
    );
    let response = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(
        response.extensions().get::<RateLimitError>(),
        Some(RateLimitError::InvalidState { .. })
    ));
}

#[tokio::test]
async fn user_rules_count_users_and_fall_back_to_ip_for_anonymous() {
    let (store, _) = store();
    let mut r = rule("u", vec![], "/", &["1/1m"]);
    r.key = KeyKind::UserId;
    let layer = RateLimitLayer::new(store, vec![r]);
    let as_user = |id: &str| {
        let mut req = request(Method::POST, "/", "192.0.2.1");
        req.extensions_mut()
            .insert(RateLimitSubject { user_id: Some(id.into()), api_key_id: None });
        req
    };
    assert_eq!(call(&layer, as_user("alice")).await.status(), StatusCode::OK);
    assert_eq!(call(&layer, as_user("bob")).await.status(), StatusCode::OK);
    assert_eq!(call(&layer, as_user("alice")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        call(&layer, request(Method::POST, "/", "192.0.2.1")).await.status(),
        StatusCode::OK
    );
    let refused = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(
        refused.extensions().get::<RateLimited>().map(|r| r.key.as_str()),
        Some("rl:u:ip:192.0.2.1")
    );
}

#[derive(Debug)]
struct Broken;

#[async_trait]
impl RateLimitStore for Broken {
    async fn check_all(
        &self,
        _checks: &[(&str, &[Quota])],
    ) -> Result<Vec<Decision>, RateLimitError> {
        Err(RateLimitError::unavailable(std::io::Error::other("secret-host:6379 refused")))
    }
}

#[tokio::test]
async fn store_failure_fails_closed_with_503_and_no_detail() {
    let layer = RateLimitLayer::with_default_rule(Arc::new(Broken));
    let response = call(&layer, request(Method::POST, "/", "192.0.2.1")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.extensions().get::<RateLimitError>().is_some());
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "rate_limit_unavailable");
    assert!(!body.to_string().contains("secret-host"));
    // Unmatched requests never touch the store.
    assert_eq!(call(&layer, request(Method::GET, "/", "192.0.2.1")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_request_id_gives_an_empty_string() {
    let layer = RateLimitLayer::with_default_rule(Arc::new(Broken));
    let req = Request::builder().method(Method::POST).uri("/").body(Body::empty()).unwrap();
    let body = body_json(call(&layer, req).await).await;
    assert_eq!(body["error"]["request_id"], "");
}

#[test]
fn policy_names_are_escaped_structured_strings() {
    assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(sf_string("é\n"), r#""__""#);
}

#[tokio::test]
async fn route_budgets_follow_the_route_template_never_the_raw_path() {
    let (store, _) = store();
    let mut per_route = rule("items", vec![], "/", &["1/60s"]);
    per_route.key = KeyKind::RouteAnd(Box::new(KeyKind::ClientIp));
    let app = axum::Router::new()
        .route("/items/{id}", axum::routing::get(|| async { "item" }))
        .route("/other", axum::routing::get(|| async { "other" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "none") })
        .layer(RateLimitLayer::new(store.clone(), vec![per_route]));
    let status = |path: &'static str| {
        let app = app.clone();
        async move { app.oneshot(request(Method::GET, path, "203.0.113.7")).await.unwrap().status() }
    };
    assert_eq!(status("/items/1").await, StatusCode::OK);
    assert_eq!(status("/items/2").await, StatusCode::TOO_MANY_REQUESTS, "same route, other path");
    assert_eq!(status("/other").await, StatusCode::OK, "another route has its own budget");
    // Paths no route matches share the rule's budget: new paths mint no new keys.
    assert_eq!(status("/nothing/1").await, StatusCode::NOT_FOUND);
    for path in ["/nothing/2", "/nothing/3", "/elsewhere"] {
        assert_eq!(status(path).await, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    assert_eq!(store.len(), 3, "one key per route template and one for unmatched paths");
}
