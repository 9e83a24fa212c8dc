//! `anyfs run --sandbox`: the command works in the workspace and reaches
//! nothing else; limits end it; Ctrl-C ends everything it started; the
//! workspace is always flushed and unmounted. Needs FUSE and bubblewrap
//! (skipped without them unless `ANYFS_REQUIRE_FUSE=1`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn anyfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anyfs"))
}

fn usable(test: &str) -> bool {
    anyfs_sandbox::usable_in_test(test)
}

fn run(db: &Path, extra: &[&str], script: &str) -> Output {
    anyfs()
        .args(["run", "--sandbox"])
        .args(extra)
        .arg(db)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The sandbox mount point `pid` serves (it holds the mount's root open).
fn mount_point_of(pid: u32) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|p| p.display().to_string())
        .find(|p| p.contains("/anyfs-sandbox-") && p.ends_with("/workspace"))
}

fn is_mounted(point: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(point))
}

#[test]
fn the_command_works_in_the_workspace_and_sees_nothing_else() {
    if !usable("the_command_works_in_the_workspace_and_sees_nothing_else") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    // A file of the caller's, next to the workspace, world-readable.
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "outside-secret").unwrap();
    let out = run(
        &db,
        &[],
        &format!(
            "pwd; echo $HOME; id -u; mkdir -p src && echo kept > src/f; cat {} 2>&1; ls /home 2>&1; exit 3",
            outside.display()
        ),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("/workspace\n/workspace\n1000\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("outside-secret"), "{stdout}");
    assert!(stdout.contains("No such file or directory"), "{stdout}");
    // Kept in the workspace file, as the plain `run` sees it.
    let out = anyfs()
        .arg("run")
        .arg(&db)
        .args(["--", "cat", "src/f"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "kept\n");
}

#[test]
fn the_environment_is_only_what_is_given() {
    if !usable("the_environment_is_only_what_is_given") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let out = anyfs()
        .args([
            "run",
            "--sandbox",
            "--env",
            "GREETING=hello",
            "--env",
            "PASSED",
        ])
        .arg(&db)
        .args(["--", "env"])
        .env("PASSED", "passed-on")
        .env("SECRET_TOKEN", "must-not-leak")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let env = text(&out.stdout);
    assert!(env.contains("GREETING=hello\n"), "{env}");
    assert!(env.contains("PASSED=passed-on\n"), "{env}");
    assert!(!env.contains("must-not-leak"), "{env}");
    assert!(!env.contains("SECRET_TOKEN"), "{env}");
    // A name to pass on that is not set is an error, not an empty value.
    let out = anyfs()
        .args(["run", "--sandbox", "--env", "NOT_SET_ANYWHERE"])
        .arg(&db)
        .args(["--", "true"])
        .env_remove("NOT_SET_ANYWHERE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("NOT_SET_ANYWHERE"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_network_is_off_unless_asked_for() {
    if !usable("the_network_is_off_unless_asked_for") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = std::io::Write::write_all(&mut stream, b"host-listener");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let script = format!(
        "python3 -c 'import socket; print(socket.create_connection((\"127.0.0.1\", {port}), timeout=3).recv(50).decode())'"
    );
    let out = run(&db, &[], &script);
    assert_ne!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("host-listener"));
    let out = run(&db, &["--net"], &script);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("host-listener"));
}

#[test]
fn a_timeout_ends_everything_with_124_and_the_workspace_is_kept() {
    if !usable("a_timeout_ends_everything_with_124_and_the_workspace_is_kept") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let started = Instant::now();
    let out = run(
        &db,
        &["--timeout", "1"],
        "echo before > before.txt; sleep 1000 & sleep 1000",
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("time limit"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let out = run(&db, &[], "cat before.txt");
    assert_eq!(text(&out.stdout), "before\n");
}

#[test]
fn output_and_process_limits_hold() {
    if !usable("output_and_process_limits_hold") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let out = run(
        &db,
        &["--limit-output", "1K"],
        "head -c 1000000 /dev/zero | tr '\\0' x",
    );
    assert_eq!(out.stdout.len(), 1024);
    assert!(
        text(&out.stderr).contains("dropped"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &db,
        &["--limit-processes", "8"],
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; wait",
    );
    assert!(text(&out.stderr).contains("fork"), "{}", text(&out.stderr));
    let out = run(
        &db,
        &["--limit-memory", "64M"],
        "python3 -c 'x = bytearray(1 << 30)'",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("MemoryError"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&db, &["--limit-memory", "lots"], "true");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a size"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ctrl_c_ends_the_whole_tree_then_flushes_and_unmounts() {
    if !usable("ctrl_c_ends_the_whole_tree_then_flushes_and_unmounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let mut child = anyfs()
        .args(["run", "--sandbox"])
        .arg(&db)
        .args([
            "--",
            "sh",
            "-c",
            "echo written > w.txt; (sleep 1000 &); sleep 1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let point = loop {
        if let Some(point) = mount_point_of(child.id()) {
            break point;
        }
        assert!(Instant::now() < deadline, "never mounted");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(is_mounted(&point));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(10));
    assert_ne!(status.code(), Some(0));
    assert!(!is_mounted(&point), "the workspace is still mounted");
    let out = run(&db, &[], "cat w.txt");
    assert_eq!(text(&out.stdout), "written\n");
}
