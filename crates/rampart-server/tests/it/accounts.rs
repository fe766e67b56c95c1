//! The accounts and authentication API: setup, login, logout, password change, sessions,
//! signup, user administration, brute-force regulation, legacy hashes and the `user` CLI.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{self, error_code, Server, KEY};

const ADMIN: &str = "root@example.com";
const ADMIN_PW: &str = "correct-horse-battery-staple-42";
const USER_PW: &str = "tangerine-violin-orbit-77";

/// A listen address on a free loopback port, so the default public origin is a real origin.
fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// The environment of every server here: a fixed port and no general rate limit in the way.
fn env_for(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("RAMPART_LISTEN".to_owned(), free_listen()),
        ("RAMPART_RATE_LIMIT".to_owned(), "100000/1s".to_owned()),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn start(extra: &[(&str, &str)]) -> Server {
    Server::start(&borrowed(&env_for(extra)))
}

fn start_in(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    Server::start_in(dir, &borrowed(&env_for(extra)), &[])
}

/// A client without a cookie store.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response, read to the end.
struct Resp {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Resp { status, headers, text: r.text().await.unwrap() }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.text))
    }

    /// Asserts the status and returns the JSON body (null when empty).
    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response with this status and code.
    #[track_caller]
    fn err(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(error_code(&self.json()), code, "body: {}", self.text);
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// `name=value` of the session cookie this response sets.
    fn cookie_pair(&self) -> String {
        let set = self.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {self:?}"));
        set.split(';').next().unwrap().to_owned()
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.text)
    }
}

/// A browser-like caller of one server: cookies kept, `Origin` always sent, the CSRF token sent
/// once known.
struct Agent<'a> {
    s: &'a Server,
    c: reqwest::Client,
    csrf: Option<String>,
}

impl<'a> Agent<'a> {
    fn new(s: &'a Server) -> Self {
        Agent { s, c: support::client(), csrf: None }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self.c.request(method, self.s.url(path)).header("origin", &self.s.base);
        if let Some(t) = &self.csrf {
            b = b.header("x-csrf-token", t);
        }
        b
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut b = self.req(method, path);
        if let Some(body) = body {
            b = b.json(&body);
        }
        Resp::read(b.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// Logs in; on success keeps the CSRF token.
    async fn login(&mut self, email: &str, password: &str) -> Resp {
        let r = self.post("/api/auth/login", json!({"email": email, "password": password})).await;
        if r.status == 200 {
            self.csrf = Some(r.json()["csrf_token"].as_str().unwrap().to_owned());
        }
        r
    }
}

/// Logs `email` in on a new agent, asserting success.
async fn logged_in<'a>(s: &'a Server, email: &str, password: &str) -> Agent<'a> {
    let mut a = Agent::new(s);
    a.login(email, password).await.ok(200);
    a
}

/// Completes first-user setup with the standard admin; returns the user.
async fn setup_admin(s: &Server) -> Value {
    let r = Agent::new(s).post("/api/setup", json!({"email": ADMIN, "password": ADMIN_PW})).await;
    r.ok(201)["user"].clone()
}

