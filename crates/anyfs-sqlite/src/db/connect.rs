//! Opening one connection: the file made owner-only, the key applied
//! (SQLCipher), a wrong key or a file that is no database told apart, and
//! the pragmas every connection runs with.

use std::path::Path;

use anyfs::{FsError, FsResult};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

use super::options::{Durability, SqliteOptions};
use super::{root, sql_error};

/// The key that unlocks an encrypted database, wiped from memory on drop.
#[derive(Clone)]
#[cfg_attr(not(feature = "encryption"), allow(dead_code))]
pub(crate) enum Key {
    Password(Zeroizing<String>),
    Raw(Zeroizing<[u8; 32]>),
}

/// Opens one connection to the database at `path` (in memory without
/// one), unlocks it with `key` and sets it up: WAL, durability, caches.
/// Only the writer may `create` the file.
pub(super) fn connect(
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
        unlock(&conn, key)?;
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
    // Plans never depend on bound values. Otherwise SQLite (3.5x) compiles
    // a statement again whenever a bound rowid range changes, as on every
    // chunk read: it cost a 4 KiB read four times its time.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| sql_error(root(), "configure the database", e))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

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

/// Unlocks a new connection with `key`.
fn unlock(conn: &Connection, key: &Key) -> FsResult<()> {
    set_key(conn, key, false)
}

/// Re-encrypts the database under `key` (on the writer).
pub(super) fn rekey(conn: &Connection, key: &Key) -> FsResult<()> {
    set_key(conn, key, true)
}

/// Gives SQLCipher the key to unlock the database with, or to re-encrypt
/// it under (`rekey`).
#[cfg(feature = "encryption")]
fn set_key(conn: &Connection, key: &Key, rekey: bool) -> FsResult<()> {
    sqlcipher_started()?;
    let result = match key {
        Key::Password(password) => conn.key(Some(rusqlite::MAIN_DB), password.as_bytes(), rekey),
        Key::Raw(bytes) => {
            // SQLCipher takes a raw key (used as is, not derived) written as
            // a blob literal: `x'` 64 hex digits `'`, in a buffer that never
            // grows (so no copy is left behind) and is wiped on drop.
            let mut literal = Zeroizing::new(String::with_capacity(2 + 64 + 1));
            literal.push_str("x'");
            for b in bytes.iter() {
                use std::fmt::Write;
                let _ = write!(literal, "{b:02X}");
            }
            literal.push('\'');
            conn.key(Some(rusqlite::MAIN_DB), literal.as_bytes(), rekey)
        }
    };
    result.map_err(|e| sql_error(root(), "set the key", e))
}

/// Waits, once per process, until SQLCipher takes keys.
///
/// SQLite starts SQLCipher (its `SQLITE_EXTRA_INIT` step) after it has
/// marked itself started and outside its lock, so a thread opening its
/// first connection while another thread is still in that step is
/// refused its key ("SQL logic error"). An in-memory database is keyed
/// here until it works (at once, unless that step is under way); every
/// key waits for it.
#[cfg(feature = "encryption")]
fn sqlcipher_started() -> FsResult<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STARTED: AtomicBool = AtomicBool::new(false);
    static STARTING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    if STARTED.load(Ordering::Acquire) {
        return Ok(());
    }
    let _one_at_a_time = STARTING.lock();
    if STARTED.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut tries = 0;
    loop {
        let conn =
            Connection::open_in_memory().map_err(|e| sql_error(root(), "start SQLCipher", e))?;
        match conn.key(Some(rusqlite::MAIN_DB), b"never used", false) {
            Ok(()) => break,
            // The step takes microseconds; a second of refusals is
            // something else, reported as it is.
            Err(e) if tries == 1000 => return Err(sql_error(root(), "start SQLCipher", e)),
            Err(_) => tries += 1,
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    STARTED.store(true, Ordering::Release);
    Ok(())
}

/// Without SQLCipher linked in SQLite would ignore a key and write the
/// database in the clear: refused instead.
#[cfg(not(feature = "encryption"))]
fn set_key(_: &Connection, _: &Key, _: bool) -> FsResult<()> {
    Err(FsError::feature_not_enabled(root(), "encryption"))
}

/// The error for a first read that failed: a wrong key, or a file that
/// is not a database, told as such.
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
