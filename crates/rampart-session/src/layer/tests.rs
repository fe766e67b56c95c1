use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use rampart_core::{Keyring, ManualClock, MasterKey};
use tower::ServiceExt;

use super::*;
use crate::manager::tests::TestStore;
use crate::record::SessionTimeouts;

struct Fixture {
    app: Router,
    store: Arc<TestStore>,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    let clock = ManualClock::at_epoch();
    let store = Arc::new(TestStore::new(&clock));
    let manager = SessionManager::new(
        store.clone(),
        Keyring::new(MasterKey::generate(), vec![]),
        SessionTimeouts::default(),
        Arc::new(clock.clone()),
    );
    let m = manager.clone();
    let login = move || {
        let m = m.clone();
        async move {
            match m.create("alice", None, None, "password").await {
                Ok((id, _)) => (SetSession::Start(id), "welcome").into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    };
    let m = manager.clone();
    let logout = move |s: Session| {
        let m = m.clone();
        async move {
            let _ = m.revoke(&s.key).await;
            SetSession::End
        }
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(|s: Session| async move { s.record.user_id.clone() }))
        .route(
            "/maybe",
            get(|OptionalSession(s): OptionalSession| async move {
                s.map_or_else(|| "anonymous".to_owned(), |s| s.record.user_id.clone())
            }),
        )
        .layer(SessionLayer::new(manager, CookieConfig::default()));
    Fixture { app, store, clock }
}

fn req(method: &str, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri).header("x-request-id", "req-1");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

async fn body(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn set_cookies(res: &Response) -> Vec<String> {
    res.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn no_store(res: &Response) -> bool {
    res.headers().get(CACHE_CONTROL).is_some_and(|v| v == "no-store")
}

async fn login(f: &Fixture) -> String {
    let res = f.app.clone().oneshot(req("POST", "/login", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 1);
    cookies[0].split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn login_sets_the_host_cookie_and_forbids_caching() {
    let f = fixture();
    let res = f.app.clone().oneshot(req("POST", "/login", None)).await.unwrap();
    assert!(no_store(&res));
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 1);
    assert!(cookies[0].starts_with("__Host-rampart_session="));
    assert!(cookies[0].ends_with("; HttpOnly; Path=/; Secure; SameSite=Lax"));
    assert!(res.extensions().get::<SetSession>().is_none(), "the directive is consumed");
    assert_eq!(f.store.inner.len(), 1);
}

#[tokio::test]
async fn the_cookie_authenticates_later_requests_without_setting_cookies() {
    let f = fixture();
    let cookie = login(&f).await;
    let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert!(!no_store(&res));
    assert!(res.extensions().get::<SessionEvent>().is_none());
    assert_eq!(body(res).await, "alice");
}

#[tokio::test]
async fn anonymous_requests_create_no_session_and_no_cookie() {
    let f = fixture();
    let res = f.app.clone().oneshot(req("GET", "/maybe", None)).await.unwrap();
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body(res).await, "anonymous");
    assert_eq!(f.store.inner.len(), 0);
}

#[tokio::test]
async fn protected_route_without_session_is_401_in_the_json_error_shape() {
    let f = fixture();
    let res = f.app.clone().oneshot(req("GET", "/me", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
    let rejection = res.extensions().get::<SessionRejection>().cloned().unwrap();
    assert_eq!(rejection.kind, SessionRejectionKind::Unauthenticated);
    let json: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"error": {"code": "unauthenticated", "message": "authentication required", "request_id": "req-1"}})
    );
}

#[tokio::test]
async fn malformed_cookie_is_cleared_and_reported() {
    let f = fixture();
    let res = f
        .app
        .clone()
        .oneshot(req("GET", "/maybe", Some("__Host-rampart_session=not-an-id")))
        .await
        .unwrap();
    assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::InvalidToken));
    assert_eq!(
        set_cookies(&res),
        vec!["__Host-rampart_session=; HttpOnly; Path=/; Secure; SameSite=Lax; Max-Age=0"]
    );
    assert!(no_store(&res));
    assert_eq!(body(res).await, "anonymous");
}

#[tokio::test]
async fn unknown_session_is_cleared_and_reported() {
    let f = fixture();
    let forged = format!(
        "__Host-rampart_session={}",
        SessionId::generate().to_cookie_value().expose_secret()
    );
    let res = f.app.clone().oneshot(req("GET", "/me", Some(&forged))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::UnknownSession));
    assert_eq!(set_cookies(&res).len(), 1);
    assert!(set_cookies(&res)[0].ends_with("Max-Age=0"));
}

