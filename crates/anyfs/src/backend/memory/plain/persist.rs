//! Encrypted snapshots of a [`MemoryBackend`]: the whole tree, sealed with
//! AES-256-GCM, to bytes or to a file.
//!
//! ```text
//! "AFSM" | version 1 | key kind (0 raw key, 1 password) | 2 zero bytes
//!        | salt (16 bytes; zeros for a raw key) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! The first 24 bytes are authenticated with the content. The plaintext (the
//! encoded tree) exists only while it is being encoded or decoded, in a
//! buffer wiped afterwards.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use zeroize::Zeroizing;

use super::{MemoryBackend, Plain, State};
use crate::backend::codec::{Decoder, Encoder, write_atomically};
use crate::backend::memory::node::{Ino, Kind, Node, ROOT};
use crate::crypto::{self, Aes, Key, NONCE_LEN, Salt};
use crate::error::{FsError, FsResult};
use crate::handles::HandleTable;
use crate::path;

const MAGIC: &[u8; 4] = b"AFSM";
const VERSION: u8 = 1;
const RAW_KEY: u8 = 0;
const PASSWORD: u8 = 1;
const HEADER_LEN: usize = 24;

fn snapshot_key(key: &Key) -> Key {
    key.derive("anyfs memory snapshot v1")
}

fn malformed(reason: &str) -> FsError {
    FsError::backend(
        "/",
        "load snapshot",
        format!("not an AnyFS memory snapshot: {reason}"),
    )
}

impl MemoryBackend {
    /// The whole filesystem as one encrypted blob (AES-256-GCM under `key`),
    /// for [`deserialize_encrypted`](Self::deserialize_encrypted).
    ///
    /// ```
    /// use anyfs::{FileStorage, MemoryBackend};
    /// use anyfs::crypto::Key;
    ///
    /// let key = Key::random()?;
    /// let fs = FileStorage::new(MemoryBackend::new());
    /// fs.write("/state.json", "{}")?;
    /// let blob = fs.backend().serialize_encrypted(&key)?;
    ///
    /// let restored = FileStorage::new(MemoryBackend::deserialize_encrypted(&blob, &key)?);
    /// assert_eq!(restored.read_to_string("/state.json")?, "{}");
    /// # Ok::<(), anyfs::FsError>(())
    /// ```
    pub fn serialize_encrypted(&self, key: &[u8; 32]) -> FsResult<Vec<u8>> {
        self.seal_snapshot(RAW_KEY, [0; 16], &snapshot_key(&Key::from(key)))
    }

    /// The filesystem an encrypted blob holds. A wrong key, or a blob changed
    /// in any way, is [`FsErrorKind::InvalidPassword`](crate::FsErrorKind::InvalidPassword): never a garbled tree.
    pub fn deserialize_encrypted(data: &[u8], key: &[u8; 32]) -> FsResult<Self> {
        let header = parse_header(data, RAW_KEY)?;
        Self::open_snapshot(data, &snapshot_key(&Key::from(key)), header)
    }

    /// As [`serialize_encrypted`](Self::serialize_encrypted), with the key
    /// derived from `password` by Argon2id and a random salt stored in the
    /// blob.
    pub fn serialize_with_password(&self, password: &str) -> FsResult<Vec<u8>> {
        let salt = Salt::random()?;
        let key = snapshot_key(&Key::from_password(password, &salt)?);
        self.seal_snapshot(PASSWORD, *salt.as_bytes(), &key)
    }

