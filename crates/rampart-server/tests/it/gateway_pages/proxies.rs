//! End to end behind real reverse proxies: nginx `auth_request` and Caddy (`forward_auth`, written
//! out as in docs/deploy/caddy.md because Caddy 2.6 `copy_headers` leaks placeholders), each
//! in front of an upstream app that echoes the headers it receives.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::forward_auth::verify_assertion;
use super::{bare, free_port, hidden_value, page_login, start_gw, Gw, USER, USER_PW};

/// The rules of these runs: `/public` is open, the rest needs a login.
const RULES: &str =
    "[[access_rules.rule]]\nname = \"public\"\npath = \"/public\"\npolicy = \"public\"\n";

/// Identity headers a client tries to smuggle to the upstream.
pub const SPOOFED: &[(&str, &str)] = &[
    ("Remote-User", "spoofed-user"),
    ("Remote-Email", "spoofed@evil.example"),
    ("Remote-Groups", "admin"),
    ("Remote-Name", "spoofed-name"),
    ("X-Remote-User", "spoofed-user"),
    ("X-Forwarded-User", "spoofed-user"),
    ("X-Forwarded-Email", "spoofed@evil.example"),
    ("X-Forwarded-Preferred-Username", "spoofed-user"),
    ("X-Auth-Request-User", "spoofed-user"),
    ("X-Auth-Request-Email", "spoofed@evil.example"),
    ("X-Rampart-Assertion", "spoofed.jwt.value"),
    ("X-User", "spoofed-user"),
    ("X-User-Id", "spoofed-user"),
    ("X-Email", "spoofed@evil.example"),
    ("Remote_User", "spoofed-user"),
    ("X_Forwarded_User", "spoofed-user"),
    ("X_Rampart_Assertion", "spoofed.jwt.value"),
    ("X_Auth_Request_User", "spoofed-user"),
    ("X_User_Id", "spoofed-user"),
    ("X_Remote_User", "spoofed-user"),
    ("REMOTE_EMAIL", "spoofed@evil.example"),
];

/// An upstream app on a free port answering every request with
/// `{"method","uri","headers":{name:[values]}}`.
pub async fn echo_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    async fn echo(req: axum::extract::Request) -> axum::Json<Value> {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in req.headers() {
            headers
                .entry(k.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        axum::Json(json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(echo);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

/// A proxy process of the test's own; stopped on drop.
pub struct Proc {
    child: Child,
    pub base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    /// SIGTERM first, so the proxy stops its own worker processes (a SIGKILLed nginx master
    /// leaves its workers running), then SIGKILL if it has not exited within 5 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Headers nginx must clear itself (it cannot remove header families by pattern).
const NGINX_CLEARED: &[&str] = &[
    "Remote-Name",
    "X-Remote-User",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Preferred-Username",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-User",
    "X-User-Id",
    "X-Email",
];

/// The start of an nginx configuration running in the foreground with every path (pid, logs,
/// temporary files) inside `dir`, up to and including the opening of the `http` block.
fn nginx_prelude(dir: &Path, connections: u32) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections {connections}; }}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;"
    )
}

pub fn nginx_config(dir: &Path, port: u16, rampart: u16, upstream: u16) -> String {
    let to_rampart = format!(
        "proxy_pass http://127.0.0.1:{rampart};\n      proxy_set_header Host $http_host;\n      \
         proxy_set_header X-Forwarded-For $remote_addr;\n      proxy_set_header X-Forwarded-Proto $scheme;"
    );
    let cleared: String =
        NGINX_CLEARED.iter().map(|h| format!("      proxy_set_header {h} \"\";\n")).collect();
    let prelude = nginx_prelude(dir, 128);
    format!(
        r#"{prelude}
  absolute_redirect off;
  server {{
    listen 127.0.0.1:{port};
    location = /auth/verify {{
      internal;
      proxy_pass http://127.0.0.1:{rampart}/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
    location /login {{ {to_rampart} }}
    location /logout {{ {to_rampart} }}
    location /account {{ {to_rampart} }}
    location /api/ {{ {to_rampart} }}
    location = /.well-known/jwks.json {{ {to_rampart} }}
    location / {{
      auth_request /auth/verify;
      auth_request_set $rampart_user $upstream_http_remote_user;
      auth_request_set $rampart_email $upstream_http_remote_email;
      auth_request_set $rampart_groups $upstream_http_remote_groups;
      auth_request_set $rampart_assertion $upstream_http_x_rampart_assertion;
      auth_request_set $rampart_login $upstream_http_location;
      error_page 401 = @rampart_login;
      proxy_set_header Remote-User $rampart_user;
      proxy_set_header Remote-Email $rampart_email;
      proxy_set_header Remote-Groups $rampart_groups;
      proxy_set_header X-Rampart-Assertion $rampart_assertion;
{cleared}      proxy_pass http://127.0.0.1:{upstream};
    }}
    location @rampart_login {{ return 302 $rampart_login; }}
  }}
}}
"#
    )
}

pub fn start_nginx(port: u16, rampart: u16, upstream: u16) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let config = nginx_config(dir.path(), port, rampart, upstream);
    spawn_nginx(dir, &config, port)
}

