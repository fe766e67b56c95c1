//! Request protection and rate limiting through the real server: CSRF origin rules and tokens,
//! security headers on every response class, input limits, rate limits with their headers,
//! limits shared by instances over Redis, and client-IP spoofing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{self, error_code, Server, KEY};

const PW: &str = "correct-horse-battery-staple-42";

/// Sets up the first admin and logs in; returns (client, csrf token).
async fn admin_session(s: &Server) -> (reqwest::Client, String) {
    let c = support::client();
    let origin = s.base.clone();
    let r = c
        .post(s.url("/api/setup"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(s.url("/api/auth/login"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    (c, token)
}

async fn code_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, error_code(&body))
}

#[tokio::test]
async fn csrf_refuses_lookalike_and_missing_origins_and_bad_tokens() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "100000/1s")]);
    let (c, token) = admin_session(&s).await;
    let origin = s.base.clone();
    let port = origin.rsplit(':').next().unwrap().to_owned();
    let lookalikes = [
        format!("http://127.0.0.1.evil.com:{port}"),
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1:1".to_string(),
        "null".to_string(),
        format!("http://evil.com:{port}"),
        format!("http://127.0.0.1:{port}.evil.com"),
    ];
    for bad in &lookalikes {
        let r = c
            .delete(s.url("/api/auth/sessions"))
            .header("origin", bad)
            .header("x-csrf-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r).await,
            (StatusCode::FORBIDDEN, "csrf_rejected".into()),
            "origin {bad}"
        );
    }
    // No Origin, no Referer, no Fetch Metadata: refused.
    let r =
        c.delete(s.url("/api/auth/sessions")).header("x-csrf-token", &token).send().await.unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    // Cross-site Fetch Metadata wins over a matching Origin.
    let r = c
        .delete(s.url("/api/auth/sessions"))
        .header("origin", &origin)
        .header("sec-fetch-site", "cross-site")
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    // Referer of the right origin is accepted when Origin is absent.
    let r = c
        .delete(s.url("/api/auth/sessions"))
        .header("referer", format!("{origin}/page"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Right origin, missing or wrong token.
    let r = c.delete(s.url("/api/auth/sessions")).header("origin", &origin).send().await.unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    let r = c
        .delete(s.url("/api/auth/sessions"))
        .header("origin", &origin)
        .header("x-csrf-token", "A".repeat(43))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    // Another session's token is refused.
    let other = support::client();
    let r = other
        .post(s.url("/api/auth/login"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":PW}))
        .send()
        .await
        .unwrap();
    let other_token = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(other_token, token);
    let r = c
        .delete(s.url("/api/auth/sessions"))
        .header("origin", &origin)
        .header("x-csrf-token", &other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    // Same-origin Fetch Metadata with the right token passes.
    let r = c
        .delete(s.url("/api/auth/sessions"))
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Login without any origin information is refused (login CSRF).
    let anon = support::client();
    let r = anon
        .post(s.url("/api/auth/login"))
        .json(&json!({"email":"admin@example.com","password":PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.1, "csrf_rejected");
    // The rejections were audited with the reason and the origin, never a token.
    let r = c.get(s.url("/api/admin/audit?event=csrf_rejected&limit=100")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("origin_mismatch") || text.contains("cross_site"), "{text}");
    assert!(!text.contains(&token) && !text.contains(&other_token));
}

#[tokio::test]
async fn login_with_a_live_session_cookie_needs_its_token_and_csrf_needs_a_session() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "100000/1s")]);
    let (c, token) = admin_session(&s).await;
    let login = || {
        c.post(s.url("/api/auth/login"))
            .header("origin", &s.base)
            .json(&json!({"email":"admin@example.com","password":PW}))
    };
    // The right origin is not enough once a live session cookie comes with the request.
    let r = login().send().await.unwrap();
    assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "csrf_rejected".into()));
    let r = login().header("x-csrf-token", "A".repeat(43)).send().await.unwrap();
    assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "csrf_rejected".into()));
    let r = login().header("x-csrf-token", &token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // `GET /api/auth/csrf` answers a session only.
    let anon = support::client();
    let r = anon.get(s.url("/api/auth/csrf")).send().await.unwrap();
    assert_eq!(code_of(r).await, (StatusCode::UNAUTHORIZED, "unauthenticated".into()));
    let r = c.get(s.url("/api/auth/csrf")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["csrf_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
}

fn assert_security_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    for (name, want) in [
        ("x-content-type-options", Some("nosniff")),
        ("x-frame-options", Some("DENY")),
        ("cross-origin-opener-policy", Some("same-origin")),
        ("cross-origin-resource-policy", Some("same-origin")),
        ("referrer-policy", None),
        ("permissions-policy", None),
        ("content-security-policy", None),
        ("x-request-id", None),
    ] {
        let v = h.get(name).unwrap_or_else(|| panic!("{what}: missing {name}"));
        if let Some(want) = want {
            assert_eq!(v, want, "{what}: {name}");
        }
    }
    assert!(h.get("server").is_none() && h.get("x-powered-by").is_none(), "{what}: server banner");
}

#[tokio::test]
async fn security_headers_are_on_every_response_class() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "2/60s"), ("RAMPART_BODY_LIMIT", "1024")]);
    let c = support::client();
    let origin = s.base.clone();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("200", c.get(s.url("/healthz")), 200),
        ("401", c.get(s.url("/api/auth/me")), 401),
        ("404", c.get(s.url("/nope")), 404),
        ("405", c.request(Method::DELETE, s.url("/healthz")), 405),
        ("405 trace", c.request(Method::TRACE, s.url("/healthz")), 405),
        (
            "413",
            c.post(s.url("/api/auth/login"))
                .header("origin", &origin)
                .header("content-type", "application/json")
                .body(vec![b' '; 4096]),
            413,
        ),
        (
            "403",
            c.post(s.url("/api/auth/login"))
                .header("origin", "http://evil.example")
                .json(&json!({})),
            403,
        ),
    ];
    for (what, req, status) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_security_headers(&r, what);
        if status >= 400 {
            assert_eq!(r.headers()["content-type"], "application/json", "{what}");
        }
    }
    // 429: exhaust the 2-request quota.
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            c.post(s.url("/api/auth/login"))
                .header("origin", &origin)
                .json(&json!({"email":"x@example.com","password":"y"}))
                .send()
                .await
                .unwrap(),
        );
    }
    let r = last.unwrap();
    assert_eq!(r.status(), 429);
    assert_security_headers(&r, "429");
    // JSON responses get the JSON CSP; /api/auth responses are not cached.
    let r = c.get(s.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("strict-transport-security").is_none(), "no HSTS over an http origin");
}

