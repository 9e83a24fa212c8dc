//! The escape suite: every way out of a `VRootFsBackend` jail we know of,
//! tried with every operation, through `FileStorage` and straight at the
//! backend, with the kernel's `openat2` and with the portable walk.
//!
//! Outside the jail sit canaries: sibling directories whose names share the
//! root's prefix, an `outside` directory, files whose content holds
//! `SECRET`. After each attack the whole tree outside the jail must be
//! exactly as it was (names, kinds, contents, modes, link targets), no read
//! may have returned a canary's bytes, and no metadata may describe an
//! outside node.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsDir, FsErrorKind, FsLink, FsPermissions, FsRead, FsWrite, Permissions,
    VRootFsBackend,
};
use tempfile::TempDir;

// ------------------------------------------------------------------ fixture

/// What a node outside the jail looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(PathBuf),
    Other,
}

/// A jail at `<tmp>/w/root` with canaries all around it.
struct Fixture {
    _tmp: TempDir,
    w: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
    outside_inodes: HashSet<u64>,
    /// Held open so that `/proc/self/fd/N` names an outside file.
    _held: File,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path().join("w");
        let root = w.join("root");
        let outside = w.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(w.join("canary.txt"), b"SECRET-w").unwrap();
        for sibling in ["outside", "root_evil", "root-x", "rootX", "root.d"] {
            let dir = w.join(sibling);
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("canary.txt"), format!("SECRET-{sibling}")).unwrap();
            std::fs::write(dir.join("sub/canary.txt"), format!("SECRET-{sibling}-sub")).unwrap();
        }
        std::fs::write(outside.join("only-outside.txt"), b"SECRET-only").unwrap();

        // Inside: ordinary content…
        std::fs::write(root.join("inside.txt"), b"inside").unwrap();
        std::fs::write(root.join("victim.txt"), b"victim").unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/file.txt"), b"inside too").unwrap();
        // …and links planted by someone on the host.
        let held = File::open(outside.join("canary.txt")).unwrap();
        let out = outside.display().to_string();
        let links: Vec<(&str, String)> = vec![
            ("leaf_abs", format!("{out}/canary.txt")),
            ("leaf_rel", "../outside/canary.txt".into()),
            (
                "leaf_rel_deep",
                format!("{}outside/canary.txt", "../".repeat(40)),
            ),
            ("dangling_abs", format!("{out}/new.txt")),
            ("dangling_rel", "../outside/new.txt".into()),
            ("mid_abs", out.clone()),
            ("mid_rel", "../outside".into()),
            ("sib", "../root_evil".into()),
            ("sib_prefix", format!("{}_evil", root.display())),
            ("chain1", "chain2".into()),
            ("chain2", "dir/../chain3".into()),
            ("chain3", format!("{out}/canary.txt")),
            ("loop1", "loop2".into()),
            ("loop2", "loop1".into()),
            ("proc_root", format!("/proc/self/root{out}/canary.txt")),
            ("proc_fd", format!("/proc/self/fd/{}", held.as_raw_fd())),
            ("proc_cwd", "/proc/self/cwd".into()),
            ("etc_passwd", "/etc/passwd".into()),
            ("root_link", "/".into()),
            ("dotdot_link", "..".into()),
            ("host_parent", w.display().to_string()),
        ];
        for (name, target) in links {
            symlink(target, root.join(name)).unwrap();
        }
        let before = snapshot(&w, &root);
        let outside_inodes = inodes(&w, &root);
        Self {
            _tmp: tmp,
            w,
            root,
            outside,
            before,
            outside_inodes,
            _held: held,
        }
    }

    fn jail(&self) -> VRootFsBackend {
        VRootFsBackend::new(&self.root).unwrap()
    }

    /// The jail, with `openat2` and with the portable walk.
    fn jails(&self) -> [VRootFsBackend; 2] {
        [self.jail(), self.jail().force_component_walk()]
    }

    #[track_caller]
    fn assert_outside_untouched(&self, context: &str) {
        let after = snapshot(&self.w, &self.root);
        if after != self.before {
            let changed: Vec<_> = self
                .before
                .keys()
                .chain(after.keys())
                .filter(|k| self.before.get(*k) != after.get(*k))
                .collect();
            panic!("{context}: the tree outside the jail changed at {changed:?}");
        }
    }
}

