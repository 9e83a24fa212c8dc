//! Files: [`FsRead`] (content by range, metadata, path resolution),
//! [`FsWrite`] (blobs uploaded first, then one transaction naming them) and
//! [`FsSync`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyfs::path::{self as vpath, PathWalker, Step};
use anyfs::{FsError, FsRead, FsReader, FsResult, FsSync, FsWrite, FsWriter, Metadata};
use deadpool_postgres::Transaction;

use super::content::Uploaded;
use super::streams::{ObjectReader, ObjectWriter};
use super::tree::{DIR, FILE, Node, SYMLINK, now_ns};
use super::{ObjectBackend, Tx};

/// The largest file: far beyond what anyone stores, small enough that
/// offsets stay exact in PostgreSQL's `bigint`.
pub(crate) const MAX_FILE: u64 = 1 << 50;

impl ObjectBackend {
    /// Bytes `offset ..` (up to `len`, to the end if `None`) of the file at
    /// `path`: its extents from a snapshot, then the blobs.
    fn read_file(&self, path: &Path, offset: u64, len: Option<usize>) -> FsResult<Vec<u8>> {
        let (from, extents, to) = self.view(path, "read", async |tx| {
            let node = self.lookup(tx, path).await?.into_file(path)?;
            let from = i64::try_from(offset).unwrap_or(i64::MAX).min(node.size);
            let to = match len {
                Some(len) => from.saturating_add(len as i64).min(node.size),
                None => node.size,
            };
            let extents = self.extents(tx, path, node.ino, (from, to)).await?;
            Ok((from, extents, to))
        })?;
        self.assemble(path, &extents, (from, to))
    }

    /// The file at `path`, created empty if missing; and whether it was.
    pub(crate) async fn file_for_write(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        now: i64,
    ) -> Tx<(Node, bool)> {
        let (parent, name) = self.slot(tx, path).await?;
        match self.child(tx, parent, name.as_bytes()).await? {
            Some((ino, _)) => Ok((self.node_in(tx, path, ino).await?.into_file(path)?, false)),
            None => {
                let ino = self.alloc(tx, FILE, 0o644, self.owner_ids(), now).await?;
                self.link(tx, parent, name.as_bytes(), ino, false, now)
                    .await?;
                Ok((self.node_in(tx, path, ino).await?, true))
            }
        }
    }

    /// Checks, before anything is uploaded, that the file at `path` could
    /// be written (`must_exist`: and that it exists).
    fn check_writable(&self, path: &Path, must_exist: bool) -> FsResult<()> {
        self.view(path, "write", async |tx| {
            if must_exist {
                return self.lookup(tx, path).await?.into_file(path).map(drop);
            }
            let (parent, name) = self.slot(tx, path).await?;
            match self.child(tx, parent, name.as_bytes()).await? {
                Some((ino, _)) => self.node_in(tx, path, ino).await?.into_file(path).map(drop),
                None => Ok(()),
            }
        })
    }

    /// Replaces the content of the file at `path` (created if missing)
    /// with the uploaded `blobs`, in order, making `size` bytes.
    pub(crate) fn replace_content(
        &self,
        path: &Path,
        blobs: &[Uploaded],
        size: i64,
    ) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "write", async |tx| {
            let (node, _) = self.file_for_write(tx, path, now).await?;
            self.drop_content(tx, node.ino).await?;
            let mut at = 0;
            for blob in blobs {
                self.add_blob(tx, *blob).await?;
                self.add_extent(tx, node.ino, (at, blob.size), (blob.id, 0))
                    .await?;
                at += blob.size;
            }
            self.set_size(tx, path, &node, size, now).await
        })
    }
}

