//! The overlay: a read-only base under a writable workspace. The merged
//! view behaves like a copy of the base that was changed (a model-based
//! test against a plain copy); the base is never written, by any
//! operation; changes list and apply, refusing what changed in the target meanwhile;
//! the journal brings everything back after a reopen.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::overlay::Overlay;
use anyfs::{
    FsDir, FsErrorKind, FsInode, FsLink, FsPermissions, FsRead, FsWrite, MemoryBackend,
    Permissions, ReadOnly,
};
use anyfs_test::trees::{Node, RandomOps, apply_all, expected_changes, listing};

fn p(path: &str) -> &Path {
    Path::new(path)
}

type Over = Overlay<ReadOnly<MemoryBackend>, MemoryBackend>;

/// A base with something of every kind.
fn base() -> MemoryBackend {
    let base = MemoryBackend::new();
    base.create_dir_all(p("/src/deep")).unwrap();
    base.write(p("/README.md"), b"# repo\n").unwrap();
    base.write(p("/src/main.rs"), b"fn main() {}\n").unwrap();
    base.write(p("/src/deep/data.bin"), &vec![7u8; 300_000])
        .unwrap();
    base.symlink(p("main.rs"), p("/src/link")).unwrap();
    base
}

fn over(base: &MemoryBackend, upper: &MemoryBackend) -> Over {
    Overlay::open(ReadOnly::new(base.clone()), upper.clone()).unwrap()
}

#[test]
fn the_merged_view_shows_the_base_with_the_changes_on_top() {
    let base = base();
    let before = listing(&base, p("/"));
    let upper = MemoryBackend::new();
    let fs = over(&base, &upper);
    assert_eq!(listing(&fs, p("/")), before);

    fs.write(p("/README.md"), b"# changed\n").unwrap();
    fs.remove_file(p("/src/main.rs")).unwrap();
    fs.create_dir(p("/build")).unwrap();
    fs.write(p("/build/out"), b"o").unwrap();
    fs.rename(p("/src/deep"), p("/moved")).unwrap();
    fs.set_permissions(p("/src"), Permissions::from_mode(0o700))
        .unwrap();

    assert_eq!(fs.read(p("/README.md")).unwrap(), b"# changed\n");
    assert!(!fs.exists(p("/src/main.rs")).unwrap());
    assert!(!fs.exists(p("/src/deep")).unwrap());
    assert_eq!(fs.read(p("/moved/data.bin")).unwrap(), vec![7u8; 300_000]);
    assert_eq!(fs.read_link(p("/src/link")).unwrap(), p("main.rs"));
    let names: Vec<String> = fs
        .read_dir(p("/"))
        .unwrap()
        .map(|e| e.unwrap().name.into_string().unwrap())
        .collect();
    assert_eq!(names, ["README.md", "build", "moved", "src"]);
    assert_eq!(listing(&base, p("/")), before, "the base changed");
}

#[test]
fn random_changes_match_a_plain_copy_and_never_reach_the_base() {
    let mut random = RandomOps::new();
    for round in 0..300 {
        let base = MemoryBackend::new();
        apply_all(&base, &random.next(14));
        let original = listing(&base, p("/"));
        let copy = base.snapshot();
        let upper = MemoryBackend::new();
        let fs = over(&base, &upper);
        let ops = random.next(24);
        for (i, op) in ops.iter().enumerate() {
            // The same content on both sides.
            let stamp = (round * 1000 + i) as u64;
            anyfs_test::trees::apply(&fs, op, stamp);
            anyfs_test::trees::apply(&copy, op, stamp);
            assert_eq!(
                listing(&fs, p("/")),
                listing(&copy, p("/")),
                "round {round}, after op {i} {op:?} of {ops:?}"
            );
        }
        assert_eq!(
            listing(&base, p("/")),
            original,
            "round {round}: the base changed"
        );
        // Reopened from its journal, it is the same.
        let again = over(&base, &upper);
        assert_eq!(
            listing(&again, p("/")),
            listing(&copy, p("/")),
            "round {round}"
        );
        // And what it lists as changed is what comparing the trees gives.
        let changes: Vec<_> = fs.changes().collect::<Result<_, _>>().unwrap();
        let got: std::collections::BTreeSet<_> = changes
            .iter()
            .map(|c| (c.kind(), c.path().to_path_buf()))
            .collect();
        assert_eq!(
            got,
            expected_changes(&original, &listing(&copy, p("/"))),
            "round {round}"
        );
    }
}

