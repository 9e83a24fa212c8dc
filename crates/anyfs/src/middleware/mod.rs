//! Middleware: layers that wrap a backend and are backends themselves.
//!
//! ```
//! use anyfs::prelude::*;
//! use anyfs::{FileStorage, MemoryBackend, PathFilterLayer, QuotaLayer, RateLimitLayer, TracingLayer};
//!
//! let sandbox = MemoryBackend::new()
//!     .layer(QuotaLayer::builder().max_total_size(50 * 1024 * 1024).build())
//!     .layer(PathFilterLayer::builder().allow("/workspace/**").deny("**/.env").build())
//!     .layer(RateLimitLayer::builder().max_ops(1000).per_second().build())
//!     .layer(TracingLayer::new());
//! let fs = FileStorage::new(sandbox);
//! fs.create_dir("/workspace")?;
//! fs.write("/workspace/notes.md", "allowed")?;
//! assert!(fs.write("/workspace/.env", "SECRET=1").is_err());
//! # Ok::<(), anyfs::FsError>(())
//! ```
//!
//! # Order
//!
//! The layer added last is outermost and sees each call first. A refusal
//! by an inner layer is seen by every outer one, so put [`TracingLayer`]
//! outermost to audit every denial, [`RateLimitLayer`] outside the layers
//! whose work it should bound, and [`QuotaLayer`] innermost among the
//! policies so that only operations every other policy allowed use quota.
//!
//! # Shape
//!
//! The policy layers ([`PathFilterLayer`], [`ReadOnlyLayer`],
//! [`RestrictionsLayer`], [`RateLimitLayer`], [`TracingLayer`]) are each a
//! [`Policy`]: one decision over a [`Request`] that names the operation and
//! every path it touches. [`Guarded`] turns a policy into middleware by
//! asking it before every method of every trait, so no operation can slip
//! past a policy by being one it forgot. [`QuotaLayer`] measures sizes and
//! is written out in full.
//!
//! Every middleware re-checks that the paths it is given are resolved
//! (absolute, no `..`, no NUL), because it can be called without
//! [`FileStorage`](crate::FileStorage) in front of it.
//!
//! # Subtrees
//!
//! An operation is judged by every path it affects. Renaming or removing
//! a directory affects everything under it, so a policy that can refuse a
//! path below a directory it allows ([`Policy::judges_below`]) is asked
//! about each path under it as well — for a move, the old and the new
//! place of each — before anything changes, and the whole operation is
//! refused if any one would be. Moving `/home` is refused when
//! `/home/alice/private/**` is denied or read-only; `remove_dir_all` of a
//! folder holding a denied `secrets` folder removes nothing.
//!
//! ```
//! use anyfs::prelude::*;
//! use anyfs::{FileStorage, FsErrorKind, MemoryBackend, PathFilterLayer};
//!
//! let backend = MemoryBackend::new();
//! let owner = FileStorage::new(backend.clone());
//! owner.create_dir_all("/home/alice/private")?;
//! owner.write("/home/alice/private/deep.txt", "hidden")?;
//!
//! let agent = FileStorage::new(
//!     PathFilterLayer::builder().allow("/**").deny("/home/alice/private/**").build()?.layer(backend),
//! );
//! assert_eq!(agent.rename("/home", "/h2").unwrap_err().kind(), FsErrorKind::AccessDenied);
//! assert_eq!(agent.remove_dir_all("/home").unwrap_err().kind(), FsErrorKind::AccessDenied);
//! assert_eq!(owner.read_to_string("/home/alice/private/deep.txt")?, "hidden");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The refusal names the directory asked for, with the reason any direct
//! refusal gives, never the protected path below it: it shows that
//! something under the directory is protected, not what or where. The
//! walk and the change are two steps: a path that another caller creates
//! under the directory between them is not judged.

mod path_filter;
mod quota;
mod rate_limit;
mod read_only;
mod restrictions;
pub mod sealed;
mod tracing;

