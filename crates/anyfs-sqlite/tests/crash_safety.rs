//! Crash safety: a child process writes and renames files in a loop and
//! reports each committed operation; it is killed with SIGKILL at random
//! moments, and after every kill the store opens, passes SQLite's integrity
//! check, and holds every operation reported committed, intact.
//!
//! With group commit, writes are acknowledged before they are committed:
//! there the child reports an operation committed only after `sync`, and
//! what survives must be exactly the operations up to some point — every
//! synced one, then possibly more, and nothing after a gap or half done.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyfs::{FileStorage, Fs, FsSync};
use anyfs_sqlite::{IndexedBackend, SqliteBackend, SqliteOptions};

const KILLS: u32 = 24;
const CHILD_ENV: &str = "ANYFS_CRASH_CHILD";

fn content(i: u64) -> Vec<u8> {
    // Sizes from a few bytes to several chunks, distinct per operation.
    let len = 1 + (i * 7919) % 200_000;
    (0..len).map(|b| (b ^ i.wrapping_mul(31)) as u8).collect()
}

/// The writer the parent kills: runs only when spawned by `kill_repeatedly`.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (kind, path, start) = {
        let mut parts = spec.splitn(3, '|');
        (
            parts.next().unwrap().to_string(),
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().parse::<u64>().unwrap(),
        )
    };
    match kind.as_str() {
        "sqlite" => child_loop(FileStorage::new(SqliteBackend::open(&path).unwrap()), start),
        "group" => {
            let options = SqliteOptions {
                group_commit: Some(Duration::from_millis(20)),
                ..SqliteOptions::default()
            };
            let backend = SqliteBackend::open_with_options(&path, options).unwrap();
            group_child_loop(&backend, start);
        }
        "full" => full_disk_child(&path),
        _ => child_loop(
            FileStorage::new(IndexedBackend::open(&path).unwrap()),
            start,
        ),
    }
}

/// Run with files limited in size: commits some files, then acknowledges a
/// group of writes too large to commit, and reports what `sync` and the
/// next write say.
fn full_disk_child(path: &Path) {
    let options = SqliteOptions {
        group_commit: Some(Duration::from_secs(60)),
        ..SqliteOptions::default()
    };
    let backend = SqliteBackend::open_with_options(path, options).unwrap();
    let fs = FileStorage::new(backend.clone());
    for i in 0..10 {
        fs.write(format!("/base{i}"), content(i)).unwrap();
    }
    backend.sync().unwrap();
    println!("base synced");
    for i in 0..40 {
        match fs.write(format!("/group{i}"), vec![i as u8; 200_000]) {
            Ok(()) => println!("acked {i}"),
            Err(e) => println!("write failed: {e}"),
        }
    }
    match backend.sync() {
        Ok(()) => println!("sync: ok"),
        Err(e) => println!("sync: failed: {e}"),
    }
    match backend.sync() {
        Ok(()) => println!("sync again: ok"),
        Err(e) => println!("sync again: failed: {e}"),
    }
    match fs.read("/base3") {
        Ok(data) if data == content(3) => println!("base readable"),
        other => println!("base unreadable: {other:?}"),
    }
}

fn child_loop<B: Fs>(fs: FileStorage<B>, start: u64) {
    fs.create_dir_all("/work").unwrap();
    fs.create_dir_all("/done").unwrap();
    for i in start.. {
        fs.write(format!("/work/f{i}"), content(i)).unwrap();
        fs.rename(format!("/work/f{i}"), format!("/done/g{i}"))
            .unwrap();
        println!("committed {i}");
    }
}

/// Reports every operation when it returns (`acked`), and as committed
/// once a `sync` after it returned.
fn group_child_loop(backend: &SqliteBackend, start: u64) {
    let fs = FileStorage::new(backend.clone());
    fs.create_dir_all("/work").unwrap();
    fs.create_dir_all("/done").unwrap();
    backend.sync().unwrap();
    for i in start.. {
        fs.write(format!("/work/f{i}"), content(i)).unwrap();
        fs.rename(format!("/work/f{i}"), format!("/done/g{i}"))
            .unwrap();
        println!("acked {i}");
        if i % 7 == 0 {
            backend.sync().unwrap();
            println!("committed {i}");
        }
    }
}

