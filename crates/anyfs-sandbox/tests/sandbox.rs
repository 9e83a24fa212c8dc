//! The sandbox attacked from inside: every way out it should refuse, the
//! resource abuse it should end, and the real work it should allow.
//!
//! A canary file is planted on the host (in `/var/tmp` and in the host's
//! `/tmp`, world-readable) and a canary listener on the host's 127.0.0.1;
//! no command may reach either. The tests need FUSE and bubblewrap; without
//! them they say so and pass, unless `ANYFS_REQUIRE_FUSE=1` (set by
//! `.ci/run`) makes that a failure.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyfs::{FsRead, MemoryBackend};
use anyfs_sandbox::{Ended, Io, Limits, Network, Outcome, Sandbox, SandboxUser, WorkspaceMount};

/// The host's secrets a command must never see.
struct Canary {
    /// Its content.
    secret: String,
    /// World-readable files holding it, outside every sandboxed path.
    files: Vec<PathBuf>,
    /// A listener on the host's loopback that answers with it.
    port: u16,
    _dirs: Vec<tempfile::TempDir>,
}

fn canary() -> &'static Canary {
    static CANARY: OnceLock<Canary> = OnceLock::new();
    CANARY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let secret = format!("CANARY-{}-{}", std::process::id(), rand_word());
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for parent in ["/var/tmp", "/tmp"] {
            let dir = tempfile::Builder::new()
                .prefix("anyfs-canary-")
                .tempdir_in(parent)
                .unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let file = dir.path().join("canary.txt");
            std::fs::write(&file, &secret).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            files.push(file);
            dirs.push(dir);
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = secret.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Canary {
            secret,
            files,
            port,
            _dirs: dirs,
        }
    })
}

