//! The first encrypted databases a process opens, opened on several
//! threads at once, all take their keys.
//!
//! SQLite starts SQLCipher only after it has marked itself started, and
//! outside its lock, so a thread opening its first connection while
//! another is still starting SQLCipher used to be refused the key
//! ("set the key: SQL logic error"). That can only happen once per
//! process, so the test runs itself as fresh processes, many times.
#![cfg(feature = "encryption")]

use std::process::Command;
use std::sync::Barrier;

use anyfs_sqlite::SqliteBackend;

/// Set in the processes the test starts: they race, and report.
const CHILD: &str = "ANYFS_FIRST_KEYS_CHILD";

#[test]
fn first_keys_on_many_threads_are_all_taken() {
    if std::env::var_os(CHILD).is_some() {
        race();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut refused = Vec::new();
    for round in 0..100 {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "first_keys_on_many_threads_are_all_taken",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        if !out.status.success() {
            refused.push(format!(
                "round {round}: {}",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.contains("refused"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    assert!(refused.is_empty(), "keys refused: {refused:#?}");
}

/// Eight threads open their first encrypted database at the same moment.
fn race() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let start = Barrier::new(8);
    let failures: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (dir, start) = (&dir, &start);
                s.spawn(move || {
                    start.wait();
                    SqliteBackend::open_with_key(dir.path().join(format!("{t}.db")), &[t; 32])
                        .err()
                        .map(|e| format!("thread {t} refused: {e}"))
                })
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|t| t.join().expect("the thread ends"))
            .collect()
    });
    for f in &failures {
        println!("{f}");
    }
    assert!(failures.is_empty());
}
