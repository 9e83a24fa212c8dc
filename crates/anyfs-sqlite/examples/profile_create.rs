//! Creates 4 KiB files in a database — 2,000 one transaction each, 10,000 in
//! one batch, 10,000 with group commit — and 10,000 as host files, printing
//! the time per file (for profiling). `floor` inserts 10,000 rows of 4 KiB
//! into a bare SQLite table in one transaction, with the backend's settings:
//! what SQLite alone costs, no names or metadata. Name parts to run only those:
//! `cargo run --release -p anyfs-sqlite --example profile_create -- batch`.

#![allow(clippy::unwrap_used)] // a profiling aid: stop at the first failure
use std::path::Path;
use std::time::{Duration, Instant};

use anyfs::{FsDir, FsSync, FsWrite};
use anyfs_sqlite::{SqliteBackend, SqliteOptions};

fn fill(
    fs: &(impl FsDir + FsWrite),
    dirs: usize,
    files: usize,
    body: &[u8],
) -> anyfs::FsResult<()> {
    for d in 0..dirs {
        fs.create_dir(Path::new(&format!("/d{d:02}")))?;
    }
    for i in 0..files {
        fs.write(Path::new(&format!("/d{:02}/f{:04}", i % dirs, i)), body)?;
    }
    Ok(())
}

fn main() {
    let parts: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let dir = std::env::temp_dir().join(format!("anyfs-prof-{}", std::process::id()));
    let body = vec![1u8; 4096];
    if wanted("each") {
        let backend = SqliteBackend::open(dir.join("each.db")).unwrap();
        let t = Instant::now();
        fill(&backend, 20, 2_000, &body).unwrap();
        eprintln!("one transaction each: {:?} per file", t.elapsed() / 2_000);
    }
    if wanted("batch") {
        let backend = SqliteBackend::open(dir.join("batch.db")).unwrap();
        let t = Instant::now();
        backend.batch(|fs| fill(fs, 100, 10_000, &body)).unwrap();
        eprintln!("one batch: {:?} per file", t.elapsed() / 10_000);
    }
    if wanted("group") {
        let options = SqliteOptions {
            group_commit: Some(Duration::from_millis(50)),
            ..SqliteOptions::default()
        };
        let backend = SqliteBackend::open_with_options(dir.join("group.db"), options).unwrap();
        let t = Instant::now();
        fill(&backend, 100, 10_000, &body).unwrap();
        backend.sync().unwrap();
        eprintln!(
            "group commit (50 ms), normal API: {:?} per file",
            t.elapsed() / 10_000
        );
    }
    if wanted("floor") {
        std::fs::create_dir_all(&dir).unwrap();
        let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 4096;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA cache_size = -16384;
             CREATE TABLE content (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
        )
        .unwrap();
        let t = Instant::now();
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut insert = conn
                .prepare("INSERT INTO content (data) VALUES (?1)")
                .unwrap();
            for _ in 0..10_000 {
                insert.execute([&body]).unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
        eprintln!(
            "bare SQLite, one row each: {:?} per row",
            t.elapsed() / 10_000
        );
    }
    if wanted("host") {
        let host = dir.join("host");
        std::fs::create_dir_all(&host).unwrap();
        let t = Instant::now();
        for d in 0..100 {
            std::fs::create_dir_all(host.join(format!("d{d:02}"))).unwrap();
        }
        for i in 0..10_000 {
            std::fs::write(host.join(format!("d{:02}/f{:04}", i % 100, i)), &body).unwrap();
        }
        eprintln!("std::fs::write: {:?} per file", t.elapsed() / 10_000);
    }
    let _ = std::fs::remove_dir_all(dir);
}
