//! The host backends against the conformance suite, each in a fresh
//! temporary directory: `VRootFsBackend` with `openat2` and with the portable
//! handle-by-handle walk, and `StdFsBackend`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::{StdFsBackend, VRootFsBackend};
use tempfile::TempDir;

/// A backend together with the directory it lives in, removed on drop.
macro_rules! in_temp_dir {
    ($name:ident, $backend:ty, |$dir:ident| $make:expr) => {
        #[derive(Debug)]
        struct $name {
            fs: $backend,
            _dir: TempDir,
        }

        impl $name {
            fn new() -> Self {
                let $dir = tempfile::tempdir().unwrap();
                let fs = $make;
                Self { fs, _dir: $dir }
            }
        }

        impl anyfs::middleware::Middleware for $name {
            type Inner = $backend;
            fn inner(&self) -> &$backend {
                &self.fs
            }
        }
    };
}

in_temp_dir!(Jail, VRootFsBackend, |dir| VRootFsBackend::new(dir.path())
    .unwrap());
in_temp_dir!(WalkJail, VRootFsBackend, |dir| {
    VRootFsBackend::new(dir.path())
        .unwrap()
        .force_component_walk()
});
in_temp_dir!(Host, StdFsBackend, |dir| StdFsBackend::at(dir.path()));

#[test]
fn this_kernel_has_openat2() {
    // The conformance run below is meant to exercise openat2; say so if the
    // kernel lacks it rather than silently testing the fallback twice.
    assert!(Jail::new().fs.uses_openat2());
}

anyfs_test::conformance!(mod vroot, Jail => Jail::new(); links, permissions, sync, stats);
anyfs_test::conformance!(mod vroot_walk, WalkJail => WalkJail::new(); links, permissions, sync, stats);
anyfs_test::conformance!(mod std_fs, Host => Host::new(); links, permissions, sync, stats);
