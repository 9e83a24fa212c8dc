//! The `anyfs` command: `run` and `mount` against real mounts (skipped
//! without FUSE unless `ANYFS_REQUIRE_FUSE=1`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn anyfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anyfs"))
}

fn fuse_usable(test: &str) -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && anyfs()
            .args(["run", "--memory", "--", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("ANYFS_REQUIRE_FUSE").as_deref() != Ok("1"),
            "{test}: FUSE is required here but `anyfs run` cannot mount"
        );
        eprintln!("{test}: skipped, FUSE mounts are not possible here");
    }
    ok
}

#[test]
fn run_gives_back_the_exit_status_and_keeps_the_workspace() {
    if !fuse_usable("run_gives_back_the_exit_status_and_keeps_the_workspace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let status = anyfs()
        .arg("run")
        .arg(&db)
        .args([
            "--",
            "sh",
            "-c",
            "mkdir -p src && echo kept > src/f && exit 3",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let out = anyfs()
        .arg("run")
        .arg(&db)
        .args(["--", "cat", "src/f"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
}

#[test]
fn run_applies_read_only_quota_and_deny() {
    if !fuse_usable("run_applies_read_only_quota_and_deny") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let sh = |args: &[&str], script: &str| {
        anyfs()
            .arg("run")
            .arg(&db)
            .args(args)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap()
    };
    assert!(
        sh(&[], "echo x > f && mkdir secrets && echo s > secrets/key")
            .status
            .success()
    );
    let ro = sh(&["--read-only"], "cat f && echo y > g");
    assert!(!ro.status.success());
    assert!(
        String::from_utf8_lossy(&ro.stderr).contains("Read-only"),
        "{ro:?}"
    );
    let denied = sh(&["--deny", "/secrets/**"], "cat f && cat secrets/key");
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("ermission denied"),
        "{denied:?}"
    );
    let quota = sh(&["--quota", "1000"], "head -c 5000 /dev/zero > big");
    assert!(!quota.status.success());
    assert!(
        String::from_utf8_lossy(&quota.stderr).contains("space"),
        "{quota:?}"
    );
}

#[test]
fn run_opens_an_encrypted_workspace_with_its_password() {
    if !fuse_usable("run_opens_an_encrypted_workspace_with_its_password") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("secret.db");
    let run = |password: &str, script: &str| {
        anyfs()
            .arg("run")
            .arg(&db)
            .args(["--password-env", "WS_PASSWORD", "--", "sh", "-c", script])
            .env("WS_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(run("right", "echo classified > doc").status.success());
    let bytes = std::fs::read(&db).unwrap();
    assert!(!bytes.windows(10).any(|w| w == b"classified"));
    let wrong = run("wrong", "cat doc");
    assert!(!wrong.status.success());
    // Named by the file asked for, not by the root path inside it.
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("secret.db: wrong password"), "{said}");
    assert!(!said.contains(": /:"), "{said}");
    let right = run("right", "cat doc");
    assert_eq!(String::from_utf8_lossy(&right.stdout), "classified\n");
}

fn mounted(mnt: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains(mnt.to_str().unwrap())
}

/// A file of the workspace, read through `anyfs run`.
fn cat(db: &Path, name: &str) -> String {
    let out = anyfs()
        .arg("run")
        .arg(db)
        .args(["--", "cat", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `anyfs mount db mnt` (making `mnt`), once the mount is there.
fn mount_in_background(db: &Path, mnt: &Path) -> std::process::Child {
    std::fs::create_dir(mnt).unwrap();
    let child = anyfs()
        .arg("mount")
        .arg(db)
        .arg(mnt)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !mounted(mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "never mounted");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn mount_serves_until_sigterm_then_flushes_and_unmounts() {
    if !fuse_usable("mount_serves_until_sigterm_then_flushes_and_unmounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, mnt) = (dir.path().join("work.db"), dir.path().join("mnt"));
    let mut child = mount_in_background(&db, &mnt);
    std::fs::write(mnt.join("note.txt"), "survives the unmount").unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!mounted(&mnt));
    assert_eq!(cat(&db, "note.txt"), "survives the unmount");
}

#[test]
fn mount_ends_when_unmounted_from_outside_keeping_what_was_written() {
    if !fuse_usable("mount_ends_when_unmounted_from_outside_keeping_what_was_written") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, mnt) = (dir.path().join("work.db"), dir.path().join("mnt"));
    let mut child = mount_in_background(&db, &mnt);
    std::fs::write(mnt.join("note.txt"), "kept").unwrap();
    let umount = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(umount.success());
    // The process notices and ends by itself, successfully.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("`anyfs mount` kept running after its mount was gone");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("was unmounted"), "{err}");
    assert_eq!(cat(&db, "note.txt"), "kept");
}

#[test]
fn bad_usage_is_explained() {
    let out = anyfs()
        .args(["mount", "--memory", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the mount point"));
    let out = anyfs().args(["run", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = anyfs()
        .args(["mount", "/nonexistent/work.db", "/nonexistent/mnt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}

/// Runs `anyfs ARGS`, expecting `code`; its standard output.
fn anyfs_ok(args: &[&str], code: i32) -> String {
    let out = anyfs().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "anyfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn snapshots_branches_diffs_and_merges_from_the_command_line() {
    if !fuse_usable("snapshots_branches_diffs_and_merges_from_the_command_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("work.db");
    let w = db.to_str().unwrap();
    let status = anyfs()
        .args([
            "run",
            w,
            "--",
            "sh",
            "-c",
            "mkdir src && echo one > src/a && echo keep > b",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let taken: serde_json::Value =
        serde_json::from_str(&anyfs_ok(&["snapshot", "create", w, "before", "--json"], 0)).unwrap();
    let snap = taken["id"].as_u64().unwrap().to_string();
    assert_eq!(taken["name"], "before");
    assert!(anyfs_ok(&["snapshot", "list", w], 0).contains("before"));

    // The agent works on a branch; the workspace does not see it.
    let branch: serde_json::Value = serde_json::from_str(&anyfs_ok(
        &["branch", "create", w, &snap, "agent", "--json"],
        0,
    ))
    .unwrap();
    let id = branch["id"].as_u64().unwrap().to_string();
    let status = anyfs()
        .args([
            "run",
            "--branch",
            &id,
            w,
            "--",
            "sh",
            "-c",
            "echo two >> src/a && rm b && echo new > c",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = anyfs()
        .args(["run", w, "--", "cat", "src/a"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");

    let diff = anyfs_ok(
        &[
            "diff",
            w,
            &format!("snapshot:{snap}"),
            &format!("branch:{id}"),
        ],
        0,
    );
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(lines.len(), 3, "{diff}");
    assert!(
        lines[0].starts_with("deleted") && lines[0].contains("/b"),
        "{diff}"
    );
    assert!(
        lines[1].starts_with("added") && lines[1].contains("/c"),
        "{diff}"
    );
    assert!(
        lines[2].starts_with("modified") && lines[2].contains("/src/a  (4 → 8 bytes)"),
        "{diff}"
    );

    // A snapshot mounts read-only.
    let out = anyfs()
        .args([
            "run",
            "--snapshot",
            &snap,
            w,
            "--",
            "sh",
            "-c",
            "cat b; echo x > b",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keep\n");
    assert!(!out.status.success());

    // A conflicting change: listed, nothing applied, status 1.
    let status = anyfs()
        .args(["run", w, "--", "sh", "-c", "echo mine > src/a"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = anyfs_ok(&["merge", w, &id], 1);
    assert!(out.contains("conflict  /src/a"), "{out}");
    assert!(!anyfs_ok(&["diff", w, &format!("snapshot:{snap}")], 0).contains("/b"));
    let merged = anyfs_ok(&["merge", w, &id, "--take", "branch", "--json"], 0);
    let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(merged["kept"], 0);
    let out = anyfs()
        .args(["run", w, "--", "sh", "-c", "cat src/a c; test ! -e b"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nnew\n");

    // Back to the snapshot; a bad id is explained.
    anyfs_ok(&["snapshot", "restore", w, &snap], 0);
    let out = anyfs()
        .args(["run", w, "--", "cat", "src/a"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
    let out = anyfs()
        .args(["snapshot", "restore", w, "999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );
    let out = anyfs()
        .args([
            "snapshot",
            "list",
            &dir.path().join("typo.db").display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace file"));
    assert!(!dir.path().join("typo.db").exists());
    anyfs_ok(&["branch", "delete", w, &id], 0);
    anyfs_ok(&["snapshot", "delete", w, &snap], 0);
    assert_eq!(anyfs_ok(&["snapshot", "list", w, "--json"], 0).trim(), "[]");
}

/// Every path under `dir` with its content (a symlink's target) and
/// mode, `.git` left out when `skip_git`.
fn tree_of(
    dir: &Path,
    skip_git: bool,
) -> std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if skip_git && rel.starts_with(".git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let content = if meta.is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                todo.push(path.clone());
                b"<dir>".to_vec()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(rel, (content, mode));
        }
    }
    out
}

fn sh(dir: &Path, script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// What an agent does in a repository: git, an npm-style tree, removals,
/// moves across base and new files, modes, truncations, a link.
const AGENT_WORK: &str = "set -e
git status --porcelain >/dev/null
echo new > new.txt
git add -A
git -c user.email=agent@example.com -c user.name=agent commit -qm 'agent change'
mkdir -p node_modules/pkg/lib
for i in 1 2 3 4 5; do echo \"module $i\" > node_modules/pkg/lib/m$i.js; done
echo '{}' > node_modules/pkg/package.json
rm -rf docs
mv src/a.txt src/b.txt
mv new.txt src/new.txt
mv src lib
chmod 600 README.md
truncate -s 3 data.txt
: > emptied.txt
ln -s lib/b.txt link
printf 'appended\\n' >> big.bin
";

#[test]
fn an_overlay_leaves_the_repository_untouched_until_applied() {
    if !fuse_usable("an_overlay_leaves_the_repository_untouched_until_applied") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    sh(
        &repo,
        "set -e
        mkdir -p src docs
        echo a > src/a.txt
        echo readme > README.md
        echo docs > docs/guide.md
        echo 0123456789 > data.txt
        echo 'not empty' > emptied.txt
        head -c 3000000 /dev/zero | tr '\\0' 'x' > big.bin
        git init -q
        git add -A
        git -c user.email=a@example.com -c user.name=a commit -qm base",
    );
    let before = tree_of(&repo, false);
    let expected_dir = dir.path().join("expected");
    sh(dir.path(), "cp -a repo expected");
    sh(&expected_dir, AGENT_WORK);
    let expected = tree_of(&expected_dir, true);

    let db = dir.path().join("work.db");
    let out = anyfs()
        .args(["run", "--over"])
        .arg(&repo)
        .arg(&db)
        .args(["--", "sh", "-c", AGENT_WORK])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree_of(&repo, false), before, "the repository changed");

    // The workspace, mounted again over it, shows the agent's work.
    let out = anyfs()
        .args(["run", "--over"])
        .arg(&repo)
        .arg(&db)
        .args(["--", "git", "log", "--format=%s"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "agent change\nbase\n");

    let diff = anyfs_ok(&["diff", db.to_str().unwrap()], 0);
    for line in [
        "deleted   /docs/",
        "added     /lib/",
        "modified  /README.md",
    ] {
        assert!(diff.contains(line), "{line:?} not in\n{diff}");
    }
    assert_eq!(tree_of(&repo, false), before, "diff changed the repository");

    let applied = anyfs_ok(&["apply", db.to_str().unwrap(), repo.to_str().unwrap()], 0);
    assert!(applied.contains("written"), "{applied}");
    assert_eq!(tree_of(&repo, true), expected);
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "agent change\nbase\n");
    // Git sees the same work left uncommitted as where it was done plainly.
    let status = |dir: &Path| {
        let out = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(&repo), status(&expected_dir));

    // A path changed in the repository meanwhile is refused, alone.
    let db2 = dir.path().join("second.db");
    let out = anyfs()
        .args(["run", "--over"])
        .arg(&repo)
        .arg(&db2)
        .args([
            "--",
            "sh",
            "-c",
            "echo ours > README.md && echo fine > other.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(repo.join("README.md"), "theirs\n").unwrap();
    let out = anyfs()
        .args(["apply"])
        .arg(&db2)
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("conflict  /README.md"));
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "theirs\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("other.txt")).unwrap(),
        "fine\n"
    );
    // Another directory than the one it overlays is refused.
    let out = anyfs()
        .args(["run", "--over"])
        .arg(dir.path())
        .arg(&db2)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is an overlay of"));
}
