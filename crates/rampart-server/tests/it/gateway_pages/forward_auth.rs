//! `GET /auth/verify` called directly, as a proxy would, and the JWKS.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::StatusCode;
use serde_json::Value;

use super::{bare, start_gw, ApiLogin, Gw, USER, USER_PW};

pub const RULES: &str = r#"
[[access_rules.rule]]
name = "public-area"
paths = ["/public/**"]
policy = "public"

[[access_rules.rule]]
name = "admin-area"
path = "/admin"
policy = "role:admin"

[[access_rules.rule]]
name = "closed"
path = "/closed"
policy = "deny"
"#;

fn b64(text: &str) -> Vec<u8> {
    rampart_core::token::b64url_decode(text).unwrap()
}

/// Verifies a JWT against a JWKS document; returns its claims.
pub fn verify_assertion(jwt: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "EdDSA");
    let pk: [u8; 32] = b64(key["x"].as_str().unwrap()).try_into().unwrap();
    let pk = VerifyingKey::from_bytes(&pk).unwrap();
    let sig: [u8; 64] = b64(parts[2]).try_into().unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    pk.verify(input.as_bytes(), &Signature::from_bytes(&sig)).expect("signature");
    let mut tampered = input.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(pk.verify(&tampered, &Signature::from_bytes(&sig)).is_err());
    serde_json::from_slice(&b64(parts[1])).unwrap()
}

