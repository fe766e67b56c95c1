//! The reverse proxy and native TLS, against a real upstream app started here and the real
//! `rampart` binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{error_code, run, Server, KEY};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "correct horse battery staple";
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The upstream app

#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<AtomicUsize>,
}

/// FNV-1a over a byte stream, to compare what was sent with what arrived.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn digest(bytes: &[u8]) -> u64 {
    let mut f = Fnv::new();
    f.update(bytes);
    f.0
}

/// Echoes the method, target, headers, and the length and digest of the body.
async fn echo(State(up): State<Upstream>, req: Request<Body>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into());
    }
    let (mut len, mut fnv) = (0usize, Fnv::new());
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            len += data.len();
            fnv.update(&data);
        }
    }
    let mut res = axum::Json(json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "len": len,
        "digest": fnv.0.to_string(),
    }))
    .into_response();
    let h = res.headers_mut();
    h.append("set-cookie", "app=1; Path=/".parse().unwrap());
    h.append("set-cookie", "__Host-rampart_session=planted; Path=/; Secure".parse().unwrap());
    h.append("set-cookie", "rampart_session=planted; Path=/".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("proxy-authenticate", "Basic".parse().unwrap());
    res
}

async fn page() -> Response {
    (
        [
            ("content-type", "text/html; charset=utf-8"),
            ("content-security-policy", "default-src 'self'"),
        ],
        "<!doctype html><p>upstream page</p>",
    )
        .into_response()
}

/// `size` bytes of the pattern in 64 KiB chunks, a little pause before each.
async fn download(Path(size): Path<usize>) -> Response {
    let data = pattern(size);
    let chunks: Vec<Vec<u8>> = data.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
        let chunk = it.next()?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), it))
    });
    Body::from_stream(stream).into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3)).await;
    "late"
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(t) = msg {
                if socket.send(Message::Text(t)).await.is_err() {
                    break;
                }
            }
        }
    })
}

fn upstream_app(up: Upstream) -> Router {
    Router::new()
        .route("/page", get(page))
        .route("/download/{size}", get(download))
        .route("/slow", get(slow))
        .route("/ws", any(ws))
        .fallback(echo)
        .with_state(up)
}

/// Serves the upstream on a loopback port (HTTPS with `tls`); returns its address.
async fn start_upstream(
    up: Upstream,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        rampart_server::startup::run_server_tls(
            listener,
            upstream_app(up),
            Duration::from_secs(5),
            tls,
            None,
            s,
        )
        .await;
    });
    (addr, stop)
}

// ---------------------------------------------------------------------------------------------
// Rampart in front of it

const RULES: &str = r#"
[[access_rules.rule]]
name = "public"
paths = ["/public"]
policy = "public"

[[access_rules.rule]]
name = "hooks"
paths = ["/hooks"]
policy = "authenticated"
csrf = false

[[access_rules.rule]]
name = "closed"
paths = ["/closed"]
policy = "deny"
"#;

