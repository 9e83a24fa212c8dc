//! [`MemoryBackend`]: a complete filesystem in process memory.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
// Inode numbers are small sequential integers: a multiplicative hash is
// several times faster than SipHash for them, and nothing here is keyed by
// caller-chosen data.
use rustc_hash::FxHashMap;

use crate::content::{memory_available, room_for, spans_of, splice_into};
use crate::error::{FsError, FsResult};
use crate::layer::Layer;
use crate::path::{self, CROSSES_SYMLINK, PathWalker, Step};
use crate::traits::{
    FsDir, FsHandles, FsInode, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite,
    FsWriter,
};
use crate::types::{DirEntry, FileType, Handle, Metadata, OpenFlags, Permissions, ReadDir, StatFs};

mod persist;

type Ino = u64;
const ROOT: Ino = 1;

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
/// through a link is [`FsError::InvalidPath`].
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
    state: Arc<RwLock<State>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read();
        f.debug_struct("MemoryBackend")
            .field("nodes", &state.nodes.len())
            .field("bytes", &state.used_bytes)
            .finish()
    }
}

#[derive(Clone)]
struct State {
    nodes: FxHashMap<Ino, Node>,
    next_ino: Ino,
    used_bytes: u64,
    handles: FxHashMap<u64, OpenFile>,
    next_handle: u64,
    uid: u32,
    gid: u32,
}

#[derive(Clone)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Every directory entry naming this node: (parent, name). A directory
    /// has exactly one; a file one per hard link; none once unlinked but
    /// still open.
    links: Vec<(Ino, OsString)>,
    /// Open handles and streaming writers on this node.
    open: u32,
    accessed: SystemTime,
    modified: SystemTime,
    changed: SystemTime,
    created: SystemTime,
}

#[derive(Clone)]
enum Kind {
    File(Arc<Vec<u8>>),
    Dir {
        entries: BTreeMap<OsString, Ino>,
        subdirs: u64,
    },
    Symlink(PathBuf),
}

#[derive(Clone)]
struct OpenFile {
    ino: Ino,
    path: PathBuf,
    flags: OpenFlags,
}

fn default_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty filesystem: just the root directory, owned by the current user.
    pub fn new() -> Self {
        let (uid, gid) = default_owner();
        let now = SystemTime::now();
        let root = Node {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                subdirs: 0,
            },
            mode: 0o755,
            uid,
            gid,
            links: Vec::new(),
            open: 0,
            accessed: now,
            modified: now,
            changed: now,
            created: now,
        };
        Self {
            state: Arc::new(RwLock::new(State {
                nodes: std::iter::once((ROOT, root)).collect(),
                next_ino: ROOT + 1,
                used_bytes: 0,
                handles: FxHashMap::default(),
                next_handle: 1,
                uid,
                gid,
            })),
        }
    }

    /// An independent copy of the whole filesystem as it is now (open
    /// handles are not copied). File contents are shared until either side
    /// changes them.
    pub fn snapshot(&self) -> Self {
        let mut state = self.state.read().clone();
        state.handles.clear();
        state
            .nodes
            .retain(|_, n| !n.links.is_empty() || n.kind.is_dir());
        for node in state.nodes.values_mut() {
            node.open = 0;
        }
        state.used_bytes = state.nodes.values().map(|n| n.kind.size()).sum();
        Self {
            state: Arc::new(RwLock::new(state)),
        }
    }

    /// Wraps the backend in a layer.
    pub fn layer<L: Layer<Self>>(self, layer: L) -> L::Backend {
        layer.layer(self)
    }
}

