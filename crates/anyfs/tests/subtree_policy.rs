//! An operation is judged by every path it affects: a policy that hides or
//! protects a path cannot be talked around by renaming, removing or copying
//! a directory above it. The named cases first, then a model-based attack:
//! random trees, random rules, random operations by the restricted caller.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FileType, FsDir, FsErrorKind, FsLink, FsRead, MemoryBackend, PathFilter,
    PathFilterLayer, Permissions, ReadOnly, ReadOnlyLayer,
};
use proptest::prelude::*;

/// The caller's view: a deny filter outside read-only globs, as the
/// service stacks an agent.
type Agent = FileStorage<PathFilter<ReadOnly<MemoryBackend>>>;

fn agent(backend: &MemoryBackend, deny: &[&str], read_only: &[&str]) -> Agent {
    let mut filter = PathFilterLayer::builder().allow("/**");
    for rule in deny {
        filter = filter.deny(*rule);
    }
    FileStorage::new(
        filter.build().unwrap().layer(
            ReadOnlyLayer::paths(read_only.iter().copied())
                .unwrap()
                .layer(backend.clone()),
        ),
    )
}

fn owner_tree(files: &[(&str, &str)]) -> MemoryBackend {
    let backend = MemoryBackend::new();
    let owner = FileStorage::new(backend.clone());
    for (path, content) in files {
        if let Some((parent, _)) = anyfs::path::split_parent(Path::new(path)) {
            owner.create_dir_all(&parent).unwrap();
        }
        owner.write(path, content).unwrap();
    }
    backend
}

fn read(backend: &MemoryBackend, path: &str) -> Option<String> {
    FileStorage::new(backend.clone()).read_to_string(path).ok()
}

#[test]
fn moving_or_removing_a_parent_of_a_denied_path_is_refused() {
    let backend = owner_tree(&[
        ("/home/alice/private/deep.txt", "salary"),
        ("/home/alice/notes.txt", "notes"),
    ]);
    let fs = agent(&backend, &["/home/alice/private/**"], &[]);
    assert_eq!(
        fs.read("/home/alice/private/deep.txt").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    for (from, to) in [("/home", "/h2"), ("/home/alice", "/home/bob")] {
        let err = fs.rename(from, to).unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::AccessDenied, "{from}");
        // Named after what was asked for, not after what is hidden.
        assert_eq!(err.path(), Path::new(from));
        assert!(!err.to_string().contains("private"), "{err}");
    }
    for dir in ["/home", "/home/alice"] {
        assert_eq!(
            fs.remove_dir_all(dir).unwrap_err().kind(),
            FsErrorKind::AccessDenied
        );
    }
    assert_eq!(
        read(&backend, "/home/alice/private/deep.txt").as_deref(),
        Some("salary")
    );
    // Nothing half done: the visible file is still there too.
    assert_eq!(
        read(&backend, "/home/alice/notes.txt").as_deref(),
        Some("notes")
    );
    // A directory with nothing hidden under it moves as before.
    fs.create_dir_all("/home/carol/x").unwrap();
    fs.rename("/home/carol", "/carol").unwrap();
    fs.remove_dir_all("/carol").unwrap();
}

