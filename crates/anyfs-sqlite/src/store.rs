//! The namespace both backends share: inodes and directory entries in
//! SQLite, every operation one transaction. Where file content lives is the
//! [`Content`]'s business (chunks in the database, or blob files).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyfs::path::{self as vpath, PathWalker, Step};
use anyfs::{
    DirEntry, FileType, FileWriter, FsDir, FsError, FsErrorKind, FsHandles, FsInode, FsLink,
    FsPermissions, FsRead, FsReader, FsResult, FsStats, FsSync, FsWrite, FsWriter, Handle,
    Metadata, OpenFlags, Permissions, ReadDir, StatFs,
};
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::{After, Db, sql_error};

pub(crate) const ROOT: i64 = 1;
const KIND_FILE: i64 = 0;
const KIND_DIR: i64 = 1;
const KIND_SYMLINK: i64 = 2;

pub(crate) fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
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

/// What a file's content store needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct FileRow {
    pub(crate) ino: i64,
    pub(crate) size: u64,
    pub(crate) blob: Option<String>,
}

/// Where file content lives. Every method runs inside the caller's
/// transaction and updates the `size` (and `blob`) of the inode itself.
pub(crate) trait Content: Send + Sync + 'static {
    /// Bytes `offset .. offset + len` of the file, stopping at its end.
    fn read(
        &self,
        conn: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>>;
    /// Replaces the whole content.
    fn replace(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        data: &[u8],
        after: &mut After,
    ) -> FsResult<()>;
    /// Writes `data` at `offset` (zeros fill any gap).
    fn write_at(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        data: &[u8],
        after: &mut After,
    ) -> FsResult<()>;
    /// Writes each range in order (zeros fill any gap). The provided
    /// method suits stores whose `write_at` leaves the content where it is.
    fn write_ranges(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        ranges: &[(u64, &[u8])],
        after: &mut After,
    ) -> FsResult<()> {
        ranges
            .iter()
            .try_for_each(|(offset, data)| self.write_at(tx, path, file, *offset, data, after))
    }
    /// Cuts or extends (with zeros) to `size`.
    fn truncate(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        size: u64,
        after: &mut After,
    ) -> FsResult<()>;
    /// Makes `dst`'s content a copy of `src`'s.
    fn copy(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        after: &mut After,
    ) -> FsResult<()>;
    /// Moves `src`'s content to `dst`, replacing `dst`'s: `src` is left
    /// with none. Sizes are the caller's to set.
    fn adopt(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        after: &mut After,
    ) -> FsResult<()>;
    /// Frees the content of a file that no longer exists.
    fn remove(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        after: &mut After,
    ) -> FsResult<()>;
    /// The largest file this store holds, in bytes.
    fn max_len(&self) -> u64;
    /// Reads a file by inode in one statement (its own snapshot), for the
    /// cached fast path: `None` if this store cannot, `Some(Ok(None))` if
    /// the inode is no longer a file.
    fn read_by_ino(
        &self,
        conn: &Connection,
        path: &Path,
        ino: i64,
        offset: u64,
        len: usize,
    ) -> Option<FsResult<Option<Vec<u8>>>> {
        let _ = (conn, path, ino, offset, len);
        None
    }
    /// How many bytes one streamed read should fetch at a time.
    fn read_block(&self) -> usize {
        64 * 1024
    }
}

/// One node's row.
#[derive(Debug, Clone)]
struct Node {
    ino: i64,
    kind: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    subdirs: u64,
    atime: i64,
    mtime: i64,
    ctime: i64,
    btime: i64,
    target: Option<Vec<u8>>,
    blob: Option<String>,
}

impl Node {
    fn file_type(&self) -> FileType {
        match self.kind {
            KIND_DIR => FileType::Directory,
            KIND_SYMLINK => FileType::Symlink,
            _ => FileType::File,
        }
    }
    fn metadata(&self) -> Metadata {
        Metadata {
            file_type: self.file_type(),
            len: self.size,
            permissions: Permissions::from_mode(self.mode),
            inode: self.ino as u64,
            nlink: if self.kind == KIND_DIR {
                2 + self.subdirs
            } else {
                self.nlink
            },
            uid: self.uid,
            gid: self.gid,
            accessed: from_ns(self.atime),
            modified: from_ns(self.mtime),
            changed: from_ns(self.ctime),
            created: from_ns(self.btime),
        }
    }
    fn file(&self) -> FileRow {
        FileRow {
            ino: self.ino,
            size: self.size,
            blob: self.blob.clone(),
        }
    }
}

const NODE_COLUMNS: &str =
    "ino, kind, mode, uid, gid, size, nlink, subdirs, atime, mtime, ctime, btime, target, blob";

fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        ino: r.get(0)?,
        kind: r.get(1)?,
        mode: r.get(2)?,
        uid: r.get(3)?,
        gid: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        nlink: r.get::<_, i64>(6)? as u64,
        subdirs: r.get::<_, i64>(7)? as u64,
        atime: r.get(8)?,
        mtime: r.get(9)?,
        ctime: r.get(10)?,
        btime: r.get(11)?,
        target: r.get(12)?,
        blob: r.get(13)?,
    })
}

/// An open handle.
#[derive(Debug, Clone)]
struct OpenFile {
    ino: i64,
    path: PathBuf,
    flags: OpenFlags,
}