#[test]
fn no_operation_writes_the_base() {
    let base = base();
    let before = listing(&base, p("/"));
    let upper = MemoryBackend::new();
    let fs = over(&base, &upper);
    fs.write_range(p("/README.md"), 2, b"X").unwrap();
    fs.truncate(p("/src/main.rs"), 3).unwrap();
    fs.append(p("/src/deep/data.bin"), b"tail").unwrap();
    fs.set_permissions(p("/src/deep/data.bin"), Permissions::from_mode(0o600))
        .unwrap();
    fs.hard_link(p("/README.md"), p("/hard")).unwrap();
    fs.rename(p("/src/link"), p("/link2")).unwrap();
    fs.copy(p("/src/main.rs"), p("/copy.rs")).unwrap();
    let mut w = fs.open_write(p("/src/main.rs")).unwrap();
    std::io::Write::write_all(&mut w, b"streamed").unwrap();
    w.commit().unwrap();
    fs.remove_dir_all(p("/src")).unwrap();
    assert_eq!(listing(&base, p("/")), before);
    assert!(!fs.exists(p("/src")).unwrap());
    assert_eq!(fs.read(p("/hard")).unwrap(), b"# Xepo\n");
    // The overlay's records are neither shown nor writable.
    assert!(!fs.exists(p("/.anyfs-overlay")).unwrap());
    assert_eq!(
        fs.write(p("/.anyfs-overlay/journal"), b"")
            .unwrap_err()
            .kind(),
        FsErrorKind::AccessDenied
    );
}

#[test]
fn nodes_keep_their_inode_numbers_when_copied_up() {
    let base = base();
    let upper = MemoryBackend::new();
    let fs = over(&base, &upper);
    let before = fs.path_to_inode(p("/src/main.rs")).unwrap();
    let dir = fs.path_to_inode(p("/src")).unwrap();
    fs.set_permissions(p("/src/main.rs"), Permissions::from_mode(0o600))
        .unwrap();
    fs.write(p("/src/new.rs"), b"new").unwrap();
    assert_eq!(fs.path_to_inode(p("/src/main.rs")).unwrap(), before);
    assert_eq!(fs.path_to_inode(p("/src")).unwrap(), dir);
    assert_eq!(fs.metadata_by_inode(before).unwrap().len, 13);
    assert_eq!(fs.inode_to_path(before).unwrap(), p("/src/main.rs"));
    fs.rename(p("/src/main.rs"), p("/main.rs")).unwrap();
    assert_eq!(fs.inode_to_path(before).unwrap(), p("/main.rs"));
    assert_eq!(
        fs.lookup(fs.path_to_inode(p("/")).unwrap(), "main.rs".as_ref())
            .unwrap(),
        before
    );
}

#[test]
fn changes_apply_to_the_target_refusing_what_changed_there() {
    let target = base();
    let upper = MemoryBackend::new();
    let fs = over(&target, &upper);
    fs.write(p("/README.md"), b"# from the overlay\n").unwrap();
    fs.write(p("/src/main.rs"), b"fn main() { changed() }\n")
        .unwrap();
    fs.remove_dir_all(p("/src/deep")).unwrap();
    fs.write(p("/new/file.txt"), b"new").unwrap_err();
    fs.create_dir(p("/new")).unwrap();
    fs.write(p("/new/file.txt"), b"new").unwrap();
    // Meanwhile, someone changes the target where the overlay did too.
    target
        .write(p("/src/main.rs"), b"fn main() { theirs() }\n")
        .unwrap();

    let expected = {
        let mut l = listing(&fs, p("/"));
        l.insert(
            p("/src/main.rs").to_path_buf(),
            Node::File(b"fn main() { theirs() }\n".to_vec(), 0o644),
        );
        l
    };
    let applied = fs.apply(&target).unwrap();
    assert_eq!(applied.conflicts, [p("/src/main.rs").to_path_buf()]);
    assert_eq!(
        target.read(p("/src/main.rs")).unwrap(),
        b"fn main() { theirs() }\n"
    );
    assert_eq!(
        target.read(p("/README.md")).unwrap(),
        b"# from the overlay\n"
    );
    assert!(!target.exists(p("/src/deep")).unwrap());
    assert_eq!(target.read(p("/new/file.txt")).unwrap(), b"new");
    assert_eq!(listing(&target, p("/")), expected);
    // Applied paths are the base now: applying again writes nothing new.
    let again = fs.apply(&target).unwrap();
    assert_eq!(again.written, 0, "{again:?}");
}
