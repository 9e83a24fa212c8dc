//! Runs a command inside a mounted AnyFS workspace and nowhere else.
//!
//! The command gets new user, mount, PID, IPC, UTS and (unless asked
//! otherwise) network namespaces; sees the workspace at `/workspace` (its
//! working directory and home), the host's programs and libraries
//! read-only, a private `/tmp`, a fresh `/proc` and a minimal `/dev`, and
//! nothing else of the host; runs as an unprivileged user with no
//! capabilities, `no_new_privs` and a system call filter; and lives under
//! limits on memory, processes, CPU time, wall time and output.
//!
//! The mechanisms are bubblewrap's (`bwrap`, Debian's `bubblewrap`
//! package) and `seccompiler`'s; what is visible, what is refused and the
//! limits are ours. See `docs/ARCHITECTURE.md`, "Sandboxed execution".
//!
//! ```no_run
//! use anyfs::MemoryBackend;
//! use anyfs_sandbox::{Io, Sandbox, SandboxUser, WorkspaceMount};
//!
//! # fn main() -> Result<(), anyfs_sandbox::SandboxError> {
//! let user = SandboxUser::new();
//! let mount = WorkspaceMount::mount(MemoryBackend::new(), &user, false)?;
//! let outcome = Sandbox::new(user).run(
//!     &mount,
//!     &["sh".into(), "-c".into(), "echo hi > hello.txt; cat hello.txt".into()],
//!     Io::capture(Vec::new(), 1 << 20),
//! )?;
//! assert_eq!(outcome.stdout.bytes, b"hi\n");
//! mount.unmount()?;
//! # Ok(())
//! # }
//! ```

mod cgroup;
mod process;
mod seccomp;
mod view;

use std::path::PathBuf;
use std::time::Duration;

pub use process::{Captured, Ended, Io, Outcome, Running, Stopper, Usage};
pub use view::WorkspaceMount;

/// Why a command could not be run in the sandbox (a command that ran and
/// failed is an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// bubblewrap is not installed.
    #[error(
        "the sandbox needs bubblewrap (`bwrap`), which is not installed: install it \
         (Debian and Ubuntu: `apt-get install bubblewrap`) or name it with ANYFS_BWRAP"
    )]
    NoBubblewrap,
    /// The workspace could not be mounted, or the sandbox set up.
    #[error("{0}")]
    Setup(String),
    /// The sandbox did not start.
    #[error("cannot start the sandbox: {0}")]
    Spawn(#[source] std::io::Error),
    /// The command was empty.
    #[error("no command to run")]
    NoCommand,
}

/// The user a sandboxed command runs as, on the host. Inside, it is always
/// user and group 1000 (`user`), with no capabilities.
///
/// Run by an ordinary user, the command runs as that same user (an
/// unprivileged user namespace maps only one's own id). Run by root, it
/// runs as a fresh, otherwise unused id chosen at random from
/// 2,000,000,000–2,099,999,999: never as root, and never as an id another
/// process of the host runs as (which could reach into the command's
/// files through `/proc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    uid: u32,
    gid: u32,
    /// Whether the launcher switches to `uid`/`gid` (run by root).
    switch: bool,
}

impl SandboxUser {
    /// The user for a command started by this process (see the type).
    pub fn new() -> Self {
        let euid = rustix::process::geteuid().as_raw();
        if euid == 0 {
            let id = 2_000_000_000 + random_below(100_000_000);
            Self {
                uid: id,
                gid: id,
                switch: true,
            }
        } else {
            Self {
                uid: euid,
                gid: rustix::process::getegid().as_raw(),
                switch: false,
            }
        }
    }

    /// The host user id the command runs as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The host group id the command runs as.
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

impl Default for SandboxUser {
    fn default() -> Self {
        Self::new()
    }
}

fn random_below(n: u32) -> u32 {
    let mut bytes = [0u8; 4];
    // getrandom never fails on Linux once the pool is ready; a failure
    // leaves zeros, still a valid id in the range.
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(bytes) % n
}

/// The command's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// None: a network namespace with only its own loopback, where nothing
    /// of the host (not even its 127.0.0.1) is reachable (the default).
    #[default]
    None,
    /// The host's own network, with everything it reaches.
    Host,
}

/// What a command may use. `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory. Per process always (`RLIMIT_DATA`: heap and private
    /// writable mappings; address space merely reserved does not count):
    /// an allocation past it fails. Where the command gets a control group
    /// of its own (run by root, with the memory and pids controllers, v2
    /// or v1), also for the whole command, shared memory and `/tmp`
    /// included: past it the kernel kills a process of it
    /// ([`Ended::Memory`]).
    pub memory: Option<u64>,
    /// Processes and threads at once (`RLIMIT_NPROC`). Counted per user
    /// namespace, and up the chain of them: run by root, the command's
    /// own user is fresh, so the count is the command's alone; run by an
    /// ordinary user, every process of that user counts. A `fork` past it
    /// fails.
    pub processes: Option<u64>,
    /// Open files per process (`RLIMIT_NOFILE`), which also bounds the
    /// kernel memory pipes and sockets hold.
    pub files: Option<u64>,
    /// CPU time per process (`RLIMIT_CPU`); a process past it is ended
    /// with `SIGXCPU`.
    pub cpu_time: Option<Duration>,
    /// Time from start to end; past it, the whole process tree is killed.
    pub wall_time: Option<Duration>,
    /// Bytes of standard output, and again of standard error, that are
    /// kept (captured) or passed on (forwarded); the rest is read and
    /// dropped, and the output marked as cut.
    pub output: Option<u64>,
    /// Size of the private `/tmp` (and of `/dev/shm`): both live in memory.
    pub tmp_size: u64,
}

