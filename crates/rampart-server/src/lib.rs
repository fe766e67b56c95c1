//! The `rampart` security gateway: configuration, CLI, HTTP application and startup.
//!
//! Run `rampart serve` for a server with embedded defaults (SQLite, in-memory sessions, a
//! generated development key). See the README for every setting.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod audit_cli;
pub mod audit_store;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod protection;
pub mod pseudonymize;
pub mod routes;
pub mod startup;
pub mod state;
pub mod stores;
pub mod tls;
pub mod vault;
pub mod workers;
