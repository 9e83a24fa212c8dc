//! Snapshots, branches, diff and merge: what every [`FsSnapshots`] backend
//! must do. A snapshot is one moment, read-only, passing the reading tests
//! a workspace passes; branches and their origin never see each other;
//! diffs are exact against a reference computed from the two trees alone;
//! a merge with conflicts applies nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyfs::snapshots::{
    BranchId, Change, FsSnapshots, MergeOptions, MergeOutcome, SnapshotId, Take, TreeRef,
};
use anyfs::{FileType, FsDir, FsErrorKind, FsLink, FsPermissions, FsRead, FsWrite, Permissions};

use crate::trees::{Node, RandomOps, apply_all, assert_diff, listing};
use crate::{assert_err, p};

/// What these tests need of a backend.
pub trait Subject: FsSnapshots + FsRead + FsWrite + FsDir + FsLink + FsPermissions + Sized {}
impl<T: FsSnapshots + FsRead + FsWrite + FsDir + FsLink + FsPermissions + Sized> Subject for T {}

/// A tree with something of every kind: nested directories, an empty
/// file, a file of several chunks, symlinks.
fn fixture<B: FsWrite + FsDir + FsLink + ?Sized>(fs: &B) {
    fs.create_dir_all(p("/src/deep/er")).unwrap();
    fs.write(p("/README.md"), b"# project\n").unwrap();
    fs.write(p("/src/main.rs"), b"fn main() {}\n").unwrap();
    fs.write(p("/src/deep/er/empty"), b"").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs.write(p("/src/deep/big.bin"), &big).unwrap();
    fs.symlink(p("main.rs"), p("/src/link")).unwrap();
    fs.symlink(p("/nowhere"), p("/dangling")).unwrap();
}

fn everything<B: FsRead + FsDir + FsLink + ?Sized>(fs: &B) -> BTreeMap<PathBuf, Node> {
    listing(fs, p("/"))
}

fn changes<B: Subject>(fs: &B, a: TreeRef, b: TreeRef) -> Vec<Change> {
    fs.diff(a, b).unwrap().collect::<Result<_, _>>().unwrap()
}

/// A snapshot keeps the moment it was taken; the workspace goes on.
pub fn a_snapshot_shows_the_moment_it_was_taken<B: Subject>(fs: &B) {
    fixture(fs);
    let before = everything(fs);
    let snap = fs.create_snapshot("before the agent").unwrap();
    assert_eq!(snap.name, "before the agent");
    fs.write(p("/README.md"), b"rewritten").unwrap();
    fs.remove_dir_all(p("/src")).unwrap();
    fs.write(p("/new"), b"new").unwrap();
    let view = fs.open_snapshot(snap.id).unwrap();
    assert_eq!(everything(&view), before);
    assert_eq!(fs.read(p("/README.md")).unwrap(), b"rewritten");
}

/// A snapshot reads as the workspace did: ranges, streams, metadata,
/// listings, links.
pub fn a_snapshot_reads_like_the_workspace<B: Subject>(fs: &B) {
    fixture(fs);
    let snap = fs.create_snapshot("s").unwrap();
    let view = fs.open_snapshot(snap.id).unwrap();
    let big = fs.read(p("/src/deep/big.bin")).unwrap();
    fs.write(p("/src/deep/big.bin"), b"changed").unwrap();

    assert_eq!(view.read(p("/src/deep/big.bin")).unwrap(), big);
    assert_eq!(
        view.read_range(p("/src/deep/big.bin"), 65_530, 100)
            .unwrap(),
        &big[65_530..65_630]
    );
    assert_eq!(
        view.read_range(p("/src/deep/big.bin"), 299_990, 100)
            .unwrap(),
        &big[299_990..]
    );
    let mut streamed = Vec::new();
    view.open_read(p("/src/deep/big.bin"))
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, big);
    let meta = view.metadata(p("/src/deep/big.bin")).unwrap();
    assert_eq!((meta.file_type, meta.len), (FileType::File, 300_000));
    assert_eq!(
        view.metadata(p("/src")).unwrap().file_type,
        FileType::Directory
    );
    assert!(view.exists(p("/src/deep/er/empty")).unwrap());
    assert!(!view.exists(p("/src/nothing")).unwrap());
    assert_err(view.read(p("/src/nothing")), FsErrorKind::NotFound);
    assert_eq!(view.read_link(p("/src/link")).unwrap(), p("main.rs"));
    assert_eq!(
        view.symlink_metadata(p("/dangling")).unwrap().file_type,
        FileType::Symlink
    );
    let mut names: Vec<_> = view
        .read_dir(p("/src"))
        .unwrap()
        .map(|e| e.unwrap().name.into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["deep", "link", "main.rs"]);
}

