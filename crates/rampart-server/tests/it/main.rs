//! Black-box tests of the `rampart` binary over real sockets, with real SQLite, Postgres and Redis.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod accounts;
mod audit_log;
mod audit_ops;
mod faults;
mod foundation;
mod gateway_pages;
mod inprocess;
mod keys_vault;
mod openapi;
mod protection;
mod proxy_tls;
mod sessions;
mod support;
