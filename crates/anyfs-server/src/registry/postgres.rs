//! The registry in PostgreSQL, for a distributed deployment: every node
//! opens a [`PostgresRegistry`] on the same database, and any node answers
//! for any account.
//!
//! It keeps the SQLite registry's semantics, with one difference the
//! sharing forces: the audit log is one hash chain *per account* (records
//! made before an account was known form the chain of `""`). Each node's
//! writer groups records as the SQLite one does; a group's transaction
//! locks the head rows of its accounts (`audit_heads`, `FOR UPDATE`, in
//! account order, so two nodes never wait for each other in a cycle),
//! chains the records after them and moves the heads on. Writers on
//! several nodes thus take turns per account, in the database, and each
//! chain stays one sequence whoever wrote its records. The head also
//! records how long the chain is, so a removed tail is noticed by
//! [`verify_postgres_chain`].
//!
//! The schema is the numbered SQL files in `migrations/postgres/`, applied
//! at start by [`anyfs_postgres::Database::migrate`].

use std::collections::BTreeMap;
use std::sync::Arc;

use anyfs_postgres::tokio_postgres::error::SqlState;
use anyfs_postgres::tokio_postgres::types::ToSql;
use anyfs_postgres::tokio_postgres::{Row, Transaction};
use anyfs_postgres::{Database, DbError, Migration};

use super::audit_log::{AuditWriter, BoxError, ChainBreak, ChainStore, chain_hash, check_link};
use super::{
    Account, AgentLogin, AgentRow, AuditEntry, AuditQuery, AuditRecord, ExecutionRow, Login,
    LoginAhead, LoginFuture, Registry, RegistryError, Result, now, open_paths, signup_wait,
    window_millis,
};
use crate::sealing::Sealer;

/// The registry's component name in `anyfs_migrations`.
const COMPONENT: &str = "registry";

/// The registry's schema, in order.
const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "registry",
        include_str!("../../migrations/postgres/0001_registry.sql"),
    ),
    Migration::new(
        2,
        "signups",
        include_str!("../../migrations/postgres/0002_signups.sql"),
    ),
];

/// The lock class of `record_signup`'s advisory locks (the second key is
/// a hash of the client address): sign-ups from one address take turns
/// across nodes.
const SIGNUP_LOCK_CLASS: i32 = 0x5167_6e75;

/// The hash a chain starts from.
const CHAIN_START: [u8; 32] = [0; 32];

/// How often a group is tried again at once when PostgreSQL aborted it to
/// break a deadlock or a serialization conflict.
const CONFLICT_RETRIES: usize = 3;

impl From<DbError> for RegistryError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            RegistryError::Unavailable(Box::new(e))
        } else {
            RegistryError::Database(Box::new(e))
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];
type Decoded<T> = std::result::Result<T, anyfs_postgres::tokio_postgres::Error>;

/// The registry in PostgreSQL (see the module docs).
pub(crate) struct PostgresRegistry {
    db: Database,
    audit: AuditWriter,
    /// Seals audit paths and agent policies, bound to their account.
    sealer: Arc<Sealer>,
    /// With workspaces in this database (`--objects`): the name of each
    /// account's workspace, whose version a login reads too.
    workspace_versions: Option<&'static str>,
    /// The queries of a login by an account's secret and by an agent's
    /// token (see [`login_sql`]).
    account_login: String,
    agent_login: String,
}

/// The queries that log in an account and an agent by their secret's
/// digest (`$1`): an account's columns ([`ACCOUNT_COLUMNS`]) and digest;
/// an agent's columns ([`AGENT_COLUMNS`]), digest and account columns.
/// Reading the version of the account's workspace named `$2` as well
/// (`workspace_versions`), in the last column.
fn login_sql(workspace_versions: bool) -> (String, String) {
    let version = |account: &str| match workspace_versions {
        true => format!(", {}", anyfs_objects::workspace_version_sql(account, "$2")),
        false => String::new(),
    };
    let account = format!(
        "SELECT {ACCOUNT_COLUMNS}, secret_digest{} FROM accounts WHERE secret_digest = $1",
        version("accounts.id")
    );
    let agent = format!(
        "SELECT a.id, a.account_id, a.name, a.config, a.policy, a.created_at, a.token_digest,
                c.id, c.name, c.suspended, c.created_at{}
         FROM agents a LEFT JOIN accounts c ON c.id = a.account_id
         WHERE a.token_digest = $1",
        version("c.id")
    );
    (account, agent)
}

