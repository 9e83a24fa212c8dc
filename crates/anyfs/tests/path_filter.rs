//! Attacks on `PathFilterLayer`: every way to reach a denied path.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsDir, FsErrorKind, FsInode, FsLink, FsRead, FsWrite, MemoryBackend,
    PathFilterLayer,
};
use std::path::Path;

/// A backend with a secret, and a filtered view of it over the seed's rules.
fn setup() -> (MemoryBackend, FileStorage<anyfs::PathFilter<MemoryBackend>>) {
    let backend = MemoryBackend::new();
    let raw = FileStorage::new(backend.clone());
    raw.create_dir_all("/workspace/secrets").unwrap();
    raw.write("/workspace/.env", "API_KEY=hunter2").unwrap();
    raw.write("/workspace/secrets/x", "classified").unwrap();
    raw.write("/workspace/a.txt", "public").unwrap();
    raw.write("/outside.txt", "not for the agent").unwrap();
    let filter = PathFilterLayer::builder()
        .allow("/workspace/**")
        .deny("**/.env")
        .deny("**/secrets/**")
        .build()
        .unwrap();
    (backend.clone(), FileStorage::new(filter.layer(backend)))
}

fn denied<T: std::fmt::Debug>(result: anyfs::FsResult<T>) {
    match result {
        Err(e) => assert_eq!(e.kind(), FsErrorKind::AccessDenied, "{e}"),
        Ok(v) => panic!("expected AccessDenied, got Ok({v:?})"),
    }
}

#[test]
fn the_seed_rules_hold() {
    let (_, fs) = setup();
    assert_eq!(fs.read_to_string("/workspace/a.txt").unwrap(), "public");
    denied(fs.read("/workspace/.env"));
    denied(fs.read("/workspace/secrets/x"));
    denied(fs.read("/outside.txt"));
    denied(fs.write("/workspace/sub/.env", "x"));
    // Written in place, a hidden file is as hidden.
    denied(fs.write_range("/workspace/.env", 0, "API_KEY=mine"));
    denied(fs.write_range("/outside.txt", 3, "x"));
    fs.write_range("/workspace/a.txt", 0, "P").unwrap();
    assert_eq!(fs.read_to_string("/workspace/a.txt").unwrap(), "Public");
    let err = fs.read("/workspace/.env").unwrap_err();
    assert!(err.to_string().contains("/workspace/.env"), "{err}");
    assert!(
        err.to_string()
            .contains("the path filter does not allow it"),
        "{err}"
    );
    fs.write("/workspace/new.txt", "ok").unwrap();
}

#[test]
fn deny_wins_whatever_the_order() {
    let backend = MemoryBackend::new();
    FileStorage::new(backend.clone())
        .write("/.env", "k")
        .unwrap();
    let fs = FileStorage::new(
        PathFilterLayer::builder()
            .deny("**/.env")
            .allow("/**")
            .build()
            .unwrap()
            .layer(backend),
    );
    denied(fs.read("/.env"));
}

#[test]
fn rename_copy_and_hard_link_check_both_sides() {
    let (backend, fs) = setup();
    // Exfiltrate by moving a secret into the open, or plant by moving in.
    denied(fs.rename("/workspace/secrets/x", "/workspace/x"));
    denied(fs.rename("/workspace/.env", "/workspace/env.txt"));
    denied(fs.rename("/workspace/a.txt", "/workspace/secrets/a.txt"));
    denied(fs.rename("/workspace/secrets", "/workspace/public"));
    denied(fs.copy("/workspace/.env", "/workspace/copy.txt"));
    denied(fs.copy("/workspace/a.txt", "/outside-copy.txt"));
    denied(fs.hard_link("/workspace/.env", "/workspace/alias"));
    denied(fs.hard_link("/outside.txt", "/workspace/alias"));
    denied(fs.remove_dir_all("/workspace/secrets"));
    let raw = FileStorage::new(backend);
    assert_eq!(
        raw.read_to_string("/workspace/.env").unwrap(),
        "API_KEY=hunter2"
    );
    assert!(!raw.exists("/workspace/copy.txt").unwrap());
    assert!(!raw.exists("/workspace/alias").unwrap());
}

