//! `MemoryBackend` and `FileStorage<MemoryBackend>` against the whole
//! conformance suite.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::MemoryBackend;

anyfs_test::conformance!(MemoryBackend => MemoryBackend::new();
    links, permissions, sync, stats, inode, handles);

/// A file at `/f` in `fs` cannot grow to `far` bytes, by `write_range` or
/// `truncate`: "no space", naming the path, and the file unchanged.
fn refuses_to_grow_to<B: anyfs::Fs>(fs: &anyfs::FileStorage<B>, far: u64, name: &str) {
    fs.write("/f", b"small").unwrap();
    for err in [
        fs.write_range("/f", far, b"x").unwrap_err(),
        fs.truncate("/f", far).unwrap_err(),
    ] {
        assert_eq!(err.errno(), libc::ENOSPC, "{name}: {err}");
        assert!(err.to_string().contains("/f"), "{name}: {err}");
    }
    assert_eq!(fs.read("/f").unwrap(), b"small", "{name}");
}

/// Memory is a memory backend's disk: growing a file past what the host can
/// give is "no space left", never an abort or an out-of-memory kill.
#[test]
fn growing_past_the_hosts_memory_is_no_space() {
    use anyfs::{EncryptedMemoryBackend, FileStorage, FsStats};
    let far = 1u64 << 45; // 32 TiB
    let memory = FileStorage::new(MemoryBackend::new());
    refuses_to_grow_to(&memory, far, "MemoryBackend");
    {
        use anyfs::{FsHandles, OpenFlags};
        let backend = memory.backend();
        let h = backend
            .open(std::path::Path::new("/f"), OpenFlags::READ_WRITE)
            .unwrap();
        let err = backend.write_at(h, b"x", far).unwrap_err();
        assert_eq!(
            err.errno(),
            libc::ENOSPC,
            "write_at through a handle: {err}"
        );
        backend.close(h).unwrap();
    }
    assert_eq!(memory.read("/f").unwrap(), b"small");
    let free = memory.backend().statfs().unwrap().available_bytes;
    assert!(free < far, "statfs says {free} bytes are free");

    let sealed = FileStorage::new(EncryptedMemoryBackend::new(
        anyfs::crypto::Key::random().unwrap(),
    ));
    refuses_to_grow_to(&sealed, far, "EncryptedMemoryBackend");
}