/// Every node under `top` except the jail, as seen without following links.
fn snapshot(top: &Path, jail: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == jail {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            let seen = if meta.is_dir() {
                stack.push(path.clone());
                Seen::Dir(mode)
            } else if meta.is_symlink() {
                Seen::Link(std::fs::read_link(&path).unwrap())
            } else if meta.is_file() {
                Seen::File(std::fs::read(&path).unwrap(), mode)
            } else {
                Seen::Other
            };
            out.insert(path, seen);
        }
    }
    out
}

fn inodes(top: &Path, jail: &Path) -> HashSet<u64> {
    let mut set: HashSet<u64> = snapshot(top, jail)
        .keys()
        .map(|p| std::fs::symlink_metadata(p).unwrap().ino())
        .collect();
    set.insert(std::fs::metadata(top).unwrap().ino());
    set.insert(std::fs::metadata(top.parent().unwrap()).unwrap().ino());
    set
}

// ------------------------------------------------------------------ attacks

/// Everything the attacks need from a filesystem.
trait Target: FsRead + FsWrite + FsDir + FsLink + FsPermissions {}
impl<T: FsRead + FsWrite + FsDir + FsLink + FsPermissions> Target for T {}

/// Runs every operation with `path` in each position it can take, checking
/// each answer, then checks the outside tree.
fn attack(fx: &Fixture, fs: &dyn Target, path: &Path, context: &str) {
    let ctx = format!("{context} {:?}", path.as_os_str());
    let no_secret = |what: &str, bytes: &[u8]| {
        assert!(
            !bytes.windows(6).any(|w| w == b"SECRET"),
            "{ctx}: {what} returned outside content"
        );
    };
    let not_outside = |what: &str, inode: u64| {
        assert!(
            !fx.outside_inodes.contains(&inode),
            "{ctx}: {what} described a node outside the jail"
        );
    };

    // Reads.
    if let Ok(bytes) = fs.read(path) {
        no_secret("read", &bytes);
    }
    if let Ok(bytes) = fs.read_range(path, 0, 1 << 16) {
        no_secret("read_range", &bytes);
    }
    if let Ok(mut reader) = fs.open_read(path) {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        no_secret("open_read", &bytes);
    }
    if let Ok(meta) = fs.metadata(path) {
        not_outside("metadata", meta.inode);
    }
    if let Ok(meta) = fs.symlink_metadata(path) {
        not_outside("symlink_metadata", meta.inode);
    }
    let _ = fs.exists(path);
    let _ = fs.read_link(path);
    if let Ok(entries) = fs.read_dir(path) {
        for entry in entries.flatten() {
            assert!(
                entry.name != "only-outside.txt" && entry.name != "canary.txt",
                "{ctx}: read_dir listed an outside directory"
            );
            not_outside("read_dir", entry.inode);
        }
    }
    if fs.copy(path, Path::new("/copied")).is_ok() {
        no_secret("copy", &fs.read(Path::new("/copied")).unwrap());
    }
    if fs.hard_link(path, Path::new("/linked")).is_ok() {
        not_outside(
            "hard_link",
            fs.symlink_metadata(Path::new("/linked")).unwrap().inode,
        );
        let _ = fs.remove_file(Path::new("/linked"));
    }

    // Writes, with the path as the target.
    let _ = fs.write(path, b"PWNED-write");
    let _ = fs.append(path, b"PWNED-append");
    let _ = fs.truncate(path, 0);
    if let Ok(mut writer) = fs.open_write(path) {
        let _ = writer.write_all(b"PWNED-stream");
        let _ = writer.commit();
    }
    let _ = fs.set_permissions(path, Permissions::from_mode(0o777));
    let _ = fs.set_times(
        path,
        Some(std::time::UNIX_EPOCH),
        Some(std::time::UNIX_EPOCH),
    );
    let _ = fs.create_dir(path);
    let _ = fs.create_dir_all(path);
    let _ = fs.copy(Path::new("/inside.txt"), path);
    let _ = fs.symlink(Path::new("/inside.txt"), path);
    let _ = fs.hard_link(Path::new("/inside.txt"), path);
    let _ = fs.rename(Path::new("/victim.txt"), path);
    let _ = fs.write(Path::new("/victim.txt"), b"victim");
    if fs.rename(path, Path::new("/moved")).is_ok() {
        let _ = fs.rename(Path::new("/moved"), path);
    }
    // And the removals.
    let _ = fs.remove_file(path);
    let _ = fs.remove_dir(path);
    let _ = fs.remove_dir_all(path);

    fx.assert_outside_untouched(&ctx);
}

