//! The design document's middleware examples, as written there (plus the
//! `use` lines they leave out), with assertions on what each promises.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::prelude::*;
use anyfs::{FileStorage, FsErrorKind, Layer, MemoryBackend};

#[test]
fn middleware_based_policy() {
    use anyfs::{MemoryBackend, PathFilterLayer, QuotaLayer, RateLimitLayer, TracingLayer};

    let secure_backend = MemoryBackend::new()
        .layer(
            QuotaLayer::builder() // Limit resources
                .max_total_size(100 * 1024 * 1024)
                .build(),
        )
        .layer(
            PathFilterLayer::builder() // Sandbox paths
                .allow("/workspace/**")
                .deny("**/.env")
                .deny("**/secrets/**")
                .build(),
        )
        .layer(
            RateLimitLayer::builder() // Throttle operations
                .max_ops(1000)
                .per_second()
                .build(),
        )
        .layer(TracingLayer::new()); // Audit trail

    let fs = FileStorage::new(secure_backend);
    fs.create_dir("/workspace").unwrap();
    fs.write("/workspace/a.txt", "allowed").unwrap();
    assert_eq!(
        fs.read("/workspace/.env").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.write("/workspace/secrets/x", "x").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.write("/elsewhere", "x").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
}

#[test]
fn path_sandboxing() {
    use anyfs::PathFilterLayer;
    let backend = MemoryBackend::new();
    FileStorage::new(backend.clone())
        .create_dir_all("/workspace/secrets")
        .unwrap();

    let sandboxed = PathFilterLayer::builder()
        .allow("/workspace/**") // Allow workspace access
        .deny("**/.env") // Block .env files
        .deny("**/secrets/**") // Block secrets directories
        .deny("**/*.key") // Block key files
        .build()
        .layer(backend);

    let fs = FileStorage::new(sandboxed);
    fs.write("/workspace/a.txt", "ok").unwrap();
    for denied in [
        "/workspace/.env",
        "/workspace/secrets/x",
        "/workspace/deep/id.key",
        "/etc/passwd",
    ] {
        assert_eq!(
            fs.write(denied, "x").unwrap_err().kind(),
            FsErrorKind::AccessDenied,
            "{denied}"
        );
    }
    // read_dir filters denied entries from results.
    assert_eq!(
        fs.read_dir("/workspace").unwrap().sorted_names().unwrap(),
        vec!["a.txt"]
    );
}

#[test]
fn symlink_capability_follows_trait_bounds() -> Result<(), anyfs::FsError> {
    // MemoryBackend implements FsLink → symlinks work
    let fs = FileStorage::new(MemoryBackend::new());
    fs.symlink("/target", "/link")?; // ✅ Works
    assert_eq!(fs.read_link("/link")?, std::path::Path::new("/target"));
    Ok(())
}

#[test]
fn restrictions_block_permission_changes() {
    use anyfs::{Permissions, RestrictionsLayer};
    let backend = MemoryBackend::new();

    let restricted = RestrictionsLayer::builder()
        .deny_permissions() // Block set_permissions() calls
        .build()
        .layer(backend);

    let fs = FileStorage::new(restricted);
    fs.write("/run.sh", "echo").unwrap();
    let err = fs
        .set_permissions("/run.sh", Permissions::from_mode(0o777))
        .unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::PermissionDenied);
}

#[test]
fn resource_limits() {
    use anyfs::QuotaLayer;
    let backend = MemoryBackend::new();

    let limited = QuotaLayer::builder()
        .max_total_size(100 * 1024 * 1024) // 100 MB total
        .max_file_size(10 * 1024 * 1024) // 10 MB per file
        .max_node_count(10_000) // Max files/dirs
        .max_dir_entries(1_000) // Max per directory
        .max_path_depth(64) // Max nesting
        .build()
        .layer(backend);

    let fs = FileStorage::new(limited);
    // Writes rejected when limits exceeded.
    fs.write("/ok.bin", vec![0u8; 10 * 1024 * 1024]).unwrap();
    let err = fs
        .write("/big.bin", vec![0u8; 10 * 1024 * 1024 + 1])
        .unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::FileSizeExceeded);
    // Streaming writes are tracked too.
    let mut w = fs.open_write("/stream.bin").unwrap();
    use std::io::Write;
    w.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
    assert!(w.write_all(b"one byte too many").is_err());
    w.commit().unwrap();
    let deep = format!("/{}", vec!["d"; 65].join("/"));
    assert_eq!(
        fs.create_dir_all(&deep).unwrap_err().kind(),
        FsErrorKind::QuotaExceeded
    );
    assert_eq!(fs.backend().usage().total_size, 20 * 1024 * 1024);
}