impl Kind {
    fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir { .. })
    }
    fn file_type(&self) -> FileType {
        match self {
            Kind::File(_) => FileType::File,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
        }
    }
    /// Bytes of content this node holds.
    fn size(&self) -> u64 {
        match self {
            Kind::File(data) => data.len() as u64,
            _ => 0,
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
            links: Vec::new(),
            open: 0,
            accessed: now,
            modified: now,
            changed: now,
            created: now,
        }
    }

    fn metadata(&self, ino: Ino) -> Metadata {
        let (len, nlink) = match &self.kind {
            Kind::File(data) => (data.len() as u64, self.links.len() as u64),
            Kind::Dir { subdirs, .. } => (0, 2 + subdirs),
            Kind::Symlink(target) => (target.as_os_str().len() as u64, self.links.len() as u64),
        };
        Metadata {
            file_type: self.kind.file_type(),
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
}

/// Where a path's last name lives: its parent directory and the name.
struct Slot<'p> {
    parent: Ino,
    name: &'p OsStr,
}

impl State {
    fn node(&self, ino: Ino) -> &Node {
        self.nodes.get(&ino).expect("every linked inode has a node")
    }
    fn node_mut(&mut self, ino: Ino) -> &mut Node {
        self.nodes
            .get_mut(&ino)
            .expect("every linked inode has a node")
    }

