//! The one way every transport (HTTP, MCP, and any later one) runs a file
//! operation: [`run_audited`] authenticates the secret, opens the caller's
//! workspace, takes the account's tree lock as the operation needs, runs
//! it, and audits every path it names with one outcome word — all on
//! tokio's blocking pool, never on the async threads.

use std::sync::Arc;

use anyfs::snapshots::{BranchId, SnapshotId};
use anyfs::{FileStorage, FsError};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use zeroize::Zeroizing;

use crate::Service;
use crate::caller::{Caller, account_owner, authenticate_with, login_ahead, workspace};
use crate::failure::{Failure, outcome_of};
use crate::registry::{AuditEntry, Login, Outcome, RegistryError, lexical_resolution};
use crate::workspace::{HeavyPermit, Stack};

/// Runs `work` on tokio's blocking pool: the registry and the workspaces
/// block (on disk, on locks), so no transport calls them from its async
/// threads, where they would hold up every other request.
pub(crate) async fn blocking<T, E>(
    service: &Arc<Service>,
    work: impl FnOnce(&Arc<Service>) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Failure> + Send + 'static,
{
    let service = service.clone();
    tokio::task::spawn_blocking(move || work(&service))
        .await
        .map_err(|e| E::from(Failure::internal(e)))?
}

/// What an operation does to the account's files, which decides the tree
/// lock it takes (see `Workspaces::tree`) and whether its answer waits for
/// its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: no lock; the record is not waited for.
    Read,
    /// Changes files: holds the tree lock shared while it runs.
    Change,
    /// Changes files in steps, some long (receiving an upload, unpacking a
    /// bundle): takes the tree lock itself, shared or alone, only for the
    /// steps that touch the tree ([`OpenWorkspace::share_tree`],
    /// [`OpenWorkspace::own_tree`]).
    InSteps,
    /// May take a whole folder (move, copy, delete): runs alone in the
    /// account, from the judging of every path below to the change.
    WholeTree,
}

/// Who may run an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callers {
    /// An account's secret or an agent's token.
    AccountOrAgent,
    /// Only the account's own secret (an agent's token is refused and
    /// audited).
    AccountOnly,
}

/// Which tree of the caller's account a file operation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Target {
    /// The caller's own: the account's workspace, or an agent's (the
    /// branch its policy names, if any).
    #[default]
    Own,
    /// A snapshot, read-only (the account's secret only).
    Snapshot(SnapshotId),
    /// A branch (the account's secret only).
    Branch(BranchId),
}

/// A file operation as a transport asks for it.
#[derive(Debug)]
pub(crate) struct FileRequest {
    /// The bearer secret presented with it.
    pub(crate) secret: Option<Zeroizing<String>>,
    pub(crate) callers: Callers,
    /// The tree it works on.
    pub(crate) target: Target,
    pub(crate) access: Access,
    /// The audit records it makes, as (action, path as asked): one per
    /// path it names, each with the operation's outcome.
    pub(crate) audits: Vec<(String, String)>,
}

/// A caller's workspace for one file operation: its files (through the
/// caller's stack, as `Deref`), and permits for streamed work.
pub(crate) struct OpenWorkspace {
    fs: FileStorage<Stack>,
    account: String,
    /// Who acts, as the audit names them.
    actor: String,
    service: Arc<Service>,
    /// The account's tree lock (see `Workspaces::tree`).
    tree: Arc<RwLock<()>>,
}

impl std::ops::Deref for OpenWorkspace {
    type Target = FileStorage<Stack>;
    fn deref(&self) -> &FileStorage<Stack> {
        &self.fs
    }
}

impl OpenWorkspace {
    /// A permit for a streamed upload or download (see
    /// [`crate::workspace::MAX_HEAVY_PER_ACCOUNT`]).
    pub(crate) fn heavy(&self, path: &str) -> Result<HeavyPermit, FsError> {
        self.service.workspaces.heavy(&self.account, path)
    }

    /// The account's tree lock, shared: for the steps of an
    /// [`Access::InSteps`] operation that change files.
    pub(crate) fn share_tree(&self) -> RwLockReadGuard<'_, ()> {
        self.tree.read()
    }

    /// The account's tree lock, alone: for the steps of an
    /// [`Access::InSteps`] operation that may take a whole folder.
    pub(crate) fn own_tree(&self) -> RwLockWriteGuard<'_, ()> {
        self.tree.write()
    }

    /// The files, to keep past the operation (a stream still reading them:
    /// a workspace nobody holds may be closed).
    pub(crate) fn files(&self) -> FileStorage<Stack> {
        self.fs.clone()
    }

    /// The account's snapshots and branches, for `f`.
    pub(crate) fn with_trees<T>(
        &self,
        f: impl FnOnce(&dyn crate::workspace::Trees) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.service.workspaces.with_trees(&self.account, f)
    }

    /// The account's tree lock itself, for a stack mounted for a command
    /// (see [`crate::tree_lock`]).
    pub(crate) fn tree_lock(&self) -> Arc<RwLock<()>> {
        self.tree.clone()
    }

    /// The account this workspace is.
    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    /// The service.
    pub(crate) fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Audits `action` with `detail` (sealed at rest like a path) for an
    /// operation that names no path.
    pub(crate) fn record(
        &self,
        action: &str,
        detail: &str,
        outcome: Outcome,
    ) -> Result<(), RegistryError> {
        self.service.registry.append_audit(AuditEntry {
            account: Some(&self.account),
            actor: &self.actor,
            action,
            path: Some(detail),
            resolved: None,
            outcome,
        })
    }

    /// Audits `action` on `path` with the path as asked and, where the
    /// asked form is not already resolved, where it resolves to (looked up
    /// only then: a lookup through the caller's stack is not free).
    fn audit(
        &self,
        actor: &str,
        action: &str,
        path: &str,
        outcome: Outcome,
    ) -> Result<(), RegistryError> {
        let resolved = (lexical_resolution(path) != path)
            .then(|| self.fs.canonicalize(path).ok())
            .flatten()
            .map(|p| p.display().to_string());
        self.service.registry.append_audit(AuditEntry {
            account: Some(&self.account),
            actor,
            action,
            path: Some(path),
            resolved: resolved.as_deref(),
            outcome,
        })
    }
}

