//! An AI agent's workspace: the seed's "AI Agent Sandbox" stack — quota,
//! path filter, rate limit and an audit trail — over memory. The agent
//! writes a small project; its attempts to leave `/workspace`, read
//! secrets or fill the disk are refused, and every call is audited.
//!
//! Run with `cargo run --example agent_workspace`.

use std::sync::Arc;

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsError, MemoryAuditSink, MemoryBackend, PathFilterLayer, QuotaLayer,
    RateLimitLayer, TracingLayer,
};

fn main() -> Result<(), FsError> {
    let audit = Arc::new(MemoryAuditSink::default());
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
        .layer(TracingLayer::new().with_sink(audit.clone()));
    let fs = FileStorage::new(sandbox);

    // What an agent does on a coding task.
    fs.create_dir_all("/workspace/src")?;
    fs.write("/workspace/README.md", "# hello\n")?;
    fs.write(
        "/workspace/src/main.rs",
        "fn main() { println!(\"hello\"); }\n",
    )?;
    fs.append("/workspace/README.md", "Prints a greeting.\n")?;
    fs.copy("/workspace/src/main.rs", "/workspace/main.rs.orig")?;
    fs.symlink("/workspace/src", "/workspace/code")?;
    println!(
        "/workspace/code/main.rs (through a symlink): {}",
        fs.read_to_string("/workspace/code/main.rs")?.trim()
    );

    println!("\nwhat the sandbox refuses:");
    let attempts: [(&str, Result<(), FsError>); 6] = [
        (
            "climb out with ..",
            fs.write("/workspace/../../etc/passwd", "x"),
        ),
        (
            "write a .env file",
            fs.write("/workspace/.env", "API_KEY=sk-123"),
        ),
        ("plant a secret", fs.write("/workspace/secrets/token", "t")),
        ("follow a link out", {
            fs.symlink("/etc", "/workspace/etc-link")?;
            fs.read("/workspace/etc-link/passwd").map(drop)
        }),
        (
            "a 6 MiB file",
            fs.write("/workspace/big.bin", vec![0u8; 6 << 20]),
        ),
        ("a NUL in a name", fs.write("/workspace/bad\0name", "x")),
    ];
    for (what, result) in attempts {
        match result {
            Err(e) => println!("  {what:<20} -> {e}"),
            Ok(()) => println!("  {what:<20} -> allowed?!"),
        }
    }

    let quota = fs.backend().inner().inner().inner();
    let records = audit.records();
    println!(
        "\naudit: {} operations, {} denied; quota: {} bytes in {} nodes",
        records.len(),
        records.iter().filter(|r| r.is_denial()).count(),
        quota.usage().total_size,
        quota.usage().node_count,
    );
    Ok(())
}
