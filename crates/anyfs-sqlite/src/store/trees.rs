//! Snapshots and branches: more trees in the same tables.
//!
//! Taking a snapshot copies the tree's rows — nodes, entries, the chunk
//! map — into a new tree in one write transaction: one moment, between two
//! writes, with content shared (no chunk or blob is copied). A branch is a
//! writable copy of a snapshot; restoring puts a snapshot's rows back in
//! place of the workspace's. Deleting a tree frees the content nothing
//! else names.
//!
//! Rows of `trees`: the workspace is tree 0; a snapshot names the tree it
//! was taken of (`of`), a branch the tree it came from (`of`) and the
//! snapshot it counts its changes from (`base`). A tree's snapshots are
//! listed by that tree; the snapshots of its branches (what merges take)
//! are not listed but can be opened through it.

use std::path::Path;
use std::sync::Arc;

use anyfs::snapshots::{BranchId, BranchInfo, SnapshotId, SnapshotInfo};
use anyfs::{FsError, FsResult};
use rusqlite::{Connection, OptionalExtension, params};

use super::node::{Tree, from_ns, now_ns};
use super::{Content, Store};
use crate::db::{DeferredRemovals, sql_error};

/// `trees.kind` of a snapshot.
const SNAPSHOT: i64 = 1;
/// `trees.kind` of a branch.
const BRANCH: i64 = 2;

fn root() -> &'static Path {
    Path::new("/")
}

fn no_snapshot(id: SnapshotId) -> FsError {
    FsError::not_found(format!("/.snapshot/{id}"))
}

fn no_branch(id: BranchId) -> FsError {
    FsError::not_found(format!("/.branch/{id}"))
}

/// Copies the rows of tree `from` into the empty tree `to`: every node
/// with a name (a node only an open handle holds is left out), every
/// entry, every chunk mapping. Numbers within the tree are kept.
fn copy_rows(tx: &Connection, from: Tree, to: Tree) -> FsResult<()> {
    let offset = from.offset_to(to);
    let copy = || -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO inodes (ino, kind, mode, uid, gid, size, nlink, subdirs,
                 atime, mtime, ctime, btime, target, blob)
             SELECT ino + ?3, kind, mode, uid, gid, size, nlink, subdirs,
                 atime, mtime, ctime, btime, target, blob
             FROM inodes WHERE ino BETWEEN ?1 AND ?2 AND nlink > 0",
        )?
        .execute(params![from.root(), from.last(), offset])?;
        tx.prepare_cached(
            "INSERT INTO entries (parent, name, ino)
             SELECT parent + ?3, name, ino + ?3 FROM entries WHERE parent BETWEEN ?1 AND ?2",
        )?
        .execute(params![from.root(), from.last(), offset])?;
        tx.prepare_cached(
            "INSERT INTO file_chunks (ino, idx, chunk)
             SELECT f.ino + ?3, f.idx, f.chunk FROM file_chunks f
             JOIN inodes i ON i.ino = f.ino
             WHERE f.ino BETWEEN ?1 AND ?2 AND i.nlink > 0",
        )?
        .execute(params![from.root(), from.last(), offset])?;
        Ok(())
    };
    copy().map_err(|e| sql_error(root(), "copy a tree", e))
}

/// Bytes of file content in tree `tree`.
fn tree_bytes(tx: &Connection, tree: Tree) -> FsResult<i64> {
    tx.prepare_cached(
        "SELECT coalesce(sum(size), 0) FROM inodes
         WHERE ino BETWEEN ?1 AND ?2 AND kind = 0 AND nlink > 0",
    )
    .and_then(|mut s| s.query_row([tree.root(), tree.last()], |r| r.get(0)))
    .map_err(|e| sql_error(root(), "measure a tree", e))
}

