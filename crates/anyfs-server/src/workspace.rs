//! One encrypted SQLite workspace per account, and the middleware stack each
//! caller reaches it through.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyfs::crypto::Key;
use anyfs::middleware::{Guarded, Policy, Request};
use anyfs::{FsError, FsFull, FsResult, PathFilterLayer, Quota, QuotaLayer, RateLimitLayer};
use anyfs_sqlite::SqliteBackend;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What an agent may do in its account's workspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentPolicy {
    /// Globs the agent may read but never change (`/skills/**` always is).
    pub read_only: Vec<String>,
    /// Globs the agent can neither see nor touch.
    pub deny: Vec<String>,
    /// The most bytes the workspace may hold while this agent writes.
    pub quota: Option<u64>,
    /// Operations per second allowed to this agent.
    pub rate: Option<u32>,
}

/// Refuses changes to paths matching its globs.
#[derive(Debug)]
struct ReadOnlyPaths(PathFilterLayer);

impl Policy for ReadOnlyPaths {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        if request.op.is_mutation() && request.paths().any(|p| self.0.is_allowed(p)) {
            return Err(FsError::ReadOnly {
                path: request.error_path(),
                op: request.op.name(),
            });
        }
        Ok(())
    }
}

/// A filesystem stack as the API uses it.
pub(crate) type Stack = Arc<dyn FsFull>;

/// An account's open workspace.
struct AccountFs {
    /// The workspace under the account's quota: what the account itself uses.
    owner: Arc<Quota<SqliteBackend>>,
    /// Each agent's stack, built once from its policy.
    agents: Mutex<HashMap<String, Stack>>,
}

/// All accounts' workspaces, opened on first use.
pub(crate) struct Workspaces {
    dir: PathBuf,
    keys: Vec<Key>,
    default_quota: u64,
    open: Mutex<HashMap<String, Arc<AccountFs>>>,
}

impl Workspaces {
    pub(crate) fn new(dir: PathBuf, keys: Vec<Key>, default_quota: u64) -> Self {
        Self {
            dir,
            keys,
            default_quota,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, account: &str) -> PathBuf {
        self.dir.join(format!("{account}.db"))
    }

    /// The account's workspace key under master key `i`: bound to the
    /// account, no password stretching per open.
    fn key(&self, i: usize, account: &str) -> Key {
        self.keys[i].derive(&format!("account {account}"))
    }

    fn account(&self, account: &str) -> FsResult<Arc<AccountFs>> {
        let mut open = self.open.lock();
        if let Some(fs) = open.get(account) {
            return Ok(fs.clone());
        }
        let file = self.file(account);
        let mut last = None;
        let mut backend = None;
        for i in 0..self.keys.len() {
            match SqliteBackend::open_with_key(&file, self.key(i, account).expose()) {
                Ok(b) => {
                    backend = Some(b);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let backend = match backend {
            Some(b) => b,
            None => return Err(last.unwrap_or(FsError::InvalidPassword { path: "/".into() })),
        };
        let owner = Arc::new(
            QuotaLayer::builder()
                .max_total_size(self.default_quota)
                .build()
                .layer(backend),
        );
        let fs = Arc::new(AccountFs {
            owner,
            agents: Mutex::new(HashMap::new()),
        });
        open.insert(account.to_string(), fs.clone());
        Ok(fs)
    }

    /// The stack the account's own secret works through.
    pub(crate) fn for_account(&self, account: &str) -> FsResult<Stack> {
        Ok(self.account(account)?.owner.clone())
    }

    /// The stack an agent works through, built from its policy.
    pub(crate) fn for_agent(
        &self,
        account: &str,
        agent: &str,
        policy: &AgentPolicy,
    ) -> FsResult<Stack> {
        let fs = self.account(account)?;
        let mut agents = fs.agents.lock();
        if let Some(stack) = agents.get(agent) {
            return Ok(stack.clone());
        }
        let invalid = |e: anyfs::middleware::PathFilterError| FsError::InvalidPath {
            path: "/".into(),
            reason: if e.to_string().is_empty() {
                "bad glob"
            } else {
                "a policy glob is invalid"
            },
        };
        let mut stack: Stack = fs.owner.clone();
        if let Some(bytes) = policy.quota {
            stack = Arc::new(
                QuotaLayer::builder()
                    .max_total_size(bytes)
                    .build()
                    .layer(stack),
            );
        }
        let mut read_only = PathFilterLayer::builder().allow("/skills/**");
        for glob in &policy.read_only {
            read_only = read_only.allow(glob.clone());
        }
        let read_only = read_only.build().map_err(invalid)?;
        stack = Arc::new(Guarded::with_policy(stack, ReadOnlyPaths(read_only)));
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
        agents.insert(agent.to_string(), stack.clone());
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
        self.open.lock().remove(account);
        let file = self.file(account);
        let existed = file.exists();
        for suffix in ["", "-wal", "-shm"] {
            let mut f = file.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
        existed
    }
}
