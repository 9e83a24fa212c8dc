//! [`Database`]: a pool of PostgreSQL connections and the runtime that
//! drives them, for synchronous callers.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod,
    Runtime as PoolRuntime, TimeoutType,
};
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::error::{DbError, chain};

/// A pooled connection (returned to the pool when dropped). It derefs to
/// [`tokio_postgres::Client`]; `transaction()` and `prepare_cached()` are
/// its own.
pub type Client = deadpool_postgres::Object;

/// How [`Database::connect_with`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most connections open at once (default 16).
    pub max_connections: usize,
    /// Longest wait for one connection to be established and logged in,
    /// unless the URL sets `connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// Longest wait for a free connection when all are busy (default 30 s);
    /// then the call fails as [`DbError::Unavailable`].
    pub busy_timeout: Duration,
    /// The runtime that drives the connections: the caller's (a service
    /// that has one) or, when `None`, a small one the [`Database`] owns.
    pub runtime: Option<Handle>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(30),
            runtime: None,
        }
    }
}

/// A pool of PostgreSQL connections usable from synchronous code.
///
/// Connections are plain TCP (`NoTls`): use it on loopback or a private
/// network; TLS is not supported yet. Cloning is cheap and shares the pool.
///
/// The synchronous entry points ([`Database::run`], [`Database::block_on`],
/// [`Database::migrate`](Database::migrate)) wait for the runtime: call
/// them from ordinary threads or from tokio's blocking pool
/// (`spawn_blocking`), never from an asynchronous task; async code uses
/// [`Database::client`] instead.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    runtime: Driver,
    target: Arc<str>,
    /// When a call last failed for want of the server: connections made
    /// before then are not handed out again (see [`Database::run`]).
    last_outage: Arc<Mutex<Instant>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.target)
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// with the default [`Options`], and checks that one connection can
    /// log in.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidUrl`] for a URL that does not parse,
    /// [`DbError::Unavailable`] when the server does not answer in time,
    /// [`DbError::Refused`] when it rejects the login.
    pub fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, Options::default())
    }

    /// [`Database::connect`] with explicit [`Options`].
    ///
    /// # Errors
    ///
    /// As [`Database::connect`].
    pub fn connect_with(url: &str, options: Options) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| DbError::InvalidUrl {
            reason: redact(url, &chain(&e)),
        })?;
        if config.get_hosts().is_empty() {
            return Err(DbError::InvalidUrl {
                reason: "no host".to_owned(),
            });
        }
        let target: Arc<str> = describe(&config).into();
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.connect_timeout);
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("anyfs");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let last_outage = Arc::new(Mutex::new(Instant::now()));
        let outage = last_outage.clone();
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(PoolRuntime::Tokio1)
            // The whole log-in, not only the TCP connect, is bounded.
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .wait_timeout(Some(options.busy_timeout))
            .pre_recycle(Hook::sync_fn(move |_client, metrics| {
                let outage = *outage.lock().unwrap_or_else(|e| e.into_inner());
                if metrics.created < outage {
                    Err(HookError::message("made before the last outage"))
                } else {
                    Ok(())
                }
            }))
            .build()
            .map_err(|e| DbError::InvalidUrl {
                reason: e.to_string(),
            })?;
        let runtime = match options.runtime {
            Some(handle) => Driver::Shared(handle),
            None => Driver::owned().map_err(|e| {
                DbError::unavailable(&target, format!("cannot start its runtime: {e}"))
            })?,
        };
        let database = Self {
            pool,
            runtime,
            target,
            last_outage,
        };
        database.run(|_client| async { Ok(()) })?;
        Ok(database)
    }

    /// The server, as `postgres://user@host:port/database` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection, for async callers.
    ///
    /// # Errors
    ///
    /// [`DbError::Unavailable`] when no connection can be had in time,
    /// [`DbError::Refused`] when the server rejects the login.
    pub async fn client(&self) -> Result<Client, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&self.target, e))
    }

    /// Runs `work` with a pooled connection and waits for it: the
    /// synchronous way in ([`Database::run_async`] for async callers).
    /// Driver errors (`?` on a [`tokio_postgres::Error`]) become
    /// [`DbError`]s naming this server.
    ///
    /// After a [`DbError::Unavailable`] (a lost connection, a server that
    /// restarted), the connections made before it are dropped rather than
    /// reused: the driver may not have noticed yet that they are dead, and
    /// the next call should not fail for that.
    ///
    /// # Errors
    ///
    /// Those of [`Database::client`] and of `work`.
    ///
    /// # Panics
    ///
    /// As [`Database::block_on`].
    pub fn run<T, F, Fut>(&self, work: F) -> Result<T, DbError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        self.block_on(self.run_async(work))
    }

    /// [`Database::run`] for async callers: the caller's task waits, not a
    /// thread.
    ///
    /// # Errors
    ///
    /// As [`Database::run`].
    pub async fn run_async<T, F, Fut>(&self, work: F) -> Result<T, DbError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let result = async { work(self.client().await?).await }.await;
        result.map_err(|e| {
            if e.is_unavailable() {
                *self.last_outage.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            e.at(&self.target)
        })
    }

    /// Waits for `future` on this database's runtime.
    ///
    /// # Panics
    ///
    /// When called from a thread that drives asynchronous tasks (a tokio
    /// worker): blocking there would stall every task on it, so tokio
    /// panics with "Cannot start a runtime from within a runtime". Call it
    /// from `spawn_blocking` or an ordinary thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.handle().block_on(future)
    }
}

