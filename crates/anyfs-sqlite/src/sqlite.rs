//! [`SqliteBackend`]: a whole filesystem in one SQLite database.

use std::path::Path;
use std::sync::Arc;

use anyfs::{FsResult, Layer};

use crate::chunks::Chunks;
use crate::db::{Db, Key, SqliteOptions};
use crate::store::Store;

/// A filesystem in one SQLite database file: names, metadata and content
/// (in 64 KiB chunks). One file per tenant gives physical isolation; with
/// the `encryption` feature the file is encrypted whole.
///
/// `Clone` gives another handle to the same database.
///
/// ```
/// use anyfs::FileStorage;
/// use anyfs_sqlite::SqliteBackend;
///
/// let fs = FileStorage::new(SqliteBackend::open_in_memory()?);
/// fs.write("/hello.txt", "hi")?;
/// assert_eq!(fs.read("/hello.txt")?, b"hi");
/// # Ok::<(), anyfs::FsError>(())
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    pub(crate) store: Arc<Store<Chunks>>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the host path, never the key.
        f.debug_struct("SqliteBackend")
            .field("in_memory", &self.store.db.host_path().is_none())
            .field("encrypted", &self.store.db.is_encrypted())
            .finish()
    }
}

impl SqliteBackend {
    /// Opens the database at `path`, creating it (and its directory) if
    /// missing.
    pub fn open(path: impl AsRef<Path>) -> FsResult<Self> {
        Self::open_with_options(path, SqliteOptions::default())
    }

    /// Opens with the given options (for example [`SqliteOptions::durable`]).
    pub fn open_with_options(path: impl AsRef<Path>, options: SqliteOptions) -> FsResult<Self> {
        Self::build(Some(path.as_ref()), None, options)
    }

    /// A database in memory, gone when the last clone is dropped.
    pub fn open_in_memory() -> FsResult<Self> {
        Self::build(None, None, SqliteOptions::default())
    }

    fn build(path: Option<&Path>, key: Option<Key>, options: SqliteOptions) -> FsResult<Self> {
        if let Some(path) = path {
            crate::create_parent(path)?;
        }
        let owner = crate::current_owner();
        let db = Db::open(path, key, options, owner)?;
        Ok(Self {
            store: Store::new(db, Chunks, owner)?,
        })
    }

    /// Bytes of the database file in use: every tree (the workspace, its
    /// snapshots and branches) with content shared between them counted
    /// once. Space freed inside the file is not counted.
    pub fn stored_bytes(&self) -> FsResult<u64> {
        self.store.db.read(|conn| {
            // SQLCipher answers some of these as text.
            let pragma = |name: &str| -> FsResult<i64> {
                let value: rusqlite::types::Value = conn
                    .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                    .map_err(|e| crate::db::sql_error(Path::new("/"), "measure the database", e))?;
                match value {
                    rusqlite::types::Value::Integer(n) => Ok(n),
                    rusqlite::types::Value::Text(t) => t.trim().parse().map_err(|_| {
                        anyfs::FsError::backend(
                            "/",
                            "measure the database",
                            format!("{name}: {t:?}"),
                        )
                    }),
                    other => Err(anyfs::FsError::backend(
                        "/",
                        "measure the database",
                        format!("{name}: {other:?}"),
                    )),
                }
            };
            let pages = pragma("page_count")? - pragma("freelist_count")?;
            Ok((pages.max(0) * pragma("page_size")?) as u64)
        })
    }

    /// Wraps the backend in a layer.
    pub fn layer<L: Layer<Self>>(self, layer: L) -> L::Backend {
        layer.layer(self)
    }

    /// Runs `f` with every operation it makes on this thread — through
    /// this backend, its clones, or a `FileStorage` or middleware over it —
    /// in one transaction: all of it is committed when `f` returns `Ok`,
    /// none of it if `f` fails (or panics). Reads inside see the batch's
    /// writes; other threads wait until it ends. Many small writes commit
    /// far faster together than one by one.
    ///
    /// ```
    /// # use anyfs::FileStorage;
    /// # use anyfs_sqlite::SqliteBackend;
    /// # let dir = tempfile::tempdir()?;
    /// # let backend = SqliteBackend::open(dir.path().join("fs.db"))?;
    /// let fs = FileStorage::new(backend.clone());
    /// backend.batch(|_| {
    ///     for i in 0..100 {
    ///         fs.write(format!("/file-{i}"), "small")?;
    ///     }
    ///     Ok(())
    /// })?;
    /// assert_eq!(fs.read_dir("/")?.count(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch<T>(&self, f: impl FnOnce(&Self) -> FsResult<T>) -> FsResult<T> {
        self.store.db.batch(|| f(self))
    }
}

#[cfg(feature = "encryption")]
impl SqliteBackend {
    /// Opens (or creates) a database encrypted with `password` (SQLCipher
    /// derives the key with PBKDF2-HMAC-SHA512). A wrong password is
    /// [`FsErrorKind::InvalidPassword`](anyfs::FsErrorKind::InvalidPassword), and
    /// leaves the file untouched.
    pub fn open_encrypted(path: impl AsRef<Path>, password: impl AsRef<str>) -> FsResult<Self> {
        Self::open_encrypted_with_options(path, password, SqliteOptions::default())
    }

    /// [`open_encrypted`](Self::open_encrypted) with the given options.
    pub fn open_encrypted_with_options(
        path: impl AsRef<Path>,
        password: impl AsRef<str>,
        options: SqliteOptions,
    ) -> FsResult<Self> {
        let key = Key::Password(zeroize::Zeroizing::new(password.as_ref().to_owned()));
        Self::build(Some(path.as_ref()), Some(key), options)
    }

    /// Opens (or creates) a database encrypted with a raw 256-bit key (no
    /// key derivation).
    pub fn open_with_key(path: impl AsRef<Path>, key: &[u8; 32]) -> FsResult<Self> {
        let key = Key::Raw(zeroize::Zeroizing::new(*key));
        Self::build(Some(path.as_ref()), Some(key), SqliteOptions::default())
    }

    /// Creates a new database encrypted with `password`;
    /// [`FsErrorKind::AlreadyExists`](anyfs::FsErrorKind::AlreadyExists) if the file
    /// exists.
    pub fn create_encrypted(path: impl AsRef<Path>, password: impl AsRef<str>) -> FsResult<Self> {
        if path.as_ref().exists() {
            return Err(anyfs::FsError::already_exists("/"));
        }
        Self::open_encrypted(path, password)
    }

    /// Re-encrypts the database under a new password. Every clone of this
    /// backend keeps working; the old password no longer opens the file.
    pub fn change_password(&self, new_password: impl AsRef<str>) -> FsResult<()> {
        let key = Key::Password(zeroize::Zeroizing::new(new_password.as_ref().to_owned()));
        self.store.db.rekey(key)
    }
}

/// Every operation is the store's.
impl anyfs::middleware::Middleware for SqliteBackend {
    type Inner = Store<Chunks>;
    fn inner(&self) -> &Store<Chunks> {
        &self.store
    }
}