#[test]
fn symlinks_resolve_to_the_path_that_is_checked() {
    let (_, fs) = setup();
    // Creating a link is allowed (its target is data)…
    fs.symlink("/workspace/.env", "/workspace/innocent")
        .unwrap();
    fs.symlink("../outside.txt", "/workspace/up").unwrap();
    fs.symlink("/workspace/secrets", "/workspace/door").unwrap();
    // …but following it reaches the real, denied path.
    denied(fs.read("/workspace/innocent"));
    denied(fs.read("/workspace/up"));
    denied(fs.read("/workspace/door/x"));
    denied(fs.write("/workspace/door/planted", "x"));
    // The link path itself must be allowed.
    denied(fs.symlink("/workspace/a.txt", "/workspace/secrets/link"));
    denied(fs.symlink("/workspace/a.txt", "/elsewhere"));
}

#[test]
fn dotdot_double_slashes_and_case_do_not_get_through() {
    let (backend, fs) = setup();
    denied(fs.read("/workspace/../outside.txt"));
    denied(fs.read("/workspace/secrets/../../outside.txt"));
    denied(fs.read("//workspace//.env"));
    denied(fs.read("/workspace/./secrets/./x"));
    denied(fs.read("/WORKSPACE/a.txt"));
    // A case variant is another file here, not the secret.
    assert_eq!(
        fs.read("/workspace/.ENV").unwrap_err().kind(),
        FsErrorKind::NotFound
    );

    // Called directly, below FileStorage: unresolved forms are refused, and
    // odd spellings are matched in normal form.
    let layer = fs.backend();
    for bad in [
        "/workspace/../outside.txt",
        "workspace/a.txt",
        "/workspace/a\0.txt",
    ] {
        assert_eq!(
            layer.read(Path::new(bad)).unwrap_err().kind(),
            FsErrorKind::InvalidPath,
            "{bad}"
        );
    }
    denied(layer.read(Path::new("//workspace//secrets/x")));
    denied(layer.read(Path::new("/workspace/./.env")));
    let loose = PathFilterLayer::builder()
        .allow("/**")
        .deny("/workspace/secrets/**")
        .build()
        .unwrap()
        .layer(backend.clone());
    denied(loose.read(Path::new("/workspace//secrets/x")));
    denied(loose.read(Path::new("/workspace/secrets/./x")));

    let insensitive = PathFilterLayer::builder()
        .allow("/**")
        .deny("**/.env")
        .case_insensitive(true)
        .build()
        .unwrap()
        .layer(backend);
    denied(insensitive.write(Path::new("/workspace/.ENV"), b"x"));
}

#[test]
fn read_dir_hides_denied_entries() {
    let (_, fs) = setup();
    let names = fs.read_dir("/workspace").unwrap().sorted_names().unwrap();
    assert_eq!(names, vec!["a.txt"]);
    denied(fs.read_dir("/workspace/secrets").map(drop));
    denied(fs.read_dir("/").map(drop));
}

#[test]
fn inode_operations_are_checked_by_path() {
    let (_, fs) = setup();
    let layer = fs.backend();
    let root = layer.inner().path_to_inode(Path::new("/")).unwrap();
    denied(layer.lookup(root, "outside.txt".as_ref()));
    let ws = layer.path_to_inode(Path::new("/workspace")).unwrap();
    assert!(layer.lookup(ws, "a.txt".as_ref()).is_ok());
    denied(layer.lookup(ws, ".env".as_ref()));
    let secret = layer
        .inner()
        .path_to_inode(Path::new("/workspace/.env"))
        .unwrap();
    denied(layer.metadata_by_inode(secret));
    denied(layer.inode_to_path(secret));
    denied(layer.symlink_metadata(Path::new("/workspace/.env")));
    denied(layer.exists(Path::new("/workspace/.env")));
    denied(layer.create_dir_all(Path::new("/workspace/secrets/deeper")));
    denied(layer.remove_file(Path::new("/workspace/.env")));
}

#[test]
fn invalid_rules_are_clear_errors_not_panics() {
    let err = PathFilterLayer::builder()
        .allow("/workspace/[")
        .build()
        .unwrap_err();
    assert_eq!(err.pattern, "/workspace/[");
    assert!(err.to_string().contains("/workspace/["), "{err}");
    let err = PathFilterLayer::builder()
        .allow("workspace/**")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
    // In the fluent form the stack fails closed, naming the bad rule.
    let fs = FileStorage::new(
        MemoryBackend::new().layer(PathFilterLayer::builder().allow("/{a,").build()),
    );
    let err = fs.write("/a", "x").unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::AccessDenied);
    assert!(err.to_string().contains("invalid"), "{err}");
}

#[test]
fn no_allow_rule_denies_everything() {
    let fs = FileStorage::new(
        PathFilterLayer::builder()
            .build()
            .unwrap()
            .layer(MemoryBackend::new()),
    );
    denied(fs.write("/a", "x"));
    denied(fs.create_dir("/d"));
}

