//! Snapshots and branches as stored: content is shared, never copied, and
//! freed once nothing names it; a database of the first layout opens with
//! its content intact; one written by a newer build is refused.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::{FsHandles, FsRead, FsSnapshots, FsWrite, OpenFlags};
use anyfs_sqlite::{IndexedBackend, SqliteBackend};
use rusqlite::Connection;

fn p(path: &str) -> &Path {
    Path::new(path)
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect()
}

/// Chunks stored in the database file, counted behind the backend's back.
fn chunks(file: &Path) -> i64 {
    let conn = Connection::open(file).unwrap();
    conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
        .unwrap()
}

/// Blob files in an indexed store's directory.
fn blob_files(store: &Path) -> usize {
    std::fs::read_dir(store.join("blobs")).unwrap().count()
}

#[test]
fn snapshots_and_copies_share_chunks_and_free_them_with_the_last_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fs.db");
    let fs = SqliteBackend::open(&file).unwrap();
    fs.write(p("/big"), &bytes(1 << 20, 3)).unwrap();
    let one_file = chunks(&file);
    assert_eq!(one_file, 16);

    fs.copy(p("/big"), p("/copy")).unwrap();
    let snap = fs.create_snapshot("s").unwrap();
    let branch = fs.branch(snap.id, "b").unwrap();
    assert_eq!(
        chunks(&file),
        one_file,
        "a copy, snapshot or branch copied content"
    );

    // A small change to shared content costs one chunk, wherever it is made.
    fs.write_range(p("/big"), 10, b"live").unwrap();
    assert_eq!(chunks(&file), one_file + 1);
    let on_branch = fs.open_branch(branch.id).unwrap();
    on_branch.write_range(p("/big"), 70_000, b"branch").unwrap();
    assert_eq!(chunks(&file), one_file + 2);
    assert_eq!(
        fs.open_snapshot(snap.id).unwrap().read(p("/big")).unwrap(),
        bytes(1 << 20, 3)
    );

    // Names go one by one; a chunk goes with its last: the live change
    // with the file, the shared ones with the snapshot.
    fs.remove_file(p("/big")).unwrap();
    assert_eq!(chunks(&file), one_file + 1);
    fs.remove_file(p("/copy")).unwrap();
    assert_eq!(chunks(&file), one_file + 1);
    drop(on_branch);
    fs.delete_branch(branch.id).unwrap();
    assert_eq!(chunks(&file), one_file);
    fs.delete_snapshot(snap.id).unwrap();
    assert_eq!(chunks(&file), 0);
}

#[test]
fn blob_files_are_shared_and_removed_with_the_last_name() {
    let dir = tempfile::tempdir().unwrap();
    let fs = IndexedBackend::open(dir.path().join("store")).unwrap();
    let count = || blob_files(&dir.path().join("store"));
    fs.write(p("/a"), &bytes(100_000, 5)).unwrap();
    let one = count();
    let snap = fs.create_snapshot("s").unwrap();
    let branch = fs.branch(snap.id, "b").unwrap();
    assert_eq!(count(), one, "a snapshot or branch copied a blob");

    // Appending in place would cut the shared blob for the others.
    let on_branch = fs.open_branch(branch.id).unwrap();
    on_branch.append(p("/a"), b"tail").unwrap();
    fs.truncate(p("/a"), 200_000).unwrap();
    let view = fs.open_snapshot(snap.id).unwrap();
    assert_eq!(view.read(p("/a")).unwrap(), bytes(100_000, 5));
    assert_eq!(on_branch.metadata(p("/a")).unwrap().len, 100_004);
    assert_eq!(fs.metadata(p("/a")).unwrap().len, 200_000);

    fs.remove_file(p("/a")).unwrap();
    drop(on_branch);
    fs.delete_branch(branch.id).unwrap();
    assert_eq!(view.read(p("/a")).unwrap(), bytes(100_000, 5));
    drop(view);
    fs.delete_snapshot(snap.id).unwrap();
    assert_eq!(count(), one - 1, "the last blob outlived every name");
}