impl FsRead for ObjectBackend {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.read_file(path, 0, None)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.read_file(path, offset, Some(len))
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.view(path, "metadata", async |tx| {
            Ok(self.lookup(tx, path).await?.metadata())
        })
    }

    fn exists(&self, path: &Path) -> FsResult<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_absent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let (size, extents) = self.view(path, "open_read", async |tx| {
            let node = self.lookup(tx, path).await?.into_file(path)?;
            let extents = self.extents(tx, path, node.ino, (0, node.size)).await?;
            Ok((node.size, extents))
        })?;
        Ok(Box::new(ObjectReader::new(
            self.clone(),
            path.to_path_buf(),
            extents,
            size,
        )))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: vpath::Visit<'_>,
    ) -> FsResult<PathBuf> {
        let mut walker = Walker { fs: self, path };
        vpath::resolve_visiting(path, follow_last, &mut walker, visit)
    }
}

/// Walks paths for [`anyfs::path::resolve_visiting`], one lookup a step.
struct Walker<'a> {
    fs: &'a ObjectBackend,
    path: &'a Path,
}

impl PathWalker for Walker<'_> {
    type Node = i64;
    fn root(&mut self) -> FsResult<i64> {
        Ok(super::tree::ROOT)
    }
    fn child(&mut self, dir: &i64, name: &OsStr) -> FsResult<Option<Step<i64>>> {
        let (fs, path, dir) = (self.fs, self.path, *dir);
        fs.view(path, "resolve", async |tx| {
            let Some((ino, kind)) = fs.child(tx, dir, name.as_bytes()).await? else {
                return Ok(None);
            };
            Ok(Some(match kind {
                DIR => Step::Dir(ino),
                SYMLINK => Step::Symlink(fs.target_of(tx, path, ino).await?),
                _ => Step::Other(ino),
            }))
        })
    }
}

