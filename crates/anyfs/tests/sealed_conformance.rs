//! `FileEncryption` and `IntegrityVerified` over `MemoryBackend` against the
//! conformance suite (without hard links, which sealed content refuses: it
//! is bound to one path).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::crypto::Key;
use anyfs::{FileEncryption, IntegrityVerified, MemoryBackend};

fn key() -> Key {
    Key::from_bytes([7; 32])
}

anyfs_test::conformance!(mod encrypted, FileEncryption<MemoryBackend> =>
    FileEncryption::new(MemoryBackend::new()).with_key(key());
    permissions, sync, stats, inode);

anyfs_test::conformance!(mod authenticated, IntegrityVerified<MemoryBackend> =>
    IntegrityVerified::new(MemoryBackend::new()).with_key(key());
    permissions, sync, stats, inode);

anyfs_test::conformance!(mod encrypted_memory, anyfs::EncryptedMemoryBackend =>
    anyfs::EncryptedMemoryBackend::new(key());
    links, permissions, sync, stats);
