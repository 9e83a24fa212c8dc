//! The distributed deployment being filled: its PostgreSQL database, with
//! the registry's rows written as they were stored (sealed values and
//! digests byte for byte), the audit records chained anew per account, and
//! the migration's own progress tables (`migrate_0001_progress.sql`), each
//! step committed with the progress it makes.

use anyfs_postgres::tokio_postgres::Row;
use anyfs_postgres::{Client, Database, DbError, Migration};

use super::source::{AccountRow, AgentRaw, ExecutionRaw};
use super::{MigrateError, refused};
use crate::registry::{AuditRecord, chain_records};

/// The migration's component in `anyfs_migrations`.
const COMPONENT: &str = "migrate";

/// The migration's own tables.
const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "progress",
    include_str!("../../migrations/postgres/migrate_0001_progress.sql"),
)];

/// Held (for the session) by the one `anyfs migrate` filling a database.
const MIGRATE_LOCK: i64 = 0x616e_7966_735f_6370; // "anyfs_cp"

/// A failed statement, naming the database (never its password).
pub(super) fn db_failed(e: DbError) -> MigrateError {
    MigrateError::Failed(e.to_string())
}

/// An account's row (if any), agents and executions, as stored.
pub(super) type AccountRows = (Option<AccountRow>, Vec<AgentRaw>, Vec<ExecutionRaw>);

/// The database, locked for this migration.
pub(super) struct Target {
    db: Database,
    /// The connection that holds [`MIGRATE_LOCK`]; closed (not pooled)
    /// at the end, which releases it.
    lock: Option<Client>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(client) = self.lock.take() {
            drop(anyfs_postgres::Client::take(client));
        }
    }
}

