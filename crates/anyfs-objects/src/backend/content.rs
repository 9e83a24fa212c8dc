//! File content as extents: each says that bytes of the file are bytes of
//! a blob. Writing uploads a new blob and points extents at it; what an
//! extent no longer covers is cut from it (the blob stays as it is);
//! a blob no extent names any more is marked released, for the garbage
//! collector. What no extent covers reads as zeros.

use std::path::Path;

use anyfs::{FsError, FsResult};
use deadpool_postgres::{GenericClient, Transaction};

use super::reads::Reads;
use super::{ObjectBackend, Tx};
use crate::blob::BlobId;

/// One extent of a file, with the size of its blob.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    pub(crate) file_offset: i64,
    pub(crate) len: i64,
    pub(crate) blob: BlobId,
    pub(crate) blob_offset: i64,
    pub(crate) blob_size: i64,
}

/// A blob uploaded for a change, to be named in its transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Uploaded {
    pub(crate) id: BlobId,
    pub(crate) size: i64,
}

impl ObjectBackend {
    /// The extents of file `ino` that overlap bytes `range`, in order.
    pub(crate) async fn extents(
        &self,
        tx: &impl Reads,
        path: &Path,
        ino: i64,
        range: (i64, i64),
    ) -> Tx<Vec<Extent>> {
        tx.extents(self, path, ino, range).await
    }

    /// [`Self::extents`], from the database.
    pub(crate) async fn extent_rows(
        &self,
        tx: &impl GenericClient,
        path: &Path,
        ino: i64,
        (from, to): (i64, i64),
    ) -> Tx<Vec<Extent>> {
        let stmt = tx
            .prepare_cached(
                "SELECT x.file_offset, x.len, x.blob, x.blob_offset, b.size
                 FROM fs_extents x JOIN fs_blobs b ON b.id = x.blob
                 WHERE x.workspace = $1 AND x.ino = $2
                   AND x.file_offset < $4 AND x.file_offset + x.len > $3
                 ORDER BY x.file_offset",
            )
            .await?;
        let rows = tx
            .query(&stmt, &[&self.workspace, &ino, &from, &to])
            .await?;
        rows.iter()
            .map(|r| {
                let blob: &[u8] = r.get(2);
                Ok(Extent {
                    file_offset: r.get(0),
                    len: r.get(1),
                    blob: BlobId::from_slice(blob).ok_or_else(|| FsError::integrity(path))?,
                    blob_offset: r.get(3),
                    blob_size: r.get(4),
                })
            })
            .collect()
    }

    /// Records a blob just uploaded for this workspace's account.
    pub(crate) async fn add_blob(&self, tx: &Transaction<'_>, blob: Uploaded) -> Tx<()> {
        let stmt = tx
            .prepare_cached("INSERT INTO fs_blobs (id, account, size) VALUES ($1, $2, $3)")
            .await?;
        tx.execute(
            &stmt,
            &[&blob.id.as_bytes().as_slice(), &self.account, &blob.size],
        )
        .await?;
        Ok(())
    }

