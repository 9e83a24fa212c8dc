//! Workspaces shared by every node (`--database` with `--objects`): each
//! account's workspace is an [`ObjectBackend`], its tree in PostgreSQL and
//! its content in the object store, so any node serves any account.
//!
//! This module owns what the service adds to the backend: opening an
//! account's workspace under the service's quota, deleting an account's
//! workspaces, and the periodic garbage collection.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyfs::crypto::Key;
use anyfs::{FsError, FsResult};
use anyfs_objects::{
    Blobs, ObjectBackend, ObjectStore, ObjectStoreConfig, Service as ObjectsService, Unavailable,
    collect_garbage,
};
use anyfs_postgres::Database;

/// The one workspace each account has (the backend keeps several per
/// account; the service uses one).
pub(crate) const WORKSPACE: &str = "main";

/// Opened blob records kept in memory per node: blobs never change, so a
/// cached record is never stale.
const CACHE_BYTES: usize = 256 << 20;

/// How often a node tries to collect garbage (one node at a time does).
const GC_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// How long a released blob stays readable before it is deleted: readers in
/// flight on any node still find it.
const GC_GRACE: Duration = Duration::from_secs(60 * 60);

/// The advisory lock a node holds while it collects garbage, so that nodes
/// whose timers fire together do not each walk the whole store.
const GC_LOCK: i64 = 0x616e_7966_735f_6763; // "anyfs_gc"

/// The database and the bucket every node's workspaces live in.
pub(crate) struct SharedWorkspaces {
    db: Database,
    blobs: Arc<Blobs>,
    quota: u64,
}

impl SharedWorkspaces {
    /// Brings the tree's schema up to date in `db`, connects to the object
    /// store `objects` describes (on the database's runtime) and checks that
    /// it honours the preconditions blobs rely on. Content is sealed under
    /// keys derived from `master`; every workspace gets `quota` bytes.
    pub(crate) fn connect(
        db: Database,
        objects: &ObjectStoreConfig,
        master: &Key,
        quota: u64,
    ) -> FsResult<Self> {
        ObjectBackend::migrate(&db)?;
        let runtime = db.block_on(async { tokio::runtime::Handle::current() });
        let store = ObjectStore::connect(objects, runtime)?;
        let blobs = Arc::new(Blobs::new(
            store,
            master.derive("anyfs objects v1"),
            CACHE_BYTES,
        ));
        Ok(Self { db, blobs, quota })
    }

    /// The account's workspace, under the service's quota: kept by the
    /// database and checked in the transaction that grows the workspace,
    /// so it holds across every node.
    pub(crate) fn open(&self, account: &str) -> FsResult<ObjectBackend> {
        let backend = ObjectBackend::open(self.db.clone(), self.blobs.clone(), account, WORKSPACE)?;
        backend.set_limit(Some(self.quota))?;
        Ok(backend)
    }

    /// Deletes every workspace of `account` (its tree, in one
    /// transaction) and releases its blobs, which garbage collection
    /// deletes after the grace period; whether there was one.
    ///
    /// The SQL is the backend's schema: `anyfs-objects` has no call for
    /// this yet.
    pub(crate) fn delete(&self, account: &str) -> FsResult<bool> {
        let account = account.to_owned();
        self.db
            .run(move |mut client| async move {
                let tx = client.transaction().await?;
                tx.execute(
                    "UPDATE fs_blobs SET released_at = now()
                     WHERE account = $1 AND released_at IS NULL",
                    &[&account],
                )
                .await?;
                let deleted = tx
                    .execute("DELETE FROM fs_workspaces WHERE account = $1", &[&account])
                    .await?;
                tx.commit().await?;
                Ok(deleted > 0)
            })
            .map_err(|e| {
                if e.is_unavailable() {
                    Unavailable::new(ObjectsService::Database, self.db.target(), e.to_string())
                        .into_fs_error("/", "delete the workspace")
                } else {
                    FsError::backend("/", "delete the workspace", e.to_string())
                }
            })
    }

    /// Starts the garbage collector of this node: a thread that, every
    /// [`GC_INTERVAL`] (the first time after a random part of it, so that
    /// nodes started together spread out), collects garbage if no other
    /// node is doing so. It ends once the service is gone.
    pub(crate) fn spawn_collector(&self) {
        let db = self.db.clone();
        let blobs: Weak<Blobs> = Arc::downgrade(&self.blobs);
        let first = GC_INTERVAL.mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0);
        let spawned = std::thread::Builder::new()
            .name("anyfs-gc".into())
            .spawn(move || {
                std::thread::sleep(first);
                while let Some(blobs) = blobs.upgrade() {
                    collect_once(&db, &blobs);
                    drop(blobs);
                    std::thread::sleep(GC_INTERVAL);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "the garbage collector could not be started");
        }
    }
}

/// One round of garbage collection, if this node gets the lock. The lock is
/// held by a connection of its own, closed afterwards (never returned to
/// the pool), so that the lock cannot outlive the round.
fn collect_once(db: &Database, blobs: &Blobs) {
    let locked = db.block_on(async {
        let client = db.client().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&GC_LOCK])
            .await
            .map_err(anyfs_postgres::DbError::from)?;
        Ok::<_, anyfs_postgres::DbError>((row.get::<_, bool>(0), client))
    });
    match locked {
        Ok((true, client)) => {
            match collect_garbage(db, blobs, GC_GRACE) {
                Ok(report) => tracing::info!(?report, "garbage collected"),
                Err(error) => tracing::warn!(%error, "garbage collection stopped"),
            }
            drop(anyfs_postgres::Client::take(client));
        }
        Ok((false, _)) => tracing::debug!("another node is collecting garbage"),
        Err(error) => tracing::warn!(%error, "garbage collection skipped"),
    }
}
