//! The SQL on the tree: nodes ([`Node`]), entries (looked up by keyed
//! hash, names sealed), path walks, links and unlinks, sizes and the
//! workspace's usage. Every function runs inside the caller's transaction.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyfs::path::{self as vpath};
use anyfs::{FileType, FsError, Metadata, Permissions};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::reads::Reads;
use super::{ObjectBackend, Tx};

/// Every workspace's root directory.
pub(crate) const ROOT: i64 = 1;

// Node kinds, as `fs_nodes.kind` stores them: a regular file, a
// directory, a symbolic link.
pub(crate) const FILE: i16 = 0;
pub(crate) const DIR: i16 = 1;
pub(crate) const SYMLINK: i16 = 2;

/// The time now as stored: nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

/// `t` as nanoseconds since the Unix epoch, negative before it (saturating
/// some 292 years either side).
pub(crate) fn to_ns(t: SystemTime) -> i64 {
    let signed = |d: Duration, sign: i64| sign * i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    t.duration_since(UNIX_EPOCH).map_or_else(
        |before| signed(before.duration(), -1),
        |after| signed(after, 1),
    )
}

/// The time `ns` nanoseconds from the Unix epoch.
fn from_ns(ns: i64) -> SystemTime {
    let distance = Duration::from_nanos(ns.unsigned_abs());
    match ns < 0 {
        true => UNIX_EPOCH - distance,
        false => UNIX_EPOCH + distance,
    }
}

/// The owner new nodes get: this process's user and group.
pub(crate) fn process_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

/// One node's row.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) ino: i64,
    pub(crate) kind: i16,
    pub(crate) mode: i32,
    /// User and group ids.
    pub(crate) owner: (i64, i64),
    pub(crate) size: i64,
    pub(crate) nlink: i64,
    pub(crate) subdirs: i64,
    /// Access, modification, change and creation times, in nanoseconds.
    pub(crate) times: [i64; 4],
    /// A symlink's sealed target.
    pub(crate) target: Option<Vec<u8>>,
}

const NODE_COLUMNS: &str =
    "ino, kind, mode, uid, gid, size, nlink, subdirs, atime, mtime, ctime, btime, target";

fn node_from_row(r: &Row) -> Node {
    Node {
        ino: r.get(0),
        kind: r.get(1),
        mode: r.get(2),
        owner: (r.get(3), r.get(4)),
        size: r.get(5),
        nlink: r.get(6),
        subdirs: r.get(7),
        times: [r.get(8), r.get(9), r.get(10), r.get(11)],
        target: r.get(12),
    }
}

/// The file type a node kind stands for.
pub(crate) fn file_type(kind: i16) -> FileType {
    match kind {
        DIR => FileType::Directory,
        SYMLINK => FileType::Symlink,
        _ => FileType::File,
    }
}

impl Node {
    /// The node as [`Metadata`].
    pub(crate) fn metadata(&self) -> Metadata {
        Metadata {
            file_type: file_type(self.kind),
            len: self.size as u64,
            permissions: Permissions::from_mode(self.mode as u32),
            inode: self.ino as u64,
            nlink: if self.kind == DIR {
                2 + self.subdirs as u64
            } else {
                self.nlink as u64
            },
            uid: self.owner.0 as u32,
            gid: self.owner.1 as u32,
            accessed: from_ns(self.times[0]),
            modified: from_ns(self.times[1]),
            changed: from_ns(self.times[2]),
            created: from_ns(self.times[3]),
        }
    }

    /// The node, which must be a file: `IsADirectory` or, for a symlink,
    /// `InvalidPath` about `path` otherwise.
    pub(crate) fn into_file(self, path: &Path) -> Tx<Node> {
        match self.kind {
            FILE => Ok(self),
            DIR => Err(FsError::is_a_directory(path).into()),
            _ => Err(vpath::crosses_symlink(path).into()),
        }
    }
}

