//! An overlay whose workspace is a SQLite file: a write into a large base
//! file stores what was written, not a copy of the file.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::overlay::Overlay;
use anyfs::{FsRead, FsWrite, MemoryBackend, ReadOnly};
use anyfs_sqlite::SqliteBackend;

fn p(path: &str) -> &Path {
    Path::new(path)
}

#[test]
fn a_small_write_into_a_large_base_file_stores_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("work.db");
    let base = MemoryBackend::new();
    let big: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    base.write(p("/big.bin"), &big).unwrap();
    let upper = SqliteBackend::open(&file).unwrap();
    let fs = Overlay::open(ReadOnly::new(base.clone()), upper).unwrap();
    fs.write_range(p("/big.bin"), 4 << 20, &[1u8; 4096])
        .unwrap();
    let mut expected = big.clone();
    expected[4 << 20..(4 << 20) + 4096].fill(1);
    assert_eq!(fs.read(p("/big.bin")).unwrap(), expected);
    assert_eq!(
        fs.read_range(p("/big.bin"), (4 << 20) - 10, 20).unwrap(),
        &expected[(4 << 20) - 10..(4 << 20) + 10]
    );
    drop(fs);
    // The workspace holds a chunk around the 4 KiB and its journal, not
    // the 8 MiB.
    let conn = rusqlite::Connection::open(&file).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT coalesce(sum(length(data)), 0) FROM chunks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored < 128 * 1024, "the workspace stores {stored} bytes");

    // Reopened: the same bytes; cut and grown again: zeros, never the
    // base's bytes.
    let fs = Overlay::open(ReadOnly::new(base), SqliteBackend::open(&file).unwrap()).unwrap();
    assert_eq!(fs.read(p("/big.bin")).unwrap(), expected);
    fs.truncate(p("/big.bin"), 100).unwrap();
    fs.truncate(p("/big.bin"), 200).unwrap();
    let now = fs.read(p("/big.bin")).unwrap();
    assert_eq!(&now[..100], &big[..100]);
    assert_eq!(&now[100..], &[0u8; 100][..]);
}
