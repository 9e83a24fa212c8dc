//! "Privacy mode" read costs: 4 KiB and 1 MiB reads through
//! `FileEncryption<SqliteBackend>` against the bare `SqliteBackend`, on disk
//! with a warm cache.
//!
//! `cargo bench -p anyfs-sqlite --bench file_encryption`

#![allow(clippy::unwrap_used)] // a failed setup step should stop the run

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use anyfs::crypto::Key;
use anyfs::{FileEncryption, FsRead, FsWrite};
use anyfs_sqlite::SqliteBackend;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bare = SqliteBackend::open(dir.path().join("bare.db")).unwrap();
    let encrypted = FileEncryption::new(SqliteBackend::open(dir.path().join("enc.db")).unwrap())
        .with_key(Key::from_bytes([9; 32]));
    for size in [4096usize, 1 << 20] {
        let label = if size == 4096 { "4 KiB" } else { "1 MiB" };
        let path = Path::new("/file");
        let data = vec![0x42u8; size];
        bare.write(path, &data).unwrap();
        encrypted.write(path, &data).unwrap();
        let mut group = c.benchmark_group(format!("sqlite read {label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("SqliteBackend", |b| {
            b.iter(|| black_box(bare.read(path).unwrap()))
        });
        group.bench_function("FileEncryption<SqliteBackend>", |b| {
            b.iter(|| black_box(encrypted.read(path).unwrap()))
        });
        group.bench_function("FileEncryption<SqliteBackend> read_range 4 KiB", |b| {
            b.iter(|| black_box(encrypted.read_range(path, 0, 4096).unwrap()))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = reads
}
criterion_main!(benches);
