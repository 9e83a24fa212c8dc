//! The registry: accounts, agents (configs and policies encrypted), and the
//! hash-chained audit log (paths encrypted), in one SQLite database. Secrets
//! are stored as digests only.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::Sealer;

/// A registry error, safe to show: it never holds a secret.
#[derive(Debug)]
pub(crate) struct RegistryError(pub String);

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for RegistryError {
    fn from(e: rusqlite::Error) -> Self {
        RegistryError(format!("registry: {e}"))
    }
}

pub(crate) type Result<T> = std::result::Result<T, RegistryError>;

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) suspended: bool,
    pub(crate) created_at: i64,
}

/// An agent row: the config still sealed.
#[derive(Debug, Clone)]
pub(crate) struct AgentRow {
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) name: String,
    pub(crate) sealed_config: Vec<u8>,
    pub(crate) policy: String,
    pub(crate) created_at: i64,
}

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

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The registry database.
pub(crate) struct Registry {
    conn: Mutex<Connection>,
    /// Audit records go to a writer thread that commits them in groups
    /// (one transaction, one fsync, for all records that arrived meanwhile).
    audit_tx: Mutex<Option<std::sync::mpsc::Sender<AuditMsg>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether the writer's last commit succeeded. While it does not, the
    /// records it holds are retried and new operations are refused.
    audit_healthy: Arc<AtomicBool>,
    /// Seals audit paths and agent policies, bound to their account.
    sealer: Arc<Sealer>,
}

enum AuditMsg {
    Record(Box<AuditRecord>),
    /// Answered once every record sent before it is committed.
    Flush(std::sync::mpsc::Sender<()>),
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Closing the channel makes the writer commit what it has and stop.
        self.audit_tx.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

/// The chain's last record: its sequence number and hash.
fn chain_end(conn: &Connection) -> rusqlite::Result<(i64, Vec<u8>)> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, vec![0u8; 32])))
}

/// Chains `records` after `last` and commits them in one transaction; on
/// failure nothing is written and `last` is unchanged.
fn commit_audit(
    conn: &mut Connection,
    last: &mut (i64, Vec<u8>),
    records: &mut [AuditRecord],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut end = last.clone();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit (seq, account_id, at, actor, action, path, outcome, prev, hash, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in records.iter_mut() {
            r.seq = end.0 + 1;
            r.prev = end.1.clone();
            r.hash = chain_hash(&r.prev, r);
            insert.execute(params![
                r.seq,
                r.account_id,
                r.at,
                r.actor,
                r.action,
                r.path,
                r.outcome,
                r.prev,
                r.hash,
                r.sealed
            ])?;
            end = (r.seq, r.hash.clone());
        }
    }
    tx.commit()?;
    *last = end;
    Ok(())
}

/// How long the writer waits before trying a failed group again.
const AUDIT_RETRY: Duration = Duration::from_millis(200);

