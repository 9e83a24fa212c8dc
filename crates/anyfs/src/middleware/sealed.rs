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
//! raw storage all fail with [`FsError::IntegrityError`] naming the path.
//! Content is never decrypted whole for a range read or a stream.
//!
//! What file-level sealing cannot see: a whole file put back as it was at
//! an earlier moment (that needs state kept elsewhere), and metadata —
//! names, sizes, times — which stay visible to whoever holds the storage.

use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::content::{room_for, spans_of, splice_into};
use crate::crypto::{self, Aes, Key, NONCE_LEN, TAG_LEN};
use crate::error::{FsError, FsResult};
use crate::layer::Layer;
use crate::path;
use crate::traits::{
    FileWriter, FsDir, FsInode, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite,
    FsWriter,
};
use crate::types::{FileType, Metadata, Permissions, ReadDir, StatFs};

/// Bytes of content per record.
pub const CHUNK_SIZE: usize = 64 * 1024;
const HEADER_LEN: usize = 32;
const VERSION: u8 = 1;

/// How records are sealed: [`Encrypt`] or [`Authenticate`].
pub trait SealMode: Send + Sync + 'static + private::Sealed {
    #[doc(hidden)]
    const MAGIC: [u8; 4];
    #[doc(hidden)]
    const OVERHEAD: usize;
    #[doc(hidden)]
    fn new(key: &Key) -> Self;
    /// Appends the record for `plain` to `out`.
    #[doc(hidden)]
    fn seal(&self, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN], out: &mut Vec<u8>);
    /// Checks the record `buf[from..]` and moves its content to the start
    /// of `buf`; returns the content's length, or `None` if it does not
    /// authenticate.
    #[doc(hidden)]
    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::Encrypt {}
    impl Sealed for super::Authenticate {}
}

/// AES-256-GCM records: content hidden and authenticated.
pub struct Encrypt(Aes);

/// HMAC-SHA256 records: content readable in the storage, authenticated.
pub struct Authenticate(ring::hmac::Key);

impl std::fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encrypt(AES-256-GCM)")
    }
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticate(HMAC-SHA256)")
    }
}

impl SealMode for Encrypt {
    const MAGIC: [u8; 4] = *b"AFSE";
    const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

    fn new(key: &Key) -> Self {
        Self(Aes::new(&key.derive("anyfs file encryption v1")))
    }

    fn seal(&self, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self.0.seal_detached(nonce, aad, &mut out[start..]);
        out.extend_from_slice(&tag);
    }

    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize> {
        if buf.len() < from + Self::OVERHEAD {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[from..from + NONCE_LEN]);
        self.0.open_within(&nonce, aad, buf, from + NONCE_LEN)
    }
}

impl SealMode for Authenticate {
    const MAGIC: [u8; 4] = *b"AFSI";
    const OVERHEAD: usize = 32;

    fn new(key: &Key) -> Self {
        let key = key.derive("anyfs file integrity v1");
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose()))
    }

    fn seal(&self, aad: &[u8], plain: &[u8], _nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
        let mut mac = ring::hmac::Context::with_key(&self.0);
        mac.update(aad);
        mac.update(plain);
        out.extend_from_slice(plain);
        out.extend_from_slice(mac.sign().as_ref());
    }

    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize> {
        let len = buf.len().checked_sub(from + Self::OVERHEAD)?;
        let (data, tag) = buf[from..].split_at(len);
        let mut mac = ring::hmac::Context::with_key(&self.0);
        mac.update(aad);
        mac.update(data);
        let ok: bool = subtle::ConstantTimeEq::ct_eq(mac.sign().as_ref(), tag).into();
        if !ok {
            return None;
        }
        buf.copy_within(from..from + len, 0);
        Some(len)
    }
}

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
/// to the file's path; any tampering is [`FsError::IntegrityError`].
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
/// the layer is [`FsError::IntegrityError`].
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
    fn layer(self, backend: B) -> Sealed<B, M> {
        Sealed::new(backend).with_key(self.key)
    }
}

