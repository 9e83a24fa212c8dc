//! One workspace per account, and the middleware stack each caller reaches
//! it through. Where workspaces live is a [`Home`]: an encrypted SQLite file
//! per account on this node (the embedded default), or rows and blobs shared
//! by every node (see [`crate::shared`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyfs::crypto::Key;
use anyfs::prelude::*;
use anyfs::snapshots::{
    BranchId, BranchInfo, Change, FsSnapshots, MergeOptions, MergeOutcome, SnapshotId,
    SnapshotInfo, TreeRef,
};
use anyfs::{FsError, FsResult, PathFilterLayer, Quota, QuotaLayer, RateLimitLayer, ReadOnlyLayer};
use anyfs_objects::ObjectBackend;
use anyfs_sqlite::SqliteBackend;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::shared::SharedWorkspaces;

/// What an agent may do in its account's workspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentPolicy {
    /// Globs the agent may read but never change (`/skills/**` always is).
    pub read_only: Vec<String>,
    /// Globs the agent can neither see nor touch.
    pub deny: Vec<String>,
    /// A ceiling on the whole workspace while this agent writes: the agent
    /// may add bytes only while the workspace (everything the owner and
    /// every agent stored) stays within it. It is not a budget of the
    /// agent's own: there is one usage figure per workspace, shared by
    /// every stack.
    pub quota: Option<u64>,
    /// Operations per second allowed to this agent.
    pub rate: Option<u32>,
    /// A branch of the account's workspace (its id) that the agent works
    /// in instead of the workspace itself: its files are the branch's,
    /// and the account keeps the workspace as it was.
    pub workspace: Option<String>,
}

/// A filesystem stack as the API uses it.
pub(crate) type Stack = Arc<dyn FsFuse>;

/// Where the workspaces live.
pub(crate) enum Home {
    /// One encrypted SQLite file per account in `dir`, opened with one of
    /// `keys` (a workspace key per master key); the quota is counted by this
    /// node (the only one that opens the files).
    Files {
        /// The directory of the files.
        dir: PathBuf,
        /// The workspace keys, the first tried first.
        keys: Vec<Key>,
    },
    /// Rows in PostgreSQL and blobs in the object store, shared by every
    /// node; the quota is the database's, exact across nodes.
    Shared(SharedWorkspaces),
}

/// Snapshots, branches, diff and merge of a workspace, whatever its home.
pub(crate) trait Trees: Send + Sync {
    fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo>;
    fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>>;
    /// A snapshot, read-only.
    fn open_snapshot(&self, id: SnapshotId) -> FsResult<Stack>;
    fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()>;
    fn restore(&self, id: SnapshotId) -> FsResult<()>;
    fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo>;
    fn branches(&self) -> FsResult<Vec<BranchInfo>>;
    fn delete_branch(&self, id: BranchId) -> FsResult<()>;
    /// Calls `each` with every change from `a` to `b`, as they are found,
    /// until it says to stop (`false`).
    fn diff(
        &self,
        a: TreeRef,
        b: TreeRef,
        each: &mut dyn FnMut(Change) -> FsResult<bool>,
    ) -> FsResult<()>;
    fn merge(
        &self,
        branch: BranchId,
        into: TreeRef,
        options: &MergeOptions,
    ) -> FsResult<MergeOutcome>;
}

impl<T> Trees for T
where
    T: FsSnapshots + FsWrite + FsLink + FsPermissions,
    T::View: FsFuse + 'static,
{
    fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo> {
        FsSnapshots::create_snapshot(self, name)
    }
    fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
        FsSnapshots::snapshots(self)
    }
    fn open_snapshot(&self, id: SnapshotId) -> FsResult<Stack> {
        Ok(Arc::new(FsSnapshots::open_snapshot(self, id)?))
    }
    fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()> {
        FsSnapshots::delete_snapshot(self, id)
    }
    fn restore(&self, id: SnapshotId) -> FsResult<()> {
        FsSnapshots::restore(self, id)
    }
    fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo> {
        FsSnapshots::branch(self, from, name)
    }
    fn branches(&self) -> FsResult<Vec<BranchInfo>> {
        FsSnapshots::branches(self)
    }
    fn delete_branch(&self, id: BranchId) -> FsResult<()> {
        FsSnapshots::delete_branch(self, id)
    }
    fn diff(
        &self,
        a: TreeRef,
        b: TreeRef,
        each: &mut dyn FnMut(Change) -> FsResult<bool>,
    ) -> FsResult<()> {
        for change in FsSnapshots::diff(self, a, b)? {
            if !each(change?)? {
                break;
            }
        }
        Ok(())
    }
    fn merge(
        &self,
        branch: BranchId,
        into: TreeRef,
        options: &MergeOptions,
    ) -> FsResult<MergeOutcome> {
        FsSnapshots::merge(self, branch, into, options)
    }
}