/// Creates a user through the admin API; returns its id.
async fn create_user(admin: &Agent<'_>, email: &str, role: &str) -> String {
    let r = admin
        .post("/api/admin/users", json!({"email": email, "password": USER_PW, "role": role}))
        .await;
    let user = r.ok(201)["user"].clone();
    assert_eq!(user["role"], role);
    user["id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_user_shape(user: &Value, email: &str, role: &str) {
    let keys: Vec<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["created_at", "disabled", "email", "id", "role"], "{user}");
    assert!(user["id"].as_str().is_some_and(|id| !id.is_empty()), "{user}");
    assert_eq!(user["email"], email);
    assert_eq!(user["role"], role);
    assert_eq!(user["disabled"], false);
    let created = user["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("created_at {created:?} is not RFC 3339: {e}"));
}

/// Admin audit events of one kind, newest first.
async fn audit_events(admin: &Agent<'_>, event: &str) -> Vec<Value> {
    let r = admin.get(&format!("/api/admin/audit?event={event}&limit=1000")).await;
    r.ok(200)["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn setup_creates_the_first_admin_exactly_once() {
    let s = start(&[]);
    let a = Agent::new(&s);
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": true}));

    // The origin check applies to setup too.
    let r = bare_client()
        .post(s.url("/api/setup"))
        .json(&json!({"email": ADMIN, "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    Resp::read(r).await.err(403, "csrf_rejected");
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": true}));

    let r = a.post("/api/setup", json!({"email": ADMIN, "password": ADMIN_PW})).await;
    let body = r.ok(201);
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_user_shape(&body["user"], ADMIN, "admin");

    let r =
        a.post("/api/setup", json!({"email": "second@example.com", "password": ADMIN_PW})).await;
    r.err(409, "setup_already_done");
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": false}));

    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let users = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    assert_eq!(users["users"][0], body["user"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_user_setup_race_across_three_instances_has_exactly_one_winner() {
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let shared = [("RAMPART_DATABASE_URL", pg.url.as_str()), ("RAMPART_SECRET_KEY", KEY)];
    // The first instance migrates the empty database; the others start once it listens.
    let s1 = start(&shared);
    let s2 = start(&shared);
    let s3 = start(&shared);
    let servers = [&s1, &s2, &s3];
    for s in servers {
        assert_eq!(Agent::new(s).get("/api/setup").await.ok(200), json!({"needed": true}));
    }

    let c = bare_client();
    let attempts = (0..100).map(|i| {
        let s = servers[i % 3];
        let req = c
            .post(s.url("/api/setup"))
            .header("origin", &s.base)
            .json(&json!({"email": format!("racer{i}@example.com"), "password": ADMIN_PW}));
        async move { (i, Resp::read(req.send().await.unwrap()).await) }
    });
    let results = futures_util::future::join_all(attempts).await;

    let mut winners = Vec::new();
    for (i, r) in &results {
        match r.status {
            201 => winners.push((*i, r.json()["user"].clone())),
            _ => r.err(409, "setup_already_done"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let (i, user) = &winners[0];
    let email = format!("racer{i}@example.com");
    assert_user_shape(user, &email, "admin");

    for s in servers {
        assert_eq!(Agent::new(s).get("/api/setup").await.ok(200), json!({"needed": false}));
    }
    let admin = logged_in(&s2, &email, ADMIN_PW).await;
    let users = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    assert_eq!(&users["users"][0], user);
    // A loser's account does not exist.
    let loser = (i + 1) % 100;
    let mut a = Agent::new(&s3);
    a.login(&format!("racer{loser}@example.com"), ADMIN_PW).await.err(401, "invalid_credentials");
}

#[tokio::test]
async fn login_returns_the_user_a_csrf_token_and_a_session_cookie() {
    let s = start(&[]);
    let admin_user = setup_admin(&s).await;
    let mut a = Agent::new(&s);
    a.get("/api/auth/me").await.err(401, "unauthenticated");

    let r = a.login(ADMIN, ADMIN_PW).await;
    let body = r.ok(200);
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["csrf_token", "user"], "{body}");
    assert_eq!(body["user"], admin_user);
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 32), "{body}");
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("rampart_session=") && cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let me = a.get("/api/auth/me").await.ok(200);
    assert_eq!(me["user"], admin_user);
    for k in ["id", "created_at", "last_seen_at", "idle_expires_at", "absolute_expires_at"] {
        assert!(me["session"][k].is_string(), "{k}: {me}");
    }
    // The CSRF endpoint gives the same token as the login.
    let t = a.get("/api/auth/csrf").await.ok(200);
    assert_eq!(t, json!({"csrf_token": body["csrf_token"]}));
}

/// Headers of a response without the ones that differ per request.
fn comparable_headers(h: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in h {
        let name = k.as_str();
        if name == "x-request-id" || name == "date" || name.starts_with("ratelimit") {
            continue;
        }
        out.entry(name.to_owned()).or_default().push(v.to_str().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn wrong_password_unknown_email_and_disabled_account_answer_identically() {
    let s = start(&[]);
    setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let bob = create_user(&admin, "bob@example.com", "user").await;
    let r = admin.patch(&format!("/api/admin/users/{bob}"), json!({"disabled": true})).await;
    assert_eq!(r.ok(200)["user"]["disabled"], true);

    let mut seen = Vec::new();
    for (email, password) in [
        (ADMIN, "not-the-right-password-1"),
        ("nobody@example.com", USER_PW),
        ("bob@example.com", USER_PW),
    ] {
        let mut a = Agent::new(&s);
        let r = a.login(email, password).await;
        r.err(401, "invalid_credentials");
        assert!(r.header("set-cookie").is_none(), "{r:?}");
        let rid = r.json()["error"]["request_id"].as_str().unwrap().to_owned();
        assert_eq!(r.header("x-request-id"), Some(rid.as_str()));
        let body = r.text.replace(&rid, "RID");
        seen.push((email, body, comparable_headers(&r.headers)));
    }
    let (_, body0, headers0) = &seen[0];
    for (email, body, headers) in &seen[1..] {
        assert_eq!(body, body0, "body for {email}");
        assert_eq!(headers, headers0, "headers for {email}");
    }
}

#[tokio::test]
async fn request_bodies_are_checked_strictly() {
    let s = start(&[("RAMPART_SIGNUP", "open")]);
    let a = Agent::new(&s);
    // Nobody chooses their own role, not even at setup.
    let r =
        a.post("/api/setup", json!({"email": ADMIN, "password": ADMIN_PW, "role": "user"})).await;
    r.err(400, "invalid_request");
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": true}));
    setup_admin(&s).await;

    let with_role = json!({"email": "eve@example.com", "password": USER_PW, "role": "admin"});
    a.post("/api/auth/signup", with_role.clone()).await.err(400, "invalid_request");
    a.post("/api/auth/login", with_role).await.err(400, "invalid_request");
    let r = a
        .post("/api/auth/login", json!({"email": ADMIN, "password": ADMIN_PW, "user_id": "x"}))
        .await;
    r.err(400, "invalid_request");
    a.post("/api/auth/login", json!({"email": ADMIN})).await.err(400, "invalid_request");

    for path in ["/api/auth/login", "/api/auth/signup", "/api/setup"] {
        let body = format!(r#"{{"email":"{ADMIN}","password":"{ADMIN_PW}"}}"#);
        let r = a.req(Method::POST, path).header("content-type", "text/plain").body(body);
        Resp::read(r.send().await.unwrap()).await.err(415, "unsupported_media_type");
        let r = a.req(Method::POST, path).form(&[("email", ADMIN), ("password", ADMIN_PW)]);
        Resp::read(r.send().await.unwrap()).await.err(415, "unsupported_media_type");
        let r = a
            .req(Method::POST, path)
            .header("content-type", "application/json")
            .body(r#"{"email": "a@b.co", "password": "#);
        let r = Resp::read(r.send().await.unwrap()).await;
        r.err(400, "invalid_json");
        assert!(!r.text.contains("a@b.co"), "input echoed: {}", r.text);
    }
    // Signup with a role in the body created nobody.
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let users = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
}

/// Passwords the policy refuses for `email`, with a word the message must contain.
fn bad_passwords(email: &str) -> Vec<(String, &'static str)> {
    let local = email.split('@').next().unwrap();
    vec![
        ("x".repeat(257), "too long"),
        ("abcdefghijk".to_owned(), "too short"),
        ("qwertyuiop123".to_owned(), "common"),
        ("password1234".to_owned(), "common"),
        ("passwordpassword".to_owned(), "predictable"),
        ("123456789012345".to_owned(), "predictable"),
        ("P@ssw0rd2024!".to_owned(), "predictable"),
        (format!("ignited-{local}-river-9"), "email"),
    ]
}

#[track_caller]
fn assert_policy(r: &Resp, word: &str) {
    r.err(400, "password_policy");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains(word), "message {msg:?} should say {word:?}");
}

#[tokio::test]
async fn password_policy_applies_to_setup_signup_admin_create_and_password_change() {
    let s = start(&[("RAMPART_SIGNUP", "open")]);
    let a = Agent::new(&s);
    for (pw, word) in bad_passwords(ADMIN) {
        let r = a.post("/api/setup", json!({"email": ADMIN, "password": pw})).await;
        assert_policy(&r, word);
    }
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": true}));
    setup_admin(&s).await;

    let email = "margaret@example.com";
    for (pw, word) in bad_passwords(email) {
        let r = a.post("/api/auth/signup", json!({"email": email, "password": pw})).await;
        assert_policy(&r, word);
    }
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    for (pw, word) in bad_passwords(email) {
        let body = json!({"email": email, "password": pw, "role": "user"});
        assert_policy(&admin.post("/api/admin/users", body).await, word);
    }
    for (pw, word) in bad_passwords(ADMIN) {
        let body = json!({"current_password": ADMIN_PW, "new_password": pw});
        assert_policy(&admin.post("/api/auth/password", body).await, word);
    }
    // Nothing was created or changed; the session still works.
    let users = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    // The limit is 256 characters, inclusive; the local part is compared case-insensitively.
    // 256 letters that neither repeat nor run along the alphabet.
    let longest: String =
        (0..256u32).map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8)).collect();
    let body = json!({"email": email, "password": longest, "role": "user"});
    admin.post("/api/admin/users", body).await.ok(201);
    let body = json!({"email": "other@example.com", "password": "xx-MARGARET-ok-123"});
    a.post("/api/auth/signup", body).await.ok(201);
    let body = json!({"email": "margo@example.com", "password": "i-am-MARGO-really-123"});
    assert_policy(&a.post("/api/auth/signup", body).await, "email");
}

#[tokio::test]
async fn logout_deletes_the_session_and_clears_the_cookie() {
    let s = start(&[]);
    setup_admin(&s).await;
    let mut a = Agent::new(&s);
    let cookie = a.login(ADMIN, ADMIN_PW).await.cookie_pair();
    let token = a.csrf.take().unwrap();

    // A session-authenticated POST needs the token.
    a.post("/api/auth/logout", json!({})).await.err(403, "csrf_rejected");
    a.get("/api/auth/me").await.ok(200);
    a.csrf = Some(token);

    let r = a.send(Method::POST, "/api/auth/logout", None).await;
    assert_eq!(r.ok(204), Value::Null);
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("rampart_session=;") && set.contains("Max-Age=0"), "{set}");
    assert!(r.header("clear-site-data").is_some_and(|v| v.contains("cookies")), "{r:?}");
    a.get("/api/auth/me").await.err(401, "unauthenticated");

    // The old cookie is dead on the server, not only forgotten by the client.
    let r = bare_client().get(s.url("/api/auth/me")).header("cookie", &cookie).send().await;
    Resp::read(r.unwrap()).await.err(401, "unauthenticated");
}

#[tokio::test]
async fn password_change_rotates_this_session_and_revokes_the_others() {
    let s = start(&[]);
    setup_admin(&s).await;
    let mut a = Agent::new(&s);
    let old_cookie = a.login(ADMIN, ADMIN_PW).await.cookie_pair();
    let other = logged_in(&s, ADMIN, ADMIN_PW).await;
    let old_token = a.csrf.clone().unwrap();
    assert_eq!(a.get("/api/auth/csrf").await.ok(200)["csrf_token"], old_token.as_str());

    let new_pw = "a-brand-new-passphrase-99";
    let wrong = json!({"current_password": "not-the-password-123", "new_password": new_pw});
    a.post("/api/auth/password", wrong).await.err(401, "invalid_credentials");
    // Nothing changed: both sessions live, the old password still works.
    a.get("/api/auth/me").await.ok(200);
    other.get("/api/auth/me").await.ok(200);
    let mut probe = Agent::new(&s);
    probe.login(ADMIN, new_pw).await.err(401, "invalid_credentials");
    // `probe` gets a session with the old password; it is revoked by the change below too.
    probe.login(ADMIN, ADMIN_PW).await.ok(200);

    let r = a
        .post("/api/auth/password", json!({"current_password": ADMIN_PW, "new_password": new_pw}))
        .await;
    let body = r.ok(200);
    let new_cookie = r.cookie_pair();
    assert_ne!(new_cookie, old_cookie);
    let new_token = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({"csrf_token": new_token}));
    assert_ne!(new_token, old_token);

    // The rotated session works with the new token; the old token no longer does.
    a.get("/api/auth/me").await.ok(200);
    a.delete("/api/auth/sessions").await.err(403, "csrf_rejected");
    a.csrf = Some(new_token);
    assert_eq!(a.get("/api/auth/csrf").await.ok(200)["csrf_token"], a.csrf.clone().unwrap());
    assert_eq!(a.delete("/api/auth/sessions").await.ok(200), json!({"revoked": 0}));
    other.get("/api/auth/me").await.err(401, "unauthenticated");
    probe.get("/api/auth/me").await.err(401, "unauthenticated");
    let r = bare_client().get(s.url("/api/auth/me")).header("cookie", &old_cookie).send().await;
    Resp::read(r.unwrap()).await.err(401, "unauthenticated");

    Agent::new(&s).login(ADMIN, ADMIN_PW).await.err(401, "invalid_credentials");
    Agent::new(&s).login(ADMIN, new_pw).await.ok(200);
}

#[tokio::test]
async fn own_sessions_are_listed_and_can_be_revoked() {
    let s = start(&[]);
    setup_admin(&s).await;
    let a = logged_in(&s, ADMIN, ADMIN_PW).await;
    let b = logged_in(&s, ADMIN, ADMIN_PW).await;
    let c = logged_in(&s, ADMIN, ADMIN_PW).await;

    let list = a.get("/api/auth/sessions").await.ok(200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    for sess in sessions {
        let mut keys: Vec<&String> = sess.as_object().unwrap().keys().collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["created_at", "current", "id", "ip", "last_seen_at", "user_agent"],
            "{sess}"
        );
        assert_eq!(sess["ip"], "127.0.0.1");
    }
    assert_eq!(sessions.iter().filter(|x| x["current"] == true).count(), 1, "{list}");
    let b_id = b.get("/api/auth/me").await.ok(200)["session"]["id"].as_str().unwrap().to_owned();
    assert!(sessions.iter().any(|x| x["id"] == b_id.as_str()), "{list}");

    assert_eq!(a.delete(&format!("/api/auth/sessions/{b_id}")).await.ok(204), Value::Null);
    b.get("/api/auth/me").await.err(401, "unauthenticated");
    a.delete(&format!("/api/auth/sessions/{b_id}")).await.err(404, "not_found");
    a.delete("/api/auth/sessions/no-such-session").await.err(404, "not_found");

    assert_eq!(a.delete("/api/auth/sessions").await.ok(200), json!({"revoked": 1}));
    c.get("/api/auth/me").await.err(401, "unauthenticated");
    a.get("/api/auth/me").await.ok(200);
    let list = a.get("/api/auth/sessions").await.ok(200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["sessions"][0]["current"], true);
}

#[tokio::test]
async fn one_user_cannot_revoke_another_users_session_by_handle() {
    let s = start(&[]);
    setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    create_user(&admin, "bob@example.com", "user").await;
    let bob = logged_in(&s, "bob@example.com", USER_PW).await;
    let admin_handle = admin.get("/api/auth/me").await.ok(200)["session"]["id"].clone();
    let path = format!("/api/auth/sessions/{}", admin_handle.as_str().unwrap());
    bob.delete(&path).await.err(404, "not_found");
    admin.get("/api/auth/me").await.ok(200);
}

#[tokio::test]
async fn signup_is_closed_by_default() {
    let s = start(&[]);
    setup_admin(&s).await;
    let r = Agent::new(&s)
        .post("/api/auth/signup", json!({"email": "eve@example.com", "password": USER_PW}))
        .await;
    r.err(404, "not_found");
    Agent::new(&s).login("eve@example.com", USER_PW).await.err(401, "invalid_credentials");
}

#[tokio::test]
async fn open_signup_creates_plain_users() {
    let s = start(&[("RAMPART_SIGNUP", "open")]);
    let a = Agent::new(&s);
    // Before first-user setup, sign-up is refused: it must not take setup's place.
    let early = json!({"email": "early@example.com", "password": USER_PW});
    a.post("/api/auth/signup", early).await.err(409, "setup_required");
    assert_eq!(a.get("/api/setup").await.ok(200), json!({"needed": true}));
    setup_admin(&s).await;
    let r = a.post("/api/auth/signup", json!({"email": "eve@example.com", "password": USER_PW}));
    let body = r.await.ok(201);
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_user_shape(&body["user"], "eve@example.com", "user");
    let r = a.post("/api/auth/signup", json!({"email": "EVE@example.com", "password": USER_PW}));
    r.await.err(409, "email_taken");
    // Addresses that read like someone else's: an invisible character, a look-alike letter.
    for email in ["eve@example.com\u{200B}", "\u{0435}ve@example.com", "ev\u{200D}e@example.com"] {
        let r = a.post("/api/auth/signup", json!({"email": email, "password": USER_PW}));
        r.await.err(400, "invalid_request");
    }

    let eve = logged_in(&s, "eve@example.com", USER_PW).await;
    assert_eq!(eve.get("/api/auth/me").await.ok(200)["user"]["role"], "user");
    eve.get("/api/admin/users").await.err(403, "forbidden");
}

#[tokio::test]
async fn admin_manages_users_and_account_changes_end_their_sessions_at_once() {
    let s = start(&[]);
    setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let bob = create_user(&admin, "bob@example.com", "user").await;
    let body = json!({"email": "Bob@Example.com", "password": USER_PW, "role": "user"});
    admin.post("/api/admin/users", body).await.err(409, "email_taken");
    let list = admin.get("/api/admin/users").await.ok(200);
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 2, "{list}");
    let listed = users.iter().find(|u| u["id"] == bob.as_str()).unwrap();
    assert_user_shape(listed, "bob@example.com", "user");

    let b1 = logged_in(&s, "bob@example.com", USER_PW).await;
    let b2 = logged_in(&s, "bob@example.com", USER_PW).await;
    let sessions = admin.get(&format!("/api/admin/users/{bob}/sessions")).await.ok(200);
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2, "{sessions}");
    b1.get("/api/admin/users").await.err(403, "forbidden");

    // Bad patches change nothing.
    let path = format!("/api/admin/users/{bob}");
    admin.patch(&path, json!({"role": "superuser"})).await.err(400, "invalid_request");
    admin.patch(&path, json!({"email": "x@example.com"})).await.err(400, "invalid_request");
    b1.get("/api/auth/me").await.ok(200);

    // A role change ends every session of the user at once.
    let r = admin.patch(&path, json!({"role": "admin"})).await;
    assert_eq!(r.ok(200)["user"]["role"], "admin");
    b1.get("/api/auth/me").await.err(401, "unauthenticated");
    b2.get("/api/auth/me").await.err(401, "unauthenticated");
    let b3 = logged_in(&s, "bob@example.com", USER_PW).await;
    b3.get("/api/admin/users").await.ok(200);
    // Setting the same role again ends sessions too: a retry after a failed session revocation
    // (the role already written) must not leave sessions with the old role behind.
    let again = logged_in(&s, "bob@example.com", USER_PW).await;
    admin.patch(&path, json!({"role": "admin"})).await.ok(200);
    again.get("/api/auth/me").await.err(401, "unauthenticated");
    b3.get("/api/auth/me").await.err(401, "unauthenticated");
    let b3 = logged_in(&s, "bob@example.com", USER_PW).await;

    // So does disabling; a disabled account cannot log in.
    let r = admin.patch(&path, json!({"disabled": true})).await;
    let user = r.ok(200)["user"].clone();
    assert_eq!((user["disabled"].clone(), user["role"].clone()), (json!(true), json!("admin")));
    b3.get("/api/auth/me").await.err(401, "unauthenticated");
    Agent::new(&s).login("bob@example.com", USER_PW).await.err(401, "invalid_credentials");
    assert_eq!(
        admin.patch(&path, json!({"disabled": false})).await.ok(200)["user"]["disabled"],
        false
    );

    // Revoking a user's sessions as admin.
    let b4 = logged_in(&s, "bob@example.com", USER_PW).await;
    let r = admin.delete(&format!("/api/admin/users/{bob}/sessions")).await;
    assert_eq!(r.ok(200), json!({"revoked": 1}));
    b4.get("/api/auth/me").await.err(401, "unauthenticated");

    // Deleting ends the account and its sessions.
    let b5 = logged_in(&s, "bob@example.com", USER_PW).await;
    assert_eq!(admin.delete(&path).await.ok(204), Value::Null);
    b5.get("/api/auth/me").await.err(401, "unauthenticated");
    Agent::new(&s).login("bob@example.com", USER_PW).await.err(401, "invalid_credentials");
    admin.delete(&path).await.err(404, "not_found");
    admin.patch(&path, json!({"disabled": true})).await.err(404, "not_found");
    admin.get(&format!("{path}/sessions")).await.err(404, "not_found");
    admin.delete(&format!("{path}/sessions")).await.err(404, "not_found");
    admin.get("/api/admin/users/u_doesnotexist/sessions").await.err(404, "not_found");
    let list = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(list["users"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    let s = start(&[]);
    let me = setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let path = format!("/api/admin/users/{}", me["id"].as_str().unwrap());
    admin.patch(&path, json!({"role": "user"})).await.err(409, "last_admin");
    admin.patch(&path, json!({"disabled": true})).await.err(409, "last_admin");
    admin.delete(&path).await.err(409, "last_admin");

    // A second admin makes it possible; disabling that one makes this the last again.
    let other = create_user(&admin, "deputy@example.com", "admin").await;
    let other_path = format!("/api/admin/users/{other}");
    admin.patch(&other_path, json!({"disabled": true})).await.ok(200);
    admin.patch(&path, json!({"role": "user"})).await.err(409, "last_admin");
    admin.delete(&path).await.err(409, "last_admin");
    // Once the other admin is active again, this one may step down.
    admin.patch(&other_path, json!({"disabled": false})).await.ok(200);
    let r = admin.patch(&path, json!({"role": "user"})).await;
    assert_eq!(r.ok(200)["user"]["role"], "user");
    // Our own session ended with the role change.
    admin.get("/api/auth/me").await.err(401, "unauthenticated");
    let deputy = logged_in(&s, "deputy@example.com", USER_PW).await;
    let list = deputy.get("/api/admin/users").await.ok(200);
    let roles: Vec<&Value> = list["users"].as_array().unwrap().iter().map(|u| &u["role"]).collect();
    assert_eq!(roles.iter().filter(|r| **r == "admin").count(), 1, "{list}");
    deputy.delete(&format!("/api/admin/users/{other}")).await.err(409, "last_admin");
}

/// Sends a request authenticated by an API key.
async fn with_key(s: &Server, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut b = bare_client().request(method, s.url(path)).bearer_auth(key);
    if let Some(body) = body {
        b = b.json(&body);
    }
    Resp::read(b.send().await.unwrap()).await
}

/// Ids of the active admins, as `key`'s owner sees them.
async fn active_admins(s: &Server, key: &str) -> Vec<String> {
    let list = with_key(s, key, Method::GET, "/api/admin/users", None).await.ok(200);
    let users = list["users"].as_array().unwrap();
    users
        .iter()
        .filter(|u| u["role"] == "admin" && u["disabled"] == false)
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two admins, each with their own API key, remove each other at the same moment (every pair
/// of demote / disable / delete, twice): exactly one request succeeds and one active admin
/// remains. The other is refused as the last admin, or, when the winner's change landed before
/// it was even authenticated, refused as a caller without admin rights (never a success).
async fn admins_removing_each_other_leave_one_admin(s: &Server) {
    let me = setup_admin(s).await;
    let root = logged_in(s, ADMIN, ADMIN_PW).await;
    let key_of = |r: Resp| r.ok(201)["key"].as_str().unwrap().to_owned();
    let mut a = (
        me["id"].as_str().unwrap().to_owned(),
        key_of(root.post("/api/keys", json!({"name": "a"})).await),
    );
    let ops = [
        (Method::PATCH, Some(json!({"role": "user"}))),
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::DELETE, None),
    ];
    let mut last_admin_refusals = 0;
    for round in 0..18 {
        // A second admin, with a key of its own.
        let email = format!("deputy{round}@example.com");
        let body = json!({"email": email, "password": USER_PW, "role": "admin"});
        let r = with_key(s, &a.1, Method::POST, "/api/admin/users", Some(body)).await;
        let b_id = r.ok(201)["user"]["id"].as_str().unwrap().to_owned();
        let deputy = logged_in(s, &email, USER_PW).await;
        let b = (b_id, key_of(deputy.post("/api/keys", json!({"name": "b"})).await));
        assert_eq!(active_admins(s, &a.1).await.len(), 2);

        let (op_a, op_b) = (&ops[round % 3], &ops[(round / 3) % 3]);
        let (to_b, to_a) =
            (format!("/api/admin/users/{}", b.0), format!("/api/admin/users/{}", a.0));
        let (by_a, by_b) = tokio::join!(
            with_key(s, &a.1, op_a.0.clone(), &to_b, op_a.1.clone()),
            with_key(s, &b.1, op_b.0.clone(), &to_a, op_b.1.clone()),
        );
        let ctx =
            format!("round {round}: {} {} / {} {}", by_a.status, by_a.text, by_b.status, by_b.text);
        let ok = |r: &Resp| (200..300).contains(&r.status);
        assert!(ok(&by_a) != ok(&by_b), "exactly one may succeed, {ctx}");
        let (winner, loser) = if ok(&by_a) { (a, by_b) } else { (b, by_a) };
        match loser.status {
            409 => {
                loser.err(409, "last_admin");
                last_admin_refusals += 1;
            }
            401 | 403 => {}
            _ => panic!("unexpected refusal, {ctx}"),
        }
        assert_eq!(active_admins(s, &winner.1).await, std::slice::from_ref(&winner.0), "{ctx}");
        a = winner;
    }
    assert!(last_admin_refusals > 0, "no round raced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_removing_each_other_concurrently_leave_one_admin_on_sqlite() {
    let s = start(&[("RAMPART_SECRET_KEY", KEY)]);
    admins_removing_each_other_leave_one_admin(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_removing_each_other_concurrently_leave_one_admin_on_postgres() {
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let s = start(&[("RAMPART_DATABASE_URL", pg.url.as_str()), ("RAMPART_SECRET_KEY", KEY)]);
    admins_removing_each_other_leave_one_admin(&s).await;
}

#[tokio::test]
async fn every_admin_route_needs_an_admin_and_refusals_are_audited() {
    let s = start(&[]);
    let me = setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let bob = create_user(&admin, "bob@example.com", "user").await;
    let me_id = me["id"].as_str().unwrap();
    let user_body = json!({"email": "x@example.com", "password": USER_PW, "role": "admin"});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/admin/users".into(), None),
        (Method::POST, "/api/admin/users".into(), Some(user_body)),
        (Method::PATCH, format!("/api/admin/users/{bob}"), Some(json!({"role": "admin"}))),
        (Method::DELETE, format!("/api/admin/users/{me_id}"), None),
        (Method::GET, format!("/api/admin/users/{me_id}/sessions"), None),
        (Method::DELETE, format!("/api/admin/users/{me_id}/sessions"), None),
        (Method::GET, "/api/admin/audit".into(), None),
        (Method::GET, "/api/admin/audit/verify".into(), None),
        (Method::GET, "/api/admin/does-not-exist".into(), None),
        (Method::POST, "/api/admin/does-not-exist".into(), Some(json!({}))),
    ];
    let anon = Agent::new(&s);
    let user = logged_in(&s, "bob@example.com", USER_PW).await;
    for (m, path, body) in &routes {
        let r = anon.send(m.clone(), path, body.clone()).await;
        assert_eq!(r.status, 401, "{m} {path} anonymous: {r:?}");
        r.err(401, "unauthenticated");
        let r = user.send(m.clone(), path, body.clone()).await;
        assert_eq!(r.status, 403, "{m} {path} as user: {r:?}");
        r.err(403, "forbidden");
    }
    // Nothing happened: bob is still a user, the admin still has a session.
    user.get("/api/auth/me").await.ok(200);
    admin.get("/api/auth/me").await.ok(200);
    let list = admin.get("/api/admin/users").await.ok(200);
    assert_eq!(list["users"].as_array().unwrap().len(), 2, "{list}");

    // One access_denied event per refusal, naming the user and the method.
    let denied = audit_events(&admin, "access_denied").await;
    assert_eq!(denied.len(), routes.len(), "{denied:?}");
    for e in &denied {
        assert_eq!(e["actor"]["user_id"], bob.as_str(), "{e}");
        assert_eq!(e["outcome"], "denied", "{e}");
    }
    for m in [Method::GET, Method::POST, Method::PATCH, Method::DELETE] {
        let want = routes.iter().filter(|(rm, _, _)| *rm == m).count();
        let got = denied.iter().filter(|e| e["details"]["method"] == m.as_str()).count();
        assert_eq!(got, want, "{m}: {denied:?}");
    }
    // Admins reach the unknown path and get a plain 404.
    admin.get("/api/admin/does-not-exist").await.err(404, "not_found");
}

#[tokio::test]
async fn access_denied_events_record_the_full_request_path() {
    let s = start(&[]);
    setup_admin(&s).await;
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    create_user(&admin, "bob@example.com", "user").await;
    let bob = logged_in(&s, "bob@example.com", USER_PW).await;
    for path in ["/api/admin/users", "/api/admin/does-not-exist"] {
        bob.get(path).await.err(403, "forbidden");
    }
    let denied = audit_events(&admin, "access_denied").await;
    let mut paths: Vec<&str> =
        denied.iter().map(|e| e["details"]["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/api/admin/does-not-exist", "/api/admin/users"]);
}

#[track_caller]
fn retry_after(r: &Resp) -> u64 {
    r.err(429, "login_locked");
    let v = r.header("retry-after").unwrap_or_else(|| panic!("no Retry-After: {r:?}"));
    let secs: u64 = v.parse().unwrap_or_else(|_| panic!("Retry-After {v:?} is not an integer"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

/// Waits until a login for `email` is no longer refused as locked, then returns its answer.
async fn login_after_ban(s: &Server, email: &str, password: &str, wait: u64) -> Resp {
    tokio::time::sleep(Duration::from_secs(wait)).await;
    for _ in 0..40 {
        let r = Agent::new(s).login(email, password).await;
        if r.status != 429 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the ban on {email} never ended");
}

#[tokio::test]
async fn guesses_sent_at_once_get_no_more_verifications_than_the_failure_limit() {
    // Different client addresses, so the per-address lock stays out of the way.
    let s = start(&[("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32"), ("RAMPART_LOGIN_BAN", "60s")]);
    setup_admin(&s).await;
    let url = format!("{}/api/auth/login", s.base);
    let guesses = (0..24).map(|i| {
        let (url, origin) = (url.clone(), s.base.clone());
        tokio::spawn(async move {
            let r = bare_client()
                .post(url)
                .header("origin", origin)
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .json(&json!({"email": ADMIN, "password": format!("wrong-guess-{i}-xyz")}))
                .send()
                .await
                .unwrap();
            Resp::read(r).await
        })
    });
    let mut verified = 0;
    for guess in guesses.collect::<Vec<_>>() {
        let r = guess.await.unwrap();
        match r.status {
            401 => verified += 1,
            429 => assert_eq!(error_code(&r.json()), "login_locked", "{}", r.text),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    // Five (the default limit) are verified; every other guess is refused unchecked, even
    // though all of them passed the lock check before the first failure was recorded.
    assert_eq!(verified, 5);
    let r = Agent::new(&s).login(ADMIN, ADMIN_PW).await;
    assert!(retry_after(&r) > 0, "the account is banned");
}

#[tokio::test]
async fn repeated_failures_lock_an_account_even_against_the_right_password() {
    let s = start(&[("RAMPART_LOGIN_MAX_FAILURES", "3"), ("RAMPART_LOGIN_BAN", "2s")]);
    setup_admin(&s).await;
    for _ in 0..3 {
        Agent::new(&s).login(ADMIN, "wrong-password-123").await.err(401, "invalid_credentials");
    }
    let r = Agent::new(&s).login(ADMIN, ADMIN_PW).await;
    let wait = retry_after(&r);
    assert!(wait <= 2, "Retry-After {wait} is longer than the ban");
    assert!(r.header("set-cookie").is_none(), "{r:?}");

    let r = login_after_ban(&s, ADMIN, ADMIN_PW, wait).await;
    r.ok(200);
    // The success reset the count: two more failures, a success, two more, and still no ban.
    for _ in 0..2 {
        for _ in 0..2 {
            let r = Agent::new(&s).login(ADMIN, "wrong-password-123").await;
            r.err(401, "invalid_credentials");
        }
        Agent::new(&s).login(ADMIN, ADMIN_PW).await.ok(200);
    }

    // Unknown emails are counted and locked the same way.
    for _ in 0..3 {
        let r = Agent::new(&s).login("ghost@example.com", "wrong-password-123").await;
        r.err(401, "invalid_credentials");
    }
    retry_after(&Agent::new(&s).login("ghost@example.com", "wrong-password-123").await);
    retry_after(&Agent::new(&s).login("GHOST@example.com", "wrong-password-123").await);

    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    let failed = audit_events(&admin, "login_failed").await;
    assert_eq!(failed.len(), 10, "{failed:?}");
    assert!(failed.iter().all(|e| e["outcome"] == "failure"), "{failed:?}");
    let reasons: Vec<&str> =
        failed.iter().map(|e| e["details"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "unknown_email").count(), 3, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "bad_password").count(), 7, "{reasons:?}");
    let locked = audit_events(&admin, "login_locked").await;
    assert!(locked.len() >= 3, "{locked:?}");
    assert!(locked.iter().all(|e| e["outcome"] == "denied"), "{locked:?}");
}

/// A login through a trusted proxy on behalf of client address `ip`.
async fn login_from(s: &Server, ip: &str, email: &str, password: &str) -> Resp {
    let r = bare_client()
        .post(s.url("/api/auth/login"))
        .header("origin", &s.base)
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    Resp::read(r).await
}

#[tokio::test]
async fn a_client_address_spraying_failures_across_accounts_is_locked() {
    let s = start(&[
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "5"),
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32"),
    ]);
    setup_admin(&s).await;
    let spray_ip = "203.0.113.7";
    for i in 0..5 {
        let r = login_from(&s, spray_ip, &format!("target{i}@example.com"), "wrong-pw-123").await;
        r.err(401, "invalid_credentials");
    }
    // Any account, even with the right password, is refused from that address.
    retry_after(&login_from(&s, spray_ip, ADMIN, ADMIN_PW).await);
    retry_after(&login_from(&s, spray_ip, "target9@example.com", "wrong-pw-123").await);
    // Another address is unaffected.
    login_from(&s, "198.51.100.20", ADMIN, ADMIN_PW).await.ok(200);

    let mut admin = Agent::new(&s);
    let r = admin
        .req(Method::POST, "/api/auth/login")
        .header("x-forwarded-for", "198.51.100.20")
        .json(&json!({"email": ADMIN, "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    admin.csrf = Some(Resp::read(r).await.ok(200)["csrf_token"].as_str().unwrap().to_owned());
    let locked = audit_events(&admin, "login_locked").await;
    assert!(locked.iter().any(|e| e["ip"] == "203.0.113.7"), "{locked:?}");
    let failed = audit_events(&admin, "login_failed").await;
    assert_eq!(failed.iter().filter(|e| e["ip"] == "203.0.113.7").count(), 5, "{failed:?}");
}

#[tokio::test]
async fn an_address_lock_lasts_for_the_ip_window_not_the_ban_length() {
    let s = start(&[
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "3"),
        ("RAMPART_LOGIN_IP_WINDOW", "4s"),
        ("RAMPART_LOGIN_BAN", "60s"),
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32"),
    ]);
    setup_admin(&s).await;
    let spray_ip = "203.0.113.8";
    for i in 0..3 {
        let r = login_from(&s, spray_ip, &format!("target{i}@example.com"), "wrong-pw-123").await;
        r.err(401, "invalid_credentials");
    }
    let wait = retry_after(&login_from(&s, spray_ip, ADMIN, ADMIN_PW).await);
    assert!(wait <= 4, "Retry-After {wait}: the lock outlasts RAMPART_LOGIN_IP_WINDOW");
    // The lock ends with the window, although RAMPART_LOGIN_BAN is a minute.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    for _ in 0..40 {
        let r = login_from(&s, spray_ip, ADMIN, ADMIN_PW).await;
        if r.status != 429 {
            r.ok(200);
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the lock on {spray_ip} never ended");
}

/// Reads one user's stored password hash from the SQLite database in `dir`.
async fn stored_hash(dir: &std::path::Path, email: &str) -> String {
    let url = format!("sqlite://{}?mode=ro", dir.join("data/rampart.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = ?")
        .bind(email)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    hash
}

#[tokio::test]
async fn imported_bcrypt_and_sha256_hashes_are_upgraded_to_argon2id_at_login() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let bcrypt_pw = "legacy-bcrypt-secret-31";
    let sha_pw = "legacy-sha256-secret-47";
    let bcrypt_hash = bcrypt::hash(bcrypt_pw, 4).unwrap();
    let sha_hash = hex::encode(sha2::Sha256::digest(sha_pw.as_bytes()));
    let lines = [
        json!({"email": "old-b@example.com", "role": "admin", "password_hash": bcrypt_hash}),
        json!({"email": "old-s@example.com", "role": "user", "password_hash": sha_hash}),
    ];
    let file = dir.path().join("users.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let (code, out, err) =
        support::run(dir.path(), &["user", "import", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("imported 2 user(s), 0 failed"), "{out}");
    assert_eq!(stored_hash(dir.path(), "old-b@example.com").await, bcrypt_hash);
    assert_eq!(stored_hash(dir.path(), "old-s@example.com").await, sha_hash);

    let s = start_in(dir.path(), &[]);
    // Importing users completed setup.
    assert_eq!(Agent::new(&s).get("/api/setup").await.ok(200), json!({"needed": false}));
    for (email, pw, role, before) in [
        ("old-b@example.com", bcrypt_pw, "admin", &bcrypt_hash),
        ("old-s@example.com", sha_pw, "user", &sha_hash),
    ] {
        Agent::new(&s).login(email, "not-the-legacy-pw-1").await.err(401, "invalid_credentials");
        assert_eq!(&stored_hash(dir.path(), email).await, before, "a failed login changed it");
        // The SHA-256 digest itself is not a password.
        Agent::new(&s).login(email, before).await.err(401, "invalid_credentials");

        let r = Agent::new(&s).login(email, pw).await;
        assert_eq!(r.ok(200)["user"]["role"], role);
        let after = stored_hash(dir.path(), email).await;
        assert!(after.starts_with("$argon2id$"), "{email}: {after}");
        Agent::new(&s).login(email, pw).await.ok(200);
        Agent::new(&s).login(email, "not-the-legacy-pw-1").await.err(401, "invalid_credentials");
        assert_eq!(stored_hash(dir.path(), email).await, after);
    }
}

#[test]
fn import_reports_bad_lines_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = bcrypt::hash("legacy-bcrypt-secret-31", 4).unwrap();
    let text = [
        json!({"email": "ok@example.com", "role": "user", "password_hash": good}).to_string(),
        json!({"email": "md5@example.com", "role": "user", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99"}).to_string(),
        json!({"email": "ok@example.com", "role": "user", "password_hash": good}).to_string(),
        json!({"email": "r@example.com", "role": "root", "password_hash": good}).to_string(),
        "{not json".to_owned(),
    ]
    .join("\n");
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) =
        support::run(dir.path(), &["user", "import", file.to_str().unwrap()], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("imported 1 user(s), 4 failed"), "{out}");
    assert!(err.contains("line 2: unknown password hash format"), "{err}");
    assert!(err.contains("line 3: ok@example.com already exists"), "{err}");
    assert!(err.contains("line 4:") && err.contains("line 5:"), "{err}");
    assert!(!err.contains(&good), "a hash was echoed: {err}");
}

/// Runs `rampart user add … --password-stdin` with `password` on stdin.
fn user_add_stdin(
    dir: &std::path::Path,
    email: &str,
    role: &str,
    password: &str,
) -> (i32, String, String) {
    use std::io::Write;
    let mut child = support::command(
        dir,
        &["user", "add", "--email", email, "--role", role, "--password-stdin"],
        &[],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn cli_user_commands_add_set_role_and_disable_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, err) =
        support::run(d, &["user", "add", "--email", "ops@example.com", "--role", "admin"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ops@example.com, admin"), "{out}");
    let marker = "generated password (shown once): ";
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix(marker))
        .unwrap_or_else(|| panic!("no generated password: {out}"))
        .trim()
        .to_owned();
    assert!(generated.len() >= 16, "{generated}");
    assert_eq!(out.matches(&generated).count(), 1, "{out}");
    assert!(!err.contains(&generated), "the password reached the log: {err}");

    let stdin_pw = "piped-in-passphrase-2024";
    for email in ["carol@example.com", "dave@example.com"] {
        let (code, out, err) = user_add_stdin(d, email, "user", stdin_pw);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(!out.contains("generated password") && !out.contains(stdin_pw), "{out}");
    }
    // The policy applies to the CLI too, and a refusal creates nobody.
    let (code, _, err) = user_add_stdin(d, "dan@example.com", "user", "short");
    assert_ne!(code, 0);
    assert!(err.contains("too short"), "{err}");
    let (code, _, err) =
        support::run(d, &["user", "add", "--email", "dan@example.com", "--role", "owner"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("role"), "{err}");

    let args = ["user", "set-role", "--email", "carol@example.com", "--role", "admin"];
    let (code, out, err) = support::run(d, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("role admin"), "{out}");
    let (code, out, err) =
        support::run(d, &["user", "disable", "--email", "dave@example.com"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("disabled true"), "{out}");
    let (code, _, err) =
        support::run(d, &["user", "disable", "--email", "nobody@example.com"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no user"), "{err}");

    let s = start_in(d, &[]);
    assert_eq!(Agent::new(&s).get("/api/setup").await.ok(200), json!({"needed": false}));
    let ops = logged_in(&s, "ops@example.com", &generated).await;
    let list = ops.get("/api/admin/users").await.ok(200);
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{list}");
    let dave = users.iter().find(|u| u["email"] == "dave@example.com").unwrap();
    assert_eq!((&dave["disabled"], &dave["role"]), (&json!(true), &json!("user")), "{list}");
    let carol = logged_in(&s, "carol@example.com", stdin_pw).await;
    assert_eq!(carol.get("/api/auth/me").await.ok(200)["user"]["role"], "admin");
    carol.get("/api/admin/users").await.ok(200);
    Agent::new(&s).login("dave@example.com", stdin_pw).await.err(401, "invalid_credentials");
    Agent::new(&s).login("dan@example.com", "short").await.err(401, "invalid_credentials");
}

#[tokio::test]
async fn cli_user_commands_while_the_server_runs_leave_it_working() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = "piped-in-passphrase-2024";
    for (email, role) in [("ops@example.com", "admin"), ("carol@example.com", "user")] {
        let (code, out, err) = user_add_stdin(d, email, role, pw);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let s = start_in(d, &[]);
    logged_in(&s, "carol@example.com", pw).await;

    let args = ["user", "set-role", "--email", "carol@example.com", "--role", "admin"];
    let (code, out, err) = support::run(d, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = support::run(d, &["user", "disable", "--email", "ops@example.com"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Every audited request keeps working, and the changes are in effect.
    let carol = logged_in(&s, "carol@example.com", pw).await;
    assert_eq!(carol.get("/api/auth/me").await.ok(200)["user"]["role"], "admin");
    Agent::new(&s).login("ops@example.com", pw).await.err(401, "invalid_credentials");
    let verify = carol.get("/api/admin/audit/verify").await.ok(200);
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn a_command_line_change_ends_in_memory_sessions_within_one_touch_interval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = "piped-in-passphrase-2024";
    for (email, role) in [("ops@example.com", "admin"), ("carol@example.com", "user")] {
        let (code, out, err) = user_add_stdin(d, email, role, pw);
        assert_eq!(
            code, 0,
            "{out}
{err}"
        );
    }
    // In-memory sessions: the command line cannot reach them.
    let s = start_in(
        d,
        &[("RAMPART_SESSION_STORE", "memory"), ("RAMPART_SESSION_TOUCH_INTERVAL", "1s")],
    );
    let ops = logged_in(&s, "ops@example.com", pw).await;
    let carol = logged_in(&s, "carol@example.com", pw).await;
    let untouched = logged_in(&s, "carol@example.com", pw).await;
    let (code, out, err) = support::run(d, &["user", "disable", "--email", "ops@example.com"], &[]);
    assert_eq!(
        code, 0,
        "{out}
{err}"
    );
    let args = ["user", "set-role", "--email", "carol@example.com", "--role", "admin"];
    let (code, out, err) = support::run(d, &args, &[]);
    assert_eq!(
        code, 0,
        "{out}
{err}"
    );
    // Once the interval has passed, the next request reads the account again and the session
    // ends.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ops.get("/api/auth/me").await.err(401, "unauthenticated");
    carol.get("/api/auth/me").await.err(401, "unauthenticated");
    // A new login carries the new role.
    let carol = logged_in(&s, "carol@example.com", pw).await;
    assert_eq!(carol.get("/api/auth/me").await.ok(200)["user"]["role"], "admin");
    untouched.get("/api/auth/me").await.err(401, "unauthenticated");
}

#[tokio::test]
async fn identity_is_never_taken_from_request_headers_or_body() {
    let s = start(&[]);
    let me = setup_admin(&s).await;
    let admin_id = me["id"].as_str().unwrap().to_owned();
    let spoof = [
        ("remote-user", ADMIN),
        ("x-remote-user", ADMIN),
        ("x-user-id", admin_id.as_str()),
        ("x-forwarded-user", ADMIN),
        ("x-forwarded-email", ADMIN),
        ("x-user-role", "admin"),
        ("authorization", "Basic cm9vdEBleGFtcGxlLmNvbTpjb3JyZWN0LWhvcnNlLWJhdHRlcnktc3RhcGxlLTQy"),
    ];
    let anon = Agent::new(&s);
    for path in ["/api/auth/me", "/api/admin/users", "/api/auth/sessions", "/api/auth/csrf"] {
        let mut b = anon.req(Method::GET, path);
        for (k, v) in spoof {
            b = b.header(k, v);
        }
        Resp::read(b.send().await.unwrap()).await.err(401, "unauthenticated");
    }
    let mut b = anon
        .req(Method::POST, "/api/auth/password")
        .json(&json!({"user_id": admin_id, "current_password": ADMIN_PW, "new_password": USER_PW}));
    for (k, v) in spoof {
        b = b.header(k, v);
    }
    let r = Resp::read(b.send().await.unwrap()).await;
    r.err(401, "unauthenticated");

    // A plain user's session stays a plain user whatever the request claims.
    let admin = logged_in(&s, ADMIN, ADMIN_PW).await;
    create_user(&admin, "bob@example.com", "user").await;
    let bob = logged_in(&s, "bob@example.com", USER_PW).await;
    let mut b = bob.req(Method::GET, "/api/admin/users");
    for (k, v) in spoof {
        if k != "authorization" {
            b = b.header(k, v);
        }
    }
    Resp::read(b.send().await.unwrap()).await.err(403, "forbidden");
    let r = bob
        .post(
            "/api/auth/password",
            json!({"user_id": admin_id, "current_password": USER_PW, "new_password": "x-new-pass-1234-abc"}),
        )
        .await;
    r.err(400, "invalid_request");
    let path = format!("/api/admin/users/{admin_id}");
    bob.patch(&path, json!({"user_id": admin_id})).await.err(403, "forbidden");
    // Neither password changed.
    Agent::new(&s).login(ADMIN, ADMIN_PW).await.ok(200);
    Agent::new(&s).login("bob@example.com", USER_PW).await.ok(200);
    assert_eq!(bob.get("/api/auth/me").await.ok(200)["user"]["email"], "bob@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_demotion_or_a_disable_never_keeps_the_old_rights() {
    // Logins refused for a disabled account count as failures: no lockout in this test.
    let s =
        start(&[("RAMPART_LOGIN_MAX_FAILURES", "1000"), ("RAMPART_LOGIN_IP_MAX_FAILURES", "1000")]);
    setup_admin(&s).await;
    let root = logged_in(&s, ADMIN, ADMIN_PW).await;
    let email = "racer@example.com";
    let id = create_user(&root, email, "admin").await;
    let path = format!("/api/admin/users/{id}");
    let mut outcomes = BTreeMap::new();
    for trial in 0..12u64 {
        root.patch(&path, json!({"role": "admin", "disabled": false})).await.ok(200);
        let change =
            if trial % 2 == 0 { json!({"role": "user"}) } else { json!({"disabled": true}) };
        let mut racer = Agent::new(&s);
        // The change lands while the password is being checked, or just after.
        let change_later = async {
            tokio::time::sleep(Duration::from_millis(trial / 2 * 4)).await;
            root.patch(&path, change).await
        };
        let (login, changed) = tokio::join!(racer.login(email, USER_PW), change_later);
        changed.ok(200);
        *outcomes.entry(login.status).or_insert(0) += 1;
        match login.status {
            // A session that outlived the change must not act as an admin.
            200 => {
                let r = racer.get("/api/admin/users").await;
                assert!(
                    r.status == 401 || r.status == 403,
                    "trial {trial}: the session of a login that raced the change kept its rights: {r:?}"
                );
            }
            // Too late to log in as before: refused, or told to sign in again.
            401 => assert_eq!(error_code(&login.json()), "invalid_credentials"),
            409 => assert_eq!(error_code(&login.json()), "account_changed"),
            other => panic!("trial {trial}: login answered {other}: {login:?}"),
        }
    }
    assert_eq!(outcomes.values().sum::<i32>(), 12, "{outcomes:?}");
}
