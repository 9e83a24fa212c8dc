//! The API's one error type, rendered as the documented JSON
//! `{"error": {"kind", "message", "path"}}` with its status.

use anyfs::{FsError, FsErrorKind};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::failure::Failure;
use crate::registry::RegistryError;

/// An error as the API reports it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
    pub(super) path: Option<String>,
    pub(super) retry_after: Option<u64>,
}

/// What handlers return.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            path: None,
            retry_after: None,
        }
    }

    /// 404 for a resource that does not exist (or is another's).
    pub(super) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "no such resource")
    }

    /// 403 with a reason.
    pub(super) fn forbidden(message: &'static str) -> Self {
        Failure::Forbidden(message).into()
    }

    /// 400 with a reason.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Failure::BadRequest(message.into()).into()
    }

    /// 500; the detail is logged, not shown.
    pub(super) fn internal(detail: impl std::fmt::Display) -> Self {
        Failure::internal(detail).into()
    }
}

/// The status of a file error of `kind`.
fn file_error_status(kind: FsErrorKind) -> StatusCode {
    match kind {
        FsErrorKind::NotFound => StatusCode::NOT_FOUND,
        FsErrorKind::AccessDenied | FsErrorKind::PermissionDenied | FsErrorKind::ReadOnly => {
            StatusCode::FORBIDDEN
        }
        FsErrorKind::AlreadyExists
        | FsErrorKind::DirectoryNotEmpty
        | FsErrorKind::NotADirectory
        | FsErrorKind::IsADirectory
        | FsErrorKind::Conflict => StatusCode::CONFLICT,
        FsErrorKind::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
        FsErrorKind::FileSizeExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        FsErrorKind::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        FsErrorKind::InvalidPath | FsErrorKind::TooManySymlinks => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let status = match &failure {
            Failure::Unauthorized => StatusCode::UNAUTHORIZED,
            Failure::Forbidden(_) => StatusCode::FORBIDDEN,
            Failure::BadRequest(_) | Failure::BundleRefused(_) => StatusCode::BAD_REQUEST,
            Failure::AuditUnavailable { .. } | Failure::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Failure::File { error, .. } => file_error_status(error.kind()),
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut api = Self::new(status, failure.kind(), failure.message());
        if let Failure::Unavailable { .. } | Failure::AuditUnavailable { .. } = &failure {
            api.retry_after = Some(1);
        }
        if let Failure::File { error, .. } = &failure {
            api.path = Some(error.path().display().to_string());
            if let Some(wait) = error.retry_after() {
                api.retry_after = Some(wait.as_secs().max(1));
            }
        }
        api
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        Failure::from(e).into()
    }
}

impl From<FsError> for ApiError {
    fn from(e: FsError) -> Self {
        Failure::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"kind": self.kind, "message": self.message, "path": self.path}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::file_error_kind;

    /// The kind names and statuses of file errors are the API's contract.
    #[test]
    fn file_errors_keep_their_documented_kind_and_status() {
        let cases = [
            (FsErrorKind::NotFound, "NotFound", 404),
            (FsErrorKind::AccessDenied, "AccessDenied", 403),
            (FsErrorKind::ReadOnly, "ReadOnly", 403),
            (FsErrorKind::DirectoryNotEmpty, "DirectoryNotEmpty", 409),
            (FsErrorKind::QuotaExceeded, "QuotaExceeded", 507),
            (FsErrorKind::FileSizeExceeded, "FileSizeExceeded", 413),
            (FsErrorKind::RateLimitExceeded, "RateLimitExceeded", 429),
            (FsErrorKind::TooManySymlinks, "TooManySymlinks", 400),
            (FsErrorKind::IntegrityError, "IntegrityError", 500),
        ];
        for (kind, name, status) in cases {
            assert_eq!(file_error_kind(kind), name);
            assert_eq!(file_error_status(kind).as_u16(), status, "{name}");
        }
    }

    /// An unreachable registry database is a 503 the client may retry,
    /// naming the store, never a 500.
    #[test]
    fn an_unreachable_registry_database_is_503_with_retry_after() {
        let down = anyfs_postgres::DbError::Unavailable {
            target: "postgres://anyfs@127.0.0.1:5432/anyfs".into(),
            reason: "connection refused".into(),
        };
        let api = ApiError::from(RegistryError::from(down));
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!((api.kind, api.retry_after), ("Unavailable", Some(1)));
        assert!(api.message.contains("PostgreSQL"), "{}", api.message);

        let refused = anyfs_postgres::DbError::Refused {
            target: "postgres://anyfs@127.0.0.1:5432/anyfs".into(),
            code: None,
            reason: "syntax error".into(),
        };
        let api = ApiError::from(RegistryError::from(refused));
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.retry_after, None);
    }
}
