//! Versioned schema migrations, applied at start, once, whichever node
//! starts first.
//!
//! Each component (the registry, the object backend's metadata, ...) keeps
//! its migrations as numbered SQL files in the repository and passes them
//! to [`Database::migrate`]. The pending ones run in order in one
//! transaction that first takes a transaction-scoped advisory lock: nodes
//! starting together queue on the lock, and the second finds the first's
//! work recorded in `anyfs_migrations`. Either every pending migration is
//! applied and recorded, or none is.

use crate::{Database, DbError};

/// The advisory lock every migration run takes ("anyfs_mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x616e_7966_735f_6d67;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS anyfs_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)";

/// One schema change: its version (1, 2, ... in order), a short name, and
/// its SQL, usually `include_str!` of a file such as
/// `migrations/postgres/0001_accounts.sql`.
///
/// The SQL runs inside the migration transaction: it must not contain
/// `BEGIN`/`COMMIT` or statements that refuse to run in a transaction
/// (`CREATE INDEX CONCURRENTLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

impl Migration {
    /// A migration; `version` counts from 1.
    pub const fn new(version: i32, name: &'static str, sql: &'static str) -> Self {
        Self { version, name, sql }
    }

    /// Its version.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Database {
    /// Applies the migrations of `component` that the database has not
    /// recorded yet, in order, in one transaction, and returns the versions
    /// it applied (empty when the schema was up to date).
    ///
    /// # Errors
    ///
    /// [`DbError::Migration`] when the versions are not 1, 2, 3, ... in
    /// order, when the database records a migration under another name,
    /// when it records one this build does not know (a newer `anyfs` wrote
    /// it), or when a migration's SQL fails; the connection errors of
    /// [`Database::run`].
    ///
    /// # Panics
    ///
    /// As [`Database::block_on`].
    pub fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<Vec<i32>, DbError> {
        let refuse = |version: i32, reason: String| DbError::Migration {
            target: self.target().to_owned(),
            component: component.to_owned(),
            version,
            reason,
        };
        for (position, migration) in migrations.iter().enumerate() {
            if usize::try_from(migration.version).ok() != Some(position + 1) {
                return Err(refuse(
                    migration.version,
                    format!("expected version {} at this place", position + 1),
                ));
            }
        }
        self.run(|mut client| async move {
            let transaction = client.transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            transaction.batch_execute(CREATE_LEDGER).await?;
            let recorded = transaction
                .query(
                    "SELECT version, name FROM anyfs_migrations WHERE component = $1 ORDER BY version",
                    &[&component],
                )
                .await?;
            let mut done = 0;
            for row in recorded {
                let (version, name): (i32, String) = (row.try_get(0)?, row.try_get(1)?);
                match usize::try_from(version - 1).ok().and_then(|i| migrations.get(i)) {
                    Some(known) if known.name == name => done += 1,
                    Some(known) => {
                        return Err(refuse(
                            version,
                            format!("recorded as {name:?}, but this build calls it {:?}", known.name),
                        ));
                    }
                    None => {
                        return Err(refuse(
                            version,
                            format!("recorded as {name:?}, which this build does not know: a newer anyfs migrated this database"),
                        ));
                    }
                }
            }
            let mut applied = Vec::new();
            for migration in &migrations[done..] {
                transaction.batch_execute(migration.sql).await.map_err(|e| {
                    let error = DbError::from(e);
                    if error.is_unavailable() {
                        error
                    } else {
                        refuse(migration.version, format!("{:?} failed: {error}", migration.name))
                    }
                })?;
                transaction
                    .execute(
                        "INSERT INTO anyfs_migrations (component, version, name) VALUES ($1, $2, $3)",
                        &[&component, &migration.version, &migration.name],
                    )
                    .await?;
                applied.push(migration.version);
            }
            transaction.commit().await?;
            Ok(applied)
        })
    }
}
