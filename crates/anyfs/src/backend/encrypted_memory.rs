//! [`EncryptedMemoryBackend`]: a filesystem in memory that keeps every node
//! encrypted while it is not being used.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Cursor;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::codec::{Decoder, Encoder, write_atomically};
use crate::content::{memory_available, room_for, spans_of, splice_into};
use crate::crypto::{self, Aes, Key, NONCE_LEN};
use crate::error::{FsError, FsResult};
use crate::path::{self, CROSSES_SYMLINK, PathWalker, Step};
use crate::traits::{
    FsDir, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite, FsWriter,
};
use crate::types::{DirEntry, FileType, Metadata, Permissions, ReadDir, StatFs};

type Ino = u64;
const ROOT: Ino = 1;
const FILE_MAGIC: &[u8; 4] = b"AFSR";
const FILE_VERSION: u8 = 1;

/// A filesystem in memory whose nodes — file contents, directory entries
/// (names), link targets and metadata — are each held encrypted
/// (AES-256-GCM, bound to the node's number) and decrypted only for the
/// operation that needs them, into buffers that are wiped afterwards.
///
/// The key is held in a [`Key`], wiped when the backend is dropped; so are
/// the encrypted nodes. [`save_to_file`](Self::save_to_file) writes the
/// encrypted nodes as they are — no plaintext exists on the way to disk, or
/// back with [`load_from_file`](Self::load_from_file) — with an HMAC over
/// the whole file, so a wrong key is [`FsError::InvalidPassword`] and a
/// changed file is refused.
///
/// What it cannot do: bytes returned by a read belong to the caller (wipe
/// them with `zeroize` if they are sensitive), and AES key schedules live in
/// memory for the length of one operation.
///
/// ```
/// use anyfs::{EncryptedMemoryBackend, FileStorage};
/// use anyfs::crypto::{Key, Salt};
///
/// let salt = Salt::random()?;
/// let key = Key::from_password("correct horse battery staple", &salt)?;
/// let fs = FileStorage::new(EncryptedMemoryBackend::new(key.clone()));
/// fs.write("/secret.txt", "only while in use")?;
///
/// let file = std::env::temp_dir().join(format!("anyfs-emb-doc-{}.enc", std::process::id()));
/// fs.backend().save_to_file(&file)?;
/// let restored = FileStorage::new(EncryptedMemoryBackend::load_from_file(&file, key)?);
/// assert_eq!(restored.read_to_string("/secret.txt")?, "only while in use");
/// # std::fs::remove_file(&file).unwrap();
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// `Clone` gives a shared handle to the same filesystem. Below
/// [`FileStorage`](crate::FileStorage) it follows no symlink.
#[derive(Clone)]
pub struct EncryptedMemoryBackend {
    vault: Arc<Mutex<Vault>>,
    key: Arc<Key>,
}

impl std::fmt::Debug for EncryptedMemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedMemoryBackend")
            .field("nodes", &self.vault.lock().nodes.len())
            .finish_non_exhaustive()
    }
}

struct Vault {
    nodes: FxHashMap<Ino, SealedNode>,
    next_ino: Ino,
    uid: u32,
    gid: u32,
}

/// One node, encrypted: nonce, ciphertext, tag. Wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
struct SealedNode(Vec<u8>);

/// One node in plaintext, alive for one operation; wiped when dropped.
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Names of a file or symlink (directories have exactly one).
    nlink: u64,
    accessed: SystemTime,
    modified: SystemTime,
    changed: SystemTime,
    created: SystemTime,
}

enum Kind {
    File(Vec<u8>),
    Dir {
        entries: BTreeMap<OsString, Ino>,
        subdirs: u64,
        parent: Ino,
    },
    Symlink(PathBuf),
}

impl Drop for Node {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::File(data) => data.zeroize(),
            Kind::Symlink(target) => std::mem::take(target).into_os_string().into_vec().zeroize(),
            Kind::Dir { entries, .. } => {
                for (name, _) in std::mem::take(entries) {
                    name.into_vec().zeroize();
                }
            }
        }
    }
}

