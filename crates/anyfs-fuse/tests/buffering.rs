//! Writes through the mount are buffered per open file and committed at
//! close. Alone in its own test binary: a process forked by a test running
//! beside it would close inherited copies of the file descriptor, and every
//! close of a FUSE file is a flush, which commits (as POSIX has it).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs::FsWrite as _;
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

/// Counts the bytes handed to the backend by whole-file writes, by appends
/// and by writes in place.
#[derive(Clone)]
struct Counting {
    inner: MemoryBackend,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    appended: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ranged: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counting {
    fn new() -> Self {
        Self {
            inner: MemoryBackend::new(),
            written: Default::default(),
            appended: Default::default(),
            ranged: Default::default(),
        }
    }

    /// Bytes written whole, appended and written in place so far.
    fn counts(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.written.load(Relaxed),
            self.appended.load(Relaxed),
            self.ranged.load(Relaxed),
        )
    }
}

/// Counts what reaches the backend; everything else is forwarded.
impl anyfs::middleware::Middleware for Counting {
    type Inner = MemoryBackend;
    fn inner(&self) -> &MemoryBackend {
        &self.inner
    }
    fn write(&self, path: &Path, data: &[u8]) -> anyfs::FsResult<()> {
        self.written
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.write(path, data)
    }
    fn append(&self, path: &Path, data: &[u8]) -> anyfs::FsResult<()> {
        self.appended
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.append(path, data)
    }
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> anyfs::FsResult<()> {
        let bytes: usize = ranges.iter().map(|(_, data)| data.len()).sum();
        self.ranged
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.write_ranges(path, ranges)
    }
    fn write_range(&self, path: &Path, offset: u64, data: &[u8]) -> anyfs::FsResult<()> {
        anyfs::FsWrite::write_ranges(self, path, &[(offset, data)])
    }
}

#[test]
fn appending_commits_only_the_new_bytes() {
    if skip("appending_commits_only_the_new_bytes") {
        return;
    }
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::atomic::Ordering;
    let backend = Counting::new();
    let mounted = Mounted::new(backend.clone());
    let log = mounted.path().join("app.log");
    std::fs::write(&log, vec![b'x'; 1 << 20]).unwrap();
    let before = backend.written.load(Ordering::Relaxed);
    let appended_before = backend.appended.load(Ordering::Relaxed);

    // A log appended to line by line, each line its own open and close.
    for i in 0..50 {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "line {i}").unwrap();
        // Read back through the mount before the close: old and new bytes.
        let mut r = std::fs::File::open(&log).unwrap();
        r.seek(SeekFrom::Start((1 << 20) - 2)).unwrap();
        let mut end = String::new();
        r.read_to_string(&mut end).unwrap();
        assert!(
            end.starts_with("xx") && end.ends_with(&format!("line {i}\n")),
            "{end:?}"
        );
    }
    let lines: String = (0..50).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        backend.written.load(Ordering::Relaxed),
        before,
        "the log was rewritten whole"
    );
    assert_eq!(
        backend.appended.load(Ordering::Relaxed) - appended_before,
        lines.len() as u64
    );
    let content = std::fs::read(&log).unwrap();
    assert_eq!(content.len(), (1 << 20) + lines.len());
    assert_eq!(&content[1 << 20..], lines.as_bytes());
    assert_eq!(std::fs::metadata(&log).unwrap().len(), content.len() as u64);

    // Writing at the end without O_APPEND also only appends; then a write
    // in the middle, a truncation and more appends keep every byte right.
    let mut f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"tail").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEAD").unwrap();
    f.set_len(10).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"+more").unwrap();
    drop(f);
    assert_eq!(std::fs::read(&log).unwrap(), b"HEADxxxxxx+more");
    mounted.unmount();
    assert_eq!(
        anyfs::FsRead::read(&backend.inner, Path::new("/app.log")).unwrap(),
        b"HEADxxxxxx+more"
    );
}

