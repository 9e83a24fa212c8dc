//! Streams: [`ObjectReader`] reads a file's content as it was when opened
//! (its extents, taken from one snapshot, name blobs that never change),
//! a window at a time; [`ObjectWriter`] uploads a blob for every few MiB
//! written and names them all in one transaction at the commit, so that
//! neither holds a large file in memory.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyfs::{FileWriter, FsError, FsResult};

use super::ObjectBackend;
use super::content::{Extent, Uploaded};
use super::files::MAX_FILE;

/// How much one read from the blobs fetches.
const READ_WINDOW: i64 = 1 << 20;
/// How much a writer holds before it uploads a blob.
const WRITE_BLOB: usize = 8 << 20;

/// A file's content as it was when opened.
pub(crate) struct ObjectReader {
    fs: ObjectBackend,
    path: PathBuf,
    extents: Vec<Extent>,
    size: i64,
    /// Where `window` starts in the file.
    at: i64,
    window: Vec<u8>,
    /// How much of `window` was read.
    taken: usize,
}

impl ObjectReader {
    pub(crate) fn new(fs: ObjectBackend, path: PathBuf, extents: Vec<Extent>, size: i64) -> Self {
        Self {
            fs,
            path,
            extents,
            size,
            at: 0,
            window: Vec::new(),
            taken: 0,
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.taken == self.window.len() {
            let next = self.at + self.window.len() as i64;
            if next >= self.size || buf.is_empty() {
                return Ok(0);
            }
            let end = (next + READ_WINDOW).min(self.size);
            self.window = self.fs.assemble(&self.path, &self.extents, (next, end))?;
            self.at = next;
            self.taken = 0;
        }
        let n = buf.len().min(self.window.len() - self.taken);
        buf[..n].copy_from_slice(&self.window[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }
}

/// A new content for a file, uploaded as it is written and made the
/// file's at the commit.
pub(crate) struct ObjectWriter {
    fs: ObjectBackend,
    path: PathBuf,
    pending: Vec<u8>,
    uploaded: Vec<Uploaded>,
    size: u64,
}

impl ObjectWriter {
    pub(crate) fn new(fs: ObjectBackend, path: PathBuf) -> Self {
        Self {
            fs,
            path,
            pending: Vec::new(),
            uploaded: Vec::new(),
            size: 0,
        }
    }

    /// Uploads what is pending as a blob.
    fn upload_pending(&mut self) -> FsResult<()> {
        if let Some(blob) = self.fs.upload(&self.path, &self.pending)? {
            self.uploaded.push(blob);
        }
        self.pending.clear();
        Ok(())
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let size = self.size + buf.len() as u64;
        if size > MAX_FILE {
            return Err(FsError::file_size_exceeded(&self.path, size, MAX_FILE).into());
        }
        let room = WRITE_BLOB - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        self.size += n as u64;
        if self.pending.len() == WRITE_BLOB {
            self.upload_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FileWriter for ObjectWriter {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        self.upload_pending()?;
        // Uploaded blobs of a writer never committed have no row: the
        // garbage collector deletes them after its grace period.
        self.fs
            .replace_content(&self.path, &self.uploaded, self.size as i64)
    }
}
