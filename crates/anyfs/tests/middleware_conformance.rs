//! Every middleware, configured to allow everything, changes nothing: each
//! passes the whole conformance suite over `MemoryBackend`, alone and as
//! the seed's full "AI Agent Sandbox" stack.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::middleware::{Guarded, PathFilterLayer, Quota};
use anyfs::prelude::*;
use anyfs::{
    MemoryBackend, PathFilter, QuotaLayer, RateLimit, RateLimitLayer, Restrictions,
    RestrictionsLayer, Tracing, TracingLayer,
};

fn unlimited_quota() -> Quota<MemoryBackend> {
    QuotaLayer::builder().build().layer(MemoryBackend::new())
}

fn roomy_quota() -> Quota<MemoryBackend> {
    // Limits far above anything the suite writes still pass everything.
    QuotaLayer::builder()
        .max_total_size(1 << 40)
        .max_file_size(1 << 30)
        .max_node_count(1 << 20)
        .max_dir_entries(1 << 16)
        .max_path_depth(4096)
        .build()
        .layer(MemoryBackend::new())
}

fn allow_all() -> PathFilter<MemoryBackend> {
    PathFilterLayer::builder()
        .allow("/**")
        .build()
        .expect("valid rules")
        .layer(MemoryBackend::new())
}

fn generous_rate() -> RateLimit<MemoryBackend> {
    RateLimitLayer::builder()
        .max_ops(u32::MAX)
        .per_second()
        .build()
        .layer(MemoryBackend::new())
}

fn no_restrictions() -> Restrictions<MemoryBackend> {
    RestrictionsLayer::builder()
        .build()
        .layer(MemoryBackend::new())
}

fn traced() -> Tracing<MemoryBackend> {
    TracingLayer::new().layer(MemoryBackend::new())
}

type Sandbox = Tracing<RateLimit<PathFilter<Quota<MemoryBackend>>>>;

fn sandbox() -> Sandbox {
    MemoryBackend::new()
        .layer(QuotaLayer::builder().max_total_size(1 << 40).build())
        .layer(PathFilterLayer::builder().allow("/**").build())
        .layer(
            RateLimitLayer::builder()
                .max_ops(u32::MAX)
                .per_second()
                .build(),
        )
        .layer(TracingLayer::new())
}

// Keep the `Guarded` name in use: every policy layer is one.
const _: fn(Tracing<MemoryBackend>) -> Guarded<MemoryBackend, TracingLayer> = |t| t;

anyfs_test::conformance!(mod quota_unlimited, Quota<MemoryBackend> => unlimited_quota();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod quota_roomy, Quota<MemoryBackend> => roomy_quota();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod path_filter, PathFilter<MemoryBackend> => allow_all();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod rate_limit, RateLimit<MemoryBackend> => generous_rate();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod restrictions, Restrictions<MemoryBackend> => no_restrictions();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod tracing, Tracing<MemoryBackend> => traced();
    links, permissions, sync, stats, inode, handles);
anyfs_test::conformance!(mod sandbox_stack, Sandbox => sandbox();
    links, permissions, sync, stats, inode, handles);
