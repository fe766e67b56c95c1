//! A real browser: headless Chromium driven through ChromeDriver (W3C WebDriver over HTTP),
//! signing in through the page behind nginx, reaching the app, and refusing forms posted from
//! other origins.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::proxies::{echo_upstream, rampart_behind, start_nginx};
use super::{free_port, USER, USER_PW};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags for Chromium on a machine without network access or a sandbox-capable kernel setup.
pub fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--window-size=1000,760",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(std::iter::once(format!("--user-data-dir={}", profile.display())))
    .collect()
}

struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut d = Driver { child, http, base, session: None, _profile: profile };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": chromium_args(d._profile.path()),
            }
        }}});
        let v = d.call(reqwest::Method::POST, "/session", Some(caps)).await;
        d.session = Some(v["sessionId"].as_str().expect("session id").to_owned());
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = match &self.session {
            Some(s) if path != "/session" => format!("{}/session/{s}{path}", self.base),
            _ => format!("{}{path}", self.base),
        };
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
    }

    /// Waits until the current URL satisfies `ok` (up to 15 s).
    async fn wait_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let u = self.url().await;
            if ok(&u) {
                return u;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; at {u}: {}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page source contains `needle`.
    async fn wait_source(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.source().await;
            if s.contains(needle) {
                return s;
            }
            assert!(Instant::now() < deadline, "waited for {needle:?}; page: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn quit(mut self) {
        if self.session.is_some() {
            self.call(reqwest::Method::DELETE, "", None).await;
            self.session = None;
        }
    }
}

/// A page on another origin that posts a form to `target` as soon as it loads.
fn attacker_page(target: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{v}\">"))
        .collect();
    format!(
        "<!doctype html><html><body><form method=\"post\" action=\"{target}\">{inputs}</form>\
<script>document.forms[0].submit()</script></body></html>"
    )
}

async fn attacker_site(proxy: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let logout = attacker_page(&format!("{proxy}/logout"), &[("csrf_token", "guess")]);
    let sessions = attacker_page(
        &format!("{proxy}/account/sessions"),
        &[("action", "revoke_others"), ("csrf_token", "guess")],
    );
    let app = axum::Router::new()
        .route("/logout", axum::routing::get(move || async move { axum::response::Html(logout) }))
        .route(
            "/sessions",
            axum::routing::get(move || async move { axum::response::Html(sessions) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

#[tokio::test]
async fn chromium_signs_in_through_the_page_and_refuses_forms_from_other_origins() {
    if !(super::have("chromium", "browser test")
        && super::have("chromedriver", "browser test")
        && super::have("nginx", "browser test"))
    {
        return;
    }
    let (upstream, up_task) = echo_upstream().await;
    let port = free_port();
    let (gw, rampart) = rampart_behind(port);
    gw.accounts().await;
    let p = start_nginx(port, rampart, upstream);
    let proxy = p.base.clone();
    let (attacker, att_task) = attacker_site(&proxy).await;
    let d = Driver::start().await;

    // The app sends the browser to the login page.
    d.goto(&format!("{proxy}/app/page")).await;
    d.wait_url("the login page", |u| u.ends_with("/login?return_to=%2Fapp%2Fpage")).await;
    assert!(is_png(&d.screenshot().await));

    // Sign in through the form; land on the upstream page with Rampart's identity.
    d.type_into("#email", USER).await;
    d.type_into("#password", USER_PW).await;
    d.click("button[type=submit]").await;
    d.wait_url("the app", |u| u == format!("{proxy}/app/page")).await;
    d.wait_source("remote-user").await;
    assert!(d.source().await.contains(USER));

    // A page on another origin of the same site posts to /logout and /account/sessions: the
    // session cookie rides along (SameSite=Lax), and the CSRF check refuses both with 403.
    for page in ["logout", "sessions"] {
        d.goto(&format!("http://127.0.0.1:{attacker}/{page}")).await;
        d.wait_url("the forged post", |u| u.starts_with(&proxy)).await;
        d.wait_source("csrf_rejected").await;
    }
    // From another site the cookie is not even sent: nothing happens to the session.
    d.goto(&format!("http://localhost:{attacker}/logout")).await;
    d.wait_url("the cross-site post", |u| u.starts_with(&proxy)).await;
    d.goto(&format!("{proxy}/app/page")).await;
    d.wait_source("remote-user").await;
    assert!(d.url().await.ends_with("/app/page"), "still signed in");

    // The same-origin form signs out.
    d.goto(&format!("{proxy}/logout")).await;
    d.click("button[type=submit]").await;
    d.wait_url("the login page after sign-out", |u| u.ends_with("/login")).await;
    d.goto(&format!("{proxy}/app/page")).await;
    d.wait_url("the login page again", |u| u.contains("/login?return_to=")).await;

    d.quit().await;
    att_task.abort();
    up_task.abort();
    drop(p);
}

#[test]
fn chromium_headless_screenshot_of_the_login_page() {
    if !super::have("chromium", "login page screenshot") {
        return;
    }
    let gw = super::start_gw("", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("login.png");
    let status = Command::new("chromium")
        .args(chromium_args(&dir.path().join("profile")))
        .arg("--hide-scrollbars")
        .arg(format!("--screenshot={}", out.display()))
        .arg(gw.url("/login?return_to=%2Fapp"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&out).unwrap();
    assert!(is_png(&png));
    if std::env::var("RAMPART_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/login-page.png");
        std::fs::write(docs, &png).unwrap();
    }
}
