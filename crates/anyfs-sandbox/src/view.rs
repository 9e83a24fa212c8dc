//! What a sandboxed command sees: the workspace, mounted for it, and the
//! bubblewrap arguments that build its file tree (the policy of what is
//! visible).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use anyfs::FsFuse;
use anyfs_fuse::{MountHandle, MountOptions, mount};

use crate::{Network, Sandbox, SandboxError, SandboxUser};

/// A workspace mounted for sandboxed commands: through FUSE, on a fresh
/// directory only its owner can reach, every file shown as the sandbox
/// user's. Commands get it by its open root, never by path.
pub struct WorkspaceMount {
    handle: Option<MountHandle>,
    /// The mount's root, open (closed before the unmount, which it would
    /// otherwise hold up).
    root: Option<File>,
    read_only: bool,
    /// Holds the mount point's parent; removed after the unmount.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for WorkspaceMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceMount")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl WorkspaceMount {
    /// Mounts `backend` for commands running as `user`; `read_only` refuses
    /// every change (`EROFS`).
    pub fn mount<B: FsFuse + 'static>(
        backend: B,
        user: &SandboxUser,
        read_only: bool,
    ) -> Result<Self, SandboxError> {
        // Owner-only (umask or not): other users of the host cannot reach
        // the mount point, which root mounts for another user
        // (`allow_other`).
        let dir = tempfile::Builder::new()
            .prefix("anyfs-sandbox-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| SandboxError::Setup(format!("cannot make a mount point: {e}")))?;
        if user.switch {
            // The launcher runs as the sandbox's user and reaches the
            // mount point by path; nobody else of the host can.
            rustix::fs::chown(
                dir.path(),
                Some(rustix::fs::Uid::from_raw(user.uid)),
                Some(rustix::fs::Gid::from_raw(user.gid)),
            )
            .map_err(|e| SandboxError::Setup(format!("cannot give the mount point away: {e}")))?;
        }
        let point = dir.path().join("workspace");
        std::fs::create_dir(&point)
            .map_err(|e| SandboxError::Setup(format!("cannot make a mount point: {e}")))?;
        let options = MountOptions {
            read_only,
            allow_other: user.switch,
            owner: Some((user.uid, user.gid)),
            fs_name: "anyfs-workspace".into(),
            ..MountOptions::default()
        };
        let handle = mount(backend, &point, options)
            .map_err(|e| SandboxError::Setup(format!("cannot mount the workspace: {e}")))?;
        let root = File::open(&point)
            .map_err(|e| SandboxError::Setup(format!("cannot open the mounted workspace: {e}")))?;
        Ok(Self {
            handle: Some(handle),
            root: Some(root),
            read_only,
            _dir: dir,
        })
    }

    /// The mount's root, as the launcher opened it.
    pub(crate) fn root(&self) -> Result<&File, SandboxError> {
        self.root
            .as_ref()
            .ok_or_else(|| SandboxError::Setup("the workspace is no longer mounted".into()))
    }

    /// Where the workspace is mounted on the host (reachable by its owner
    /// only).
    pub fn host_path(&self) -> Option<&Path> {
        self.handle.as_ref().map(MountHandle::mountpoint)
    }

    /// Commits every buffered write and unmounts (dropping does the same,
    /// without the error).
    pub fn unmount(mut self) -> Result<(), SandboxError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), SandboxError> {
        self.root = None;
        match self.handle.take() {
            Some(handle) => handle
                .unmount()
                .map_err(|e| SandboxError::Setup(format!("cannot unmount the workspace: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for WorkspaceMount {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, "unmounting a sandbox's workspace");
        }
    }
}

/// The host's directories of programs and libraries: bound read-only, or
/// linked as on the host where they are links (merged `/usr`).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The host's files under `/etc` a program may need and nobody minds it
/// reading: the dynamic linker's cache, Debian's alternatives (`awk`,
/// `editor`), certificate authorities, the time zone, MIME types.
const ETC_FILES: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl/certs",
    "ca-certificates.conf",
    "localtime",
    "timezone",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "services",
];

/// The files the sandbox writes into its own `/etc`.
fn generated_etc(network: Network) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = vec![
        (
            "/etc/passwd",
            b"root:x:0:0:root:/root:/usr/sbin/nologin\n\
              user:x:1000:1000:user:/workspace:/bin/sh\n\
              nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .to_vec(),
        ),
        (
            "/etc/group",
            b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n".to_vec(),
        ),
        ("/etc/hostname", b"anyfs\n".to_vec()),
        (
            "/etc/hosts",
            b"127.0.0.1\tlocalhost anyfs\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec(),
        ),
    ];
    if network == Network::Host {
        // The host's resolver, whatever file it is.
        if let Ok(conf) = std::fs::read("/etc/resolv.conf") {
            files.push(("/etc/resolv.conf", conf));
        }
    }
    files
}

