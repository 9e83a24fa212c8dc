//! The read path remembers resolved paths; nothing a writer does may make a
//! reader see another file's content under a path.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use anyfs::{FileStorage, FsErrorKind};
use anyfs_sqlite::{SqliteBackend, SqliteOptions};

fn grouped(db: &std::path::Path) -> SqliteBackend {
    let options = SqliteOptions {
        group_commit: Some(Duration::from_millis(5)),
        ..SqliteOptions::default()
    };
    SqliteBackend::open_with_options(db, options).unwrap()
}

#[test]
fn a_reused_inode_is_never_read_under_the_old_name() {
    let dir = tempfile::tempdir().unwrap();
    reused_inode_race(SqliteBackend::open(dir.path().join("c.db")).unwrap());
}

#[test]
fn a_reused_inode_is_never_read_under_the_old_name_with_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    reused_inode_race(grouped(&dir.path().join("c.db")));
}

fn reused_inode_race(backend: SqliteBackend) {
    let fs = FileStorage::new(backend);
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

/// With group commit, a write is acknowledged before it is committed; every
/// thread must still see it as soon as it returned, through every cache.
#[test]
fn acknowledged_writes_are_seen_by_every_thread_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::new(grouped(&dir.path().join("g.db")));
    fs.write("/counter", "0").unwrap();
    let published = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    // Whatever was published before this read started must
                    // be there (or something newer).
                    let floor = published.load(Ordering::Acquire);
                    let seen: u64 = String::from_utf8(fs.read("/counter").unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                    let len = fs.metadata("/counter").unwrap().len;
                    assert!(len >= 1);
                }
            });
        }
        s.spawn(|| {
            for i in 1..=2_000u64 {
                fs.write("/counter", i.to_string()).unwrap();
                published.store(i, Ordering::Release);
                if i % 500 == 0 {
                    // Let the background commit run now and then.
                    thread::sleep(Duration::from_millis(8));
                }
            }
            stop.store(true, Ordering::Release);
        });
    });
    assert_eq!(fs.read("/counter").unwrap(), b"2000");
}

#[test]
fn group_commit_commits_when_idle_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let fs = FileStorage::new(grouped(&db));
    fs.write("/idle", "committed by the background").unwrap();
    // Another connection sees only committed data.
    let committed = |name: &str| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT count(*) FROM nodes WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
            == 1
    };
    let mut waited = Duration::ZERO;
    while !committed("idle") {
        assert!(
            waited < Duration::from_secs(10),
            "an idle group was never committed"
        );
        thread::sleep(Duration::from_millis(5));
        waited += Duration::from_millis(5);
    }
    fs.write("/closing", "committed on close").unwrap();
    drop(fs);
    assert!(committed("closing"), "closing lost an acknowledged write");
    let fs = FileStorage::new(SqliteBackend::open(&db).unwrap());
    assert_eq!(fs.read("/closing").unwrap(), b"committed on close");
}

#[test]
fn a_failed_write_inside_a_group_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let fs = FileStorage::new(grouped(&db));
    fs.write("/a", "kept").unwrap();
    assert_eq!(
        fs.write("/missing/dir/b", "x").unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    fs.rename("/a", "/c").unwrap();
    drop(fs);
    let fs = FileStorage::new(SqliteBackend::open(&db).unwrap());
    assert_eq!(fs.read("/c").unwrap(), b"kept");
    assert!(!fs.exists("/a").unwrap());
}
