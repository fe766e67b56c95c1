//! Benchmark: per-request cost of the protection stack (security headers, method guard,
//! CSRF, body limit) around a small JSON handler, beside the bare handler in the same run.
//!
//! Run in release mode only: `cargo run --release -p rampart-protect --example bench_stack`
//! (or `scripts/microbench`). Prints progress on stderr and one JSON object as the last line of
//! stdout.
//!
//! Requests are driven in-process with `ready` + `call` on one thread (current-thread tokio
//! runtime), response bodies read to the end. Each request carries what the server's
//! authentication adds before these layers: a `ClientIp` and a `CsrfContext` for a session.
//! Bare and protected rounds are interleaved; the fastest round of each is reported.
//!
//! This gives the stack's cost in nanoseconds per request and per layer. It is not the
//! throughput goal (at most 10% lost): a server's throughput includes HTTP parsing and socket
//! I/O, which this loop leaves out, so the goal is measured over HTTP by `./scripts/bench`
//! (`lib-protect` beside `plain`), and here the ratio only shows how the layers compare with a
//! handler that does almost nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use http::{Method, Request, StatusCode};
use rampart_core::{ClientIp, Keyring, MasterKey};
use rampart_protect::csrf::{csrf_token_for, CsrfConfig, CsrfContext, CsrfLayer};
use rampart_protect::headers::{SecurityHeadersConfig, SecurityHeadersLayer};
use rampart_protect::{BodyLimitLayer, MethodGuardLayer, Origin};
use serde_json::{json, Value};
use tower::{Service, ServiceExt};

/// Interleaved rounds and time per round for the main comparison.
const MAIN: (usize, Duration) = (5, Duration::from_millis(800));
/// The same for the per-layer breakdown.
const BREAKDOWN: (usize, Duration) = (3, Duration::from_millis(400));
const PUBLIC: &str = "https://auth.example.com";

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// The fastest round: the one least disturbed by other work on the machine.
fn best(v: Vec<f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

async fn list() -> Json<Value> {
    Json(json!({"items": [{"id": 1, "name": "widget"}], "next": null}))
}

async fn create(body: Bytes) -> Json<Value> {
    Json(json!({"id": 42, "created": true, "bytes": body.len()}))
}

fn routes() -> Router {
    Router::new().route("/api/items", get(list).post(create))
}

/// A request as it reaches these layers in the server: after authentication of the session.
fn request(method: &Method, token: &str, ctx: &CsrfContext, i: u32) -> Request<Body> {
    let builder = Request::builder()
        .method(method.clone())
        .uri("/api/items")
        .header("host", "auth.example.com")
        .header("accept", "application/json")
        .header("sec-fetch-site", "same-origin")
        .header("x-request-id", "bench-request-0001");
    let mut req = if *method == Method::POST {
        let body = r#"{"name":"widget","price":12}"#;
        builder
            .header("origin", PUBLIC)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .header("x-csrf-token", token)
            .body(Body::from(body))
    } else {
        builder.body(Body::empty())
    }
    .expect("request");
    let ip = Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff));
    req.extensions_mut().insert(ClientIp(IpAddr::V4(ip)));
    req.extensions_mut().insert(ctx.clone());
    req
}

/// Drives `svc` for `time`: (requests per second, 200 answers, requests).
async fn drive<S>(
    svc: &mut S,
    method: &Method,
    token: &str,
    ctx: &CsrfContext,
    time: Duration,
) -> (f64, u64, u64)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let started = Instant::now();
    let (mut n, mut ok) = (0u64, 0u64);
    loop {
        for _ in 0..256 {
            let req = request(method, token, ctx, n as u32);
            let res = svc.ready().await.expect("ready").call(req).await.expect("call");
            ok += u64::from(res.status() == StatusCode::OK);
            let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
            black_box(body);
            n += 1;
        }
        if started.elapsed() >= time {
            break;
        }
    }
    (n as f64 / started.elapsed().as_secs_f64(), ok, n)
}

struct Pair {
    bare: f64,
    stack: f64,
    stack_ok: u64,
    stack_n: u64,
}

async fn compare(
    bare: &mut Router,
    stack: &mut Router,
    method: &Method,
    token: &str,
    ctx: &CsrfContext,
    (rounds, time): (usize, Duration),
) -> Pair {
    let (mut b, mut s) = (Vec::new(), Vec::new());
    let (mut stack_ok, mut stack_n) = (0, 0);
    for _ in 0..rounds {
        b.push(drive(bare, method, token, ctx, time).await.0);
        let (rate, ok, n) = drive(stack, method, token, ctx, time).await;
        s.push(rate);
        stack_ok += ok;
        stack_n += n;
    }
    Pair { bare: best(b), stack: best(s), stack_ok, stack_n }
}