/// The runtime a [`Database`] waits on.
#[derive(Clone)]
enum Driver {
    Owned(Arc<OwnedRuntime>),
    Shared(Handle),
}

impl Driver {
    fn owned() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("anyfs-postgres")
            .enable_all()
            .build()?;
        Ok(Self::Owned(Arc::new(OwnedRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })))
    }

    fn handle(&self) -> &Handle {
        match self {
            Self::Owned(owned) => &owned.handle,
            Self::Shared(handle) => handle,
        }
    }
}

/// A runtime that shuts down without waiting when the last [`Database`]
/// using it is dropped, so dropping one inside async code does not panic.
struct OwnedRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn pool_error(target: &str, error: PoolError) -> DbError {
    match error {
        PoolError::Backend(e) => DbError::from(e).at(target),
        PoolError::Timeout(TimeoutType::Wait) => {
            DbError::unavailable(target, "every pooled connection stayed busy")
        }
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
            DbError::unavailable(target, "timed out connecting")
        }
        PoolError::Closed => DbError::unavailable(target, "the connection pool is closed"),
        other => DbError::unavailable(target, other.to_string()),
    }
}

/// `url` as it may be shown (in logs, in `Debug` output):
/// `postgres://user@host:port/database`, without the password; or a
/// placeholder when it does not parse.
pub fn display_url(url: &str) -> String {
    url.parse::<tokio_postgres::Config>().map_or_else(
        |_| "(an invalid PostgreSQL URL)".to_owned(),
        |c| describe(&c),
    )
}

/// `postgres://user@host:port/database`, from the parsed URL: the password
/// is never part of it.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{database}")
}

/// `text` without the password of `url`, should a parse error quote it.
fn redact(url: &str, text: &str) -> String {
    let mut secrets = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            secrets.push(password);
        }
    }
    for pair in url.split(['?', '&', ' ']) {
        if let Some(password) = pair.strip_prefix("password=") {
            secrets.push(password);
        }
    }
    secrets
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_password_in_either_form() {
        assert_eq!(
            redact("postgres://u:s3cret@h/db", "bad s3cret here"),
            "bad *** here"
        );
        assert_eq!(redact("host=h password=s3cret user=u", "x s3cret"), "x ***");
    }

    #[test]
    fn display_url_leaves_out_the_password() {
        assert_eq!(
            display_url("postgres://anyfs:s3cret@db.example:5432/reg"),
            "postgres://anyfs@db.example:5432/reg"
        );
        assert!(!display_url("postgres://anyfs:s3cret@h:notaport/reg").contains("s3cret"));
    }

    #[test]
    fn target_names_the_server_without_the_password() {
        let config: tokio_postgres::Config = "postgres://anyfs:s3cret@127.0.0.1:6543/reg"
            .parse()
            .expect("parses");
        assert_eq!(describe(&config), "postgres://anyfs@127.0.0.1:6543/reg");
    }
}
