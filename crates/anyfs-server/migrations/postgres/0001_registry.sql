-- The registry in PostgreSQL: accounts, agents (configs and policies
-- sealed), executions (sealed), master-key checks, and the audit log, one
-- hash chain per account. Times are seconds since the epoch, as in the
-- SQLite registry.

CREATE TABLE accounts (
    id            text    PRIMARY KEY,
    name          text    NOT NULL,
    secret_digest bytea   NOT NULL UNIQUE,
    suspended     boolean NOT NULL DEFAULT false,
    created_at    bigint  NOT NULL
);

CREATE TABLE agents (
    id           text   PRIMARY KEY,
    account_id   text   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text   NOT NULL,
    token_digest bytea  NOT NULL UNIQUE,
    config       bytea  NOT NULL,
    policy       bytea  NOT NULL,
    created_at   bigint NOT NULL
);
CREATE INDEX agents_account ON agents (account_id, created_at, id);

CREATE TABLE executions (
    id         text   PRIMARY KEY,
    account_id text   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    agent_id   text,
    state      bytea  NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX executions_account ON executions (account_id, created_at, id);

CREATE TABLE key_checks (
    id     bigserial PRIMARY KEY,
    sealed bytea     NOT NULL
);

-- One chain per account ('' for records made before an account was
-- known). Its head row is the end of the chain: a writer locks it (FOR
-- UPDATE) to append, so writers on several nodes take turns per account.
CREATE TABLE audit_heads (
    account_id text   PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       bytea  NOT NULL
);

CREATE TABLE audit (
    account_id text   NOT NULL,
    seq        bigint NOT NULL,
    at         bigint NOT NULL,
    actor      text   NOT NULL,
    action     text   NOT NULL,
    path       text,
    outcome    text   NOT NULL,
    prev       bytea  NOT NULL,
    hash       bytea  NOT NULL,
    sealed     bytea,
    PRIMARY KEY (account_id, seq)
);

CREATE FUNCTION anyfs_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION anyfs_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION anyfs_audit_append_only();

-- A head only moves forward, and is never removed.
CREATE FUNCTION anyfs_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'the audit chain only grows';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_heads_forward BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION anyfs_audit_head_forward();