fn rand_word() -> String {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn skip(test: &str) -> bool {
    !anyfs_sandbox::usable_in_test(test)
}

/// Limits every test command runs under unless it says otherwise: a
/// wall-time limit, so that a failing test never hangs the run.
fn limits() -> Limits {
    Limits {
        wall_time: Some(Duration::from_secs(60)),
        output: Some(1 << 20),
        ..Limits::default()
    }
}

/// Runs `script` with `sh -c` in a fresh memory workspace.
fn sh(script: &str) -> Outcome {
    sh_with(Sandbox::new(SandboxUser::new()).limits(limits()), script)
}

fn sh_with(sandbox: Sandbox, script: &str) -> Outcome {
    let backend = Arc::new(MemoryBackend::new());
    sh_in(&backend, sandbox, script)
}

fn sh_in(backend: &Arc<MemoryBackend>, sandbox: Sandbox, script: &str) -> Outcome {
    let mount = WorkspaceMount::mount(backend.clone(), &sandbox.user(), false).unwrap();
    let out = sandbox
        .run(
            &mount,
            &["sh".into(), "-c".into(), script.into()],
            Io::capture(Vec::new(), 1 << 20),
        )
        .unwrap();
    mount.unmount().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that nothing the command printed holds the canary.
fn no_canary(out: &Outcome, what: &str) {
    let secret = &canary().secret;
    assert!(
        !text(&out.stdout.bytes).contains(secret) && !text(&out.stderr.bytes).contains(secret),
        "{what}: the canary leaked: {out:?}"
    );
}

#[test]
fn host_files_are_out_of_reach_by_every_path() {
    if skip("host_files_are_out_of_reach_by_every_path") {
        return;
    }
    let canary = canary();
    for file in &canary.files {
        let f = file.display();
        let dir = file.parent().unwrap().display();
        let attempts = [
            format!("cat {f}"),
            format!("cat /proc/self/root{f}"),
            format!("cat /proc/1/root{f}"),
            format!("cat /proc/1/cwd/../..{f}"),
            format!("cat /workspace/../../..{f}"),
            format!("cd /workspace && cat ../../..{f}"),
            format!("ln -s {f} link && cat link"),
            format!("ln -s {dir} dirlink && cat dirlink/canary.txt"),
            format!("ln {f} hard && cat hard"),
            format!("cp {f} copy && cat copy"),
            format!("ls {dir}"),
            format!("python3 -c 'print(open(\"{f}\").read())'"),
        ];
        for attempt in attempts {
            let out = sh(&attempt);
            assert_ne!(out.code, 0, "{attempt}: succeeded: {out:?}");
            no_canary(&out, &attempt);
        }
    }
}

#[test]
fn nothing_else_of_the_host_is_visible() {
    if skip("nothing_else_of_the_host_is_visible") {
        return;
    }
    let out = sh(
        "ls / ; echo ---; ls -a /etc; echo ---; ls /home /root /var/lib /run /sys /srv /opt /mnt /media 2>&1; echo ---; ls -a /tmp",
    );
    let listing = text(&out.stdout.bytes);
    let mut parts = listing.split("---\n");
    let root: Vec<&str> = parts.next().unwrap().lines().collect();
    for name in &root {
        assert!(
            [
                "bin",
                "dev",
                "etc",
                "lib",
                "lib32",
                "lib64",
                "libx32",
                "proc",
                "sbin",
                "tmp",
                "usr",
                "var",
                "workspace"
            ]
            .contains(name),
            "the root shows {name}: {root:?}"
        );
    }
    let etc = parts.next().unwrap();
    for secret in [
        "shadow",
        "gshadow",
        "sudoers",
        "ssh",
        "fuse.conf",
        "machine-id",
    ] {
        assert!(
            !etc.lines().any(|l| l == secret),
            "/etc shows {secret}: {etc}"
        );
    }
    let others = parts.next().unwrap();
    for dir in [
        "/home", "/root", "/var/lib", "/run", "/sys", "/srv", "/opt", "/mnt", "/media",
    ] {
        assert!(
            others.contains(&format!("cannot access '{dir}': No such file or directory")),
            "the host's {dir} is visible: {others}"
        );
    }
    let tmp: Vec<&str> = parts.next().unwrap().lines().collect();
    assert_eq!(tmp, [".", ".."], "the private /tmp starts empty");
}

#[test]
fn writes_outside_the_workspace_and_tmp_fail() {
    if skip("writes_outside_the_workspace_and_tmp_fail") {
        return;
    }
    for target in [
        "/x",
        "/etc/x",
        "/etc/passwd",
        "/usr/x",
        "/usr/bin/x",
        "/bin/sh",
        "/dev/x",
        "/proc/x",
        "/var/x",
        "/proc/sys/kernel/hostname",
    ] {
        let out = sh(&format!("echo hi > {target}"));
        assert_ne!(out.code, 0, "{target}: written: {out:?}");
    }
    let out = sh(
        "echo a > /tmp/a && echo b > /workspace/b && echo c > /dev/shm/c && echo d > /var/tmp/d && cat /tmp/a /workspace/b /dev/shm/c /tmp/d",
    );
    assert_eq!(text(&out.stdout.bytes), "a\nb\nc\nd\n", "{out:?}");
}

#[test]
fn no_network_by_default_and_the_host_network_on_request() {
    if skip("no_network_by_default_and_the_host_network_on_request") {
        return;
    }
    let port = canary().port;
    let connect = |host: &str| {
        format!(
            "python3 -c 'import socket; s=socket.create_connection((\"{host}\", {port}), timeout=3); print(s.recv(100).decode())'"
        )
    };
    for host in ["127.0.0.1", "10.255.255.1", "8.8.8.8"] {
        let out = sh(&connect(host));
        assert_ne!(out.code, 0, "{host}: connected: {out:?}");
        no_canary(&out, host);
    }
    let out = sh(
        "cat /proc/net/tcp; ls /sys/class/net 2>&1; python3 -c 'import socket; print(socket.if_nameindex())'",
    );
    assert!(text(&out.stdout.bytes).contains("'lo'"), "{out:?}");
    assert!(!text(&out.stdout.bytes).contains("eth"), "{out:?}");
    // Asked for, the network is the host's.
    let out = sh_with(
        Sandbox::new(SandboxUser::new())
            .limits(limits())
            .network(Network::Host),
        &connect("127.0.0.1"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(text(&out.stdout.bytes).contains(&canary().secret));
}

#[test]
fn host_processes_and_the_callers_environment_are_invisible() {
    if skip("host_processes_and_the_callers_environment_are_invisible") {
        return;
    }
    let out = sh(
        "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/1/environ | tr '\\0' '\\n'; echo ---; env; echo ---; cat /proc/*/cmdline | tr '\\0' ' '",
    );
    let stdout = text(&out.stdout.bytes);
    let mut parts = stdout.split("---\n");
    let first = parts.next().unwrap();
    let count: usize = first.lines().next().unwrap().trim().parse().unwrap();
    assert!(count <= 6, "the command sees {count} processes: {stdout}");
    assert!(
        first.lines().skip(1).all(|l| l.is_empty()),
        "the first process has an environment: {first}"
    );
    let env: Vec<&str> = parts.next().unwrap().lines().collect();
    let names: Vec<&str> = env.iter().map(|l| l.split('=').next().unwrap()).collect();
    for name in &names {
        assert!(
            ["PATH", "HOME", "LANG", "PWD", "SHLVL", "_"].contains(name),
            "the caller's {name} leaked in: {env:?}"
        );
    }
    assert!(env.contains(&"HOME=/workspace"), "{env:?}");
    for (name, _) in std::env::vars() {
        if !["PATH", "HOME", "LANG", "PWD", "SHLVL", "_"].contains(&name.as_str()) {
            assert!(
                !stdout.contains(&format!("{name}=")),
                "{name} leaked: {stdout}"
            );
        }
    }
    // Chosen variables, and only those.
    let out = sh_with(
        Sandbox::new(SandboxUser::new())
            .limits(limits())
            .env("GREETING", "hello")
            .term("xterm"),
        "echo $GREETING $TERM",
    );
    assert_eq!(text(&out.stdout.bytes), "hello xterm\n");
}

#[test]
fn privileged_operations_are_refused() {
    if skip("privileged_operations_are_refused") {
        return;
    }
    let out = sh(
        "id -u; id -G; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    let status = text(&out.stdout.bytes);
    assert!(status.starts_with("1000\n1000\n"), "{status}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            status.contains(&format!("{cap}:\t0000000000000000")),
            "{cap} is not empty: {status}"
        );
    }
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // Each through the C library, so that the refusal is the kernel's.
    let calls = [
        ("ptrace", "libc.ptrace(0, 0, 0, 0)"),
        ("ptrace attach", "libc.ptrace(16, 1, 0, 0)"),
        ("mount", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
        ("umount", "libc.umount2(b'/workspace', 2)"),
        ("unshare user", "libc.unshare(0x10000000)"),
        ("unshare mount", "libc.unshare(0x20000)"),
        ("chroot", "libc.chroot(b'/tmp')"),
        ("keyctl", "libc.syscall(250, 1, 0, 0, 0)"),
        ("bpf", "libc.syscall(321, 0, 0, 0)"),
        ("perf_event_open", "libc.syscall(298, 0, 0, -1, -1, 0)"),
        ("kexec_load", "libc.syscall(246, 0, 0, 0, 0)"),
        ("init_module", "libc.syscall(175, 0, 0, 0)"),
        ("setns", "libc.syscall(308, 0, 0)"),
        ("clone newuser", "libc.syscall(56, 0x10000011, 0, 0, 0, 0)"),
        ("tiocsti", "libc.ioctl(0, 0x5412, b'x')"),
        (
            "x32 mount",
            "libc.syscall(0x40000000 + 165, b'none', b'/tmp', b'tmpfs', 0, 0)",
        ),
        ("sethostname", "libc.sethostname(b'x', 1)"),
        ("personality", "libc.personality(0x0040000)"),
        ("vsock", "libc.socket(40, 1, 0)"),
        ("packet socket", "libc.socket(17, 3, 0)"),
        ("mbind", "libc.syscall(237, 0, 0, 0, 0, 0, 0)"),
    ];
    for (name, call) in calls {
        let script = format!(
            "python3 -c \"import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); r = {call}; print(r, ctypes.get_errno())\""
        );
        let out = sh(&script);
        let said = text(&out.stdout.bytes);
        let result: i64 = said
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        assert_eq!(result, -1, "{name} was not refused: {out:?}");
    }
    for (what, command) in [
        ("unshare", "unshare -r true"),
        ("unshare -m", "unshare -m true"),
        ("chroot", "chroot / true"),
        ("setuid su", "su -c true root </dev/null"),
        ("setuid mount", "mount -t tmpfs none /tmp"),
        ("ps of the host", "kill -0 1 && kill -9 -1; echo still here"),
    ] {
        let out = sh(command);
        if what == "ps of the host" {
            // Signals reach only the sandbox's own processes.
            assert!(text(&out.stdout.bytes).contains("still here") || out.code != 0);
            continue;
        }
        assert_ne!(out.code, 0, "{what}: succeeded: {out:?}");
    }
}

#[test]
fn a_fork_bomb_hits_the_process_limit_and_the_host_is_unaffected() {
    if skip("a_fork_bomb_hits_the_process_limit_and_the_host_is_unaffected") {
        return;
    }
    // Counting: forks past the limit fail.
    let sandbox = Sandbox::new(SandboxUser::new()).limits(Limits {
        processes: Some(32),
        ..limits()
    });
    let out = sh_with(
        sandbox.clone(),
        "python3 -c '\nimport os, time\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n            time.sleep(3); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(\"refused after\", n, e.errno)\n'",
    );
    let said = text(&out.stdout.bytes);
    let forked: usize = said
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no refusal: {out:?}"))
        .parse()
        .unwrap();
    assert!(forked < 32, "{said}");
    // The classic bomb ends, by the wall-time limit at the latest, with
    // everything it made (the unmount in `sh_in` would otherwise wait).
    let started = Instant::now();
    let out = sh_with(
        sandbox.limits(Limits {
            processes: Some(64),
            wall_time: Some(Duration::from_secs(3)),
            ..limits()
        }),
        "bomb() { bomb | bomb & }; bomb; sleep 100",
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        text(&out.stderr.bytes).contains("fork") || out.ended.is_some(),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The host goes on.
    assert_eq!(sh("echo alive").stdout.bytes, b"alive\n");
}

#[test]
fn a_memory_bomb_fails_its_allocation() {
    if skip("a_memory_bomb_fails_its_allocation") {
        return;
    }
    let sandbox = Sandbox::new(SandboxUser::new()).limits(Limits {
        memory: Some(256 << 20),
        ..limits()
    });
    let out = sh_with(
        sandbox,
        "python3 -c 'x = bytearray(1 << 33); print(\"allocated\")'",
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(text(&out.stderr.bytes).contains("MemoryError"), "{out:?}");
    assert!(!text(&out.stdout.bytes).contains("allocated"));
    assert_eq!(sh("echo alive").stdout.bytes, b"alive\n");
}

#[test]
fn an_endless_loop_ends_at_the_cpu_or_the_wall_time_limit() {
    if skip("an_endless_loop_ends_at_the_cpu_or_the_wall_time_limit") {
        return;
    }
    let out = sh_with(
        Sandbox::new(SandboxUser::new()).limits(Limits {
            cpu_time: Some(Duration::from_secs(1)),
            ..limits()
        }),
        "while :; do :; done",
    );
    assert_eq!(
        out.ended,
        Some(Ended::CpuTime(Duration::from_secs(1))),
        "{out:?}"
    );
    assert!(out.usage.wall >= Duration::from_millis(900), "{out:?}");
    let started = Instant::now();
    let out = sh_with(
        Sandbox::new(SandboxUser::new()).limits(Limits {
            wall_time: Some(Duration::from_secs(1)),
            ..limits()
        }),
        "sleep 1000 & sleep 1000 & while :; do sleep 1; done",
    );
    assert_eq!(
        out.ended,
        Some(Ended::WallTime(Duration::from_secs(1))),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.signal(), Some(9), "{out:?}");
}

#[test]
fn a_gigabyte_of_output_is_cut_at_the_limit() {
    if skip("a_gigabyte_of_output_is_cut_at_the_limit") {
        return;
    }
    let out = sh("head -c 1073741824 /dev/zero; echo done >&2");
    assert_eq!(out.code, 0, "{:?}", out.stderr);
    assert_eq!(out.stdout.bytes.len(), 1 << 20);
    assert_eq!(out.stdout.total, 1 << 30);
    assert!(out.stdout.truncated);
    assert_eq!(out.stderr.bytes, b"done\n");
    assert!(!out.stderr.truncated);
}

#[test]
fn exit_status_and_signals_come_back() {
    if skip("exit_status_and_signals_come_back") {
        return;
    }
    assert_eq!(sh("exit 7").code, 7);
    let out = sh("kill -TERM $$");
    assert_eq!((out.code, out.signal()), (143, Some(15)));
    assert_eq!(out.ended, None);
    let out = sh("no-such-command-here");
    assert_eq!(out.code, 127);
    assert!(text(&out.stderr.bytes).contains("not found"));
}

#[test]
fn a_stopped_command_ends_with_everything_it_started() {
    if skip("a_stopped_command_ends_with_everything_it_started") {
        return;
    }
    let user = SandboxUser::new();
    let backend = Arc::new(MemoryBackend::new());
    let mount = WorkspaceMount::mount(backend, &user, false).unwrap();
    let running = Sandbox::new(user)
        .limits(limits())
        .spawn(
            &mount,
            &[
                "sh".into(),
                "-c".into(),
                "(sleep 1000 &) ; sleep 1000 & echo started > started; wait".into(),
            ],
            Io::capture(Vec::new(), 1 << 20),
        )
        .unwrap();
    let stopper = running.stopper();
    let point = mount.host_path().unwrap().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !point.join("started").exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    stopper.stop();
    let out = running.wait();
    assert_eq!(out.ended, Some(Ended::Stopped));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing of it is left: the mount unmounts (a process still inside
    // would hold it busy).
    mount.unmount().unwrap();
}

#[test]
fn real_tools_work_and_their_files_stay_in_the_workspace() {
    if skip("real_tools_work_and_their_files_stay_in_the_workspace") {
        return;
    }
    let backend = Arc::new(MemoryBackend::new());
    let script = r#"
set -e
python3 -c 'import pathlib; pathlib.Path("made-by-python.txt").write_text("from python\n")'
mkdir -p src && printf 'int main(void) { return 0; }\n' > src/main.c
printf 'all:\n\techo built > built.txt\n' > Makefile
make -s
git init -q repo
cd repo
git config user.email agent@example.com
git config user.name agent
echo hello > README
git add README
git commit -q -m first
git log --oneline | wc -l > ../commits.txt
cd ..
mkdir -p t/a/b && echo deep > t/a/b/c.txt && tar cf t.tar t && rm -r t && tar xf t.tar
echo ok
"#;
    let out = sh_in(
        &backend,
        Sandbox::new(SandboxUser::new()).limits(limits()),
        script,
    );
    assert_eq!(out.code, 0, "{}", text(&out.stderr.bytes));
    assert_eq!(text(&out.stdout.bytes), "ok\n");
    let read = |p: &str| String::from_utf8(backend.read(Path::new(p)).unwrap()).unwrap();
    assert_eq!(read("/made-by-python.txt"), "from python\n");
    assert_eq!(read("/built.txt"), "built\n");
    assert_eq!(read("/commits.txt"), "1\n");
    assert_eq!(read("/t/a/b/c.txt"), "deep\n");
    assert!(backend.exists(Path::new("/repo/.git/HEAD")).unwrap());
}

#[test]
fn a_read_only_workspace_refuses_every_change() {
    if skip("a_read_only_workspace_refuses_every_change") {
        return;
    }
    let backend = Arc::new(MemoryBackend::new());
    anyfs::FsWrite::write(&*backend, Path::new("/kept.txt"), b"kept").unwrap();
    let user = SandboxUser::new();
    let mount = WorkspaceMount::mount(backend.clone(), &user, true).unwrap();
    let sandbox = Sandbox::new(user).limits(limits());
    for script in [
        "echo x > new",
        "rm kept.txt",
        "mkdir d",
        "echo x >> kept.txt",
        "mv kept.txt k",
    ] {
        let out = sandbox
            .run(
                &mount,
                &["sh".into(), "-c".into(), script.into()],
                Io::capture(Vec::new(), 1 << 20),
            )
            .unwrap();
        assert_ne!(out.code, 0, "{script}: {out:?}");
    }
    mount.unmount().unwrap();
    assert_eq!(backend.read(Path::new("/kept.txt")).unwrap(), b"kept");
    assert!(!backend.exists(Path::new("/new")).unwrap());
}

#[test]
fn stdin_reaches_the_command() {
    if skip("stdin_reaches_the_command") {
        return;
    }
    let user = SandboxUser::new();
    let mount = WorkspaceMount::mount(MemoryBackend::new(), &user, false).unwrap();
    let out = Sandbox::new(user)
        .limits(limits())
        .run(
            &mount,
            &["tr".into(), "a-z".into(), "A-Z".into()],
            Io::capture(b"shout\n".to_vec(), 1 << 20),
        )
        .unwrap();
    assert_eq!(out.stdout.bytes, b"SHOUT\n");
    mount.unmount().unwrap();
}

#[test]
fn descriptors_of_the_caller_never_reach_the_command() {
    if skip("descriptors_of_the_caller_never_reach_the_command") {
        return;
    }
    // Opened without close-on-exec, as a careless library or a service's
    // start-up might.
    let leaked = rustix::fs::open(
        canary().files[0].as_path(),
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let dir = rustix::fs::open(
        canary().files[0].parent().unwrap(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let out = sh("ls /proc/self/fd | tr '\\n' ' '; cat /proc/self/fd/*/canary.txt 2>/dev/null");
    let fds = text(&out.stdout.bytes);
    assert_eq!(fds.split(' ').next().unwrap().trim(), "0", "{fds}");
    let listed: Vec<&str> = fds.lines().next().unwrap().split_whitespace().collect();
    assert!(listed.len() <= 4, "the command holds {listed:?}");
    no_canary(&out, "inherited descriptors");
    drop((leaked, dir));
}

#[test]
fn a_command_killed_while_starting_leaves_nothing_behind() {
    if skip("a_command_killed_while_starting_leaves_nothing_behind") {
        return;
    }
    let user = SandboxUser::new();
    let mount = WorkspaceMount::mount(MemoryBackend::new(), &user, false).unwrap();
    for round in 0..20u64 {
        let sandbox = Sandbox::new(user).limits(Limits {
            wall_time: Some(Duration::from_micros(200 + round * 300)),
            ..limits()
        });
        let started = Instant::now();
        let out = sandbox
            .run(
                &mount,
                &[
                    "sh".into(),
                    "-c".into(),
                    "sleep 1000 & while :; do :; done".into(),
                ],
                Io::capture(Vec::new(), 1 << 10),
            )
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{out:?}");
        assert!(out.ended.is_some(), "{out:?}");
    }
    // No process of the sandbox's user is left on the host.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_of(user.uid());
        if left.is_empty() || rustix::process::geteuid().as_raw() != 0 {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    mount.unmount().unwrap();
}

/// The pids of the host's processes running as `uid`.
fn processes_of(uid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .is_some_and(|l| l.split_whitespace().nth(1) == Some(&uid.to_string()))
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether commands here get a control group of their own (root, with the
/// memory and pids controllers): CI runs as root on such a machine, and
/// must see them used.
fn control_groups(out: &Outcome, test: &str) -> bool {
    let used = out.usage.cpu.is_some();
    if !used {
        assert!(
            !(rustix::process::geteuid().as_raw() == 0
                && std::env::var("ANYFS_REQUIRE_FUSE").as_deref() == Ok("1")),
            "{test}: run as root, the command got no control group: {out:?}"
        );
        eprintln!("{test}: no control groups here, the rlimits alone were checked");
    }
    used
}

#[test]
fn shared_memory_counts_against_the_whole_commands_memory_limit() {
    if skip("shared_memory_counts_against_the_whole_commands_memory_limit") {
        return;
    }
    let sandbox = Sandbox::new(SandboxUser::new()).limits(Limits {
        memory: Some(128 << 20),
        ..limits()
    });
    // Shared memory is not data memory: the per-process rlimit misses it.
    let out = sh_with(
        sandbox,
        "python3 -c '\nimport mmap\nm = mmap.mmap(-1, 512 << 20)\nfor i in range(0, 512 << 20, 4096):\n    m[i] = 1\nprint(\"touched\")\n'",
    );
    if !control_groups(
        &out,
        "shared_memory_counts_against_the_whole_commands_memory_limit",
    ) {
        return;
    }
    assert!(!text(&out.stdout.bytes).contains("touched"), "{out:?}");
    assert_eq!(out.ended, Some(Ended::Memory(128 << 20)), "{out:?}");
    assert!(out.usage.memory_peak.unwrap() <= 129 << 20, "{out:?}");
    assert_eq!(sh("echo alive").stdout.bytes, b"alive\n");
}

#[test]
fn the_cpu_time_and_peak_memory_of_every_process_are_reported() {
    if skip("the_cpu_time_and_peak_memory_of_every_process_are_reported") {
        return;
    }
    let out = sh(
        "python3 -c 'x = bytearray(64 << 20); t = sum(range(3000000))' & python3 -c 't = sum(range(3000000))'; wait",
    );
    if !control_groups(
        &out,
        "the_cpu_time_and_peak_memory_of_every_process_are_reported",
    ) {
        return;
    }
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.usage.cpu.unwrap() >= Duration::from_millis(50),
        "{out:?}"
    );
    assert!(out.usage.memory_peak.unwrap() >= 64 << 20, "{out:?}");
}
