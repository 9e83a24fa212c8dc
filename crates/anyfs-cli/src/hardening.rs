//! What `anyfs serve`, `mount` and `run` do first to keep keys, secrets and
//! decrypted data from leaking out of the process: no core dumps, not
//! dumpable (which also refuses `ptrace` by other processes of the same
//! user), and, for the service, owner-only files.

use rustix::process::{DumpableBehavior, Resource, Rlimit, getrlimit, setrlimit};

/// Leaves no core dump and makes the process non-dumpable. Best effort: a
/// refusal is logged, never fatal. Only the soft core limit is lowered, so
/// that a program `anyfs run` starts may raise it again for itself (the
/// non-dumpable flag does not survive its `exec`).
pub(crate) fn no_core_dumps() {
    let core = getrlimit(Resource::Core);
    let none = Rlimit {
        current: Some(0),
        maximum: core.maximum,
    };
    if let Err(e) = setrlimit(Resource::Core, none) {
        tracing::warn!(error = %e, "cannot switch off core dumps");
    }
    if let Err(e) = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot make the process non-dumpable");
    }
}

/// Makes every file the process creates owner-only (umask 077): the
/// service's registry, workspaces and their logs, whoever creates them.
pub(crate) fn owner_only_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    #[test]
    fn the_process_keeps_no_core_dump_and_is_not_dumpable() {
        no_core_dumps();
        assert_eq!(getrlimit(Resource::Core).current, Some(0));
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            DumpableBehavior::NotDumpable
        );
    }
}
