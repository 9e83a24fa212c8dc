//! The namespace both backends share: inodes and directory entries in
//! SQLite, every operation one transaction. Where file content lives is the
//! [`Content`]'s business (chunks in the database, or blob files).
//!
//! [`Store`] is defined here with what its operations share (freeing nodes,
//! pinning open ones, finding a file to write). The rest:
//!
//! - [`node`]: a row of `inodes`, node kinds, timestamps;
//! - [`content`]: the [`Content`] trait the two content stores implement;
//! - [`queries`]: the SQL statements on `inodes` and `entries`;
//! - [`path_cache`]: paths already resolved, per write generation;
//! - [`pins`]: inodes held by open handles and streams;
//! - [`open_files`]: the table of open handles;
//! - [`streams`]: `open_read` and `open_write` streams;
//! - the `anyfs` traits, one module a family: [`read`] (`FsRead`,
//!   `FsInode`, `FsStats`), [`write`](mod@write) (`FsWrite`, `FsSync`), [`dir`]
//!   (`FsDir`, `FsLink`), [`attributes`] (`FsPermissions`) and [`handles`]
//!   (`FsHandles`).

mod attributes;
mod content;
mod dir;
mod handles;
mod node;
mod open_files;
mod path_cache;
mod pins;
mod queries;
mod read;
mod streams;
mod trees;
mod write;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Weak};

use anyfs::{FsError, FsErrorKind, FsResult};
use rusqlite::Connection;

pub(crate) use content::{Content, FileRow, zeroed_range};
pub(crate) use node::{Tree, now_ns};

use crate::db::{Db, DeferredRemovals, sql_error};
use node::{KIND_FILE, NODE_COLUMNS, Node, node_from_row};
use open_files::OpenFiles;
use path_cache::PathCache;
use pins::Pins;

/// The store behind [`SqliteBackend`](crate::SqliteBackend) and
/// [`IndexedBackend`](crate::IndexedBackend): one tree of a database (the
/// workspace, a snapshot or a branch) and a content store `C`.
pub struct Store<C> {
    /// The `Arc` this store lives in, for streams that outlive a call.
    weak_self: Weak<Store<C>>,
    /// The database, shared by the stores of all its trees.
    pub(crate) db: Arc<Db>,
    pub(crate) content: C,
    /// The tree this store reads and writes.
    tree: Tree,
    /// A snapshot: every change is refused.
    frozen: bool,
    /// Inodes held by open handles and streams.
    pins: Pins,
    /// Open handles.
    open_files: OpenFiles,
    /// The owner new nodes get.
    owner: (u32, u32),
    /// Resolved paths already looked up, valid for one write generation.
    paths: PathCache,
}

impl<C> std::fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl<C: Content> Store<C> {
    /// A store over the workspace of `db` and `content`, freeing what a
    /// crash left behind (in every tree).
    pub(crate) fn new(db: Db, content: C, owner: (u32, u32)) -> FsResult<Arc<Self>> {
        let store = Self::on_tree(Arc::new(db), content, owner, Tree::LIVE, false);
        store.free_orphans()?;
        Ok(store)
    }

    /// A store over tree `tree` of `db`; `frozen` refuses every change.
    fn on_tree(db: Arc<Db>, content: C, owner: (u32, u32), tree: Tree, frozen: bool) -> Arc<Self> {
        Arc::new_cyclic(|weak_self| Self {
            weak_self: weak_self.clone(),
            db,
            content,
            tree,
            frozen,
            pins: Pins::default(),
            open_files: OpenFiles::default(),
            owner,
            paths: PathCache::default(),
        })
    }

