//! An axum app behind every rampart-protect layer.
//!
//! Run with `cargo run -p rampart-protect --example axum_protect`, then for example:
//! `curl -i -X POST localhost:3000/api/notes -H 'content-type: application/json' -d '{"text":"hi"}'`
//! (refused: no Origin or Fetch Metadata while the demo session is "logged in").

use axum::extract::{Extension, Request};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Router, ServiceExt};
use std::net::SocketAddr;
use tower::ServiceBuilder;

use rampart_core::{Keyring, MasterKey, TrustedProxies};
use rampart_protect::cors::CorsConfig;
use rampart_protect::csrf::{csrf_token_for, CsrfConfig, CsrfContext, CsrfLayer};
use rampart_protect::headers::{CspNonce, SecurityHeadersConfig, SecurityHeadersLayer};
use rampart_protect::input::{ApiJson, BodyLimitLayer};
use rampart_protect::{ClientIpLayer, CorsLayer, MethodGuardLayer, Origin};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    text: String,
}

async fn create_note(ApiJson(note): ApiJson<Note>) -> String {
    format!("stored {} characters\n", note.text.chars().count())
}

async fn page(
    Extension(nonce): Extension<CspNonce>,
    Extension(ctx): Extension<CsrfContext>,
) -> Html<String> {
    let token = ctx.expected_token.map(|t| t.expose_secret().to_owned()).unwrap_or_default();
    Html(format!(
        "<!doctype html><form method=post action=/logout>\
         <input type=hidden name=csrf_token value=\"{token}\"><button>Log out</button></form>\
         <script nonce=\"{}\">console.log('allowed by the nonce')</script>",
        nonce.as_str()
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let public = Origin::parse("http://localhost:3000")?;
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    // A real server authenticates the session cookie and inserts the context per request;
    // this demo pretends every request carries the same session.
    let context = CsrfContext::session(csrf_token_for(&keyring, b"demo-session-id"));

    let csrf = CsrfConfig::new(public.clone())
        .with_origin_only_prefix("/api/auth/login")
        .with_origin_only_prefix("/login");
    let headers = SecurityHeadersConfig::strict()
        .with_hsts(public.is_https())
        .with_no_referrer_prefix("/login");

    let routes = Router::new()
        .route("/", get(page))
        .route("/api/notes", post(create_note))
        .route("/logout", post(|| async { "logged out\n" }));
    // The stack goes around the whole router, outermost first: it then also covers answers the
    // router gives itself (404, 405), and each request clones the stack once. `Router::layer`
    // would box the stack into every route and clone that box per request instead.
    let app = ServiceBuilder::new()
        .layer(SecurityHeadersLayer::new(headers))
        .layer(MethodGuardLayer::new())
        .layer(CorsLayer::new(CorsConfig::new()))
        // Before anything that counts or records clients; believes no forwarding headers here.
        .layer(ClientIpLayer::new(TrustedProxies::none()))
        .layer(Extension(context))
        .layer(CsrfLayer::new(csrf))
        .layer(BodyLimitLayer::new(64 * 1024))
        .service(routes);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // The client IP layer needs the socket peer.
    let app = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    axum::serve(listener, app).await?;
    Ok(())
}
