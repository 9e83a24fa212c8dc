//! Snapshots of a workspace: read-only copies of its tree at one moment,
//! sharing its content; restoring one; branches, writable workspaces that
//! start from one.
//!
//! A snapshot is a row of `fs_workspaces` of its own (`snapshot_of` names
//! the workspace, under a reserved name), and its tree is a copy of the
//! workspace's rows — nodes, entries, extents — made by `INSERT … SELECT`
//! in one transaction. The extents name the same blobs, so no content is
//! copied: a snapshot costs a few small rows per file. Blobs are
//! immutable and a blob is released only when no extent of any workspace
//! names it, so content a snapshot names outlives every change to the
//! workspace; deleting the snapshot releases what nothing else names, and
//! garbage collection deletes it after its grace period.
//!
//! Names and symlink targets are bound to the workspace's name scope, which
//! the snapshot shares, so the copied rows open as they are. Inode numbers
//! are kept too.
//!
//! The copy runs in a `REPEATABLE READ` transaction that does not take the
//! workspace's lock: writers go on, and the snapshot is the workspace as
//! of the transaction's first statement, every change committed before it
//! and none after.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyfs::snapshots::{BranchId, BranchInfo, FsSnapshots, SnapshotId, SnapshotInfo};
use anyfs::{FsError, FsResult};
use anyfs_postgres::tokio_postgres::IsolationLevel;
use deadpool_postgres::Transaction;

use super::{ObjectBackend, Tx, run_plain};

/// Workspace names that begin with this are snapshots'.
const RESERVED: &str = ".snapshot/";

/// Refuses, for [`ObjectBackend::open`], a name reserved for snapshots.
pub(super) fn check_workspace_name(path: &Path, name: &str) -> FsResult<()> {
    if name.starts_with(RESERVED) {
        return Err(FsError::backend(
            path,
            "name a workspace",
            format!("workspace names beginning with {RESERVED:?} are reserved for snapshots"),
        ));
    }
    Ok(())
}

impl ObjectBackend {
    /// A snapshot's row id, if `id` can be one.
    fn row_id(id: SnapshotId) -> FsResult<i64> {
        i64::try_from(id.0).map_err(|_| no_such_snapshot(id.0 as i64))
    }

    /// A branch's row id, if `id` can be one.
    fn branch_row(id: BranchId) -> FsResult<i64> {
        i64::try_from(id.0).map_err(|_| no_such_branch(id.0 as i64))
    }

    /// This workspace opened as another tree of its lineage.
    fn other_tree(&self, workspace: i64, frozen: bool) -> ObjectBackend {
        ObjectBackend {
            workspace,
            frozen,
            pins: Default::default(),
            handles: Default::default(),
            reads: Default::default(),
            ..self.clone()
        }
    }

    /// Takes a snapshot of the tree `ws` (this workspace or one of its
    /// branches); `listed` snapshots are this workspace's, the others a
    /// branch's own (merge bases).
    fn snapshot_of(&self, ws: i64, label: &str) -> FsResult<(i64, SystemTime, u64)> {
        let path = Path::new("/");
        let op = "take a snapshot";
        if self.frozen {
            return Err(FsError::read_only(path, op));
        }
        let (account, scope) = (self.account.clone(), self.scope);
        let name = format!("{RESERVED}{}", uuid::Uuid::new_v4().simple());
        let sealed = self.names.seal_label(&name, label)?;
        run_plain(&self.db, path, op, async |client| {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .start()
                .await?;
            // The snapshot's moment: the first statement.
            let used: i64 = tx
                .query_one("SELECT used_bytes FROM fs_workspaces WHERE id = $1", &[&ws])
                .await?
                .get(0);
            let row = tx
                .query_one(
                    "INSERT INTO fs_workspaces
                         (account, name, used_bytes, name_scope, snapshot_of, label)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     RETURNING id, extract(epoch FROM created_at)::float8",
                    &[&account, &name, &used, &scope, &ws, &sealed],
                )
                .await?;
            let id: i64 = row.get(0);
            copy_tree(&tx, ws, id).await?;
            tx.commit().await?;
            Ok((id, from_epoch(row.get(1)), u64::try_from(used).unwrap_or(0)))
        })
    }

