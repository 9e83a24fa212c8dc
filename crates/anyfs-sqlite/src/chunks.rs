//! File content in the database: fixed-size chunks in a rowid table, keyed
//! `inode * 2^24 + index`, so one file's chunks are one contiguous rowid
//! range — read with a range scan, never loaded whole.

use std::path::Path;

use anyfs::{FsError, FsResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::{DeferredRemovals, sql_error};
use crate::store::{Content, FileRow, zeroed_range};

/// Bytes per chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;
/// Bits of a chunk id that number the chunk within its file.
const INDEX_BITS: u32 = 24;

/// Chunked content in the `chunks` table.
#[derive(Debug, Default)]
pub struct Chunks;

/// The row id of chunk `index` of inode `ino`.
fn chunk_id(ino: i64, index: u64) -> i64 {
    (ino << INDEX_BITS) | index as i64
}

/// The highest row id inode `ino` can have a chunk at.
fn last_id(ino: i64) -> i64 {
    chunk_id(ino, (1 << INDEX_BITS) - 1)
}

fn too_big(path: &Path, size: u64) -> FsError {
    FsError::file_size_exceeded(path, size, CHUNK << INDEX_BITS)
}

/// The stored bytes of chunk `index` of `ino`, if it has any.
fn read_chunk(conn: &Connection, path: &Path, ino: i64, index: u64) -> FsResult<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT data FROM chunks WHERE id = ?1")
        .and_then(|mut s| s.query_row([chunk_id(ino, index)], |r| r.get(0)).optional())
        .map_err(|e| sql_error(path, "read content", e))
}

/// Stores `data` as chunk `index` of `ino`.
fn write_chunk(conn: &Connection, path: &Path, ino: i64, index: u64, data: &[u8]) -> FsResult<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO chunks (id, data) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![chunk_id(ino, index), data]))
        .map_err(|e| sql_error(path, "write content", e))?;
    Ok(())
}

/// Deletes the chunks of `ino` from `first_index` on.
fn delete_chunks_from(conn: &Connection, path: &Path, ino: i64, first_index: u64) -> FsResult<()> {
    conn.prepare_cached("DELETE FROM chunks WHERE id BETWEEN ?1 AND ?2")
        .and_then(|mut s| s.execute(params![chunk_id(ino, first_index), last_id(ino)]))
        .map_err(|e| sql_error(path, "remove content", e))?;
    Ok(())
}

/// Copies the chunks with ids `?1 ..= ?2` (one file's) to inode `?3`.
const COPY_CHUNKS: &str = "INSERT INTO chunks (id, data)
     SELECT (?3 << 24) | (id & 16777215), data FROM chunks WHERE id BETWEEN ?1 AND ?2";
/// Moves the chunks with ids `?1 ..= ?2` (one file's) to inode `?3`.
const MOVE_CHUNKS: &str =
    "UPDATE chunks SET id = (?3 << 24) | (id & 16777215) WHERE id BETWEEN ?1 AND ?2";

/// Empties `dst`, then gives it `src`'s chunks with `sql` ([`COPY_CHUNKS`]
/// or [`MOVE_CHUNKS`]).
fn give_chunks(
    tx: &Connection,
    path: &Path,
    (src, dst): (&FileRow, &FileRow),
    what: &'static str,
    sql: &str,
) -> FsResult<()> {
    delete_chunks_from(tx, path, dst.ino, 0)?;
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(params![chunk_id(src.ino, 0), last_id(src.ino), dst.ino]))
        .map_err(|e| sql_error(path, what, e))?;
    Ok(())
}