/// The shared backend: a database and a content store.
/// The store behind [`SqliteBackend`](crate::SqliteBackend) and
/// [`IndexedBackend`](crate::IndexedBackend), with contents kept by `C`.
pub struct Store<C> {
    /// The `Arc` this store lives in, for streams that outlive a call.
    me: Weak<Store<C>>,
    pub(crate) db: Db,
    pub(crate) content: C,
    /// Open handles and streams per inode: an unlinked file lives on until
    /// the last is closed.
    open: Mutex<HashMap<i64, u32>>,
    handles: Mutex<HashMap<u64, OpenFile>>,
    next_handle: AtomicU64,
    owner: (u32, u32),
    /// Resolved paths already looked up, valid for one write generation.
    paths: RwLock<PathCache>,
}

/// Resolved path -> (inode, kind), as of one write generation of the
/// database: any write makes the whole cache stale, so an entry can never
/// name something that changed (this process owns the database).
#[derive(Default)]
struct PathCache {
    generation: u64,
    map: HashMap<Box<[u8]>, (i64, i64)>,
}

const PATH_CACHE_LIMIT: usize = 1 << 16;

/// Transaction helpers: every function takes the connection it runs on.
mod q {
    use super::*;

    pub(super) fn node(conn: &Connection, path: &Path, ino: i64) -> FsResult<Node> {
        conn.prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM inodes WHERE ino = ?1"))
            .and_then(|mut s| s.query_row([ino], node_from_row).optional())
            .map_err(|e| sql_error(path, "read a node", e))?
            .ok_or_else(|| FsError::not_found(path))
    }

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

    /// The inode at a resolved path, following no link.
    pub(super) fn lookup(conn: &Connection, path: &Path) -> FsResult<i64> {
        let names = vpath::resolved_components(path)?;
        walk(conn, path, &names)
    }

    pub(super) fn walk(conn: &Connection, path: &Path, names: &[&OsStr]) -> FsResult<i64> {
        walk_kind(conn, path, names).map(|(ino, _)| ino)
    }

    /// Like [`walk`], also giving the kind of the node reached.
    pub(super) fn walk_kind(
        conn: &Connection,
        path: &Path,
        names: &[&OsStr],
    ) -> FsResult<(i64, i64)> {
        let mut ino = ROOT;
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
    pub(super) fn slot<'p>(conn: &Connection, path: &'p Path) -> FsResult<(i64, &'p OsStr)> {
        let names = vpath::resolved_components(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(FsError::invalid_path(
                path,
                "the root cannot be created, removed or moved",
            ));
        };
        let (parent, kind) = walk_kind(conn, path, parents)?;
        match kind {
            KIND_DIR => Ok((parent, name)),
            KIND_SYMLINK => Err(vpath::crosses_symlink(path)),
            _ => Err(FsError::not_a_directory(path)),
        }
    }

