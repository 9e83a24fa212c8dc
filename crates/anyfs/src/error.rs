//! [`FsError`]: the one error type of every backend, middleware and [`FileStorage`].
//!
//! Every error names the *virtual* path it concerns (never a host path), reads
//! well when shown to a user, maps to one `errno` (for FUSE) and has a stable
//! [`FsErrorKind`] for matching.
//!
//! [`FileStorage`]: crate::FileStorage

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The result type used throughout AnyFS.
pub type FsResult<T> = Result<T, FsError>;

/// An error from a filesystem operation: what kind of failure, the virtual
/// path it concerns, and, where it has them, the operation and the reason.
///
/// Build one with the constructor named after its kind
/// ([`FsError::not_found`], [`FsError::access_denied`], …); match on
/// [`kind`](Self::kind). Operations that concern a whole store rather than
/// one path (opening a database, `statfs`, `sync`) report the virtual root
/// `/`. The message (`Display`) names the path and the reason and never a
/// host path or a secret.
///
/// ```
/// use anyfs::{FsError, FsErrorKind};
///
/// let err = FsError::quota_exceeded("/workspace/big.bin", 100, 40, 80);
/// assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
/// assert_eq!(err.path().to_str(), Some("/workspace/big.bin"));
/// assert_eq!(err.to_string(), "/workspace/big.bin: quota exceeded (40 requested, 80 of 100 used)");
/// ```
#[derive(Debug)]
pub struct FsError {
    kind: FsErrorKind,
    path: PathBuf,
    op: &'static str,
    /// What only some kinds carry, boxed so that an `FsResult` stays small
    /// and the common refusals (`NotFound`) allocate nothing more.
    more: Option<Box<More>>,
}

#[derive(Debug, Default)]
struct More {
    reason: Cow<'static, str>,
    detail: Detail,
    source: Option<io::Error>,
}

/// The figures some kinds carry.
#[derive(Debug, Clone, Copy, Default)]
enum Detail {
    #[default]
    None,
    Quota {
        limit: u64,
        requested: u64,
        usage: u64,
    },
    FileSize {
        size: u64,
        limit: u64,
    },
    RetryAfter(Duration),
}

/// The kind of an [`FsError`], stable for matching and comparing.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsErrorKind {
    /// Nothing exists at the path.
    NotFound,
    /// Something already exists at the path.
    AlreadyExists,
    /// A directory was needed, something else was found.
    NotADirectory,
    /// A file was needed, a directory was found.
    IsADirectory,
    /// The directory still has entries.
    DirectoryNotEmpty,
    /// A policy (such as a path filter) refuses access to the path.
    AccessDenied,
    /// The operation is not permitted on this path (restricted or not owned).
    PermissionDenied,
    /// The filesystem is read-only.
    ReadOnly,
    /// A storage quota would be exceeded.
    QuotaExceeded,
    /// A file would grow beyond the largest size allowed.
    FileSizeExceeded,
    /// Too many operations in too short a time.
    RateLimitExceeded,
    /// The path is malformed or not allowed (NUL byte, too long, relative,
    /// `..` where a resolved path is required, moving a directory into
    /// itself).
    InvalidPath,
    /// Resolving the path followed more than 40 symbolic links.
    TooManySymlinks,
    /// Stored data failed its authenticity check: it was tampered with,
    /// moved, or read with the wrong key.
    IntegrityError,
    /// The backend cannot perform this operation.
    NotSupported,
    /// The operation needs a cargo feature that was not compiled in.
    FeatureNotEnabled,
    /// The password or key does not open the store.
    InvalidPassword,
    /// A concurrent change got in the way; the operation may be retried.
    Conflict,
    /// The storage engine failed.
    Backend,
    /// An I/O error from the host.
    Io,
}