/// Runs a file operation for whoever `request.secret` belongs to: on the
/// blocking pool, authenticates, opens the caller's workspace, takes the
/// tree lock `request.access` asks for, runs `op`, and audits each of
/// `request.audits` with the outcome. A change is confirmed only once its
/// records are committed; no operation is confirmed without its records.
pub(crate) async fn run_audited<T, E>(
    service: &Arc<Service>,
    request: FileRequest,
    op: impl FnOnce(&OpenWorkspace) -> Result<T, E> + Send + 'static,
) -> Result<T, Failure>
where
    T: Send + 'static,
    E: Into<Failure>,
{
    // Where the registry is behind a network, the login is read here,
    // without holding a thread of the blocking pool.
    let ahead = login_ahead(service, request.secret.as_deref().map(String::as_str)).await;
    blocking(service, move |service| {
        let (login, version) = match ahead {
            Some(Ok(ahead)) => (Some(Ok(ahead.login)), ahead.workspace_version),
            Some(Err(e)) => (Some(Err(e)), None),
            None => (None, None),
        };
        // A read sees the object store's workspaces as of one moment, the
        // login's: the query that authenticates also read the version.
        if request.access == Access::Read {
            anyfs_objects::consistent_reads(|| {
                anyfs_objects::seen_version(version.as_deref());
                run_request(service, request, login, op)
            })
        } else {
            run_request(service, request, login, op)
        }
    })
    .await
}

/// [`run_audited`], on the blocking pool.
fn run_request<T, E>(
    service: &Arc<Service>,
    request: FileRequest,
    login: Option<crate::registry::Result<Login>>,
    op: impl FnOnce(&OpenWorkspace) -> Result<T, E>,
) -> Result<T, Failure>
where
    E: Into<Failure>,
{
    let secret = request.secret.as_deref().map(String::as_str);
    let mut caller = authenticate_with(service, secret, login)?;
    if request.callers == Callers::AccountOnly || request.target != Target::Own {
        caller = Caller::Account(account_owner(service, caller)?);
    }
    let (account, mut fs) = workspace(service, &caller)?;
    match request.target {
        Target::Own => {}
        Target::Snapshot(id) => {
            fs = FileStorage::new(
                service
                    .workspaces
                    .with_trees(&account, |trees| trees.open_snapshot(id))?,
            );
        }
        Target::Branch(id) => fs = FileStorage::new(service.workspaces.for_branch(&account, id)?),
    }
    let open = OpenWorkspace {
        tree: service.workspaces.tree(&account),
        fs,
        account,
        actor: caller.actor(),
        service: service.clone(),
    };
    // An operation that may take a whole folder runs alone in the
    // account; every other change shares (one in steps only for the
    // steps that touch the tree); a read takes no lock.
    let result = match request.access {
        Access::WholeTree => {
            let _alone = open.tree.write();
            op(&open)
        }
        Access::Change => {
            let _shared = open.tree.read();
            op(&open)
        }
        Access::Read | Access::InSteps => op(&open),
    }
    .map_err(|e| explained(&caller, e.into()));
    let outcome = outcome_of(&result);
    let actor = caller.actor();
    let mut audited = Ok(());
    for (action, path) in &request.audits {
        audited = audited.and(open.audit(&actor, action, path, outcome));
    }
    // A change is confirmed only once its record is committed: a crash
    // after the answer cannot leave a change the log does not show.
    if audited.is_ok() && request.access != Access::Read && result.is_ok() {
        service.registry.flush_audit();
        audited = service.registry.audit_ready();
    }
    match audited {
        Err(e) if result.is_ok() => Err(Failure::audit_unavailable(e, true)),
        _ => result,
    }
}

/// A quota refusal said in the words of the limit it hit: the agent's
/// ceiling on the workspace, or the account's quota.
fn explained(caller: &Caller, failure: Failure) -> Failure {
    let Failure::File { error, .. } = &failure else {
        return failure;
    };
    let Some(anyfs::QuotaFigures {
        limit,
        requested,
        usage,
    }) = error
        .quota()
        .filter(|_| error.kind() == anyfs::FsErrorKind::QuotaExceeded)
    else {
        return failure;
    };
    let path = error.path();
    let explained = match caller {
        Caller::Agent { policy, .. } if policy.quota == Some(limit) => format!(
            "{}: this agent may add data only while the workspace holds at most {limit} bytes \
             (the quota of its policy); the workspace holds {usage} bytes and this needs \
             {requested} more",
            path.display()
        ),
        _ => format!(
            "{}: the workspace quota is {limit} bytes; it holds {usage} bytes and this needs \
             {requested} more",
            path.display()
        ),
    };
    match failure {
        Failure::File { error, .. } => Failure::File {
            error,
            explained: Some(explained),
        },
        other => other,
    }
}
