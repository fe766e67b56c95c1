//! A small axum app limited by `RateLimitLayer` with an in-memory store.
//!
//! Run with `cargo run -p rampart-ratelimit --example axum_ratelimit`, then:
//!
//! ```text
//! for i in $(seq 1 7); do curl -si -X POST http://127.0.0.1:3001/login | head -1; done
//! curl -si -X POST http://127.0.0.1:3001/items      # see RateLimit-Policy and RateLimit
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::Method;
use rampart_core::{SystemClock, TrustedProxies};
use rampart_ratelimit::{KeyKind, MemoryRateLimitStore, RateLimitLayer, Rule};

/// Resolves the client address (no proxies trusted here) the way the Rampart server does.
async fn client_ip(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let ip = TrustedProxies::none().resolve(peer.ip(), &[], &[]);
        req.extensions_mut().insert(ip);
    }
    next.run(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryRateLimitStore::new(100_000, SystemClock::shared()));
    let login = Rule {
        name: "login".into(),
        methods: vec![Method::POST],
        path_prefix: "/login".into(),
        key: KeyKind::ClientIp,
        quotas: vec!["5/1m".parse()?],
    };
    let rules = vec![login, Rule::default_rule()];

    let app = Router::new()
        .route("/", get(|| async { "reads are not limited by the default rule\n" }))
        .route("/login", post(|| async { "login attempt\n" }))
        .route("/items", post(|| async { "created\n" }))
        .layer(RateLimitLayer::new(store, rules))
        .layer(middleware::from_fn(client_ip));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
