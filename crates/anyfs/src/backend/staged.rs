//! [`WholeFileWriter`]: a streamed write for backends that hold a file's
//! content whole, gathered in memory and stored by one `write` at commit.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::content::room_for;
use crate::error::{FsError, FsErrorKind, FsResult};
use crate::traits::{FileWriter, FsRead, FsWrite};

/// Gathers a streamed write and stores it whole with `write` on commit
/// (each in-memory backend's `write` replaces content in one step).
/// The gathered bytes are wiped when the writer goes.
pub(crate) struct WholeFileWriter<B> {
    backend: B,
    path: PathBuf,
    data: Zeroizing<Vec<u8>>,
}

impl<B: FsRead + FsWrite> WholeFileWriter<B> {
    /// A writer for `path`, after checking that a `write` there could
    /// succeed: it is a file, or its parent is a directory.
    pub(crate) fn open(backend: B, path: &Path) -> FsResult<Self> {
        writable(&backend, path)?;
        Ok(Self {
            backend,
            path: path.to_path_buf(),
            data: Zeroizing::new(Vec::new()),
        })
    }
}

/// Whether `write(path, …)` could succeed as far as the tree goes: the
/// path is a file, or missing in an existing directory.
fn writable<B: FsRead>(backend: &B, path: &Path) -> FsResult<()> {
    match backend.metadata(path) {
        Ok(meta) if meta.is_dir() => Err(FsError::is_a_directory(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == FsErrorKind::NotFound => {
            let Some((parent, _)) = crate::path::split_parent(path) else {
                return Err(FsError::is_a_directory(path));
            };
            match backend.metadata(&parent) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(FsError::not_a_directory(path)),
                Err(e) => Err(e.with_path(path)),
            }
        }
        Err(e) => Err(e),
    }
}

impl<B: FsWrite + Send> Write for WholeFileWriter<B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        room_for(&self.path, self.data.len(), self.data.len() + buf.len())?;
        // Never let a growing buffer abort the process.
        self.data.try_reserve(buf.len()).map_err(|_| {
            io::Error::from(FsError::io(
                self.path.clone(),
                "open_write",
                io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        })?;
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<B: FsWrite + Send> FileWriter for WholeFileWriter<B> {
    fn commit(self: Box<Self>) -> FsResult<()> {
        self.backend.write(&self.path, &self.data)
    }
}