/// An account's workspace as the account itself uses it, under its quota.
enum Owner {
    /// Its SQLite file under this node's quota layer.
    File(Arc<Quota<SqliteBackend>>),
    /// Its shared workspace; the quota is kept by the database.
    Shared(Arc<ObjectBackend>),
}

impl Owner {
    /// Its snapshots and branches.
    fn trees(&self) -> &dyn Trees {
        match self {
            Owner::File(fs) => &**fs,
            Owner::Shared(fs) => &**fs,
        }
    }

    /// Refuses a new snapshot or branch once what the account stores, all
    /// its trees together, reaches its quota: a snapshot keeps content the
    /// workspace let go of, outside what the quota counts.
    fn check_room(&self) -> FsResult<()> {
        let (stored, limit) = match self {
            Owner::File(fs) => (fs.inner().stored_bytes()?, fs.limits().max_total_size),
            Owner::Shared(fs) => (fs.stored_bytes()?, fs.usage()?.1),
        };
        match limit {
            Some(limit) if stored >= limit => Err(FsError::quota_exceeded("/", limit, 1, stored)),
            _ => Ok(()),
        }
    }

    /// One of its branches, as the account uses it: under the same quota
    /// (a SQLite file), or its own workspace row's (shared).
    fn open_branch(&self, id: BranchId) -> FsResult<Owner> {
        Ok(match self {
            Owner::File(fs) => Owner::File(Arc::new(FsSnapshots::open_branch(&**fs, id)?)),
            Owner::Shared(fs) => Owner::Shared(Arc::new(FsSnapshots::open_branch(&**fs, id)?)),
        })
    }

    fn stack(&self) -> Stack {
        match self {
            Owner::File(fs) => fs.clone(),
            Owner::Shared(fs) => fs.clone(),
        }
    }

    /// Whether nothing but its [`AccountFs`] holds it.
    fn is_idle(&self) -> bool {
        match self {
            Owner::File(fs) => Arc::strong_count(fs) == 1,
            Owner::Shared(fs) => Arc::strong_count(fs) == 1,
        }
    }

    /// The workspace with a ceiling on what it may hold while an agent
    /// writes (`None`: the account's quota only).
    fn under_ceiling(&self, ceiling: Option<u64>) -> Stack {
        match (self, ceiling) {
            // A view of the one usage figure the node keeps for the file.
            (Owner::File(fs), _) => {
                let mut limits = fs.limits();
                if let Some(bytes) = ceiling {
                    limits.max_total_size =
                        Some(limits.max_total_size.map_or(bytes, |own| own.min(bytes)));
                }
                Arc::new(fs.with_limits(limits))
            }
            (Owner::Shared(fs), None) => fs.clone(),
            // The database keeps one limit per workspace: the agent's
            // ceiling is counted by this node, from what the workspace held
            // when the stack was built (see the design record).
            (Owner::Shared(fs), Some(bytes)) => Arc::new(
                QuotaLayer::builder()
                    .max_total_size(bytes)
                    .build()
                    .layer(ObjectBackend::clone(fs)),
            ),
        }
    }
}

/// An account's open workspace.
struct AccountFs {
    /// The workspace under the account's quota: what the account itself uses.
    owner: Owner,
    /// Each agent's stack, built once from the policy it was built for.
    agents: Mutex<HashMap<String, (AgentPolicy, Stack)>>,
    /// Branches opened, by id: one quota count each, shared by the account
    /// and every agent working in it.
    branches: Mutex<HashMap<BranchId, Arc<Owner>>>,
    /// When a request last asked for it.
    last_used: Mutex<Instant>,
}

