//! What is on disk: encryption at rest, wrong keys, and one file per tenant.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::{FileStorage, FsErrorKind};
use anyfs_sqlite::SqliteBackend;

/// Every byte of the database and its write-ahead log.
fn raw_bytes(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(&name) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tenants_in_separate_files_see_nothing_of_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStorage::new(SqliteBackend::open(dir.path().join("tenants/a.db")).unwrap());
    let b = FileStorage::new(SqliteBackend::open(dir.path().join("tenants/b.db")).unwrap());
    a.create_dir_all("/workspace/private").unwrap();
    a.write("/workspace/private/notes.txt", "tenant a only")
        .unwrap();
    b.create_dir_all("/workspace").unwrap();
    b.write("/workspace/notes.txt", "tenant b").unwrap();
    assert!(!b.exists("/workspace/private/notes.txt").unwrap());
    assert!(!b.exists("/workspace/private").unwrap());
    assert_eq!(
        b.read_dir("/workspace").unwrap().sorted_names().unwrap(),
        vec!["notes.txt"]
    );
    assert_eq!(
        a.read_dir("/workspace").unwrap().sorted_names().unwrap(),
        vec!["private"]
    );
    // Even `..` and absolute symlinks stay inside each tenant's file.
    b.symlink("/../../../workspace/private", "/workspace/peek")
        .unwrap();
    assert_eq!(
        b.read("/workspace/peek/notes.txt").unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    assert_eq!(
        a.read_to_string("/workspace/private/notes.txt").unwrap(),
        "tenant a only"
    );
}

#[test]
fn a_plain_database_holds_names_in_the_clear() {
    // The control for the encrypted tests below: the search does find them.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let fs = FileStorage::new(SqliteBackend::open(&db).unwrap());
    fs.write("/plain-name-marker", "plain-content-marker")
        .unwrap();
    let bytes = raw_bytes(&db);
    assert!(contains(&bytes, b"plain-name-marker"));
    assert!(contains(&bytes, b"plain-content-marker"));
}

#[test]
fn garbage_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("garbage.db");
    std::fs::write(&db, vec![0x5au8; 8192]).unwrap();
    let err = SqliteBackend::open(&db).unwrap_err();
    assert!(err.to_string().contains("not a database"), "{err}");
    assert!(
        !err.to_string().contains(dir.path().to_str().unwrap()),
        "host path leaked: {err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        vec![0x5au8; 8192],
        "the file was changed"
    );
}

#[cfg(feature = "encryption")]
mod encrypted {
    use super::*;