/// Where a login's query has the version it read (see [`login_sql`]).
const ACCOUNT_LOGIN_VERSION: usize = 5;
const AGENT_LOGIN_VERSION: usize = 11;

/// What a login read: its row, and the version of the account's workspace
/// when it reads that.
type LoginRead<T> = (Option<T>, Option<Vec<i64>>);

impl std::fmt::Debug for PostgresRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRegistry")
            .field("database", &self.db.target())
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// An agent as stored: its policy still sealed.
struct StoredAgent {
    row: AgentRow,
    sealed_policy: Vec<u8>,
}

impl PostgresRegistry {
    /// Opens the registry in `db`: brings its schema up to date (once,
    /// whichever node starts first) and starts this node's audit writer.
    pub(crate) fn open(db: Database, sealer: Arc<Sealer>) -> Result<Self> {
        db.migrate(COMPONENT, MIGRATIONS)?;
        let audit = AuditWriter::start(PostgresChains { db: db.clone() })?;
        let (account_login, agent_login) = login_sql(false);
        Ok(Self {
            db,
            audit,
            sealer,
            workspace_versions: None,
            account_login,
            agent_login,
        })
    }

    /// Makes every login (a secret or token looked up by its digest) also
    /// read the version of the account's workspace `name` of the object
    /// backend in the same database, and hand it to
    /// [`anyfs_objects::seen_version`]: a request that only reads then
    /// needs no round trip of its own while the node's cache is current.
    pub(crate) fn reading_workspace_versions(mut self, name: &'static str) -> Self {
        self.workspace_versions = Some(name);
        (self.account_login, self.agent_login) = login_sql(true);
        self
    }

    /// Runs the login query `sql` for `digest`: its row made a `T` by
    /// `from`, and the version it read from column `version_at`.
    async fn login<T>(
        &self,
        sql: &str,
        digest: &[u8],
        version_at: usize,
        from: impl Fn(&Row) -> Decoded<T>,
    ) -> Result<LoginRead<T>> {
        let name = self.workspace_versions;
        Ok(self
            .db
            .run_async(|client| async move {
                let statement = client.prepare_cached(sql).await?;
                let row = match name {
                    Some(name) => client.query_opt(&statement, &[&digest, &name]).await?,
                    None => client.query_opt(&statement, &[&digest]).await?,
                };
                let Some(row) = row else {
                    return Ok((None, None));
                };
                let version = match name {
                    Some(_) => row.try_get::<_, Option<Vec<i64>>>(version_at)?,
                    None => None,
                };
                Ok((Some(from(&row)?), version))
            })
            .await?)
    }

    /// The account whose secret has `digest`, with the digest as stored.
    async fn account_login(&self, digest: &[u8]) -> Result<LoginRead<(Account, Vec<u8>)>> {
        self.login(&self.account_login, digest, ACCOUNT_LOGIN_VERSION, |row| {
            Ok((account_from(row)?, row.try_get(4)?))
        })
        .await
    }

    /// The agent whose token has `digest`, with the digest as stored and
    /// its account.
    async fn agent_login(&self, digest: &[u8]) -> Result<LoginRead<AgentLogin>> {
        let (found, version) = self
            .login(&self.agent_login, digest, AGENT_LOGIN_VERSION, |row| {
                let account = match row.try_get::<_, Option<String>>(7)? {
                    Some(_) => Some(account_at(row, 7)?),
                    None => None,
                };
                Ok((agent_from(row)?, row.try_get::<_, Vec<u8>>(6)?, account))
            })
            .await?;
        let found = match found {
            Some((stored, digest, account)) => Some((self.open_agent(stored)?, digest, account)),
            None => None,
        };
        Ok((found, version))
    }

