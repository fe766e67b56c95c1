//! Integration tests against a real Redis (`RAMPART_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Without Redis they print a skip line, except under `CI=true`,
//! where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ratelimit;
mod session;
