//! The node-store interface a memory backend's tree lives in, and the POSIX
//! rules written once over it: walking a path, finding where a name goes,
//! linking and unlinking names, making files and directories, changing a
//! file's content.
//!
//! A store only hands nodes out ([`NodeRead`]) and takes them in
//! ([`NodeStore`]). The plain backend's store is its state behind a
//! read-write lock; the encrypted backend's is a transaction that decrypts
//! each node when it is first asked for. Reads need only [`NodeRead`], so
//! the plain backend serves them under the shared lock.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::node::{FileBytes, Ino, Kind, Names, Node, NodeFlavor, ROOT, forget_name};
use crate::error::{FsError, FsResult};
use crate::path::{self, PathWalker, Step};

/// A file's bytes in the store `S`.
pub(super) type BytesOf<S> = <<S as NodeRead>::Flavor as NodeFlavor>::Bytes;

/// Where a path's last name lives: its parent directory and the name.
pub(super) struct Slot<'p> {
    pub(super) parent: Ino,
    pub(super) name: &'p OsStr,
}

/// Reading a tree's nodes, and the rules that only read.
pub(super) trait NodeRead {
    /// What the store's nodes hold.
    type Flavor: NodeFlavor;

    /// The node numbered `ino`, which the tree links (an error only if the
    /// store cannot give it, such as a node that does not decrypt).
    fn node(&mut self, ino: Ino) -> FsResult<&Node<Self::Flavor>>;

    /// The inode at a resolved path, following no link.
    fn lookup(&mut self, path: &Path) -> FsResult<Ino> {
        let names = path::resolved_components(path)?;
        self.walk(path, &names)
    }

    /// The inode `names` lead to from the root; `path` is what errors name.
    fn walk(&mut self, path: &Path, names: &[&OsStr]) -> FsResult<Ino> {
        let mut ino = ROOT;
        for name in names {
            ino = match &self.node(ino)?.kind {
                Kind::Dir { entries, .. } => match entries.get(*name) {
                    Some(&child) => child,
                    None => return Err(FsError::not_found(path)),
                },
                Kind::File(_) => return Err(FsError::not_a_directory(path)),
                Kind::Symlink(_) => return Err(crosses_symlink(path)),
            };
        }
        Ok(ino)
    }

    /// The parent directory of a resolved path (which must exist and be a
    /// directory) and the last name. The root has no slot.
    fn slot<'p>(&mut self, path: &'p Path, op: &'static str) -> FsResult<Slot<'p>> {
        let names = path::resolved_components(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(FsError::invalid_path(
                path,
                match op {
                    "remove" | "rename" => "the root cannot be removed or moved",
                    _ => "the root already exists",
                },
            ));
        };
        let parent = self.walk(path, parents)?;
        match &self.node(parent)?.kind {
            Kind::Dir { .. } => Ok(Slot { parent, name }),
            Kind::File(_) => Err(FsError::not_a_directory(path)),
            Kind::Symlink(_) => Err(crosses_symlink(path)),
        }
    }

    /// The inode named `name` in the directory `parent`, if any.
    fn child(&mut self, parent: Ino, name: &OsStr) -> FsResult<Option<Ino>> {
        Ok(match &self.node(parent)?.kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        })
    }

    /// The inode a slot names, if any.
    fn child_at(&mut self, slot: &Slot<'_>) -> FsResult<Option<Ino>> {
        self.child(slot.parent, slot.name)
    }

    /// The content of the file `ino`; `path` is what errors name.
    fn file(&mut self, path: &Path, ino: Ino) -> FsResult<&Arc<BytesOf<Self>>> {
        match &self.node(ino)?.kind {
            Kind::File(data) => Ok(data),
            other => Err(not_a_file(path, other.is_dir())),
        }
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
            match self.node(ino)?.names.parent() {
                Some(parent) => ino = parent,
                None => return Ok(false),
            }
        }
    }
}

/// Changing a tree's nodes, and the rules that change them.
pub(super) trait NodeStore: NodeRead {
    /// The node numbered `ino`, to change.
    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node<Self::Flavor>>;
    /// Takes in a new node; its number.
    fn alloc(&mut self, node: Node<Self::Flavor>) -> Ino;
    /// Drops the node `ino`: nothing names it and nothing has it open.
    fn free(&mut self, ino: Ino);
    /// The owner (uid, gid) of what is created.
    fn owner(&self) -> (u32, u32);
    /// A file's content went from `from` to `to` bytes (for a store that
    /// keeps a running total).
    fn content_resized(&mut self, from: u64, to: u64);

    /// Adds the entry `name -> ino` to the directory `parent`.
    fn link(&mut self, parent: Ino, name: &OsStr, ino: Ino, now: SystemTime) -> FsResult<()> {
        let child = self.node_mut(ino)?;
        child.names.add(parent, name);
        child.changed = now;
        let is_dir = child.kind.is_dir();
        let dir = self.node_mut(parent)?;
        if let Kind::Dir { entries, subdirs } = &mut dir.kind {
            entries.insert(name.to_owned(), ino);
            if is_dir {
                *subdirs += 1;
            }
        }
        dir.modified = now;
        dir.changed = now;
        Ok(())
    }

