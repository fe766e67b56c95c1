//! API keys, the token vault (encryption at rest, single-flight refresh, rotation) and
//! pseudonymization, black-box over real sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{error_code, run, Server, KEY};

const PW: &str = "correct-horse-battery-staple-42";
const ADMIN: &str = "admin@example.test";
const USER: &str = "user@example.test";
const ORIGIN: &str = "http://rampart.test";
const CLIENT_SECRET: &str = "client-secret-7d1f0c";
/// A second master key for rotation tests.
const KEY_B: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("RAMPART_RATE_LIMIT", "100000/1s"),
        ("RAMPART_PUBLIC_ORIGIN", ORIGIN),
        ("RAMPART_SECRET_KEY", KEY),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        if !v.is_empty() {
            env.push((k, v));
        }
    }
    env
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Session(&'a Login),
    Key(&'a str),
}

#[derive(Debug, Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

struct Api {
    base: String,
    http: reqwest::Client,
}

/// A client without a cookie store (cookies are sent explicitly).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Api {
    fn new(s: &Server) -> Self {
        Self { base: s.base.clone(), http: http_client() }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb =
            self.http.request(method, format!("{}{path}", self.base)).header("origin", ORIGIN);
        match who {
            As::Nobody => {}
            As::Session(l) => {
                rb = rb
                    .header("cookie", format!("rampart_session={}", l.cookie))
                    .header("x-csrf-token", &l.csrf);
            }
            As::Key(k) => rb = rb.bearer_auth(k),
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    async fn get(&self, path: &str, who: As<'_>) -> reqwest::Response {
        self.send(Method::GET, path, who, None).await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.send(method, path, who, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn login(&self, email: &str) -> Login {
        let r = self
            .send(
                Method::POST,
                "/api/auth/login",
                As::Nobody,
                Some(json!({"email": email, "password": PW})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.strip_prefix("rampart_session="))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .find(|v| !v.is_empty())
            .unwrap();
        let body: Value = r.json().await.unwrap();
        Login { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
    }

    /// First-user setup, a plain user; returns (admin, user) sessions.
    async fn setup(&self) -> (Login, Login) {
        let body = json!({"email": ADMIN, "password": PW});
        let (st, _) = self.json(Method::POST, "/api/setup", As::Nobody, Some(body)).await;
        assert_eq!(st, StatusCode::CREATED);
        let admin = self.login(ADMIN).await;
        let body = json!({"email": USER, "password": PW, "role": "user"});
        let (st, _) =
            self.json(Method::POST, "/api/admin/users", As::Session(&admin), Some(body)).await;
        assert_eq!(st, StatusCode::CREATED);
        let user = self.login(USER).await;
        (admin, user)
    }

    async fn new_key(&self, who: As<'_>, name: &str) -> Value {
        let (st, body) =
            self.json(Method::POST, "/api/keys", who, Some(json!({"name": name}))).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        body
    }

    async fn user_id(&self, admin: &Login, email: &str) -> String {
        let (_, body) = self.json(Method::GET, "/api/admin/users", As::Session(admin), None).await;
        let users = body["users"].as_array().unwrap();
        users.iter().find(|u| u["email"] == email).unwrap()["id"].as_str().unwrap().to_owned()
    }

    async fn audit(&self, admin: &Login, kind: &str) -> Vec<Value> {
        let path = format!("/api/admin/audit?event={kind}&limit=1000");
        let (st, body) = self.json(Method::GET, &path, As::Session(admin), None).await;
        assert_eq!(st, StatusCode::OK);
        body["events"].as_array().unwrap().clone()
    }

    async fn put(&self, path: &str, who: As<'_>, body: Value) -> (u16, String) {
        self.status(Method::PUT, path, who, Some(body)).await
    }

    async fn status(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<Value>,
    ) -> (u16, String) {
        let (st, body) = self.json(method, path, who, body).await;
        let code = if st.is_success() { String::new() } else { error_code(&body) };
        (st.as_u16(), code)
    }
}

async fn sqlite(s_dir: &std::path::Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}/data/rampart.db", s_dir.display());
    sqlx::SqlitePool::connect(&url).await.unwrap()
}

#[tokio::test]
async fn api_keys_are_shown_once_act_with_the_creators_current_role_and_are_audited() {
    let s = Server::start(&env(&[]));
    let api = Api::new(&s);
    assert_eq!(
        api.status(Method::GET, "/api/keys", As::Nobody, None).await,
        (401, "unauthenticated".into())
    );
    let (admin, user) = api.setup().await;

    let r =
        api.send(Method::POST, "/api/keys", As::Session(&user), Some(json!({"name": "ci"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created: Value = r.json().await.unwrap();
    let user_key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(user_key.starts_with(&format!("rk_{id}_")) && user_key.len() == 3 + 16 + 1 + 43);
    assert_eq!(created["prefix"], format!("rk_{id}"));
    assert_eq!(created["created_by"], api.user_id(&admin, USER).await);

    // Listed for every caller, never with the secret.
    let r = api.get("/api/keys", As::Session(&admin)).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains(&user_key[20..]), "the secret is shown only once: {text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    let k = &listed["keys"][0];
    assert_eq!((k["id"].as_str(), k["name"].as_str()), (Some(id.as_str()), Some("ci")));
    for field in ["prefix", "created_by", "created_at", "expires_at", "last_used_at"] {
        assert!(k.get(field).is_some(), "{field}: {k}");
    }
    assert!(k.get("key").is_none() && k.get("key_hash").is_none());

    // The key authenticates any API request, without CSRF tokens, with the user's role.
    let (st, _) = api.json(Method::GET, "/api/keys", As::Key(&user_key), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(api.status(Method::GET, "/api/admin/users", As::Key(&user_key), None).await.0, 403);
    let second = api.new_key(As::Key(&user_key), "made-by-a-key").await;
    assert_eq!(second["created_by"], created["created_by"]);
    let (_, listed) = api.json(Method::GET, "/api/keys", As::Key(&user_key), None).await;
    assert!(listed["keys"][0]["last_used_at"].is_string(), "use is recorded: {listed}");

    // The role is the creator's current one: promote, then demote, then disable.
    let uid = api.user_id(&admin, USER).await;
    let user_path = format!("/api/admin/users/{uid}");
    let patch = |b: Value| api.status(Method::PATCH, &user_path, As::Session(&admin), Some(b));
    assert_eq!(patch(json!({"role": "admin"})).await.0, 200);
    assert_eq!(api.status(Method::GET, "/api/admin/users", As::Key(&user_key), None).await.0, 200);
    assert_eq!(patch(json!({"role": "user"})).await.0, 200);
    assert_eq!(api.status(Method::GET, "/api/admin/users", As::Key(&user_key), None).await.0, 403);
    assert_eq!(patch(json!({"disabled": true})).await.0, 200);
    assert_eq!(
        api.status(Method::GET, "/api/keys", As::Key(&user_key), None).await,
        (401, "invalid_api_key".into())
    );
    assert_eq!(patch(json!({"disabled": false})).await.0, 200);
    assert_eq!(api.status(Method::GET, "/api/keys", As::Key(&user_key), None).await.0, 200);

    // Malformed, unknown, wrong-secret and expired keys are refused; no fall-back to the cookie.
    let wrong_secret = format!("rk_{id}_{}", "A".repeat(43));
    let unknown_id = format!("rk_{}{}", "0".repeat(16), &user_key[3 + 16..]);
    let admin_key =
        api.new_key(As::Session(&admin), "ops").await["key"].as_str().unwrap().to_owned();
    let pool = sqlite(&s.dir).await;
    let expired = api.new_key(As::Session(&admin), "old").await;
    sqlx::query("UPDATE api_keys SET expires_at = 1 WHERE id = $1")
        .bind(expired["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    for bad in ["rk_nope", &wrong_secret, &unknown_id, expired["key"].as_str().unwrap()] {
        let r = api
            .http
            .get(format!("{}/api/keys", s.base))
            .bearer_auth(bad)
            .header("cookie", format!("rampart_session={}", admin.cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(r.headers().contains_key("www-authenticate"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "invalid_api_key", "{bad}");
    }
    // A key is no cookie, and a session id is no key.
    let r = api
        .get("/api/keys", As::Session(&Login { cookie: admin_key.clone(), csrf: String::new() }))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .get(format!("{}/api/keys", s.base))
        .bearer_auth(&admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&r.json().await.unwrap()), "unauthenticated");
    assert_eq!(api.status(Method::GET, "/api/admin/users", As::Key(&admin_key), None).await.0, 200);

    // Delete: 204, then 404; the deleted key stops working at once.
    let path = format!("/api/keys/{id}");
    assert_eq!(api.status(Method::DELETE, &path, As::Key(&admin_key), None).await.0, 204);
    assert_eq!(
        api.status(Method::DELETE, &path, As::Key(&admin_key), None).await,
        (404, "not_found".into())
    );
    assert_eq!(api.status(Method::GET, "/api/keys", As::Key(&user_key), None).await.0, 401);
    assert_eq!(api.status(Method::DELETE, "/api/keys/x", As::Nobody, None).await.0, 401);
    let (st, _) =
        api.json(Method::POST, "/api/keys", As::Key(&admin_key), Some(json!({"name": ""}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = api
        .json(
            Method::POST,
            "/api/keys",
            As::Key(&admin_key),
            Some(json!({"name": "x", "expires_in_days": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Audited with who did it and the key id; the database holds no key.
    let ev = api.audit(&admin, "api_key_created").await;
    let mine = ev.iter().find(|e| e["resource"]["id"] == id.as_str()).unwrap();
    assert_eq!(mine["resource"]["type"], "api_key");
    assert_eq!(mine["actor"]["user_id"], uid.as_str());
    let ev = api.audit(&admin, "api_key_deleted").await;
    assert!(ev
        .iter()
        .any(|e| e["resource"]["id"] == id.as_str() && e["details"]["credential"].is_string()));
    assert!(!api.audit(&admin, "api_key_auth_failed").await.is_empty());
    let hashes: Vec<(String,)> =
        sqlx::query_as("SELECT key_hash FROM api_keys").fetch_all(&pool).await.unwrap();
    assert!(hashes.iter().all(|(h,)| h.len() == 64 && !admin_key.contains(h.as_str())));
}

/// A token endpoint that counts calls and answers per path: `/token` refreshes (after
/// `delay`), `/fail` answers 500, `/deny` answers 400 `invalid_grant`.
#[derive(Clone, Default)]
struct TokenEndpoint {
    calls: Arc<AtomicUsize>,
    fails: Arc<AtomicUsize>,
    denies: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl TokenEndpoint {
    async fn start(delay: Duration) -> (Self, String) {
        use axum::routing::post;
        let ep = Self::default();
        let (a, b, c, seen) =
            (ep.calls.clone(), ep.fails.clone(), ep.denies.clone(), ep.seen.clone());
        let app = axum::Router::new()
            .route(
                "/token",
                post(move |headers: axum::http::HeaderMap, body: String| {
                    let (a, seen) = (a.clone(), seen.clone());
                    async move {
                        let n = a.fetch_add(1, Ordering::SeqCst) + 1;
                        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                        seen.lock().unwrap().push((auth.unwrap_or_default(), body));
                        tokio::time::sleep(delay).await;
                        axum::Json(json!({"access_token": format!("new-access-{n}"), "token_type": "Bearer", "expires_in": 3600, "refresh_token": format!("new-refresh-{n}")}))
                    }
                }),
            )
            .route(
                "/fail",
                post(move || {
                    let b = b.clone();
                    async move {
                        b.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                    }
                }),
            )
            .route(
                "/deny",
                post(move || {
                    let c = c.clone();
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"})))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (ep, base)
    }
}

/// A config file with providers `good` (basic auth), `post` (credentials in the body),
/// `broken` (500s) and `denied` (400s), and the client secret in a file.
fn vault_config(dir: &std::path::Path, endpoint: &str) -> String {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let secret = secret.display();
    let mut toml =
        "[vault]\nrefresh_attempts = 3\nrefresh_backoff = \"10ms\"\nrefresh_timeout = \"5s\"\n"
            .to_owned();
    for (name, path, auth) in [
        ("good", "token", "basic"),
        ("post", "token", "post"),
        ("broken", "fail", "basic"),
        ("denied", "deny", "basic"),
    ] {
        toml.push_str(&format!(
            "[vault.providers.{name}]\ntoken_endpoint = \"{endpoint}/{path}\"\nclient_id = \"client-id\"\nclient_secret_file = \"{secret}\"\nclient_auth = \"{auth}\"\n"
        ));
    }
    let path = dir.join("rampart.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

fn tokens(access: &str, refresh: &str, expires_at: &str) -> Value {
    json!({"access_token": access, "refresh_token": refresh, "expires_at": expires_at})
}

const EXPIRED: &str = "2001-01-01T00:00:00Z";
const LATER: &str = "2999-01-01T00:00:00Z";

#[tokio::test]
async fn the_vault_stores_encrypted_refreshes_when_expired_and_reports_refresh_failures() {
    let (ep, endpoint) = TokenEndpoint::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vault_config(dir.path(), &endpoint);
    let s = Server::start_in(dir.path(), &env(&[("RAMPART_CONFIG", &config)]), &[]);
    let api = Api::new(&s);
    let (admin, user) = api.setup().await;
    let me = As::Session(&user);

    assert_eq!(api.put("/api/vault/good", As::Nobody, tokens("a", "r", LATER)).await.0, 401);
    assert_eq!(
        api.put("/api/vault/nope", me, tokens("a", "r", LATER)).await,
        (404, "not_found".into())
    );
    assert_eq!(api.status(Method::GET, "/api/vault/nope/token", me, None).await.0, 404);
    assert_eq!(api.status(Method::DELETE, "/api/vault/nope", me, None).await.0, 404);
    assert_eq!(
        api.status(Method::GET, "/api/vault/good/token", me, None).await.0,
        404,
        "nothing stored"
    );
    let mut elsewhere = tokens("a", "r", LATER);
    elsewhere["token_endpoint"] = json!("https://attacker.example/token");
    assert_eq!(api.put("/api/vault/good", me, elsewhere).await, (400, "invalid_request".into()));
    assert_eq!(api.put("/api/vault/good", me, json!({"access_token": ""})).await.0, 400);

    // A valid token is handed out as stored; the configured endpoint may be restated.
    let mut same = tokens("stored-access-93kd", "stored-refresh-55xq", LATER);
    same["token_endpoint"] = json!(format!("{endpoint}/token"));
    assert_eq!(api.put("/api/vault/good", me, same).await.0, 204);
    let r = api.get("/api/vault/good/token", me).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"access_token": "stored-access-93kd", "expires_at": "2999-01-01T00:00:00Z"})
    );
    assert_eq!(ep.calls.load(Ordering::SeqCst), 0);

    // Encrypted at rest: neither token appears in the database files.
    let pool = sqlite(&s.dir).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    for f in ["rampart.db", "rampart.db-wal"] {
        let bytes = std::fs::read(s.dir.join("data").join(f)).unwrap_or_default();
        for secret in ["stored-access-93kd", "stored-refresh-55xq"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {f}"
            );
        }
    }

    // Expired: refreshed once through the endpoint (basic auth, form body), then served fresh.
    assert_eq!(
        api.put("/api/vault/good", me, tokens("old-access", "old-refresh", EXPIRED)).await.0,
        204
    );
    let (st, body) = api.json(Method::GET, "/api/vault/good/token", me, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], "new-access-1");
    let (_, again) = api.json(Method::GET, "/api/vault/good/token", me, None).await;
    assert_eq!(again["access_token"], "new-access-1");
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);
    {
        use base64::Engine as _;
        let (auth, form) = ep.seen.lock().unwrap()[0].clone();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("client-id:{CLIENT_SECRET}"));
        assert_eq!(auth, format!("Basic {basic}"));
        assert_eq!(form, "grant_type=refresh_token&refresh_token=old-refresh");
    }
    // Client credentials in the body for `client_auth = "post"`; the rotated refresh token is kept.
    assert_eq!(api.put("/api/vault/post", me, tokens("a", "r-post", EXPIRED)).await.0, 204);
    assert_eq!(api.status(Method::GET, "/api/vault/post/token", me, None).await.0, 200);
    let (auth, form) = ep.seen.lock().unwrap()[1].clone();
    assert_eq!(auth, "");
    assert_eq!(form, format!("grant_type=refresh_token&refresh_token=r-post&client_id=client-id&client_secret={CLIENT_SECRET}"));

    // Failures: 5xx is retried the configured 3 times, a refusal is final; both answer 502.
    assert_eq!(api.put("/api/vault/broken", me, tokens("a", "r", EXPIRED)).await.0, 204);
    let (st, code) = api.status(Method::GET, "/api/vault/broken/token", me, None).await;
    assert_eq!((st, code.as_str()), (502, "token_refresh_failed"));
    assert_eq!(ep.fails.load(Ordering::SeqCst), 3);
    assert_eq!(api.put("/api/vault/denied", me, tokens("a", "r", EXPIRED)).await.0, 204);
    assert_eq!(api.status(Method::GET, "/api/vault/denied/token", me, None).await.0, 502);
    assert_eq!(ep.denies.load(Ordering::SeqCst), 1);
    // Expired without a refresh token: nothing to refresh with.
    assert_eq!(
        api.put("/api/vault/good", me, json!({"access_token": "a", "expires_at": EXPIRED})).await.0,
        204
    );
    assert_eq!(api.status(Method::GET, "/api/vault/good/token", me, None).await.0, 502);

    // Tokens are per user; DELETE forgets them (204, also when nothing is stored).
    let other = As::Session(&admin);
    assert_eq!(api.status(Method::GET, "/api/vault/broken/token", other, None).await.0, 404);
    assert_eq!(api.status(Method::DELETE, "/api/vault/broken", me, None).await.0, 204);
    assert_eq!(api.status(Method::DELETE, "/api/vault/broken", me, None).await.0, 204);
    assert_eq!(api.status(Method::GET, "/api/vault/broken/token", me, None).await.0, 404);

    // Row binding: a ciphertext copied into another user's row does not decrypt there.
    assert_eq!(
        api.put("/api/vault/denied", other, tokens("admin-access", "r", LATER)).await.0,
        204
    );
    assert_eq!(
        api.put("/api/vault/denied", me, tokens("victim-access-77", "r", LATER)).await.0,
        204
    );
    let uid = api.user_id(&admin, USER).await;
    sqlx::query(
        "UPDATE vault_tokens SET access_token = (SELECT access_token FROM vault_tokens \
         WHERE provider = 'denied' AND user_id = $1) WHERE provider = 'denied' AND user_id <> $1",
    )
    .bind(&uid)
    .execute(&pool)
    .await
    .unwrap();
    let r = api.get("/api/vault/denied/token", other).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.text().await.unwrap().contains("victim-access-77"));
    assert_eq!(api.status(Method::GET, "/api/vault/denied/token", me, None).await.0, 200);
    assert!(!s.output().contains(CLIENT_SECRET), "the client secret never reaches the logs");

    // Every store and delete is audited with who and which provider; refusals too; no tokens.
    let stored = api.audit(&admin, "vault_tokens_stored").await;
    assert_eq!(stored.len(), 8, "{stored:?}");
    let mine = stored.iter().filter(|e| e["actor"]["user_id"] == uid.as_str()).count();
    assert_eq!(mine, 7, "{stored:?}");
    assert!(stored.iter().all(|e| e["resource"]["type"] == "vault" && e["outcome"] == "success"));
    let deleted = api.audit(&admin, "vault_tokens_deleted").await;
    let existed: Vec<&Value> = deleted.iter().map(|e| &e["details"]["existed"]).collect();
    assert_eq!(existed, [&json!(false), &json!(true)], "newest first: {deleted:?}");
    assert_eq!(deleted[0]["resource"]["id"], "broken");
    let failed = api.audit(&admin, "vault_refresh_failed").await;
    let providers: Vec<&Value> = failed.iter().map(|e| &e["resource"]["id"]).collect();
    assert_eq!(providers, [&json!("good"), &json!("denied"), &json!("broken")], "{failed:?}");
    assert!(failed.iter().all(|e| e["outcome"] == "failure"));
    let all = format!("{stored:?}{deleted:?}{failed:?}");
    for secret in ["stored-access-93kd", "stored-refresh-55xq", "victim-access-77", "admin-access"]
    {
        assert!(!all.contains(secret), "{secret} in an audit event");
    }
}

#[tokio::test]
async fn check_config_shows_providers_without_their_secret_and_production_refuses_inline_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = vault_config(dir.path(), "http://127.0.0.1:9");
    let (code, out, err) = run(dir.path(), &["check-config"], &[("RAMPART_CONFIG", &config)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vault.providers.good.token_endpoint = http://127.0.0.1:9/token"),
        "{out}"
    );
    assert!(out.contains("vault.providers.good.client_secret = [redacted]  (file)"), "{out}");
    assert!(!out.contains(CLIENT_SECRET) && !err.contains(CLIENT_SECRET));
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        "[vault.providers.gh]\ntoken_endpoint = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"inline-secret\"\n",
    )
    .unwrap();
    let prod = [
        ("RAMPART_ENV", "production"),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_PUBLIC_ORIGIN", "https://auth.example.com"),
        ("RAMPART_CONFIG", inline.to_str().unwrap()),
    ];
    let (code, _, err) = run(dir.path(), &["check-config"], &prod);
    assert_ne!(code, 0);
    assert!(err.contains("vault.providers.gh.client_secret"), "{err}");
    let mut with_env = prod.to_vec();
    with_env.push(("RAMPART_VAULT_GH_CLIENT_SECRET", "env-secret-31"));
    std::fs::write(
        &inline,
        "[vault.providers.gh]\ntoken_endpoint = \"https://idp.example/token\"\nclient_id = \"c\"\n",
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &["check-config"], &with_env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("client_secret = [redacted]  (env)") && !out.contains("env-secret-31"),
        "{out}"
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_across_two_instances_refresh_an_expired_token_once() {
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let (ep, endpoint) = TokenEndpoint::start(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = vault_config(dir.path(), &endpoint);
    let common = env(&[("RAMPART_CONFIG", &config), ("RAMPART_DATABASE_URL", &pg.url)]);
    let a = Server::start(&[common.clone(), vec![("RAMPART_INSTANCE_ID", "inst-a")]].concat());
    let b = Server::start(&[common, vec![("RAMPART_INSTANCE_ID", "inst-b")]].concat());
    let api_a = Api::new(&a);
    let (_admin, user) = api_a.setup().await;
    let key = api_a.new_key(As::Session(&user), "worker").await["key"].as_str().unwrap().to_owned();
    let (st, _) = api_a
        .status(
            Method::PUT,
            "/api/vault/good",
            As::Key(&key),
            Some(tokens("old", "old-refresh", EXPIRED)),
        )
        .await;
    assert_eq!(st, 204);
    let bases = [a.base.clone(), b.base.clone()];
    let http = http_client();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = format!("{}/api/vault/good/token", bases[i % 2]);
        let (http, key) = (http.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["access_token"], "new-access-1");
    }
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1, "exactly one refresh across both instances");

    // A failing provider: concurrent callers share the failure instead of each retrying.
    api_a
        .status(Method::PUT, "/api/vault/broken", As::Key(&key), Some(tokens("a", "r", EXPIRED)))
        .await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = format!("{}/api/vault/broken/token", bases[i % 2]);
        let (http, key) = (http.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            http.get(url).bearer_auth(key).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::BAD_GATEWAY);
    }
    let fails = ep.fails.load(Ordering::SeqCst);
    assert!((3..=6).contains(&fails), "retries are bounded, not per caller: {fails}");
}

#[tokio::test]
async fn rotation_re_encrypts_every_value_so_the_old_key_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = vault_config(dir.path(), "http://127.0.0.1:9");
    let with_key = |k: &'static str, prev: &'static str| {
        env(&[
            ("RAMPART_CONFIG", &config),
            ("RAMPART_SECRET_KEY", k),
            ("RAMPART_PREVIOUS_SECRET_KEYS", prev),
        ])
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect::<Vec<_>>()
    };

    // Written under key A (three rows, so batches of one resume across rows).
    let only_a = with_key(KEY, "");
    let mut s = Server::start_in(dir.path(), &as_refs(&only_a), &[]);
    let api = Api::new(&s);
    let (_admin, user) = api.setup().await;
    let key = api.new_key(As::Session(&user), "rotation").await["key"].as_str().unwrap().to_owned();
    for p in ["good", "post", "broken"] {
        let body = tokens(&format!("secret-{p}"), "r", LATER);
        assert_eq!(
            api.status(Method::PUT, &format!("/api/vault/{p}"), As::Key(&key), Some(body)).await.0,
            204
        );
    }
    assert!(s.terminate().success());

    // Key B alone cannot read them: rotation refuses to pretend.
    let only_b = with_key(KEY_B, "");
    let (code, out, _) = run(dir.path(), &["keys", "rotate"], &as_refs(&only_b));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("3 unreadable"), "{out}");

    // B with A as previous: old values still decrypt, and using the API key re-hashes it.
    let b_and_a = with_key(KEY_B, KEY);
    let mut s = Server::start_in(dir.path(), &as_refs(&b_and_a), &[]);
    let api = Api::new(&s);
    let (st, body) = api.json(Method::GET, "/api/vault/good/token", As::Key(&key), None).await;
    assert_eq!((st, body["access_token"].as_str()), (StatusCode::OK, Some("secret-good")));
    assert!(s.terminate().success());

    let (code, out, err) =
        run(dir.path(), &["keys", "rotate", "--batch-size", "1"], &as_refs(&b_and_a));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("re-encrypted 3 row(s)") && out.contains("0 left under old keys"),
        "{out}"
    );
    assert!(!out.contains("API key(s) are hashed under an old key"), "{out}");
    let (code, out, _) = run(dir.path(), &["keys", "rotate"], &as_refs(&b_and_a));
    assert_eq!(code, 0);
    assert!(out.contains("re-encrypted 0 row(s)"), "nothing left to do: {out}");

    // Only B now: everything still decrypts, the API key still works.
    let mut s = Server::start_in(dir.path(), &as_refs(&only_b), &[]);
    let api = Api::new(&s);
    for p in ["good", "post", "broken"] {
        let (st, body) =
            api.json(Method::GET, &format!("/api/vault/{p}/token"), As::Key(&key), None).await;
        assert_eq!(st, StatusCode::OK, "{p}: {body}");
        assert_eq!(body["access_token"], format!("secret-{p}"));
    }
    assert!(s.terminate().success());
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

async fn pseudonyms(api: &Api, who: As<'_>, purpose: &str, values: &[&str]) -> (u16, Vec<String>) {
    let body = json!({"purpose": purpose, "values": values});
    let (st, body) = api.json(Method::POST, "/api/pseudonymize", who, Some(body)).await;
    let list = body["pseudonyms"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
    (st.as_u16(), list.unwrap_or_default())
}

#[tokio::test]
async fn pseudonyms_are_admin_only_stable_across_restarts_and_differ_across_purposes() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[]);
    let mut s = Server::start_in(dir.path(), &e, &[]);
    let api = Api::new(&s);
    let (admin, user) = api.setup().await;
    let values = ["jane@example.com", "john@example.com", "jane@example.com"];
    assert_eq!(pseudonyms(&api, As::Nobody, "analytics", &values).await.0, 401);
    assert_eq!(pseudonyms(&api, As::Session(&user), "analytics", &values).await.0, 403);
    let (st, first) = pseudonyms(&api, As::Session(&admin), "analytics", &values).await;
    assert_eq!(st, 200);
    assert_eq!(first.len(), 3);
    assert_eq!(first[0], first[2]);
    assert_ne!(first[0], first[1]);
    assert!(first[0].len() == 64 && !first[0].contains("jane"));
    let (_, support) = pseudonyms(&api, As::Session(&admin), "support", &values).await;
    assert_ne!(support[0], first[0], "purposes do not link");
    // Limits.
    let many = vec!["x"; 1001];
    assert_eq!(pseudonyms(&api, As::Session(&admin), "analytics", &many).await.0, 400);
    let long = "x".repeat(1025);
    assert_eq!(pseudonyms(&api, As::Session(&admin), "analytics", &[&long]).await.0, 400);
    assert_eq!(pseudonyms(&api, As::Session(&admin), "Bad Purpose", &["x"]).await.0, 400);
    assert!(!api.audit(&admin, "access_denied").await.is_empty());
    // Each answered call is on record with its purpose and count, never the values.
    let done = api.audit(&admin, "pseudonymized").await;
    assert_eq!(done.len(), 2, "{done:?}");
    let purposes: Vec<&str> =
        done.iter().filter_map(|e| e["details"]["purpose"].as_str()).collect();
    assert!(purposes.contains(&"analytics") && purposes.contains(&"support"), "{done:?}");
    assert!(done.iter().all(|e| e["details"]["count"] == 3), "{done:?}");
    assert!(!format!("{done:?}").contains("jane@"), "no value is recorded: {done:?}");

    let key_file = dir.path().join("data/pseudonymization.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_ne!(
        std::fs::read(&key_file).unwrap(),
        std::fs::read(dir.path().join("data/secret.key")).unwrap_or_default()
    );
    assert!(s.terminate().success());

    // Stable across a restart, and the CLI agrees with the API.
    let s = Server::start_in(dir.path(), &e, &[]);
    let api = Api::new(&s);
    let admin = api.login(ADMIN).await;
    assert_eq!(pseudonyms(&api, As::Session(&admin), "analytics", &values).await.1, first);
    let mut child =
        crate::support::command(dir.path(), &["pseudonymize", "--purpose", "analytics"], &e)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(values.join("\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> =
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(lines, first);

    // Production needs its own key.
    let prod = [
        ("RAMPART_ENV", "production"),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_PUBLIC_ORIGIN", "https://auth.example.com"),
    ];
    let (code, _, err) = run(dir.path(), &["pseudonymize", "--purpose", "x"], &prod);
    assert_ne!(code, 0);
    assert!(err.contains("RAMPART_PSEUDONYMIZATION_KEY"), "{err}");
    let same = [prod.to_vec(), vec![("RAMPART_PSEUDONYMIZATION_KEY", KEY)]].concat();
    let (code, _, err) = run(dir.path(), &["pseudonymize", "--purpose", "x"], &same);
    assert_eq!(code, 2, "the master key is refused: {err}");
}

#[tokio::test]
async fn no_more_api_keys_than_the_limit_exist_and_a_deletion_frees_a_place() {
    let s = Server::start(&env(&[("RAMPART_API_KEY_LIMIT", "2")]));
    let api = Api::new(&s);
    let (admin, _user) = api.setup().await;
    let first = api.new_key(As::Session(&admin), "one").await;
    api.new_key(As::Session(&admin), "two").await;
    let third = Some(json!({"name": "three"}));
    assert_eq!(
        api.status(Method::POST, "/api/keys", As::Session(&admin), third.clone()).await,
        (409, "api_key_limit".into())
    );
    let (_, listed) = api.json(Method::GET, "/api/keys", As::Session(&admin), None).await;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(2), "{listed}");
    let path = format!("/api/keys/{}", first["id"].as_str().unwrap());
    assert_eq!(api.status(Method::DELETE, &path, As::Session(&admin), None).await.0, 204);
    let r = api.send(Method::POST, "/api/keys", As::Session(&admin), third).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}