    fn entries(&self, dir: Ino) -> Option<&BTreeMap<OsString, Ino>> {
        match &self.node(dir).kind {
            Kind::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The inode at a resolved path, following no link.
    fn lookup(&self, path: &Path) -> FsResult<Ino> {
        let names = path::resolved_components(path)?;
        self.walk(path, &names)
    }

    fn walk(&self, path: &Path, names: &[&OsStr]) -> FsResult<Ino> {
        let mut ino = ROOT;
        for name in names {
            let node = self.node(ino);
            match &node.kind {
                Kind::Dir { entries, .. } => match entries.get(*name) {
                    Some(&child) => ino = child,
                    None => return Err(FsError::NotFound { path: path.into() }),
                },
                Kind::File(_) => return Err(FsError::NotADirectory { path: path.into() }),
                Kind::Symlink(_) => {
                    return Err(FsError::InvalidPath {
                        path: path.into(),
                        reason: CROSSES_SYMLINK,
                    });
                }
            }
        }
        Ok(ino)
    }

    /// The parent directory of a resolved path (which must exist and be a
    /// directory) and the last name. The root has no slot.
    fn slot<'p>(&self, path: &'p Path, op: &'static str) -> FsResult<Slot<'p>> {
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
        let parent = self.walk(path, parents)?;
        match &self.node(parent).kind {
            Kind::Dir { .. } => Ok(Slot { parent, name }),
            Kind::File(_) => Err(FsError::NotADirectory { path: path.into() }),
            Kind::Symlink(_) => Err(FsError::InvalidPath {
                path: path.into(),
                reason: CROSSES_SYMLINK,
            }),
        }
    }

    fn child(&self, slot: &Slot<'_>) -> Option<Ino> {
        self.entries(slot.parent)
            .and_then(|e| e.get(slot.name))
            .copied()
    }

    fn file_data(&self, path: &Path, ino: Ino) -> FsResult<&Arc<Vec<u8>>> {
        match &self.node(ino).kind {
            Kind::File(data) => Ok(data),
            Kind::Dir { .. } => Err(FsError::IsADirectory { path: path.into() }),
            Kind::Symlink(_) => Err(FsError::InvalidPath {
                path: path.into(),
                reason: CROSSES_SYMLINK,
            }),
        }
    }

    fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    /// Adds the entry `name -> ino` to `parent`.
    fn link(&mut self, parent: Ino, name: &OsStr, ino: Ino, now: SystemTime) {
        let is_dir = self.node(ino).kind.is_dir();
        let child = self.node_mut(ino);
        child.links.push((parent, name.to_owned()));
        child.changed = now;
        let dir = self.node_mut(parent);
        if let Kind::Dir { entries, subdirs } = &mut dir.kind {
            entries.insert(name.to_owned(), ino);
            if is_dir {
                *subdirs += 1;
            }
        }
        dir.modified = now;
        dir.changed = now;
    }

    /// Removes the entry `name` from `parent`; frees the node when nothing
    /// names it and nothing has it open.
    fn unlink(&mut self, parent: Ino, name: &OsStr, now: SystemTime) {
        let dir = self.node_mut(parent);
        let mut removed = None;
        if let Kind::Dir { entries, .. } = &mut dir.kind {
            removed = entries.remove(name);
        }
        dir.modified = now;
        dir.changed = now;
        let Some(ino) = removed else { return };
        let node = self.node_mut(ino);
        if let Some(i) = node
            .links
            .iter()
            .position(|(p, n)| *p == parent && n.as_os_str() == name)
        {
            node.links.swap_remove(i);
        }
        node.changed = now;
        let is_dir = node.kind.is_dir();
        let orphan = node.links.is_empty() && node.open == 0;
        if is_dir && let Kind::Dir { subdirs, .. } = &mut self.node_mut(parent).kind {
            *subdirs -= 1;
        }
        if orphan {
            self.free(ino);
        }
    }

    fn free(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.remove(&ino) {
            self.used_bytes -= node.kind.size();
        }
    }

    /// Replaces a file's content, keeping the byte count right.
    fn set_content(&mut self, ino: Ino, data: Arc<Vec<u8>>, now: SystemTime) {
        let new_len = data.len() as u64;
        let node = self.node_mut(ino);
        let old_len = node.kind.size();
        node.kind = Kind::File(data);
        node.modified = now;
        node.changed = now;
        self.used_bytes = self.used_bytes - old_len + new_len;
    }

    /// Changes a file's content in place.
    fn edit_content<T>(
        &mut self,
        ino: Ino,
        now: SystemTime,
        edit: impl FnOnce(&mut Vec<u8>) -> T,
    ) -> T {
        let node = self.node_mut(ino);
        let Kind::File(data) = &mut node.kind else {
            unreachable!("edit_content is only called on files")
        };
        let old_len = data.len() as u64;
        let buf = Arc::make_mut(data);
        let out = edit(buf);
        let new_len = buf.len() as u64;
        node.modified = now;
        node.changed = now;
        self.used_bytes = self.used_bytes - old_len + new_len;
        out
    }

    /// The file at `path`, created empty if missing (like `open(O_CREAT)`).
    fn file_for_write(&mut self, path: &Path, now: SystemTime) -> FsResult<Ino> {
        let slot = self.slot(path, "write")?;
        match self.child(&slot) {
            Some(ino) => {
                self.file_data(path, ino)?;
                Ok(ino)
            }
            None => {
                let node = Node::new(Kind::File(Arc::default()), 0o644, self.uid, self.gid, now);
                let ino = self.alloc(node);
                self.link(slot.parent, slot.name, ino, now);
                Ok(ino)
            }
        }
    }

    fn new_dir(&mut self, slot: &Slot<'_>, now: SystemTime) -> Ino {
        let node = Node::new(
            Kind::Dir {
                entries: BTreeMap::new(),
                subdirs: 0,
            },
            0o755,
            self.uid,
            self.gid,
            now,
        );
        let ino = self.alloc(node);
        self.link(slot.parent, slot.name, ino, now);
        ino
    }

    /// Whether `ino` is `ancestor` or lies beneath it.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT {
                return false;
            }
            match self.node(ino).links.first() {
                Some((parent, _)) => ino = *parent,
                None => return false,
            }
        }
    }

    fn path_of(&self, ino: Ino) -> FsResult<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self
                .nodes
                .get(&cur)
                .ok_or_else(|| FsError::inode_not_found(ino))?;
            let (parent, name) = node
                .links
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
        let ino = match self.child(&slot) {
            Some(_) if flags.create_new => {
                return Err(FsError::AlreadyExists { path: path.into() });
            }
            Some(ino) => {
                self.file_data(path, ino)?;
                if flags.truncate {
                    self.set_content(ino, Arc::default(), now);
                }
                ino
            }
            None if flags.create || flags.create_new => self.file_for_write(path, now)?,
            None => return Err(FsError::NotFound { path: path.into() }),
        };
        self.node_mut(ino).open += 1;
        let id = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(
            id,
            OpenFile {
                ino,
                path: path.to_path_buf(),
                flags,
            },
        );
        Ok(Handle(id))
    }

    fn handle(&self, handle: Handle) -> FsResult<&OpenFile> {
        self.handles
            .get(&handle.0)
            .ok_or_else(|| FsError::NotFound {
                path: PathBuf::from(format!("<handle {}>", handle.0)),
            })
    }
}

