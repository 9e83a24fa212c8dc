//! The SQL statements on the namespace tables (`inodes`, `entries`): each
//! function runs on the connection it is given, inside the caller's
//! transaction, and maps SQLite's errors to [`FsError`]s about `path`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyfs::path::{self as vpath, PathWalker, Step};
use anyfs::{FsError, FsResult};
use rusqlite::{Connection, OptionalExtension, params};

use super::node::{KIND_DIR, KIND_FILE, KIND_SYMLINK, NODE_COLUMNS, Node, Tree, node_from_row};
use crate::db::sql_error;

/// The node `ino`; `NotFound` (about `path`) if there is none.
pub(super) fn node(conn: &Connection, path: &Path, ino: i64) -> FsResult<Node> {
    conn.prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM inodes WHERE ino = ?1"))
        .and_then(|mut s| s.query_row([ino], node_from_row).optional())
        .map_err(|e| sql_error(path, "read a node", e))?
        .ok_or_else(|| FsError::not_found(path))
}

/// The inode and kind named `name` in the directory `parent`.
pub(super) fn child(
    conn: &Connection,
    path: &Path,
    parent: i64,
    name: &[u8],
) -> FsResult<Option<(i64, i64)>> {
    conn.prepare_cached(
        "SELECT e.ino, i.kind FROM entries e JOIN inodes i ON i.ino = e.ino
         WHERE e.parent = ?1 AND e.name = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![parent, name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(|e| sql_error(path, "look up a name", e))
}

/// The node `ino`, which must be a file: `IsADirectory` or, for a
/// symlink, `InvalidPath` otherwise.
pub(super) fn file(conn: &Connection, path: &Path, ino: i64) -> FsResult<Node> {
    let node = node(conn, path, ino)?;
    match node.kind {
        KIND_FILE => Ok(node),
        KIND_DIR => Err(FsError::is_a_directory(path)),
        _ => Err(vpath::crosses_symlink(path)),
    }
}

/// The file at a resolved path, following no link.
pub(super) fn file_at(conn: &Connection, tree: Tree, path: &Path) -> FsResult<Node> {
    file(conn, path, lookup(conn, tree, path)?)
}

/// The inode at a resolved path, following no link.
pub(super) fn lookup(conn: &Connection, tree: Tree, path: &Path) -> FsResult<i64> {
    let names = vpath::resolved_components(path)?;
    walk(conn, tree, path, &names)
}

/// The inode reached from the root through `names` (of `path`).
pub(super) fn walk(conn: &Connection, tree: Tree, path: &Path, names: &[&OsStr]) -> FsResult<i64> {
    walk_kind(conn, tree, path, names).map(|(ino, _)| ino)
}

/// Like [`walk`], also giving the kind of the node reached.
pub(super) fn walk_kind(
    conn: &Connection,
    tree: Tree,
    path: &Path,
    names: &[&OsStr],
) -> FsResult<(i64, i64)> {
    let mut ino = tree.root();
    let mut kind = KIND_DIR;
    for name in names {
        match kind {
            KIND_DIR => {}
            KIND_SYMLINK => {
                return Err(vpath::crosses_symlink(path));
            }
            _ => return Err(FsError::not_a_directory(path)),
        }
        (ino, kind) =
            child(conn, path, ino, name.as_bytes())?.ok_or_else(|| FsError::not_found(path))?;
    }
    Ok((ino, kind))
}

/// The directory a resolved path's last name lives in, and that name.
pub(super) fn slot<'p>(
    conn: &Connection,
    tree: Tree,
    path: &'p Path,
) -> FsResult<(i64, &'p OsStr)> {
    let names = vpath::resolved_components(path)?;
    let Some((name, parents)) = names.split_last() else {
        return Err(FsError::invalid_path(
            path,
            "the root cannot be created, removed or moved",
        ));
    };
    let (parent, kind) = walk_kind(conn, tree, path, parents)?;
    match kind {
        KIND_DIR => Ok((parent, name)),
        KIND_SYMLINK => Err(vpath::crosses_symlink(path)),
        _ => Err(FsError::not_a_directory(path)),
    }
}

/// A new node with no name yet (`nlink` 0): the caller links it.
pub(super) fn alloc(
    conn: &Connection,
    (tree, path): (Tree, &Path),
    kind: i64,
    mode: u32,
    owner: (u32, u32),
    target: Option<&[u8]>,
    now: i64,
) -> FsResult<i64> {
    let size = target.map_or(0, |t| t.len() as i64);
    conn.prepare_cached(
        "INSERT INTO inodes (ino, kind, mode, uid, gid, size, nlink, atime, mtime, ctime, btime, target)
         VALUES ((SELECT max(ino) + 1 FROM inodes WHERE ino BETWEEN ?8 AND ?9),
             ?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            kind,
            mode,
            owner.0,
            owner.1,
            size,
            now,
            target,
            tree.root(),
            tree.last()
        ])
    })
    .map_err(|e| sql_error(path, "create a node", e))?;
    numbered(path, tree, conn.last_insert_rowid())
}