    /// A login read on a thread that waits for it: the version it read is
    /// handed to [`anyfs_objects::seen_version`] on this thread.
    fn login_here<T>(&self, read: impl Future<Output = Result<LoginRead<T>>>) -> Result<Option<T>> {
        let (found, version) = self.db.block_on(read)?;
        anyfs_objects::seen_version(version.as_deref());
        Ok(found)
    }

    /// The rows `sql` selects, each made a `T` by `from`.
    fn query<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        from: impl Fn(&Row) -> Decoded<T>,
    ) -> Result<Vec<T>> {
        Ok(self.db.run(|client| async move {
            let statement = client.prepare_cached(sql).await?;
            let rows = client.query(&statement, params).await?;
            Ok(rows.iter().map(from).collect::<Decoded<Vec<T>>>()?)
        })?)
    }

    /// The row `sql` selects, if any, made a `T` by `from`.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        from: impl Fn(&Row) -> Decoded<T>,
    ) -> Result<Option<T>> {
        Ok(self.query(sql, params, from)?.into_iter().next())
    }

    /// How many rows `sql` changed.
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        Ok(self.db.run(|client| async move {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.execute(&statement, params).await?)
        })?)
    }

    /// An agent's policy as stored: sealed, bound to its account and agent.
    fn seal_policy(&self, row: &AgentRow) -> Result<Vec<u8>> {
        Ok(self.sealer.seal(
            "agent policy",
            &row.account_id,
            &row.id,
            row.policy.as_bytes(),
        )?)
    }

    /// The agent with its policy opened. A policy that does not open is an
    /// error, never an agent without restrictions.
    fn open_agent(&self, stored: StoredAgent) -> Result<AgentRow> {
        let mut row = stored.row;
        let policy = self
            .sealer
            .open(
                "agent policy",
                &row.account_id,
                &row.id,
                &stored.sealed_policy,
            )
            .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
            .ok_or_else(|| {
                RegistryError::Database(
                    format!("the policy of agent {} does not decrypt", row.id).into(),
                )
            })?;
        row.policy = policy;
        Ok(row)
    }
}

const ACCOUNT_COLUMNS: &str = "id, name, suspended, created_at";
const AGENT_COLUMNS: &str = "id, account_id, name, config, policy, created_at";
const EXECUTION_COLUMNS: &str = "id, account_id, agent_id, state, created_at, updated_at";

fn account_from(row: &Row) -> Decoded<Account> {
    account_at(row, 0)
}

/// The account whose [`ACCOUNT_COLUMNS`] start at column `first`.
fn account_at(row: &Row, first: usize) -> Decoded<Account> {
    Ok(Account {
        id: row.try_get(first)?,
        name: row.try_get(first + 1)?,
        suspended: row.try_get(first + 2)?,
        created_at: row.try_get(first + 3)?,
    })
}

fn agent_from(row: &Row) -> Decoded<StoredAgent> {
    Ok(StoredAgent {
        row: AgentRow {
            id: row.try_get(0)?,
            account_id: row.try_get(1)?,
            name: row.try_get(2)?,
            sealed_config: row.try_get(3)?,
            policy: String::new(),
            created_at: row.try_get(5)?,
        },
        sealed_policy: row.try_get(4)?,
    })
}

fn execution_from(row: &Row) -> Decoded<ExecutionRow> {
    Ok(ExecutionRow {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        agent_id: row.try_get(2)?,
        sealed: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}

/// The columns [`audit_from`] reads, in its order.
const AUDIT_COLUMNS: &str =
    "seq, NULLIF(account_id, ''), at, actor, action, path, outcome, prev, hash, sealed";

pub(crate) fn audit_from(row: &Row) -> Decoded<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get(0)?,
        account_id: row.try_get(1)?,
        at: row.try_get(2)?,
        actor: row.try_get(3)?,
        action: row.try_get(4)?,
        path: row.try_get(5)?,
        resolved_path: None,
        outcome: row.try_get(6)?,
        prev: row.try_get(7)?,
        hash: row.try_get(8)?,
        sealed: row.try_get(9)?,
    })
}

