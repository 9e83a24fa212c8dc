//! The account's tree lock, taken by each file operation of a mounted
//! stack (a command's, `POST /v1/exec`) as HTTP takes it for a request:
//! shared by every change, alone by those that may take a whole folder
//! (move, copy, removing a directory). A policy's judging of every path
//! below a folder and the change itself then happen with no other change
//! of the account in between, as they do over HTTP (see
//! `operation::Access`).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyfs::middleware::Middleware;
use anyfs::{FsFuse, FsResult, FsWriter, Permissions};
use parking_lot::RwLock;

use crate::workspace::Stack;

/// A stack whose changes take the account's tree lock.
pub(crate) struct TreeLocked {
    inner: Stack,
    tree: Arc<RwLock<()>>,
}

impl TreeLocked {
    pub(crate) fn new(inner: Stack, tree: Arc<RwLock<()>>) -> Self {
        Self { inner, tree }
    }
}

impl Middleware for TreeLocked {
    type Inner = dyn FsFuse + 'static;

    fn inner(&self) -> &Self::Inner {
        &*self.inner
    }

    // Changes: the lock shared.

    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.write(path, data)
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.append(path, data)
    }

    fn write_range(&self, path: &Path, offset: u64, data: &[u8]) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.write_range(path, offset, data)
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.write_ranges(path, ranges)
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.remove_file(path)
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.truncate(path, size)
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        let _shared = self.tree.read();
        self.inner.open_write(path)
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.create_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.create_dir_all(path)
    }

    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.symlink(target, link)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.hard_link(original, link)
    }

    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.set_permissions(path, perm)
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.set_times(path, accessed, modified)
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let _shared = self.tree.read();
        self.inner.set_owner(path, uid, gid)
    }

    // Whole folders: the lock alone.

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let _alone = self.tree.write();
        self.inner.rename(from, to)
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let _alone = self.tree.write();
        self.inner.copy(from, to)
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let _alone = self.tree.write();
        self.inner.remove_dir(path)
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let _alone = self.tree.write();
        self.inner.remove_dir_all(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;
    use anyfs::{FsDir, FsRead, FsWrite, MemoryBackend};
    use std::time::Duration;

    /// Whether `op` on the locked stack waits while the test holds the
    /// lock (alone, or shared), and completes once it is let go.
    fn waits_for(alone: bool, op: impl FnOnce(&TreeLocked) + Send + 'static) -> bool {
        let backend = MemoryBackend::new();
        FsDir::create_dir_all(&backend, Path::new("/d/e")).unwrap();
        FsWrite::write(&backend, Path::new("/d/e/f"), b"x").unwrap();
        let tree = Arc::new(RwLock::new(()));
        let locked = TreeLocked::new(Arc::new(backend), tree.clone());
        let (done, finished) = std::sync::mpsc::channel();
        let held_write = alone.then(|| tree.write());
        let held_read = (!alone).then(|| tree.read());
        let worker = std::thread::spawn(move || {
            op(&locked);
            done.send(()).unwrap();
        });
        let waited = finished.recv_timeout(Duration::from_millis(300)).is_err();
        drop((held_write, held_read));
        if waited {
            finished.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        worker.join().unwrap();
        waited
    }

    #[test]
    fn changes_wait_for_a_whole_folder_operation_and_not_for_each_other() {
        // A whole-folder operation elsewhere holds the lock alone.
        assert!(waits_for(true, |fs| FsWrite::write(
            fs,
            Path::new("/g"),
            b"y"
        )
        .unwrap()));
        assert!(waits_for(true, |fs| FsDir::create_dir(fs, Path::new("/h")).unwrap()));
        assert!(waits_for(true, |fs| FsWrite::remove_file(
            fs,
            Path::new("/d/e/f")
        )
        .unwrap()));
        // Other changes share it.
        assert!(!waits_for(false, |fs| FsWrite::write(
            fs,
            Path::new("/g"),
            b"y"
        )
        .unwrap()));
        // Reads take nothing.
        assert!(!waits_for(true, |fs| {
            FsRead::read(fs, Path::new("/d/e/f")).unwrap();
        }));
    }

    #[test]
    fn a_move_copy_or_folder_removal_waits_for_every_change() {
        assert!(waits_for(false, |fs| FsWrite::rename(
            fs,
            Path::new("/d"),
            Path::new("/m")
        )
        .unwrap()));
        assert!(waits_for(false, |fs| FsWrite::copy(
            fs,
            Path::new("/d/e/f"),
            Path::new("/c")
        )
        .unwrap()));
        assert!(waits_for(false, |fs| FsDir::remove_dir_all(
            fs,
            Path::new("/d")
        )
        .unwrap()));
    }
}
