//! Starting the sandbox, feeding and reading it, ending it on time, and
//! what it used.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Resource, Rlimit, Signal};

use crate::view::{Handoff, arguments, nul_separated};
use crate::{Sandbox, SandboxError, WorkspaceMount};

/// Where the command's standard input and output go.
#[derive(Debug)]
pub enum Io {
    /// The caller's own (a terminal, for an interactive shell).
    Inherit,
    /// Standard input from the caller; standard output and error passed
    /// on to the caller's, each up to `limit` bytes (the rest dropped, and
    /// a note on standard error).
    Forward {
        /// Bytes passed on of each stream.
        limit: u64,
    },
    /// `stdin` fed to the command; standard output and error kept, each up
    /// to `limit` bytes (the rest read and dropped).
    Capture {
        /// The command's whole standard input.
        stdin: Vec<u8>,
        /// Bytes kept of each stream.
        limit: u64,
    },
}

impl Io {
    /// [`Io::Capture`].
    pub fn capture(stdin: Vec<u8>, limit: u64) -> Self {
        Self::Capture { stdin, limit }
    }
}

/// One output stream, as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The bytes kept (empty unless captured).
    pub bytes: Vec<u8>,
    /// Every byte the command wrote to it.
    pub total: u64,
    /// Whether bytes were dropped past the limit.
    pub truncated: bool,
}

/// What ended a command other than itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The wall-time limit: the whole process tree was killed.
    WallTime(Duration),
    /// The CPU-time limit (`SIGXCPU`).
    CpuTime(Duration),
    /// Stopped by the caller ([`Stopper::stop`]): Ctrl-C, a client gone.
    Stopped,
    /// The memory limit of the whole command (a control group's): the
    /// kernel killed a process.
    Memory(u64),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::WallTime(limit) => write!(
                f,
                "the command ran past its time limit of {} s and was killed with everything it started",
                limit.as_secs_f64()
            ),
            Ended::CpuTime(limit) => write!(
                f,
                "the command used its CPU time limit of {} s and was ended",
                limit.as_secs_f64()
            ),
            Ended::Stopped => f.write_str("the command was stopped, with everything it started"),
            Ended::Memory(limit) => write!(
                f,
                "the command used its memory limit of {limit} bytes and a process of it was killed"
            ),
        }
    }
}

/// What a command used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// From start to end.
    pub wall: Duration,
    /// CPU time of every process of the command (where it runs in a
    /// control group of its own).
    pub cpu: Option<Duration>,
    /// The most memory the command held at once (likewise).
    pub memory_peak: Option<u64>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Its exit status; 128 + N when signal N ended it (as a shell says).
    pub code: i32,
    /// What ended it, when not itself.
    pub ended: Option<Ended>,
    /// Its standard output.
    pub stdout: Captured,
    /// Its standard error.
    pub stderr: Captured,
    /// What it used.
    pub usage: Usage,
}

impl Outcome {
    /// The signal that ended the command, if one did.
    pub fn signal(&self) -> Option<i32> {
        (129..=128 + 64)
            .contains(&self.code)
            .then(|| self.code - 128)
    }
}

/// Ends a running command and everything it started, from any thread.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Kills the whole process tree; the command's [`Outcome`] says
    /// [`Ended::Stopped`].
    pub fn stop(&self) {
        self.0.kill(Ended::Stopped);
    }
}

#[derive(Debug)]
struct Shared {
    /// The launcher (bubblewrap outside the namespaces).
    pid: Pid,
    /// The namespace's first process, by pidfd: killing it ends every
    /// process of the namespace, even while the launcher's own
    /// `--die-with-parent` is not armed yet (it is only just before the
    /// command starts).
    first: Option<std::os::fd::OwnedFd>,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The launcher was reaped: its pid may be another process's now.
    reaped: bool,
    ended: Option<Ended>,
}