fn figure(name: &str, p: &Pair) -> Value {
    let ratio = p.stack / p.bare;
    json!({
        "name": name, "value": p.stack.round(), "unit": "req/s",
        "baseline": p.bare.round(), "baseline_name": "bare handler, same requests",
        "ratio": round(ratio, 3), "better": "higher",
        // No goal here: see the module docs.
        "target": null,
        "met": null,
    })
}

fn added_ns(p: &Pair) -> f64 {
    (1e9 / p.stack - 1e9 / p.bare).round()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let token = csrf_token_for(&keyring, b"bench-session-id");
    let ctx = CsrfContext::session(token.clone());
    let token = token.expose_secret().to_owned();
    let public = Origin::parse(PUBLIC).expect("origin");

    let mut bare = routes();
    let mut stack = routes()
        .layer(BodyLimitLayer::new(1 << 20))
        .layer(CsrfLayer::new(
            CsrfConfig::new(public.clone()).with_origin_only_prefix("/api/auth/login"),
        ))
        .layer(MethodGuardLayer::new())
        .layer(SecurityHeadersLayer::new(SecurityHeadersConfig::strict()));

    eprintln!("[bench_stack] GET, {} interleaved rounds", MAIN.0);
    let get_pair = compare(&mut bare, &mut stack, &Method::GET, &token, &ctx, MAIN).await;
    eprintln!("[bench_stack] session-authenticated POST with a valid token");
    let post_pair = compare(&mut bare, &mut stack, &Method::POST, &token, &ctx, MAIN).await;

    // Where the time goes: each layer alone around the same routes, POST requests.
    eprintln!("[bench_stack] breakdown: each layer alone (POST)");
    let mut breakdown = serde_json::Map::new();
    let public = Origin::parse(PUBLIC).expect("origin");
    let alone: [(&str, Router); 4] = [
        (
            "security_headers",
            routes().layer(SecurityHeadersLayer::new(SecurityHeadersConfig::strict())),
        ),
        ("method_guard", routes().layer(MethodGuardLayer::new())),
        ("csrf", routes().layer(CsrfLayer::new(CsrfConfig::new(public)))),
        ("body_limit", routes().layer(BodyLimitLayer::new(1 << 20))),
    ];
    for (name, mut svc) in alone {
        let pair = compare(&mut bare, &mut svc, &Method::POST, &token, &ctx, BREAKDOWN).await;
        breakdown.insert(format!("post_added_ns_{name}_alone"), json!(added_ns(&pair)));
    }

    let mut out = json!({
        "bench": "protect-stack",
        "crate": "rampart-protect",
        "title": "Protection stack per request: SecurityHeaders + MethodGuard + CSRF + BodyLimit",
        "figures": [
            figure("GET /api/items through the stack", &get_pair),
            figure("POST /api/items (session, valid CSRF token) through the stack", &post_pair),
        ],
        "facts": {
            "get_added_ns_per_request": added_ns(&get_pair),
            "post_added_ns_per_request": added_ns(&post_pair),
            "get_stack_requests": get_pair.stack_n,
            "get_stack_answered_200": get_pair.stack_ok,
            "post_stack_requests": post_pair.stack_n,
            "post_stack_answered_200": post_pair.stack_ok,
            "rounds": MAIN.0,
            "round_ms": MAIN.1.as_millis(),
        },
        "notes": [
            "post_added_ns_*_alone: each layer alone around the same routes (POST, 3 rounds of 400 ms), to show where the time goes; the parts need not add up to the whole.",
            "Layer order as the crate documents it, outermost first: security headers (strict preset), method guard, CSRF, body limit (1 MiB), then the routes.",
            "No goal: the throughput goal (at most 10% lost) is measured over HTTP (lib-protect beside plain in docs/benchmarks.md); in-process, with no HTTP parsing or socket I/O, the ratio only compares the layers with a handler that does almost nothing.",
            "Bare and protected rounds are interleaved; the fastest round of each is reported (the least disturbed by other work on the machine).",
            "Requests carry Sec-Fetch-Site: same-origin; the POST also Origin, X-CSRF-Token and a 28-byte JSON body. Every protected answer must be 200 (see *_answered_200).",
        ],
    });
    if let Some(facts) = out.get_mut("facts").and_then(Value::as_object_mut) {
        facts.extend(breakdown);
    }
    println!("{out}");
}
