//! Encryption costs: AES-256-GCM on 64 KiB buffers, and reads of 4 KiB and
//! 1 MiB through `FileEncryption` (and `IntegrityVerified`) over
//! `MemoryBackend` against the bare backend.
//!
//! `cargo bench -p anyfs --bench crypto`

#![allow(clippy::unwrap_used)] // a failed setup step should stop the run

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use anyfs::crypto::{Aes256Gcm, Key};
use anyfs::{
    EncryptedMemoryBackend, FileEncryption, FsRead, FsWrite, IntegrityVerified, MemoryBackend,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn aes(c: &mut Criterion) {
    let cipher = Aes256Gcm::new(&Key::from_bytes([9; 32]));
    let mut group = c.benchmark_group("aes256gcm");
    for size in [4096usize, 65536] {
        let mut buf = vec![0x5a; size];
        let mut counter = 0u64;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("seal {} KiB", size / 1024), |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&counter.to_le_bytes());
                black_box(cipher.seal_detached(nonce, b"/workspace/file", &mut buf))
            })
        });
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    let key = Key::from_bytes([9; 32]);
    for size in [4096usize, 1 << 20] {
        let label = if size == 4096 { "4 KiB" } else { "1 MiB" };
        let mut group = c.benchmark_group(format!("read {label}"));
        group.throughput(Throughput::Bytes(size as u64));
        let data = vec![0x42u8; size];
        let path = Path::new("/file");

        let bare = MemoryBackend::new();
        bare.write(path, &data).unwrap();
        group.bench_function("MemoryBackend", |b| {
            b.iter(|| black_box(bare.read(path).unwrap()))
        });

        let encrypted = FileEncryption::new(MemoryBackend::new()).with_key(key.clone());
        encrypted.write(path, &data).unwrap();
        group.bench_function("FileEncryption<MemoryBackend>", |b| {
            b.iter(|| black_box(encrypted.read(path).unwrap()))
        });

        let mac = IntegrityVerified::new(MemoryBackend::new()).with_key(key.clone());
        mac.write(path, &data).unwrap();
        group.bench_function("IntegrityVerified<MemoryBackend>", |b| {
            b.iter(|| black_box(mac.read(path).unwrap()))
        });

        let ram = EncryptedMemoryBackend::new(key.clone());
        ram.write(path, &data).unwrap();
        group.bench_function("EncryptedMemoryBackend", |b| {
            b.iter(|| black_box(ram.read(path).unwrap()))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = aes, reads
}
criterion_main!(benches);
