//! An AnyFS backend whose tree lives in PostgreSQL rows and whose content
//! lives in immutable, encrypted objects in an object store (S3 and
//! compatible servers, through OpenDAL). Several processes on several
//! machines can serve one workspace at once.
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
//!   PostgreSQL, its content in blobs;
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

pub use backend::ObjectBackend;
pub use blob::{BlobId, Blobs};
pub use config::ObjectStoreConfig;
pub use gc::{GarbageReport, collect_garbage};
pub use store::ObjectStore;
pub use unavailable::{Service, Unavailable};
