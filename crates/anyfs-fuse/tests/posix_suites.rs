//! The POSIX test suite pjdfstest and the fsx file exerciser against mounted
//! `MemoryBackend` and `SqliteBackend` workspaces.
//!
//! The tools are found on PATH or through `ANYFS_PJDFSTEST` / `ANYFS_FSX`
//! (`.ci/run` installs them with `cargo install pjdfstest fsx`). pjdfstest
//! runs with `pjdfstest.toml` beside this crate, which lists each expected
//! failure with its reason, and needs the users `nobody` and `tests`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use anyfs::{FsFuse, MemoryBackend};
use anyfs_fuse::MountOptions;
use anyfs_sqlite::SqliteBackend;
use common::{Mounted, skip, tool};

/// Returns the tool, or says why the test is skipped (a failure where
/// `ANYFS_REQUIRE_FUSE=1`).
fn require(name: &str, var: &str, test: &str) -> Option<std::path::PathBuf> {
    if skip(test) {
        return None;
    }
    match tool(name, var) {
        Some(path) => Some(path),
        None if std::env::var("ANYFS_REQUIRE_FUSE").as_deref() == Ok("1") => {
            panic!("{test}: `{name}` is required here (cargo install {name})")
        }
        None => {
            eprintln!("{test}: skipped, `{name}` not found (cargo install {name})");
            None
        }
    }
}

fn pjdfstest_on<B: FsFuse + 'static>(backend: B, test: &str) {
    let Some(pjdfstest) = require("pjdfstest", "ANYFS_PJDFSTEST", test) else {
        return;
    };
    let mounted = Mounted::with_options(
        backend,
        MountOptions {
            // The suite switches to other users.
            allow_other: true,
            ..MountOptions::default()
        },
    );
    let work = mounted.path().join("pjdfstest");
    std::fs::create_dir(&work).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjdfstest.toml");
    let out = Command::new(pjdfstest)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&work)
        .current_dir(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Summary"))
        .unwrap_or("no summary");
    eprintln!("{test}: {summary}");
    assert!(
        out.status.success(),
        "{test}: pjdfstest failed: {summary}\n{}\n{}",
        stdout
            .lines()
            .filter(|l| l.contains("FAILED"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    mounted.unmount();
}

fn fsx_on<B: FsFuse + 'static>(backend: B, test: &str) {
    let Some(fsx) = require("fsx", "ANYFS_FSX", test) else {
        return;
    };
    let mounted = Mounted::new(backend);
    let artifacts = tempfile::tempdir().unwrap();
    let out = Command::new(fsx)
        .args(["-N", "20000", "-S", "20261126", "-P"])
        .arg(artifacts.path())
        .arg(mounted.path().join("fsx.data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{test}: fsx failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    mounted.unmount();
}

#[test]
fn pjdfstest_on_memory() {
    pjdfstest_on(MemoryBackend::new(), "pjdfstest_on_memory");
}

#[test]
fn pjdfstest_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("pjd.db")).unwrap();
    pjdfstest_on(backend, "pjdfstest_on_sqlite");
}

#[test]
fn fsx_on_memory() {
    fsx_on(MemoryBackend::new(), "fsx_on_memory");
}

#[test]
fn fsx_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("fsx.db")).unwrap();
    fsx_on(backend, "fsx_on_sqlite");
}