pub use path_filter::{PathFilter, PathFilterBuilder, PathFilterError, PathFilterLayer};
pub use quota::{Quota, QuotaBuilder, QuotaLayer, QuotaLimits, QuotaUsage};
pub use rate_limit::{RateLimit, RateLimitBuilder, RateLimitLayer};
pub use read_only::{ReadOnly, ReadOnlyLayer};
pub use restrictions::{Restrictions, RestrictionsBuilder, RestrictionsLayer};
pub use sealed::{FileEncryption, FileEncryptionLayer, IntegrityLayer, IntegrityVerified};
pub use tracing::{AuditRecord, AuditSink, MemoryAuditSink, Tracing, TracingLayer};

pub use crate::traits::Middleware;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::error::{FsError, FsErrorKind, FsResult};
use crate::handles::HandleTable;
use crate::layer::Layer;
use crate::path;
use crate::traits::{
    FsDir, FsHandles, FsInode, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite,
    FsWriter,
};
use crate::types::{Handle, Metadata, OpenFlags, Permissions, ReadDir, StatFs};

/// Every operation of the trait family, as a policy sees it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each is the trait method of the same name
pub enum Operation {
    Read,
    ReadRange,
    Exists,
    Metadata,
    OpenRead,
    Write,
    Append,
    WriteRange,
    RemoveFile,
    Rename,
    Copy,
    Truncate,
    OpenWrite,
    ReadDir,
    CreateDir,
    CreateDirAll,
    RemoveDir,
    RemoveDirAll,
    Symlink,
    HardLink,
    ReadLink,
    SymlinkMetadata,
    SetPermissions,
    SetTimes,
    SetOwner,
    Sync,
    Fsync,
    Statfs,
    PathToInode,
    InodeToPath,
    Lookup,
    MetadataByInode,
    Open(OpenFlags),
    ReadAt,
    WriteAt,
    Close,
    /// A path resolution refused by a layer below (see
    /// [`Policy::traverse`]): never checked, only observed, and only when
    /// it was refused, so that every denial is recorded.
    Resolve,
}

impl Operation {
    /// The method name, as written in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::ReadRange => "read_range",
            Operation::Exists => "exists",
            Operation::Metadata => "metadata",
            Operation::OpenRead => "open_read",
            Operation::Write => "write",
            Operation::Append => "append",
            Operation::WriteRange => "write_range",
            Operation::RemoveFile => "remove_file",
            Operation::Rename => "rename",
            Operation::Copy => "copy",
            Operation::Truncate => "truncate",
            Operation::OpenWrite => "open_write",
            Operation::ReadDir => "read_dir",
            Operation::CreateDir => "create_dir",
            Operation::CreateDirAll => "create_dir_all",
            Operation::RemoveDir => "remove_dir",
            Operation::RemoveDirAll => "remove_dir_all",
            Operation::Symlink => "symlink",
            Operation::HardLink => "hard_link",
            Operation::ReadLink => "read_link",
            Operation::SymlinkMetadata => "symlink_metadata",
            Operation::SetPermissions => "set_permissions",
            Operation::SetTimes => "set_times",
            Operation::SetOwner => "set_owner",
            Operation::Sync => "sync",
            Operation::Fsync => "fsync",
            Operation::Statfs => "statfs",
            Operation::PathToInode => "path_to_inode",
            Operation::InodeToPath => "inode_to_path",
            Operation::Lookup => "lookup",
            Operation::MetadataByInode => "metadata_by_inode",
            Operation::Open(_) => "open",
            Operation::ReadAt => "read_at",
            Operation::WriteAt => "write_at",
            Operation::Close => "close",
            Operation::Resolve => "resolve",
        }
    }

    /// Whether the operation can change what is stored.
    pub fn is_mutation(self) -> bool {
        match self {
            Operation::Write
            | Operation::Append
            | Operation::WriteRange
            | Operation::RemoveFile
            | Operation::Rename
            | Operation::Copy
            | Operation::Truncate
            | Operation::OpenWrite
            | Operation::CreateDir
            | Operation::CreateDirAll
            | Operation::RemoveDir
            | Operation::RemoveDirAll
            | Operation::Symlink
            | Operation::HardLink
            | Operation::SetPermissions
            | Operation::SetTimes
            | Operation::SetOwner
            | Operation::WriteAt => true,
            Operation::Open(flags) => flags.mutates(),
            _ => false,
        }
    }
}

