//! Writing files: [`FsWrite`] (whole files, ranges, appends, names moved,
//! copied and removed, streamed writes) and [`FsSync`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyfs::{FsError, FsResult, FsSync, FsWrite, FsWriter};
use rusqlite::params;

use super::node::{KIND_DIR, KIND_FILE};
use super::queries;
use super::streams::StoreWriter;
use super::{Content, FileRow, Store, now_ns};
use crate::db::sql_error;

impl<C: Content> FsWrite for Store<C> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let (node, created) = self.file_for_write_sized(tx, path, now, data.len() as u64)?;
            if !created && node.nlink == 1 && self.pins.is_pinned(node.ino) {
                // Someone streams the old content: the new takes the name
                // with a node of its own, and the reader keeps the old one
                // whole until it closes.
                let fresh = queries::alloc(
                    tx,
                    (self.tree, path),
                    KIND_FILE,
                    node.mode,
                    (node.uid, node.gid),
                    None,
                    now,
                )?;
                let row = FileRow {
                    ino: fresh,
                    size: 0,
                    blob: None,
                };
                self.content.replace(tx, path, &row, data, removals)?;
                queries::set_size(tx, path, fresh, data.len() as u64, now)?;
                let (parent, name) = queries::slot(tx, self.tree, path)?;
                return self.give_name(tx, path, (parent, name.as_bytes()), fresh, now, removals);
            }
            self.content
                .replace(tx, path, &node.file(), data, removals)?;
            if created {
                Ok(())
            } else {
                queries::set_size(tx, path, node.ino, data.len() as u64, now)
            }
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let node = self.file_for_write(tx, path, now)?;
            self.content
                .write_at(tx, path, &node.file(), node.size, data, removals)?;
            queries::set_size(tx, path, node.ino, node.size + data.len() as u64, now)
        })
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let now = now_ns();
        // Every range is checked before any is written: inside a batch, a
        // refusal after rows changed would spoil the whole batch.
        let limit = self.content.max_len();
        for (offset, data) in ranges.iter().filter(|(_, data)| !data.is_empty()) {
            let end = offset.saturating_add(data.len() as u64);
            if end > limit {
                return Err(FsError::file_size_exceeded(path, end, limit));
            }
        }
        self.db_write(path, |tx, removals| {
            let node = queries::file_at(tx, self.tree, path)?;
            let ranges: Vec<(u64, &[u8])> = ranges
                .iter()
                .filter(|(_, data)| !data.is_empty())
                .copied()
                .collect();
            if ranges.is_empty() {
                return Ok(());
            }
            self.content
                .write_ranges(tx, path, &node.file(), &ranges, removals)?;
            let end = ranges
                .iter()
                .map(|(offset, data)| offset + data.len() as u64)
                .max()
                .unwrap_or(0);
            queries::set_size(tx, path, node.ino, node.size.max(end), now)
        })
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            match queries::child(tx, path, parent, name.as_bytes())? {
                None => return Err(FsError::not_found(path)),
                Some((_, KIND_DIR)) => return Err(FsError::is_a_directory(path)),
                Some(_) => {}
            }
            let gone = queries::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.free_unless_pinned(tx, path, gone, removals)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(from, |tx, removals| {
            let (src_parent, src_name) = queries::slot(tx, self.tree, from)?;
            let (ino, kind) = queries::child(tx, from, src_parent, src_name.as_bytes())?
                .ok_or_else(|| FsError::not_found(from))?;
            let (dst_parent, dst_name) = queries::slot(tx, self.tree, to)?;
            let src_is_dir = kind == KIND_DIR;
            if src_is_dir && queries::is_within(tx, self.tree, to, dst_parent, ino)? {
                return Err(FsError::invalid_path(
                    to,
                    "a directory cannot move into itself",
                ));
            }
            if let Some((existing, existing_kind)) =
                queries::child(tx, to, dst_parent, dst_name.as_bytes())?
            {
                if existing == ino {
                    return Ok(());
                }
                match (existing_kind == KIND_DIR, src_is_dir) {
                    (true, true) => {
                        if queries::has_entries(tx, to, existing)? {
                            return Err(FsError::directory_not_empty(to));
                        }
                    }
                    (true, false) => return Err(FsError::is_a_directory(to)),
                    (false, true) => return Err(FsError::not_a_directory(to)),
                    (false, false) => {}
                }
                let gone = queries::unlink(tx, to, dst_parent, dst_name.as_bytes(), now)?;
                self.free_unless_pinned(tx, to, gone, removals)?;
            }
            // Keep the node's link count above zero across the move.
            queries::link(
                tx,
                to,
                dst_parent,
                dst_name.as_bytes(),
                ino,
                src_is_dir,
                now,
            )?;
            let gone = queries::unlink(tx, from, src_parent, src_name.as_bytes(), now)?;
            debug_assert!(gone.is_none());
            Ok(())
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(from, |tx, removals| {
            let src = queries::file_at(tx, self.tree, from)?;
            let dst = self.file_for_write(tx, to, now)?;
            if dst.ino != src.ino {
                self.content
                    .copy(tx, to, &src.file(), &dst.file(), removals)?;
                queries::set_size(tx, to, dst.ino, src.size, now)?;
                tx.prepare_cached("UPDATE inodes SET mode = ?2 WHERE ino = ?1")
                    .and_then(|mut s| s.execute(params![dst.ino, src.mode]))
                    .map_err(|e| sql_error(to, "copy permissions", e))?;
            }
            Ok(())
        })
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let node = queries::file_at(tx, self.tree, path)?;
            self.content
                .truncate(tx, path, &node.file(), size, removals)?;
            queries::set_size(tx, path, node.ino, size, now)
        })
    }

    /// The content is staged in a node of its own, with no name (so a
    /// crash leaves an orphan that the next open frees), and moved into
    /// the file in one transaction at the commit.
    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        // Checked now, created only at the commit.
        self.db.read(|conn| {
            let (parent, name) = queries::slot(conn, self.tree, path)?;
            if let Some((ino, _)) = queries::child(conn, path, parent, name.as_bytes())? {
                queries::file(conn, path, ino)?;
            }
            Ok(())
        })?;
        Ok(Box::new(StoreWriter::new(
            self.self_arc(path)?,
            path.to_path_buf(),
        )))
    }
}

impl<C: Content> FsSync for Store<C> {
    fn sync(&self) -> FsResult<()> {
        // Commits are already durable to the chosen level; a checkpoint
        // moves the write-ahead log into the database file.
        self.db.release_snapshots();
        self.db.with_writer(|conn| {
            conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                .map_err(|e| sql_error(Path::new("/"), "sync", e))
        })
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.db
            .read(|conn| queries::lookup(conn, self.tree, path).map(drop))?;
        // With group commit, what was acknowledged is committed now.
        self.db.commit_group()
    }
}
