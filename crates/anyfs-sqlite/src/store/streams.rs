//! Streams: [`StoreReader`] reads a pinned file one block at a time from
//! a snapshot, in constant memory; [`StoreWriter`] gathers a streamed write
//! into blocks staged in a nameless node, which takes the file's name at
//! the commit. The [`Store`] methods here are theirs alone.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyfs::{FileWriter, FsError, FsResult, FsWrite};
use rusqlite::{Connection, params};

use super::node::KIND_FILE;
use super::queries;
use super::{Content, FileRow, Store, now_ns, retry_conflicts};
use crate::db::sql_error;

impl<C: Content> Store<C> {
    /// Reads part of a pinned file for a stream.
    fn read_block(
        &self,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>> {
        let read = |conn: &Connection| {
            // The node is pinned (open), so its row is still there; its
            // content may have been rewritten meanwhile.
            let node = queries::node(conn, path, file.ino)?;
            let current = FileRow {
                size: file.size.min(node.size),
                ..node.file()
            };
            self.content.read(conn, path, &current, offset, len)
        };
        retry_conflicts(|| self.db.read(read), || self.db.with_writer(read))
    }

    /// Makes the staged node's content the file's at `path` (which is
    /// created with it, if missing), in one transaction.
    fn commit_staged(&self, path: &Path, staging: i64) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let staged = queries::node(tx, path, staging)?;
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            match queries::child(tx, path, parent, name.as_bytes())? {
                // The staged node becomes the file.
                None => queries::link(tx, path, parent, name.as_bytes(), staging, false, now),
                Some((ino, _)) => {
                    let node = queries::file(tx, path, ino)?;
                    if node.nlink > 1 {
                        // Other names must keep seeing one file: the
                        // content moves into it instead.
                        self.content
                            .adopt(tx, path, &staged.file(), &node.file(), removals)?;
                        queries::set_size(tx, path, ino, staged.size, now)?;
                        return queries::set_size(tx, path, staging, 0, now);
                    }
                    // The staged node takes the name, with the old one's
                    // permissions and owner; a reader still streaming the
                    // old node keeps it (and its content) until it closes.
                    tx.prepare_cached(
                        "UPDATE inodes SET mode = ?2, uid = ?3, gid = ?4 WHERE ino = ?1",
                    )
                    .and_then(|mut s| s.execute(params![staging, node.mode, node.uid, node.gid]))
                    .map_err(|e| sql_error(path, "keep permissions", e))?;
                    self.give_name(tx, path, (parent, name.as_bytes()), staging, now, removals)
                }
            }
        })
    }

    /// A new node with no name for a streamed write to `path`, kept (not
    /// freed) until the writer lets it go.
    fn stage(&self, path: &Path) -> FsResult<i64> {
        let now = now_ns();
        let ino = self.db_write(path, |tx, _| {
            queries::alloc(
                tx,
                (self.tree, path),
                KIND_FILE,
                0o644,
                self.owner,
                None,
                now,
            )
        })?;
        self.pin(ino);
        Ok(ino)
    }

    /// Appends a block to a pinned file for a stream.
    fn append_block(&self, path: &Path, ino: i64, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let node = queries::node(tx, path, ino)?;
            self.content
                .write_at(tx, path, &node.file(), node.size, data, removals)?;
            queries::set_size(tx, path, ino, node.size + data.len() as u64, now)
        })
    }
}

/// A streamed read: one block at a time.
pub(super) struct StoreReader<C: Content> {
    store: Arc<Store<C>>,
    file: FileRow,
    path: PathBuf,
    pos: u64,
    buf: Vec<u8>,
    buf_pos: usize,
}

impl<C: Content> StoreReader<C> {
    /// Reads `file` (pinned by the caller, let go when the reader drops).
    pub(super) fn new(store: Arc<Store<C>>, file: FileRow, path: PathBuf) -> Self {
        Self {
            store,
            file,
            path,
            pos: 0,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }
}

impl<C: Content> Read for StoreReader<C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf_pos == self.buf.len() {
            if self.pos >= self.file.size {
                return Ok(0);
            }
            let block = self.store.content.read_block();
            self.buf = self
                .store
                .read_block(&self.path, &self.file, self.pos, block)?;
            self.buf_pos = 0;
            self.pos += self.buf.len() as u64;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        Ok(n)
    }
}

impl<C: Content> Drop for StoreReader<C> {
    fn drop(&mut self) {
        let _ = self.store.unpin(&self.path, self.file.ino);
    }
}

/// A streamed write: gathered into blocks, each block one transaction into
/// a staging node (made with the first full block), moved into the file at
/// the commit. A write that fits in one block is stored by one `write`.
pub(super) struct StoreWriter<C: Content> {
    store: Arc<Store<C>>,
    ino: Option<i64>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl<C: Content> StoreWriter<C> {
    /// Writes to `path` at the commit.
    pub(super) fn new(store: Arc<Store<C>>, path: PathBuf) -> Self {
        Self {
            store,
            ino: None,
            path,
            buf: Vec::new(),
        }
    }

    /// Stores the gathered block, staging a node for it first if need be.
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let ino = match self.ino {
            Some(ino) => ino,
            None => {
                let ino = self.store.stage(&self.path)?;
                self.ino = Some(ino);
                ino
            }
        };
        self.store.append_block(&self.path, ino, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<C: Content> Write for StoreWriter<C> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let block = self.store.content.read_block();
        let n = data.len().min(block - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= block {
            self.push()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Nothing is visible before the commit: a flush stores nothing.
        Ok(())
    }
}

impl<C: Content> FileWriter for StoreWriter<C> {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let Some(ino) = self.ino else {
            // It all fits in one block: one transaction.
            return self.store.write(&self.path, &self.buf);
        };
        self.push()
            .map_err(|e| FsError::from_io(&self.path, "open_write", e))?;
        self.store.commit_staged(&self.path, ino)
        // Dropping the writer lets the staging node go, if it has no name.
    }
}

impl<C: Content> Drop for StoreWriter<C> {
    fn drop(&mut self) {
        // Not committed: the staged content goes with its node.
        if let Some(ino) = self.ino {
            let _ = self.store.unpin(&self.path, ino);
        }
    }
}
