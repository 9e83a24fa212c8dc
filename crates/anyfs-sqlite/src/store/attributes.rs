//! [`FsPermissions`]: mode, times and owner, each one `UPDATE` of the
//! node's row.

use std::path::Path;
use std::time::SystemTime;

use anyfs::{FsPermissions, FsResult, Permissions};
use rusqlite::params;

use super::node::to_ns;
use super::queries;
use super::{Content, Store, now_ns};
use crate::db::sql_error;

impl<C: Content> Store<C> {
    /// Runs `sql` on the node at `path`, with `?1` its inode, `?2` and
    /// `?3` the `values`, and `?4` the time now.
    fn set_columns(
        &self,
        path: &Path,
        sql: &'static str,
        values: [Option<i64>; 2],
    ) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, _| {
            let ino = queries::lookup(tx, self.tree, path)?;
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
