//! What the tests of this crate share: one PostgreSQL and one SeaweedFS
//! per test binary (from `anyfs-services`), the schema migrated once, and
//! a fresh workspace (of a fresh account) for every backend made.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyfs::crypto::Key;
use anyfs_objects::{Blobs, ObjectBackend, ObjectStore, ObjectStoreConfig};
use anyfs_postgres::Database;

/// The database and the blob store every test of the binary shares.
pub(crate) struct Services {
    pub(crate) db: Database,
    pub(crate) blobs: Arc<Blobs>,
}

/// The master key of every test.
pub(crate) fn master() -> Key {
    Key::from_bytes([0x4b; 32])
}

/// The services of the binary, or `None` (the caller skips) when they
/// cannot be had; with `ANYFS_REQUIRE_SERVICES=1` that panics.
pub(crate) fn services() -> Option<&'static Services> {
    static SERVICES: OnceLock<Option<Services>> = OnceLock::new();
    SERVICES.get_or_init(fresh_services).as_ref()
}

/// Whether the servers are there: otherwise a test skips, after
/// [`services`] said why (or fails it, with `ANYFS_REQUIRE_SERVICES=1`).
pub(crate) fn ready() -> bool {
    let ready = services().is_some();
    if !ready {
        eprintln!("skipped: the servers of this binary are unavailable (the first test said why)");
    }
    ready
}

/// A database and a bucket prefix of their own, for a test that needs the
/// whole store to itself (garbage collection).
pub(crate) fn fresh_services() -> Option<Services> {
    let postgres = anyfs_services::available(anyfs_services::postgres())?;
    let s3 = anyfs_services::available(anyfs_services::seaweed())?;
    let db = Database::connect(&postgres.fresh_database()).unwrap();
    ObjectBackend::migrate(&db).unwrap();
    let config = ObjectStoreConfig::parse(&s3.fresh_url())
        .unwrap()
        .with_endpoint(s3.endpoint())
        .with_region(s3.region())
        .with_credentials(s3.access_key_id(), s3.secret_access_key());
    // The object store's requests run on the database's runtime.
    let runtime = db.block_on(async { tokio::runtime::Handle::current() });
    let store = ObjectStore::connect(&config, runtime).unwrap();
    let blobs = Arc::new(Blobs::new(store, master(), 64 << 20));
    Some(Services { db, blobs })
}

/// A backend over a workspace no other test uses, of an account of its
/// own.
pub(crate) fn fresh_backend(services: &Services) -> ObjectBackend {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        &format!("account-{n}"),
        "main",
    )
    .unwrap()
}