#[test]
fn rate_limiting() {
    use anyfs::RateLimitLayer;
    let backend = MemoryBackend::new();

    let throttled = RateLimitLayer::builder()
        .max_ops(1000)
        .per_second()
        .build()
        .layer(backend);

    let fs = FileStorage::new(throttled);
    let mut refused = 0;
    for i in 0..1100 {
        if let Err(e) = fs.write(format!("/f{i}"), "x") {
            assert_eq!(e.kind(), FsErrorKind::RateLimitExceeded);
            refused += 1;
        }
    }
    // Operations rejected when limit exceeded (a few may refill meanwhile).
    assert!((50..=100).contains(&refused), "{refused} refused");
}

#[test]
fn ai_agent_sandbox() {
    use anyfs::{
        FileStorage, MemoryBackend, PathFilterLayer, QuotaLayer, RateLimitLayer, TracingLayer,
    };

    let sandbox = MemoryBackend::new()
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
        .layer(RateLimitLayer::builder().max_ops(1000).per_second().build())
        .layer(TracingLayer::new());

    let fs = FileStorage::new(sandbox);
    // Agent code can only access /workspace, limited resources, audited
    fs.create_dir("/workspace").unwrap();
    fs.write("/workspace/a.txt", "agent output").unwrap();
    assert_eq!(
        fs.read_to_string("/workspace/a.txt").unwrap(),
        "agent output"
    );
    assert_eq!(
        fs.read("/workspace/.env").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.read("/workspace/secrets/x").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.write("/workspace/huge.bin", vec![0u8; 5 * 1024 * 1024 + 1])
            .unwrap_err()
            .kind(),
        FsErrorKind::FileSizeExceeded
    );
    // Note: MemoryBackend implements FsLink, so symlinks work if needed
    fs.symlink("/workspace/a.txt", "/workspace/link").unwrap();
    assert_eq!(
        fs.read_to_string("/workspace/link").unwrap(),
        "agent output"
    );
}

#[test]
fn read_only_browsing() -> Result<(), anyfs::FsError> {
    use anyfs::{FileStorage, ReadOnly, VRootFsBackend};

    // The seed browses "/var/archive"; here a directory made for the test.
    let archive = tempfile::tempdir().unwrap();
    std::fs::create_dir(archive.path().join("2025")).unwrap();
    std::fs::write(archive.path().join("2025/report.txt"), "annual report").unwrap();
    let archive_dir = archive.path();

    let readonly_fs = FileStorage::new(ReadOnly::new(VRootFsBackend::new(archive_dir)?));

    // All write operations return FsError::ReadOnly
    assert_eq!(
        readonly_fs.read_to_string("/2025/report.txt")?,
        "annual report"
    );
    assert_eq!(readonly_fs.read_dir("/")?.sorted_names()?, ["2025"]);
    for result in [
        readonly_fs.write("/2025/report.txt", "rewritten"),
        readonly_fs.remove_file("/2025/report.txt"),
        readonly_fs.create_dir("/new"),
        readonly_fs.rename("/2025", "/2026"),
    ] {
        assert_eq!(result.unwrap_err().kind(), FsErrorKind::ReadOnly);
    }
    assert_eq!(
        std::fs::read_to_string(archive_dir.join("2025/report.txt")).unwrap(),
        "annual report"
    );
    // And the archive is a jail: nothing beside it can be read.
    assert!(readonly_fs.read("/../../etc/passwd").is_err());
    Ok(())
}
