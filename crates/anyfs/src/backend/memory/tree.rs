//! [`Tree`]: the filesystem traits both memory backends offer, written once
//! over a [`TreeLock`] — how a backend runs one operation on its nodes.
//!
//! [`FsRead`], [`FsWrite`], [`FsDir`], [`FsLink`] and [`FsPermissions`] are
//! implemented here for `Tree<L>`; each backend holds a `Tree` and hands
//! these traits to it. What only one backend has (handles, inodes, snapshots,
//! saving to a file, `statfs`) stays in that backend's module.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::node::{FileBytes, Ino, Kind, NodeFlavor, ROOT, forget_name};
use super::store::{NodeRead, NodeStore, Slot, TreeWalker};
use crate::content::{room_for, spans_of, splice_into};
use crate::error::{FsError, FsResult};
use crate::path::{self};
use crate::traits::{FsDir, FsLink, FsPermissions, FsRead, FsReader, FsWrite, FsWriter};
use crate::types::{DirEntry, FileType, Metadata, Permissions, ReadDir};

/// How a memory backend runs one operation on its nodes: under which lock,
/// through which store.
pub(super) trait TreeLock: Send + Sync + 'static {
    /// What the nodes hold.
    type Flavor: NodeFlavor;
    /// The store an operation that only reads is given.
    type Reading<'a>: NodeRead<Flavor = Self::Flavor>
    where
        Self: 'a;
    /// The store an operation that changes the tree is given.
    type Writing<'a>: NodeStore<Flavor = Self::Flavor>
    where
        Self: 'a;

    /// Runs `op`, which only reads; `path` is what the store's own errors
    /// name.
    fn reading<T>(
        &self,
        path: &Path,
        op: impl FnOnce(&mut Self::Reading<'_>) -> FsResult<T>,
    ) -> FsResult<T>;

    /// Runs `op`, which may change the tree, with the time it happens at;
    /// its changes stand only if it succeeds.
    fn writing<T>(
        &self,
        path: &Path,
        op: impl FnOnce(&mut Self::Writing<'_>, SystemTime) -> FsResult<T>,
    ) -> FsResult<T>;
}

/// A tree behind its lock, shared by every clone. It implements the
/// filesystem traits both memory backends offer.
pub(super) struct Tree<L>(Arc<L>);

impl<L> Clone for Tree<L> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<L> Tree<L> {
    pub(super) fn new(lock: L) -> Self {
        Self(Arc::new(lock))
    }

    /// The lock, for what only one backend does.
    pub(super) fn lock(&self) -> &L {
        &self.0
    }
}

/// A file's bytes in the tree `L`.
type Bytes<L> = <<L as TreeLock>::Flavor as NodeFlavor>::Bytes;

impl<L: TreeLock> Tree<L> {
    /// The content of the file at `path`, taken out of the lock.
    fn content(&self, path: &Path) -> FsResult<Arc<Bytes<L>>> {
        self.0.reading(path, |s| {
            let ino = s.lookup(path)?;
            s.file(path, ino).cloned()
        })
    }
}

/// A reader over the content a file had when it was opened: later writes
/// do not show.
struct SnapshotReader<B> {
    data: Arc<B>,
    pos: usize,
}

impl<B: FileBytes> Read for SnapshotReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.data.vec();
        let rest = &data[self.pos.min(data.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl<L: TreeLock> FsRead for Tree<L> {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        Ok(self.content(path)?.vec().clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let content = self.content(path)?;
        let data = content.vec();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn exists(&self, path: &Path) -> FsResult<bool> {
        self.0.reading(path, |s| match s.lookup(path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_absent() => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.0.reading(path, |s| {
            let ino = s.lookup(path)?;
            Ok(s.node(ino)?.metadata(ino))
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let data = self.content(path)?;
        Ok(Box::new(SnapshotReader { data, pos: 0 }))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        self.0.reading(path, |s| {
            path::resolve_visiting(path, follow_last, &mut TreeWalker(s), visit)
        })
    }
}

impl<L: TreeLock> FsWrite for Tree<L> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        // Copied before the lock is taken.
        let content = Arc::new(<Bytes<L> as FileBytes>::from_vec(data.to_vec()));
        self.0.writing(path, |s, now| {
            let ino = s.file_for_write(path, now)?;
            s.set_content(path, ino, content, now)
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let ino = s.file_for_write(path, now)?;
            s.edit_content(path, ino, now, |buf| buf.extend_from_slice(data))
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let ino = s.lookup(path)?;
            let len = s.file(path, ino)?.vec().len();
            let spans = spans_of(path, ranges, len)?;
            if spans.is_empty() {
                return Ok(());
            }
            s.edit_content(path, ino, now, |buf| {
                for (start, end, data) in spans {
                    splice_into(buf, start, end, data);
                }
            })
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s.child_at(&slot)?.ok_or_else(|| FsError::not_found(path))?;
            if s.node(ino)?.kind.is_dir() {
                return Err(FsError::is_a_directory(path));
            }
            s.unlink(slot.parent, slot.name, now)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.0.writing(from, |s, now| {
            let src = s.slot(from, "rename")?;
            let ino = s.child_at(&src)?.ok_or_else(|| FsError::not_found(from))?;
            let dst = s.slot(to, "rename")?;
            let src_is_dir = s.node(ino)?.kind.is_dir();
            if src_is_dir && s.is_within(dst.parent, ino)? {
                return Err(FsError::invalid_path(
                    to,
                    "a directory cannot move into itself",
                ));
            }
            if let Some(existing) = s.child_at(&dst)? {
                if existing == ino {
                    // The same node under both names (or the same name): POSIX
                    // says do nothing.
                    return Ok(());
                }
                match (&s.node(existing)?.kind, src_is_dir) {
                    (Kind::Dir { entries, .. }, true) => {
                        if !entries.is_empty() {
                            return Err(FsError::directory_not_empty(to));
                        }
                    }
                    (Kind::Dir { .. }, false) => {
                        return Err(FsError::is_a_directory(to));
                    }
                    (_, true) => return Err(FsError::not_a_directory(to)),
                    (_, false) => {}
                }
                s.unlink(dst.parent, dst.name, now)?;
            }
            // Detached, not unlinked: unlinking its last name would free it.
            s.detach(src.parent, src.name, now)?;
            s.link(dst.parent, dst.name, ino, now)
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.0.writing(from, |s, now| {
            let src = s.lookup(from)?;
            let data = Arc::clone(s.file(from, src)?);
            let mode = s.node(src)?.mode;
            let dst = s.file_for_write(to, now)?;
            if dst != src {
                s.set_content(to, dst, data, now)?;
                s.node_mut(dst)?.mode = mode;
            }
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let size = usize::try_from(size)
            .map_err(|_| FsError::file_size_exceeded(path, size, usize::MAX as u64))?;
        self.0.writing(path, |s, now| {
            let ino = s.lookup(path)?;
            room_for(path, s.file(path, ino)?.vec().len(), size)?;
            s.edit_content(path, ino, now, |buf| buf.resize(size, 0))
        })
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        Ok(Box::new(crate::backend::WholeFileWriter::open(
            self.clone(),
            path,
        )?))
    }
}

impl<L: TreeLock> FsDir for Tree<L> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.0.reading(path, |s| {
            let ino = s.lookup(path)?;
            let Kind::Dir { entries, .. } = &s.node(ino)?.kind else {
                return Err(FsError::not_a_directory(path));
            };
            let mut listed: Vec<DirEntry> = entries
                .iter()
                .map(|(name, &child)| DirEntry {
                    name: name.clone(),
                    path: path::join(path, name),
                    // Filled in below, once the directory is let go.
                    file_type: FileType::File,
                    inode: child,
                })
                .collect();
            for entry in &mut listed {
                entry.file_type = s.node(entry.inode)?.kind.file_type();
            }
            Ok(listed)
        })?;
        Ok(ReadDir::from_entries(entries))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let slot = s.slot(path, "create")?;
            if s.child_at(&slot)?.is_some() {
                return Err(FsError::already_exists(path));
            }
            s.create(&slot, Kind::empty_dir(), 0o755, now).map(drop)
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = path::resolved_components(path)?;
        self.0.writing(path, |s, now| {
            let mut dir = ROOT;
            for (i, name) in names.iter().enumerate() {
                dir = match s.child(dir, name)? {
                    Some(ino) => match &s.node(ino)?.kind {
                        Kind::Dir { .. } => ino,
                        Kind::Symlink(_) => {
                            return Err(crate::path::crosses_symlink(path));
                        }
                        Kind::File(_) if i + 1 == names.len() => {
                            return Err(FsError::already_exists(path));
                        }
                        Kind::File(_) => return Err(FsError::not_a_directory(path)),
                    },
                    None => s.create(&Slot { parent: dir, name }, Kind::empty_dir(), 0o755, now)?,
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s.child_at(&slot)?.ok_or_else(|| FsError::not_found(path))?;
            match &s.node(ino)?.kind {
                Kind::Dir { entries, .. } if entries.is_empty() => {
                    s.unlink(slot.parent, slot.name, now)
                }
                Kind::Dir { .. } => Err(FsError::directory_not_empty(path)),
                _ => Err(FsError::not_a_directory(path)),
            }
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let slot = s.slot(path, "remove")?;
            let ino = s.child_at(&slot)?.ok_or_else(|| FsError::not_found(path))?;
            match &s.node(ino)?.kind {
                Kind::File(_) => return Err(FsError::not_a_directory(path)),
                Kind::Symlink(_) => return s.unlink(slot.parent, slot.name, now),
                Kind::Dir { .. } => {}
            }
            // Empty the tree depth first, then unlink the directory itself.
            let mut stack = vec![ino];
            let mut order = Vec::new();
            while let Some(dir) = stack.pop() {
                order.push(dir);
                for child in children(s, dir)? {
                    if s.node(child)?.kind.is_dir() {
                        stack.push(child);
                    }
                }
            }
            for dir in order.into_iter().rev() {
                let names: Vec<OsString> = match &s.node(dir)?.kind {
                    Kind::Dir { entries, .. } => entries.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                for name in names {
                    s.unlink(dir, &name, now)?;
                    forget_name::<L::Flavor>(name);
                }
            }
            s.unlink(slot.parent, slot.name, now)
        })
    }
}

/// The inodes a directory's entries name.
fn children<S: NodeRead>(s: &mut S, dir: Ino) -> FsResult<Vec<Ino>> {
    Ok(match &s.node(dir)?.kind {
        Kind::Dir { entries, .. } => entries.values().copied().collect(),
        _ => Vec::new(),
    })
}

impl<L: TreeLock> FsLink for Tree<L> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        path::validate(target)?;
        self.0.writing(link, |s, now| {
            let slot = s.slot(link, "create")?;
            if s.child_at(&slot)?.is_some() {
                return Err(FsError::already_exists(link));
            }
            let kind = Kind::Symlink(target.to_path_buf());
            s.create(&slot, kind, 0o777, now).map(drop)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        self.0.writing(original, |s, now| {
            let src = s.slot(original, "link")?;
            let ino = s
                .child_at(&src)?
                .ok_or_else(|| FsError::not_found(original))?;
            if s.node(ino)?.kind.is_dir() {
                return Err(FsError::permission_denied(
                    original,
                    "hard_link a directory",
                ));
            }
            let slot = s.slot(link, "create")?;
            if s.child_at(&slot)?.is_some() {
                return Err(FsError::already_exists(link));
            }
            s.link(slot.parent, slot.name, ino, now)
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.0.reading(path, |s| {
            let ino = s.lookup(path)?;
            match &s.node(ino)?.kind {
                Kind::Symlink(target) => Ok(target.clone()),
                _ => Err(FsError::invalid_path(path, "not a symbolic link")),
            }
        })
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl<L: TreeLock> FsPermissions for Tree<L> {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.0.writing(path, |s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino)?;
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
        self.0.writing(path, |s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino)?;
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
        self.0.writing(path, |s, now| {
            let ino = s.lookup(path)?;
            let node = s.node_mut(ino)?;
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
