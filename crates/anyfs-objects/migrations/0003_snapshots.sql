-- Snapshots and branches: a snapshot of a workspace is a workspace row of
-- its own, read only, whose tree is a copy of the workspace's rows at one
-- moment; its extents name the same blobs (content is never copied). A
-- branch is a workspace whose tree started as a copy of a snapshot's.
--
-- Names are looked up and sealed under a scope rather than the workspace
-- id, so that a copy of the rows keeps working unchanged: a workspace's
-- scope is its own id (NULL here, for every row made before), and a
-- snapshot takes the scope of its workspace.
ALTER TABLE fs_workspaces
    ADD COLUMN name_scope  bigint,
    ADD COLUMN snapshot_of bigint REFERENCES fs_workspaces (id) ON DELETE CASCADE,
    -- A snapshot's label, sealed like a name.
    ADD COLUMN label       bytea,
    -- A branch: the snapshot it started from, while that exists.
    ADD COLUMN branched_from bigint REFERENCES fs_workspaces (id) ON DELETE SET NULL,
    ADD COLUMN created_at  timestamptz NOT NULL DEFAULT now();
CREATE INDEX fs_workspaces_snapshots ON fs_workspaces (snapshot_of)
    WHERE snapshot_of IS NOT NULL;
