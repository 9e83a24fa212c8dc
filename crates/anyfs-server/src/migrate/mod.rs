//! `anyfs migrate`: moves an embedded deployment (a data directory: the
//! SQLite registry and one SQLite workspace per account) into a
//! distributed one (PostgreSQL and an object store), checks everything it
//! moved, and can be run again after an interruption at any point.
//!
//! The steps, each committed with the progress it makes (see
//! `migrate_0001_progress.sql`), so that a run cut off anywhere is
//! finished by the next and a run after success only checks again:
//!
//! 1. lock the data directory as a service does, and read it only through
//!    copies of its SQLite files (it is never written);
//! 2. check that the first master key opens it, and its audit chain;
//! 3. each account's registry rows, as stored (sealed values and digests
//!    byte for byte), in one transaction with its progress row;
//! 4. the audit records, in the source's order, a group per transaction
//!    with the progress, each chained anew into its account's chain;
//! 5. each account's workspace: a workspace an interrupted run left half
//!    copied is deleted and copied again, then compared path by path (kind,
//!    mode, size, links, SHA-256 of the content) before it is marked done;
//! 6. every registry row and every carried audit record compared with the
//!    source, and every chain of the database verified.

mod source;
mod target;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyfs::crypto::Key;
use anyfs_postgres::Database;

use crate::registry::{
    AuditRecord, ChainBreak, PostgresRegistry, verify_chain, verify_postgres_chain,
};
use crate::sealing::Sealer;
use crate::shared::SharedWorkspaces;
use source::Source;
use target::{Target, db_failed};
pub use tree::Counts;

/// Audit records carried over per transaction.
const AUDIT_GROUP: usize = 1000;

/// What to migrate, and where to.
#[derive(Clone)]
pub struct MigrateOptions {
    /// The embedded deployment's data directory.
    pub from: PathBuf,
    /// The PostgreSQL database of the distributed deployment (its URL).
    pub database: String,
    /// Its object store.
    pub objects: crate::ObjectStoreConfig,
    /// The master keys, as the distributed service will be given them:
    /// the first must be one the data directory was made or rotated with.
    pub master_keys: Vec<Key>,
    /// Each workspace's quota, as the service will be started with.
    pub quota: u64,
    /// Where the copies of the SQLite files are made (default: the
    /// system's temporary directory); it needs room for the largest
    /// workspace.
    pub scratch: Option<PathBuf>,
}

impl std::fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("from", &self.from)
            .field("database", &anyfs_postgres::display_url(&self.database))
            .field("objects", &self.objects)
            .field("master_keys", &self.master_keys.len())
            .field("quota", &self.quota)
            .field("scratch", &self.scratch)
            .finish()
    }
}

/// What a migration is doing, as it goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The source is locked, its key and audit chain checked.
    SourceChecked {
        /// Its accounts.
        accounts: usize,
        /// Its audit records.
        audit_records: u64,
    },
    /// Registry rows written (accounts an earlier run wrote are skipped).
    Registry {
        /// Accounts written by this run.
        written: usize,
        /// Accounts in all.
        accounts: usize,
    },
    /// Audit records carried over so far, of how many.
    Audit {
        /// Carried over.
        done: u64,
        /// In the source.
        total: u64,
    },
    /// An account's workspace is being copied or checked.
    Account {
        /// Its place, from 1.
        index: usize,
        /// How many accounts there are.
        total: usize,
        /// Its id.
        id: String,
        /// Whether an earlier run copied it (it is only checked).
        done_before: bool,
    },
    /// Files and bytes of the current account's workspace copied so far.
    Files {
        /// The account.
        id: String,
        /// What is copied so far.
        counts: Counts,
    },
    /// An account's workspace is copied and matches the source.
    AccountChecked {
        /// The account.
        id: String,
        /// What it holds.
        counts: Counts,
    },
}

/// What was migrated and checked.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// Per account: its id and what its workspace holds.
    pub accounts: Vec<(String, Counts)>,
    /// Accounts whose rows or workspace this run wrote (0: it only
    /// checked).
    pub written: usize,
    /// Agents (rows compared).
    pub agents: usize,
    /// Executions (rows compared).
    pub executions: usize,
    /// Audit records carried over and compared.
    pub audit_records: u64,
    /// Audit records in the database's chains, all verified.
    pub audit_verified: u64,
}

