//! The gateway and the HTML pages: login page, open redirects, account pages, forward-auth,
//! and end-to-end runs behind real nginx and Caddy and in headless Chromium.

mod browser;
pub(crate) mod forward_auth;
pub(crate) mod proxies;

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::Server;

pub const ADMIN: &str = "root@example.com";
pub const ADMIN_PW: &str = "correct-horse-battery-staple-42";
pub const USER: &str = "user@example.com";
pub const USER_PW: &str = "tangerine-violin-orbit-77";

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Rampart server with access rules from TOML and fast test hashing.
pub struct Gw {
    pub s: Server,
    /// The public origin (`http://127.0.0.1:<port>` unless set).
    pub origin: String,
    _cfg: tempfile::TempDir,
}

pub fn start_gw(rules_toml: &str, extra: &[(&str, &str)]) -> Gw {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("rampart.toml");
    std::fs::write(&path, rules_toml).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let path_text = path.display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("RAMPART_LISTEN", &listen),
        ("RAMPART_RATE_LIMIT", "100000/1s"),
        ("RAMPART_ARGON2_MEMORY_KIB", "1024"),
        ("RAMPART_ARGON2_ITERATIONS", "1"),
        ("RAMPART_CONFIG", &path_text),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v));
    }
    let origin = extra
        .iter()
        .find(|(k, _)| *k == "RAMPART_PUBLIC_ORIGIN")
        .map_or_else(|| format!("http://{listen}"), |(_, v)| v.to_string());
    let s = Server::start(&env);
    Gw { s, origin, _cfg: cfg }
}

/// A client without cookies that never follows redirects.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A JSON API login: the `name=value` session cookie and the CSRF token.
#[derive(Debug, Clone)]
pub struct ApiLogin {
    pub cookie: String,
    pub csrf: String,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        self.s.url(path)
    }

    pub async fn post_json(
        &self,
        path: &str,
        who: Option<&ApiLogin>,
        body: Value,
    ) -> reqwest::Response {
        let mut rb = bare().post(self.url(path)).header("origin", &self.origin).json(&body);
        if let Some(l) = who {
            rb = rb.header("cookie", &l.cookie).header("x-csrf-token", &l.csrf);
        }
        rb.send().await.unwrap()
    }

    pub async fn get_as(&self, path: &str, who: Option<&ApiLogin>) -> reqwest::Response {
        let mut rb = bare().get(self.url(path));
        if let Some(l) = who {
            rb = rb.header("cookie", &l.cookie);
        }
        rb.send().await.unwrap()
    }

    /// The first admin (`ADMIN`) and a plain user (`USER`).
    pub async fn accounts(&self) -> ApiLogin {
        let r =
            self.post_json("/api/setup", None, json!({"email": ADMIN, "password": ADMIN_PW})).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        let admin = self.api_login(ADMIN, ADMIN_PW).await;
        let body = json!({"email": USER, "password": USER_PW, "role": "user"});
        let r = self.post_json("/api/admin/users", Some(&admin), body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        admin
    }

    pub async fn api_login(&self, email: &str, pw: &str) -> ApiLogin {
        let r =
            self.post_json("/api/auth/login", None, json!({"email": email, "password": pw})).await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = session_cookie(r.headers()).expect("session cookie");
        let body: Value = r.json().await.unwrap();
        ApiLogin { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
    }

    /// Audit events of one kind, newest first.
    pub async fn audit(&self, admin: &ApiLogin, kind: &str) -> Vec<Value> {
        let r = self.get_as(&format!("/api/admin/audit?event={kind}"), Some(admin)).await;
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

/// `name=value` of the session cookie a response sets (not a clearing one).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.contains("rampart_session=") && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .next()
}

/// The value of a hidden input `name` in a page.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    let raw = &html[start..start + end];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&gt;", ">")
            .replace("&lt;", "<")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// Submits the login page like a browser: GET the form (keeping the login cookie), POST it.
/// `base` is where the page is fetched (Rampart or a proxy in front), `origin` what the
/// browser would send as `Origin`.
pub async fn page_login(
    c: &reqwest::Client,
    base: &str,
    origin: &str,
    email: &str,
    pw: &str,
    return_to: Option<&str>,
) -> reqwest::Response {
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let token = hidden_value(&html, "csrf_token").expect("login token");
    let mut form = vec![("email", email), ("password", pw), ("csrf_token", token.as_str())];
    if let Some(t) = return_to {
        form.push(("return_to", t));
    }
    c.post(format!("{base}/login")).header("origin", origin).form(&form).send().await.unwrap()
}

/// Whether a tool is installed; under `CI=true` a missing tool fails the test instead.
pub fn have(binary: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{binary} is required under CI=true ({what}); scripts/test installs it"
        );
        println!("skipped: {binary} is not installed ({what})");
    }
    found
}

