//! Integration tests: the layers stacked the way the server stacks them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stack;