struct Random(u64);
impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kills a child of `kind` again and again; after each kill, `verify` gets
/// every operation reported committed so far, and the operations the last
/// child acknowledged (group commit only).
fn kill_repeatedly(kind: &str, store: &Path, verify: impl Fn(&Path, &[u64], &[u64])) {
    let mut random = Random(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    let mut committed: Vec<u64> = Vec::new();
    for round in 0..KILLS {
        let start = u64::from(round) * 1_000_000;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{kind}|{}|{start}", store.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("committed ") {
                    let _ = tx.send((true, n.parse::<u64>().unwrap()));
                } else if let Some(n) = line.strip_prefix("acked ") {
                    let _ = tx.send((false, n.parse::<u64>().unwrap()));
                }
            }
        });
        let mut acked = Vec::new();
        let mut note = |(durable, n): (bool, u64)| {
            if durable {
                committed.push(n);
            } else {
                acked.push(n);
            }
        };
        // Let it commit at least once, then kill it at a random moment.
        loop {
            let report = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the child commits");
            note(report);
            if report.0 {
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(5 + random.below(150));
        while Instant::now() < deadline {
            if let Ok(report) = rx.recv_timeout(Duration::from_millis(1)) {
                note(report);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        rx.try_iter().for_each(&mut note);
        verify(store, &committed, &acked);
    }
    assert!(committed.len() as u32 > KILLS, "the child made progress");
}

fn check_files<B: Fs>(fs: &FileStorage<B>, committed: &[u64]) {
    for &i in committed {
        let got = fs
            .read(format!("/done/g{i}"))
            .unwrap_or_else(|e| panic!("operation {i} lost: {e}"));
        assert!(got == content(i), "operation {i} corrupted");
        assert!(
            !fs.exists(format!("/work/f{i}")).unwrap(),
            "rename {i} half done"
        );
    }
}

fn integrity_ok(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
}

#[test]
fn sqlite_survives_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    kill_repeatedly("sqlite", &db, |db, committed, _| {
        let fs = FileStorage::new(SqliteBackend::open(db).unwrap());
        integrity_ok(db);
        check_files(&fs, committed);
    });
}

#[test]
fn indexed_survives_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    kill_repeatedly("indexed", &store, |store, committed, _| {
        let fs = FileStorage::new(IndexedBackend::open(store).unwrap());
        integrity_ok(&store.join("index.db"));
        check_files(&fs, committed);
        // Every blob left is one the index names: the sweep on open worked.
        let conn = rusqlite::Connection::open(store.join("index.db")).unwrap();
        let named: i64 = conn
            .query_row(
                "SELECT count(*) FROM inodes WHERE blob IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let on_disk = std::fs::read_dir(store.join("blobs")).unwrap().count() as i64;
        assert_eq!(named, on_disk, "orphan blobs survived the sweep");
    });
}

#[test]
fn group_commit_loses_only_a_tail_of_whole_operations() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("group.db");
    kill_repeatedly("group", &db, |db, committed, acked| {
        let fs = FileStorage::new(SqliteBackend::open(db).unwrap());
        integrity_ok(db);
        // Everything synced survived, intact.
        check_files(&fs, committed);
        // Of the last child's operations (write, then rename, each file),
        // what survived is a prefix: done files up to some point, then at
        // most one file written but not yet renamed — and nothing else.
        let (Some(&first), Some(&last)) = (acked.first(), acked.last()) else {
            return;
        };
        let mut survived_to = None;
        for i in first..=last + 1 {
            let done = fs.exists(format!("/done/g{i}")).unwrap();
            let pending = fs.exists(format!("/work/f{i}")).unwrap();
            match survived_to {
                None if done => {
                    assert!(!pending, "operation {i} both renamed and not");
                    assert!(
                        fs.read(format!("/done/g{i}")).unwrap() == content(i),
                        "operation {i} corrupted"
                    );
                }
                None => {
                    if pending {
                        assert!(
                            fs.read(format!("/work/f{i}")).unwrap() == content(i),
                            "write {i} corrupted"
                        );
                    }
                    survived_to = Some(i);
                }
                Some(gap) => assert!(
                    !done && !pending,
                    "operation {i} survived although operation {gap} before it was lost"
                ),
            }
        }
        // Nothing from after the last acknowledged operation but its
        // successor's write, which may have been under way.
        assert!(!fs.exists(format!("/done/g{}", last + 2)).unwrap());
    });
}

/// A group of acknowledged writes that cannot be committed (files may not
/// grow: the disk is full, as far as the database can tell) is reported by
/// `sync`, once, and leaves the database whole: what was committed before
/// is intact and nothing of the failed group is there.
#[test]
fn a_group_that_cannot_commit_is_reported_and_loses_nothing_else() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    // `prlimit` caps the size of any file the child writes; the shell makes
    // it ignore SIGXFSZ, so that a write past the cap fails with EFBIG
    // instead of killing it.
    let output = Command::new("sh")
        .args([
            "-c",
            r#"trap "" XFSZ; exec prlimit --fsize=4194304 -- "$0" "$@""#,
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("full|{}|0", db.display()))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("base synced"), "{out}");
    assert!(out.contains("acked 0"), "{out}");
    let sync = out.lines().find(|l| l.starts_with("sync: ")).unwrap();
    assert!(
        sync.contains("failed") && sync.contains("earlier writes were lost"),
        "{sync}"
    );
    assert!(
        out.contains("sync again: ok"),
        "reported more than once: {out}"
    );
    assert!(out.contains("base readable"), "{out}");

    let fs = FileStorage::new(SqliteBackend::open(&db).unwrap());
    integrity_ok(&db);
    for i in 0..10 {
        assert!(
            fs.read(format!("/base{i}")).unwrap() == content(i),
            "base{i}"
        );
    }
    for i in 0..40 {
        assert!(
            !fs.exists(format!("/group{i}")).unwrap(),
            "group{i} survived a group that failed to commit"
        );
    }
}
