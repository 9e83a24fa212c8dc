//! The AnyFS workspace service: accounts with API secrets shown once and
//! stored hashed, agents with encrypted and redacted configs, one encrypted
//! SQLite workspace per account reached only through that account's
//! middleware, and a hash-chained audit log — over HTTP and MCP.
//!
//! Start it with `anyfs serve`; embed it with [`Service::open`] and
//! [`router`].
//!
//! The service core is transport-free: `caller` tells who a bearer secret
//! belongs to, `operation` runs every file operation (open the workspace,
//! run on the blocking pool, audit), `failure` names what went wrong,
//! `registry` stores accounts, agents and the audit log.
//! The transports — `api` (HTTP, one module per resource) and `mcp` —
//! only translate requests and answers.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod api;
mod bundle;
mod caller;
mod exec;
mod failure;
mod mcp;
mod migrate;
mod openapi;
mod operation;
pub mod redact;
mod registry;
mod sealing;
pub mod secrets;
mod shared;
mod start;
mod tree_lock;
mod workspace;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyfs::crypto::Key;
use zeroize::Zeroizing;

pub use anyfs_objects::ObjectStoreConfig;
pub use api::router;
pub use exec::ExecConfig;
pub use mcp::{StdioOptions, serve_stdio};
pub use migrate::{Counts, MigrateError, MigrateOptions, Progress, Report, migrate};
pub use registry::{ChainBreak, verify_chain, verify_postgres_chain};
pub use start::{MIN_ADMIN_SECRET_CHARS, OpenError, write_private_file};
pub use workspace::AgentPolicy;

/// The window of [`Config::signups_per_hour`].
const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);

/// How the service runs. `Debug` shows no key and no secret.
#[derive(Clone)]
pub struct Config {
    /// Where the registry, the workspaces and (if no key is given) the
    /// master key live.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: keep the registry (accounts, agents, executions,
    /// the audit log) there, shared with every node started with the same
    /// URL, instead of in `DATA_DIR/registry.db`. Needs `master_keys`.
    /// Connections are not encrypted (TLS is not supported yet): use it on
    /// a private network.
    pub database: Option<String>,
    /// An object store (`s3://BUCKET/PREFIX` with its endpoint and
    /// credentials): keep every account's workspace there (content) and in
    /// [`database`](Self::database) (the tree), shared with every node
    /// started with both, instead of in `DATA_DIR/workspaces`. Needs
    /// `database`.
    pub objects: Option<ObjectStoreConfig>,
    /// Master keys: the first encrypts, every one decrypts. Empty: read or
    /// create `DATA_DIR/master.key`.
    pub master_keys: Vec<Key>,
    /// The admin secret; `None`: generated on first start.
    pub admin_secret: Option<String>,
    /// Sign-ups allowed per client address per hour, counted in the
    /// registry: with a shared database, across every node.
    pub signups_per_hour: u32,
    /// Default workspace quota in bytes.
    pub default_quota: u64,
    /// Operations per second for agents whose policy sets no rate
    /// (`None`: unlimited).
    pub default_rate: Option<u32>,
    /// Workspaces kept open at once (default 256). Each open SQLite one
    /// holds about seven file descriptors and a thread; beyond this, idle
    /// ones are closed, least recently used first, and reopened when asked
    /// for.
    pub max_open_workspaces: usize,
    /// Snapshots an account may keep (default 100).
    pub max_snapshots: usize,
    /// Branches an account may keep (default 10).
    pub max_branches: usize,
    /// Commands callers may run in their workspaces (`POST /v1/exec`, the
    /// MCP tool `run_command`), in a sandbox, under these limits (`None`,
    /// the default: refused). Needs bubblewrap and FUSE: checked at start.
    pub exec: Option<ExecConfig>,
    /// The runtime the service will run on, when it exists before
    /// [`Service::open`]: connections to `database` are then driven by it
    /// rather than by threads of their own, so a request's queries wake
    /// no other threads (`None`: the database gets a small runtime).
    pub runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field(
                "database",
                &self.database.as_deref().map(anyfs_postgres::display_url),
            )
            .field("objects", &self.objects)
            .field("master_keys", &self.master_keys.len())
            .field(
                "admin_secret",
                &self.admin_secret.as_ref().map(|_| "********"),
            )
            .field("signups_per_hour", &self.signups_per_hour)
            .field("default_quota", &self.default_quota)
            .field("default_rate", &self.default_rate)
            .field("max_open_workspaces", &self.max_open_workspaces)
            .field("max_snapshots", &self.max_snapshots)
            .field("max_branches", &self.max_branches)
            .field("exec", &self.exec)
            .field("runtime", &self.runtime.is_some())
            .finish()
    }
}

