//! Many threads on one backend.

use std::collections::HashSet;
use std::sync::Barrier;
use std::thread;

use anyfs::{Fs, FsErrorKind};

use crate::p;

const THREADS: usize = 8;

/// Eight threads creating the same deep path at once all succeed.
pub fn parallel_create_dir_all_of_one_path<B: Fs>(fs: &B) {
    for round in 0..20 {
        let path = format!("/race{round}/a/b/c/d");
        let barrier = Barrier::new(THREADS);
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    barrier.wait();
                    fs.create_dir_all(p(&path)).unwrap();
                });
            }
        });
        assert!(fs.metadata(p(&path)).unwrap().is_dir());
        let entries = fs.read_dir(p(&format!("/race{round}"))).unwrap();
        assert_eq!(entries.count(), 1, "one `a`, not several");
    }
}

/// Eight threads each writing their own files lose nothing.
pub fn parallel_writers_to_separate_files<B: Fs>(fs: &B) {
    fs.create_dir(p("/par")).unwrap();
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..50 {
                    let body = format!("thread {t} file {i}").repeat(10);
                    fs.write(p(&format!("/par/{t}-{i}")), body.as_bytes())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(fs.read_dir(p("/par")).unwrap().count(), THREADS * 50);
    for t in 0..THREADS {
        for i in 0..50 {
            let body = format!("thread {t} file {i}").repeat(10);
            assert_eq!(
                fs.read(p(&format!("/par/{t}-{i}"))).unwrap(),
                body.as_bytes()
            );
        }
    }
}

/// While writers replace a file, readers see one whole version at a time,
/// never a mix or a torn write.
pub fn readers_during_writes_see_whole_versions<B: Fs>(fs: &B) {
    let versions: Vec<Vec<u8>> = (0..8u8)
        .map(|v| vec![b'a' + v; 4096 * (v as usize + 1)])
        .collect();
    let valid: HashSet<&[u8]> = versions.iter().map(Vec::as_slice).collect();
    fs.write(p("/shared"), &versions[0]).unwrap();
    thread::scope(|s| {
        for w in 0..2 {
            let versions = &versions;
            s.spawn(move || {
                for i in 0..200 {
                    fs.write(p("/shared"), &versions[(i + w) % versions.len()])
                        .unwrap();
                }
            });
        }
        for _ in 0..THREADS - 2 {
            s.spawn(|| {
                for _ in 0..200 {
                    let got = fs.read(p("/shared")).unwrap();
                    assert!(
                        valid.contains(got.as_slice()),
                        "torn read of {} bytes",
                        got.len()
                    );
                }
            });
        }
    });
}

/// Eight threads appending to one file: every record arrives exactly once.
pub fn parallel_appends_lose_nothing<B: Fs>(fs: &B) {
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..100 {
                    fs.append(p("/journal"), format!("{t}:{i}\n").as_bytes())
                        .unwrap();
                }
            });
        }
    });
    let text = fs.read_to_string(p("/journal")).unwrap();
    let lines: HashSet<&str> = text.lines().collect();
    assert_eq!(text.lines().count(), THREADS * 100);
    assert_eq!(lines.len(), THREADS * 100);
    match fs.read(p("/journal/x")) {
        Err(e) => assert_eq!(e.kind(), FsErrorKind::NotADirectory),
        Ok(_) => panic!("a file is not a directory"),
    }
}

/// Threads writing their own ranges of one file in place lose nothing of
/// each other's writes.
pub fn parallel_range_writes_lose_nothing<B: Fs>(fs: &B) {
    const REGION: usize = 16 << 10;
    const PIECE: usize = 1 << 10;
    fs.write(p("/shared.bin"), &vec![0u8; REGION * THREADS])
        .unwrap();
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..REGION / PIECE {
                    let at = (t * REGION + i * PIECE) as u64;
                    fs.write_range(p("/shared.bin"), at, &[t as u8 + 1; PIECE])
                        .unwrap();
                }
            });
        }
    });
    let content = fs.read(p("/shared.bin")).unwrap();
    assert_eq!(content.len(), REGION * THREADS);
    for (t, region) in content.chunks(REGION).enumerate() {
        assert!(
            region.iter().all(|&b| b == t as u8 + 1),
            "thread {t}'s writes were lost"
        );
    }
}