/// Runs `attack` for each path through `FileStorage` and straight at the
/// backend, with both lookups, each on a fresh fixture.
fn attack_all(paths: &[Vec<u8>]) {
    for raw in paths {
        let path = Path::new(OsStr::from_bytes(raw));
        for walk in [false, true] {
            for through_storage in [true, false] {
                let fx = Fixture::new();
                let jail = if walk {
                    fx.jail().force_component_walk()
                } else {
                    fx.jail()
                };
                let context = format!(
                    "[{} {}]",
                    if walk { "walk" } else { "openat2" },
                    if through_storage {
                        "FileStorage"
                    } else {
                        "backend"
                    }
                );
                if through_storage {
                    attack(&fx, &FileStorage::new(jail), path, &context);
                } else {
                    attack(&fx, &jail, path, &context);
                }
            }
        }
    }
}

fn strs(paths: &[&str]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| p.as_bytes().to_vec()).collect()
}

#[test]
fn traversal_strings_are_taken_literally_and_stay_inside() {
    let mut paths = strs(&[
        "../outside/canary.txt",
        "/../outside/canary.txt",
        "/../../../../../../outside/canary.txt",
        "/dir/../../outside/canary.txt",
        "/dir/../../../w/canary.txt",
        "..",
        "/..",
        "/../",
        "/../..",
        "../",
        "..\\outside\\canary.txt",
        "/..\\..\\outside\\canary.txt",
        "....//outside/canary.txt",
        "/....//....//outside/canary.txt",
        "/.../outside/canary.txt",
        "%2e%2e%2foutside%2fcanary.txt",
        "/%2e%2e/outside/canary.txt",
        "/..%2foutside%2fcanary.txt",
        "/%252e%252e%252foutside%252fcanary.txt",
        "/..%c0%afoutside/canary.txt",
        "/\u{2215}..\u{2215}outside\u{2215}canary.txt",
        "/\u{ff0e}\u{ff0e}/outside/canary.txt",
        "/\u{2024}\u{2024}/outside/canary.txt",
        "/..\u{2044}outside\u{2044}canary.txt",
        "/\u{ff0f}..\u{ff0f}outside",
        "//../..//outside//canary.txt",
        "/./.././../outside/./canary.txt",
    ]);
    // Overlong UTF-8 spellings of `.` and `/`, taken as plain bytes.
    paths.push(b"/\xc0\xae\xc0\xae/outside/canary.txt".to_vec());
    paths.push(b"/\xc0\xae\xc0\xae\xc0\xafoutside\xc0\xafcanary.txt".to_vec());
    paths.push(b"/\xe0\x80\xae\xe0\x80\xae/outside/canary.txt".to_vec());
    // Thousands of slashes, below and above the path length limit.
    paths.push(format!("{}../outside/canary.txt", "/".repeat(3000)).into_bytes());
    paths.push(format!("{}outside/canary.txt", "/".repeat(5000)).into_bytes());
    // Names at and over 255 bytes.
    paths.push(format!("/{}", "a".repeat(255)).into_bytes());
    paths.push(format!("/{}", "a".repeat(256)).into_bytes());
    paths.push(format!("/../{}/../outside/canary.txt", "b".repeat(300)).into_bytes());
    // The host's own absolute path of an outside file, as a virtual path.
    let fx = Fixture::new();
    paths.push(
        fx.outside
            .join("canary.txt")
            .as_os_str()
            .as_bytes()
            .to_vec(),
    );
    attack_all(&paths);
}