#[tokio::test]
async fn expired_session_is_reported_with_its_user() {
    let f = fixture();
    let cookie = login(&f).await;
    f.clock.advance(time::Duration::minutes(31));
    let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    match res.extensions().get::<SessionEvent>() {
        Some(SessionEvent::ExpiredIdle { user_id, .. }) => assert_eq!(user_id, "alice"),
        other => panic!("expected idle expiry, got {other:?}"),
    }
    assert!(set_cookies(&res)[0].ends_with("Max-Age=0"));
}

#[tokio::test]
async fn store_outage_is_503_not_signed_out() {
    let f = fixture();
    let cookie = login(&f).await;
    f.store.unavailable.store(true, Ordering::SeqCst);
    let res = f.app.clone().oneshot(req("GET", "/maybe", Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(set_cookies(&res).is_empty(), "the cookie is kept for when the store is back");
    assert_eq!(
        res.extensions().get::<SessionRejection>().map(|r| r.kind),
        Some(SessionRejectionKind::StoreUnavailable)
    );
    let json: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
    assert_eq!(json["error"]["code"], "session_store_unavailable");
    assert_eq!(json["error"]["request_id"], "req-1");
    // Anonymous requests do not touch the store at all.
    let res = f.app.clone().oneshot(req("GET", "/maybe", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_and_clears_the_cookie() {
    let f = fixture();
    let cookie = login(&f).await;
    let res = f.app.clone().oneshot(req("POST", "/logout", Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(no_store(&res));
    assert!(set_cookies(&res)[0].ends_with("Max-Age=0"));
    assert_eq!(f.store.inner.len(), 0);
    let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_new_login_replaces_a_bad_cookie_instead_of_clearing_it() {
    let f = fixture();
    let res = f
        .app
        .clone()
        .oneshot(req("POST", "/login", Some("__Host-rampart_session=garbage")))
        .await
        .unwrap();
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 1);
    assert!(!cookies[0].contains("Max-Age=0"));
    assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::InvalidToken));
}

/// Every outcome, once with a store that answers on the spot (the memory store's path: no
/// boxed future) and once with one that must be awaited (networked stores' path).
#[tokio::test]
async fn a_store_answering_on_the_spot_gives_the_same_outcomes_as_an_awaited_one() {
    for now in [true, false] {
        let f = fixture();
        f.store.answers_now.store(now, Ordering::SeqCst);
        let loads_before = f.store.async_loads.load(Ordering::SeqCst);

        // Live session: authenticated, no cookie written.
        let cookie = login(&f).await;
        let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "answers now: {now}");
        assert!(set_cookies(&res).is_empty());
        assert_eq!(body(res).await, "alice");

        // Unknown id: cleared and reported.
        let unknown = format!(
            "__Host-rampart_session={}",
            SessionId::generate().to_cookie_value().expose_secret()
        );
        let res = f.app.clone().oneshot(req("GET", "/maybe", Some(&unknown))).await.unwrap();
        assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::UnknownSession));
        assert!(set_cookies(&res)[0].ends_with("Max-Age=0"));

        // Store down: 503, cookie kept.
        f.store.unavailable.store(true, Ordering::SeqCst);
        let res = f.app.clone().oneshot(req("GET", "/maybe", Some(&cookie))).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "answers now: {now}");
        assert!(set_cookies(&res).is_empty());
        f.store.unavailable.store(false, Ordering::SeqCst);

        // Unreadable record: treated as unknown and deleted.
        f.store.corrupt.store(true, Ordering::SeqCst);
        let res = f.app.clone().oneshot(req("GET", "/maybe", Some(&cookie))).await.unwrap();
        assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::UnknownSession));
        assert_eq!(f.store.inner.len(), 0, "answers now: {now}");
        f.store.corrupt.store(false, Ordering::SeqCst);

        // Idle past the timeout: reported with its user, deleted, and not revived by the touch
        // the load made on its way.
        let cookie = login(&f).await;
        f.clock.advance(time::Duration::minutes(31));
        let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "answers now: {now}");
        match res.extensions().get::<SessionEvent>() {
            Some(SessionEvent::ExpiredIdle { user_id, .. }) => assert_eq!(user_id, "alice"),
            other => panic!("expected idle expiry, got {other:?}"),
        }
        assert_eq!(f.store.inner.len(), 0, "answers now: {now}");
        let res = f.app.clone().oneshot(req("GET", "/me", Some(&cookie))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.extensions().get::<SessionEvent>(), Some(&SessionEvent::UnknownSession));

        // Which path was taken: the awaited load only when the store cannot answer now.
        let awaited = f.store.async_loads.load(Ordering::SeqCst) - loads_before;
        if now {
            assert_eq!(awaited, 0, "a store answering on the spot is never awaited");
        } else {
            assert_eq!(awaited, 6, "every cookie request awaited the store");
        }
    }
}