impl Registry for PostgresRegistry {
    // The audit writer does the work (as in the SQLite registry).
    fn append_audit(&self, entry: AuditEntry<'_>) -> Result<()> {
        self.audit.append_entry(&self.sealer, entry)
    }

    fn audit_ready(&self) -> Result<()> {
        self.audit.ready()
    }

    fn flush_audit(&self) {
        self.audit.flush();
    }

    fn record_signup(
        &self,
        client: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<Option<std::time::Duration>> {
        let window_ms = window_millis(window);
        let limit = i64::from(limit);
        Ok(self.db.run(|mut client_conn| async move {
            let tx = client_conn.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&SIGNUP_LOCK_CLASS, &client],
            )
            .await?;
            // One clock for every node: the database's.
            let now: i64 = tx
                .query_one(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
                    &[],
                )
                .await?
                .try_get(0)?;
            tx.execute(
                "DELETE FROM signups WHERE at <= $1",
                &[&now.saturating_sub(window_ms)],
            )
            .await?;
            let counted = tx
                .query_one(
                    "SELECT count(*), min(at) FROM signups WHERE client = $1",
                    &[&client],
                )
                .await?;
            let (count, oldest): (i64, Option<i64>) = (counted.try_get(0)?, counted.try_get(1)?);
            let wait = if count >= limit {
                Some(oldest.map_or(window, |oldest| signup_wait(oldest, now, window)))
            } else {
                tx.execute(
                    "INSERT INTO signups (client, at) VALUES ($1, $2)",
                    &[&client, &now],
                )
                .await?;
                None
            };
            tx.commit().await?;
            Ok(wait)
        })?)
    }

    fn key_checks(&self) -> Result<Vec<Vec<u8>>> {
        self.query("SELECT sealed FROM key_checks ORDER BY id", &[], |r| {
            r.try_get(0)
        })
    }

    fn add_key_check(&self, sealed: &[u8]) -> Result<()> {
        self.execute("INSERT INTO key_checks (sealed) VALUES ($1)", &[&sealed])?;
        Ok(())
    }

    fn create_account(&self, id: &str, name: &str, digest: &[u8]) -> Result<Account> {
        let at = now();
        self.execute(
            "INSERT INTO accounts (id, name, secret_digest, created_at) VALUES ($1, $2, $3, $4)",
            &[&id, &name, &digest, &at],
        )?;
        Ok(Account {
            id: id.into(),
            name: name.into(),
            suspended: false,
            created_at: at,
        })
    }

    fn account(&self, id: &str) -> Result<Option<Account>> {
        self.query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
            &[&id],
            account_from,
        )
    }

    fn account_by_digest(&self, digest: &[u8]) -> Result<Option<(Account, Vec<u8>)>> {
        self.login_here(self.account_login(digest))
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.query(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id"),
            &[],
            account_from,
        )
    }

    fn rename_account(&self, id: &str, name: &str) -> Result<()> {
        self.execute("UPDATE accounts SET name = $2 WHERE id = $1", &[&id, &name])?;
        Ok(())
    }

    fn set_account_digest(&self, id: &str, digest: &[u8]) -> Result<()> {
        self.execute(
            "UPDATE accounts SET secret_digest = $2 WHERE id = $1",
            &[&id, &digest],
        )?;
        Ok(())
    }

    fn set_suspended(&self, id: &str, suspended: bool) -> Result<bool> {
        Ok(self.execute(
            "UPDATE accounts SET suspended = $2 WHERE id = $1",
            &[&id, &suspended],
        )? > 0)
    }

    fn delete_account(&self, id: &str) -> Result<Option<(usize, usize)>> {
        let counts = self.db.run(|mut client| async move {
            let tx = client.transaction().await?;
            let executions = tx
                .execute("DELETE FROM executions WHERE account_id = $1", &[&id])
                .await?;
            let agents = tx
                .execute("DELETE FROM agents WHERE account_id = $1", &[&id])
                .await?;
            let accounts = tx
                .execute("DELETE FROM accounts WHERE id = $1", &[&id])
                .await?;
            tx.commit().await?;
            Ok((accounts, agents, executions))
        })?;
        let (accounts, agents, executions) = counts;
        Ok((accounts > 0).then_some((count(agents), count(executions))))
    }

    fn put_execution(&self, row: &ExecutionRow) -> Result<()> {
        self.execute(
            "INSERT INTO executions (id, account_id, agent_id, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
             WHERE executions.account_id = excluded.account_id",
            &[
                &row.id,
                &row.account_id,
                &row.agent_id,
                &row.sealed,
                &row.created_at,
                &row.updated_at,
            ],
        )?;
        Ok(())
    }

    fn execution(&self, account: &str, id: &str) -> Result<Option<ExecutionRow>> {
        self.query_opt(
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1 AND account_id = $2"
            ),
            &[&id, &account],
            execution_from,
        )
    }

    fn executions(&self, account: &str, agent: Option<&str>) -> Result<Vec<ExecutionRow>> {
        self.query(
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions
                 WHERE account_id = $1 AND ($2::text IS NULL OR agent_id = $2)
                 ORDER BY created_at, id"
            ),
            &[&account, &agent],
            execution_from,
        )
    }

    fn delete_execution(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM executions WHERE id = $1 AND account_id = $2",
            &[&id, &account],
        )? > 0)
    }

    fn create_agent(&self, row: &AgentRow, digest: &[u8]) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.execute(
            "INSERT INTO agents (id, account_id, name, token_digest, config, policy, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &row.id,
                &row.account_id,
                &row.name,
                &digest,
                &row.sealed_config,
                &policy,
                &row.created_at,
            ],
        )?;
        Ok(())
    }

    fn agent(&self, account: &str, id: &str) -> Result<Option<AgentRow>> {
        self.query_opt(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND account_id = $2"),
            &[&id, &account],
            agent_from,
        )?
        .map(|stored| self.open_agent(stored))
        .transpose()
    }

    fn agent_by_digest(&self, digest: &[u8]) -> Result<Option<(AgentRow, Vec<u8>)>> {
        self.query_opt(
            &format!("SELECT {AGENT_COLUMNS}, token_digest FROM agents WHERE token_digest = $1"),
            &[&digest],
            |row| Ok((agent_from(row)?, row.try_get::<_, Vec<u8>>(6)?)),
        )?
        .map(|(stored, digest)| Ok((self.open_agent(stored)?, digest)))
        .transpose()
    }

    fn agent_and_account_by_digest(&self, digest: &[u8]) -> Result<Option<AgentLogin>> {
        self.login_here(self.agent_login(digest))
    }

    fn login_ahead<'a>(&'a self, digest: &'a [u8], agent: bool) -> Option<LoginFuture<'a>> {
        Some(Box::pin(async move {
            let (login, workspace_version) = if agent {
                let (found, version) = self.agent_login(digest).await?;
                (Login::Agent(found), version)
            } else {
                let (found, version) = self.account_login(digest).await?;
                (Login::Account(found), version)
            };
            Ok(LoginAhead {
                login,
                workspace_version,
            })
        }))
    }

    fn agents(&self, account: &str) -> Result<Vec<AgentRow>> {
        self.query(
            &format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE account_id = $1 ORDER BY created_at, id"
            ),
            &[&account],
            agent_from,
        )?
        .into_iter()
        .map(|stored| self.open_agent(stored))
        .collect()
    }

    fn update_agent(&self, row: &AgentRow) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.execute(
            "UPDATE agents SET name = $3, config = $4, policy = $5 WHERE id = $1 AND account_id = $2",
            &[&row.id, &row.account_id, &row.name, &row.sealed_config, &policy],
        )?;
        Ok(())
    }

    fn set_agent_digest(&self, account: &str, id: &str, digest: &[u8]) -> Result<bool> {
        Ok(self.execute(
            "UPDATE agents SET token_digest = $3 WHERE id = $1 AND account_id = $2",
            &[&id, &account, &digest],
        )? > 0)
    }

    fn delete_agent(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM agents WHERE id = $1 AND account_id = $2",
            &[&id, &account],
        )? > 0)
    }

    fn audit_rows(
        &self,
        query: &AuditQuery,
        cursor: i64,
        batch: usize,
    ) -> Result<Vec<AuditRecord>> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let mut rows = self.query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit
                 WHERE account_id = $1 AND seq > $2
                   AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4)
                   AND ($5::text IS NULL OR outcome = $5)
                   AND ($6::int8 IS NULL OR at >= $6) AND ($7::int8 IS NULL OR at <= $7)
                 ORDER BY seq LIMIT $8"
            ),
            &[
                &query.account,
                &cursor,
                &query.actor,
                &query.action,
                &query.outcome,
                &query.since,
                &query.until,
                &limit,
            ],
            audit_from,
        )?;
        for r in &mut rows {
            open_paths(&self.sealer, r);
        }
        Ok(rows)
    }
}

fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

/// The per-account chains of a PostgreSQL registry, as a node's audit
/// writer appends to them (see the module docs).
struct PostgresChains {
    db: Database,
}

impl ChainStore for PostgresChains {
    fn commit(&mut self, records: &mut [AuditRecord]) -> std::result::Result<(), BoxError> {
        let mut attempt = 0;
        loop {
            match append_group(&self.db, records) {
                Err(error)
                    if attempt < CONFLICT_RETRIES
                        && matches!(
                            error.code(),
                            Some(&SqlState::T_R_DEADLOCK_DETECTED)
                                | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        ) =>
                {
                    attempt += 1;
                }
                other => return other.map_err(BoxError::from),
            }
        }
    }

    fn name(&self) -> &'static str {
        "the registry database (PostgreSQL)"
    }
}

/// Chains `records` after their accounts' heads and commits them, and the
/// moved heads, in one transaction.
fn append_group(db: &Database, records: &mut [AuditRecord]) -> std::result::Result<(), DbError> {
    db.run(|mut client| async move {
        let tx = client.transaction().await?;
        chain_records(&tx, records).await?;
        tx.commit().await?;
        Ok(())
    })
}

/// Chains `records` after their accounts' heads, inserts them and moves
/// the heads on, in the transaction `tx` (which the caller commits).
pub(crate) async fn chain_records(
    tx: &Transaction<'_>,
    records: &mut [AuditRecord],
) -> std::result::Result<(), anyfs_postgres::tokio_postgres::Error> {
    let chain = |r: &AuditRecord| r.account_id.clone().unwrap_or_default();
    let mut accounts: Vec<String> = records.iter().map(chain).collect();
    accounts.sort_unstable();
    accounts.dedup();
    // Heads are made and locked in account order: two writers locking
    // overlapping sets never wait for each other in a cycle.
    tx.execute(
        "INSERT INTO audit_heads (account_id, seq, hash)
         SELECT account_id, 0, $2 FROM unnest($1::text[]) AS account_id ORDER BY account_id
         ON CONFLICT (account_id) DO NOTHING",
        &[&accounts, &CHAIN_START.as_slice()],
    )
    .await?;
    let heads = tx
        .query(
            "SELECT account_id, seq, hash FROM audit_heads WHERE account_id = ANY($1)
             ORDER BY account_id FOR UPDATE",
            &[&accounts],
        )
        .await?;
    let mut ends = BTreeMap::new();
    for head in &heads {
        let account: String = head.try_get(0)?;
        ends.insert(
            account,
            (head.try_get::<_, i64>(1)?, head.try_get::<_, Vec<u8>>(2)?),
        );
    }
    let mut columns = AuditColumns::default();
    for r in records.iter_mut() {
        let account = chain(r);
        let end = ends
            .entry(account.clone())
            .or_insert_with(|| (0, CHAIN_START.to_vec()));
        r.seq = end.0 + 1;
        r.prev = end.1.clone();
        r.hash = chain_hash(&r.prev, r);
        *end = (r.seq, r.hash.clone());
        columns.push(account, r);
    }
    tx.execute(
        "INSERT INTO audit (account_id, seq, at, actor, action, path, outcome, prev, hash, sealed)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::bytea[], $9::bytea[], $10::bytea[])",
        &[
            &columns.account_id,
            &columns.seq,
            &columns.at,
            &columns.actor,
            &columns.action,
            &columns.path,
            &columns.outcome,
            &columns.prev,
            &columns.hash,
            &columns.sealed,
        ],
    )
    .await?;
    let (head_accounts, head_ends): (Vec<String>, Vec<(i64, Vec<u8>)>) = ends.into_iter().unzip();
    let (head_seqs, head_hashes): (Vec<i64>, Vec<Vec<u8>>) = head_ends.into_iter().unzip();
    tx.execute(
        "UPDATE audit_heads SET seq = moved.seq, hash = moved.hash
         FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS moved(account_id, seq, hash)
         WHERE audit_heads.account_id = moved.account_id",
        &[&head_accounts, &head_seqs, &head_hashes],
    )
    .await?;
    Ok(())
}

