//! [`MemoryBackend`]: a complete filesystem in process memory, its nodes in
//! plain memory behind a read-write lock. The tree's rules and most traits
//! are shared with the encrypted backend ([`Tree`]); handles, inode lookups,
//! snapshots and `statfs` are this backend's own.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
// Inode numbers are small sequential integers: a multiplicative hash is
// several times faster than SipHash for them, and nothing here is keyed by
// caller-chosen data.
use rustc_hash::FxHashMap;

use super::node::{FileBytes, Ino, Kind, Names, Node, NodeFlavor, ROOT, process_owner};
use super::store::{NodeRead, NodeStore};
use super::tree::{Tree, TreeLock};
use crate::content::{memory_available, room_for, splice_into};
use crate::error::{FsError, FsResult};
use crate::handles::HandleTable;
use crate::path;
use crate::traits::{FsHandles, FsInode, FsStats, FsSync};
use crate::types::{Handle, Metadata, OpenFlags, StatFs};

mod persist;

/// A filesystem held in memory, at the full [`FsFuse`](crate::FsFuse) level
/// plus [`FsHandles`]: directories, files, symlinks, hard links sharing one
/// inode, permissions, owners, times and inode lookups.
///
/// It is thread-safe; readers take a shared lock and never block each
/// other, and file contents are shared copy-on-write, so a read copies the
/// bytes outside the lock. Access times are not updated by reads (like a
/// `noatime` mount), which keeps reads free of writes.
///
/// **`Clone` gives a shared handle**: clones see and change the same
/// filesystem, like an `Arc`. Use [`MemoryBackend::snapshot`] for an
/// independent copy.
///
/// Below [`FileStorage`](crate::FileStorage) it follows no symlink: a path
/// through a link is [`FsErrorKind::InvalidPath`](crate::FsErrorKind::InvalidPath).
///
/// ```
/// use anyfs::{FileStorage, MemoryBackend};
///
/// let backend = MemoryBackend::new();
/// let fs = FileStorage::new(backend.clone());
/// fs.write("/notes.txt", "remember")?;
/// let copy = backend.snapshot();
/// fs.remove_file("/notes.txt")?;
/// assert!(!fs.exists("/notes.txt")?);
/// assert!(FileStorage::new(copy).exists("/notes.txt")?);
/// # Ok::<(), anyfs::FsError>(())
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    tree: Tree<RwLock<State>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.tree.lock().read();
        f.debug_struct("MemoryBackend")
            .field("nodes", &state.nodes.len())
            .field("bytes", &state.used_bytes)
            .finish()
    }
}

/// The plain store's nodes: contents shared copy-on-write, every name of a
/// node recorded (for [`FsInode::inode_to_path`]).
#[derive(Clone)]
enum Plain {}

impl NodeFlavor for Plain {
    type Bytes = Vec<u8>;
    type Names = Vec<(Ino, OsString)>;
    const WIPE_NAMES: bool = false;
}

/// Every directory entry naming a node: (parent, name). A directory has
/// exactly one; a file one per hard link; none once unlinked but still open.
impl Names for Vec<(Ino, OsString)> {
    fn add(&mut self, parent: Ino, name: &OsStr) {
        self.push((parent, name.to_owned()));
    }
    fn remove(&mut self, parent: Ino, name: &OsStr) {
        if let Some(i) = self
            .iter()
            .position(|(p, n)| *p == parent && n.as_os_str() == name)
        {
            self.swap_remove(i);
        }
    }
    fn count(&self) -> u64 {
        self.len() as u64
    }
    fn parent(&self) -> Option<Ino> {
        self.first().map(|(parent, _)| *parent)
    }
}

#[derive(Clone)]
struct State {
    nodes: FxHashMap<Ino, Node<Plain>>,
    next_ino: Ino,
    used_bytes: u64,
    handles: HandleTable<OpenFile>,
    uid: u32,
    gid: u32,
}

#[derive(Clone)]
struct OpenFile {
    ino: Ino,
    path: PathBuf,
    flags: OpenFlags,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty filesystem: just the root directory, owned by the current user.
    pub fn new() -> Self {
        let owner = process_owner();
        let root = Node::new(Kind::empty_dir(), 0o755, owner, SystemTime::now());
        Self::from_state(State {
            nodes: std::iter::once((ROOT, root)).collect(),
            next_ino: ROOT + 1,
            used_bytes: 0,
            handles: HandleTable::new(),
            uid: owner.0,
            gid: owner.1,
        })
    }