    #[test]
    fn nothing_readable_at_rest_wal_included() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("secret.db");
        let backend = SqliteBackend::open_encrypted(&db, "correct horse battery staple").unwrap();
        let fs = FileStorage::new(backend.clone());
        fs.create_dir("/secret-dir-marker").unwrap();
        for i in 0..50 {
            fs.write(
                format!("/secret-dir-marker/secret-name-marker-{i}"),
                format!("secret-content-marker-{i}").repeat(100),
            )
            .unwrap();
        }
        // While open (much of it still in the write-ahead log) and after closing.
        let markers: [&[u8]; 4] = [
            b"secret-dir-marker",
            b"secret-name-marker",
            b"secret-content-marker",
            b"SQLite format 3",
        ];
        let open_bytes = raw_bytes(&db);
        drop(fs);
        drop(backend);
        let closed_bytes = raw_bytes(&db);
        for (stage, bytes) in [("open", open_bytes), ("closed", closed_bytes)] {
            assert!(bytes.len() > 10_000, "{stage}: nothing written?");
            for marker in markers {
                assert!(
                    !contains(&bytes, marker),
                    "{stage}: {} found on disk",
                    String::from_utf8_lossy(marker)
                );
            }
        }
        // And it opens again with the password.
        let fs = FileStorage::new(
            SqliteBackend::open_encrypted(&db, "correct horse battery staple").unwrap(),
        );
        assert!(
            fs.read_to_string("/secret-dir-marker/secret-name-marker-7")
                .unwrap()
                .starts_with("secret-content-marker-7")
        );
    }

    /// An encrypted database is never memory-mapped: a map would only
    /// hold ciphertext, and reading through it makes a large file count
    /// whole in the process's memory.
    #[test]
    fn an_encrypted_database_is_never_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("unmapped.db");
        let fs = FileStorage::new(SqliteBackend::open_with_key(&db, &[9u8; 32]).unwrap());
        let data = vec![5u8; 8 << 20];
        fs.write("/big", &data).unwrap();
        // The background checkpoint grows the database file to hold it,
        // which is when SQLite would map it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&db).unwrap().len() < 8 << 20 {
            assert!(std::time::Instant::now() < deadline, "never checkpointed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for _ in 0..3 {
            assert_eq!(fs.read("/big").unwrap().len(), data.len());
        }
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let name = db.to_string_lossy();
        assert!(
            !maps.lines().any(|l| l.ends_with(name.as_ref())),
            "the encrypted database is mapped into memory"
        );
    }

    #[test]
    fn a_wrong_key_or_none_opens_nothing_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("locked.db");
        {
            let fs = FileStorage::new(SqliteBackend::open_encrypted(&db, "right").unwrap());
            fs.write("/x", "data").unwrap();
        }
        let before = raw_bytes(&db);
        let err = SqliteBackend::open_encrypted(&db, "wrong").unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::InvalidPassword);
        assert_eq!(
            SqliteBackend::open_with_key(&db, &[7u8; 32])
                .unwrap_err()
                .kind(),
            FsErrorKind::InvalidPassword
        );
        let err = SqliteBackend::open(&db).unwrap_err();
        assert!(err.to_string().contains("needs its key"), "{err}");
        assert_eq!(raw_bytes(&db), before, "a failed open changed the file");
        let fs = FileStorage::new(SqliteBackend::open_encrypted(&db, "right").unwrap());
        assert_eq!(fs.read("/x").unwrap(), b"data");
    }

    #[test]
    fn raw_keys_and_password_changes() {
        let dir = tempfile::tempdir().unwrap();
        let keyed = dir.path().join("keyed.db");
        let key = [0x42u8; 32];
        FileStorage::new(SqliteBackend::open_with_key(&keyed, &key).unwrap())
            .write("/k", "v")
            .unwrap();
        assert_eq!(
            FileStorage::new(SqliteBackend::open_with_key(&keyed, &key).unwrap())
                .read("/k")
                .unwrap(),
            b"v"
        );
        assert!(SqliteBackend::open_encrypted(&keyed, "not the key").is_err());

        let db = dir.path().join("rekey.db");
        let backend = SqliteBackend::create_encrypted(&db, "old password").unwrap();
        assert_eq!(
            SqliteBackend::create_encrypted(&db, "again")
                .unwrap_err()
                .kind(),
            FsErrorKind::AlreadyExists
        );
        let fs = FileStorage::new(backend.clone());
        fs.write("/kept", "across the change").unwrap();
        backend.change_password("new password").unwrap();
        fs.write("/after", "still writable").unwrap();
        assert_eq!(fs.read_to_string("/kept").unwrap(), "across the change");
        drop(fs);
        drop(backend);
        assert_eq!(
            SqliteBackend::open_encrypted(&db, "old password")
                .unwrap_err()
                .kind(),
            FsErrorKind::InvalidPassword
        );
        let fs = FileStorage::new(SqliteBackend::open_encrypted(&db, "new password").unwrap());
        assert_eq!(fs.read_to_string("/after").unwrap(), "still writable");
    }

    /// Keys mean what SQLCipher's own `PRAGMA key` makes of them (what
    /// other SQLCipher tools use, and how older versions of this crate set
    /// them): a password, or a raw key as an `x'…'` blob literal.
    #[test]
    fn keys_are_what_sqlciphers_pragma_key_takes() {
        let dir = tempfile::tempdir().unwrap();
        let count = |db: &Path, pragma: &str| {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.execute_batch(pragma).unwrap();
            conn.query_row("SELECT count(*) FROM nodes", [], |r| r.get::<_, i64>(0))
        };

        let by_password = dir.path().join("password.db");
        FileStorage::new(SqliteBackend::open_encrypted(&by_password, "pass phrase").unwrap())
            .write("/a", "1")
            .unwrap();
        assert_eq!(
            count(&by_password, "PRAGMA key = 'pass phrase';").unwrap(),
            1
        );
        assert!(count(&by_password, "PRAGMA key = 'other';").is_err());

        let by_key = dir.path().join("raw.db");
        let key = [0xA5u8; 32];
        let literal = format!("PRAGMA key = \"x'{}'\";", "A5".repeat(32));
        let conn = rusqlite::Connection::open(&by_key).unwrap();
        conn.execute_batch(&literal).unwrap();
        conn.execute_batch("PRAGMA cipher_page_size = 4096; CREATE TABLE t (x);")
            .unwrap();
        drop(conn);
        assert!(SqliteBackend::open_with_key(&by_key, &[0x5Au8; 32]).is_err());
        FileStorage::new(SqliteBackend::open_with_key(&by_key, &key).unwrap())
            .write("/b", "2")
            .unwrap();
        assert_eq!(count(&by_key, &literal).unwrap(), 1);
    }

    /// Readers running while the password changes keep working: no reader
    /// connection is left with the old key.
    #[test]
    fn reads_during_password_changes_never_fail() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("busy.db");
        let backend = SqliteBackend::create_encrypted(&db, "password 0").unwrap();
        let fs = FileStorage::new(backend.clone());
        for i in 0..20 {
            fs.write(format!("/f{i}"), format!("content {i}")).unwrap();
        }
        let stop = AtomicBool::new(false);
        let mut last = String::new();
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..3)
                .map(|t| {
                    let (fs, stop) = (&fs, &stop);
                    s.spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let i = (n + t) % 20;
                            // A write now and then makes readers start new
                            // snapshots (and so read pages again).
                            if n.is_multiple_of(7) {
                                fs.write(format!("/w{t}"), n.to_string()).unwrap();
                            }
                            assert_eq!(
                                fs.read_to_string(format!("/f{i}")).unwrap(),
                                format!("content {i}")
                            );
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            for round in 1..=4 {
                std::thread::sleep(std::time::Duration::from_millis(50));
                last = format!("password {round}");
                backend.change_password(&last).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                assert!(r.join().unwrap() > 0);
            }
        });
        drop(fs);
        drop(backend);
        let fs = FileStorage::new(SqliteBackend::open_encrypted(&db, &last).unwrap());
        assert_eq!(fs.read_to_string("/f3").unwrap(), "content 3");
    }
}