impl Target {
    /// Creates the migration's tables in `db` if missing and takes the
    /// migration lock, refusing while another migration holds it.
    pub(super) fn open(db: Database) -> Result<Self, MigrateError> {
        db.migrate(COMPONENT, MIGRATIONS).map_err(db_failed)?;
        let locked = db
            .block_on(async {
                let client = db.client().await?;
                let row = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATE_LOCK])
                    .await
                    .map_err(DbError::from)?;
                Ok::<_, DbError>((row.get::<_, bool>(0), client))
            })
            .map_err(db_failed)?;
        match locked {
            (true, client) => Ok(Self {
                db,
                lock: Some(client),
            }),
            (false, _) => Err(refused(format!(
                "another anyfs migrate is filling {}: wait for it to end",
                db.target()
            ))),
        }
    }

    /// The database.
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// Records `source` as the deployment this database is filled from, or
    /// refuses if it was filled from another one.
    pub(super) fn claim(&self, source: &[u8]) -> Result<(), MigrateError> {
        let recorded: Vec<u8> = self
            .db
            .run(|client| async move {
                client
                    .execute(
                        "INSERT INTO anyfs_migrate_source (source) VALUES ($1)
                         ON CONFLICT (only_one) DO NOTHING",
                        &[&source],
                    )
                    .await?;
                let row = client
                    .query_one("SELECT source FROM anyfs_migrate_source", &[])
                    .await?;
                Ok(row.try_get(0)?)
            })
            .map_err(db_failed)?;
        if recorded != source {
            return Err(refused(format!(
                "{} was filled from another embedded deployment: migrate each into a \
                 database of its own",
                self.db.target()
            )));
        }
        Ok(())
    }

    /// The ids of every account in the database.
    pub(super) fn account_ids(&self) -> Result<Vec<String>, MigrateError> {
        self.db
            .run(|client| async move {
                let rows = client.query("SELECT id FROM accounts", &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?)
            })
            .map_err(db_failed)
    }

    /// The stored key-check values.
    pub(super) fn key_checks(&self) -> Result<Vec<Vec<u8>>, MigrateError> {
        self.db
            .run(|client| async move {
                let rows = client
                    .query("SELECT sealed FROM key_checks ORDER BY id", &[])
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?)
            })
            .map_err(db_failed)
    }

    /// Stores the key-check values (in one transaction).
    pub(super) fn add_key_checks(&self, checks: &[Vec<u8>]) -> Result<(), MigrateError> {
        self.db
            .run(|mut client| async move {
                let tx = client.transaction().await?;
                for sealed in checks {
                    tx.execute("INSERT INTO key_checks (sealed) VALUES ($1)", &[sealed])
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .map_err(db_failed)
    }

    /// Writes an account's registry rows as they were stored, with its
    /// progress row, in one transaction; `false` if an earlier run did.
    pub(super) fn import_account(
        &self,
        account: &AccountRow,
        agents: &[AgentRaw],
        executions: &[ExecutionRaw],
    ) -> Result<bool, MigrateError> {
        self.db
            .run(|mut client| async move {
                let tx = client.transaction().await?;
                let new = tx
                    .execute(
                        "INSERT INTO anyfs_migrate_accounts (account_id) VALUES ($1)
                         ON CONFLICT (account_id) DO NOTHING",
                        &[&account.id],
                    )
                    .await?;
                if new == 0 {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO accounts (id, name, secret_digest, suspended, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &account.id,
                        &account.name,
                        &account.digest,
                        &account.suspended,
                        &account.created_at,
                    ],
                )
                .await?;
                for a in agents {
                    tx.execute(
                        "INSERT INTO agents (id, account_id, name, token_digest, config, policy, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&a.id, &a.account_id, &a.name, &a.digest, &a.config, &a.policy, &a.created_at],
                    )
                    .await?;
                }
                for e in executions {
                    tx.execute(
                        "INSERT INTO executions (id, account_id, agent_id, state, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&e.id, &e.account_id, &e.agent_id, &e.state, &e.created_at, &e.updated_at],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .map_err(db_failed)
    }

    /// An account's rows as the database holds them.
    pub(super) fn account_rows(&self, id: &str) -> Result<AccountRows, MigrateError> {
        self.db
            .run(|client| async move {
                let account = client
                    .query_opt(
                        "SELECT id, name, secret_digest, suspended, created_at FROM accounts
                         WHERE id = $1",
                        &[&id],
                    )
                    .await?
                    .map(|r| account_from(&r))
                    .transpose()?;
                let agents = client
                    .query(
                        "SELECT id, account_id, name, token_digest, config, policy, created_at
                         FROM agents WHERE account_id = $1 ORDER BY created_at, id",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(agent_from)
                    .collect::<Result<_, _>>()?;
                let executions = client
                    .query(
                        "SELECT id, account_id, agent_id, state, created_at, updated_at
                         FROM executions WHERE account_id = $1 ORDER BY created_at, id",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(execution_from)
                    .collect::<Result<_, _>>()?;
                Ok((account, agents, executions))
            })
            .map_err(db_failed)
    }

    /// The number of the last source audit record carried over.
    pub(super) fn audit_through(&self) -> Result<i64, MigrateError> {
        self.db
            .run(|client| async move {
                let row = client
                    .query_one("SELECT audit_through FROM anyfs_migrate_source", &[])
                    .await?;
                Ok(row.try_get(0)?)
            })
            .map_err(db_failed)
    }

    /// Appends `records` (the source's, in its order, after `through`) to
    /// their accounts' chains, and moves the progress on, in one
    /// transaction.
    pub(super) fn import_audit(
        &self,
        through: i64,
        records: &mut [AuditRecord],
    ) -> Result<(), MigrateError> {
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(());
        };
        let moved = self
            .db
            .run(|mut client| async move {
                let tx = client.transaction().await?;
                let moved = tx
                    .execute(
                        "UPDATE anyfs_migrate_source SET audit_through = $2
                         WHERE audit_through = $1",
                        &[&through, &last],
                    )
                    .await?;
                if moved != 1 {
                    return Ok(false);
                }
                chain_records(&tx, records).await?;
                // The first record of each chain this group touched, and
                // how many it added.
                let mut chains: std::collections::BTreeMap<String, (i64, i64)> =
                    std::collections::BTreeMap::new();
                for r in records.iter() {
                    let chain = r.account_id.clone().unwrap_or_default();
                    chains.entry(chain).or_insert((r.seq, 0)).1 += 1;
                }
                for (chain, (first, count)) in chains {
                    tx.execute(
                        "INSERT INTO anyfs_migrate_chains (account_id, first_seq, records)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (account_id)
                         DO UPDATE SET records = anyfs_migrate_chains.records + excluded.records",
                        &[&chain, &first, &count],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .map_err(db_failed)?;
        if !moved {
            return Err(MigrateError::Failed(format!(
                "the audit records carried over to {} changed during this migration",
                self.db.target()
            )));
        }
        Ok(())
    }

    /// Every chain the migration wrote to: its account (`""`: none), first
    /// record and count.
    pub(super) fn migrated_chains(&self) -> Result<Vec<(String, i64, i64)>, MigrateError> {
        self.db
            .run(|client| async move {
                let rows = client
                    .query(
                        "SELECT account_id, first_seq, records FROM anyfs_migrate_chains
                         ORDER BY account_id",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<Result<_, anyfs_postgres::tokio_postgres::Error>>()?)
            })
            .map_err(db_failed)
    }

    /// Up to `limit` records of `chain` from number `from` on.
    pub(super) fn chain_page(
        &self,
        chain: &str,
        from: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, MigrateError> {
        self.db
            .run(|client| async move {
                let rows = client
                    .query(
                        "SELECT seq, NULLIF(account_id, ''), at, actor, action, path, outcome,
                                prev, hash, sealed
                         FROM audit WHERE account_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                        &[&chain, &from, &limit],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(crate::registry::postgres_audit_from)
                    .collect::<Result<_, _>>()?)
            })
            .map_err(db_failed)
    }

    /// Whether the account's workspace was copied and checked by an
    /// earlier run.
    pub(super) fn workspace_done(&self, account: &str) -> Result<bool, MigrateError> {
        self.db
            .run(|client| async move {
                let row = client
                    .query_opt(
                        "SELECT workspace_done FROM anyfs_migrate_accounts WHERE account_id = $1",
                        &[&account],
                    )
                    .await?;
                Ok(match row {
                    Some(row) => row.try_get(0)?,
                    None => false,
                })
            })
            .map_err(db_failed)
    }

    /// Records that the account's workspace is copied and checked.
    pub(super) fn set_workspace_done(
        &self,
        account: &str,
        files: u64,
        bytes: u64,
    ) -> Result<(), MigrateError> {
        let (files, bytes) = (files as i64, bytes as i64);
        self.db
            .run(|client| async move {
                client
                    .execute(
                        "UPDATE anyfs_migrate_accounts
                         SET workspace_done = true, files = $2, bytes = $3
                         WHERE account_id = $1",
                        &[&account, &files, &bytes],
                    )
                    .await?;
                Ok(())
            })
            .map_err(db_failed)
    }
}

fn account_from(r: &Row) -> Result<AccountRow, anyfs_postgres::tokio_postgres::Error> {
    Ok(AccountRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        digest: r.try_get(2)?,
        suspended: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

fn agent_from(r: &Row) -> Result<AgentRaw, anyfs_postgres::tokio_postgres::Error> {
    Ok(AgentRaw {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        name: r.try_get(2)?,
        digest: r.try_get(3)?,
        config: r.try_get(4)?,
        policy: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

fn execution_from(r: &Row) -> Result<ExecutionRaw, anyfs_postgres::tokio_postgres::Error> {
    Ok(ExecutionRaw {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        agent_id: r.try_get(2)?,
        state: r.try_get(3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
    })
}
