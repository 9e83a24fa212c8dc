//! The design document's SQLite examples, as written there (plus the `use`
//! lines and setup they leave out), with assertions on what they promise.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::prelude::*;
use anyfs::{FileStorage, Fs, FsErrorKind, QuotaLayer};
use anyfs_sqlite::SqliteBackend;
use rusqlite::Connection;

/// Runs `f` with the working directory set to a fresh temporary directory
/// (the examples use relative paths such as `tenants/a.db`).
fn in_temp_dir(f: impl FnOnce(&Path)) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let previous = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    f(dir.path());
    std::env::set_current_dir(previous).unwrap();
}

#[test]
fn multi_tenant_isolation_with_quota() {
    fn create_tenant_storage(tenant_id: &str, quota_bytes: u64) -> FileStorage<impl Fs> {
        let db_path = format!("tenants/{}.db", tenant_id);
        let backend = QuotaLayer::builder()
            .max_total_size(quota_bytes)
            .build()
            .layer(SqliteBackend::open(&db_path).unwrap());

        FileStorage::new(backend)
    }

    in_temp_dir(|dir| {
        let a = create_tenant_storage("alice", 1000);
        let b = create_tenant_storage("bob", 1000);
        a.write("/report.txt", "alice's").unwrap();
        assert!(!b.exists("/report.txt").unwrap());
        assert_eq!(
            b.write("/big", vec![0u8; 1001]).unwrap_err().kind(),
            FsErrorKind::QuotaExceeded
        );
        // Complete isolation: separate database files.
        assert!(dir.join("tenants/alice.db").exists());
        assert!(dir.join("tenants/bob.db").exists());
    });
}

#[test]
fn normal_mode() -> Result<(), anyfs::FsError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.db");

    // No encryption - user encrypts sensitive files themselves
    let backend = SqliteBackend::open(&path)?;
    let fs = FileStorage::new(backend);

    fs.write("/plain.txt", "visible to the host")?;
    assert_eq!(fs.read_to_string("/plain.txt")?, "visible to the host");
    Ok(())
}

#[cfg(feature = "encryption")]
#[test]
fn locked_mode() -> Result<(), anyfs::FsError> {
    in_temp_dir(|_| {
        // Everything encrypted - password required to access anything
        let backend =
            SqliteBackend::open_encrypted("tenant.db", "correct-horse-battery-staple").unwrap();
        let fs = FileStorage::new(backend);
        fs.write("/secret.txt", "locked").unwrap();
        drop(fs);

        // Without password: .db file is random bytes
        let err = SqliteBackend::open("tenant.db").unwrap_err();
        assert!(err.to_string().contains("needs its key"), "{err}");
        assert_eq!(
            SqliteBackend::open_encrypted("tenant.db", "wrong")
                .unwrap_err()
                .kind(),
            FsErrorKind::InvalidPassword
        );
        // With password: full access to everything
        let fs = FileStorage::new(
            SqliteBackend::open_encrypted("tenant.db", "correct-horse-battery-staple").unwrap(),
        );
        assert_eq!(fs.read_to_string("/secret.txt").unwrap(), "locked");
    });
    Ok(())
}

#[cfg(feature = "encryption")]
#[test]
fn sqlcipher_backend_api() -> Result<(), anyfs::FsError> {
    in_temp_dir(|_| {
        let key = [9u8; 32];
        // Open with password (derives key via PBKDF2)
        let backend = SqliteBackend::open_encrypted("secure.db", "password").unwrap();
        // Change password on open database
        backend.change_password("new_password").unwrap();
        drop(backend);
        // Open with raw 256-bit key (no key derivation)
        let _backend = SqliteBackend::open_with_key("raw.db", &key).unwrap();
        // Create new encrypted database
        let _backend = SqliteBackend::create_encrypted("new.db", "password").unwrap();
        assert!(SqliteBackend::open_encrypted("secure.db", "new_password").is_ok());
    });
    Ok(())
}

#[cfg(feature = "encryption")]
#[test]
fn multi_tenant_isolation_encrypted_or_not() {
    fn get_tenant_password(tenant_id: &str) -> String {
        format!("password-of-{tenant_id}")
    }

    /// Each tenant gets their own .db file - complete physical isolation
    fn create_tenant_storage(tenant_id: &str, encrypted: bool) -> impl Fs {
        let path = format!("tenants/{}.db", tenant_id);

        if encrypted {
            let password = get_tenant_password(tenant_id);
            SqliteBackend::open_encrypted(&path, &password).unwrap()
        } else {
            SqliteBackend::open(&path).unwrap()
        }
    }

    in_temp_dir(|_| {
        let a = FileStorage::new(create_tenant_storage("a", true));
        let b = FileStorage::new(create_tenant_storage("b", false));
        a.write("/x", "a's").unwrap();
        assert!(!b.exists("/x").unwrap());
        // Tenant A literally cannot access Tenant B's data: a different file,
        // and A's password does not open B's file.
        assert!(SqliteBackend::open_encrypted("tenants/a.db", get_tenant_password("b")).is_err());
    });
}

struct TenantStats {
    file_count: i64,
    dir_count: i64,
    total_size: i64,
}

#[derive(Debug, PartialEq)]
struct FileInfo {
    name: String,
    size: i64,
    modified_at: i64,
}

