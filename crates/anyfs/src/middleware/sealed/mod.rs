//! [`FileEncryption`] and [`IntegrityVerified`]: file contents sealed chunk
//! by chunk, bound to their path.
//!
//! # Stored format
//!
//! ```text
//! header   "AFSE" (encrypted) or "AFSI" (authenticated) | version 1 | 3 zero bytes
//!          | chunk size (u32 LE, 65536) | file id (16 random bytes) | 4 zero bytes
//! records  one per 64 KiB of content, the last one shorter (an empty file has one
//!          empty record):
//!          FileEncryption:    nonce (12) | AES-256-GCM ciphertext | tag (16)
//!          IntegrityVerified: content | HMAC-SHA256 tag (32)
//! ```
//!
//! Each record is authenticated together with the header, its index, whether
//! it is the last record, and the file's virtual path. So a flipped bit,
//! a record moved, swapped or dropped, bytes appended, the file cut short, a
//! record from another file (or another version of this one: every write
//! draws a new file id) and a file copied or moved to another path in the
//! raw storage all fail with [`FsErrorKind::IntegrityError`](crate::FsErrorKind::IntegrityError) naming the path.
//! Content is never decrypted whole for a range read or a stream.
//!
//! What file-level sealing cannot see: a whole file put back as it was at
//! an earlier moment (that needs state kept elsewhere), and metadata —
//! names, sizes, times — which stay visible to whoever holds the storage.

mod format;
mod operations;
mod streams;

pub use format::{Authenticate, CHUNK_SIZE, Encrypt, SealMode};

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::crypto::{self, Key};
use crate::error::{FsError, FsResult};
use crate::layer::Layer;
use crate::path;
use crate::traits::{FsDir, FsRead, FsWrite};
use crate::types::{FileType, Metadata};
use format::{HEADER_LEN, Layout, header_is_valid, new_header, open_records, seal_records};

/// File contents sealed by `M`, bound to their paths. Use it as
/// [`FileEncryption`] or [`IntegrityVerified`].
pub struct Sealed<B, M> {
    inner: B,
    mode: Option<Arc<M>>,
    /// Writes through this layer take it exclusively, reads shared, so that
    /// a read never sees half of an append or a re-sealing rename.
    lock: Arc<RwLock<()>>,
}

/// Encrypts file contents with AES-256-GCM, chunk by chunk, each chunk bound
/// to the file's path; any tampering is [`FsErrorKind::IntegrityError`](crate::FsErrorKind::IntegrityError).
///
/// Names, sizes and the directory tree stay visible to whoever holds the
/// storage (that is the point of "privacy mode": a host can list and count
/// a tenant's files, not read them). `metadata().len()` reports the
/// plaintext length. Renames and copies through the layer re-seal the
/// content for its new path; the same bytes moved in the raw storage do not
/// decrypt. Hard links are refused (one content cannot be bound to two
/// paths). See the [format](self) for what exactly is authenticated.
///
/// ```
/// use anyfs::{FileEncryption, FileStorage, FsErrorKind, FsRead, FsWrite, MemoryBackend};
/// use anyfs::crypto::Key;
/// use std::path::Path;
///
/// let storage = MemoryBackend::new();
/// let fs = FileStorage::new(FileEncryption::new(storage.clone()).with_key(Key::random()?));
/// fs.write("/diary.txt", "dear diary")?;
/// assert_eq!(fs.read_to_string("/diary.txt")?, "dear diary");
/// assert_eq!(fs.metadata("/diary.txt")?.len(), 10);
///
/// // The storage holds ciphertext only…
/// let raw = storage.read(Path::new("/diary.txt"))?;
/// assert!(!raw.windows(4).any(|w| w == b"dear"));
/// // …and bytes moved there by someone else do not decrypt.
/// storage.write(Path::new("/stolen.txt"), &raw)?;
/// assert_eq!(fs.read("/stolen.txt").unwrap_err().kind(), FsErrorKind::IntegrityError);
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// Order: innermost, right above the backend, so that quotas and filters
/// above it see plaintext sizes and every caller's write is sealed.
pub type FileEncryption<B> = Sealed<B, Encrypt>;