impl Node {
    fn new(kind: Kind, mode: u32, uid: u32, gid: u32, now: SystemTime) -> Self {
        Self {
            kind,
            mode,
            uid,
            gid,
            nlink: 0,
            accessed: now,
            modified: now,
            changed: now,
            created: now,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    fn file_type(&self) -> FileType {
        match self.kind {
            Kind::File(_) => FileType::File,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
        }
    }

    fn metadata(&self, ino: Ino) -> Metadata {
        let (len, nlink) = match &self.kind {
            Kind::File(data) => (data.len() as u64, self.nlink),
            Kind::Dir { subdirs, .. } => (0, 2 + subdirs),
            Kind::Symlink(t) => (t.as_os_str().len() as u64, self.nlink),
        };
        Metadata {
            file_type: self.file_type(),
            len,
            permissions: Permissions::from_mode(self.mode),
            inode: ino,
            nlink,
            uid: self.uid,
            gid: self.gid,
            accessed: self.accessed,
            modified: self.modified,
            changed: self.changed,
            created: self.created,
        }
    }

    fn encode(&self, out: &mut Encoder) {
        out.u32(self.mode);
        out.u32(self.uid);
        out.u32(self.gid);
        out.u64(self.nlink);
        for t in [self.accessed, self.modified, self.changed, self.created] {
            out.time(t);
        }
        match &self.kind {
            Kind::File(data) => {
                out.u8(0);
                out.bytes(data);
            }
            Kind::Dir {
                entries,
                subdirs,
                parent,
            } => {
                out.u8(1);
                out.u64(*subdirs);
                out.u64(*parent);
                out.u64(entries.len() as u64);
                for (name, ino) in entries {
                    out.bytes(name.as_bytes());
                    out.u64(*ino);
                }
            }
            Kind::Symlink(target) => {
                out.u8(2);
                out.bytes(target.as_os_str().as_bytes());
            }
        }
    }

    fn decode(data: &[u8]) -> Option<Self> {
        let mut d = Decoder::new(data);
        let (mode, uid, gid, nlink) = (d.u32()?, d.u32()?, d.u32()?, d.u64()?);
        let times = [d.time()?, d.time()?, d.time()?, d.time()?];
        let kind = match d.u8()? {
            0 => Kind::File(d.bytes()?.to_vec()),
            1 => {
                let (subdirs, parent) = (d.u64()?, d.u64()?);
                let mut entries = BTreeMap::new();
                for _ in 0..d.count(16)? {
                    let name = OsString::from_vec(d.bytes()?.to_vec());
                    entries.insert(name, d.u64()?);
                }
                Kind::Dir {
                    entries,
                    subdirs,
                    parent,
                }
            }
            2 => Kind::Symlink(PathBuf::from(OsString::from_vec(d.bytes()?.to_vec()))),
            _ => return None,
        };
        d.is_empty().then_some(Self {
            kind,
            mode,
            uid,
            gid,
            nlink,
            accessed: times[0],
            modified: times[1],
            changed: times[2],
            created: times[3],
        })
    }
}

fn node_aad(ino: Ino) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..12].copy_from_slice(b"anyfs-emb-v1");
    aad[12..].copy_from_slice(&ino.to_le_bytes());
    aad
}

/// One operation's view of the vault: nodes decrypted on first use, the
/// changed ones sealed again by [`Tx::commit`], all wiped when it ends.
struct Tx<'v> {
    vault: &'v mut Vault,
    aes: Aes,
    path: &'v Path,
    cache: FxHashMap<Ino, Node>,
    dirty: FxHashSet<Ino>,
    now: SystemTime,
}

impl<'v> Tx<'v> {
    fn load(&mut self, ino: Ino) -> FsResult<()> {
        if self.cache.contains_key(&ino) {
            return Ok(());
        }
        let sealed = self
            .vault
            .nodes
            .get(&ino)
            .ok_or_else(|| crypto::integrity(self.path))?;
        if sealed.0.len() < NONCE_LEN {
            return Err(crypto::integrity(self.path));
        }
        let (nonce, body) = sealed.0.split_at(NONCE_LEN);
        let mut plain = Zeroizing::new(body.to_vec());
        let len = self
            .aes
            .open(nonce, &node_aad(ino), &mut plain)
            .ok_or_else(|| crypto::integrity(self.path))?;
        let node = Node::decode(&plain[..len]).ok_or_else(|| crypto::integrity(self.path))?;
        self.cache.insert(ino, node);
        Ok(())
    }