#[test]
fn nul_bytes_are_refused_not_truncated() {
    let fx = Fixture::new();
    for jail in fx.jails() {
        let fs = FileStorage::new(jail.clone());
        for raw in [
            &b"/inside.txt\0/../../outside/canary.txt"[..],
            b"/../outside/canary.txt\0",
            b"/\0",
            b"/leaf_abs\0",
        ] {
            let path = Path::new(OsStr::from_bytes(raw));
            assert_eq!(fs.read(path).unwrap_err().kind(), FsErrorKind::InvalidPath);
            assert_eq!(
                fs.write(path, b"x").unwrap_err().kind(),
                FsErrorKind::InvalidPath
            );
            assert_eq!(
                jail.read(path).unwrap_err().kind(),
                FsErrorKind::InvalidPath
            );
        }
    }
    attack_all(&[b"/inside.txt\0/../../outside/canary.txt".to_vec()]);
    fx.assert_outside_untouched("NUL");
}

#[test]
fn literal_names_land_inside_the_jail() {
    let fx = Fixture::new();
    let fs = FileStorage::new(fx.jail());
    for name in ["..\\evil", "%2e%2e%2fevil", "....", "\u{ff0e}\u{ff0e}"] {
        let path = format!("/{name}");
        fs.write(&path, b"literal").unwrap();
        assert_eq!(std::fs::read(fx.root.join(name)).unwrap(), b"literal");
    }
    fx.assert_outside_untouched("literal names");
}

#[test]
fn planted_symlinks_never_lead_out() {
    let names = [
        "/leaf_abs",
        "/leaf_rel",
        "/leaf_rel_deep",
        "/dangling_abs",
        "/dangling_rel",
        "/mid_abs",
        "/mid_abs/canary.txt",
        "/mid_abs/new.txt",
        "/mid_abs/sub/canary.txt",
        "/mid_rel",
        "/mid_rel/canary.txt",
        "/mid_rel/sub",
        "/sib/canary.txt",
        "/sib_prefix/canary.txt",
        "/chain1",
        "/loop1",
        "/loop1/x",
        "/proc_root",
        "/proc_fd",
        "/proc_cwd",
        "/proc_cwd/canary.txt",
        "/etc_passwd",
        "/root_link/outside/canary.txt",
        "/root_link/../outside/canary.txt",
        "/dotdot_link/outside/canary.txt",
        "/dotdot_link/../outside/canary.txt",
        "/dir/../mid_abs/canary.txt",
        "/mid_abs/../outside/canary.txt",
        "/host_parent/outside/canary.txt",
        "/host_parent/canary.txt",
    ];
    attack_all(&strs(&names));
}