impl Content for Chunks {
    fn read(
        &self,
        conn: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>> {
        let (end, mut out) = zeroed_range(file.size, offset, len);
        if out.is_empty() {
            return Ok(out);
        }
        let err = |e| sql_error(path, "read content", e);
        let (first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        let mut stmt = conn
            .prepare_cached("SELECT id, data FROM chunks WHERE id BETWEEN ?1 AND ?2")
            .map_err(err)?;
        let mut rows = stmt
            .query(params![chunk_id(file.ino, first), chunk_id(file.ino, last)])
            .map_err(err)?;
        // Chunks that are missing or short read as zeros (sparse files).
        while let Some(row) = rows.next().map_err(err)? {
            place_chunk(&mut out, offset, end, row.get(0).map_err(err)?, row, 1).map_err(err)?;
        }
        Ok(out)
    }

    fn read_by_ino(
        &self,
        conn: &Connection,
        path: &Path,
        ino: i64,
        offset: u64,
        len: usize,
    ) -> Option<FsResult<Option<Vec<u8>>>> {
        Some(read_by_ino(conn, path, ino, offset, len))
    }

    fn replace(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        data: &[u8],
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        if data.len() as u64 > CHUNK << INDEX_BITS {
            return Err(too_big(path, data.len() as u64));
        }
        // An empty file has no chunks (truncating to zero removes them all).
        if file.size > 0 {
            delete_chunks_from(tx, path, file.ino, 0)?;
        }
        for (index, piece) in data.chunks(CHUNK as usize).enumerate() {
            write_chunk(tx, path, file.ino, index as u64, piece)?;
        }
        Ok(())
    }

    fn write_at(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        offset: u64,
        data: &[u8],
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let end = offset.saturating_add(data.len() as u64);
        if end > CHUNK << INDEX_BITS {
            return Err(too_big(path, end));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let n = rest.len().min(CHUNK as usize - within);
            let whole = within == 0 && n == CHUNK as usize;
            let mut buf = if whole {
                Vec::new()
            } else {
                read_chunk(tx, path, file.ino, index)?.unwrap_or_default()
            };
            if buf.len() < within + n {
                buf.resize(within + n, 0);
            }
            buf[within..within + n].copy_from_slice(&rest[..n]);
            write_chunk(
                tx,
                path,
                file.ino,
                index,
                if whole { &rest[..n] } else { &buf },
            )?;
            pos += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn truncate(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        size: u64,
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        if size > CHUNK << INDEX_BITS {
            return Err(too_big(path, size));
        }
        if size >= file.size {
            // Growing: the gap reads as zeros without storing anything.
            return Ok(());
        }
        let keep = size.div_ceil(CHUNK);
        delete_chunks_from(tx, path, file.ino, keep)?;
        let tail = (size % CHUNK) as usize;
        if tail != 0
            && let Some(mut last) = read_chunk(tx, path, file.ino, keep - 1)?
            && last.len() > tail
        {
            last.truncate(tail);
            write_chunk(tx, path, file.ino, keep - 1, &last)?;
        }
        Ok(())
    }

    fn copy(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        give_chunks(tx, path, (src, dst), "copy content", COPY_CHUNKS)
    }

    fn adopt(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        give_chunks(tx, path, (src, dst), "move content", MOVE_CHUNKS)
    }

    fn remove(
        &self,
        tx: &Connection,
        path: &Path,
        file: &FileRow,
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        delete_chunks_from(tx, path, file.ino, 0)
    }

    fn max_len(&self) -> u64 {
        CHUNK << INDEX_BITS
    }
}

/// One statement: the node's kind and size with the chunks in range.
fn read_by_ino(
    conn: &Connection,
    path: &Path,
    ino: i64,
    offset: u64,
    len: usize,
) -> FsResult<Option<Vec<u8>>> {
    let err = |e| sql_error(path, "read content", e);
    let first = (offset / CHUNK).min((1 << INDEX_BITS) - 1);
    let last =
        (offset.saturating_add(len as u64).saturating_sub(1) / CHUNK).min((1 << INDEX_BITS) - 1);
    let mut stmt = conn
        .prepare_cached(
            "SELECT i.kind, i.size, c.id, c.data FROM inodes i
             LEFT JOIN chunks c ON c.id BETWEEN ?2 AND ?3
             WHERE i.ino = ?1",
        )
        .map_err(err)?;
    let mut rows = stmt
        .query(params![ino, chunk_id(ino, first), chunk_id(ino, last)])
        .map_err(err)?;
    let mut out: Option<Vec<u8>> = None;
    let mut end = 0;
    while let Some(row) = rows.next().map_err(err)? {
        let buf = match &mut out {
            Some(buf) => buf,
            None => {
                let kind: i64 = row.get(0).map_err(err)?;
                if kind != 0 {
                    return Ok(None);
                }
                let size = row.get::<_, i64>(1).map_err(err)? as u64;
                let buf;
                (end, buf) = zeroed_range(size, offset, len);
                out.insert(buf)
            }
        };
        // A file with no chunk in range still has its one row (LEFT JOIN).
        if let Some(id) = row.get::<_, Option<i64>>(2).map_err(err)? {
            place_chunk(buf, offset, end, id, row, 3).map_err(err)?;
        }
    }
    Ok(out)
}

/// Copies the part of the chunk `id` (whose data is column `data_column`
/// of `row`) that falls in the file range `offset .. end` into `out`, which
/// holds that range. Bytes no chunk covers stay zero (sparse files).
fn place_chunk(
    out: &mut [u8],
    offset: u64,
    end: u64,
    id: i64,
    row: &rusqlite::Row<'_>,
    data_column: usize,
) -> rusqlite::Result<()> {
    let data = row.get_ref(data_column)?.as_blob()?;
    let chunk_start = (id & ((1 << INDEX_BITS) - 1)) as u64 * CHUNK;
    let from = offset.max(chunk_start);
    let to = end.min(chunk_start + data.len() as u64);
    if from < to {
        let src = &data[(from - chunk_start) as usize..(to - chunk_start) as usize];
        let dst = (from - offset) as usize;
        out[dst..dst + src.len()].copy_from_slice(src);
    }
    Ok(())
}
