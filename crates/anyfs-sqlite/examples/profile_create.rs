//! Creates 10,000 files of 4 KiB in one batch (for profiling).
use anyfs::{FsDir, FsWrite};
use std::path::Path;
fn main() {
    let dir = std::env::temp_dir().join(format!("anyfs-prof-{}", std::process::id()));
    let backend = anyfs_sqlite::SqliteBackend::open(dir.join("p.db")).unwrap();
    let body = vec![1u8; 4096];
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
    eprintln!("{:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(dir);
}