    /// Deletes snapshot `id`, one of this workspace's or of its branches',
    /// releasing what nothing else names. `Conflict` while a branch counts
    /// from it.
    fn drop_snapshot(&self, id: i64) -> FsResult<()> {
        let ws = self.workspace;
        run_plain(
            &self.db,
            Path::new("/"),
            "delete a snapshot",
            async |client| {
                let tx = client.transaction().await?;
                if tx.query_opt(IS_SNAPSHOT_OF, &[&id, &ws]).await?.is_none() {
                    return Err(no_such_snapshot(id).into());
                }
                let based = tx
                    .query_opt(
                        "SELECT name FROM fs_workspaces WHERE branched_from = $1 LIMIT 1",
                        &[&id],
                    )
                    .await?;
                if let Some(row) = based {
                    let branch: String = row.get(0);
                    return Err(FsError::conflict(
                        format!("/.snapshot/{id}"),
                        format!("branch {branch:?} counts its changes from this snapshot"),
                    )
                    .into());
                }
                let blobs = named_blobs(&tx, id).await?;
                tx.execute("DELETE FROM fs_workspaces WHERE id = $1", &[&id])
                    .await?;
                release_now(&tx, &blobs).await?;
                tx.commit().await?;
                Ok(())
            },
        )
    }
}

/// Snapshots, restore and branches of an object-storage workspace.
///
/// A branch is a workspace of the account of its own, with the name it was
/// given (`AlreadyExists` if the account has one of that name), the byte
/// limit of the workspace it came from, and its own tree; it is opened by
/// id here, or by name with [`ObjectBackend::open`].
impl FsSnapshots for ObjectBackend {
    type View = ObjectBackend;
    type Branch = ObjectBackend;

    /// A copy of this workspace's tree as of one moment, even while other
    /// nodes write, sharing its content (nothing is copied but a few rows
    /// per file). `ReadOnly` on a snapshot.
    fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo> {
        let (id, created, bytes) = self.snapshot_of(self.workspace, name)?;
        Ok(SnapshotInfo::new(
            SnapshotId(id as u64),
            name.to_owned(),
            created,
            bytes,
        ))
    }

    fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
        let ws = self.workspace;
        run_plain(&self.db, Path::new("/"), "list snapshots", async |client| {
            let rows = client
                .query(
                    "SELECT id, name, label, extract(epoch FROM created_at)::float8, used_bytes
                     FROM fs_workspaces WHERE snapshot_of = $1 ORDER BY id",
                    &[&ws],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let label = match r.get::<_, Option<Vec<u8>>>(2) {
                        Some(sealed) => self.names.open_label(r.get(1), &sealed)?,
                        None => String::new(),
                    };
                    Ok(SnapshotInfo::new(
                        SnapshotId(r.get::<_, i64>(0) as u64),
                        label,
                        from_epoch(r.get(3)),
                        u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                    ))
                })
                .collect::<FsResult<Vec<_>>>()?)
        })
    }

    /// The snapshot as a backend of its own that reads the tree as it was
    /// and refuses every change (`ReadOnly`). `NotFound` for an id that is
    /// not a snapshot of this workspace or of one of its branches (of
    /// another workspace or account, deleted, or never taken).
    fn open_snapshot(&self, id: SnapshotId) -> FsResult<ObjectBackend> {
        let id = Self::row_id(id)?;
        let ws = self.workspace;
        let found = run_plain(
            &self.db,
            Path::new("/"),
            "open a snapshot",
            async |client| {
                Ok(client
                    .query_opt(IS_SNAPSHOT_OF, &[&id, &ws])
                    .await?
                    .is_some())
            },
        )?;
        if !found {
            return Err(no_such_snapshot(id));
        }
        Ok(self.other_tree(id, true))
    }

    /// Content nothing else names is released (garbage collection deletes
    /// it after its grace period).
    fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()> {
        self.drop_snapshot(Self::row_id(id)?)
    }

    /// This workspace's tree is replaced by the snapshot's in one change
    /// (every node sees it at its next read); content only the replaced
    /// tree named is released. A handle this process holds open on a file
    /// of the replaced tree reads the file of the same inode in the
    /// restored tree, if any.
    fn restore(&self, id: SnapshotId) -> FsResult<()> {
        let id = Self::row_id(id)?;
        let ws = self.workspace;
        self.change(Path::new("/"), "restore a snapshot", async |tx| {
            if tx.query_opt(IS_SNAPSHOT_OF, &[&id, &ws]).await?.is_none() {
                return Err(no_such_snapshot(id).into());
            }
            let used: i64 = tx
                .query_one("SELECT used_bytes FROM fs_workspaces WHERE id = $1", &[&id])
                .await?
                .get(0);
            let blobs = named_blobs(tx, ws).await?;
            // Entries and extents go with their nodes.
            tx.execute("DELETE FROM fs_nodes WHERE workspace = $1", &[&ws])
                .await?;
            copy_tree(tx, id, ws).await?;
            tx.execute(
                "UPDATE fs_workspaces SET used_bytes = $2 WHERE id = $1",
                &[&ws, &used],
            )
            .await?;
            release_now(tx, &blobs).await
        })
    }

    fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo> {
        let path = Path::new("/");
        check_workspace_name(path, name)?;
        let snapshot = Self::row_id(from)?;
        let (ws, account, scope) = (self.workspace, self.account.clone(), self.scope);
        run_plain(&self.db, path, "make a branch", async |client| {
            let tx = client.transaction().await?;
            // Only a snapshot the workspace lists: a branch's own (a merge's
            // base) goes with its branch.
            if tx
                .query_opt(IS_LISTED_SNAPSHOT_OF, &[&snapshot, &ws])
                .await?
                .is_none()
            {
                return Err(no_such_snapshot(snapshot).into());
            }
            let made = tx
                .query_opt(
                    "INSERT INTO fs_workspaces (account, name, used_bytes, limit_bytes,
                         name_scope, branched_from, branch_of)
                     SELECT $1, $2, s.used_bytes, w.limit_bytes, $3, $4, $5
                     FROM fs_workspaces s, fs_workspaces w WHERE s.id = $4 AND w.id = $5
                     ON CONFLICT (account, name) DO NOTHING
                     RETURNING id, extract(epoch FROM created_at)::float8",
                    &[&account, &name, &scope, &snapshot, &ws],
                )
                .await?
                .ok_or_else(|| FsError::already_exists(format!("/{name}")))?;
            let id: i64 = made.get(0);
            copy_tree(&tx, snapshot, id).await?;
            tx.commit().await?;
            Ok(BranchInfo::new(
                BranchId(id as u64),
                name.to_owned(),
                from,
                from_epoch(made.get(1)),
            ))
        })
    }

    fn branches(&self) -> FsResult<Vec<BranchInfo>> {
        let ws = self.workspace;
        run_plain(&self.db, Path::new("/"), "list branches", async |client| {
            let rows = client
                .query(
                    "SELECT id, name, coalesce(branched_from, 0),
                         extract(epoch FROM created_at)::float8
                     FROM fs_workspaces WHERE branch_of = $1 ORDER BY id",
                    &[&ws],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    BranchInfo::new(
                        BranchId(r.get::<_, i64>(0) as u64),
                        r.get(1),
                        SnapshotId(r.get::<_, i64>(2) as u64),
                        from_epoch(r.get(3)),
                    )
                })
                .collect())
        })
    }

    /// `NotFound` for an id that is not a branch of this workspace.
    fn open_branch(&self, id: BranchId) -> FsResult<ObjectBackend> {
        let id = Self::branch_row(id)?;
        let ws = self.workspace;
        let found = run_plain(&self.db, Path::new("/"), "open a branch", async |client| {
            Ok(client.query_opt(IS_BRANCH_OF, &[&id, &ws]).await?.is_some())
        })?;
        if !found {
            return Err(no_such_branch(id));
        }
        Ok(self.other_tree(id, false))
    }

    /// The branch, its own snapshots (merge bases) and the content only
    /// they named go.
    fn delete_branch(&self, id: BranchId) -> FsResult<()> {
        let id = Self::branch_row(id)?;
        let ws = self.workspace;
        run_plain(
            &self.db,
            Path::new("/"),
            "delete a branch",
            async |client| {
                let tx = client.transaction().await?;
                if tx.query_opt(IS_BRANCH_OF, &[&id, &ws]).await?.is_none() {
                    return Err(no_such_branch(id).into());
                }
                let mut blobs = named_blobs(&tx, id).await?;
                let own: Vec<i64> = tx
                    .query(
                        "SELECT id FROM fs_workspaces WHERE snapshot_of = $1",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for snapshot in &own {
                    blobs.extend(named_blobs(&tx, *snapshot).await?);
                }
                // Its snapshots go with it (`snapshot_of` cascades).
                tx.execute("DELETE FROM fs_workspaces WHERE id = $1", &[&id])
                    .await?;
                release_now(&tx, &blobs).await?;
                tx.commit().await?;
                Ok(())
            },
        )
    }

    fn snapshot_branch(&self, id: BranchId) -> FsResult<SnapshotId> {
        let branch = Self::branch_row(id)?;
        let ws = self.workspace;
        let found = run_plain(&self.db, Path::new("/"), "open a branch", async |client| {
            Ok(client
                .query_opt(IS_BRANCH_OF, &[&branch, &ws])
                .await?
                .is_some())
        })?;
        if !found {
            return Err(no_such_branch(branch));
        }
        let (snapshot, _, _) = self.snapshot_of(branch, "merged")?;
        Ok(SnapshotId(snapshot as u64))
    }

    fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> FsResult<()> {
        let branch = Self::branch_row(id)?;
        let base = Self::row_id(base)?;
        let ws = self.workspace;
        let old = run_plain(
            &self.db,
            Path::new("/"),
            "move a branch's base",
            async |client| {
                let tx = client.transaction().await?;
                if tx.query_opt(IS_SNAPSHOT_OF, &[&base, &ws]).await?.is_none() {
                    return Err(no_such_snapshot(base).into());
                }
                let old: Option<i64> = tx
                    .query_opt(
                        "SELECT branched_from FROM fs_workspaces
                         WHERE id = $1 AND branch_of = $2 FOR UPDATE",
                        &[&branch, &ws],
                    )
                    .await?
                    .ok_or_else(|| no_such_branch(branch))?
                    .get(0);
                tx.execute(
                    "UPDATE fs_workspaces SET branched_from = $2 WHERE id = $1",
                    &[&branch, &base],
                )
                .await?;
                // The old base goes if it was the branch's own (a merge's).
                let own = match old {
                    Some(old) => tx
                        .query_opt(
                            "SELECT 1 FROM fs_workspaces WHERE id = $1 AND snapshot_of = $2",
                            &[&old, &branch],
                        )
                        .await?
                        .map(|_| old),
                    None => None,
                };
                tx.commit().await?;
                Ok(own)
            },
        )?;
        if let Some(old) = old {
            self.drop_snapshot(old)?;
        }
        Ok(())
    }
}