impl fmt::Display for FsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let op = self.op;
        let reason = self.reason().unwrap_or_default();
        let detail = self.more.as_ref().map_or(Detail::None, |m| m.detail);
        match (self.kind, detail) {
            (FsErrorKind::NotFound, _) => write!(f, "{path}: not found"),
            (FsErrorKind::AlreadyExists, _) => write!(f, "{path}: already exists"),
            (FsErrorKind::NotADirectory, _) => write!(f, "{path}: not a directory"),
            (FsErrorKind::IsADirectory, _) => write!(f, "{path}: is a directory"),
            (FsErrorKind::DirectoryNotEmpty, _) => write!(f, "{path}: directory not empty"),
            (FsErrorKind::AccessDenied, _) => write!(f, "{path}: access denied ({reason})"),
            (FsErrorKind::PermissionDenied, _) => write!(f, "{op} {path}: permission denied"),
            (FsErrorKind::ReadOnly, _) => write!(f, "{op} {path}: the filesystem is read-only"),
            (
                FsErrorKind::QuotaExceeded,
                Detail::Quota {
                    limit,
                    requested,
                    usage,
                },
            ) => write!(
                f,
                "{path}: quota exceeded ({requested} requested, {usage} of {limit} used)"
            ),
            (FsErrorKind::FileSizeExceeded, Detail::FileSize { size, limit }) => {
                write!(
                    f,
                    "{path}: file would be {size} bytes, the limit is {limit}"
                )
            }
            (FsErrorKind::RateLimitExceeded, Detail::RetryAfter(wait)) => {
                write!(f, "{path}: rate limit exceeded, retry in {wait:?}")
            }
            (FsErrorKind::InvalidPath, _) => write!(f, "{path}: invalid path ({reason})"),
            (FsErrorKind::TooManySymlinks, _) => {
                write!(f, "{path}: too many levels of symbolic links")
            }
            (FsErrorKind::IntegrityError, _) => write!(f, "{path}: integrity check failed"),
            (FsErrorKind::NotSupported, _) => {
                write!(f, "{op} {path}: not supported by this backend")
            }
            (FsErrorKind::FeatureNotEnabled, _) => write!(
                f,
                "{path}: needs the `{reason}` feature, which is not enabled"
            ),
            (FsErrorKind::InvalidPassword, _) => write!(f, "{path}: wrong password or key"),
            (FsErrorKind::Conflict, _) => write!(f, "{path}: conflict ({reason})"),
            (FsErrorKind::Backend, _) => write!(f, "{op} {path}: backend error: {reason}"),
            (FsErrorKind::Io, _) => match self.more.as_ref().and_then(|m| m.source.as_ref()) {
                Some(source) => write!(f, "{op} {path}: {source}"),
                None => write!(f, "{op} {path}: {reason}"),
            },
            // The constructors give every kind its figures.
            (kind, _) => write!(f, "{path}: {kind}"),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.more
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Constructors, one per kind.
impl FsError {
    fn new(kind: FsErrorKind, path: impl Into<PathBuf>) -> Self {
        Self {
            kind,
            path: path.into(),
            op: "",
            more: None,
        }
    }
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
    fn op(mut self, op: &'static str) -> Self {
        self.op = op;
        self
    }
    fn because(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.more().reason = reason.into();
        self
    }

    /// Nothing exists at `path`.
    pub fn not_found(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::NotFound, path)
    }
    /// Something already exists at `path`.
    pub fn already_exists(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::AlreadyExists, path)
    }
    /// A directory was needed at `path`.
    pub fn not_a_directory(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::NotADirectory, path)
    }
    /// A file was needed at `path`, a directory was found.
    pub fn is_a_directory(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::IsADirectory, path)
    }
    /// The directory at `path` still has entries.
    pub fn directory_not_empty(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::DirectoryNotEmpty, path)
    }
    /// A policy refuses `path`; `reason` is shown to the caller.
    pub fn access_denied(path: impl Into<PathBuf>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(FsErrorKind::AccessDenied, path).because(reason)
    }
    /// `op` is not permitted on `path`.
    pub fn permission_denied(path: impl Into<PathBuf>, op: &'static str) -> Self {
        Self::new(FsErrorKind::PermissionDenied, path).op(op)
    }
    /// The mutation `op` was refused: the filesystem is read-only.
    pub fn read_only(path: impl Into<PathBuf>, op: &'static str) -> Self {
        Self::new(FsErrorKind::ReadOnly, path).op(op)
    }
    /// Writing `requested` bytes would pass the quota's `limit`, with
    /// `usage` in use.
    pub fn quota_exceeded(
        path: impl Into<PathBuf>,
        limit: u64,
        requested: u64,
        usage: u64,
    ) -> Self {
        let mut err = Self::new(FsErrorKind::QuotaExceeded, path);
        err.more().detail = Detail::Quota {
            limit,
            requested,
            usage,
        };
        err
    }
    /// The file at `path` would be `size` bytes, more than `limit`.
    pub fn file_size_exceeded(path: impl Into<PathBuf>, size: u64, limit: u64) -> Self {
        let mut err = Self::new(FsErrorKind::FileSizeExceeded, path);
        err.more().detail = Detail::FileSize { size, limit };
        err
    }
    /// Too many operations: the next can succeed after `retry_after`.
    pub fn rate_limit_exceeded(path: impl Into<PathBuf>, retry_after: Duration) -> Self {
        let mut err = Self::new(FsErrorKind::RateLimitExceeded, path);
        err.more().detail = Detail::RetryAfter(retry_after);
        err
    }
    /// `path` (as given) is malformed or not allowed, for `reason`.
    pub fn invalid_path(path: impl Into<PathBuf>, reason: &'static str) -> Self {
        Self::new(FsErrorKind::InvalidPath, path).because(reason)
    }
    /// Resolving `path` followed too many symbolic links.
    pub fn too_many_symlinks(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::TooManySymlinks, path)
    }
    /// What is stored for `path` failed its authenticity check.
    pub fn integrity(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::IntegrityError, path)
    }
    /// The backend cannot do `op`.
    pub fn not_supported(path: impl Into<PathBuf>, op: &'static str) -> Self {
        Self::new(FsErrorKind::NotSupported, path).op(op)
    }
    /// The cargo `feature` is needed and was not compiled in.
    pub fn feature_not_enabled(path: impl Into<PathBuf>, feature: &'static str) -> Self {
        Self::new(FsErrorKind::FeatureNotEnabled, path).because(feature)
    }
    /// The password or key does not open the store.
    pub fn invalid_password(path: impl Into<PathBuf>) -> Self {
        Self::new(FsErrorKind::InvalidPassword, path)
    }
    /// A concurrent change got in the way, as `reason` says.
    pub fn conflict(path: impl Into<PathBuf>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(FsErrorKind::Conflict, path).because(reason)
    }
    /// The storage engine failed in `op`; `message` holds no host path and
    /// no secret.
    pub fn backend(
        path: impl Into<PathBuf>,
        op: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(FsErrorKind::Backend, path)
            .op(op)
            .because(message)
    }
    /// The host failed `op` with `source`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        let mut err = Self::new(FsErrorKind::Io, path).op(op);
        err.more().source = Some(source);
        err
    }
}

