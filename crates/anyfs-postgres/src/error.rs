//! [`DbError`]: what went wrong talking to PostgreSQL, sorted by what the
//! caller does about it, and never carrying the password of the URL.

use std::time::Duration;

use tokio_postgres::error::SqlState;

/// What went wrong talking to PostgreSQL.
///
/// The two kinds a service tells apart: [`DbError::Unavailable`] (the
/// server cannot be reached or cannot take work right now; answer 503 with
/// `Retry-After` and try again later) and [`DbError::Refused`] (the server
/// answered and said no: an SQL error, a violated constraint, a failed
/// login). Messages name the server as `postgres://user@host:port/database`
/// and never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server cannot be reached or cannot take work now: connection
    /// refused, connect timeout, connection lost, server shutting down or
    /// starting, too many connections.
    #[error("PostgreSQL at {target} is unavailable: {reason}")]
    Unavailable {
        /// The server, without the password.
        target: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the statement or the login.
    #[error("PostgreSQL at {target} refused the request: {reason}")]
    Refused {
        /// The server, without the password.
        target: String,
        /// The SQLSTATE code, when the server sent one.
        code: Option<SqlState>,
        /// The server's message.
        reason: String,
    },
    /// The URL cannot be used (the reason names the part, not its value).
    #[error("invalid PostgreSQL URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The schema in the database does not fit this build's migrations.
    #[error("PostgreSQL at {target}: migration {version} of {component}: {reason}")]
    Migration {
        /// The server, without the password.
        target: String,
        /// The component whose migrations these are.
        component: String,
        /// The migration's version.
        version: i32,
        /// What does not fit.
        reason: String,
    },
}

impl DbError {
    /// True for [`DbError::Unavailable`]: retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The SQLSTATE of a refused statement.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Refused { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// True when a unique or primary key constraint refused the statement.
    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some(&SqlState::UNIQUE_VIOLATION)
    }

    /// How long a client should wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.is_unavailable().then_some(Duration::from_secs(1))
    }

    /// Names the server in an error made without knowing it (by `?` on a
    /// driver error inside [`Database::run`](crate::Database::run)).
    pub(crate) fn at(mut self, server: &str) -> Self {
        match &mut self {
            Self::Unavailable { target, .. }
            | Self::Refused { target, .. }
            | Self::Migration { target, .. } => {
                if target.is_empty() {
                    server.clone_into(target);
                }
            }
            Self::InvalidUrl { .. } => {}
        }
        self
    }

    pub(crate) fn unavailable(target: &str, reason: impl Into<String>) -> Self {
        Self::Unavailable {
            target: target.to_owned(),
            reason: reason.into(),
        }
    }
}

/// SQLSTATE classes and codes that mean "not now" rather than "no":
/// connection exceptions (08), insufficient resources (53), operator
/// intervention (57: shutting down, starting up), system errors (58).
fn transient(code: &SqlState) -> bool {
    let code = code.code();
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        && code != SqlState::QUERY_CANCELED.code()
}

/// Sorts a driver error. The target is filled in by the
/// [`Database`](crate::Database) that ran the statement.
impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            let reason = format!("{} ({})", db.message(), db.code().code());
            return if transient(db.code()) {
                Self::Unavailable {
                    target: String::new(),
                    reason,
                }
            } else {
                Self::Refused {
                    target: String::new(),
                    code: Some(db.code().clone()),
                    reason,
                }
            };
        }
        let reason = chain(&error);
        // Without a server message: the connection failing (I/O, closed,
        // timed out) is "not now"; anything else (a value that does not
        // encode or decode, a failed login exchange) is a refusal.
        let io = std::error::Error::source(&error)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some());
        if error.is_closed() || io || reason.starts_with("timeout") {
            Self::Unavailable {
                target: String::new(),
                reason,
            }
        } else {
            Self::Refused {
                target: String::new(),
                code: None,
                reason,
            }
        }
    }
}

/// The error and its sources, one line.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
