//! The audit log: the fields of real events, which actions write which events, the query API,
//! tamper evidence on the stored chain, durability under SIGKILL, and export.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method, Response};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{client, error_code, run, Server};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PW: &str = "correct-horse-battery-staple-42";
const USER_EMAIL: &str = "member@example.com";
const USER_PW: &str = "violet-tractor-lantern-1987";
const NO_RATE_LIMIT: (&str, &str) = ("RAMPART_RATE_LIMIT", "100000/1s");

/// A logged-in client: cookie store, CSRF token and the server's origin.
struct Session {
    c: Client,
    csrf: String,
    base: String,
    user_id: String,
}

impl Session {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self
            .c
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.c.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    /// `GET /api/admin/audit` with `query`; returns (status, body).
    async fn audit(&self, query: &[(&str, &str)]) -> (u16, Value) {
        let r =
            self.c.get(format!("{}/api/admin/audit", self.base)).query(query).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Every event matching `query`, newest first, following the cursor; unless `query` names
    /// an event kind, the `audit_read` events that reading writes are left out.
    async fn events(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let reads_too = query.iter().any(|(k, _)| *k == "event");
        let mut all = self.all_events(query).await;
        if !reads_too {
            all.retain(|e| e["event"] != "audit_read");
        }
        all
    }

    /// Every event matching `query`, newest first, following the cursor.
    async fn all_events(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", "1000"));
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let (status, body) = self.audit(&q).await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["events"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

/// `POST /api/setup` with the admin credentials; returns the admin user.
async fn setup(s: &Server) -> Value {
    let r = client()
        .post(s.url("/api/setup"))
        .header("origin", &s.base)
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["user"].clone()
}

/// `POST /api/auth/login` on `c`, optionally with a user agent and a forwarded client address.
async fn login_raw(
    s: &Server,
    c: &Client,
    email: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut req = c
        .post(s.url("/api/auth/login"))
        .header("origin", &s.base)
        .json(&json!({"email": email, "password": password}));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn login_with(s: &Server, email: &str, password: &str, extra: &[(&str, &str)]) -> Session {
    let c = client();
    let r = login_raw(s, &c, email, password, extra).await;
    assert_eq!(r.status(), 200, "login {email}");
    let body: Value = r.json().await.unwrap();
    Session {
        c,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        base: s.base.clone(),
        user_id: body["user"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn login(s: &Server, email: &str, password: &str) -> Session {
    login_with(s, email, password, &[]).await
}

/// Completes setup and logs the admin in.
async fn admin(s: &Server) -> Session {
    setup(s).await;
    login(s, ADMIN_EMAIL, ADMIN_PW).await
}

/// Creates a `user` account through the admin API; returns its id.
async fn create_user(a: &Session, email: &str) -> String {
    let r = a
        .send(
            Method::POST,
            "/api/admin/users",
            Some(json!({"email": email, "password": USER_PW, "role": "user"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["user"]["id"].as_str().unwrap().to_owned()
}

fn request_id(r: &Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// Asserts newest-first order: by `ts`, then by `seq` (one instance).
fn assert_newest_first(events: &[Value]) {
    for w in events.windows(2) {
        let (a, b) = (w[0]["ts"].as_str().unwrap(), w[1]["ts"].as_str().unwrap());
        assert!(a >= b, "not newest first: {a} before {b}");
        if w[0]["instance"] == w[1]["instance"] {
            assert!(w[0]["seq"].as_u64() > w[1]["seq"].as_u64(), "seq order: {w:?}");
        }
    }
}

/// Asserts the fixed audit time format: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, a valid RFC 3339 time.
fn assert_audit_ts(ts: &str) {
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(ts.ends_with('Z'), "{ts}");
    assert_eq!(&ts[19..20], ".", "{ts}");
    assert!(ts[20..26].bytes().all(|b| b.is_ascii_digit()), "six fractional digits: {ts}");
    let t = OffsetDateTime::parse(ts, &Rfc3339).unwrap();
    assert_eq!(t.offset(), time::UtcOffset::UTC);
}

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `rampart audit export` on a data dir: every event, oldest first.
fn export(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["audit", "export"];
    argv.extend_from_slice(args);
    let (code, out, err) = run(dir, &argv, &[]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `rampart audit verify` on a data dir: (exit code, the JSON report line, all stdout).
fn verify_cli(dir: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let (code, out, err) = run(dir, &["audit", "verify"], env);
    let report = out
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON report; stdout:\n{out}\nstderr:\n{err}"));
    (code, report, out)
}

/// The SQLite database of a data dir, through the `Any` driver.
async fn sqlite(dir: &Path) -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rw", dir.join("data/rampart.db").display());
    AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap()
}

/// A stopped server whose data dir holds a short log: setup, logins, a user created and a few
/// refusals. Returns the server (it owns the dir) and the events, oldest first.
async fn stopped_log() -> (Server, Vec<Value>) {
    let mut s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    for _ in 0..4 {
        assert_eq!(u.get("/api/admin/users").await.status(), 403);
    }
    assert!(s.terminate().success());
    let events = export(&s.dir, &[]);
    assert_eq!(events.len(), 8, "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    (s, events)
}

/// The stored body of the row at `seq`.
async fn body_at(pool: &AnyPool, seq: i64) -> String {
    sqlx::query("SELECT body FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<String, _>("body")
}

/// Asserts that verification of the stopped log of `s` fails at its third event (`events`,
/// oldest first) for `reason`, after two good ones: by `rampart audit verify`, then by the
/// verify endpoint of a server started on the same data.
async fn assert_third_event_fails_everywhere(s: &Server, events: &[Value], reason: &str) {
    let failure = json!({
        "instance": events[2]["instance"],
        "seq": 3,
        "id": events[2]["id"],
        "reason": reason,
    });
    assert_verify_fails(&s.dir, 2, failure.clone());
    let s2 = Server::start_in(&s.dir, &[NO_RATE_LIMIT], &[]);
    let a = login(&s2, ADMIN_EMAIL, ADMIN_PW).await;
    let r = a.get("/api/admin/audit/verify").await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report, json!({"ok": false, "checked": 2, "first_failure": failure}));
}

/// Asserts that `rampart audit verify` fails with exactly `failure` after `checked` events.
fn assert_verify_fails(dir: &Path, checked: u64, failure: Value) {
    let (code, report, out) = verify_cli(dir, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert_eq!(report, json!({"ok": false, "checked": checked, "first_failure": failure}), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Fields of real events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_login_event_records_actor_session_client_and_request_and_no_secret() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let admin_user = setup(&s).await;
    let ua = "audit-field-test/1.0 (custom agent)";
    let wrong_pw = "planted-wrong-password-5521";
    let c = client();
    let r = login_raw(&s, &c, ADMIN_EMAIL, wrong_pw, &[("user-agent", ua)]).await;
    assert_eq!(r.status(), 401);
    let failed_rid = request_id(&r);
    let r = login_raw(&s, &c, ADMIN_EMAIL, ADMIN_PW, &[("user-agent", ua)]).await;
    assert_eq!(r.status(), 200);
    let login_rid = request_id(&r);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| v.to_str().unwrap().strip_prefix("rampart_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.len() >= 32, "{cookie}");
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    let me: Value = c.get(s.url("/api/auth/me")).send().await.unwrap().json().await.unwrap();
    let handle = me["session"]["id"].as_str().unwrap().to_owned();
    assert_ne!(handle, cookie);
    // A password change sends more secrets through the server.
    let new_pw = "planted-new-password-7744";
    let r = c
        .post(s.url("/api/auth/password"))
        .header("origin", &s.base)
        .header("x-csrf-token", &csrf)
        .json(&json!({"current_password": ADMIN_PW, "new_password": new_pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csrf2 = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();

    let r = c.get(s.url("/api/admin/audit")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let keys: HashSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["events", "next_cursor"]));
    assert!(body["next_cursor"].is_null(), "{body}");
    let events = body["events"].as_array().unwrap();
    assert_newest_first(events);
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["password_changed", "user_login", "login_failed", "setup_completed"],
        "{body}"
    );

    let ev = events.iter().find(|e| e["event"] == "user_login").unwrap();
    assert!(ev["id"].as_str().is_some_and(|s| s.len() >= 16), "{ev}");
    assert_audit_ts(ev["ts"].as_str().unwrap());
    assert_eq!(ev["outcome"], "success");
    assert_eq!(ev["actor"], json!({"user_id": admin_user["id"], "email": ADMIN_EMAIL}));
    assert_eq!(ev["session"], handle.as_str());
    assert_eq!(ev["ip"], "127.0.0.1");
    assert_eq!(ev["user_agent"], ua);
    assert_eq!(ev["request_id"], login_rid.as_str());
    assert!(ev["instance"].as_str().is_some_and(|i| !i.is_empty()), "{ev}");
    assert_eq!(ev["seq"], 3);
    assert!(is_hex64(&ev["prev_hash"]) && is_hex64(&ev["hash"]), "{ev}");
    assert_ne!(ev["prev_hash"], ev["hash"]);
    let failed = events.iter().find(|e| e["event"] == "login_failed").unwrap();
    assert_eq!(failed["hash"], ev["prev_hash"], "the chain links consecutive events");
    assert_eq!(failed["request_id"], failed_rid.as_str());
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["actor"]["user_id"], admin_user["id"]);
    for e in events {
        assert_audit_ts(e["ts"].as_str().unwrap());
        assert_eq!(e["instance"], ev["instance"]);
    }
    for secret in [ADMIN_PW, wrong_pw, new_pw, cookie.as_str(), csrf.as_str(), csrf2.as_str()] {
        assert!(!text.contains(secret), "a secret reached the audit log: {secret}\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Emission
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn account_and_session_actions_each_write_their_event() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_LOGIN_MAX_FAILURES", "2")]);
    let admin_id = setup(&s).await["id"].as_str().unwrap().to_owned();
    let a = login(&s, ADMIN_EMAIL, ADMIN_PW).await;
    let uid = create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    let _u2 = login(&s, USER_EMAIL, USER_PW).await;
    assert_eq!(u.get("/api/admin/users").await.status(), 403);
    let new_pw = "user-new-password-9051";
    let r = u
        .send(
            Method::POST,
            "/api/auth/password",
            Some(json!({"current_password": USER_PW, "new_password": new_pw})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let c = client();
    assert_eq!(login_raw(&s, &c, USER_EMAIL, "wrong-password-0000", &[]).await.status(), 401);
    let locked = "nobody@example.com";
    for _ in 0..2 {
        assert_eq!(login_raw(&s, &c, locked, "wrong-password-0001", &[]).await.status(), 401);
    }
    let r = login_raw(&s, &c, locked, "wrong-password-0001", &[]).await;
    assert_eq!(r.status(), 429);
    let locked_rid = request_id(&r);
    let user_path = format!("/api/admin/users/{uid}");
    let patch = |body: Value| a.send(Method::PATCH, &user_path, Some(body));
    assert_eq!(patch(json!({"role": "admin"})).await.status(), 200);
    assert_eq!(patch(json!({"disabled": true})).await.status(), 200);
    let r = a.send(Method::DELETE, &format!("/api/admin/users/{uid}"), None).await;
    assert_eq!(r.status(), 204);
    let r = Client::new()
        .get(s.url("/api/auth/me"))
        .header("cookie", "rampart_session=not-a-session-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let invalid_rid = request_id(&r);
    let a2 = login(&s, ADMIN_EMAIL, ADMIN_PW).await;
    let r = a2.send(Method::POST, "/api/auth/logout", None).await;
    assert_eq!(r.status(), 204);
    let logout_rid = request_id(&r);

    let events = a.events(&[]).await;
    let one = |kind: &str| -> Value {
        let found = of_kind(&events, kind);
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        found[0].clone()
    };
    let ev = one("setup_completed");
    assert_eq!(ev["actor"]["user_id"], admin_id.as_str());
    assert_eq!(ev["resource"], json!({"type": "user", "id": admin_id}));
    let logins = of_kind(&events, "user_login");
    assert_eq!(logins.iter().filter(|e| e["actor"]["user_id"] == admin_id.as_str()).count(), 2);
    assert_eq!(logins.iter().filter(|e| e["actor"]["user_id"] == uid.as_str()).count(), 2);
    let ev = one("user_created");
    assert_eq!((&ev["actor"]["user_id"], &ev["resource"]["id"]), (&json!(admin_id), &json!(uid)));
    assert_eq!(ev["details"]["role"], "user");
    let ev = one("access_denied");
    assert_eq!((&ev["outcome"], &ev["actor"]["user_id"]), (&json!("denied"), &json!(uid)));
    assert_eq!(ev["details"]["method"], "GET");
    let ev = one("password_changed");
    assert_eq!(ev["actor"]["user_id"], uid.as_str());
    let revoked = of_kind(&events, "sessions_revoked");
    let reasons: HashSet<&str> =
        revoked.iter().map(|e| e["details"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, HashSet::from(["password_changed", "account_changed"]), "{revoked:?}");
    let by_pw = revoked.iter().find(|e| e["details"]["reason"] == "password_changed").unwrap();
    assert_eq!(
        (&by_pw["actor"]["user_id"], &by_pw["details"]["revoked"]),
        (&json!(uid), &json!(1))
    );
    let failed = of_kind(&events, "login_failed");
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|e| e["outcome"] == "failure"));
    assert!(
        failed
            .iter()
            .any(|e| e["actor"]["user_id"] == uid.as_str()
                && e["details"]["reason"] == "bad_password")
    );
    let unknown: Vec<_> =
        failed.iter().filter(|e| e["details"]["reason"] == "unknown_email").collect();
    assert_eq!(unknown.len(), 2, "{failed:?}");
    let hash = unknown[0]["details"]["email_hash"].as_str().unwrap();
    assert!(unknown.iter().all(|e| e["details"]["email_hash"] == hash), "{unknown:?}");
    let ev = one("login_locked");
    assert_eq!((&ev["outcome"], &ev["request_id"]), (&json!("denied"), &json!(locked_rid)));
    assert_eq!(ev["details"]["email_hash"], hash, "{ev}");
    assert!(!events.iter().any(|e| e.to_string().contains(locked)), "{locked} was recorded");
    let ev = one("user_role_changed");
    assert_eq!(ev["resource"]["id"], uid.as_str());
    assert_eq!((&ev["details"]["from"], &ev["details"]["to"]), (&json!("user"), &json!("admin")));
    let ev = one("user_disabled");
    assert_eq!((&ev["resource"]["id"], &ev["details"]["disabled"]), (&json!(uid), &json!(true)));
    let ev = one("user_deleted");
    assert_eq!((&ev["actor"]["user_id"], &ev["resource"]["id"]), (&json!(admin_id), &json!(uid)));
    let ev = one("invalid_token");
    assert_eq!((&ev["outcome"], &ev["request_id"]), (&json!("failure"), &json!(invalid_rid)));
    let ev = one("user_logout");
    assert_eq!(
        (&ev["actor"]["user_id"], &ev["request_id"]),
        (&json!(admin_id), &json!(logout_rid))
    );
    assert!(!events.iter().any(|e| e.to_string().contains(new_pw)));
}

#[tokio::test]
async fn csrf_rejections_are_audited_with_reason_origin_and_path() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    let r = client()
        .post(s.url("/api/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&r.json().await.unwrap()), "csrf_rejected");
    // Right origin, session cookie, no token.
    let r = a.c.post(s.url("/api/auth/logout")).header("origin", &s.base).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let no_token_rid = request_id(&r);
    let events = a.events(&[("event", "csrf_rejected")]).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let cross = events.iter().find(|e| e["details"]["reason"] == "origin_mismatch").unwrap();
    assert_eq!(cross["outcome"], "denied");
    assert_eq!(cross["details"]["origin"], "https://evil.example");
    assert_eq!(cross["details"]["path"], "/api/auth/login");
    assert!(cross["actor"].is_null(), "{cross}");
    let missing = events.iter().find(|e| e["details"]["reason"] == "missing_token").unwrap();
    assert_eq!(missing["actor"]["user_id"], a.user_id.as_str());
    assert_eq!(missing["details"]["path"], "/api/auth/logout");
    assert_eq!(missing["request_id"], no_token_rid.as_str());
}

#[tokio::test]
async fn bounded_events_count_an_ipv6_64_as_one_client() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let a = admin(&s).await;
    let c = client();
    // One host cycling through the addresses of its /64, then one address of another /64.
    let from = |i: u32| {
        if i < 8 {
            format!("2001:db8:7:7::{i:x}")
        } else {
            "2001:db8:7:8::1".to_owned()
        }
    };
    for i in 0..9 {
        let r = c
            .get(s.url("/api/auth/me"))
            .header("x-forwarded-for", from(i))
            .header("cookie", format!("rampart_session=garbage-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .post(s.url("/api/auth/login"))
            .header("x-forwarded-for", from(i))
            .header("origin", "https://evil.example")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    for kind in ["invalid_token", "csrf_rejected"] {
        let events = a.events(&[("event", kind)]).await;
        let ips: HashSet<&str> = events.iter().filter_map(|e| e["ip"].as_str()).collect();
        assert_eq!(events.len(), 2, "{kind}: one event per /64: {events:?}");
        assert!(ips.contains("2001:db8:7:8::1"), "{kind}: {ips:?}");
    }
}

#[tokio::test]
async fn login_input_naming_no_account_is_audited_only_as_a_keyed_pseudonym() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_LOGIN_MAX_FAILURES", "2")]);
    let a = admin(&s).await;
    let c = client();
    // A password typed into the email field, also in another case and spacing.
    let typed = "MySecretPassw0rd!";
    for email in [typed, "  mysecretPASSW0RD! ", typed] {
        let r = login_raw(&s, &c, email, "wrong-password-0001", &[]).await;
        assert_eq!(r.status(), 401);
    }
    let r = login_raw(&s, &c, typed, "wrong-password-0001", &[]).await;
    assert_eq!(r.status(), 429, "the second failure of one input started a ban");
    let events = a.events(&[]).await;
    for ev in &events {
        let text = ev.to_string().to_lowercase();
        assert!(!text.contains("mysecretpassw0rd"), "the input was recorded: {ev}");
    }
    let failed: Vec<&Value> = of_kind(&events, "login_failed")
        .into_iter()
        .filter(|e| e["details"]["reason"] == "unknown_email")
        .collect();
    assert_eq!(failed.len(), 3, "{events:?}");
    let hash = failed[0]["details"]["email_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{hash}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    for ev in &failed {
        assert_eq!(ev["details"]["email_hash"], hash, "one pseudonym for one input: {ev}");
        assert!(ev["details"].get("email").is_none(), "{ev}");
        assert!(ev["actor"]["user_id"].is_null(), "{ev}");
    }
    let locked = of_kind(&events, "login_locked");
    assert_eq!(locked.len(), 1, "{events:?}");
    assert_eq!(locked[0]["details"]["email_hash"], hash, "{}", locked[0]);
    assert!(locked[0]["details"].get("email").is_none(), "{}", locked[0]);
    let out = s.output().to_lowercase();
    assert!(!out.contains("mysecretpassw0rd"), "the input reached the operational log");
}

#[tokio::test]
async fn rate_limited_requests_are_audited() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "2/60s")]);
    let c = client();
    let post = || c.post(s.url("/api/auth/login")).header("origin", &s.base).json(&json!({}));
    for _ in 0..2 {
        assert_ne!(post().send().await.unwrap().status(), 429);
    }
    let r = post().send().await.unwrap();
    assert_eq!(r.status(), 429);
    let rid = request_id(&r);
    let events = export(&s.dir, &[]);
    let limited = of_kind(&events, "rate_limited");
    assert_eq!(limited.len(), 1, "{events:?}");
    let ev = limited[0];
    assert_eq!((&ev["outcome"], &ev["ip"]), (&json!("denied"), &json!("127.0.0.1")));
    assert_eq!(ev["request_id"], rid.as_str());
    assert_eq!(ev["details"]["path"], "/api/auth/login");
    assert_eq!(ev["details"]["method"], "POST");
    assert_eq!(ev["details"]["rule"], "default");
    // The limiter's key, kept under a name the audit log's secret filter lets through.
    assert_eq!(ev["details"]["bucket"], "rl:default:ip:127.0.0.1", "{ev}");
    let out = s.output();
    assert!(!out.contains("dropped an audit detail"), "{out}");
}

#[tokio::test]
async fn a_session_that_idles_out_is_audited_as_session_expired_idle() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_SESSION_IDLE_TIMEOUT", "2s")]);
    let a = admin(&s).await;
    let me: Value = a.get("/api/auth/me").await.json().await.unwrap();
    let handle = me["session"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = a.get("/api/auth/me").await;
    assert_eq!(r.status(), 401);
    let rid = request_id(&r);
    let events = export(&s.dir, &[]);
    let found = of_kind(&events, "session_expired_idle");
    assert_eq!(found.len(), 1, "{events:?}");
    assert_eq!(found[0]["session"], handle.as_str());
    assert_eq!(found[0]["actor"]["user_id"], a.user_id.as_str());
    assert_eq!(found[0]["request_id"], rid.as_str());
    assert!(of_kind(&events, "session_expired_max_age").is_empty());
}

#[tokio::test]
async fn a_session_past_its_absolute_lifetime_is_audited_as_session_expired_max_age() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_SESSION_ABSOLUTE_TIMEOUT", "2s")]);
    let a = admin(&s).await;
    let me: Value = a.get("/api/auth/me").await.json().await.unwrap();
    let handle = me["session"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = a.get("/api/auth/me").await;
    assert_eq!(r.status(), 401);
    let rid = request_id(&r);
    let events = export(&s.dir, &[]);
    let found = of_kind(&events, "session_expired_max_age");
    assert_eq!(found.len(), 1, "{events:?}");
    assert_eq!(found[0]["session"], handle.as_str());
    assert_eq!(found[0]["actor"]["user_id"], a.user_id.as_str());
    assert_eq!(found[0]["request_id"], rid.as_str());
    assert!(of_kind(&events, "session_expired_idle").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Query API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_query_filters_by_event_user_ip_outcome_and_time() {
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let a = admin(&s).await;
    let uid = create_user(&a, USER_EMAIL).await;
    let far = [("x-forwarded-for", "203.0.113.7")];
    let u = login_with(&s, USER_EMAIL, USER_PW, &far).await;
    for _ in 0..3 {
        let r = u.c.get(s.url("/api/admin/users")).header(far[0].0, far[0].1).send().await;
        assert_eq!(r.unwrap().status(), 403);
    }
    let other = [("x-forwarded-for", "198.51.100.9")];
    let r = login_raw(&s, &client(), "ghost@example.com", "wrong-password-1234", &other).await;
    assert_eq!(r.status(), 401);

    let all = a.events(&[]).await;
    assert_eq!(all.len(), 8, "{all:?}");
    let expect = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        let v: Vec<Value> = all.iter().filter(|e| pred(e)).cloned().collect();
        ids(&v)
    };
    let got = ids(&a.events(&[("event", "access_denied")]).await);
    assert_eq!(got.len(), 3);
    assert_eq!(got, expect(&|e| e["event"] == "access_denied"));
    let got = ids(&a.events(&[("user_id", &uid)]).await);
    assert_eq!(got.len(), 4, "the user's login and three refusals");
    assert_eq!(got, expect(&|e| e["actor"]["user_id"] == uid.as_str()));
    let got = ids(&a.events(&[("ip", "203.0.113.7")]).await);
    assert_eq!(got.len(), 4);
    assert_eq!(got, expect(&|e| e["ip"] == "203.0.113.7"));
    let got = a.events(&[("outcome", "failure")]).await;
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0]["event"], &got[0]["ip"]), (&json!("login_failed"), &json!("198.51.100.9")));
    assert_eq!(ids(&a.events(&[("outcome", "denied")]).await).len(), 3);
    assert_eq!(
        ids(&a.events(&[("outcome", "success")]).await),
        expect(&|e| e["outcome"] == "success")
    );
    assert!(a.events(&[("event", "access_denied"), ("ip", "127.0.0.1")]).await.is_empty());
    assert!(a.events(&[("ip", "192.0.2.1")]).await.is_empty());

    // Time: since is inclusive, until exclusive; together they partition the log.
    let pivot = all[all.len() / 2]["ts"].as_str().unwrap().to_owned();
    let since = ids(&a.events(&[("since", &pivot)]).await);
    let until = ids(&a.events(&[("until", &pivot)]).await);
    assert_eq!(since, expect(&|e| e["ts"].as_str().unwrap() >= pivot.as_str()));
    assert_eq!(until, expect(&|e| e["ts"].as_str().unwrap() < pivot.as_str()));
    assert!(!since.is_empty() && !until.is_empty());
    assert_eq!(since.len() + until.len(), all.len());
    // The same instant written with another offset selects the same events.
    let t = OffsetDateTime::parse(&pivot, &Rfc3339).unwrap();
    let shifted =
        t.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap()).format(&Rfc3339).unwrap();
    assert!(shifted.ends_with("+02:00"), "{shifted}");
    assert_eq!(ids(&a.events(&[("since", &shifted)]).await), since);
    let first = all.last().unwrap()["ts"].as_str().unwrap().to_owned();
    let last = all[0]["ts"].as_str().unwrap().to_owned();
    let window = ids(&a.events(&[("since", &first), ("until", &last)]).await);
    assert_eq!(window, expect(&|e| e["ts"] != last.as_str()));
}

#[tokio::test]
async fn audit_pages_are_stable_under_new_writes_with_no_gaps_or_duplicates() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    for _ in 0..25 {
        assert_eq!(u.get("/api/admin/users").await.status(), 403);
    }
    // Paged by outcome: the 25 refusals, and none of the `audit_read` events that each page
    // writes as it is read.
    let snapshot = a.events(&[("outcome", "denied")]).await;
    assert_eq!(snapshot.len(), 25);
    assert_newest_first(&snapshot);

    let page = |cursor: Option<String>| {
        let a = &a;
        async move {
            let mut q = vec![("limit", "10".to_owned()), ("outcome", "denied".to_owned())];
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = a.audit(&q).await;
            assert_eq!(status, 200, "{body}");
            let events = body["events"].as_array().unwrap().clone();
            (events, body["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (p1, c1) = page(None).await;
    assert_eq!(p1.len(), 10);
    // An event written between pages.
    assert_eq!(u.get("/api/admin/nope").await.status(), 403);
    let (p2, c2) = page(c1.clone()).await;
    assert_eq!(p2.len(), 10);
    let (p2_again, c2_again) = page(c1.clone()).await;
    assert_eq!((ids(&p2_again), &c2_again), (ids(&p2), &c2), "a cursor names a fixed position");
    let (p3, c3) = page(c2).await;
    assert_eq!(p3.len(), 5);
    assert!(c3.is_none(), "last page");
    let paged: Vec<Value> = p1.into_iter().chain(p2).chain(p3).collect();
    assert_eq!(ids(&paged), ids(&snapshot), "no gaps, no duplicates, same order");
    let unique: HashSet<String> = ids(&paged).into_iter().collect();
    assert_eq!(unique.len(), 25);
    assert_newest_first(&paged);
    // The new event heads a fresh first page.
    let (fresh, _) = page(None).await;
    assert_eq!(fresh[0]["event"], "access_denied");
    assert!(!ids(&snapshot).contains(&ids(&fresh)[0]));
    assert_eq!(ids(&fresh[1..]), ids(&snapshot[..9]));
}

#[tokio::test]
async fn the_audit_query_rejects_bad_parameters_and_callers_who_are_not_admins() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    for q in [
        [("limit", "0")],
        [("limit", "5000")],
        [("limit", "ten")],
        [("cursor", "garbage")],
        [("cursor", "!!not-base64!!")],
        [("since", "notatime")],
        [("until", "2030-13-45T00:00:00Z")],
        [("unknown", "1")],
        [("event", "nope")],
        [("outcome", "maybe")],
    ] {
        let (status, body) = a.audit(&q).await;
        assert_eq!(status, 400, "{q:?}: {body}");
        assert_eq!(error_code(&body), "invalid_request", "{q:?}");
    }
    let (status, _) = a.audit(&[("limit", "1000")]).await;
    assert_eq!(status, 200);
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    let anon = client();
    for path in ["/api/admin/audit", "/api/admin/audit/verify"] {
        let r = u.get(path).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(error_code(&r.json().await.unwrap()), "forbidden");
        let r = anon.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(error_code(&r.json().await.unwrap()), "unauthenticated");
    }
    let denied = a.events(&[("event", "access_denied")]).await;
    assert_eq!(denied.len(), 2, "each refusal of the non-admin is audited: {denied:?}");
    assert!(denied.iter().all(|e| e["actor"]["user_id"] == u.user_id.as_str()));
}

#[tokio::test]
async fn reading_the_audit_log_is_itself_audited_and_refused_when_that_cannot_be_recorded() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    let (status, body) = a.audit(&[("event", "user_created"), ("limit", "5")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert!(body["events"].to_string().find("audit_read").is_none(), "{body}");
    let r = a.get("/api/admin/audit/verify").await;
    assert_eq!(r.status(), 200);
    let verify_rid = request_id(&r);
    let report: Value = r.json().await.unwrap();
    assert_eq!(u.get("/api/admin/audit").await.status(), 403, "a non-admin reads nothing");

    let reads = a.all_events(&[("event", "audit_read")]).await;
    assert_eq!(reads.len(), 2, "one per answered read, the refused one not among them: {reads:?}");
    assert!(reads.iter().all(|e| e["actor"]["user_id"] == a.user_id.as_str()), "{reads:?}");
    assert!(reads.iter().all(|e| e["outcome"] == "success"), "{reads:?}");
    let (verified, queried) = (&reads[0], &reads[1]);
    assert_eq!(verified["request_id"], verify_rid.as_str());
    assert_eq!(
        verified["details"],
        json!({"what": "verify", "ok": true, "checked": report["checked"]})
    );
    assert_eq!(
        queried["details"],
        json!({
            "what": "query",
            "filter": {"event": "user_created", "user_id": null, "ip": null, "outcome": null,
                       "since": null, "until": null},
            "limit": 5,
            "cursor": false,
            "returned": 1,
        })
    );

    // With the log refusing writes, a read is refused too and gives nothing out.
    let pool = sqlite(&s.dir).await;
    sqlx::query(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit log down'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    for path in ["/api/admin/audit?event=user_created", "/api/admin/audit/verify"] {
        let r = a.get(path).await;
        assert_eq!(r.status(), 503, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "audit_unavailable", "{path}: {body}");
        assert!(body.get("events").is_none() && body.get("ok").is_none(), "{path}: {body}");
    }
    // Once the log takes writes again, reading works and the chain still verifies.
    sqlx::query("DROP TRIGGER audit_down").execute(&pool).await.unwrap();
    pool.close().await;
    let r = a.get("/api/admin/audit/verify").await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
}

// ---------------------------------------------------------------------------------------------
// Tamper evidence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_untampered_log_verifies_through_the_api_and_the_cli() {
    let mut s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    assert_eq!(u.get("/api/admin/users").await.status(), 403);
    let n = a.events(&[]).await.len();
    assert_eq!(n, 5);
    // The verification sees the five and the `audit_read` of the query above; the CLI, later,
    // also the verification's own `audit_read`.
    let r = a.get("/api/admin/audit/verify").await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report, json!({"ok": true, "checked": n + 1, "first_failure": null}));
    assert!(s.terminate().success());
    let (code, report, out) = verify_cli(&s.dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report, json!({"ok": true, "checked": n + 2, "first_failure": null}));
    assert!(out.contains("no tampering found"), "{out}");
}

#[tokio::test]
async fn sqlite_refuses_updates_and_verify_catches_a_modified_event_body() {
    let (s, events) = stopped_log().await;
    let pool = sqlite(&s.dir).await;
    let err = sqlx::query("UPDATE audit_events SET ip = '10.9.9.9' WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // An attacker with the file can drop the trigger.
    sqlx::query("DROP TRIGGER audit_events_no_update").execute(&pool).await.unwrap();
    let mut body: Value = serde_json::from_str(&body_at(&pool, 3).await).unwrap();
    assert_eq!(body["event"], "user_created");
    body["details"]["role"] = json!("admin");
    let done = sqlx::query("UPDATE audit_events SET body = $1 WHERE seq = 3")
        .bind(body.to_string())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
    assert_third_event_fails_everywhere(&s, &events, "hash_mismatch").await;
}

#[tokio::test]
async fn verify_catches_search_columns_edited_to_hide_an_event() {
    let (s, events) = stopped_log().await;
    let pool = sqlite(&s.dir).await;
    sqlx::query("DROP TRIGGER audit_events_no_update").execute(&pool).await.unwrap();
    // The sealed body stays as it was; only the copies the searches read are changed, so the
    // event no longer turns up under its own kind, user or address.
    let done = sqlx::query(
        "UPDATE audit_events SET event = 'user_logout', outcome = 'failure', ip = '10.6.6.6' \
         WHERE seq = 3",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
    assert_third_event_fails_everywhere(&s, &events, "index_mismatch").await;
}

#[tokio::test]
async fn verify_catches_a_deleted_event() {
    let (s, events) = stopped_log().await;
    let pool = sqlite(&s.dir).await;
    let done = sqlx::query("DELETE FROM audit_events WHERE seq = 4").execute(&pool).await.unwrap();
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
    let failure = json!({
        "instance": events[4]["instance"],
        "seq": 5,
        "id": events[4]["id"],
        "reason": "seq_gap",
        "expected_seq": 4,
    });
    assert_verify_fails(&s.dir, 3, failure);
}

#[tokio::test]
async fn verify_catches_an_inserted_copy_of_an_event() {
    let (s, events) = stopped_log().await;
    let pool = sqlite(&s.dir).await;
    let mut body: Value = serde_json::from_str(&body_at(&pool, 4).await).unwrap();
    body["seq"] = json!(9);
    body["id"] = json!("copied-event-id-0001");
    sqlx::query(
        "INSERT INTO audit_events (instance, seq, id, ts_micros, event, outcome, user_id, ip, body, prev_hash, hash) \
         SELECT instance, 9, $1, ts_micros, event, outcome, user_id, ip, $2, prev_hash, hash \
         FROM audit_events WHERE seq = 4",
    )
    .bind("copied-event-id-0001")
    .bind(body.to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let failure = json!({
        "instance": events[3]["instance"],
        "seq": 9,
        "id": "copied-event-id-0001",
        "reason": "prev_hash_mismatch",
    });
    assert_verify_fails(&s.dir, 8, failure);
}

#[tokio::test]
async fn verify_catches_two_swapped_event_bodies() {
    let (s, events) = stopped_log().await;
    let pool = sqlite(&s.dir).await;
    sqlx::query("DROP TRIGGER audit_events_no_update").execute(&pool).await.unwrap();
    let (b3, b5) = (body_at(&pool, 3).await, body_at(&pool, 5).await);
    for (seq, body) in [(3i64, &b5), (5, &b3)] {
        sqlx::query("UPDATE audit_events SET body = $1 WHERE seq = $2")
            .bind(body.as_str())
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    // In chain order, the body of event 5 now stands where event 3 belongs.
    let failure = json!({
        "instance": events[4]["instance"],
        "seq": 5,
        "id": events[4]["id"],
        "reason": "seq_gap",
        "expected_seq": 3,
    });
    assert_verify_fails(&s.dir, 2, failure);
}

#[tokio::test]
async fn postgres_refuses_update_and_delete_of_audit_rows() {
    let Some(pg) = rampart_testkit::postgres_database().await else { return };
    let s = Server::start(&[NO_RATE_LIMIT, ("RAMPART_DATABASE_URL", &pg.url)]);
    let a = admin(&s).await;
    assert_eq!(a.events(&[]).await.len(), 2);
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(&pg.url).await.unwrap();
    let err =
        sqlx::query("UPDATE audit_events SET ip = '10.9.9.9'").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err =
        sqlx::query("DELETE FROM audit_events WHERE seq = 1").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 3, "setup, login and the audit_read of the query above");
    pool.close().await;
    let r = a.get("/api/admin/audit/verify").await;
    assert_eq!(r.json::<Value>().await.unwrap()["ok"], true);
    let (code, report, out) = verify_cli(&s.dir, &[("RAMPART_DATABASE_URL", &pg.url)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report, json!({"ok": true, "checked": 4, "first_failure": null}));
}

// ---------------------------------------------------------------------------------------------
// Durability and export
// ---------------------------------------------------------------------------------------------

async fn login_at(
    base: &str,
    c: &Client,
    email: &str,
    password: &str,
) -> reqwest::Result<Response> {
    c.post(format!("{base}/api/auth/login"))
        .header("origin", base)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
}

/// (expected event, request id) of each answered request.
type Answered = Mutex<Vec<(&'static str, String)>>;

/// One unit of load: records the expected event and request id of every answered request in
/// `answered`; `None` once the server stops answering.
async fn load_op(
    base: &str,
    i: usize,
    answered: &Answered,
    unexpected: &Mutex<Vec<String>>,
) -> Option<()> {
    let c = client();
    let record = |kind: &'static str, r: &Response| {
        answered.lock().unwrap().push((kind, request_id(r)));
    };
    match i % 3 {
        0 | 1 => {
            let email = if i % 3 == 0 { "ghost@example.com" } else { ADMIN_EMAIL };
            let r = login_at(base, &c, email, "wrong-password-4321").await.ok()?;
            match r.status().as_u16() {
                401 => record("login_failed", &r),
                other => unexpected.lock().unwrap().push(format!("failed login: {other}")),
            }
        }
        _ => {
            let r = login_at(base, &c, ADMIN_EMAIL, ADMIN_PW).await.ok()?;
            if r.status() != 200 {
                unexpected.lock().unwrap().push(format!("login: {}", r.status()));
                return Some(());
            }
            record("user_login", &r);
            let csrf = r.json::<Value>().await.ok()?["csrf_token"].as_str()?.to_owned();
            let r = c
                .post(format!("{base}/api/auth/logout"))
                .header("origin", base)
                .header("x-csrf-token", csrf)
                .send()
                .await
                .ok()?;
            match r.status().as_u16() {
                204 => record("user_logout", &r),
                other => unexpected.lock().unwrap().push(format!("logout: {other}")),
            }
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_request_keeps_its_event_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        NO_RATE_LIMIT,
        ("RAMPART_LOGIN_MAX_FAILURES", "100000"),
        ("RAMPART_LOGIN_IP_MAX_FAILURES", "100000"),
        // Cheap hashes: this test is about the audit log, not Argon2.
        ("RAMPART_ARGON2_MEMORY_KIB", "1024"),
        ("RAMPART_ARGON2_ITERATIONS", "1"),
        ("RAMPART_HASH_QUEUE", "1000"),
    ];
    let mut s = Server::start_in(dir.path(), &env, &[]);
    setup(&s).await;
    const OPS: usize = 150; // 100 failed logins and 50 login + logout pairs
    let answered: Arc<Answered> = Arc::default();
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (base, answered, unexpected, next) =
            (s.base.clone(), answered.clone(), unexpected.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= OPS || load_op(&base, i, &answered, &unexpected).await.is_none() {
                    return;
                }
            }
        }));
    }
    while answered.lock().unwrap().len() < 60 && !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(s.child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    for w in workers {
        w.await.unwrap();
    }
    let st = s.child.wait().unwrap();
    assert!(!st.success(), "killed: {st:?}");
    drop(s);
    let answered = answered.lock().unwrap().clone();
    assert!(unexpected.lock().unwrap().is_empty(), "{:?}", unexpected.lock().unwrap());
    assert!(answered.len() >= 60, "{}", answered.len());
    eprintln!("answered before SIGKILL: {} of about 200 requests", answered.len());

    // The restarted server continues the chain.
    let mut s = Server::start_in(dir.path(), &env, &[]);
    login(&s, ADMIN_EMAIL, ADMIN_PW).await;
    assert!(s.terminate().success());

    let pool = sqlite(dir.path()).await;
    let rows = sqlx::query("SELECT body FROM audit_events").fetch_all(&pool).await.unwrap();
    pool.close().await;
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for r in &rows {
        let ev: Value = serde_json::from_str(&r.get::<String, _>("body")).unwrap();
        if let Some(rid) = ev["request_id"].as_str() {
            stored.entry(rid.to_owned()).or_default().push(ev["event"].as_str().unwrap().into());
        }
    }
    for (kind, rid) in &answered {
        let kinds = stored.get(rid).map(Vec::as_slice).unwrap_or_default();
        assert!(kinds.iter().any(|k| k == kind), "answered request {rid} lost its {kind} event");
    }
    let (code, report, out) = verify_cli(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], rows.len());
}

#[tokio::test]
async fn export_prints_every_event_as_a_json_line_and_since_filters_by_time() {
    let mut s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    for _ in 0..3 {
        assert_eq!(u.get("/api/admin/users").await.status(), 403);
    }
    assert!(s.terminate().success());

    let (code, out, err) = run(&s.dir, &["audit", "export"], &[]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pool = sqlite(&s.dir).await;
    let rows = sqlx::query("SELECT body FROM audit_events ORDER BY seq").fetch_all(&pool).await;
    let bodies: Vec<Value> = rows
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String, _>("body")).unwrap())
        .collect();
    pool.close().await;
    assert_eq!(events.len(), 7);
    assert_eq!(events, bodies, "one line per stored event, oldest first");

    let pivot = events[3]["ts"].as_str().unwrap().to_owned();
    let since = export(&s.dir, &["--since", &pivot]);
    let expected: Vec<Value> =
        events.iter().filter(|e| e["ts"].as_str().unwrap() >= pivot.as_str()).cloned().collect();
    assert_eq!(since, expected);
    assert!(!since.is_empty() && since.len() < events.len(), "{pivot}");
    assert!(export(&s.dir, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let (code, out, err) = run(&s.dir, &["audit", "export", "--since", "notatime"], &[]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("RFC 3339"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Admin routes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_method_on_an_admin_route_is_refused_by_the_admin_check_first() {
    let s = Server::start(&[NO_RATE_LIMIT]);
    let a = admin(&s).await;
    create_user(&a, USER_EMAIL).await;
    let u = login(&s, USER_EMAIL, USER_PW).await;
    let r = client().get(s.url("/api/admin/users/some-id")).send().await.unwrap();
    assert_eq!(r.status(), 401, "anonymous");
    let r = u.get("/api/admin/users/some-id").await;
    assert_eq!(r.status(), 403, "non-admin");
    assert_eq!(a.events(&[("event", "access_denied")]).await.len(), 1);
}
