//! JSON API routes.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod pseudonymize;
pub mod setup;
pub mod vault;

use axum::Router;

use crate::state::AppState;

/// Every API route.
pub fn api(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(crate::openapi::routes())
        .merge(setup::routes())
        .merge(auth::routes())
        .merge(api_keys::routes())
        .merge(vault::routes())
        .merge(pseudonymize::routes(state))
        .merge(crate::pages::routes())
        .merge(crate::gateway::routes())
        .nest("/api/admin", admin::routes(state))
}
