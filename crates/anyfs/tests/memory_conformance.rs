//! `MemoryBackend` and `FileStorage<MemoryBackend>` against the whole
//! conformance suite.

use anyfs::MemoryBackend;

anyfs_test::conformance!(MemoryBackend => MemoryBackend::new();
    links, permissions, sync, stats, inode, handles);
