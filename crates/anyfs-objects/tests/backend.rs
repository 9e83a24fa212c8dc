//! What the object backend promises beyond the conformance suite, on real
//! servers: exact quotas, two backends on one workspace seeing each other's
//! writes, nothing in plaintext in the database or the bucket (snapshots
//! and branches included), and garbage
//! collection that deletes only what nothing names.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::Duration;

use anyfs::{FsErrorKind, FsHandles, FsRead, FsSnapshots, FsWrite, OpenFlags};
use anyfs_objects::{Blobs, GarbageReport, ObjectBackend, collect_garbage};

fn p(path: &str) -> &Path {
    Path::new(path)
}

#[test]
fn quotas_are_exact_and_refusals_change_nothing() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    fs.set_limit(Some(100)).unwrap();
    fs.write(p("/a"), &[1; 60]).unwrap();
    let err = fs.write(p("/b"), &[2; 41]).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    assert!(!fs.exists(p("/b")).unwrap(), "a refused write left a file");
    fs.write(p("/b"), &[2; 40]).unwrap();
    assert_eq!(fs.usage().unwrap(), (100, Some(100)));
    assert_eq!(
        fs.append(p("/a"), &[1]).unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    // Shrinking makes room; removing gives it all back.
    fs.truncate(p("/a"), 10).unwrap();
    fs.append(p("/b"), &[3; 50]).unwrap();
    fs.remove_file(p("/a")).unwrap();
    assert_eq!(fs.usage().unwrap(), (90, Some(100)));
}

#[test]
fn two_backends_on_one_workspace_share_it() {
    let Some(services) = common::services() else {
        return;
    };
    let first = common::fresh_backend(services);
    // A second node: its own backend on the same workspace.
    let second = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        first.account(),
        "main",
    )
    .unwrap();
    first.write(p("/shared.txt"), b"from the first").unwrap();
    assert_eq!(second.read(p("/shared.txt")).unwrap(), b"from the first");
    second
        .append(p("/shared.txt"), b", and the second")
        .unwrap();
    assert_eq!(
        first.read(p("/shared.txt")).unwrap(),
        b"from the first, and the second"
    );
    // Concurrent appends through both lose nothing.
    std::thread::scope(|s| {
        for fs in [&first, &second] {
            s.spawn(move || {
                for i in 0..20 {
                    fs.append(p("/log"), format!("{i}\n").as_bytes()).unwrap();
                }
            });
        }
    });
    let log = String::from_utf8(first.read(p("/log")).unwrap()).unwrap();
    let mut lines: Vec<u32> = log.lines().map(|l| l.parse().unwrap()).collect();
    lines.sort_unstable();
    let twice: Vec<u32> = (0..20).flat_map(|i| [i, i]).collect();
    assert_eq!(lines, twice);
}

#[test]
fn names_and_content_are_not_stored_in_plaintext() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    let secret_name = "payroll-of-the-board";
    let secret_content = b"the salaries are in this very sentence";
    let link_target = "/somewhere-quite-private";
    anyfs::FsDir::create_dir(&fs, &Path::new("/").join(secret_name)).unwrap();
    fs.write(&Path::new("/").join(secret_name).join("x"), secret_content)
        .unwrap();
    anyfs::FsLink::symlink(&fs, p(link_target), p("/l")).unwrap();
    let secret_label = "before the merger with acme";
    let snapshot = fs.create_snapshot(secret_label).unwrap();
    assert_eq!(fs.snapshots().unwrap()[0].name, secret_label);
    fs.branch(snapshot.id, "a-branch").unwrap();

    // Every text and byte column of every table this backend writes.
    let dump: Vec<u8> = services
        .db
        .run(|client| async move {
            let mut out = Vec::new();
            for (table, columns) in [
                ("fs_entries", "name_key, name"),
                ("fs_nodes", "coalesce(target, ''::bytea)"),
                (
                    "fs_workspaces",
                    "convert_to(account || name, 'UTF8'), coalesce(label, ''::bytea)",
                ),
                ("fs_blobs", "id"),
            ] {
                for row in client
                    .query(&format!("SELECT {columns} FROM {table}"), &[])
                    .await?
                {
                    for i in 0..row.len() {
                        out.extend_from_slice(row.get::<_, &[u8]>(i));
                    }
                }
            }
            Ok(out)
        })
        .unwrap();
    let found =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(
        !found(&dump, secret_name.as_bytes()),
        "a name is in the database"
    );
    assert!(
        !found(&dump, link_target.as_bytes()),
        "a link target is in the database"
    );
    assert!(
        !found(&dump, secret_label.as_bytes()),
        "a snapshot's label is in the database"
    );

    let store = services.blobs.store();
    for object in store.list_for_tests("accounts").unwrap() {
        let bytes = store.read_for_tests(&object).unwrap();
        assert!(!found(&bytes, &secret_content[..16]), "content in {object}");
        assert!(!object.contains(secret_name), "a name in an object name");
    }
}