/// One call, as a [`Policy`] judges it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What is being done.
    pub op: Operation,
    /// The path acted on; `None` for operations on the whole store (`sync`,
    /// `statfs`) and on handles whose path is unknown.
    pub path: Option<&'a Path>,
    /// The second path, for operations that have one: the destination of
    /// `rename` and `copy`, the new name of `hard_link`.
    pub to: Option<&'a Path>,
    /// The stored target of a `symlink` being created (never followed or
    /// checked: it is data).
    pub link_target: Option<&'a Path>,
}

impl<'a> Request<'a> {
    fn new(op: Operation, path: &'a Path) -> Self {
        Self {
            op,
            path: Some(path),
            to: None,
            link_target: None,
        }
    }
    fn store(op: Operation) -> Self {
        Self {
            op,
            path: None,
            to: None,
            link_target: None,
        }
    }
    fn with_to(mut self, to: &'a Path) -> Self {
        self.to = Some(to);
        self
    }
    /// Every path the operation touches.
    pub fn paths(&self) -> impl Iterator<Item = &'a Path> {
        self.path.into_iter().chain(self.to)
    }
    /// The path to name in an error: the first path, or the root.
    pub fn error_path(&self) -> PathBuf {
        self.path.unwrap_or(Path::new("/")).to_path_buf()
    }
}

/// How a request ended, for policies that observe.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// `Ok`, or the error the caller received.
    pub result: Result<(), &'a FsError>,
    /// Bytes read or written.
    pub bytes: u64,
    /// Time from the policy's check to the end of the operation.
    pub elapsed: Duration,
}

/// A decision over every operation, made into middleware by [`Guarded`].
pub trait Policy: Send + Sync + 'static {
    /// Allows the request (`Ok`) or refuses it with the error the caller
    /// gets. Called before the operation, for every operation.
    fn check(&self, request: &Request<'_>) -> FsResult<()>;

    /// Whether a directory entry at `path` is shown by `read_dir`.
    fn shows(&self, path: &Path) -> bool {
        let _ = path;
        true
    }

    /// Whether [`Policy::traverse`] wants to be called.
    fn judges_traversal(&self) -> bool {
        false
    }

    /// Allows a path resolution to pass through `path` (a directory it
    /// leaves with `..`, a symlink it follows; see
    /// [`path::resolve_visiting`]), or refuses with the error the caller
    /// gets (renamed to the path the caller asked for). It runs inside the
    /// backend's resolution, which may hold the backend's locks: it must
    /// not call into the backend.
    fn traverse(&self, path: &Path) -> FsResult<()> {
        let _ = path;
        Ok(())
    }

    /// Whether the policy may refuse some path strictly below the
    /// directory `dir` (normalized and absolute) while allowing `dir`
    /// itself. When it may, an operation that affects everything under a
    /// directory (`rename`, `remove_dir_all`, `copy`) is also put to
    /// [`Policy::check`] once for each path below it, before it runs (see
    /// the module docs). Answering `true` when unsure is always safe; it
    /// costs a walk of the directory.
    fn judges_below(&self, dir: &Path) -> bool {
        let _ = dir;
        false
    }

    /// Whether [`Policy::observe`] wants to be called (timing costs a little).
    fn observes(&self) -> bool {
        false
    }

    /// Called after every request, allowed or refused, when
    /// [`Policy::observes`] is true.
    fn observe(&self, request: &Request<'_>, outcome: &Outcome<'_>) {
        let _ = (request, outcome);
    }
}

/// A backend `B` with every operation first put to the policy `P`.
///
/// This is the middleware type behind [`PathFilter`], [`ReadOnly`],
/// [`Restrictions`], [`RateLimit`] and [`Tracing`]; it implements each trait
/// `B` implements. Open handles are remembered with their path, so that
/// `read_at`/`write_at` are judged and logged with it.
pub struct Guarded<B, P> {
    inner: B,
    policy: Arc<P>,
    /// The path of each handle opened through this guard, shared by its
    /// clones (a handle opened through one is judged by its path through
    /// any other).
    handles: Arc<Mutex<HandleTable<PathBuf>>>,
}

impl<B: Clone, P> Clone for Guarded<B, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            handles: self.handles.clone(),
        }
    }
}