/// Every way of writing to a snapshot fails with `ReadOnly`, and leaves it
/// as it was.
pub fn a_snapshot_refuses_every_write<B: Subject>(fs: &B) {
    fixture(fs);
    let snap = fs.create_snapshot("s").unwrap();
    let view = fs.open_snapshot(snap.id).unwrap();
    let before = everything(&view);
    let read_only = |result: anyfs::FsResult<()>, what: &str| match result {
        Err(e) if e.kind() == FsErrorKind::ReadOnly => {}
        other => panic!("{what} on a snapshot: {other:?}"),
    };
    let file = p("/src/main.rs");
    read_only(view.write(file, b"x"), "write");
    read_only(view.write(p("/fresh"), b"x"), "write a new file");
    read_only(view.append(file, b"x"), "append");
    read_only(view.write_range(file, 2, b"x"), "write_range");
    read_only(view.write_ranges(file, &[(0, &b"x"[..])]), "write_ranges");
    read_only(view.truncate(file, 1), "truncate");
    read_only(view.remove_file(file), "remove_file");
    read_only(view.rename(file, p("/moved")), "rename");
    read_only(view.copy(file, p("/copied")), "copy");
    read_only(view.create_dir(p("/dir")), "create_dir");
    read_only(view.create_dir_all(p("/dir/sub")), "create_dir_all");
    read_only(view.remove_dir(p("/src/deep/er")), "remove_dir");
    read_only(view.remove_dir_all(p("/src")), "remove_dir_all");
    read_only(view.symlink(p("x"), p("/newlink")), "symlink");
    read_only(view.hard_link(file, p("/hard")), "hard_link");
    let opened = view.open_write(file).and_then(|mut w| {
        w.write_all(b"streamed").unwrap();
        w.commit()
    });
    read_only(opened, "open_write");
    assert_eq!(everything(&view), before);
    assert_eq!(everything(&fs.open_snapshot(snap.id).unwrap()), before);
}

/// Snapshots are listed oldest first with their names; a deleted one is
/// gone, and deleting it again says so.
pub fn snapshots_are_listed_and_deleted<B: Subject>(fs: &B) {
    fs.write(p("/f"), b"1").unwrap();
    let first = fs.create_snapshot("first").unwrap();
    fs.write(p("/f"), b"2").unwrap();
    let second = fs.create_snapshot("second, with ünïcode").unwrap();
    let listed: Vec<(SnapshotId, String)> = fs
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    assert_eq!(
        listed,
        [
            (first.id, "first".to_owned()),
            (second.id, "second, with ünïcode".to_owned())
        ]
    );
    assert_ne!(first.id, second.id);
    fs.delete_snapshot(first.id).unwrap();
    assert_eq!(fs.snapshots().unwrap().len(), 1);
    assert_err(
        fs.open_snapshot(first.id).map(|_| ()),
        FsErrorKind::NotFound,
    );
    assert_err(fs.delete_snapshot(first.id), FsErrorKind::NotFound);
    assert_err(fs.restore(first.id), FsErrorKind::NotFound);
    assert_err(
        fs.open_snapshot(SnapshotId(u64::MAX / 2)).map(|_| ()),
        FsErrorKind::NotFound,
    );
    assert_eq!(
        fs.open_snapshot(second.id).unwrap().read(p("/f")).unwrap(),
        b"2"
    );
    let third = fs.create_snapshot("third").unwrap();
    assert!(third.id != first.id, "a deleted snapshot's id came back");
}