impl<B, M: SealMode> Sealed<B, M> {
    /// The layer over `inner`, without a key yet: until [`with_key`] gives
    /// one, reading or writing content fails closed with
    /// [`FsError::AccessDenied`].
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

    /// Wraps the layer in another layer.
    pub fn layer<L: Layer<Self>>(self, layer: L) -> L::Backend {
        layer.layer(self)
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

/// Where the records of a stored file are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    records: u64,
    plain_len: u64,
}

impl Layout {
    /// The layout a stored length implies, or `None` if no sealed file can
    /// have that length.
    fn of<M: SealMode>(stored: u64) -> Option<Self> {
        let body = stored.checked_sub(HEADER_LEN as u64)?;
        let record = (CHUNK_SIZE + M::OVERHEAD) as u64;
        let (full, rest) = (body / record, body % record);
        if rest == 0 {
            (full > 0).then_some(Layout {
                records: full,
                plain_len: full * CHUNK_SIZE as u64,
            })
        } else {
            (rest >= M::OVERHEAD as u64).then_some(Layout {
                records: full + 1,
                plain_len: full * CHUNK_SIZE as u64 + rest - M::OVERHEAD as u64,
            })
        }
    }

    /// Bytes of content in record `index`.
    fn plain_in(&self, index: u64) -> usize {
        if index + 1 < self.records {
            CHUNK_SIZE
        } else {
            (self.plain_len - (self.records - 1) * CHUNK_SIZE as u64) as usize
        }
    }
}

fn record_offset<M: SealMode>(index: u64) -> u64 {
    HEADER_LEN as u64 + index * (CHUNK_SIZE + M::OVERHEAD) as u64
}

/// A fresh header with a random file id.
fn new_header<M: SealMode>() -> FsResult<[u8; HEADER_LEN]> {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&M::MAGIC);
    header[4] = VERSION;
    header[8..12].copy_from_slice(&(CHUNK_SIZE as u32).to_le_bytes());
    crypto::fill_random(&mut header[12..28])?;
    Ok(header)
}

fn header_is_valid<M: SealMode>(header: &[u8]) -> bool {
    header.len() == HEADER_LEN
        && header[..4] == M::MAGIC
        && header[4] == VERSION
        && header[8..12] == (CHUNK_SIZE as u32).to_le_bytes()
}

/// What a record is authenticated with.
fn record_aad(header: &[u8], index: u64, last: bool, path: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 9 + path.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.push(u8::from(last));
    aad.extend_from_slice(path);
    aad
}

fn nonce_for(base: &[u8; NONCE_LEN], index: u64) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    for (n, i) in nonce[4..].iter_mut().zip(index.to_le_bytes()) {
        *n ^= i;
    }
    nonce
}

fn random_nonce() -> FsResult<[u8; NONCE_LEN]> {
    let mut base = [0u8; NONCE_LEN];
    crypto::fill_random(&mut base)?;
    Ok(base)
}

fn no_key(path: &Path) -> FsError {
    FsError::AccessDenied {
        path: path.into(),
        reason: "no key was given to the encryption or integrity layer".into(),
    }
}

/// The normal spelling of a path, which is what records are bound to.
fn bound(path: &Path) -> FsResult<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Ok(path::resolved_normal_form(path)?
        .as_os_str()
        .as_bytes()
        .to_vec())
}

/// Seals `data` as records `first..` of a file with `header`, the last
/// record marked as such.
fn seal_records<M: SealMode>(
    mode: &M,
    header: &[u8],
    path: &[u8],
    first: u64,
    data: &[u8],
    out: &mut Vec<u8>,
) -> FsResult<()> {
    let base = random_nonce()?;
    let count = data.len().div_ceil(CHUNK_SIZE).max(1);
    out.reserve(data.len() + count * M::OVERHEAD);
    for i in 0..count {
        let chunk = &data[(i * CHUNK_SIZE).min(data.len())..((i + 1) * CHUNK_SIZE).min(data.len())];
        let index = first + i as u64;
        let aad = record_aad(header, index, i + 1 == count, path);
        mode.seal(&aad, chunk, nonce_for(&base, index), out);
    }
    Ok(())
}

