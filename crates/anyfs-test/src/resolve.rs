//! Path resolution through [`FileStorage`](anyfs::FileStorage): symlinks
//! followed inside the backend, `..` applied after them, never above the root.

use anyfs::prelude::*;
use anyfs::{FileType, Fs, FsErrorKind, FsLink};

use crate::{assert_err, p};

/// Links to files and directories are followed, in any component.
pub fn follows_links_to_files_and_directories<B: Fs + FsLink>(fs: &B) {
    fs.create_dir_all(p("/real/sub")).unwrap();
    fs.write(p("/real/sub/f"), b"found").unwrap();
    fs.symlink(p("/real"), p("/via-abs")).unwrap();
    fs.symlink(p("real/sub"), p("/via-rel")).unwrap();
    fs.symlink(p("sub/f"), p("/real/file-link")).unwrap();
    assert_eq!(fs.read(p("/via-abs/sub/f")).unwrap(), b"found");
    assert_eq!(fs.read(p("/via-rel/f")).unwrap(), b"found");
    assert_eq!(fs.read(p("/via-abs/file-link")).unwrap(), b"found");
    fs.write(p("/via-rel/new"), b"through a link").unwrap();
    assert_eq!(fs.read(p("/real/sub/new")).unwrap(), b"through a link");
    fs.create_dir(p("/via-abs/made")).unwrap();
    assert!(fs.metadata(p("/real/made")).unwrap().is_dir());
}

/// A chain of 40 links resolves; 41 is `TooManySymlinks`.
pub fn chains_and_the_hop_limit<B: Fs + FsLink>(fs: &B) {
    fs.write(p("/end"), b"end of chain").unwrap();
    fs.symlink(p("/end"), p("/c0")).unwrap();
    for i in 1..41 {
        fs.symlink(p(&format!("c{}", i - 1)), p(&format!("/c{i}")))
            .unwrap();
    }
    // /c39 takes 40 hops; /c40 takes 41.
    assert_eq!(fs.read(p("/c39")).unwrap(), b"end of chain");
    assert_err(fs.read(p("/c40")), FsErrorKind::TooManySymlinks);
    assert_eq!(fs.read_link(p("/c40")).unwrap(), p("c39"));
}

/// Loops, direct or through directories, end in `TooManySymlinks`.
pub fn loops_are_too_many_symlinks<B: Fs + FsLink>(fs: &B) {
    fs.symlink(p("/b"), p("/a")).unwrap();
    fs.symlink(p("/a"), p("/b")).unwrap();
    fs.symlink(p("self"), p("/self")).unwrap();
    fs.create_dir(p("/d")).unwrap();
    fs.symlink(p("../d/loop/x"), p("/d/loop")).unwrap();
    for path in ["/a", "/self", "/d/loop", "/a/deeper/still"] {
        assert_err(fs.read(p(path)), FsErrorKind::TooManySymlinks);
        assert_err(fs.metadata(p(path)), FsErrorKind::TooManySymlinks);
    }
    assert_err(fs.write(p("/a"), b"x"), FsErrorKind::TooManySymlinks);
    assert_eq!(
        fs.symlink_metadata(p("/a")).unwrap().file_type,
        FileType::Symlink
    );
}

/// A dangling link: reading is `NotFound`, `exists` is false, the link
/// itself is there, and writing through it creates its target.
pub fn dangling_links<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.symlink(p("/d/later"), p("/dangling")).unwrap();
    assert_err(fs.read(p("/dangling")), FsErrorKind::NotFound);
    assert!(!fs.exists(p("/dangling")).unwrap());
    assert!(fs.symlink_metadata(p("/dangling")).unwrap().is_symlink());
    fs.write(p("/dangling"), b"now it exists").unwrap();
    assert_eq!(fs.read(p("/d/later")).unwrap(), b"now it exists");
    fs.symlink(p("/nowhere/deep"), p("/broken")).unwrap();
    assert_err(fs.write(p("/broken"), b"x"), FsErrorKind::NotFound);
}

