//! One database: opening (and unlocking) it, one writer with a pool of
//! readers that never wait for it, and transactions whose files are
//! removed once they end.
//!
//! - [`options`]: [`SqliteOptions`] and [`Durability`] (public);
//! - [`connect`](mod@connect): opening one connection, the key, the pragmas;
//! - [`schema`]: the tables, made on first open;
//! - [`write`](mod@write): write transactions, batches, group commit;
//! - [`read`]: the reader pool and its snapshots;
//! - [`background`]: the thread that commits groups and checkpoints.

mod background;
mod connect;
mod options;
mod read;
mod schema;
mod write;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyfs::{FsError, FsResult};
use parking_lot::{Mutex, ReentrantMutex, RwLock};
use rusqlite::Connection;

pub(crate) use connect::Key;
pub use options::{Durability, SqliteOptions};
pub(crate) use write::DeferredRemovals;

use background::spawn_background;
use connect::connect;
use read::Reader;
use write::Writer;

/// An SQLite error as an [`FsError`] about `path`. SQLite's messages hold no
/// host paths.
pub(crate) fn sql_error(path: &Path, op: &'static str, err: rusqlite::Error) -> FsError {
    FsError::backend(path.to_path_buf(), op, err.to_string())
}

/// The path errors about the database as a whole are told about.
fn root() -> &'static Path {
    Path::new("/")
}

/// Runs a statement without parameters, prepared once per connection.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// What the background committer shares with the database.
pub(crate) struct Core {
    /// The one connection that writes.
    writer: ReentrantMutex<RefCell<Writer>>,
    /// Bumped by every write, so caches of what was read can tell they are stale.
    generation: AtomicU64,
    /// Bumped when a group opens and when it ends: odd while one is open.
    group_seq: AtomicU64,
    /// Set by each commit, cleared by the background checkpoint.
    checkpoint_wanted: AtomicBool,
    /// The background thread, to wake.
    background: std::sync::OnceLock<std::thread::Thread>,
    /// Set when the database closes: the background thread ends.
    closing: AtomicBool,
    /// Idle reader connections; `None` for an in-memory database, whose only
    /// connection is the writer.
    readers: Option<Mutex<Vec<Reader>>>,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// The key new connections are unlocked with.
    key: Mutex<Option<Key>>,
    /// Held (shared) while a reader connection is in use; `rekey` holds it
    /// alone, so no read runs on a connection whose key is changing. A
    /// waiting `rekey` goes before new reads (no read is taken inside
    /// another), so a steady flow of reads cannot hold it off.
    gate: RwLock<()>,
    /// Bumped by each `rekey`: readers opened under an older key are closed
    /// instead of going back to the pool.
    key_epoch: AtomicU64,
    /// How connections are opened, and the group commit window.
    options: SqliteOptions,
}

impl Core {
    /// The current write generation: bumped after every write commits.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One database: a writer connection, and readers that never block it.
///
/// The writer lock is re-entrant so that a batch (one transaction around
/// many operations) can run ordinary operations on its own thread; other
/// threads wait for the batch to end.
pub(crate) struct Db {
    core: Arc<Core>,
    /// Commits open groups when they are due, and checkpoints the log
    /// (databases in a file, or with group commit).
    background: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Db {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Db {
    /// Opens (creating if needed) the database at `path`, or an in-memory one.
    pub(crate) fn open(
        path: Option<&Path>,
        key: Option<Key>,
        options: SqliteOptions,
        owner: (u32, u32),
    ) -> FsResult<Db> {
        let writer = connect(path, key.as_ref(), &options, true)?;
        schema::create(&writer, owner, crate::store::now_ns())?;
        let core = Arc::new(Core {
            writer: ReentrantMutex::new(RefCell::new(Writer::new(writer))),
            generation: AtomicU64::new(0),
            group_seq: AtomicU64::new(0),
            checkpoint_wanted: AtomicBool::new(false),
            background: std::sync::OnceLock::new(),
            closing: AtomicBool::new(false),
            readers: path.map(|_| Mutex::new(Vec::new())),
            path: path.map(Path::to_path_buf),
            key: Mutex::new(key),
            gate: RwLock::new(()),
            key_epoch: AtomicU64::new(0),
            options,
        });
        let background = if path.is_some() || options.group_commit.is_some() {
            let handle = spawn_background(Arc::downgrade(&core))?;
            let _ = core.background.set(handle.thread().clone());
            Some(handle)
        } else {
            None
        };
        Ok(Db { core, background })
    }

    /// Re-keys the database and every connection opened from now on.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn rekey(&self, key: Key) -> FsResult<()> {
        let guard = self.core.writer.lock();
        self.commit_group()?;
        // Reads in progress finish first; none starts until the new key is
        // in place, and no connection opened under the old one is reused.
        let _gate = self.core.gate.write();
        connect::rekey(&guard.borrow().conn, &key)?;
        if let Some(pool) = &self.readers {
            pool.lock().clear();
        }
        *self.key.lock() = Some(key);
        self.core.key_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Whether the database is unlocked with a key.
    pub(crate) fn is_encrypted(&self) -> bool {
        self.key.lock().is_some()
    }

    /// The database file on the host; `None` in memory.
    pub(crate) fn host_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Writes acknowledged in an open group are committed before the
        // connection closes (closing would roll them back).
        if let Err(error) = self.commit_group() {
            tracing::error!(%error, "writes could not be committed when the database closed");
        }
        if let Some(background) = self.background.take() {
            self.closing.store(true, Ordering::Release);
            background.thread().unpark();
            let _ = background.join();
        }
    }
}
