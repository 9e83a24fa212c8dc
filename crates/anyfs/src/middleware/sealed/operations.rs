//! What the sealing layer changes in each operation; everything else is
//! forwarded to the backend underneath.

use std::io::{self, Read, Write};
use std::path::Path;

use super::format::{
    CHUNK_SIZE, HEADER_LEN, SealMode, header_is_valid, new_header, open_records, random_nonce,
    record_aad, record_offset, seal_records,
};
use super::streams::{SealReader, SealWriter};
use super::{Sealed, bound};
use crate::content::{room_for, spans_of, splice_into};
use crate::crypto;
use crate::error::{FsError, FsErrorKind, FsResult};
use crate::traits::{
    FsDir, FsHandles, FsInode, FsLink, FsRead, FsReader, FsWrite, FsWriter, Middleware,
};
use crate::types::{FileType, Handle, Metadata, OpenFlags};

impl<B: FsRead + FsDir, M: SealMode> Middleware for Sealed<B, M> {
    type Inner = B;

    fn inner(&self) -> &B {
        &self.inner
    }

    // Reading: content is opened; sizes are those of the content.

    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let _shared = self.lock.read();
        self.read_unlocked(path)
    }

    fn read_to_string(&self, path: &Path) -> FsResult<String> {
        String::from_utf8(FsRead::read(self, path)?).map_err(|_| {
            FsError::io(
                path,
                "read_to_string",
                io::Error::new(io::ErrorKind::InvalidData, "the file is not valid UTF-8"),
            )
        })
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let mode = self.mode(path)?;
        let _shared = self.lock.read();
        let layout = self.layout(path)?;
        if len == 0 || offset >= layout.plain_len {
            return Ok(Vec::new());
        }
        let end = layout.plain_len.min(offset.saturating_add(len as u64));
        let first = offset / CHUNK_SIZE as u64;
        let last = (end - 1) / CHUNK_SIZE as u64;
        let span = record_offset::<M>(last) - record_offset::<M>(first)
            + (layout.plain_in(last) + M::OVERHEAD) as u64;
        // From the first record, header and records come in one read.
        let (header, stored) = if first == 0 {
            let mut stored = self.inner.read_range(path, 0, HEADER_LEN + span as usize)?;
            if stored.len() < HEADER_LEN {
                return Err(crypto::integrity(path));
            }
            let header = stored[..HEADER_LEN].to_vec();
            stored.drain(..HEADER_LEN);
            (header, stored)
        } else {
            let header = self.inner.read_range(path, 0, HEADER_LEN)?;
            let stored = self
                .inner
                .read_range(path, record_offset::<M>(first), span as usize)?;
            (header, stored)
        };
        if !header_is_valid::<M>(&header) || stored.len() as u64 != span {
            return Err(crypto::integrity(path));
        }
        let mut plain = stored;
        let written = open_records(mode, &header, &bound(path)?, &layout, first, &mut plain, 0)
            .ok_or_else(|| crypto::integrity(path))?;
        plain.truncate(written);
        let skip = (offset - first * CHUNK_SIZE as u64) as usize;
        let take = (end - offset) as usize;
        plain.drain(..skip);
        plain.truncate(take);
        Ok(plain)
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.inner.metadata(path).map(|m| self.plain_metadata(m))
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let mode = self.shared_mode(path)?;
        let (layout, mut stored) = {
            let _shared = self.lock.read();
            (self.layout(path)?, self.inner.open_read(path)?)
        };
        let mut header = vec![0; HEADER_LEN];
        stored
            .read_exact(&mut header)
            .map_err(|_| crypto::integrity(path))?;
        if !header_is_valid::<M>(&header) {
            return Err(crypto::integrity(path));
        }
        Ok(Box::new(SealReader {
            stored,
            mode,
            header,
            path: path.to_path_buf(),
            bound_to: bound(path)?,
            layout,
            index: 0,
            record: Vec::new(),
            len: 0,
            pos: 0,
        }))
    }

    // Writing: content is sealed for its path; moves and copies re-seal it
    // for the new path.

    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        let sealed = self.seal_file(path, data)?;
        let _exclusive = self.lock.write();
        self.inner.write(path, &sealed)
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        let mode = self.mode(path)?;
        let _exclusive = self.lock.write();
        match self.inner.metadata(path) {
            Err(e) if e.kind() == FsErrorKind::NotFound => {
                let sealed = self.seal_file(path, data)?;
                return self.inner.write(path, &sealed);
            }
            // Not a file: the inner backend refuses as it would.
            Ok(meta) if meta.file_type != FileType::File => {
                return self.inner.append(path, &[]);
            }
            other => other.map(drop)?,
        }
        let layout = self.layout(path)?;
        if data.is_empty() {
            return Ok(());
        }
        let header = self.inner.read_range(path, 0, HEADER_LEN)?;
        if !header_is_valid::<M>(&header) {
            return Err(crypto::integrity(path));
        }
        // The last record is opened and sealed again with the new content
        // after it, no longer marked last unless it still is.
        let last = layout.records - 1;
        let at = record_offset::<M>(last);
        let mut tail = self
            .inner
            .read_range(path, at, layout.plain_in(last) + M::OVERHEAD)?;
        let bound_to = bound(path)?;
        let aad = record_aad(&header, last, true, &bound_to);
        let kept = mode
            .open_within(&aad, &mut tail, 0)
            .ok_or_else(|| crypto::integrity(path))?;
        tail.truncate(kept);
        tail.extend_from_slice(data);
        let mut records = Vec::new();
        seal_records(mode, &header, &bound_to, last, &tail, &mut records)?;
        self.inner.truncate(path, at)?;
        self.inner.append(path, &records)
    }

    fn remove_file(&self, path: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        let _exclusive = self.lock.write();
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        let _exclusive = self.lock.write();
        self.inner.rename(from, to)?;
        if bound(from)? == bound(to)? || self.mode.is_none() {
            return Ok(());
        }
        self.rebind_tree(to, from)
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        self.mode(from)?;
        let _exclusive = self.lock.write();
        self.inner.copy(from, to)?;
        if bound(from)? == bound(to)? {
            return Ok(());
        }
        self.rebind_file(to, from)
    }

    fn write_range(&self, path: &Path, offset: u64, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        FsWrite::write_ranges(self, path, &[(offset, data)])
    }

    /// Opens the whole file and seals it again with the new bytes in: fresh
    /// records under a fresh file id, so no record of the old content can
    /// be replayed into the new one. Costs the whole file, not the ranges.
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()>
    where
        B: FsWrite,
    {
        let _exclusive = self.lock.write();
        let mut plain = self.read_unlocked(path)?;
        let spans = spans_of(path, ranges, plain.len())?;
        if spans.is_empty() {
            return Ok(());
        }
        for (start, end, data) in spans {
            splice_into(&mut plain, start, end, data);
        }
        let sealed = self.seal_file(path, &plain)?;
        self.inner.write(path, &sealed)
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()>
    where
        B: FsWrite,
    {
        let _exclusive = self.lock.write();
        let mut plain = self.read_unlocked(path)?;
        let size = usize::try_from(size)
            .map_err(|_| FsError::file_size_exceeded(path, size, usize::MAX as u64))?;
        room_for(path, plain.len(), size)?;
        plain.resize(size, 0);
        let sealed = self.seal_file(path, &plain)?;
        self.inner.write(path, &sealed)
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter>
    where
        B: FsWrite,
    {
        let mode = self.shared_mode(path)?;
        let header = new_header::<M>()?;
        let mut stored = {
            let _exclusive = self.lock.write();
            self.inner.open_write(path)?
        };
        stored
            .write_all(&header)
            .map_err(|e| FsError::from_io(path, "open_write", e))?;
        Ok(Box::new(SealWriter {
            stored: Some(stored),
            mode,
            header,
            bound_to: bound(path)?,
            path: path.to_path_buf(),
            base: random_nonce()?,
            index: 0,
            pending: Vec::new(),
            out: Vec::new(),
        }))
    }

    // Removing waits for readers of what is removed.

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.remove_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let _exclusive = self.lock.write();
        self.inner.remove_dir_all(path)
    }

    // Links.

    /// Refused: sealed content is bound to one path, and a second name
    /// would read as tampering.
    fn hard_link(&self, original: &Path, _link: &Path) -> FsResult<()>
    where
        B: FsLink,
    {
        Err(FsError::not_supported(
            original,
            "hard_link (sealed content is bound to its one path)",
        ))
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata>
    where
        B: FsLink,
    {
        self.inner
            .symlink_metadata(path)
            .map(|m| self.plain_metadata(m))
    }
    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata>
    where
        B: FsInode,
    {
        self.inner
            .metadata_by_inode(inode)
            .map(|m| self.plain_metadata(m))
    }

    // Open files: positional reads and writes would see and change the
    // sealed records, not the content, so there are none.

    fn open(&self, path: &Path, _flags: OpenFlags) -> FsResult<Handle>
    where
        B: FsHandles,
    {
        Err(FsError::not_supported(
            path,
            "open (sealed content is read and written whole or streamed, not by position)",
        ))
    }

    fn read_at(&self, handle: Handle, _buf: &mut [u8], _offset: u64) -> FsResult<usize>
    where
        B: FsHandles,
    {
        Err(no_handles(handle))
    }

    fn write_at(&self, handle: Handle, _data: &[u8], _offset: u64) -> FsResult<usize>
    where
        B: FsHandles,
    {
        Err(no_handles(handle))
    }

    fn close(&self, handle: Handle) -> FsResult<()>
    where
        B: FsHandles,
    {
        Err(no_handles(handle))
    }
}

/// No handle is ever opened through a sealing layer.
fn no_handles(handle: Handle) -> FsError {
    FsError::not_supported(
        format!("<handle {}>", handle.0),
        "positional I/O on sealed content",
    )
}