/// Restoring makes the workspace the snapshot again, whatever happened
/// since; the snapshot stays, and the workspace goes on from there.
pub fn restore_brings_the_moment_back<B: Subject>(fs: &B) {
    fixture(fs);
    let before = everything(fs);
    let snap = fs.create_snapshot("s").unwrap();
    fs.write(p("/README.md"), b"gone wrong").unwrap();
    fs.remove_dir_all(p("/src/deep")).unwrap();
    fs.create_dir(p("/build")).unwrap();
    fs.write(p("/build/out.o"), &[1; 100_000]).unwrap();
    fs.rename(p("/src/main.rs"), p("/main.rs")).unwrap();
    fs.set_permissions(p("/src"), Permissions::from_mode(0o700))
        .unwrap();
    fs.restore(snap.id).unwrap();
    assert_eq!(everything(fs), before);
    assert_eq!(everything(&fs.open_snapshot(snap.id).unwrap()), before);
    assert!(changes(fs, TreeRef::Snapshot(snap.id), TreeRef::Live).is_empty());
    fs.write(p("/src/main.rs"), b"after").unwrap();
    assert_eq!(fs.read(p("/src/main.rs")).unwrap(), b"after");
    fs.restore(snap.id).unwrap();
    assert_eq!(everything(fs), before);
}

/// A branch starts as its snapshot; what is written to it never shows in
/// the workspace or the snapshot, and the other way round.
pub fn a_branch_and_its_origin_never_see_each_other<B: Subject>(fs: &B) {
    fixture(fs);
    let before = everything(fs);
    let snap = fs.create_snapshot("s").unwrap();
    let info = fs.branch(snap.id, "try something").unwrap();
    assert_eq!((info.name.as_str(), info.base), ("try something", snap.id));
    let branch = fs.open_branch(info.id).unwrap();
    assert_eq!(everything(&branch), before);

    branch.write(p("/src/main.rs"), b"branch").unwrap();
    branch.append(p("/src/deep/big.bin"), b"tail").unwrap();
    branch.write_range(p("/README.md"), 0, b"##").unwrap();
    branch.remove_file(p("/dangling")).unwrap();
    branch.create_dir(p("/branch-only")).unwrap();
    fs.write(p("/live-only"), b"live").unwrap();
    fs.truncate(p("/src/deep/big.bin"), 10).unwrap();
    fs.remove_file(p("/src/link")).unwrap();

    assert_eq!(branch.read(p("/src/main.rs")).unwrap(), b"branch");
    assert_eq!(fs.read(p("/src/main.rs")).unwrap(), b"fn main() {}\n");
    assert_eq!(fs.read(p("/README.md")).unwrap(), b"# project\n");
    assert_eq!(branch.read(p("/README.md")).unwrap(), b"##project\n");
    assert_eq!(
        branch.metadata(p("/src/deep/big.bin")).unwrap().len,
        300_004
    );
    assert_eq!(fs.metadata(p("/src/deep/big.bin")).unwrap().len, 10);
    assert!(fs.exists(p("/dangling")).unwrap());
    assert!(!fs.exists(p("/branch-only")).unwrap());
    assert!(!branch.exists(p("/live-only")).unwrap());
    assert!(branch.exists(p("/src/link")).unwrap());
    assert_eq!(everything(&fs.open_snapshot(snap.id).unwrap()), before);

    let listed = fs.branches().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].base), (info.id, snap.id));
}