    fn node(&mut self, ino: Ino) -> FsResult<&Node> {
        self.load(ino)?;
        Ok(&self.cache[&ino])
    }

    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.load(ino)?;
        self.dirty.insert(ino);
        Ok(self.cache.get_mut(&ino).expect("loaded above"))
    }

    fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.vault.next_ino;
        self.vault.next_ino += 1;
        self.cache.insert(ino, node);
        self.dirty.insert(ino);
        ino
    }

    fn free(&mut self, ino: Ino) {
        self.cache.remove(&ino);
        self.dirty.remove(&ino);
        self.vault.nodes.remove(&ino);
    }

    /// Seals every changed node back into the vault.
    fn commit(mut self) -> FsResult<()> {
        let mut base = [0u8; NONCE_LEN];
        crypto::fill_random(&mut base)?;
        for (i, ino) in std::mem::take(&mut self.dirty).into_iter().enumerate() {
            let mut nonce = base;
            for (n, b) in nonce[4..].iter_mut().zip((i as u64).to_le_bytes()) {
                *n ^= b;
            }
            let mut plain = Encoder::default();
            self.cache[&ino].encode(&mut plain);
            let mut sealed = Vec::with_capacity(NONCE_LEN + plain.buf.len() + crypto::TAG_LEN);
            sealed.extend_from_slice(&nonce);
            sealed.extend_from_slice(&plain.buf);
            let tag = self
                .aes
                .seal_detached(nonce, &node_aad(ino), &mut sealed[NONCE_LEN..]);
            sealed.extend_from_slice(&tag);
            self.vault.nodes.insert(ino, SealedNode(sealed));
        }
        Ok(())
    }

    // ------------------------------------------------ the filesystem's rules

    fn walk(&mut self, names: &[&OsStr]) -> FsResult<Ino> {
        let path = self.path;
        let mut ino = ROOT;
        for name in names {
            ino = match &self.node(ino)?.kind {
                Kind::Dir { entries, .. } => *entries
                    .get(*name)
                    .ok_or_else(|| FsError::NotFound { path: path.into() })?,
                Kind::File(_) => return Err(FsError::NotADirectory { path: path.into() }),
                Kind::Symlink(_) => {
                    return Err(FsError::InvalidPath {
                        path: path.into(),
                        reason: CROSSES_SYMLINK,
                    });
                }
            };
        }
        Ok(ino)
    }

    fn lookup(&mut self, path: &Path) -> FsResult<Ino> {
        let names = path::resolved_components(path)?;
        self.walk(&names)
    }

    /// The parent directory of a resolved path and its last name.
    fn slot<'p>(&mut self, path: &'p Path, op: &'static str) -> FsResult<(Ino, &'p OsStr)> {
        let names = path::resolved_components(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(FsError::InvalidPath {
                path: path.into(),
                reason: match op {
                    "remove" | "rename" => "the root cannot be removed or moved",
                    _ => "the root already exists",
                },
            });
        };
        let parent = self.walk(parents)?;
        match self.node(parent)?.kind {
            Kind::Dir { .. } => Ok((parent, name)),
            Kind::File(_) => Err(FsError::NotADirectory { path: path.into() }),
            Kind::Symlink(_) => Err(FsError::InvalidPath {
                path: path.into(),
                reason: CROSSES_SYMLINK,
            }),
        }
    }

    fn child(&mut self, parent: Ino, name: &OsStr) -> FsResult<Option<Ino>> {
        Ok(match &self.node(parent)?.kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        })
    }

    fn file_data(&mut self, path: &Path, ino: Ino) -> FsResult<&Vec<u8>> {
        match &self.node(ino)?.kind {
            Kind::File(data) => Ok(data),
            Kind::Dir { .. } => Err(FsError::IsADirectory { path: path.into() }),
            Kind::Symlink(_) => Err(FsError::InvalidPath {
                path: path.into(),
                reason: CROSSES_SYMLINK,
            }),
        }
    }

    /// Adds `name -> ino` to the directory `parent`.
    fn link(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        let now = self.now;
        let child = self.node_mut(ino)?;
        let is_dir = child.is_dir();
        child.changed = now;
        match &mut child.kind {
            Kind::Dir { parent: p, .. } => *p = parent,
            _ => child.nlink += 1,
        }
        let dir = self.node_mut(parent)?;
        if let Kind::Dir {
            entries, subdirs, ..
        } = &mut dir.kind
        {
            entries.insert(name.to_owned(), ino);
            if is_dir {
                *subdirs += 1;
            }
        }
        dir.modified = now;
        dir.changed = now;
        Ok(())
    }

    /// Removes the entry `name` from `parent`, freeing what it named when
    /// nothing else names it (a directory's subtree must be empty already).
    fn unlink(&mut self, parent: Ino, name: &OsStr, free: bool) -> FsResult<Option<Ino>> {
        let now = self.now;
        let dir = self.node_mut(parent)?;
        let removed = match &mut dir.kind {
            Kind::Dir { entries, .. } => entries.remove(name),
            _ => None,
        };
        dir.modified = now;
        dir.changed = now;
        let Some(ino) = removed else { return Ok(None) };
        let child = self.node_mut(ino)?;
        child.changed = now;
        let is_dir = child.is_dir();
        if !is_dir {
            child.nlink = child.nlink.saturating_sub(1);
        }
        let orphan = is_dir || child.nlink == 0;
        if is_dir && let Kind::Dir { subdirs, .. } = &mut self.node_mut(parent)?.kind {
            *subdirs = subdirs.saturating_sub(1);
        }
        if orphan && free {
            self.free(ino);
        }
        Ok(Some(ino))
    }

    fn new_node(&self, kind: Kind, mode: u32) -> Node {
        Node::new(kind, mode, self.vault.uid, self.vault.gid, self.now)
    }

    fn file_for_write(&mut self, path: &Path) -> FsResult<Ino> {
        let (parent, name) = self.slot(path, "write")?;
        match self.child(parent, name)? {
            Some(ino) => {
                self.file_data(path, ino)?;
                Ok(ino)
            }
            None => {
                let ino = self.alloc(self.new_node(Kind::File(Vec::new()), 0o644));
                self.link(parent, name, ino)?;
                Ok(ino)
            }
        }
    }

    fn set_content(&mut self, ino: Ino, data: Vec<u8>) -> FsResult<()> {
        let now = self.now;
        let node = self.node_mut(ino)?;
        node.kind = Kind::File(data);
        node.modified = now;
        node.changed = now;
        Ok(())
    }

    fn edit_content(&mut self, ino: Ino, edit: impl FnOnce(&mut Vec<u8>)) -> FsResult<()> {
        let now = self.now;
        let node = self.node_mut(ino)?;
        if let Kind::File(data) = &mut node.kind {
            edit(data);
        }
        node.modified = now;
        node.changed = now;
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies beneath it.
    fn is_within(&mut self, mut ino: Ino, ancestor: Ino) -> FsResult<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
                return Ok(false);
            }
            ino = match self.node(ino)?.kind {
                Kind::Dir { parent, .. } => parent,
                _ => return Ok(false),
            };
        }
    }
}

