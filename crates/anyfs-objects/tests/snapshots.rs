//! Snapshots of an object-storage workspace, on real servers: a snapshot
//! reads the workspace as it was however it changes afterwards, refuses
//! every change, is taken whole while writers go on, belongs to its own
//! workspace only, and keeps its content from garbage collection until it
//! is deleted.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyfs::{FsDir, FsErrorKind, FsLink, FsRead, FsSnapshots, FsWrite};
use anyfs_objects::{ObjectBackend, collect_garbage};

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Every file under `dir` with its content, directories as `None`.
fn tree(fs: &ObjectBackend, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
    for entry in fs.read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path;
        let meta = fs.symlink_metadata(&path).unwrap();
        let name = path.display().to_string();
        if meta.is_dir() {
            out.insert(name, None);
            tree(fs, &path, out);
        } else if meta.is_symlink() {
            let target = fs.read_link(&path).unwrap();
            out.insert(name, Some(target.display().to_string().into_bytes()));
        } else {
            out.insert(name, Some(fs.read(&path).unwrap()));
        }
    }
}

fn whole(fs: &ObjectBackend) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    tree(fs, p("/"), &mut out);
    out
}

#[test]
fn a_snapshot_reads_the_workspace_as_it_was() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    fs.create_dir_all(p("/src/lib")).unwrap();
    fs.write(p("/src/lib/a.rs"), b"fn a() {}").unwrap();
    fs.write(p("/src/main.rs"), b"fn main() {}").unwrap();
    fs.write(p("/notes.txt"), &vec![7u8; 300_000]).unwrap();
    fs.symlink(p("/src/main.rs"), p("/entry")).unwrap();
    let before = whole(&fs);

    let info = fs.create_snapshot("before the agent").unwrap();
    assert_eq!(info.name, "before the agent");
    assert_eq!(info.bytes, 9 + 12 + 300_000);

    // The workspace changes every way it can.
    fs.write(p("/src/main.rs"), b"fn main() { changed() }")
        .unwrap();
    fs.append(p("/notes.txt"), b"more").unwrap();
    fs.write_range(p("/notes.txt"), 10, b"patched").unwrap();
    fs.remove_file(p("/src/lib/a.rs")).unwrap();
    fs.rename(p("/src/lib"), p("/src/gone")).unwrap();
    fs.write(p("/new.txt"), b"new").unwrap();
    fs.remove_file(p("/entry")).unwrap();

    let snapshot = fs.open_snapshot(info.id).unwrap();
    assert_eq!(whole(&snapshot), before);
    assert_ne!(whole(&fs), before);
    assert_eq!(fs.snapshots().unwrap(), vec![info]);
}

#[test]
fn a_snapshot_refuses_every_change() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/d/f"), b"kept").unwrap();
    let snapshot = fs
        .open_snapshot(fs.create_snapshot("s").unwrap().id)
        .unwrap();
    let refused = [
        snapshot.write(p("/d/f"), b"x").unwrap_err(),
        snapshot.write(p("/new"), b"x").unwrap_err(),
        snapshot.append(p("/d/f"), b"x").unwrap_err(),
        snapshot.write_range(p("/d/f"), 0, b"x").unwrap_err(),
        snapshot.truncate(p("/d/f"), 0).unwrap_err(),
        snapshot.remove_file(p("/d/f")).unwrap_err(),
        snapshot.rename(p("/d/f"), p("/g")).unwrap_err(),
        snapshot.copy(p("/d/f"), p("/g")).unwrap_err(),
        snapshot.create_dir(p("/e")).unwrap_err(),
        snapshot.remove_dir_all(p("/d")).unwrap_err(),
        snapshot.symlink(p("/d/f"), p("/l")).unwrap_err(),
        snapshot.set_limit(Some(1)).unwrap_err(),
        snapshot.create_snapshot("of a snapshot").unwrap_err(),
    ];
    for err in refused {
        assert_eq!(err.kind(), FsErrorKind::ReadOnly, "{err}");
    }
    assert_eq!(snapshot.read(p("/d/f")).unwrap(), b"kept");
    assert_eq!(fs.read(p("/d/f")).unwrap(), b"kept");
}

