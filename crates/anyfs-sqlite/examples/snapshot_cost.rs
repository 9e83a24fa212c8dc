//! What a snapshot and a branch of a SQLite workspace file cost: the time
//! each takes and the space each adds to the file, for workspaces of
//! several sizes.
//!
//! ```sh
//! cargo run --release -p anyfs-sqlite --example snapshot_cost -- 1000:4096 1000:102400 10000:102400
//! ```
//!
//! Each argument is `FILES:BYTES_PER_FILE` (files spread over 100
//! directories; the default shapes are 1,000, 10,000 and 100,000 files).
//! Prints one Markdown table row per workspace: its content, the time of
//! the snapshot and of a branch of it, and what each added to the database
//! file (pages in use, so space SQLite will reuse counts as free).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use anyfs::{FsDir, FsSnapshots, FsWrite};
use anyfs_sqlite::SqliteBackend;

/// Bytes of the database file's pages in use.
fn used_bytes(file: &Path) -> u64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    ((pages - free) * size) as u64
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
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
        vec![
            (1_000, 4096),
            (1_000, 102_400),
            (10_000, 102_400),
            (100_000, 4096),
        ]
    } else {
        shapes
    };
    println!("| files | content | snapshot | branch | file space added (snapshot, branch) |");
    println!("|---|---|---|---|---|");
    for (files, bytes) in shapes {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("work.db");
        let fs = SqliteBackend::open(&file).unwrap();
        let content: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
        fs.batch(|fs| {
            for d in 0..100 {
                fs.create_dir(Path::new(&format!("/d{d}")))?;
            }
            for i in 0..files {
                fs.write(Path::new(&format!("/d{}/f{i}", i % 100)), &content)?;
            }
            Ok(())
        })
        .unwrap();
        drop(fs);
        let before = used_bytes(&file);
        let fs = SqliteBackend::open(&file).unwrap();

        let started = Instant::now();
        let snapshot = fs.create_snapshot("measured").unwrap();
        let snapshot_time = started.elapsed();
        let after_snapshot = used_bytes(&file);

        let started = Instant::now();
        fs.branch(snapshot.id, "branch").unwrap();
        let branch_time = started.elapsed();
        let after_branch = used_bytes(&file);

        let total = (files * bytes) as u64;
        let added = |b: u64| format!("{} ({:.2} %)", mib(b), b as f64 * 100.0 / before as f64);
        println!(
            "| {files} | {} | {} ms | {} ms | {}, {} |",
            mib(total),
            snapshot_time.as_millis(),
            branch_time.as_millis(),
            added(after_snapshot.saturating_sub(before)),
            added(after_branch.saturating_sub(after_snapshot)),
        );
    }
}