impl PathWalker for Tx<'_> {
    type Node = Ino;
    fn root(&mut self) -> FsResult<Ino> {
        Ok(ROOT)
    }
    fn child(&mut self, dir: &Ino, name: &OsStr) -> FsResult<Option<Step<Ino>>> {
        let Some(ino) = Tx::child(self, *dir, name)? else {
            return Ok(None);
        };
        Ok(Some(match &self.node(ino)?.kind {
            Kind::Dir { .. } => Step::Dir(ino),
            Kind::File(_) => Step::Other(ino),
            Kind::Symlink(target) => Step::Symlink(target.clone()),
        }))
    }
}

impl EncryptedMemoryBackend {
    /// An empty filesystem (just the root) encrypted under `key`. A key for
    /// the nodes is derived from it, so the same key can serve elsewhere.
    pub fn new(key: impl Into<Key>) -> Self {
        let key: Key = key.into();
        let (uid, gid) = owner();
        let backend = Self {
            vault: Arc::new(Mutex::new(Vault {
                nodes: FxHashMap::default(),
                next_ino: ROOT + 1,
                uid,
                gid,
            })),
            key: Arc::new(key.derive("anyfs encrypted memory v1")),
        };
        let root = Node::new(
            Kind::Dir {
                entries: BTreeMap::new(),
                subdirs: 0,
                parent: ROOT,
            },
            0o755,
            uid,
            gid,
            SystemTime::now(),
        );
        let mut vault = backend.vault.lock();
        let mut tx = Tx {
            vault: &mut vault,
            aes: Aes::new(&backend.key),
            path: Path::new("/"),
            cache: FxHashMap::default(),
            dirty: FxHashSet::default(),
            now: SystemTime::now(),
        };
        tx.cache.insert(ROOT, root);
        tx.dirty.insert(ROOT);
        // Sealing only fails if the system has no randomness; then every
        // later write fails the same way, loudly.
        let _ = tx.commit();
        drop(vault);
        backend
    }