#[test]
fn garbage_collection_deletes_only_what_nothing_names() {
    // A store of its own: no other test's uploads in flight.
    let Some(services) = common::fresh_services() else {
        return;
    };
    let services = &services;
    let fs = common::fresh_backend(services);
    fs.write(p("/kept"), b"kept content").unwrap();
    fs.write(p("/replaced"), b"old content").unwrap();
    fs.write(p("/replaced"), b"new content").unwrap();
    fs.write(p("/removed"), b"removed content").unwrap();
    fs.remove_file(p("/removed")).unwrap();
    fs.copy(p("/kept"), p("/copy")).unwrap();
    // An upload whose transaction never came.
    let stray = services
        .blobs
        .upload(p("/stray"), fs.account(), b"never named")
        .unwrap();

    // Within the grace period nothing goes.
    let none = collect_garbage(&services.db, &services.blobs, Duration::from_secs(3600)).unwrap();
    assert_eq!(none.released_blobs + none.unnamed_objects, 0, "{none:?}");
    assert!(
        services
            .blobs
            .store()
            .read_for_tests(&Blobs::object_name(fs.account(), stray))
            .is_ok()
    );

    // With none, what nothing names goes: the old content, the removed
    // file's, the stray upload; everything named still reads.
    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(
        report,
        GarbageReport {
            orphan_nodes: 0,
            released_blobs: 2,
            unnamed_objects: 1
        }
    );
    assert!(
        services
            .blobs
            .store()
            .read_for_tests(&Blobs::object_name(fs.account(), stray))
            .is_err()
    );
    assert_eq!(fs.read(p("/kept")).unwrap(), b"kept content");
    assert_eq!(fs.read(p("/copy")).unwrap(), b"kept content");
    assert_eq!(fs.read(p("/replaced")).unwrap(), b"new content");
}

#[test]
fn garbage_collection_frees_what_a_dead_process_held_open() {
    let Some(services) = common::fresh_services() else {
        return;
    };
    let services = &services;
    let fs = common::fresh_backend(services);
    let account = fs.account().to_owned();
    fs.write(p("/held"), b"held open").unwrap();
    let handle = fs.open(p("/held"), OpenFlags::READ).unwrap();
    fs.remove_file(p("/held")).unwrap();
    // Removed, yet still there for the handle, and still counted.
    let mut buf = [0u8; 16];
    assert_eq!(fs.read_at(handle, &mut buf, 0).unwrap(), 9);
    assert_eq!(&buf[..9], b"held open");
    assert_eq!(fs.usage().unwrap().0, 9);
    // The process goes away without closing it.
    drop(fs);

    let kept = collect_garbage(&services.db, &services.blobs, Duration::from_secs(3600)).unwrap();
    assert_eq!(kept, GarbageReport::default());
    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(
        report,
        GarbageReport {
            orphan_nodes: 1,
            released_blobs: 1,
            unnamed_objects: 0
        }
    );
    let again = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        &account,
        "main",
    )
    .unwrap();
    assert_eq!(again.usage().unwrap().0, 0);
}
