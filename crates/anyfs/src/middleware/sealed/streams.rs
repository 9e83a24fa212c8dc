//! Streaming through a sealed file: a reader that opens one record at a
//! time and a writer that seals one record at a time.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::format::{CHUNK_SIZE, HEADER_LEN, Layout, SealMode, nonce_for, record_aad};
use crate::crypto::{self, NONCE_LEN};
use crate::error::{FsError, FsResult};
use crate::traits::{FileWriter, FsReader, FsWriter};

/// A streaming reader: one record decrypted at a time.
pub(super) struct SealReader<M: SealMode> {
    pub(super) stored: FsReader,
    pub(super) mode: Arc<M>,
    pub(super) header: Vec<u8>,
    pub(super) path: PathBuf,
    pub(super) bound_to: Vec<u8>,
    pub(super) layout: Layout,
    pub(super) index: u64,
    /// The current record; its content, once opened, at the start.
    pub(super) record: Vec<u8>,
    pub(super) len: usize,
    pub(super) pos: usize,
}

impl<M: SealMode> Read for SealReader<M> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            if self.index == self.layout.records {
                // Anything after the last record is tampering.
                let mut extra = [0u8; 1];
                return match self.stored.read(&mut extra)? {
                    0 => Ok(0),
                    _ => Err(io::Error::other(crypto::integrity(&self.path))),
                };
            }
            let len = self.layout.plain_in(self.index) + M::OVERHEAD;
            self.record.resize(len, 0);
            self.stored
                .read_exact(&mut self.record)
                .map_err(|_| io::Error::other(crypto::integrity(&self.path)))?;
            let last = self.index + 1 == self.layout.records;
            let aad = record_aad(&self.header, self.index, last, &self.bound_to);
            self.pos = 0;
            self.len = self
                .mode
                .open_within(&aad, &mut self.record, 0)
                .ok_or_else(|| io::Error::other(crypto::integrity(&self.path)))?;
            self.index += 1;
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.record[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A streaming writer: content is sealed a record at a time into a staged
/// replacement of the stored file; the last record is written at the
/// commit, which commits the stored file.
pub(super) struct SealWriter<M: SealMode> {
    pub(super) stored: Option<FsWriter>,
    pub(super) mode: Arc<M>,
    pub(super) header: [u8; HEADER_LEN],
    pub(super) bound_to: Vec<u8>,
    pub(super) path: PathBuf,
    pub(super) base: [u8; NONCE_LEN],
    pub(super) index: u64,
    pub(super) pending: Vec<u8>,
    pub(super) out: Vec<u8>,
}

impl<M: SealMode> SealWriter<M> {
    fn emit(&mut self, last: bool) -> io::Result<()> {
        let take = self.pending.len().min(CHUNK_SIZE);
        let aad = record_aad(&self.header, self.index, last, &self.bound_to);
        self.out.clear();
        self.mode.seal(
            &aad,
            &self.pending[..take],
            nonce_for(&self.base, self.index),
            &mut self.out,
        );
        self.pending.drain(..take);
        self.index += 1;
        match &mut self.stored {
            Some(stored) => stored.write_all(&self.out),
            None => Err(io::Error::other("the writer is closed")),
        }
    }
}

impl<M: SealMode> Write for SealWriter<M> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // A full record is held back until more content shows it is not the last.
        while self.pending.len() > CHUNK_SIZE {
            self.emit(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stored {
            Some(stored) => stored.flush(),
            None => Ok(()),
        }
    }
}

impl<M: SealMode> FileWriter for SealWriter<M> {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let path = self.path.clone();
        self.emit(true)
            .map_err(|e| FsError::from_io(&path, "open_write", e))?;
        match self.stored.take() {
            Some(stored) => stored.commit(),
            None => Ok(()),
        }
    }
}
