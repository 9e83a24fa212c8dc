//! Garbage collection over the whole store: [`collect_garbage`].
//!
//! Nothing named is ever deleted. A blob goes once no extent of any
//! workspace names it and it was released (or, never named, created)
//! longer ago than the grace period; an object with no row at all goes
//! once it is older than the grace period (an upload whose transaction
//! never committed). Nodes left with no name by a process that died
//! holding them open go the same way, after the grace period.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyfs::FsResult;
use anyfs_postgres::Database;

use crate::backend::{Tx, run_plain};
use crate::blob::{BlobId, Blobs};

/// What [`collect_garbage`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GarbageReport {
    /// Nodes with no name left, freed.
    pub orphan_nodes: u64,
    /// Blobs no extent named any more: rows and objects deleted.
    pub released_blobs: u64,
    /// Objects with no row (uploads never committed), deleted.
    pub unnamed_objects: u64,
}

/// Deletes what no workspace names any more and that has been so for
/// longer than `grace` (readers in flight still find it meanwhile): see
/// the module docs. Safe to run on any node, at any time, concurrently
/// with writers; a run cut off is finished by the next.
pub fn collect_garbage(db: &Database, blobs: &Blobs, grace: Duration) -> FsResult<GarbageReport> {
    let root = Path::new("/");
    let grace_secs = grace.as_secs_f64();
    let mut report = GarbageReport {
        orphan_nodes: free_orphan_nodes(db, grace)?,
        ..GarbageReport::default()
    };

    // Released blobs: the row goes first (if still unnamed), then the
    // object; a crash in between leaves an object with no row, which the
    // sweep below deletes.
    let released: Vec<(Vec<u8>, String)> =
        run_plain(db, root, "collect garbage", async |client| {
            let rows = client
                .query(
                    "DELETE FROM fs_blobs b
                 WHERE coalesce(b.released_at, b.created_at) < now() - make_interval(secs => $1)
                   AND NOT EXISTS (SELECT 1 FROM fs_extents x WHERE x.blob = b.id)
                 RETURNING id, account",
                    &[&grace_secs],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
    for (id, account) in &released {
        if let Some(id) = BlobId::from_slice(id) {
            blobs.store().delete(&Blobs::object_name(account, id))?;
            report.released_blobs += 1;
        }
    }

    // Objects with no row.
    let cutoff = SystemTime::now() - grace;
    let old: Vec<(String, BlobId)> = blobs
        .store()
        .list("accounts")?
        .into_iter()
        .filter(|o| o.modified.is_some_and(|m| m < cutoff))
        .filter_map(|o| {
            let id = BlobId::from_hex(o.name.rsplit('/').next()?)?;
            o.name.contains("/blobs/").then_some((o.name, id))
        })
        .collect();
    for batch in old.chunks(1000) {
        let ids: Vec<&[u8]> = batch
            .iter()
            .map(|(_, id)| id.as_bytes().as_slice())
            .collect();
        let named: HashSet<Vec<u8>> = run_plain(db, root, "collect garbage", async |client| {
            let rows = client
                .query("SELECT id FROM fs_blobs WHERE id = ANY($1)", &[&ids])
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        for (name, id) in batch {
            if !named.contains(id.as_bytes().as_slice()) {
                blobs.store().delete(name)?;
                report.unnamed_objects += 1;
            }
        }
    }
    Ok(report)
}

/// Frees nodes with no name whose last change is older than `grace`: their
/// extents go (their blobs are then collected like any other) and their
/// bytes leave their workspace's usage.
fn free_orphan_nodes(db: &Database, grace: Duration) -> FsResult<u64> {
    let root = Path::new("/");
    let before = crate::backend::now_ns() - i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
    run_plain(db, root, "collect garbage", async |client| -> Tx<u64> {
        let tx = client.transaction().await?;
        // The workspaces' locks first, as every writer takes them.
        tx.execute(
            "SELECT 1 FROM fs_workspaces WHERE id IN
               (SELECT workspace FROM fs_nodes WHERE nlink = 0 AND ino <> 1 AND ctime < $1)
             ORDER BY id FOR UPDATE",
            &[&before],
        )
        .await?;
        let freed = tx
            .query(
                "WITH gone AS (
                   DELETE FROM fs_nodes WHERE nlink = 0 AND ino <> 1 AND ctime < $1
                   RETURNING workspace, kind, size
                 ), bytes AS (
                   SELECT workspace, sum(CASE WHEN kind = 0 THEN size ELSE 0 END) AS size, count(*) AS n
                   FROM gone GROUP BY workspace
                 )
                 UPDATE fs_workspaces w
                 SET used_bytes = w.used_bytes - bytes.size::bigint, version = w.version + 1
                 FROM bytes WHERE w.id = bytes.workspace
                 RETURNING bytes.n",
                &[&before],
            )
            .await?;
        tx.commit().await?;
        Ok(freed.iter().map(|r| r.get::<_, i64>(0) as u64).sum())
    })
}