/// Creates a file of `size` bytes (content to follow) named `name` in
/// `parent`: the node with its one name, in three statements.
pub(super) fn create_file(
    conn: &Connection,
    (tree, path): (Tree, &Path),
    parent: i64,
    name: &[u8],
    owner: (u32, u32),
    size: u64,
    now: i64,
) -> FsResult<i64> {
    let insert = || -> rusqlite::Result<i64> {
        conn.prepare_cached(
            "INSERT INTO inodes (ino, kind, mode, uid, gid, size, nlink, atime, mtime, ctime, btime)
             VALUES ((SELECT max(ino) + 1 FROM inodes WHERE ino BETWEEN ?7 AND ?8),
                 ?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?6, ?6)",
        )?
        .execute(params![
            KIND_FILE,
            0o644,
            owner.0,
            owner.1,
            size as i64,
            now,
            tree.root(),
            tree.last()
        ])?;
        let ino = conn.last_insert_rowid();
        conn.prepare_cached("INSERT INTO entries (parent, name, ino) VALUES (?1, ?2, ?3)")?
            .execute(params![parent, name, ino])?;
        conn.prepare_cached("UPDATE inodes SET mtime = ?2, ctime = ?2 WHERE ino = ?1")?
            .execute(params![parent, now])?;
        Ok(ino)
    };
    let ino = insert().map_err(|e| sql_error(path, "create a file", e))?;
    numbered(path, tree, ino)
}

/// A node just numbered: an error (rolling the change back) if it is not
/// a number of the tree — the tree has none left, or is gone (a deleted
/// branch has no root to number from).
fn numbered(path: &Path, tree: Tree, ino: i64) -> FsResult<i64> {
    if ino > tree.last() {
        return Err(FsError::backend(
            path,
            "create a node",
            "the tree has no inode number left",
        ));
    }
    if ino <= tree.root() {
        return Err(FsError::not_found(path));
    }
    Ok(ino)
}

/// Adds `name -> ino` to `parent`.
pub(super) fn link(
    conn: &Connection,
    path: &Path,
    parent: i64,
    name: &[u8],
    ino: i64,
    is_dir: bool,
    now: i64,
) -> FsResult<()> {
    let add_entry = || -> rusqlite::Result<()> {
        conn.prepare_cached("INSERT INTO entries (parent, name, ino) VALUES (?1, ?2, ?3)")?
            .execute(params![parent, name, ino])?;
        conn.prepare_cached("UPDATE inodes SET nlink = nlink + 1, ctime = ?2 WHERE ino = ?1")?
            .execute(params![ino, now])?;
        conn.prepare_cached(
            "UPDATE inodes SET subdirs = subdirs + ?2, mtime = ?3, ctime = ?3 WHERE ino = ?1",
        )?
        .execute(params![parent, is_dir as i64, now])?;
        Ok(())
    };
    add_entry().map_err(|e| sql_error(path, "add a name", e))
}

/// Removes the entry `name` from `parent`. Returns the node if this was
/// its last name (the caller frees it unless it is open).
pub(super) fn unlink(
    conn: &Connection,
    path: &Path,
    parent: i64,
    name: &[u8],
    now: i64,
) -> FsResult<Option<Node>> {
    let Some((ino, kind)) = child(conn, path, parent, name)? else {
        return Err(FsError::not_found(path));
    };
    let remove_entry = || -> rusqlite::Result<()> {
        conn.prepare_cached("DELETE FROM entries WHERE parent = ?1 AND name = ?2")?
            .execute(params![parent, name])?;
        conn.prepare_cached("UPDATE inodes SET nlink = nlink - 1, ctime = ?2 WHERE ino = ?1")?
            .execute(params![ino, now])?;
        conn.prepare_cached(
            "UPDATE inodes SET subdirs = subdirs - ?2, mtime = ?3, ctime = ?3 WHERE ino = ?1",
        )?
        .execute(params![parent, (kind == KIND_DIR) as i64, now])?;
        Ok(())
    };
    remove_entry().map_err(|e| sql_error(path, "remove a name", e))?;
    let node = node(conn, path, ino)?;
    Ok((node.nlink == 0).then_some(node))
}

