//! The background thread: commits groups once due and checkpoints the
//! write-ahead log after commits, so that no write waits for either.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyfs::{FsError, FsResult};

use super::{Core, execute_cached, root};

impl Core {
    /// Called after every commit: the log has grown, so a checkpoint is due.
    pub(super) fn committed(&self) {
        if self.readers.is_some() && !self.checkpoint_wanted.swap(true, Ordering::AcqRel) {
            self.wake_background();
        }
    }

    /// Wakes the background thread, if there is one.
    pub(super) fn wake_background(&self) {
        if let Some(thread) = self.background.get() {
            thread.unpark();
        }
    }

    /// Commits the open group if it is due; otherwise how long until it is.
    fn commit_due_group(&self) -> Option<Duration> {
        let window = self.options.group_commit?;
        let guard = self.writer.lock();
        let mut writer = guard.borrow_mut();
        let age = writer.group.as_ref()?.started.elapsed();
        if age >= window {
            let _ = self.commit_open_group(&mut writer);
            None
        } else {
            Some(window - age)
        }
    }

    /// Moves the log into the database file without holding up the writer
    /// or readers (a passive checkpoint on a connection of its own).
    fn checkpoint(&self) {
        let Some(pool) = &self.readers else {
            return;
        };
        // Idle readers' snapshots would keep the log from being moved.
        self.release_snapshots();
        let _gate = self.gate.read();
        let Ok(mut reader) = self.take_reader(pool) else {
            return;
        };
        if reader.open {
            reader.open = false;
            let _ = execute_cached(&reader.conn, "COMMIT");
        }
        if let Err(error) = reader.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(%error, "background checkpoint failed; the next one retries");
        }
        self.give_back(pool, reader);
    }
}

/// How often, at most, the background thread checkpoints a log that grows.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The background thread: commits groups once due (so a burst of writes
/// followed by silence is still committed) and checkpoints the log after
/// commits, so that no write waits for the log to be copied and synced.
/// Sleeps while there is nothing to do; ends with the database.
pub(super) fn spawn_background(core: Weak<Core>) -> FsResult<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("anyfs-sqlite".into())
        .spawn(move || {
            let mut last_checkpoint = Instant::now() - CHECKPOINT_EVERY;
            loop {
                let Some(core) = core.upgrade() else {
                    return;
                };
                if core.closing.load(Ordering::Acquire) {
                    return;
                }
                let mut wait = core.commit_due_group();
                if core.checkpoint_wanted.load(Ordering::Acquire) {
                    let since = last_checkpoint.elapsed();
                    if since >= CHECKPOINT_EVERY {
                        core.checkpoint_wanted.store(false, Ordering::Release);
                        core.checkpoint();
                        last_checkpoint = Instant::now();
                    } else {
                        let left = CHECKPOINT_EVERY - since;
                        wait = Some(wait.map_or(left, |w| w.min(left)));
                    }
                }
                drop(core);
                match wait {
                    Some(wait) => std::thread::park_timeout(wait),
                    // Woken by a commit, a group opening, or closing.
                    None => std::thread::park(),
                }
            }
        })
        .map_err(|e| FsError::backend(root(), "start the background thread", e.to_string()))
}
