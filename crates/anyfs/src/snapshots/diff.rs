//! The differences between two trees, found by walking both side by side
//! and streamed: what is held at once is the work left on the walk's path
//! (a directory listing per level), never the list of changes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::Change;
use crate::error::FsResult;
use crate::traits::{FsDir, FsLink, FsRead};
use crate::types::{DirEntry, FileType, Metadata};

/// What a diff walks: a tree it can list and describe. Every backend that
/// reads files and lists directories is one.
pub trait TreeSide: Send + Sync {
    /// A directory's entries.
    fn list(&self, dir: &Path) -> FsResult<Vec<DirEntry>>;
    /// A node's metadata, not following a symlink.
    fn stat(&self, path: &Path) -> FsResult<Metadata>;
    /// Up to `len` bytes of a file from `offset`.
    fn bytes(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>>;
    /// A symlink's target.
    fn target(&self, path: &Path) -> FsResult<PathBuf>;
}

impl<T: FsRead + FsDir + FsLink + ?Sized> TreeSide for T {
    fn list(&self, dir: &Path) -> FsResult<Vec<DirEntry>> {
        self.read_dir(dir)?.collect()
    }
    fn stat(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
    fn bytes(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.read_range(path, offset, len)
    }
    fn target(&self, path: &Path) -> FsResult<PathBuf> {
        self.read_link(path)
    }
}

/// A borrowed [`TreeSide`], to walk it without owning it.
pub(super) struct Borrowed<'a>(pub(super) &'a dyn TreeSide);

impl TreeSide for Borrowed<'_> {
    fn list(&self, dir: &Path) -> FsResult<Vec<DirEntry>> {
        self.0.list(dir)
    }
    fn stat(&self, path: &Path) -> FsResult<Metadata> {
        self.0.stat(path)
    }
    fn bytes(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.0.bytes(path, offset, len)
    }
    fn target(&self, path: &Path) -> FsResult<PathBuf> {
        self.0.target(path)
    }
}

/// How a diff decides that a node in both trees changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The two trees are of one workspace (it, its snapshots, its
    /// branches), whose copies keep inode numbers and times: a node with
    /// the same inode and the same modification and change times is the
    /// same, unread. Any other node is compared as with `Content`, so a
    /// file written back to what it was is not reported.
    Stamps,
    /// The trees are unrelated (a workspace and a host directory): a file
    /// changed if its size, permissions or bytes differ, a symlink if its
    /// target does. Content of equal size is read and compared.
    Content,
}

/// Work left on the walk.
enum Task {
    /// Compare a directory that is in both trees.
    Both(PathBuf),
    /// Report everything below a directory only in the first tree.
    OnlyA(PathBuf),
    /// Report everything below a directory only in the second tree.
    OnlyB(PathBuf),
    /// Report a change (a deleted directory, once what it held is reported).
    Emit(Change),
}

/// The changes from one tree to another, as an iterator: see
/// [`diff`](super::diff()). Changes come in walk order, each directory's
/// entries by name.
pub struct Diff<'a> {
    a: Box<dyn TreeSide + 'a>,
    b: Box<dyn TreeSide + 'a>,
    compare: Compare,
    stack: Vec<Task>,
    ready: VecDeque<Change>,
    failed: bool,
}

impl std::fmt::Debug for Diff<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diff")
            .field("compare", &self.compare)
            .field("pending", &self.stack.len())
            .finish_non_exhaustive()
    }
}

/// The differences from tree `a` to tree `b`, streamed: added, deleted and
/// modified nodes with their kinds, sizes and permissions.
pub fn diff<'a>(a: impl TreeSide + 'a, b: impl TreeSide + 'a, compare: Compare) -> Diff<'a> {
    Diff::new(Box::new(a), Box::new(b), compare)
}

impl<'a> Diff<'a> {
    /// A diff from `a` to `b`.
    pub fn new(a: Box<dyn TreeSide + 'a>, b: Box<dyn TreeSide + 'a>, compare: Compare) -> Self {
        Self {
            a,
            b,
            compare,
            stack: vec![Task::Both(PathBuf::from("/"))],
            ready: VecDeque::new(),
            failed: false,
        }
    }

    fn step(&mut self, task: Task) -> FsResult<()> {
        match task {
            Task::Emit(change) => self.ready.push_back(change),
            Task::OnlyA(dir) => {
                let mut entries = self.a.list(&dir)?;
                entries.sort_by(|x, y| x.name.cmp(&y.name));
                // Reversed onto the stack, so they come out by name.
                for entry in entries.into_iter().rev() {
                    let meta = self.a.stat(&entry.path)?;
                    self.deleted(entry.path, &meta);
                }
            }
            Task::OnlyB(dir) => {
                let mut entries = self.b.list(&dir)?;
                entries.sort_by(|x, y| y.name.cmp(&x.name));
                for entry in entries {
                    let meta = self.b.stat(&entry.path)?;
                    self.added(entry.path, &meta);
                }
            }
            Task::Both(dir) => self.compare_dir(&dir)?,
        }
        Ok(())
    }

