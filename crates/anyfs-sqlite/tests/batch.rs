//! `batch`: many operations in one transaction.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Barrier;
use std::thread;

use anyfs::{FileStorage, FsError, FsErrorKind};
use anyfs_sqlite::{IndexedBackend, SqliteBackend};

#[test]
fn a_batch_commits_everything_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("b.db")).unwrap();
    let fs = FileStorage::new(backend.clone());
    backend
        .batch(|_| {
            fs.create_dir("/d")?;
            for i in 0..50 {
                fs.write(format!("/d/{i}"), i.to_string())?;
            }
            // Reads inside the batch see its writes.
            assert_eq!(fs.read_to_string("/d/7")?, "7");
            Ok(())
        })
        .unwrap();
    assert_eq!(fs.read_dir("/d").unwrap().count(), 50);

    let err = backend
        .batch(|_| {
            fs.write("/d/new", "x")?;
            fs.remove_file("/d/0")?;
            fs.read("/missing") // fails: the whole batch is undone
        })
        .unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
    assert!(!fs.exists("/d/new").unwrap());
    assert!(fs.exists("/d/0").unwrap());

    // A failing operation inside a batch is undone alone if the batch goes on.
    backend
        .batch(|_| {
            assert!(fs.create_dir("/d").is_err());
            fs.write("/after", "kept")
        })
        .unwrap();
    assert!(fs.exists("/after").unwrap());
}

#[test]
fn a_refused_range_write_leaves_the_batch_going() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::open(dir.path().join("r.db")).unwrap();
    let fs = FileStorage::new(sqlite.clone());
    fs.write("/f", "0123456789").unwrap();
    sqlite
        .batch(|_| {
            // The second range is past any size: refused before a row changes.
            let err = fs
                .write_ranges("/f", &[(0, b"AB"), (u64::MAX - 1, b"xy")])
                .unwrap_err();
            assert_eq!(err.kind(), FsErrorKind::FileSizeExceeded);
            fs.write_ranges("/f", &[(2, b"cd")])?;
            fs.write("/g", "kept")
        })
        .unwrap();
    assert_eq!(fs.read_to_string("/f").unwrap(), "01cd456789");
    assert_eq!(fs.read_to_string("/g").unwrap(), "kept");

    let indexed = IndexedBackend::open(dir.path().join("r-indexed")).unwrap();
    let fs = FileStorage::new(indexed.clone());
    fs.write("/f", "0123456789").unwrap();
    indexed
        .batch(|_| {
            assert!(
                fs.write_ranges("/f", &[(0, b"AB"), (u64::MAX - 1, b"xy")])
                    .is_err()
            );
            fs.write_ranges("/f", &[(2, b"cd"), (8, b"ef")])
        })
        .unwrap();
    assert_eq!(fs.read_to_string("/f").unwrap(), "01cd4567ef");
}

#[test]
fn a_panic_rolls_the_batch_back() {
    let backend = SqliteBackend::open_in_memory().unwrap();
    let fs = FileStorage::new(backend.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend
            .batch(|_| -> Result<(), FsError> {
                fs.write("/half", "done").unwrap();
                panic!("the agent crashed");
            })
            .unwrap();
    }));
    assert!(result.is_err());
    assert!(!fs.exists("/half").unwrap());
    fs.write("/usable", "still").unwrap();
}

#[test]
fn other_threads_wait_for_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let backend = IndexedBackend::open(dir.path().join("store")).unwrap();
    let fs = FileStorage::new(backend.clone());
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            backend
                .batch(|_| {
                    fs.write("/a", "1")?;
                    barrier.wait();
                    thread::sleep(std::time::Duration::from_millis(50));
                    fs.write("/b", "2")
                })
                .unwrap();
        });
        s.spawn(|| {
            barrier.wait();
            // Readers never see half a batch; a writer waits for its end.
            assert!(!fs.exists("/a").unwrap() || fs.exists("/b").unwrap());
            fs.write("/c", "3").unwrap();
            assert!(fs.exists("/b").unwrap());
        });
    });
    assert_eq!(fs.read_dir("/").unwrap().count(), 3);
}