    /// Points bytes `file_offset .. + len` of file `ino` at the blob.
    pub(crate) async fn add_extent(
        &self,
        tx: &Transaction<'_>,
        ino: i64,
        (file_offset, len): (i64, i64),
        (blob, blob_offset): (BlobId, i64),
    ) -> Tx<()> {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO fs_extents (workspace, ino, file_offset, len, blob, blob_offset)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &self.workspace,
                &ino,
                &file_offset,
                &len,
                &blob.as_bytes().as_slice(),
                &blob_offset,
            ],
        )
        .await?;
        Ok(())
    }

    /// Makes bytes `from .. to` of file `ino` covered by no extent: those
    /// inside go, those across an end are cut back.
    pub(crate) async fn punch(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        ino: i64,
        (from, to): (i64, i64),
    ) -> Tx<()> {
        let overlapping = self.extents(tx, path, ino, (from, to)).await?;
        if overlapping.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(
                "DELETE FROM fs_extents WHERE workspace = $1 AND ino = $2 AND file_offset = $3",
            )
            .await?;
        for x in &overlapping {
            tx.execute(&stmt, &[&self.workspace, &ino, &x.file_offset])
                .await?;
            let end = x.file_offset + x.len;
            if x.file_offset < from {
                let keep = (x.file_offset, from - x.file_offset);
                self.add_extent(tx, ino, keep, (x.blob, x.blob_offset))
                    .await?;
            }
            if end > to {
                let skip = to - x.file_offset;
                let keep = (to, end - to);
                self.add_extent(tx, ino, keep, (x.blob, x.blob_offset + skip))
                    .await?;
            }
        }
        let blobs: Vec<BlobId> = overlapping.iter().map(|x| x.blob).collect();
        self.release_unnamed(tx, &blobs).await
    }

    /// Removes every extent of file `ino`.
    pub(crate) async fn drop_content(&self, tx: &Transaction<'_>, ino: i64) -> Tx<()> {
        let stmt = tx
            .prepare_cached(
                "DELETE FROM fs_extents WHERE workspace = $1 AND ino = $2 RETURNING blob",
            )
            .await?;
        let rows = tx.query(&stmt, &[&self.workspace, &ino]).await?;
        let blobs: Vec<BlobId> = rows
            .iter()
            .filter_map(|r| BlobId::from_slice(r.get(0)))
            .collect();
        self.release_unnamed(tx, &blobs).await
    }

    /// Makes file `dst`'s extents those of `src` (the blobs are shared,
    /// never copied).
    pub(crate) async fn copy_content(&self, tx: &Transaction<'_>, src: i64, dst: i64) -> Tx<()> {
        self.drop_content(tx, dst).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO fs_extents (workspace, ino, file_offset, len, blob, blob_offset)
                 SELECT workspace, $3, file_offset, len, blob, blob_offset FROM fs_extents
                 WHERE workspace = $1 AND ino = $2",
            )
            .await?;
        tx.execute(&stmt, &[&self.workspace, &src, &dst]).await?;
        Ok(())
    }

    /// Marks those of `blobs` that no extent names any more as released
    /// now: the garbage collector deletes them after its grace period.
    async fn release_unnamed(&self, tx: &Transaction<'_>, blobs: &[BlobId]) -> Tx<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = blobs.iter().map(|b| b.as_bytes().as_slice()).collect();
        let stmt = tx
            .prepare_cached(
                "UPDATE fs_blobs b SET released_at = now()
                 WHERE b.id = ANY($1) AND b.released_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM fs_extents x WHERE x.blob = b.id)",
            )
            .await?;
        tx.execute(&stmt, &[&ids]).await?;
        Ok(())
    }

    /// Bytes `from .. to` of a file made of `extents`, from the blobs
    /// (zeros where no extent is).
    pub(crate) fn assemble(
        &self,
        path: &Path,
        extents: &[Extent],
        (from, to): (i64, i64),
    ) -> FsResult<Vec<u8>> {
        let mut out = vec![0u8; (to - from).max(0) as usize];
        for x in extents {
            let start = x.file_offset.max(from);
            let end = (x.file_offset + x.len).min(to);
            if start >= end {
                continue;
            }
            let in_blob = (x.blob_offset + start - x.file_offset) as u64;
            let bytes = self.blobs.read(
                path,
                &self.account,
                (x.blob, x.blob_size as u64),
                in_blob..in_blob + (end - start) as u64,
            )?;
            if bytes.len() as i64 != end - start {
                return Err(FsError::integrity(path));
            }
            out[(start - from) as usize..(end - from) as usize].copy_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Uploads `data` as a blob of this workspace's account (nothing for
    /// no data).
    pub(crate) fn upload(&self, path: &Path, data: &[u8]) -> FsResult<Option<Uploaded>> {
        if data.is_empty() {
            return Ok(None);
        }
        let id = self.blobs.upload(path, &self.account, data)?;
        Ok(Some(Uploaded {
            id,
            size: data.len() as i64,
        }))
    }
}
