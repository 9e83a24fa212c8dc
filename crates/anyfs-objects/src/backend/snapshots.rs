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

/// A snapshot of a workspace, as [`ObjectBackend::snapshots`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// What [`ObjectBackend::open_snapshot`] and
    /// [`ObjectBackend::delete_snapshot`] take.
    pub id: i64,
    /// The label it was given.
    pub label: String,
    /// When it was taken.
    pub created: SystemTime,
    /// Bytes of file content in it.
    pub bytes: u64,
}

impl ObjectBackend {
    /// Takes a snapshot of this workspace labelled `label`: a read-only
    /// copy of its tree as of one moment, even while other nodes write,
    /// sharing its content (nothing is copied but a few rows per file).
    ///
    /// # Errors
    ///
    /// `ReadOnly` on a snapshot; [`Unavailable`](crate::Unavailable) when
    /// the database cannot be reached.
    pub fn create_snapshot(&self, label: &str) -> FsResult<SnapshotInfo> {
        let path = Path::new("/");
        let op = "take a snapshot";
        if self.frozen {
            return Err(FsError::read_only(path, op));
        }
        let (ws, account, scope) = (self.workspace, self.account.clone(), self.scope);
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
            Ok(SnapshotInfo {
                id,
                label: label.to_owned(),
                created: from_epoch(row.get(1)),
                bytes: u64::try_from(used).unwrap_or(0),
            })
        })
    }

    /// The snapshots of this workspace, oldest first.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](crate::Unavailable) when the database cannot be
    /// reached.
    pub fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
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
                    Ok(SnapshotInfo {
                        id: r.get(0),
                        label,
                        created: from_epoch(r.get(3)),
                        bytes: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                    })
                })
                .collect::<FsResult<Vec<_>>>()?)
        })
    }

    /// Snapshot `id` of this workspace as a backend of its own that reads
    /// the tree as it was and refuses every change (`ReadOnly`).
    ///
    /// # Errors
    ///
    /// `NotFound` for an id that is not a snapshot of this workspace (of
    /// another workspace or account, deleted, or never taken).
    pub fn open_snapshot(&self, id: i64) -> FsResult<ObjectBackend> {
        let ws = self.workspace;
        let found = run_plain(
            &self.db,
            Path::new("/"),
            "open a snapshot",
            async |client| {
                Ok(client
                    .query_opt(
                        "SELECT 1 FROM fs_workspaces WHERE id = $1 AND snapshot_of = $2",
                        &[&id, &ws],
                    )
                    .await?
                    .is_some())
            },
        )?;
        if !found {
            return Err(no_such_snapshot(id));
        }
        Ok(ObjectBackend {
            workspace: id,
            frozen: true,
            pins: Default::default(),
            handles: Default::default(),
            reads: Default::default(),
            ..self.clone()
        })
    }

    /// Deletes snapshot `id` of this workspace: content nothing else names
    /// is released (garbage collection deletes it after its grace period);
    /// whether there was such a snapshot.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](crate::Unavailable) when the database cannot be
    /// reached.
    pub fn delete_snapshot(&self, id: i64) -> FsResult<bool> {
        let ws = self.workspace;
        run_plain(
            &self.db,
            Path::new("/"),
            "delete a snapshot",
            async |client| {
                let tx = client.transaction().await?;
                let mine = tx
                    .query_opt(
                        "SELECT 1 FROM fs_workspaces WHERE id = $1 AND snapshot_of = $2",
                        &[&id, &ws],
                    )
                    .await?
                    .is_some();
                if !mine {
                    return Ok(false);
                }
                let blobs = named_blobs(&tx, id).await?;
                tx.execute("DELETE FROM fs_workspaces WHERE id = $1", &[&id])
                    .await?;
                release_now(&tx, &blobs).await?;
                tx.commit().await?;
                Ok(true)
            },
        )
    }
}

impl ObjectBackend {
    /// Makes this workspace what it was when snapshot `id` was taken: its
    /// tree is replaced by the snapshot's, in one change (every node sees
    /// it at its next read); content only the replaced tree named is
    /// released. The snapshot stays.
    ///
    /// A handle this process holds open on a file of the replaced tree
    /// reads the file of the same inode in the restored tree, if any.
    ///
    /// # Errors
    ///
    /// `NotFound` for an id that is not a snapshot of this workspace;
    /// `ReadOnly` on a snapshot.
    pub fn restore_snapshot(&self, id: i64) -> FsResult<()> {
        let ws = self.workspace;
        self.change(Path::new("/"), "restore a snapshot", async |tx| {
            let used = snapshot_bytes(tx, ws, id).await?;
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

    /// Makes workspace `name` of this account, a branch: its tree starts as
    /// snapshot `snapshot` of this workspace, sharing its content, and from
    /// then on it changes on its own (changes to the branch and to this
    /// workspace never show in each other). It gets this workspace's byte
    /// limit; [`ObjectBackend::open`] opens it again by its name.
    ///
    /// # Errors
    ///
    /// `NotFound` for an id that is not a snapshot of this workspace;
    /// `AlreadyExists` if the account has a workspace called `name`.
    pub fn branch(&self, snapshot: i64, name: &str) -> FsResult<ObjectBackend> {
        let path = Path::new("/");
        check_workspace_name(path, name)?;
        let (ws, account, scope) = (self.workspace, self.account.clone(), self.scope);
        let id = run_plain(&self.db, path, "make a branch", async |client| {
            let tx = client.transaction().await?;
            let used = snapshot_bytes(&tx, ws, snapshot).await?;
            let made = tx
                .query_opt(
                    "INSERT INTO fs_workspaces
                         (account, name, used_bytes, limit_bytes, name_scope, branched_from)
                     SELECT $1, $2, $3, limit_bytes, $4, $5 FROM fs_workspaces WHERE id = $6
                     ON CONFLICT (account, name) DO NOTHING RETURNING id",
                    &[&account, &name, &used, &scope, &snapshot, &ws],
                )
                .await?
                .ok_or_else(|| FsError::already_exists(format!("/{name}")))?;
            let id: i64 = made.get(0);
            copy_tree(&tx, snapshot, id).await?;
            tx.commit().await?;
            Ok(id)
        })?;
        Ok(ObjectBackend {
            workspace: id,
            frozen: false,
            pins: Default::default(),
            handles: Default::default(),
            reads: Default::default(),
            ..self.clone()
        })
    }
}

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

/// The bytes of content in snapshot `id` of workspace `ws`; `NotFound` if
/// `id` is no snapshot of `ws`.
async fn snapshot_bytes(tx: &Transaction<'_>, ws: i64, id: i64) -> Tx<i64> {
    Ok(tx
        .query_opt(
            "SELECT used_bytes FROM fs_workspaces WHERE id = $1 AND snapshot_of = $2",
            &[&id, &ws],
        )
        .await?
        .ok_or_else(|| no_such_snapshot(id))?
        .get(0))
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

/// A time from seconds since the Unix epoch.
fn from_epoch(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}
