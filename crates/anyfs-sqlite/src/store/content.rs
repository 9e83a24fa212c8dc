//! The [`Content`] trait: where file content lives, as the namespace sees
//! it. Implemented by chunk rows in the database (`crate::chunks`) and by
//! blob files beside it (`crate::blobs`).

use std::path::Path;

use anyfs::FsResult;
use rusqlite::Connection;

use crate::db::DeferredRemovals;

/// What a file's content store needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct FileRow {
    pub(crate) ino: i64,
    pub(crate) size: u64,
    pub(crate) blob: Option<String>,
}

/// A buffer of zeros for bytes `offset .. offset + len` of a file of `size`
/// bytes, cut at its end (empty past it), and where that range ends.
/// Content stores fill it with what they hold; the rest reads as zeros.
pub(crate) fn zeroed_range(size: u64, offset: u64, len: usize) -> (u64, Vec<u8>) {
    let end = size.min(offset.saturating_add(len as u64));
    (end, vec![0u8; end.saturating_sub(offset) as usize])
}

/// Where file content lives. Every method runs inside the caller's
/// transaction and updates the `size` (and `blob`) of the inode itself;
/// files to delete once that transaction ends go into `removals`.
///
/// Content can be shared: a snapshot or branch names the same chunks or
/// blob as the node it copied. A store changes content in place only where
/// nothing else names it, and frees only what nothing else names.
pub(crate) trait Content: Clone + Send + Sync + 'static {
    /// Bytes `offset .. offset + len` of the file, stopping at its end.
    fn read(
        &self,
        conn: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>>;
    /// Replaces the whole content.
    fn replace(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        data: &[u8],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Writes `data` at `offset` (zeros fill any gap).
    fn write_at(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        data: &[u8],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Writes each range in order (zeros fill any gap). The provided
    /// method suits stores whose `write_at` leaves the content where it is.
    fn write_ranges(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        ranges: &[(u64, &[u8])],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        ranges
            .iter()
            .try_for_each(|(offset, data)| self.write_at(tx, path, file, *offset, data, removals))
    }
    /// Cuts or extends (with zeros) to `size`.
    fn truncate(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        size: u64,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Makes `dst`'s content a copy of `src`'s.
    fn copy(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Moves `src`'s content to `dst`, replacing `dst`'s: `src` is left
    /// with none. Sizes are the caller's to set.
    fn adopt(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Frees the content of a file that no longer exists.
    fn remove(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// Frees the content of every file of the tree whose inode numbers
    /// are `first ..= last` that no node outside it names, before the
    /// tree's rows are deleted.
    fn release_tree(
        &self,
        tx: &Connection,
        path: &Path,
        range: (i64, i64),
        removals: &mut DeferredRemovals,
    ) -> FsResult<()>;
    /// The largest file this store holds, in bytes.
    fn max_len(&self) -> u64;
    /// Reads a file by inode in one statement (its own snapshot), for the
    /// cached fast path: `None` if this store cannot, `Some(Ok(None))` if
    /// the inode is no longer a file.
    fn read_by_ino(
        &self,
        conn: &Connection,
        path: &Path,
        ino: i64,
        offset: u64,
        len: usize,
    ) -> Option<FsResult<Option<Vec<u8>>>> {
        let _ = (conn, path, ino, offset, len);
        None
    }
    /// How many bytes one streamed read should fetch at a time.
    fn read_block(&self) -> usize {
        64 * 1024
    }
}