    /// Runs `f` in one transaction; `commit` says whether it changed anything.
    fn run<T>(
        &self,
        path: &Path,
        commit: bool,
        f: impl FnOnce(&mut Tx<'_>) -> FsResult<T>,
    ) -> FsResult<T> {
        let mut vault = self.vault.lock();
        let mut tx = Tx {
            vault: &mut vault,
            aes: Aes::new(&self.key),
            path,
            cache: FxHashMap::default(),
            dirty: FxHashSet::default(),
            now: SystemTime::now(),
        };
        let out = f(&mut tx)?;
        if commit {
            tx.commit()?;
        }
        Ok(out)
    }

    /// Writes the encrypted nodes to a host file, as they are in memory (no
    /// plaintext on the way), atomically, with an HMAC-SHA256 over the
    /// whole file under a key derived from this backend's key.
    pub fn save_to_file(&self, file: impl AsRef<Path>) -> FsResult<()> {
        let bytes = {
            let vault = self.vault.lock();
            let mut out = Encoder::default();
            out.buf.extend_from_slice(FILE_MAGIC);
            out.buf.extend_from_slice(&[FILE_VERSION, 0, 0, 0]);
            out.u64(vault.next_ino);
            out.u32(vault.uid);
            out.u32(vault.gid);
            out.u64(vault.nodes.len() as u64);
            let mut inos: Vec<&Ino> = vault.nodes.keys().collect();
            inos.sort();
            for ino in inos {
                out.u64(*ino);
                out.bytes(&vault.nodes[ino].0);
            }
            let tag = ring::hmac::sign(&self.file_mac_key(), &out.buf);
            out.buf.extend_from_slice(tag.as_ref());
            std::mem::take(&mut out.buf)
        };
        write_atomically(file.as_ref(), &bytes, "save_to_file")
    }

    /// Reads a file written by [`save_to_file`](Self::save_to_file). A wrong
    /// key, or a file changed in any way, is [`FsError::InvalidPassword`].
    pub fn load_from_file(file: impl AsRef<Path>, key: impl Into<Key>) -> FsResult<Self> {
        let bytes =
            std::fs::read(file.as_ref()).map_err(|e| FsError::from_io("/", "load_from_file", e))?;
        let empty = Self::new(key);
        if bytes.len() < 8 + 32 || &bytes[..4] != FILE_MAGIC || bytes[4] != FILE_VERSION {
            return Err(FsError::Backend {
                path: "/".into(),
                op: "load_from_file",
                message: "not an AnyFS encrypted memory file".into(),
            });
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        ring::hmac::verify(&empty.file_mac_key(), body, tag)
            .map_err(|_| FsError::InvalidPassword { path: "/".into() })?;
        let bad = || crypto::integrity(Path::new("/"));
        let mut d = Decoder::new(&body[8..]);
        let next_ino = d.u64().ok_or_else(bad)?;
        let uid = d.u32().ok_or_else(bad)?;
        let gid = d.u32().ok_or_else(bad)?;
        let mut nodes = FxHashMap::default();
        for _ in 0..d.count(16).ok_or_else(bad)? {
            let ino = d.u64().ok_or_else(bad)?;
            let sealed = d.bytes().ok_or_else(bad)?;
            nodes.insert(ino, SealedNode(sealed.to_vec()));
        }
        if !d.is_empty() || !nodes.contains_key(&ROOT) {
            return Err(bad());
        }
        {
            let mut vault = empty.vault.lock();
            *vault = Vault {
                nodes,
                next_ino,
                uid,
                gid,
            };
        }
        // The root must open with this key.
        empty.run(Path::new("/"), false, |tx| tx.node(ROOT).map(drop))?;
        Ok(empty)
    }

    /// Every byte the backend holds for its nodes, as stored: for tests that
    /// check that no plaintext is kept.
    #[doc(hidden)]
    pub fn stored_bytes(&self) -> Vec<u8> {
        let vault = self.vault.lock();
        vault
            .nodes
            .values()
            .flat_map(|n| n.0.iter().copied())
            .collect()
    }

    /// Swaps the stored bytes of two nodes: for tests that check that each
    /// node is bound to its number.
    #[doc(hidden)]
    pub fn swap_stored_nodes(&self, a: u64, b: u64) {
        let mut vault = self.vault.lock();
        if let (Some(x), Some(y)) = (vault.nodes.remove(&a), vault.nodes.remove(&b)) {
            vault.nodes.insert(a, y);
            vault.nodes.insert(b, x);
        }
    }

    fn file_mac_key(&self) -> ring::hmac::Key {
        let key = self.key.derive("anyfs encrypted memory file v1");
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose())
    }
}

fn owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

impl FsRead for EncryptedMemoryBackend {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.run(path, false, |tx| {
            let ino = tx.lookup(path)?;
            tx.file_data(path, ino).cloned()
        })
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.run(path, false, |tx| {
            let ino = tx.lookup(path)?;
            let data = tx.file_data(path, ino)?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start.saturating_add(len).min(data.len());
            Ok(data[start..end].to_vec())
        })
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.run(path, false, |tx| {
            let ino = tx.lookup(path)?;
            Ok(tx.node(ino)?.metadata(ino))
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let data = Zeroizing::new(self.read(path)?);
        Ok(Box::new(Cursor::new(data)))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        path::validate(path)?;
        self.run(path, false, |tx| {
            path::resolve_visiting(path, follow_last, tx, visit)
        })
    }
}

impl FsWrite for EncryptedMemoryBackend {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.file_for_write(path)?;
            tx.set_content(ino, data.to_vec())
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.file_for_write(path)?;
            tx.edit_content(ino, |buf| buf.extend_from_slice(data))
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.lookup(path)?;
            let len = tx.file_data(path, ino)?.len();
            let spans = spans_of(path, ranges, len)?;
            if spans.is_empty() {
                return Ok(());
            }
            tx.edit_content(ino, |buf| {
                for (start, end, data) in spans {
                    splice_into(buf, start, end, data);
                }
            })
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        self.run(path, true, |tx| {
            let (parent, name) = tx.slot(path, "remove")?;
            let ino = tx
                .child(parent, name)?
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            if tx.node(ino)?.is_dir() {
                return Err(FsError::IsADirectory { path: path.into() });
            }
            tx.unlink(parent, name, true).map(drop)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.run(from, true, |tx| {
            let (src_parent, src_name) = tx.slot(from, "rename")?;
            let ino = tx
                .child(src_parent, src_name)?
                .ok_or_else(|| FsError::NotFound { path: from.into() })?;
            let (dst_parent, dst_name) = tx.slot(to, "rename")?;
            let src_is_dir = tx.node(ino)?.is_dir();
            if src_is_dir && tx.is_within(dst_parent, ino)? {
                return Err(FsError::InvalidPath {
                    path: to.into(),
                    reason: "a directory cannot move into itself",
                });
            }
            if let Some(existing) = tx.child(dst_parent, dst_name)? {
                if existing == ino {
                    return Ok(());
                }
                match (&tx.node(existing)?.kind, src_is_dir) {
                    (Kind::Dir { entries, .. }, true) => {
                        if !entries.is_empty() {
                            return Err(FsError::DirectoryNotEmpty { path: to.into() });
                        }
                    }
                    (Kind::Dir { .. }, false) => {
                        return Err(FsError::IsADirectory { path: to.into() });
                    }
                    (_, true) => return Err(FsError::NotADirectory { path: to.into() }),
                    (_, false) => {}
                }
                tx.unlink(dst_parent, dst_name, true)?;
            }
            tx.unlink(src_parent, src_name, false)?;
            tx.link(dst_parent, dst_name, ino)
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.run(from, true, |tx| {
            let src = tx.lookup(from)?;
            let data = Zeroizing::new(tx.file_data(from, src)?.clone());
            let mode = tx.node(src)?.mode;
            let dst = tx.file_for_write(to)?;
            if dst != src {
                tx.set_content(dst, data.to_vec())?;
                tx.node_mut(dst)?.mode = mode;
            }
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let size = usize::try_from(size).map_err(|_| FsError::FileSizeExceeded {
            path: path.into(),
            size,
            limit: usize::MAX as u64,
        })?;
        self.run(path, true, |tx| {
            let ino = tx.lookup(path)?;
            room_for(path, tx.file_data(path, ino)?.len(), size)?;
            tx.edit_content(ino, |buf| buf.resize(size, 0))
        })
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        Ok(Box::new(super::WholeFileWriter::open(self.clone(), path)?))
    }
}

impl FsDir for EncryptedMemoryBackend {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.run(path, false, |tx| {
            let ino = tx.lookup(path)?;
            let children: Vec<(OsString, Ino)> = match &tx.node(ino)?.kind {
                Kind::Dir { entries, .. } => entries.iter().map(|(n, &i)| (n.clone(), i)).collect(),
                _ => return Err(FsError::NotADirectory { path: path.into() }),
            };
            children
                .into_iter()
                .map(|(name, child)| {
                    Ok(DirEntry {
                        path: path::join(path, &name),
                        name,
                        file_type: tx.node(child)?.file_type(),
                        inode: child,
                    })
                })
                .collect::<FsResult<Vec<_>>>()
        })?;
        Ok(ReadDir::from_entries(entries))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.run(path, true, |tx| {
            let (parent, name) = tx.slot(path, "create")?;
            if tx.child(parent, name)?.is_some() {
                return Err(FsError::AlreadyExists { path: path.into() });
            }
            let dir = tx.new_node(
                Kind::Dir {
                    entries: BTreeMap::new(),
                    subdirs: 0,
                    parent,
                },
                0o755,
            );
            let ino = tx.alloc(dir);
            tx.link(parent, name, ino)
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = path::resolved_components(path)?;
        self.run(path, true, |tx| {
            let mut dir = ROOT;
            for (i, name) in names.iter().enumerate() {
                dir = match tx.child(dir, name)? {
                    Some(ino) => match tx.node(ino)?.kind {
                        Kind::Dir { .. } => ino,
                        Kind::Symlink(_) => {
                            return Err(FsError::InvalidPath {
                                path: path.into(),
                                reason: CROSSES_SYMLINK,
                            });
                        }
                        Kind::File(_) if i + 1 == names.len() => {
                            return Err(FsError::AlreadyExists { path: path.into() });
                        }
                        Kind::File(_) => return Err(FsError::NotADirectory { path: path.into() }),
                    },
                    None => {
                        let node = tx.new_node(
                            Kind::Dir {
                                entries: BTreeMap::new(),
                                subdirs: 0,
                                parent: dir,
                            },
                            0o755,
                        );
                        let ino = tx.alloc(node);
                        tx.link(dir, name, ino)?;
                        ino
                    }
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        self.run(path, true, |tx| {
            let (parent, name) = tx.slot(path, "remove")?;
            let ino = tx
                .child(parent, name)?
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            match &tx.node(ino)?.kind {
                Kind::Dir { entries, .. } if entries.is_empty() => {
                    tx.unlink(parent, name, true).map(drop)
                }
                Kind::Dir { .. } => Err(FsError::DirectoryNotEmpty { path: path.into() }),
                _ => Err(FsError::NotADirectory { path: path.into() }),
            }
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        self.run(path, true, |tx| {
            let (parent, name) = tx.slot(path, "remove")?;
            let ino = tx
                .child(parent, name)?
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            match tx.node(ino)?.kind {
                Kind::File(_) => return Err(FsError::NotADirectory { path: path.into() }),
                Kind::Symlink(_) => return tx.unlink(parent, name, true).map(drop),
                Kind::Dir { .. } => {}
            }
            // Empty the tree depth first, then unlink the directory itself.
            let mut stack = vec![ino];
            let mut order = Vec::new();
            while let Some(dir) = stack.pop() {
                order.push(dir);
                let children: Vec<Ino> = match &tx.node(dir)?.kind {
                    Kind::Dir { entries, .. } => entries.values().copied().collect(),
                    _ => Vec::new(),
                };
                for child in children {
                    if tx.node(child)?.is_dir() {
                        stack.push(child);
                    }
                }
            }
            for dir in order.into_iter().rev() {
                let names: Vec<OsString> = match &tx.node(dir)?.kind {
                    Kind::Dir { entries, .. } => entries.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                for name in names {
                    tx.unlink(dir, &name, true)?;
                }
            }
            tx.unlink(parent, name, true).map(drop)
        })
    }
}

impl FsLink for EncryptedMemoryBackend {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        path::validate(target)?;
        self.run(link, true, |tx| {
            let (parent, name) = tx.slot(link, "create")?;
            if tx.child(parent, name)?.is_some() {
                return Err(FsError::AlreadyExists { path: link.into() });
            }
            let node = tx.new_node(Kind::Symlink(target.to_path_buf()), 0o777);
            let ino = tx.alloc(node);
            tx.link(parent, name, ino)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        self.run(original, true, |tx| {
            let (src_parent, src_name) = tx.slot(original, "link")?;
            let ino = tx
                .child(src_parent, src_name)?
                .ok_or_else(|| FsError::NotFound {
                    path: original.into(),
                })?;
            if tx.node(ino)?.is_dir() {
                return Err(FsError::PermissionDenied {
                    path: original.into(),
                    op: "hard_link a directory",
                });
            }
            let (parent, name) = tx.slot(link, "create")?;
            if tx.child(parent, name)?.is_some() {
                return Err(FsError::AlreadyExists { path: link.into() });
            }
            tx.link(parent, name, ino)
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.run(path, false, |tx| {
            let ino = tx.lookup(path)?;
            match &tx.node(ino)?.kind {
                Kind::Symlink(target) => Ok(target.clone()),
                _ => Err(FsError::InvalidPath {
                    path: path.into(),
                    reason: "not a symbolic link",
                }),
            }
        })
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl FsPermissions for EncryptedMemoryBackend {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.lookup(path)?;
            let now = tx.now;
            let node = tx.node_mut(ino)?;
            node.mode = perm.mode();
            node.changed = now;
            Ok(())
        })
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.lookup(path)?;
            let now = tx.now;
            let node = tx.node_mut(ino)?;
            if let Some(t) = accessed {
                node.accessed = t;
            }
            if let Some(t) = modified {
                node.modified = t;
            }
            node.changed = now;
            Ok(())
        })
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.run(path, true, |tx| {
            let ino = tx.lookup(path)?;
            let now = tx.now;
            let node = tx.node_mut(ino)?;
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            node.changed = now;
            Ok(())
        })
    }
}

impl FsSync for EncryptedMemoryBackend {
    /// Nothing to do: memory is as durable as it gets; see
    /// [`save_to_file`](EncryptedMemoryBackend::save_to_file).
    fn sync(&self) -> FsResult<()> {
        Ok(())
    }
    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.metadata(path).map(drop)
    }
}

impl FsStats for EncryptedMemoryBackend {
    fn statfs(&self) -> FsResult<StatFs> {
        let available = memory_available().unwrap_or(1 << 40);
        let vault = self.vault.lock();
        let used: u64 = vault.nodes.values().map(|n| n.0.len() as u64).sum();
        // Free is what the host can still give, as for `MemoryBackend`.
        Ok(StatFs {
            total_bytes: used + available,
            used_bytes: used,
            available_bytes: available,
            total_inodes: u64::MAX,
            used_inodes: vault.nodes.len() as u64,
            available_inodes: u64::MAX - vault.nodes.len() as u64,
            block_size: 4096,
            max_name_len: path::MAX_NAME_LEN as u32,
        })
    }
}
