//! File content as blob files beside the index: one UUID-named file per
//! content version, written to a temporary name and renamed into place, so a
//! blob is either whole or absent. The index row names the current blob; a
//! replaced blob is removed once the new name is committed, and blobs no row
//! names (left by a crash) are removed when the backend opens.
//!
//! A blob can be named by several rows: a snapshot or branch copies a
//! file's row, blob name and all. A blob is appended to or grown in place
//! only while one row names it, and removed only once none does.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyfs::{FsError, FsResult};
use rusqlite::{Connection, params};

use crate::db::{DeferredRemovals, sql_error};
use crate::store::{Content, FileRow, zeroed_range};

/// Blob files in one directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    /// Flush each new blob to disk before its name is committed.
    durable: bool,
}

fn io_error(path: &Path, op: &'static str, err: io::Error) -> FsError {
    // `io::Error`s from opening files carry no path, so no host path leaks.
    FsError::io(path, op, err)
}

impl Blobs {
    pub(crate) fn new(dir: PathBuf, durable: bool) -> Self {
        Self { dir, durable }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a new blob: `fill` writes its bytes into a temporary file,
    /// which is then renamed to a fresh name. The new name is returned and
    /// removed again if the transaction rolls back.
    fn create(
        &self,
        path: &Path,
        removals: &mut DeferredRemovals,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> FsResult<String> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.file(&format!(".tmp-{name}"));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            fill(&mut file)?;
            if self.durable {
                file.sync_all()?;
            }
            fs::rename(&tmp, self.file(&name))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(path, "write a blob", e));
        }
        removals.on_rollback.push(self.file(&name));
        Ok(name)
    }

    fn point(tx: &Connection, path: &Path, ino: i64, blob: Option<&str>) -> FsResult<()> {
        tx.prepare_cached("UPDATE inodes SET blob = ?2 WHERE ino = ?1")
            .and_then(|mut s| s.execute(params![ino, blob]))
            .map_err(|e| sql_error(path, "name a blob", e))?;
        Ok(())
    }

    /// Whether no row but one names blob `name`.
    fn named_once(tx: &Connection, path: &Path, name: &str) -> FsResult<bool> {
        tx.prepare_cached("SELECT 1 FROM inodes WHERE blob = ?1 LIMIT 1 OFFSET 1")
            .and_then(|mut s| s.exists([name]))
            .map(|more| !more)
            .map_err(|e| sql_error(path, "find a blob", e))
    }

    /// Removes blob `name` after commit if no row names it any more.
    fn retire(
        &self,
        tx: &Connection,
        path: &Path,
        name: &str,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let named = tx
            .prepare_cached("SELECT 1 FROM inodes WHERE blob = ?1")
            .and_then(|mut s| s.exists([name]))
            .map_err(|e| sql_error(path, "find a blob", e))?;
        if !named {
            removals.on_commit.push(self.file(name));
        }
        Ok(())
    }

    /// Points the inode at `new` and retires its old blob after commit.
    fn swap(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        new: Option<&str>,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        Self::point(tx, path, file.ino, new)?;
        match &file.blob {
            Some(old) => self.retire(tx, path, old, removals),
            None => Ok(()),
        }
    }

    /// A copy of the first `len` bytes of the current blob (zeros past its
    /// end), with `edit` applied, as a new blob.
    fn rewrite(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        len: u64,
        removals: &mut DeferredRemovals,
        edit: impl FnOnce(&File) -> io::Result<()>,
    ) -> FsResult<()> {
        let old = file.blob.as_deref().map(|b| self.file(b));
        let name = self.create(path, removals, |new| {
            if let Some(old) = &old {
                let mut src = File::open(old)?.take(len);
                io::copy(&mut src, new)?;
            }
            new.set_len(len)?;
            edit(new)
        })?;
        self.swap(tx, path, file, Some(&name), removals)
    }

    /// Removes every blob no inode names (and stray temporary files).
    pub(crate) fn sweep(&self, conn: &Connection) -> FsResult<usize> {
        let root = Path::new("/");
        let live: HashSet<String> = conn
            .prepare("SELECT blob FROM inodes WHERE blob IS NOT NULL")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| sql_error(root, "list blobs", e))?;
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(root, "list blobs", e))? {
            let entry = entry.map_err(|e| io_error(root, "list blobs", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Content for Blobs {
    fn read(
        &self,
        _conn: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>> {
        let (_, mut out) = zeroed_range(file.size, offset, len);
        if out.is_empty() {
            return Ok(out);
        }
        let Some(blob) = &file.blob else {
            return Ok(out);
        };
        let mut f = match File::open(self.file(blob)) {
            Ok(f) => f,
            // Replaced and retired after this snapshot was taken.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FsError::conflict(
                    path,
                    "the file was rewritten while being read",
                ));
            }
            Err(e) => return Err(io_error(path, "read a blob", e)),
        };
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(path, "read a blob", e))?;
        let mut filled = 0;
        while filled < out.len() {
            match f.read(&mut out[filled..]) {
                Ok(0) => break, // past the blob's end: zeros
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(path, "read a blob", e)),
            }
        }
        Ok(out)
    }

    fn replace(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        data: &[u8],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let name = if data.is_empty() {
            None
        } else {
            Some(self.create(path, removals, |f| f.write_all(data))?)
        };
        self.swap(tx, path, file, name.as_deref(), removals)
    }

    fn write_at(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        data: &[u8],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        self.write_ranges(tx, path, file, &[(offset, data)], removals)
    }

    /// Several ranges make one new blob with all of them in, not one copy
    /// per range.
    fn write_ranges(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        ranges: &[(u64, &[u8])],
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let ranges: Vec<(u64, &[u8])> = ranges
            .iter()
            .filter(|(_, data)| !data.is_empty())
            .copied()
            .collect();
        match (ranges.as_slice(), &file.blob) {
            ([], _) => Ok(()),
            // Appending leaves every committed byte as it is, so it can go to
            // the current blob in place: a crash leaves bytes past the
            // committed size, which are cut before the next append.
            ([(offset, data)], Some(blob))
                if *offset == file.size && Self::named_once(tx, path, blob)? =>
            {
                let f = OpenOptions::new()
                    .write(true)
                    .open(self.file(blob))
                    .map_err(|e| io_error(path, "append to a blob", e))?;
                (|| {
                    f.set_len(file.size)?;
                    f.write_all_at(data, *offset)?;
                    if self.durable {
                        f.sync_data()?;
                    }
                    Ok(())
                })()
                .map_err(|e| io_error(path, "append to a blob", e))
            }
            // Anything else rewrites a copy, so readers and crashes only ever
            // see the old blob or the new one.
            _ => {
                let mut len = file.size;
                for (offset, data) in &ranges {
                    let end = offset
                        .checked_add(data.len() as u64)
                        .filter(|&end| end <= i64::MAX as u64)
                        .ok_or_else(|| {
                            FsError::file_size_exceeded(
                                path,
                                offset.saturating_add(data.len() as u64),
                                i64::MAX as u64,
                            )
                        })?;
                    len = len.max(end);
                }
                self.rewrite(tx, path, file, file.size, removals, |f| {
                    f.set_len(len)?;
                    for (offset, data) in &ranges {
                        f.write_all_at(data, *offset)?;
                    }
                    Ok(())
                })
            }
        }
    }

    fn truncate(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        size: u64,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        match &file.blob {
            _ if size == 0 => self.swap(tx, path, file, None, removals),
            Some(blob) if size >= file.size && Self::named_once(tx, path, blob)? => {
                // Growing in place: zeros past the committed size.
                let f = OpenOptions::new()
                    .write(true)
                    .open(self.file(blob))
                    .map_err(|e| io_error(path, "extend a blob", e))?;
                f.set_len(file.size)
                    .and_then(|()| f.set_len(size))
                    .map_err(|e| io_error(path, "extend a blob", e))
            }
            // No blob yet: the size alone makes the zeros.
            None => Ok(()),
            // Growing a shared blob: a copy, grown.
            Some(_) if size > file.size => {
                self.rewrite(tx, path, file, file.size, removals, |f| f.set_len(size))
            }
            Some(_) => self.rewrite(tx, path, file, size, removals, |_| Ok(())),
        }
    }

    fn copy(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let name = match &src.blob {
            None => None,
            Some(blob) => {
                let from = self.file(blob);
                let size = src.size;
                Some(self.create(path, removals, |f| {
                    let mut reader = File::open(&from)?.take(size);
                    io::copy(&mut reader, f)?;
                    f.set_len(size)
                })?)
            }
        };
        self.swap(tx, path, dst, name.as_deref(), removals)
    }

    fn adopt(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        Self::point(tx, path, src.ino, None)?;
        self.swap(tx, path, dst, src.blob.as_deref(), removals)
    }

    fn remove(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        // The row goes after this; until then it names the blob too.
        if let Some(blob) = &file.blob {
            Self::point(tx, path, file.ino, None)?;
            self.retire(tx, path, blob, removals)?;
        }
        Ok(())
    }

    fn release_tree(
        &self,
        tx: &Connection,
        path: &Path,
        (first, last): (i64, i64),
        removals: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let only_here: Vec<String> = tx
            .prepare_cached(
                "SELECT DISTINCT blob FROM inodes i WHERE ino BETWEEN ?1 AND ?2
                 AND blob IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inodes o
                     WHERE o.blob = i.blob AND o.ino NOT BETWEEN ?1 AND ?2)",
            )
            .and_then(|mut s| s.query_map([first, last], |r| r.get(0))?.collect())
            .map_err(|e| sql_error(path, "free content", e))?;
        removals
            .on_commit
            .extend(only_here.iter().map(|name| self.file(name)));
        Ok(())
    }

    fn max_len(&self) -> u64 {
        i64::MAX as u64
    }

    fn read_block(&self) -> usize {
        256 * 1024
    }
}