impl AccountFs {
    /// Whether only the cache holds the workspace: no request has its stack
    /// or is getting it. Call with the cache locked (stacks are handed out
    /// only from it), so the answer holds until the lock is released.
    fn is_idle(self: &Arc<Self>) -> bool {
        if Arc::strong_count(self) != 1 {
            return false;
        }
        let agents = self.agents.lock();
        // Agent stacks are views of the owner's (not holders of it).
        self.owner.is_idle()
            && agents
                .values()
                .all(|(_, stack)| Arc::strong_count(stack) == 1)
            && self
                .branches
                .lock()
                .values()
                .all(|branch| Arc::strong_count(branch) == 1 && branch.is_idle())
    }

    /// Branch `id`, opened once.
    fn branch(&self, id: BranchId) -> FsResult<Arc<Owner>> {
        if let Some(branch) = self.branches.lock().get(&id) {
            return Ok(branch.clone());
        }
        let branch = Arc::new(self.owner.open_branch(id)?);
        Ok(self.branches.lock().entry(id).or_insert(branch).clone())
    }
}

/// All accounts' workspaces, opened on first use. At most `max_open` are
/// kept open (each holds a few file descriptors and a thread): opening one
/// more first closes the least recently used idle ones. One in use is never
/// closed, so the cap can be passed while every open one is busy.
pub(crate) struct Workspaces {
    home: Home,
    default_quota: u64,
    max_open: usize,
    open: Mutex<HashMap<String, Arc<AccountFs>>>,
    /// Accounts deleted while this service runs: never opened again (a
    /// request that authenticated just before the deletion would otherwise
    /// create the file anew).
    deleted: Mutex<HashSet<String>>,
    /// One lock per account, held while its workspace opens or is deleted
    /// (and kept only as long as someone holds or waits for it): opening (a
    /// quota scan of the whole workspace) happens without the cache locked,
    /// so other accounts never wait for it.
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Streamed uploads and downloads in progress, per account.
    heavy: Arc<Mutex<HashMap<String, usize>>>,
    /// Per account: held exclusively by an operation on a whole folder
    /// (a move, copy or delete, judged path by path below it), shared by
    /// every other change, so that nothing is made under a folder between
    /// the judging and the change.
    trees: Mutex<HashMap<String, Arc<parking_lot::RwLock<()>>>>,
}

/// How many streamed uploads and downloads one account may have in
/// progress at once. Each holds a little memory and a blocking thread for
/// as long as its client takes: without a cap, one tenant could hold them
/// all.
pub(crate) const MAX_HEAVY_PER_ACCOUNT: usize = 8;

/// One streamed upload or download of an account, counted until dropped.
pub(crate) struct HeavyPermit {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    account: String,
}

impl Drop for HeavyPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

impl Workspaces {
    pub(crate) fn new(home: Home, default_quota: u64, max_open: usize) -> Self {
        Self {
            home,
            default_quota,
            max_open: max_open.max(1),
            open: Mutex::new(HashMap::new()),
            deleted: Mutex::new(HashSet::new()),
            opening: Mutex::new(HashMap::new()),
            heavy: Arc::new(Mutex::new(HashMap::new())),
            trees: Mutex::new(HashMap::new()),
        }
    }

    /// The account's tree lock (see `trees`).
    pub(crate) fn tree(&self, account: &str) -> Arc<parking_lot::RwLock<()>> {
        let mut trees = self.trees.lock();
        if let Some(tree) = trees.get(account) {
            return tree.clone();
        }
        trees.entry(account.to_string()).or_default().clone()
    }

    /// The workspace keys (one per master key) of SQLite files, for
    /// locking in memory.
    pub(crate) fn keys(&self) -> &[Key] {
        match &self.home {
            Home::Files { keys, .. } => keys,
            Home::Shared(_) => &[],
        }
    }

    /// Where the workspaces live.
    pub(crate) fn home(&self) -> &Home {
        &self.home
    }

