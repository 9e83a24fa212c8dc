//! The registry in one SQLite database (WAL): reads and writes through a
//! small pool of connections, so that requests read concurrently and none
//! waits for another's query; the audit chain is appended by its own
//! writer on its own connection, one group at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::audit_log::{AuditWriter, SqliteChain, audit_from};
use super::{
    Account, AgentRow, AuditEntry, AuditQuery, AuditRecord, ExecutionRow, Registry, RegistryError,
    Result, now, open_paths, signup_wait, window_millis,
};
use crate::sealing::Sealer;

impl From<rusqlite::Error> for RegistryError {
    fn from(e: rusqlite::Error) -> Self {
        RegistryError::Database(Box::new(e))
    }
}

impl From<r2d2::Error> for RegistryError {
    fn from(e: r2d2::Error) -> Self {
        RegistryError::Database(Box::new(e))
    }
}

/// How long a statement waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections kept for requests. Reads run side by side (WAL); writes
/// take SQLite's write lock in turn.
const POOL_SIZE: u32 = 8;

/// How long a request waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Opens the pool's connections to the registry file, each set up alike.
#[derive(Debug)]
struct Connections {
    path: std::path::PathBuf,
}

impl Connections {
    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Per connection: foreign keys (deleting an account deletes its
        // agents) and a durable commit.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
        Ok(conn)
    }
}

impl r2d2::ManageConnection for Connections {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        Self::connect(&self.path)
    }

    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        conn.execute_batch("")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

/// The registry in SQLite.
pub(crate) struct SqliteRegistry {
    pool: r2d2::Pool<Connections>,
    audit: AuditWriter,
    /// Seals audit paths and agent policies, bound to their account.
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for SqliteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRegistry")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// The tables, made if missing.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_digest BLOB NOT NULL UNIQUE,
        suspended INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS agents (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_digest BLOB NOT NULL UNIQUE,
        config BLOB NOT NULL,
        policy TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        account_id TEXT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        path TEXT,
        outcome TEXT NOT NULL,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_account ON audit(account_id, seq);
    CREATE TABLE IF NOT EXISTS executions (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        agent_id TEXT,
        state BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS executions_account ON executions(account_id, created_at);
    CREATE TABLE IF NOT EXISTS signups (
        client TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS signups_client ON signups(client, at);
    CREATE INDEX IF NOT EXISTS signups_at ON signups(at);
    CREATE TABLE IF NOT EXISTS key_checks (
        id INTEGER PRIMARY KEY,
        sealed BLOB NOT NULL
    );
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

impl SqliteRegistry {
    /// Opens (or creates) the registry at `path`: brings its tables up to
    /// date, seals what older versions stored in clear, and starts the
    /// audit writer.
    pub(crate) fn open(path: &Path, sealer: Arc<Sealer>) -> Result<Self> {
        let conn = Connections::connect(path)?;
        // WAL: readers never wait for the writer (kept in the file).
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
        conn.execute_batch(SCHEMA)?;
        // Registries from before sealed audit paths: add the column.
        let has_sealed: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'sealed'",
            [],
            |r| r.get(0),
        )?;
        if !has_sealed {
            conn.execute_batch("ALTER TABLE audit ADD COLUMN sealed BLOB;")?;
        }
        seal_clear_policies(&conn, &sealer)?;
        let audit = AuditWriter::start(SqliteChain::new(conn))?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            // A local file's connection does not break: no query per checkout.
            .test_on_check_out(false)
            .build(Connections {
                path: path.to_path_buf(),
            })?;
        Ok(Self {
            pool,
            audit,
            sealer,
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Connections>> {
        Ok(self.pool.get()?)
    }

    fn account_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
        Ok(Account {
            id: row.get(0)?,
            name: row.get(1)?,
            suspended: row.get::<_, i64>(2)? != 0,
            created_at: row.get(3)?,
        })
    }

    fn execution_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
        Ok(ExecutionRow {
            id: r.get(0)?,
            account_id: r.get(1)?,
            agent_id: r.get(2)?,
            sealed: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        })
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

    /// An agent row, its policy opened. A policy that does not open is an
    /// error, never an agent without restrictions.
    fn agent_from(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
        let id: String = row.get(0)?;
        let account_id: String = row.get(1)?;
        let policy = match row.get_ref(4)? {
            // Written before policies were sealed (and sealed at the next start).
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            rusqlite::types::ValueRef::Blob(sealed) => self
                .sealer
                .open("agent policy", &account_id, &id, sealed)
                .and_then(|p| String::from_utf8(p.to_vec()).ok())
                .ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Blob,
                        format!("the policy of agent {id} does not decrypt").into(),
                    )
                })?,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    4,
                    other.data_type(),
                    format!("the policy of agent {id} is not readable").into(),
                ));
            }
        };
        Ok(AgentRow {
            id,
            account_id,
            name: row.get(2)?,
            sealed_config: row.get(3)?,
            policy,
            created_at: row.get(5)?,
        })
    }
}

