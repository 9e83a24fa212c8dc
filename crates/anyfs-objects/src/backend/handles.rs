//! [`FsHandles`]: files opened by handle, read and written at offsets.
//! Handles are this process's own; each holds its inode (a file removed
//! while open lives on, nameless, until its last handle closes).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyfs::{FsError, FsHandles, FsResult, Handle, OpenFlags};

use super::ObjectBackend;
use super::tree::now_ns;

/// What a handle was opened on.
#[derive(Debug, Clone)]
pub(crate) struct OpenFile {
    ino: i64,
    path: PathBuf,
    flags: OpenFlags,
}

impl ObjectBackend {
    fn open_file(&self, handle: Handle) -> FsResult<OpenFile> {
        self.handles.lock().lookup(handle).cloned()
    }
}

impl FsHandles for ObjectBackend {
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle> {
        let now = now_ns();
        if self.frozen && !(flags.write || flags.append || flags.truncate) {
            // A snapshot opens what is there for reading; creating a file
            // in it is a change.
            let meta = match anyfs::FsRead::metadata(self, path) {
                Err(e) if e.is_absent() && (flags.create || flags.create_new) => {
                    return Err(FsError::read_only(path, "create a file"));
                }
                other => other?,
            };
            match meta.file_type {
                anyfs::FileType::File => {}
                anyfs::FileType::Directory => return Err(FsError::is_a_directory(path)),
                anyfs::FileType::Symlink => return Err(anyfs::path::crosses_symlink(path)),
            }
            let ino = meta.inode as i64;
            self.pin(ino);
            return Ok(self.handles.lock().open(OpenFile {
                ino,
                path: path.to_path_buf(),
                flags,
            }));
        }
        let ino = self.change(path, "open", async |tx| {
            let (parent, name) = self.slot(tx, path).await?;
            let node = match self.child(tx, parent, name.as_bytes()).await? {
                Some(_) if flags.create_new => return Err(FsError::already_exists(path).into()),
                Some((ino, _)) => self.node_in(tx, path, ino).await?.into_file(path)?,
                None if flags.create || flags.create_new => {
                    self.file_for_write(tx, path, now).await?.0
                }
                None => return Err(FsError::not_found(path).into()),
            };
            if flags.truncate && node.size > 0 {
                self.punch(tx, path, node.ino, (0, node.size)).await?;
                self.set_size(tx, path, &node, 0, now).await?;
            }
            Ok(node.ino)
        })?;
        self.pin(ino);
        Ok(self.handles.lock().open(OpenFile {
            ino,
            path: path.to_path_buf(),
            flags,
        }))
    }

    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let open = self.open_file(handle)?;
        if !open.flags.read {
            return Err(FsError::permission_denied(
                open.path,
                "read from a handle not opened for reading",
            ));
        }
        let path = open.path.as_path();
        let (from, extents, to) = self.view(path, "read_at", async |tx| {
            let node = self.node_in(tx, path, open.ino).await?;
            let from = i64::try_from(offset).unwrap_or(i64::MAX).min(node.size);
            let to = from.saturating_add(buf.len() as i64).min(node.size);
            Ok((
                from,
                self.extents(tx, path, node.ino, (from, to)).await?,
                to,
            ))
        })?;
        let data = self.assemble(path, &extents, (from, to))?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize> {
        let open = self.open_file(handle)?;
        if !(open.flags.write || open.flags.append || open.flags.create_new) {
            return Err(FsError::permission_denied(
                open.path,
                "write to a handle not opened for writing",
            ));
        }
        let path = open.path.as_path();
        let Some(blob) = self.upload(path, data)? else {
            return Ok(0);
        };
        let now = now_ns();
        self.change(path, "write_at", async |tx| {
            let node = self.node_in(tx, path, open.ino).await?;
            let at = if open.flags.append {
                node.size
            } else {
                i64::try_from(offset).map_err(|_| {
                    FsError::file_size_exceeded(path, offset, super::files::MAX_FILE)
                })?
            };
            super::files::check_size(path, (at + blob.size) as u64)?;
            self.add_blob(tx, blob).await?;
            self.punch(tx, path, node.ino, (at, at + blob.size)).await?;
            self.add_extent(tx, node.ino, (at, blob.size), (blob.id, 0))
                .await?;
            self.set_size(tx, path, &node, node.size.max(at + blob.size), now)
                .await
        })?;
        Ok(data.len())
    }

    fn close(&self, handle: Handle) -> FsResult<()> {
        let open = self.handles.lock().close(handle)?;
        self.unpin(&open.path, open.ino)
    }
}
