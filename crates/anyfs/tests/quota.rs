//! Attacks on `QuotaLayer`'s guarantees.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::sync::Barrier;
use std::thread;

use anyfs::middleware::{Quota, QuotaUsage};
use anyfs::prelude::*;
use anyfs::{FileStorage, FsErrorKind, MemoryBackend, QuotaLayer};

/// A memory backend and a filesystem over it limited to `limit` bytes.
fn with_total_limit(limit: u64) -> (MemoryBackend, FileStorage<Quota<MemoryBackend>>) {
    let backend = MemoryBackend::new();
    let fs = FileStorage::new(
        QuotaLayer::builder()
            .max_total_size(limit)
            .build()
            .layer(backend.clone()),
    );
    (backend, fs)
}

fn measure(backend: &MemoryBackend) -> QuotaUsage {
    QuotaLayer::builder().build().layer(backend.clone()).usage()
}

#[test]
fn initial_usage_comes_from_what_the_backend_holds() {
    let backend = MemoryBackend::new();
    let raw = FileStorage::new(backend.clone());
    raw.create_dir_all("/a/b").unwrap();
    raw.write("/a/one", vec![1u8; 100]).unwrap();
    raw.write("/a/b/two", vec![2u8; 50]).unwrap();
    raw.hard_link("/a/one", "/a/one-again").unwrap();
    raw.symlink("/a/one", "/link").unwrap();
    let quota = QuotaLayer::builder()
        .max_total_size(1000)
        .build()
        .layer(backend);
    // 100 + 50 bytes of content (the hard link once) + 6 bytes of link target;
    // names: a, b, one, two, one-again, link.
    assert_eq!(
        quota.usage(),
        QuotaUsage {
            total_size: 156,
            node_count: 6
        }
    );
    assert_eq!(quota.remaining().total_size, 844);
    assert_eq!(quota.limits().max_total_size, Some(1000));
    assert_eq!(quota.remaining().node_count, u64::MAX);
}