#[test]
fn snapshots_and_branches_outlive_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fs.db");
    let (snap, branch) = {
        let fs = SqliteBackend::open(&file).unwrap();
        fs.write(p("/f"), b"kept").unwrap();
        let snap = fs.create_snapshot("before").unwrap();
        let branch = fs.branch(snap.id, "b").unwrap();
        fs.open_branch(branch.id)
            .unwrap()
            .write(p("/f"), b"branch")
            .unwrap();
        fs.write(p("/f"), b"live").unwrap();
        (snap, branch)
    };
    let fs = SqliteBackend::open(&file).unwrap();
    assert_eq!(fs.snapshots().unwrap(), vec![snap.clone()]);
    assert_eq!(fs.branches().unwrap()[0].id, branch.id);
    assert_eq!(fs.read(p("/f")).unwrap(), b"live");
    assert_eq!(
        fs.open_snapshot(snap.id).unwrap().read(p("/f")).unwrap(),
        b"kept"
    );
    assert_eq!(
        fs.open_branch(branch.id).unwrap().read(p("/f")).unwrap(),
        b"branch"
    );
}

#[test]
fn a_file_only_a_handle_holds_stays_out_of_a_snapshot_and_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fs.db");
    let fs = SqliteBackend::open(&file).unwrap();
    fs.write(p("/open"), &bytes(200_000, 9)).unwrap();
    let handle = fs.open(p("/open"), OpenFlags::READ).unwrap();
    fs.remove_file(p("/open")).unwrap();
    let snap = fs.create_snapshot("s").unwrap();
    let view = fs.open_snapshot(snap.id).unwrap();
    assert!(!view.exists(p("/open")).unwrap());
    let mut buf = vec![0; 10];
    assert_eq!(fs.read_at(handle, &mut buf, 0).unwrap(), 10);
    fs.close(handle).unwrap();
    assert_eq!(chunks(&file), 0);
}

#[test]
fn a_database_of_the_first_layout_opens_with_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let big = bytes(150_000, 7);
    {
        // The first layout, as the first release wrote it: chunk ids are
        // inode * 2^24 + index, and no version is set.
        let conn = Connection::open(&file).unwrap();
        conn.execute_batch(
            "CREATE TABLE inodes (ino INTEGER PRIMARY KEY, kind INTEGER NOT NULL,
                 mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
                 size INTEGER NOT NULL DEFAULT 0, nlink INTEGER NOT NULL DEFAULT 0,
                 subdirs INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL,
                 mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, btime INTEGER NOT NULL,
                 target BLOB, blob TEXT);
             CREATE TABLE entries (parent INTEGER NOT NULL, name BLOB NOT NULL,
                 ino INTEGER NOT NULL, PRIMARY KEY (parent, name)) WITHOUT ROWID;
             CREATE INDEX entries_by_ino ON entries(ino);
             CREATE TABLE chunks (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
             CREATE VIEW nodes AS SELECT CAST(e.name AS TEXT) AS name, i.kind AS node_type,
                 i.size AS size, i.mtime / 1000000000 AS modified_at, i.ino AS ino,
                 e.parent AS parent FROM entries e JOIN inodes i ON i.ino = e.ino;
             INSERT INTO inodes VALUES (1, 1, 493, 0, 0, 0, 1, 1, 0, 0, 0, 0, NULL, NULL);
             INSERT INTO inodes VALUES (2, 1, 493, 0, 0, 0, 1, 0, 0, 0, 0, 0, NULL, NULL);
             INSERT INTO entries VALUES (1, CAST('docs' AS BLOB), 2);
             INSERT INTO inodes VALUES (3, 0, 420, 0, 0, 150000, 1, 0, 0, 0, 0, 0, NULL, NULL);
             INSERT INTO entries VALUES (2, CAST('big' AS BLOB), 3);
             INSERT INTO inodes VALUES (4, 2, 511, 0, 0, 9, 1, 0, 0, 0, 0, 0, CAST('/docs/big' AS BLOB), NULL);
             INSERT INTO entries VALUES (1, CAST('link' AS BLOB), 4);",
        )
        .unwrap();
        for (index, piece) in big.chunks(65_536).enumerate() {
            conn.execute(
                "INSERT INTO chunks (id, data) VALUES (?1, ?2)",
                rusqlite::params![(3i64 << 24) | index as i64, piece],
            )
            .unwrap();
        }
    }
    let fs = SqliteBackend::open(&file).unwrap();
    assert_eq!(fs.read(p("/docs/big")).unwrap(), big);
    assert_eq!(
        fs.read_range(p("/docs/big"), 65_530, 12).unwrap(),
        &big[65_530..65_542]
    );
    assert_eq!(
        anyfs::FsLink::read_link(&fs, p("/link")).unwrap(),
        p("/docs/big")
    );
    // It goes on as a database of this layout: writes, snapshots.
    let snap = fs.create_snapshot("after the upgrade").unwrap();
    fs.write_range(p("/docs/big"), 0, b"new").unwrap();
    fs.write(p("/docs/new"), b"new file").unwrap();
    assert_eq!(
        fs.open_snapshot(snap.id)
            .unwrap()
            .read(p("/docs/big"))
            .unwrap(),
        big
    );
    assert_eq!(&fs.read(p("/docs/big")).unwrap()[..3], b"new");
    drop(fs);
    let conn = Connection::open(&file).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let listed: i64 = conn
        .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(listed, 4, "the nodes view shows the workspace only");
}