/// What an error says.
impl FsError {
    /// The stable kind of this error.
    pub fn kind(&self) -> FsErrorKind {
        self.kind
    }

    /// The virtual path this error concerns.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The operation that failed, for the kinds that name one
    /// (`PermissionDenied`, `ReadOnly`, `NotSupported`, `Backend`, `Io`).
    pub fn operation(&self) -> Option<&'static str> {
        (!self.op.is_empty()).then_some(self.op)
    }

    /// Why, for the kinds that say (`AccessDenied`, `InvalidPath`,
    /// `Conflict`, `Backend`; the feature, for `FeatureNotEnabled`).
    pub fn reason(&self) -> Option<&str> {
        self.more
            .as_ref()
            .map(|m| &*m.reason)
            .filter(|r| !r.is_empty())
    }

    /// For `RateLimitExceeded`: how long to wait before the next operation
    /// can succeed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.more.as_ref()?.detail {
            Detail::RetryAfter(wait) => Some(wait),
            _ => None,
        }
    }

    /// For `QuotaExceeded`: the limit, what was requested and what was in
    /// use; for `FileSizeExceeded`: the limit and the size the file would
    /// have had (as "requested"), nothing in use.
    pub fn quota(&self) -> Option<QuotaFigures> {
        match self.more.as_ref()?.detail {
            Detail::Quota {
                limit,
                requested,
                usage,
            } => Some(QuotaFigures {
                limit,
                requested,
                usage,
            }),
            Detail::FileSize { size, limit } => Some(QuotaFigures {
                limit,
                requested: size,
                usage: 0,
            }),
            _ => None,
        }
    }

    /// Whether the error says nothing is at the path: `NotFound`, or
    /// `NotADirectory` (a component of the path is not a directory, so
    /// nothing can be below it).
    pub fn is_absent(&self) -> bool {
        matches!(
            self.kind,
            FsErrorKind::NotFound | FsErrorKind::NotADirectory
        )
    }

    /// The same error about another path.
    ///
    /// Used where a lower layer only saw a resolved path and the caller should
    /// hear about the path it asked for.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = path.into();
        self
    }

    /// The POSIX `errno` for this error: one per kind (for `Io`, the host's
    /// own code where there is one).
    pub fn errno(&self) -> i32 {
        match self.kind {
            FsErrorKind::NotFound => libc::ENOENT,
            FsErrorKind::AlreadyExists => libc::EEXIST,
            FsErrorKind::NotADirectory => libc::ENOTDIR,
            FsErrorKind::IsADirectory => libc::EISDIR,
            FsErrorKind::DirectoryNotEmpty => libc::ENOTEMPTY,
            FsErrorKind::AccessDenied => libc::EACCES,
            FsErrorKind::PermissionDenied => libc::EPERM,
            FsErrorKind::ReadOnly => libc::EROFS,
            FsErrorKind::QuotaExceeded => libc::EDQUOT,
            FsErrorKind::FileSizeExceeded => libc::EFBIG,
            FsErrorKind::RateLimitExceeded => libc::EAGAIN,
            FsErrorKind::InvalidPath => libc::EINVAL,
            FsErrorKind::TooManySymlinks => libc::ELOOP,
            FsErrorKind::IntegrityError => libc::EBADMSG,
            FsErrorKind::NotSupported => libc::EOPNOTSUPP,
            FsErrorKind::FeatureNotEnabled => libc::ENOSYS,
            FsErrorKind::InvalidPassword => libc::EACCES,
            FsErrorKind::Conflict => libc::EBUSY,
            FsErrorKind::Backend => libc::EIO,
            FsErrorKind::Io => match self.more.as_ref().and_then(|m| m.source.as_ref()) {
                Some(source) => source
                    .raw_os_error()
                    .unwrap_or_else(|| io_kind_errno(source.kind())),
                None => libc::EIO,
            },
        }
    }

    /// Builds an error from a host I/O error, keeping an [`FsError`] that
    /// travelled through an `io::Error` (from a streaming reader or writer) as
    /// it was.
    pub fn from_io(path: impl Into<PathBuf>, op: &'static str, err: io::Error) -> Self {
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
            io::ErrorKind::NotFound => FsError::not_found(path),
            io::ErrorKind::AlreadyExists => FsError::already_exists(path),
            _ => FsError::io(path, op, err),
        }
    }

    /// `NotFound` for an inode number that names nothing.
    pub fn inode_not_found(inode: u64) -> Self {
        FsError::not_found(format!("<inode {inode}>"))
    }
}

