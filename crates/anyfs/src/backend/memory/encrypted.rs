//! [`EncryptedMemoryBackend`]: a filesystem in memory that keeps every node
//! encrypted while it is not being used. Its store is a transaction ([`Tx`])
//! that decrypts each node when an operation first asks for it and seals
//! the changed ones again at the end; the tree's rules and traits are the
//! ones the plain backend uses ([`Tree`]).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::node::{Ino, Kind, Names, Node, NodeFlavor, ROOT, process_owner};
use super::store::{NodeRead, NodeStore};
use super::tree::{Tree, TreeLock};
use crate::backend::codec::{Decoder, Encoder, write_atomically};
use crate::content::memory_available;
use crate::crypto::{self, Aes, Key, NONCE_LEN};
use crate::error::{FsError, FsResult};
use crate::path;
use crate::traits::{FsRead, FsStats, FsSync};
use crate::types::StatFs;

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
/// the whole file, so a wrong key is [`FsErrorKind::InvalidPassword`](crate::FsErrorKind::InvalidPassword) and a
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
    tree: Tree<KeyedVault>,
}

impl std::fmt::Debug for EncryptedMemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedMemoryBackend")
            .field("nodes", &self.tree.lock().vault.lock().nodes.len())
            .finish_non_exhaustive()
    }
}

/// The sealed nodes and the key that opens them.
struct KeyedVault {
    vault: Mutex<Vault>,
    key: Key,
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

/// The encrypted store's nodes, decrypted for one operation: contents,
/// names and link targets are wiped when they are dropped.
enum Secret {}

impl NodeFlavor for Secret {
    type Bytes = Zeroizing<Vec<u8>>;
    type Names = LinkCount;
    const WIPE_NAMES: bool = true;
}

/// How many entries name a node, and, for a directory, the one that does.
/// (Sealed with the node; the names themselves are only in the directories.)
#[derive(Clone, Default)]
struct LinkCount {
    count: u64,
    /// The directory holding the entry: kept for directories only.
    parent: Option<Ino>,
}

impl Names for LinkCount {
    fn add(&mut self, parent: Ino, _name: &OsStr) {
        self.count += 1;
        self.parent = Some(parent);
    }
    fn remove(&mut self, _parent: Ino, _name: &OsStr) {
        self.count = self.count.saturating_sub(1);
    }
    fn count(&self) -> u64 {
        self.count
    }
    fn parent(&self) -> Option<Ino> {
        self.parent
    }
}

// ------------------------------------------------------ a node, sealed

fn node_aad(ino: Ino) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..12].copy_from_slice(b"anyfs-emb-v1");
    aad[12..].copy_from_slice(&ino.to_le_bytes());
    aad
}

