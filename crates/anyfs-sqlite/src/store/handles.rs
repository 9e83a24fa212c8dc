//! [`FsHandles`]: files opened by handle, read and written at offsets.
//! The handle numbers live in [`OpenFiles`](super::open_files::OpenFiles);
//! each handle pins its inode until it is closed.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyfs::{FsError, FsHandles, FsResult, Handle, OpenFlags};

use super::open_files::OpenFile;
use super::queries;
use super::{Content, Store, now_ns};

impl<C: Content> Store<C> {
    /// Opens (creating or truncating, as `flags` say) a file for a handle;
    /// its inode.
    fn open_for_write(&self, path: &Path, flags: OpenFlags, now: i64) -> FsResult<i64> {
        self.db_write(path, |tx, removals| {
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            let node = match queries::child(tx, path, parent, name.as_bytes())? {
                Some(_) if flags.create_new => {
                    return Err(FsError::already_exists(path));
                }
                Some((ino, _)) => queries::file(tx, path, ino)?,
                None if flags.create || flags.create_new => self.file_for_write(tx, path, now)?,
                None => return Err(FsError::not_found(path)),
            };
            if flags.truncate && node.size > 0 {
                self.content.truncate(tx, path, &node.file(), 0, removals)?;
                queries::set_size(tx, path, node.ino, 0, now)?;
            }
            Ok(node.ino)
        })
    }
}

impl<C: Content> FsHandles for Store<C> {
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle> {
        let now = now_ns();
        let changes = flags.write || flags.append || flags.truncate;
        let ino = if self.frozen && !changes {
            // A snapshot opens what is there for reading; creating a
            // file in it is a write.
            match self.db.read(|conn| queries::file_at(conn, self.tree, path)) {
                Ok(node) => Ok(node.ino),
                Err(e) if e.is_absent() && (flags.create || flags.create_new) => {
                    Err(FsError::read_only(path, "create a file"))
                }
                Err(e) => Err(e),
            }?
        } else {
            self.open_for_write(path, flags, now)?
        };
        self.pin(ino);
        Ok(self.open_files.insert(OpenFile {
            ino,
            path: path.to_path_buf(),
            flags,
        }))
    }

    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let open = self.open_files.get(handle)?;
        if !open.flags.read {
            return Err(FsError::permission_denied(
                open.path,
                "read from a handle not opened for reading",
            ));
        }
        let data = self.db.read(|conn| {
            let node = queries::node(conn, &open.path, open.ino)?;
            self.content
                .read(conn, &open.path, &node.file(), offset, buf.len())
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize> {
        let open = self.open_files.get(handle)?;
        if !(open.flags.write || open.flags.append || open.flags.create_new) {
            return Err(FsError::permission_denied(
                open.path,
                "write to a handle not opened for writing",
            ));
        }
        let now = now_ns();
        self.db_write(&open.path, |tx, removals| {
            let node = queries::node(tx, &open.path, open.ino)?;
            let at = if open.flags.append { node.size } else { offset };
            self.content
                .write_at(tx, &open.path, &node.file(), at, data, removals)?;
            let size = node.size.max(at + data.len() as u64);
            queries::set_size(tx, &open.path, open.ino, size, now)
        })?;
        Ok(data.len())
    }

    fn close(&self, handle: Handle) -> FsResult<()> {
        let open = self.open_files.remove(handle)?;
        self.unpin(&open.path, open.ino)
    }
}
