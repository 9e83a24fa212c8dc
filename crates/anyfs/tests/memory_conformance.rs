//! `MemoryBackend` and `FileStorage<MemoryBackend>` against the whole
//! conformance suite.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::MemoryBackend;

anyfs_test::conformance!(MemoryBackend => MemoryBackend::new();
    links, permissions, sync, stats, inode, handles);

/// Memory is a memory backend's disk: growing a file past what the host can
/// give is "no space left", never an abort or an out-of-memory kill.
#[test]
fn growing_past_the_hosts_memory_is_no_space() {
    use anyfs::{EncryptedMemoryBackend, FileStorage, FsStats};
    let far = 1u64 << 45; // 32 TiB
    let check = |fs: &dyn Fn(u64, bool) -> anyfs::FsResult<()>, name: &str| {
        for truncate in [false, true] {
            let err = fs(far, truncate).unwrap_err();
            assert_eq!(err.errno(), libc::ENOSPC, "{name}: {err}");
            assert!(err.to_string().contains("/f"), "{name}: {err}");
        }
    };
    let memory = FileStorage::new(MemoryBackend::new());
    memory.write("/f", b"small").unwrap();
    check(
        &|at, truncate| {
            if truncate {
                memory.truncate("/f", at)
            } else {
                memory.write_range("/f", at, b"x")
            }
        },
        "MemoryBackend",
    );
    assert_eq!(memory.read("/f").unwrap(), b"small");
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
    sealed.write("/f", b"small").unwrap();
    check(
        &|at, truncate| {
            if truncate {
                sealed.truncate("/f", at)
            } else {
                sealed.write_range("/f", at, b"x")
            }
        },
        "EncryptedMemoryBackend",
    );
    assert_eq!(sealed.read("/f").unwrap(), b"small");
}
