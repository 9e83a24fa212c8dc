//! [`ReadOnly`]: refuses every mutation, of everything or of the paths some
//! globs match.

use std::path::Path;

use crate::error::{FsError, FsResult};
use crate::middleware::{Guarded, Operation, PathFilterError, PathFilterLayer, Policy, Request};

/// Refuses every operation that could change what is stored, with
/// [`FsErrorKind::ReadOnly`](crate::FsErrorKind::ReadOnly): writes, appends, streamed writes, removes,
/// renames, copies, truncation, directory creation, links, permission,
/// owner and time changes, and opening a handle for writing. Reads pass
/// through untouched.
///
/// ```
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, ReadOnly};
///
/// let backend = MemoryBackend::new();
/// FileStorage::new(backend.clone()).write("/archive.txt", "kept")?;
///
/// let fs = FileStorage::new(ReadOnly::new(backend));
/// assert_eq!(fs.read_to_string("/archive.txt")?, "kept");
/// assert_eq!(fs.remove_file("/archive.txt").unwrap_err().kind(), FsErrorKind::ReadOnly);
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// # Some paths only
///
/// [`ReadOnlyLayer::paths`] protects only what its globs match (same glob
/// syntax as [`PathFilterLayer`]) and everything below it. A change is
/// refused when it changes a protected path: its content, its name, or its
/// existence. So renaming or removing a directory that holds a protected
/// path is refused whole, and so is hard-linking a protected file (the new
/// name would write to it); copying *from* a protected file is a read.
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, ReadOnlyLayer};
///
/// let backend = MemoryBackend::new();
/// let owner = FileStorage::new(backend.clone());
/// owner.create_dir_all("/project")?;
/// owner.write("/project/config.json", "{}")?;
///
/// let agent = FileStorage::new(ReadOnlyLayer::paths(["/project/config.json"])?.layer(backend));
/// agent.write("/project/notes.md", "mine")?;
/// assert_eq!(agent.write("/project/config.json", "x").unwrap_err().kind(), FsErrorKind::ReadOnly);
/// // Not through its parent either.
/// assert_eq!(agent.rename("/project", "/p2").unwrap_err().kind(), FsErrorKind::ReadOnly);
/// agent.copy("/project/config.json", "/copy.json")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Order: anywhere; it refuses before anything inside it sees the call.
pub type ReadOnly<B> = Guarded<B, ReadOnlyLayer>;

/// The layer (and policy) of [`ReadOnly`]: everything read-only
/// ([`Default`]), or the paths of [`ReadOnlyLayer::paths`].
#[derive(Debug, Clone, Default)]
pub struct ReadOnlyLayer {
    /// `None`: everything. Otherwise a filter whose deny rules are the
    /// protected globs: a path it refuses is protected.
    only: Option<PathFilterLayer>,
}

impl<B> ReadOnly<B> {
    /// `inner`, read-only.
    pub fn new(inner: B) -> Self {
        Guarded::with_policy(inner, ReadOnlyLayer::default())
    }
}

impl ReadOnlyLayer {
    /// Everything read-only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only what `globs` match (and everything below it) read-only. A glob
    /// that does not compile is an error naming it.
    pub fn paths<I, S>(globs: I) -> Result<Self, PathFilterError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut filter = PathFilterLayer::builder().allow("/**");
        for glob in globs {
            filter = filter.deny(glob);
        }
        Ok(Self {
            only: Some(filter.build()?),
        })
    }

    /// Whether a change to `path` is refused.
    pub fn protects(&self, path: &Path) -> bool {
        self.only.as_ref().is_none_or(|only| !only.is_allowed(path))
    }
}

impl Policy for ReadOnlyLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        if !request.op.is_mutation() {
            return Ok(());
        }
        // A copy changes only its destination.
        let changed = match request.op {
            Operation::Copy => request.to,
            _ => request.path,
        };
        let protected = changed
            .into_iter()
            .chain(request.to)
            .find(|p| self.protects(p));
        match (protected, &self.only) {
            (Some(path), _) => Err(FsError::read_only(path.to_path_buf(), request.op.name())),
            // Whole store: a mutation on no path (none exist today) too.
            (None, None) => Err(FsError::read_only(request.error_path(), request.op.name())),
            (None, Some(_)) => Ok(()),
        }
    }

    fn judges_below(&self, dir: &Path) -> bool {
        self.only
            .as_ref()
            .is_some_and(|only| only.may_refuse_below(dir))
    }
}