impl FsWrite for ObjectBackend {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        check_size(path, data.len() as u64)?;
        if !data.is_empty() {
            self.check_writable(path, false)?;
        }
        let blobs: Vec<Uploaded> = self.upload(path, data)?.into_iter().collect();
        self.replace_content(path, &blobs, data.len() as i64)
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        if !data.is_empty() {
            self.check_writable(path, false)?;
        }
        let blob = self.upload(path, data)?;
        let now = now_ns();
        self.change(path, "append", async |tx| {
            let (node, _) = self.file_for_write(tx, path, now).await?;
            let Some(blob) = blob else {
                return Ok(());
            };
            check_size(path, (node.size + blob.size) as u64)?;
            self.add_blob(tx, blob).await?;
            self.add_extent(tx, node.ino, (node.size, blob.size), (blob.id, 0))
                .await?;
            self.set_size(tx, path, &node, node.size + blob.size, now)
                .await
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let ranges: Vec<(u64, &[u8])> = ranges
            .iter()
            .filter(|(_, data)| !data.is_empty())
            .copied()
            .collect();
        for (offset, data) in &ranges {
            check_size(path, offset.saturating_add(data.len() as u64))?;
        }
        if ranges.is_empty() {
            // Nothing changes, but the file must be there.
            return self.check_writable(path, true);
        }
        self.check_writable(path, true)?;
        // Every range in one blob, one after the other.
        let joined: Vec<u8> = ranges.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let blob = self.upload(path, &joined)?;
        let now = now_ns();
        self.change(path, "write", async |tx| {
            let node = self.lookup(tx, path).await?.into_file(path)?;
            let Some(blob) = blob else {
                return Ok(());
            };
            self.add_blob(tx, blob).await?;
            let (mut in_blob, mut size) = (0i64, node.size);
            for (offset, data) in &ranges {
                let (at, len) = (*offset as i64, data.len() as i64);
                self.punch(tx, path, node.ino, (at, at + len)).await?;
                self.add_extent(tx, node.ino, (at, len), (blob.id, in_blob))
                    .await?;
                in_blob += len;
                size = size.max(at + len);
            }
            self.set_size(tx, path, &node, size, now).await
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "remove_file", async |tx| {
            let (parent, name) = self.slot(tx, path).await?;
            match self.child(tx, parent, name.as_bytes()).await? {
                None => return Err(FsError::not_found(path).into()),
                Some((_, DIR)) => return Err(FsError::is_a_directory(path).into()),
                Some(_) => {}
            }
            let gone = self.unlink(tx, path, parent, name.as_bytes(), now).await?;
            self.free_unless_pinned(tx, path, gone).await
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(from, "rename", async |tx| {
            let (src_parent, src_name) = self.slot(tx, from).await?;
            let (ino, kind) = self
                .child(tx, src_parent, src_name.as_bytes())
                .await?
                .ok_or_else(|| FsError::not_found(from))?;
            let (dst_parent, dst_name) = self.slot(tx, to).await?;
            let src_is_dir = kind == DIR;
            if src_is_dir && self.is_within(tx, dst_parent, ino).await? {
                return Err(
                    FsError::invalid_path(to, "a directory cannot move into itself").into(),
                );
            }
            if let Some((existing, existing_kind)) =
                self.child(tx, dst_parent, dst_name.as_bytes()).await?
            {
                if existing == ino {
                    return Ok(());
                }
                match (existing_kind == DIR, src_is_dir) {
                    (true, true) if self.has_entries(tx, existing).await? => {
                        return Err(FsError::directory_not_empty(to).into());
                    }
                    (true, false) => return Err(FsError::is_a_directory(to).into()),
                    (false, true) => return Err(FsError::not_a_directory(to).into()),
                    _ => {}
                }
                let gone = self
                    .unlink(tx, to, dst_parent, dst_name.as_bytes(), now)
                    .await?;
                self.free_unless_pinned(tx, to, gone).await?;
            }
            // The node keeps a name throughout, so its count never hits 0.
            self.link(tx, dst_parent, dst_name.as_bytes(), ino, src_is_dir, now)
                .await?;
            self.unlink(tx, from, src_parent, src_name.as_bytes(), now)
                .await?;
            Ok(())
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(from, "copy", async |tx| {
            let src = self.lookup(tx, from).await?.into_file(from)?;
            let (dst, _) = self.file_for_write(tx, to, now).await?;
            if dst.ino == src.ino {
                return Ok(());
            }
            self.copy_content(tx, src.ino, dst.ino).await?;
            self.set_size(tx, to, &dst, src.size, now).await?;
            tx.execute(
                "UPDATE fs_nodes SET mode = $3 WHERE workspace = $1 AND ino = $2",
                &[&self.workspace, &dst.ino, &src.mode],
            )
            .await?;
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        check_size(path, size)?;
        let size = size as i64;
        let now = now_ns();
        self.change(path, "truncate", async |tx| {
            let node = self.lookup(tx, path).await?.into_file(path)?;
            if size < node.size {
                self.punch(tx, path, node.ino, (size, node.size)).await?;
            }
            self.set_size(tx, path, &node, size, now).await
        })
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        // Checked now, created only at the commit.
        self.check_writable(path, false)?;
        Ok(Box::new(ObjectWriter::new(
            self.clone(),
            path.to_path_buf(),
        )))
    }
}

impl FsSync for ObjectBackend {
    /// Every acknowledged change is already committed in PostgreSQL and
    /// its blobs stored: nothing is left to flush.
    fn sync(&self) -> FsResult<()> {
        Ok(())
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.view(path, "fsync", async |tx| {
            self.lookup(tx, path).await.map(drop)
        })
    }
}

impl ObjectBackend {
    /// Whether `ino` is `ancestor` or lies beneath it.
    pub(crate) async fn is_within(
        &self,
        tx: &Transaction<'_>,
        mut ino: i64,
        ancestor: i64,
    ) -> Tx<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == super::tree::ROOT {
                return Ok(false);
            }
            match self.name_of(tx, ino).await? {
                Some((parent, _)) => ino = parent,
                None => return Ok(false),
            }
        }
    }
}

/// `FileSizeExceeded` for a file that would be larger than [`MAX_FILE`].
pub(crate) fn check_size(path: &Path, size: u64) -> FsResult<()> {
    if size > MAX_FILE {
        return Err(FsError::file_size_exceeded(path, size, MAX_FILE));
    }
    Ok(())
}
