//! The baseline servers.
//!
//! `plain` is the ceiling: routing and JSON only. `stack` is what an application would assemble
//! from published crates to get what Rampart gives for `GET /api/auth/me`: a server-side session
//! looked up from a cookie, a per-client-IP rate limiter on unsafe methods, and security headers.
//! Both answer the same JSON shape as Rampart:
//! `{"user":{"id","email","role","disabled","created_at"},
//!   "session":{"id","created_at","last_seen_at","idle_expires_at","absolute_expires_at"}}`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore;

use crate::StoreKind;

pub(crate) const USER_ID: &str = "0194f7a2-5b6e-7c3d-8e9f-0a1b2c3d4e5f";
pub(crate) const EMAIL: &str = "bench@example.com";
pub(crate) const USER_CREATED_AT: &str = "2025-01-01T00:00:00Z";
/// Same idle and absolute timeouts as Rampart's defaults.
const IDLE: Duration = Duration::minutes(30);
const ABSOLUTE: Duration = Duration::hours(12);
const SESSION_KEY: &str = "auth";

/// The wall clock. The baselines stand for applications written without Rampart, so they read
/// the system clock directly instead of an injected one.
#[allow(clippy::disallowed_methods)]
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Serves `app` on `addr` with a multi-threaded runtime until SIGINT/SIGTERM.
pub(crate) fn run(app: Router, addr: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(app, addr))
}

pub(crate) async fn serve(app: Router, addr: SocketAddr) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// [`serve`] for a service that is not a bare [`Router`] (a router inside layers), with the
/// peer address as `ConnectInfo` as [`serve`] gives it.
pub(crate) async fn serve_service<S>(svc: S, addr: SocketAddr) -> anyhow::Result<()>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    let make = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        SocketAddr,
    >(svc);
    axum::serve(listener, make).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The ceiling: one route, no layers.
pub(crate) fn plain() -> Router {
    Router::new().route("/api/auth/me", get(plain_me)).route("/healthz", get(|| async { "ok" }))
}

async fn plain_me() -> Json<Value> {
    let now = now();
    Json(json!({
        "user": {
            "id": USER_ID,
            "email": EMAIL,
            "role": "admin",
            "disabled": false,
            "created_at": USER_CREATED_AT,
        },
        "session": {
            "id": "s-plain",
            "created_at": rfc3339(now),
            "last_seen_at": rfc3339(now),
            "idle_expires_at": rfc3339(now + IDLE),
            "absolute_expires_at": rfc3339(now + ABSOLUTE),
        }
    }))
}

/// The tiny upstream for proxy benchmarks.
pub(crate) fn upstream() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                Html("<!doctype html><html><head><title>upstream</title></head><body><h1>hello from upstream</h1></body></html>")
            }),
        )
        .route("/json", get(|| async { Json(json!({"ok": true, "service": "upstream"})) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/headers", get(echo_headers))
}

/// The request's headers as `name: value` lines, one per header: what a proxy in front sent,
/// for the script to copy into the `nginx-bytes` baseline.
async fn echo_headers(headers: axum::http::HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

/// The bare reverse proxy: every request goes to `upstream` over kept-alive HTTP/1.1
/// connections of the hyper client (the client Rampart's proxy uses), with `X-Forwarded-For`
/// and `X-Forwarded-Proto` set as the nginx baseline sets them, and the answer comes back as it
/// is. No hop-by-hop header handling beyond `Connection`: the benchmark's requests carry none.
pub(crate) fn hyper_proxy(upstream: SocketAddr) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let Ok(uri) = format!("http://{upstream}{path}").parse() else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            parts.uri = uri;
            parts.headers.remove(header::CONNECTION);
            if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
                parts.headers.insert(HeaderName::from_static("x-forwarded-for"), v);
            }
            parts.headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static("http"),
            );
            match client.request(Request::from_parts(parts, body)).await {
                Ok(res) => res.map(Body::new),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    })
}

/// What the stack keeps in the session after a login.
#[derive(Serialize, Deserialize)]
struct AuthState {
    user_id: String,
    email: String,
    role: String,
    created_at: String,
    login_at: i64,
    /// Public handle of the session (the cookie value is never echoed).
    handle: String,
}

static HANDLES: AtomicU64 = AtomicU64::new(1);

/// Starts the stack baseline with the chosen store.
pub(crate) fn run_stack(store: StoreKind, redis_url: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let app = match store {
            StoreKind::Memory => stack(MemoryStore::default())?,
            StoreKind::Redis => {
                let config = Config::from_url(redis_url).context("redis url")?;
                let pool = Pool::new(config, None, None, None, 4)?;
                let _task = pool.connect();
                pool.wait_for_connect().await.context("connect to redis")?;
                stack(RedisStore::new(pool))?
            }
        };
        serve(app, addr).await
    })
}

