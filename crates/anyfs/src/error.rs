//! [`FsError`]: the one error type of every backend, middleware and [`FileStorage`].
//!
//! Every variant names the *virtual* path it concerns (never a host path), reads
//! well when shown to a user, maps to one `errno` (for FUSE) and has a stable
//! [`FsErrorKind`] for matching.
//!
//! [`FileStorage`]: crate::FileStorage

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The result type used throughout AnyFS.
pub type FsResult<T> = Result<T, FsError>;

/// An error from a filesystem operation.
///
/// Each variant carries the virtual path it concerns. Operations that concern
/// a whole store rather than one path (opening a database, `statfs`, `sync`)
/// report the virtual root `/`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Nothing exists at the path.
    #[error("{}: not found", .path.display())]
    NotFound {
        /// The virtual path.
        path: PathBuf,
    },
    /// Something already exists at the path.
    #[error("{}: already exists", .path.display())]
    AlreadyExists {
        /// The virtual path.
        path: PathBuf,
    },
    /// A directory was needed, something else was found.
    #[error("{}: not a directory", .path.display())]
    NotADirectory {
        /// The virtual path.
        path: PathBuf,
    },
    /// A file was needed, a directory was found.
    #[error("{}: is a directory", .path.display())]
    IsADirectory {
        /// The virtual path.
        path: PathBuf,
    },
    /// The directory still has entries.
    #[error("{}: directory not empty", .path.display())]
    DirectoryNotEmpty {
        /// The virtual path.
        path: PathBuf,
    },
    /// A policy (such as a path filter) refuses access to the path.
    #[error("{}: access denied ({reason})", .path.display())]
    AccessDenied {
        /// The virtual path.
        path: PathBuf,
        /// Why access was refused, safe to show to the caller.
        reason: String,
    },
    /// The operation is not permitted on this path (restricted or not owned).
    #[error("{op} {}: permission denied", .path.display())]
    PermissionDenied {
        /// The virtual path.
        path: PathBuf,
        /// The operation that was refused.
        op: &'static str,
    },
    /// The filesystem is read-only.
    #[error("{op} {}: the filesystem is read-only", .path.display())]
    ReadOnly {
        /// The virtual path.
        path: PathBuf,
        /// The mutation that was refused.
        op: &'static str,
    },
    /// A storage quota would be exceeded.
    #[error(
        "{}: quota exceeded ({requested} requested, {usage} of {limit} used)",
        .path.display()
    )]
    QuotaExceeded {
        /// The virtual path.
        path: PathBuf,
        /// The limit that would be exceeded.
        limit: u64,
        /// How much the operation asked for.
        requested: u64,
        /// How much was in use when it asked.
        usage: u64,
    },
    /// A file would grow beyond the largest size allowed.
    #[error("{}: file would be {size} bytes, the limit is {limit}", .path.display())]
    FileSizeExceeded {
        /// The virtual path.
        path: PathBuf,
        /// The size the file would have had.
        size: u64,
        /// The largest size allowed.
        limit: u64,
    },
    /// Too many operations in too short a time.
    #[error("{}: rate limit exceeded, retry in {retry_after:?}", .path.display())]
    RateLimitExceeded {
        /// The virtual path.
        path: PathBuf,
        /// How long to wait before the next operation can succeed.
        retry_after: Duration,
    },
    /// The path is malformed or not allowed (NUL byte, too long, relative, `..`
    /// where a resolved path is required, moving a directory into itself).
    #[error("{}: invalid path ({reason})", .path.display())]
    InvalidPath {
        /// The path as given (lossy where it holds a NUL byte).
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Resolving the path followed more than 40 symbolic links.
    #[error("{}: too many levels of symbolic links", .path.display())]
    TooManySymlinks {
        /// The virtual path.
        path: PathBuf,
    },
    /// Stored data failed its authenticity check: it was tampered with, moved,
    /// or read with the wrong key.
    #[error("{}: integrity check failed", .path.display())]
    IntegrityError {
        /// The virtual path.
        path: PathBuf,
    },
    /// The backend cannot perform this operation.
    #[error("{op} {}: not supported by this backend", .path.display())]
    NotSupported {
        /// The virtual path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
    },
    /// The operation needs a cargo feature that was not compiled in.
    #[error("{}: needs the `{feature}` feature, which is not enabled", .path.display())]
    FeatureNotEnabled {
        /// The virtual path (`/` for store-wide operations).
        path: PathBuf,
        /// The cargo feature.
        feature: &'static str,
    },
    /// The password or key does not open the store.
    #[error("{}: wrong password or key", .path.display())]
    InvalidPassword {
        /// The virtual path (`/` for store-wide operations).
        path: PathBuf,
    },
    /// A concurrent change got in the way; the operation may be retried.
    #[error("{}: conflict ({reason})", .path.display())]
    Conflict {
        /// The virtual path.
        path: PathBuf,
        /// What conflicted.
        reason: String,
    },
    /// The storage engine failed.
    #[error("{op} {}: backend error: {message}", .path.display())]
    Backend {
        /// The virtual path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// A description that holds no host path and no secret.
        message: String,
    },
    /// An I/O error from the host.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// The virtual path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The kind of an [`FsError`], stable for matching and comparing.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each kind is documented on its `FsError` variant
pub enum FsErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    AccessDenied,
    PermissionDenied,
    ReadOnly,
    QuotaExceeded,
    FileSizeExceeded,
    RateLimitExceeded,
    InvalidPath,
    TooManySymlinks,
    IntegrityError,
    NotSupported,
    FeatureNotEnabled,
    InvalidPassword,
    Conflict,
    Backend,
    Io,
}

