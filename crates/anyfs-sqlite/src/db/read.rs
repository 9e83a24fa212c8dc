//! Reading: a pool of reader connections, each keeping its read
//! transaction (snapshot) open between reads for as long as nothing was
//! written, and tagging it with the write generation it is at.

use std::sync::atomic::Ordering;

use anyfs::FsResult;
use parking_lot::Mutex;
use rusqlite::Connection;

use super::connect::connect;
use super::{Core, Db, execute_cached};

/// A reader connection and the read transaction it keeps open.
pub(super) struct Reader {
    pub(super) conn: Connection,
    /// Whether a read transaction is open.
    pub(super) open: bool,
    /// The write generation the open snapshot is exactly at, if known.
    pub(super) tag: Option<u64>,
    /// The key epoch the connection was opened under.
    pub(super) epoch: u64,
}

impl Core {
    /// Ends the read transactions idle readers keep, so that a checkpoint
    /// can move the whole log into the database.
    pub(crate) fn release_snapshots(&self) {
        if let Some(pool) = &self.readers {
            for reader in pool.lock().iter_mut() {
                if reader.open {
                    reader.open = false;
                    let _ = execute_cached(&reader.conn, "COMMIT");
                }
            }
        }
    }

    /// A reader connection: call with `gate` held (shared).
    pub(super) fn take_reader(&self, pool: &Mutex<Vec<Reader>>) -> FsResult<Reader> {
        if let Some(reader) = pool.lock().pop() {
            return Ok(reader);
        }
        let key = self.key.lock().clone();
        Ok(Reader {
            // Never created by a reader: a database deleted from under
            // an open backend stays deleted.
            conn: connect(self.path.as_deref(), key.as_ref(), &self.options, false)?,
            open: false,
            tag: None,
            epoch: self.key_epoch.load(Ordering::Acquire),
        })
    }

    /// Returns a reader to the pool, unless it was opened under an old key
    /// or the pool is full.
    pub(super) fn give_back(&self, pool: &Mutex<Vec<Reader>>, mut reader: Reader) {
        if reader.epoch != self.key_epoch.load(Ordering::Acquire) {
            return;
        }
        // A snapshot older than the last write would hold the log back.
        if reader.open && reader.tag != Some(self.generation()) {
            reader.open = false;
            let _ = execute_cached(&reader.conn, "COMMIT");
        }
        let mut idle = pool.lock();
        if idle.len() < self.options.max_idle_readers {
            idle.push(reader);
        }
    }
}

impl Db {
    /// Runs `f` in one read transaction on a reader connection (a consistent
    /// snapshot that never waits for the writer). On the thread running a
    /// batch, reads see the batch's own writes.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> FsResult<T>) -> FsResult<T> {
        self.read_tagged(|conn, _| f(conn))
    }

    /// [`Db::read`], telling `f` the write generation its snapshot is
    /// exactly at (`None` if that is not known). A snapshot at generation
    /// `g` holds every write up to `g`, and at most the one write in
    /// flight after it — which never both frees and reuses an inode.
    pub(crate) fn read_tagged<T>(
        &self,
        f: impl FnOnce(&Connection, Option<u64>) -> FsResult<T>,
    ) -> FsResult<T> {
        match self.read_at(None, f) {
            Ok(result) => result,
            // Not run: in a batch on this thread (or without a reader
            // connection), read through the writer.
            Err(f) => {
                let guard = self.core.writer.lock();
                let writer = guard.borrow();
                f(&writer.conn, None)
            }
        }
    }

    /// Runs `f` on a reader connection inside a read transaction, with the
    /// snapshot's generation. A reader keeps its transaction open between
    /// calls for as long as nothing was written, which saves taking the file
    /// lock on every read. With `expected`, only a snapshot at exactly that
    /// generation will do. `f` is given back, not run, if it could not
    /// run (inside a batch on this thread, whose writes only the writer
    /// sees, with no reader connection, or no snapshot of the expected
    /// generation).
    pub(crate) fn read_at<T, F>(&self, expected: Option<u64>, f: F) -> Result<T, F>
    where
        F: FnOnce(&Connection, Option<u64>) -> T,
    {
        if expected.is_some_and(|g| g != self.generation()) {
            return Err(f);
        }
        if self.core.group_seq.load(Ordering::Acquire) % 2 == 1 {
            // Acknowledged writes are only in the writer's open transaction:
            // read there. With writes held off, it is exactly the current
            // generation.
            let guard = self.core.writer.lock();
            let writer = guard.borrow();
            if writer.group.is_some() {
                let tag = Some(self.generation());
                if expected.is_some() && tag != expected {
                    return Err(f);
                }
                return Ok(f(&writer.conn, tag));
            }
        }
        let Some(pool) = &self.readers else {
            // In memory: the writer's lock keeps writes (and their
            // generation bumps) out while we read.
            let guard = self.core.writer.lock();
            let writer = guard.borrow();
            let tag = (writer.batch.is_none()).then(|| self.generation());
            if expected.is_some() && tag != expected {
                return Err(f);
            }
            return Ok(f(&writer.conn, tag));
        };
        if let Some(guard) = self.core.writer.try_lock()
            && guard.borrow().batch.is_some()
        {
            return Err(f);
        }
        let _gate = self.core.gate.read();
        let Ok(mut reader) = self.take_reader(pool) else {
            return Err(f);
        };
        let current = self.generation();
        if !(reader.open && reader.tag == Some(current)) {
            if reader.open {
                let _ = execute_cached(&reader.conn, "COMMIT");
                reader.open = false;
            }
            // The snapshot starts at the first read: read the generation on
            // both sides of it, and trust it only if nothing moved.
            let seq = self.core.group_seq.load(Ordering::Acquire);
            let before = self.generation();
            if execute_cached(&reader.conn, "BEGIN").is_err() {
                return Err(f);
            }
            reader.open = true;
            let started = reader
                .conn
                .prepare_cached("PRAGMA schema_version")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .is_ok();
            let after = self.generation();
            // A group opened meanwhile holds writes this snapshot lacks.
            let grouped = seq % 2 == 1 || self.core.group_seq.load(Ordering::Acquire) != seq;
            reader.tag = (started && before == after && !grouped).then_some(before);
        }
        if expected.is_some() && reader.tag != expected {
            self.give_back(pool, reader);
            return Err(f);
        }
        let tag = reader.tag;
        let value = f(&reader.conn, tag);
        self.give_back(pool, reader);
        Ok(value)
    }

    /// Runs `f` on the writer connection outside any transaction, with
    /// writers held off meanwhile.
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> FsResult<T>) -> FsResult<T> {
        let guard = self.core.writer.lock();
        if guard.borrow().batch.is_none() {
            self.commit_group()?;
        }
        let writer = guard.borrow();
        f(&writer.conn)
    }
}