/// Deletes the row of a node that has no name left.
pub(super) fn delete_inode(conn: &Connection, path: &Path, ino: i64) -> FsResult<()> {
    conn.prepare_cached("DELETE FROM inodes WHERE ino = ?1")
        .and_then(|mut s| s.execute([ino]))
        .map_err(|e| sql_error(path, "free a node", e))?;
    Ok(())
}

/// Sets a file's size and its modification and change times.
pub(super) fn set_size(
    conn: &Connection,
    path: &Path,
    ino: i64,
    size: u64,
    now: i64,
) -> FsResult<()> {
    conn.prepare_cached("UPDATE inodes SET size = ?2, mtime = ?3, ctime = ?3 WHERE ino = ?1")
        .and_then(|mut s| s.execute(params![ino, size as i64, now]))
        .map_err(|e| sql_error(path, "update a size", e))?;
    Ok(())
}

/// A directory's entries: name, inode and kind.
pub(super) fn entries(
    conn: &Connection,
    path: &Path,
    dir: i64,
) -> FsResult<Vec<(Vec<u8>, i64, i64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.name, e.ino, i.kind FROM entries e JOIN inodes i ON i.ino = e.ino
             WHERE e.parent = ?1",
        )
        .map_err(|e| sql_error(path, "list a directory", e))?;
    let rows = stmt
        .query_map([dir], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_error(path, "list a directory", e))?;
    Ok(rows)
}

/// Whether a directory has any entry.
pub(super) fn has_entries(conn: &Connection, path: &Path, dir: i64) -> FsResult<bool> {
    conn.prepare_cached("SELECT 1 FROM entries WHERE parent = ?1 LIMIT 1")
        .and_then(|mut s| s.exists([dir]))
        .map_err(|e| sql_error(path, "list a directory", e))
}

/// One path of a node (its first name, walking up to the root).
pub(super) fn path_of(conn: &Connection, tree: Tree, ino: i64) -> FsResult<PathBuf> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut cur = ino;
    let not_found = || FsError::inode_not_found(tree.local(ino));
    while cur != tree.root() {
        let row: Option<(i64, Vec<u8>)> = conn
            .prepare_cached("SELECT parent, name FROM entries WHERE ino = ?1 LIMIT 1")
            .and_then(|mut s| {
                s.query_row([cur], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| sql_error(Path::new("/"), "find a path", e))?;
        let (parent, name) = row.ok_or_else(not_found)?;
        names.push(name);
        cur = parent;
        if names.len() > 2048 {
            return Err(not_found());
        }
    }
    if ino == tree.root() && node(conn, Path::new("/"), ino).is_err() {
        return Err(not_found());
    }
    let mut out = Vec::new();
    for name in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(name);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

/// Whether `ino` is `ancestor` or lies beneath it.
pub(super) fn is_within(
    conn: &Connection,
    tree: Tree,
    path: &Path,
    mut ino: i64,
    ancestor: i64,
) -> FsResult<bool> {
    loop {
        if ino == ancestor {
            return Ok(true);
        }
        if ino == tree.root() {
            return Ok(false);
        }
        let parent: Option<i64> = conn
            .prepare_cached("SELECT parent FROM entries WHERE ino = ?1 LIMIT 1")
            .and_then(|mut s| s.query_row([ino], |r| r.get(0)).optional())
            .map_err(|e| sql_error(path, "find a parent", e))?;
        match parent {
            Some(p) => ino = p,
            None => return Ok(false),
        }
    }
}

/// Walks paths for [`anyfs::path::resolve`] inside one read transaction.
pub(super) struct SqlWalker<'c>(
    pub(super) &'c Connection,
    pub(super) Tree,
    pub(super) &'c Path,
);

impl PathWalker for SqlWalker<'_> {
    type Node = i64;
    fn root(&mut self) -> FsResult<i64> {
        Ok(self.1.root())
    }
    fn child(&mut self, dir: &i64, name: &OsStr) -> FsResult<Option<Step<i64>>> {
        let Some((ino, kind)) = child(self.0, self.2, *dir, name.as_bytes())? else {
            return Ok(None);
        };
        Ok(Some(match kind {
            KIND_DIR => Step::Dir(ino),
            KIND_SYMLINK => {
                let node = node(self.0, self.2, ino)?;
                Step::Symlink(PathBuf::from(OsString::from_vec(
                    node.target.unwrap_or_default(),
                )))
            }
            _ => Step::Other(ino),
        }))
    }
}
