//! Connections: opening (and unlocking) a database, the schema, one writer
//! with a pool of readers, and transactions with actions after commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyfs::{FsError, FsResult};
use std::cell::RefCell;

use parking_lot::{Mutex, ReentrantMutex};
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
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            cache_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(5),
            max_idle_readers: 4,
            mmap_bytes: 1 << 30,
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
pub(crate) fn sql_error(path: &Path, op: &'static str, err: rusqlite::Error) -> FsError {
    FsError::Backend {
        path: path.to_path_buf(),
        op,
        message: err.to_string(),
    }
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
}

/// A reader connection and the read transaction it keeps open.
struct Reader {
    conn: Connection,
    /// Whether a read transaction is open.
    open: bool,
    /// The write generation the open snapshot is exactly at, if known.
    tag: Option<u64>,
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
    writer: ReentrantMutex<RefCell<Writer>>,
    /// Bumped by every write, so caches of what was read can tell they are stale.
    generation: AtomicU64,
    /// Idle reader connections; `None` for an in-memory database, whose only
    /// connection is the writer.
    readers: Option<Mutex<Vec<Reader>>>,
    path: Option<PathBuf>,
    key: Mutex<Option<Key>>,
    options: SqliteOptions,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, or an in-memory one.
    pub(crate) fn open(
        path: Option<&Path>,
        key: Option<Key>,
        options: SqliteOptions,
        owner: (u32, u32),
    ) -> FsResult<Db> {
        let writer = Self::connect(path, key.as_ref(), &options)?;
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
        Ok(Db {
            writer: ReentrantMutex::new(RefCell::new(Writer {
                conn: writer,
                batch: None,
                poisoned: None,
            })),
            generation: AtomicU64::new(0),
            readers: path.map(|_| Mutex::new(Vec::new())),
            path: path.map(Path::to_path_buf),
            key: Mutex::new(key),
            options,
        })
    }

    fn connect(
        path: Option<&Path>,
        key: Option<&Key>,
        options: &SqliteOptions,
    ) -> FsResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
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
        // saved on reads. Checkpoints run once the log holds 16 MiB rather
        // than 4 MiB, so bursts of writes copy the log back less often.
        conn.execute_batch(&format!(
            "PRAGMA page_size = 4096;
             PRAGMA wal_autocheckpoint = 4096;
             PRAGMA journal_mode = {journal};
             PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -{cache};
             PRAGMA mmap_size = {mmap};
             PRAGMA temp_store = MEMORY;",
            cache = options.cache_kib,
            mmap = options.mmap_bytes,
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
        let guard = self.writer.lock();
        let mut writer = guard.borrow_mut();
        let mut after = After::default();
        if writer.batch.is_some() {
            // Inside a batch: no transaction of its own. Operations check
            // before they change anything, so a failure that changed no row
            // leaves the batch whole; one that did poisons it.
            let before = writer.conn.total_changes();
            let result = f(&writer.conn, &mut after);
            self.generation.fetch_add(1, Ordering::Release);
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
        } else {
            let tx = writer
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error(path, "begin a transaction", e))?;
            match f(&tx, &mut after) {
                Ok(value) => match tx.commit() {
                    Ok(()) => {
                        self.generation.fetch_add(1, Ordering::Release);
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

    /// Runs `f` with every write on this thread inside one transaction,
    /// committed at the end if `f` succeeds and rolled back otherwise.
    pub(crate) fn batch<T>(&self, f: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
        let root = Path::new("/");
        let guard = self.writer.lock();
        if guard.borrow().batch.is_some() {
            // Already in a batch: this one is part of it.
            return f();
        }
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
            return Err(FsError::Conflict {
                path: root.into(),
                reason: format!(
                    "an operation failed part way, so the batch was rolled back: {reason}"
                ),
            });
        }
        let after = writer.batch.take().unwrap_or_default();
        self.generation.fetch_add(1, Ordering::Release);
        match writer.conn.execute_batch("COMMIT") {
            Ok(()) => {
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
        let f = f.take().ok_or_else(|| FsError::Backend {
            path: path.into(),
            op: "read",
            message: "no reader connection could be opened".into(),
        })?;
        // In a batch on this thread: through the writer.
        let guard = self.writer.lock();
        let writer = guard.borrow();
        f(&writer.conn, None)
    }

    /// The current write generation: bumped after every write commits.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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
        let Some(pool) = &self.readers else {
            // In memory: the writer's lock keeps writes (and their
            // generation bumps) out while we read.
            let guard = self.writer.lock();
            let writer = guard.borrow();
            let tag = (writer.batch.is_none()).then(|| self.generation());
            if expected.is_some() && tag != expected {
                return None;
            }
            return Some(f(&writer.conn, tag));
        };
        if let Some(guard) = self.writer.try_lock()
            && guard.borrow().batch.is_some()
        {
            return None;
        }
        let mut reader = self.take_reader(pool).ok()?;
        let current = self.generation();
        if !(reader.open && reader.tag == Some(current)) {
            if reader.open {
                let _ = run_cached(&reader.conn, "COMMIT");
                reader.open = false;
            }
            // The snapshot starts at the first read: read the generation on
            // both sides of it, and trust it only if nothing moved.
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
            reader.tag = (started && before == after).then_some(before);
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

    fn take_reader(&self, pool: &Mutex<Vec<Reader>>) -> FsResult<Reader> {
        if let Some(reader) = pool.lock().pop() {
            return Ok(reader);
        }
        let key = self.key.lock().clone();
        Ok(Reader {
            conn: Self::connect(self.path.as_deref(), key.as_ref(), &self.options)?,
            open: false,
            tag: None,
        })
    }

    fn give_back(&self, pool: &Mutex<Vec<Reader>>, mut reader: Reader) {
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

    /// Runs `f` on the writer connection outside any transaction, with
    /// writers held off meanwhile.
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> FsResult<T>) -> FsResult<T> {
        let guard = self.writer.lock();
        let writer = guard.borrow();
        f(&writer.conn)
    }

    /// Re-keys the database and every connection opened from now on.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn rekey(&self, key: Key) -> FsResult<()> {
        let guard = self.writer.lock();
        apply_key(&guard.borrow().conn, &key, "rekey")?;
        if let Some(pool) = &self.readers {
            pool.lock().clear();
        }
        *self.key.lock() = Some(key);
        Ok(())
    }

    pub(crate) fn is_encrypted(&self) -> bool {
        self.key.lock().is_some()
    }

    pub(crate) fn host_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
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
        return Err(FsError::FeatureNotEnabled {
            path: root().into(),
            feature: "encryption",
        });
    }
    Ok(())
}

fn not_a_database(err: rusqlite::Error, keyed: bool) -> FsError {
    let not_db = matches!(
        &err,
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase
    );
    match (not_db, keyed) {
        (true, true) => FsError::InvalidPassword {
            path: root().into(),
        },
        (true, false) => FsError::Backend {
            path: root().into(),
            op: "open the database",
            message: "the file is not a database, or it is encrypted and needs its key".into(),
        },
        _ => sql_error(root(), "open the database", err),
    }
}
