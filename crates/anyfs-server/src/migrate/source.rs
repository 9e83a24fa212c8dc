//! The embedded deployment being migrated: its data directory, locked as a
//! service locks it, and read only through copies of its SQLite files (so
//! nothing in it is ever written, not even a log or an index file).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyfs::crypto::Key;
use anyfs_sqlite::SqliteBackend;
use rusqlite::{Connection, OptionalExtension, params};

use super::{MigrateError, refused};
use crate::registry::{AuditRecord, audit_from};
use crate::sealing::Sealer;

/// An account row as stored, its secret digest with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AccountRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) digest: Vec<u8>,
    pub(super) suspended: bool,
    pub(super) created_at: i64,
}

/// An agent row as stored: config and policy sealed, the token's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentRaw {
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) name: String,
    pub(super) digest: Vec<u8>,
    pub(super) config: Vec<u8>,
    pub(super) policy: Vec<u8>,
    pub(super) created_at: i64,
}

/// An execution row as stored: its state sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExecutionRaw {
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) agent_id: Option<String>,
    pub(super) state: Vec<u8>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

/// The locked data directory and a copy of its registry.
pub(super) struct Source {
    dir: PathBuf,
    /// Copies of the SQLite files, removed when the migration ends.
    scratch: tempfile::TempDir,
    registry: Connection,
    /// Whether the registry's audit table has sealed paths (older ones do
    /// not).
    has_sealed: bool,
    _lock: File,
}

/// A file error naming `path`.
fn file_error(path: &Path, e: impl std::fmt::Display) -> MigrateError {
    MigrateError::Failed(format!("{}: {e}", path.display()))
}

/// Copies a SQLite database and its write-ahead log, if it has one (what a
/// service stopped by a crash leaves behind), into `to`.
fn copy_database(from: &Path, to: &Path) -> Result<(), MigrateError> {
    std::fs::copy(from, to).map_err(|e| file_error(from, e))?;
    let mut log = from.as_os_str().to_owned();
    log.push("-wal");
    let log = PathBuf::from(log);
    let mut copied_log = to.as_os_str().to_owned();
    copied_log.push("-wal");
    match std::fs::copy(&log, PathBuf::from(copied_log)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_error(&log, e)),
    }
}

