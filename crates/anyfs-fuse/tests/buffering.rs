//! Writes through the mount are buffered per open file and committed at
//! close. Alone in its own test binary: a process forked by a test running
//! beside it would close inherited copies of the file descriptor, and every
//! close of a FUSE file is a flush, which commits (as POSIX has it).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs::MemoryBackend;
use common::{Mounted, skip};

#[test]
fn writes_are_buffered_until_close_and_visible_before() {
    if skip("writes_are_buffered_until_close_and_visible_before") {
        return;
    }
    use std::io::{Read, Seek, Write};
    let backend = MemoryBackend::new();
    let mounted = Mounted::new(backend.clone());
    let path = mounted.path().join("f");
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..100 {
        file.write_all(&[7u8; 4096]).unwrap();
    }
    // Not yet committed to the backend: written by the kernel page by page,
    // held by the mount.
    assert_eq!(
        anyfs::FsRead::metadata(&backend, Path::new("/f"))
            .unwrap()
            .len,
        0
    );
    // But the file is whole to anyone looking through the mount.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 409_600);
    let mut other = std::fs::File::open(&path).unwrap();
    other.seek(std::io::SeekFrom::Start(409_596)).unwrap();
    let mut tail = Vec::new();
    other.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, [7u8; 4]);
    drop(other);
    drop(file);
    // Closed: committed in one write.
    assert_eq!(
        anyfs::FsRead::metadata(&backend, Path::new("/f"))
            .unwrap()
            .len,
        409_600
    );
    mounted.unmount();
}
