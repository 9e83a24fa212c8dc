//! `MemoryBackend` and `FileStorage<MemoryBackend>` against the whole
//! conformance suite.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::MemoryBackend;

anyfs_test::conformance!(MemoryBackend => MemoryBackend::new();
    links, permissions, sync, stats, inode, handles);