/// A snapshot a branch counts from cannot go; once the branch is deleted
/// it can, and what they shared is still read whole by the rest.
pub fn deleting_trees_keeps_what_others_name<B: Subject>(fs: &B) {
    fixture(fs);
    let a = fs.create_snapshot("a").unwrap();
    let kept = everything(fs);
    let branch = fs.branch(a.id, "b").unwrap();
    assert_err(fs.delete_snapshot(a.id), FsErrorKind::Conflict);
    fs.remove_dir_all(p("/src")).unwrap();
    let b = fs.create_snapshot("b").unwrap();
    fs.delete_branch(branch.id).unwrap();
    assert_err(fs.open_branch(branch.id).map(|_| ()), FsErrorKind::NotFound);
    assert_err(fs.delete_branch(branch.id), FsErrorKind::NotFound);
    assert!(fs.branches().unwrap().is_empty());
    let b_tree = everything(&fs.open_snapshot(b.id).unwrap());
    assert_eq!(everything(&fs.open_snapshot(a.id).unwrap()), kept);
    fs.delete_snapshot(a.id).unwrap();
    assert_eq!(everything(&fs.open_snapshot(b.id).unwrap()), b_tree);
    assert_eq!(everything(fs), b_tree);
}

/// Random changes after a snapshot: the diff both ways, and between a
/// branch and its snapshot, is exactly what comparing the two trees' full
/// listings gives.
pub fn diffs_match_a_reference<B: Subject>(fs: &B) {
    let mut random = RandomOps::new();
    for _ in 0..24 {
        apply_all(fs, &random.next(12));
        let snap = fs.create_snapshot("round").unwrap();
        let at_snap = everything(fs);
        apply_all(fs, &random.next(16));
        let now = everything(fs);
        let (s, live) = (TreeRef::Snapshot(snap.id), TreeRef::Live);
        assert_diff(&changes(fs, s, live), &at_snap, &now);
        assert_diff(&changes(fs, live, s), &now, &at_snap);

        let info = fs.branch(snap.id, "round").unwrap();
        let branch = fs.open_branch(info.id).unwrap();
        apply_all(&branch, &random.next(16));
        let on_branch = everything(&branch);
        assert_diff(
            &changes(fs, s, TreeRef::Branch(info.id)),
            &at_snap,
            &on_branch,
        );
        assert_diff(
            &changes(fs, TreeRef::Branch(info.id), live),
            &on_branch,
            &now,
        );
        fs.delete_branch(info.id).unwrap();
        fs.delete_snapshot(snap.id).unwrap();
    }
}

/// A diff is a stream: a change is reported before the walk is over.
pub fn a_diff_streams<B: Subject>(fs: &B) {
    let snap = fs.create_snapshot("empty").unwrap();
    for i in 0..50 {
        fs.create_dir(&PathBuf::from(format!("/d{i:02}"))).unwrap();
        fs.write(&PathBuf::from(format!("/d{i:02}/f")), b"x")
            .unwrap();
    }
    let mut diff = fs.diff(TreeRef::Snapshot(snap.id), TreeRef::Live).unwrap();
    let first = diff.next().unwrap().unwrap();
    assert_eq!(first.path(), p("/d00"));
    assert_eq!(diff.next().unwrap().unwrap().path(), p("/d00/f"));
    assert_eq!(diff.count(), 98);
}

fn branch_of<B: Subject>(fs: &B, name: &str) -> (SnapshotId, BranchId, B::Branch) {
    let snap = fs.create_snapshot(name).unwrap();
    let info = fs.branch(snap.id, name).unwrap();
    (snap.id, info.id, fs.open_branch(info.id).unwrap())
}