/// Finds snapshot `$1` if it is one of workspace `$2` or of one of its
/// branches.
const IS_SNAPSHOT_OF: &str = "SELECT 1 FROM fs_workspaces s WHERE s.id = $1 AND (s.snapshot_of = $2
    OR s.snapshot_of IN (SELECT b.id FROM fs_workspaces b WHERE b.branch_of = $2))";

/// Finds snapshot `$1` if workspace `$2` lists it (its own).
const IS_LISTED_SNAPSHOT_OF: &str =
    "SELECT 1 FROM fs_workspaces WHERE id = $1 AND snapshot_of = $2";

/// Finds branch `$1` if it is one of workspace `$2`.
const IS_BRANCH_OF: &str = "SELECT 1 FROM fs_workspaces WHERE id = $1 AND branch_of = $2";

/// Copies the tree of workspace `from` into workspace `to`, which has none:
/// its nodes, entries and extents, with the same inode numbers, naming the
/// same blobs.
///
/// Each statement is a plain copy of `from`'s rows, with no join: a join
/// is planned from statistics that may not have caught up with a workspace
/// just filled, and one was planned as a scan of every extent per node
/// (minutes for 100,000 files). So nodes that only a handle holds open
/// (`nlink` 0) are copied too, unreachable by any path; garbage
/// collection frees them in the copy as in the workspace.
async fn copy_tree(tx: &Transaction<'_>, from: i64, to: i64) -> Tx<()> {
    tx.execute(
        "INSERT INTO fs_nodes (workspace, ino, kind, mode, uid, gid, size, nlink,
             subdirs, atime, mtime, ctime, btime, target)
         SELECT $2, ino, kind, mode, uid, gid, size, nlink, subdirs, atime, mtime,
             ctime, btime, target
         FROM fs_nodes WHERE workspace = $1",
        &[&from, &to],
    )
    .await?;
    tx.execute(
        "INSERT INTO fs_entries (workspace, parent, name_key, name, ino)
         SELECT $2, parent, name_key, name, ino FROM fs_entries WHERE workspace = $1",
        &[&from, &to],
    )
    .await?;
    tx.execute(
        "INSERT INTO fs_extents (workspace, ino, file_offset, len, blob, blob_offset)
         SELECT $2, ino, file_offset, len, blob, blob_offset
         FROM fs_extents WHERE workspace = $1",
        &[&from, &to],
    )
    .await?;
    Ok(())
}

/// The blobs the extents of workspace `ws` name.
async fn named_blobs(tx: &Transaction<'_>, ws: i64) -> Tx<Vec<Vec<u8>>> {
    Ok(tx
        .query(
            "SELECT DISTINCT blob FROM fs_extents WHERE workspace = $1",
            &[&ws],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Marks those of `blobs` that no extent names any more as released now,
/// even one released long ago (a snapshot named it since): whoever still
/// reads it gets the whole grace period.
async fn release_now(tx: &Transaction<'_>, blobs: &[Vec<u8>]) -> Tx<()> {
    tx.execute(
        "UPDATE fs_blobs b SET released_at = now()
         WHERE b.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM fs_extents x WHERE x.blob = b.id)",
        &[&blobs],
    )
    .await?;
    Ok(())
}

/// `NotFound` about a snapshot id.
fn no_such_snapshot(id: i64) -> FsError {
    FsError::not_found(format!("/.snapshot/{id}"))
}

/// `NotFound` about a branch id.
fn no_such_branch(id: i64) -> FsError {
    FsError::not_found(format!("/.branch/{id}"))
}

/// A time from seconds since the Unix epoch.
fn from_epoch(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}
