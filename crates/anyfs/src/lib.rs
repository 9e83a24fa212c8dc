//! AnyFS: a virtual filesystem with `std::fs`-shaped traits, pluggable
//! backends and composable security middleware, so that untrusted code (an
//! AI agent, a tenant) can read and write files without reaching anything
//! outside what it was given.
//!
//! ```
//! use anyfs::{FileStorage, MemoryBackend};
//!
//! let fs = FileStorage::new(MemoryBackend::new());
//! fs.create_dir_all("/workspace")?;
//! fs.write("/workspace/plan.md", "1. read the issue\n")?;
//! fs.append("/workspace/plan.md", "2. write the code\n")?;
//! assert_eq!(fs.read_to_string("/workspace/plan.md")?.lines().count(), 2);
//!
//! // Paths are untrusted input: they can never leave the backend.
//! fs.create_dir("/etc")?;
//! fs.write("/../../etc/passwd", "not the host's")?;
//! assert_eq!(fs.read_to_string("/etc/passwd")?, "not the host's");
//! # Ok::<(), anyfs::FsError>(())
//! ```
//!
//! # The pieces
//!
//! - **Traits** ([`FsRead`], [`FsWrite`], [`FsDir`], [`FsLink`],
//!   [`FsPermissions`], [`FsSync`], [`FsStats`], [`FsInode`], [`FsHandles`],
//!   and the combinations [`Fs`], [`FsFull`], [`FsFuse`]): what a backend can
//!   do. A backend without [`FsLink`] cannot hold symlinks, and code that
//!   would create one does not compile:
//!
//! ```compile_fail
//! use anyfs::{FileStorage, Fs};
//! fn make_link<B: Fs>(fs: FileStorage<B>) {
//!     fs.symlink("/target", "/link"); // no `FsLink`, no `symlink`
//! }
//! ```
//!
//! - **[`FileStorage`]**: the front door. It validates and resolves every
//!   path (see [`path`]) and offers the methods of `std::fs`.
//! - **Backends**: [`MemoryBackend`]; [`VRootFsBackend`], a host directory
//!   as a jail the kernel enforces; [`StdFsBackend`], plain host access for
//!   trusted use; SQLite in the `anyfs-sqlite` crate.
//! - **Middleware** ([`Layer`]): policy wrapped around a backend.
//! - **Errors**: one [`FsError`], naming the virtual path, with an
//!   [`errno`](FsError::errno) and a stable [`kind`](FsError::kind).
//!
//! # Cargo features
//!
//! - **`test-util`** (off by default): test hooks on
//!   [`EncryptedMemoryBackend`] that hand out its stored ciphertext and swap
//!   two nodes' ciphertexts, so that a test can check that no plaintext is
//!   kept and that tampering is caught. They let a caller read and change
//!   what the backend holds: enable them in tests only, never in a build
//!   that serves anyone.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

// First: the trait definitions also define `forward_to_field!`, which the
// backends use.
#[macro_use]
mod traits;
mod backend;
mod content;
pub mod crypto;
mod error;
mod handles;
mod layer;
pub mod middleware;
pub mod overlay;
pub mod path;
pub mod snapshots;
mod storage;
mod types;

pub use backend::{EncryptedMemoryBackend, MemoryBackend, StdFsBackend, VRootFsBackend};
pub use error::{FsError, FsErrorKind, FsResult, QuotaFigures};
pub use handles::HandleTable;
pub use layer::{Layer, LayerExt};
pub use middleware::{
    AuditRecord, AuditSink, FileEncryption, FileEncryptionLayer, IntegrityLayer, IntegrityVerified,
    MemoryAuditSink, PathFilter, PathFilterLayer, Quota, QuotaLayer, RateLimit, RateLimitLayer,
    ReadOnly, ReadOnlyLayer, Restrictions, RestrictionsLayer, Tracing, TracingLayer,
};
pub use snapshots::FsSnapshots;
pub use storage::FileStorage;
pub use traits::{
    FileWriter, Fs, FsDir, FsFull, FsFuse, FsHandles, FsInode, FsLink, FsPermissions, FsRead,
    FsReader, FsStats, FsSync, FsWrite, FsWriter, resolve_with_links,
};
pub use types::{DirEntry, FileType, Handle, Metadata, OpenFlags, Permissions, ReadDir, StatFs};

/// The traits that put a backend together and call it: `use anyfs::prelude::*;`.
pub mod prelude {
    pub use crate::layer::{Layer, LayerExt};
    pub use crate::traits::{
        Fs, FsDir, FsFull, FsFuse, FsHandles, FsInode, FsLink, FsPermissions, FsRead, FsStats,
        FsSync, FsWrite,
    };
}