impl Source {
    /// Locks the data directory `dir` (refused while a service holds it)
    /// and opens a copy of its registry, made in `scratch` (a temporary
    /// directory when `None`).
    pub(super) fn open(dir: &Path, scratch: Option<&Path>) -> Result<Self, MigrateError> {
        let registry_file = dir.join("registry.db");
        if !registry_file.is_file() {
            return Err(refused(format!(
                "{} is not the data directory of an anyfs service: it has no registry.db",
                dir.display()
            )));
        }
        let lock = crate::start::lock_data_dir(dir).map_err(|e| refused(e.to_string()))?;
        let scratch = match scratch {
            Some(parent) => tempfile::Builder::new()
                .prefix("anyfs-migrate-")
                .tempdir_in(parent),
            None => tempfile::Builder::new().prefix("anyfs-migrate-").tempdir(),
        }
        .map_err(|e| MigrateError::Failed(format!("cannot make a scratch directory: {e}")))?;
        let copy = scratch.path().join("registry.db");
        copy_database(&registry_file, &copy)?;
        let registry = Connection::open(&copy).map_err(|e| file_error(&registry_file, e))?;
        let has_sealed: bool = registry
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'sealed'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| file_error(&registry_file, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            scratch,
            registry,
            has_sealed,
            _lock: lock,
        })
    }

    /// The data directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The copy of the registry, for checks that read it whole.
    pub(super) fn registry_copy(&self) -> PathBuf {
        self.scratch.path().join("registry.db")
    }

    fn db_error(&self, e: rusqlite::Error) -> MigrateError {
        file_error(&self.dir.join("registry.db"), e)
    }

    /// The stored key-check values.
    pub(super) fn key_checks(&self) -> Result<Vec<Vec<u8>>, MigrateError> {
        let mut stmt = self
            .registry
            .prepare("SELECT sealed FROM key_checks ORDER BY id")
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.db_error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))
    }

    /// Every account, oldest first.
    pub(super) fn accounts(&self) -> Result<Vec<AccountRow>, MigrateError> {
        let mut stmt = self
            .registry
            .prepare(
                "SELECT id, name, secret_digest, suspended, created_at FROM accounts
                 ORDER BY created_at, id",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AccountRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    digest: r.get(2)?,
                    suspended: r.get::<_, i64>(3)? != 0,
                    created_at: r.get(4)?,
                })
            })
            .map_err(|e| self.db_error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))
    }

    /// An account's agents as stored. A policy an old version kept in
    /// clear is sealed as the registry seals it.
    pub(super) fn agents(
        &self,
        account: &str,
        sealer: &Sealer,
    ) -> Result<Vec<AgentRaw>, MigrateError> {
        let mut stmt = self
            .registry
            .prepare(
                "SELECT id, account_id, name, token_digest, config, policy, created_at
                 FROM agents WHERE account_id = ?1 ORDER BY created_at, id",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([account], |r| {
                let policy = match r.get_ref(5)? {
                    rusqlite::types::ValueRef::Text(t) => Err(t.to_vec()),
                    _ => Ok(r.get::<_, Vec<u8>>(5)?),
                };
                Ok((
                    AgentRaw {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        name: r.get(2)?,
                        digest: r.get(3)?,
                        config: r.get(4)?,
                        policy: Vec::new(),
                        created_at: r.get(6)?,
                    },
                    policy,
                ))
            })
            .map_err(|e| self.db_error(e))?;
        let mut agents = Vec::new();
        for row in rows {
            let (mut agent, policy) = row.map_err(|e| self.db_error(e))?;
            agent.policy = match policy {
                Ok(sealed) => sealed,
                Err(clear) => sealer
                    .seal("agent policy", &agent.account_id, &agent.id, &clear)
                    .map_err(|e| MigrateError::Failed(e.to_string()))?,
            };
            agents.push(agent);
        }
        Ok(agents)
    }

    /// An account's executions as stored.
    pub(super) fn executions(&self, account: &str) -> Result<Vec<ExecutionRaw>, MigrateError> {
        let mut stmt = self
            .registry
            .prepare(
                "SELECT id, account_id, agent_id, state, created_at, updated_at
                 FROM executions WHERE account_id = ?1 ORDER BY created_at, id",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([account], |r| {
                Ok(ExecutionRaw {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    agent_id: r.get(2)?,
                    state: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                })
            })
            .map_err(|e| self.db_error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))
    }

    /// Up to `limit` audit records after `after`, in the chain's order;
    /// with `chain`, only those of that chain (`""`: records without an
    /// account).
    pub(super) fn audit(
        &self,
        after: i64,
        limit: usize,
        chain: Option<&str>,
    ) -> Result<Vec<AuditRecord>, MigrateError> {
        let sql = format!(
            "SELECT seq, account_id, at, actor, action, path, outcome, prev, hash, {} FROM audit
             WHERE seq > ?1 AND (?2 IS NULL OR coalesce(account_id, '') = ?2)
             ORDER BY seq LIMIT ?3",
            if self.has_sealed { "sealed" } else { "NULL" }
        );
        let mut stmt = self
            .registry
            .prepare_cached(&sql)
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map(params![after, chain, limit as i64], audit_from)
            .map_err(|e| self.db_error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))
    }

    /// How many audit records there are, and the last one's number.
    pub(super) fn audit_extent(&self) -> Result<(u64, i64), MigrateError> {
        self.registry
            .query_row(
                "SELECT COUNT(*), coalesce(MAX(seq), 0) FROM audit",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(|e| self.db_error(e))
    }

    /// What tells this deployment from another: its first key-check value
    /// and its first audit record's hash (both random or unique to it).
    pub(super) fn identity(&self) -> Result<Vec<u8>, MigrateError> {
        let first_hash: Option<Vec<u8>> = self
            .registry
            .query_row("SELECT hash FROM audit ORDER BY seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.db_error(e))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"anyfs migrate source v1");
        for part in [
            self.key_checks()?.into_iter().next().unwrap_or_default(),
            first_hash.unwrap_or_default(),
        ] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(&part);
        }
        Ok(ctx.finish().as_ref().to_vec())
    }

    /// The account's workspace, opened from a fresh copy of its file with
    /// the master keys (`None`: the account never used its workspace).
    /// Keys that do not open it are [`MigrateError::WrongMasterKey`].
    pub(super) fn workspace(
        &self,
        account: &str,
        keys: &[Key],
    ) -> Result<Option<SqliteBackend>, MigrateError> {
        let file = self.dir.join("workspaces").join(format!("{account}.db"));
        if !file.is_file() {
            return Ok(None);
        }
        let copy = self.scratch.path().join("workspace.db");
        for stale in ["workspace.db", "workspace.db-wal", "workspace.db-shm"] {
            match std::fs::remove_file(self.scratch.path().join(stale)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(file_error(&self.scratch.path().join(stale), e)),
            }
        }
        copy_database(&file, &copy)?;
        // As the service opens it: with any of the keys (after a rotation
        // a file may still be under an older one).
        let keys: Vec<Key> = keys
            .iter()
            .map(|k| k.derive("anyfs workspace v1"))
            .collect();
        match crate::workspace::open_file(&copy, &keys, account) {
            Ok(backend) => Ok(Some(backend)),
            Err(e) if e.kind() == anyfs::FsErrorKind::InvalidPassword => {
                Err(MigrateError::WrongMasterKey {
                    dir: self.dir.clone(),
                })
            }
            Err(e) => Err(file_error(&file, e)),
        }
    }
}
