//! Creates 2,000 files of 4 KiB one transaction each, then 10,000 in one
//! batch (for profiling).

#![allow(clippy::unwrap_used)] // a profiling aid: stop at the first failure
use anyfs::{FsDir, FsWrite};
use std::path::Path;
fn main() {
    let dir = std::env::temp_dir().join(format!("anyfs-prof-{}", std::process::id()));
    let body = vec![1u8; 4096];
    let backend = anyfs_sqlite::SqliteBackend::open(dir.join("a.db")).unwrap();
    let t = std::time::Instant::now();
    for d in 0..20 {
        backend.create_dir(Path::new(&format!("/d{d:02}"))).unwrap();
    }
    for i in 0..2_000 {
        backend
            .write(Path::new(&format!("/d{:02}/f{:04}", i % 20, i)), &body)
            .unwrap();
    }
    eprintln!("one by one: {:?} per file", t.elapsed() / 2000);
    let backend = anyfs_sqlite::SqliteBackend::open(dir.join("b.db")).unwrap();
    let t = std::time::Instant::now();
    backend
        .batch(|fs| {
            for d in 0..100 {
                fs.create_dir(Path::new(&format!("/d{d:02}")))?;
            }
            for i in 0..10_000 {
                fs.write(Path::new(&format!("/d{:02}/f{:04}", i % 100, i)), &body)?;
            }
            Ok(())
        })
        .unwrap();
    eprintln!("batch: {:?} per file", t.elapsed() / 10_000);
    let t = std::time::Instant::now();
    let host = dir.join("host");
    for d in 0..100 {
        std::fs::create_dir_all(host.join(format!("d{d:02}"))).unwrap();
    }
    for i in 0..10_000 {
        std::fs::write(host.join(format!("d{:02}/f{:04}", i % 100, i)), &body).unwrap();
    }
    eprintln!("std::fs: {:?} per file", t.elapsed() / 10_000);
    let _ = std::fs::remove_dir_all(dir);
}
