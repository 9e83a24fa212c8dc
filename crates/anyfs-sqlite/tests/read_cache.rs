//! The read path remembers resolved paths; nothing a writer does may make a
//! reader see another file's content under a path.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use anyfs::{FileStorage, FsErrorKind};
use anyfs_sqlite::SqliteBackend;

#[test]
fn a_reused_inode_is_never_read_under_the_old_name() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::new(SqliteBackend::open(dir.path().join("c.db")).unwrap());
    fs.write("/victim", "old").unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match fs.read("/victim") {
                        Ok(data) => assert_eq!(data, b"old", "read another file's content"),
                        Err(e) => assert_eq!(e.kind(), FsErrorKind::NotFound),
                    }
                    let _ = fs.metadata("/victim").map(|m| assert_eq!(m.len, 3));
                }
            });
        }
        s.spawn(|| {
            for i in 0..400 {
                fs.remove_file("/victim").unwrap();
                // The freed inode number is likely to be handed out again.
                fs.write(format!("/other{}", i % 3), format!("NEW-{i}"))
                    .unwrap();
                fs.remove_file(format!("/other{}", i % 3)).unwrap();
                fs.write("/victim", "old").unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
}
