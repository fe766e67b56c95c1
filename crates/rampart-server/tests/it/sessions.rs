//! Sessions: fixation, timeouts, revocation across instances, bad cookies, storage of anonymous
//! traffic, cookie attributes, session store outages, and the session API.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, CACHE_CONTROL, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{error_code, free_port, PrivateRedis, Server, KEY};

const PW: &str = "correct-horse-battery-staple-42";
const ADMIN: &str = "admin@example.test";
/// A plain-http public origin (the listener is on a random loopback port).
const HTTP_ORIGIN: &str = "http://rampart.test";
const HTTPS_ORIGIN: &str = "https://auth.example.test";
const PLAIN_NAME: &str = "rampart_session";
const HOST_NAME: &str = "__Host-rampart_session";

/// The environment for a test server: a high rate limit, a fixed public origin, then `extra`
/// (which overrides).
fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("RAMPART_RATE_LIMIT", "100000/1s"), ("RAMPART_PUBLIC_ORIGIN", HTTP_ORIGIN)];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    env
}

/// A logged-in browser: the cookie value and the CSRF token.
#[derive(Debug, Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

/// Talks to one server with explicit cookies (no cookie store).
struct Api {
    base: String,
    origin: String,
    cookie_name: &'static str,
    http: reqwest::Client,
}

impl Api {
    fn new(s: &Server) -> Self {
        Self::with_origin(s, HTTP_ORIGIN, PLAIN_NAME)
    }

    fn with_origin(s: &Server, origin: &str, cookie_name: &'static str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { base: s.base.clone(), origin: origin.to_owned(), cookie_name, http }
    }

    fn cookie_header(&self, value: &str) -> String {
        format!("{}={value}", self.cookie_name)
    }

    /// A GET with `cookie` (a whole `Cookie` header value) if any.
    async fn get_raw(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut rb = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        rb.send().await.unwrap()
    }

    async fn get(&self, path: &str, who: Option<&Login>) -> reqwest::Response {
        let cookie = who.map(|l| self.cookie_header(&l.cookie));
        self.get_raw(path, cookie.as_deref()).await
    }

    /// An unsafe request with the public origin, and the session's cookie and CSRF token.
    async fn send(
        &self,
        method: Method,
        path: &str,
        who: Option<&Login>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.origin);
        if let Some(l) = who {
            rb = rb.header("cookie", self.cookie_header(&l.cookie)).header("x-csrf-token", &l.csrf);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    async fn setup(&self) {
        let r = self
            .send(Method::POST, "/api/setup", None, Some(json!({"email": ADMIN, "password": PW})))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "setup: {}", r.text().await.unwrap());
    }