/// `link/..` is the parent of the link's *target* (POSIX), not the
/// directory holding the link.
pub fn dotdot_after_a_link_uses_the_target<B: Fs + FsLink>(fs: &B) {
    fs.create_dir_all(p("/x/y/z")).unwrap();
    fs.write(p("/x/y/marker"), b"under y").unwrap();
    fs.create_dir(p("/other")).unwrap();
    fs.symlink(p("/x/y/z"), p("/other/link")).unwrap();
    assert_eq!(fs.read(p("/other/link/../marker")).unwrap(), b"under y");
    assert_err(fs.read(p("/other/marker")), FsErrorKind::NotFound);
    fs.write(p("/f"), b"").unwrap();
    assert_err(fs.read(p("/f/../f")), FsErrorKind::NotADirectory);
    assert_err(fs.read(p("/missing/../f")), FsErrorKind::NotFound);
}

/// Absolute targets and `..` chains start from and stop at the virtual root.
pub fn absolute_targets_stay_inside<B: Fs + FsLink>(fs: &B) {
    fs.create_dir_all(p("/etc")).unwrap();
    fs.write(p("/etc/passwd"), b"virtual").unwrap();
    fs.create_dir_all(p("/jail/deep")).unwrap();
    fs.symlink(p("/etc/passwd"), p("/jail/abs")).unwrap();
    fs.symlink(p("../../../../../../etc/passwd"), p("/jail/deep/rel"))
        .unwrap();
    fs.symlink(p("/../../.."), p("/jail/root")).unwrap();
    assert_eq!(fs.read(p("/jail/abs")).unwrap(), b"virtual");
    assert_eq!(fs.read(p("/jail/deep/rel")).unwrap(), b"virtual");
    assert_eq!(fs.read(p("/jail/root/etc/passwd")).unwrap(), b"virtual");
    assert_eq!(fs.read(p("/../../etc/passwd")).unwrap(), b"virtual");
    assert_eq!(fs.read(p("/jail/../../../etc/passwd")).unwrap(), b"virtual");
}

/// `metadata` follows the last link; `symlink_metadata` does not.
pub fn metadata_follows_symlink_metadata_does_not<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/dir")).unwrap();
    fs.symlink(p("/dir"), p("/link")).unwrap();
    assert!(fs.metadata(p("/link")).unwrap().is_dir());
    assert!(fs.symlink_metadata(p("/link")).unwrap().is_symlink());
    assert!(fs.exists(p("/link")).unwrap());
}

/// Operations on the name itself (`remove_file`, `rename`, `create_dir`,
/// `symlink`, `remove_dir_all`) do not follow a last-component link.
pub fn operations_that_do_not_follow<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/dir")).unwrap();
    fs.write(p("/dir/keep"), b"k").unwrap();
    fs.symlink(p("/dir"), p("/l1")).unwrap();
    assert_err(fs.create_dir(p("/l1")), FsErrorKind::AlreadyExists);
    assert_err(fs.remove_dir(p("/l1")), FsErrorKind::NotADirectory);
    fs.rename(p("/l1"), p("/l2")).unwrap();
    assert_eq!(fs.read(p("/l2/keep")).unwrap(), b"k");
    fs.remove_dir_all(p("/l2")).unwrap();
    assert_eq!(fs.read(p("/dir/keep")).unwrap(), b"k");
    fs.symlink(p("/dir/keep"), p("/fl")).unwrap();
    fs.remove_file(p("/fl")).unwrap();
    assert_eq!(fs.read(p("/dir/keep")).unwrap(), b"k");
    fs.symlink(p("/dir"), p("/l3")).unwrap();
    fs.copy(p("/l3/keep"), p("/copied")).unwrap();
    assert_eq!(fs.read(p("/copied")).unwrap(), b"k");
}

/// `canonicalize` gives the link-free absolute path of something that exists.
pub fn canonicalize_resolves<B: Fs + FsLink>(fs: &B) {
    fs.create_dir_all(p("/a/b")).unwrap();
    fs.write(p("/a/b/f"), b"").unwrap();
    fs.symlink(p("a/b"), p("/l")).unwrap();
    let storage = anyfs::FileStorage::new(fs);
    assert_eq!(storage.canonicalize("/l/./f").unwrap(), p("/a/b/f"));
    assert_eq!(storage.canonicalize("/l/../b/f").unwrap(), p("/a/b/f"));
    assert_eq!(storage.canonicalize("/../..").unwrap(), p("/"));
    assert_err(storage.canonicalize("/l/missing"), FsErrorKind::NotFound);
}

