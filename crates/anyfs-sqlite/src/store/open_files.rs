//! The table of open [`FsHandles`](anyfs::FsHandles) handles: handle number
//! to the file it was opened on. Only [`OpenFiles::insert`],
//! [`OpenFiles::get`] and [`OpenFiles::remove`] are used from outside, so
//! the table can be replaced without touching its callers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyfs::{FsError, FsResult, Handle, OpenFlags};
use parking_lot::Mutex;

/// What a handle was opened on.
#[derive(Debug, Clone)]
pub(super) struct OpenFile {
    pub(super) ino: i64,
    pub(super) path: PathBuf,
    pub(super) flags: OpenFlags,
}

/// Open handles, numbered from 1 and never reused.
pub(super) struct OpenFiles {
    files: Mutex<HashMap<u64, OpenFile>>,
    next: AtomicU64,
}

impl Default for OpenFiles {
    fn default() -> Self {
        Self {
            files: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl OpenFiles {
    /// Gives `file` a new handle.
    pub(super) fn insert(&self, file: OpenFile) -> Handle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(id, file);
        Handle(id)
    }

    /// What `handle` was opened on.
    pub(super) fn get(&self, handle: Handle) -> FsResult<OpenFile> {
        self.files
            .lock()
            .get(&handle.0)
            .cloned()
            .ok_or_else(|| not_open(handle))
    }

    /// Closes `handle`, giving what it was opened on.
    pub(super) fn remove(&self, handle: Handle) -> FsResult<OpenFile> {
        self.files
            .lock()
            .remove(&handle.0)
            .ok_or_else(|| not_open(handle))
    }
}

fn not_open(handle: Handle) -> FsError {
    FsError::not_found(PathBuf::from(format!("<handle {}>", handle.0)))
}