/// Authenticates file contents with HMAC-SHA256, chunk by chunk and bound to
/// the path, leaving them readable in the storage; any change made outside
/// the layer is [`FsErrorKind::IntegrityError`](crate::FsErrorKind::IntegrityError).
///
/// ```
/// use anyfs::{FileStorage, FsErrorKind, FsRead, FsWrite, IntegrityVerified, MemoryBackend};
/// use anyfs::crypto::Key;
/// use std::path::Path;
///
/// let storage = MemoryBackend::new();
/// let fs = FileStorage::new(IntegrityVerified::new(storage.clone()).with_key(Key::random()?));
/// fs.write("/config.toml", "debug = false")?;
///
/// let mut raw = storage.read(Path::new("/config.toml"))?;
/// let at = raw.windows(5).position(|w| w == b"false").unwrap();
/// raw[at..at + 5].copy_from_slice(b"true ");
/// storage.write(Path::new("/config.toml"), &raw)?;
/// assert_eq!(fs.read("/config.toml").unwrap_err().kind(), FsErrorKind::IntegrityError);
/// # Ok::<(), anyfs::FsError>(())
/// ```
/// use anyfs::prelude::*;
pub type IntegrityVerified<B> = Sealed<B, Authenticate>;

/// The layer of [`FileEncryption`]: `backend.layer(FileEncryptionLayer::new(key))`.
pub type FileEncryptionLayer = SealLayer<Encrypt>;
/// The layer of [`IntegrityVerified`].
pub type IntegrityLayer = SealLayer<Authenticate>;

/// A layer that seals file contents with a key; see [`FileEncryptionLayer`]
/// and [`IntegrityLayer`].
pub struct SealLayer<M> {
    key: Key,
    _mode: PhantomData<fn() -> M>,
}

impl<M> SealLayer<M> {
    /// A layer sealing with `key`.
    pub fn new(key: impl Into<Key>) -> Self {
        Self {
            key: key.into(),
            _mode: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for SealLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealLayer").finish_non_exhaustive()
    }
}

impl<B, M: SealMode> Layer<B> for SealLayer<M> {
    type Backend = Sealed<B, M>;
    fn layer(&self, backend: B) -> Sealed<B, M> {
        Sealed::new(backend).with_key(self.key.clone())
    }
}

impl<B, M: SealMode> Sealed<B, M> {
    /// The layer over `inner`, without a key yet: until [`with_key`] gives
    /// one, reading or writing content fails closed with
    /// [`FsErrorKind::AccessDenied`](crate::FsErrorKind::AccessDenied).
    ///
    /// [`with_key`]: Self::with_key
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            mode: None,
            lock: Arc::new(RwLock::new(())),
        }
    }

    /// Seals with `key` (a [`Key`], or its 32 bytes). A key for this layer
    /// is derived from it, so the same key can serve other purposes too.
    pub fn with_key(mut self, key: impl Into<Key>) -> Self {
        self.mode = Some(Arc::new(M::new(&key.into())));
        self
    }

    /// The backend underneath, holding sealed content.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Clone, M> Clone for Sealed<B, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            mode: self.mode.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<B: std::fmt::Debug, M> std::fmt::Debug for Sealed<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("inner", &self.inner)
            .field("key", &if self.mode.is_some() { "set" } else { "none" })
            .finish()
    }
}

fn no_key(path: &Path) -> FsError {
    FsError::access_denied(
        path,
        "no key was given to the encryption or integrity layer",
    )
}

/// The normal spelling of a path, which is what records are bound to.
pub(super) fn bound(path: &Path) -> FsResult<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Ok(path::resolved_normal_form(path)?
        .as_os_str()
        .as_bytes()
        .to_vec())
}

impl<B, M: SealMode> Sealed<B, M> {
    fn mode(&self, path: &Path) -> FsResult<&M> {
        self.mode.as_deref().ok_or_else(|| no_key(path))
    }