#[test]
fn a_snapshot_taken_while_writers_go_on_is_one_moment() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    // The writer writes the round's number into ten files, one after the
    // other, round after round (each write a change of its own). Any one
    // moment shows the first few files a round ahead of the rest; a copy
    // that mixed moments would show a later file ahead of an earlier one,
    // or files two rounds apart.
    let files: Vec<String> = (0..10).map(|i| format!("/f{i}")).collect();
    for f in &files {
        fs.write(p(f), b"0").unwrap();
    }
    let stop = AtomicBool::new(false);
    let taken = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                round += 1;
                for f in &files {
                    fs.write(p(f), round.to_string().as_bytes()).unwrap();
                }
            }
            round
        });
        let mut taken = Vec::new();
        for i in 0..8 {
            std::thread::sleep(Duration::from_millis(30));
            taken.push(fs.create_snapshot(&format!("s{i}")).unwrap());
        }
        stop.store(true, Ordering::SeqCst);
        let rounds = writer.join().unwrap();
        assert!(rounds > 1, "the writer never got going");
        taken
    });
    for info in taken {
        let snapshot = fs.open_snapshot(info.id).unwrap();
        let values: Vec<u64> = files
            .iter()
            .map(|f| {
                String::from_utf8(snapshot.read(p(f)).unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        // Files are written in order, so a moment shows a prefix of them
        // one round ahead of the rest: never a later file ahead of an
        // earlier one, never two rounds apart.
        let first = values[0];
        assert!(
            values.windows(2).all(|w| w[0] >= w[1]) && values.iter().all(|v| first - v <= 1),
            "snapshot {} is no moment of the writer: {values:?}",
            info.name
        );
    }
}

#[test]
fn a_snapshot_belongs_to_its_workspace_only() {
    let Some(services) = common::services() else {
        return;
    };
    let mine = common::fresh_backend(services);
    let theirs = common::fresh_backend(services);
    theirs.write(p("/secret"), b"theirs").unwrap();
    let their_snapshot = theirs.create_snapshot("theirs").unwrap();
    let err = mine.open_snapshot(their_snapshot.id).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
    assert_eq!(
        mine.delete_snapshot(their_snapshot.id).unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    assert!(mine.snapshots().unwrap().is_empty());
    assert_eq!(
        theirs
            .open_snapshot(their_snapshot.id)
            .unwrap()
            .read(p("/secret"))
            .unwrap(),
        b"theirs"
    );
    // A snapshot's name cannot be opened as a workspace.
    let reserved = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        theirs.account(),
        ".snapshot/anything",
    )
    .unwrap_err();
    assert!(reserved.to_string().contains("reserved"), "{reserved}");
}

#[test]
fn content_a_snapshot_names_outlives_garbage_collection_until_it_is_deleted() {
    // A store of its own: collection with no grace period.
    let Some(services) = common::fresh_services() else {
        return;
    };
    let services = &services;
    let fs = common::fresh_backend(services);
    fs.write(p("/shared"), b"in both snapshots").unwrap();
    fs.write(p("/first-only"), b"in the first snapshot")
        .unwrap();
    let first = fs.create_snapshot("first").unwrap();
    fs.remove_file(p("/first-only")).unwrap();
    let second = fs.create_snapshot("second").unwrap();
    // The workspace lets go of everything.
    fs.write(p("/shared"), b"rewritten").unwrap();

    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(report.released_blobs, 0, "{report:?}");
    let a = fs.open_snapshot(first.id).unwrap();
    let b = fs.open_snapshot(second.id).unwrap();
    assert_eq!(a.read(p("/shared")).unwrap(), b"in both snapshots");
    assert_eq!(a.read(p("/first-only")).unwrap(), b"in the first snapshot");
    assert_eq!(b.read(p("/shared")).unwrap(), b"in both snapshots");

    // Deleting the first frees what only it named; within the grace
    // period, nothing yet.
    fs.delete_snapshot(first.id).unwrap();
    assert_eq!(
        fs.delete_snapshot(first.id).unwrap_err().kind(),
        FsErrorKind::NotFound
    );
    let report = collect_garbage(&services.db, &services.blobs, Duration::from_secs(3600)).unwrap();
    assert_eq!(report.released_blobs, 0, "{report:?}");
    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(report.released_blobs, 1, "{report:?}");
    assert_eq!(b.read(p("/shared")).unwrap(), b"in both snapshots");
    assert_eq!(
        fs.open_snapshot(first.id).unwrap_err().kind(),
        FsErrorKind::NotFound
    );

    fs.delete_snapshot(second.id).unwrap();
    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(report.released_blobs, 1, "{report:?}");
    assert_eq!(fs.read(p("/shared")).unwrap(), b"rewritten");
    assert!(fs.snapshots().unwrap().is_empty());
}

#[test]
fn restoring_a_snapshot_brings_the_workspace_back_on_every_node() {
    // A store of its own: collection with no grace period.
    let Some(services) = common::fresh_services() else {
        return;
    };
    let services = &services;
    let fs = common::fresh_backend(services);
    fs.create_dir(p("/docs")).unwrap();
    fs.write(p("/docs/a.txt"), b"first a").unwrap();
    fs.write(p("/b.txt"), b"first b").unwrap();
    let taken = fs.create_snapshot("good state").unwrap();
    let good = whole(&fs.open_snapshot(taken.id).unwrap());

    // Another node, which has read the workspace before the restore.
    let other = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        fs.account(),
        "main",
    )
    .unwrap();
    fs.write(p("/docs/a.txt"), b"an agent's mistake").unwrap();
    fs.remove_file(p("/b.txt")).unwrap();
    fs.write(p("/c.txt"), b"an agent's leftover").unwrap();
    fs.rename(p("/docs"), p("/moved")).unwrap();
    assert_ne!(whole(&other), good);

    fs.restore(taken.id).unwrap();
    assert_eq!(whole(&fs), good);
    assert_eq!(whole(&other), good);
    assert_eq!(fs.usage().unwrap().0, taken.bytes);
    // What only the replaced tree named goes; the snapshot stays.
    let report = collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    assert_eq!(report.released_blobs, 2, "{report:?}");
    assert_eq!(fs.snapshots().unwrap(), vec![taken]);
    // The restored workspace works as any other.
    fs.write(p("/docs/a.txt"), b"second a").unwrap();
    fs.rename(p("/b.txt"), p("/docs/b.txt")).unwrap();
    assert_eq!(other.read(p("/docs/a.txt")).unwrap(), b"second a");
    assert_eq!(other.read(p("/docs/b.txt")).unwrap(), b"first b");

    let err = fs
        .restore(anyfs::snapshots::SnapshotId(i64::MAX as u64))
        .unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
}

#[test]
fn a_branch_and_its_workspace_change_apart() {
    let Some(services) = common::services() else {
        return;
    };
    let fs = common::fresh_backend(services);
    fs.set_limit(Some(1 << 20)).unwrap();
    fs.write(p("/a"), b"base").unwrap();
    fs.write(p("/b"), b"base").unwrap();
    let base = fs.create_snapshot("base").unwrap();
    let made = fs.branch(base.id, "try-it").unwrap();
    let branch = fs.open_branch(made.id).unwrap();

    branch.write(p("/a"), b"on the branch").unwrap();
    branch.remove_file(p("/b")).unwrap();
    branch.create_dir(p("/new-on-branch")).unwrap();
    fs.write(p("/a"), b"on the workspace").unwrap();
    fs.write(p("/m"), b"only here").unwrap();

    assert_eq!(fs.read(p("/a")).unwrap(), b"on the workspace");
    assert_eq!(fs.read(p("/b")).unwrap(), b"base");
    assert!(!fs.exists(p("/new-on-branch")).unwrap());
    assert_eq!(branch.read(p("/a")).unwrap(), b"on the branch");
    assert!(!branch.exists(p("/b")).unwrap());
    assert!(!branch.exists(p("/m")).unwrap());
    // The snapshot it started from is as it was.
    let snapshot = fs.open_snapshot(base.id).unwrap();
    assert_eq!(snapshot.read(p("/a")).unwrap(), b"base");
    assert_eq!(snapshot.read(p("/b")).unwrap(), b"base");

    // Opened again by its name, by any node; with the workspace's limit.
    let again = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        fs.account(),
        "try-it",
    )
    .unwrap();
    assert_eq!(whole(&again), whole(&branch));
    assert_eq!(again.usage().unwrap(), (13, Some(1 << 20)));
    // A branch has snapshots of its own; its workspace can open them (a
    // merge does) but does not list them.
    let of_branch = again.create_snapshot("on the branch").unwrap();
    assert_eq!(again.snapshots().unwrap(), vec![of_branch.clone()]);
    assert_eq!(fs.snapshots().unwrap(), vec![base.clone()]);
    assert_eq!(
        fs.open_snapshot(of_branch.id)
            .unwrap()
            .read(p("/a"))
            .unwrap(),
        b"on the branch"
    );
    assert_eq!(fs.branches().unwrap()[0].id, made.id);

    let taken = fs.branch(base.id, "try-it").unwrap_err();
    assert_eq!(taken.kind(), FsErrorKind::AlreadyExists);
    let foreign = common::fresh_backend(services);
    let err = foreign.branch(base.id, "stolen").unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
    for err in [
        foreign.open_snapshot(of_branch.id).unwrap_err(),
        foreign.open_branch(made.id).unwrap_err(),
        foreign.delete_branch(made.id).unwrap_err(),
        foreign.delete_snapshot(base.id).unwrap_err(),
    ] {
        assert_eq!(err.kind(), FsErrorKind::NotFound, "{err}");
    }
    assert!(foreign.branches().unwrap().is_empty());
}

/// Random snapshots, branches, writes and deletions, with garbage
/// collected (no grace period) after every round: every tree still there
/// reads in full as it was. Nothing a snapshot or branch names is freed.
#[test]
fn garbage_collection_never_frees_what_a_snapshot_or_branch_names() {
    // A store of its own: collection with no grace period.
    let Some(services) = common::fresh_services() else {
        return;
    };
    let services = &services;
    let fs = common::fresh_backend(services);
    let collect = || {
        collect_garbage(&services.db, &services.blobs, Duration::ZERO).unwrap();
    };
    anyfs_test::snapshots::random_tree_lifetimes_with(&fs, collect);
    // Deleting every other tree leaves the workspace whole.
    let live = anyfs_test::trees::listing(&fs, p("/"));
    for branch in fs.branches().unwrap() {
        fs.delete_branch(branch.id).unwrap();
    }
    for snapshot in fs.snapshots().unwrap() {
        fs.delete_snapshot(snapshot.id).unwrap();
    }
    collect();
    assert_eq!(anyfs_test::trees::listing(&fs, p("/")), live);
}
