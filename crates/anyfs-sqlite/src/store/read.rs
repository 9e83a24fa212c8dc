//! Reading: [`FsRead`] (whole files and ranges through the path cache,
//! `metadata`, path resolution, `open_read`), [`FsInode`] (the same by
//! inode number) and [`FsStats`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyfs::path::{self as vpath};
use anyfs::{FsError, FsInode, FsRead, FsReader, FsResult, FsStats, Metadata, StatFs};
use rusqlite::Connection;

use super::node::{KIND_DIR, KIND_FILE, KIND_SYMLINK, Node};
use super::queries::{self, SqlWalker};
use super::streams::StoreReader;
use super::{Content, Store, retry_conflicts};
use crate::db::sql_error;

impl<C: Content> Store<C> {
    /// What a resolved path was when looked up — inode and kind — and the
    /// write generation that holds for (reads by inode must use a snapshot
    /// of it).
    fn cached(&self, path: &Path) -> Option<(i64, i64, u64)> {
        let generation = self.db.generation();
        let (ino, kind) = self.paths.get(path, generation)?;
        Some((ino, kind, generation))
    }

    /// The inode at a resolved path, looked up in `conn`'s snapshot and
    /// remembered if that snapshot is at a known generation (`tag`).
    fn lookup_remembered(
        &self,
        conn: &Connection,
        path: &Path,
        tag: Option<u64>,
    ) -> FsResult<(i64, Node)> {
        let ino = queries::lookup(conn, self.tree, path)?;
        let node = queries::node(conn, path, ino)?;
        if let Some(generation) = tag {
            self.paths
                .remember(path, generation, || self.db.generation(), (ino, node.kind));
        }
        Ok((ino, node))
    }

    /// Bytes `offset .. offset + len` of the file at `path` (to its end if
    /// `len` is `None`): by inode in one statement when the path is cached,
    /// otherwise looked up (and remembered) first.
    fn read_file(&self, path: &Path, offset: u64, len: Option<usize>) -> FsResult<Vec<u8>> {
        if let Some((ino, KIND_FILE, generation)) = self.cached(path) {
            let want = len.unwrap_or(usize::MAX);
            if let Ok(Some(found)) = self.db.read_at(Some(generation), |conn, _| {
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
                _ => queries::file(conn, path, node.ino)?,
            };
            let len = len.unwrap_or(usize::try_from(node.size).unwrap_or(usize::MAX));
            self.content.read(conn, path, &node.file(), offset, len)
        };
        retry_conflicts(
            || self.db.read_tagged(read),
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
        self.db
            .read(|conn| match queries::lookup(conn, self.tree, path) {
                Ok(_) => Ok(true),
                Err(e) if e.is_absent() => Ok(false),
                Err(e) => Err(e),
            })
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        if let Some((ino, _, generation)) = self.cached(path)
            && let Ok(Ok(node)) = self
                .db
                .read_at(Some(generation), |conn, _| queries::node(conn, path, ino))
        {
            return Ok(node.metadata(self.tree));
        }
        self.db.read_tagged(|conn, tag| {
            Ok(self
                .lookup_remembered(conn, path, tag)?
                .1
                .metadata(self.tree))
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        // Resolve and pin the file; its content is then read block by block
        // from a snapshot, in constant memory.
        let file = self
            .db
            .read(|conn| Ok(queries::file_at(conn, self.tree, path)?.file()))?;
        let store = self.self_arc(path)?;
        self.pin(file.ino);
        Ok(Box::new(StoreReader::new(store, file, path.to_path_buf())))
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
        self.db.read(|conn| {
            vpath::resolve_visiting(
                path,
                follow_last,
                &mut SqlWalker(conn, self.tree, path),
                visit,
            )
        })
    }
}

impl<C: Content> FsStats for Store<C> {
    fn statfs(&self) -> FsResult<StatFs> {
        let root = Path::new("/");
        let (nodes, bytes) = self.db.read(|conn| {
            conn.query_row(
                "SELECT count(*), coalesce(sum(CASE WHEN kind = 0 THEN size ELSE 0 END), 0)
                 FROM inodes WHERE ino BETWEEN ?1 AND ?2",
                [self.tree.root(), self.tree.last()],
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

impl<C: Content> Store<C> {
    /// The stored number of a caller's inode number.
    fn global(&self, inode: u64) -> FsResult<i64> {
        self.tree
            .global(inode)
            .ok_or_else(|| FsError::inode_not_found(inode))
    }
}

impl<C: Content> FsInode for Store<C> {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        self.db
            .read(|conn| queries::lookup(conn, self.tree, path).map(|i| self.tree.local(i)))
    }

    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        let ino = self.global(inode)?;
        self.db.read(|conn| {
            queries::node(conn, Path::new("/"), ino)
                .map_err(|_| FsError::inode_not_found(inode))?;
            queries::path_of(conn, self.tree, ino)
        })
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        vpath::validate_name(name)?;
        let inode = parent;
        let parent = self.global(inode)?;
        self.db.read(|conn| {
            let dir = queries::node(conn, Path::new("/"), parent)
                .map_err(|_| FsError::inode_not_found(inode))?;
            let dir_path =
                queries::path_of(conn, self.tree, parent).unwrap_or_else(|_| PathBuf::from("/"));
            if dir.kind != KIND_DIR {
                return Err(FsError::not_a_directory(dir_path));
            }
            let path = vpath::join(&dir_path, name);
            queries::child(conn, &path, parent, name.as_bytes())?
                .map(|(ino, _)| self.tree.local(ino))
                .ok_or(FsError::not_found(path))
        })
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        let ino = self.global(inode)?;
        self.db.read(|conn| {
            queries::node(conn, Path::new("/"), ino)
                .map(|n| n.metadata(self.tree))
                .map_err(|_| FsError::inode_not_found(inode))
        })
    }
}
