//! Random 4 KiB reads of 10,000 files (for profiling).

#![allow(clippy::unwrap_used)] // a profiling aid: stop at the first failure
use anyfs::{FileStorage, FsDir, FsRead, FsWrite};
use std::path::{Path, PathBuf};
fn main() {
    let dir = std::env::temp_dir().join(format!("anyfs-prof-r-{}", std::process::id()));
    let backend = anyfs_sqlite::SqliteBackend::open(dir.join("p.db")).unwrap();
    let body = vec![1u8; 4096];
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
    anyfs::FsSync::sync(&backend).unwrap();
    let paths: Vec<PathBuf> = (0..10_000)
        .map(|i| {
            PathBuf::from(format!(
                "/d{:02}/f{:04}",
                (i * 7919) % 100,
                (i * 7919) % 10_000
            ))
        })
        .collect();
    let storage = FileStorage::new(backend.clone());
    for round in 0..2 {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for p in &paths {
                std::hint::black_box(backend.read(p).unwrap());
            }
        }
        eprintln!(
            "backend round {round}: {:?} per read",
            t.elapsed() / 200_000
        );
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for p in &paths {
                std::hint::black_box(storage.read(p).unwrap());
            }
        }
        eprintln!(
            "storage round {round}: {:?} per read",
            t.elapsed() / 200_000
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
