//! File content in the database: fixed-size chunks in a rowid table, keyed
//! `inode * 2^24 + index`, so one file's chunks are one contiguous rowid
//! range — read with a range scan, never loaded whole.

use std::path::Path;

use anyfs::{FsError, FsResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::{After, sql_error};
use crate::store::{Content, FileRow};

/// Bytes per chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;
const INDEX_BITS: u32 = 24;

/// Chunked content in the `chunks` table.
#[derive(Debug, Default)]
pub struct Chunks;

fn id(ino: i64, index: u64) -> i64 {
    (ino << INDEX_BITS) | index as i64
}

fn last_id(ino: i64) -> i64 {
    id(ino, (1 << INDEX_BITS) - 1)
}

fn too_big(path: &Path, size: u64) -> FsError {
    FsError::file_size_exceeded(path, size, CHUNK << INDEX_BITS)
}

fn chunk(conn: &Connection, path: &Path, ino: i64, index: u64) -> FsResult<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT data FROM chunks WHERE id = ?1")
        .and_then(|mut s| s.query_row([id(ino, index)], |r| r.get(0)).optional())
        .map_err(|e| sql_error(path, "read content", e))
}

fn put(conn: &Connection, path: &Path, ino: i64, index: u64, data: &[u8]) -> FsResult<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO chunks (id, data) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![id(ino, index), data]))
        .map_err(|e| sql_error(path, "write content", e))?;
    Ok(())
}

fn delete_from(conn: &Connection, path: &Path, ino: i64, first_index: u64) -> FsResult<()> {
    conn.prepare_cached("DELETE FROM chunks WHERE id BETWEEN ?1 AND ?2")
        .and_then(|mut s| s.execute(params![id(ino, first_index), last_id(ino)]))
        .map_err(|e| sql_error(path, "remove content", e))?;
    Ok(())
}

/// Empties `dst`, then runs `sql` (with `?1 ..= ?2` the ids of `src`'s
/// chunks and `?3` the inode of `dst`) to give it `src`'s chunks.
fn onto(
    tx: &Connection,
    path: &Path,
    src: &FileRow,
    dst: &FileRow,
    what: &'static str,
    sql: &str,
) -> FsResult<()> {
    delete_from(tx, path, dst.ino, 0)?;
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(params![id(src.ino, 0), last_id(src.ino), dst.ino]))
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
        let end = file.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let (first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        let mut stmt = conn
            .prepare_cached("SELECT id, data FROM chunks WHERE id BETWEEN ?1 AND ?2")
            .map_err(|e| sql_error(path, "read content", e))?;
        let mut rows = stmt
            .query(params![id(file.ino, first), id(file.ino, last)])
            .map_err(|e| sql_error(path, "read content", e))?;
        // Chunks that are missing or short read as zeros (sparse files).
        while let Some(row) = rows
            .next()
            .map_err(|e| sql_error(path, "read content", e))?
        {
            let index = (row
                .get::<_, i64>(0)
                .map_err(|e| sql_error(path, "read content", e))?
                & ((1 << INDEX_BITS) - 1)) as u64;
            let data = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(|e| sql_error(path, "read content", e))?;
            place(&mut out, offset, end, index, data);
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
        _: &mut After,
    ) -> FsResult<()> {
        if data.len() as u64 > CHUNK << INDEX_BITS {
            return Err(too_big(path, data.len() as u64));
        }
        // An empty file has no chunks (truncating to zero removes them all).
        if file.size > 0 {
            delete_from(tx, path, file.ino, 0)?;
        }
        for (index, piece) in data.chunks(CHUNK as usize).enumerate() {
            put(tx, path, file.ino, index as u64, piece)?;
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
        _: &mut After,
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
                chunk(tx, path, file.ino, index)?.unwrap_or_default()
            };
            if buf.len() < within + n {
                buf.resize(within + n, 0);
            }
            buf[within..within + n].copy_from_slice(&rest[..n]);
            put(
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
        _: &mut After,
    ) -> FsResult<()> {
        if size > CHUNK << INDEX_BITS {
            return Err(too_big(path, size));
        }
        if size >= file.size {
            // Growing: the gap reads as zeros without storing anything.
            return Ok(());
        }
        let keep = size.div_ceil(CHUNK);
        delete_from(tx, path, file.ino, keep)?;
        let tail = (size % CHUNK) as usize;
        if tail != 0
            && let Some(mut last) = chunk(tx, path, file.ino, keep - 1)?
            && last.len() > tail
        {
            last.truncate(tail);
            put(tx, path, file.ino, keep - 1, &last)?;
        }
        Ok(())
    }

    fn copy(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        _: &mut After,
    ) -> FsResult<()> {
        onto(
            tx,
            path,
            src,
            dst,
            "copy content",
            "INSERT INTO chunks (id, data)
             SELECT (?3 << 24) | (id & 16777215), data FROM chunks WHERE id BETWEEN ?1 AND ?2",
        )
    }

    fn adopt(
        &self,
        tx: &Connection,
        path: &Path,
        src: &FileRow,
        dst: &FileRow,
        _: &mut After,
    ) -> FsResult<()> {
        onto(
            tx,
            path,
            src,
            dst,
            "move content",
            "UPDATE chunks SET id = (?3 << 24) | (id & 16777215) WHERE id BETWEEN ?1 AND ?2",
        )
    }

    fn remove(&self, tx: &Connection, path: &Path, file: &FileRow, _: &mut After) -> FsResult<()> {
        delete_from(tx, path, file.ino, 0)
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
        .query(params![ino, id(ino, first), id(ino, last)])
        .map_err(err)?;
    let mut out: Option<Vec<u8>> = None;
    let mut end = 0;
    while let Some(row) = rows.next().map_err(err)? {
        if out.is_none() {
            let kind: i64 = row.get(0).map_err(err)?;
            if kind != 0 {
                return Ok(None);
            }
            let size = row.get::<_, i64>(1).map_err(err)? as u64;
            end = size.min(offset.saturating_add(len as u64));
            out = Some(vec![0u8; end.saturating_sub(offset) as usize]);
        }
        let buf = out.as_mut().expect("set above");
        let Some(chunk_id) = row.get::<_, Option<i64>>(2).map_err(err)? else {
            continue;
        };
        let index = (chunk_id & ((1 << INDEX_BITS) - 1)) as u64;
        let data = row
            .get_ref(3)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(err)?;
        place(buf, offset, end, index, data);
    }
    Ok(out)
}

/// Copies the part of chunk `index` (holding `data`) that falls in the file
/// range `offset .. end` into `out`, which holds that range. Bytes no chunk
/// covers stay zero (sparse files).
fn place(out: &mut [u8], offset: u64, end: u64, index: u64, data: &[u8]) {
    let chunk_start = index * CHUNK;
    let from = offset.max(chunk_start);
    let to = end.min(chunk_start + data.len() as u64);
    if from < to {
        let src = &data[(from - chunk_start) as usize..(to - chunk_start) as usize];
        let dst = (from - offset) as usize;
        out[dst..dst + src.len()].copy_from_slice(src);
    }
}
