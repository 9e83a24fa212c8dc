//! A control group per command, where this process may make one (root,
//! with the memory and pids controllers mounted, as cgroup v2 or v1): the
//! memory limit then holds for the whole command (every process, shared
//! memory and `/tmp` included), the process limit for all its processes,
//! and the command's CPU time and peak memory can be read afterwards.
//! Elsewhere the limits are the rlimits alone (see `Limits`).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Limits;

/// Which hierarchy holds the groups.
#[derive(Debug)]
enum Kind {
    /// One group in the unified hierarchy.
    V2(PathBuf),
    /// One group per controller hierarchy (those mounted of memory, pids,
    /// cpuacct).
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
}

/// A command's control group, removed when dropped (after its processes
/// are gone).
#[derive(Debug)]
pub(crate) struct Cgroup {
    kind: Kind,
    /// The `cgroup.procs` files the launcher writes itself into, between
    /// fork and exec (made beforehand: nothing is allocated there).
    procs: Vec<CString>,
}

/// What the group saw of the command.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    pub(crate) cpu: Option<Duration>,
    pub(crate) memory_peak: Option<u64>,
    /// The kernel killed a process for the memory limit.
    pub(crate) out_of_memory: bool,
}

fn mounts() -> Vec<(String, PathBuf, Vec<String>)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            let fstype = after.next()?.to_string();
            let options = after.nth(1).unwrap_or("");
            Some((
                fstype,
                PathBuf::from(point.replace("\\040", " ")),
                options.split(',').map(str::to_string).collect(),
            ))
        })
        .filter(|(fstype, _, _)| fstype == "cgroup" || fstype == "cgroup2")
        .collect()
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A field of a `key value` file (`memory.events`, `cpu.stat`,
/// `memory.oom_control`).
fn field(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

fn name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "anyfs-sandbox-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Cgroup {
    /// A group for one command under `limits`, or `None` where none can be
    /// made here (then the rlimits alone hold).
    pub(crate) fn new(limits: &Limits) -> Option<Self> {
        if rustix::process::geteuid().as_raw() != 0 {
            return None;
        }
        let mounts = mounts();
        let v2 = mounts.iter().find(|(fstype, point, _)| {
            fstype == "cgroup2"
                && std::fs::read_to_string(point.join("cgroup.controllers")).is_ok_and(|c| {
                    let c: Vec<&str> = c.split_whitespace().collect();
                    c.contains(&"memory") && c.contains(&"pids")
                })
        });
        let group = match v2 {
            Some((_, root, _)) => Self::v2(root, limits),
            None => Self::v1(&mounts, limits),
        };
        match group {
            Ok(group) => group,
            Err(e) => {
                tracing::warn!(error = %e, "cannot make a control group: the rlimits alone hold");
                None
            }
        }
    }

    fn v2(root: &Path, limits: &Limits) -> std::io::Result<Option<Self>> {
        // Enabled for the root's children; already so is not an error.
        let _ = write(&root.join("cgroup.subtree_control"), "+memory +pids +cpu");
        let dir = root.join(name());
        std::fs::create_dir(&dir)?;
        let group = Self {
            procs: vec![procs_path(&dir)?],
            kind: Kind::V2(dir.clone()),
        };
        if let Some(bytes) = limits.memory {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            let _ = write(&dir.join("memory.swap.max"), "0");
        }
        if let Some(n) = limits.processes {
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        Ok(Some(group))
    }

    fn v1(
        mounts: &[(String, PathBuf, Vec<String>)],
        limits: &Limits,
    ) -> std::io::Result<Option<Self>> {
        let hierarchy = |controller: &str| {
            mounts
                .iter()
                .find(|(fstype, _, options)| {
                    fstype == "cgroup" && options.iter().any(|o| o == controller)
                })
                .map(|(_, point, _)| point.join(name()))
        };
        let (memory, pids) = (hierarchy("memory"), hierarchy("pids"));
        if memory.is_none() || pids.is_none() {
            return Ok(None);
        }
        let cpuacct = hierarchy("cpuacct");
        let mut group = Self {
            kind: Kind::V1 {
                memory: None,
                pids: None,
                cpuacct: None,
            },
            procs: Vec::new(),
        };
        for (dir, slot) in [(memory, 0), (pids, 1), (cpuacct, 2)] {
            let Some(dir) = dir else { continue };
            std::fs::create_dir(&dir)?;
            group.procs.push(procs_path(&dir)?);
            if let Kind::V1 {
                memory,
                pids,
                cpuacct,
            } = &mut group.kind
            {
                *[memory, pids, cpuacct][slot] = Some(dir);
            }
        }
        if let (
            Kind::V1 {
                memory: Some(dir), ..
            },
            Some(bytes),
        ) = (&group.kind, limits.memory)
        {
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // No swap past it either, where swap is accounted.
            let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
        }
        if let (
            Kind::V1 {
                pids: Some(dir), ..
            },
            Some(n),
        ) = (&group.kind, limits.processes)
        {
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        Ok(Some(group))
    }

    /// The `cgroup.procs` files to write `0` into, in the launcher.
    pub(crate) fn procs(&self) -> &[CString] {
        &self.procs
    }

    /// What the group saw (call once the command has ended).
    pub(crate) fn seen(&self) -> Seen {
        match &self.kind {
            Kind::V2(dir) => Seen {
                cpu: field(&dir.join("cpu.stat"), "usage_usec ").map(Duration::from_micros),
                memory_peak: read_u64(&dir.join("memory.peak")),
                out_of_memory: field(&dir.join("memory.events"), "oom_kill ").unwrap_or(0) > 0,
            },
            Kind::V1 {
                memory, cpuacct, ..
            } => Seen {
                cpu: cpuacct
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("cpuacct.usage")))
                    .map(Duration::from_nanos),
                memory_peak: memory
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("memory.max_usage_in_bytes"))),
                out_of_memory: memory
                    .as_ref()
                    .and_then(|d| field(&d.join("memory.oom_control"), "oom_kill "))
                    .unwrap_or(0)
                    > 0,
            },
        }
    }

    fn dirs(&self) -> Vec<&Path> {
        match &self.kind {
            Kind::V2(dir) => vec![dir.as_path()],
            Kind::V1 {
                memory,
                pids,
                cpuacct,
            } => [memory, pids, cpuacct]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
                .collect(),
        }
    }
}

fn procs_path(dir: &Path) -> std::io::Result<CString> {
    CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .map_err(std::io::Error::other)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Kind::V2(dir) = &self.kind {
            let _ = write(&dir.join("cgroup.kill"), "1");
        }
        // A group is removed once its last process is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs() {
            loop {
                match std::fs::remove_dir(dir) {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a control group");
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}
