//! The audit log at rest: records chained by SHA-256 hashes, appended by
//! one writer thread in groups, and checked whole by [`verify_chain`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{AuditEntry, AuditRecord, RegistryError, Result, now, seal_paths};
use crate::sealing::Sealer;

/// How long the writer waits before trying a failed group again.
const AUDIT_RETRY: Duration = Duration::from_millis(200);

/// The most records taken into one group.
const GROUP_MAX: usize = 4096;

/// Where an [`AuditWriter`] commits its groups: the registry's database,
/// on a connection of the writer's own.
pub(super) trait ChainStore: Send + 'static {
    /// Chains `records` after the end of their chain (fills in `seq`,
    /// `prev` and `hash`) and commits them in one transaction. On failure
    /// nothing is committed, and the next call chains them again.
    fn commit(&mut self, records: &mut [AuditRecord]) -> std::result::Result<(), BoxError>;

    /// The store, as an error names it to a caller ("the registry
    /// database (PostgreSQL)").
    fn name(&self) -> &'static str;
}

/// A database error, as a [`ChainStore`] reports it.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Appends records to the chain from its own thread, on its own
/// connection: one writer per registry, so records are chained in the
/// order they were accepted. Records that arrive together are committed in
/// one transaction (one fsync).
pub(super) struct AuditWriter {
    /// `None` once shutting down.
    tx: Option<Sender<AuditMsg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whether the writer's last commit succeeded. While it does not, the
    /// records it holds are retried and new operations are refused.
    healthy: Arc<AtomicBool>,
    /// Where it commits ([`ChainStore::name`]).
    store: &'static str,
}

