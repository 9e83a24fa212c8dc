//! The registry: accounts, agents (configs and policies sealed), executions
//! and the hash-chained audit log (paths sealed). Secrets are stored as
//! digests only.
//!
//! [`Registry`] is what the service asks of any registry; its methods
//! block, so they are called on tokio's blocking pool, never on the async
//! threads. [`SqliteRegistry`] keeps it in one SQLite database (the
//! embedded default); [`PostgresRegistry`] in a PostgreSQL database shared
//! by several nodes. One test suite (`suite`) runs against both.

mod audit_log;
mod postgres;
mod sqlite;
#[cfg(test)]
mod suite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::sealing::{SealError, Sealer};

pub(crate) use audit_log::audit_from;
pub use audit_log::{ChainBreak, verify_chain};
pub use postgres::verify_postgres_chain;
pub(crate) use postgres::{PostgresRegistry, audit_from as postgres_audit_from, chain_records};
pub(crate) use sqlite::SqliteRegistry;

/// Why the registry could not answer. Safe to show: it never holds a
/// secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    /// The database failed or refused a statement, or no connection to it
    /// could be had in time.
    #[error("registry: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    /// The registry's database cannot be reached now (PostgreSQL down or
    /// restarting, every connection busy): the request may be retried.
    #[error("registry: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// A value could not be sealed for storage.
    #[error("registry: {0}")]
    Seal(#[from] SealError),
    /// The audit writer fails to commit to `store` (which it names, for
    /// the caller): operations must be refused until it succeeds again.
    #[error("the audit log in {store} cannot be written at the moment")]
    AuditUnavailable { store: &'static str },
    /// The audit writer is gone (the service is shutting down).
    #[error("the audit writer stopped")]
    AuditWriterStopped,
    /// The audit writer's thread could not be started.
    #[error("cannot start the audit writer: {0}")]
    StartWriter(std::io::Error),
}

/// What registry calls return.
pub(crate) type Result<T> = std::result::Result<T, RegistryError>;

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) suspended: bool,
    pub(crate) created_at: i64,
}

/// An agent row: the config still sealed, the policy opened.
#[derive(Debug, Clone)]
pub(crate) struct AgentRow {
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) name: String,
    pub(crate) sealed_config: Vec<u8>,
    pub(crate) policy: String,
    pub(crate) created_at: i64,
}

/// What authenticating an agent reads: the agent, its token's digest as
/// stored, and its account (`None`: deleted meanwhile).
pub(crate) type AgentLogin = (AgentRow, Vec<u8>, Option<Account>);

/// What a login reads for a secret, by the secret's kind.
pub(crate) enum Login {
    /// [`Registry::account_by_digest`].
    Account(Option<(Account, Vec<u8>)>),
    /// [`Registry::agent_and_account_by_digest`].
    Agent(Option<AgentLogin>),
}

/// A login read ahead, on the runtime ([`Registry::login_ahead`]).
pub(crate) struct LoginAhead {
    pub(crate) login: Login,
    /// What it read of the version of the account's workspace, if it reads
    /// that (for [`anyfs_objects::seen_version`]).
    pub(crate) workspace_version: Option<Vec<i64>>,
}

/// A future of a login read ahead.
pub(crate) type LoginFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<LoginAhead>> + Send + 'a>>;

/// An execution row: its state still sealed.
#[derive(Debug, Clone)]
pub(crate) struct ExecutionRow {
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) agent_id: Option<String>,
    pub(crate) sealed: Vec<u8>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// How an audited operation ended: the one vocabulary of the audit's
/// `outcome`, whatever the transport. `ok`, or the kind of error as the
/// API's JSON names it (`NotFound`, `AccessDenied`, `Unauthorized`,
/// `Forbidden`, …; see [`crate::failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Ok,
    /// Refused or failed, with the error's kind.
    Failed(&'static str),
}

impl Outcome {
    /// The word stored in the record.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(kind) => kind,
        }
    }
}

/// A record to append to the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditEntry<'a> {
    /// The account it concerns (`None` before one is known).
    pub(crate) account: Option<&'a str>,
    /// Who acted: `account`, `agent:ID`, `admin` or `unknown`.
    pub(crate) actor: &'a str,
    /// What was asked: `write`, `mcp move`, `create agent`, …
    pub(crate) action: &'a str,
    /// The path (or agent id) as the caller gave it.
    pub(crate) path: Option<&'a str>,
    /// Where `path` resolved to, when the caller knows it; otherwise its
    /// lexical resolution is recorded.
    pub(crate) resolved: Option<&'a str>,
    pub(crate) outcome: Outcome,
}

/// One audit record. At rest, `path` and `resolved_path` are sealed (in
/// `sealed`) under the account; records from before that hold `path` in
/// clear.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditRecord {
    pub(crate) seq: i64,
    pub(crate) account_id: Option<String>,
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    /// The path as the caller asked for it.
    pub(crate) path: Option<String>,
    /// Where it resolved to (symlinks and `..` applied), or its lexical
    /// normal form when that could not be found out.
    pub(crate) resolved_path: Option<String>,
    pub(crate) outcome: String,
    #[serde(skip)]
    pub(crate) prev: Vec<u8>,
    #[serde(skip)]
    pub(crate) hash: Vec<u8>,
    /// The paths as stored: sealed for the account.
    #[serde(skip)]
    pub(crate) sealed: Option<Vec<u8>>,
}

