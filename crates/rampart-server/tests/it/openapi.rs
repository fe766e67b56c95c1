//! The OpenAPI document served by the running server, and that every operation it lists is a
//! route the server has.

use serde_json::{json, Value};

use crate::support::{self, Server};

#[tokio::test]
async fn the_served_document_is_the_checked_in_one_and_names_only_real_routes() {
    let s = Server::start(&[("RAMPART_RATE_LIMIT", "100000/1s"), ("RAMPART_SIGNUP", "open")]);
    let c = support::client();
    let served: Value =
        c.get(s.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");

    // Log in as admin so protected routes answer with something other than 401.
    let origin = s.base.clone();
    let pw = "correct-horse-battery-staple-42";
    c.post(s.url("/api/setup"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":pw}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(s.url("/api/auth/login"))
        .header("origin", &origin)
        .json(&json!({"email":"admin@example.com","password":pw}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path == "/api/auth/logout" {
                continue;
            }
            let concrete = path.replace("{id}", "does-not-exist").replace("{provider}", "nope");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = c
                .request(m, s.url(&concrete))
                .header("origin", &origin)
                .header("x-csrf-token", &token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is not a route");
            assert!(status < 500, "{method} {path} answered {status}: {body}");
            if status == 404 {
                assert!(path.contains('{'), "{method} {path} is not a route: {body}");
            }
        }
    }
}