    /// A permit for one more streamed upload or download of `account`, or
    /// a rate-limit refusal (naming `path`) while it has
    /// [`MAX_HEAVY_PER_ACCOUNT`] in progress.
    pub(crate) fn heavy(&self, account: &str, path: &str) -> FsResult<HeavyPermit> {
        let mut counts = self.heavy.lock();
        let n = counts.entry(account.to_string()).or_default();
        if *n >= MAX_HEAVY_PER_ACCOUNT {
            return Err(FsError::rate_limit_exceeded(
                path,
                std::time::Duration::from_secs(1),
            ));
        }
        *n += 1;
        Ok(HeavyPermit {
            counts: self.heavy.clone(),
            account: account.to_string(),
        })
    }

    /// The account's workspace if it is open.
    fn cached(&self, account: &str) -> Option<Arc<AccountFs>> {
        let open = self.open.lock();
        let fs = open.get(account)?;
        *fs.last_used.lock() = Instant::now();
        Some(fs.clone())
    }

    /// Runs `f` holding the account's opening lock, which is dropped from
    /// the map again once nobody else waits for it.
    fn with_opening<T>(&self, account: &str, f: impl FnOnce() -> T) -> T {
        let slot = self
            .opening
            .lock()
            .entry(account.to_string())
            .or_default()
            .clone();
        let result = {
            let _held = slot.lock();
            f()
        };
        let mut opening = self.opening.lock();
        // Only cloned under this lock: the map's and ours, nobody else's.
        if Arc::strong_count(&slot) == 2 {
            opening.remove(account);
        }
        result
    }

    /// How many workspaces are open.
    pub(crate) fn open_count(&self) -> usize {
        self.open.lock().len()
    }

    /// Takes out of `open` the least recently used idle workspaces that
    /// must go for one more to fit under the cap; the caller drops them
    /// (closing each) once the lock is released.
    fn make_room(&self, open: &mut HashMap<String, Arc<AccountFs>>) -> Vec<Arc<AccountFs>> {
        let excess = (open.len() + 1).saturating_sub(self.max_open);
        if excess == 0 {
            return Vec::new();
        }
        let mut idle: Vec<(Instant, String)> = open
            .iter()
            .filter(|(_, fs)| fs.is_idle())
            .map(|(name, fs)| (*fs.last_used.lock(), name.clone()))
            .collect();
        idle.sort();
        idle.into_iter()
            .take(excess)
            .filter_map(|(_, name)| open.remove(&name))
            .collect()
    }

    fn account(&self, account: &str) -> FsResult<Arc<AccountFs>> {
        if let Some(fs) = self.cached(account) {
            return Ok(fs);
        }
        self.with_opening(account, || self.open_account(account))
    }

    /// Opens the account's workspace: called holding its opening lock.
    fn open_account(&self, account: &str) -> FsResult<Arc<AccountFs>> {
        // Opened by another request meanwhile?
        if let Some(fs) = self.cached(account) {
            return Ok(fs);
        }
        if self.deleted.lock().contains(account) {
            return Err(FsError::not_found("/"));
        }
        let owner = match &self.home {
            Home::Files { dir, keys } => {
                let backend = open_file(&dir.join(format!("{account}.db")), keys, account)?;
                Owner::File(Arc::new(
                    QuotaLayer::builder()
                        .max_total_size(self.default_quota)
                        .build()
                        .layer(backend),
                ))
            }
            Home::Shared(shared) => Owner::Shared(Arc::new(shared.open(account)?)),
        };
        let fs = Arc::new(AccountFs {
            owner,
            agents: Mutex::new(HashMap::new()),
            branches: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
        });
        let mut open = self.open.lock();
        let closing = self.make_room(&mut open);
        open.insert(account.to_string(), fs.clone());
        drop(open);
        // Closing commits and checkpoints: not with every account waiting.
        drop(closing);
        Ok(fs)
    }

    /// The stack the account's own secret works through.
    pub(crate) fn for_account(&self, account: &str) -> FsResult<Stack> {
        Ok(self.account(account)?.owner.stack())
    }

    /// Runs `f` on the account's snapshots and branches.
    pub(crate) fn with_trees<T>(
        &self,
        account: &str,
        f: impl FnOnce(&dyn Trees) -> FsResult<T>,
    ) -> FsResult<T> {
        f(self.account(account)?.owner.trees())
    }

