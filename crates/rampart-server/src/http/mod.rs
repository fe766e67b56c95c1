//! The HTTP application: routes and the middleware stack.
//!
//! Order, outermost first: request id + client IP + access log, security headers, panic
//! catcher, request timeout, then the routes. Errors of every kind, 404 and 405 included, use
//! the one JSON error shape.

pub mod health;
pub mod input;
pub mod observe;
pub mod request_id;

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Builds the application router with every layer.
pub fn app(state: AppState) -> Router {
    app_with_routes(state, Router::new())
}

/// Builds the application with extra routes inside the full middleware stack (for embedding and
/// tests).
pub fn app_with_routes(state: AppState, extra: Router<AppState>) -> Router {
    let timeout = state.config.limits.request_timeout;
    let routes = Router::new()
        .merge(health::routes())
        .merge(crate::routes::api(&state))
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let routes = crate::gateway::proxy::install(routes, &state);

    let protect = crate::protection::Protection::from_state(&state);
    routes
        .layer(
            ServiceBuilder::new()
                .layer(observe::ObserveLayer::new(state.clone()))
                .layer(protect.headers)
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(axum::middleware::map_response(timeout_response))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
                .option_layer(protect.cors)
                .layer(protect.methods)
                .layer(crate::gateway::proxy::BodyLimits::new(protect.body_limit, &state.config))
                .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::middleware))
                .option_layer(protect.rate_limit)
                .layer(crate::gateway::proxy::ProxyCsrf::from_state(&state))
                .option_layer(protect.csrf),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
}

/// The request timeout layer answers a bare 408; give it the error shape.
async fn timeout_response(res: Response) -> Response {
    if res.status() == StatusCode::REQUEST_TIMEOUT
        && res.extensions().get::<crate::error::ErrorCode>().is_none()
    {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long",
        )
        .into_response();
    }
    res
}

fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The payload may hold internal detail: it is neither logged in full nor sent.
    tracing::error!(request_id = %request_id::current_request_id(), "a handler panicked");
    ApiError::internal().into_response()
}

/// A path safe to log: at most 200 characters, control characters replaced.
pub fn loggable_path(path: &str) -> String {
    path.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
