//! [`FsPermissions`] (mode, times, owner: one `UPDATE` of the node's row),
//! [`FsStats`] (the workspace's exact usage and limit) and [`FsInode`].

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyfs::path::{self as vpath};
use anyfs::{FsError, FsInode, FsPermissions, FsResult, FsStats, Metadata, Permissions, StatFs};

use super::ObjectBackend;
use super::tree::{DIR, ROOT, now_ns, to_ns};

/// What `statfs` reports as free when the workspace has no limit.
const UNLIMITED: u64 = 1 << 50;

impl ObjectBackend {
    /// Runs `sql` on the node at `path`, with `$1` the workspace, `$2` its
    /// inode, `$3` and `$4` the `values`, and `$5` the time now.
    fn set_columns(
        &self,
        path: &Path,
        sql: &'static str,
        values: [Option<i64>; 2],
    ) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "change attributes", async |tx| {
            let node = self.lookup(tx, path).await?;
            tx.execute(
                sql,
                &[&self.workspace, &node.ino, &values[0], &values[1], &now],
            )
            .await?;
            Ok(())
        })
    }

    /// One path of node `ino`, walking up its first names.
    fn path_of(&self, ino: i64) -> FsResult<PathBuf> {
        let not_found = || FsError::inode_not_found(ino as u64);
        self.view(Path::new("/"), "find a path", async |tx| {
            self.node_in(tx, Path::new("/"), ino)
                .await
                .map_err(|e| e.inode_gone(ino as u64))?;
            let mut names: Vec<Vec<u8>> = Vec::new();
            let mut cur = ino;
            while cur != ROOT {
                let (parent, name) = self.name_of(tx.db()?, cur).await?.ok_or_else(not_found)?;
                names.push(name);
                cur = parent;
                if names.len() > vpath::MAX_PATH_LEN {
                    return Err(not_found().into());
                }
            }
            let mut out = Vec::new();
            for name in names.iter().rev() {
                out.push(b'/');
                out.extend_from_slice(name);
            }
            if out.is_empty() {
                out.push(b'/');
            }
            Ok(PathBuf::from(std::ffi::OsString::from_vec(out)))
        })
    }
}

impl FsPermissions for ObjectBackend {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.set_columns(
            path,
            "UPDATE fs_nodes SET mode = $3::bigint::integer, ctime = $5
             WHERE workspace = $1 AND ino = $2 AND $4::bigint IS NULL",
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
            "UPDATE fs_nodes SET atime = coalesce($3, atime), mtime = coalesce($4, mtime), ctime = $5
             WHERE workspace = $1 AND ino = $2",
            [accessed.map(to_ns), modified.map(to_ns)],
        )
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.set_columns(
            path,
            "UPDATE fs_nodes SET uid = coalesce($3, uid), gid = coalesce($4, gid), ctime = $5
             WHERE workspace = $1 AND ino = $2",
            [uid.map(i64::from), gid.map(i64::from)],
        )
    }
}

impl FsStats for ObjectBackend {
    fn statfs(&self) -> FsResult<StatFs> {
        let root = Path::new("/");
        let ((used, limit), nodes) = (
            self.usage()?,
            self.view(root, "statfs", async |tx| {
                let row = tx
                    .db()?
                    .query_one(
                        "SELECT count(*) FROM fs_nodes WHERE workspace = $1",
                        &[&self.workspace],
                    )
                    .await?;
                Ok(row.get::<_, i64>(0) as u64)
            })?,
        );
        let total = limit.unwrap_or(used.saturating_add(UNLIMITED)).max(used);
        Ok(StatFs {
            total_bytes: total,
            used_bytes: used,
            available_bytes: total - used,
            total_inodes: nodes + (1 << 32),
            used_inodes: nodes,
            available_inodes: 1 << 32,
            block_size: 4096,
            max_name_len: vpath::MAX_NAME_LEN as u32,
        })
    }
}

impl FsInode for ObjectBackend {
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        self.view(path, "path_to_inode", async |tx| {
            Ok(self.lookup(tx, path).await?.ino as u64)
        })
    }

    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        let ino = i64::try_from(inode).map_err(|_| FsError::inode_not_found(inode))?;
        self.path_of(ino)
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        vpath::validate_name(name)?;
        let dir_path = self.inode_to_path(parent)?;
        let parent = parent as i64;
        let path = vpath::join(&dir_path, name);
        self.view(&path, "lookup", async |tx| {
            if self.node_in(tx, &dir_path, parent).await?.kind != DIR {
                return Err(FsError::not_a_directory(&dir_path).into());
            }
            self.child(tx, parent, name.as_bytes())
                .await?
                .map(|(ino, _)| ino as u64)
                .ok_or_else(|| FsError::not_found(&path).into())
        })
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        let ino = i64::try_from(inode).map_err(|_| FsError::inode_not_found(inode))?;
        self.view(Path::new("/"), "metadata_by_inode", async |tx| {
            self.node_in(tx, Path::new("/"), ino)
                .await
                .map(|n| n.metadata())
                .map_err(|e| e.inode_gone(inode))
        })
    }
}
