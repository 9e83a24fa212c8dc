//! Connections: opening (and unlocking) a database, the schema, one writer
//! with a pool of readers, and transactions with actions after commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyfs::{FsError, FsResult};
use std::cell::RefCell;

use parking_lot::{Mutex, ReentrantMutex, RwLock};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use zeroize::Zeroizing;

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the
    /// process, and the database is never corrupted; a power cut may lose
    /// the last commits. The default, and much faster.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it returns, so it
    /// survives a power cut too.
    Full,
}

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Commit durability (default [`Durability::Normal`]).
    pub durability: Durability,
    /// Page cache per connection, in KiB (default 16 MiB).
    pub cache_kib: u32,
    /// How long to wait for another process's lock (default 5 s).
    pub busy_timeout: Duration,
    /// The most idle reader connections kept open (default 4).
    pub max_idle_readers: usize,
    /// How much of the file to read through a memory map instead of copies
    /// (default 1 GiB of address space; ignored for encrypted databases).
    pub mmap_bytes: u64,
    /// Group commit: acknowledge each write at once and commit the writes
    /// together at most this long after the first of them (default `None`:
    /// every write is its own commit).
    ///
    /// Writes are visible to every reader as soon as they return, and each
    /// stays all-or-nothing. Small writes in a burst then cost one commit
    /// instead of one each — for a mounted workspace, several times faster.
    /// The price: if the process dies, the writes of the last window are
    /// lost (whole, never in part; the database is never damaged).
    /// [`sync`](anyfs::FsSync::sync), [`fsync`](anyfs::FsSync::fsync), a
    /// batch and closing the backend commit at once. A commit that fails in
    /// the background is reported by the next write or sync.
    pub group_commit: Option<Duration>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            cache_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(5),
            max_idle_readers: 4,
            mmap_bytes: 1 << 30,
            group_commit: None,
        }
    }
}

impl SqliteOptions {
    /// Every commit durable across power loss (`synchronous=FULL`).
    pub fn durable() -> Self {
        Self {
            durability: Durability::Full,
            ..Self::default()
        }
    }
}

/// The key that unlocks an encrypted database, wiped from memory on drop.
#[derive(Clone)]
#[cfg_attr(not(feature = "encryption"), allow(dead_code))]
pub(crate) enum Key {
    Password(Zeroizing<String>),
    Raw(Zeroizing<[u8; 32]>),
}

/// Files to remove once a transaction has committed or rolled back (blob
/// files written for it, or made unused by it).
#[derive(Debug, Default)]
pub(crate) struct After {
    pub(crate) on_commit: Vec<PathBuf>,
    pub(crate) on_rollback: Vec<PathBuf>,
}

impl After {
    fn absorb(&mut self, other: After) {
        self.on_commit.extend(other.on_commit);
        self.on_rollback.extend(other.on_rollback);
    }