/// Opens the consecutive records `first..` that start at `buf[at..]` (the
/// buffer ends with the last of them), moving their content to the start of
/// `buf`; returns the content's length.
fn open_records<M: SealMode>(
    mode: &M,
    header: &[u8],
    bound_to: &[u8],
    layout: &Layout,
    first: u64,
    buf: &mut [u8],
    mut at: usize,
) -> Option<usize> {
    let mut written = 0;
    let mut index = first;
    while at < buf.len() {
        let len = layout.plain_in(index) + M::OVERHEAD;
        let end = at.checked_add(len).filter(|&e| e <= buf.len())?;
        let aad = record_aad(header, index, index + 1 == layout.records, bound_to);
        written += mode.open_within(&aad, &mut buf[written..end], at - written)?;
        at = end;
        index += 1;
    }
    Some(written)
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
                .unwrap_or(FsError::IsADirectory { path: path.into() }));
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

impl<B: FsRead, M: SealMode> FsRead for Sealed<B, M> {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let _shared = self.lock.read();
        self.read_unlocked(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let mode = self.mode(path)?;
        let _shared = self.lock.read();
        let layout = self.layout(path)?;
        if len == 0 || offset >= layout.plain_len {
            return Ok(Vec::new());
        }
        let end = layout.plain_len.min(offset.saturating_add(len as u64));
        let first = offset / CHUNK_SIZE as u64;
        let last = (end - 1) / CHUNK_SIZE as u64;
        let span = record_offset::<M>(last) - record_offset::<M>(first)
            + (layout.plain_in(last) + M::OVERHEAD) as u64;
        // From the first record, header and records come in one read.
        let (header, stored) = if first == 0 {
            let mut stored = self.inner.read_range(path, 0, HEADER_LEN + span as usize)?;
            if stored.len() < HEADER_LEN {
                return Err(crypto::integrity(path));
            }
            let header = stored[..HEADER_LEN].to_vec();
            stored.drain(..HEADER_LEN);
            (header, stored)
        } else {
            let header = self.inner.read_range(path, 0, HEADER_LEN)?;
            let stored = self
                .inner
                .read_range(path, record_offset::<M>(first), span as usize)?;
            (header, stored)
        };
        if !header_is_valid::<M>(&header) || stored.len() as u64 != span {
            return Err(crypto::integrity(path));
        }
        let mut plain = stored;
        let written = open_records(mode, &header, &bound(path)?, &layout, first, &mut plain, 0)
            .ok_or_else(|| crypto::integrity(path))?;
        plain.truncate(written);
        let skip = (offset - first * CHUNK_SIZE as u64) as usize;
        let take = (end - offset) as usize;
        plain.drain(..skip);
        plain.truncate(take);
        Ok(plain)
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.inner.metadata(path).map(|m| self.plain_metadata(m))
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let mode = self.shared_mode(path)?;
        let (layout, mut stored) = {
            let _shared = self.lock.read();
            (self.layout(path)?, self.inner.open_read(path)?)
        };
        let mut header = vec![0; HEADER_LEN];
        stored
            .read_exact(&mut header)
            .map_err(|_| crypto::integrity(path))?;
        if !header_is_valid::<M>(&header) {
            return Err(crypto::integrity(path));
        }
        Ok(Box::new(SealReader {
            stored,
            mode,
            header,
            path: path.to_path_buf(),
            bound_to: bound(path)?,
            layout,
            index: 0,
            record: Vec::new(),
            len: 0,
            pos: 0,
        }))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        self.inner.resolve_with(path, follow_last, visit)
    }
}

/// A streaming reader: one record decrypted at a time.
struct SealReader<M: SealMode> {
    stored: FsReader,
    mode: Arc<M>,
    header: Vec<u8>,
    path: PathBuf,
    bound_to: Vec<u8>,
    layout: Layout,
    index: u64,
    /// The current record; its content, once opened, at the start.
    record: Vec<u8>,
    len: usize,
    pos: usize,
}

