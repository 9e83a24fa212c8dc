//! Opening a workspace with the middleware the flags ask for, and mounting it.

use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;

use anyfs::overlay::{META_DIR, Overlay};
use anyfs::prelude::*;
use anyfs::snapshots::{BranchId, SnapshotId};
use anyfs::{
    FsFuse, FsSnapshots, MemoryBackend, PathFilterLayer, QuotaLayer, ReadOnly, VRootFsBackend,
};
use anyfs_fuse::{MountOptions, mount};
use anyfs_sqlite::{SqliteBackend, SqliteOptions};

use crate::WorkspaceArgs;

/// A workspace, opened and wrapped, ready to mount.
pub(crate) struct Workspace {
    backend: Box<dyn FsFuse>,
    read_only: bool,
    allow_other: bool,
    label: String,
}

/// Whether the file exists and is not a plain SQLite database (so it is
/// encrypted, or not a workspace at all).
fn looks_encrypted(file: &Path) -> bool {
    let mut header = [0u8; 16];
    match std::fs::File::open(file).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) => &header != b"SQLite format 3\0",
        Err(_) => false,
    }
}

/// An overlay: `dir` read-only under `upper`.
pub(crate) type Overlaid<U> = Overlay<ReadOnly<VRootFsBackend>, U>;

/// Where a workspace remembers the directory it overlays.
const OVERLAID_DIR: &str = "/.anyfs-overlay/base";

/// The directory `upper` overlays, if it is an overlay workspace.
pub(crate) fn overlaid_dir(upper: &dyn FsFuse) -> Result<Option<PathBuf>, String> {
    match upper.read(Path::new(OVERLAID_DIR)) {
        Ok(bytes) => Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))),
        Err(e) if e.is_absent() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// `upper` over the host directory `dir`, read-only. A workspace overlays
/// one directory: it remembers which at the first time, and refuses
/// another.
pub(crate) fn open_overlay<U: FsFuse + 'static>(
    upper: U,
    dir: &Path,
    label: &str,
) -> Result<Overlaid<U>, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    match overlaid_dir(&upper)? {
        Some(known) if known != dir => {
            return Err(format!(
                "{label} is an overlay of {}, not of {}",
                known.display(),
                dir.display()
            ));
        }
        Some(_) => {}
        None => {
            upper
                .create_dir_all(Path::new(META_DIR))
                .and_then(|()| upper.write(Path::new(OVERLAID_DIR), dir.as_os_str().as_bytes()))
                .map_err(|e| format!("{label}: {e}"))?;
        }
    }
    let base = VRootFsBackend::new(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Overlay::open(ReadOnly::new(base), upper).map_err(|e| format!("{label}: {e}"))
}

/// Opens a workspace file: with the password in environment variable
/// `password_env`, asking for one if the file is encrypted and none is
/// given. Errors name the file.
pub(crate) fn open_file(
    file: &Path,
    password_env: Option<&str>,
    options: SqliteOptions,
) -> Result<SqliteBackend, String> {
    let label = file.display().to_string();
    let opened = match password_env {
        Some(var) => {
            let password = std::env::var(var)
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| format!("the environment variable {var} holds no password"))?;
            SqliteBackend::open_encrypted_with_options(file, password, options)
        }
        None if looks_encrypted(file) => {
            let password = rpassword::prompt_password(format!("Password for {label}: "))
                .map_err(|e| format!("{label} is encrypted and no password could be read: {e}"))?;
            SqliteBackend::open_encrypted_with_options(file, password, options)
        }
        None => SqliteBackend::open_with_options(file, options),
    };
    // Named by the file, not by the root path inside it.
    opened.map_err(|e| match e.kind() {
        anyfs::FsErrorKind::InvalidPassword => {
            format!("{label}: wrong password or key (or not an AnyFS workspace)")
        }
        _ => format!("{label}: {e}"),
    })
}