#[test]
fn a_write_inside_a_large_file_commits_only_its_bytes() {
    if skip("a_write_inside_a_large_file_commits_only_its_bytes") {
        return;
    }
    use std::io::{Read, Seek, SeekFrom, Write};
    let backend = Counting::new();
    let mounted = Mounted::new(backend.clone());
    let path = mounted.path().join("data.bin");
    let size = 16usize << 20;
    std::fs::write(&path, vec![b'x'; size]).unwrap();
    let (written, appended, ranged) = backend.counts();
    assert_eq!(written + appended + ranged, size as u64);

    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    f.write_all(b"hello").unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&[b'y'; 4096]).unwrap();
    // Past the end, leaving a gap.
    f.seek(SeekFrom::Start(size as u64 + 100)).unwrap();
    f.write_all(b"z").unwrap();
    // Seen through the mount before the close.
    let mut r = std::fs::File::open(&path).unwrap();
    let mut got = [0u8; 7];
    r.seek(SeekFrom::Start((5 << 20) - 1)).unwrap();
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"xhellox");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64 + 101);
    drop(r);
    drop(f);

    // Only the 4,102 bytes went to the backend, plus the gap's zeros.
    let (w, a, r) = backend.counts();
    assert_eq!((w, a), (written, appended), "the file was rewritten");
    assert_eq!(r - ranged, 5 + 4096 + 1);
    let mut want = vec![b'x'; size];
    want[5 << 20..(5 << 20) + 5].copy_from_slice(b"hello");
    want[1 << 20..(1 << 20) + 4096].fill(b'y');
    want.extend([0u8; 100]);
    want.push(b'z');
    assert!(
        std::fs::read(&path).unwrap() == want,
        "read through the mount"
    );
    mounted.unmount();
    assert!(
        anyfs::FsRead::read(&backend.inner, Path::new("/data.bin")).unwrap() == want,
        "what the backend holds"
    );
}

#[test]
fn a_large_file_written_in_is_committed_as_it_comes() {
    if skip("a_large_file_written_in_is_committed_as_it_comes") {
        return;
    }
    use std::io::Write;
    let backend = MemoryBackend::new();
    let mounted = Mounted::new(backend.clone());
    let path = mounted.path().join("big.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![b'b'; 1 << 20];
    for _ in 0..20 {
        f.write_all(&chunk).unwrap();
    }
    // Still open, but most of it is in the backend already: the mount
    // holds at most a few MiB of any file.
    let held = anyfs::FsRead::metadata(&backend, Path::new("/big.bin"))
        .unwrap()
        .len;
    assert!(held >= 12 << 20, "only {held} bytes committed of 20 MiB");
    drop(f);
    assert_eq!(
        anyfs::FsRead::metadata(&backend, Path::new("/big.bin"))
            .unwrap()
            .len,
        20 << 20
    );
    mounted.unmount();
}

#[test]
fn a_cut_keeps_the_buffered_writes_before_it_and_drops_those_after() {
    if skip("a_cut_keeps_the_buffered_writes_before_it_and_drops_those_after") {
        return;
    }
    use std::io::{Seek, SeekFrom, Write};
    let backend = Counting::new();
    let mounted = Mounted::new(backend.clone());
    let path = mounted.path().join("cut.bin");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let (written, _, _) = backend.counts();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(100)).unwrap();
    f.write_all(b"kept").unwrap();
    f.seek(SeekFrom::Start(3000)).unwrap();
    f.write_all(b"gone").unwrap();
    // Cut through another descriptor while both writes are buffered.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
    drop(f);
    let mut want = vec![b'x'; 1000];
    want[100..104].copy_from_slice(b"kept");
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert_eq!(backend.counts().0, written, "the file was rewritten whole");
    mounted.unmount();
    assert_eq!(
        anyfs::FsRead::read(&backend.inner, Path::new("/cut.bin")).unwrap(),
        want
    );
}