/// A workspace file reports the free space of the filesystem it lives on
/// (what `df` shows inside a mounted workspace).
#[test]
fn statfs_reports_the_host_filesystems_free_space() {
    use anyfs::FsStats;
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("space.db")).unwrap();
    let reported = backend.statfs().unwrap().available_bytes;
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir.path())
        .output()
        .unwrap();
    let host: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let slack = host / 10 + (64 << 20);
    assert!(
        reported.abs_diff(host) <= slack,
        "reported {reported} bytes free, the host has {host}"
    );
    // In memory there is no host filesystem to measure: generous room.
    let memory = SqliteBackend::open_in_memory().unwrap().statfs().unwrap();
    assert!(memory.available_bytes >= 1 << 30);
}

/// A tenant's database and its log are readable by their owner only,
/// whatever the process's umask.
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    type Open = fn(&Path) -> anyfs::FsResult<SqliteBackend>;
    let plain: Open = |p| SqliteBackend::open(p);
    #[allow(unused_mut)]
    let mut kinds = vec![("plain.db", plain)];
    #[cfg(feature = "encryption")]
    {
        let sealed: Open = |p| SqliteBackend::open_with_key(p, &[4; 32]);
        kinds.push(("sealed.db", sealed));
    }
    for (name, open) in kinds {
        let db = dir.path().join(name);
        let fs = FileStorage::new(open(&db).unwrap());
        fs.write("/f", "x").unwrap();
        for suffix in ["", "-wal"] {
            let mut file = db.as_os_str().to_owned();
            file.push(suffix);
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", Path::new(&file).display());
        }
    }
}
