//! Mounting for tests: FUSE needs /dev/fuse and the right to mount (root in
//! CI). Without them the tests say so and pass, unless
//! `ANYFS_REQUIRE_FUSE=1` (set by `.ci/run`) makes that a failure.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyfs::FsFuse;
use anyfs_fuse::{MountHandle, MountOptions};
use tempfile::TempDir;

/// Whether a FUSE mount can be made here; otherwise, why not.
pub(crate) fn fuse_missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let probe = tempfile::tempdir().unwrap();
    match anyfs_fuse::mount(
        anyfs::MemoryBackend::new(),
        probe.path(),
        MountOptions::default(),
    ) {
        Ok(handle) => {
            drop(handle);
            None
        }
        Err(e) => Some(format!("cannot mount: {e}")),
    }
}

/// Returns true (and says so) when the test must be skipped.
pub(crate) fn skip(test: &str) -> bool {
    match fuse_missing() {
        None => false,
        Some(why) if std::env::var("ANYFS_REQUIRE_FUSE").as_deref() == Ok("1") => {
            panic!("{test}: FUSE is required here but {why}")
        }
        Some(why) => {
            eprintln!("{test}: skipped, {why}");
            true
        }
    }
}

/// A backend mounted on a fresh directory.
pub(crate) struct Mounted {
    pub(crate) handle: Option<MountHandle>,
    pub(crate) dir: TempDir,
}

impl Mounted {
    pub(crate) fn new<B: FsFuse + 'static>(backend: B) -> Self {
        Self::with_options(backend, MountOptions::default())
    }

    pub(crate) fn with_options<B: FsFuse + 'static>(backend: B, options: MountOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("anyfs-mnt-")
            .tempdir()
            .unwrap();
        let handle = anyfs_fuse::mount(backend, dir.path(), options).unwrap();
        Self {
            handle: Some(handle),
            dir,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn unmount(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.unmount().unwrap();
        }
    }
}

/// Runs `sh -c script` in `dir`, failing the test with its output if it fails.
#[track_caller]
pub(crate) fn sh(dir: &Path, script: &str) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed in {}:\nstdout: {}\nstderr: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A program from PATH or from the environment variable `var`.
pub(crate) fn tool(name: &str, var: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
