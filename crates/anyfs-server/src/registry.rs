//! The registry: accounts, agents (configs encrypted), and the hash-chained
//! audit log, in one SQLite database. Secrets are stored as digests only.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

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

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditRecord {
    pub(crate) seq: i64,
    pub(crate) account_id: Option<String>,
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) path: Option<String>,
    pub(crate) outcome: String,
    #[serde(skip)]
    pub(crate) prev: Vec<u8>,
    #[serde(skip)]
    pub(crate) hash: Vec<u8>,
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
}

enum AuditMsg {
    Record(AuditRecord),
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

/// The audit writer: chains and commits records in groups.
fn audit_writer(conn: Connection, rx: std::sync::mpsc::Receiver<AuditMsg>) {
    let mut last: (i64, Vec<u8>) = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ok()
        .flatten()
        .unwrap_or((0, vec![0u8; 32]));
    let mut conn = conn;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO audit (seq, account_id, at, actor, action, path, outcome, prev, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for msg in &mut batch {
                    match msg {
                        AuditMsg::Record(r) => {
                            r.seq = last.0 + 1;
                            r.prev = last.1.clone();
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
                                r.hash
                            ])?;
                            last = (r.seq, r.hash.clone());
                        }
                        AuditMsg::Flush(ack) => acks.push(ack.clone()),
                    }
                }
            }
            tx.commit()
        })();
        if let Err(error) = result {
            tracing::error!(%error, "audit records could not be written");
            // Reload the chain's end: the failed group was rolled back.
            if let Ok(Some(end)) = conn
                .query_row(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            {
                last = end;
            }
        }
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
    ctx.finish().as_ref().to_vec()
}

impl Registry {
    pub(crate) fn open(path: &Path) -> Result<Self> {
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
             CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                 BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                 BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let writer_conn = Connection::open(path)?;
        writer_conn.busy_timeout(std::time::Duration::from_secs(10))?;
        writer_conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("anyfs-audit".into())
            .spawn(move || audit_writer(writer_conn, rx))
            .map_err(|e| RegistryError(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            conn: Mutex::new(conn),
            audit_tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
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
        self.conn.lock().execute(
            "INSERT INTO agents (id, account_id, name, token_digest, config, policy, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.id,
                row.account_id,
                row.name,
                digest,
                row.sealed_config,
                row.policy,
                row.created_at
            ],
        )?;
        Ok(())
    }

    fn agent_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
        Ok(AgentRow {
            id: row.get(0)?,
            account_id: row.get(1)?,
            name: row.get(2)?,
            sealed_config: row.get(3)?,
            policy: row.get(4)?,
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
                Self::agent_from,
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
                |row| Ok((Self::agent_from(row)?, row.get(6)?)),
            )
            .optional()?)
    }

    pub(crate) fn agents(&self, account: &str) -> Result<Vec<AgentRow>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, account_id, name, config, policy, created_at FROM agents
             WHERE account_id = ?1 ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([account], Self::agent_from)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn update_agent(&self, row: &AgentRow) -> Result<()> {
        self.conn.lock().execute(
            "UPDATE agents SET name = ?3, config = ?4, policy = ?5 WHERE id = ?1 AND account_id = ?2",
            params![row.id, row.account_id, row.name, row.sealed_config, row.policy],
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
    /// within milliseconds, with the records around it).
    pub(crate) fn audit(
        &self,
        account: Option<&str>,
        actor: &str,
        action: &str,
        path: Option<&str>,
        outcome: &str,
    ) -> Result<()> {
        let record = AuditRecord {
            seq: 0,
            account_id: account.map(String::from),
            at: now(),
            actor: actor.into(),
            action: action.into(),
            path: path.map(String::from),
            outcome: outcome.into(),
            prev: Vec::new(),
            hash: Vec::new(),
        };
        match &*self.audit_tx.lock() {
            Some(tx) => tx
                .send(AuditMsg::Record(record))
                .map_err(|_| RegistryError("the audit writer stopped".into())),
            None => Err(RegistryError("the audit writer stopped".into())),
        }
    }

    /// Waits until every audit record sent so far is committed.
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

    /// The account's records, oldest first.
    pub(crate) fn audit_of(&self, account: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        self.flush_audit();
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT seq, account_id, at, actor, action, path, outcome, prev, hash FROM audit
             WHERE account_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![account, limit as i64], audit_from)?;
        let mut out: Vec<AuditRecord> = rows.collect::<rusqlite::Result<_>>()?;
        out.reverse();
        Ok(out)
    }
}

fn audit_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        account_id: r.get(1)?,
        at: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        path: r.get(5)?,
        outcome: r.get(6)?,
        prev: r.get(7)?,
        hash: r.get(8)?,
    })
}

/// Checks the whole audit chain of a registry file: every record's hash,
/// every link to the one before, no gap in the sequence. Returns how many
/// records were checked, or where the chain breaks.
pub fn verify_chain(path: &Path) -> std::result::Result<u64, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut stmt = conn
        .prepare("SELECT seq, account_id, at, actor, action, path, outcome, prev, hash FROM audit ORDER BY seq")
        .map_err(|e| e.to_string())?;
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