    /// Refuses a new snapshot or branch of the account: over `most` of
    /// them already (`count` says how many there are), or its stored bytes
    /// at its quota.
    pub(crate) fn check_room(
        &self,
        account: &str,
        count: impl FnOnce(&dyn Trees) -> FsResult<usize>,
        most: usize,
        what: &'static str,
    ) -> FsResult<()> {
        let fs = self.account(account)?;
        if count(fs.owner.trees())? >= most {
            return Err(FsError::conflict(
                "/",
                format!("the account has {most} {what}, as many as it may: delete one first"),
            ));
        }
        fs.owner.check_room()
    }

    /// The stack the account's own secret works on branch `id` through.
    pub(crate) fn for_branch(&self, account: &str, id: BranchId) -> FsResult<Stack> {
        Ok(self.account(account)?.branch(id)?.stack())
    }

    /// Deletes branch `id` and forgets what was opened on it (agents
    /// pointed at it find nothing from then on).
    pub(crate) fn delete_branch(&self, account: &str, id: BranchId) -> FsResult<()> {
        let fs = self.account(account)?;
        fs.owner.trees().delete_branch(id)?;
        fs.branches.lock().remove(&id);
        fs.agents.lock().clear();
        Ok(())
    }

    /// The stack an agent works through, built from its policy.
    pub(crate) fn for_agent(
        &self,
        account: &str,
        agent: &str,
        policy: &AgentPolicy,
    ) -> FsResult<Stack> {
        let fs = self.account(account)?;
        // Built for this very policy: one changed since is built anew.
        if let Some((built_for, stack)) = fs.agents.lock().get(agent)
            && built_for == policy
        {
            return Ok(stack.clone());
        }
        // Built with no lock held: building compiles globs, and the other
        // agents of the account are served meanwhile.
        let stack = Self::agent_stack(&fs, policy)?;
        let mut agents = fs.agents.lock();
        // Built meanwhile by another request for the same policy: that
        // one, so that the account has one stack per agent.
        if let Some((built_for, built)) = agents.get(agent)
            && built_for == policy
        {
            return Ok(built.clone());
        }
        agents.insert(agent.to_string(), (policy.clone(), stack.clone()));
        Ok(stack)
    }

    /// An agent's stack over the account's workspace, built from its policy.
    fn agent_stack(fs: &AccountFs, policy: &AgentPolicy) -> FsResult<Stack> {
        let invalid = |e: anyfs::middleware::PathFilterError| {
            FsError::invalid_path(
                "/",
                if e.to_string().is_empty() {
                    "bad glob"
                } else {
                    "a policy glob is invalid"
                },
            )
        };
        // What the owner and every agent write counts against each ceiling
        // (of the branch the agent works in, if it works in one).
        let mut stack = match &policy.workspace {
            None => fs.owner.under_ceiling(policy.quota),
            Some(id) => {
                let id: BranchId = id.parse()?;
                fs.branch(id)?.under_ceiling(policy.quota)
            }
        };
        let read_only =
            std::iter::once("/skills/**").chain(policy.read_only.iter().map(String::as_str));
        stack = Arc::new(
            ReadOnlyLayer::paths(read_only)
                .map_err(invalid)?
                .layer(stack),
        );
        if !policy.deny.is_empty() {
            let mut filter = PathFilterLayer::builder().allow("/**");
            for glob in &policy.deny {
                filter = filter.deny(glob.clone());
            }
            stack = Arc::new(filter.build().map_err(invalid)?.layer(stack));
        }
        if let Some(rate) = policy.rate {
            stack = Arc::new(
                RateLimitLayer::builder()
                    .max_ops(rate.max(1))
                    .per_second()
                    .build()
                    .layer(stack),
            );
        }
        Ok(stack)
    }

    /// Forgets an agent's stack (after its policy changed or it was deleted).
    pub(crate) fn forget_agent(&self, account: &str, agent: &str) {
        if let Some(fs) = self.open.lock().get(account) {
            fs.agents.lock().remove(agent);
        }
    }

    /// Closes and deletes an account's workspace; whether one existed.
    pub(crate) fn delete(&self, account: &str) -> bool {
        // An open under way finishes first; none starts after.
        self.with_opening(account, || self.delete_files(account))
    }

