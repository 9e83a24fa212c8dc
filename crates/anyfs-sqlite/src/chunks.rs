//! File content in the database: fixed-size chunks in a rowid table, and
//! a map from each file's chunk indexes to chunk ids (`file_chunks`, keyed
//! by inode and index, so one file's chunks are one range of it — read with
//! a range scan, never loaded whole).
//!
//! Chunks are shared: a copied file, a snapshot or a branch maps the same
//! chunk ids. A chunk is changed in place only while no other map row
//! names it; otherwise the change goes to a new chunk. A chunk is deleted
//! once nothing names it.

use std::path::Path;

use anyfs::{FsError, FsResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::{DeferredRemovals, sql_error};
use crate::store::{Content, FileRow, zeroed_range};

/// Bytes per chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;
/// Chunks a file can have: 2^24 (files up to 1 TiB).
const INDEX_BITS: u32 = 24;

/// Chunked content in the `chunks` table.
#[derive(Debug, Default, Clone)]
pub struct Chunks;

fn too_big(path: &Path, size: u64) -> FsError {
    FsError::file_size_exceeded(path, size, CHUNK << INDEX_BITS)
}

/// The chunk id that chunk `index` of `ino` maps to, and its bytes.
fn mapped(
    conn: &Connection,
    path: &Path,
    ino: i64,
    index: u64,
) -> FsResult<Option<(i64, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT c.id, c.data FROM file_chunks f JOIN chunks c ON c.id = f.chunk
         WHERE f.ino = ?1 AND f.idx = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![ino, index as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(|e| sql_error(path, "read content", e))
}

/// Whether more than one map row names chunk `id`.
fn shared(conn: &Connection, path: &Path, id: i64) -> FsResult<bool> {
    conn.prepare_cached("SELECT 1 FROM file_chunks WHERE chunk = ?1 LIMIT 1 OFFSET 1")
        .and_then(|mut s| s.exists([id]))
        .map_err(|e| sql_error(path, "read content", e))
}

/// Stores `data` as a new chunk, mapped as chunk `index` of `ino`.
fn add_chunk(conn: &Connection, path: &Path, ino: i64, index: u64, data: &[u8]) -> FsResult<()> {
    let add = || -> rusqlite::Result<()> {
        conn.prepare_cached("INSERT INTO chunks (data) VALUES (?1)")?
            .execute([data])?;
        let id = conn.last_insert_rowid();
        conn.prepare_cached(
            "INSERT OR REPLACE INTO file_chunks (ino, idx, chunk) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![ino, index as i64, id])?;
        Ok(())
    };
    add().map_err(|e| sql_error(path, "write content", e))
}

/// Makes chunk `index` of `ino` hold `data`: in place if the chunk it maps
/// to is its alone, as a new chunk otherwise. `current` is that chunk's id,
/// if it maps one.
fn put_chunk(
    conn: &Connection,
    path: &Path,
    ino: i64,
    index: u64,
    current: Option<i64>,
    data: &[u8],
) -> FsResult<()> {
    match current {
        Some(id) if !shared(conn, path, id)? => conn
            .prepare_cached("UPDATE chunks SET data = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, data]))
            .map(drop)
            .map_err(|e| sql_error(path, "write content", e)),
        _ => add_chunk(conn, path, ino, index, data),
    }
}

/// Maps `?2` to the chunks `?1` maps: a copy sharing them.
const COPY_CHUNKS: &str = "INSERT INTO file_chunks (ino, idx, chunk) SELECT ?2, idx, chunk FROM file_chunks WHERE ino = ?1";
/// Moves the chunks `?1` maps to `?2`.
const MOVE_CHUNKS: &str = "UPDATE file_chunks SET ino = ?2 WHERE ino = ?1";

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
        .and_then(|mut s| s.execute(params![src.ino, dst.ino]))
        .map_err(|e| sql_error(path, what, e))?;
    Ok(())
}

/// Unmaps the chunks of `ino` from `first_index` on, deleting those nothing
/// else names.
fn delete_chunks_from(conn: &Connection, path: &Path, ino: i64, first_index: u64) -> FsResult<()> {
    let delete = || -> rusqlite::Result<()> {
        conn.prepare_cached(
            "DELETE FROM chunks WHERE id IN
                 (SELECT chunk FROM file_chunks WHERE ino = ?1 AND idx >= ?2)
             AND NOT EXISTS (SELECT 1 FROM file_chunks f WHERE f.chunk = chunks.id
                 AND (f.ino != ?1 OR f.idx < ?2))",
        )?
        .execute(params![ino, first_index as i64])?;
        conn.prepare_cached("DELETE FROM file_chunks WHERE ino = ?1 AND idx >= ?2")?
            .execute(params![ino, first_index as i64])?;
        Ok(())
    };
    delete().map_err(|e| sql_error(path, "remove content", e))
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
            .prepare_cached(
                "SELECT f.idx, c.data FROM file_chunks f JOIN chunks c ON c.id = f.chunk
                 WHERE f.ino = ?1 AND f.idx BETWEEN ?2 AND ?3",
            )
            .map_err(err)?;
        let mut rows = stmt
            .query(params![file.ino, first as i64, last as i64])
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
            add_chunk(tx, path, file.ino, index as u64, piece)?;
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
            let (current, mut buf) = match mapped(tx, path, file.ino, index)? {
                Some((id, data)) => (Some(id), data),
                None => (None, Vec::new()),
            };
            if !whole {
                if buf.len() < within + n {
                    buf.resize(within + n, 0);
                }
                buf[within..within + n].copy_from_slice(&rest[..n]);
            }
            let data = if whole { &rest[..n] } else { &buf[..] };
            put_chunk(tx, path, file.ino, index, current, data)?;
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
            && let Some((id, mut last)) = mapped(tx, path, file.ino, keep - 1)?
            && last.len() > tail
        {
            last.truncate(tail);
            put_chunk(tx, path, file.ino, keep - 1, Some(id), &last)?;
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
        // The copy maps the same chunks: no byte is copied.
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

    fn release_tree(
        &self,
        tx: &Connection,
        path: &Path,
        (first, last): (i64, i64),
        _: &mut DeferredRemovals,
    ) -> FsResult<()> {
        let release = || -> rusqlite::Result<()> {
            tx.prepare_cached(
                "DELETE FROM chunks WHERE id IN
                     (SELECT chunk FROM file_chunks WHERE ino BETWEEN ?1 AND ?2)
                 AND NOT EXISTS (SELECT 1 FROM file_chunks f WHERE f.chunk = chunks.id
                     AND f.ino NOT BETWEEN ?1 AND ?2)",
            )?
            .execute([first, last])?;
            tx.prepare_cached("DELETE FROM file_chunks WHERE ino BETWEEN ?1 AND ?2")?
                .execute([first, last])?;
            Ok(())
        };
        release().map_err(|e| sql_error(path, "free content", e))
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
            "SELECT i.kind, i.size, f.idx, c.data FROM inodes i
             LEFT JOIN file_chunks f ON f.ino = ?1 AND f.idx BETWEEN ?2 AND ?3
             LEFT JOIN chunks c ON c.id = f.chunk
             WHERE i.ino = ?1",
        )
        .map_err(err)?;
    let mut rows = stmt
        .query(params![ino, first as i64, last as i64])
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
        if let Some(index) = row.get::<_, Option<i64>>(2).map_err(err)? {
            place_chunk(buf, offset, end, index, row, 3).map_err(err)?;
        }
    }
    Ok(out)
}

/// Copies the part of chunk `index` of a file (whose data is column
/// `data_column` of `row`) that falls in the file range `offset .. end`
/// into `out`, which holds that range. Bytes no chunk covers stay zero
/// (sparse files).
fn place_chunk(
    out: &mut [u8],
    offset: u64,
    end: u64,
    index: i64,
    row: &rusqlite::Row<'_>,
    data_column: usize,
) -> rusqlite::Result<()> {
    let data = row.get_ref(data_column)?.as_blob()?;
    let chunk_start = index as u64 * CHUNK;
    let from = offset.max(chunk_start);
    let to = end.min(chunk_start + data.len() as u64);
    if from < to {
        let src = &data[(from - chunk_start) as usize..(to - chunk_start) as usize];
        let dst = (from - offset) as usize;
        out[dst..dst + src.len()].copy_from_slice(src);
    }
    Ok(())
}
