//! Whole trees as values, for tests that compare trees: a listing of every
//! node with its content, random changes to make to a tree, and the
//! changes a diff must report between two listings, computed from the two
//! listings alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyfs::snapshots::Change;
use anyfs::{FileType, FsDir, FsLink, FsPermissions, FsRead, FsWrite, Permissions};

/// One node of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A file: its bytes and permission bits.
    File(Vec<u8>, u32),
    /// A directory and its permission bits.
    Dir(u32),
    /// A symlink and its target.
    Link(PathBuf),
}

impl Node {
    fn kind(&self) -> FileType {
        match self {
            Node::File(..) => FileType::File,
            Node::Dir(_) => FileType::Directory,
            Node::Link(_) => FileType::Symlink,
        }
    }
}

/// Every node of a tree (the root excluded), by path, with its content.
pub fn listing(
    fs: &(impl FsRead + FsDir + FsLink + ?Sized),
    dir: &Path,
) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs.read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = fs.metadata(&entry.path).unwrap();
            let mode = meta.permissions.mode() & 0o7777;
            let node = match meta.file_type {
                FileType::File => Node::File(fs.read(&entry.path).unwrap(), mode),
                FileType::Directory => {
                    todo.push(entry.path.clone());
                    Node::Dir(mode)
                }
                FileType::Symlink => Node::Link(fs.read_link(&entry.path).unwrap()),
            };
            out.insert(entry.path, node);
        }
    }
    out
}

/// The changes from `a` to `b` as `(what, path)` pairs (`added`,
/// `deleted`, `modified`), judged by content: what a diff of the two trees
/// must report.
pub fn expected_changes(
    a: &BTreeMap<PathBuf, Node>,
    b: &BTreeMap<PathBuf, Node>,
) -> BTreeSet<(&'static str, PathBuf)> {
    let mut out = BTreeSet::new();
    for (path, old) in a {
        match b.get(path) {
            None => {
                out.insert(("deleted", path.clone()));
            }
            Some(new) if new.kind() != old.kind() => {
                out.insert(("deleted", path.clone()));
                out.insert(("added", path.clone()));
            }
            Some(new) if new != old => {
                out.insert(("modified", path.clone()));
            }
            Some(_) => {}
        }
    }
    for path in b.keys() {
        if !a.contains_key(path) {
            out.insert(("added", path.clone()));
        }
    }
    out
}

/// Checks a diff's changes against [`expected_changes`], and their order:
/// an added directory comes before what it holds, a deleted one after.
#[track_caller]
pub fn assert_diff(changes: &[Change], a: &BTreeMap<PathBuf, Node>, b: &BTreeMap<PathBuf, Node>) {
    let got: BTreeSet<(&'static str, PathBuf)> = changes
        .iter()
        .map(|c| (c.kind(), c.path().to_path_buf()))
        .collect();
    assert_eq!(
        got.len(),
        changes.len(),
        "a change reported twice: {changes:#?}"
    );
    assert_eq!(got, expected_changes(a, b), "diff from {a:#?}\nto {b:#?}");
    for (i, change) in changes.iter().enumerate() {
        let parent = change.path().parent().unwrap();
        let position = |kind: &str, path: &Path| {
            changes
                .iter()
                .position(|c| c.kind() == kind && c.path() == path)
        };
        match change {
            Change::Added { .. } => {
                if let Some(at) = position("added", parent) {
                    assert!(
                        at < i,
                        "{} came before its directory",
                        change.path().display()
                    );
                }
            }
            Change::Deleted { .. } => {
                if let Some(at) = position("deleted", parent) {
                    assert!(
                        at > i,
                        "{} came after its directory",
                        change.path().display()
                    );
                }
            }
            _ => {}
        }
    }
}

/// The paths random changes are made at: a small tree, so that changes
/// meet.
pub const PATHS: &[&str] = &[
    "/a", "/b", "/d", "/d/a", "/d/b", "/d/e", "/d/e/a", "/d/e/b", "/f", "/f/a",
];

/// One random change to a tree.
#[derive(Clone, Debug)]
pub enum Op {
    /// Writes new content (never the same twice) to a file.
    Write(usize),
    /// Appends to a file.
    Append(usize),
    /// Makes a directory.
    Mkdir(usize),
    /// Removes a file, link or whole directory.
    Remove(usize),
    /// Renames one path to another.
    Rename(usize, usize),
    /// Lets others write (once: a mode is never set back).
    Chmod(usize),
    /// Makes a symlink to one of the paths.
    Symlink(usize, usize),
}

/// A random change.
pub fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let n = PATHS.len();
    prop_oneof![
        4 => (0..n).prop_map(Op::Write),
        1 => (0..n).prop_map(Op::Append),
        3 => (0..n).prop_map(Op::Mkdir),
        2 => (0..n).prop_map(Op::Remove),
        2 => (0..n, 0..n).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..n).prop_map(Op::Chmod),
        1 => (0..n, 0..n).prop_map(|(a, b)| Op::Symlink(a, b)),
    ]
}

/// Makes the change, if it applies to the tree as it is (a change that
/// does not, an error, changes nothing). `stamp` makes written content
/// unique.
pub fn apply<B: FsRead + FsWrite + FsDir + FsLink + FsPermissions + ?Sized>(
    fs: &B,
    op: &Op,
    stamp: u64,
) {
    let at = |i: usize| Path::new(PATHS[i]);
    let _ = match op {
        Op::Write(i) => fs.write(at(*i), format!("{stamp} at {}", PATHS[*i]).as_bytes()),
        Op::Append(i) => fs.append(at(*i), format!("+{stamp}").as_bytes()),
        Op::Mkdir(i) => fs.create_dir(at(*i)),
        Op::Remove(i) => match fs.metadata(at(*i)).map(|m| m.file_type) {
            Ok(FileType::Directory) => fs.remove_dir_all(at(*i)),
            Ok(_) => fs.remove_file(at(*i)),
            Err(e) => Err(e),
        },
        Op::Rename(a, b) => fs.rename(at(*a), at(*b)),
        // One way only: a mode set back to what it was would be no change
        // a diff could see, yet one a test would expect.
        Op::Chmod(i) => fs.metadata(at(*i)).and_then(|m| {
            let mode = m.permissions.mode();
            if m.file_type == FileType::Symlink || mode & 0o002 != 0 {
                return Ok(());
            }
            fs.set_permissions(at(*i), Permissions::from_mode(mode | 0o002))
        }),
        Op::Symlink(a, b) => fs.symlink(Path::new(&format!("{}?{stamp}", PATHS[*b])), at(*a)),
    };
}

/// Random changes from a fixed seed: the same sequence on every run.
pub struct RandomOps(proptest::test_runner::TestRunner);

impl std::fmt::Debug for RandomOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomOps").finish_non_exhaustive()
    }
}

impl Default for RandomOps {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomOps {
    /// A generator with the fixed seed.
    pub fn new() -> Self {
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        Self(TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        ))
    }

    /// Between 1 and `most - 1` random changes.
    pub fn next(&mut self, most: usize) -> Vec<Op> {
        use proptest::strategy::{Strategy, ValueTree};
        proptest::collection::vec(op(), 1..most.max(2))
            .new_tree(&mut self.0)
            .expect("a strategy of plain values never gives up")
            .current()
    }
}

static STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Makes every change of `ops` that applies, each writing content never
/// written before.
pub fn apply_all<B: FsRead + FsWrite + FsDir + FsLink + FsPermissions + ?Sized>(
    fs: &B,
    ops: &[Op],
) {
    for op in ops {
        apply(
            fs,
            op,
            STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
    }
}