fn stack<S: SessionStore + Clone>(store: S) -> anyhow::Result<Router> {
    // Rate limit unsafe methods per peer IP, like Rampart's default rule (50 per 10 s burst,
    // refilled at 5/s); reads pass the limiter's method check and go on.
    let governor = GovernorConfigBuilder::default()
        .per_millisecond(200)
        .burst_size(50)
        .methods(vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .finish()
        .context("rate limiter config")?;
    let sessions = SessionManagerLayer::new(store)
        .with_name("stack_session")
        .with_secure(false)
        .with_http_only(true)
        .with_same_site(tower_sessions::cookie::SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(IDLE));
    let headers: [(HeaderName, &'static str); 8] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), geolocation=(), microphone=(), payment=(), usb=()",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    let mut router = Router::new()
        .route("/login", post(stack_login))
        .route("/api/auth/me", get(stack_me))
        .route("/healthz", get(|| async { "ok" }))
        .layer(sessions)
        .layer(GovernorLayer::new(Arc::new(governor)));
    for (name, value) in headers {
        router = router
            .layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)));
    }
    Ok(router)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"code": "unauthenticated", "message": "log in first", "request_id": ""}})),
    )
        .into_response()
}

fn internal() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": {"code": "internal", "message": "internal error", "request_id": ""}})),
    )
        .into_response()
}

/// Puts the user into a fresh session (new id: no fixation).
async fn stack_login(session: Session) -> Response {
    if session.cycle_id().await.is_err() {
        return internal();
    }
    let state = AuthState {
        user_id: USER_ID.to_owned(),
        email: EMAIL.to_owned(),
        role: "admin".to_owned(),
        created_at: USER_CREATED_AT.to_owned(),
        login_at: now().unix_timestamp(),
        handle: format!("s{}", HANDLES.fetch_add(1, Ordering::Relaxed)),
    };
    match session.insert(SESSION_KEY, state).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => internal(),
    }
}

async fn stack_me(session: Session) -> Response {
    let state: AuthState = match session.get(SESSION_KEY).await {
        Ok(Some(s)) => s,
        Ok(None) => return unauthorized(),
        Err(_) => return internal(),
    };
    let now = now();
    let login = OffsetDateTime::from_unix_timestamp(state.login_at).unwrap_or(now);
    if now > login + ABSOLUTE {
        return unauthorized();
    }
    Json(json!({
        "user": {
            "id": state.user_id,
            "email": state.email,
            "role": state.role,
            "disabled": false,
            "created_at": state.created_at,
        },
        "session": {
            "id": state.handle,
            "created_at": rfc3339(login),
            "last_seen_at": rfc3339(now),
            "idle_expires_at": rfc3339(session.expiry_date()),
            "absolute_expires_at": rfc3339(login + ABSOLUTE),
        }
    }))
    .into_response()
}

/// Serves a router built per thread on `threads` single-threaded runtimes, each with its own
/// listener on the same port (`SO_REUSEPORT`): no task ever moves between threads, and each
/// thread's router has its own client and connection pool. Rampart hands connections to its
/// loops from one listener instead; for the benchmark's kept-alive connections both spread the
/// work alike.
pub(crate) fn run_per_core(
    make: impl Fn() -> Router + Send + Sync + 'static,
    addr: SocketAddr,
    threads: usize,
) -> anyhow::Result<()> {
    let make = Arc::new(make);
    let std_listener = std::net::TcpListener::bind(addr)?;
    let bound = std_listener.local_addr()?;
    drop(std_listener);
    // Each thread reports once its listener is bound, so "listening" is printed only when every
    // thread takes connections.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let make = Arc::clone(&make);
        let bound_tx = bound_tx.clone();
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let listen = || -> std::io::Result<tokio::net::TcpListener> {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.set_reuseport(true)?;
                    socket.set_reuseaddr(true)?;
                    socket.bind(bound)?;
                    socket.listen(1024)
                };
                let listener = match listen() {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound_tx.send(Err(anyhow::anyhow!("bind {bound}: {e}")));
                        return Ok(());
                    }
                };
                let _ = bound_tx.send(Ok(()));
                let app = make();
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(shutdown())
                    .await?;
                Ok(())
            })
        }));
    }
    drop(bound_tx);
    for _ in 0..threads {
        bound_rx.recv().context("a serving thread ended before binding")??;
    }
    println!("listening on http://{bound}");
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    Ok(())
}