    /// The filesystem a password-sealed blob holds; a wrong password is
    /// [`FsErrorKind::InvalidPassword`](crate::FsErrorKind::InvalidPassword).
    pub fn deserialize_with_password(data: &[u8], password: &str) -> FsResult<Self> {
        let header = parse_header(data, PASSWORD)?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&data[8..24]);
        let key = snapshot_key(&Key::from_password(password, &Salt::from_bytes(salt))?);
        Self::open_snapshot(data, &key, header)
    }

    /// Writes [`serialize_encrypted`](Self::serialize_encrypted) to a host
    /// file, atomically (a temporary file beside it, synced, then renamed
    /// over it): a crash leaves the old snapshot or the new one.
    pub fn save_encrypted(&self, file: impl AsRef<Path>, key: &[u8; 32]) -> FsResult<()> {
        write_atomically(
            file.as_ref(),
            &self.serialize_encrypted(key)?,
            "save snapshot",
        )
    }

    /// Reads a snapshot written by [`save_encrypted`](Self::save_encrypted).
    pub fn load_encrypted(file: impl AsRef<Path>, key: &[u8; 32]) -> FsResult<Self> {
        Self::deserialize_encrypted(&read_host(file.as_ref())?, key)
    }

    /// [`save_encrypted`](Self::save_encrypted) with a password.
    pub fn save_with_password(&self, file: impl AsRef<Path>, password: &str) -> FsResult<()> {
        write_atomically(
            file.as_ref(),
            &self.serialize_with_password(password)?,
            "save snapshot",
        )
    }

    /// [`load_encrypted`](Self::load_encrypted) with a password.
    pub fn load_with_password(file: impl AsRef<Path>, password: &str) -> FsResult<Self> {
        Self::deserialize_with_password(&read_host(file.as_ref())?, password)
    }

    fn seal_snapshot(&self, kind: u8, salt: [u8; 16], key: &Key) -> FsResult<Vec<u8>> {
        let snapshot = self.snapshot();
        let mut plain = Encoder::default();
        encode(&snapshot.tree.lock().read(), &mut plain);
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.buf.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, kind, 0, 0]);
        out.extend_from_slice(&salt);
        let mut nonce = [0u8; NONCE_LEN];
        crypto::fill_random(&mut nonce)?;
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(&plain.buf);
        let (head, body) = out.split_at_mut(start);
        let tag = Aes::new(key).seal_detached(nonce, &head[..HEADER_LEN], body);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open_snapshot(data: &[u8], key: &Key, header: &[u8]) -> FsResult<Self> {
        let nonce = &data[HEADER_LEN..HEADER_LEN + NONCE_LEN];
        let mut sealed = Zeroizing::new(data[HEADER_LEN + NONCE_LEN..].to_vec());
        let len = Aes::new(key)
            .open(nonce, header, &mut sealed)
            .ok_or(FsError::invalid_password("/"))?;
        let state = decode(&sealed[..len]).ok_or_else(|| crypto::integrity(Path::new("/")))?;
        Ok(Self::from_state(state))
    }
}

fn parse_header(data: &[u8], kind: u8) -> FsResult<&[u8]> {
    if data.len() < HEADER_LEN + NONCE_LEN + crypto::TAG_LEN || &data[..4] != MAGIC {
        return Err(malformed("no AFSM header"));
    }
    if data[4] != VERSION {
        return Err(malformed("unknown version"));
    }
    if data[5] != kind {
        return Err(malformed(if data[5] == PASSWORD {
            "it is sealed with a password, not a key"
        } else {
            "it is sealed with a key, not a password"
        }));
    }
    Ok(&data[..HEADER_LEN])
}

fn host_error(err: std::io::Error, op: &'static str) -> FsError {
    // The snapshot file is the caller's own; its path is theirs to report.
    FsError::from_io("/", op, err)
}

fn read_host(file: &Path) -> FsResult<Vec<u8>> {
    std::fs::read(file).map_err(|e| host_error(e, "load snapshot"))
}

const FILE: u8 = 0;
const DIR: u8 = 1;
const SYMLINK: u8 = 2;

fn encode(state: &State, out: &mut Encoder) {
    out.u64(state.next_ino);
    out.u32(state.uid);
    out.u32(state.gid);
    out.u64(state.nodes.len() as u64);
    let mut inos: Vec<&Ino> = state.nodes.keys().collect();
    inos.sort();
    for ino in inos {
        let node = &state.nodes[ino];
        out.u64(*ino);
        match &node.kind {
            Kind::File(_) => out.u8(FILE),
            Kind::Dir { .. } => out.u8(DIR),
            Kind::Symlink(_) => out.u8(SYMLINK),
        }
        out.u32(node.mode);
        out.u32(node.uid);
        out.u32(node.gid);
        for t in [node.accessed, node.modified, node.changed, node.created] {
            out.time(t);
        }
        match &node.kind {
            Kind::File(data) => out.bytes(data),
            Kind::Symlink(target) => out.bytes(target.as_os_str().as_bytes()),
            Kind::Dir { entries, .. } => {
                out.u64(entries.len() as u64);
                for (name, child) in entries {
                    out.bytes(name.as_bytes());
                    out.u64(*child);
                }
            }
        }
    }
}

