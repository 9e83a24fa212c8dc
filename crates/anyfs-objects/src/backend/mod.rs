//! [`ObjectBackend`]: one workspace whose tree is rows in PostgreSQL and
//! whose content is blobs in the object store.
//!
//! Every change is one PostgreSQL transaction, committed after the blobs it
//! names are uploaded. A changing transaction first locks its workspace's
//! row, so that changes to one workspace are serialised across every node;
//! reads run in a read-only snapshot and fetch content after it, from
//! blobs that never change.
//!
//! - [`tree`] holds the SQL on nodes and entries, and usage;
//! - [`content`], extents, blobs named by them, and reading a range;
//! - [`files`], `FsRead`, `FsWrite`, `FsSync`;
//! - [`dirs`], `FsDir`, `FsLink`;
//! - [`attributes`], `FsPermissions`, `FsStats`, `FsInode`;
//! - [`handles`], `FsHandles`;
//! - [`streams`], the `open_read` and `open_write` streams;
//! - [`reads`], reads of the tree from a transaction or from what this
//!   process read at the workspace's current version.

mod attributes;
mod content;
mod dirs;
mod files;
mod handles;
mod reads;
mod snapshots;
mod streams;
mod tree;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyfs::{FsError, FsResult, HandleTable};
use anyfs_postgres::tokio_postgres::IsolationLevel;
use anyfs_postgres::tokio_postgres::error::SqlState;
use anyfs_postgres::{Database, DbError, Migration};
use deadpool_postgres::Transaction;
use parking_lot::Mutex;

use crate::blob::{Blobs, check_account};
use crate::names::NameKeys;
use crate::unavailable::{Service, Unavailable};
use reads::{ReadCache, View};

pub use reads::{consistent_reads, seen_version, workspace_version_sql};
pub(crate) use tree::now_ns;

/// The schema of the tree, applied by [`ObjectBackend::migrate`].
const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "tree", include_str!("../../migrations/0001_tree.sql")),
    Migration::new(
        2,
        "version",
        include_str!("../../migrations/0002_version.sql"),
    ),
    Migration::new(
        3,
        "snapshots",
        include_str!("../../migrations/0003_snapshots.sql"),
    ),
    Migration::new(
        4,
        "branches",
        include_str!("../../migrations/0004_branches.sql"),
    ),
];

/// The migrations' component name in the database's ledger.
const COMPONENT: &str = "objects";

/// What can stop an operation inside a transaction: a file system answer,
/// or the database.
#[derive(Debug)]
pub(crate) enum Fail {
    Fs(FsError),
    Db(DbError),
    /// A cached view needs what the cache does not hold: the view runs
    /// again over a snapshot (never seen outside [`ObjectBackend::view`]).
    Miss,
}

impl Fail {
    /// A node that is not there as "no such inode"; anything else (the
    /// database, a cache miss) as it is.
    pub(crate) fn inode_gone(self, inode: u64) -> Fail {
        match self {
            Fail::Fs(e) if e.kind() == anyfs::FsErrorKind::NotFound => {
                Fail::Fs(FsError::inode_not_found(inode))
            }
            other => other,
        }
    }

    /// What the caller of an operation sees.
    fn into_fs_error(self, db: &Database, path: &Path, op: &'static str) -> FsError {
        match self {
            Fail::Fs(e) => e,
            Fail::Db(e) => db_error(db, path, op, e),
            Fail::Miss => FsError::backend(path, op, "a read missed the cache outside a view"),
        }
    }
}

impl From<FsError> for Fail {
    fn from(e: FsError) -> Self {
        Fail::Fs(e)
    }
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Fail::Db(e)
    }
}

impl From<anyfs_postgres::tokio_postgres::Error> for Fail {
    fn from(e: anyfs_postgres::tokio_postgres::Error) -> Self {
        Fail::Db(DbError::from(e))
    }
}

/// Results inside a transaction.
pub(crate) type Tx<T> = Result<T, Fail>;

/// One workspace of an account, as an AnyFS backend: the tree in
/// PostgreSQL, content in encrypted blobs (see the crate docs).
///
/// Any number of `ObjectBackend`s, in any number of processes, may serve one
/// workspace at once. Handles and open streams are this process's own.
///
/// The synchronous trait methods wait on the database's runtime: call them
/// from ordinary threads or tokio's blocking pool, never from an
/// asynchronous task.
#[derive(Clone)]
pub struct ObjectBackend {
    db: Database,
    blobs: Arc<Blobs>,
    account: String,
    workspace: i64,
    /// What names and symlink targets are bound to: the workspace's own
    /// id, which its snapshots share (see `snapshots.rs`).
    scope: i64,
    /// A snapshot: every change is refused.
    frozen: bool,
    names: Arc<NameKeys>,
    /// The owner new nodes get.
    owner: (u32, u32),
    /// Inodes held open by handles of this process, with how many times.
    pins: Arc<Mutex<HashMap<i64, usize>>>,
    /// Open handles of this process.
    handles: Arc<Mutex<HandleTable<handles::OpenFile>>>,
    /// What this process read of the tree, at the workspace's version.
    reads: Arc<ReadCache>,
}