    fn run(self, committed: bool) {
        let doomed = if committed {
            self.on_commit
        } else {
            self.on_rollback
        };
        for file in doomed {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// An SQLite error as an [`FsError`] about `path`. SQLite's messages hold no
/// host paths.
/// Makes a new database file readable by its owner only, before SQLite
/// opens it (SQLite gives its `-wal` and `-shm` files the database's
/// mode): a tenant's files are nobody else's, whatever the umask.
fn owner_only_file(path: &Path) -> FsResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(FsError::from_io(root(), "create the database", e)),
    }
}

pub(crate) fn sql_error(path: &Path, op: &'static str, err: rusqlite::Error) -> FsError {
    FsError::backend(path.to_path_buf(), op, err.to_string())
}

fn root() -> &'static Path {
    Path::new("/")
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inodes (
    ino     INTEGER PRIMARY KEY,
    kind    INTEGER NOT NULL,            -- 0 file, 1 directory, 2 symlink
    mode    INTEGER NOT NULL,
    uid     INTEGER NOT NULL,
    gid     INTEGER NOT NULL,
    size    INTEGER NOT NULL DEFAULT 0,  -- content bytes, or target length
    nlink   INTEGER NOT NULL DEFAULT 0,  -- names that point here
    subdirs INTEGER NOT NULL DEFAULT 0,  -- directories directly inside
    atime   INTEGER NOT NULL,            -- nanoseconds since the epoch
    mtime   INTEGER NOT NULL,
    ctime   INTEGER NOT NULL,
    btime   INTEGER NOT NULL,
    target  BLOB,                        -- symlink target
    blob    TEXT                         -- blob file (IndexedBackend)
);
CREATE TABLE IF NOT EXISTS entries (
    parent  INTEGER NOT NULL,
    name    BLOB NOT NULL,
    ino     INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_ino ON entries(ino);
-- File content in chunks: id = inode * 2^24 + chunk index.
CREATE TABLE IF NOT EXISTS chunks (
    id      INTEGER PRIMARY KEY,
    data    BLOB NOT NULL
);
-- For hosts that analyse a workspace without reading content.
CREATE VIEW IF NOT EXISTS nodes AS
    SELECT CAST(e.name AS TEXT) AS name,
           i.kind               AS node_type,
           i.size               AS size,
           i.mtime / 1000000000 AS modified_at,
           i.ino                AS ino,
           e.parent             AS parent
    FROM entries e JOIN inodes i ON i.ino = e.ino;
";

/// The writer connection, and the batch it is in, if any.
struct Writer {
    conn: Connection,
    /// While a batch runs: what to do when it ends.
    batch: Option<After>,
    /// Set when an operation inside the batch failed after changing rows:
    /// the batch can then only roll back.
    poisoned: Option<String>,
    /// Writes acknowledged but not yet committed (group commit).
    group: Option<Group>,
    /// Why the last group could not be committed, until someone is told.
    group_failed: Option<String>,
}

/// An open group of acknowledged writes: one transaction.
struct Group {
    started: Instant,
    after: After,
}

/// What the background committer shares with the database.
pub(crate) struct Core {
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
    path: Option<PathBuf>,
    key: Mutex<Option<Key>>,
    /// Held (shared) while a reader connection is in use; `rekey` holds it
    /// alone, so no read runs on a connection whose key is changing. A
    /// waiting `rekey` goes before new reads (no read is taken inside
    /// another), so a steady flow of reads cannot hold it off.
    gate: RwLock<()>,
    /// Bumped by each `rekey`: readers opened under an older key are closed
    /// instead of going back to the pool.
    key_epoch: AtomicU64,
    options: SqliteOptions,
}

impl Core {
    /// The current write generation: bumped after every write commits.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Ends the read transactions idle readers keep, so that a checkpoint
    /// can move the whole log into the database.
    pub(crate) fn release_snapshots(&self) {
        if let Some(pool) = &self.readers {
            for reader in pool.lock().iter_mut() {
                if reader.open {
                    reader.open = false;
                    let _ = run_cached(&reader.conn, "COMMIT");
                }
            }
        }
    }

    /// A reader connection: call with `gate` held (shared).
    fn take_reader(&self, pool: &Mutex<Vec<Reader>>) -> FsResult<Reader> {
        if let Some(reader) = pool.lock().pop() {
            return Ok(reader);
        }
        let key = self.key.lock().clone();
        Ok(Reader {
            // Never created by a reader: a database deleted from under
            // an open backend stays deleted.
            conn: Db::connect(self.path.as_deref(), key.as_ref(), &self.options, false)?,
            open: false,
            tag: None,
            epoch: self.key_epoch.load(Ordering::Acquire),
        })
    }

    fn give_back(&self, pool: &Mutex<Vec<Reader>>, mut reader: Reader) {
        if reader.epoch != self.key_epoch.load(Ordering::Acquire) {
            return;
        }
        // A snapshot older than the last write would hold the log back.
        if reader.open && reader.tag != Some(self.generation()) {
            reader.open = false;
            let _ = run_cached(&reader.conn, "COMMIT");
        }
        let mut idle = pool.lock();
        if idle.len() < self.options.max_idle_readers {
            idle.push(reader);
        }
    }

    /// Commits the open group, if any.
    fn commit_open_group(&self, writer: &mut Writer) -> FsResult<()> {
        let Some(group) = writer.group.take() else {
            return Ok(());
        };
        let result = writer.conn.execute_batch("COMMIT");
        match &result {
            Ok(()) => {
                group.after.run(true);
                self.committed();
            }
            Err(e) => {
                let _ = writer.conn.execute_batch("ROLLBACK");
                group.after.run(false);
                // What readers saw through the writer is gone.
                self.generation.fetch_add(1, Ordering::Release);
                tracing::error!(error = %e, "writes acknowledged to callers could not be committed");
                writer.group_failed = Some(e.to_string());
            }
        }
        self.group_seq.fetch_add(1, Ordering::AcqRel);
        result.map_err(|e| sql_error(root(), "commit", e))
    }

    /// Called after every commit: the log has grown, so a checkpoint is due.
    fn committed(&self) {
        if self.readers.is_some() && !self.checkpoint_wanted.swap(true, Ordering::AcqRel) {
            self.wake_background();
        }
    }

    fn wake_background(&self) {
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
            let _ = run_cached(&reader.conn, "COMMIT");
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
fn spawn_background(core: Weak<Core>) -> FsResult<JoinHandle<()>> {
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

/// A reader connection and the read transaction it keeps open.
struct Reader {
    conn: Connection,
    /// Whether a read transaction is open.
    open: bool,
    /// The write generation the open snapshot is exactly at, if known.
    tag: Option<u64>,
    /// The key epoch the connection was opened under.
    epoch: u64,
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
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
        let writer = Self::connect(path, key.as_ref(), &options, true)?;
        let now = crate::store::now_ns();
        let init = format!(
            "{SCHEMA}
            INSERT OR IGNORE INTO inodes (ino, kind, mode, uid, gid, nlink, atime, mtime, ctime, btime)
                VALUES (1, 1, 493, {uid}, {gid}, 1, {now}, {now}, {now}, {now});",
            uid = owner.0,
            gid = owner.1,
        );
        writer
            .execute_batch(&init)
            .map_err(|e| sql_error(root(), "create the schema", e))?;
        let core = Arc::new(Core {
            writer: ReentrantMutex::new(RefCell::new(Writer {
                conn: writer,
                batch: None,
                poisoned: None,
                group: None,
                group_failed: None,
            })),
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

    fn connect(
        path: Option<&Path>,
        key: Option<&Key>,
        options: &SqliteOptions,
        create: bool,
    ) -> FsResult<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        if let Some(p) = path
            && create
        {
            owner_only_file(p)?;
        }
        let conn = match path {
            Some(p) => Connection::open_with_flags(p, flags),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| sql_error(root(), "open the database", e))?;
        if let Some(key) = key {
            // A wrong key is an ordinary error we report; keep SQLCipher from
            // also logging it to stderr.
            let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
            apply_key(&conn, key, "key")?;
            // Must match the page size the file was created with, before the
            // first read (see `page_size` below).
            conn.execute_batch("PRAGMA cipher_page_size = 4096;")
                .map_err(|e| sql_error(root(), "configure the database", e))?;
        }
        // The first read tells a wrong key (or a file that is not a
        // database) before anything is written.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| not_a_database(e, key.is_some()))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| sql_error(root(), "configure the database", e))?;
        let synchronous = match options.durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        let journal = if path.is_some() { "WAL" } else { "MEMORY" };
        // 4 KiB pages (the page size only takes effect when a database is
        // created): larger pages made small commits write more than they
        // saved on reads. The log is checkpointed by a background thread
        // (`spawn_background`); the writer only does it itself once the log
        // holds 64 MiB, a bound for writes that outpace the background, and
        // a log grown past that is cut back to it once moved.
        //
        // An encrypted database is never mapped: its pages are decrypted
        // into the page cache anyway, and a map would only fill the
        // process with the file's ciphertext (SQLite maps the file when a
        // checkpoint grows it, then reads through the map).
        let mmap = if key.is_some() { 0 } else { options.mmap_bytes };
        conn.execute_batch(&format!(
            "PRAGMA page_size = 4096;
             PRAGMA wal_autocheckpoint = 16384;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA journal_mode = {journal};
             PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -{cache};
             PRAGMA mmap_size = {mmap};
             PRAGMA temp_store = MEMORY;",
            cache = options.cache_kib,
        ))
        .map_err(|e| sql_error(root(), "configure the database", e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): all of it
    /// commits, or none of it. Files named in `After` are removed after.
    /// Inside a batch, `f` runs in a savepoint of the batch's transaction.
    pub(crate) fn write<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection, &mut After) -> FsResult<T>,
    ) -> FsResult<T> {
        let guard = self.core.writer.lock();
        let mut writer = guard.borrow_mut();
        let mut after = After::default();
        if writer.batch.is_some() {
            // Inside a batch: no transaction of its own. Operations check
            // before they change anything, so a failure that changed no row
            // leaves the batch whole; one that did poisons it.
            let before = writer.conn.total_changes();
            let result = f(&writer.conn, &mut after);
            self.core.generation.fetch_add(1, Ordering::Release);
            match result {
                Ok(value) => {
                    if let Some(batch) = writer.batch.as_mut() {
                        batch.absorb(after);
                    }
                    Ok(value)
                }
                Err(e) => {
                    if writer.conn.total_changes() != before {
                        writer.poisoned = Some(e.to_string());
                    }
                    after.run(false);
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
            match f(&tx, &mut after) {
                Ok(value) => match tx.commit() {
                    Ok(()) => {
                        self.core.generation.fetch_add(1, Ordering::Release);
                        self.committed();
                        after.run(true);
                        Ok(value)
                    }
                    Err(e) => {
                        after.run(false);
                        Err(sql_error(path, "commit", e))
                    }
                },
                Err(e) => {
                    drop(tx);
                    after.run(false);
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
        f: impl FnOnce(&Connection, &mut After) -> FsResult<T>,
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
                after: After::default(),
            });
            self.core.group_seq.fetch_add(1, Ordering::AcqRel);
            self.wake_background();
        }
        let mut after = After::default();
        run_cached(&writer.conn, "SAVEPOINT op")
            .map_err(|e| sql_error(path, "begin a transaction", e))?;
        let result = f(&writer.conn, &mut after);
        self.core.generation.fetch_add(1, Ordering::Release);
        match result {
            Ok(value) => {
                run_cached(&writer.conn, "RELEASE op").map_err(|e| sql_error(path, "commit", e))?;
                let group = writer.group.as_mut().expect("a group is open");
                group.after.absorb(after);
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
                let _ = run_cached(&writer.conn, "ROLLBACK TO op");
                let _ = run_cached(&writer.conn, "RELEASE op");
                after.run(false);
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
        let root = Path::new("/");
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
            writer.batch = Some(After::default());
        }
        // Ends the batch even if `f` panics: rolled back unless committed.
        struct End<'a>(&'a RefCell<Writer>);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                let mut writer = self.0.borrow_mut();
                writer.poisoned = None;
                if let Some(after) = writer.batch.take() {
                    let _ = writer.conn.execute_batch("ROLLBACK");
                    after.run(false);
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
        let after = writer.batch.take().unwrap_or_default();
        self.core.generation.fetch_add(1, Ordering::Release);
        match writer.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.committed();
                after.run(true);
                drop(writer);
                drop(end);
                Ok(value)
            }
            Err(e) => {
                let _ = writer.conn.execute_batch("ROLLBACK");
                after.run(false);
                Err(sql_error(root, "commit a batch", e))
            }
        }
    }

    /// Runs `f` in one read transaction on a reader connection (a consistent
    /// snapshot that never waits for the writer). On the thread running a
    /// batch, reads see the batch's own writes.
    pub(crate) fn read<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection) -> FsResult<T>,
    ) -> FsResult<T> {
        self.read_tagged(path, |conn, _| f(conn))
    }

    /// [`Db::read`], telling `f` the write generation its snapshot is
    /// exactly at (`None` if that is not known). A snapshot at generation
    /// `g` holds every write up to `g`, and at most the one write in
    /// flight after it — which never both frees and reuses an inode.
    pub(crate) fn read_tagged<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection, Option<u64>) -> FsResult<T>,
    ) -> FsResult<T> {
        let mut f = Some(f);
        if let Some(result) = self.read_at(None, |conn, tag| {
            (f.take().expect("called once"))(conn, tag)
        }) {
            return result;
        }
        let f = f.take().ok_or_else(|| {
            FsError::backend(path, "read", "no reader connection could be opened")
        })?;
        // In a batch on this thread: through the writer.
        let guard = self.core.writer.lock();
        let writer = guard.borrow();
        f(&writer.conn, None)
    }

    /// Runs `f` on a reader connection inside a read transaction, with the
    /// snapshot's generation. A reader keeps its transaction open between
    /// calls for as long as nothing was written, which saves taking the file
    /// lock on every read. With `expected`, only a snapshot at exactly that
    /// generation will do. `None` if `f` could not run (inside a batch on
    /// this thread, whose writes only the writer sees, or no snapshot of the
    /// expected generation).
    pub(crate) fn read_at<T>(
        &self,
        expected: Option<u64>,
        f: impl FnOnce(&Connection, Option<u64>) -> T,
    ) -> Option<T> {
        if expected.is_some_and(|g| g != self.generation()) {
            return None;
        }
        if self.core.group_seq.load(Ordering::Acquire) % 2 == 1 {
            // Acknowledged writes are only in the writer's open transaction:
            // read there. With writes held off, it is exactly the current
            // generation.
            let guard = self.core.writer.lock();
            let writer = guard.borrow();
            if writer.group.is_some() {
                let tag = Some(self.generation());
                if expected.is_some() && tag != expected {
                    return None;
                }
                return Some(f(&writer.conn, tag));
            }
        }
        let Some(pool) = &self.readers else {
            // In memory: the writer's lock keeps writes (and their
            // generation bumps) out while we read.
            let guard = self.core.writer.lock();
            let writer = guard.borrow();
            let tag = (writer.batch.is_none()).then(|| self.generation());
            if expected.is_some() && tag != expected {
                return None;
            }
            return Some(f(&writer.conn, tag));
        };
        if let Some(guard) = self.core.writer.try_lock()
            && guard.borrow().batch.is_some()
        {
            return None;
        }
        let _gate = self.core.gate.read();
        let mut reader = self.take_reader(pool).ok()?;
        let current = self.generation();
        if !(reader.open && reader.tag == Some(current)) {
            if reader.open {
                let _ = run_cached(&reader.conn, "COMMIT");
                reader.open = false;
            }
            // The snapshot starts at the first read: read the generation on
            // both sides of it, and trust it only if nothing moved.
            let seq = self.core.group_seq.load(Ordering::Acquire);
            let before = self.generation();
            if run_cached(&reader.conn, "BEGIN").is_err() {
                return None;
            }
            reader.open = true;
            let started = reader
                .conn
                .prepare_cached("PRAGMA schema_version")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .is_ok();
            let after = self.generation();
            // A group opened meanwhile holds writes this snapshot lacks.
            let grouped = seq % 2 == 1 || self.core.group_seq.load(Ordering::Acquire) != seq;
            reader.tag = (started && before == after && !grouped).then_some(before);
        }
        if expected.is_some() && reader.tag != expected {
            self.give_back(pool, reader);
            return None;
        }
        let tag = reader.tag;
        let value = f(&reader.conn, tag);
        self.give_back(pool, reader);
        Some(value)
    }

    /// Runs `f` on the writer connection outside any transaction, with
    /// writers held off meanwhile.
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> FsResult<T>) -> FsResult<T> {
        let guard = self.core.writer.lock();
        if guard.borrow().batch.is_none() {
            self.commit_group()?;
        }
        let writer = guard.borrow();
        f(&writer.conn)
    }

    /// Re-keys the database and every connection opened from now on.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn rekey(&self, key: Key) -> FsResult<()> {
        let guard = self.core.writer.lock();
        self.commit_group()?;
        // Reads in progress finish first; none starts until the new key is
        // in place, and no connection opened under the old one is reused.
        let _gate = self.core.gate.write();
        apply_key(&guard.borrow().conn, &key, "rekey")?;
        if let Some(pool) = &self.readers {
            pool.lock().clear();
        }
        *self.key.lock() = Some(key);
        self.core.key_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    pub(crate) fn is_encrypted(&self) -> bool {
        self.key.lock().is_some()
    }

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

/// The error for writes acknowledged in a group that failed to commit.
fn lost_writes(path: &Path, reason: &str) -> FsError {
    FsError::backend(
        path,
        "commit",
        format!("earlier writes were lost: they could not be committed: {reason}"),
    )
}

fn apply_key(conn: &Connection, key: &Key, pragma: &'static str) -> FsResult<()> {
    let result = match key {
        Key::Password(password) => conn.pragma_update(None, pragma, password.as_str()),
        Key::Raw(bytes) => {
            let mut sql = Zeroizing::new(format!("PRAGMA {pragma} = \"x'"));
            for b in bytes.iter() {
                use std::fmt::Write;
                let _ = write!(sql, "{b:02X}");
            }
            sql.push_str("'\";");
            conn.execute_batch(&sql)
        }
    };
    result.map_err(|e| sql_error(root(), "set the key", e))?;
    // Without SQLCipher linked in, `PRAGMA key` is silently ignored and the
    // database would be written in the clear: refuse instead.
    let cipher: Option<String> = conn
        .query_row("PRAGMA cipher_version", [], |r| r.get(0))
        .ok();
    if cipher.is_none_or(|v| v.is_empty()) {
        return Err(FsError::feature_not_enabled(root(), "encryption"));
    }
    Ok(())
}

fn not_a_database(err: rusqlite::Error, keyed: bool) -> FsError {
    let not_db = matches!(
        &err,
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase
    );
    match (not_db, keyed) {
        (true, true) => FsError::invalid_password(root()),
        (true, false) => FsError::backend(
            root(),
            "open the database",
            "the file is not a database, or it is encrypted and needs its key",
        ),
        _ => sql_error(root(), "open the database", err),
    }
}