/// The figures of a quota refusal, from [`FsError::quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaFigures {
    /// The limit that would be passed.
    pub limit: u64,
    /// How much the operation asked for.
    pub requested: u64,
    /// How much was in use when it asked.
    pub usage: u64,
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
        let err = FsError::quota_exceeded("/workspace/big.bin", 100, 40, 80);
        assert_eq!(
            err.to_string(),
            "/workspace/big.bin: quota exceeded (40 requested, 80 of 100 used)"
        );
        assert_eq!(err.errno(), libc::EDQUOT);
        assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    }

    #[test]
    fn an_fs_error_survives_a_trip_through_io_error() {
        let io: io::Error = FsError::read_only("/a", "write").into();
        assert_eq!(io.kind(), io::ErrorKind::ReadOnlyFilesystem);
        let back = FsError::from_io("/other", "write", io);
        assert_eq!(back.kind(), FsErrorKind::ReadOnly);
        assert_eq!(back.path(), Path::new("/a"));
    }

    /// The message of every kind, as users have read it since the first
    /// release: the path, then what went wrong.
    #[test]
    fn every_kind_reads_as_before() {
        let io = io::Error::other("disk on fire");
        let cases = [
            (FsError::not_found("/a"), "/a: not found"),
            (FsError::already_exists("/a"), "/a: already exists"),
            (FsError::not_a_directory("/a"), "/a: not a directory"),
            (FsError::is_a_directory("/a"), "/a: is a directory"),
            (
                FsError::directory_not_empty("/a"),
                "/a: directory not empty",
            ),
            (
                FsError::access_denied("/a", "denied by rule `/a`"),
                "/a: access denied (denied by rule `/a`)",
            ),
            (
                FsError::permission_denied("/a", "set_owner"),
                "set_owner /a: permission denied",
            ),
            (
                FsError::read_only("/a", "write"),
                "write /a: the filesystem is read-only",
            ),
            (
                FsError::quota_exceeded("/a", 100, 40, 80),
                "/a: quota exceeded (40 requested, 80 of 100 used)",
            ),
            (
                FsError::file_size_exceeded("/a", 11, 10),
                "/a: file would be 11 bytes, the limit is 10",
            ),
            (
                FsError::rate_limit_exceeded("/a", Duration::from_millis(250)),
                "/a: rate limit exceeded, retry in 250ms",
            ),
            (
                FsError::invalid_path("/a", "contains a NUL byte"),
                "/a: invalid path (contains a NUL byte)",
            ),
            (
                FsError::too_many_symlinks("/a"),
                "/a: too many levels of symbolic links",
            ),
            (FsError::integrity("/a"), "/a: integrity check failed"),
            (
                FsError::not_supported("/a", "hard_link"),
                "hard_link /a: not supported by this backend",
            ),
            (
                FsError::feature_not_enabled("/", "encryption"),
                "/: needs the `encryption` feature, which is not enabled",
            ),
            (FsError::invalid_password("/"), "/: wrong password or key"),
            (
                FsError::conflict("/a", "changed meanwhile"),
                "/a: conflict (changed meanwhile)",
            ),
            (
                FsError::backend("/a", "read", "database is locked"),
                "read /a: backend error: database is locked",
            ),
            (FsError::io("/a", "write", io), "write /a: disk on fire"),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message, "{:?}", err.kind());
        }
    }

    #[test]
    fn with_path_replaces_only_the_path() {
        let err = FsError::not_found("/x").with_path("/y");
        assert_eq!(err.path(), Path::new("/y"));
        assert_eq!(err.kind(), FsErrorKind::NotFound);
    }
}