/// Data handed to bubblewrap through memory files (never through paths,
/// which the launcher's user might not reach, nor through its command
/// line, which every user of the host can read).
pub(crate) struct Handoff {
    /// Every descriptor the launcher must keep open across `exec`.
    pub(crate) fds: Vec<OwnedFd>,
}

impl Handoff {
    pub(crate) fn new() -> Self {
        Self { fds: Vec::new() }
    }

    /// A memory file holding `bytes`, positioned at its start; its number.
    pub(crate) fn data(&mut self, name: &str, bytes: &[u8]) -> Result<String, SandboxError> {
        use rustix::fs::{MemfdFlags, SeekFrom, memfd_create, seek};
        let fail = |e: rustix::io::Errno| {
            SandboxError::Setup(format!("cannot hand {name} to the sandbox: {e}"))
        };
        let fd = memfd_create(name, MemfdFlags::CLOEXEC).map_err(fail)?;
        let mut written = 0;
        while written < bytes.len() {
            written += rustix::io::write(&fd, &bytes[written..]).map_err(fail)?;
        }
        seek(&fd, SeekFrom::Start(0)).map_err(fail)?;
        let number = fd.as_raw_fd().to_string();
        self.fds.push(fd);
        Ok(number)
    }
}

/// bubblewrap's options for `sandbox` over `workspace` (the command
/// follows them on bubblewrap's command line: it reads no command from
/// `--args`).
pub(crate) fn arguments(
    sandbox: &Sandbox,
    workspace: &WorkspaceMount,
    new_session: bool,
    handoff: &mut Handoff,
) -> Result<Vec<OsString>, SandboxError> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |words: &[&str]| args.extend(words.iter().map(OsString::from));
    push(&[
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--hostname",
        "anyfs",
        "--die-with-parent",
    ]);
    if sandbox.network == Network::None {
        push(&["--unshare-net"]);
    }
    if new_session {
        push(&["--new-session"]);
    }
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(path).map_err(|e| {
                    SandboxError::Setup(format!("{dir}: cannot read the link: {e}"))
                })?;
                let target = target.to_str().ok_or_else(|| {
                    SandboxError::Setup(format!("{dir}: the link's target is not UTF-8"))
                })?;
                push(&["--symlink", target, dir]);
            }
            Ok(meta) if meta.is_dir() => push(&["--ro-bind", dir, dir]),
            _ => {}
        }
    }
    for name in ETC_FILES {
        let path = format!("/etc/{name}");
        push(&["--ro-bind-try", &path, &path]);
    }
    for (path, bytes) in generated_etc(sandbox.network) {
        let fd = handoff.data(path, &bytes)?;
        push(&["--perms", "0644", "--ro-bind-data", &fd, path]);
    }
    push(&["--proc", "/proc", "--dev", "/dev"]);
    let tmp = sandbox.limits.tmp_size.to_string();
    push(&["--perms", "1777", "--size", &tmp, "--tmpfs", "/tmp"]);
    push(&["--perms", "1777", "--size", &tmp, "--tmpfs", "/dev/shm"]);
    // `/dev` itself is read-only (its devices still work), `/dev/shm` not.
    push(&["--remount-ro", "/dev", "--symlink", "/tmp", "/var/tmp"]);
    let root = workspace.root()?.as_raw_fd().to_string();
    let bind = if workspace.read_only {
        "--ro-bind-fd"
    } else {
        "--bind-fd"
    };
    push(&[bind, &root, "/workspace"]);
    push(&["--remount-ro", "/", "--chdir", "/workspace", "--clearenv"]);
    for (name, value) in sandbox.environment() {
        push(&["--setenv", &name, &value]);
    }
    for program in crate::seccomp::programs()? {
        let fd = handoff.data("seccomp", &program)?;
        push(&["--add-seccomp-fd", &fd]);
    }
    Ok(args)
}

/// The arguments as bubblewrap's `--args` reads them: each ended by a NUL.
pub(crate) fn nul_separated(args: &[OsString]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for arg in args {
        bytes.extend_from_slice(&arg.clone().into_vec());
        bytes.push(0);
    }
    bytes
}