impl Workspace {
    pub(crate) fn open(file: Option<&Path>, args: &WorkspaceArgs) -> Result<Self, String> {
        let mut read_only = args.read_only;
        let (base, label): (Box<dyn FsFuse>, String) = match file {
            None => (Box::new(MemoryBackend::new()), "in-memory workspace".into()),
            Some(file) => {
                let label = file.display().to_string();
                let options = SqliteOptions {
                    group_commit: (args.commit_interval > 0)
                        .then(|| std::time::Duration::from_millis(args.commit_interval)),
                    ..SqliteOptions::default()
                };
                let backend = open_file(file, args.password_env.as_deref(), options)?;
                match (args.snapshot, args.branch) {
                    (Some(id), _) => {
                        // A snapshot is read-only, and mounted so.
                        read_only = true;
                        let view = backend
                            .open_snapshot(SnapshotId(id))
                            .map_err(|e| format!("{label}: snapshot {id}: {e}"))?;
                        (Box::new(view), format!("{label}, snapshot {id}"))
                    }
                    (None, Some(id)) => {
                        let branch = backend
                            .open_branch(BranchId(id))
                            .map_err(|e| format!("{label}: branch {id}: {e}"))?;
                        (Box::new(branch), format!("{label}, branch {id}"))
                    }
                    (None, None) => (Box::new(backend), label),
                }
            }
        };
        let (base, label): (Box<dyn FsFuse>, String) = match &args.over {
            None => (base, label),
            Some(dir) => {
                let overlay = open_overlay(base, dir, &label)?;
                (
                    Box::new(overlay),
                    format!("{} over {}", label, dir.display()),
                )
            }
        };
        let mut backend = base;
        if let Some(bytes) = args.quota {
            backend = Box::new(
                QuotaLayer::builder()
                    .max_total_size(bytes)
                    .build()
                    .layer(backend),
            );
        }
        if !args.allow.is_empty() || !args.deny.is_empty() {
            let mut filter = PathFilterLayer::builder();
            if args.allow.is_empty() {
                filter = filter.allow("/**");
            }
            for glob in &args.allow {
                filter = filter.allow(glob.clone());
            }
            for glob in &args.deny {
                filter = filter.deny(glob.clone());
            }
            let filter = filter.build().map_err(|e| e.to_string())?;
            backend = Box::new(filter.layer(backend));
        }
        if read_only {
            backend = Box::new(ReadOnly::new(backend));
        }
        Ok(Self {
            backend,
            read_only,
            allow_other: args.allow_other,
            label,
        })
    }

    fn options(&self) -> MountOptions {
        MountOptions {
            read_only: self.read_only,
            allow_other: self.allow_other,
            ..MountOptions::default()
        }
    }