    fn from_state(state: State) -> Self {
        Self {
            tree: Tree::new(RwLock::new(state)),
        }
    }

    /// An independent copy of the whole filesystem as it is now (open
    /// handles are not copied). File contents are shared until either side
    /// changes them.
    pub fn snapshot(&self) -> Self {
        let mut state = self.tree.lock().read().clone();
        state.handles.clear();
        state
            .nodes
            .retain(|_, n| !n.names.is_empty() || n.kind.is_dir());
        for node in state.nodes.values_mut() {
            node.open = 0;
        }
        state.used_bytes = state.nodes.values().map(|n| n.kind.size()).sum();
        Self::from_state(state)
    }
}

impl State {
    fn get(&self, ino: Ino) -> FsResult<&Node<Plain>> {
        self.nodes
            .get(&ino)
            .ok_or_else(|| FsError::inode_not_found(ino))
    }

    fn path_of(&self, ino: Ino) -> FsResult<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.get(cur).map_err(|_| FsError::inode_not_found(ino))?;
            let (parent, name) = node
                .names
                .first()
                .ok_or_else(|| FsError::inode_not_found(ino))?;
            names.push(name.as_os_str());
            cur = *parent;
        }
        let mut out = PathBuf::from("/");
        for name in names.iter().rev() {
            out.push(name);
        }
        Ok(out)
    }

    fn open_handle(&mut self, path: &Path, flags: OpenFlags, now: SystemTime) -> FsResult<Handle> {
        let slot = self.slot(path, "open")?;
        let ino = match self.child_at(&slot)? {
            Some(_) if flags.create_new => {
                return Err(FsError::already_exists(path));
            }
            Some(ino) => {
                self.file(path, ino)?;
                if flags.truncate {
                    self.set_content(path, ino, Arc::default(), now)?;
                }
                ino
            }
            None if flags.create || flags.create_new => self.file_for_write(path, now)?,
            None => return Err(FsError::not_found(path)),
        };
        self.node_mut(ino)?.open += 1;
        Ok(self.handles.open(OpenFile {
            ino,
            path: path.to_path_buf(),
            flags,
        }))
    }

    fn handle(&self, handle: Handle) -> FsResult<&OpenFile> {
        self.handles.lookup(handle)
    }
}

impl NodeRead for State {
    type Flavor = Plain;
    fn node(&mut self, ino: Ino) -> FsResult<&Node<Plain>> {
        self.get(ino)
    }
}

/// Reads go through a shared reference, under the shared lock.
impl NodeRead for &State {
    type Flavor = Plain;
    fn node(&mut self, ino: Ino) -> FsResult<&Node<Plain>> {
        self.get(ino)
    }
}

impl NodeStore for State {
    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node<Plain>> {
        self.nodes
            .get_mut(&ino)
            .ok_or_else(|| FsError::inode_not_found(ino))
    }

    fn alloc(&mut self, node: Node<Plain>) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn free(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.remove(&ino) {
            self.used_bytes -= node.kind.size();
        }
    }

    fn owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    fn content_resized(&mut self, from: u64, to: u64) {
        self.used_bytes = self.used_bytes - from + to;
    }
}

/// Reads share the lock; a change holds it alone. The time of a change is
/// taken before the lock is.
impl TreeLock for RwLock<State> {
    type Flavor = Plain;
    type Reading<'a> = &'a State;
    type Writing<'a> = State;

