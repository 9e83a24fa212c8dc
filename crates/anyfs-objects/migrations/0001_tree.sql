-- The tree of every workspace, and the blobs its files are made of.
-- Names and symlink targets are sealed (AES-256-GCM) and looked up by a
-- keyed hash; sizes, modes, times and the shape of the tree are in clear.

CREATE TABLE fs_workspaces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account     text    NOT NULL,
    name        text    NOT NULL,
    -- Bytes of file content, exact: changed in the transaction that
    -- changes a file's size.
    used_bytes  bigint  NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    -- NULL: no limit.
    limit_bytes bigint  CHECK (limit_bytes >= 0),
    UNIQUE (account, name)
);

-- Inode numbers, unique across workspaces; 1 is every workspace's root.
CREATE SEQUENCE fs_inode_numbers START 2;

CREATE TABLE fs_nodes (
    workspace bigint   NOT NULL REFERENCES fs_workspaces (id) ON DELETE CASCADE,
    ino       bigint   NOT NULL,
    -- 0 file, 1 directory, 2 symbolic link.
    kind      smallint NOT NULL CHECK (kind IN (0, 1, 2)),
    mode      integer  NOT NULL,
    uid       bigint   NOT NULL,
    gid       bigint   NOT NULL,
    -- Content bytes, or the length of a symlink's target.
    size      bigint   NOT NULL DEFAULT 0 CHECK (size >= 0),
    nlink     bigint   NOT NULL DEFAULT 0,
    -- Directories directly inside (a directory's link count is 2 more).
    subdirs   bigint   NOT NULL DEFAULT 0,
    -- Nanoseconds since the Unix epoch.
    atime     bigint   NOT NULL,
    mtime     bigint   NOT NULL,
    ctime     bigint   NOT NULL,
    btime     bigint   NOT NULL,
    -- A symlink's target, sealed.
    target    bytea,
    PRIMARY KEY (workspace, ino)
);

CREATE TABLE fs_entries (
    workspace bigint NOT NULL,
    parent    bigint NOT NULL,
    -- HMAC-SHA256 of the name under the account's name key, bound to the
    -- workspace and the parent: the lookup key.
    name_key  bytea  NOT NULL,
    -- The name, sealed: what a listing opens.
    name      bytea  NOT NULL,
    ino       bigint NOT NULL,
    PRIMARY KEY (workspace, parent, name_key),
    FOREIGN KEY (workspace, parent) REFERENCES fs_nodes (workspace, ino) ON DELETE CASCADE,
    FOREIGN KEY (workspace, ino) REFERENCES fs_nodes (workspace, ino) ON DELETE CASCADE
);
CREATE INDEX fs_entries_by_node ON fs_entries (workspace, ino);

CREATE TABLE fs_blobs (
    id          bytea       PRIMARY KEY,
    account     text        NOT NULL,
    -- Plaintext bytes.
    size        bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- When the last extent naming it went away; NULL while named.
    released_at timestamptz
);
CREATE INDEX fs_blobs_released ON fs_blobs (released_at) WHERE released_at IS NOT NULL;

-- A file is its extents: bytes file_offset .. file_offset + len are bytes
-- blob_offset .. blob_offset + len of a blob. What no extent covers reads
-- as zeros.
CREATE TABLE fs_extents (
    workspace   bigint NOT NULL,
    ino         bigint NOT NULL,
    file_offset bigint NOT NULL,
    len         bigint NOT NULL CHECK (len > 0),
    blob        bytea  NOT NULL REFERENCES fs_blobs (id),
    blob_offset bigint NOT NULL,
    PRIMARY KEY (workspace, ino, file_offset),
    FOREIGN KEY (workspace, ino) REFERENCES fs_nodes (workspace, ino) ON DELETE CASCADE
);
CREATE INDEX fs_extents_by_blob ON fs_extents (blob);
