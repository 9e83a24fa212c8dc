//! Node ids the kernel forgets are dropped: a mount's memory does not grow
//! with every file it has ever shown, and files stay usable afterwards.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{Mounted, skip};

const FILES: usize = 3_000;

/// Asks the kernel to drop its name and inode caches (root only).
fn drop_kernel_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "2").is_ok()
}

#[test]
fn forgotten_nodes_are_dropped_and_files_stay_usable() {
    if skip("forgotten_nodes_are_dropped_and_files_stay_usable") {
        return;
    }
    let mounted = Mounted::new(anyfs::MemoryBackend::new());
    let root = mounted.path().to_path_buf();
    let handle = mounted.handle.as_ref().unwrap();
    for d in 0..30 {
        std::fs::create_dir(root.join(format!("d{d}"))).unwrap();
    }
    for i in 0..FILES {
        std::fs::write(root.join(format!("d{}/f{i}", i % 30)), i.to_string()).unwrap();
    }
    // A file held open across the forgetting.
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("d0/f0"))
        .unwrap();
    assert!(handle.node_ids() > FILES, "every file seen has a node id");

    if !drop_kernel_caches() {
        eprintln!("cannot drop the kernel's caches here (not root): forgetting not checked");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.node_ids() > FILES / 10 {
        assert!(
            Instant::now() < deadline,
            "{} node ids are still kept after the kernel forgot them",
            handle.node_ids()
        );
        drop_kernel_caches();
        std::thread::sleep(Duration::from_millis(50));
    }

    // Everything is still there, under the same names and content.
    for i in 0..FILES {
        let path = root.join(format!("d{}/f{i}", i % 30));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), i.to_string());
    }
    // The open file still reads and writes through its handle.
    held.seek(SeekFrom::Start(0)).unwrap();
    held.write_all(b"changed while forgotten").unwrap();
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    held.read_to_string(&mut back).unwrap();
    assert_eq!(back, "changed while forgotten");
    drop(held);
    assert_eq!(
        std::fs::read_to_string(root.join("d0/f0")).unwrap(),
        "changed while forgotten"
    );
    // Hard links still share one inode number after being looked up again.
    std::fs::hard_link(root.join("d1/f1"), root.join("d2/link")).unwrap();
    drop_kernel_caches();
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(root.join("d1/f1")).unwrap();
    let b = std::fs::metadata(root.join("d2/link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    mounted.unmount();
}