/// Makes the root directory of a new workspace.
pub(crate) async fn create_root(
    tx: &Transaction<'_>,
    workspace: i64,
    owner: (u32, u32),
    now: i64,
) -> Tx<()> {
    tx.execute(
        "INSERT INTO fs_nodes (workspace, ino, kind, mode, uid, gid, nlink, atime, mtime, ctime, btime)
         VALUES ($1, $2, $3, 493, $4, $5, 1, $6, $6, $6, $6)",
        &[&workspace, &ROOT, &DIR, &i64::from(owner.0), &i64::from(owner.1), &now],
    )
    .await?;
    Ok(())
}

impl ObjectBackend {
    /// Node `ino`; `NotFound` about `path` if there is none.
    pub(crate) async fn node_in(&self, tx: &impl Reads, path: &Path, ino: i64) -> Tx<Node> {
        tx.node(self, path, ino).await
    }

    /// The inode and kind named `name` in directory `parent`.
    pub(crate) async fn child(
        &self,
        tx: &impl Reads,
        parent: i64,
        name: &[u8],
    ) -> Tx<Option<(i64, i16)>> {
        tx.child(self, parent, name).await
    }

    /// [`Self::child`], from the database.
    pub(crate) async fn child_row(
        &self,
        tx: &impl GenericClient,
        parent: i64,
        name: &[u8],
    ) -> Tx<Option<(i64, i16)>> {
        let key = self.names.lookup_key(self.scope, parent, name);
        let stmt = tx
            .prepare_cached(
                "SELECT e.ino, n.kind FROM fs_entries e
                 JOIN fs_nodes n ON n.workspace = e.workspace AND n.ino = e.ino
                 WHERE e.workspace = $1 AND e.parent = $2 AND e.name_key = $3",
            )
            .await?;
        let row = tx
            .query_opt(&stmt, &[&self.workspace, &parent, &key])
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// The inode and kind reached from the root through `names` (of
    /// `path`), following no link.
    pub(crate) async fn walk(
        &self,
        tx: &impl Reads,
        path: &Path,
        names: &[&OsStr],
    ) -> Tx<(i64, i16)> {
        let (mut ino, mut kind) = (ROOT, DIR);
        for name in names {
            match kind {
                DIR => {}
                SYMLINK => return Err(vpath::crosses_symlink(path).into()),
                _ => return Err(FsError::not_a_directory(path).into()),
            }
            (ino, kind) = self
                .child(tx, ino, name.as_bytes())
                .await?
                .ok_or_else(|| FsError::not_found(path))?;
        }
        Ok((ino, kind))
    }

    /// The node at a resolved path, following no link.
    pub(crate) async fn lookup(&self, tx: &impl Reads, path: &Path) -> Tx<Node> {
        let names = vpath::resolved_components(path)?;
        let (ino, _) = self.walk(tx, path, &names).await?;
        self.node_in(tx, path, ino).await
    }

    /// The directory a resolved path's last name lives in, and that name.
    pub(crate) async fn slot<'p>(&self, tx: &impl Reads, path: &'p Path) -> Tx<(i64, &'p OsStr)> {
        let names = vpath::resolved_components(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(FsError::invalid_path(
                path,
                "the root cannot be created, removed or moved",
            )
            .into());
        };
        let (parent, kind) = self.walk(tx, path, parents).await?;
        match kind {
            DIR => Ok((parent, name)),
            SYMLINK => Err(vpath::crosses_symlink(path).into()),
            _ => Err(FsError::not_a_directory(path).into()),
        }
    }