/// Listing through a link lists the target, with entries named under the
/// path that was asked for.
pub fn read_dir_through_a_link<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/real")).unwrap();
    fs.write(p("/real/x"), b"").unwrap();
    fs.symlink(p("/real"), p("/alias")).unwrap();
    let entries = fs.read_dir(p("/alias")).unwrap().collect_entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "x");
    assert_eq!(entries[0].path, p("/alias/x"));
}

/// Through a [`PathFilter`](anyfs::PathFilter), a resolution that passes
/// through a hidden path — a denied directory followed by `..`, a symlink
/// stored in a denied directory, a link whose target goes through one — is
/// refused before anything is looked up. So the answers are the same
/// whether the hidden things exist or not, and nothing about them shows.
pub fn a_path_filter_shows_nothing_through_resolution<B: Fs + FsLink>(
    storage: &anyfs::FileStorage<B>,
) {
    storage.create_dir_all(p("/workspace/open")).unwrap();
    storage.write(p("/workspace/a.txt"), b"public").unwrap();
    storage
        .symlink(
            p("/workspace/secrets/inner/../../a.txt"),
            p("/workspace/via-abs"),
        )
        .unwrap();
    storage
        .symlink(p("secrets/link"), p("/workspace/via-rel"))
        .unwrap();
    storage
        .symlink(p("/workspace/a.txt"), p("/workspace/ok-link"))
        .unwrap();
    let filter = anyfs::PathFilterLayer::builder()
        .allow("/workspace/**")
        .deny("**/secrets/**")
        .build()
        .unwrap();
    let view = anyfs::FileStorage::new(filter.layer(storage.backend()));
    let probes = [
        "/workspace/secrets/../a.txt",
        "/workspace/secrets/inner/../../a.txt",
        "/workspace/secrets/nothing/../../a.txt",
        "/workspace/secrets/link",
        "/workspace/secrets/inner/../link",
        "/workspace/via-abs",
        "/workspace/via-rel",
        "/elsewhere/../workspace/a.txt",
        "/elsewhere/deeper/../../workspace/a.txt",
    ];
    let outcomes = || {
        probes.map(|probe| {
            let kind = |r: anyfs::FsResult<()>| r.err().map(|e| e.kind());
            [
                kind(view.read(p(probe)).map(drop)),
                kind(view.metadata(p(probe)).map(drop)),
                kind(view.exists(p(probe)).map(drop)),
                kind(view.write(p(probe), b"planted")),
                kind(view.read_dir(p(probe)).map(drop)),
            ]
        })
    };
    let absent = outcomes();
    // Now the hidden things exist.
    storage
        .create_dir_all(p("/workspace/secrets/inner"))
        .unwrap();
    storage
        .create_dir_all(p("/workspace/secrets/nothing"))
        .unwrap();
    storage
        .symlink(p("/workspace/a.txt"), p("/workspace/secrets/link"))
        .unwrap();
    storage.create_dir_all(p("/elsewhere/deeper")).unwrap();
    let present = outcomes();
    for ((probe, a), b) in probes.iter().zip(&absent).zip(&present) {
        assert_eq!(a, b, "{probe}: the answers show whether hidden paths exist");
        for kind in a {
            assert_eq!(*kind, Some(FsErrorKind::AccessDenied), "{probe}");
        }
    }
    assert_eq!(storage.read(p("/workspace/a.txt")).unwrap(), b"public");
    // Paths that pass only through what the rules allow still resolve.
    assert_eq!(view.read(p("/workspace/open/../a.txt")).unwrap(), b"public");
    assert_eq!(view.read(p("/workspace/ok-link")).unwrap(), b"public");
    assert!(view.metadata(p("/workspace/open")).unwrap().is_dir());
}