#[test]
fn host_analysis_of_metadata() -> rusqlite::Result<()> {
    // Host can analyze metadata without the content encryption key
    fn get_tenant_statistics(tenant_db: &str) -> rusqlite::Result<TenantStats> {
        // Connect directly to SQLite (no content key needed)
        let conn = Connection::open(tenant_db)?;

        let (file_count, dir_count, total_size) = conn.query_row(
            "SELECT
                COUNT(*) FILTER (WHERE node_type = 0),
                COUNT(*) FILTER (WHERE node_type = 1),
                SUM(size)
             FROM nodes",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;

        Ok(TenantStats {
            file_count,
            dir_count,
            total_size,
        })
    }

    // List all files (names visible, contents encrypted)
    #[allow(clippy::let_and_return)] // the statement must be dropped before `conn`
    fn list_tenant_files(tenant_db: &str) -> rusqlite::Result<Vec<FileInfo>> {
        let conn = Connection::open(tenant_db)?;
        let files = conn
            .prepare("SELECT name, size, modified_at FROM nodes WHERE node_type = 0")?
            .query_map([], |row| {
                Ok(FileInfo {
                    name: row.get(0)?,
                    size: row.get(1)?,
                    modified_at: row.get(2)?,
                })
            })?
            .collect();
        files
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tenant.db");
    let fs = FileStorage::new(SqliteBackend::open(&db).unwrap());
    fs.create_dir_all("/workspace/src").unwrap();
    fs.write("/workspace/src/main.rs", "fn main() {}").unwrap();
    fs.write("/workspace/README.md", "# readme").unwrap();

    let stats = get_tenant_statistics(db.to_str().unwrap())?;
    assert_eq!(
        (stats.file_count, stats.dir_count, stats.total_size),
        (2, 2, 20)
    );
    let mut files = list_tenant_files(db.to_str().unwrap())?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["README.md", "main.rs"]
    );
    assert_eq!(files[1].size, 12);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - files[0].modified_at).abs() < 60);
    Ok(())
}

#[test]
fn privacy_mode() -> Result<(), anyfs::FsError> {
    use anyfs::FileEncryption;
    use anyfs::crypto::Key;
    in_temp_dir(|dir| {
        let content_key = Key::random().unwrap();

        // File contents encrypted, metadata (names, sizes, structure) visible
        let backend = FileEncryption::new(SqliteBackend::open("tenant.db").unwrap())
            .with_key(content_key.clone());

        let fs = FileStorage::new(backend);

        // Host can: list files, see sizes, run statistics
        // Host cannot: read file contents
        fs.create_dir_all("/notes").unwrap();
        fs.write("/notes/diagnosis.txt", "patient is allergic to penicillin")
            .unwrap();
        assert_eq!(
            fs.read_to_string("/notes/diagnosis.txt").unwrap(),
            "patient is allergic to penicillin"
        );
        drop(fs);

        let conn = Connection::open(dir.join("tenant.db")).unwrap();
        let (name, size): (String, i64) = conn
            .query_row(
                "SELECT name, size FROM nodes WHERE node_type = 0",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(name, "diagnosis.txt");
        assert!(size > 33, "the host sees the stored (sealed) size");
        drop(conn);
        for file in ["tenant.db", "tenant.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.join(file)) {
                assert!(!bytes.windows(10).any(|w| w == b"penicillin"), "{file}");
            }
        }
        // Without the content key, nothing reads; with it, everything does.
        let other = FileStorage::new(
            FileEncryption::new(SqliteBackend::open("tenant.db").unwrap())
                .with_key(Key::random().unwrap()),
        );
        assert_eq!(
            other.read("/notes/diagnosis.txt").unwrap_err().kind(),
            FsErrorKind::IntegrityError
        );
        let again = FileStorage::new(
            FileEncryption::new(SqliteBackend::open("tenant.db").unwrap()).with_key(content_key),
        );
        assert_eq!(again.metadata("/notes/diagnosis.txt").unwrap().len(), 33);
    });
    Ok(())
}

#[test]
fn handle_tenant_request_after_migration() {
    fn get_tenant_backend(dir: &Path, tenant_id: &str) -> SqliteBackend {
        SqliteBackend::open(dir.join(format!("{tenant_id}.db"))).unwrap()
    }

    fn handle_tenant_request(
        dir: &Path,
        tenant_id: &str,
        requested_path: &str,
    ) -> anyfs::FsResult<Vec<u8>> {
        // Separate database per tenant - no path containment needed
        let backend = get_tenant_backend(dir, tenant_id); // Cached connection
        FileStorage::new(backend).read(requested_path) // Atomic, TOCTOU-proof
    }

    let dir = tempfile::tempdir().unwrap();
    FileStorage::new(get_tenant_backend(dir.path(), "t1"))
        .write("/doc", "t1's doc")
        .unwrap();
    assert_eq!(
        handle_tenant_request(dir.path(), "t1", "/doc").unwrap(),
        b"t1's doc"
    );
    assert_eq!(
        handle_tenant_request(dir.path(), "t1", "/../../../etc/passwd")
            .unwrap_err()
            .kind(),
        FsErrorKind::NotFound
    );
    assert_eq!(
        handle_tenant_request(dir.path(), "t2", "/doc")
            .unwrap_err()
            .kind(),
        FsErrorKind::NotFound
    );
}