/// A group of records as columns, for one `INSERT ... SELECT unnest(...)`.
#[derive(Default)]
struct AuditColumns {
    account_id: Vec<String>,
    seq: Vec<i64>,
    at: Vec<i64>,
    actor: Vec<String>,
    action: Vec<String>,
    path: Vec<Option<String>>,
    outcome: Vec<String>,
    prev: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    sealed: Vec<Option<Vec<u8>>>,
}

impl AuditColumns {
    fn push(&mut self, account: String, r: &AuditRecord) {
        self.account_id.push(account);
        self.seq.push(r.seq);
        self.at.push(r.at);
        self.actor.push(r.actor.clone());
        self.action.push(r.action.clone());
        self.path.push(r.path.clone());
        self.outcome.push(r.outcome.clone());
        self.prev.push(r.prev.clone());
        self.hash.push(r.hash.clone());
        self.sealed.push(r.sealed.clone());
    }
}

/// Checks every account's audit chain in the PostgreSQL registry at `url`:
/// every record's hash, every link to the one before, no gap, and no
/// record missing at the end (each chain's head names its last record).
/// Returns how many records were checked, or where a chain breaks.
pub fn verify_postgres_chain(url: &str) -> std::result::Result<u64, ChainBreak> {
    let read = |e: DbError| ChainBreak::Read(Box::new(e));
    let db = Database::connect(url).map_err(read)?;
    let heads: BTreeMap<String, i64> = db
        .run(|client| async move {
            // Every chain, also one whose head row is gone (-1: no head).
            let rows = client
                .query(
                    "SELECT account_id, coalesce(h.seq, -1) FROM
                         (SELECT DISTINCT account_id FROM audit UNION SELECT account_id FROM audit_heads) AS chains
                         LEFT JOIN audit_heads AS h USING (account_id)",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Decoded<_>>()?)
        })
        .map_err(read)?;
    let mut checked = 0;
    // Up to each head as read first: records appended while this runs (the
    // service may be serving) are for the next check.
    for (account, recorded) in heads {
        if recorded < 0 {
            return Err(ChainBreak::InAccount {
                account,
                problem: Box::new(ChainBreak::Read("its head row is missing".into())),
            });
        }
        let mut prev = CHAIN_START.to_vec();
        let mut last = 0;
        // In pages, so that a long chain is never held in memory whole.
        loop {
            let account = &account;
            let page = db
                .run(|client| async move {
                    let rows = client
                        .query(
                            &format!(
                                "SELECT {AUDIT_COLUMNS} FROM audit
                                 WHERE account_id = $1 AND seq > $2 AND seq <= $3
                                 ORDER BY seq LIMIT 1000"
                            ),
                            &[account, &last, &recorded],
                        )
                        .await?;
                    Ok(rows.iter().map(audit_from).collect::<Decoded<Vec<_>>>()?)
                })
                .map_err(read)?;
            if page.is_empty() {
                break;
            }
            for record in page {
                let seq = record.seq;
                check_link(last + 1, &mut prev, record).map_err(|problem| {
                    ChainBreak::InAccount {
                        account: account.clone(),
                        problem: Box::new(problem),
                    }
                })?;
                last = seq;
                checked += 1;
            }
        }
        if last != recorded {
            return Err(ChainBreak::Truncated {
                account,
                recorded,
                found: last,
            });
        }
    }
    Ok(checked)
}