    fn delete_files(&self, account: &str) -> bool {
        {
            let mut open = self.open.lock();
            open.remove(account);
            self.deleted.lock().insert(account.to_string());
        }
        let dir = match &self.home {
            Home::Files { dir, .. } => dir,
            Home::Shared(shared) => {
                return shared.delete(account).unwrap_or_else(|error| {
                    tracing::error!(%error, account, "the account's workspace was not deleted");
                    false
                });
            }
        };
        let file = dir.join(format!("{account}.db"));
        let existed = file.exists();
        // The log first: a database file left alone is whole; a log
        // without its database is not.
        for suffix in ["-wal", "-shm", ""] {
            let mut f = file.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
        existed
    }
}

/// Opens the account's SQLite file with the first of `keys` that opens it.
pub(crate) fn open_file(
    file: &std::path::Path,
    keys: &[Key],
    account: &str,
) -> FsResult<SqliteBackend> {
    let mut last = None;
    for key in keys {
        // Bound to the account, no password stretching per open.
        let key = key.derive(&format!("account {account}"));
        match SqliteBackend::open_with_key(file, key.expose()) {
            Ok(backend) => return Ok(backend),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(FsError::invalid_password("/")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;
    use anyfs::{FsRead, FsWrite};
    use std::path::Path;

    /// Whether `stack` (from `for_account`) is the open instance of the
    /// account's workspace: the one every new request gets.
    fn is_the_open_one(ws: &Workspaces, account: &str, stack: &Stack) -> bool {
        ws.open
            .lock()
            .get(account)
            .is_some_and(|fs| Arc::ptr_eq(&fs.owner.stack(), stack))
    }

    fn workspaces(dir: &Path, max_open: usize) -> Workspaces {
        Workspaces::new(
            Home::Files {
                dir: dir.to_path_buf(),
                keys: vec![Key::from_bytes([3; 32])],
            },
            1 << 20,
            max_open,
        )
    }

    #[test]
    fn idle_workspaces_beyond_the_cap_are_closed_and_reopen_intact() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 2);
        for i in 0..6 {
            let stack = ws.for_account(&format!("acct{i}")).unwrap();
            stack
                .write(Path::new("/note"), format!("account {i}").as_bytes())
                .unwrap();
            drop(stack);
            assert!(ws.open_count() <= 2, "{} open", ws.open_count());
        }
        for i in 0..6 {
            let stack = ws.for_account(&format!("acct{i}")).unwrap();
            assert_eq!(
                stack.read(Path::new("/note")).unwrap(),
                format!("account {i}").as_bytes()
            );
        }
        assert!(ws.open_count() <= 2);
    }

    #[test]
    fn a_workspace_in_use_is_never_closed() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 2);
        let held = ws.for_account("busy").unwrap();
        let agent = ws
            .for_agent("agents", "bot", &AgentPolicy::default())
            .unwrap();
        for i in 0..4 {
            ws.for_account(&format!("other{i}")).unwrap();
        }
        // Both held workspaces stayed open (past the cap), so every stack
        // handed out still works on the one instance of its database.
        assert!(ws.open.lock().contains_key("busy"));
        assert!(ws.open.lock().contains_key("agents"));
        held.write(Path::new("/f"), b"still open").unwrap();
        agent.write(Path::new("/g"), b"agent too").unwrap();
        assert!(Arc::ptr_eq(&held, &ws.for_account("busy").unwrap()));
        // Once let go, they are closed like any other.
        drop((held, agent));
        ws.for_account("late0").unwrap();
        ws.for_account("late1").unwrap();
        assert!(!ws.open.lock().contains_key("busy"));
        assert!(!ws.open.lock().contains_key("agents"));
        assert_eq!(
            ws.for_account("busy")
                .unwrap()
                .read(Path::new("/f"))
                .unwrap(),
            b"still open"
        );
    }