impl fmt::Display for FsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FsError {
    /// The stable kind of this error.
    pub fn kind(&self) -> FsErrorKind {
        match self {
            FsError::NotFound { .. } => FsErrorKind::NotFound,
            FsError::AlreadyExists { .. } => FsErrorKind::AlreadyExists,
            FsError::NotADirectory { .. } => FsErrorKind::NotADirectory,
            FsError::IsADirectory { .. } => FsErrorKind::IsADirectory,
            FsError::DirectoryNotEmpty { .. } => FsErrorKind::DirectoryNotEmpty,
            FsError::AccessDenied { .. } => FsErrorKind::AccessDenied,
            FsError::PermissionDenied { .. } => FsErrorKind::PermissionDenied,
            FsError::ReadOnly { .. } => FsErrorKind::ReadOnly,
            FsError::QuotaExceeded { .. } => FsErrorKind::QuotaExceeded,
            FsError::FileSizeExceeded { .. } => FsErrorKind::FileSizeExceeded,
            FsError::RateLimitExceeded { .. } => FsErrorKind::RateLimitExceeded,
            FsError::InvalidPath { .. } => FsErrorKind::InvalidPath,
            FsError::TooManySymlinks { .. } => FsErrorKind::TooManySymlinks,
            FsError::IntegrityError { .. } => FsErrorKind::IntegrityError,
            FsError::NotSupported { .. } => FsErrorKind::NotSupported,
            FsError::FeatureNotEnabled { .. } => FsErrorKind::FeatureNotEnabled,
            FsError::InvalidPassword { .. } => FsErrorKind::InvalidPassword,
            FsError::Conflict { .. } => FsErrorKind::Conflict,
            FsError::Backend { .. } => FsErrorKind::Backend,
            FsError::Io { .. } => FsErrorKind::Io,
        }
    }

    /// The virtual path this error concerns.
    pub fn path(&self) -> &Path {
        match self {
            FsError::NotFound { path }
            | FsError::AlreadyExists { path }
            | FsError::NotADirectory { path }
            | FsError::IsADirectory { path }
            | FsError::DirectoryNotEmpty { path }
            | FsError::AccessDenied { path, .. }
            | FsError::PermissionDenied { path, .. }
            | FsError::ReadOnly { path, .. }
            | FsError::QuotaExceeded { path, .. }
            | FsError::FileSizeExceeded { path, .. }
            | FsError::RateLimitExceeded { path, .. }
            | FsError::InvalidPath { path, .. }
            | FsError::TooManySymlinks { path }
            | FsError::IntegrityError { path }
            | FsError::NotSupported { path, .. }
            | FsError::FeatureNotEnabled { path, .. }
            | FsError::InvalidPassword { path }
            | FsError::Conflict { path, .. }
            | FsError::Backend { path, .. }
            | FsError::Io { path, .. } => path,
        }
    }

    /// The same error about another path.
    ///
    /// Used where a lower layer only saw a resolved path and the caller should
    /// hear about the path it asked for.
    pub fn with_path(mut self, new: impl Into<PathBuf>) -> Self {
        let slot = match &mut self {
            FsError::NotFound { path }
            | FsError::AlreadyExists { path }
            | FsError::NotADirectory { path }
            | FsError::IsADirectory { path }
            | FsError::DirectoryNotEmpty { path }
            | FsError::AccessDenied { path, .. }
            | FsError::PermissionDenied { path, .. }
            | FsError::ReadOnly { path, .. }
            | FsError::QuotaExceeded { path, .. }
            | FsError::FileSizeExceeded { path, .. }
            | FsError::RateLimitExceeded { path, .. }
            | FsError::InvalidPath { path, .. }
            | FsError::TooManySymlinks { path }
            | FsError::IntegrityError { path }
            | FsError::NotSupported { path, .. }
            | FsError::FeatureNotEnabled { path, .. }
            | FsError::InvalidPassword { path }
            | FsError::Conflict { path, .. }
            | FsError::Backend { path, .. }
            | FsError::Io { path, .. } => path,
        };
        *slot = new.into();
        self
    }

