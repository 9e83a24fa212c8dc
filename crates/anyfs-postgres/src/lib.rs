//! PostgreSQL for AnyFS: [`Database`], a pool of connections that
//! synchronous code (the file system traits, the service's registry on the
//! blocking pool) can use, and versioned schema migrations applied at start.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
