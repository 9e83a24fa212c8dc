//! The seed's "AI Agent Sandbox" stack (quota, path filter, rate limit,
//! tracing) over `MemoryBackend`, against the bare `MemoryBackend`: 4 KiB
//! read, 4 KiB write, metadata, and `read_dir` of 100 entries.
//!
//! `cargo bench -p anyfs --bench middleware`
//!
//! The rate limit is set high enough never to refuse (the seed's 1000 per
//! second would stop the benchmark itself); its cost per check is the same.
//! No tracing subscriber is installed, as in a service that filters these
//! events out; the audit sink is off.

#![allow(clippy::unwrap_used)] // a failed setup step should stop the run

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsDir, FsWrite, MemoryBackend, PathFilterLayer, QuotaLayer, RateLimitLayer,
    TracingLayer,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn sandbox() -> impl anyfs::FsFull {
    MemoryBackend::new()
        .layer(
            QuotaLayer::builder()
                .max_total_size(50 * 1024 * 1024)
                .max_file_size(5 * 1024 * 1024)
                .build(),
        )
        .layer(
            PathFilterLayer::builder()
                .allow("/workspace/**")
                .deny("**/.env")
                .deny("**/secrets/**")
                .build(),
        )
        .layer(
            RateLimitLayer::builder()
                .max_ops(u32::MAX)
                .per_second()
                .build(),
        )
        .layer(TracingLayer::new())
}

fn populate<B: FsWrite + FsDir>(fs: &B) {
    fs.create_dir(Path::new("/workspace")).unwrap();
    fs.create_dir(Path::new("/workspace/dir")).unwrap();
    for i in 0..100 {
        fs.write(Path::new(&format!("/workspace/dir/f{i:03}")), &[7u8; 4096])
            .unwrap();
    }
    fs.write(Path::new("/workspace/file"), &[1u8; 4096])
        .unwrap();
}

fn ops<B: anyfs::Fs>(c: &mut Criterion, group_name: &str, fs: &B) {
    populate(fs);
    let data = [9u8; 4096];
    let mut group = c.benchmark_group(group_name);
    group.bench_function("read_4k", |b| {
        b.iter(|| black_box(fs.read(Path::new("/workspace/file")).unwrap()))
    });
    group.bench_function("write_4k", |b| {
        b.iter(|| {
            fs.write(Path::new("/workspace/out"), black_box(&data))
                .unwrap()
        })
    });
    group.bench_function("metadata", |b| {
        b.iter(|| black_box(fs.metadata(Path::new("/workspace/file")).unwrap()))
    });
    group.bench_function("read_dir_100", |b| {
        b.iter(|| {
            let n = fs.read_dir(Path::new("/workspace/dir")).unwrap().count();
            assert_eq!(n, 100);
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    ops(c, "storage/bare", &FileStorage::new(MemoryBackend::new()));
    ops(c, "storage/sandbox", &FileStorage::new(sandbox()));
    ops(c, "backend/bare", &MemoryBackend::new());
    ops(c, "backend/sandbox", &sandbox());
    // Each layer alone, to see where the stack's cost goes.
    ops(
        c,
        "layer/quota",
        &MemoryBackend::new().layer(QuotaLayer::builder().max_total_size(1 << 30).build()),
    );
    ops(
        c,
        "layer/path_filter",
        &MemoryBackend::new().layer(
            PathFilterLayer::builder()
                .allow("/workspace/**")
                .deny("**/.env")
                .deny("**/secrets/**")
                .build(),
        ),
    );
    ops(
        c,
        "layer/rate_limit",
        &MemoryBackend::new().layer(
            RateLimitLayer::builder()
                .max_ops(u32::MAX)
                .per_second()
                .build(),
        ),
    );
    ops(
        c,
        "layer/tracing",
        &MemoryBackend::new().layer(TracingLayer::new()),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
