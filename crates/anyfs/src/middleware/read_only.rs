//! [`ReadOnly`]: refuses every mutation.

use crate::error::{FsError, FsResult};
use crate::layer::Layer;
use crate::middleware::{Guarded, Policy, Request};

/// Refuses every operation that could change what is stored, with
/// [`FsError::ReadOnly`]: writes, appends, streamed writes, removes,
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
/// Order: anywhere; it refuses before anything inside it sees the call.
pub type ReadOnly<B> = Guarded<B, ReadOnlyLayer>;

/// The layer (and policy) of [`ReadOnly`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnlyLayer;

impl<B> ReadOnly<B> {
    /// `inner`, read-only.
    pub fn new(inner: B) -> Self {
        Guarded::with_policy(inner, ReadOnlyLayer)
    }
}

impl ReadOnlyLayer {
    /// Wraps `backend`.
    pub fn layer<B>(self, backend: B) -> ReadOnly<B> {
        ReadOnly::new(backend)
    }
}

impl<B> Layer<B> for ReadOnlyLayer {
    type Backend = ReadOnly<B>;
    fn layer(self, backend: B) -> ReadOnly<B> {
        ReadOnly::new(backend)
    }
}

impl Policy for ReadOnlyLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        if request.op.is_mutation() {
            return Err(FsError::ReadOnly {
                path: request.error_path(),
                op: request.op.name(),
            });
        }
        Ok(())
    }
}