impl<M: SealMode> Read for SealReader<M> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            if self.index == self.layout.records {
                // Anything after the last record is tampering.
                let mut extra = [0u8; 1];
                return match self.stored.read(&mut extra)? {
                    0 => Ok(0),
                    _ => Err(io::Error::other(crypto::integrity(&self.path))),
                };
            }
            let len = self.layout.plain_in(self.index) + M::OVERHEAD;
            self.record.resize(len, 0);
            self.stored
                .read_exact(&mut self.record)
                .map_err(|_| io::Error::other(crypto::integrity(&self.path)))?;
            let last = self.index + 1 == self.layout.records;
            let aad = record_aad(&self.header, self.index, last, &self.bound_to);
            self.pos = 0;
            self.len = self
                .mode
                .open_within(&aad, &mut self.record, 0)
                .ok_or_else(|| io::Error::other(crypto::integrity(&self.path)))?;
            self.index += 1;
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.record[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A streaming writer: content is sealed a record at a time into a staged
/// replacement of the stored file; the last record is written at the
/// commit, which commits the stored file.
struct SealWriter<M: SealMode> {
    stored: Option<FsWriter>,
    mode: Arc<M>,
    header: [u8; HEADER_LEN],
    bound_to: Vec<u8>,
    path: PathBuf,
    base: [u8; NONCE_LEN],
    index: u64,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl<M: SealMode> SealWriter<M> {
    fn emit(&mut self, last: bool) -> io::Result<()> {
        let take = self.pending.len().min(CHUNK_SIZE);
        let aad = record_aad(&self.header, self.index, last, &self.bound_to);
        self.out.clear();
        self.mode.seal(
            &aad,
            &self.pending[..take],
            nonce_for(&self.base, self.index),
            &mut self.out,
        );
        self.pending.drain(..take);
        self.index += 1;
        match &mut self.stored {
            Some(stored) => stored.write_all(&self.out),
            None => Err(io::Error::other("the writer is closed")),
        }
    }
}

impl<M: SealMode> Write for SealWriter<M> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // A full record is held back until more content shows it is not the last.
        while self.pending.len() > CHUNK_SIZE {
            self.emit(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stored {
            Some(stored) => stored.flush(),
            None => Ok(()),
        }
    }
}

impl<M: SealMode> FileWriter for SealWriter<M> {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let path = self.path.clone();
        self.emit(true)
            .map_err(|e| FsError::from_io(&path, "open_write", e))?;
        match self.stored.take() {
            Some(stored) => stored.commit(),
            None => Ok(()),
        }
    }
}

impl<B: FsRead + FsWrite + FsDir, M: SealMode> FsWrite for Sealed<B, M> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let sealed = self.seal_file(path, data)?;
        let _exclusive = self.lock.write();
        self.inner.write(path, &sealed)
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let mode = self.mode(path)?;
        let _exclusive = self.lock.write();
        match self.inner.metadata(path) {
            Err(FsError::NotFound { .. }) => {
                let sealed = self.seal_file(path, data)?;
                return self.inner.write(path, &sealed);
            }
            // Not a file: the inner backend refuses as it would.
            Ok(meta) if meta.file_type != FileType::File => {
                return self.inner.append(path, &[]);
            }
            other => other.map(drop)?,
        }
        let layout = self.layout(path)?;
        if data.is_empty() {
            return Ok(());
        }
        let header = self.inner.read_range(path, 0, HEADER_LEN)?;
        if !header_is_valid::<M>(&header) {
            return Err(crypto::integrity(path));
        }
        // The last record is opened and sealed again with the new content
        // after it, no longer marked last unless it still is.
        let last = layout.records - 1;
        let at = record_offset::<M>(last);
        let mut tail = self
            .inner
            .read_range(path, at, layout.plain_in(last) + M::OVERHEAD)?;
        let bound_to = bound(path)?;
        let aad = record_aad(&header, last, true, &bound_to);
        let kept = mode
            .open_within(&aad, &mut tail, 0)
            .ok_or_else(|| crypto::integrity(path))?;
        tail.truncate(kept);
        tail.extend_from_slice(data);
        let mut records = Vec::new();
        seal_records(mode, &header, &bound_to, last, &tail, &mut records)?;
        self.inner.truncate(path, at)?;
        self.inner.append(path, &records)
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.rename(from, to)?;
        if bound(from)? == bound(to)? || self.mode.is_none() {
            return Ok(());
        }
        self.rebind_tree(to, from)
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.mode(from)?;
        let _exclusive = self.lock.write();
        self.inner.copy(from, to)?;
        if bound(from)? == bound(to)? {
            return Ok(());
        }
        self.rebind_file(to, from)
    }

    /// Opens the whole file and seals it again with the new bytes in: fresh
    /// records under a fresh file id, so no record of the old content can
    /// be replayed into the new one. Costs the whole file, not the ranges.
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let _exclusive = self.lock.write();
        let mut plain = self.read_unlocked(path)?;
        let spans = spans_of(path, ranges, plain.len())?;
        if spans.is_empty() {
            return Ok(());
        }
        for (start, end, data) in spans {
            splice_into(&mut plain, start, end, data);
        }
        let sealed = self.seal_file(path, &plain)?;
        self.inner.write(path, &sealed)
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let _exclusive = self.lock.write();
        let mut plain = self.read_unlocked(path)?;
        let size = usize::try_from(size).map_err(|_| FsError::FileSizeExceeded {
            path: path.into(),
            size,
            limit: usize::MAX as u64,
        })?;
        room_for(path, plain.len(), size)?;
        plain.resize(size, 0);
        let sealed = self.seal_file(path, &plain)?;
        self.inner.write(path, &sealed)
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        let mode = self.shared_mode(path)?;
        let header = new_header::<M>()?;
        let mut stored = {
            let _exclusive = self.lock.write();
            self.inner.open_write(path)?
        };
        stored
            .write_all(&header)
            .map_err(|e| FsError::from_io(path, "open_write", e))?;
        Ok(Box::new(SealWriter {
            stored: Some(stored),
            mode,
            header,
            bound_to: bound(path)?,
            path: path.to_path_buf(),
            base: random_nonce()?,
            index: 0,
            pending: Vec::new(),
            out: Vec::new(),
        }))
    }
}

