//! [`IndexedBackend`]: a SQLite index over blob files.

use std::path::Path;
use std::sync::Arc;

use anyfs::{FsError, FsResult, Layer};

use crate::blobs::Blobs;
use crate::db::{Db, Durability, SqliteOptions};
use crate::store::Store;

/// Names and metadata in SQLite (`index.db`), file content in UUID-named
/// blob files (`blobs/`) in one directory. Large files stream from plain
/// files; the index stays small.
///
/// A blob is written to a temporary name and renamed into place before the
/// index points at it, so it is either whole or absent; blobs that no index
/// row names (left by a crash) are removed on open.
///
/// ```
/// use anyfs::FileStorage;
/// use anyfs_sqlite::IndexedBackend;
///
/// # let dir = tempfile::tempdir()?;
/// let fs = FileStorage::new(IndexedBackend::open(dir.path().join("store"))?);
/// fs.write("/video.bin", vec![1u8; 100_000])?;
/// assert_eq!(fs.metadata("/video.bin")?.len, 100_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IndexedBackend {
    pub(crate) store: Arc<Store<Blobs>>,
}

impl std::fmt::Debug for IndexedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedBackend").finish_non_exhaustive()
    }
}

impl IndexedBackend {
    /// Opens the store in `dir`, creating it if missing, and removes blobs
    /// no index row names.
    pub fn open(dir: impl AsRef<Path>) -> FsResult<Self> {
        Self::open_with_options(dir, SqliteOptions::default())
    }

    /// Opens with the given options; [`Durability::Full`] also flushes every
    /// blob before the index names it.
    pub fn open_with_options(dir: impl AsRef<Path>, options: SqliteOptions) -> FsResult<Self> {
        let dir = dir.as_ref();
        let blob_dir = dir.join("blobs");
        std::fs::create_dir_all(&blob_dir)
            .map_err(|e| FsError::io("/", "create the blob directory", e))?;
        let owner = crate::current_owner();
        let db = Db::open(Some(&dir.join("index.db")), None, options, owner)?;
        let blobs = Blobs::new(blob_dir, options.durability == Durability::Full);
        let store = Store::new(db, blobs, owner)?;
        store
            .db
            .with_writer(|conn| store.content.sweep(conn).map(drop))?;
        Ok(Self { store })
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
    /// # use anyfs_sqlite::IndexedBackend;
    /// # let dir = tempfile::tempdir()?;
    /// # let backend = IndexedBackend::open(dir.path().join("store"))?;
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

/// Every operation is the store's.
impl anyfs::middleware::Middleware for IndexedBackend {
    type Inner = Store<Blobs>;
    fn inner(&self) -> &Store<Blobs> {
        &self.store
    }
}