impl Registry for SqliteRegistry {
    fn key_checks(&self) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT sealed FROM key_checks ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_key_check(&self, sealed: &[u8]) -> Result<()> {
        self.conn()?
            .execute("INSERT INTO key_checks (sealed) VALUES (?1)", [sealed])?;
        Ok(())
    }

    fn create_account(&self, id: &str, name: &str, digest: &[u8]) -> Result<Account> {
        let at = now();
        self.conn()?.execute(
            "INSERT INTO accounts (id, name, secret_digest, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, digest, at],
        )?;
        Ok(Account {
            id: id.into(),
            name: name.into(),
            suspended: false,
            created_at: at,
        })
    }

    fn account(&self, id: &str) -> Result<Option<Account>> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT id, name, suspended, created_at FROM accounts WHERE id = ?1")?
            .query_row([id], Self::account_from)
            .optional()?)
    }

    fn account_by_digest(&self, digest: &[u8]) -> Result<Option<(Account, Vec<u8>)>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT id, name, suspended, created_at, secret_digest FROM accounts
                 WHERE secret_digest = ?1",
            )?
            .query_row([digest], |row| Ok((Self::account_from(row)?, row.get(4)?)))
            .optional()?)
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, suspended, created_at FROM accounts ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], Self::account_from)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn rename_account(&self, id: &str, name: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE accounts SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(())
    }

    fn set_account_digest(&self, id: &str, digest: &[u8]) -> Result<()> {
        self.conn()?.execute(
            "UPDATE accounts SET secret_digest = ?2 WHERE id = ?1",
            params![id, digest],
        )?;
        Ok(())
    }

    fn set_suspended(&self, id: &str, suspended: bool) -> Result<bool> {
        Ok(self.conn()?.execute(
            "UPDATE accounts SET suspended = ?2 WHERE id = ?1",
            params![id, i64::from(suspended)],
        )? > 0)
    }

    fn delete_account(&self, id: &str) -> Result<Option<(usize, usize)>> {
        let mut conn = self.conn()?;
        // The write lock from the start: no snapshot to upgrade.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let executions = tx.execute("DELETE FROM executions WHERE account_id = ?1", [id])?;
        let agents = tx.execute("DELETE FROM agents WHERE account_id = ?1", [id])?;
        let accounts = tx.execute("DELETE FROM accounts WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok((accounts > 0).then_some((agents, executions)))
    }

    fn put_execution(&self, row: &ExecutionRow) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO executions (id, account_id, agent_id, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
             WHERE executions.account_id = excluded.account_id",
            params![
                row.id,
                row.account_id,
                row.agent_id,
                row.sealed,
                row.created_at,
                row.updated_at
            ],
        )?;
        Ok(())
    }

    fn execution(&self, account: &str, id: &str) -> Result<Option<ExecutionRow>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT id, account_id, agent_id, state, created_at, updated_at FROM executions
                 WHERE id = ?1 AND account_id = ?2",
            )?
            .query_row([id, account], Self::execution_from)
            .optional()?)
    }

    fn executions(&self, account: &str, agent: Option<&str>) -> Result<Vec<ExecutionRow>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, account_id, agent_id, state, created_at, updated_at FROM executions
             WHERE account_id = ?1 AND (?2 IS NULL OR agent_id = ?2) ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map(params![account, agent], Self::execution_from)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_execution(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.conn()?.execute(
            "DELETE FROM executions WHERE id = ?1 AND account_id = ?2",
            [id, account],
        )? > 0)
    }

    fn create_agent(&self, row: &AgentRow, digest: &[u8]) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.conn()?.execute(
            "INSERT INTO agents (id, account_id, name, token_digest, config, policy, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.id,
                row.account_id,
                row.name,
                digest,
                row.sealed_config,
                policy,
                row.created_at
            ],
        )?;
        Ok(())
    }

    fn agent(&self, account: &str, id: &str) -> Result<Option<AgentRow>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT id, account_id, name, config, policy, created_at FROM agents
                 WHERE id = ?1 AND account_id = ?2",
            )?
            .query_row([id, account], |row| self.agent_from(row))
            .optional()?)
    }

    fn agent_by_digest(&self, digest: &[u8]) -> Result<Option<(AgentRow, Vec<u8>)>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT id, account_id, name, config, policy, created_at, token_digest FROM agents
                 WHERE token_digest = ?1",
            )?
            .query_row([digest], |row| Ok((self.agent_from(row)?, row.get(6)?)))
            .optional()?)
    }

    fn agents(&self, account: &str) -> Result<Vec<AgentRow>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, account_id, name, config, policy, created_at FROM agents
             WHERE account_id = ?1 ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([account], |row| self.agent_from(row))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn update_agent(&self, row: &AgentRow) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.conn()?.execute(
            "UPDATE agents SET name = ?3, config = ?4, policy = ?5 WHERE id = ?1 AND account_id = ?2",
            params![row.id, row.account_id, row.name, row.sealed_config, policy],
        )?;
        Ok(())
    }

    fn set_agent_digest(&self, account: &str, id: &str, digest: &[u8]) -> Result<bool> {
        Ok(self.conn()?.execute(
            "UPDATE agents SET token_digest = ?3 WHERE id = ?1 AND account_id = ?2",
            params![id, account, digest],
        )? > 0)
    }

    fn delete_agent(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.conn()?.execute(
            "DELETE FROM agents WHERE id = ?1 AND account_id = ?2",
            [id, account],
        )? > 0)
    }

    fn record_signup(
        &self,
        client: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Duration>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let since = now.saturating_sub(window_millis(window));
        let mut conn = self.conn()?;
        // The write lock from the start: the count and the new row are one
        // step for every connection.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM signups WHERE at <= ?1", [since])?;
        let (count, oldest): (u32, Option<i64>) = tx.query_row(
            "SELECT COUNT(*), MIN(at) FROM signups WHERE client = ?1",
            [client],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let wait = if count >= limit {
            Some(oldest.map_or(window, |oldest| signup_wait(oldest, now, window)))
        } else {
            tx.execute(
                "INSERT INTO signups (client, at) VALUES (?1, ?2)",
                params![client, now],
            )?;
            None
        };
        tx.commit()?;
        Ok(wait)
    }

    fn append_audit(&self, entry: AuditEntry<'_>) -> Result<()> {
        self.audit.append_entry(&self.sealer, entry)
    }

    fn audit_ready(&self) -> Result<()> {
        self.audit.ready()
    }

    fn flush_audit(&self) {
        self.audit.flush();
    }

    fn audit_rows(
        &self,
        query: &AuditQuery,
        cursor: i64,
        batch: usize,
    ) -> Result<Vec<AuditRecord>> {
        // The connection is held only while rows are read: they are opened
        // after it went back to the pool.
        let mut rows: Vec<AuditRecord> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, account_id, at, actor, action, path, outcome, prev, hash, sealed FROM audit
                 WHERE account_id = ?1 AND seq > ?2
                   AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR action = ?4)
                   AND (?5 IS NULL OR outcome = ?5)
                   AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at <= ?7)
                 ORDER BY seq LIMIT ?8",
            )?;
            let rows = stmt.query_map(
                params![
                    query.account,
                    cursor,
                    query.actor,
                    query.action,
                    query.outcome,
                    query.since,
                    query.until,
                    batch as i64
                ],
                audit_from,
            )?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for r in &mut rows {
            open_paths(&self.sealer, r);
        }
        Ok(rows)
    }
}

/// Seals the policies stored in clear by versions before policies were
/// sealed.
fn seal_clear_policies(conn: &Connection, sealer: &Sealer) -> Result<()> {
    let clear: Vec<(String, String, String)> = {
        let mut stmt = conn
            .prepare("SELECT id, account_id, policy FROM agents WHERE typeof(policy) = 'text'")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, account, policy) in clear {
        let sealed = sealer.seal("agent policy", &account, &id, policy.as_bytes())?;
        conn.execute(
            "UPDATE agents SET policy = ?2 WHERE id = ?1",
            params![id, sealed],
        )?;
    }
    Ok(())
}