/// Why a migration stopped. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// No master key was given.
    #[error(
        "anyfs migrate needs the master key(s) in ANYFS_MASTER_KEY, as the distributed service \
         does: the embedded service's key is {}/master.key unless it was started with \
         ANYFS_MASTER_KEY (32 bytes; in hex: od -An -tx1 -v {}/master.key | tr -d ' \\n')",
        dir.display(),
        dir.display()
    )]
    MasterKeyRequired {
        /// The data directory.
        dir: PathBuf,
    },
    /// The first master key is not one the data directory was made with.
    #[error(
        "the first key in ANYFS_MASTER_KEY does not open the data directory {}: the \
         distributed service must use the key the embedded one was made with (its \
         master.key, or its first ANYFS_MASTER_KEY); nothing was migrated",
        dir.display()
    )]
    WrongMasterKey {
        /// The data directory.
        dir: PathBuf,
    },
    /// The source's audit chain does not verify.
    #[error(
        "the audit chain of {} is broken: {problem}; a broken chain is not migrated \
         (anyfs audit verify --data-dir shows the same)",
        dir.display()
    )]
    BrokenChain {
        /// The data directory.
        dir: PathBuf,
        /// Where it breaks.
        problem: ChainBreak,
    },
    /// The target differs from the source after copying.
    #[error("account {account}: {path}: {problem}")]
    Mismatch {
        /// The account (`""`: the records made before any account).
        account: String,
        /// The path, or the registry row or audit record.
        path: String,
        /// What differs.
        problem: String,
    },
    /// A precondition does not hold (the data directory is in use, the
    /// database holds other accounts, ...).
    #[error("{0}")]
    Refused(String),
    /// Reading, writing or connecting failed (the message names where).
    #[error("{0}")]
    Failed(String),
}

pub(crate) fn refused(why: impl Into<String>) -> MigrateError {
    MigrateError::Refused(why.into())
}

fn mismatch(account: &str, path: impl Into<String>, problem: impl Into<String>) -> MigrateError {
    MigrateError::Mismatch {
        account: account.to_owned(),
        path: path.into(),
        problem: problem.into(),
    }
}