/// nginx as a plain round-robin load balancer on `port` in front of `backends` (Rampart
/// instances), passing the client address in `X-Forwarded-For`.
pub fn start_nginx_balancer(port: u16, backends: &[u16]) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let servers: String =
        backends.iter().map(|b| format!("    server 127.0.0.1:{b} max_fails=0;\n")).collect();
    let prelude = nginx_prelude(dir.path(), 512);
    let config = format!(
        r#"{prelude}
  upstream rampart {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://rampart;
      proxy_next_upstream off;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"#
    );
    spawn_nginx(dir, &config, port)
}

fn spawn_nginx(dir: tempfile::TempDir, config: &str, port: u16) -> Proc {
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "nginx", &log);
    Proc { child, base: format!("http://127.0.0.1:{port}"), log, _dir: dir }
}

pub fn caddyfile(port: u16, rampart: u16, upstream: u16) -> String {
    format!(
        r#"{{
	admin off
	auto_https off
}}
http://127.0.0.1:{port} {{
	request_header -Remote-*
	request_header -Remote_*
	request_header -X-Remote-*
	request_header -X-Remote_*
	request_header -X_remote_*
	request_header -X-Forwarded-User
	request_header -X-Forwarded-Email
	request_header -X-Forwarded-Preferred-Username
	request_header -X_Forwarded_User
	request_header -X_Forwarded_Email
	request_header -X_Forwarded_Preferred_Username
	request_header -X-Auth-Request-*
	request_header -X-Auth-Request_*
	request_header -X_auth_request_*
	request_header -X-Rampart-*
	request_header -X-Rampart_*
	request_header -X_rampart_*
	request_header -X-User
	request_header -X-User-Id
	request_header -X-Email
	request_header -X_User
	request_header -X_User_Id
	request_header -X_Email
	@rampart path /login /login/* /logout /account /account/* /api/* /.well-known/jwks.json
	handle @rampart {{
		reverse_proxy 127.0.0.1:{rampart}
	}}
	handle {{
		reverse_proxy 127.0.0.1:{rampart} {{
			method GET
			rewrite /auth/verify?redirect=1
			header_up X-Forwarded-Method {{method}}
			header_up X-Forwarded-Uri {{uri}}
			@signed_in {{
				status 2xx
				header Remote-User *
			}}
			handle_response @signed_in {{
				request_header Remote-User {{rp.header.Remote-User}}
				request_header Remote-Email {{rp.header.Remote-Email}}
				request_header Remote-Groups {{rp.header.Remote-Groups}}
				request_header X-Rampart-Assertion {{rp.header.X-Rampart-Assertion}}
			}}
			@allowed status 2xx
			handle_response @allowed {{
				request_header -Remote-User
			}}
		}}
		reverse_proxy 127.0.0.1:{upstream}
	}}
}}
"#
    )
}

pub fn start_caddy(port: u16, rampart: u16, upstream: u16) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("Caddyfile");
    std::fs::write(&conf, caddyfile(port, rampart, upstream)).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "caddy", &log);
    Proc { child, base: format!("http://127.0.0.1:{port}"), log, _dir: dir }
}

/// Rampart whose public origin is the proxy's, trusting the proxy on loopback.
pub fn rampart_behind(proxy_port: u16) -> (Gw, u16) {
    let origin = format!("http://127.0.0.1:{proxy_port}");
    let gw = start_gw(
        RULES,
        &[("RAMPART_PUBLIC_ORIGIN", &origin), ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")],
    );
    let port: u16 = gw.s.base.rsplit(':').next().unwrap().parse().unwrap();
    (gw, port)
}

fn with_spoofs(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    SPOOFED.iter().fold(rb, |rb, (k, v)| rb.header(*k, *v))
}

/// No spoofed value reached the upstream under any header name.
fn assert_no_spoofs(echo: &Value) {
    for (name, values) in echo["headers"].as_object().unwrap() {
        for v in values.as_array().unwrap() {
            let v = v.as_str().unwrap();
            assert!(
                !v.contains("spoofed") && v != "admin",
                "spoofed value reached the upstream: {name}: {v}"
            );
        }
        assert!(!name.contains('_'), "underscore header reached the upstream: {name}");
    }
}

/// The whole flow through one proxy at `p.base`.
async fn exercise(p: &Proc, gw: &Gw, anonymous_status: StatusCode) {
    let base = &p.base;
    let jwks: Value = bare()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Anonymous: sent to the login page with the way back.
    let r =
        with_spoofs(bare().get(format!("{base}/app/page?x=1&y=2")).header("accept", "text/html"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), anonymous_status, "{}", p.log());
    assert_eq!(r.headers()["location"], "/login?return_to=%2Fapp%2Fpage%3Fx%3D1%26y%3D2");

    // Public: reaches the upstream anonymously, without any identity.
    let r = with_spoofs(bare().get(format!("{base}/public/hello"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", p.log());
    let echo: Value = r.json().await.unwrap();
    assert_no_spoofs(&echo);
    assert!(echo["headers"].get("remote-user").is_none(), "{echo}");

    // Log in through the proxy, landing where the login page was asked to go.
    let c = crate::support::client();
    let r = page_login(&c, base, base, USER, USER_PW, Some("/app/page?x=1&y=2")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", p.log());
    assert_eq!(r.headers()["location"], "/app/page?x=1&y=2");
    let me: Value =
        c.get(format!("{base}/api/auth/me")).send().await.unwrap().json().await.unwrap();

    // The upstream sees Rampart's identity and a valid assertion, never the client's.
    // The POST comes from the app's own page, so the browser sends its origin.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let rb = c
            .request(method.clone(), format!("{base}/app/page?x=1&y=2"))
            .header("origin", base.as_str());
        let r = with_spoofs(rb).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{method}: {}", p.log());
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["uri"], "/app/page?x=1&y=2");
        let h = &echo["headers"];
        assert_eq!(h["remote-user"], json!([me["user"]["id"]]), "{echo}");
        assert_eq!(h["remote-email"], json!([USER]));
        assert_eq!(h["remote-groups"], json!(["user"]));
        let jwt = h["x-rampart-assertion"][0].as_str().unwrap();
        let claims = verify_assertion(jwt, &jwks);
        assert_eq!(claims["sub"], me["user"]["id"]);
        assert_eq!(claims["aud"], gw.origin.as_str());
        assert_no_spoofs(&echo);
    }
    // A cross-site POST with the same cookie is refused before it reaches the app.
    let r = c
        .post(format!("{base}/app/page"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", p.log());

    // Log out through the proxy (POST with the page's token), then anonymous again.
    let html = c.get(format!("{base}/logout")).send().await.unwrap().text().await.unwrap();
    let token = hidden_value(&html, "csrf_token").expect("logout form");
    let r = c
        .post(format!("{base}/logout"))
        .header("origin", base.as_str())
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(format!("{base}/app/page")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), anonymous_status);
    assert_eq!(r.headers()["location"], "/login?return_to=%2Fapp%2Fpage");
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_app() {
    if !super::have("nginx", "nginx auth_request end-to-end test") {
        return;
    }
    let (upstream, task) = echo_upstream().await;
    let port = free_port();
    let (gw, rampart) = rampart_behind(port);
    gw.accounts().await;
    let p = start_nginx(port, rampart, upstream);
    exercise(&p, &gw, StatusCode::FOUND).await;
    task.abort();
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_app() {
    if !super::have("caddy", "Caddy forward_auth end-to-end test") {
        return;
    }
    let (upstream, task) = echo_upstream().await;
    let port = free_port();
    let (gw, rampart) = rampart_behind(port);
    gw.accounts().await;
    let p = start_caddy(port, rampart, upstream);
    exercise(&p, &gw, StatusCode::FOUND).await;
    task.abort();
}