    /// Removes the entry `name` from `parent`, keeping the node it named
    /// (which a rename links again); that node, if there was one.
    fn detach(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> FsResult<Option<Ino>> {
        let dir = self.node_mut(parent)?;
        let removed = match &mut dir.kind {
            Kind::Dir { entries, .. } => entries.remove_entry(name),
            _ => None,
        };
        dir.modified = now;
        dir.changed = now;
        let Some((entry, ino)) = removed else {
            return Ok(None);
        };
        forget_name::<Self::Flavor>(entry);
        let child = self.node_mut(ino)?;
        child.names.remove(parent, name);
        child.changed = now;
        if child.kind.is_dir()
            && let Kind::Dir { subdirs, .. } = &mut self.node_mut(parent)?.kind
        {
            *subdirs = subdirs.saturating_sub(1);
        }
        Ok(Some(ino))
    }

    /// Removes the entry `name` from `parent`, freeing the node it named
    /// once nothing names it and nothing has it open (a directory's subtree
    /// must be empty already).
    fn unlink(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> FsResult<()> {
        if let Some(ino) = self.detach(parent, name, now)? {
            let node = self.node(ino)?;
            if node.names.count() == 0 && node.open == 0 {
                self.free(ino);
            }
        }
        Ok(())
    }

    /// A new node of `kind` at `slot`, owned by the store's owner.
    fn create(
        &mut self,
        slot: &Slot<'_>,
        kind: Kind<BytesOf<Self>>,
        mode: u32,
        now: SystemTime,
    ) -> FsResult<Ino> {
        let ino = self.alloc(Node::new(kind, mode, self.owner(), now));
        self.link(slot.parent, slot.name, ino, now)?;
        Ok(ino)
    }

    /// The file at `path`, created empty if missing (like `open(O_CREAT)`).
    fn file_for_write(&mut self, path: &Path, now: SystemTime) -> FsResult<Ino> {
        let slot = self.slot(path, "write")?;
        match self.child_at(&slot)? {
            Some(ino) => {
                self.file(path, ino)?;
                Ok(ino)
            }
            None => self.create(&slot, Kind::File(Arc::default()), 0o644, now),
        }
    }

    /// Replaces the content of the file `ino`.
    fn set_content(
        &mut self,
        path: &Path,
        ino: Ino,
        data: Arc<BytesOf<Self>>,
        now: SystemTime,
    ) -> FsResult<()> {
        let new_len = data.vec().len() as u64;
        let node = self.node_mut(ino)?;
        let old_len = match &mut node.kind {
            Kind::File(old) => std::mem::replace(old, data).vec().len() as u64,
            other => return Err(not_a_file(path, other.is_dir())),
        };
        node.modified = now;
        node.changed = now;
        self.content_resized(old_len, new_len);
        Ok(())
    }

    /// Changes the content of the file `ino` in place (copied first if a
    /// reader still holds it).
    fn edit_content<T>(
        &mut self,
        path: &Path,
        ino: Ino,
        now: SystemTime,
        edit: impl FnOnce(&mut Vec<u8>) -> T,
    ) -> FsResult<T> {
        let node = self.node_mut(ino)?;
        let data = match &mut node.kind {
            Kind::File(data) => data,
            other => return Err(not_a_file(path, other.is_dir())),
        };
        let buf = Arc::make_mut(data).vec_mut();
        let old_len = buf.len() as u64;
        let out = edit(buf);
        let new_len = buf.len() as u64;
        node.modified = now;
        node.changed = now;
        self.content_resized(old_len, new_len);
        Ok(out)
    }
}

/// The error for a path that names a directory or a symlink where a file
/// was wanted.
fn not_a_file(path: &Path, is_dir: bool) -> FsError {
    if is_dir {
        FsError::is_a_directory(path)
    } else {
        crosses_symlink(path)
    }
}

fn crosses_symlink(path: &Path) -> FsError {
    crate::path::crosses_symlink(path)
}

/// Walks a store for [`path::resolve_visiting`], which follows symlinks.
pub(super) struct TreeWalker<'s, S>(pub(super) &'s mut S);

impl<S: NodeRead> PathWalker for TreeWalker<'_, S> {
    type Node = Ino;
    fn root(&mut self) -> FsResult<Ino> {
        Ok(ROOT)
    }
    fn child(&mut self, dir: &Ino, name: &OsStr) -> FsResult<Option<Step<Ino>>> {
        let Some(ino) = self.0.child(*dir, name)? else {
            return Ok(None);
        };
        Ok(Some(match &self.0.node(ino)?.kind {
            Kind::Dir { .. } => Step::Dir(ino),
            Kind::File(_) => Step::Other(ino),
            Kind::Symlink(target) => Step::Symlink(target.clone()),
        }))
    }
}