#[tokio::test]
async fn hsts_is_sent_when_the_public_origin_is_https() {
    let s = Server::start(&[("RAMPART_PUBLIC_ORIGIN", "https://auth.example.test")]);
    let r = support::client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=63072000; includeSubDomains");
}

#[tokio::test]
async fn hostile_bodies_get_a_4xx_in_the_error_shape() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "100000/1s")]);
    let c = support::client();
    let origin = s.base.clone();
    let post = |body: Vec<u8>, ct: &str| {
        c.post(s.url("/api/auth/login"))
            .header("origin", origin.clone())
            .header("content-type", ct.to_owned())
            .body(body)
            .send()
    };
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (b"{not json".to_vec(), "application/json", 400, "invalid_json"),
        (deep.into_bytes(), "application/json", 400, "invalid_json"),
        (
            b"{\"email\":\"a\\u0000b@x.y\",\"password\":\"p\"}".to_vec(),
            "application/json",
            400,
            "invalid_request",
        ),
        (
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            "application/json",
            400,
            "invalid_request",
        ),
        (
            b"{\"email\":\"a@b.co\",\"password\":\"p\",\"admin\":true}".to_vec(),
            "application/json",
            400,
            "invalid_request",
        ),
        (b"{\"email\":1,\"password\":\"p\"}".to_vec(), "application/json", 400, "invalid_request"),
        (
            b"email=a&password=b".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (vec![b'x'; 200_000], "application/json", 413, "payload_too_large"),
    ];
    for (body, ct, status, code) in cases {
        let r = post(body, ct).await.unwrap();
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{code}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error_code(&v), code, "{text}");
        assert!(!text.contains("not json"), "input echoed: {text}");
    }
}

#[tokio::test]
async fn path_parameters_that_are_not_text_get_400_in_the_error_shape() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "100000/1s")]);
    let (c, token) = admin_session(&s).await;
    let cases = [
        (reqwest::Method::DELETE, "/api/keys/%ff"),
        (reqwest::Method::PATCH, "/api/admin/users/%ff"),
        (reqwest::Method::DELETE, "/api/admin/users/%ff"),
        (reqwest::Method::DELETE, "/api/admin/users/%ff/sessions"),
        (reqwest::Method::DELETE, "/api/auth/sessions/%c3%28"),
    ];
    for (method, path) in cases {
        let r = c
            .request(method.clone(), s.url(path))
            .header("origin", &s.base)
            .header("x-csrf-token", &token)
            .json(&json!({"role": "user"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert!(r.headers().contains_key("x-request-id"), "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "invalid_request", "{method} {path}: {body}");
    }
    // A readable id that names nothing is still 404.
    let r = c
        .delete(s.url("/api/keys/no-such-key"))
        .header("origin", &s.base)
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_limit_refuses_with_429_and_ietf_headers() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "3/60s")]);
    let c = support::client();
    let origin = s.base.clone();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..5 {
        let r = c
            .post(s.url("/api/setup"))
            .header("origin", &origin)
            .json(&json!({"email":"bad"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            refused = Some(r);
        } else {
            assert!(r.headers().contains_key("ratelimit"), "admitted responses carry RateLimit");
        }
    }
    assert_eq!(statuses, vec![400, 400, 400, 429, 429]);
    let r = refused.unwrap();
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.headers()["ratelimit-policy"].to_str().unwrap().contains("q=3;w=60"));
    assert!(r.headers().contains_key("ratelimit"));
    assert_eq!(code_of(r).await.1, "rate_limited");
    // Safe methods are exempt.
    for _ in 0..10 {
        assert_eq!(c.get(s.url("/api/setup")).send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn a_client_cannot_dodge_the_limit_with_its_own_forwarded_headers() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "3/60s")]);
    let c = support::client();
    let origin = s.base.clone();
    let mut codes = Vec::new();
    for i in 0..6 {
        let r = c
            .post(s.url("/api/setup"))
            .header("origin", &origin)
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("forwarded", format!("for=203.0.113.{i}"))
            .json(&json!({"email":"bad"}))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 3, "{codes:?}");
}