impl Config {
    /// The defaults, for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            objects: None,
            master_keys: Vec::new(),
            admin_secret: None,
            signups_per_hour: 5,
            default_quota: 1 << 30,
            default_rate: None,
            max_open_workspaces: 256,
            max_snapshots: 100,
            max_branches: 10,
            exec: None,
            runtime: None,
        }
    }
}

/// The running service's state, shared by every request.
pub struct Service {
    /// Accounts, agents, executions and the audit log: call it on the
    /// blocking pool (see [`operation::blocking`]).
    pub(crate) registry: Arc<dyn registry::Registry>,
    pub(crate) keys: Vec<Key>,
    pub(crate) sealer: Arc<sealing::Sealer>,
    pub(crate) admin_digest: [u8; 32],
    pub(crate) workspaces: workspace::Workspaces,
    /// The commands running for each account.
    pub(crate) executor: exec::Executor,
    pub(crate) config: Config,
    /// The data directory's lock, held while the service lives: one
    /// service per directory (two would interleave the audit chain).
    _lock: std::fs::File,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// What opening the service produced that must be shown once.
#[derive(Debug)]
pub struct Opened {
    /// The service.
    pub service: Arc<Service>,
    /// The admin secret, when it was generated now (print it once).
    pub new_admin_secret: Option<Zeroizing<String>>,
}

impl Service {
    /// Records a sign-up from `ip` if the hourly limit allows it now;
    /// otherwise says how long to wait (`Ok(Some(wait))`). The count is
    /// the registry's, so nodes sharing a database share the limit. Blocks:
    /// call it on the blocking pool.
    pub(crate) fn signup_allowed(
        &self,
        ip: IpAddr,
    ) -> Result<Option<Duration>, registry::RegistryError> {
        self.registry
            .record_signup(&ip.to_string(), self.config.signups_per_hour, SIGNUP_WINDOW)
    }

    /// Seals an agent config, bound to its account and agent.
    pub(crate) fn seal_config(
        &self,
        account: &str,
        agent: &str,
        config: &serde_json::Value,
    ) -> Result<Vec<u8>, sealing::SealError> {
        self.sealer
            .seal_json("agent config", account, agent, config)
    }

    /// Opens an agent config (with any master key), or `None` if it does not
    /// authenticate for this account and agent. Its strings are wiped when
    /// it is dropped.
    pub(crate) fn open_config(
        &self,
        account: &str,
        agent: &str,
        sealed: &[u8],
    ) -> Option<sealing::Decrypted> {
        self.sealer
            .open_json("agent config", account, agent, sealed)
            .map(sealing::Decrypted)
    }

    /// The number of master keys (the first encrypts).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Serves `service` on `listen` until Ctrl-C or SIGTERM.
pub async fn serve(service: Arc<Service>, listen: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_on(service, listener).await
}

/// Serves on a bound listener until Ctrl-C or SIGTERM.
pub async fn serve_on(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = router(service).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let ctrl_c = tokio::signal::ctrl_c();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM can be caught");
            let signal = tokio::select! {
                _ = ctrl_c => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            };
            // Said on stderr whatever RUST_LOG is: an operator waiting for
            // the service to stop sees that it heard.
            eprintln!("anyfs: {signal}: shutting down, finishing the requests under way…");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_secret() {
        let mut config = Config::new("/data");
        config.admin_secret = Some("afs_admin_SECRET".into());
        config.master_keys = vec![Key::from_bytes([9; 32])];
        config.database = Some("postgres://anyfs:DBPASSWORD@127.0.0.1:5432/anyfs".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("9, 9") && !shown.contains("DBPASSWORD"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://anyfs@127.0.0.1:5432/anyfs"),
            "{shown}"
        );
    }
}
