//! Tests that run the application in this process, for behaviour no real route triggers.

use axum::routing::get;
use axum::Router;
use rampart_server::config::{Config, RawValues};
use rampart_server::state::AppState;
use tokio_util::sync::CancellationToken;

/// Serves `extra` routes inside the full middleware stack on a loopback port.
pub async fn serve_with(
    extra: Router<AppState>,
    env: &[(&str, &str)],
) -> (String, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = RawValues::default();
    let data = dir.path().join("data").display().to_string();
    let mut vars = vec![("RAMPART_DATA_DIR".to_string(), data)];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    raw.apply_env(vars).unwrap();
    let config = Config::from_raw(&raw).unwrap();
    let state = rampart_server::startup::build_state(config).await.unwrap();
    let app = rampart_server::http::app_with_routes(state, extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        rampart_server::startup::run_server(listener, app, std::time::Duration::from_secs(2), t)
            .await;
    });
    (base, token, dir)
}

#[tokio::test]
async fn a_panicking_handler_gives_a_500_in_the_error_shape_and_the_server_keeps_serving() {
    let extra = Router::new().route(
        "/boom",
        get(|| async {
            #[allow(clippy::panic)]
            let v: u8 = if std::hint::black_box(true) {
                panic!("internal detail SELECT * FROM users")
            } else {
                1
            };
            v.to_string()
        }),
    );
    let (base, stop, _dir) = serve_with(extra, &[]).await;
    let c = crate::support::client();
    let r = c.get(format!("{base}/boom")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    assert!(!text.contains("SELECT") && !text.contains("internal detail"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(crate::support::error_code(&body), "internal_error");
    assert_eq!(body["error"]["request_id"], rid.as_str());
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still serving after a panic");
    stop.cancel();
}

#[tokio::test]
async fn slow_requests_time_out_with_408_in_the_error_shape() {
    let extra = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            "late"
        }),
    );
    let (base, stop, _dir) = serve_with(extra, &[("RAMPART_REQUEST_TIMEOUT", "1s")]).await;
    let r = crate::support::client().get(format!("{base}/slow")).send().await.unwrap();
    assert_eq!(r.status(), 408);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(crate::support::error_code(&body), "request_timeout");
    stop.cancel();
}