/// The tree an encoding holds, checked to be a tree: every entry names a
/// node, every node but the root is named, a directory exactly once, and
/// everything is reachable from the root.
fn decode(data: &[u8]) -> Option<State> {
    let mut d = Decoder::new(data);
    let next_ino = d.u64()?;
    let uid = d.u32()?;
    let gid = d.u32()?;
    let count = d.count(8 + 1 + 12 + 48 + 8)?;
    let mut nodes: FxHashMap<Ino, Node<Plain>> = FxHashMap::default();
    nodes.reserve(count);
    for _ in 0..count {
        let ino = d.u64()?;
        let tag = d.u8()?;
        let (mode, uid, gid) = (d.u32()?, d.u32()?, d.u32()?);
        let times = [d.time()?, d.time()?, d.time()?, d.time()?];
        let kind = match tag {
            FILE => Kind::File(Arc::new(d.bytes()?.to_vec())),
            SYMLINK => {
                let target = PathBuf::from(OsString::from_vec(d.bytes()?.to_vec()));
                path::validate(&target).ok()?;
                Kind::Symlink(target)
            }
            DIR => {
                let n = d.count(8 + 8)?;
                let mut entries = BTreeMap::new();
                for _ in 0..n {
                    let name = OsString::from_vec(d.bytes()?.to_vec());
                    path::validate_name(&name).ok()?;
                    entries.insert(name, d.u64()?);
                }
                Kind::Dir {
                    entries,
                    subdirs: 0,
                }
            }
            _ => return None,
        };
        if ino == 0 || ino >= next_ino {
            return None;
        }
        let mut node = Node::new(kind, mode & 0o7777, (uid, gid), times[0]);
        (node.modified, node.changed, node.created) = (times[1], times[2], times[3]);
        if nodes.insert(ino, node).is_some() {
            return None;
        }
    }
    if !d.is_empty() || !nodes.get(&ROOT)?.kind.is_dir() {
        return None;
    }
    // Links and subdirectory counts, from the entries.
    let mut links: Vec<(Ino, OsString, Ino)> = Vec::new();
    for (&parent, node) in &nodes {
        if let Kind::Dir { entries, .. } = &node.kind {
            for (name, &child) in entries {
                links.push((parent, name.clone(), child));
            }
        }
    }
    for (parent, name, child) in links {
        let is_dir = nodes.get(&child)?.kind.is_dir();
        if child == ROOT || (is_dir && !nodes[&child].names.is_empty()) {
            return None;
        }
        nodes.get_mut(&child)?.names.push((parent, name));
        if is_dir && let Kind::Dir { subdirs, .. } = &mut nodes.get_mut(&parent)?.kind {
            *subdirs += 1;
        }
    }
    // Reachability from the root (this also rules out cycles).
    let mut seen = 1usize;
    let mut stack = vec![ROOT];
    while let Some(dir) = stack.pop() {
        if let Kind::Dir { entries, .. } = &nodes[&dir].kind {
            for &child in entries.values() {
                if nodes[&child].kind.is_dir() {
                    seen += 1;
                    stack.push(child);
                }
            }
        }
    }
    let dirs = nodes.values().filter(|n| n.kind.is_dir()).count();
    let unnamed = nodes
        .iter()
        .any(|(&ino, n)| ino != ROOT && n.names.is_empty());
    if seen != dirs || unnamed {
        return None;
    }
    let used_bytes = nodes.values().map(|n| n.kind.size()).sum();
    Some(State {
        nodes,
        next_ino,
        used_bytes,
        handles: HandleTable::new(),
        uid,
        gid,
    })
}