#[test]
fn a_glob_on_names_protects_through_every_parent() {
    let backend = owner_tree(&[("/data/site.key", "KEY"), ("/data/readme", "r")]);
    let fs = agent(&backend, &["/data/*.key"], &[]);
    assert_eq!(
        fs.rename("/data", "/d2").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    // Nor can a visible tree be moved so that its files become hidden.
    fs.create_dir_all("/stuff").unwrap();
    fs.write("/stuff/mine.key", "agent's").unwrap();
    let fs2 = agent(&backend, &["/data/*.key", "/vault/*.key"], &[]);
    assert_eq!(
        fs2.rename("/stuff", "/vault").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(read(&backend, "/data/site.key").as_deref(), Some("KEY"));
}

#[test]
fn a_character_class_that_matches_a_slash_protects_through_parents() {
    let backend = owner_tree(&[("/hr/salaries", "CEO 1,000,000")]);
    let fs = agent(&backend, &["/hr[!x]salaries"], &[]);
    assert_eq!(
        fs.read("/hr/salaries").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.rename("/hr", "/x").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.remove_dir_all("/hr").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    let fs = agent(&backend, &[], &["/hr[!x]salaries"]);
    assert_eq!(
        fs.rename("/hr", "/x").unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(
        read(&backend, "/hr/salaries").as_deref(),
        Some("CEO 1,000,000")
    );
}

#[test]
fn removing_a_tree_with_a_denied_folder_removes_nothing() {
    let backend = owner_tree(&[
        ("/project/secrets/creds.txt", "creds"),
        ("/project/src/main.rs", "fn main() {}"),
    ]);
    let fs = agent(&backend, &["**/secrets/**"], &[]);
    assert_eq!(
        fs.remove_dir_all("/project").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        read(&backend, "/project/secrets/creds.txt").as_deref(),
        Some("creds")
    );
    assert_eq!(
        read(&backend, "/project/src/main.rs").as_deref(),
        Some("fn main() {}")
    );
    fs.remove_dir_all("/project/src").unwrap();
}

#[test]
fn read_only_paths_cannot_be_moved_away_changed_and_moved_back() {
    let backend = owner_tree(&[("/project/config.json", "{\"safe\":true}")]);
    let fs = agent(&backend, &[], &["/project/config.json", "/skills/**"]);
    assert_eq!(
        fs.rename("/project", "/p2").unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(
        fs.remove_dir_all("/project").unwrap_err().kind(),
        FsErrorKind::ReadOnly
    );
    // A hard link would be a second, writable name for it.
    assert_eq!(
        fs.hard_link("/project/config.json", "/alias.json")
            .unwrap_err()
            .kind(),
        FsErrorKind::ReadOnly
    );
    // Reading it, or copying it elsewhere, is not a change to it.
    fs.copy("/project/config.json", "/copy.json").unwrap();
    fs.write("/copy.json", "changed copy").unwrap();
    // Nor can something be moved or copied over it.
    assert_eq!(
        fs.copy("/copy.json", "/project/config.json")
            .unwrap_err()
            .kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(
        fs.rename("/copy.json", "/project/config.json")
            .unwrap_err()
            .kind(),
        FsErrorKind::ReadOnly
    );
    assert_eq!(
        read(&backend, "/project/config.json").as_deref(),
        Some("{\"safe\":true}")
    );
}

// ------------------------------------------------------------ the model

const NAMES: [&str; 5] = ["a", "b", "secrets", ".env", "k.key"];

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(NAMES.to_vec())
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..5).prop_map(|names| format!("/{}", names.join("/")))
}

/// A path as a caller may write it: sometimes with `..` or `.`.
fn asked_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => path(),
        1 => (path(), path()).prop_map(|(a, b)| format!("{a}/..{b}")),
        1 => path().prop_map(|p| format!("{p}/.")),
    ]
}

fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(name(), 1..4).prop_map(|v| format!("/{}/**", v.join("/"))),
        name().prop_map(|n| format!("**/{n}/**")),
        name().prop_map(|n| format!("**/{n}")),
        (name(), name()).prop_map(|(a, b)| format!("/{a}/*/{b}")),
        prop::collection::vec(name(), 0..3)
            .prop_map(|v| format!("/{}/*.key", v.join("/")).replace("//", "/")),
        prop::collection::vec(name(), 2..5).prop_map(|v| format!("/{}", v.join("/"))),
        // A class matches `/` too: `/a[!x]b` matches `/a/b`.
        (name(), name()).prop_map(|(a, b)| format!("/{a}[!x]{b}")),
        (name(), name()).prop_map(|(a, b)| format!("/{a}/*[!q]{b}")),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Read(String),
    ReadDir(String),
    Metadata(String),
    Write(String),
    Append(String),
    WriteRange(String),
    Truncate(String),
    RemoveFile(String),
    RemoveDir(String),
    RemoveDirAll(String),
    Rename(String, String),
    Copy(String, String),
    CreateDirAll(String),
    Symlink(String, String),
    HardLink(String, String),
    SetPermissions(String),
    ReadLink(String),
    Canonicalize(String),
}

fn op() -> impl Strategy<Value = Op> {
    let p = asked_path;
    prop_oneof![
        1 => p().prop_map(Op::Read),
        1 => p().prop_map(Op::ReadDir),
        1 => p().prop_map(Op::Metadata),
        1 => p().prop_map(Op::Write),
        1 => p().prop_map(Op::Append),
        1 => p().prop_map(Op::WriteRange),
        1 => p().prop_map(Op::Truncate),
        1 => p().prop_map(Op::RemoveFile),
        1 => p().prop_map(Op::RemoveDir),
        2 => p().prop_map(Op::RemoveDirAll),
        3 => (p(), p()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (p(), p()).prop_map(|(a, b)| Op::Copy(a, b)),
        1 => p().prop_map(Op::CreateDirAll),
        2 => (p(), p()).prop_map(|(a, b)| Op::Symlink(a, b)),
        1 => (p(), p()).prop_map(|(a, b)| Op::HardLink(a, b)),
        1 => p().prop_map(Op::SetPermissions),
        1 => p().prop_map(Op::ReadLink),
        1 => p().prop_map(Op::Canonicalize),
    ]
}

/// What the owner sees: every path with its kind and content (or target).
fn snapshot(backend: &MemoryBackend) -> BTreeMap<PathBuf, (FileType, Vec<u8>)> {
    let mut seen = BTreeMap::new();
    let mut dirs = vec![PathBuf::from("/")];
    while let Some(dir) = dirs.pop() {
        for entry in backend.read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let content = match entry.file_type {
                FileType::File => backend.read(&entry.path).unwrap(),
                FileType::Symlink => backend
                    .read_link(&entry.path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
                FileType::Directory => {
                    dirs.push(entry.path.clone());
                    Vec::new()
                }
            };
            seen.insert(entry.path, (entry.file_type, content));
        }
    }
    seen
}

/// Runs one operation; returns every piece of data it gave back.
fn run(fs: &Agent, op: &Op) -> Vec<Vec<u8>> {
    let bytes = |p: PathBuf| vec![p.into_os_string().into_encoded_bytes()];
    let data = b"agent data".as_slice();
    let result: Result<Vec<Vec<u8>>, anyfs::FsError> = match op {
        Op::Read(p) => fs.read(p).map(|d| vec![d]),
        Op::ReadDir(p) => fs.read_dir(p).map(|listing| {
            listing
                .filter_map(Result::ok)
                .map(|e| e.path.into_os_string().into_encoded_bytes())
                .collect()
        }),
        Op::Metadata(p) => fs.metadata(p).map(|m| vec![m.len.to_string().into_bytes()]),
        Op::Write(p) => fs.write(p, data).map(|()| vec![]),
        Op::Append(p) => fs.append(p, data).map(|()| vec![]),
        Op::WriteRange(p) => fs.write_range(p, 2, data).map(|()| vec![]),
        Op::Truncate(p) => fs.truncate(p, 1).map(|()| vec![]),
        Op::RemoveFile(p) => fs.remove_file(p).map(|()| vec![]),
        Op::RemoveDir(p) => fs.remove_dir(p).map(|()| vec![]),
        Op::RemoveDirAll(p) => fs.remove_dir_all(p).map(|()| vec![]),
        Op::Rename(a, b) => fs.rename(a, b).map(|()| vec![]),
        Op::Copy(a, b) => fs.copy(a, b).map(|()| vec![]),
        Op::CreateDirAll(p) => fs.create_dir_all(p).map(|()| vec![]),
        Op::Symlink(target, link) => fs.symlink(target, link).map(|()| vec![]),
        Op::HardLink(a, b) => fs.hard_link(a, b).map(|()| vec![]),
        Op::SetPermissions(p) => fs
            .set_permissions(p, Permissions::from_mode(0o600))
            .map(|()| vec![]),
        // A link's target is data the caller may have written itself: not
        // taken for a path it was shown.
        Op::ReadLink(p) => fs.read_link(p).map(|t| {
            let mut data = b"target:".to_vec();
            data.extend(t.into_os_string().into_encoded_bytes());
            vec![data]
        }),
        Op::Canonicalize(p) => fs.canonicalize(p).map(bytes),
    };
    result.unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ANYFS_POLICY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    /// After any sequence of operations by the restricted caller, every
    /// path its rules hide or protect is exactly as it was, no hidden or
    /// protected path appeared or went away, and no answer ever carried a
    /// hidden file's content or a hidden path's name.
    #[test]
    fn nothing_hidden_or_protected_changes_or_shows(
        files in prop::collection::vec(path(), 1..10),
        deny in prop::collection::vec(rule(), 1..3),
        read_only in prop::collection::vec(rule(), 0..3),
        ops in prop::collection::vec(op(), 1..25),
    ) {
        let backend = MemoryBackend::new();
        let owner = FileStorage::new(backend.clone());
        for (i, file) in files.iter().enumerate() {
            if let Some((parent, _)) = anyfs::path::split_parent(Path::new(file)) {
                // A prefix may already be a file: then this one is skipped.
                if owner.create_dir_all(&parent).is_err() {
                    continue;
                }
            }
            let _ = owner.write(file, format!("SECRET-{i}-{file}"));
        }
        let deny: Vec<&str> = deny.iter().map(String::as_str).collect();
        let read_only: Vec<&str> = read_only.iter().map(String::as_str).collect();
        let fs = agent(&backend, &deny, &read_only);
        let filter = {
            let mut f = PathFilterLayer::builder().allow("/**");
            for rule in &deny {
                f = f.deny(*rule);
            }
            f.build().unwrap()
        };
        let protected = ReadOnlyLayer::paths(read_only.iter().copied()).unwrap();
        let guarded = |path: &Path| !filter.is_allowed(path) || protected.protects(path);
        let before: BTreeMap<_, _> = snapshot(&backend)
            .into_iter()
            .filter(|(p, _)| guarded(p))
            .collect();
        let hidden_content: Vec<Vec<u8>> = before
            .iter()
            .filter(|(p, (kind, _))| !filter.is_allowed(p) && *kind == FileType::File)
            .map(|(_, (_, content))| content.clone())
            .collect();
        for op in &ops {
            for answer in run(&fs, op) {
                for secret in &hidden_content {
                    prop_assert!(
                        !answer.windows(secret.len()).any(|w| w == secret.as_slice()),
                        "{:?} returned hidden content", op
                    );
                }
                // A path in an answer (a listing, a resolution) is never a
                // hidden one. Rules are about where things are: an entry is
                // judged under the directory its listed parent resolves to
                // (a symlink to a directory lists its target's entries).
                if answer.starts_with(b"/") {
                    let path = PathBuf::from(String::from_utf8_lossy(&answer).into_owned());
                    let real = match (path.parent(), path.file_name()) {
                        (Some(parent), Some(name)) => owner
                            .canonicalize(parent)
                            .map_or_else(|_| path.clone(), |p| p.join(name)),
                        _ => path.clone(),
                    };
                    prop_assert!(
                        filter.is_allowed(&real),
                        "{:?} showed {} (really {})", op, path.display(), real.display()
                    );
                }
            }
        }
        let after: BTreeMap<_, _> = snapshot(&backend)
            .into_iter()
            .filter(|(p, _)| guarded(p))
            .collect();
        prop_assert_eq!(before, after, "rules: deny {:?} read-only {:?}", deny, read_only);
    }
}