    /// Serves the workspace's files as MCP tools on standard input and
    /// output until the client closes its end.
    pub(crate) fn serve_mcp(self, over: Option<PathBuf>, ignore_roots: bool) -> Result<(), String> {
        crate::serve::init_logging("warn");
        let options = anyfs_server::StdioOptions {
            label: self.label.clone(),
            over,
            ignore_roots,
            read_only: self.read_only,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start: {e}"))?;
        let label = self.label;
        let served = runtime
            .block_on(anyfs_server::serve_stdio(self.backend, options))
            .map_err(|e| format!("{label}: MCP over standard input/output: {e}"));
        // A call still running when the client left gets a moment to end
        // (each is bounded); a change it makes is one transaction, whole or
        // not at all.
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        served
    }

    /// Mounts and waits for Ctrl-C or SIGTERM, or for the mount to be
    /// unmounted from outside.
    pub(crate) fn mount_foreground(self, mountpoint: &Path) -> Result<(), String> {
        if !mountpoint.is_dir() {
            return Err(format!(
                "{}: the mount point must be an existing directory",
                mountpoint.display()
            ));
        }
        let (stop, stopped) = mpsc::channel();
        ctrlc::set_handler(move || {
            let _ = stop.send(());
        })
        .map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
        let options = self.options();
        let label = self.label;
        let handle = mount(self.backend, mountpoint, options)
            .map_err(|e| format!("{}: cannot mount: {e}", mountpoint.display()))?;
        eprintln!(
            "anyfs: {label} mounted at {} — Ctrl-C or SIGTERM to unmount",
            mountpoint.display()
        );
        loop {
            match stopped.recv_timeout(std::time::Duration::from_millis(200)) {
                Err(mpsc::RecvTimeoutError::Timeout) if handle.is_mounted() => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("anyfs: {} was unmounted", mountpoint.display());
                    break;
                }
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    eprintln!("anyfs: unmounting {}", mountpoint.display());
                    break;
                }
            }
        }
        handle
            .unmount()
            .map_err(|e| format!("{}: unmount failed: {e}", mountpoint.display()))
    }

    /// Mounts for a sandbox, runs `command` in it (see `anyfs run
    /// --sandbox`), unmounts, and gives back the command's exit status:
    /// 124 when it ran out of time, as `timeout` says.
    pub(crate) fn run_sandboxed(
        self,
        command: &[String],
        args: &crate::SandboxArgs,
    ) -> Result<u8, String> {
        use anyfs_sandbox::{Ended, Io, Limits, Network, Sandbox, SandboxUser, WorkspaceMount};
        let mut sandbox = Sandbox::new(SandboxUser::new())
            .network(if args.net {
                Network::Host
            } else {
                Network::None
            })
            .limits(Limits {
                memory: args.limit_memory,
                processes: Some(args.limit_processes),
                cpu_time: args.limit_cpu.map(std::time::Duration::from_secs),
                wall_time: args
                    .timeout
                    .map(std::time::Duration::try_from_secs_f64)
                    .transpose()
                    .map_err(|e| format!("--timeout: {e}"))?,
                output: args.limit_output,
                tmp_size: args.limit_tmp,
                ..Limits::default()
            });
        if let Ok(lang) = std::env::var("LANG") {
            sandbox = sandbox.lang(lang);
        }
        if let Ok(term) = std::env::var("TERM") {
            sandbox = sandbox.term(term);
        }
        for spec in &args.env {
            let (name, value) = match spec.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = std::env::var(spec).map_err(|_| {
                        format!("--env {spec}: no such variable here to pass on (give NAME=VALUE)")
                    })?;
                    (spec.clone(), value)
                }
            };
            if name.is_empty() {
                return Err(format!("--env {spec}: the name is empty"));
            }
            sandbox = sandbox.env(name, value);
        }
        let mount = WorkspaceMount::mount(self.backend, &sandbox.user(), self.read_only)
            .map_err(|e| format!("{}: {e}", self.label))?;
        let io = match args.limit_output {
            Some(limit) => Io::Forward { limit },
            None => Io::Inherit,
        };
        // Ctrl-C and SIGTERM end the command and everything it started,
        // also while it is still starting; the workspace is then flushed
        // and unmounted.
        let stopper = std::sync::Arc::new(std::sync::Mutex::new(None::<anyfs_sandbox::Stopper>));
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (stopper, asked) = (stopper.clone(), asked.clone());
            ctrlc::set_handler(move || {
                asked.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Some(stopper) = stopper.lock().ok().as_deref().and_then(Option::as_ref) {
                    stopper.stop();
                }
            })
            .map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
        }
        let running = sandbox
            .spawn(&mount, command, io)
            .map_err(|e| e.to_string())?;
        if let Ok(mut slot) = stopper.lock() {
            *slot = Some(running.stopper());
        }
        if asked.load(std::sync::atomic::Ordering::SeqCst) {
            running.stopper().stop();
        }
        let outcome = running.wait();
        mount
            .unmount()
            .map_err(|e| format!("{}: {e}", self.label))?;
        if let Some(ended) = outcome.ended {
            eprintln!("anyfs: {ended}");
            if matches!(ended, Ended::WallTime(_)) {
                return Ok(124);
            }
        }
        Ok(u8::try_from(outcome.code).unwrap_or(1))
    }

    /// Mounts on a fresh directory, runs `command` there, unmounts, and
    /// gives back the command's exit status.
    pub(crate) fn run(self, command: &[String]) -> Result<u8, String> {
        let dir = tempfile::Builder::new()
            .prefix("anyfs-run-")
            .tempdir()
            .map_err(|e| format!("cannot make a mount point: {e}"))?;
        // Ctrl-C reaches the command (same process group); we wait for it
        // to end and then unmount.
        ctrlc::set_handler(|| {}).map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
        let options = self.options();
        let handle = mount(self.backend, dir.path(), options)
            .map_err(|e| format!("cannot mount {}: {e}", self.label))?;
        let status = std::process::Command::new(&command[0])
            .args(&command[1..])
            .current_dir(dir.path())
            .status();
        handle
            .unmount()
            .map_err(|e| format!("unmount failed: {e}"))?;
        let status = status.map_err(|e| format!("{}: {e}", command[0]))?;
        Ok(match status.code() {
            Some(code) => u8::try_from(code).unwrap_or(1),
            None => {
                use std::os::unix::process::ExitStatusExt;
                128u8.saturating_add(u8::try_from(status.signal().unwrap_or(0)).unwrap_or(0))
            }
        })
    }
}