impl MemoryBackend {
    fn read_state<T>(&self, f: impl FnOnce(&State) -> FsResult<T>) -> FsResult<T> {
        f(&self.state.read())
    }
    fn write_state<T>(&self, f: impl FnOnce(&mut State, SystemTime) -> FsResult<T>) -> FsResult<T> {
        let now = SystemTime::now();
        f(&mut self.state.write(), now)
    }
}

struct MemoryWalker<'s>(&'s State);

impl PathWalker for MemoryWalker<'_> {
    type Node = Ino;
    fn root(&mut self) -> FsResult<Ino> {
        Ok(ROOT)
    }
    fn child(&mut self, dir: &Ino, name: &OsStr) -> FsResult<Option<Step<Ino>>> {
        let Some(&ino) = self.0.entries(*dir).and_then(|e| e.get(name)) else {
            return Ok(None);
        };
        Ok(Some(match &self.0.node(ino).kind {
            Kind::Dir { .. } => Step::Dir(ino),
            Kind::File(_) => Step::Other(ino),
            Kind::Symlink(target) => Step::Symlink(target.clone()),
        }))
    }
}

/// A reader over a snapshot of a file's content: later writes do not show.
struct SnapshotReader {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl FsRead for MemoryBackend {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let data = self.read_state(|s| {
            let ino = s.lookup(path)?;
            s.file_data(path, ino).cloned()
        })?;
        Ok(data.as_ref().clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let data = self.read_state(|s| {
            let ino = s.lookup(path)?;
            s.file_data(path, ino).cloned()
        })?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn exists(&self, path: &Path) -> FsResult<bool> {
        self.read_state(|s| match s.lookup(path) {
            Ok(_) => Ok(true),
            Err(FsError::NotFound { .. } | FsError::NotADirectory { .. }) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.read_state(|s| {
            let ino = s.lookup(path)?;
            Ok(s.node(ino).metadata(ino))
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let data = self.read_state(|s| {
            let ino = s.lookup(path)?;
            s.file_data(path, ino).cloned()
        })?;
        Ok(Box::new(SnapshotReader { data, pos: 0 }))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        let state = self.state.read();
        path::resolve_visiting(path, follow_last, &mut MemoryWalker(&state), visit)
    }
}

impl FsWrite for MemoryBackend {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let content = Arc::new(data.to_vec());
        self.write_state(|s, now| {
            let ino = s.file_for_write(path, now)?;
            s.set_content(ino, content, now);
            Ok(())
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.write_state(|s, now| {
            let ino = s.file_for_write(path, now)?;
            s.edit_content(ino, now, |buf| buf.extend_from_slice(data));
            Ok(())
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        self.write_state(|s, now| {
            let ino = s.lookup(path)?;
            let len = s.file_data(path, ino)?.len();
            let spans = spans_of(path, ranges, len)?;
            if !spans.is_empty() {
                s.edit_content(ino, now, |buf| {
                    for (start, end, data) in spans {
                        splice_into(buf, start, end, data);
                    }
                });
            }
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s
                .child(&slot)
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            if s.node(ino).kind.is_dir() {
                return Err(FsError::IsADirectory { path: path.into() });
            }
            s.unlink(slot.parent, slot.name, now);
            Ok(())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let src = s.slot(from, "rename")?;
            let ino = s
                .child(&src)
                .ok_or_else(|| FsError::NotFound { path: from.into() })?;
            let dst = s.slot(to, "rename")?;
            let src_is_dir = s.node(ino).kind.is_dir();
            if src_is_dir && s.is_within(dst.parent, ino) {
                return Err(FsError::InvalidPath {
                    path: to.into(),
                    reason: "a directory cannot move into itself",
                });
            }
            if let Some(existing) = s.child(&dst) {
                if existing == ino {
                    // The same node under both names (or the same name): POSIX
                    // says do nothing.
                    return Ok(());
                }
                match (&s.node(existing).kind, src_is_dir) {
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
                s.unlink(dst.parent, dst.name, now);
            }
            // Keep the node alive across the move: unlinking its last name
            // would otherwise free it.
            s.node_mut(ino).open += 1;
            s.unlink(src.parent, src.name, now);
            s.link(dst.parent, dst.name, ino, now);
            s.node_mut(ino).open -= 1;
            Ok(())
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let src = s.lookup(from)?;
            let data = s.file_data(from, src)?.clone();
            let mode = s.node(src).mode;
            let dst = s.file_for_write(to, now)?;
            if dst != src {
                s.set_content(dst, data, now);
                s.node_mut(dst).mode = mode;
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
        self.write_state(|s, now| {
            let ino = s.lookup(path)?;
            room_for(path, s.file_data(path, ino)?.len(), size)?;
            s.edit_content(ino, now, |buf| buf.resize(size, 0));
            Ok(())
        })
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        Ok(Box::new(super::WholeFileWriter::open(self.clone(), path)?))
    }
}

impl FsDir for MemoryBackend {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.read_state(|s| {
            let ino = s.lookup(path)?;
            let entries = s
                .entries(ino)
                .ok_or_else(|| FsError::NotADirectory { path: path.into() })?;
            Ok(entries
                .iter()
                .map(|(name, &child)| DirEntry {
                    name: name.clone(),
                    path: path::join(path, name),
                    file_type: s.node(child).kind.file_type(),
                    inode: child,
                })
                .collect::<Vec<_>>())
        })?;
        Ok(ReadDir::from_entries(entries))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let slot = s.slot(path, "create")?;
            if s.child(&slot).is_some() {
                return Err(FsError::AlreadyExists { path: path.into() });
            }
            s.new_dir(&slot, now);
            Ok(())
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = path::resolved_components(path)?;
        self.write_state(|s, now| {
            let mut dir = ROOT;
            for (i, name) in names.iter().enumerate() {
                let existing = s.entries(dir).and_then(|e| e.get(*name)).copied();
                dir = match existing {
                    Some(ino) => match &s.node(ino).kind {
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
                    None => s.new_dir(&Slot { parent: dir, name }, now),
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s
                .child(&slot)
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            match s.entries(ino) {
                None => Err(FsError::NotADirectory { path: path.into() }),
                Some(e) if !e.is_empty() => Err(FsError::DirectoryNotEmpty { path: path.into() }),
                Some(_) => {
                    s.unlink(slot.parent, slot.name, now);
                    Ok(())
                }
            }
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s
                .child(&slot)
                .ok_or_else(|| FsError::NotFound { path: path.into() })?;
            match &s.node(ino).kind {
                Kind::File(_) => return Err(FsError::NotADirectory { path: path.into() }),
                Kind::Symlink(_) => {
                    s.unlink(slot.parent, slot.name, now);
                    return Ok(());
                }
                Kind::Dir { .. } => {}
            }
            // Empty the tree depth first, then unlink the directory itself.
            let mut stack = vec![ino];
            let mut order = Vec::new();
            while let Some(dir) = stack.pop() {
                order.push(dir);
                if let Some(entries) = s.entries(dir) {
                    for &child in entries.values() {
                        if s.node(child).kind.is_dir() {
                            stack.push(child);
                        }
                    }
                }
            }
            for dir in order.into_iter().rev() {
                let names: Vec<OsString> = s
                    .entries(dir)
                    .map(|e| e.keys().cloned().collect())
                    .unwrap_or_default();
                for name in names {
                    s.unlink(dir, &name, now);
                }
            }
            s.unlink(slot.parent, slot.name, now);
            Ok(())
        })
    }
}

impl FsLink for MemoryBackend {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        path::validate(target)?;
        self.write_state(|s, now| {
            let slot = s.slot(link, "create")?;
            if s.child(&slot).is_some() {
                return Err(FsError::AlreadyExists { path: link.into() });
            }
            let node = Node::new(
                Kind::Symlink(target.to_path_buf()),
                0o777,
                s.uid,
                s.gid,
                now,
            );
            let ino = s.alloc(node);
            s.link(slot.parent, slot.name, ino, now);
            Ok(())
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        self.write_state(|s, now| {
            let src = s.slot(original, "link")?;
            let ino = s.child(&src).ok_or_else(|| FsError::NotFound {
                path: original.into(),
            })?;
            if s.node(ino).kind.is_dir() {
                return Err(FsError::PermissionDenied {
                    path: original.into(),
                    op: "hard_link a directory",
                });
            }
            let slot = s.slot(link, "create")?;
            if s.child(&slot).is_some() {
                return Err(FsError::AlreadyExists { path: link.into() });
            }
            s.link(slot.parent, slot.name, ino, now);
            Ok(())
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.read_state(|s| {
            let ino = s.lookup(path)?;
            match &s.node(ino).kind {
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

impl FsPermissions for MemoryBackend {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.write_state(|s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino);
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
        self.write_state(|s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino);
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
        self.write_state(|s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino);
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
        let s = self.state.read();
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
        self.read_state(|s| {
            let dir = s
                .nodes
                .get(&parent)
                .ok_or_else(|| FsError::inode_not_found(parent))?;
            let Kind::Dir { entries, .. } = &dir.kind else {
                return Err(FsError::NotADirectory {
                    path: s.path_of(parent)?,
                });
            };
            entries.get(name).copied().ok_or_else(|| FsError::NotFound {
                path: s
                    .path_of(parent)
                    .map(|p| path::join(&p, name))
                    .unwrap_or_else(|_| PathBuf::from(name)),
            })
        })
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        self.read_state(|s| {
            s.nodes
                .get(&inode)
                .map(|n| n.metadata(inode))
                .ok_or_else(|| FsError::inode_not_found(inode))
        })
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
                return Err(FsError::PermissionDenied {
                    path: open.path.clone(),
                    op: "read from a handle not opened for reading",
                });
            }
            s.file_data(&open.path, open.ino).cloned()
        })?;
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
                return Err(FsError::PermissionDenied {
                    path: open.path,
                    op: "write to a handle not opened for writing",
                });
            }
            let start = usize::try_from(offset).map_err(|_| FsError::FileSizeExceeded {
                path: open.path.clone(),
                size: offset,
                limit: usize::MAX as u64,
            })?;
            let len = s.file_data(&open.path, open.ino)?.len();
            let at = if open.flags.append { len } else { start };
            let end = at
                .checked_add(data.len())
                .ok_or(FsError::FileSizeExceeded {
                    path: open.path.clone(),
                    size: offset.saturating_add(data.len() as u64),
                    limit: usize::MAX as u64,
                })?;
            room_for(&open.path, len, end)?;
            s.edit_content(open.ino, now, |buf| splice_into(buf, at, end, data));
            Ok(data.len())
        })
    }

    fn close(&self, handle: Handle) -> FsResult<()> {
        self.write_state(|s, _| {
            let open = s
                .handles
                .remove(&handle.0)
                .ok_or_else(|| FsError::NotFound {
                    path: PathBuf::from(format!("<handle {}>", handle.0)),
                })?;
            let node = s.node_mut(open.ino);
            node.open -= 1;
            if node.open == 0 && node.links.is_empty() && open.ino != ROOT {
                s.free(open.ino);
            }
            Ok(())
        })
    }
}
