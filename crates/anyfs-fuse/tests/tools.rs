//! Real tools on a mounted workspace: the shell's file commands, tar, a
//! Python script and git, on `MemoryBackend` and `SqliteBackend`; then the
//! SQLite workspace is mounted again and everything must still be there.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs::MemoryBackend;
use anyfs::prelude::*;
use anyfs_sqlite::SqliteBackend;
use common::{Mounted, sh, skip};

/// The work an agent does in a workspace, checked step by step.
fn workflow(root: &Path) {
    sh(
        root,
        "mkdir -p src/deep/er && echo 'fn main() {}' > src/main.rs",
    );
    sh(
        root,
        "printf 'line one\\nline two\\n' > notes.txt && echo 'line three' >> notes.txt",
    );
    let out = sh(root, "cat notes.txt | wc -l");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    sh(
        root,
        "mv notes.txt src/deep/notes.txt && test ! -e notes.txt",
    );
    sh(
        root,
        "ln -s src/deep/notes.txt link && test \"$(cat link | head -1)\" = 'line one'",
    );
    sh(root, "cp -r src copy && diff -r src copy");
    sh(root, "rm -rf copy && test ! -e copy");
    // tar: create, extract elsewhere, compare.
    sh(
        root,
        "tar cf archive.tar src && mkdir unpacked && tar xf archive.tar -C unpacked && diff -r src unpacked/src",
    );
    sh(root, "rm -rf unpacked archive.tar");
    // A Python script writing and reading files, with seek and append.
    sh(
        root,
        r#"python3 - <<'PY'
import os
os.makedirs('py/out', exist_ok=True)
with open('py/out/data.bin', 'wb') as f:
    f.write(bytes(range(256)) * 1000)
with open('py/out/data.bin', 'r+b') as f:
    f.seek(1000)
    f.write(b'PATCH')
with open('py/out/data.bin', 'ab') as f:
    f.write(b'TAIL')
data = open('py/out/data.bin', 'rb').read()
assert len(data) == 256000 + 4, len(data)
assert data[1000:1005] == b'PATCH' and data.endswith(b'TAIL')
os.rename('py/out/data.bin', 'py/data.bin')
assert sorted(os.listdir('py')) == ['data.bin', 'out']
PY"#,
    );
    // git: a repository, a commit, a clean status.
    sh(
        root,
        "git init -q repo && cd repo && git config user.email a@example.com && \
         git config user.name agent && echo hello > README && git add README && \
         git commit -q -m first && test -z \"$(git status --porcelain)\" && \
         git log --oneline | grep -q first",
    );
    // Permissions and times as tools set them.
    sh(
        root,
        "chmod 600 src/main.rs && test \"$(stat -c %a src/main.rs)\" = 600",
    );
    sh(
        root,
        "touch -d '2001-09-09 01:46:40 UTC' src/main.rs && test \"$(stat -c %Y src/main.rs)\" = 1000000000",
    );
}

/// What must still be there after a remount.
fn still_there(root: &Path) {
    sh(
        root,
        "test \"$(cat src/deep/notes.txt | tail -1)\" = 'line three'",
    );
    sh(
        root,
        "test -L link && test \"$(readlink link)\" = src/deep/notes.txt",
    );
    sh(root, "test \"$(stat -c %s py/data.bin)\" = 256004");
    sh(
        root,
        "cd repo && git log --oneline | grep -q first && test -z \"$(git status --porcelain)\"",
    );
    sh(
        root,
        "test \"$(stat -c %a src/main.rs)\" = 600 && test \"$(stat -c %Y src/main.rs)\" = 1000000000",
    );
}

#[test]
fn tools_on_a_memory_workspace() {
    if skip("tools_on_a_memory_workspace") {
        return;
    }
    let mounted = Mounted::new(MemoryBackend::new());
    workflow(mounted.path());
    still_there(mounted.path());
    mounted.unmount();
}

