//! Attacks on `RateLimitLayer`, `ReadOnly` and `RestrictionsLayer`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsDir, FsErrorKind, FsHandles, FsLink, FsPermissions, FsRead, FsWrite,
    MemoryBackend, OpenFlags, Permissions, RateLimitLayer, ReadOnly, RestrictionsLayer,
};

#[test]
fn a_burst_past_the_rate_is_refused_with_a_wait() {
    let fs = FileStorage::new(
        RateLimitLayer::builder()
            .max_ops(10)
            .per_second()
            .build()
            .layer(MemoryBackend::new()),
    );
    for i in 0..10 {
        fs.write(format!("/f{i}"), "x").unwrap();
    }
    let wait = match fs.read("/f0") {
        Err(e) if e.kind() == FsErrorKind::RateLimitExceeded => {
            assert_eq!(e.path(), Path::new("/f0"));
            e.retry_after().unwrap()
        }
        other => panic!("expected a rate limit, got {other:?}"),
    };
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
    thread::sleep(wait + Duration::from_millis(5));
    assert_eq!(fs.read("/f0").unwrap(), b"x");
}

#[test]
fn eight_threads_share_one_budget() {
    let fs = FileStorage::new(
        RateLimitLayer::builder()
            .max_ops(100)
            .per_minute()
            .build()
            .layer(MemoryBackend::new()),
    );
    let ok = AtomicUsize::new(0);
    let limited = AtomicUsize::new(0);
    let barrier = Barrier::new(8);
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..8 {
            let (fs, ok, limited, barrier) = (&fs, &ok, &limited, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..50 {
                    match fs.write(format!("/t{t}-{i}"), "x") {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            assert_eq!(e.kind(), FsErrorKind::RateLimitExceeded);
                            limited.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    });
    // One more token arrives every 600 ms.
    let refilled = (start.elapsed().as_millis() / 600) as usize;
    let ok = ok.into_inner();
    assert!(
        (100..=100 + refilled).contains(&ok),
        "{ok} operations got through"
    );
    assert_eq!(ok + limited.into_inner(), 400);
}

#[test]
fn custom_windows_and_bursts() {
    let layer = RateLimitLayer::builder()
        .max_ops(2)
        .per(Duration::from_secs(3600))
        .burst(1)
        .build();
    let fs = FileStorage::new(layer.layer(MemoryBackend::new()));
    fs.write("/a", "x").unwrap();
    let err = fs.write("/b", "x").unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::RateLimitExceeded);
    assert!(err.to_string().contains("retry in"), "{err}");
    let none = FileStorage::new(
        RateLimitLayer::builder()
            .max_ops(0)
            .build()
            .layer(MemoryBackend::new()),
    );
    assert_eq!(
        none.read("/x").unwrap_err().kind(),
        FsErrorKind::RateLimitExceeded
    );
}

fn populated() -> MemoryBackend {
    let backend = MemoryBackend::new();
    let fs = FileStorage::new(backend.clone());
    fs.create_dir_all("/dir/sub").unwrap();
    fs.write("/dir/file", "content").unwrap();
    fs.symlink("/dir/file", "/link").unwrap();
    backend
}

#[test]
fn read_only_refuses_every_mutation() {
    let backend = populated();
    let ro = ReadOnly::new(backend.clone());
    let p = Path::new;
    let refusals: Vec<(&str, anyfs::FsResult<()>)> = vec![
        ("write", ro.write(p("/dir/file"), b"x")),
        ("write new", ro.write(p("/new"), b"x")),
        ("append", ro.append(p("/dir/file"), b"x")),
        ("write_range", ro.write_range(p("/dir/file"), 2, b"x")),
        ("remove_file", ro.remove_file(p("/dir/file"))),
        ("rename", ro.rename(p("/dir/file"), p("/moved"))),
        ("copy", ro.copy(p("/dir/file"), p("/copy"))),
        ("truncate", ro.truncate(p("/dir/file"), 0)),
        ("open_write", ro.open_write(p("/dir/file")).map(drop)),
        ("create_dir", ro.create_dir(p("/d2"))),
        ("create_dir_all", ro.create_dir_all(p("/d3/e"))),
        ("remove_dir", ro.remove_dir(p("/dir/sub"))),
        ("remove_dir_all", ro.remove_dir_all(p("/dir"))),
        ("symlink", ro.symlink(p("/dir"), p("/l2"))),
        ("hard_link", ro.hard_link(p("/dir/file"), p("/h"))),
        (
            "set_permissions",
            ro.set_permissions(p("/dir/file"), Permissions::from_mode(0o777)),
        ),
        (
            "set_times",
            ro.set_times(
                p("/dir/file"),
                None,
                Some(std::time::SystemTime::UNIX_EPOCH),
            ),
        ),
        ("set_owner", ro.set_owner(p("/dir/file"), Some(0), None)),
        (
            "open for writing",
            ro.open(p("/dir/file"), OpenFlags::READ_WRITE).map(drop),
        ),
        (
            "open to create",
            ro.open(p("/new"), OpenFlags::CREATE_NEW).map(drop),
        ),
    ];
    for (what, result) in refusals {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), FsErrorKind::ReadOnly, "{what}: {err}");
    }
    // Nothing changed, and reads pass through untouched.
    let fs = FileStorage::new(ro);
    assert_eq!(fs.read_to_string("/dir/file").unwrap(), "content");
    assert_eq!(fs.read_to_string("/link").unwrap(), "content");
    assert_eq!(
        fs.read_dir("/dir").unwrap().sorted_names().unwrap(),
        vec!["file", "sub"]
    );
    assert_eq!(fs.read_link("/link").unwrap(), Path::new("/dir/file"));
    assert!(!fs.exists("/new").unwrap());
    let h = fs.backend().open(p("/dir/file"), OpenFlags::READ).unwrap();
    let mut buf = [0u8; 7];
    assert_eq!(fs.backend().read_at(h, &mut buf, 0).unwrap(), 7);
    fs.backend().close(h).unwrap();
}

#[test]
fn restrictions_switch_off_what_they_name_and_nothing_else() {
    let backend = populated();
    let all = RestrictionsLayer::builder()
        .deny_permissions()
        .deny_symlinks()
        .deny_hard_links()
        .build()
        .layer(backend.clone());
    let p = Path::new;
    for (what, result) in [
        (
            "set_permissions",
            all.set_permissions(p("/dir/file"), Permissions::from_mode(0o600)),
        ),
        ("set_owner", all.set_owner(p("/dir/file"), Some(0), Some(0))),
        ("symlink", all.symlink(p("/dir"), p("/l2"))),
        ("hard_link", all.hard_link(p("/dir/file"), p("/h"))),
    ] {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), FsErrorKind::PermissionDenied, "{what}");
        assert!(err.to_string().contains(what), "{err}");
    }
    all.write(p("/dir/file"), b"still writable").unwrap();
    all.set_times(
        p("/dir/file"),
        None,
        Some(std::time::SystemTime::UNIX_EPOCH),
    )
    .unwrap();
    assert_eq!(all.read(p("/dir/file")).unwrap(), b"still writable");

    let only_perms = RestrictionsLayer::builder()
        .deny_permissions()
        .build()
        .layer(backend);
    only_perms.symlink(p("/dir"), p("/allowed-link")).unwrap();
    only_perms
        .hard_link(p("/dir/file"), p("/allowed-hard"))
        .unwrap();
    assert!(
        only_perms
            .set_permissions(p("/dir/file"), Permissions::from_mode(0o600))
            .is_err()
    );
}
