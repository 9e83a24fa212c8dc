//! The table of open [`FsHandles`](anyfs::FsHandles) handles: handle number
//! to the file it was opened on, in the library's [`HandleTable`].

use std::path::PathBuf;

use anyfs::{FsResult, Handle, HandleTable, OpenFlags};
use parking_lot::Mutex;

/// What a handle was opened on.
#[derive(Debug, Clone)]
pub(super) struct OpenFile {
    pub(super) ino: i64,
    pub(super) path: PathBuf,
    pub(super) flags: OpenFlags,
}

/// Open handles, numbered from 1 and never reused.
#[derive(Default)]
pub(super) struct OpenFiles {
    files: Mutex<HandleTable<OpenFile>>,
}

impl OpenFiles {
    /// Gives `file` a new handle.
    pub(super) fn insert(&self, file: OpenFile) -> Handle {
        self.files.lock().open(file)
    }

    /// What `handle` was opened on.
    pub(super) fn get(&self, handle: Handle) -> FsResult<OpenFile> {
        self.files.lock().lookup(handle).cloned()
    }

    /// Closes `handle`, giving what it was opened on.
    pub(super) fn remove(&self, handle: Handle) -> FsResult<OpenFile> {
        self.files.lock().close(handle)
    }
}
