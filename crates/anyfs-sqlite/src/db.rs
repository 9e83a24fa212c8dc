//! Connections: opening (and unlocking) a database, the schema, one writer
//! with a pool of readers, and transactions with actions after commit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyfs::{FsError, FsResult};
use parking_lot::Mutex;
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
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            cache_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(5),
            max_idle_readers: 4,
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
    /// Blob files to cut to a length once the new length is committed.
    pub(crate) truncate_on_commit: Vec<(PathBuf, u64)>,
}

impl After {
    fn run(self, committed: bool) {
        let doomed = if committed {
            self.on_commit
        } else {
            self.on_rollback
        };
        for file in doomed {
            let _ = std::fs::remove_file(file);
        }
        if committed {
            for (file, len) in self.truncate_on_commit {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&file) {
                    let _ = f.set_len(len);
                }
            }
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

/// One database: a writer connection, and readers that never block it.
pub(crate) struct Db {
    writer: Mutex<Connection>,
    /// Idle reader connections; `None` for an in-memory database, whose only
    /// connection is the writer.
    readers: Option<Mutex<Vec<Connection>>>,
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
            writer: Mutex::new(writer),
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
            apply_key(&conn, key, "key")?;
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
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = {journal};
             PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -{cache};
             PRAGMA temp_store = MEMORY;",
            cache = options.cache_kib,
        ))
        .map_err(|e| sql_error(root(), "configure the database", e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): all of it
    /// commits, or none of it. Files named in `After` are removed after.
    pub(crate) fn write<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection, &mut After) -> FsResult<T>,
    ) -> FsResult<T> {
        let mut conn = self.writer.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(path, "begin a transaction", e))?;
        let mut after = After::default();
        match f(&tx, &mut after) {
            Ok(value) => match tx.commit() {
                Ok(()) => {
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

    /// Runs `f` in one read transaction on a reader connection (a consistent
    /// snapshot that never waits for the writer).
    pub(crate) fn read<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection) -> FsResult<T>,
    ) -> FsResult<T> {
        let Some(pool) = &self.readers else {
            let conn = self.writer.lock();
            return f(&conn);
        };
        let mut conn = self.take_reader(pool)?;
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(|e| sql_error(path, "begin a transaction", e))?;
            let value = f(&tx)?;
            tx.finish()
                .map_err(|e| sql_error(path, "end a transaction", e))?;
            Ok(value)
        })();
        self.give_back(pool, conn);
        result
    }

    fn take_reader(&self, pool: &Mutex<Vec<Connection>>) -> FsResult<Connection> {
        if let Some(conn) = pool.lock().pop() {
            return Ok(conn);
        }
        let key = self.key.lock().clone();
        Self::connect(self.path.as_deref(), key.as_ref(), &self.options)
    }

    fn give_back(&self, pool: &Mutex<Vec<Connection>>, conn: Connection) {
        let mut idle = pool.lock();
        if idle.len() < self.options.max_idle_readers {
            idle.push(conn);
        }
    }

    /// Runs `f` on the writer connection outside any transaction.
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> FsResult<T>) -> FsResult<T> {
        f(&self.writer.lock())
    }

    /// Re-keys the database and every connection opened from now on.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn rekey(&self, key: Key) -> FsResult<()> {
        let conn = self.writer.lock();
        apply_key(&conn, &key, "rekey")?;
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