    pub(super) fn alloc(
        conn: &Connection,
        path: &Path,
        kind: i64,
        mode: u32,
        owner: (u32, u32),
        target: Option<&[u8]>,
        now: i64,
    ) -> FsResult<i64> {
        let size = target.map_or(0, |t| t.len() as i64);
        conn.prepare_cached(
            "INSERT INTO inodes (kind, mode, uid, gid, size, nlink, atime, mtime, ctime, btime, target)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6, ?6, ?7)",
        )
        .and_then(|mut s| s.execute(params![kind, mode, owner.0, owner.1, size, now, target]))
        .map_err(|e| sql_error(path, "create a node", e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Creates a file of `size` bytes (content to follow) named `name` in
    /// `parent`: the node with its one name, in three statements.
    pub(super) fn create_file(
        conn: &Connection,
        path: &Path,
        parent: i64,
        name: &[u8],
        owner: (u32, u32),
        size: u64,
        now: i64,
    ) -> FsResult<i64> {
        let run =
            || -> rusqlite::Result<i64> {
                conn.prepare_cached(
                "INSERT INTO inodes (kind, mode, uid, gid, size, nlink, atime, mtime, ctime, btime)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?6, ?6)",
            )?
            .execute(params![KIND_FILE, 0o644, owner.0, owner.1, size as i64, now])?;
                let ino = conn.last_insert_rowid();
                conn.prepare_cached("INSERT INTO entries (parent, name, ino) VALUES (?1, ?2, ?3)")?
                    .execute(params![parent, name, ino])?;
                conn.prepare_cached("UPDATE inodes SET mtime = ?2, ctime = ?2 WHERE ino = ?1")?
                    .execute(params![parent, now])?;
                Ok(ino)
            };
        run().map_err(|e| sql_error(path, "create a file", e))
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
        let run = || -> rusqlite::Result<()> {
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
        run().map_err(|e| sql_error(path, "add a name", e))
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
        let run = || -> rusqlite::Result<()> {
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
        run().map_err(|e| sql_error(path, "remove a name", e))?;
        let node = node(conn, path, ino)?;
        Ok((node.nlink == 0).then_some(node))
    }

    pub(super) fn delete_inode(conn: &Connection, path: &Path, ino: i64) -> FsResult<()> {
        conn.prepare_cached("DELETE FROM inodes WHERE ino = ?1")
            .and_then(|mut s| s.execute([ino]))
            .map_err(|e| sql_error(path, "free a node", e))?;
        Ok(())
    }

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

    pub(super) fn has_entries(conn: &Connection, path: &Path, dir: i64) -> FsResult<bool> {
        conn.prepare_cached("SELECT 1 FROM entries WHERE parent = ?1 LIMIT 1")
            .and_then(|mut s| s.exists([dir]))
            .map_err(|e| sql_error(path, "list a directory", e))
    }

    /// One path of a node (its first name, walking up to the root).
    pub(super) fn path_of(conn: &Connection, ino: i64) -> FsResult<PathBuf> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cur = ino;
        let not_found = || FsError::inode_not_found(ino as u64);
        while cur != ROOT {
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
        if ino == ROOT && node(conn, Path::new("/"), ROOT).is_err() {
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
        path: &Path,
        mut ino: i64,
        ancestor: i64,
    ) -> FsResult<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT {
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
}

/// Walks paths for [`anyfs::path::resolve`] inside one read transaction.
struct SqlWalker<'c>(&'c Connection, &'c Path);

impl PathWalker for SqlWalker<'_> {
    type Node = i64;
    fn root(&mut self) -> FsResult<i64> {
        Ok(ROOT)
    }
    fn child(&mut self, dir: &i64, name: &OsStr) -> FsResult<Option<Step<i64>>> {
        let Some((ino, kind)) = q::child(self.0, self.1, *dir, name.as_bytes())? else {
            return Ok(None);
        };
        Ok(Some(match kind {
            KIND_DIR => Step::Dir(ino),
            KIND_SYMLINK => {
                let node = q::node(self.0, self.1, ino)?;
                Step::Symlink(PathBuf::from(OsString::from_vec(
                    node.target.unwrap_or_default(),
                )))
            }
            _ => Step::Other(ino),
        }))
    }
}

impl<C> std::fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl<C: Content> Store<C> {
    pub(crate) fn new(db: Db, content: C, owner: (u32, u32)) -> FsResult<Arc<Self>> {
        let store = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            db,
            content,
            open: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            owner,
            paths: RwLock::new(PathCache::default()),
        });
        store.free_orphans()?;
        Ok(store)
    }

    fn me(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("a store is only used through its Arc")
    }

    /// Frees nodes left without a name by a crash while they were open.
    fn free_orphans(&self) -> FsResult<()> {
        let root = Path::new("/");
        self.db.write(root, |tx, after| {
            let orphans: Vec<Node> = tx
                .prepare(&format!(
                    "SELECT {NODE_COLUMNS} FROM inodes WHERE nlink = 0 AND ino != 1"
                ))
                .and_then(|mut s| s.query_map([], node_from_row)?.collect())
                .map_err(|e| sql_error(root, "find orphans", e))?;
            for node in orphans {
                self.free(tx, root, &node, after)?;
            }
            Ok(())
        })
    }

    fn free(&self, tx: &Connection, path: &Path, node: &Node, after: &mut After) -> FsResult<()> {
        if node.kind == KIND_FILE {
            self.content.remove(tx, path, &node.file(), after)?;
        }
        q::delete_inode(tx, path, node.ino)
    }

    /// After the last name of a node went away: free it unless it is open.
    fn release(
        &self,
        tx: &Connection,
        path: &Path,
        gone: Option<Node>,
        after: &mut After,
    ) -> FsResult<()> {
        if let Some(node) = gone
            && !self.open.lock().contains_key(&node.ino)
        {
            self.free(tx, path, &node, after)?;
        }
        Ok(())
    }

    fn file_node(tx: &Connection, path: &Path, ino: i64) -> FsResult<Node> {
        let node = q::node(tx, path, ino)?;
        match node.kind {
            KIND_FILE => Ok(node),
            KIND_DIR => Err(FsError::is_a_directory(path)),
            _ => Err(vpath::crosses_symlink(path)),
        }
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
        let (parent, name) = q::slot(tx, path)?;
        match q::child(tx, path, parent, name.as_bytes())? {
            Some((ino, _)) => Self::file_node(tx, path, ino).map(|node| (node, false)),
            None => {
                let ino = q::create_file(tx, path, parent, name.as_bytes(), self.owner, size, now)?;
                // What was just written, without reading it back; its
                // content is still to come (size 0 for the content store).
                let node = Node {
                    ino,
                    kind: KIND_FILE,
                    mode: 0o644,
                    uid: self.owner.0,
                    gid: self.owner.1,
                    size: 0,
                    nlink: 1,
                    subdirs: 0,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    btime: now,
                    target: None,
                    blob: None,
                };
                Ok((node, true))
            }
        }
    }

    fn retain(&self, ino: i64) {
        *self.open.lock().entry(ino).or_insert(0) += 1;
    }

    /// Drops one open reference; frees the node if it was the last and the
    /// node has no name left.
    fn unretain(&self, path: &Path, ino: i64) -> FsResult<()> {
        let last = {
            let mut open = self.open.lock();
            match open.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    open.remove(&ino);
                    true
                }
                None => false,
            }
        };
        if last {
            self.db.write(path, |tx, after| {
                if let Ok(node) = q::node(tx, path, ino)
                    && node.nlink == 0
                {
                    self.free(tx, path, &node, after)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// What a resolved path was when looked up, and the write generation
    /// that holds for (reads by inode must use a snapshot of it).
    fn cached(&self, path: &Path) -> Option<(i64, i64, u64)> {
        let cache = self.paths.read();
        if cache.generation != self.db.generation() {
            return None;
        }
        let (ino, kind) = cache.map.get(path.as_os_str().as_bytes()).copied()?;
        Some((ino, kind, cache.generation))
    }

    /// Remembers a lookup made when the database was at `generation`.
    fn remember(&self, path: &Path, generation: u64, ino: i64, kind: i64) {
        let mut cache = self.paths.write();
        if self.db.generation() != generation {
            return;
        }
        if cache.generation != generation || cache.map.len() >= PATH_CACHE_LIMIT {
            cache.map.clear();
            cache.generation = generation;
        }
        cache
            .map
            .insert(path.as_os_str().as_bytes().into(), (ino, kind));
    }

    /// The inode at a resolved path: from the cache, or looked up (and
    /// remembered) in `conn`'s snapshot.
    fn lookup_remembered(
        &self,
        conn: &Connection,
        path: &Path,
        tag: Option<u64>,
    ) -> FsResult<(i64, Node)> {
        let ino = q::lookup(conn, path)?;
        let node = q::node(conn, path, ino)?;
        if let Some(generation) = tag {
            self.remember(path, generation, ino, node.kind);
        }
        Ok((ino, node))
    }

    fn read_file(&self, path: &Path, offset: u64, len: Option<usize>) -> FsResult<Vec<u8>> {
        if let Some((ino, KIND_FILE, generation)) = self.cached(path) {
            let want = len.unwrap_or(usize::MAX);
            if let Some(Some(found)) = self.db.read_at(Some(generation), |conn, _| {
                self.content.read_by_ino(conn, path, ino, offset, want)
            }) && let Some(data) = found?
            {
                return Ok(data);
            }
        }
        let read = |conn: &Connection, tag: Option<u64>| {
            let (_, node) = self.lookup_remembered(conn, path, tag)?;
            let node = match node.kind {
                KIND_FILE => node,
                _ => Self::file_node(conn, path, node.ino)?,
            };
            let len = len.unwrap_or(usize::try_from(node.size).unwrap_or(usize::MAX));
            self.content.read(conn, path, &node.file(), offset, len)
        };
        retry_conflicts(
            || self.db.read_tagged(path, read),
            || self.db.with_writer(|conn| read(conn, None)),
        )
    }
}

impl<C: Content> FsRead for Store<C> {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.read_file(path, 0, None)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.read_file(path, offset, Some(len))
    }

    fn exists(&self, path: &Path) -> FsResult<bool> {
        self.db.read(path, |conn| match q::lookup(conn, path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_absent() => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        if let Some((ino, _, generation)) = self.cached(path)
            && let Some(Ok(node)) = self
                .db
                .read_at(Some(generation), |conn, _| q::node(conn, path, ino))
        {
            return Ok(node.metadata());
        }
        self.db.read_tagged(path, |conn, tag| {
            Ok(self.lookup_remembered(conn, path, tag)?.1.metadata())
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        // Resolve and pin the file; its content is then read block by block
        // from a snapshot, in constant memory.
        let (file, path) = self.db.read(path, |conn| {
            let ino = q::lookup(conn, path)?;
            Ok((Self::file_node(conn, path, ino)?.file(), path.to_path_buf()))
        })?;
        self.retain(file.ino);
        Ok(Box::new(StoreReader {
            store: self.me(),
            file,
            path,
            pos: 0,
            buf: Vec::new(),
            buf_pos: 0,
        }))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: vpath::Visit<'_>,
    ) -> FsResult<PathBuf> {
        // A path looked up before, in normal form and not a symlink that
        // would be followed, resolves to itself.
        if let Ok(std::borrow::Cow::Borrowed(_)) = vpath::resolved_normal_form(path)
            && let Some((_, kind, _)) = self.cached(path)
            && (kind != KIND_SYMLINK || !follow_last)
        {
            return Ok(path.to_path_buf());
        }
        self.db.read(path, |conn| {
            vpath::resolve_visiting(path, follow_last, &mut SqlWalker(conn, path), visit)
        })
    }
}

impl<C: Content> Store<C> {
    /// Reads part of a pinned file for a stream.
    fn read_block(
        &self,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>> {
        let read = |conn: &Connection| {
            // The node is pinned (open), so its row is still there; its
            // content may have been rewritten meanwhile.
            let node = q::node(conn, path, file.ino)?;
            let current = FileRow {
                size: file.size.min(node.size),
                ..node.file()
            };
            self.content.read(conn, path, &current, offset, len)
        };
        retry_conflicts(|| self.db.read(path, read), || self.db.with_writer(read))
    }

    /// Makes the staged node's content the file's at `path` (which is
    /// created with it, if missing), in one transaction.
    fn commit_staged(&self, path: &Path, staging: i64) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let staged = q::node(tx, path, staging)?;
            let (parent, name) = q::slot(tx, path)?;
            match q::child(tx, path, parent, name.as_bytes())? {
                // The staged node becomes the file.
                None => q::link(tx, path, parent, name.as_bytes(), staging, false, now),
                Some((ino, _)) => {
                    let node = Self::file_node(tx, path, ino)?;
                    if node.nlink > 1 {
                        // Other names must keep seeing one file: the
                        // content moves into it instead.
                        self.content
                            .adopt(tx, path, &staged.file(), &node.file(), after)?;
                        q::set_size(tx, path, ino, staged.size, now)?;
                        return q::set_size(tx, path, staging, 0, now);
                    }
                    // The staged node takes the name, with the old one's
                    // permissions and owner; a reader still streaming the
                    // old node keeps it (and its content) until it closes.
                    tx.prepare_cached(
                        "UPDATE inodes SET mode = ?2, uid = ?3, gid = ?4 WHERE ino = ?1",
                    )
                    .and_then(|mut s| s.execute(params![staging, node.mode, node.uid, node.gid]))
                    .map_err(|e| sql_error(path, "keep permissions", e))?;
                    let gone = q::unlink(tx, path, parent, name.as_bytes(), now)?;
                    q::link(tx, path, parent, name.as_bytes(), staging, false, now)?;
                    self.release(tx, path, gone, after)
                }
            }
        })
    }

    /// A new node with no name for a streamed write to `path`, kept (not
    /// freed) until the writer lets it go.
    fn stage(&self, path: &Path) -> FsResult<i64> {
        let now = now_ns();
        let ino = self.db.write(path, |tx, _| {
            q::alloc(tx, path, KIND_FILE, 0o644, self.owner, None, now)
        })?;
        self.retain(ino);
        Ok(ino)
    }

    /// Appends a block to a pinned file for a stream.
    fn append_block(&self, path: &Path, ino: i64, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let node = q::node(tx, path, ino)?;
            self.content
                .write_at(tx, path, &node.file(), node.size, data, after)?;
            q::set_size(tx, path, ino, node.size + data.len() as u64, now)
        })
    }
}

/// A streamed read: one block at a time.
struct StoreReader<C: Content> {
    store: Arc<Store<C>>,
    file: FileRow,
    path: PathBuf,
    pos: u64,
    buf: Vec<u8>,
    buf_pos: usize,
}

impl<C: Content> Read for StoreReader<C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf_pos == self.buf.len() {
            if self.pos >= self.file.size {
                return Ok(0);
            }
            let block = self.store.content.read_block();
            self.buf = self
                .store
                .read_block(&self.path, &self.file, self.pos, block)?;
            self.buf_pos = 0;
            self.pos += self.buf.len() as u64;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        Ok(n)
    }
}

impl<C: Content> Drop for StoreReader<C> {
    fn drop(&mut self) {
        let _ = self.store.unretain(&self.path, self.file.ino);
    }
}

/// A streamed write: gathered into blocks, each block one transaction into
/// a staging node (made with the first full block), moved into the file at
/// the commit. A write that fits in one block is stored by one `write`.
struct StoreWriter<C: Content> {
    store: Arc<Store<C>>,
    ino: Option<i64>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl<C: Content> StoreWriter<C> {
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let ino = match self.ino {
            Some(ino) => ino,
            None => {
                let ino = self.store.stage(&self.path)?;
                self.ino = Some(ino);
                ino
            }
        };
        self.store.append_block(&self.path, ino, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<C: Content> Write for StoreWriter<C> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let block = self.store.content.read_block();
        let n = data.len().min(block - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= block {
            self.push()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Nothing is visible before the commit: a flush stores nothing.
        Ok(())
    }
}

impl<C: Content> FileWriter for StoreWriter<C> {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let Some(ino) = self.ino else {
            // It all fits in one block: one transaction.
            return self.store.write(&self.path, &self.buf);
        };
        self.push()
            .map_err(|e| FsError::from_io(&self.path, "open_write", e))?;
        self.store.commit_staged(&self.path, ino)
        // Dropping the writer lets the staging node go, if it has no name.
    }
}

impl<C: Content> Drop for StoreWriter<C> {
    fn drop(&mut self) {
        // Not committed: the staged content goes with its node.
        if let Some(ino) = self.ino {
            let _ = self.store.unretain(&self.path, ino);
        }
    }
}

impl<C: Content> FsWrite for Store<C> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let (node, created) = self.file_for_write_sized(tx, path, now, data.len() as u64)?;
            if !created && node.nlink == 1 && self.open.lock().contains_key(&node.ino) {
                // Someone streams the old content: the new takes the name
                // with a node of its own, and the reader keeps the old one
                // whole until it closes.
                let fresh = q::alloc(
                    tx,
                    path,
                    KIND_FILE,
                    node.mode,
                    (node.uid, node.gid),
                    None,
                    now,
                )?;
                let row = FileRow {
                    ino: fresh,
                    size: 0,
                    blob: None,
                };
                self.content.replace(tx, path, &row, data, after)?;
                q::set_size(tx, path, fresh, data.len() as u64, now)?;
                let (parent, name) = q::slot(tx, path)?;
                let gone = q::unlink(tx, path, parent, name.as_bytes(), now)?;
                q::link(tx, path, parent, name.as_bytes(), fresh, false, now)?;
                return self.release(tx, path, gone, after);
            }
            self.content.replace(tx, path, &node.file(), data, after)?;
            if created {
                Ok(())
            } else {
                q::set_size(tx, path, node.ino, data.len() as u64, now)
            }
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let node = self.file_for_write(tx, path, now)?;
            self.content
                .write_at(tx, path, &node.file(), node.size, data, after)?;
            q::set_size(tx, path, node.ino, node.size + data.len() as u64, now)
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let now = now_ns();
        // Every range is checked before any is written: inside a batch, a
        // refusal after rows changed would spoil the whole batch.
        let limit = self.content.max_len();
        for (offset, data) in ranges.iter().filter(|(_, data)| !data.is_empty()) {
            let end = offset.saturating_add(data.len() as u64);
            if end > limit {
                return Err(FsError::file_size_exceeded(path, end, limit));
            }
        }
        self.db.write(path, |tx, after| {
            let node = Self::file_node(tx, path, q::lookup(tx, path)?)?;
            let ranges: Vec<(u64, &[u8])> = ranges
                .iter()
                .filter(|(_, data)| !data.is_empty())
                .copied()
                .collect();
            if ranges.is_empty() {
                return Ok(());
            }
            self.content
                .write_ranges(tx, path, &node.file(), &ranges, after)?;
            let end = ranges
                .iter()
                .map(|(offset, data)| offset + data.len() as u64)
                .max()
                .unwrap_or(0);
            q::set_size(tx, path, node.ino, node.size.max(end), now)
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let (parent, name) = q::slot(tx, path)?;
            match q::child(tx, path, parent, name.as_bytes())? {
                None => return Err(FsError::not_found(path)),
                Some((_, KIND_DIR)) => return Err(FsError::is_a_directory(path)),
                Some(_) => {}
            }
            let gone = q::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.release(tx, path, gone, after)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(from, |tx, after| {
            let (src_parent, src_name) = q::slot(tx, from)?;
            let (ino, kind) = q::child(tx, from, src_parent, src_name.as_bytes())?
                .ok_or_else(|| FsError::not_found(from))?;
            let (dst_parent, dst_name) = q::slot(tx, to)?;
            let src_is_dir = kind == KIND_DIR;
            if src_is_dir && q::is_within(tx, to, dst_parent, ino)? {
                return Err(FsError::invalid_path(
                    to,
                    "a directory cannot move into itself",
                ));
            }
            if let Some((existing, existing_kind)) =
                q::child(tx, to, dst_parent, dst_name.as_bytes())?
            {
                if existing == ino {
                    return Ok(());
                }
                match (existing_kind == KIND_DIR, src_is_dir) {
                    (true, true) => {
                        if q::has_entries(tx, to, existing)? {
                            return Err(FsError::directory_not_empty(to));
                        }
                    }
                    (true, false) => return Err(FsError::is_a_directory(to)),
                    (false, true) => return Err(FsError::not_a_directory(to)),
                    (false, false) => {}
                }
                let gone = q::unlink(tx, to, dst_parent, dst_name.as_bytes(), now)?;
                self.release(tx, to, gone, after)?;
            }
            // Keep the node's link count above zero across the move.
            q::link(
                tx,
                to,
                dst_parent,
                dst_name.as_bytes(),
                ino,
                src_is_dir,
                now,
            )?;
            let gone = q::unlink(tx, from, src_parent, src_name.as_bytes(), now)?;
            debug_assert!(gone.is_none());
            Ok(())
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(from, |tx, after| {
            let src_ino = q::lookup(tx, from)?;
            let src = Self::file_node(tx, from, src_ino)?;
            let dst = self.file_for_write(tx, to, now)?;
            if dst.ino != src.ino {
                self.content.copy(tx, to, &src.file(), &dst.file(), after)?;
                q::set_size(tx, to, dst.ino, src.size, now)?;
                tx.prepare_cached("UPDATE inodes SET mode = ?2 WHERE ino = ?1")
                    .and_then(|mut s| s.execute(params![dst.ino, src.mode]))
                    .map_err(|e| sql_error(to, "copy permissions", e))?;
            }
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let ino = q::lookup(tx, path)?;
            let node = Self::file_node(tx, path, ino)?;
            self.content.truncate(tx, path, &node.file(), size, after)?;
            q::set_size(tx, path, ino, size, now)
        })
    }

    /// The content is staged in a node of its own, with no name (so a
    /// crash leaves an orphan that the next open frees), and moved into
    /// the file in one transaction at the commit.
    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        // Checked now, created only at the commit.
        self.db.read(path, |conn| {
            let (parent, name) = q::slot(conn, path)?;
            if let Some((ino, _)) = q::child(conn, path, parent, name.as_bytes())? {
                Self::file_node(conn, path, ino)?;
            }
            Ok(())
        })?;
        Ok(Box::new(StoreWriter {
            store: self.me(),
            ino: None,
            path: path.to_path_buf(),
            buf: Vec::new(),
        }))
    }
}

impl<C: Content> FsDir for Store<C> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.db.read(path, |conn| {
            let ino = q::lookup(conn, path)?;
            if q::node(conn, path, ino)?.kind != KIND_DIR {
                return Err(FsError::not_a_directory(path));
            }
            q::entries(conn, path, ino)
        })?;
        let dir = path.to_path_buf();
        Ok(ReadDir::from_entries(
            entries
                .into_iter()
                .map(|(name, ino, kind)| {
                    let name = OsString::from_vec(name);
                    DirEntry {
                        path: vpath::join(&dir, &name),
                        name,
                        file_type: match kind {
                            KIND_DIR => FileType::Directory,
                            KIND_SYMLINK => FileType::Symlink,
                            _ => FileType::File,
                        },
                        inode: ino as u64,
                    }
                })
                .collect(),
        ))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, _| {
            let (parent, name) = q::slot(tx, path)?;
            if q::child(tx, path, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(path));
            }
            let ino = q::alloc(tx, path, KIND_DIR, 0o755, self.owner, None, now)?;
            q::link(tx, path, parent, name.as_bytes(), ino, true, now)
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = vpath::resolved_components(path)?;
        let now = now_ns();
        self.db.write(path, |tx, _| {
            let mut dir = ROOT;
            for (i, name) in names.iter().enumerate() {
                dir = match q::child(tx, path, dir, name.as_bytes())? {
                    Some((ino, KIND_DIR)) => ino,
                    Some((_, KIND_SYMLINK)) => {
                        return Err(vpath::crosses_symlink(path));
                    }
                    Some(_) if i + 1 == names.len() => {
                        return Err(FsError::already_exists(path));
                    }
                    Some(_) => return Err(FsError::not_a_directory(path)),
                    None => {
                        let ino = q::alloc(tx, path, KIND_DIR, 0o755, self.owner, None, now)?;
                        q::link(tx, path, dir, name.as_bytes(), ino, true, now)?;
                        ino
                    }
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let (parent, name) = q::slot(tx, path)?;
            let (ino, kind) = q::child(tx, path, parent, name.as_bytes())?
                .ok_or_else(|| FsError::not_found(path))?;
            if kind != KIND_DIR {
                return Err(FsError::not_a_directory(path));
            }
            if q::has_entries(tx, path, ino)? {
                return Err(FsError::directory_not_empty(path));
            }
            let gone = q::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.release(tx, path, gone, after)
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, after| {
            let (parent, name) = q::slot(tx, path)?;
            let (ino, kind) = q::child(tx, path, parent, name.as_bytes())?
                .ok_or_else(|| FsError::not_found(path))?;
            match kind {
                KIND_FILE => return Err(FsError::not_a_directory(path)),
                KIND_DIR => {
                    // Empty the tree, deepest first, in this one transaction.
                    let mut order = Vec::new();
                    let mut stack = vec![ino];
                    while let Some(dir) = stack.pop() {
                        order.push(dir);
                        for (_, child, kind) in q::entries(tx, path, dir)? {
                            if kind == KIND_DIR {
                                stack.push(child);
                            }
                        }
                    }
                    for dir in order.into_iter().rev() {
                        for (child_name, _, _) in q::entries(tx, path, dir)? {
                            let gone = q::unlink(tx, path, dir, &child_name, now)?;
                            self.release(tx, path, gone, after)?;
                        }
                    }
                }
                _ => {}
            }
            let gone = q::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.release(tx, path, gone, after)
        })
    }
}

impl<C: Content> FsLink for Store<C> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        vpath::validate(target)?;
        let now = now_ns();
        self.db.write(link, |tx, _| {
            let (parent, name) = q::slot(tx, link)?;
            if q::child(tx, link, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(link));
            }
            let bytes = target.as_os_str().as_bytes();
            let ino = q::alloc(tx, link, KIND_SYMLINK, 0o777, self.owner, Some(bytes), now)?;
            q::link(tx, link, parent, name.as_bytes(), ino, false, now)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db.write(link, |tx, _| {
            let (src_parent, src_name) = q::slot(tx, original)?;
            let (ino, kind) = q::child(tx, original, src_parent, src_name.as_bytes())?
                .ok_or_else(|| FsError::not_found(original))?;
            if kind == KIND_DIR {
                return Err(FsError::permission_denied(
                    original,
                    "hard_link a directory",
                ));
            }
            let (parent, name) = q::slot(tx, link)?;
            if q::child(tx, link, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(link));
            }
            q::link(tx, link, parent, name.as_bytes(), ino, false, now)
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.db.read(path, |conn| {
            let ino = q::lookup(conn, path)?;
            let node = q::node(conn, path, ino)?;
            match (node.kind, node.target) {
                (KIND_SYMLINK, Some(target)) => Ok(PathBuf::from(OsString::from_vec(target))),
                _ => Err(FsError::invalid_path(path, "not a symbolic link")),
            }
        })
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl<C: Content> Store<C> {
    fn set_columns(
        &self,
        path: &Path,
        sql: &'static str,
        values: [Option<i64>; 2],
    ) -> FsResult<()> {
        let now = now_ns();
        self.db.write(path, |tx, _| {
            let ino = q::lookup(tx, path)?;
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(params![ino, values[0], values[1], now]))
                .map_err(|e| sql_error(path, "change attributes", e))?;
            Ok(())
        })
    }
}

impl<C: Content> FsPermissions for Store<C> {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.set_columns(
            path,
            "UPDATE inodes SET mode = ?2, ctime = ?4 WHERE ino = ?1 AND ?3 IS NULL",
            [Some(i64::from(perm.mode())), None],
        )
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        self.set_columns(
            path,
            "UPDATE inodes SET atime = coalesce(?2, atime), mtime = coalesce(?3, mtime), ctime = ?4
             WHERE ino = ?1",
            [accessed.map(to_ns), modified.map(to_ns)],
        )
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.set_columns(
            path,
            "UPDATE inodes SET uid = coalesce(?2, uid), gid = coalesce(?3, gid), ctime = ?4
             WHERE ino = ?1",
            [uid.map(i64::from), gid.map(i64::from)],
        )
    }
}

impl<C: Content> FsSync for Store<C> {
    fn sync(&self) -> FsResult<()> {
        // Commits are already durable to the chosen level; a checkpoint
        // moves the write-ahead log into the database file.
        self.db.release_snapshots();
        self.db.with_writer(|conn| {
            conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                .map_err(|e| sql_error(Path::new("/"), "sync", e))
        })
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.db.read(path, |conn| q::lookup(conn, path).map(drop))?;
        // With group commit, what was acknowledged is committed now.
        self.db.commit_group()
    }
}

impl<C: Content> FsStats for Store<C> {
    fn statfs(&self) -> FsResult<StatFs> {
        let root = Path::new("/");
        let (nodes, bytes) = self.db.read(root, |conn| {
            conn.query_row(
                "SELECT count(*), coalesce(sum(CASE WHEN kind = 0 THEN size ELSE 0 END), 0) FROM inodes",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| sql_error(root, "statfs", e))
        })?;
        // The database grows into the host filesystem it lives on: report
        // that filesystem's free space (in memory, generous room). A quota
        // layer in front reports its own limit instead.
        let available = match self.db.host_path() {
            Some(file) => {
                let dir = file
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let host = rustix::fs::statvfs(dir).map_err(|e| {
                    FsError::backend(
                        root,
                        "statfs",
                        format!("the host filesystem cannot be measured: {e}"),
                    )
                })?;
                host.f_bavail.saturating_mul(host.f_frsize)
            }
            None => 1u64 << 40,
        };
        Ok(StatFs {
            total_bytes: bytes + available,
            used_bytes: bytes,
            available_bytes: available,
            total_inodes: nodes + (1 << 32),
            used_inodes: nodes,
            available_inodes: 1 << 32,
            block_size: 4096,
            max_name_len: vpath::MAX_NAME_LEN as u32,
        })
    }
}

impl<C: Content> FsInode for Store<C> {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        self.db
            .read(path, |conn| q::lookup(conn, path).map(|i| i as u64))
    }

    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        let ino = i64::try_from(inode).map_err(|_| FsError::inode_not_found(inode))?;
        self.db.read(Path::new("/"), |conn| {
            q::node(conn, Path::new("/"), ino).map_err(|_| FsError::inode_not_found(inode))?;
            q::path_of(conn, ino)
        })
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        vpath::validate_name(name)?;
        let parent = i64::try_from(parent).map_err(|_| FsError::inode_not_found(parent))?;
        self.db.read(Path::new("/"), |conn| {
            let dir = q::node(conn, Path::new("/"), parent)
                .map_err(|_| FsError::inode_not_found(parent as u64))?;
            let dir_path = q::path_of(conn, parent).unwrap_or_else(|_| PathBuf::from("/"));
            if dir.kind != KIND_DIR {
                return Err(FsError::not_a_directory(dir_path));
            }
            let path = vpath::join(&dir_path, name);
            q::child(conn, &path, parent, name.as_bytes())?
                .map(|(ino, _)| ino as u64)
                .ok_or(FsError::not_found(path))
        })
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        let ino = i64::try_from(inode).map_err(|_| FsError::inode_not_found(inode))?;
        self.db.read(Path::new("/"), |conn| {
            q::node(conn, Path::new("/"), ino)
                .map(|n| n.metadata())
                .map_err(|_| FsError::inode_not_found(inode))
        })
    }
}

impl<C: Content> FsHandles for Store<C> {
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle> {
        let now = now_ns();
        let ino = self.db.write(path, |tx, after| {
            let (parent, name) = q::slot(tx, path)?;
            let node = match q::child(tx, path, parent, name.as_bytes())? {
                Some(_) if flags.create_new => {
                    return Err(FsError::already_exists(path));
                }
                Some((ino, _)) => Self::file_node(tx, path, ino)?,
                None if flags.create || flags.create_new => self.file_for_write(tx, path, now)?,
                None => return Err(FsError::not_found(path)),
            };
            if flags.truncate && node.size > 0 {
                self.content.truncate(tx, path, &node.file(), 0, after)?;
                q::set_size(tx, path, node.ino, 0, now)?;
            }
            Ok(node.ino)
        })?;
        self.retain(ino);
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(
            id,
            OpenFile {
                ino,
                path: path.to_path_buf(),
                flags,
            },
        );
        Ok(Handle(id))
    }

    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let open = self.handle(handle)?;
        if !open.flags.read {
            return Err(FsError::permission_denied(
                open.path,
                "read from a handle not opened for reading",
            ));
        }
        let data = self.db.read(&open.path, |conn| {
            let node = q::node(conn, &open.path, open.ino)?;
            self.content
                .read(conn, &open.path, &node.file(), offset, buf.len())
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize> {
        let open = self.handle(handle)?;
        if !(open.flags.write || open.flags.append || open.flags.create_new) {
            return Err(FsError::permission_denied(
                open.path,
                "write to a handle not opened for writing",
            ));
        }
        let now = now_ns();
        self.db.write(&open.path, |tx, after| {
            let node = q::node(tx, &open.path, open.ino)?;
            let at = if open.flags.append { node.size } else { offset };
            self.content
                .write_at(tx, &open.path, &node.file(), at, data, after)?;
            let size = node.size.max(at + data.len() as u64);
            q::set_size(tx, &open.path, open.ino, size, now)
        })?;
        Ok(data.len())
    }

    fn close(&self, handle: Handle) -> FsResult<()> {
        let open =
            self.handles.lock().remove(&handle.0).ok_or_else(|| {
                FsError::not_found(PathBuf::from(format!("<handle {}>", handle.0)))
            })?;
        self.unretain(&open.path, open.ino)
    }
}

impl<C: Content> Store<C> {
    fn handle(&self, handle: Handle) -> FsResult<OpenFile> {
        self.handles
            .lock()
            .get(&handle.0)
            .cloned()
            .ok_or_else(|| FsError::not_found(PathBuf::from(format!("<handle {}>", handle.0))))
    }
}
