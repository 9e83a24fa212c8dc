//! An AnyFS backend whose tree lives in PostgreSQL rows and whose content
//! lives in immutable, encrypted objects in an object store (S3 and
//! compatible servers, through OpenDAL). Several processes on several
//! machines can serve one workspace at once.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use anyfs::crypto::Key;
//! use anyfs::{FileStorage, FsSnapshots};
//! use anyfs_objects::{Blobs, ObjectBackend, ObjectStore, ObjectStoreConfig};
//! use anyfs_postgres::Database;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Database::connect("postgres://anyfs@127.0.0.1:5432/anyfs")?;
//! ObjectBackend::migrate(&db)?;
//! // s3://BUCKET/PREFIX, with AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID
//! // and AWS_SECRET_ACCESS_KEY from the environment; the requests run on
//! // the database's runtime.
//! let config = ObjectStoreConfig::from_env("s3://workspaces/eu-1")?;
//! let runtime = db.block_on(async { tokio::runtime::Handle::current() });
//! // Refuses a store that ignores If-None-Match or If-Match.
//! let store = ObjectStore::connect(&config, runtime)?;
//! let master = Key::from_bytes([7; 32]); // the operator's, from a secret store
//! let blobs = Arc::new(Blobs::new(store, master, 256 << 20));
//!
//! let fs = FileStorage::new(ObjectBackend::open(db, blobs, "acct-42", "main")?);
//! fs.write("/notes.md", "kept in PostgreSQL and the bucket, encrypted")?;
//!
//! // A point to come back to, then an agent's work, then the choice.
//! let before = fs.backend().create_snapshot("before the agent")?;
//! fs.write("/notes.md", "rewritten by an agent")?;
//! let then = fs.backend().open_snapshot(before.id)?; // read only
//! let old = anyfs::FsRead::read(&then, "/notes.md".as_ref())?;
//! assert_eq!(old, b"kept in PostgreSQL and the bucket, encrypted");
//! fs.backend().restore(before.id)?; // or keep the change
//! // Or let the agent work on a branch, a workspace of its own.
//! let branch = fs.backend().branch(before.id, "agent-try")?;
//! let agent = fs.backend().open_branch(branch.id)?;
//! # let _ = agent;
//! # Ok(()) }
//! ```
//!
//! The pieces:
//!
//! - [`ObjectStoreConfig`]: the bucket, prefix, endpoint and credentials,
//!   from `s3://BUCKET/PREFIX` and the standard AWS variables;
//! - [`ObjectStore`]: the bucket through OpenDAL, checked at connection to
//!   honour `If-None-Match` and `If-Match`;
//! - [`Blobs`]: immutable blobs sealed with AES-256-GCM under a key per
//!   account, read by record, with an in-memory cache of opened records;
//! - [`ObjectBackend`]: one workspace as an AnyFS backend, its tree in
//!   PostgreSQL, its content in blobs; with snapshots, restore, branches,
//!   diff and merge ([`anyfs::FsSnapshots`]), which share content rather
//!   than copy it;
//! - [`collect_garbage`]: deletes, over the whole store, the blobs nothing
//!   names any more, after a grace period;
//! - [`Unavailable`]: the error for "the database or the object store
//!   cannot be reached", which a server answers with 503.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod blob;
mod cache;
mod config;
mod gc;
mod names;
mod store;
mod unavailable;

pub use backend::{ObjectBackend, consistent_reads, seen_version, workspace_version_sql};
pub use blob::{BlobId, Blobs};
pub use config::ObjectStoreConfig;
pub use gc::{GarbageReport, collect_garbage};
pub use store::ObjectStore;
pub use unavailable::{Service, Unavailable};
