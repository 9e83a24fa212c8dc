-- Every change to a workspace's tree moves its version on, in the same
-- transaction: a node that read the tree at a version may answer from what
-- it read for as long as the version has not moved.
ALTER TABLE fs_workspaces ADD COLUMN version bigint NOT NULL DEFAULT 0;