#[test]
fn links_resolve_inside_the_jail_as_documented() {
    let fx = Fixture::new();
    for jail in fx.jails() {
        let fs = FileStorage::new(jail.clone());
        // Absolute targets mean the jail's root: nothing there.
        assert_eq!(
            fs.read("/leaf_abs").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        assert_eq!(
            fs.read("/proc_root").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        assert_eq!(
            fs.read("/proc_fd").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        // `..` stops at the jail's root, so ../outside is the jail's /outside.
        assert_eq!(
            fs.read("/leaf_rel").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        assert_eq!(
            fs.read("/mid_rel/canary.txt").unwrap_err().kind(),
            FsErrorKind::NotFound
        );
        assert_eq!(
            fs.read("/loop1").unwrap_err().kind(),
            FsErrorKind::TooManySymlinks
        );
        // The jail's root through a link to `/` or `..` is the jail's root.
        assert_eq!(fs.read("/root_link/inside.txt").unwrap(), b"inside");
        assert_eq!(fs.read("/dotdot_link/dir/file.txt").unwrap(), b"inside too");
        // Writing through a dangling link creates nothing outside.
        assert!(fs.write("/dangling_abs", b"x").is_err());
        assert!(fs.write("/dangling_rel", b"x").is_err());
        assert!(!fx.outside.join("new.txt").exists());
        // A link to a directory inside the jail works, and `..` after it
        // means the target's parent.
        fs.symlink("/dir", "/to_dir").unwrap();
        assert_eq!(fs.read("/to_dir/file.txt").unwrap(), b"inside too");
        assert_eq!(fs.read("/to_dir/../inside.txt").unwrap(), b"inside");
        fs.remove_file("/to_dir").unwrap();
        // Straight at the backend, a path through a link is refused.
        assert_eq!(
            jail.read(Path::new("/leaf_abs")).unwrap_err().kind(),
            FsErrorKind::InvalidPath
        );
        assert_eq!(
            jail.read(Path::new("/mid_abs/canary.txt"))
                .unwrap_err()
                .kind(),
            FsErrorKind::InvalidPath
        );
        assert_eq!(
            jail.write(Path::new("/mid_abs/new.txt"), b"x")
                .unwrap_err()
                .kind(),
            FsErrorKind::InvalidPath
        );
    }
    fx.assert_outside_untouched("documented resolution");
}

#[test]
fn errors_name_the_virtual_path_never_the_host_path() {
    let fx = Fixture::new();
    let host = fx.root.display().to_string();
    for jail in fx.jails() {
        let fs = FileStorage::new(jail);
        let errors = [
            fs.read("/missing/file").unwrap_err(),
            fs.read("/leaf_abs").unwrap_err(),
            fs.read("/loop1").unwrap_err(),
            fs.remove_dir("/dir").unwrap_err(),
            fs.read("/dir").unwrap_err(),
            fs.create_dir("/dir").unwrap_err(),
        ];
        for err in errors {
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&host), "host path leaked: {shown}");
            assert!(!shown.contains("/tmp"), "host path leaked: {shown}");
            assert!(err.path().starts_with("/"), "{shown}");
        }
    }
    assert!(!format!("{:?}", fx.jail()).contains(&host));
    // Opening a missing root names `/` too.
    let err = VRootFsBackend::new(fx.w.join("no-such-dir")).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
    assert!(!err.to_string().contains("/tmp"), "{err}");
}

#[test]
fn a_planted_hard_link_is_the_same_file_and_only_that() {
    // Documented behaviour (see the `vroot_fs` module docs): a hard link
    // made on the host from inside the jail to a file outside is that file
    // under a second name. The jail confines names; it reads and writes the
    // one file it was given, and nothing else outside.
    let fx = Fixture::new();
    std::fs::write(fx.outside.join("shared.txt"), b"shared").unwrap();
    std::fs::hard_link(fx.outside.join("shared.txt"), fx.root.join("planted")).unwrap();
    let before_others = snapshot(&fx.w, &fx.root);
    let fs = FileStorage::new(fx.jail());
    assert_eq!(fs.read("/planted").unwrap(), b"shared");
    fs.write("/planted", b"changed").unwrap();
    assert_eq!(
        std::fs::read(fx.outside.join("shared.txt")).unwrap(),
        b"changed"
    );
    // Removing the jail's name leaves the outside name alone.
    fs.remove_file("/planted").unwrap();
    assert_eq!(
        std::fs::read(fx.outside.join("shared.txt")).unwrap(),
        b"changed"
    );
    // Everything else outside is untouched.
    let mut after = snapshot(&fx.w, &fx.root);
    let mut before = before_others;
    after.remove(&fx.outside.join("shared.txt"));
    before.remove(&fx.outside.join("shared.txt"));
    assert_eq!(after, before);
    // From inside, no new link to an outside file can be made.
    for jail in fx.jails() {
        let fs = FileStorage::new(jail.clone());
        assert!(fs.hard_link("/../outside/canary.txt", "/stolen").is_err());
        assert!(fs.hard_link("/mid_abs/canary.txt", "/stolen").is_err());
        assert!(
            jail.hard_link(Path::new("/mid_abs/canary.txt"), Path::new("/stolen"))
                .is_err()
        );
        // Linking the planted symlink links the link, not its target.
        if fs.hard_link("/leaf_abs", "/stolen").is_ok() {
            assert!(fs.symlink_metadata("/stolen").unwrap().is_symlink());
            assert!(fs.read("/stolen").is_err());
            fs.remove_file("/stolen").unwrap();
        }
    }
}

/// Runs `f` on another thread and fails unless it finishes within 5 s.
fn within_5s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[test]
fn fifos_sockets_and_devices_are_refused_at_once() {
    let fx = Fixture::new();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fx.root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(fx.root.join("socket")).unwrap();
    // A character device (like /dev/zero) needs privilege to make.
    let device = rustix::fs::mknodat(
        rustix::fs::CWD,
        fx.root.join("zero"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 5),
    )
    .is_ok();
    let mut specials = vec!["/fifo", "/socket"];
    if device {
        specials.push("/zero");
    }
    for jail in fx.jails() {
        for special in &specials {
            let fs = FileStorage::new(jail.clone());
            let path = special.to_string();
            let results = within_5s(&format!("I/O on {special}"), move || {
                let p = Path::new(&path);
                vec![
                    fs.read(p).map(drop),
                    fs.read_range(p, 0, 10).map(drop),
                    fs.open_read(p).map(drop),
                    fs.write(p, b"x"),
                    fs.append(p, b"x"),
                    fs.truncate(p, 0),
                    fs.open_write(p).map(drop),
                    fs.copy(p, Path::new("/copy")),
                ]
            });
            for result in results {
                let err = result.expect_err(special);
                assert!(
                    matches!(
                        err.kind(),
                        FsErrorKind::AccessDenied | FsErrorKind::InvalidPath
                    ),
                    "{special}: {err}"
                );
            }
            // It can still be seen and removed.
            let fs = FileStorage::new(jail.clone());
            assert!(fs.exists(*special).unwrap());
        }
    }
    let fs = FileStorage::new(fx.jail());
    fs.remove_file("/fifo").unwrap();
    assert!(!fx.root.join("fifo").exists());
}

// -------------------------------------------------------------------- races

/// How long each race runs: `ANYFS_RACE_SECS`, 5 s by default.
fn race_time() -> Duration {
    let secs = std::env::var("ANYFS_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0_f64);
    Duration::from_secs_f64(secs)
}

#[test]
fn swapping_a_directory_for_an_outside_link_never_leaks() {
    let fx = Fixture::new();
    // `/swap` is a directory inside; `/alt` a symlink to the outside
    // directory. One thread keeps exchanging the two names atomically.
    std::fs::create_dir(fx.root.join("swap")).unwrap();
    std::fs::write(fx.root.join("swap/canary.txt"), b"inside-swap").unwrap();
    symlink(&fx.outside, fx.root.join("alt")).unwrap();
    let before = fx.before.clone();

    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let inside_reads = AtomicU64::new(0);
    let jails = fx.jails();
    let deadline = Instant::now() + race_time();
    std::thread::scope(|s| {
        s.spawn(|| {
            let root = File::open(&fx.root).unwrap();
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    &root,
                    "swap",
                    &root,
                    "alt",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        for (worker, jail) in jails.iter().enumerate() {
            let (inside_reads, fx) = (&inside_reads, &fx);
            s.spawn(move || {
                let storage = FileStorage::new(jail.clone());
                let targets: [&dyn Target; 2] = [&storage, jail];
                let mut i = 0u64;
                while Instant::now() < deadline {
                    for fs in targets {
                        i += 1;
                        let new = format!("/swap/new-{worker}-{i}");
                        for path in ["/swap/canary.txt", "/swap/only-outside.txt"] {
                            if let Ok(bytes) = fs.read(Path::new(path)) {
                                assert!(!bytes.starts_with(b"SECRET"), "read outside via {path}");
                                inside_reads.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Ok(m) = fs.metadata(Path::new(path)) {
                                assert!(!fx.outside_inodes.contains(&m.inode), "stat outside");
                            }
                        }
                        let _ = fs.write(Path::new(&new), b"PWNED");
                        let _ = fs.append(Path::new("/swap/canary.txt"), b"");
                        let _ = fs.create_dir(Path::new(&format!("{new}.d")));
                        let _ = fs.copy(Path::new("/swap/canary.txt"), Path::new("/swap/copy"));
                        let _ = fs.rename(Path::new("/swap/copy"), Path::new("/swap/moved"));
                        let _ = fs.remove_file(Path::new("/swap/moved"));
                        let _ = fs.symlink(Path::new("/etc"), Path::new(&format!("{new}.l")));
                        let _ = fs.set_permissions(
                            Path::new("/swap/canary.txt"),
                            Permissions::from_mode(0o600),
                        );
                        if let Ok(entries) = fs.read_dir(Path::new("/swap")) {
                            for e in entries.flatten() {
                                assert_ne!(e.name, "only-outside.txt", "listed outside");
                            }
                        }
                    }
                }
            });
        }
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        stop.store(true, Ordering::Relaxed);
    });
    // Put the names back as they were for the final comparison.
    if fx.root.join("swap").is_symlink() {
        std::fs::rename(fx.root.join("swap"), fx.root.join("tmp")).unwrap();
        std::fs::rename(fx.root.join("alt"), fx.root.join("swap")).unwrap();
        std::fs::rename(fx.root.join("tmp"), fx.root.join("alt")).unwrap();
    }
    assert!(
        swaps.load(Ordering::Relaxed) > 100,
        "the swapper barely ran"
    );
    assert!(
        inside_reads.load(Ordering::Relaxed) > 10,
        "the readers never got through"
    );
    assert_eq!(
        snapshot(&fx.w, &fx.root),
        before,
        "the outside tree changed"
    );
}

#[test]
fn renaming_directories_during_dotdot_walks_never_leaks() {
    // `..` is applied to handles already held, so moving a directory while
    // a path climbs out of it cannot lift the walk above the root.
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.root.join("a/b/c")).unwrap();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + race_time();
    let jails = fx.jails();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                // Move `c` up out of `a/b` and back.
                let (from, to) = if flip { ("c", "a/b/c") } else { ("a/b/c", "c") };
                let _ = std::fs::rename(fx.root.join(from), fx.root.join(to));
                flip = !flip;
            }
        });
        for jail in &jails {
            let (fx, stop) = (&fx, &stop);
            s.spawn(move || {
                let fs = FileStorage::new(jail.clone());
                while Instant::now() < deadline {
                    for path in [
                        "/a/b/c/../../../../outside/canary.txt",
                        "/c/../../outside/canary.txt",
                        "/a/b/c/../../../../../w/canary.txt",
                    ] {
                        if let Ok(bytes) = fs.read(path) {
                            panic!("read {path}: {:?}", String::from_utf8_lossy(&bytes));
                        }
                        let _ = fs.write(path, b"PWNED");
                    }
                    let _ = fx;
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
    });
    fx.assert_outside_untouched("dotdot race");
}

#[test]
fn the_suite_catches_a_backend_that_lets_the_host_follow_links() {
    // The same attack against `StdFsBackend`, which hands paths to the host
    // as strings, must fail: otherwise the suite would prove nothing.
    let fx = Fixture::new();
    let unconfined = anyfs::StdFsBackend::at(&fx.root);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        attack(
            &fx,
            &unconfined,
            Path::new("/mid_abs/canary.txt"),
            "[std_fs]",
        );
    }));
    assert!(
        caught.is_err(),
        "an escape through a planted link went unnoticed"
    );
}

/// A streamed replacement of an owner-only file is never readable by
/// others on the host while it fills, and takes the file's mode when it
/// replaces it.
#[test]
fn a_staged_replacement_is_owner_only_until_it_takes_the_files_place() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("private.key");
    std::fs::write(&key, "old").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fs = anyfs::FileStorage::new(anyfs::VRootFsBackend::new(dir.path()).unwrap());
    let mut w = fs.open_write("/private.key").unwrap();
    w.write_all(b"new secret").unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{:?} is {mode:o}", entry.file_name());
    }
    w.commit().unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), b"new secret");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A streamed write whose folder is moved before its commit is refused,
