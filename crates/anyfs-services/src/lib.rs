//! Test support: the real servers AnyFS's tests run against, started by
//! the tests themselves on loopback, once per test binary. With
//! `ANYFS_REQUIRE_SERVICES=1` (as CI sets it) a server that cannot be
//! started fails the test that asked for it; without it, the test is told
//! to skip.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod seaweed;
pub use seaweed::{Seaweed, seaweed};