impl Shared {
    fn kill(&self, why: Ended) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.reaped {
            return;
        }
        state.ended.get_or_insert(why);
        self.kill_namespace();
        let _ = rustix::process::kill_process(self.pid, Signal::KILL);
    }

    /// Kills the namespace's first process, and with it every process of
    /// the namespace (a pidfd never reaches a recycled pid).
    fn kill_namespace(&self) {
        if let Some(first) = &self.first {
            let _ = rustix::process::pidfd_send_signal(first, Signal::KILL);
        }
    }
}

/// A command running in the sandbox.
#[derive(Debug)]
pub struct Running {
    child: Child,
    shared: Arc<Shared>,
    started: Instant,
    wall_time: Option<Duration>,
    cpu_time: Option<Duration>,
    /// Standard output's and standard error's readers, in that order.
    readers: Vec<std::sync::mpsc::Receiver<Captured>>,
    writer: Option<JoinHandle<()>>,
    /// The command's control group, if it has one.
    cgroup: Option<crate::cgroup::Cgroup>,
    memory: Option<u64>,
    /// Kept open until the launcher has read them.
    _handoff: Handoff,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").finish_non_exhaustive()
    }
}

impl Running {
    /// A handle that stops the command from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// Waits for the command (killing it at its wall-time limit) and for
    /// its output to be read.
    pub fn wait(mut self) -> Outcome {
        let timer = self.wall_time.map(|limit| {
            let shared = self.shared.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + limit;
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                while !state.reaped {
                    let now = Instant::now();
                    if now >= deadline {
                        drop(state);
                        shared.kill(Ended::WallTime(limit));
                        return;
                    }
                    state = shared
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            })
        });
        // Wait without reaping, then reap under the lock: a kill never
        // reaches a pid that was given to another process.
        while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
            rustix::process::WaitId::Pid(self.shared.pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        ) {}
        let status = {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let status = self.child.wait();
            state.reaped = true;
            self.shared.done.notify_all();
            status
        };
        let wall = self.started.elapsed();
        if let Some(timer) = timer {
            let _ = timer.join();
        }
        // Nothing of the command outlives it.
        self.shared.kill_namespace();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // A stream still held open elsewhere (passed to another process
        // over a socket) is given up on, not waited for.
        let mut streams = self.readers.drain(..).map(|r| {
            r.recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| Captured {
                    truncated: true,
                    ..Captured::default()
                })
        });
        let stdout = streams.next().unwrap_or_default();
        let stderr = streams.next().unwrap_or_default();
        let code = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
            }
            Err(_) => 255,
        };
        let mut ended = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ended;
        if ended.is_none() && code == 128 + libc::SIGXCPU {
            ended = self.cpu_time.map(Ended::CpuTime);
        }
        let seen = self
            .cgroup
            .take()
            .map(|group| group.seen())
            .unwrap_or_default();
        if ended.is_none() && seen.out_of_memory {
            ended = self.memory.map(Ended::Memory);
        }
        Outcome {
            code,
            ended,
            stdout,
            stderr,
            usage: Usage {
                wall,
                cpu: seen.cpu,
                memory_peak: seen.memory_peak,
            },
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a command behind: a `Running` dropped unwaited kills
        // it and reaps the launcher.
        let reaped = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reaped;
        if !reaped {
            self.shared.kill(Ended::Stopped);
            let _ = self.child.wait();
            self.shared.kill_namespace();
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.reaped = true;
            self.shared.done.notify_all();
        }
    }
}

/// The soft and hard limits set on the launcher, inherited by the command.
fn rlimits(sandbox: &Sandbox) -> Vec<(Resource, Rlimit)> {
    let limits = &sandbox.limits;
    let mut out = vec![(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )];
    let both = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    if let Some(bytes) = limits.memory {
        out.push((Resource::Data, both(bytes)));
    }
    if let Some(n) = limits.processes {
        out.push((Resource::Nproc, both(n)));
    }
    if let Some(n) = limits.files {
        out.push((Resource::Nofile, both(n)));
    }
    if let Some(cpu) = limits.cpu_time {
        let secs = cpu.as_secs().max(1);
        // SIGXCPU at the soft limit, SIGKILL a second later.
        out.push((
            Resource::Cpu,
            Rlimit {
                current: Some(secs),
                maximum: Some(secs + 1),
            },
        ));
    }
    out
}