/// Open-redirect vectors that must end at `/`.
const UNSAFE_TARGETS: &[&str] = &[
    "https://evil.example",
    "http://evil.example/x",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/a\\b",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,x",
    "evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "/\r\n/evil.example",
    "/%0d%0aSet-Cookie:%20x=y",
    "/%00",
    "/..//evil.example",
    "/%2e%2e//evil.example",
    " //evil.example",
    "https:evil.example",
];

#[tokio::test]
async fn login_redirects_only_to_safe_same_origin_paths() {
    let gw = start_gw("", &[]);
    gw.accounts().await;
    for target in UNSAFE_TARGETS {
        let c = crate::support::client();
        let r = page_login(&c, &gw.s.base, &gw.origin, ADMIN, ADMIN_PW, Some(target)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{target:?}");
        assert_eq!(r.headers()["location"], "/", "{target:?}");
        assert!(session_cookie(r.headers()).is_some());
        assert!(r
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("x=y")));
    }
    for (target, want) in [
        ("/app", "/app"),
        ("/app/x?y=1&z=2#f", "/app/x?y=1&z=2#f"),
        ("/search?q=http://e.example", "/search?q=http://e.example"),
        ("/caf\u{e9}", "/caf%C3%A9"),
    ] {
        let c = crate::support::client();
        let r = page_login(&c, &gw.s.base, &gw.origin, ADMIN, ADMIN_PW, Some(target)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], want, "{target:?}");
    }
    // A duplicated return_to is refused as a whole: no redirect anywhere, no session.
    let c = crate::support::client();
    let html = c.get(gw.url("/login")).send().await.unwrap().text().await.unwrap();
    let token = hidden_value(&html, "csrf_token").unwrap();
    let body = format!(
        "email=root%40example.com&password={ADMIN_PW}&csrf_token={token}&return_to=%2Fa&return_to=%2F%2Fevil.example"
    );
    let r = c
        .post(gw.url("/login"))
        .header("origin", &gw.origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(session_cookie(r.headers()).is_none());
    // A return_to rendered into the form is the checked one.
    let html = c.get(gw.url("/login?return_to=%2F%2Fevil.example")).send().await.unwrap();
    assert!(hidden_value(&html.text().await.unwrap(), "return_to").is_none());
    let html = c.get(gw.url("/login?return_to=%2Fok%3Fa%3D%22%3E")).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert_eq!(hidden_value(&html, "return_to").as_deref(), Some("/ok?a=\">"));
    assert!(html.contains("value=\"/ok?a=&quot;&gt;\""), "the value is escaped");
}

fn csp_nonce(csp: &str) -> String {
    let start = csp.find("'nonce-").unwrap() + "'nonce-".len();
    csp[start..].split('\'').next().unwrap().to_owned()
}

#[tokio::test]
async fn login_page_is_accessible_html_under_a_strict_nonce_policy() {
    let gw = start_gw("", &[]);
    let c = bare();
    let r = c.get(gw.url("/login?return_to=%2Fapp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    for directive in [
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    let nonce = csp_nonce(&csp);
    assert!(nonce.len() >= 22);
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("<style nonce=\"{nonce}\">")), "{html}");
    assert_eq!(html.matches("<style").count(), 1);
    assert!(!html.contains("<script"));
    assert!(!html.contains(" style="), "inline style attributes are blocked by the CSP");
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<h1>Sign in</h1>"));
    assert!(html.contains("<label for=\"email\">") && html.contains("id=\"email\""));
    assert!(html.contains("<label for=\"password\">") && html.contains("type=\"password\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(html.contains("action=\"/login\"") && html.contains("method=\"post\""));
    assert_eq!(hidden_value(&html, "return_to").as_deref(), Some("/app"));
    let cookie = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("rampart_login="))
        .expect("login cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    // A fresh nonce each time.
    let again = c.get(gw.url("/login")).send().await.unwrap();
    let csp2 = again.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert_ne!(csp_nonce(&csp2), nonce);
}

