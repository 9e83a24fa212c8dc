//! [`Restrictions`]: switches off risky operations.

use crate::error::{FsError, FsResult};
use crate::middleware::{Guarded, Operation, Policy, Request};

/// Refuses the operations switched off in its [`RestrictionsLayer`] with
/// [`FsErrorKind::PermissionDenied`](crate::FsErrorKind::PermissionDenied); everything else passes.
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, Permissions, RestrictionsLayer};
///
/// let fs = FileStorage::new(
///     RestrictionsLayer::builder()
///         .deny_permissions()   // no chmod or chown
///         .deny_symlinks()      // no new symlinks
///         .build()
///         .layer(MemoryBackend::new()),
/// );
/// fs.write("/script.sh", "echo hi")?;
/// let err = fs.set_permissions("/script.sh", Permissions::from_mode(0o755)).unwrap_err();
/// assert_eq!(err.kind(), FsErrorKind::PermissionDenied);
/// assert!(fs.symlink("/script.sh", "/link").is_err());
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// Order: anywhere; it refuses before anything inside it sees the call.
pub type Restrictions<B> = Guarded<B, RestrictionsLayer>;

/// The layer (and policy) of [`Restrictions`]. Nothing is restricted until
/// a switch says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestrictionsLayer {
    deny_permissions: bool,
    deny_symlinks: bool,
    deny_hard_links: bool,
}

/// Builds a [`RestrictionsLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RestrictionsBuilder {
    layer: RestrictionsLayer,
}

impl RestrictionsLayer {
    /// A builder with nothing restricted.
    pub fn builder() -> RestrictionsBuilder {
        RestrictionsBuilder::default()
    }
}

impl RestrictionsBuilder {
    /// Refuse `set_permissions` and `set_owner`.
    pub fn deny_permissions(mut self) -> Self {
        self.layer.deny_permissions = true;
        self
    }
    /// Refuse creating symbolic links.
    pub fn deny_symlinks(mut self) -> Self {
        self.layer.deny_symlinks = true;
        self
    }
    /// Refuse creating hard links.
    pub fn deny_hard_links(mut self) -> Self {
        self.layer.deny_hard_links = true;
        self
    }
    /// The layer.
    pub fn build(self) -> RestrictionsLayer {
        self.layer
    }
}

impl Policy for RestrictionsLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        let denied = match request.op {
            Operation::SetPermissions | Operation::SetOwner => self.deny_permissions,
            Operation::Symlink => self.deny_symlinks,
            Operation::HardLink => self.deny_hard_links,
            _ => false,
        };
        if denied {
            return Err(FsError::permission_denied(
                request.error_path(),
                request.op.name(),
            ));
        }
        Ok(())
    }
}
