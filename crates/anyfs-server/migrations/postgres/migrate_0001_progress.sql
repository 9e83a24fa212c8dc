-- What `anyfs migrate` has carried over from an embedded deployment, so
-- that a run cut off at any point is finished by the next one. Its own
-- component ("migrate") in anyfs_migrations: a service never needs it.

-- The embedded deployment this database was filled from (one only).
CREATE TABLE anyfs_migrate_source (
    only_one  boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    source    bytea   NOT NULL,
    -- The source's audit records carried over so far (by their number in
    -- the source's one chain).
    audit_through bigint NOT NULL DEFAULT 0
);

-- Per account: its registry rows are in (written in the same transaction
-- as the row here), and whether its workspace is copied and checked.
CREATE TABLE anyfs_migrate_accounts (
    account_id     text    PRIMARY KEY,
    workspace_done boolean NOT NULL DEFAULT false,
    files          bigint  NOT NULL DEFAULT 0,
    bytes          bigint  NOT NULL DEFAULT 0
);

-- Per audit chain: where the carried-over records start and how many
-- there are (a chain may hold records from before the migration: ''
-- from a service started on the database first).
CREATE TABLE anyfs_migrate_chains (
    account_id text   PRIMARY KEY,
    first_seq  bigint NOT NULL,
    records    bigint NOT NULL
);
