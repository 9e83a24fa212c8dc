-- Sign-ups per client address, counted across every node: one row per
-- sign-up, at the database's clock (milliseconds since the epoch), kept
-- only as long as the limit's window (rows older than it are deleted by
-- the next sign-up).

CREATE TABLE signups (
    client text   NOT NULL,
    at     bigint NOT NULL
);
CREATE INDEX signups_client ON signups (client, at);
CREATE INDEX signups_at ON signups (at);
