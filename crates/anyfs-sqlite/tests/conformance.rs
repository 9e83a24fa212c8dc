//! `SqliteBackend` (on disk, with group commit, in memory, encrypted) and
//! `IndexedBackend` (with and without group commit) against the whole
//! conformance suite.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::snapshots::{BranchId, BranchInfo, SnapshotId, SnapshotInfo};
use anyfs_sqlite::{IndexedBackend, SqliteBackend, SqliteOptions};
use tempfile::TempDir;

/// A backend in a temporary directory that outlives it.
macro_rules! in_temp_dir {
    ($name:ident, $backend:ty) => {
        struct $name {
            backend: $backend,
            _dir: TempDir,
        }
        impl anyfs::middleware::Middleware for $name {
            type Inner = $backend;
            fn inner(&self) -> &$backend {
                &self.backend
            }
        }
        impl anyfs::FsSnapshots for $name {
            type View = $backend;
            type Branch = $backend;
            fn create_snapshot(&self, name: &str) -> anyfs::FsResult<SnapshotInfo> {
                self.backend.create_snapshot(name)
            }
            fn snapshots(&self) -> anyfs::FsResult<Vec<SnapshotInfo>> {
                self.backend.snapshots()
            }
            fn open_snapshot(&self, id: SnapshotId) -> anyfs::FsResult<$backend> {
                self.backend.open_snapshot(id)
            }
            fn delete_snapshot(&self, id: SnapshotId) -> anyfs::FsResult<()> {
                self.backend.delete_snapshot(id)
            }
            fn restore(&self, id: SnapshotId) -> anyfs::FsResult<()> {
                self.backend.restore(id)
            }
            fn branch(&self, from: SnapshotId, name: &str) -> anyfs::FsResult<BranchInfo> {
                self.backend.branch(from, name)
            }
            fn branches(&self) -> anyfs::FsResult<Vec<BranchInfo>> {
                self.backend.branches()
            }
            fn open_branch(&self, id: BranchId) -> anyfs::FsResult<$backend> {
                self.backend.open_branch(id)
            }
            fn delete_branch(&self, id: BranchId) -> anyfs::FsResult<()> {
                self.backend.delete_branch(id)
            }
            fn snapshot_branch(&self, id: BranchId) -> anyfs::FsResult<SnapshotId> {
                self.backend.snapshot_branch(id)
            }
            fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> anyfs::FsResult<()> {
                self.backend.set_branch_base(id, base)
            }
        }
    };
}

in_temp_dir!(OnDisk, SqliteBackend);
in_temp_dir!(Indexed, IndexedBackend);
in_temp_dir!(Grouped, SqliteBackend);
in_temp_dir!(IndexedGrouped, IndexedBackend);

fn on_disk() -> OnDisk {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("fs.db")).unwrap();
    OnDisk { backend, _dir: dir }
}

fn group_commit() -> SqliteOptions {
    SqliteOptions {
        group_commit: Some(std::time::Duration::from_millis(10)),
        ..SqliteOptions::default()
    }
}

fn grouped() -> Grouped {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        SqliteBackend::open_with_options(dir.path().join("fs.db"), group_commit()).unwrap();
    Grouped { backend, _dir: dir }
}

fn indexed_grouped() -> IndexedGrouped {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        IndexedBackend::open_with_options(dir.path().join("store"), group_commit()).unwrap();
    IndexedGrouped { backend, _dir: dir }
}

fn indexed() -> Indexed {
    let dir = tempfile::tempdir().unwrap();
    let backend = IndexedBackend::open(dir.path().join("store")).unwrap();
    Indexed { backend, _dir: dir }
}

anyfs_test::conformance!(mod sqlite_on_disk, OnDisk => on_disk();
    links, permissions, sync, stats, inode, handles, snapshots);
anyfs_test::conformance!(mod sqlite_group_commit, Grouped => grouped();
    links, permissions, sync, stats, inode, handles, snapshots);
anyfs_test::conformance!(mod sqlite_in_memory, SqliteBackend => SqliteBackend::open_in_memory().unwrap();
    links, permissions, sync, stats, inode, handles, snapshots);
anyfs_test::conformance!(mod indexed, Indexed => indexed();
    links, permissions, sync, stats, inode, handles, snapshots);
anyfs_test::conformance!(mod indexed_group_commit, IndexedGrouped => indexed_grouped();
    links, permissions, sync, stats, inode, handles, snapshots);

#[cfg(feature = "encryption")]
mod encrypted {
    use super::*;
    in_temp_dir!(Encrypted, SqliteBackend);

    /// A raw key: SQLCipher encrypts every page the same way as with a
    /// password, without the deliberately slow key derivation per open
    /// (the model test opens thousands of databases). Passwords are tested
    /// in `at_rest.rs`.
    fn encrypted() -> Encrypted {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            SqliteBackend::open_with_key(dir.path().join("secret.db"), &[0x5a; 32]).unwrap();
        Encrypted { backend, _dir: dir }
    }

    anyfs_test::conformance!(mod sqlite_encrypted, Encrypted => encrypted();
        links, permissions, sync, stats, inode, handles, snapshots);
}