/// Changes on different paths merge: the workspace gets the branch's and
/// keeps its own; merging again finds nothing new.
pub fn a_merge_without_conflicts_applies_the_branch<B: Subject>(fs: &B) {
    fixture(fs);
    let (_, id, branch) = branch_of(fs, "feature");
    branch
        .write(p("/src/main.rs"), b"fn main() { work() }\n")
        .unwrap();
    branch.create_dir(p("/src/new")).unwrap();
    branch.write(p("/src/new/mod.rs"), b"mod new;").unwrap();
    branch.remove_file(p("/dangling")).unwrap();
    branch.remove_dir_all(p("/src/deep/er")).unwrap();
    branch
        .set_permissions(p("/README.md"), Permissions::from_mode(0o600))
        .unwrap();
    branch.symlink(p("new/mod.rs"), p("/src/new-link")).unwrap();
    fs.write(p("/live.txt"), b"mine").unwrap();
    fs.write(p("/src/deep/big.bin"), b"mine too").unwrap();

    let mut expected = everything(&branch);
    let live = everything(fs);
    for path in ["/live.txt", "/src/deep/big.bin"] {
        expected.insert(PathBuf::from(path), live[p(path)].clone());
    }
    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Applied { kept: 0, .. }),
        "{outcome:?}"
    );
    assert_eq!(everything(fs), expected);

    // Merged state is the branch's new base: nothing to merge again, and
    // a later live change to a merged path is no conflict.
    fs.write(p("/src/main.rs"), b"edited after the merge")
        .unwrap();
    let again = fs
        .merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    assert_eq!(
        again,
        MergeOutcome::Applied {
            applied: 0,
            kept: 0
        }
    );
    branch.write(p("/later.txt"), b"later").unwrap();
    fs.merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    assert_eq!(fs.read(p("/later.txt")).unwrap(), b"later");
    assert_eq!(
        fs.read(p("/src/main.rs")).unwrap(),
        b"edited after the merge"
    );
}

/// A path changed on both sides is a conflict, reported per path, and
/// nothing at all is applied until a side is chosen.
pub fn a_merge_with_conflicts_applies_nothing<B: Subject>(fs: &B) {
    fixture(fs);
    let (_, id, branch) = branch_of(fs, "feature");
    branch.write(p("/README.md"), b"branch readme").unwrap();
    branch.write(p("/branch-only.txt"), b"b").unwrap();
    branch.remove_dir_all(p("/src/deep")).unwrap();
    fs.write(p("/README.md"), b"live readme").unwrap();
    fs.write(
        p("/src/deep/er/new.txt"),
        b"live adds under a dir the branch removed",
    )
    .unwrap();
    // The same change on both sides is no conflict.
    branch.write(p("/src/main.rs"), b"same").unwrap();
    fs.write(p("/src/main.rs"), b"same").unwrap();

    let before = everything(fs);
    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    let MergeOutcome::Conflicts(conflicts) = outcome else {
        panic!("no conflicts reported: {outcome:?}");
    };
    let paths: Vec<&Path> = conflicts.iter().map(|c| c.path.as_path()).collect();
    assert_eq!(
        paths,
        [p("/README.md"), p("/src/deep/er/new.txt")],
        "{conflicts:#?}"
    );
    assert_eq!(
        everything(fs),
        before,
        "a merge with conflicts changed something"
    );

    // Keep ours where they clash, take the rest.
    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::taking(Take::Into))
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Applied { kept: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(fs.read(p("/README.md")).unwrap(), b"live readme");
    assert_eq!(fs.read(p("/branch-only.txt")).unwrap(), b"b");
    assert!(fs.exists(p("/src/deep/er/new.txt")).unwrap());
    assert!(!fs.exists(p("/src/deep/big.bin")).unwrap());
}