#[test]
fn swapping_links_and_directories_under_readers_never_leaks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let backend = MemoryBackend::new();
    let raw = FileStorage::new(backend.clone());
    raw.create_dir_all("/workspace/ok").unwrap();
    raw.create_dir_all("/secrets").unwrap();
    raw.write("/workspace/ok/file", "public").unwrap();
    raw.write("/secrets/file", "TOP SECRET").unwrap();
    raw.symlink("/workspace/ok", "/workspace/link").unwrap();
    let fs = FileStorage::new(
        PathFilterLayer::builder()
            .allow("/workspace/**")
            .build()
            .unwrap()
            .layer(backend),
    );
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The attacker: flips the link (and a directory) between the
        // workspace and the secrets, as fast as it can, with raw access.
        s.spawn(|| {
            for i in 0..3000 {
                let _ = raw.remove_file("/workspace/link");
                let target = if i % 2 == 0 {
                    "/secrets"
                } else {
                    "/workspace/ok"
                };
                let _ = raw.symlink(target, "/workspace/link");
                let _ = raw.rename("/workspace/ok", "/workspace/tmp");
                let _ = raw.symlink("/secrets", "/workspace/ok");
                let _ = raw.remove_file("/workspace/ok");
                let _ = raw.rename("/workspace/tmp", "/workspace/ok");
            }
            stop.store(true, Ordering::Relaxed);
        });
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for path in ["/workspace/link/file", "/workspace/ok/file"] {
                        if let Ok(data) = fs.read(path) {
                            assert_eq!(data, b"public", "secret read through {path}");
                        }
                        if let Ok(names) = fs
                            .read_dir("/workspace/link")
                            .and_then(|d| d.sorted_names())
                        {
                            assert!(names.iter().all(|n| n == "file"));
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn resolution_passes_through_directories_on_the_way_to_allowed_ones() {
    let backend = MemoryBackend::new();
    let raw = FileStorage::new(backend.clone());
    raw.create_dir_all("/a/b").unwrap();
    raw.create_dir_all("/a/x").unwrap();
    raw.create_dir_all("/src/x").unwrap();
    raw.write("/a/b/c.txt", "c").unwrap();
    raw.write("/src/main.txt", "main").unwrap();
    raw.create_dir_all("/src/a").unwrap();
    raw.create_dir_all("/docs").unwrap();
    raw.write("/docs/x.md", "doc").unwrap();
    raw.write("/src/a/m.rs", "code").unwrap();

    let under = FileStorage::new(
        PathFilterLayer::builder()
            .allow("/a/b/**")
            .build()
            .unwrap()
            .layer(backend.clone()),
    );
    assert_eq!(under.read("/a/b/c.txt").unwrap(), b"c");
    // `/a` is on the way to `/a/b`: a walk may leave it again.
    assert_eq!(under.read("/a/../a/b/c.txt").unwrap(), b"c");
    assert_eq!(under.read("/a/b/../b/c.txt").unwrap(), b"c");
    // `/a/x` leads to nothing allowed: a walk may not pass through it.
    let err = under.read("/a/x/../b/c.txt").unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::AccessDenied, "{err}");
    assert_eq!(err.path(), Path::new("/a/x/../b/c.txt"), "named as asked");
    assert!(
        err.to_string()
            .contains("the path filter does not allow it"),
        "{err}"
    );

    let anywhere = FileStorage::new(
        PathFilterLayer::builder()
            .allow("**/*.txt")
            .build()
            .unwrap()
            .layer(backend.clone()),
    );
    assert_eq!(anywhere.read("/src/x/../main.txt").unwrap(), b"main");

    // Alternations and wildcards reach what they can match.
    let alternatives = FileStorage::new(
        PathFilterLayer::builder()
            .allow("/{src,docs}/**")
            .allow("/pub/*.md")
            .build()
            .unwrap()
            .layer(backend.clone()),
    );
    assert_eq!(alternatives.read("/src/a/../../docs/x.md").unwrap(), b"doc");
    assert_eq!(alternatives.read("/docs/../src/a/m.rs").unwrap(), b"code");

    let folded = FileStorage::new(
        PathFilterLayer::builder()
            .allow("/A/B/**")
            .case_insensitive(true)
            .build()
            .unwrap()
            .layer(backend),
    );
    assert_eq!(folded.read("/a/../a/b/c.txt").unwrap(), b"c");
}

/// The full answer to each probe (error kind and message, or what was
/// read), for a backend set up by `prepare`, through `filter`.
fn answers(
    filter: &PathFilterLayer,
    prepare: impl Fn(&FileStorage<MemoryBackend>),
    probes: &[&str],
) -> Vec<String> {
    let backend = MemoryBackend::new();
    prepare(&FileStorage::new(backend.clone()));
    let fs = FileStorage::new(filter.clone().layer(backend));
    probes
        .iter()
        .flat_map(|probe| {
            [
                format!("{:?}", fs.read(probe).map_err(|e| e.to_string())),
                format!(
                    "{:?}",
                    fs.metadata(probe).map(|_| ()).map_err(|e| e.to_string())
                ),
                format!(
                    "{:?}",
                    fs.read_dir(probe).map(|_| ()).map_err(|e| e.to_string())
                ),
            ]
        })
        .collect()
}

/// Whatever sits at a hidden path — nothing, a file, a directory, a
/// symlink — every answer, message included, is the same.
#[track_caller]
fn hidden_paths_do_not_show(filter: PathFilterLayer, hidden: &str, probes: &[&str]) {
    let base = |fs: &FileStorage<MemoryBackend>| {
        fs.create_dir_all("/workspace").unwrap();
        fs.write("/workspace/a.txt", "public").unwrap();
        let parent = Path::new(hidden).parent().unwrap();
        fs.create_dir_all(parent).unwrap();
    };
    let nothing = answers(&filter, base, probes);
    let file = answers(
        &filter,
        |fs| {
            base(fs);
            fs.write(hidden, "x").unwrap();
        },
        probes,
    );
    let dir = answers(
        &filter,
        |fs| {
            base(fs);
            fs.create_dir_all(format!("{hidden}/x")).unwrap();
        },
        probes,
    );
    let link = answers(
        &filter,
        |fs| {
            base(fs);
            fs.symlink("/workspace/a.txt", hidden).unwrap();
        },
        probes,
    );
    for (variant, got) in [
        ("a file", &file),
        ("a directory", &dir),
        ("a symlink", &link),
    ] {
        assert_eq!(&nothing, got, "{hidden} shows when it is {variant}");
    }
    for answer in &nothing {
        assert!(answer.contains("access denied"), "{answer}");
    }
}

#[test]
fn nothing_shows_what_a_hidden_path_is() {
    // A deny rule over a directory: descending through what is there.
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/**")
            .deny("/private/**")
            .build()
            .unwrap(),
        "/private/a",
        &[
            "/private/a",
            "/private/a/b",
            "/private/a/..",
            "/private/a/x/../..",
        ],
    );
    // A deny rule on a name: it covers what is below it too.
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/workspace/**")
            .deny("**/.env")
            .build()
            .unwrap(),
        "/workspace/.env",
        &[
            "/workspace/.env",
            "/workspace/.env/x",
            "/workspace/.env/x/..",
        ],
    );
    // Allow rules with wildcards reach only where they can match.
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/{src,docs}/**")
            .build()
            .unwrap(),
        "/private/x",
        &[
            "/private/x/..",
            "/private/x/../../src",
            "/private/x/y/../..",
        ],
    );
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/pub/*.md")
            .build()
            .unwrap(),
        "/pub/notes.txt",
        &[
            "/pub/notes.txt/..",
            "/pub/notes.txt/x",
            "/pub/notes.txt/x/../..",
        ],
    );
    // An unreachable prefix before a deeper deny: the same answer whether
    // the walk stops at the prefix or runs to the end.
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/workspace/**")
            .deny("**/.env")
            .build()
            .unwrap(),
        "/x",
        &["/x/.env", "/x/a/../.env", "/x/.env/y"],
    );
    // `**` inside a name is a `*`: it reaches no deeper.
    hidden_paths_do_not_show(
        PathFilterLayer::builder()
            .allow("/data/**.csv")
            .build()
            .unwrap(),
        "/data/hidden",
        &[
            "/data/hidden/x/../../a.csv",
            "/data/hidden/..",
            "/data/hidden/x",
        ],
    );
}

#[test]
fn a_rule_ending_in_a_slash_is_refused_not_ignored() {
    for rule in ["/secrets/", "**/secrets/"] {
        let err = PathFilterLayer::builder()
            .allow("/**")
            .deny(rule)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("never end in `/`"), "{err}");
    }
    // Denying the root denies everything, with or without case folding.
    for folded in [false, true] {
        let backend = MemoryBackend::new();
        FileStorage::new(backend.clone()).write("/a", "x").unwrap();
        let fs = FileStorage::new(
            PathFilterLayer::builder()
                .allow("/**")
                .deny("/")
                .case_insensitive(folded)
                .build()
                .unwrap()
                .layer(backend),
        );
        denied(fs.read("/a"));
    }
}