    /// Runs `f` in a write transaction, unless this store is a snapshot's
    /// (`ReadOnly`).
    fn db_write<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&Connection, &mut DeferredRemovals) -> FsResult<T>,
    ) -> FsResult<T> {
        if self.frozen {
            return Err(FsError::read_only(path, "change a snapshot"));
        }
        self.db.write(path, f)
    }

    /// The `Arc` this store lives in, for a stream to keep.
    fn self_arc(&self, path: &Path) -> FsResult<Arc<Self>> {
        // Every store is made in an `Arc` by `new` and used through it, so
        // this only fails while the last one is being dropped.
        self.weak_self
            .upgrade()
            .ok_or_else(|| FsError::backend(path, "open a stream", "the backend is being closed"))
    }

    /// Frees nodes left without a name by a crash while they were open,
    /// in every tree (the root of each has a name of its own: `nlink` 1).
    fn free_orphans(&self) -> FsResult<()> {
        let root = Path::new("/");
        self.db_write(root, |tx, removals| {
            let orphans: Vec<Node> = tx
                .prepare(&format!(
                    "SELECT {NODE_COLUMNS} FROM inodes WHERE nlink = 0"
                ))
                .and_then(|mut s| s.query_map([], node_from_row)?.collect())
                .map_err(|e| sql_error(root, "find orphans", e))?;
            for node in orphans {
                self.free(tx, root, &node, removals)?;
            }
            Ok(())
        })
    }

    /// Deletes a node with no name left, and its content.
    fn free(
        &self,
        tx: &Connection,
        path: &Path,
        node: &Node,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        if node.kind == KIND_FILE {
            self.content.remove(tx, path, &node.file(), removals)?;
        }
        queries::delete_inode(tx, path, node.ino)
    }

    /// After the last name of a node went away (`gone`, from
    /// [`queries::unlink`]): frees it unless a handle or stream holds it.
    fn free_unless_pinned(
        &self,
        tx: &Connection,
        path: &Path,
        gone: Option<Node>,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        if let Some(node) = gone
            && !self.pins.is_pinned(node.ino)
        {
            self.free(tx, path, &node, removals)?;
        }
        Ok(())
    }

    /// Moves the name of the file at `path` (`name` in `parent`) to the
    /// nameless file node `ino`; the node it named is freed unless pinned.
    fn give_name(
        &self,
        tx: &Connection,
        path: &Path,
        (parent, name): (i64, &[u8]),
        ino: i64,
        now: i64,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let gone = queries::unlink(tx, path, parent, name, now)?;
        queries::link(tx, path, parent, name, ino, false, now)?;
        self.free_unless_pinned(tx, path, gone, removals)
    }

    /// The file at `path`, created empty if missing.
    fn file_for_write(&self, tx: &Connection, path: &Path, now: i64) -> FsResult<Node> {
        self.file_for_write_sized(tx, path, now, 0)
            .map(|(node, _)| node)
    }

    /// The file at `path`, created empty if missing — its row then already
    /// saying `size` (what the caller is about to write), so that creating
    /// and writing a small file takes no statement more than it must. Also
    /// whether it was created.
    fn file_for_write_sized(
        &self,
        tx: &Connection,
        path: &Path,
        now: i64,
        size: u64,
    ) -> FsResult<(Node, bool)> {
        let (parent, name) = queries::slot(tx, self.tree, path)?;
        match queries::child(tx, path, parent, name.as_bytes())? {
            Some((ino, _)) => queries::file(tx, path, ino).map(|node| (node, false)),
            None => {
                let ino = queries::create_file(
                    tx,
                    (self.tree, path),
                    parent,
                    name.as_bytes(),
                    self.owner,
                    size,
                    now,
                )?;
                // What was just written, without reading it back; its
                // content is still to come (size 0 for the content store).
                Ok((Node::new_file(ino, self.owner, now), true))
            }
        }
    }

    /// Holds `ino` for a handle or stream.
    fn pin(&self, ino: i64) {
        self.pins.pin(ino);
    }

    /// Lets go of `ino` for a handle or stream; frees the node if that was
    /// its last pin and it has no name left.
    fn unpin(&self, path: &Path, ino: i64) -> FsResult<()> {
        if self.pins.unpin(ino) && !self.frozen {
            self.db_write(path, |tx, removals| {
                if let Ok(node) = queries::node(tx, path, ino)
                    && node.nlink == 0
                {
                    self.free(tx, path, &node, removals)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Runs a read again when content moved under it (a blob replaced between
/// the snapshot and opening the file); the next snapshot sees the new one.
///
/// Under a steady stream of rewrites a reader could lose that race every
/// time, so after a few tries it reads once more with writers held off
/// (`exclusive`), where the content it finds is sure to stay put.
fn retry_conflicts<T>(
    mut read: impl FnMut() -> FsResult<T>,
    exclusive: impl FnOnce() -> FsResult<T>,
) -> FsResult<T> {
    for _ in 0..4 {
        match read() {
            Err(e) if e.kind() == FsErrorKind::Conflict => {}
            other => return other,
        }
    }
    exclusive()
}