/// Taking the branch's side for a conflict makes the path the branch's,
/// a removal included.
pub fn a_merge_can_take_the_branch_side<B: Subject>(fs: &B) {
    fixture(fs);
    let (_, id, branch) = branch_of(fs, "feature");
    branch.write(p("/README.md"), b"branch readme").unwrap();
    branch.remove_dir_all(p("/src/deep")).unwrap();
    fs.write(p("/README.md"), b"live readme").unwrap();
    fs.write(p("/src/deep/er/new.txt"), b"live").unwrap();
    let mut options = MergeOptions::taking(Take::Branch);
    options
        .per_path
        .insert(PathBuf::from("/README.md"), Take::Branch);
    let outcome = fs.merge(id, TreeRef::Live, &options).unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Applied { kept: 0, .. }),
        "{outcome:?}"
    );
    assert_eq!(fs.read(p("/README.md")).unwrap(), b"branch readme");
    assert!(!fs.exists(p("/src/deep")).unwrap());
}

/// Random snapshots, branches, writes and deletions, then every tree
/// still there is read in full and equals what it was: nothing one tree
/// names is ever freed with another.
pub fn random_tree_lifetimes_lose_nothing<B: Subject>(fs: &B) {
    random_tree_lifetimes_with(fs, || {});
}

/// [`random_tree_lifetimes_lose_nothing`], calling `after_round` after
/// every round (a backend that frees content later collects it there).
pub fn random_tree_lifetimes_with<B: Subject>(fs: &B, after_round: impl Fn()) {
    let mut random = RandomOps::new();
    let mut snaps: Vec<(SnapshotId, BTreeMap<PathBuf, Node>)> = Vec::new();
    // Each branch with what it held after its last change.
    let mut branches: Vec<(BranchId, B::Branch, BTreeMap<PathBuf, Node>)> = Vec::new();
    for round in 0..40u32 {
        let pick = (round * 7 + 3) as usize;
        match round % 5 {
            0 | 3 => {
                let s = fs.create_snapshot(&format!("s{round}")).unwrap();
                snaps.push((s.id, everything(fs)));
            }
            1 if !snaps.is_empty() => {
                let (from, _) = snaps[pick % snaps.len()];
                let info = fs.branch(from, &format!("b{round}")).unwrap();
                let branch = fs.open_branch(info.id).unwrap();
                let held = everything(&branch);
                branches.push((info.id, branch, held));
            }
            // Every other round of deletions: some branches stay.
            2 if !branches.is_empty() && round % 10 == 2 => {
                let (id, ..) = branches.remove(pick % branches.len());
                fs.delete_branch(id).unwrap();
            }
            4 if !snaps.is_empty() => {
                let (id, _) = snaps[pick % snaps.len()];
                match fs.delete_snapshot(id) {
                    Ok(()) => snaps.retain(|(s, _)| *s != id),
                    Err(e) => assert_eq!(e.kind(), FsErrorKind::Conflict, "{e}"),
                }
            }
            _ => {}
        }
        apply_all(fs, &random.next(10));
        let n = branches.len().max(1);
        if let Some((_, branch, held)) = branches.get_mut(pick % n) {
            apply_all(branch, &random.next(6));
            *held = everything(branch);
        }
        after_round();
    }
    assert!(!snaps.is_empty() && !branches.is_empty());
    for (id, expected) in &snaps {
        assert_eq!(&everything(&fs.open_snapshot(*id).unwrap()), expected);
    }
    for (id, _, held) in &branches {
        assert_eq!(&everything(&fs.open_branch(*id).unwrap()), held);
    }
}

