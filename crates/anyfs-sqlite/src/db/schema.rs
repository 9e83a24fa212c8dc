//! The tables (`inodes`, `entries`, `chunks`) and the `nodes` view, made
//! when a database is first opened, with its root directory.

use anyfs::FsResult;
use rusqlite::Connection;

use super::{root, sql_error};

/// Creates what is missing of the schema, and the root directory (inode 1,
/// mode 0755, owned by `owner`, made `now`).
pub(super) fn create(conn: &Connection, owner: (u32, u32), now: i64) -> FsResult<()> {
    let init = format!(
        "{SCHEMA}
        INSERT OR IGNORE INTO inodes (ino, kind, mode, uid, gid, nlink, atime, mtime, ctime, btime)
            VALUES (1, 1, 493, {uid}, {gid}, 1, {now}, {now}, {now}, {now});",
        uid = owner.0,
        gid = owner.1,
    );
    conn.execute_batch(&init)
        .map_err(|e| sql_error(root(), "create the schema", e))
}

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
-- File content in chunks: id = inode * 2^24 + chunk index.
CREATE TABLE IF NOT EXISTS chunks (
    id      INTEGER PRIMARY KEY,
    data    BLOB NOT NULL
);
-- For hosts that analyse a workspace without reading content.
CREATE VIEW IF NOT EXISTS nodes AS
    SELECT CAST(e.name AS TEXT) AS name,
           i.kind               AS node_type,
           i.size               AS size,
           i.mtime / 1000000000 AS modified_at,
           i.ino                AS ino,
           e.parent             AS parent
    FROM entries e JOIN inodes i ON i.ino = e.ino;
";