    /// A new node with no name yet (`nlink` 0): the caller links it.
    pub(crate) async fn alloc(
        &self,
        tx: &Transaction<'_>,
        kind: i16,
        mode: i32,
        (uid, gid): (i64, i64),
        now: i64,
    ) -> Tx<i64> {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO fs_nodes (workspace, ino, kind, mode, uid, gid, atime, mtime, ctime, btime)
                 VALUES ($1, nextval('fs_inode_numbers'), $2, $3, $4, $5, $6, $6, $6, $6)
                 RETURNING ino",
            )
            .await?;
        let row = tx
            .query_one(&stmt, &[&self.workspace, &kind, &mode, &uid, &gid, &now])
            .await?;
        Ok(row.get(0))
    }

    /// The owner new nodes get, as stored.
    pub(crate) fn owner_ids(&self) -> (i64, i64) {
        (i64::from(self.owner.0), i64::from(self.owner.1))
    }

    /// Adds `name -> ino` to `parent`.
    pub(crate) async fn link(
        &self,
        tx: &Transaction<'_>,
        parent: i64,
        name: &[u8],
        ino: i64,
        is_dir: bool,
        now: i64,
    ) -> Tx<()> {
        let key = self.names.lookup_key(self.scope, parent, name);
        let sealed = self.names.seal_name(&key, name)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO fs_entries (workspace, parent, name_key, name, ino)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        tx.execute(&insert, &[&self.workspace, &parent, &key, &sealed, &ino])
            .await?;
        let counts = tx
            .prepare_cached(
                "UPDATE fs_nodes SET nlink = nlink + 1, ctime = $3 WHERE workspace = $1 AND ino = $2",
            )
            .await?;
        tx.execute(&counts, &[&self.workspace, &ino, &now]).await?;
        self.touch_dir(tx, parent, i64::from(is_dir), now).await
    }

    /// Sets a directory's times to `now`, and adds `subdirs` to its count
    /// of directories.
    async fn touch_dir(&self, tx: &Transaction<'_>, dir: i64, subdirs: i64, now: i64) -> Tx<()> {
        let stmt = tx
            .prepare_cached(
                "UPDATE fs_nodes SET subdirs = subdirs + $3, mtime = $4, ctime = $4
                 WHERE workspace = $1 AND ino = $2",
            )
            .await?;
        tx.execute(&stmt, &[&self.workspace, &dir, &subdirs, &now])
            .await?;
        Ok(())
    }

    /// Removes entry `name` from `parent`; returns the node if that was its
    /// last name (the caller frees it unless it is open).
    pub(crate) async fn unlink(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        parent: i64,
        name: &[u8],
        now: i64,
    ) -> Tx<Option<Node>> {
        let key = self.names.lookup_key(self.scope, parent, name);
        let stmt = tx
            .prepare_cached(
                "DELETE FROM fs_entries WHERE workspace = $1 AND parent = $2 AND name_key = $3
                 RETURNING ino",
            )
            .await?;
        let ino: i64 = tx
            .query_opt(&stmt, &[&self.workspace, &parent, &key])
            .await?
            .ok_or_else(|| FsError::not_found(path))?
            .get(0);
        let stmt = tx
            .prepare_cached(&format!(
                "UPDATE fs_nodes SET nlink = nlink - 1, ctime = $3 WHERE workspace = $1 AND ino = $2
                 RETURNING {NODE_COLUMNS}"
            ))
            .await?;
        let node = node_from_row(&tx.query_one(&stmt, &[&self.workspace, &ino, &now]).await?);
        self.touch_dir(tx, parent, -i64::from(node.kind == DIR), now)
            .await?;
        Ok((node.nlink == 0).then_some(node))
    }

    /// Frees a node with no name left (its content, its row, its bytes
    /// in the usage) unless this process holds it open.
    pub(crate) async fn free_unless_pinned(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        gone: Option<Node>,
    ) -> Tx<()> {
        match gone {
            Some(node) if !self.is_pinned(node.ino) => self.free(tx, path, &node).await,
            _ => Ok(()),
        }
    }

    /// Frees a node with no name left.
    pub(crate) async fn free(&self, tx: &Transaction<'_>, path: &Path, node: &Node) -> Tx<()> {
        if node.kind == FILE {
            self.drop_content(tx, node.ino).await?;
            self.add_usage(tx, path, -node.size).await?;
        }
        let stmt = tx
            .prepare_cached("DELETE FROM fs_nodes WHERE workspace = $1 AND ino = $2")
            .await?;
        tx.execute(&stmt, &[&self.workspace, &node.ino]).await?;
        Ok(())
    }

    /// Sets a file's size and its modification and change times, and
    /// counts the difference in the workspace's usage.
    pub(crate) async fn set_size(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        node: &Node,
        size: i64,
        now: i64,
    ) -> Tx<()> {
        self.add_usage(tx, path, size - node.size).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE fs_nodes SET size = $3, mtime = $4, ctime = $4 WHERE workspace = $1 AND ino = $2",
            )
            .await?;
        tx.execute(&stmt, &[&self.workspace, &node.ino, &size, &now])
            .await?;
        Ok(())
    }

    /// Adds `delta` bytes to the workspace's usage: growth past the limit
    /// fails with `QuotaExceeded` (and, the transaction rolled back,
    /// changes nothing).
    pub(crate) async fn add_usage(&self, tx: &Transaction<'_>, path: &Path, delta: i64) -> Tx<()> {
        if delta == 0 {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE fs_workspaces SET used_bytes = used_bytes + $2::bigint
                 WHERE id = $1
                   AND ($2::bigint <= 0 OR limit_bytes IS NULL OR used_bytes + $2::bigint <= limit_bytes)
                 RETURNING used_bytes",
            )
            .await?;
        if tx
            .query_opt(&stmt, &[&self.workspace, &delta])
            .await?
            .is_some()
        {
            return Ok(());
        }
        let row = tx
            .query_one(
                "SELECT used_bytes, coalesce(limit_bytes, 0) FROM fs_workspaces WHERE id = $1",
                &[&self.workspace],
            )
            .await?;
        let (used, limit): (i64, i64) = (row.get(0), row.get(1));
        Err(FsError::quota_exceeded(path, limit as u64, delta as u64, used as u64).into())
    }

    /// The entries of directory `dir` (of `path`): name, inode and kind.
    pub(crate) async fn entries(
        &self,
        tx: &impl GenericClient,
        path: &Path,
        dir: i64,
    ) -> Tx<Vec<(Vec<u8>, i64, i16)>> {
        let stmt = tx
            .prepare_cached(
                "SELECT e.name_key, e.name, e.ino, n.kind FROM fs_entries e
                 JOIN fs_nodes n ON n.workspace = e.workspace AND n.ino = e.ino
                 WHERE e.workspace = $1 AND e.parent = $2",
            )
            .await?;
        let rows = tx.query(&stmt, &[&self.workspace, &dir]).await?;
        rows.iter()
            .map(|r| {
                let key: &[u8] = r.get(0);
                let name = self.names.open_name(path, key, r.get(1))?;
                Ok((name, r.get(2), r.get(3)))
            })
            .collect()
    }

    /// Whether directory `dir` has any entry.
    pub(crate) async fn has_entries(&self, tx: &impl GenericClient, dir: i64) -> Tx<bool> {
        let stmt = tx
            .prepare_cached("SELECT 1 FROM fs_entries WHERE workspace = $1 AND parent = $2 LIMIT 1")
            .await?;
        Ok(tx
            .query_opt(&stmt, &[&self.workspace, &dir])
            .await?
            .is_some())
    }

    /// One name of node `ino` and the directory it is in, if it has one.
    pub(crate) async fn name_of(
        &self,
        tx: &impl GenericClient,
        ino: i64,
    ) -> Tx<Option<(i64, Vec<u8>)>> {
        let stmt = tx
            .prepare_cached(
                "SELECT parent, name_key, name FROM fs_entries WHERE workspace = $1 AND ino = $2 LIMIT 1",
            )
            .await?;
        match tx.query_opt(&stmt, &[&self.workspace, &ino]).await? {
            Some(r) => {
                let key: &[u8] = r.get(1);
                let name = self.names.open_name(Path::new("/"), key, r.get(2))?;
                Ok(Some((r.get(0), name)))
            }
            None => Ok(None),
        }
    }
}

/// Node `ino` of `workspace`; `NotFound` about `path` if there is none.
pub(crate) async fn node(
    tx: &impl GenericClient,
    path: &Path,
    workspace: i64,
    ino: i64,
) -> Tx<Node> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {NODE_COLUMNS} FROM fs_nodes WHERE workspace = $1 AND ino = $2"
        ))
        .await?;
    tx.query_opt(&stmt, &[&workspace, &ino])
        .await?
        .map(|r| node_from_row(&r))
        .ok_or_else(|| FsError::not_found(path).into())
}