#[test]
fn tools_on_a_sqlite_workspace_survive_a_remount() {
    if skip("tools_on_a_sqlite_workspace_survive_a_remount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workspace.db");
    let mounted = Mounted::new(SqliteBackend::open(&db).unwrap());
    workflow(mounted.path());
    mounted.unmount();
    let again = Mounted::new(SqliteBackend::open(&db).unwrap());
    still_there(again.path());
    again.unmount();
}

#[test]
fn errors_reach_programs_as_their_own_errno() {
    if skip("errors_reach_programs_as_their_own_errno") {
        return;
    }
    use anyfs::{PathFilterLayer, QuotaLayer};
    let backend = MemoryBackend::new();
    let quota = QuotaLayer::builder()
        .max_total_size(64 * 1024)
        .build()
        .layer(backend);
    let stack = PathFilterLayer::builder()
        .allow("/**")
        .deny("**/secrets/**")
        .build()
        .unwrap()
        .layer(quota);
    let mounted = Mounted::new(stack);
    let root = mounted.path();
    // A quota hit is reported at write(), as ENOSPC, never EIO…
    let big = std::fs::write(root.join("big"), vec![0u8; 128 * 1024]).unwrap_err();
    assert_eq!(big.raw_os_error(), Some(libc::ENOSPC), "{big}");
    // …and where the backend itself refuses (here at close, when a copy of
    // a file inside the quota would exceed it), as EDQUOT.
    std::fs::write(root.join("half"), vec![1u8; 40 * 1024]).unwrap();
    let copy = std::process::Command::new("cp")
        .arg(root.join("half"))
        .arg(root.join("half2"))
        .output()
        .unwrap();
    assert!(!copy.status.success());
    assert!(
        String::from_utf8_lossy(&copy.stderr).contains("quota")
            || String::from_utf8_lossy(&copy.stderr).contains("space"),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    // A policy denial is EACCES.
    let denied = std::fs::create_dir_all(root.join("secrets/keys")).unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
    // A symlink loop is ELOOP.
    std::os::unix::fs::symlink("b", root.join("a")).unwrap();
    std::os::unix::fs::symlink("a", root.join("b")).unwrap();
    let looped = std::fs::read(root.join("a")).unwrap_err();
    assert_eq!(looped.raw_os_error(), Some(libc::ELOOP), "{looped}");
    // A name over 255 bytes is ENAMETOOLONG.
    let long = std::fs::write(root.join("n".repeat(256)), b"x").unwrap_err();
    assert_eq!(long.raw_os_error(), Some(libc::ENAMETOOLONG), "{long}");
    mounted.unmount();

    // A memory workspace's disk is the host's memory: a write far past it
    // is ENOSPC at write(), not a mount run out of memory.
    let mounted = Mounted::new(MemoryBackend::new());
    let sparse = mounted.path().join("sparse");
    std::fs::write(&sparse, b"x").unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap();
    let far = std::os::unix::fs::FileExt::write_at(&file, b"y", 1 << 45).unwrap_err();
    assert_eq!(far.raw_os_error(), Some(libc::ENOSPC), "{far}");
    drop(file);
    assert_eq!(std::fs::read(&sparse).unwrap(), b"x");
    mounted.unmount();
}

#[test]
fn a_read_only_mount_refuses_changes_with_erofs() {
    if skip("a_read_only_mount_refuses_changes_with_erofs") {
        return;
    }
    let backend = MemoryBackend::new();
    anyfs::FsWrite::write(&backend, Path::new("/kept.txt"), b"kept").unwrap();
    let mounted = Mounted::with_options(
        anyfs::ReadOnly::new(backend),
        anyfs_fuse::MountOptions {
            read_only: true,
            ..Default::default()
        },
    );
    let root = mounted.path();
    assert_eq!(std::fs::read(root.join("kept.txt")).unwrap(), b"kept");
    let err = std::fs::write(root.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    mounted.unmount();
}