#[tokio::test]
async fn login_form_needs_its_own_token_and_shows_one_message_for_every_failure() {
    let gw = start_gw("", &[]);
    let admin = gw.accounts().await;
    let c = crate::support::client();
    // No token cookie at all.
    let r = bare()
        .post(gw.url("/login"))
        .header("origin", &gw.origin)
        .form(&[("email", ADMIN), ("password", ADMIN_PW), ("csrf_token", "1.abc")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(session_cookie(r.headers()).is_none());
    assert!(r.text().await.unwrap().contains("expired"));
    // A valid token from another browser does not fit this browser's cookie.
    let other = crate::support::client();
    let html = other.get(gw.url("/login")).send().await.unwrap().text().await.unwrap();
    let foreign = hidden_value(&html, "csrf_token").unwrap();
    let _ = c.get(gw.url("/login")).send().await.unwrap();
    let r = c
        .post(gw.url("/login"))
        .header("origin", &gw.origin)
        .form(&[("email", ADMIN), ("password", ADMIN_PW), ("csrf_token", foreign.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(session_cookie(r.headers()).is_none());
    // Cross-site: refused by the CSRF layer before the form is read.
    let r = c
        .post(gw.url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("email", ADMIN), ("password", ADMIN_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "csrf_rejected");
    // Wrong password and unknown email: the same message and status.
    let mut messages = Vec::new();
    for (email, pw) in [(ADMIN, "wrong-password-123456"), ("nobody@example.com", ADMIN_PW)] {
        let r =
            page_login(&crate::support::client(), &gw.s.base, &gw.origin, email, pw, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(session_cookie(r.headers()).is_none());
        let html = r.text().await.unwrap();
        let start = html.find("role=\"alert\">").unwrap();
        messages.push(html[start..html[start..].find("</p>").unwrap() + start].to_owned());
        assert!(!html.contains(pw), "the password is never echoed");
    }
    assert_eq!(messages[0], messages[1]);
    assert!(messages[0].contains("Incorrect email or password."));
    let failed = gw.audit(&admin, "login_failed").await;
    assert!(failed.len() >= 2, "{failed:?}");
    let rejected = gw.audit(&admin, "csrf_rejected").await;
    assert!(rejected.iter().any(|e| e["details"]["reason"] == "login_token"), "{rejected:?}");
    // Success: a new session, the login cookie cleared, /api/auth/me works.
    let r = page_login(&c, &gw.s.base, &gw.origin, ADMIN, ADMIN_PW, Some("/next")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/next");
    let cleared = r.headers().get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("rampart_login=") && v.contains("Max-Age=0")
    });
    assert!(cleared);
    assert_eq!(c.get(gw.url("/api/auth/me")).send().await.unwrap().status(), StatusCode::OK);
    // Signed in: the login page moves straight on.
    let r = c.get(gw.url("/login?return_to=%2Fthere")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/there");
}

#[tokio::test]
async fn too_many_failures_lock_the_form_with_retry_after() {
    let gw = start_gw("", &[("RAMPART_LOGIN_MAX_FAILURES", "2")]);
    gw.accounts().await;
    let mut last = StatusCode::OK;
    let mut retry = None;
    for _ in 0..3 {
        let c = crate::support::client();
        let r = page_login(&c, &gw.s.base, &gw.origin, USER, "wrong-password-123456", None).await;
        last = r.status();
        retry = r.headers().get("retry-after").cloned();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
}

/// Signs in through the page with a cookie-keeping client.
async fn browser_session(gw: &Gw, email: &str, pw: &str) -> reqwest::Client {
    let c = crate::support::client();
    let r = page_login(&c, &gw.s.base, &gw.origin, email, pw, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    c
}

async fn page(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn account_pages_send_strangers_to_login_and_let_users_revoke_sessions() {
    let gw = start_gw("", &[]);
    gw.accounts().await;
    for path in ["/account/sessions", "/account/password"] {
        let r = bare().get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let want = format!("/login?return_to={}", path.replace('/', "%2F"));
        assert_eq!(r.headers()["location"], want.as_str());
    }
    let a = browser_session(&gw, USER, USER_PW).await;
    let b = browser_session(&gw, USER, USER_PW).await;
    let third = gw.api_login(USER, USER_PW).await;
    let html = page(&a, &gw.url("/account/sessions")).await;
    assert_eq!(html.matches("<tr><td>").count(), 3, "{html}");
    assert!(html.contains("This session"));
    let token = hidden_value(&html, "csrf_token").unwrap();
    // The form without its token is refused by the CSRF layer.
    let r = a
        .post(gw.url("/account/sessions"))
        .header("origin", &gw.origin)
        .form(&[("action", "revoke_others")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.get(gw.url("/api/auth/me")).send().await.unwrap().status(), StatusCode::OK);
    // Revoke one (the API session) by its handle.
    let me: Value = gw.get_as("/api/auth/me", Some(&third)).await.json().await.unwrap();
    let handle = me["session"]["id"].as_str().unwrap().to_owned();
    let r = a
        .post(gw.url("/account/sessions"))
        .header("origin", &gw.origin)
        .form(&[("action", "revoke"), ("session", handle.as_str()), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/account/sessions?revoked=1");
    assert_eq!(gw.get_as("/api/auth/me", Some(&third)).await.status(), StatusCode::UNAUTHORIZED);
    // Someone else's or an unknown handle: nothing happens.
    let r = a
        .post(gw.url("/account/sessions"))
        .header("origin", &gw.origin)
        .form(&[("action", "revoke"), ("session", "not-a-handle"), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // All others.
    let r = a
        .post(gw.url("/account/sessions"))
        .header("origin", &gw.origin)
        .form(&[("action", "revoke_others"), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        b.get(gw.url("/api/auth/me")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(a.get(gw.url("/api/auth/me")).send().await.unwrap().status(), StatusCode::OK);
    let html = page(&a, &gw.url("/account/sessions?revoked=1")).await;
    assert!(html.contains("1 session was signed out."));
    assert!(html.contains("No other sessions"));
}

#[tokio::test]
async fn password_page_changes_the_password_and_logout_is_post_only() {
    let gw = start_gw("", &[]);
    gw.accounts().await;
    let a = browser_session(&gw, USER, USER_PW).await;
    let other = gw.api_login(USER, USER_PW).await;
    let html = page(&a, &gw.url("/account/password")).await;
    assert!(
        html.contains("<label for=\"new_password\">")
            && html.contains("autocomplete=\"new-password\"")
    );
    let token = hidden_value(&html, "csrf_token").unwrap();
    let new_pw = "a-brand-new-passphrase-91";
    let send = |current: &'static str, new: &'static str, confirm: &'static str| {
        a.post(gw.url("/account/password")).header("origin", &gw.origin).form(&[
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", confirm),
            ("csrf_token", token.as_str()),
        ])
    };
    let r = send("wrong-password-123456", new_pw, new_pw).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("current password is incorrect"));
    let r = send(USER_PW, new_pw, "something-else-entirely").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = send(USER_PW, "short", "short").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = send(USER_PW, new_pw, new_pw).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/account/password?changed=1");
    assert!(session_cookie(r.headers()).is_some(), "the session is rotated");
    assert_eq!(gw.get_as("/api/auth/me", Some(&other)).await.status(), StatusCode::UNAUTHORIZED);
    let html = page(&a, &gw.url("/account/password?changed=1")).await;
    assert!(html.contains("Your password was changed."));
    let r =
        page_login(&crate::support::client(), &gw.s.base, &gw.origin, USER, USER_PW, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // GET /logout only asks.
    let html = page(&a, &gw.url("/logout")).await;
    assert!(html.contains("action=\"/logout\""));
    assert_eq!(a.get(gw.url("/api/auth/me")).send().await.unwrap().status(), StatusCode::OK);
    let token = hidden_value(&html, "csrf_token").unwrap();
    let r = a
        .post(gw.url("/logout"))
        .header("origin", &gw.origin)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token");
    let r = a
        .post(gw.url("/logout"))
        .header("origin", &gw.origin)
        .form(&[("csrf_token", token.as_str()), ("return_to", "//evil.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    assert!(r.headers()["clear-site-data"].to_str().unwrap().contains("cookies"));
    assert_eq!(
        a.get(gw.url("/api/auth/me")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let html = page(&a, &gw.url("/logout")).await;
    assert!(html.contains("You are not signed in."));
}