/// The audit writer: chains and commits records in groups. A group that
/// cannot be committed is kept and tried again (with whatever arrived
/// meanwhile) until it is: a record once accepted is never dropped. Until
/// then `healthy` is false, so that new operations are refused.
fn audit_writer(
    mut conn: Connection,
    rx: std::sync::mpsc::Receiver<AuditMsg>,
    healthy: Arc<AtomicBool>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut last = chain_end(&conn).unwrap_or((0, vec![0u8; 32]));
    let mut pending: Vec<AuditRecord> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        let first = if pending.is_empty() {
            rx.recv().ok()
        } else if open {
            match rx.recv_timeout(AUDIT_RETRY) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            None
        };
        if first.is_none() && pending.is_empty() {
            break;
        }
        let mut acks = Vec::new();
        let mut take = |msg: AuditMsg| match msg {
            AuditMsg::Record(r) => pending.push(*r),
            AuditMsg::Flush(ack) => acks.push(ack),
        };
        if let Some(msg) = first {
            take(msg);
        }
        for _ in 0..4096 {
            match rx.try_recv() {
                Ok(msg) => take(msg),
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            match commit_audit(&mut conn, &mut last, &mut pending) {
                Ok(()) => {
                    pending.clear();
                    healthy.store(true, Ordering::SeqCst);
                }
                Err(error) => {
                    healthy.store(false, Ordering::SeqCst);
                    tracing::error!(
                        %error,
                        records = pending.len(),
                        "audit records could not be written; operations are refused until they are"
                    );
                    // The chain's end as committed (another writer cannot
                    // exist: the data directory is locked).
                    if let Ok(end) = chain_end(&conn) {
                        last = end;
                    }
                    if !open {
                        // Shutting down: one more try after a pause.
                        std::thread::sleep(AUDIT_RETRY);
                        if commit_audit(&mut conn, &mut last, &mut pending).is_err() {
                            tracing::error!(
                                records = pending.len(),
                                "audit records lost at shutdown"
                            );
                        }
                        pending.clear();
                    }
                }
            }
        }
        // Answered after each attempt: a reader sees what is committed.
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn chain_hash(prev: &[u8], r: &AuditRecord) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    for field in [
        r.seq.to_string().as_str(),
        r.account_id.as_deref().unwrap_or(""),
        r.at.to_string().as_str(),
        &r.actor,
        &r.action,
        r.path.as_deref().unwrap_or(""),
        &r.outcome,
    ] {
        ctx.update(&(field.len() as u64).to_le_bytes());
        ctx.update(field.as_bytes());
    }
    // Records with sealed paths chain their ciphertext too (older records,
    // without it, keep the hash they were written with).
    if let Some(sealed) = &r.sealed {
        ctx.update(b"sealed");
        ctx.update(&(sealed.len() as u64).to_le_bytes());
        ctx.update(sealed);
    }
    ctx.finish().as_ref().to_vec()
}

impl Registry {
    pub(crate) fn open(path: &Path, sealer: Arc<Sealer>) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
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
             CREATE TABLE IF NOT EXISTS key_checks (
                 id INTEGER PRIMARY KEY,
                 sealed BLOB NOT NULL
             );
             CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                 BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                 BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
        )?;
        // Registries from before sealed audit paths: add the column.
        let has_sealed: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'sealed'",
            [],
            |r| r.get(0),
        )?;
        if !has_sealed {
            conn.execute_batch("ALTER TABLE audit ADD COLUMN sealed BLOB;")?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        seal_clear_policies(&conn, &sealer)?;
        let writer_conn = Connection::open(path)?;
        writer_conn.busy_timeout(std::time::Duration::from_secs(10))?;
        writer_conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let audit_healthy = Arc::new(AtomicBool::new(true));
        let healthy = audit_healthy.clone();
        let writer = std::thread::Builder::new()
            .name("anyfs-audit".into())
            .spawn(move || audit_writer(writer_conn, rx, healthy))
            .map_err(|e| RegistryError(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            conn: Mutex::new(conn),
            audit_tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            audit_healthy,
            sealer,
        })
    }

    // ---------------------------------------------------------- key checks

    /// The stored key-check values (see `Service::open`).
    pub(crate) fn key_checks(&self) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT sealed FROM key_checks ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn add_key_check(&self, sealed: &[u8]) -> Result<()> {
        self.conn
            .lock()
            .execute("INSERT INTO key_checks (sealed) VALUES (?1)", [sealed])?;
        Ok(())
    }

    // ------------------------------------------------------------ accounts

    pub(crate) fn create_account(&self, id: &str, name: &str, digest: &[u8]) -> Result<Account> {
        let at = now();
        self.conn.lock().execute(
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

    fn account_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
        Ok(Account {
            id: row.get(0)?,
            name: row.get(1)?,
            suspended: row.get::<_, i64>(2)? != 0,
            created_at: row.get(3)?,
        })
    }

    pub(crate) fn account(&self, id: &str) -> Result<Option<Account>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, name, suspended, created_at FROM accounts WHERE id = ?1",
                [id],
                Self::account_from,
            )
            .optional()?)
    }

    pub(crate) fn account_by_digest(&self, digest: &[u8]) -> Result<Option<(Account, Vec<u8>)>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, name, suspended, created_at, secret_digest FROM accounts WHERE secret_digest = ?1",
                [digest],
                |row| Ok((Self::account_from(row)?, row.get(4)?)),
            )
            .optional()?)
    }

    pub(crate) fn accounts(&self) -> Result<Vec<Account>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, suspended, created_at FROM accounts ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], Self::account_from)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn rename_account(&self, id: &str, name: &str) -> Result<()> {
        self.conn.lock().execute(
            "UPDATE accounts SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(())
    }

    pub(crate) fn set_account_digest(&self, id: &str, digest: &[u8]) -> Result<()> {
        self.conn.lock().execute(
            "UPDATE accounts SET secret_digest = ?2 WHERE id = ?1",
            params![id, digest],
        )?;
        Ok(())
    }

    pub(crate) fn set_suspended(&self, id: &str, suspended: bool) -> Result<bool> {
        Ok(self.conn.lock().execute(
            "UPDATE accounts SET suspended = ?2 WHERE id = ?1",
            params![id, i64::from(suspended)],
        )? > 0)
    }

    /// Deletes an account, its agents and executions; returns how many
    /// agents and executions went.
    pub(crate) fn delete_account(&self, id: &str) -> Result<Option<(usize, usize)>> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let executions = tx.execute("DELETE FROM executions WHERE account_id = ?1", [id])?;
        let agents = tx.execute("DELETE FROM agents WHERE account_id = ?1", [id])?;
        let accounts = tx.execute("DELETE FROM accounts WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok((accounts > 0).then_some((agents, executions)))
    }

    // ---------------------------------------------------------- executions

    pub(crate) fn put_execution(&self, row: &ExecutionRow) -> Result<()> {
        self.conn.lock().execute(
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

    /// The execution `id` of `account` (another account's is `None`).
    pub(crate) fn execution(&self, account: &str, id: &str) -> Result<Option<ExecutionRow>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, account_id, agent_id, state, created_at, updated_at FROM executions
                 WHERE id = ?1 AND account_id = ?2",
                [id, account],
                Self::execution_from,
            )
            .optional()?)
    }

    pub(crate) fn executions(
        &self,
        account: &str,
        agent: Option<&str>,
    ) -> Result<Vec<ExecutionRow>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, account_id, agent_id, state, created_at, updated_at FROM executions
             WHERE account_id = ?1 AND (?2 IS NULL OR agent_id = ?2) ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map(params![account, agent], Self::execution_from)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn delete_execution(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.conn.lock().execute(
            "DELETE FROM executions WHERE id = ?1 AND account_id = ?2",
            [id, account],
        )? > 0)
    }

    // -------------------------------------------------------------- agents

    pub(crate) fn create_agent(&self, row: &AgentRow, digest: &[u8]) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.conn.lock().execute(
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

    /// An agent's policy as stored: sealed, bound to its account and agent.
    fn seal_policy(&self, row: &AgentRow) -> Result<Vec<u8>> {
        self.sealer
            .seal(
                "agent policy",
                &row.account_id,
                &row.id,
                row.policy.as_bytes(),
            )
            .map_err(RegistryError)
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

    /// The agent `id` of account `account` (another account's agent is
    /// `None`, as one that does not exist).
    pub(crate) fn agent(&self, account: &str, id: &str) -> Result<Option<AgentRow>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, account_id, name, config, policy, created_at FROM agents
                 WHERE id = ?1 AND account_id = ?2",
                [id, account],
                |row| self.agent_from(row),
            )
            .optional()?)
    }

    pub(crate) fn agent_by_digest(&self, digest: &[u8]) -> Result<Option<(AgentRow, Vec<u8>)>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, account_id, name, config, policy, created_at, token_digest FROM agents
                 WHERE token_digest = ?1",
                [digest],
                |row| Ok((self.agent_from(row)?, row.get(6)?)),
            )
            .optional()?)
    }

    pub(crate) fn agents(&self, account: &str) -> Result<Vec<AgentRow>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, account_id, name, config, policy, created_at FROM agents
             WHERE account_id = ?1 ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([account], |row| self.agent_from(row))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn update_agent(&self, row: &AgentRow) -> Result<()> {
        let policy = self.seal_policy(row)?;
        self.conn.lock().execute(
            "UPDATE agents SET name = ?3, config = ?4, policy = ?5 WHERE id = ?1 AND account_id = ?2",
            params![row.id, row.account_id, row.name, row.sealed_config, policy],
        )?;
        Ok(())
    }

    pub(crate) fn set_agent_digest(&self, account: &str, id: &str, digest: &[u8]) -> Result<bool> {
        Ok(self.conn.lock().execute(
            "UPDATE agents SET token_digest = ?3 WHERE id = ?1 AND account_id = ?2",
            params![id, account, digest],
        )? > 0)
    }

    pub(crate) fn delete_agent(&self, account: &str, id: &str) -> Result<bool> {
        Ok(self.conn.lock().execute(
            "DELETE FROM agents WHERE id = ?1 AND account_id = ?2",
            [id, account],
        )? > 0)
    }

    // --------------------------------------------------------------- audit

    /// Appends one record to the chain (committed by the audit writer
    /// within milliseconds, with the records around it). The resolved path
    /// is `path`'s lexical resolution; see [`audit_resolved`](Self::audit_resolved).
    pub(crate) fn audit(
        &self,
        account: Option<&str>,
        actor: &str,
        action: &str,
        path: Option<&str>,
        outcome: &str,
    ) -> Result<()> {
        self.audit_resolved(account, actor, action, path, None, outcome)
    }

    /// Appends one record, with the path the request resolved to when the
    /// caller knows it. The record is always handed to the writer (it keeps
    /// it until it is committed); an error says that the writer is failing
    /// or gone, so that the operation must not be reported as done.
    pub(crate) fn audit_resolved(
        &self,
        account: Option<&str>,
        actor: &str,
        action: &str,
        path: Option<&str>,
        resolved: Option<&str>,
        outcome: &str,
    ) -> Result<()> {
        let sealed = match path {
            Some(path) => {
                let resolved = resolved.map_or_else(|| lexical_resolution(path), String::from);
                let paths = serde_json::json!({"path": path, "resolved": resolved});
                Some(
                    self.sealer
                        .seal(
                            "audit paths",
                            account.unwrap_or(""),
                            "",
                            paths.to_string().as_bytes(),
                        )
                        .map_err(RegistryError)?,
                )
            }
            None => None,
        };
        let record = AuditRecord {
            seq: 0,
            account_id: account.map(String::from),
            at: now(),
            actor: actor.into(),
            action: action.into(),
            path: None,
            resolved_path: None,
            outcome: outcome.into(),
            prev: Vec::new(),
            hash: Vec::new(),
            sealed,
        };
        let sent = match &*self.audit_tx.lock() {
            Some(tx) => tx.send(AuditMsg::Record(Box::new(record))).is_ok(),
            None => false,
        };
        if !sent {
            return Err(RegistryError("the audit writer stopped".into()));
        }
        self.audit_ready()
    }

    /// Whether audit records are being written: an error while the writer
    /// fails to commit (operations must then be refused).
    pub(crate) fn audit_ready(&self) -> Result<()> {
        if self.audit_healthy.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(RegistryError(
                "the audit log cannot be written at the moment".into(),
            ))
        }
    }

    /// Waits until every audit record sent so far is committed (or its
    /// commit failed).
    pub(crate) fn flush_audit(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        let sent = match &*self.audit_tx.lock() {
            Some(tx) => tx.send(AuditMsg::Flush(ack)).is_ok(),
            None => false,
        };
        if sent {
            let _ = done.recv();
        }
    }

    /// One page of an account's records, oldest first: those after
    /// `query.cursor` that match its filters and that `visible` keeps, at
    /// most `query.limit`. Also returns the cursor of the next page, if
    /// there may be one. At most ten times `limit` records are looked at,
    /// so that a page the filter keeps sparse is still quick.
    pub(crate) fn audit_page(
        &self,
        query: &AuditQuery,
        visible: impl Fn(&AuditRecord) -> bool,
    ) -> Result<(Vec<AuditRecord>, Option<i64>)> {
        self.flush_audit();
        let limit = query.limit.max(1);
        let mut out = Vec::new();
        let mut cursor = query.cursor;
        let mut scanned = 0;
        loop {
            let batch = limit - out.len();
            // The connection is held only while rows are read: opening and
            // filtering them happens with every other request free to go.
            let rows = self.audit_rows(query, cursor, batch)?;
            let exhausted = rows.len() < batch;
            scanned += rows.len();
            for mut r in rows {
                cursor = r.seq;
                self.open_paths(&mut r);
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

    /// Up to `batch` of the records `query` asks for after `cursor`, still
    /// sealed.
    fn audit_rows(
        &self,
        query: &AuditQuery,
        cursor: i64,
        batch: usize,
    ) -> Result<Vec<AuditRecord>> {
        let conn = self.conn.lock();
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
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Fills in a record's paths from its sealed form.
    fn open_paths(&self, r: &mut AuditRecord) {
        match &r.sealed {
            Some(sealed) => {
                let opened = self
                    .sealer
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
        let sealed = sealer
            .seal("agent policy", &account, &id, policy.as_bytes())
            .map_err(RegistryError)?;
        conn.execute(
            "UPDATE agents SET policy = ?2 WHERE id = ?1",
            params![id, sealed],
        )?;
    }
    Ok(())
}

fn audit_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        account_id: r.get(1)?,
        at: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        path: r.get(5)?,
        resolved_path: None,
        outcome: r.get(6)?,
        prev: r.get(7)?,
        hash: r.get(8)?,
        sealed: r.get(9)?,
    })
}

/// Checks the whole audit chain of a registry file: every record's hash,
/// every link to the one before, no gap in the sequence. Returns how many
/// records were checked, or where the chain breaks.
pub fn verify_chain(path: &Path) -> std::result::Result<u64, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // A registry no newer version has opened has no sealed paths yet.
    let has_sealed: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'sealed'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    let sql = format!(
        "SELECT seq, account_id, at, actor, action, path, outcome, prev, hash, {} FROM audit ORDER BY seq",
        if has_sealed { "sealed" } else { "NULL" }
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = stmt.query_map([], audit_from).map_err(|e| e.to_string())?;
    let mut prev = vec![0u8; 32];
    let mut count = 0;
    for (expected, row) in (1i64..).zip(rows) {
        let r = row.map_err(|e| e.to_string())?;
        if r.seq != expected {
            return Err(format!("record {expected} is missing (next is {})", r.seq));
        }
        if r.prev != prev {
            return Err(format!(
                "record {} does not follow the one before it",
                r.seq
            ));
        }
        if r.hash != chain_hash(&prev, &r) {
            return Err(format!("record {} was changed", r.seq));
        }
        prev = r.hash;
        count += 1;
    }
    Ok(count)
}