/// Rampart with the test rules in front of `upstream`; the directory lives as long as the server.
fn start_rampart(upstream: &str, extra: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rampart.toml");
    std::fs::write(&rules, RULES).unwrap();
    let rules = rules.display().to_string();
    let mut env = vec![
        ("RAMPART_UPSTREAM", upstream),
        ("RAMPART_CONFIG", rules.as_str()),
        ("RAMPART_ARGON2_MEMORY_KIB", "8192"),
        ("RAMPART_ARGON2_ITERATIONS", "1"),
    ];
    env.extend_from_slice(extra);
    (Server::start_in(dir.path(), &env, &[]), dir)
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Completes setup and logs in; returns the `Cookie` header value for the session.
async fn login(s: &Server) -> String {
    let c = plain();
    let creds = json!({"email": ADMIN, "password": ADMIN_PW});
    let r =
        c.post(s.url("/api/setup")).header("origin", &s.base).json(&creds).send().await.unwrap();
    assert!(r.status() == 201 || r.status() == 409, "setup: {}", r.status());
    let r = c
        .post(s.url("/api/auth/login"))
        .header("origin", &s.base)
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

struct Fixture {
    up: Upstream,
    upstream: SocketAddr,
    stop: CancellationToken,
    rampart: Server,
    _dir: tempfile::TempDir,
    cookie: String,
}

async fn fixture(extra: &[(&str, &str)]) -> Fixture {
    let up = Upstream::default();
    let (upstream, stop) = start_upstream(up.clone(), None).await;
    let (rampart, _dir) = start_rampart(&format!("http://{upstream}"), extra);
    let cookie = login(&rampart).await;
    Fixture { up, upstream, stop, rampart, _dir, cookie }
}

// ---------------------------------------------------------------------------------------------
// Proxy tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_reaches_the_upstream_only_after_login_and_spoofed_headers_never_do() {
    let f = fixture(&[]).await;
    let c = plain();
    let spoofs = [
        "Remote-User",
        "remote_user",
        "REMOTE-USER",
        "Remote-Email",
        "Remote-Groups",
        "X-Forwarded-User",
        "x_forwarded_email",
        "X-Rampart-Assertion",
        "x_rampart_assertion",
        "X-Auth-Request-User",
        "X-Forwarded-For",
        "X_Forwarded_Host",
        "X-Forwarded-Proto",
        "Forwarded",
        "X-Real-IP",
        "X-Original-URL",
        "X-HTTP-Method-Override",
        "X-WEBAUTH-USER",
        "X-Auth-User",
        "X-Authenticated-User",
        "Remote-Role",
        "X-Groups",
        "Client-IP",
        "CF-Connecting-IP",
        "X-Original-Host",
        "X-Original-Method",
        "Proxy",
        "Proxy-Custom",
        "proxy_status",
    ];
    let spoofed = |rb: reqwest::RequestBuilder| {
        spoofs.iter().fold(rb, |rb, name| rb.header(*name, "spoofed"))
    };

    // Anonymous: refused before the upstream.
    let r = spoofed(c.get(f.rampart.url("/app/data"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&json_of(r).await), "unauthenticated");
    assert_eq!(f.up.hits.load(Ordering::SeqCst), 0);

    // Public rule: reaches the upstream without any identity.
    let echo = json_of(spoofed(c.get(f.rampart.url("/public/x"))).send().await.unwrap()).await;
    assert_eq!(f.up.hits.load(Ordering::SeqCst), 1);
    assert!(!echo.to_string().contains("spoofed"), "{echo}");
    assert_eq!(header(&echo, "remote-user"), None);

    let r = spoofed(c.get(f.rampart.url("/app/data?q=1")))
        .header("cookie", format!("app=1; {}; theme=dark", f.cookie))
        .header("authorization", "Bearer upstream-token")
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = json_of(r).await;
    assert!(!echo.to_string().contains("spoofed"), "a spoofed header passed: {echo}");
    assert_eq!(echo["uri"], "/app/data?q=1");
    assert!(!header(&echo, "remote-user").unwrap().is_empty());
    assert_eq!(header(&echo, "remote-email"), Some(ADMIN));
    assert_eq!(header(&echo, "remote-groups"), Some("admin"));
    assert_eq!(header(&echo, "x-rampart-assertion").unwrap().split('.').count(), 3);
    for hop in ["connection", "x-hop-secret", "keep-alive", "proxy-authorization", "te"] {
        assert_eq!(header(&echo, hop), None, "{hop} was forwarded: {echo}");
    }
    assert_eq!(header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("http"));
    let public = f.rampart.base.trim_start_matches("http://");
    assert_eq!(header(&echo, "x-forwarded-host"), Some(public));
    assert_eq!(header(&echo, "host"), Some(f.upstream.to_string().as_str()));
    assert_eq!(header(&echo, "cookie"), Some("app=1; theme=dark"));
    assert_eq!(header(&echo, "authorization"), Some("Bearer upstream-token"));
    assert!(header(&echo, "x-request-id").is_some());
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_navigation_is_sent_to_login_and_api_calls_get_401() {
    let f = fixture(&[]).await;
    let c = plain();
    let r = c
        .get(f.rampart.url("/docs/page?x=1&y=a%2Fb"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?return_to=/docs/page%3Fx%3D1%26y%3Da%252Fb");
    let r = c.get(f.rampart.url("/docs/page")).header("accept", "application/json").send().await;
    assert_eq!(r.unwrap().status(), 401);
    let r = c.post(f.rampart.url("/docs/page")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&json_of(r).await), "unauthenticated");
    // Rampart's own paths are never proxied.
    let r = c.get(f.rampart.url("/api/nope")).header("cookie", &f.cookie).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // A deny rule refuses even the admin.
    let r = c.get(f.rampart.url("/closed/x")).header("cookie", &f.cookie).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&json_of(r).await), "forbidden");
    assert_eq!(f.up.hits.load(Ordering::SeqCst), 0);
    let denials = || async {
        let r = c
            .get(f.rampart.url("/api/admin/audit?event=access_denied"))
            .header("cookie", &f.cookie)
            .send()
            .await
            .unwrap();
        json_of(r).await
    };
    let events = denials().await;
    let denied = &events["events"][0];
    assert_eq!(denied["outcome"], "denied", "{events}");
    assert_eq!(denied["actor"]["email"], ADMIN, "{events}");
    assert_eq!(denied["details"]["rule"], "closed");
    assert_eq!(denied["details"]["path"], "/closed/x");
    // Other paths under the same rule within the minute, in any letter case (many upstreams
    // route `/CLOSED` like `/closed`): refused, never proxied, and not audited again (a caller
    // cycling through paths cannot write an event per request).
    for path in ["/closed/y", "/closed/z", "/CLOSED/x", "/Closed"] {
        let r = c.get(f.rampart.url(path)).header("cookie", &f.cookie).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(f.up.hits.load(Ordering::SeqCst), 0);
    let events = denials().await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1), "{events}");
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabyte_bodies_stream_both_ways_and_the_limit_holds() {
    let f = fixture(&[("RAMPART_PROXY_BODY_LIMIT", "7340032")]).await;
    let c = plain();
    let upload = pattern(5 * MIB);
    let r = c
        .post(f.rampart.url("/upload"))
        .header("cookie", &f.cookie)
        .header("origin", &f.rampart.base)
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = json_of(r).await;
    assert_eq!(echo["len"], 5 * MIB);
    assert_eq!(echo["digest"], digest(&upload).to_string());

    let r = c.get(f.rampart.url(&format!("/download/{}", 5 * MIB))).header("cookie", &f.cookie);
    let bytes = r.send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len(), 5 * MIB);
    assert_eq!(digest(&bytes), digest(&pattern(5 * MIB)));

    // Over the limit: declared, and streamed without a length. Sent over a raw socket that stops
    // writing once the answer arrives, so the 413 is read rather than lost to a reset caused by
    // the unread rest of the upload.
    let hits = f.up.hits.load(Ordering::SeqCst);
    for chunked in [false, true] {
        let (status, body) = oversized_upload(&f.rampart.base, &f.cookie, 8 * MIB, chunked).await;
        assert_eq!(status, 413, "chunked={chunked}: {body}");
        assert!(body.contains("\"payload_too_large\""), "chunked={chunked}: {body}");
    }
    assert!(f.up.hits.load(Ordering::SeqCst) <= hits + 1);
    f.stop.cancel();
}

/// Sends `request` over a raw socket (then half-closes it when `stop_sending`), and returns the
/// status and the raw answer.
async fn raw_exchange(base: &str, request: &[u8], stop_sending: bool) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    if stop_sending {
        s.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_body_is_the_clients_400_not_an_upstream_502() {
    let f = fixture(&[]).await;
    let addr = f.rampart.base.trim_start_matches("http://");
    let head = |framing: &str| {
        format!(
            "POST /upload HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nCookie: {}\r\n\
             Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n",
            f.rampart.base, f.cookie
        )
    };
    let broken = [
        // A chunk size that is not hex.
        format!("{}5x\r\nhello\r\n0\r\n\r\n", head("Transfer-Encoding: chunked")),
        // Fewer bytes than declared, then the client stops sending.
        format!("{}hello", head("Content-Length: 100")),
    ];
    for request in &broken {
        let (status, text) = raw_exchange(&f.rampart.base, request.as_bytes(), true).await;
        assert_eq!(status, 400, "{request:?}: {text}");
        assert!(text.contains("\"invalid_request\""), "{text}");
        assert!(!text.contains("upstream_unavailable"), "{text}");
    }
    // A whole body still goes through.
    let whole = format!("{}hello", head("Content-Length: 5"));
    let (status, text) = raw_exchange(&f.rampart.base, whole.as_bytes(), false).await;
    assert_eq!(status, 200, "{text}");
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_chain_reaches_the_upstream_as_x_forwarded_for() {
    let f = fixture(&[("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let c = plain();
    let ask = |name: &'static str, value: &'static str| {
        c.get(f.rampart.url("/app/data")).header("cookie", &f.cookie).header(name, value).send()
    };
    let echo = json_of(ask("forwarded", "for=8.8.8.8;proto=https").await.unwrap()).await;
    assert_eq!(header(&echo, "x-forwarded-for"), Some("8.8.8.8, 127.0.0.1"), "{echo}");
    assert_eq!(header(&echo, "forwarded"), None, "{echo}");
    let echo = json_of(ask("x-forwarded-for", "9.9.9.9").await.unwrap()).await;
    assert_eq!(header(&echo, "x-forwarded-for"), Some("9.9.9.9, 127.0.0.1"), "{echo}");
    f.stop.cancel();
}

/// POSTs `len` bytes to `/upload` in 256 KiB pieces (with a `Content-Length`, or chunked),
/// stopping as soon as an answer arrives; returns its status and its raw text.
async fn oversized_upload(base: &str, cookie: &str, len: usize, chunked: bool) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\nOrigin: {base}\r\nCookie: {cookie}\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let data = pattern(len);
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for piece in data.chunks(256 * 1024) {
        // An answer already waiting ends the upload.
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
        let framed = if chunked {
            let mut v = format!("{:x}\r\n", piece.len()).into_bytes();
            v.extend_from_slice(piece);
            v.extend_from_slice(b"\r\n");
            v
        } else {
            piece.to_vec()
        };
        if s.write_all(&framed).await.is_err() {
            break;
        }
    }
    // Read the rest of the answer (the server closes after it).
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A WebSocket handshake over a raw socket; returns the status and the socket.
async fn ws_handshake(base: &str, origin: &str, cookie: &str) -> (u16, tokio::net::TcpStream) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: {origin}\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed during the handshake");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_works_after_login_and_a_foreign_origin_is_refused() {
    let f = fixture(&[]).await;
    let (status, mut s) = ws_handshake(&f.rampart.base, &f.rampart.base, &f.cookie).await;
    assert_eq!(status, 101);
    // One masked text frame, "hello through rampart".
    let payload = b"hello through rampart";
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut head = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(head[0], 0x81, "a final text frame");
    let mut echoed = vec![0u8; usize::from(head[1] & 0x7f)];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, payload);

    let (status, _) = ws_handshake(&f.rampart.base, "https://evil.example", &f.cookie).await;
    assert_eq!(status, 403);
    let (status, _) = ws_handshake(&f.rampart.base, &f.rampart.base, "app=1").await;
    assert_eq!(status, 401);
    f.stop.cancel();
}

/// Logs `email` in; returns the session cookie and the CSRF token.
async fn login_as(s: &Server, email: &str, password: &str) -> (String, String) {
    let r = plain()
        .post(s.url("/api/auth/login"))
        .header("origin", &s.base)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = json_of(r).await["csrf_token"].as_str().unwrap().to_owned();
    (cookie, token)
}

/// The verified claims of the assertion the upstream received for a proxied GET with `cookie`.
async fn asserted(s: &Server, cookie: &str, jwks: &Value) -> Value {
    let r = plain().get(s.url("/app/me")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo = json_of(r).await;
    let claims = crate::gateway_pages::forward_auth::verify_assertion(
        header(&echo, "x-rampart-assertion").unwrap(),
        jwks,
    );
    assert_eq!(header(&echo, "remote-groups"), claims["role"].as_str());
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 60, "{claims}");
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_assertions_follow_role_changes_and_revocation_at_once() {
    const BOB: &str = "bob@example.com";
    const BOB_PW: &str = "tangerine-violin-orbit-77";
    let f = fixture(&[]).await;
    let jwks =
        json_of(plain().get(f.rampart.url("/.well-known/jwks.json")).send().await.unwrap()).await;
    let (admin, token) = login_as(&f.rampart, ADMIN, ADMIN_PW).await;
    let admin_req = |m: reqwest::Method, path: &str| {
        plain()
            .request(m, f.rampart.url(path))
            .header("origin", &f.rampart.base)
            .header("cookie", &admin)
            .header("x-csrf-token", &token)
    };
    let r = admin_req(reqwest::Method::POST, "/api/admin/users")
        .json(&json!({"email": BOB, "password": BOB_PW, "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bob_id = json_of(r).await["user"]["id"].as_str().unwrap().to_owned();

    // The same session, again and again: each assertion verifies and says `user`.
    let (bob, _) = login_as(&f.rampart, BOB, BOB_PW).await;
    let first = asserted(&f.rampart, &bob, &jwks).await;
    assert_eq!((first["role"].as_str(), first["sub"].as_str()), (Some("user"), Some(&*bob_id)));
    for _ in 0..3 {
        let again = asserted(&f.rampart, &bob, &jwks).await;
        assert_eq!((&again["role"], &again["sid"]), (&first["role"], &first["sid"]));
    }

    // Promoted: the role change ends the session, so nothing is asserted for it any more.
    let r = admin_req(reqwest::Method::PATCH, &format!("/api/admin/users/{bob_id}"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let hits = f.up.hits.load(Ordering::SeqCst);
    let r = plain().get(f.rampart.url("/app/me")).header("cookie", &bob).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(f.up.hits.load(Ordering::SeqCst), hits, "a revoked session reached the upstream");

    // A new session is asserted with the new role at once.
    let (bob, _) = login_as(&f.rampart, BOB, BOB_PW).await;
    let promoted = asserted(&f.rampart, &bob, &jwks).await;
    assert_eq!(promoted["role"], "admin");
    assert_ne!(promoted["sid"], first["sid"]);
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_is_502_and_a_slow_one_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (down, _dir) = start_rampart(&format!("http://127.0.0.1:{port}"), &[]);
    let cookie = login(&down).await;
    let r = plain().get(down.url("/x")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(error_code(&json_of(r).await), "upstream_unavailable");

    let f = fixture(&[("RAMPART_UPSTREAM_TIMEOUT", "1s")]).await;
    let started = std::time::Instant::now();
    let r = plain().get(f.rampart.url("/slow")).header("cookie", &f.cookie).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2900), "answered before the upstream");
    assert_eq!(error_code(&json_of(r).await), "upstream_timeout");
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_proxied_request_in_flight_finish() {
    let mut f = fixture(&[]).await;
    let (url, cookie) = (f.rampart.url("/slow"), f.cookie.clone());
    let in_flight =
        tokio::spawn(async move { plain().get(url).header("cookie", cookie).send().await });
    // The upstream holds the answer 3 s; stop Rampart while it waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rampart = f.rampart;
    let stopped = tokio::task::spawn_blocking(move || (rampart.terminate(), rampart)).await;
    let (status, rampart) = stopped.unwrap();
    assert!(status.success(), "{status:?}");
    let r = in_flight.await.unwrap().expect("the request in flight was cut");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "late");
    assert!(rampart.output().contains("shutting down gracefully"));
    f.rampart = rampart;
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_refuses_cross_site_cookie_posts_unless_the_rule_turns_it_off() {
    let f = fixture(&[]).await;
    let c = plain();
    let post = |path: &str| c.post(f.rampart.url(path)).header("cookie", &f.cookie).body("a=1");
    let r = post("/app/form").header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&json_of(r).await), "csrf_rejected");
    let r = post("/app/form").header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(post("/app/form").send().await.unwrap().status(), 403, "no origin at all");
    assert_eq!(f.up.hits.load(Ordering::SeqCst), 0);
    // Same origin passes without a Rampart token: the upstream app cannot know it.
    let r = post("/app/form").header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/app/form").header("origin", &f.rampart.base).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // `csrf = false` on the matching rule.
    let r = post("/hooks/in").header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 200);
    f.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answers_get_security_headers_keep_their_csp_and_cookies_pass() {
    let f = fixture(&[]).await;
    let r = plain().get(f.rampart.url("/page")).header("cookie", &f.cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-security-policy"], "default-src 'self'");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store", "authenticated answers are not cached");
    assert!(r.text().await.unwrap().contains("upstream page"));

    let r = plain().get(f.rampart.url("/any")).header("cookie", &f.cookie).send().await.unwrap();
    let h: &HeaderMap = r.headers();
    let cookies: Vec<&str> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies, vec!["app=1; Path=/"], "only the app's own cookie passes");
    assert!(h.get("keep-alive").is_none() && h.get("proxy-authenticate").is_none());
    assert_eq!(h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert!(h.contains_key("x-request-id"));
    f.stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Cert {
    _dir: tempfile::TempDir,
    cert: String,
    key: String,
    pem: String,
}

fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pem = ck.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Cert { cert: cert.display().to_string(), key: key.display().to_string(), pem, _dir: dir }
}

fn tls_client(cert: &Cert, http2: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap();
    let b = reqwest::Client::builder().add_root_certificate(root).timeout(Duration::from_secs(30));
    let b = if http2 { b } else { b.http1_only() };
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_and_proxies_to_an_https_upstream() {
    let cert = self_signed();
    let settings = rampart_server::config::proxy::TlsSettings {
        cert_file: cert.cert.clone().into(),
        key_file: cert.key.clone().into(),
    };
    let acceptor = rampart_server::tls::acceptor(&settings).unwrap();
    let up = Upstream::default();
    let (upstream, stop) = start_upstream(up.clone(), Some(acceptor)).await;
    let (s, _dir) = start_rampart(
        &format!("https://localhost:{}", upstream.port()),
        &[
            ("RAMPART_TLS_CERT_FILE", &cert.cert),
            ("RAMPART_TLS_KEY_FILE", &cert.key),
            ("RAMPART_UPSTREAM_CA_FILE", &cert.cert),
            ("RAMPART_HEADER_READ_TIMEOUT", "2s"),
        ],
    );
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    for (http2, version) in [(false, reqwest::Version::HTTP_11), (true, reqwest::Version::HTTP_2)] {
        let r = tls_client(&cert, http2).get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
        assert!(r.headers()["strict-transport-security"].to_str().unwrap().contains("max-age"));
    }
    // Over HTTP/2 to Rampart, then TLS to the upstream, with the __Host- cookie.
    let c = tls_client(&cert, true);
    let creds = json!({"email": ADMIN, "password": ADMIN_PW});
    let r =
        c.post(s.url("/api/setup")).header("origin", &s.base).json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = c.post(s.url("/api/auth/login")).header("origin", &s.base).json(&creds).send().await;
    let r = r.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-rampart_session="), "{cookie}");
    let r = c.get(s.url("/secure/data")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let echo = json_of(r).await;
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&echo, "remote-email"), Some(ADMIN));
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
    stop.cancel();

    // A client that never starts its handshake is cut off after the header-read timeout.
    let addr = s.base.trim_start_matches("https://");
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "still open: {read:?}");
}

#[test]
fn tls_startup_refuses_a_missing_or_invalid_file_naming_the_setting() {
    let cert = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.display().to_string();
    let prod = [
        ("RAMPART_ENV", "production"),
        ("RAMPART_SECRET_KEY", KEY),
        ("RAMPART_PUBLIC_ORIGIN", "https://auth.example.com"),
        ("RAMPART_LISTEN", "127.0.0.1:0"),
    ];
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("RAMPART_TLS_CERT_FILE", &cert.cert),
                ("RAMPART_TLS_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "RAMPART_TLS_KEY_FILE",
        ),
        (&[("RAMPART_TLS_CERT_FILE", &cert.cert)], "RAMPART_TLS_KEY_FILE"),
        (
            &[("RAMPART_TLS_CERT_FILE", &garbage), ("RAMPART_TLS_KEY_FILE", &cert.key)],
            "RAMPART_TLS_CERT_FILE",
        ),
        (
            &[("RAMPART_TLS_CERT_FILE", &cert.cert), ("RAMPART_TLS_KEY_FILE", &garbage)],
            "RAMPART_TLS_KEY_FILE",
        ),
    ];
    for (tls, setting) in cases {
        let mut env = prod.to_vec();
        env.extend_from_slice(tls);
        let (code, _, stderr) = run(dir.path(), &["serve"], &env);
        assert_ne!(code, 0, "{tls:?}");
        assert!(stderr.contains(setting), "{tls:?}: {stderr}");
    }
}