enum AuditMsg {
    Record(Box<AuditRecord>),
    /// Answered once every record sent before it is committed.
    Flush(Sender<()>),
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the writer on `store`, which only it uses.
    pub(super) fn start(store: impl ChainStore) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let name = store.name();
        let thread = std::thread::Builder::new()
            .name("anyfs-audit".into())
            .spawn(move || write_groups(store, rx, flag))
            .map_err(RegistryError::StartWriter)?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            healthy,
            store: name,
        })
    }

    /// Hands a record to the writer, which keeps it until it is committed.
    /// An error says that the writer is failing or gone.
    pub(super) fn append(&self, record: AuditRecord) -> Result<()> {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(AuditMsg::Record(Box::new(record))).is_ok());
        if !sent {
            return Err(RegistryError::AuditWriterStopped);
        }
        self.ready()
    }

    /// Hands the record of `entry` to the writer, its paths sealed for its
    /// account (see [`AuditWriter::append`]).
    pub(super) fn append_entry(&self, sealer: &Sealer, entry: AuditEntry<'_>) -> Result<()> {
        let sealed = seal_paths(sealer, entry.account, entry.path, entry.resolved)?;
        self.append(AuditRecord {
            seq: 0,
            account_id: entry.account.map(String::from),
            at: now(),
            actor: entry.actor.into(),
            action: entry.action.into(),
            path: None,
            resolved_path: None,
            outcome: entry.outcome.as_str().into(),
            prev: Vec::new(),
            hash: Vec::new(),
            sealed,
        })
    }

    /// An error while the writer fails to commit.
    pub(super) fn ready(&self) -> Result<()> {
        if self.healthy.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(RegistryError::AuditUnavailable { store: self.store })
        }
    }

    /// Waits until every record handed over so far is committed (or its
    /// commit failed).
    pub(super) fn flush(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(AuditMsg::Flush(ack)).is_ok());
        if sent {
            let _ = done.recv();
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        // Closing the channel makes the writer commit what it has and stop.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The one chain of an SQLite registry, appended through the writer's
/// connection. The registry's data directory is locked by one service, so
/// the end of the chain is known without asking the database each time.
pub(super) struct SqliteChain {
    conn: Connection,
    last: (i64, Vec<u8>),
}

impl SqliteChain {
    /// The chain of the registry `conn` is connected to.
    pub(super) fn new(conn: Connection) -> Self {
        let last = chain_end(&conn).unwrap_or((0, vec![0u8; 32]));
        Self { conn, last }
    }
}

impl ChainStore for SqliteChain {
    fn commit(&mut self, records: &mut [AuditRecord]) -> std::result::Result<(), BoxError> {
        commit_group(&mut self.conn, &mut self.last, records).map_err(|error| {
            // The chain's end as committed (another writer cannot exist:
            // the data directory is locked).
            if let Ok(end) = chain_end(&self.conn) {
                self.last = end;
            }
            BoxError::from(error)
        })
    }

    fn name(&self) -> &'static str {
        "the registry database (SQLite)"
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
fn commit_group(
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

/// The writer's loop: chains and commits records in groups. A group that
/// cannot be committed is kept and tried again (with whatever arrived
/// meanwhile) until it is: a record once accepted is never dropped. Until
/// then `healthy` is false, so that new operations are refused.
fn write_groups(mut store: impl ChainStore, rx: Receiver<AuditMsg>, healthy: Arc<AtomicBool>) {
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
        for _ in 0..GROUP_MAX {
            match rx.try_recv() {
                Ok(msg) => take(msg),
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            match store.commit(&mut pending) {
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
                    if !open {
                        // Shutting down: one more try after a pause.
                        std::thread::sleep(AUDIT_RETRY);
                        if store.commit(&mut pending).is_err() {
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

/// A record's hash: over the one before's hash and its fields, each with
/// its length.
pub(super) fn chain_hash(prev: &[u8], r: &AuditRecord) -> Vec<u8> {
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

/// A record as stored, its paths still sealed.
pub(crate) fn audit_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
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

/// Why [`verify_chain`] found the audit log not intact, or could not read
/// it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The registry file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Unreadable {
        /// The registry file.
        path: PathBuf,
        /// What opening it said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The records could not be read.
    #[error("cannot read the audit log: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
    /// A sequence number is missing.
    #[error("record {expected} is missing (next is {next})")]
    Missing {
        /// The sequence number missing.
        expected: i64,
        /// The one found in its place.
        next: i64,
    },
    /// A record does not name the hash of the one before it.
    #[error("record {0} does not follow the one before it")]
    Unlinked(i64),
    /// A record's hash does not match its content.
    #[error("record {0} was changed")]
    Changed(i64),
    /// The chain of one account (in a registry that keeps one chain per
    /// account) is broken; `""` is the chain of records made before an
    /// account was known.
    #[error("the audit chain of account {account:?}: {problem}")]
    InAccount {
        /// The account.
        account: String,
        /// Where its chain breaks.
        problem: Box<ChainBreak>,
    },
    /// An account's chain ends before the record its head names: records
    /// at its end were removed.
    #[error(
        "the audit chain of account {account:?} ends at record {found}, but record {recorded} was written"
    )]
    Truncated {
        /// The account.
        account: String,
        /// The last record written, as the chain's head says.
        recorded: i64,
        /// The last record found.
        found: i64,
    },
}

/// Checks the record that should be number `expected` of its chain: its
/// number, its link to `prev` (the hash of the one before) and its own
/// hash; then moves `prev` on to it.
pub(super) fn check_link(
    expected: i64,
    prev: &mut Vec<u8>,
    r: AuditRecord,
) -> std::result::Result<(), ChainBreak> {
    if r.seq != expected {
        return Err(ChainBreak::Missing {
            expected,
            next: r.seq,
        });
    }
    if r.prev != *prev {
        return Err(ChainBreak::Unlinked(r.seq));
    }
    if r.hash != chain_hash(prev, &r) {
        return Err(ChainBreak::Changed(r.seq));
    }
    *prev = r.hash;
    Ok(())
}

/// Checks the whole audit chain of a registry file: every record's hash,
/// every link to the one before, no gap in the sequence. Returns how many
/// records were checked, or where the chain breaks.
pub fn verify_chain(path: &Path) -> std::result::Result<u64, ChainBreak> {
    let read = |e: rusqlite::Error| ChainBreak::Read(Box::new(e));
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| ChainBreak::Unreadable {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    // A registry no newer version has opened has no sealed paths yet.
    let has_sealed: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'sealed'",
            [],
            |r| r.get(0),
        )
        .map_err(read)?;
    let sql = format!(
        "SELECT seq, account_id, at, actor, action, path, outcome, prev, hash, {} FROM audit ORDER BY seq",
        if has_sealed { "sealed" } else { "NULL" }
    );
    let mut stmt = conn.prepare(&sql).map_err(read)?;
    let rows = stmt.query_map([], audit_from).map_err(read)?;
    let mut prev = vec![0u8; 32];
    let mut count = 0;
    for (expected, row) in (1i64..).zip(rows) {
        check_link(expected, &mut prev, row.map_err(read)?)?;
        count += 1;
    }
    Ok(count)
}