#[test]
fn an_open_file_losing_one_of_its_names_keeps_the_others() {
    if skip("an_open_file_losing_one_of_its_names_keeps_the_others") {
        return;
    }
    use std::io::{Seek, SeekFrom, Write};
    let backend = MemoryBackend::new();
    let mounted = Mounted::new(backend.clone());
    let name = |n: &str| mounted.path().join(n);
    // Removed by unlink, or replaced by a rename, while open under it and
    // with buffered writes before and after.
    for replace in [false, true] {
        let (a, b) = (name("a"), name("b"));
        std::fs::write(&a, b"........").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        f.write_all(b"X").unwrap();
        if replace {
            std::fs::write(name("new"), b"other").unwrap();
            std::fs::rename(name("new"), &a).unwrap();
        } else {
            std::fs::remove_file(&a).unwrap();
        }
        f.seek(SeekFrom::Start(1)).unwrap();
        f.write_all(b"Y").unwrap();
        drop(f);
        if replace {
            assert_eq!(std::fs::read(&a).unwrap(), b"other", "the new a");
        } else {
            assert!(!a.exists(), "a removed name came back");
        }
        assert_eq!(
            std::fs::read(&b).unwrap(),
            b"XY......",
            "replace: {replace}"
        );
        let _ = std::fs::remove_file(&a);
        std::fs::remove_file(&b).unwrap();
    }
    // An open file losing its last name keeps working until closed.
    let c = name("c");
    std::fs::write(&c, b"kept").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&c)
        .unwrap();
    std::fs::remove_file(&c).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"+more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    std::io::Read::read_to_string(&mut f, &mut back).unwrap();
    assert_eq!(back, "kept+more");
    drop(f);
    assert!(!c.exists());
    mounted.unmount();
    assert_eq!(
        anyfs::FsDir::read_dir(&backend, Path::new("/"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn files_unlinked_while_open_cannot_grow_the_mounts_memory_without_bound() {
    if skip("files_unlinked_while_open_cannot_grow_the_mounts_memory_without_bound") {
        return;
    }
    use std::os::unix::fs::FileExt;
    let backend = MemoryBackend::new();
    let mounted = Mounted::new(backend.clone());
    let mut held = Vec::new();
    let mut refused = None;
    // Each file is unlinked while open (held in the mount's memory), then
    // grown: 8 × 64 MiB would be 512 MiB.
    for i in 0..8 {
        let path = mounted.path().join(format!("o{i}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        match file.write_at(b"x", (64 << 20) - 1) {
            Ok(_) => held.push(file),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, error) = refused.expect("every orphan grew: the mount's memory is unbounded");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    assert!((3..=4).contains(&at), "refused at file {at}");
    // Room comes back as they close; the mount goes on serving.
    drop(held);
    let path = mounted.path().join("after");
    std::fs::write(&path, b"fine").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"fine");
}

#[test]
fn many_open_files_each_holding_writes_are_committed_together() {
    if skip("many_open_files_each_holding_writes_are_committed_together") {
        return;
    }
    use std::io::Write;
    let backend = MemoryBackend::new();
    let mounted = Mounted::new(backend.clone());
    // 40 files × 4 MiB held open: 160 MiB would be buffered; past 64 MiB
    // everything held so far reaches the backend.
    let mut files = Vec::new();
    for i in 0..40 {
        let mut file = std::fs::File::create(mounted.path().join(format!("f{i}"))).unwrap();
        file.write_all(&vec![1u8; 4 << 20]).unwrap();
        files.push(file);
    }
    let committed = (0..40)
        .filter(|i| {
            anyfs::FsRead::metadata(&backend, Path::new(&format!("/f{i}")))
                .is_ok_and(|m| m.len == 4 << 20)
        })
        .count();
    assert!(
        committed >= 20,
        "only {committed} of 40 files committed while open"
    );
    drop(files);
}
