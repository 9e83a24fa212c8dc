//! The system calls a sandboxed command is refused, as BPF programs for
//! bubblewrap's `--add-seccomp-fd`. The list is ours (the policy); the
//! compiler is `seccompiler`.
//!
//! A tool never needs to mount, trace another process, load kernel code or
//! modules, use the kernel keyring or performance counters, or make new
//! namespaces; each of those has been the way out of a container before.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::SandboxError;

/// Refused with `EPERM` whatever their arguments.
const REFUSED: &[i64] = &[
    // Mounts and the root: the command's view of files is fixed.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // Namespaces: no new ones, none joined.
    libc::SYS_unshare,
    libc::SYS_setns,
    // Other processes' memory and files.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    // The kernel itself.
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_vhangup,
    // Memory placement across the machine's nodes.
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
    libc::SYS_migrate_pages,
    libc::SYS_move_pages,
    // The machine's clock and names.
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
];

/// The socket families a command may open: local sockets, IPv4 and IPv6
/// (only the sandbox's own loopback without `--net`) and netlink (the C
/// library asks it for addresses). Every other family (`AF_VSOCK`, which
/// reaches the hypervisor and is not per network namespace; packet
/// sockets; Bluetooth; ...) answers `EAFNOSUPPORT`.
const SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// `personality` may only ask (`0xffffffff`) or set plain Linux (0):
/// other personalities change how the kernel lays out memory.
const PERSONALITIES: &[u64] = &[0, 0xffff_ffff];

/// `clone` flags that make a namespace: refused with `EPERM`.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// `ioctl` requests refused with `EPERM`: pushing input into the terminal
/// the command shares with the caller (`TIOCSTI`), and the console's
/// (`TIOCLINUX`).
#[allow(clippy::unnecessary_cast)] // the requests' type differs between C libraries
const REFUSED_IOCTLS: &[u64] = &[libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// The programs, serialised as the kernel reads them (`struct sock_filter`
/// in native byte order), in the order they are installed.
pub(crate) fn programs() -> Result<Vec<Vec<u8>>, SandboxError> {
    let mut programs = vec![
        refused()?,
        clone3()?,
        only(libc::SYS_socket, SOCKET_FAMILIES, libc::EAFNOSUPPORT)?,
        only(libc::SYS_personality, PERSONALITIES, libc::EPERM)?,
    ];
    #[cfg(target_arch = "x86_64")]
    programs.push(no_x32());
    Ok(programs.iter().map(|p| serialise(p)).collect())
}

fn refused() -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&call| (call, Vec::new())).collect();
    let any_bit = |arg: u8, bits: &[u64]| -> Result<Vec<SeccompRule>, SandboxError> {
        bits.iter()
            .map(|&bit| {
                let condition = SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(bit),
                    bit,
                )
                .map_err(compile)?;
                SeccompRule::new(vec![condition]).map_err(compile)
            })
            .collect()
    };
    rules.insert(libc::SYS_clone, any_bit(0, NAMESPACE_FLAGS)?);
    let ioctls = REFUSED_IOCTLS
        .iter()
        .map(|&request| {
            let condition =
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                    .map_err(compile)?;
            SeccompRule::new(vec![condition]).map_err(compile)
        })
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    program(rules, libc::EPERM)
}

/// `clone3` passes its flags in memory, where a filter cannot look: it is
/// refused with `ENOSYS`, and the C library falls back to `clone`, whose
/// flags the filter sees.
fn clone3() -> Result<BpfProgram, SandboxError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    program(rules, libc::ENOSYS)
}

/// `call` refused with `errno` unless its first argument is one of
/// `allowed`.
fn only(call: i64, allowed: &[u64], errno: i32) -> Result<BpfProgram, SandboxError> {
    let conditions = allowed
        .iter()
        .map(|&value| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value)
                .map_err(compile)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rules = BTreeMap::from([(call, vec![SeccompRule::new(conditions).map_err(compile)?])]);
    program(rules, errno)
}

/// A program that answers `errno` to the calls `rules` match and lets
/// every other through.
fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        ARCH,
    )
    .map_err(compile)?;
    filter.try_into().map_err(compile)
}

/// The x32 system call numbers (bit 30 set, same architecture value) would
/// pass a filter written for the 64-bit numbers: all of them are refused.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const ALLOW: u32 = 0x7FFF_0000;
    let errno = 0x0005_0000 | libc::ENOSYS as u32;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        op(LD_W_ABS, 0, 0, 4), // arch
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, 0), // nr
        op(JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, errno),
        op(RET_K, 0, 0, ALLOW),
    ]
}

fn serialise(program: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for op in program {
        bytes.extend_from_slice(&op.code.to_ne_bytes());
        bytes.push(op.jt);
        bytes.push(op.jf);
        bytes.extend_from_slice(&op.k.to_ne_bytes());
    }
    bytes
}

fn compile(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("cannot compile the system call filter: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    #[test]
    fn every_program_compiles_to_whole_instructions() {
        let programs = programs().unwrap();
        assert!(programs.len() >= 2);
        for program in programs {
            assert!(!program.is_empty());
            assert_eq!(program.len() % 8, 0);
        }
    }
}
