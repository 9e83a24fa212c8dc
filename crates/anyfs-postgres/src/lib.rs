//! PostgreSQL for AnyFS: [`Database`], a pool of connections that
//! synchronous code (the file system traits, the service's registry on the
//! blocking pool) can use, and versioned schema migrations applied at start.
//!
//! ```no_run
//! use anyfs_postgres::{Database, Migration};
//!
//! const MIGRATIONS: &[Migration] = &[Migration::new(
//!     1,
//!     "notes",
//!     "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
//! )];
//!
//! # fn main() -> Result<(), anyfs_postgres::DbError> {
//! let db = Database::connect("postgres://anyfs:secret@127.0.0.1:5432/anyfs")?;
//! db.migrate("notes", MIGRATIONS)?;
//! let count: i64 = db.run(|client| async move {
//!     client.execute("INSERT INTO notes (body) VALUES ($1)", &[&"hello"]).await?;
//!     Ok(client.query_one("SELECT count(*) FROM notes", &[]).await?.get(0))
//! })?;
//! # Ok(()) }
//! ```
//!
//! Connections are not encrypted (`NoTls`); see [`Database`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod database;
mod error;
mod migrate;

pub use database::{Client, Database, Options};
pub use error::DbError;
pub use migrate::Migration;
pub use tokio_postgres;