    /// The POSIX `errno` for this error: one per variant (for `Io`, the
    /// host's own code where there is one).
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound { .. } => libc::ENOENT,
            FsError::AlreadyExists { .. } => libc::EEXIST,
            FsError::NotADirectory { .. } => libc::ENOTDIR,
            FsError::IsADirectory { .. } => libc::EISDIR,
            FsError::DirectoryNotEmpty { .. } => libc::ENOTEMPTY,
            FsError::AccessDenied { .. } => libc::EACCES,
            FsError::PermissionDenied { .. } => libc::EPERM,
            FsError::ReadOnly { .. } => libc::EROFS,
            FsError::QuotaExceeded { .. } => libc::EDQUOT,
            FsError::FileSizeExceeded { .. } => libc::EFBIG,
            FsError::RateLimitExceeded { .. } => libc::EAGAIN,
            FsError::InvalidPath { .. } => libc::EINVAL,
            FsError::TooManySymlinks { .. } => libc::ELOOP,
            FsError::IntegrityError { .. } => libc::EBADMSG,
            FsError::NotSupported { .. } => libc::EOPNOTSUPP,
            FsError::FeatureNotEnabled { .. } => libc::ENOSYS,
            FsError::InvalidPassword { .. } => libc::EACCES,
            FsError::Conflict { .. } => libc::EBUSY,
            FsError::Backend { .. } => libc::EIO,
            FsError::Io { source, .. } => source
                .raw_os_error()
                .unwrap_or_else(|| io_kind_errno(source.kind())),
        }
    }

    /// Builds an error from a host I/O error, keeping an [`FsError`] that
    /// travelled through an `io::Error` (from a streaming reader or writer) as
    /// it was.
    pub fn from_io(path: impl Into<PathBuf>, op: &'static str, err: io::Error) -> Self {
        let path = path.into();
        if err
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<FsError>().is_some())
        {
            if let Some(inner) = err.into_inner()
                && let Ok(fs) = inner.downcast::<FsError>()
            {
                return *fs;
            }
            unreachable!("checked above that the io::Error wraps an FsError");
        }
        match err.kind() {
            io::ErrorKind::NotFound => FsError::NotFound { path },
            io::ErrorKind::AlreadyExists => FsError::AlreadyExists { path },
            _ => FsError::Io {
                path,
                op,
                source: err,
            },
        }
    }

    /// `NotFound` for an inode number that names nothing.
    pub fn inode_not_found(inode: u64) -> Self {
        FsError::NotFound {
            path: PathBuf::from(format!("<inode {inode}>")),
        }
    }
}

fn io_kind_errno(kind: io::ErrorKind) -> i32 {
    match kind {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::Interrupted => libc::EINTR,
        io::ErrorKind::UnexpectedEof => libc::EIO,
        io::ErrorKind::Unsupported => libc::EOPNOTSUPP,
        _ => libc::EIO,
    }
}

impl From<FsError> for io::Error {
    /// Wraps the error so that [`FsError::from_io`] can take it back out.
    fn from(err: FsError) -> Self {
        let kind = match err.kind() {
            FsErrorKind::NotFound => io::ErrorKind::NotFound,
            FsErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            FsErrorKind::NotADirectory => io::ErrorKind::NotADirectory,
            FsErrorKind::IsADirectory => io::ErrorKind::IsADirectory,
            FsErrorKind::DirectoryNotEmpty => io::ErrorKind::DirectoryNotEmpty,
            FsErrorKind::AccessDenied
            | FsErrorKind::PermissionDenied
            | FsErrorKind::InvalidPassword => io::ErrorKind::PermissionDenied,
            FsErrorKind::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            FsErrorKind::QuotaExceeded => io::ErrorKind::QuotaExceeded,
            FsErrorKind::FileSizeExceeded => io::ErrorKind::FileTooLarge,
            FsErrorKind::RateLimitExceeded => io::ErrorKind::WouldBlock,
            FsErrorKind::InvalidPath => io::ErrorKind::InvalidInput,
            FsErrorKind::TooManySymlinks => io::ErrorKind::Other,
            FsErrorKind::IntegrityError => io::ErrorKind::InvalidData,
            FsErrorKind::NotSupported | FsErrorKind::FeatureNotEnabled => {
                io::ErrorKind::Unsupported
            }
            FsErrorKind::Conflict => io::ErrorKind::ResourceBusy,
            FsErrorKind::Backend | FsErrorKind::Io => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_path_and_the_reason() {
        let err = FsError::QuotaExceeded {
            path: "/workspace/big.bin".into(),
            limit: 100,
            requested: 40,
            usage: 80,
        };
        assert_eq!(
            err.to_string(),
            "/workspace/big.bin: quota exceeded (40 requested, 80 of 100 used)"
        );
        assert_eq!(err.errno(), libc::EDQUOT);
        assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    }

    #[test]
    fn an_fs_error_survives_a_trip_through_io_error() {
        let io: io::Error = FsError::ReadOnly {
            path: "/a".into(),
            op: "write",
        }
        .into();
        assert_eq!(io.kind(), io::ErrorKind::ReadOnlyFilesystem);
        let back = FsError::from_io("/other", "write", io);
        assert_eq!(back.kind(), FsErrorKind::ReadOnly);
        assert_eq!(back.path(), Path::new("/a"));
    }

    #[test]
    fn with_path_replaces_only_the_path() {
        let err = FsError::NotFound { path: "/x".into() }.with_path("/y");
        assert_eq!(err.path(), Path::new("/y"));
        assert_eq!(err.kind(), FsErrorKind::NotFound);
    }
}