#[tokio::test]
async fn three_instances_sharing_redis_admit_no_more_than_the_quota_in_total() {
    let Some(redis) = rampart_testkit::redis_url().await else { return };
    let prefix = format!("rl-test-{}:", rampart_testkit::random_suffix());
    let env = [
        ("RAMPART_REDIS_URL", redis.as_str()),
        ("RAMPART_REDIS_KEY_PREFIX", prefix.as_str()),
        ("RAMPART_RATE_LIMIT", "20/60s"),
        ("RAMPART_SECRET_KEY", KEY),
    ];
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&env)).collect();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let url = servers[i % 3].url("/api/setup");
        let origin = servers[i % 3].base.clone();
        tasks.push(tokio::spawn(async move {
            support::client()
                .post(url)
                .header("origin", origin)
                .json(&json!({"email":"bad"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            429 => refused += 1,
            _ => admitted += 1,
        }
    }
    assert_eq!(admitted, 20, "admitted {admitted}, refused {refused}");
    assert_eq!(refused, 40);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let s = Server::start(&[("RAMPART_METRICS_LISTEN", "127.0.0.1:0")]);
    let c = support::client();
    let _ = c.get(s.url("/healthz")).send().await.unwrap();
    let _ = c
        .post(s.url("/api/auth/login"))
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    // A login for an account that does not exist still runs one verification (the dummy one
    // that keeps its timing like a real account's); the refused cross-site login ran none.
    let r = c
        .post(s.url("/api/auth/login"))
        .header("origin", &s.base)
        .json(&json!({"email": "nobody@example.com", "password": "wrong-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Methods are client-chosen tokens: made-up ones share one label, so they cannot grow
    // the metrics without bound.
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let res = c.request(method, s.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 405);
    }
    assert_eq!(
        c.get(s.url("/metrics")).send().await.unwrap().status(),
        404,
        "not on the public listener"
    );
    let mut addr = None;
    for _ in 0..50 {
        if let Some(line) = s.output().lines().find(|l| l.starts_with("rampart metrics on ")) {
            addr = Some(line.trim_start_matches("rampart metrics on ").to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = c.get(addr.expect("metrics line")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "rampart_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
        "rampart_http_request_duration_seconds_bucket{route=\"/healthz\"",
        "rampart_csrf_rejected_total 1",
        "rampart_logins_total{outcome=\"success\"} 0",
        "rampart_active_sessions 0",
        "rampart_rate_limited_total 0",
        "rampart_store_errors_total{store=\"session\"} 0",
        "rampart_audit_write_seconds_count",
        "rampart_password_hash_queue_depth 0",
        "rampart_password_verifications_total 1",
        "rampart_session_evictions_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    assert!(!text.contains("MADEUP"), "a made-up method became a label:\n{text}");
    let other = text
        .lines()
        .filter(|l| l.starts_with("rampart_http_requests_total{") && l.contains("method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(other, 40, "{text}");
}

#[tokio::test]
async fn cors_is_off_by_default_and_an_exact_allowlist_when_configured() {
    let c = support::client();
    let s = Server::start(&[]);
    let r =
        c.get(s.url("/healthz")).header("origin", "https://app.example.test").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    drop(s);

    let s = Server::start(&[
        ("RAMPART_CORS_ALLOWED_ORIGINS", "https://app.example.test"),
        ("RAMPART_CORS_ALLOWED_METHODS", "GET,POST"),
    ]);
    let r =
        c.get(s.url("/healthz")).header("origin", "https://app.example.test").send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.test");
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.headers().get_all("vary").iter().any(|v| v
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("origin")));
    for foreign in [
        "https://evil.example",
        "null",
        "https://app.example.test.evil.example",
        "http://app.example.test",
    ] {
        let r = c.get(s.url("/healthz")).header("origin", foreign).send().await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{foreign} reflected");
        assert!(r.headers().get("access-control-allow-credentials").is_none());
        assert!(r.headers().get_all("vary").iter().any(|v| v
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("origin")));
    }
    let r = c
        .request(Method::OPTIONS, s.url("/api/auth/login"))
        .header("origin", "https://app.example.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let methods = r.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("POST") && !methods.contains("DELETE"), "{methods}");
    assert_security_headers(&r, "preflight");
    let r = c
        .request(Method::OPTIONS, s.url("/api/auth/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A wildcard is refused at startup.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        support::run(dir.path(), &["check-config"], &[("RAMPART_CORS_ALLOWED_ORIGINS", "*")]);
    assert_ne!(code, 0);
    assert!(err.contains("RAMPART_CORS_ALLOWED_ORIGINS"), "{err}");
}