/// A new row of `trees`; its id.
fn new_tree(
    tx: &Connection,
    kind: i64,
    of: Tree,
    base: Option<i64>,
    name: &str,
    bytes: i64,
) -> FsResult<(Tree, i64)> {
    let now = now_ns();
    tx.prepare_cached(
        "INSERT INTO trees (kind, of, base, name, created, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![kind, of.0, base, name, now, bytes]))
    .map_err(|e| sql_error(root(), "add a tree", e))?;
    let id = tx.last_insert_rowid();
    if id > Tree::MAX_ID {
        return Err(FsError::backend(
            root(),
            "add a tree",
            "the database has made as many snapshots and branches as it can number",
        ));
    }
    Ok((Tree(id), now))
}

impl<C: Content> Store<C> {
    /// Whether `id` is a snapshot of this tree or of one of its branches.
    fn finds_snapshot(&self, conn: &Connection, id: SnapshotId) -> FsResult<Option<Tree>> {
        let Ok(id) = i64::try_from(id.0) else {
            return Ok(None);
        };
        conn.prepare_cached(
            "SELECT s.id FROM trees s WHERE s.id = ?1 AND s.kind = 1 AND (s.of = ?2
                 OR s.of IN (SELECT b.id FROM trees b WHERE b.kind = 2 AND b.of = ?2))",
        )
        .and_then(|mut s| s.query_row([id, self.tree.0], |r| r.get(0)).optional())
        .map(|found| found.map(Tree))
        .map_err(|e| sql_error(root(), "find a snapshot", e))
    }

    /// Whether snapshot `tree` is one this tree lists (taken of it).
    fn lists(&self, conn: &Connection, tree: Tree) -> FsResult<bool> {
        conn.prepare_cached("SELECT 1 FROM trees WHERE id = ?1 AND of = ?2")
            .and_then(|mut s| s.exists([tree.0, self.tree.0]))
            .map_err(|e| sql_error(root(), "find a snapshot", e))
    }

    /// Whether `id` is a branch of this tree.
    fn finds_branch(&self, conn: &Connection, id: BranchId) -> FsResult<Option<Tree>> {
        let Ok(id) = i64::try_from(id.0) else {
            return Ok(None);
        };
        conn.prepare_cached("SELECT id FROM trees WHERE id = ?1 AND kind = 2 AND of = ?2")
            .and_then(|mut s| s.query_row([id, self.tree.0], |r| r.get(0)).optional())
            .map(|found| found.map(Tree))
            .map_err(|e| sql_error(root(), "find a branch", e))
    }

    /// Deletes tree `tree` and its row, freeing content nothing else names.
    fn drop_tree(
        &self,
        tx: &Connection,
        tree: Tree,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        self.clear_tree(tx, tree, removals)?;
        tx.prepare_cached("DELETE FROM trees WHERE id = ?1")
            .and_then(|mut s| s.execute([tree.0]))
            .map_err(|e| sql_error(root(), "delete a tree", e))?;
        Ok(())
    }

    /// Deletes every row of tree `tree`, freeing content nothing else
    /// names.
    fn clear_tree(
        &self,
        tx: &Connection,
        tree: Tree,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        self.content
            .release_tree(tx, root(), (tree.root(), tree.last()), removals)?;
        let clear = || -> rusqlite::Result<()> {
            tx.prepare_cached("DELETE FROM entries WHERE parent BETWEEN ?1 AND ?2")?
                .execute([tree.root(), tree.last()])?;
            tx.prepare_cached("DELETE FROM inodes WHERE ino BETWEEN ?1 AND ?2")?
                .execute([tree.root(), tree.last()])?;
            Ok(())
        };
        clear().map_err(|e| sql_error(root(), "delete a tree", e))
    }

    /// Takes a snapshot of this tree.
    pub(crate) fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo> {
        self.db_write(root(), |tx, _| {
            let bytes = tree_bytes(tx, self.tree)?;
            let (snapshot, created) = new_tree(tx, SNAPSHOT, self.tree, None, name, bytes)?;
            copy_rows(tx, self.tree, snapshot)?;
            Ok(SnapshotInfo::new(
                SnapshotId(snapshot.0 as u64),
                name.to_owned(),
                from_ns(created),
                bytes as u64,
            ))
        })
    }

    /// This tree's snapshots, oldest first.
    pub(crate) fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, created, bytes FROM trees WHERE kind = 1 AND of = ?1 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map([self.tree.0], |r| {
                    Ok(SnapshotInfo::new(
                        SnapshotId(r.get::<_, i64>(0)? as u64),
                        r.get(1)?,
                        from_ns(r.get(2)?),
                        r.get::<_, i64>(3)? as u64,
                    ))
                })?
                .collect()
            })
            .map_err(|e| sql_error(root(), "list snapshots", e))
        })
    }

    /// A store over another tree of this database.
    fn sibling(&self, tree: Tree, frozen: bool) -> Arc<Self> {
        Self::on_tree(
            self.db.clone(),
            self.content.clone(),
            self.owner,
            tree,
            frozen,
        )
    }

    /// Snapshot `id`, read-only.
    pub(crate) fn open_snapshot(&self, id: SnapshotId) -> FsResult<Arc<Self>> {
        let tree = self
            .db
            .read(|conn| self.finds_snapshot(conn, id))?
            .ok_or_else(|| no_snapshot(id))?;
        Ok(self.sibling(tree, true))
    }

    /// Deletes snapshot `id`; `Conflict` while a branch counts from it.
    pub(crate) fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()> {
        self.db_write(root(), |tx, removals| {
            let tree = self
                .finds_snapshot(tx, id)?
                .ok_or_else(|| no_snapshot(id))?;
            let branch: Option<String> = tx
                .prepare_cached("SELECT name FROM trees WHERE kind = 2 AND base = ?1 LIMIT 1")
                .and_then(|mut s| s.query_row([tree.0], |r| r.get(0)).optional())
                .map_err(|e| sql_error(root(), "find a branch", e))?;
            if let Some(branch) = branch {
                return Err(FsError::conflict(
                    format!("/.snapshot/{id}"),
                    format!("branch {branch:?} counts its changes from this snapshot"),
                ));
            }
            self.drop_tree(tx, tree, removals)
        })
    }

    /// Puts snapshot `id`'s tree in place of this one. Refused while a
    /// handle or stream holds a node of it: the restored tree reuses inode
    /// numbers, and what is open would go on in another file.
    pub(crate) fn restore(&self, id: SnapshotId) -> FsResult<()> {
        self.db_write(root(), |tx, removals| {
            let snapshot = self
                .finds_snapshot(tx, id)?
                .ok_or_else(|| no_snapshot(id))?;
            if self.pins.any() {
                return Err(FsError::conflict(
                    root(),
                    "files of the workspace are open (handles, uploads or downloads): \
                     restore once they are closed",
                ));
            }
            self.clear_tree(tx, self.tree, removals)?;
            copy_rows(tx, snapshot, self.tree)
        })
    }

    /// A new branch of this tree, starting as snapshot `from` — one this
    /// tree lists (a branch's own snapshot, a merge's base, goes with its
    /// branch).
    pub(crate) fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo> {
        self.db_write(root(), |tx, _| {
            let snapshot = self
                .finds_snapshot(tx, from)?
                .filter(|s| self.lists(tx, *s).unwrap_or(false))
                .ok_or_else(|| no_snapshot(from))?;
            let (branch, created) = new_tree(tx, BRANCH, self.tree, Some(snapshot.0), name, 0)?;
            copy_rows(tx, snapshot, branch)?;
            Ok(BranchInfo::new(
                BranchId(branch.0 as u64),
                name.to_owned(),
                from,
                from_ns(created),
            ))
        })
    }

    /// This tree's branches, oldest first.
    pub(crate) fn branches(&self) -> FsResult<Vec<BranchInfo>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, base, created FROM trees WHERE kind = 2 AND of = ?1 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map([self.tree.0], |r| {
                    Ok(BranchInfo::new(
                        BranchId(r.get::<_, i64>(0)? as u64),
                        r.get(1)?,
                        SnapshotId(r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64),
                        from_ns(r.get(3)?),
                    ))
                })?
                .collect()
            })
            .map_err(|e| sql_error(root(), "list branches", e))
        })
    }

    /// Branch `id`, writable.
    pub(crate) fn open_branch(&self, id: BranchId) -> FsResult<Arc<Self>> {
        let tree = self
            .db
            .read(|conn| self.finds_branch(conn, id))?
            .ok_or_else(|| no_branch(id))?;
        Ok(self.sibling(tree, false))
    }

    /// Deletes branch `id` with its own snapshots.
    pub(crate) fn delete_branch(&self, id: BranchId) -> FsResult<()> {
        self.db_write(root(), |tx, removals| {
            let branch = self.finds_branch(tx, id)?.ok_or_else(|| no_branch(id))?;
            let own: Vec<i64> = tx
                .prepare_cached("SELECT id FROM trees WHERE of = ?1")
                .and_then(|mut s| s.query_map([branch.0], |r| r.get(0))?.collect())
                .map_err(|e| sql_error(root(), "find a branch's trees", e))?;
            // The branch first: its base may be one of its own snapshots.
            self.drop_tree(tx, branch, removals)?;
            for tree in own {
                self.drop_tree(tx, Tree(tree), removals)?;
            }
            Ok(())
        })
    }

    /// A snapshot of branch `id`, not listed with this tree's.
    pub(crate) fn snapshot_branch(&self, id: BranchId) -> FsResult<SnapshotId> {
        let branch = self.open_branch(id)?;
        Ok(branch.create_snapshot("merged")?.id)
    }

    /// Counts branch `id`'s changes from `base` from now on; its previous
    /// base goes if it was the branch's own snapshot.
    pub(crate) fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> FsResult<()> {
        self.db_write(root(), |tx, removals| {
            let branch = self.finds_branch(tx, id)?.ok_or_else(|| no_branch(id))?;
            let base = self
                .finds_snapshot(tx, base)?
                .ok_or_else(|| no_snapshot(base))?;
            let old: Option<i64> = tx
                .prepare_cached("SELECT base FROM trees WHERE id = ?1")
                .and_then(|mut s| s.query_row([branch.0], |r| r.get(0)))
                .map_err(|e| sql_error(root(), "move a branch's base", e))?;
            tx.prepare_cached("UPDATE trees SET base = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute([branch.0, base.0]))
                .map_err(|e| sql_error(root(), "move a branch's base", e))?;
            if let Some(old) = old
                && old != base.0
            {
                let own: bool = tx
                    .prepare_cached("SELECT 1 FROM trees WHERE id = ?1 AND of = ?2")
                    .and_then(|mut s| s.exists([old, branch.0]))
                    .map_err(|e| sql_error(root(), "move a branch's base", e))?;
                if own {
                    self.drop_tree(tx, Tree(old), removals)?;
                }
            }
            Ok(())
        })
    }
}
