//! Why the service did not do what a caller asked, before any transport
//! words it: HTTP turns a [`Failure`] into its JSON error and status, MCP
//! into a tool error. Its [`kind`](Failure::kind) is also the audit's
//! outcome word, so the log and every transport speak of a failure alike.

use anyfs::{FsError, FsErrorKind};

use crate::registry::{Outcome, RegistryError};

/// Why a request was refused or failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No valid bearer secret.
    Unauthorized,
    /// A valid secret that may not do this (the reason, safe to show).
    Forbidden(&'static str),
    /// The request itself is wrong (the reason, safe to show).
    BadRequest(String),
    /// A skill bundle that would not unpack safely (the reason).
    BundleRefused(String),
    /// The audit log cannot be written (in `store`, which the message
    /// names): nothing was done (`done: false`), or what was done is not
    /// confirmed. The request may be retried.
    AuditUnavailable { done: bool, store: &'static str },
    /// The file operation failed; `explained` words a quota refusal in
    /// terms of the limit the caller hit.
    File {
        error: FsError,
        explained: Option<String>,
    },
    /// A store the service depends on cannot be reached now (`what` names
    /// it); nothing was done, and the request may be retried.
    Unavailable { what: &'static str },
    /// Something the caller cannot fix; the detail is logged, not shown.
    Internal,
}

impl Failure {
    /// An internal error: its detail goes to the log only.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Failure::Internal
    }

    /// An audit log that cannot be written: the detail is logged.
    pub(crate) fn audit_unavailable(error: RegistryError, done: bool) -> Self {
        tracing::error!(detail = %error, "the audit log cannot be written");
        let store = match error {
            RegistryError::AuditUnavailable { store } => store,
            _ => "the registry database",
        };
        Failure::AuditUnavailable { done, store }
    }

    /// The kind of failure, as the API's JSON and the audit name it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Failure::Unauthorized => "Unauthorized",
            Failure::Forbidden(_) => "Forbidden",
            Failure::BadRequest(_) => "BadRequest",
            Failure::BundleRefused(_) => "BundleRefused",
            Failure::AuditUnavailable { .. } => "AuditUnavailable",
            Failure::Unavailable { .. } => "Unavailable",
            Failure::File { error, .. } => file_error_kind(error.kind()),
            Failure::Internal => "Internal",
        }
    }

    /// What the caller is told.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Unauthorized => "a valid bearer secret is required".into(),
            Failure::Forbidden(why) => (*why).into(),
            Failure::BadRequest(why) => why.clone(),
            Failure::BundleRefused(why) => format!("bundle refused: {why}"),
            Failure::AuditUnavailable { done: false, store } => format!(
                "the audit log in {store} cannot be written at the moment; nothing was done, \
                 retry later"
            ),
            Failure::AuditUnavailable { done: true, store } => format!(
                "the audit log in {store} cannot be written at the moment; the operation is \
                 not confirmed"
            ),
            Failure::File { error, explained } => {
                explained.clone().unwrap_or_else(|| error.to_string())
            }
            Failure::Unavailable { what } => {
                format!("{what} is unavailable at the moment; nothing was done, retry later")
            }
            Failure::Internal => "internal error".into(),
        }
    }
}

/// A registry error: "unavailable" when its database cannot be reached
/// (the detail is logged), internal otherwise.
impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Unavailable(detail) => {
                tracing::error!(%detail, "the registry database is unavailable");
                Failure::Unavailable {
                    what: "the registry database (PostgreSQL)",
                }
            }
            other => Failure::internal(other),
        }
    }
}

/// A file error; "unavailable" when the database or the object store of
/// shared workspaces cannot be reached (the detail, which names its
/// endpoint, is logged).
impl From<FsError> for Failure {
    fn from(error: FsError) -> Self {
        if let Some(down) = anyfs_objects::Unavailable::of(&error) {
            tracing::error!(detail = %down, "a store of the workspaces is unavailable");
            return Failure::Unavailable {
                what: match down.service() {
                    anyfs_objects::Service::Database => "the workspace database (PostgreSQL)",
                    anyfs_objects::Service::ObjectStore => "the object store",
                },
            };
        }
        Failure::File {
            error,
            explained: None,
        }
    }
}

/// The name of a file error's kind, in the API's JSON and in the audit.
pub(crate) fn file_error_kind(kind: FsErrorKind) -> &'static str {
    match kind {
        FsErrorKind::NotFound => "NotFound",
        FsErrorKind::AccessDenied => "AccessDenied",
        FsErrorKind::PermissionDenied => "PermissionDenied",
        FsErrorKind::ReadOnly => "ReadOnly",
        FsErrorKind::AlreadyExists => "AlreadyExists",
        FsErrorKind::DirectoryNotEmpty => "DirectoryNotEmpty",
        FsErrorKind::NotADirectory => "NotADirectory",
        FsErrorKind::IsADirectory => "IsADirectory",
        FsErrorKind::Conflict => "Conflict",
        FsErrorKind::QuotaExceeded => "QuotaExceeded",
        FsErrorKind::FileSizeExceeded => "FileSizeExceeded",
        FsErrorKind::RateLimitExceeded => "RateLimitExceeded",
        FsErrorKind::InvalidPath => "InvalidPath",
        FsErrorKind::TooManySymlinks => "TooManySymlinks",
        FsErrorKind::IntegrityError => "IntegrityError",
        _ => "Backend",
    }
}

/// How an operation ended, in the audit's words.
pub(crate) fn outcome_of<T>(result: &Result<T, Failure>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(failure) => Outcome::Failed(failure.kind()),
    }
}