    /// Queues `path` (only in the first tree) as deleted, after everything
    /// below it.
    fn deleted(&mut self, path: PathBuf, meta: &Metadata) {
        let change = Change::Deleted {
            path: path.clone(),
            old: meta.into(),
        };
        self.stack.push(Task::Emit(change));
        if meta.file_type == FileType::Directory {
            self.stack.push(Task::OnlyA(path));
        }
    }

    /// Queues `path` (only in the second tree) as added, before everything
    /// below it.
    fn added(&mut self, path: PathBuf, meta: &Metadata) {
        if meta.file_type == FileType::Directory {
            self.stack.push(Task::OnlyB(path.clone()));
        }
        self.stack.push(Task::Emit(Change::Added {
            path,
            new: meta.into(),
        }));
    }

    fn compare_dir(&mut self, dir: &Path) -> FsResult<()> {
        let mut left = self.a.list(dir)?;
        let mut right = self.b.list(dir)?;
        left.sort_by(|x, y| x.name.cmp(&y.name));
        right.sort_by(|x, y| x.name.cmp(&y.name));
        // Pushed in reverse name order, so the stack gives them by name.
        let mut tasks: Vec<Vec<Task>> = Vec::new();
        let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
        loop {
            let order = match (l.peek(), r.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            let depth = self.stack.len();
            match order {
                std::cmp::Ordering::Less => {
                    let entry = l.next().expect("peeked");
                    let meta = self.a.stat(&entry.path)?;
                    self.deleted(entry.path, &meta);
                }
                std::cmp::Ordering::Greater => {
                    let entry = r.next().expect("peeked");
                    let meta = self.b.stat(&entry.path)?;
                    self.added(entry.path, &meta);
                }
                std::cmp::Ordering::Equal => {
                    let entry = l.next().expect("peeked");
                    r.next();
                    self.compare_node(entry.path)?;
                }
            }
            tasks.push(self.stack.split_off(depth));
        }
        for group in tasks.into_iter().rev() {
            self.stack.extend(group);
        }
        Ok(())
    }

    /// A path in both trees.
    fn compare_node(&mut self, path: PathBuf) -> FsResult<()> {
        let old = self.a.stat(&path)?;
        let new = self.b.stat(&path)?;
        if old.file_type != new.file_type {
            // Deleted, then added: pushed in reverse.
            self.added(path.clone(), &new);
            self.deleted(path, &old);
            return Ok(());
        }
        let is_dir = old.file_type == FileType::Directory;
        if is_dir {
            self.stack.push(Task::Both(path.clone()));
        }
        if self.changed(&path, &old, &new)? {
            self.stack.push(Task::Emit(Change::Modified {
                path,
                old: (&old).into(),
                new: (&new).into(),
            }));
        }
        Ok(())
    }

    fn changed(&self, path: &Path, old: &Metadata, new: &Metadata) -> FsResult<bool> {
        let attributes =
            old.permissions != new.permissions || old.uid != new.uid || old.gid != new.gid;
        if old.file_type == FileType::Directory {
            // A directory's own times move with what it holds, which is
            // reported for itself.
            return Ok(attributes);
        }
        if attributes || old.len != new.len {
            return Ok(true);
        }
        let untouched =
            old.inode == new.inode && old.modified == new.modified && old.changed == new.changed;
        if self.compare == Compare::Stamps && untouched {
            return Ok(false);
        }
        same_node(&*self.a, &*self.b, path, old).map(|same| !same)
    }
}

/// Whether the file or symlink at `path`, described by `meta` in `a` and of
/// the same kind and size in `b`, holds the same bytes in both (for a
/// symlink, the same target). Files are read a piece at a time.
pub(super) fn same_node(
    a: &dyn TreeSide,
    b: &dyn TreeSide,
    path: &Path,
    meta: &Metadata,
) -> FsResult<bool> {
    const PIECE: usize = 1 << 20;
    match meta.file_type {
        FileType::Directory => return Ok(true),
        FileType::Symlink => return Ok(a.target(path)? == b.target(path)?),
        FileType::File => {}
    }
    let len = meta.len;
    let mut offset = 0;
    while offset < len {
        let x = a.bytes(path, offset, PIECE)?;
        let y = b.bytes(path, offset, PIECE)?;
        if x != y {
            return Ok(false);
        }
        if x.is_empty() {
            break;
        }
        offset += x.len() as u64;
    }
    Ok(true)
}

impl Iterator for Diff<'_> {
    type Item = FsResult<Change>;

    fn next(&mut self) -> Option<FsResult<Change>> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Some(Ok(change));
            }
            if self.failed {
                return None;
            }
            let task = self.stack.pop()?;
            if let Err(e) = self.step(task) {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}
