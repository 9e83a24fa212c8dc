//! SQLite backends for [AnyFS](anyfs): a tenant's whole filesystem in one
//! database file.
//!
//! ```
//! use anyfs::FileStorage;
//! use anyfs_sqlite::SqliteBackend;
//!
//! # let dir = tempfile::tempdir()?;
//! # let db_path = dir.path().join("tenant.db");
//! let fs = FileStorage::new(SqliteBackend::open(&db_path)?);
//! fs.create_dir_all("/workspace/src")?;
//! fs.write("/workspace/src/lib.rs", "pub fn hello() {}")?;
//! drop(fs);
//!
//! // Everything is in the one file.
//! let fs = FileStorage::new(SqliteBackend::open(&db_path)?);
//! assert_eq!(fs.read_to_string("/workspace/src/lib.rs")?, "pub fn hello() {}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`SqliteBackend`]: names, metadata and content in one database; with
//!   the `encryption` feature, the whole file is encrypted by SQLCipher
//!   (AES-256): names, sizes, times, structure and content.
//! - [`IndexedBackend`]: names and metadata in SQLite, content in UUID-named
//!   blob files beside it.
//!
//! Both are complete ([`FsFuse`](anyfs::FsFuse) plus
//! [`FsHandles`](anyfs::FsHandles)), safe for many threads (one writer,
//! readers that never wait for it), and crash-safe: every operation is one
//! transaction, so a crash leaves the old state or the new one, never a mix.
//!
//! # Schema
//!
//! `inodes` (one row per node: kind, mode, owner, size, link counts, times,
//! symlink target), `entries` (directory entries, keyed by parent and name),
//! and `chunks` (content in 64 KiB pieces, keyed so that one file is one
//! rowid range). Metadata and listings never read content. A `nodes` view
//! gives `name`, `node_type` (0 file, 1 directory, 2 symlink), `size` and
//! `modified_at` (Unix seconds) for hosts that analyse a workspace's
//! metadata without its content:
//!
//! ```
//! # use anyfs::FileStorage;
//! # use anyfs_sqlite::SqliteBackend;
//! # let dir = tempfile::tempdir()?;
//! # let db = dir.path().join("t.db");
//! # let fs = FileStorage::new(SqliteBackend::open(&db)?);
//! # fs.create_dir("/d")?;
//! # fs.write("/d/a.txt", "12345")?;
//! let conn = rusqlite::Connection::open(&db)?;
//! let (files, dirs, total): (i64, i64, i64) = conn.query_row(
//!     "SELECT COUNT(*) FILTER (WHERE node_type = 0),
//!             COUNT(*) FILTER (WHERE node_type = 1),
//!             SUM(size)
//!      FROM nodes",
//!     [],
//!     |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
//! )?;
//! assert_eq!((files, dirs, total), (1, 1, 5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Durability
//!
//! Databases run in WAL mode with `synchronous=NORMAL`: a committed
//! operation survives the process being killed, and the file is never
//! corrupted; a power cut may lose the last commits. Open with
//! [`SqliteOptions::durable`] for `synchronous=FULL`, where every commit is
//! on disk before the call returns.
//!
//! # Building SQLite for many threads
//!
//! This workspace builds the bundled SQLite (and SQLCipher) with
//! `LIBSQLITE3_FLAGS="-USQLITE_ENABLE_MEMORY_MANAGEMENT
//! -DSQLITE_DEFAULT_MEMSTATUS=0"` (in `.cargo/config.toml`). Otherwise
//! every allocation takes a process-wide mutex to count memory, and, where
//! memory management is on (`libsqlite3-sys` up to 0.35 turned it on), so
//! does every page fetched from SQLite's page cache: encrypted reads (which
//! always go through the page cache) cost about 12 % more, and readers on
//! many threads contend. A program that depends on this crate should set
//! the same variable in its build.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Each backend forwards to its store, which it names as its inner backend
// (`anyfs::middleware::Middleware::Inner`): the store is a public type in a
// private module, bound by crate-private traits. Nothing outside the crate
// can name it or what it is built from.
#![allow(private_bounds)]

mod blobs;
mod chunks;
mod db;
mod indexed;
mod snapshots;
mod sqlite;
mod store;

pub use db::{Durability, SqliteOptions};
pub use indexed::IndexedBackend;
pub use sqlite::SqliteBackend;

/// The owner new nodes get: the user running the process.
fn current_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

/// Creates the directories a database file will live in.
fn create_parent(path: &std::path::Path) -> anyfs::FsResult<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyfs::FsError::io("/", "create the database directory", e))?;
    }
    Ok(())
}

/// The workspace README's examples, compiled and run as doc tests (here,
/// where every crate they use is at hand).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
