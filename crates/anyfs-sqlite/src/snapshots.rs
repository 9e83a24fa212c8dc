//! [`FsSnapshots`] for both backends: snapshots and branches are more
//! trees of the same database (see the store's `trees` module), opened as
//! backends of the same kind.

use anyfs::FsResult;
use anyfs::snapshots::{BranchId, BranchInfo, FsSnapshots, SnapshotId, SnapshotInfo};

use crate::{IndexedBackend, SqliteBackend};

macro_rules! snapshots_of {
    ($($backend:ident),*) => {$(
        /// Snapshots and branches share content with the workspace (chunks
        /// or blob files are named, never copied); taking one copies a few
        /// rows per file, in one write transaction. A snapshot opens as a
        /// backend that refuses every change; a branch as a backend of its
        /// own over the same database.
        impl FsSnapshots for $backend {
            type View = $backend;
            type Branch = $backend;

            fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo> {
                self.store.create_snapshot(name)
            }
            fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
                self.store.snapshots()
            }
            fn open_snapshot(&self, id: SnapshotId) -> FsResult<$backend> {
                Ok($backend { store: self.store.open_snapshot(id)? })
            }
            fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()> {
                self.store.delete_snapshot(id)
            }
            fn restore(&self, id: SnapshotId) -> FsResult<()> {
                self.store.restore(id)
            }
            fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo> {
                self.store.branch(from, name)
            }
            fn branches(&self) -> FsResult<Vec<BranchInfo>> {
                self.store.branches()
            }
            fn open_branch(&self, id: BranchId) -> FsResult<$backend> {
                Ok($backend { store: self.store.open_branch(id)? })
            }
            fn delete_branch(&self, id: BranchId) -> FsResult<()> {
                self.store.delete_branch(id)
            }
            fn snapshot_branch(&self, id: BranchId) -> FsResult<SnapshotId> {
                self.store.snapshot_branch(id)
            }
            fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> FsResult<()> {
                self.store.set_branch_base(id, base)
            }
        }
    )*};
}
snapshots_of!(SqliteBackend, IndexedBackend);