impl<B: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for Guarded<B, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("policy", &self.policy)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<B, P: Policy> Guarded<B, P> {
    /// Wraps `inner` so that `policy` judges every operation.
    pub fn with_policy(inner: B, policy: P) -> Self {
        Self {
            inner,
            policy: Arc::new(policy),
            handles: Arc::default(),
        }
    }
    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
    /// Gives the wrapped backend back.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// One request, judged by the policy: checked, run if allowed, and
    /// reported to the policy when it observes.
    fn judged<T>(
        &self,
        request: Request<'_>,
        bytes: impl FnOnce(&T) -> u64,
        op: impl FnOnce(&B) -> FsResult<T>,
    ) -> FsResult<T> {
        if !self.policy.observes() {
            self.policy.check(&request)?;
            return op(&self.inner);
        }
        let start = Instant::now();
        let result = self.policy.check(&request).and_then(|()| op(&self.inner));
        let outcome = Outcome {
            result: result.as_ref().map(|_| ()),
            bytes: result.as_ref().map(bytes).unwrap_or(0),
            elapsed: start.elapsed(),
        };
        self.policy.observe(&request, &outcome);
        result
    }

    fn handle_path(&self, handle: Handle) -> Option<PathBuf> {
        self.handles.lock().get(handle).cloned()
    }
}

/// Every policy is a layer: wrapping a backend guards it with (a copy of)
/// the policy.
impl<B, P: Policy + Clone> Layer<B> for P {
    type Backend = Guarded<B, P>;
    fn layer(&self, inner: B) -> Guarded<B, P> {
        Guarded::with_policy(inner, self.clone())
    }
}

impl<B: FsDir, P: Policy> Guarded<B, P> {
    /// Puts every path below `from` to the policy, as an `op` of its own
    /// (for a move or copy, with the matching path below `to`), when the
    /// policy may refuse something there. A refusal names `from`: the
    /// protected path itself is not shown.
    fn check_below(&self, op: Operation, from: &Path, to: Option<&Path>) -> FsResult<()> {
        let judged = |p: &Path| self.policy.judges_below(p);
        if !judged(from) && !to.is_some_and(judged) {
            return Ok(());
        }
        // `Path::join` of an empty path would add a trailing `/`.
        let under = |base: &Path, rel: &Path| {
            if rel.as_os_str().is_empty() {
                base.to_path_buf()
            } else {
                base.join(rel)
            }
        };
        let mut dirs = vec![PathBuf::new()];
        while let Some(rel) = dirs.pop() {
            let listing = match self.inner.read_dir(&under(from, &rel)) {
                Ok(listing) => listing,
                // Not a directory (or not there): nothing below to judge;
                // the operation itself says what is wrong.
                // (A host backend answers `InvalidPath` for a symlink.)
                Err(e)
                    if rel.as_os_str().is_empty()
                        && (e.is_absent() || e.kind() == FsErrorKind::InvalidPath) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e.with_path(from)),
            };
            for entry in listing {
                let entry = entry.map_err(|e| e.with_path(from))?;
                let below = rel.join(&entry.name);
                let path = under(from, &below);
                let dest = to.map(|t| under(t, &below));
                let request = Request {
                    op,
                    path: Some(&path),
                    to: dest.as_deref(),
                    link_target: None,
                };
                self.policy.check(&request).map_err(|e| e.with_path(from))?;
                if entry.file_type == crate::types::FileType::Directory {
                    dirs.push(below);
                }
            }
        }
        Ok(())
    }
}

fn no_bytes<T>(_: &T) -> u64 {
    0
}