/// Which records a query asks for (see [`Registry::audit_page`]).
#[derive(Debug, Default)]
pub(crate) struct AuditQuery {
    pub(crate) account: String,
    /// Records after this sequence number.
    pub(crate) cursor: i64,
    pub(crate) limit: usize,
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

/// `path` with `.`, empty names and `..` applied lexically: the resolved
/// path when the file system cannot tell (the file is gone).
pub(crate) fn lexical_resolution(path: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    format!("/{}", names.join("/"))
}

/// How long to wait until a sign-up recorded at `oldest` (milliseconds
/// since the epoch) leaves a `window` that ends `now`: at least a second,
/// the unit of `Retry-After`.
pub(crate) fn signup_wait(oldest: i64, now: i64, window: Duration) -> Duration {
    let ends = oldest.saturating_add(window_millis(window));
    let wait = u64::try_from(ends.saturating_sub(now)).unwrap_or(0);
    Duration::from_millis(wait).max(Duration::from_secs(1))
}

/// `window` in milliseconds, as sign-up times are stored.
pub(crate) fn window_millis(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the service asks of a registry. Every method may block (on disk,
/// on a connection): call them on the blocking pool.
pub(crate) trait Registry: Send + Sync + std::fmt::Debug {
    // ---------------------------------------------------------- key checks

    /// The stored key-check values (see `Service::open`).
    fn key_checks(&self) -> Result<Vec<Vec<u8>>>;
    /// Stores one more key-check value.
    fn add_key_check(&self, sealed: &[u8]) -> Result<()>;

    // ------------------------------------------------------------ accounts

    /// Creates an account whose secret has `digest`.
    fn create_account(&self, id: &str, name: &str, digest: &[u8]) -> Result<Account>;
    /// The account `id`.
    fn account(&self, id: &str) -> Result<Option<Account>>;
    /// The account whose secret has `digest`, with the digest as stored
    /// (for a constant-time comparison).
    fn account_by_digest(&self, digest: &[u8]) -> Result<Option<(Account, Vec<u8>)>>;
    /// Every account, oldest first.
    fn accounts(&self) -> Result<Vec<Account>>;
    /// Renames an account.
    fn rename_account(&self, id: &str, name: &str) -> Result<()>;
    /// Replaces an account's secret digest.
    fn set_account_digest(&self, id: &str, digest: &[u8]) -> Result<()>;
    /// Suspends or unsuspends an account; whether it exists.
    fn set_suspended(&self, id: &str, suspended: bool) -> Result<bool>;
    /// Deletes an account, its agents and executions; how many agents and
    /// executions went (`None`: no such account).
    fn delete_account(&self, id: &str) -> Result<Option<(usize, usize)>>;

    // ---------------------------------------------------------- executions

    /// Creates or replaces an execution of its account.
    fn put_execution(&self, row: &ExecutionRow) -> Result<()>;
    /// The execution `id` of `account` (another account's is `None`).
    fn execution(&self, account: &str, id: &str) -> Result<Option<ExecutionRow>>;
    /// An account's executions (only `agent`'s, when given), oldest first.
    fn executions(&self, account: &str, agent: Option<&str>) -> Result<Vec<ExecutionRow>>;
    /// Deletes an execution; whether it existed.
    fn delete_execution(&self, account: &str, id: &str) -> Result<bool>;

    // -------------------------------------------------------------- agents

    /// Creates an agent whose token has `digest`.
    fn create_agent(&self, row: &AgentRow, digest: &[u8]) -> Result<()>;
    /// The agent `id` of account `account` (another account's agent is
    /// `None`, as one that does not exist).
    fn agent(&self, account: &str, id: &str) -> Result<Option<AgentRow>>;
    /// The agent whose token has `digest`, with the digest as stored.
    fn agent_by_digest(&self, digest: &[u8]) -> Result<Option<(AgentRow, Vec<u8>)>>;
    /// [`Registry::agent_by_digest`] with the agent's account (`None`:
    /// deleted meanwhile): what authenticating an agent reads, which a
    /// registry behind a network may answer in one round trip.
    fn agent_and_account_by_digest(&self, digest: &[u8]) -> Result<Option<AgentLogin>> {
        let Some((agent, stored)) = self.agent_by_digest(digest)? else {
            return Ok(None);
        };
        let account = self.account(&agent.account_id)?;
        Ok(Some((agent, stored, account)))
    }
    /// For a registry behind a network (PostgreSQL): the login of a
    /// secret whose digest is `digest` (an agent's token when `agent`, else
    /// an account's secret) as a future, so that a request waits for it
    /// without holding a thread; `None` (the default) where a blocking read
    /// costs less than a trip to the runtime (SQLite).
    fn login_ahead<'a>(&'a self, _digest: &'a [u8], _agent: bool) -> Option<LoginFuture<'a>> {
        None
    }
    /// An account's agents, oldest first.
    fn agents(&self, account: &str) -> Result<Vec<AgentRow>>;
    /// Stores an agent's name, config and policy.
    fn update_agent(&self, row: &AgentRow) -> Result<()>;
    /// Replaces an agent's token digest; whether the agent exists.
    fn set_agent_digest(&self, account: &str, id: &str, digest: &[u8]) -> Result<bool>;
    /// Deletes an agent; whether it existed.
    fn delete_agent(&self, account: &str, id: &str) -> Result<bool>;

    // ------------------------------------------------------------ sign-ups

    /// Records a sign-up from `client` (its address) if fewer than `limit`
    /// were recorded for it within the last `window`, checked and recorded
    /// at once so that every node sharing the registry counts them alike.
    /// Returns `None` when it was recorded, or how long to wait until the
    /// oldest one counted leaves the window. Sign-ups older than `window`
    /// (any client's) are forgotten on the way.
    fn record_signup(&self, client: &str, limit: u32, window: Duration)
    -> Result<Option<Duration>>;

    // --------------------------------------------------------------- audit

    /// Appends one record to the chain (committed within milliseconds,
    /// with the records around it). The record is always kept until it is
    /// committed; an error says that the log cannot be written at the
    /// moment, so that the operation must not be reported as done.
    fn append_audit(&self, entry: AuditEntry<'_>) -> Result<()>;

    /// Whether audit records are being written: an error while they cannot
    /// be (operations must then be refused). Never blocks.
    fn audit_ready(&self) -> Result<()>;

    /// Waits until every audit record appended so far is committed (or its
    /// commit failed).
    fn flush_audit(&self);

    /// Up to `batch` of the records `query` asks for after `cursor`, oldest
    /// first, their paths opened.
    fn audit_rows(&self, query: &AuditQuery, cursor: i64, batch: usize)
    -> Result<Vec<AuditRecord>>;

    /// Appends a record of `action` with its outcome; the resolved path is
    /// `path`'s lexical resolution.
    fn audit(
        &self,
        account: Option<&str>,
        actor: &str,
        action: &str,
        path: Option<&str>,
        outcome: Outcome,
    ) -> Result<()> {
        self.append_audit(AuditEntry {
            account,
            actor,
            action,
            path,
            resolved: None,
            outcome,
        })
    }

    /// One page of an account's records, oldest first: those after
    /// `query.cursor` that match its filters and that `visible` keeps, at
    /// most `query.limit`. Also returns the cursor of the next page, if
    /// there may be one. At most ten times `limit` records are looked at,
    /// so that a page the filter keeps sparse is still quick.
    fn audit_page(
        &self,
        query: &AuditQuery,
        visible: &dyn Fn(&AuditRecord) -> bool,
    ) -> Result<(Vec<AuditRecord>, Option<i64>)> {
        self.flush_audit();
        let limit = query.limit.max(1);
        let mut out = Vec::new();
        let mut cursor = query.cursor;
        let mut scanned = 0;
        loop {
            let batch = limit - out.len();
            let rows = self.audit_rows(query, cursor, batch)?;
            let exhausted = rows.len() < batch;
            scanned += rows.len();
            for r in rows {
                cursor = r.seq;
                if visible(&r) {
                    out.push(r);
                }
            }
            if exhausted {
                return Ok((out, None));
            }
            if out.len() >= limit || scanned >= 10 * limit {
                return Ok((out, Some(cursor)));
            }
        }
    }
}

/// The paths of a record as stored: sealed for its account (the resolved
/// path is `path`'s lexical resolution when not given).
pub(crate) fn seal_paths(
    sealer: &Sealer,
    account: Option<&str>,
    path: Option<&str>,
    resolved: Option<&str>,
) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let resolved = resolved.map_or_else(|| lexical_resolution(path), String::from);
    let paths = serde_json::json!({"path": path, "resolved": resolved});
    Ok(Some(sealer.seal(
        "audit paths",
        account.unwrap_or(""),
        "",
        paths.to_string().as_bytes(),
    )?))
}

/// Fills in a record's paths from its sealed form (or, for a record from
/// before sealed paths, its resolved path from its clear one).
pub(crate) fn open_paths(sealer: &Sealer, r: &mut AuditRecord) {
    match &r.sealed {
        Some(sealed) => {
            let opened = sealer
                .open(
                    "audit paths",
                    r.account_id.as_deref().unwrap_or(""),
                    "",
                    sealed,
                )
                .and_then(|plain| serde_json::from_slice::<serde_json::Value>(&plain).ok());
            if let Some(paths) = opened {
                r.path = paths["path"].as_str().map(String::from);
                r.resolved_path = paths["resolved"].as_str().map(String::from);
            }
        }
        None => r.resolved_path = r.path.as_deref().map(lexical_resolution),
    }
}