    fn reading<T>(
        &self,
        _path: &Path,
        op: impl FnOnce(&mut Self::Reading<'_>) -> FsResult<T>,
    ) -> FsResult<T> {
        op(&mut &*self.read())
    }

    fn writing<T>(
        &self,
        _path: &Path,
        op: impl FnOnce(&mut Self::Writing<'_>, SystemTime) -> FsResult<T>,
    ) -> FsResult<T> {
        let now = SystemTime::now();
        op(&mut self.write(), now)
    }
}

impl MemoryBackend {
    /// Runs `op` on the nodes under the shared lock.
    fn read_state<T>(&self, op: impl FnOnce(&mut &State) -> FsResult<T>) -> FsResult<T> {
        self.tree.lock().reading(Path::new("/"), op)
    }

    /// Runs `op` on the nodes under the exclusive lock.
    fn write_state<T>(
        &self,
        op: impl FnOnce(&mut State, SystemTime) -> FsResult<T>,
    ) -> FsResult<T> {
        self.tree.lock().writing(Path::new("/"), op)
    }
}

// Reading, writing, directories, links and permissions are the tree's.
forward_to_field!(MemoryBackend, tree; FsRead, FsWrite, FsDir, FsLink, FsPermissions);

impl FsSync for MemoryBackend {
    fn sync(&self) -> FsResult<()> {
        Ok(())
    }
    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.read_state(|s| s.lookup(path).map(drop))
    }
}

impl FsStats for MemoryBackend {
    fn statfs(&self) -> FsResult<StatFs> {
        let available = memory_available();
        let s = self.tree.lock().read();
        let nodes = s.nodes.len() as u64;
        // Memory has no fixed size: what is free is what the host can still
        // give (a mount refuses writes past it with ENOSPC rather than
        // running the process out of memory).
        let headroom = 1u64 << 40;
        let available = available.unwrap_or(headroom);
        Ok(StatFs {
            total_bytes: s.used_bytes + available,
            used_bytes: s.used_bytes,
            available_bytes: available,
            total_inodes: nodes + headroom,
            used_inodes: nodes,
            available_inodes: headroom,
            block_size: 4096,
            max_name_len: path::MAX_NAME_LEN as u32,
        })
    }
}

impl FsInode for MemoryBackend {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        self.read_state(|s| s.lookup(path))
    }

    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        self.read_state(|s| s.path_of(inode))
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        path::validate_name(name)?;
        let s = self.tree.lock().read();
        let dir = s
            .nodes
            .get(&parent)
            .ok_or_else(|| FsError::inode_not_found(parent))?;
        let Kind::Dir { entries, .. } = &dir.kind else {
            return Err(FsError::not_a_directory(s.path_of(parent)?));
        };
        entries.get(name).copied().ok_or_else(|| {
            FsError::not_found(
                s.path_of(parent)
                    .map(|p| path::join(&p, name))
                    .unwrap_or_else(|_| PathBuf::from(name)),
            )
        })
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        self.read_state(|s| s.get(inode).map(|n| n.metadata(inode)))
    }
}

impl FsHandles for MemoryBackend {
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle> {
        self.write_state(|s, now| s.open_handle(path, flags, now))
    }

    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let data = self.read_state(|s| {
            let open = s.handle(handle)?;
            if !open.flags.read {
                return Err(FsError::permission_denied(
                    open.path.clone(),
                    "read from a handle not opened for reading",
                ));
            }
            s.file(&open.path, open.ino).cloned()
        })?;
        let data = data.vec();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = (data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize> {
        self.write_state(|s, now| {
            let open = s.handle(handle)?.clone();
            if !(open.flags.write || open.flags.append || open.flags.create_new) {
                return Err(FsError::permission_denied(
                    open.path,
                    "write to a handle not opened for writing",
                ));
            }
            let start = usize::try_from(offset).map_err(|_| {
                FsError::file_size_exceeded(open.path.clone(), offset, usize::MAX as u64)
            })?;
            let len = s.file(&open.path, open.ino)?.vec().len();
            let at = if open.flags.append { len } else { start };
            let end = at
                .checked_add(data.len())
                .ok_or(FsError::file_size_exceeded(
                    open.path.clone(),
                    offset.saturating_add(data.len() as u64),
                    usize::MAX as u64,
                ))?;
            room_for(&open.path, len, end)?;
            s.edit_content(&open.path, open.ino, now, |buf| {
                splice_into(buf, at, end, data)
            })?;
            Ok(data.len())
        })
    }

    fn close(&self, handle: Handle) -> FsResult<()> {
        self.write_state(|s, _| {
            let open = s.handles.close(handle)?;
            let node = s.node_mut(open.ino)?;
            node.open -= 1;
            if node.open == 0 && node.names.is_empty() && open.ino != ROOT {
                s.free(open.ino);
            }
            Ok(())
        })
    }
}