impl<B: FsRead, P: Policy> FsRead for Guarded<B, P> {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::Read, path),
            |d: &Vec<u8>| d.len() as u64,
            |b| b.read(path),
        )
    }
    fn read_to_string(&self, path: &Path) -> FsResult<String> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::Read, path),
            |s: &String| s.len() as u64,
            |b| b.read_to_string(path),
        )
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::ReadRange, path),
            |d: &Vec<u8>| d.len() as u64,
            |b| b.read_range(path, offset, len),
        )
    }
    fn exists(&self, path: &Path) -> FsResult<bool> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::Exists, path), no_bytes, |b| {
            b.exists(path)
        })
    }
    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::Metadata, path), no_bytes, |b| {
            b.metadata(path)
        })
    }
    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::OpenRead, path), no_bytes, |b| {
            b.open_read(path)
        })
    }
    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        mut visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        // Resolution is not an operation of its own: it is passed down in
        // one call and not counted (see ARCHITECTURE: no per-component
        // lookups through the stack). A policy that hides paths judges each
        // path the walk passes through, inside that one call.
        let result = if self.policy.judges_traversal() {
            let policy = &self.policy;
            let mut judged = |passed: &Path| {
                // Named after the path asked for (the reason says which
                // path it would have passed through).
                policy.traverse(passed).map_err(|e| e.with_path(path))?;
                match visit.as_mut() {
                    Some(outer) => outer(passed),
                    None => Ok(()),
                }
            };
            self.inner
                .resolve_with(path, follow_last, Some(&mut judged))
        } else {
            self.inner.resolve_with(path, follow_last, visit)
        };
        // A refusal is recorded like any other (a successful resolution is
        // not an operation: the one that follows is). It is not timed: no
        // operation ran, and a clock read per resolution would cost every
        // operation.
        if let Err(error) = &result
            && error.kind() == FsErrorKind::AccessDenied
            && self.policy.observes()
        {
            let outcome = Outcome {
                result: Err(error),
                bytes: 0,
                elapsed: Duration::ZERO,
            };
            self.policy
                .observe(&Request::new(Operation::Resolve, path), &outcome);
        }
        result
    }
}

impl<B: FsWrite + FsDir, P: Policy> FsWrite for Guarded<B, P> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::Write, path),
            |_| data.len() as u64,
            |b| b.write(path, data),
        )
    }
    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::Append, path),
            |_| data.len() as u64,
            |b| b.append(path, data),
        )
    }
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        let bytes: u64 = ranges.iter().map(|(_, data)| data.len() as u64).sum();
        self.judged(
            Request::new(Operation::WriteRange, path),
            |_| bytes,
            |b| b.write_ranges(path, ranges),
        )
    }
    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::RemoveFile, path), no_bytes, |b| {
            b.remove_file(path)
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let from = &path::resolved_normal_form(from)?;
        let to = &path::resolved_normal_form(to)?;
        self.judged(
            Request::new(Operation::Rename, from).with_to(to),
            no_bytes,
            |b| {
                self.check_below(Operation::Rename, from, Some(to))?;
                b.rename(from, to)
            },
        )
    }
    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let from = &path::resolved_normal_form(from)?;
        let to = &path::resolved_normal_form(to)?;
        self.judged(
            Request::new(Operation::Copy, from).with_to(to),
            no_bytes,
            |b| {
                self.check_below(Operation::Copy, from, Some(to))?;
                b.copy(from, to)
            },
        )
    }
    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::Truncate, path), no_bytes, |b| {
            b.truncate(path, size)
        })
    }
    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::OpenWrite, path), no_bytes, |b| {
            b.open_write(path)
        })
    }
}

impl<B: FsDir, P: Policy> FsDir for Guarded<B, P> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let path = &path::resolved_normal_form(path)?;
        let listing = self.judged(Request::new(Operation::ReadDir, path), no_bytes, |b| {
            b.read_dir(path)
        })?;
        let policy = self.policy.clone();
        Ok(ReadDir::new(listing.filter(move |entry| match entry {
            Ok(e) => policy.shows(&e.path),
            Err(_) => true,
        })))
    }
    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::CreateDir, path), no_bytes, |b| {
            b.create_dir(path)
        })
    }
    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::CreateDirAll, path), no_bytes, |b| {
            b.create_dir_all(path)
        })
    }
    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::RemoveDir, path), no_bytes, |b| {
            b.remove_dir(path)
        })
    }
    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::RemoveDirAll, path), no_bytes, |b| {
            self.check_below(Operation::RemoveDirAll, path, None)?;
            b.remove_dir_all(path)
        })
    }
}