#[test]
fn a_database_written_by_a_newer_build_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fs.db");
    SqliteBackend::open(&file)
        .unwrap()
        .write(p("/f"), b"x")
        .unwrap();
    Connection::open(&file)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = SqliteBackend::open(&file).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    let version: i64 = Connection::open(&file)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[test]
fn a_restore_through_a_quota_must_fit_and_is_counted() {
    use anyfs::middleware::QuotaLimits;
    use anyfs::{FsErrorKind, Layer, QuotaLayer};

    let fs = QuotaLayer::builder()
        .max_total_size(1000)
        .build()
        .layer(SqliteBackend::open_in_memory().unwrap());
    fs.write(p("/a"), &[1; 900]).unwrap();
    let snap = fs.create_snapshot("full").unwrap();
    fs.remove_file(p("/a")).unwrap();
    fs.write(p("/b"), &[2; 100]).unwrap();
    assert_eq!(fs.usage().total_size, 100);

    let tighter = fs.with_limits(QuotaLimits {
        max_total_size: Some(500),
        ..fs.limits()
    });
    let err = tighter.restore(snap.id).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded, "{err}");
    assert_eq!(fs.read(p("/b")).unwrap(), [2; 100]);
    assert!(!fs.exists(p("/a")).unwrap());

    fs.restore(snap.id).unwrap();
    assert_eq!(fs.usage().total_size, 900);
    assert_eq!(fs.read(p("/a")).unwrap(), [1; 900]);
    let err = fs.write(p("/c"), &[3; 200]).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);

    // A branch is held to the same limits, counted on its own.
    let branch = fs.open_branch(fs.branch(snap.id, "b").unwrap().id).unwrap();
    assert_eq!(branch.usage().total_size, 900);
    assert_eq!(
        branch.write(p("/c"), &[3; 200]).unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
}

#[test]
fn a_restore_waits_for_open_files() {
    let fs = SqliteBackend::open_in_memory().unwrap();
    fs.write(p("/f"), b"before").unwrap();
    let snap = fs.create_snapshot("s").unwrap();
    fs.write(p("/f"), b"after").unwrap();
    let handle = fs.open(p("/f"), OpenFlags::READ).unwrap();
    let err = fs.restore(snap.id).unwrap_err();
    assert_eq!(err.kind(), anyfs::FsErrorKind::Conflict, "{err}");
    assert_eq!(fs.read(p("/f")).unwrap(), b"after");
    fs.close(handle).unwrap();
    fs.restore(snap.id).unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"before");
}