async fn verify(
    gw: &Gw,
    who: Option<&ApiLogin>,
    uri: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = bare()
        .get(gw.url("/auth/verify"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-host", "app.example.com");
    if let Some(l) = who {
        rb = rb.header("cookie", &l.cookie);
    }
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_answers_by_rule_with_identity_and_a_verifiable_assertion() {
    let gw = start_gw(
        RULES,
        &[
            ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RAMPART_ASSERTION_AUDIENCE", "app-one"),
            ("RAMPART_RATE_LIMIT", "6/60s"),
        ],
    );
    let admin = gw.accounts().await;
    let user = gw.api_login(USER, USER_PW).await;

    // Anonymous: 401 with the login location; the browser form gets 302.
    let r = verify(&gw, None, "/private/x?y=1", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["location"], "/login?return_to=%2Fprivate%2Fx%3Fy%3D1");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("remote-user").is_none());
    let r = bare()
        .get(gw.url("/auth/verify?redirect=1"))
        .header("x-forwarded-uri", "/private")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "/login?return_to=%2Fprivate");
    let r = verify(&gw, None, "//evil.example/x", &[]).await;
    assert_eq!(r.headers()["location"], "/login");

    // Public rule: anonymous allowed, no identity.
    let r = verify(&gw, None, "/public/app.css", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("remote-user").is_none());

    // Logged in: identity headers and a signed assertion.
    let me: Value = gw.get_as("/api/auth/me", Some(&user)).await.json().await.unwrap();
    let r = verify(&gw, Some(&user), "/private/x", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["remote-user"], me["user"]["id"].as_str().unwrap());
    assert_eq!(h["remote-email"], USER);
    assert_eq!(h["remote-groups"], "user");
    let jwks: Value =
        bare().get(gw.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let claims = verify_assertion(h["x-rampart-assertion"].to_str().unwrap(), &jwks);
    assert_eq!(claims["sub"], me["user"]["id"]);
    assert_eq!(claims["email"], USER);
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["sid"], me["session"]["id"]);
    assert_eq!(claims["iss"], gw.origin.as_str());
    assert_eq!(claims["aud"], "app-one");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);

    // Role rule: 403 for a user (audited), 200 for the admin; deny rules refuse everyone.
    let r = verify(&gw, Some(&user), "/admin/panel", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = verify(&gw, Some(&user), "//admin/./panel", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "path tricks resolve first");
    let r = verify(&gw, Some(&admin), "/admin/panel", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["remote-groups"], "admin");
    let r = verify(&gw, Some(&admin), "/closed", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let denied = gw.audit(&admin, "access_denied").await;
    let ours = denied
        .iter()
        .find(|e| e["details"]["rule"] == "admin-area")
        .unwrap_or_else(|| panic!("{denied:?}"));
    assert_eq!(ours["details"]["via"], "forward_auth");
    assert_eq!(ours["details"]["path"], "/admin/panel");
    assert_eq!(ours["actor"]["user_id"], me["user"]["id"], "{ours}");

    // Spoofed identity headers on the request change nothing.
    let r =
        verify(&gw, None, "/private", &[("remote-user", "u_admin"), ("x-forwarded-user", "root")])
            .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // It is a GET: many checks in a row are not rate limited as unsafe requests (6 a minute
    // here, 4 of them used above), while a few more POSTs are.
    for _ in 0..30 {
        assert_eq!(verify(&gw, Some(&user), "/private", &[]).await.status(), StatusCode::OK);
    }
    let mut limited = false;
    for _ in 0..3 {
        let r = gw.post_json("/api/auth/logout", Some(&user), serde_json::json!({})).await;
        limited |= r.status() == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the unsafe-method limit is in force");
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    let gw = start_gw(RULES, &[]);
    gw.accounts().await;
    // Asking about a public path from an untrusted peer: the request's own URI counts.
    let r = verify(&gw, None, "/public/app.css", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["location"], "/login?return_to=%2Fauth%2Fverify");
    let user = gw.api_login(USER, USER_PW).await;
    let r = verify(&gw, Some(&user), "/admin/x", &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "/admin/x is not what is evaluated");
}

#[tokio::test]
async fn jwks_publishes_current_and_previous_keys() {
    let old = "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f91";
    let gw = start_gw(
        "",
        &[("RAMPART_SECRET_KEY", crate::support::KEY), ("RAMPART_PREVIOUS_SECRET_KEYS", old)],
    );
    let r = bare().get(gw.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0]["kid"], keys[1]["kid"]);
    for k in keys {
        assert_eq!(b64(k["x"].as_str().unwrap()).len(), 32);
        assert!(k.get("d").is_none(), "no private part");
    }
    // The same key gives the same JWKS on every start.
    let gw2 = start_gw("", &[("RAMPART_SECRET_KEY", crate::support::KEY)]);
    let jwks2: Value =
        bare().get(gw2.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks2["keys"][0], keys[0]);
}

#[tokio::test]
async fn forward_auth_refuses_cross_site_unsafe_requests_made_with_the_cookie() {
    let rules = format!(
        "{RULES}\n[[access_rules.rule]]\nname = \"hooks\"\npath = \"/hooks\"\npolicy = \"authenticated\"\ncsrf = false\n"
    );
    let gw = start_gw(&rules, &[("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let admin = gw.accounts().await;
    let user = gw.api_login(USER, USER_PW).await;
    let ask = |method: &'static str, uri: &'static str, extra: Vec<(&'static str, String)>| {
        let mut rb = bare()
            .get(gw.url("/auth/verify"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-host", "app.example.com")
            .header("cookie", &user.cookie);
        for (k, v) in extra {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    // The browser's own headers come along with the forwarded ones.
    let cross = || vec![("sec-fetch-site", "cross-site".to_owned())];
    let r = ask("POST", "/app/transfer", cross()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_rejected", "{body}");
    let r = ask("POST", "/app/transfer", vec![("origin", "https://evil.example".to_owned())]);
    assert_eq!(r.await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(ask("POST", "/app/transfer", vec![]).await.unwrap().status(), 403, "no origin");
    // Same origin, a safe method, or a rule with csrf = false: allowed.
    let same = vec![("origin", gw.origin.clone())];
    assert_eq!(ask("POST", "/app/transfer", same).await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("GET", "/app/page", cross()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("POST", "/hooks/in", cross()).await.unwrap().status(), StatusCode::OK);
    // Methods are case-sensitive tokens: `post` or an invented method is not safe either.
    for method in ["post", "Post", "PROPPATCH", "FOO"] {
        let r = ask(method, "/app/transfer", cross()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(ask("OPTIONS", "/app/page", cross()).await.unwrap().status(), StatusCode::OK);
    // Audited like every CSRF refusal.
    let events = gw.audit(&admin, "csrf_rejected").await;
    assert!(!events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn forward_auth_refuses_unreadable_or_conflicting_forwarding_headers() {
    let gw = start_gw(RULES, &[("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let admin = gw.accounts().await;
    let user = gw.api_login(USER, USER_PW).await;
    let ask = |who: Option<&ApiLogin>, headers: Vec<(&'static str, &'static [u8])>| {
        let mut rb = bare().get(gw.url("/auth/verify"));
        if let Some(l) = who {
            rb = rb.header("cookie", &l.cookie);
        }
        for (k, v) in headers {
            rb = rb.header(k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        rb.send()
    };
    // The plain requests first: the user may not see the admin area or the closed one.
    let r = verify(&gw, Some(&user), "/admin/users", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = verify(&gw, None, "/public/x", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);

    let refused: Vec<Vec<(&'static str, &'static [u8])>> = vec![
        // A raw byte in the URI (a proxy passes `$request_uri` as it came): unreadable, so
        // never judged as the verify request's own path under the default rule.
        vec![("x-forwarded-uri", b"/admin/\xff/../users")],
        vec![("x-forwarded-uri", b"/closed/\xff")],
        vec![("x-original-uri", b"/ADMIN/\xff")],
        // The client adds the URI header its proxy does not set.
        vec![("x-forwarded-uri", b"/public/x"), ("x-original-uri", b"/admin/users")],
        vec![("x-original-uri", b"/admin/users"), ("x-forwarded-uri", b"/public/x")],
        // Repeated, empty, or no method token.
        vec![("x-forwarded-uri", b"/public/x"), ("x-forwarded-uri", b"/admin/users")],
        vec![("x-forwarded-uri", b"")],
        vec![("x-forwarded-method", b"GET /public/x"), ("x-forwarded-uri", b"/public/x")],
        vec![("x-forwarded-host", b"app.example.com\xff"), ("x-forwarded-uri", b"/public/x")],
    ];
    for headers in &refused {
        for who in [Some(&user), None] {
            let r = ask(who, headers.clone()).await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?} as {:?}", who.is_some());
            assert_eq!(r.headers()["cache-control"], "no-store");
            assert!(r.headers().get("remote-user").is_none());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
        }
    }
    // Agreeing URI headers are read as one.
    let same: Vec<(&'static str, &'static [u8])> =
        vec![("x-forwarded-uri", b"/public/x"), ("x-original-uri", b"/public/x")];
    assert_eq!(ask(None, same).await.unwrap().status(), StatusCode::OK);
    // Audited as denials of an unreadable request.
    let events = gw.audit(&admin, "access_denied").await;
    assert!(
        events.iter().any(|e| e["details"]["reason"] == "unreadable_forwarding_headers"
            && e["details"]["rule"] == "invalid_path"),
        "{events:?}"
    );
}
