-- Branches belong to the workspace they were made from: `branch_of` names
-- it, so that the workspace lists its branches, and a branch's base can
-- move to a snapshot of the branch itself (the state last merged).
ALTER TABLE fs_workspaces
    ADD COLUMN branch_of bigint REFERENCES fs_workspaces (id) ON DELETE SET NULL;
CREATE INDEX fs_workspaces_branches ON fs_workspaces (branch_of)
    WHERE branch_of IS NOT NULL;
CREATE INDEX fs_workspaces_bases ON fs_workspaces (branched_from)
    WHERE branched_from IS NOT NULL;
-- What an account stores, all its trees together (a snapshot or branch is
-- refused once that reaches its quota).
CREATE INDEX fs_blobs_by_account ON fs_blobs (account);
