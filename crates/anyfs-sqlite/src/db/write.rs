//! Writing: the writer connection, write transactions, batches (one
//! transaction around many operations) and group commit (writes
//! acknowledged at once, committed together), and the files to remove once
//! a transaction ends ([`DeferredRemovals`]).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyfs::{FsError, FsResult};
use rusqlite::{Connection, TransactionBehavior};

use super::{Core, Db, execute_cached, root, sql_error};

/// Files to remove once a transaction has committed or rolled back (blob
/// files written for it, or made unused by it).
#[derive(Debug, Default)]
pub(crate) struct DeferredRemovals {
    /// Removed once the transaction has committed.
    pub(crate) on_commit: Vec<PathBuf>,
    /// Removed once the transaction has rolled back.
    pub(crate) on_rollback: Vec<PathBuf>,
}

impl DeferredRemovals {
    /// Adds `other`'s files to these (an operation's, to its batch or group).
    fn extend(&mut self, other: DeferredRemovals) {
        self.on_commit.extend(other.on_commit);
        self.on_rollback.extend(other.on_rollback);
    }

    /// The transaction committed: removes the files it made unused.
    fn after_commit(self) {
        remove_files(self.on_commit);
    }

    /// The transaction rolled back: removes the files written for it.
    fn after_rollback(self) {
        remove_files(self.on_rollback);
    }
}

fn remove_files(files: Vec<PathBuf>) {
    for file in files {
        let _ = std::fs::remove_file(file);
    }
}

/// The writer connection, and the batch it is in, if any.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// While a batch runs: what to do when it ends.
    pub(super) batch: Option<DeferredRemovals>,
    /// Set when an operation inside the batch failed after changing rows:
    /// the batch can then only roll back.
    pub(super) poisoned: Option<String>,
    /// Writes acknowledged but not yet committed (group commit).
    pub(super) group: Option<Group>,
    /// Why the last group could not be committed, until someone is told.
    pub(super) group_failed: Option<String>,
}

/// An open group of acknowledged writes: one transaction.
pub(super) struct Group {
    pub(super) started: Instant,
    pub(super) removals: DeferredRemovals,
}

impl Writer {
    /// The writer on `conn`, in no batch or group.
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            conn,
            batch: None,
            poisoned: None,
            group: None,
            group_failed: None,
        }
    }
}

impl Core {
    /// Commits the open group, if any.
    pub(super) fn commit_open_group(&self, writer: &mut Writer) -> FsResult<()> {
        let Some(group) = writer.group.take() else {
            return Ok(());
        };
        let result = writer.conn.execute_batch("COMMIT");
        match &result {
            Ok(()) => {
                group.removals.after_commit();
                self.committed();
            }
            Err(e) => {
                let _ = writer.conn.execute_batch("ROLLBACK");
                group.removals.after_rollback();
                // What readers saw through the writer is gone.
                self.generation.fetch_add(1, Ordering::Release);
                tracing::error!(error = %e, "writes acknowledged to callers could not be committed");
                writer.group_failed = Some(e.to_string());
            }
        }
        self.group_seq.fetch_add(1, Ordering::AcqRel);
        result.map_err(|e| sql_error(root(), "commit", e))
    }
}