    #[test]
    fn a_reopened_workspace_still_counts_what_it_holds_against_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 1);
        let big = vec![1u8; 700 * 1024];
        ws.for_account("full")
            .unwrap()
            .write(Path::new("/a"), &big)
            .unwrap();
        ws.for_account("someone else").unwrap();
        assert!(!ws.open.lock().contains_key("full"), "not closed");
        let err = ws
            .for_account("full")
            .unwrap()
            .write(Path::new("/b"), &big)
            .unwrap_err();
        assert_eq!(err.kind(), anyfs::FsErrorKind::QuotaExceeded, "{err}");
    }

    /// Eight threads work in six workspaces through a cache that keeps two
    /// open: workspaces close and reopen under them all the time, yet a
    /// workspace in use never has a second instance (each would trust its
    /// own caches and quota count), and no write is lost.
    #[test]
    fn closing_and_reopening_under_concurrent_requests_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 2);
        const ROUNDS: usize = 60;
        std::thread::scope(|s| {
            for t in 0..8usize {
                let ws = &ws;
                s.spawn(move || {
                    for round in 0..ROUNDS {
                        let account = format!("acct{}", (t * 7 + round * 5) % 6);
                        let path = format!("/t{t}");
                        let line = format!("{round}\n");
                        if round % 3 == 0 {
                            ws.for_agent(&account, "bot", &AgentPolicy::default())
                                .unwrap()
                                .append(Path::new(&path), line.as_bytes())
                                .unwrap();
                            continue;
                        }
                        let stack = ws.for_account(&account).unwrap();
                        stack.append(Path::new(&path), line.as_bytes()).unwrap();
                        // Never closed (or opened twice) while in use.
                        assert!(is_the_open_one(ws, &account, &stack), "{account}");
                    }
                });
            }
        });
        // Every append is there, in each thread's order, across accounts.
        for t in 0..8usize {
            let mut seen = Vec::new();
            for a in 0..6 {
                let stack = ws.for_account(&format!("acct{a}")).unwrap();
                if let Ok(data) = stack.read(Path::new(&format!("/t{t}"))) {
                    for line in String::from_utf8(data).unwrap().lines() {
                        seen.push(line.parse::<usize>().unwrap());
                    }
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..ROUNDS).collect::<Vec<_>>(), "thread {t}");
        }
    }

    #[test]
    fn an_agent_always_works_through_the_policy_it_is_asked_with() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 4);
        ws.for_account("acct")
            .unwrap()
            .write(Path::new("/secret.txt"), b"s")
            .unwrap();
        let strict = AgentPolicy {
            deny: vec!["/secret.txt".into()],
            ..AgentPolicy::default()
        };
        let loose = AgentPolicy::default();
        let read = |policy: &AgentPolicy| {
            ws.for_agent("acct", "bot", policy)
                .unwrap()
                .read(Path::new("/secret.txt"))
                .map_err(|e| e.kind())
        };
        assert_eq!(read(&strict), Err(anyfs::FsErrorKind::AccessDenied));
        // A stack cached for an older policy is not handed out for a new one
        // (whatever the order of the cache's forgetting and the change).
        assert_eq!(read(&loose), Ok(b"s".to_vec()));
        assert_eq!(read(&strict), Err(anyfs::FsErrorKind::AccessDenied));
    }

    #[test]
    fn a_deleted_account_is_never_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 4);
        let late = ws.for_account("gone").unwrap();
        late.write(Path::new("/f"), b"x").unwrap();
        drop(late);
        assert!(ws.delete("gone"));
        // A request that authenticated before the deletion finds nothing,
        // and does not bring the file back.
        let err = ws.for_account("gone").err().unwrap();
        assert_eq!(err.kind(), anyfs::FsErrorKind::NotFound);
        assert!(
            ws.for_agent("gone", "bot", &AgentPolicy::default())
                .is_err()
        );
        assert!(!dir.path().join("gone.db").exists());
    }

    /// Requests racing to open one workspace (opened without the cache
    /// locked) all get the one instance; a deletion racing with them leaves
    /// no file and no open instance behind.
    #[test]
    fn racing_opens_share_one_instance_and_deletion_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspaces(dir.path(), 8);
        let stacks: Vec<Stack> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ws.for_account("raced").unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for stack in &stacks {
            assert!(Arc::ptr_eq(stack, &stacks[0]), "two instances opened");
        }
        drop(stacks);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if let Ok(stack) = ws.for_account("doomed") {
                            let _ = stack.write(Path::new("/f"), b"x");
                        }
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            ws.delete("doomed");
        });
        assert!(ws.for_account("doomed").is_err());
        assert!(ws.opening.lock().is_empty(), "opening locks pile up");
        assert!(!ws.open.lock().contains_key("doomed"));
        assert!(!dir.path().join("doomed.db").exists(), "the file came back");
    }
}