impl fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("database", &self.db.target())
            .field("account", &self.account)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl ObjectBackend {
    /// Creates or updates the tables this backend keeps in `db` (versioned
    /// migrations, each applied once whichever node starts first).
    pub fn migrate(db: &Database) -> FsResult<()> {
        db.migrate(COMPONENT, MIGRATIONS)
            .map(drop)
            .map_err(|e| db_error(db, Path::new("/"), "migrate the schema", e))
    }

    /// Opens workspace `name` of `account`, creating it (empty, with no
    /// byte limit) if it does not exist. The master key behind `blobs`
    /// also seals this workspace's names.
    pub fn open(db: Database, blobs: Arc<Blobs>, account: &str, name: &str) -> FsResult<Self> {
        let root = Path::new("/");
        check_account(root, account)?;
        snapshots::check_workspace_name(root, name)?;
        let now = tree::now_ns();
        let owner = tree::process_owner();
        let workspace = run_plain(&db, root, "open a workspace", async |client| {
            let tx = client.transaction().await?;
            let found = tx
                .query_opt(
                    "INSERT INTO fs_workspaces (account, name) VALUES ($1, $2)
                     ON CONFLICT (account, name) DO NOTHING RETURNING id",
                    &[&account, &name],
                )
                .await?;
            let (id, scope): (i64, i64) = match found {
                Some(row) => {
                    tree::create_root(&tx, row.get(0), owner, now).await?;
                    (row.get(0), row.get(0))
                }
                None => {
                    let row = tx
                        .query_one(
                            "SELECT id, coalesce(name_scope, id) FROM fs_workspaces
                             WHERE account = $1 AND name = $2",
                            &[&account, &name],
                        )
                        .await?;
                    (row.get(0), row.get(1))
                }
            };
            tx.commit().await?;
            Ok((id, scope))
        })?;
        let names = Arc::new(NameKeys::new(blobs.master(), account));
        Ok(Self {
            db,
            blobs,
            account: account.to_owned(),
            workspace: workspace.0,
            scope: workspace.1,
            frozen: false,
            names,
            owner,
            pins: Arc::default(),
            handles: Arc::default(),
            reads: Arc::default(),
        })
    }

    /// Sets the workspace's byte limit (`None`: no limit). Writes that
    /// would take its usage past the limit fail with `QuotaExceeded`;
    /// usage already past a lowered limit stays until files shrink.
    pub fn set_limit(&self, limit: Option<u64>) -> FsResult<()> {
        if self.frozen {
            return Err(FsError::read_only("/", "set the byte limit"));
        }
        let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let ws = self.workspace;
        run_plain(
            &self.db,
            Path::new("/"),
            "set the byte limit",
            async |client| {
                client
                    .execute(
                        "UPDATE fs_workspaces SET limit_bytes = $2 WHERE id = $1",
                        &[&ws, &limit],
                    )
                    .await?;
                Ok(())
            },
        )
    }

    /// Bytes of file content in the workspace, and its limit, exact across
    /// every node.
    pub fn usage(&self) -> FsResult<(u64, Option<u64>)> {
        let ws = self.workspace;
        run_plain(&self.db, Path::new("/"), "read the usage", async |client| {
            let row = client
                .query_one(
                    "SELECT used_bytes, limit_bytes FROM fs_workspaces WHERE id = $1",
                    &[&ws],
                )
                .await?;
            let used: i64 = row.get(0);
            let limit: Option<i64> = row.get(1);
            Ok((used as u64, limit.map(|l| l as u64)))
        })
    }

    /// Bytes of content the account stores, every workspace, snapshot and
    /// branch of it together (content shared between them counted once,
    /// content no longer named counted until garbage collection).
    pub fn stored_bytes(&self) -> FsResult<u64> {
        let account = self.account.clone();
        run_plain(
            &self.db,
            Path::new("/"),
            "measure the account",
            async |client| {
                let row = client
                    .query_one(
                        "SELECT coalesce(sum(size), 0)::bigint FROM fs_blobs WHERE account = $1",
                        &[&account],
                    )
                    .await?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            },
        )
    }

    /// The account this workspace belongs to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Runs `work` in a transaction that holds this workspace's lock, so
    /// that changes to one workspace happen one at a time across every
    /// node, and moves the workspace's version on (which tells every
    /// node's [`ReadCache`] that what it read is old); tried again when
    /// PostgreSQL reports a serialisation failure or a deadlock.
    fn change<T>(
        &self,
        path: &Path,
        op: &'static str,
        work: impl AsyncFn(&Transaction<'_>) -> Tx<T>,
    ) -> FsResult<T> {
        if self.frozen {
            return Err(FsError::read_only(path, op));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self.db.block_on(async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let lock = tx
                    .prepare_cached("UPDATE fs_workspaces SET version = version + 1 WHERE id = $1")
                    .await?;
                tx.execute(&lock, &[&self.workspace]).await?;
                let out = work(&tx).await?;
                tx.commit().await?;
                Ok(out)
            });
            // Reads after a change ask the database again.
            reads::confirm(self.workspace, None);
            match result {
                Ok(out) => return Ok(out),
                Err(Fail::Db(e)) if attempts < 5 && retryable(&e) => {}
                Err(fail) => return Err(fail.into_fs_error(&self.db, path, op)),
            }
        }
    }

    /// Runs `work`, which only reads, as of one moment: answered from this
    /// process's [`ReadCache`] when the workspace's version (asked of the
    /// database first) has not moved since it was filled, otherwise in a
    /// read-only snapshot whose reads then fill the cache.
    fn view<T>(
        &self,
        path: &Path,
        op: &'static str,
        work: impl AsyncFn(&View<'_, '_>) -> Tx<T>,
    ) -> FsResult<T> {
        let result = self.db.block_on(async {
            // Inside `consistent_reads`, a version this thread confirmed
            // needs no database at all.
            if let Some(known) = self.reads.version()
                && reads::confirmed(self.workspace, known)
            {
                match work(&View::cached(&self.reads, known)).await {
                    Err(Fail::Miss) => {}
                    done => return done,
                }
            }
            let mut client = self.db.client().await?;
            if let Some(known) = self.reads.version()
                && reads::version_now(&client, self.workspace).await? == Some(known)
            {
                reads::confirm(self.workspace, Some(known));
                match work(&View::cached(&self.reads, known)).await {
                    Err(Fail::Miss) => {}
                    done => return done,
                }
            }
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            // The snapshot's first statement: its version is the version of
            // everything the view reads.
            let version = reads::version_now(&tx, self.workspace).await?;
            let view = View::snapshot(&tx);
            let out = work(&view).await?;
            let seen = view.into_seen();
            tx.commit().await?;
            if let Some(version) = version {
                self.reads.remember(version, seen);
                reads::confirm(self.workspace, Some(version));
            }
            Ok(out)
        });
        result.map_err(|fail| fail.into_fs_error(&self.db, path, op))
    }

    /// Holds `ino` for a stream of this process.
    fn pin(&self, ino: i64) {
        *self.pins.lock().entry(ino).or_default() += 1;
    }

    /// Lets go of `ino`; frees the node if that was its last pin and it
    /// has no name left.
    fn unpin(&self, path: &Path, ino: i64) -> FsResult<()> {
        let last = {
            let mut pins = self.pins.lock();
            match pins.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    pins.remove(&ino);
                    true
                }
                None => false,
            }
        };
        // A snapshot frees nothing (and refuses every change).
        if last && !self.frozen {
            self.change(path, "close", async |tx| {
                match tree::node(tx, path, self.workspace, ino).await {
                    Ok(node) if node.nlink == 0 => self.free(tx, path, &node).await,
                    _ => Ok(()),
                }
            })?;
        }
        Ok(())
    }

    fn is_pinned(&self, ino: i64) -> bool {
        self.pins.lock().contains_key(&ino)
    }
}

/// Runs `work` with a pooled connection of `db`, mapping what fails to an
/// [`FsError`] about `path`.
pub(crate) fn run_plain<T>(
    db: &Database,
    path: &Path,
    op: &'static str,
    work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Tx<T>,
) -> FsResult<T> {
    let result = db.block_on(async {
        let mut client = db.client().await?;
        work(&mut client).await
    });
    result.map_err(|fail| fail.into_fs_error(db, path, op))
}

/// Whether a transaction that failed with `e` may simply be run again.
fn retryable(e: &DbError) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A database error as an [`FsError`]: unreachable as [`Unavailable`],
/// the rest as a backend error (messages never hold the password).
pub(crate) fn db_error(db: &Database, path: &Path, op: &'static str, e: DbError) -> FsError {
    match e {
        DbError::Unavailable { reason, .. } => {
            Unavailable::new(Service::Database, db.target(), reason).into_fs_error(path, op)
        }
        DbError::Refused { reason, .. } => FsError::backend(
            path,
            op,
            format!(
                "PostgreSQL at {} refused the request: {reason}",
                db.target()
            ),
        ),
        other => FsError::backend(path, op, other.to_string()),
    }
}
