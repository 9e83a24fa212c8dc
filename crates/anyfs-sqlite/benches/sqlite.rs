//! 10,000 files of 4 KiB: random reads through `SqliteBackend` against
//! `std::fs::read` of the same files on the same disk (warm cache), and
//! creating all of them in a database against creating them as files.
//!
//! `cargo bench -p anyfs-sqlite --bench sqlite` (add `--features encryption`
//! for SQLCipher reads against plain ones)
//!
//! Set `ANYFS_BENCH_DIR` to choose the disk (default: the system temp dir).
//! Reads are measured warm: every file read once before timing starts.

#![allow(clippy::unwrap_used)] // a failed setup step should stop the run

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyfs::{FileStorage, FsDir, FsRead, FsSync, FsWrite};
use anyfs_sqlite::{SqliteBackend, SqliteOptions};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const FILES: usize = 10_000;
const SIZE: usize = 4096;

fn name(i: usize) -> String {
    // 100 directories of 100 files, as a workspace tends to be.
    format!("d{:02}/f{:04}", i % 100, i)
}

fn body(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; SIZE]
}

/// A fixed pseudo-random order, the same for every contender.
fn order() -> Vec<usize> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..FILES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % FILES as u64) as usize
        })
        .collect()
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ANYFS_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn fill_host(root: &Path) {
    for d in 0..100 {
        std::fs::create_dir_all(root.join(format!("d{d:02}"))).unwrap();
    }
    for i in 0..FILES {
        std::fs::write(root.join(name(i)), body(i)).unwrap();
    }
}

fn fill_sqlite<B: FsWrite + FsDir>(fs: &B) {
    for d in 0..100 {
        fs.create_dir(Path::new(&format!("/d{d:02}"))).unwrap();
    }
    for i in 0..FILES {
        fs.write(Path::new(&format!("/{}", name(i))), &body(i))
            .unwrap();
    }
}

fn random_reads(c: &mut Criterion) {
    let dir = bench_dir();
    let host = dir.path().join("host");
    fill_host(&host);
    let backend = SqliteBackend::open(dir.path().join("bench.db")).unwrap();
    fill_sqlite(&backend);
    // A settled database: the write-ahead log checkpointed into the file,
    // as it is after `sync` or once the log reaches its checkpoint size.
    anyfs::FsSync::sync(&backend).unwrap();
    let storage = FileStorage::new(backend.clone());
    let order = order();
    let host_paths: Vec<PathBuf> = order.iter().map(|&i| host.join(name(i))).collect();
    let virtual_paths: Vec<PathBuf> = order
        .iter()
        .map(|&i| PathBuf::from(format!("/{}", name(i))))
        .collect();

    let mut group = c.benchmark_group("random_read_4k");
    let mut n = 0;
    group.bench_function("std_fs_read", |b| {
        b.iter(|| {
            n = (n + 1) % FILES;
            black_box(std::fs::read(&host_paths[n]).unwrap())
        })
    });
    group.bench_function("sqlite_backend", |b| {
        b.iter(|| {
            n = (n + 1) % FILES;
            black_box(backend.read(&virtual_paths[n]).unwrap())
        })
    });
    group.bench_function("sqlite_file_storage", |b| {
        b.iter(|| {
            n = (n + 1) % FILES;
            black_box(storage.read(&virtual_paths[n]).unwrap())
        })
    });
    group.finish();
}

/// Random reads from a SQLCipher database against the same reads from a
/// plain one, both warm, the encrypted one with a page cache that holds the
/// working set (decrypted pages stay in it, so a hit costs no AES).
#[cfg(feature = "encryption")]
fn encrypted_reads(c: &mut Criterion) {
    let dir = bench_dir();
    let plain = SqliteBackend::open(dir.path().join("plain.db")).unwrap();
    let options = SqliteOptions {
        // 10,000 files of 4 KiB and their rows: about 45 MiB of pages.
        cache_kib: 96 * 1024,
        ..SqliteOptions::default()
    };
    let encrypted =
        SqliteBackend::open_encrypted_with_options(dir.path().join("enc.db"), "bench", options)
            .unwrap();
    for fs in [&plain, &encrypted] {
        fill_sqlite(fs);
        fs.sync().unwrap();
    }
    let paths: Vec<PathBuf> = order()
        .iter()
        .map(|&i| PathBuf::from(format!("/{}", name(i))))
        .collect();
    for fs in [&plain, &encrypted] {
        for p in &paths {
            black_box(fs.read(p).unwrap());
        }
    }
    let mut group = c.benchmark_group("random_read_4k_sqlcipher");
    let mut n = 0;
    for (label, fs) in [("plain", &plain), ("encrypted_96mib_cache", &encrypted)] {
        group.bench_function(label, |b| {
            b.iter(|| {
                n = (n + 1) % FILES;
                black_box(fs.read(&paths[n]).unwrap())
            })
        });
    }
    group.finish();
}

#[cfg(not(feature = "encryption"))]
fn encrypted_reads(_: &mut Criterion) {}

fn create_files(c: &mut Criterion) {
    // Each routine hands back what it made, so that removing it (and, for
    // SQLite, closing the database) happens outside the timing.
    let open = |options: SqliteOptions| {
        move || {
            let dir = bench_dir();
            let backend =
                SqliteBackend::open_with_options(dir.path().join("bench.db"), options).unwrap();
            (dir, backend)
        }
    };
    let mut group = c.benchmark_group("create_10k_files_4k");
    group.sample_size(10);
    group.bench_function("std_fs_write", |b| {
        b.iter_batched(
            bench_dir,
            |dir| {
                fill_host(&dir.path().join("host"));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("sqlite_one_transaction_each", |b| {
        b.iter_batched(
            open(SqliteOptions::default()),
            |(dir, backend)| {
                fill_sqlite(&backend);
                (dir, backend)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("sqlite_group_commit_50ms", |b| {
        let options = SqliteOptions {
            group_commit: Some(Duration::from_millis(50)),
            ..SqliteOptions::default()
        };
        b.iter_batched(
            open(options),
            |(dir, backend)| {
                fill_sqlite(&backend);
                // Committed before the clock stops.
                backend.fsync(Path::new("/")).unwrap();
                (dir, backend)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("sqlite_batch", |b| {
        b.iter_batched(
            open(SqliteOptions::default()),
            |(dir, backend)| {
                backend
                    .batch(|fs| {
                        fill_sqlite(fs);
                        Ok(())
                    })
                    .unwrap();
                (dir, backend)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = random_reads, encrypted_reads, create_files
}
criterion_main!(benches);
