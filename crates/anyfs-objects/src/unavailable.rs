//! [`Unavailable`]: the error that says a service the backend depends on
//! (the database or the object store) cannot be reached right now, so that
//! a server can answer 503 with `Retry-After` rather than a failure of the
//! request itself.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::Path;

use anyfs::{FsError, FsErrorKind};

/// Which service could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// PostgreSQL, which holds the tree.
    Database,
    /// The object store, which holds the content.
    ObjectStore,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Database => "the database",
            Service::ObjectStore => "the object store",
        })
    }
}

/// A service could not be reached: the operation changed nothing it had
/// not finished, and may succeed when tried again.
///
/// It travels inside an [`FsError`] of kind `Io`; [`Unavailable::of`]
/// finds it there. Its message names the service and its endpoint, never a
/// credential.
///
/// ```
/// use anyfs_objects::{Service, Unavailable};
///
/// let err = Unavailable::new(Service::ObjectStore, "http://127.0.0.1:9000", "connection refused")
///     .into_fs_error("/notes.txt", "read");
/// let found = Unavailable::of(&err).unwrap();
/// assert_eq!(found.service(), Service::ObjectStore);
/// assert_eq!(
///     err.to_string(),
///     "read /notes.txt: the object store at http://127.0.0.1:9000 is unavailable: connection refused"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Unavailable {
    service: Service,
    endpoint: String,
    reason: String,
}

impl Unavailable {
    /// `service` at `endpoint` (shown as given: leave credentials out)
    /// failed for `reason`.
    pub fn new(service: Service, endpoint: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            service,
            endpoint: endpoint.into(),
            reason: reason.into(),
        }
    }

    /// Which service could not be reached.
    pub fn service(&self) -> Service {
        self.service
    }

    /// Where it was looked for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The [`FsError`] carrying this, about `path` and `op`.
    pub fn into_fs_error(self, path: impl AsRef<Path>, op: &'static str) -> FsError {
        FsError::io(
            path.as_ref(),
            op,
            io::Error::new(io::ErrorKind::NotConnected, self),
        )
    }

    /// The [`Unavailable`] inside `err`, if that is what it is.
    pub fn of(err: &FsError) -> Option<&Unavailable> {
        if err.kind() != FsErrorKind::Io {
            return None;
        }
        err.source()?
            .downcast_ref::<io::Error>()?
            .get_ref()?
            .downcast_ref::<Unavailable>()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} is unavailable: {}",
            self.service, self.endpoint, self.reason
        )
    }
}

impl Error for Unavailable {}