impl Default for Limits {
    /// 1,024 processes, 1,024 open files per process, a 512 MiB `/tmp`,
    /// nothing else limited.
    fn default() -> Self {
        Self {
            memory: None,
            processes: Some(1024),
            files: Some(1024),
            cpu_time: None,
            wall_time: None,
            output: None,
            tmp_size: 512 << 20,
        }
    }
}

/// How a command runs: network, environment and limits. The workspace it
/// sees is given to [`run`](Self::run) as a [`WorkspaceMount`].
#[derive(Debug, Clone)]
pub struct Sandbox {
    user: SandboxUser,
    network: Network,
    env: Vec<(String, String)>,
    limits: Limits,
    lang: String,
    term: Option<String>,
}

/// `PATH` inside the sandbox.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

impl Sandbox {
    /// No network, default [`Limits`], an environment of `PATH`,
    /// `HOME=/workspace`, `LANG=C.UTF-8` and nothing else.
    pub fn new(user: SandboxUser) -> Self {
        Self {
            user,
            network: Network::None,
            env: Vec::new(),
            limits: Limits::default(),
            lang: "C.UTF-8".into(),
            term: None,
        }
    }

    /// The command's network.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Adds an environment variable (after `PATH`, `HOME`, `LANG` and
    /// `TERM`, which it may replace).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// `LANG` (default `C.UTF-8`).
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = lang.into();
        self
    }

    /// `TERM` (default: not set).
    pub fn term(mut self, term: impl Into<String>) -> Self {
        self.term = Some(term.into());
        self
    }

    /// The limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The user the command runs as.
    pub fn user(&self) -> SandboxUser {
        self.user
    }

    /// The environment the command starts with, in order.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_string(), PATH.to_string()),
            ("HOME".to_string(), "/workspace".to_string()),
            ("LANG".to_string(), self.lang.clone()),
        ];
        if let Some(term) = &self.term {
            env.push(("TERM".to_string(), term.clone()));
        }
        for (name, value) in &self.env {
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value.clone()));
        }
        env
    }

    /// Starts `argv` in `workspace` (the first word is looked up in
    /// [`PATH`]).
    pub fn spawn(
        &self,
        workspace: &WorkspaceMount,
        argv: &[String],
        io: Io,
    ) -> Result<Running, SandboxError> {
        if argv.is_empty() {
            return Err(SandboxError::NoCommand);
        }
        process::spawn(self, workspace, argv, io)
    }

    /// Runs `argv` in `workspace` to its end.
    pub fn run(
        &self,
        workspace: &WorkspaceMount,
        argv: &[String],
        io: Io,
    ) -> Result<Outcome, SandboxError> {
        Ok(self.spawn(workspace, argv, io)?.wait())
    }
}

/// The bubblewrap program: `ANYFS_BWRAP`, else `bwrap` on `PATH`, else
/// `/usr/bin/bwrap`.
pub fn bubblewrap() -> Result<PathBuf, SandboxError> {
    if let Some(path) = std::env::var_os("ANYFS_BWRAP") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(SandboxError::NoBubblewrap)
        };
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("bwrap"))
        .chain([PathBuf::from("/usr/bin/bwrap")]);
    for candidate in on_path {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(SandboxError::NoBubblewrap)
}

/// For tests: whether `test` can run here. Without the sandbox's needs it
/// says why and is skipped, unless `ANYFS_REQUIRE_FUSE=1` (CI) makes that
/// a failure.
#[doc(hidden)]
pub fn usable_in_test(test: &str) -> bool {
    match check() {
        Ok(()) => true,
        Err(e) if std::env::var("ANYFS_REQUIRE_FUSE").as_deref() == Ok("1") => {
            panic!("{test}: the sandbox is required here but {e}")
        }
        Err(e) => {
            eprintln!("{test}: skipped, {e}");
            false
        }
    }
}

/// Whether commands can be sandboxed here: bubblewrap is installed, FUSE
/// is available, and a user namespace can be made. The error says what is
/// missing.
pub fn check() -> Result<(), SandboxError> {
    let bwrap = bubblewrap()?;
    if !std::path::Path::new("/dev/fuse").exists() {
        return Err(SandboxError::Setup(
            "the sandbox mounts the workspace through FUSE, and /dev/fuse does not exist".into(),
        ));
    }
    let user = SandboxUser::new();
    let mut probe = std::process::Command::new(&bwrap);
    probe
        .env_clear()
        .args([
            "--unshare-user",
            "--unshare-pid",
            "--ro-bind",
            "/",
            "/",
            "--",
            "/bin/true",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if user.switch {
        use std::os::unix::process::CommandExt;
        probe.uid(user.uid).gid(user.gid);
    }
    let out = probe.output().map_err(SandboxError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::Setup(format!(
            "bubblewrap cannot make a user namespace here ({}): {}",
            bwrap.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