impl<B: FsDir, M: SealMode> FsDir for Sealed<B, M> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        self.inner.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.inner.create_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.remove_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.remove_dir_all(path)
    }
}

impl<B: FsRead + FsLink, M: SealMode> FsLink for Sealed<B, M> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        self.inner.symlink(target, link)
    }

    /// Refused: sealed content is bound to one path, and a second name
    /// would read as tampering.
    fn hard_link(&self, original: &Path, _link: &Path) -> FsResult<()> {
        Err(FsError::NotSupported {
            path: original.into(),
            op: "hard_link (sealed content is bound to its one path)",
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.inner.read_link(path)
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.inner
            .symlink_metadata(path)
            .map(|m| self.plain_metadata(m))
    }
}

impl<B: FsPermissions, M: SealMode> FsPermissions for Sealed<B, M> {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.inner.set_permissions(path, perm)
    }
    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        self.inner.set_times(path, accessed, modified)
    }
    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.inner.set_owner(path, uid, gid)
    }
}

impl<B: FsSync, M: SealMode> FsSync for Sealed<B, M> {
    fn sync(&self) -> FsResult<()> {
        self.inner.sync()
    }
    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.inner.fsync(path)
    }
}

impl<B: FsStats, M: SealMode> FsStats for Sealed<B, M> {
    fn statfs(&self) -> FsResult<StatFs> {
        self.inner.statfs()
    }
}

impl<B: FsRead + FsInode, M: SealMode> FsInode for Sealed<B, M> {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        self.inner.path_to_inode(path)
    }
    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        self.inner.inode_to_path(inode)
    }
    fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<u64> {
        self.inner.lookup(parent, name)
    }
    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        self.inner
            .metadata_by_inode(inode)
            .map(|m| self.plain_metadata(m))
    }
}
