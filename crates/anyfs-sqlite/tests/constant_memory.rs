//! A 1 GiB file goes into a `SqliteBackend` and back out through streams in
//! constant memory: the content is chunked, each chunk its own row, so
//! neither side ever holds the file.
//!
//! The streaming runs in a child process of its own, which measures its
//! anonymous memory (heap) as it goes; the file's pages that the kernel
//! caches, or that a memory map shows, are not the process's memory.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use anyfs::FsRead;
use anyfs::FsWrite;
use anyfs_sqlite::SqliteBackend;

const CHILD_ENV: &str = "ANYFS_STREAM_CHILD";
const SIZE: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

/// Anonymous memory of this process, in KiB.
fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn chunk(i: u64, buf: &mut [u8]) {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for word in buf.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
}

/// Streams the file in and out, reporting the baseline and the peak.
#[test]
fn stream_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let backend = SqliteBackend::open(&db).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let baseline = rss_anon_kib();
    let mut peak = baseline;
    {
        let mut w = backend.open_write(Path::new("/big.bin")).unwrap();
        for i in 0..SIZE / CHUNK as u64 {
            chunk(i, &mut buf);
            w.write_all(&buf).unwrap();
            peak = peak.max(rss_anon_kib());
        }
        w.commit().unwrap();
    }
    assert_eq!(backend.metadata(Path::new("/big.bin")).unwrap().len, SIZE);
    let mut r = backend.open_read(Path::new("/big.bin")).unwrap();
    for i in 0..SIZE / CHUNK as u64 {
        r.read_exact(&mut buf).unwrap();
        chunk(i, &mut expected);
        assert!(buf == expected, "chunk {i} differs");
        peak = peak.max(rss_anon_kib());
    }
    assert_eq!(r.read(&mut buf).unwrap(), 0, "longer than written");
    println!("baseline {baseline} peak {peak}");
}

#[test]
fn a_1_gib_file_streams_in_and_out_in_constant_memory() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["stream_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("baseline ").nth(1))
        .unwrap();
    let mut numbers = line
        .split(" peak ")
        .map(|n| n.trim().parse::<u64>().unwrap());
    let (baseline, peak) = (numbers.next().unwrap(), numbers.next().unwrap());
    // The page cache of a connection or two and the buffers: far below
    // the file's 1 GiB.
    assert!(
        peak - baseline < 96 * 1024,
        "memory grew by {} KiB while streaming 1 GiB",
        peak - baseline
    );
}