impl<B: FsLink, P: Policy> FsLink for Guarded<B, P> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        let link = &path::resolved_normal_form(link)?;
        let request = Request {
            link_target: Some(target),
            ..Request::new(Operation::Symlink, link)
        };
        self.judged(request, no_bytes, |b| b.symlink(target, link))
    }
    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let original = &path::resolved_normal_form(original)?;
        let link = &path::resolved_normal_form(link)?;
        self.judged(
            Request::new(Operation::HardLink, original).with_to(link),
            no_bytes,
            |b| b.hard_link(original, link),
        )
    }
    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::ReadLink, path), no_bytes, |b| {
            b.read_link(path)
        })
    }
    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::SymlinkMetadata, path),
            no_bytes,
            |b| b.symlink_metadata(path),
        )
    }
}

impl<B: FsPermissions, P: Policy> FsPermissions for Guarded<B, P> {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(
            Request::new(Operation::SetPermissions, path),
            no_bytes,
            |b| b.set_permissions(path, perm),
        )
    }
    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::SetTimes, path), no_bytes, |b| {
            b.set_times(path, accessed, modified)
        })
    }
    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::SetOwner, path), no_bytes, |b| {
            b.set_owner(path, uid, gid)
        })
    }
}

impl<B: FsSync, P: Policy> FsSync for Guarded<B, P> {
    fn sync(&self) -> FsResult<()> {
        self.judged(Request::store(Operation::Sync), no_bytes, |b| b.sync())
    }
    fn fsync(&self, path: &Path) -> FsResult<()> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::Fsync, path), no_bytes, |b| {
            b.fsync(path)
        })
    }
}

impl<B: FsStats, P: Policy> FsStats for Guarded<B, P> {
    fn statfs(&self) -> FsResult<StatFs> {
        self.judged(Request::store(Operation::Statfs), no_bytes, |b| b.statfs())
    }
}

impl<B: FsInode, P: Policy> FsInode for Guarded<B, P> {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        let path = &path::resolved_normal_form(path)?;
        self.judged(Request::new(Operation::PathToInode, path), no_bytes, |b| {
            b.path_to_inode(path)
        })
    }
    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        // The answer is a path; it is judged like any other.
        let path = self.inner.inode_to_path(inode)?;
        self.judged(
            Request::new(Operation::InodeToPath, &path),
            no_bytes,
            |_| Ok(path.clone()),
        )
    }
    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        path::validate_name(name)?;
        let path = path::join(&self.inner.inode_to_path(parent)?, name);
        self.judged(Request::new(Operation::Lookup, &path), no_bytes, |b| {
            b.lookup(parent, name)
        })
    }
    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        let path = self.inner.inode_to_path(inode)?;
        self.judged(
            Request::new(Operation::MetadataByInode, &path),
            no_bytes,
            |b| b.metadata_by_inode(inode),
        )
    }
}

impl<B: FsHandles, P: Policy> FsHandles for Guarded<B, P> {
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle> {
        let path = &path::resolved_normal_form(path)?;
        let handle = self.judged(Request::new(Operation::Open(flags), path), no_bytes, |b| {
            b.open(path, flags)
        })?;
        self.handles.lock().insert(handle, path.to_path_buf());
        Ok(handle)
    }
    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let path = self.handle_path(handle);
        let request = Request {
            path: path.as_deref(),
            ..Request::store(Operation::ReadAt)
        };
        self.judged(
            request,
            |n: &usize| *n as u64,
            |b| b.read_at(handle, buf, offset),
        )
    }
    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize> {
        let path = self.handle_path(handle);
        let request = Request {
            path: path.as_deref(),
            ..Request::store(Operation::WriteAt)
        };
        self.judged(
            request,
            |n: &usize| *n as u64,
            |b| b.write_at(handle, data, offset),
        )
    }
    fn close(&self, handle: Handle) -> FsResult<()> {
        // Closing is never refused: a refused close would leak the handle.
        let path = self.handles.lock().remove(handle);
        let start = Instant::now();
        let result = self.inner.close(handle);
        if self.policy.observes() {
            let request = Request {
                path: path.as_deref(),
                ..Request::store(Operation::Close)
            };
            let outcome = Outcome {
                result: result.as_ref().map(|_| ()),
                bytes: 0,
                elapsed: start.elapsed(),
            };
            self.policy.observe(&request, &outcome);
        }
        result
    }
}