impl Db {
    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): all of it
    /// commits, or none of it. Files named in its [`DeferredRemovals`] are
    /// removed after. Inside a batch, `f` runs in a savepoint of the batch's transaction.
    pub(crate) fn write<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection, &mut DeferredRemovals) -> FsResult<T>,
    ) -> FsResult<T> {
        let guard = self.core.writer.lock();
        let mut writer = guard.borrow_mut();
        let mut removals = DeferredRemovals::default();
        if writer.batch.is_some() {
            // Inside a batch: no transaction of its own. Operations check
            // before they change anything, so a failure that changed no row
            // leaves the batch whole; one that did poisons it.
            let before = writer.conn.total_changes();
            let result = f(&writer.conn, &mut removals);
            self.core.generation.fetch_add(1, Ordering::Release);
            match result {
                Ok(value) => {
                    if let Some(batch) = writer.batch.as_mut() {
                        batch.extend(removals);
                    }
                    Ok(value)
                }
                Err(e) => {
                    if writer.conn.total_changes() != before {
                        writer.poisoned = Some(e.to_string());
                    }
                    removals.after_rollback();
                    Err(e)
                }
            }
        } else if let Some(window) = self.options.group_commit {
            self.write_in_group(&mut writer, window, path, f)
        } else {
            let tx = writer
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error(path, "begin a transaction", e))?;
            match f(&tx, &mut removals) {
                Ok(value) => match tx.commit() {
                    Ok(()) => {
                        self.core.generation.fetch_add(1, Ordering::Release);
                        self.committed();
                        removals.after_commit();
                        Ok(value)
                    }
                    Err(e) => {
                        removals.after_rollback();
                        Err(sql_error(path, "commit", e))
                    }
                },
                Err(e) => {
                    drop(tx);
                    removals.after_rollback();
                    Err(e)
                }
            }
        }
    }

    /// [`Db::write`] with group commit: `f` runs in a savepoint of the open
    /// group (opened if need be), which commits once it is `window` old.
    fn write_in_group<T>(
        &self,
        writer: &mut Writer,
        window: Duration,
        path: &Path,
        f: impl FnOnce(&Connection, &mut DeferredRemovals) -> FsResult<T>,
    ) -> FsResult<T> {
        if writer.group.is_none() {
            if let Some(reason) = writer.group_failed.take() {
                return Err(lost_writes(path, &reason));
            }
            writer
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| sql_error(path, "begin a transaction", e))?;
            writer.group = Some(Group {
                started: Instant::now(),
                removals: DeferredRemovals::default(),
            });
            self.core.group_seq.fetch_add(1, Ordering::AcqRel);
            self.wake_background();
        }
        let mut removals = DeferredRemovals::default();
        execute_cached(&writer.conn, "SAVEPOINT op")
            .map_err(|e| sql_error(path, "begin a transaction", e))?;
        let result = f(&writer.conn, &mut removals);
        self.core.generation.fetch_add(1, Ordering::Release);
        match result {
            Ok(value) => {
                execute_cached(&writer.conn, "RELEASE op")
                    .map_err(|e| sql_error(path, "commit", e))?;
                let Some(group) = writer.group.as_mut() else {
                    // Not reached: the group opened above ends only on this
                    // thread. Without one, the release above committed.
                    removals.after_commit();
                    return Ok(value);
                };
                group.removals.extend(removals);
                if group.started.elapsed() >= window {
                    // Failing, this write is lost with its group: say so
                    // here, once.
                    let committed = self.core.commit_open_group(writer);
                    writer.group_failed = None;
                    committed?;
                }
                Ok(value)
            }
            Err(e) => {
                let _ = execute_cached(&writer.conn, "ROLLBACK TO op");
                let _ = execute_cached(&writer.conn, "RELEASE op");
                removals.after_rollback();
                Err(e)
            }
        }
    }

    /// Commits the writes acknowledged so far (group commit), at once.
    pub(crate) fn commit_group(&self) -> FsResult<()> {
        let guard = self.core.writer.lock();
        let mut writer = guard.borrow_mut();
        let committed = self.core.commit_open_group(&mut writer);
        // A failed commit, now or in the background, is reported once.
        match writer.group_failed.take() {
            Some(reason) => Err(lost_writes(root(), &reason)),
            None => committed,
        }
    }

    /// Runs `f` with every write on this thread inside one transaction,
    /// committed at the end if `f` succeeds and rolled back otherwise.
    pub(crate) fn batch<T>(&self, f: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
        let root = root();
        let guard = self.core.writer.lock();
        if guard.borrow().batch.is_some() {
            // Already in a batch: this one is part of it.
            return f();
        }
        self.commit_group()?;
        {
            let mut writer = guard.borrow_mut();
            writer
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| sql_error(root, "begin a batch", e))?;
            writer.batch = Some(DeferredRemovals::default());
        }
        // Ends the batch even if `f` panics: rolled back unless committed.
        struct End<'a>(&'a RefCell<Writer>);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                let mut writer = self.0.borrow_mut();
                writer.poisoned = None;
                if let Some(removals) = writer.batch.take() {
                    let _ = writer.conn.execute_batch("ROLLBACK");
                    removals.after_rollback();
                }
            }
        }
        let end = End(&guard);
        let value = f()?;
        let mut writer = guard.borrow_mut();
        if let Some(reason) = writer.poisoned.take() {
            drop(writer);
            drop(end);
            return Err(FsError::conflict(
                root,
                format!("an operation failed part way, so the batch was rolled back: {reason}"),
            ));
        }
        let removals = writer.batch.take().unwrap_or_default();
        self.core.generation.fetch_add(1, Ordering::Release);
        match writer.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.committed();
                removals.after_commit();
                drop(writer);
                drop(end);
                Ok(value)
            }
            Err(e) => {
                let _ = writer.conn.execute_batch("ROLLBACK");
                removals.after_rollback();
                Err(sql_error(root, "commit a batch", e))
            }
        }
    }
}

/// The error for writes acknowledged in a group that failed to commit.
fn lost_writes(path: &Path, reason: &str) -> FsError {
    FsError::backend(
        path,
        "commit",
        format!("earlier writes were lost: they could not be committed: {reason}"),
    )
}
