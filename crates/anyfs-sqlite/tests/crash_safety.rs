//! Crash safety: a child process writes and renames files in a loop and
//! reports each committed operation; it is killed with SIGKILL at random
//! moments, and after every kill the store opens, passes SQLite's integrity
//! check, and holds every operation reported committed, intact.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyfs::{FileStorage, Fs};
use anyfs_sqlite::{IndexedBackend, SqliteBackend};

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
        _ => child_loop(
            FileStorage::new(IndexedBackend::open(&path).unwrap()),
            start,
        ),
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

struct Random(u64);
impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn kill_repeatedly(kind: &str, store: &Path, verify: impl Fn(&Path, &[u64])) {
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
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        // Let it commit at least once, then kill it at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child commits");
        committed.push(first);
        let deadline = Instant::now() + Duration::from_millis(5 + random.below(150));
        while Instant::now() < deadline {
            if let Ok(n) = rx.recv_timeout(Duration::from_millis(1)) {
                committed.push(n);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        committed.extend(rx.try_iter());
        verify(store, &committed);
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
    kill_repeatedly("sqlite", &db, |db, committed| {
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
    kill_repeatedly("indexed", &store, |store, committed| {
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