    fn shared_mode(&self, path: &Path) -> FsResult<Arc<M>> {
        self.mode.clone().ok_or_else(|| no_key(path))
    }

    /// A whole sealed file for `data` at `path`.
    fn seal_file(&self, path: &Path, data: &[u8]) -> FsResult<Vec<u8>> {
        let mode = self.mode(path)?;
        let header = new_header::<M>()?;
        let mut out = Vec::with_capacity(HEADER_LEN + data.len() + M::OVERHEAD);
        out.extend_from_slice(&header);
        seal_records(mode, &header, &bound(path)?, 0, data, &mut out)?;
        Ok(out)
    }

    /// The content of a whole sealed file stored for `bound_to`, opened in
    /// place (no second buffer); errors name `path`.
    fn open_file(&self, path: &Path, bound_to: &Path, mut stored: Vec<u8>) -> FsResult<Vec<u8>> {
        let mode = self.mode(path)?;
        let layout = Layout::of::<M>(stored.len() as u64).ok_or_else(|| crypto::integrity(path))?;
        let header: [u8; HEADER_LEN] = stored[..HEADER_LEN]
            .try_into()
            .map_err(|_| crypto::integrity(path))?;
        if !header_is_valid::<M>(&header) {
            return Err(crypto::integrity(path));
        }
        let written = open_records(
            mode,
            &header,
            &bound(bound_to)?,
            &layout,
            0,
            &mut stored,
            HEADER_LEN,
        )
        .ok_or_else(|| crypto::integrity(path))?;
        stored.truncate(written);
        Ok(stored)
    }
}

impl<B: FsRead, M: SealMode> Sealed<B, M> {
    /// The layout of the file at `path`, or the inner backend's error for
    /// whatever else is there.
    fn layout(&self, path: &Path) -> FsResult<Layout> {
        let meta = self.inner.metadata(path)?;
        if meta.file_type != FileType::File {
            // The inner backend says what is wrong (a directory, a link).
            return Err(self
                .inner
                .read(path)
                .err()
                .unwrap_or(FsError::is_a_directory(path)));
        }
        Layout::of::<M>(meta.len).ok_or_else(|| crypto::integrity(path))
    }

    fn plain_metadata(&self, mut meta: Metadata) -> Metadata {
        if meta.file_type == FileType::File {
            meta.len = Layout::of::<M>(meta.len).map_or(0, |l| l.plain_len);
        }
        meta
    }

    fn read_unlocked(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.mode(path)?;
        let stored = self.inner.read(path)?;
        self.open_file(path, path, stored)
    }
}

impl<B: FsRead + FsWrite, M: SealMode> Sealed<B, M> {
    /// Re-seals the file now at `path`, which was sealed for `was`.
    fn rebind_file(&self, path: &Path, was: &Path) -> FsResult<()> {
        let stored = self.inner.read(path)?;
        // Content that was already damaged stays as it is: unreadable.
        let Ok(plain) = self.open_file(path, was, stored) else {
            return Ok(());
        };
        let sealed = self.seal_file(path, &plain)?;
        self.inner.write(path, &sealed)
    }
}

impl<B: FsRead + FsWrite + FsDir, M: SealMode> Sealed<B, M> {
    /// Re-seals everything now at `path` (a file, or a directory tree) that
    /// was sealed under `was`.
    fn rebind_tree(&self, path: &Path, was: &Path) -> FsResult<()> {
        match self.inner.metadata(path)?.file_type {
            FileType::File => self.rebind_file(path, was),
            FileType::Symlink => Ok(()),
            FileType::Directory => {
                let mut stack = vec![(path.to_path_buf(), was.to_path_buf())];
                while let Some((dir, old)) = stack.pop() {
                    for entry in self.inner.read_dir(&dir)? {
                        let entry = entry?;
                        let now = path::join(&dir, &entry.name);
                        let then = path::join(&old, &entry.name);
                        match entry.file_type {
                            FileType::File => self.rebind_file(&now, &then)?,
                            FileType::Directory => stack.push((now, then)),
                            FileType::Symlink => {}
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
