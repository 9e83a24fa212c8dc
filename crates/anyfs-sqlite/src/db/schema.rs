//! The tables (`inodes`, `entries`, `chunks`, `file_chunks`, `trees`) and
//! the `nodes` view, made when a database is first opened, with its root
//! directory; and the one migration, from the first layout.
//!
//! `PRAGMA user_version` says which layout a file has: 0 the first (chunk
//! ids derived from inode numbers, one tree), 1 this one. Moving to 1 maps
//! every existing chunk where it is and changes no byte of content. A file
//! at version 1 must not be opened by a build that predates it.

use anyfs::FsResult;
use rusqlite::Connection;

use super::{root, sql_error};

/// Creates what is missing of the schema, and the root directory (inode 1,
/// mode 0755, owned by `owner`, made `now`).
pub(super) fn create(conn: &Connection, owner: (u32, u32), now: i64) -> FsResult<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_error(root(), "read the schema version", e))?;
    if version > VERSION {
        return Err(anyfs::FsError::backend(
            root(),
            "open the database",
            format!(
                "it was written by a newer AnyFS (layout {version}; this build knows {VERSION})"
            ),
        ));
    }
    let init = format!(
        "BEGIN IMMEDIATE;
        {SCHEMA}
        INSERT OR IGNORE INTO inodes (ino, kind, mode, uid, gid, nlink, atime, mtime, ctime, btime)
            VALUES (1, 1, 493, {uid}, {gid}, 1, {now}, {now}, {now}, {now});
        INSERT OR IGNORE INTO trees (id, kind, name, created) VALUES (0, 0, '', {now});
        {migrate}
        PRAGMA user_version = {VERSION};
        COMMIT;",
        uid = owner.0,
        gid = owner.1,
        migrate = if version < 1 { TO_1 } else { "" },
    );
    conn.execute_batch(&init).map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        sql_error(root(), "create the schema", e)
    })
}

/// The layout this build writes.
const VERSION: i64 = 1;

/// From the first layout: every chunk, whose id was `inode * 2^24 + index`,
/// is mapped where it is; the view shows the workspace's tree only.
const TO_1: &str = "
INSERT OR IGNORE INTO file_chunks (ino, idx, chunk)
    SELECT id >> 24, id & 16777215, id FROM chunks;
DROP VIEW IF EXISTS nodes;
CREATE VIEW nodes AS
    SELECT CAST(e.name AS TEXT) AS name,
           i.kind               AS node_type,
           i.size               AS size,
           i.mtime / 1000000000 AS modified_at,
           i.ino                AS ino,
           e.parent             AS parent
    FROM entries e JOIN inodes i ON i.ino = e.ino
    WHERE e.parent < 1099511627776;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inodes (
    ino     INTEGER PRIMARY KEY,
    kind    INTEGER NOT NULL,            -- 0 file, 1 directory, 2 symlink
    mode    INTEGER NOT NULL,
    uid     INTEGER NOT NULL,
    gid     INTEGER NOT NULL,
    size    INTEGER NOT NULL DEFAULT 0,  -- content bytes, or target length
    nlink   INTEGER NOT NULL DEFAULT 0,  -- names that point here
    subdirs INTEGER NOT NULL DEFAULT 0,  -- directories directly inside
    atime   INTEGER NOT NULL,            -- nanoseconds since the epoch
    mtime   INTEGER NOT NULL,
    ctime   INTEGER NOT NULL,
    btime   INTEGER NOT NULL,
    target  BLOB,                        -- symlink target
    blob    TEXT                         -- blob file (IndexedBackend)
);
CREATE TABLE IF NOT EXISTS entries (
    parent  INTEGER NOT NULL,
    name    BLOB NOT NULL,
    ino     INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_ino ON entries(ino);
-- File content in chunks of up to 64 KiB, shared by every file, snapshot
-- and branch that maps them; changed in place only while one map row names
-- them.
CREATE TABLE IF NOT EXISTS chunks (
    id      INTEGER PRIMARY KEY,
    data    BLOB NOT NULL
);
-- Which chunk holds each 64 KiB piece of each file.
CREATE TABLE IF NOT EXISTS file_chunks (
    ino     INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    chunk   INTEGER NOT NULL,
    PRIMARY KEY (ino, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON file_chunks(chunk);
CREATE INDEX IF NOT EXISTS inodes_by_blob ON inodes(blob) WHERE blob IS NOT NULL;
-- The trees: the workspace (0), its snapshots and its branches. Tree t owns
-- inode numbers t * 2^40 + 1 (its root) to t * 2^40 + 2^40 - 1.
CREATE TABLE IF NOT EXISTS trees (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    INTEGER NOT NULL,            -- 0 the workspace, 1 snapshot, 2 branch
    of      INTEGER,                     -- the tree it was taken or branched from
    base    INTEGER,                     -- a branch: the snapshot it counts from
    name    TEXT NOT NULL,
    created INTEGER NOT NULL,            -- nanoseconds since the epoch
    bytes   INTEGER NOT NULL DEFAULT 0   -- a snapshot: bytes of content it shows
);
-- For hosts that analyse a workspace without reading content (its own
-- tree only; made by the migration).
";