/// never committed under the new name (where a policy could not have
/// judged it: a file staged in `/t1` would appear as `/etc/passwd`).
#[test]
fn a_staged_write_whose_folder_moved_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    for backend in [
        Box::new(anyfs::VRootFsBackend::new(dir.path()).unwrap()) as Box<dyn anyfs::FsFull>,
        Box::new(anyfs::StdFsBackend::at(dir.path())),
    ] {
        let fs = anyfs::FileStorage::new(backend);
        fs.create_dir("/t1").unwrap();
        let mut w = fs.open_write("/t1/passwd").unwrap();
        w.write_all(b"root::0:0::/:/bin/sh").unwrap();
        fs.rename("/t1", "/etc").unwrap();
        // Its folder is gone from where the write was opened.
        let err = w.commit().unwrap_err();
        assert_eq!(err.kind(), anyfs::FsErrorKind::NotFound, "{err}");
        assert!(!fs.exists("/etc/passwd").unwrap());
        assert_eq!(fs.read_dir("/etc").unwrap().count(), 0);
        // Another folder now has its name.
        fs.create_dir("/t2").unwrap();
        let mut w = fs.open_write("/t2/passwd").unwrap();
        w.write_all(b"x").unwrap();
        fs.rename("/t2", "/etc2").unwrap();
        fs.create_dir("/t2").unwrap();
        let err = w.commit().unwrap_err();
        assert_eq!(err.kind(), anyfs::FsErrorKind::Conflict, "{err}");
        assert!(!fs.exists("/etc2/passwd").unwrap());
        assert!(!fs.exists("/t2/passwd").unwrap());
        fs.remove_dir("/t2").unwrap();
        fs.remove_dir("/etc2").unwrap();
        // Where it stayed, it commits.
        let mut w = fs.open_write("/etc/passwd").unwrap();
        w.write_all(b"fine").unwrap();
        w.commit().unwrap();
        fs.remove_dir_all("/etc").unwrap();
        // Names like the backend's own hidden temporary files cannot be
        // made or used: a listing (and a policy's look below a folder)
        // would never see what they hold.
        for attempt in [
            fs.create_dir("/.anyfs-tmp-x").map_err(|e| e.kind()),
            fs.write("/.anyfs-tmp-y", "x").map_err(|e| e.kind()),
            fs.rename("/nothing", "/.anyfs-tmp-z").map_err(|e| e.kind()),
        ] {
            assert_eq!(attempt, Err(anyfs::FsErrorKind::InvalidPath));
        }
    }
}

/// Under a policy that looks below folders, a symlink on a host backend
/// still moves and goes: it is not a folder to look into.
#[test]
fn a_symlink_moves_under_a_policy_that_looks_below_folders() {
    let dir = tempfile::tempdir().unwrap();
    let fs = anyfs::FileStorage::new(
        anyfs::PathFilterLayer::builder()
            .allow("/**")
            .deny("**/secret/**")
            .build()
            .unwrap()
            .layer(anyfs::VRootFsBackend::new(dir.path()).unwrap()),
    );
    fs.create_dir("/x").unwrap();
    fs.symlink("/x", "/l").unwrap();
    fs.rename("/l", "/m").unwrap();
    fs.remove_file("/m").unwrap();
    assert!(fs.exists("/x").unwrap());
}