/// Migrates the embedded deployment `options.from` into the distributed
/// one, telling `progress` how it goes, and checks the result (see the
/// module docs). Safe to run again at any time: what is done is only
/// checked again.
///
/// # Errors
///
/// A [`MigrateError`] naming what is wrong; a difference found by the
/// checks is [`MigrateError::Mismatch`].
pub fn migrate(
    options: &MigrateOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, MigrateError> {
    let keys = &options.master_keys;
    let Some(first) = keys.first() else {
        return Err(MigrateError::MasterKeyRequired {
            dir: options.from.clone(),
        });
    };
    let source = Source::open(&options.from, options.scratch.as_deref())?;
    let accounts = source.accounts()?;
    check_key(&source, &accounts, keys)?;
    verify_chain(&source.registry_copy()).map_err(|problem| MigrateError::BrokenChain {
        dir: options.from.clone(),
        problem,
    })?;
    let (audit_total, _) = source.audit_extent()?;
    progress(Progress::SourceChecked {
        accounts: accounts.len(),
        audit_records: audit_total,
    });

    let db = Database::connect(&options.database).map_err(db_failed)?;
    let sealer = Arc::new(Sealer::new(keys));
    // The registry's schema (its audit writer is not used).
    drop(
        PostgresRegistry::open(db.clone(), sealer.clone())
            .map_err(|e| MigrateError::Failed(e.to_string()))?,
    );
    let target = Target::open(db.clone())?;
    check_target(&source, &target, &accounts, first)?;

    let mut report = Report::default();
    for account in &accounts {
        let agents = source.agents(&account.id, &sealer)?;
        let executions = source.executions(&account.id)?;
        if target.import_account(account, &agents, &executions)? {
            report.written += 1;
        }
    }
    progress(Progress::Registry {
        written: report.written,
        accounts: accounts.len(),
    });
    carry_audit(&source, &target, audit_total, progress)?;

    let shared = SharedWorkspaces::connect(db.clone(), &options.objects, first, options.quota)
        .map_err(|e| MigrateError::Failed(e.to_string()))?;
    for (index, account) in accounts.iter().enumerate() {
        let done_before = target.workspace_done(&account.id)?;
        progress(Progress::Account {
            index: index + 1,
            total: accounts.len(),
            id: account.id.clone(),
            done_before,
        });
        let counts = migrate_workspace(
            &source,
            &target,
            &shared,
            &account.id,
            keys,
            done_before,
            progress,
        )?;
        if !done_before {
            report.written += 1;
        }
        progress(Progress::AccountChecked {
            id: account.id.clone(),
            counts,
        });
        report.accounts.push((account.id.clone(), counts));
    }

    for account in &accounts {
        let (agents, executions) = verify_rows(&source, &target, account, &sealer)?;
        report.agents += agents;
        report.executions += executions;
    }
    report.audit_records = verify_audit(&source, &target)?;
    report.audit_verified = verify_postgres_chain(&options.database).map_err(|problem| {
        MigrateError::Failed(format!("the audit chains of {}: {problem}", db.target()))
    })?;
    Ok(report)
}

/// Refuses a first master key the data directory was not made (or
/// rotated) with. A directory from before key checks is tried on a
/// workspace.
fn check_key(
    source: &Source,
    accounts: &[source::AccountRow],
    keys: &[Key],
) -> Result<(), MigrateError> {
    let checks = source.key_checks()?;
    let wrong = || MigrateError::WrongMasterKey {
        dir: source.dir().to_path_buf(),
    };
    if checks.is_empty() {
        // The first workspace there is opens with the key, or refuses it.
        for account in accounts {
            if source.workspace(&account.id, keys)?.is_some() {
                break;
            }
        }
        return Ok(());
    }
    match keys.first() {
        Some(first) if crate::start::key_is_known(first, &checks) => Ok(()),
        _ => Err(wrong()),
    }
}

/// Refuses a database filled from another deployment, holding other
/// accounts, or made with another master key; carries the key checks over.
fn check_target(
    source: &Source,
    target: &Target,
    accounts: &[source::AccountRow],
    first: &Key,
) -> Result<(), MigrateError> {
    target.claim(&source.identity()?)?;
    let ours: std::collections::HashSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let others: Vec<String> = target
        .account_ids()?
        .into_iter()
        .filter(|id| !ours.contains(id.as_str()))
        .collect();
    if let Some(one) = others.first() {
        return Err(refused(format!(
            "{} already holds {} account(s) that {} does not have (such as {one}): migrate \
             into an empty database",
            target.db().target(),
            others.len(),
            source.dir().display()
        )));
    }
    let checks = target.key_checks()?;
    if checks.is_empty() {
        target.add_key_checks(&source.key_checks()?)
    } else if crate::start::key_is_known(first, &checks) {
        Ok(())
    } else {
        Err(refused(format!(
            "{} was made with another master key than the first in ANYFS_MASTER_KEY",
            target.db().target()
        )))
    }
}

/// Carries the audit records the database does not have yet over, a group
/// per transaction.
fn carry_audit(
    source: &Source,
    target: &Target,
    total: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), MigrateError> {
    let mut done = 0;
    loop {
        let through = target.audit_through()?;
        let mut group = source.audit(through, AUDIT_GROUP, None)?;
        if group.is_empty() {
            return Ok(());
        }
        target.import_audit(through, &mut group)?;
        done += group.len() as u64;
        progress(Progress::Audit { done, total });
    }
}

/// Copies an account's workspace unless an earlier run did (what an
/// interrupted one left is deleted first), then compares it with the
/// source and marks it done.
fn migrate_workspace(
    source: &Source,
    target: &Target,
    shared: &SharedWorkspaces,
    id: &str,
    keys: &[Key],
    done_before: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Counts, MigrateError> {
    let failed = |e: anyfs::FsError| MigrateError::Failed(format!("account {id}: {e}"));
    let from = source.workspace(id, keys)?;
    if !done_before {
        shared.delete(id).map_err(failed)?;
        if let Some(from) = &from {
            let to = shared.open(id).map_err(failed)?;
            tree::copy_tree(from, &to, &mut |counts| {
                progress(Progress::Files {
                    id: id.to_owned(),
                    counts,
                })
            })
            .map_err(failed)?;
        }
    }
    let to = shared.open(id).map_err(failed)?;
    let (have, _) = tree::describe(&to).map_err(failed)?;
    let counts = match &from {
        Some(from) => {
            let (want, counts) = tree::describe(from).map_err(failed)?;
            if let Some((path, problem)) = tree::first_difference(&want, &have) {
                return Err(mismatch(id, path.display().to_string(), problem));
            }
            counts
        }
        None => {
            if let Some(path) = have.keys().find(|p| *p != Path::new("/")) {
                return Err(mismatch(
                    id,
                    path.display().to_string(),
                    "in the target but not in the source",
                ));
            }
            Counts::default()
        }
    };
    if !done_before {
        target.set_workspace_done(id, counts.files, counts.bytes)?;
    }
    Ok(counts)
}

/// Compares an account's registry rows with the source's: every source
/// row must be in the database, byte for byte. How many agents and
/// executions were compared.
fn verify_rows(
    source: &Source,
    target: &Target,
    account: &source::AccountRow,
    sealer: &Sealer,
) -> Result<(usize, usize), MigrateError> {
    let id = &account.id;
    let (row, agents, executions) = target.account_rows(id)?;
    if row.as_ref() != Some(account) {
        return Err(mismatch(
            id,
            "registry: account row",
            "missing or different in the database",
        ));
    }
    let want_agents = source.agents(id, sealer)?;
    for agent in &want_agents {
        if !agents.contains(agent) {
            return Err(mismatch(
                id,
                format!("registry: agent {}", agent.id),
                "missing or different in the database",
            ));
        }
    }
    let want_executions = source.executions(id)?;
    for execution in &want_executions {
        if !executions.contains(execution) {
            return Err(mismatch(
                id,
                format!("registry: execution {}", execution.id),
                "missing or different in the database",
            ));
        }
    }
    Ok((want_agents.len(), want_executions.len()))
}

/// Whether two records say the same (their place in a chain aside).
fn same_record(a: &AuditRecord, b: &AuditRecord) -> bool {
    a.account_id == b.account_id
        && a.at == b.at
        && a.actor == b.actor
        && a.action == b.action
        && a.path == b.path
        && a.outcome == b.outcome
        && a.sealed == b.sealed
}

/// Compares every carried audit record with the source's, chain by chain,
/// in order; how many there are.
fn verify_audit(source: &Source, target: &Target) -> Result<u64, MigrateError> {
    let (total, last) = source.audit_extent()?;
    if target.audit_through()? != last {
        return Err(mismatch("", "audit", "not every record was carried over"));
    }
    let mut compared = 0u64;
    for (chain, first, records) in target.migrated_chains()? {
        let (mut after, mut next, mut seen) = (0, first, 0i64);
        loop {
            let want = source.audit(after, AUDIT_GROUP, Some(&chain))?;
            let Some(end) = want.last().map(|r| r.seq) else {
                break;
            };
            let have = target.chain_page(&chain, next, want.len() as i64)?;
            for (i, w) in want.iter().enumerate() {
                if !have.get(i).is_some_and(|h| same_record(w, h)) {
                    return Err(mismatch(
                        &chain,
                        format!(
                            "audit record {} (record {} of the source)",
                            next + i as i64,
                            w.seq
                        ),
                        "missing or different in the database",
                    ));
                }
            }
            after = end;
            next += want.len() as i64;
            seen += want.len() as i64;
        }
        if seen != records {
            return Err(mismatch(
                &chain,
                "audit",
                format!("{records} records carried over, {seen} in the source"),
            ));
        }
        compared += seen as u64;
    }
    if compared != total {
        return Err(mismatch(
            "",
            "audit",
            format!("{total} records in the source, {compared} carried over"),
        ));
    }
    Ok(compared)
}