#[test]
fn writes_count_and_overwrites_truncates_removes_give_back() {
    let (backend, fs) = with_total_limit(1000);
    fs.write("/f", vec![0u8; 600]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 600);
    let err = fs.write("/g", vec![0u8; 500]).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    assert!(err.to_string().contains("/g"), "{err}");
    assert!(
        !fs.exists("/g").unwrap(),
        "a refused write leaves nothing behind"
    );
    fs.write("/f", vec![0u8; 100]).unwrap(); // overwrite gives back 500
    fs.write("/g", vec![0u8; 500]).unwrap();
    fs.append("/g", vec![0u8; 400]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 1000);
    assert_eq!(
        fs.append("/g", b"x").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    fs.truncate("/g", 100).unwrap();
    assert_eq!(fs.backend().usage().total_size, 200);
    assert_eq!(
        fs.truncate("/g", 2000).unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    fs.copy("/f", "/copy").unwrap();
    assert_eq!(fs.backend().usage().total_size, 300);
    fs.remove_file("/g").unwrap();
    fs.remove_file("/copy").unwrap();
    assert_eq!(fs.backend().usage().total_size, 100);
    assert_eq!(fs.backend().usage(), measure(&backend));
}

#[test]
fn directories_links_and_trees_count_as_nodes() {
    let backend = MemoryBackend::new();
    let fs = FileStorage::new(
        QuotaLayer::builder()
            .max_node_count(5)
            .build()
            .layer(backend.clone()),
    );
    fs.create_dir_all("/a/b/c").unwrap(); // 3
    fs.write("/a/f", "x").unwrap(); // 4
    fs.symlink("/a/f", "/l").unwrap(); // 5
    assert_eq!(
        fs.create_dir("/d").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert_eq!(
        fs.hard_link("/a/f", "/h").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert_eq!(
        fs.create_dir_all("/x/y").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert_eq!(
        fs.write("/new", "x").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    fs.write("/a/f", "overwriting is not a new node").unwrap();
    fs.remove_dir_all("/a").unwrap();
    assert_eq!(fs.backend().usage().node_count, 1);
    assert_eq!(fs.backend().usage(), measure(&backend));
    fs.create_dir_all("/p/q/r/s").unwrap();
    assert_eq!(fs.backend().usage().node_count, 5);
}

#[test]
fn file_size_dir_entries_and_depth_limits() {
    let fs = FileStorage::new(
        QuotaLayer::builder()
            .max_file_size(10)
            .max_dir_entries(2)
            .max_path_depth(3)
            .build()
            .layer(MemoryBackend::new()),
    );
    fs.write("/ten", [0u8; 10]).unwrap();
    let err = fs.write("/eleven", [0u8; 11]).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::FileSizeExceeded);
    assert_eq!(
        fs.append("/ten", b"x").unwrap_err().kind(),
        FsErrorKind::FileSizeExceeded
    );
    fs.write("/second", b"").unwrap();
    assert_eq!(
        fs.write("/third", b"").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    fs.remove_file("/second").unwrap();
    fs.create_dir_all("/d/e").unwrap();
    fs.create_dir("/d/e/f").unwrap(); // depth 3
    assert_eq!(
        fs.create_dir("/d/e/f/g").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert_eq!(
        fs.write("/d/e/f/g", b"").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    // Moving a tree deeper counts its whole depth.
    fs.create_dir("/d/x").unwrap();
    fs.create_dir("/d/x/y").unwrap();
    assert_eq!(
        fs.rename("/d/x", "/d/e/x").unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert!(fs.exists("/d/x/y").unwrap());
}

#[test]
fn streamed_write_stops_at_the_limit_with_usage_exact() {
    let (backend, fs) = with_total_limit(1000);
    fs.write("/existing", vec![0u8; 100]).unwrap();
    let mut w = fs.open_write("/stream").unwrap();
    for _ in 0..3 {
        w.write_all(&[7u8; 300]).unwrap();
    }
    let err = w.write_all(&[7u8; 300]).unwrap_err();
    let fs_err = anyfs::FsError::from_io("/stream", "write", err);
    assert_eq!(fs_err.kind(), FsErrorKind::QuotaExceeded);
    // While staged, what it holds is counted.
    assert_eq!(fs.backend().usage().total_size, 1000);
    w.commit().unwrap();
    assert_eq!(fs.metadata("/stream").unwrap().len, 900);
    assert_eq!(fs.backend().usage().total_size, 1000);
    assert_eq!(fs.backend().usage(), measure(&backend));
    // A replacement is charged only for what it adds beyond the old
    // content, which it gives back at the commit.
    let mut w = fs.open_write("/stream").unwrap();
    w.write_all(&[1u8; 400]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 1000);
    w.commit().unwrap();
    assert_eq!(fs.backend().usage().total_size, 500);
    assert_eq!(fs.backend().usage(), measure(&backend));
    // One never committed gives back everything it was charged.
    let mut w = fs.open_write("/new").unwrap();
    w.write_all(&[1u8; 300]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 800);
    drop(w);
    assert_eq!(fs.backend().usage(), measure(&backend));
    assert_eq!(fs.backend().usage().total_size, 500);
    assert!(!fs.exists("/new").unwrap());
}

#[test]
fn eight_threads_racing_never_overshoot_by_a_byte() {
    for round in 0..10 {
        let backend = MemoryBackend::new();
        let limit = 10_007;
        let fs = FileStorage::new(
            QuotaLayer::builder()
                .max_total_size(limit)
                .build()
                .layer(backend.clone()),
        );
        let barrier = Barrier::new(8);
        thread::scope(|s| {
            for t in 0..8 {
                let (fs, barrier) = (&fs, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0.. {
                        // Mixed sizes, new files, appends and overwrites.
                        let size = 1 + (t * 37 + i * 11) % 97;
                        let result = match i % 3 {
                            0 => fs.write(format!("/t{t}-{i}"), vec![1u8; size]),
                            1 => fs.append(format!("/shared{}", i % 4), vec![2u8; size]),
                            _ => fs.write(format!("/t{t}-{}", i - 2), vec![3u8; size * 2]),
                        };
                        match result {
                            Ok(()) => {}
                            Err(e) if e.kind() == anyfs::FsErrorKind::QuotaExceeded => {
                                if i > 400 {
                                    break;
                                }
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
        let actual = measure(&backend);
        assert!(
            actual.total_size <= limit,
            "round {round}: {} > {limit}",
            actual.total_size
        );
        assert_eq!(fs.backend().usage(), actual, "round {round}: usage drifted");
    }
}

#[test]
fn eight_threads_racing_for_nodes_never_overshoot() {
    let backend = MemoryBackend::new();
    let fs = FileStorage::new(
        QuotaLayer::builder()
            .max_node_count(100)
            .build()
            .layer(backend.clone()),
    );
    thread::scope(|s| {
        for t in 0..8 {
            let fs = &fs;
            s.spawn(move || {
                for i in 0..40 {
                    let _ = match i % 3 {
                        0 => fs.create_dir(format!("/d{t}-{i}")),
                        1 => fs.write(format!("/f{t}-{i}"), b"x"),
                        _ => fs.symlink("/x", format!("/l{t}-{i}")),
                    };
                }
            });
        }
    });
    assert_eq!(measure(&backend).node_count, 100);
    assert_eq!(fs.backend().usage().node_count, 100);
}

#[test]
fn statfs_reports_the_quota() {
    use anyfs::FsStats;
    let quota = QuotaLayer::builder()
        .max_total_size(5000)
        .max_node_count(10)
        .build()
        .layer(MemoryBackend::new());
    let fs = FileStorage::new(quota);
    fs.write("/a", vec![0u8; 1000]).unwrap();
    let stats = fs.backend().statfs().unwrap();
    assert_eq!(stats.total_bytes, 5000);
    assert_eq!(stats.used_bytes, 1000);
    assert_eq!(stats.available_bytes, 4000);
    assert_eq!(stats.available_inodes, 9);
}

#[test]
fn range_writes_are_charged_for_what_they_grow() {
    let (backend, fs) = with_total_limit(100);
    fs.write("/f", [1u8; 60]).unwrap();
    // Inside the file: nothing more is used.
    fs.write_range("/f", 10, [2u8; 40]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 60);
    // Past the end: the growth, gap included.
    fs.write_range("/f", 70, [3u8; 10]).unwrap();
    assert_eq!(fs.backend().usage().total_size, 80);
    let err = fs.write_range("/f", 95, [4u8; 10]).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    assert_eq!(
        fs.read("/f").unwrap().len(),
        80,
        "a refused write changed the file"
    );
    // Several ranges are charged for the furthest end, once, or refused whole.
    fs.write_ranges(
        "/f",
        &[(0, &[5u8; 5][..]), (85, &[5u8; 5][..]), (88, &[5u8; 2][..])],
    )
    .unwrap();
    assert_eq!(fs.backend().usage().total_size, 90);
    let err = fs
        .write_ranges("/f", &[(0, &[6u8; 5][..]), (99, &[6u8; 2][..])])
        .unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    assert_eq!(
        fs.read("/f").unwrap()[..5],
        [5u8; 5],
        "a refused write applied in part"
    );
    // A missing file is the backend's answer, not the quota's.
    assert_eq!(
        fs.write_range("/none", 0, [0u8; 500]).unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    assert_eq!(fs.backend().usage(), measure(&backend));
}

#[test]
fn eight_threads_growing_one_file_in_place_never_overshoot() {
    for round in 0..10 {
        let (backend, fs) = with_total_limit(10_007);
        fs.write("/shared", b"").unwrap();
        let barrier = Barrier::new(8);
        thread::scope(|s| {
            for t in 0..8u64 {
                let (fs, barrier) = (&fs, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..400u64 {
                        // Overwrites, growth, and gaps past the end.
                        let at = (t * 997 + i * 131) % 12_000;
                        let size = 1 + ((t * 37 + i * 11) % 97) as usize;
                        match fs.write_range("/shared", at, vec![t as u8; size]) {
                            Ok(()) => {}
                            Err(e) if e.kind() == FsErrorKind::QuotaExceeded => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
        let actual = measure(&backend);
        assert!(actual.total_size <= 10_007, "round {round}: {actual:?}");
        assert_eq!(fs.backend().usage(), actual, "round {round}: usage drifted");
    }
}

#[test]
fn positional_writes_through_handles_are_charged() {
    use anyfs::{FsHandles, OpenFlags};
    let backend = MemoryBackend::new();
    let quota = QuotaLayer::builder()
        .max_total_size(100)
        .build()
        .layer(backend.clone());
    let h = quota.open("/h".as_ref(), OpenFlags::CREATE).unwrap();
    quota.write_at(h, &[1u8; 60], 0).unwrap();
    quota.write_at(h, &[1u8; 20], 50).unwrap(); // grows to 70
    assert_eq!(
        quota.write_at(h, &[1u8; 10], 95).unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    quota.close(h).unwrap();
    assert_eq!(quota.usage(), measure(&backend));
    assert_eq!(quota.usage().total_size, 70);
}

#[test]
fn copies_racing_writes_of_their_source_keep_usage_exact() {
    let (backend, fs) = with_total_limit(1 << 30);
    fs.write("/src", vec![1u8; 10]).unwrap();
    thread::scope(|s| {
        for t in 0..4 {
            let fs = &fs;
            s.spawn(move || {
                for i in 0..200 {
                    fs.write("/src", vec![t as u8; 1 + (i * 37 + t * 101) % 5000])
                        .unwrap();
                }
            });
            s.spawn(move || {
                for i in 0..200 {
                    fs.copy("/src", format!("/copy{}", (i + t) % 5)).unwrap();
                }
            });
        }
    });
    assert_eq!(fs.backend().usage(), measure(&backend));
}

/// A streamed replacement is charged against what its file holds when it
/// is committed: moving or removing the old file while the write is open
/// neither lets the store grow past its limit nor loses count.
#[test]
fn a_replacement_is_charged_against_the_file_it_replaces_at_its_commit() {
    use std::io::Write;
    let (backend, fs) = with_total_limit(1000);
    fs.write("/a", vec![0u8; 1000]).unwrap();
    for i in 0..5 {
        let mut w = fs.open_write("/a").unwrap();
        w.write_all(&[1u8; 1000]).unwrap();
        fs.rename("/a", format!("/kept{i}")).unwrap();
        // The old content is still held (as /keptN): the new one does not fit.
        let err = w.commit().unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
        assert_eq!(fs.backend().usage(), measure(&backend));
        assert!(!fs.exists("/a").unwrap());
        fs.rename(format!("/kept{i}"), "/a").unwrap();
    }
    // Removed meanwhile: the count follows what is stored.
    let mut w = fs.open_write("/a").unwrap();
    w.write_all(&[2u8; 300]).unwrap();
    fs.remove_file("/a").unwrap();
    w.commit().unwrap();
    assert_eq!(fs.read("/a").unwrap(), vec![2u8; 300]);
    assert_eq!(fs.backend().usage(), measure(&backend));
    // Created by someone else meanwhile: counted once.
    let mut w = fs.open_write("/b").unwrap();
    w.write_all(&[3u8; 2]).unwrap();
    fs.write("/b", vec![4u8; 400]).unwrap();
    w.commit().unwrap();
    assert_eq!(fs.backend().usage(), measure(&backend));
}

/// Every way a file can grow is charged, called on the quota itself (no
/// `FileStorage` in front): a method the quota did not override would
/// reach the backend uncharged.
#[test]
fn every_way_to_grow_a_file_is_charged() {
    use anyfs::{FsHandles, FsWrite, OpenFlags};
    use std::path::Path;

    type Grow = Box<dyn Fn(&Quota<MemoryBackend>, &Path) -> anyfs::FsResult<()>>;
    let grow: Vec<(&str, Grow)> = vec![
        ("write", Box::new(|q, p| q.write(p, &[1; 64]))),
        ("append", Box::new(|q, p| q.append(p, &[1; 64]))),
        (
            "write_range",
            Box::new(|q, p| q.write_range(p, 0, &[1; 64])),
        ),
        (
            "write_ranges",
            Box::new(|q, p| q.write_ranges(p, &[(0, &[1; 64][..])])),
        ),
        ("truncate", Box::new(|q, p| q.truncate(p, 64))),
        (
            "open_write",
            Box::new(|q, p| {
                let mut w = q.open_write(p)?;
                w.write_all(&[1; 64])
                    .map_err(|e| anyfs::FsError::from_io(p, "write", e))?;
                w.commit()
            }),
        ),
        (
            "write_at",
            Box::new(|q, p| {
                let h = q.open(p, OpenFlags::READ_WRITE)?;
                let result = q.write_at(h, &[1; 64], 0).map(drop);
                q.close(h)?;
                result
            }),
        ),
    ];
    for (how, grow) in grow {
        let quota = QuotaLayer::builder()
            .max_total_size(40)
            .build()
            .layer(MemoryBackend::new());
        let path = Path::new("/f");
        quota.write(path, b"ten bytes!").unwrap();
        let err = grow(&quota, path).expect_err(how);
        assert_eq!(err.kind(), FsErrorKind::QuotaExceeded, "{how}: {err}");
        assert_eq!(quota.usage().total_size, 10, "{how} changed the usage");
        assert_eq!(quota.read(path).unwrap(), b"ten bytes!", "{how} wrote");
    }
}
