//! What a snapshot and a branch of an object-storage workspace cost: the
//! time each takes and the space each adds, for workspaces of several
//! sizes, on a throw-away PostgreSQL and SeaweedFS (started as the tests
//! start them; see `scripts/install-test-services.sh`).
//!
//! ```sh
//! cargo run --release -p anyfs-objects --example snapshot_cost -- 1000:4096 1000:102400 10000:102400
//! ```
//!
//! Each argument is `FILES:BYTES_PER_FILE` (files spread over 100
//! directories). Prints one line per workspace: the content, the time of
//! the snapshot and of a branch of it, the database space each added, and
//! how many objects the bucket gained (none: content is shared).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyfs::FsDir;
use anyfs::FsSnapshots;
use anyfs::FsWrite;
use anyfs::crypto::Key;
use anyfs_objects::{Blobs, ObjectBackend, ObjectStore, ObjectStoreConfig};
use anyfs_postgres::Database;

/// Bytes the tree's tables and their indexes take in the database.
fn tree_bytes(db: &Database) -> i64 {
    db.run(|client| async move {
        let row = client
            .query_one(
                "SELECT sum(pg_total_relation_size(t))::bigint FROM unnest(
                     ARRAY['fs_workspaces', 'fs_nodes', 'fs_entries', 'fs_extents',
                           'fs_blobs']::regclass[]) AS t",
                &[],
            )
            .await?;
        Ok(row.get(0))
    })
    .unwrap()
}

fn objects(blobs: &Blobs) -> usize {
    blobs.store().list_for_tests("accounts").unwrap().len()
}

fn main() {
    let shapes: Vec<(usize, usize)> = std::env::args()
        .skip(1)
        .map(|a| {
            let (files, bytes) = a.split_once(':').expect("FILES:BYTES_PER_FILE");
            (files.parse().unwrap(), bytes.parse().unwrap())
        })
        .collect();
    let shapes = if shapes.is_empty() {
        vec![(1_000, 4096), (1_000, 102_400), (10_000, 102_400)]
    } else {
        shapes
    };
    let postgres = anyfs_services::postgres().unwrap();
    let s3 = anyfs_services::seaweed().unwrap();
    println!(
        "| files | content | snapshot | branch | database space added (snapshot, branch) | objects added |"
    );
    println!("|---|---|---|---|---|---|");
    for (files, bytes) in shapes {
        let db = Database::connect(&postgres.fresh_database()).unwrap();
        ObjectBackend::migrate(&db).unwrap();
        let config = ObjectStoreConfig::parse(&s3.fresh_url())
            .unwrap()
            .with_endpoint(s3.endpoint())
            .with_region(s3.region())
            .with_credentials(s3.access_key_id(), s3.secret_access_key());
        let runtime = db.block_on(async { tokio::runtime::Handle::current() });
        let store = ObjectStore::connect(&config, runtime).unwrap();
        let blobs = Arc::new(Blobs::new(store, Key::from_bytes([3; 32]), 64 << 20));
        let fs = ObjectBackend::open(db.clone(), blobs.clone(), "bench", "main").unwrap();
        let content: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
        for d in 0..100 {
            fs.create_dir(&PathBuf::from(format!("/d{d}"))).unwrap();
        }
        std::thread::scope(|s| {
            for t in 0..8 {
                let (fs, content) = (&fs, &content);
                s.spawn(move || {
                    for i in (t..files).step_by(8) {
                        let path = PathBuf::from(format!("/d{}/f{i}", i % 100));
                        fs.write(&path, content).unwrap();
                    }
                });
            }
        });
        // Measured after a vacuum, so that space counts rows, not churn.
        let vacuum = || {
            db.run(|client| async move {
                client.batch_execute("VACUUM").await?;
                Ok(())
            })
            .unwrap()
        };
        vacuum();
        let (space0, objects0) = (tree_bytes(&db), objects(&blobs));
        let started = Instant::now();
        let snapshot = fs.create_snapshot("measured").unwrap();
        let snapshot_time = started.elapsed();
        vacuum();
        let space1 = tree_bytes(&db);
        let started = Instant::now();
        fs.branch(snapshot.id, "branch").unwrap();
        let branch_time = started.elapsed();
        vacuum();
        let (space2, objects2) = (tree_bytes(&db), objects(&blobs));
        let total = (files * bytes) as f64;
        println!(
            "| {files} | {:.1} MiB | {} ms | {} ms | {:.1} MiB ({:.2} %), {:.1} MiB ({:.2} %) | {} |",
            total / (1 << 20) as f64,
            snapshot_time.as_millis(),
            branch_time.as_millis(),
            (space1 - space0) as f64 / (1 << 20) as f64,
            100.0 * (space1 - space0) as f64 / total,
            (space2 - space1) as f64 / (1 << 20) as f64,
            100.0 * (space2 - space1) as f64 / total,
            objects2 - objects0,
        );
    }
}