fn encode(node: &Node<Secret>, out: &mut Encoder) {
    out.u32(node.mode);
    out.u32(node.uid);
    out.u32(node.gid);
    out.u64(node.names.count);
    for t in [node.accessed, node.modified, node.changed, node.created] {
        out.time(t);
    }
    match &node.kind {
        Kind::File(data) => {
            out.u8(0);
            out.bytes(data);
        }
        Kind::Dir { entries, subdirs } => {
            out.u8(1);
            out.u64(*subdirs);
            out.u64(node.names.parent.unwrap_or(ROOT));
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

fn decode(data: &[u8]) -> Option<Node<Secret>> {
    let mut d = Decoder::new(data);
    let (mode, uid, gid, count) = (d.u32()?, d.u32()?, d.u32()?, d.u64()?);
    let times = [d.time()?, d.time()?, d.time()?, d.time()?];
    let mut parent = None;
    let kind = match d.u8()? {
        0 => Kind::File(Arc::new(Zeroizing::new(d.bytes()?.to_vec()))),
        1 => {
            let subdirs = d.u64()?;
            parent = Some(d.u64()?);
            let mut entries = std::collections::BTreeMap::new();
            for _ in 0..d.count(16)? {
                let name = OsString::from_vec(d.bytes()?.to_vec());
                entries.insert(name, d.u64()?);
            }
            Kind::Dir { entries, subdirs }
        }
        2 => Kind::Symlink(PathBuf::from(OsString::from_vec(d.bytes()?.to_vec()))),
        _ => return None,
    };
    let mut node = Node::new(kind, mode, (uid, gid), times[0]);
    node.names = LinkCount { count, parent };
    (node.modified, node.changed, node.created) = (times[1], times[2], times[3]);
    d.is_empty().then_some(node)
}

// ------------------------------------------------- one operation's store

/// One operation's view of the vault: nodes decrypted on first use, the
/// changed ones sealed again by [`Tx::commit`], all wiped when it ends.
struct Tx<'v> {
    vault: &'v mut Vault,
    aes: Aes,
    path: &'v Path,
    cache: FxHashMap<Ino, Node<Secret>>,
    dirty: FxHashSet<Ino>,
}

impl<'v> Tx<'v> {
    fn new(vault: &'v mut Vault, key: &Key, path: &'v Path) -> Self {
        Self {
            vault,
            aes: Aes::new(key),
            path,
            cache: FxHashMap::default(),
            dirty: FxHashSet::default(),
        }
    }

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
        let node = decode(&plain[..len]).ok_or_else(|| crypto::integrity(self.path))?;
        self.cache.insert(ino, node);
        Ok(())
    }

    /// Seals every changed node back into the vault.
    fn commit(mut self) -> FsResult<()> {
        let mut base = [0u8; NONCE_LEN];
        crypto::fill_random(&mut base)?;
        for (i, ino) in std::mem::take(&mut self.dirty).into_iter().enumerate() {
            let Some(node) = self.cache.get(&ino) else {
                continue;
            };
            let mut nonce = base;
            for (n, b) in nonce[4..].iter_mut().zip((i as u64).to_le_bytes()) {
                *n ^= b;
            }
            let mut plain = Encoder::default();
            encode(node, &mut plain);
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
}

impl NodeRead for Tx<'_> {
    type Flavor = Secret;
    fn node(&mut self, ino: Ino) -> FsResult<&Node<Secret>> {
        self.load(ino)?;
        self.cache
            .get(&ino)
            .ok_or_else(|| crypto::integrity(self.path))
    }
}

impl NodeStore for Tx<'_> {
    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node<Secret>> {
        self.load(ino)?;
        self.dirty.insert(ino);
        self.cache
            .get_mut(&ino)
            .ok_or_else(|| crypto::integrity(self.path))
    }

    fn alloc(&mut self, node: Node<Secret>) -> Ino {
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

    fn owner(&self) -> (u32, u32) {
        (self.vault.uid, self.vault.gid)
    }

    /// Nothing to count: `statfs` adds up the sealed nodes.
    fn content_resized(&mut self, _from: u64, _to: u64) {}
}

/// One operation at a time holds the vault; a change is sealed back only if
/// the operation succeeds.
impl TreeLock for KeyedVault {
    type Flavor = Secret;
    type Reading<'a> = Tx<'a>;
    type Writing<'a> = Tx<'a>;

    fn reading<T>(
        &self,
        path: &Path,
        op: impl FnOnce(&mut Self::Reading<'_>) -> FsResult<T>,
    ) -> FsResult<T> {
        op(&mut Tx::new(&mut self.vault.lock(), &self.key, path))
    }

    fn writing<T>(
        &self,
        path: &Path,
        op: impl FnOnce(&mut Self::Writing<'_>, SystemTime) -> FsResult<T>,
    ) -> FsResult<T> {
        let mut vault = self.vault.lock();
        let mut tx = Tx::new(&mut vault, &self.key, path);
        let out = op(&mut tx, SystemTime::now())?;
        tx.commit()?;
        Ok(out)
    }
}

impl EncryptedMemoryBackend {
    /// An empty filesystem (just the root) encrypted under `key`. A key for
    /// the nodes is derived from it, so the same key can serve elsewhere.
    pub fn new(key: impl Into<Key>) -> Self {
        let key: Key = key.into();
        let (uid, gid) = process_owner();
        let keyed = KeyedVault {
            vault: Mutex::new(Vault {
                nodes: FxHashMap::default(),
                next_ino: ROOT + 1,
                uid,
                gid,
            }),
            key: key.derive("anyfs encrypted memory v1"),
        };
        let mut root: Node<Secret> =
            Node::new(Kind::empty_dir(), 0o755, (uid, gid), SystemTime::now());
        // The root is its own parent.
        root.names.parent = Some(ROOT);
        {
            let mut vault = keyed.vault.lock();
            let mut tx = Tx::new(&mut vault, &keyed.key, Path::new("/"));
            tx.cache.insert(ROOT, root);
            tx.dirty.insert(ROOT);
            // Sealing only fails if the system has no randomness; then every
            // later write fails the same way, loudly.
            let _ = tx.commit();
        }
        Self {
            tree: Tree::new(keyed),
        }
    }

    /// Writes the encrypted nodes to a host file, as they are in memory (no
    /// plaintext on the way), atomically, with an HMAC-SHA256 over the
    /// whole file under a key derived from this backend's key.
    pub fn save_to_file(&self, file: impl AsRef<Path>) -> FsResult<()> {
        let bytes = {
            let vault = self.tree.lock().vault.lock();
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
    /// key, or a file changed in any way, is [`FsErrorKind::InvalidPassword`](crate::FsErrorKind::InvalidPassword).
    pub fn load_from_file(file: impl AsRef<Path>, key: impl Into<Key>) -> FsResult<Self> {
        let bytes =
            std::fs::read(file.as_ref()).map_err(|e| FsError::from_io("/", "load_from_file", e))?;
        let empty = Self::new(key);
        if bytes.len() < 8 + 32 || &bytes[..4] != FILE_MAGIC || bytes[4] != FILE_VERSION {
            return Err(FsError::backend(
                "/",
                "load_from_file",
                "not an AnyFS encrypted memory file",
            ));
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        ring::hmac::verify(&empty.file_mac_key(), body, tag)
            .map_err(|_| FsError::invalid_password("/"))?;
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
        *empty.tree.lock().vault.lock() = Vault {
            nodes,
            next_ino,
            uid,
            gid,
        };
        // The root must open with this key.
        empty
            .tree
            .lock()
            .reading(Path::new("/"), |tx| tx.node(ROOT).map(drop))?;
        Ok(empty)
    }

    /// Every byte the backend holds for its nodes, as stored: for tests that
    /// check that no plaintext is kept.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn stored_bytes(&self) -> Vec<u8> {
        let vault = self.tree.lock().vault.lock();
        vault
            .nodes
            .values()
            .flat_map(|n| n.0.iter().copied())
            .collect()
    }

    /// Swaps the stored bytes of two nodes: for tests that check that each
    /// node is bound to its number.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn swap_stored_nodes(&self, a: u64, b: u64) {
        let mut vault = self.tree.lock().vault.lock();
        if let (Some(x), Some(y)) = (vault.nodes.remove(&a), vault.nodes.remove(&b)) {
            vault.nodes.insert(a, y);
            vault.nodes.insert(b, x);
        }
    }

    fn file_mac_key(&self) -> ring::hmac::Key {
        let key = self
            .tree
            .lock()
            .key
            .derive("anyfs encrypted memory file v1");
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose())
    }
}

// Reading, writing, directories, links and permissions are the tree's.
forward_to_field!(EncryptedMemoryBackend, tree; FsRead, FsWrite, FsDir, FsLink, FsPermissions);

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
        let vault = self.tree.lock().vault.lock();
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