    /// Creates a plain user (as `admin`).
    async fn add_user(&self, admin: &Login, email: &str) {
        let body = json!({"email": email, "password": PW, "role": "user"});
        let r = self.send(Method::POST, "/api/admin/users", Some(admin), Some(body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "add user: {}", r.text().await.unwrap());
    }

    /// Logs in, optionally from an existing session; returns the response.
    async fn login_response(&self, email: &str, prior: Option<&Login>) -> reqwest::Response {
        self.send(
            Method::POST,
            "/api/auth/login",
            prior,
            Some(json!({"email": email, "password": PW})),
        )
        .await
    }

    async fn login_from(&self, email: &str, prior: Option<&Login>) -> Login {
        let r = self.login_response(email, prior).await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = self.cookie_set_by(r.headers()).expect("login sets the session cookie");
        let body: Value = r.json().await.unwrap();
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        Login { cookie, csrf }
    }

    async fn login(&self, email: &str) -> Login {
        self.login_from(email, None).await
    }

    /// The value of the session cookie a response sets (not one it clears).
    fn cookie_set_by(&self, headers: &HeaderMap) -> Option<String> {
        let prefix = format!("{}=", self.cookie_name);
        set_cookies(headers)
            .into_iter()
            .filter_map(|c| {
                c.strip_prefix(&prefix).map(|v| v.split(';').next().unwrap().to_owned())
            })
            .find(|v| !v.is_empty())
    }

    /// The status of `GET /api/auth/me`, checking the error code when refused.
    async fn me_status(&self, who: &Login) -> StatusCode {
        let r = self.get("/api/auth/me", Some(who)).await;
        let status = r.status();
        if status == StatusCode::UNAUTHORIZED {
            let body: Value = r.json().await.unwrap();
            assert_eq!(error_code(&body), "unauthenticated");
        }
        status
    }

    async fn me(&self, who: &Login) -> Value {
        let r = self.get("/api/auth/me", Some(who)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Events of `kind` in the audit log (newest first), read as `admin`.
    async fn audit(&self, admin: &Login, kind: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/admin/audit?event={kind}&limit=1000"), Some(admin)).await;
        assert_eq!(r.status(), StatusCode::OK, "audit query");
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    }

    async fn sessions(&self, who: &Login) -> Vec<Value> {
        let r = self.get("/api/auth/sessions", Some(who)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["sessions"].as_array().unwrap().clone()
    }
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// The attributes of a `Set-Cookie` value after the name=value pair, trimmed.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').skip(1).map(|a| a.trim().to_owned()).collect()
}

fn has_attr(set_cookie: &str, name: &str) -> bool {
    attributes(set_cookie).iter().any(|a| {
        let n = a.split('=').next().unwrap_or("");
        n.eq_ignore_ascii_case(name)
    })
}

/// Asserts the response clears the session cookie `name` without caching.
fn assert_clears_cookie(headers: &HeaderMap, name: &str) {
    let cleared = set_cookies(headers)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {headers:?}"));
    assert!(cleared.starts_with(&format!("{name}=;")), "value is emptied: {cleared}");
    assert!(attributes(&cleared).iter().any(|a| a == "Max-Age=0"), "{cleared}");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
}

/// A well-formed session id nobody was issued.
fn random_cookie_value() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's public handle, from `GET /api/auth/me`.
async fn handle_of(api: &Api, who: &Login) -> String {
    api.me(who).await["session"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn login_issues_a_new_cookie_and_kills_the_one_the_client_came_with() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let first = api.login(ADMIN).await;
    assert_eq!(api.me_status(&first).await, StatusCode::OK);

    // Logging in again from a live session: new value, the old one dead at once.
    let second = api.login_from(ADMIN, Some(&first)).await;
    assert_ne!(second.cookie, first.cookie);
    assert_eq!(api.me_status(&first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api.me_status(&second).await, StatusCode::OK);

    // Arriving with a cookie the server never issued: it is not adopted.
    let planted = random_cookie_value();
    let r = api
        .http
        .post(api.base.clone() + "/api/auth/login")
        .header("origin", HTTP_ORIGIN)
        .header("cookie", api.cookie_header(&planted))
        .json(&json!({"email": ADMIN, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let issued = api.cookie_set_by(r.headers()).unwrap();
    assert_ne!(issued, planted);
    let planted = Login { cookie: planted, csrf: String::new() };
    assert_eq!(api.me_status(&planted).await, StatusCode::UNAUTHORIZED);
    let issued = Login { cookie: issued, csrf: String::new() };
    assert_eq!(api.me_status(&issued).await, StatusCode::OK);
}

#[tokio::test]
async fn password_change_rotates_the_cookie_and_ends_the_old_and_other_sessions() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let me = api.login(ADMIN).await;
    let other = api.login(ADMIN).await;
    let handle = handle_of(&api, &me).await;

    let new_pw = "another-long-passphrase-77";
    let r = api
        .send(
            Method::POST,
            "/api/auth/password",
            Some(&me),
            Some(json!({"current_password": PW, "new_password": new_pw})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let cookie = api.cookie_set_by(r.headers()).expect("password change sets a new cookie");
    let body: Value = r.json().await.unwrap();
    let rotated = Login { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() };
    assert_ne!(rotated.cookie, me.cookie);
    assert_ne!(rotated.csrf, me.csrf, "the CSRF token follows the session id");

    assert_eq!(api.me_status(&me).await, StatusCode::UNAUTHORIZED, "old cookie is dead");
    assert_eq!(api.me_status(&other).await, StatusCode::UNAUTHORIZED, "other session revoked");
    assert_eq!(handle_of(&api, &rotated).await, handle, "same session, new id");
    // The new token goes with the new cookie.
    let r = api.send(Method::POST, "/api/auth/logout", Some(&rotated), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn active_use_outlives_the_idle_timeout_and_idling_ends_the_session_with_an_audit_event() {
    let s = Server::start(&env(&[
        ("RAMPART_SESSION_IDLE_TIMEOUT", "2s"),
        ("RAMPART_SESSION_TOUCH_INTERVAL", "1s"),
    ]));
    let api = Api::new(&s);
    api.setup().await;
    let user = api.login(ADMIN).await;
    let handle = handle_of(&api, &user).await;
    // Used every 300 ms for about 3.6 s: well past the 2 s idle timeout.
    for i in 0..12 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(api.me_status(&user).await, StatusCode::OK, "request {i} while active");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = api.get("/api/auth/me", Some(&user)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_clears_cookie(r.headers(), PLAIN_NAME);
    assert_eq!(api.me_status(&user).await, StatusCode::UNAUTHORIZED, "stays dead");

    let admin = api.login(ADMIN).await;
    let events = api.audit(&admin, "session_expired_idle").await;
    assert!(
        events.iter().any(|e| e["session"] == handle.as_str()),
        "session_expired_idle for {handle}: {events:?}"
    );
    assert!(api.audit(&admin, "session_expired_max_age").await.is_empty());
}

#[tokio::test]
async fn the_absolute_timeout_ends_a_session_in_constant_use_with_an_audit_event() {
    let s = Server::start(&env(&[
        ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "3s"),
        ("RAMPART_SESSION_IDLE_TIMEOUT", "3s"),
        ("RAMPART_SESSION_TOUCH_INTERVAL", "1s"),
    ]));
    let api = Api::new(&s);
    api.setup().await;
    let user = api.login(ADMIN).await;
    let handle = handle_of(&api, &user).await;
    let mut ok = 0;
    let mut ended = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = api.get("/api/auth/me", Some(&user)).await;
        if r.status() == StatusCode::OK {
            ok += 1;
            continue;
        }
        ended = Some(r);
        break;
    }
    let r = ended.expect("the session must end despite constant use");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_clears_cookie(r.headers(), PLAIN_NAME);
    assert!(ok >= 2, "the session was in use before it ended ({ok} requests)");

    let admin = api.login(ADMIN).await;
    let events = api.audit(&admin, "session_expired_max_age").await;
    assert!(
        events.iter().any(|e| e["session"] == handle.as_str()),
        "session_expired_max_age for {handle}: {events:?}"
    );
    let idle = api.audit(&admin, "session_expired_idle").await;
    assert!(idle.iter().all(|e| e["session"] != handle.as_str()), "{idle:?}");
}

#[tokio::test]
async fn revocation_on_one_instance_is_seen_by_another_sharing_redis_at_once() {
    let Some(redis) = rampart_testkit::redis_url().await else { return };
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let prefix = format!("rampart-t-{}:", rampart_testkit::random_suffix());
    let shared = env(&[
        ("RAMPART_REDIS_URL", &redis),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_DATABASE_URL", &pg.url),
        ("RAMPART_REDIS_KEY_PREFIX", &prefix),
    ]);
    // One after the other, so only the first runs the migrations.
    let server_a = Server::start(&shared);
    let server_b = Server::start(&shared);
    let (a, b) = (Api::new(&server_a), Api::new(&server_b));
    a.setup().await;

    let one = a.login(ADMIN).await;
    assert_eq!(b.me_status(&one).await, StatusCode::OK, "a session from A works on B");
    let r = a.send(Method::POST, "/api/auth/logout", Some(&one), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.me_status(&one).await, StatusCode::UNAUTHORIZED, "B refuses right after");

    let kept = b.login(ADMIN).await;
    let victim = a.login(ADMIN).await;
    assert_eq!(a.me_status(&victim).await, StatusCode::OK);
    let r = b.send(Method::DELETE, "/api/auth/sessions", Some(&kept), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["revoked"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(a.me_status(&victim).await, StatusCode::UNAUTHORIZED, "A refuses right after");
    assert_eq!(a.me_status(&kept).await, StatusCode::OK, "the caller's own session stays");
}

#[tokio::test]
async fn tampered_unknown_malformed_and_conflicting_cookies_are_anonymous_and_cleared() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let real = api.login(ADMIN).await;

    let mut flipped = real.cookie.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        ("tampered", api.cookie_header(&flipped)),
        ("unknown", api.cookie_header(&random_cookie_value())),
        ("garbage", api.cookie_header("not a session id!")),
        ("too short", api.cookie_header("abc")),
        (
            "conflicting",
            format!(
                "{}; {}",
                api.cookie_header(&real.cookie),
                api.cookie_header(&random_cookie_value())
            ),
        ),
    ];
    for (what, cookie) in &cases {
        let r = api.get_raw("/api/auth/me", Some(cookie)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_clears_cookie(r.headers(), PLAIN_NAME);
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "unauthenticated", "{what}");
    }
    // None of that touched the real session.
    assert_eq!(api.me_status(&real).await, StatusCode::OK);
    let events = api.audit(&real, "invalid_token").await;
    assert!(!events.is_empty(), "invalid_token is audited");
    assert!(events.iter().all(|e| e["outcome"] == "failure"), "{events:?}");
}

#[tokio::test]
async fn a_flood_of_bad_cookies_writes_a_bounded_number_of_audit_events() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let admin = api.login(ADMIN).await;
    for i in 0..50 {
        let cookie = if i % 2 == 0 {
            api.cookie_header(&random_cookie_value())
        } else {
            api.cookie_header(&format!("garbage-{i}"))
        };
        let r = api.get_raw("/api/auth/me", Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let n = api.audit(&admin, "invalid_token").await.len();
    assert!((1..50).contains(&n), "{n} invalid_token events for 50 bad cookies");
}

/// Rows in the `sessions` table of the server's SQLite database.
async fn stored_sessions(s: &Server) -> i64 {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", s.dir.join("data/rampart.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn anonymous_requests_never_create_a_stored_session() {
    let s = Server::start(&env(&[("RAMPART_SESSION_STORE", "sql")]));
    let api = Api::new(&s);
    api.setup().await;
    let before = stored_sessions(&s).await;
    for i in 0..200 {
        let r = match i % 5 {
            0 => api.get("/api/auth/me", None).await,
            1 => api.get("/api/auth/csrf", None).await,
            2 => api.get("/api/setup", None).await,
            3 => api.get("/healthz", None).await,
            _ => api.send(Method::POST, "/api/auth/logout", None, None).await,
        };
        assert!(r.status() != StatusCode::INTERNAL_SERVER_ERROR, "request {i}");
        assert!(api.cookie_set_by(r.headers()).is_none(), "request {i} set a session cookie");
    }
    assert_eq!(stored_sessions(&s).await, before, "anonymous traffic stored nothing");
    let user = api.login(ADMIN).await;
    assert_eq!(stored_sessions(&s).await, before + 1, "a login stores one session");
    assert_eq!(api.me_status(&user).await, StatusCode::OK);
}

#[tokio::test]
async fn development_cookie_is_httponly_lax_host_only_and_browser_session_scoped() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let r = api.login_response(ADMIN, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let cookies = set_cookies(r.headers());
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with(&format!("{PLAIN_NAME}=")), "{c}");
    let attrs = attributes(c);
    for want in ["HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {c}");
    }
    for absent in ["Secure", "Domain", "Max-Age", "Expires"] {
        assert!(!has_attr(c, absent), "no {absent} in {c}");
    }
}

#[tokio::test]
async fn https_origin_uses_the_host_prefixed_secure_cookie_and_strict_same_site_on_request() {
    let s = Server::start(&env(&[
        ("RAMPART_PUBLIC_ORIGIN", HTTPS_ORIGIN),
        ("RAMPART_SESSION_COOKIE_SAME_SITE", "strict"),
    ]));
    let api = Api::with_origin(&s, HTTPS_ORIGIN, HOST_NAME);
    api.setup().await;
    let r = api.login_response(ADMIN, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let cookies = set_cookies(r.headers());
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with(&format!("{HOST_NAME}=")), "{c}");
    let attrs = attributes(c);
    for want in ["HttpOnly", "Path=/", "Secure", "SameSite=Strict"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {c}");
    }
    assert!(!has_attr(c, "Domain") && !has_attr(c, "Max-Age"), "{c}");

    let value = api.cookie_set_by(r.headers()).unwrap();
    let login = Login { cookie: value.clone(), csrf: String::new() };
    assert_eq!(api.me_status(&login).await, StatusCode::OK);
    // The unprefixed name could be planted by a sibling subdomain: it is not read.
    let r = api.get_raw("/api/auth/me", Some(&format!("{PLAIN_NAME}={value}"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A bad cookie is cleared under the name in use, with the same attributes.
    let r = api.get_raw("/api/auth/me", Some(&format!("{HOST_NAME}=garbage"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_clears_cookie(r.headers(), HOST_NAME);
    let cleared = set_cookies(r.headers()).join("\n");
    assert!(cleared.contains("Secure") && cleared.contains("SameSite=Strict"), "{cleared}");
}

#[tokio::test]
async fn logout_expires_the_cookie_and_clears_site_data() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let user = api.login(ADMIN).await;
    let r = api.send(Method::POST, "/api/auth/logout", Some(&user), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_clears_cookie(r.headers(), PLAIN_NAME);
    assert_eq!(r.headers()["clear-site-data"], "\"cache\", \"cookies\", \"storage\"");
    assert_eq!(api.me_status(&user).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_redis_outage_answers_503_for_sessions_and_the_server_recovers_by_itself() {
    let mut redis = PrivateRedis::start(free_port()).await;
    let url = redis.url();
    let s = Server::start(&env(&[
        ("RAMPART_REDIS_URL", &url),
        ("RAMPART_SESSION_STORE_TIMEOUT", "1s"),
    ]));
    let api = Api::new(&s);
    api.setup().await;
    let before = api.login(ADMIN).await;
    assert_eq!(api.me_status(&before).await, StatusCode::OK);

    redis.kill();
    let mut refused = None;
    for _ in 0..20 {
        let r = api.get("/api/auth/me", Some(&before)).await;
        assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "an outage is not a logout");
        if r.status() != StatusCode::OK {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = refused.expect("requests must fail while Redis is down");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get(SET_COOKIE).is_none(), "the cookie is kept through an outage");
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "session_store_unavailable");
    let r = api.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = api.get("/readyz", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"status": "unavailable", "failing": ["redis"]}));

    redis.restart().await;
    let mut ready = false;
    for _ in 0..60 {
        if api.get("/readyz", None).await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ready, "/readyz recovers once Redis is back");
    let after = api.login(ADMIN).await;
    assert_eq!(api.me_status(&after).await, StatusCode::OK);
    // The restarted Redis kept nothing: the old session is gone, not resurrected.
    assert_eq!(api.me_status(&before).await, StatusCode::UNAUTHORIZED);
}

fn rfc3339(v: &Value) -> time::OffsetDateTime {
    let text = v.as_str().unwrap_or_else(|| panic!("timestamp expected: {v}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn me_describes_the_user_and_the_session_by_its_public_handle() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let user = api.login(ADMIN).await;
    let body = api.me(&user).await;
    assert_eq!(keys(&body), ["session", "user"]);
    let u = &body["user"];
    assert_eq!(keys(u), ["created_at", "disabled", "email", "id", "role"]);
    assert_eq!(u["email"], ADMIN);
    assert_eq!(u["role"], "admin");
    assert_eq!(u["disabled"], false);
    assert!(u["id"].as_str().is_some_and(|id| !id.is_empty()));
    rfc3339(&u["created_at"]);

    let sess = &body["session"];
    assert_eq!(
        keys(sess),
        ["absolute_expires_at", "created_at", "id", "idle_expires_at", "last_seen_at"]
    );
    let handle = sess["id"].as_str().unwrap();
    assert!(!handle.is_empty());
    assert_ne!(handle, user.cookie);
    assert!(!user.cookie.contains(handle) && !handle.contains(&user.cookie));
    let created = rfc3339(&sess["created_at"]);
    let last_seen = rfc3339(&sess["last_seen_at"]);
    assert!(last_seen >= created);
    assert_eq!(rfc3339(&sess["idle_expires_at"]) - last_seen, time::Duration::minutes(30));
    assert_eq!(rfc3339(&sess["absolute_expires_at"]) - created, time::Duration::hours(12));
}

#[tokio::test]
async fn users_list_and_revoke_their_own_sessions_only() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    api.setup().await;
    let a1 = api.login(ADMIN).await;
    let a2 = api.login(ADMIN).await;
    api.add_user(&a1, "user@example.test").await;
    let u1 = api.login("user@example.test").await;
    let (h1, h2, hu) =
        (handle_of(&api, &a1).await, handle_of(&api, &a2).await, handle_of(&api, &u1).await);

    let list = api.sessions(&a1).await;
    let mut ids: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = vec![h1.as_str(), h2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "only the caller's own sessions: {list:?}");
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    assert_eq!(current[0]["id"], h1.as_str());
    assert!(list.iter().all(|s| s["current"].is_boolean()));
    assert!(list.iter().all(|s| !s.to_string().contains(&a1.cookie)), "no cookie values");

    // Another user's handle: not found, and that session lives on.
    let r = api.send(Method::DELETE, &format!("/api/auth/sessions/{hu}"), Some(&a1), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r.json().await.unwrap()), "not_found");
    assert_eq!(api.me_status(&u1).await, StatusCode::OK);

    // One's own other session: gone.
    let r = api.send(Method::DELETE, &format!("/api/auth/sessions/{h2}"), Some(&a1), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.me_status(&a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api.me_status(&a1).await, StatusCode::OK);
    let left = api.sessions(&a1).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], h1.as_str());
}

#[tokio::test]
async fn a_login_beyond_the_per_user_limit_ends_the_least_recently_used_session() {
    for store in ["memory", "sql"] {
        let s = Server::start(&env(&[
            ("RAMPART_SESSION_STORE", store),
            ("RAMPART_SESSION_MAX_PER_USER", "2"),
        ]));
        let api = Api::new(&s);
        api.setup().await;
        // Last use is recorded at the touch interval; within it, the oldest login is the least
        // recently used (the order by use is covered by the session manager's unit tests).
        let first = api.login(ADMIN).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = api.login(ADMIN).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let third = api.login(ADMIN).await;
        assert_eq!(
            api.get("/api/auth/me", Some(&first)).await.status(),
            StatusCode::UNAUTHORIZED,
            "{store}: the least recently used session ends"
        );
        for (name, who) in [("second", &second), ("third", &third)] {
            let status = api.get("/api/auth/me", Some(who)).await.status();
            assert_eq!(status, StatusCode::OK, "{store}: the {name} session stays");
        }
        let revoked = api.audit(&third, "sessions_revoked").await;
        let ours: Vec<&Value> =
            revoked.iter().filter(|e| e["details"]["reason"] == "session_limit").collect();
        assert_eq!(ours.len(), 1, "{store}: {revoked:?}");
        assert_eq!(ours[0]["details"]["revoked"], 1);
        assert_eq!(ours[0]["details"]["limit"], 2);
        assert_eq!(ours[0]["details"]["sessions"].as_array().map(Vec::len), Some(1));
    }
}