pub(crate) fn spawn(
    sandbox: &Sandbox,
    workspace: &WorkspaceMount,
    argv: &[String],
    io: Io,
) -> Result<Running, SandboxError> {
    for word in argv
        .iter()
        .chain(sandbox.env.iter().flat_map(|(n, v)| [n, v]))
    {
        if word.contains('\0') {
            return Err(SandboxError::Setup(
                "a command argument or environment variable holds a NUL byte".into(),
            ));
        }
    }
    if sandbox
        .env
        .iter()
        .any(|(n, _)| n.is_empty() || n.contains('='))
    {
        return Err(SandboxError::Setup(
            "an environment variable's name is empty or holds `=`".into(),
        ));
    }
    let bwrap = crate::bubblewrap()?;
    let mut handoff = Handoff::new();
    // A command on a terminal keeps it (an interactive shell), and the
    // filter refuses the one way to push input into it (`TIOCSTI`); any
    // other runs in a session of its own.
    let interactive = matches!(io, Io::Inherit) && rustix::termios::isatty(std::io::stdin());
    // bubblewrap says there the pid of the namespace's first process.
    let (info_read, info_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SandboxError::Setup(format!("cannot make a pipe: {e}")))?;
    let mut args = arguments(sandbox, workspace, !interactive, &mut handoff)?;
    args.push("--info-fd".into());
    args.push(info_write.as_raw_fd().to_string().into());
    let args_fd = handoff.data("arguments", &nul_separated(&args))?;

    let cgroup = crate::cgroup::Cgroup::new(&sandbox.limits);
    let join: Vec<std::ffi::CString> = cgroup
        .as_ref()
        .map(|g| g.procs().to_vec())
        .unwrap_or_default();
    let mut command = Command::new(&bwrap);
    command
        .env_clear()
        .current_dir("/")
        .arg("--args")
        .arg(&args_fd)
        .arg("--")
        .args(argv);
    let user = sandbox.user;
    let switch = user.switch.then_some((user.uid, user.gid));
    let (stdin_bytes, limit, forward) = match io {
        Io::Inherit => (None, None, false),
        Io::Forward { limit } => {
            command
                .stdin(Stdio::inherit())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (None, Some(limit), true)
        }
        Io::Capture { stdin, limit } => {
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (Some(stdin), Some(limit), false)
        }
    };
    let mut keep: Vec<RawFd> = handoff.fds.iter().map(AsRawFd::as_raw_fd).collect();
    keep.push(workspace.root()?.as_raw_fd());
    keep.push(info_write.as_raw_fd());
    let limits = rlimits(sandbox);
    let own_session = !interactive;
    let prepare = move || child_setup(&keep, &join, &limits, switch, own_session);
    // SAFETY: `child_setup` runs between fork and exec and makes only
    // system calls (close_range, fcntl, open, write, setrlimit, the id
    // changes, prctl, setsid) on data prepared before the fork: it neither
    // allocates nor takes a lock.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(prepare);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(SandboxError::Spawn)?;
    drop(info_write);
    let pid = Pid::from_child(&child);
    let first = first_process(info_read, pid);
    let shared = Arc::new(Shared {
        pid,
        first,
        state: Mutex::new(State::default()),
        done: Condvar::new(),
    });
    let writer = match (stdin_bytes, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            // A command that stops reading its input is not an error.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let mut readers = Vec::new();
    if let Some(limit) = limit {
        if let Some(out) = child.stdout.take() {
            readers.push(read_stream(out, limit, forward.then_some(Forward::Stdout)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_stream(err, limit, forward.then_some(Forward::Stderr)));
        }
    }
    Ok(Running {
        child,
        shared,
        started,
        wall_time: sandbox.limits.wall_time,
        cpu_time: sandbox.limits.cpu_time,
        readers,
        writer,
        cgroup,
        memory: sandbox.limits.memory,
        _handoff: handoff,
    })
}

/// In the launcher between fork and exec: keeps the handed-off
/// descriptors open across exec (and no other), joins the command's
/// control group, sets the limits, becomes the sandbox's user, forbids
/// gaining privileges, dies with its parent (set after the change of user,
/// which clears it), and (unless interactive) leaves the caller's session.
fn child_setup(
    keep: &[RawFd],
    join: &[std::ffi::CString],
    limits: &[(Resource, Rlimit)],
    switch: Option<(u32, u32)>,
    own_session: bool,
) -> std::io::Result<()> {
    // Every descriptor the process holds, whoever opened it (another
    // thread's pipe, a descriptor the service was started with, a FUSE
    // device being handed over), closes at exec; then the handed-off
    // ones are kept open.
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors
    // to close at exec; it closes nothing now and touches no memory.
    #[allow(unsafe_code)]
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked != 0 {
        // Kernels before 5.11: one descriptor at a time.
        let most = rustix::process::getrlimit(Resource::Nofile)
            .current
            .unwrap_or(4096)
            .min(1 << 20);
        for fd in 3..RawFd::try_from(most).unwrap_or(4096) {
            // SAFETY: fcntl on a number that is not open only fails with
            // EBADF.
            #[allow(unsafe_code)]
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
        }
    }
    for &fd in keep {
        // SAFETY: each descriptor is owned by the parent's `Handoff` or
        // `WorkspaceMount`, both alive until the child has exec'd.
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    // Into the command's control group, while still root.
    for procs in join {
        let fd = rustix::fs::open(
            procs.as_c_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::io::write(&fd, b"0")?;
    }
    for (resource, limit) in limits {
        rustix::process::setrlimit(*resource, *limit)?;
    }
    if let Some((uid, gid)) = switch {
        // The launcher's own thread is the whole process here.
        let gid = rustix::fs::Gid::from_raw(gid);
        let uid = rustix::fs::Uid::from_raw(uid);
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    }
    rustix::thread::set_no_new_privs(true)?;
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if own_session {
        rustix::process::setsid()?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Forward {
    Stdout,
    Stderr,
}

/// Reads a stream to its end: keeps (or passes on) up to `limit` bytes and
/// counts the rest.
fn read_stream(
    mut stream: impl Read + Send + 'static,
    limit: u64,
    forward: Option<Forward>,
) -> std::sync::mpsc::Receiver<Captured> {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut captured = Captured::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let room = limit.saturating_sub(captured.total);
            let keep = usize::try_from(room).unwrap_or(usize::MAX).min(n);
            captured.total += n as u64;
            if keep < n && !captured.truncated {
                captured.truncated = true;
                if forward.is_some() {
                    eprintln!("\nanyfs: output past {limit} bytes is dropped");
                }
            }
            match forward {
                Some(Forward::Stdout) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..keep]).and_then(|()| out.flush());
                }
                Some(Forward::Stderr) => {
                    let _ = std::io::stderr().write_all(&buf[..keep]);
                }
                None => captured.bytes.extend_from_slice(&buf[..keep]),
            }
        }
        let _ = done.send(captured);
    });
    result
}

/// The namespace's first process, from bubblewrap's `--info-fd` report
/// (`{"child-pid": N, ...}`), held by pidfd once it is known to be the
/// launcher's child (not a process that got a recycled pid).
fn first_process(info: std::os::fd::OwnedFd, launcher: Pid) -> Option<std::os::fd::OwnedFd> {
    let mut info = std::fs::File::from(info);
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    while !text.contains(&b'}') && text.len() < 64 << 10 {
        match info.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&text);
    let after = &text[text.find("\"child-pid\"")? + "\"child-pid\"".len()..];
    let digits: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    let pid = Pid::from_raw(digits.parse().ok()?)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    let parent: i32 = stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    (parent == launcher.as_raw_nonzero().get()).then_some(fd)
}