/// Snapshots taken while another thread writes are each one moment: what
/// the writer had done after some number of its writes, no fewer than it
/// had finished when the snapshot was asked for, and no more than it had
/// finished when the snapshot returned, plus the one then in flight.
pub fn a_snapshot_under_concurrent_writes_is_one_moment<B: Subject>(fs: &B) {
    fs.create_dir(p("/w")).unwrap();
    fs.write(p("/w/mode"), b"").unwrap();
    let start = everything(fs);
    fs.remove_file(p("/w/mode")).unwrap();
    let done = AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) && i < 400 {
                // Each write leaves the tree as the model after `i + 1`.
                fs.write(
                    &PathBuf::from(format!("/w/{:03}", i % 40)),
                    i.to_string().as_bytes(),
                )
                .unwrap();
                i += 1;
                done.store(i, Ordering::Release);
            }
        });
        for round in 0..8 {
            let low = done.load(Ordering::Acquire);
            let snap = fs.create_snapshot(&format!("r{round}")).unwrap();
            let high = done.load(Ordering::Acquire);
            let seen = everything(&fs.open_snapshot(snap.id).unwrap());
            // The write in flight when the snapshot returned may be in it.
            let matches = (low..=high + 1).any(|k| seen == model_after(&start, k));
            assert!(
                matches,
                "snapshot {round} is no moment between write {low} and {high}: {seen:#?}"
            );
        }
        stop.store(true, Ordering::Release);
    });
}

/// The writer's tree after `k` writes; `start` holds `/w` and a file
/// `/w/mode`, to learn the modes new nodes get.
fn model_after(start: &BTreeMap<PathBuf, Node>, k: u64) -> BTreeMap<PathBuf, Node> {
    let Node::File(_, mode) = start[p("/w/mode")] else {
        panic!("/w/mode is a file");
    };
    let mut out = BTreeMap::new();
    out.insert(PathBuf::from("/w"), start[p("/w")].clone());
    for i in 0..k {
        out.insert(
            PathBuf::from(format!("/w/{:03}", i % 40)),
            Node::File(i.to_string().into_bytes(), mode),
        );
    }
    out
}

/// A directory the branch turned into a file, while `into` added a file
/// in it: a conflict; keeping `into`'s side keeps the directory and what
/// was added in it.
pub fn keeping_a_path_keeps_the_directory_it_is_in<B: Subject>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/d/old"), b"old").unwrap();
    let (_, id, branch) = branch_of(fs, "replace");
    branch.remove_dir_all(p("/d")).unwrap();
    branch.write(p("/d"), b"now a file").unwrap();
    fs.write(p("/d/new"), b"added meanwhile").unwrap();

    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    let MergeOutcome::Conflicts(conflicts) = outcome else {
        panic!("no conflict: {outcome:?}");
    };
    assert!(
        conflicts.iter().any(|c| c.path == p("/d/new")),
        "{conflicts:#?}"
    );
    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::taking(Take::Into))
        .unwrap();
    assert!(
        matches!(outcome, MergeOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(fs.read(p("/d/new")).unwrap(), b"added meanwhile");
}

/// The workspace turned a directory into a file while the branch added a
/// file in it: a conflict, not a failure half way.
pub fn a_directory_made_a_file_meanwhile_is_a_conflict<B: Subject>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    let (_, id, branch) = branch_of(fs, "add");
    branch.write(p("/d/x"), b"branch").unwrap();
    fs.remove_dir(p("/d")).unwrap();
    fs.write(p("/d"), b"a file now").unwrap();
    let before = everything(fs);
    let outcome = fs
        .merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    let MergeOutcome::Conflicts(conflicts) = outcome else {
        panic!("no conflict: {outcome:?}");
    };
    assert_eq!(conflicts[0].path, p("/d/x"), "{conflicts:#?}");
    assert_eq!(everything(fs), before);
}

/// A branch starts only from a snapshot the workspace lists: the snapshot
/// a merge left as another branch's base is not one.
pub fn a_branch_starts_only_from_a_listed_snapshot<B: Subject>(fs: &B) {
    fs.write(p("/f"), b"1").unwrap();
    let (_, id, branch) = branch_of(fs, "first");
    branch.write(p("/g"), b"2").unwrap();
    fs.merge(id, TreeRef::Live, &MergeOptions::default())
        .unwrap();
    let base = fs.branches().unwrap()[0].base;
    assert!(fs.snapshots().unwrap().iter().all(|s| s.id != base));
    assert_err(fs.branch(base, "second").map(|_| ()), FsErrorKind::NotFound);
}
