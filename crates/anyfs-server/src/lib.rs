//! The AnyFS workspace service: accounts with API secrets shown once and
//! stored hashed, agents with encrypted and redacted configs, one encrypted
//! SQLite workspace per account reached only through that account's
//! middleware, and a hash-chained audit log — over HTTP.
//!
//! Start it with `anyfs serve`; embed it with [`Service::open`] and
//! [`router`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod api;
mod bundle;
mod mcp;
mod openapi;
pub mod redact;
mod registry;
pub mod secrets;
mod workspace;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyfs::crypto::{Aes256Gcm, Key};
use parking_lot::Mutex;
use zeroize::Zeroizing;

pub use api::router;
pub use registry::verify_chain;
pub use workspace::AgentPolicy;

/// How the service runs. `Debug` shows no key and no secret.
#[derive(Clone)]
pub struct Config {
    /// Where the registry, the workspaces and (if no key is given) the
    /// master key live.
    pub data_dir: PathBuf,
    /// Master keys: the first encrypts, every one decrypts. Empty: read or
    /// create `DATA_DIR/master.key`.
    pub master_keys: Vec<Key>,
    /// The admin secret; `None`: generated on first start.
    pub admin_secret: Option<String>,
    /// Sign-ups allowed per client address per hour.
    pub signups_per_hour: u32,
    /// Default workspace quota in bytes.
    pub default_quota: u64,
    /// Operations per second for agents whose policy sets no rate
    /// (`None`: unlimited).
    pub default_rate: Option<u32>,
    /// Workspaces kept open at once (default 256). Each open one holds
    /// about seven file descriptors and a thread; beyond this, idle ones
    /// are closed, least recently used first, and reopened when asked for.
    pub max_open_workspaces: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("master_keys", &self.master_keys.len())
            .field(
                "admin_secret",
                &self.admin_secret.as_ref().map(|_| "********"),
            )
            .field("signups_per_hour", &self.signups_per_hour)
            .field("default_quota", &self.default_quota)
            .field("default_rate", &self.default_rate)
            .field("max_open_workspaces", &self.max_open_workspaces)
            .finish()
    }
}

impl Config {
    /// The defaults, for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            master_keys: Vec::new(),
            admin_secret: None,
            signups_per_hour: 5,
            default_quota: 1 << 30,
            default_rate: None,
            max_open_workspaces: 256,
        }
    }
}

/// The running service's state, shared by every request.
pub struct Service {
    pub(crate) registry: registry::Registry,
    pub(crate) keys: Vec<Key>,
    pub(crate) config_cipher: Vec<Aes256Gcm>,
    pub(crate) admin_digest: [u8; 32],
    pub(crate) workspaces: workspace::Workspaces,
    pub(crate) signups: Mutex<HashMap<IpAddr, Vec<Instant>>>,
    pub(crate) config: Config,
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

/// Reads or creates `DATA_DIR/master.key` (32 random bytes, mode 0600).
fn master_key_file(dir: &Path) -> Result<Key, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("master.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("{}: not a 32-byte key", path.display()))?;
            Ok(Key::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::random().map_err(|e| e.to_string())?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(key.expose())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl Service {
    /// Opens (or creates) the service's data directory.
    pub fn open(config: Config) -> Result<Opened, String> {
        // Owner only: the registry, the workspaces and the key file.
        for dir in [config.data_dir.clone(), config.data_dir.join("workspaces")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let keys = if config.master_keys.is_empty() {
            vec![master_key_file(&config.data_dir)?]
        } else {
            config.master_keys.clone()
        };
        let registry = registry::Registry::open(&config.data_dir.join("registry.db"))
            .map_err(|e| e.to_string())?;
        // The admin secret: given, or generated once and kept as a digest.
        let admin_file = config.data_dir.join("admin.digest");
        let (admin_digest, new_admin_secret) = match &config.admin_secret {
            Some(secret) => (secrets::digest(secret), None),
            None => match std::fs::read(&admin_file) {
                Ok(bytes) if bytes.len() == 32 => {
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&bytes);
                    (d, None)
                }
                _ => {
                    let secret =
                        secrets::generate(secrets::Kind::Admin).map_err(|e| e.to_string())?;
                    let d = secrets::digest(&secret);
                    std::fs::write(&admin_file, d)
                        .map_err(|e| format!("{}: {e}", admin_file.display()))?;
                    (d, Some(secret))
                }
            },
        };
        let config_cipher = keys
            .iter()
            .map(|k| Aes256Gcm::new(&k.derive("anyfs agent config v1")))
            .collect();
        let workspaces = workspace::Workspaces::new(
            config.data_dir.join("workspaces"),
            keys.iter()
                .map(|k| k.derive("anyfs workspace v1"))
                .collect(),
            config.default_quota,
            config.max_open_workspaces,
        );
        Ok(Opened {
            service: Arc::new(Service {
                registry,
                keys,
                config_cipher,
                admin_digest,
                workspaces,
                signups: Mutex::new(HashMap::new()),
                config,
            }),
            new_admin_secret,
        })
    }

    /// Whether a sign-up from `ip` is allowed now; otherwise how long to wait.
    pub(crate) fn signup_allowed(&self, ip: IpAddr) -> Result<(), Duration> {
        let hour = Duration::from_secs(3600);
        let mut signups = self.signups.lock();
        let times = signups.entry(ip).or_default();
        times.retain(|t| t.elapsed() < hour);
        if times.len() >= self.config.signups_per_hour as usize {
            let oldest = times.first().copied().unwrap_or_else(Instant::now);
            return Err(hour.saturating_sub(oldest.elapsed()));
        }
        times.push(Instant::now());
        Ok(())
    }

    /// Seals an agent config, bound to its account and agent.
    pub(crate) fn seal_config(
        &self,
        account: &str,
        agent: &str,
        config: &serde_json::Value,
    ) -> Result<Vec<u8>, String> {
        self.seal("agent config", account, agent, config)
    }

    /// Opens an agent config (with any master key), or `None` if it does not
    /// authenticate for this account and agent.
    pub(crate) fn open_config(
        &self,
        account: &str,
        agent: &str,
        sealed: &[u8],
    ) -> Option<serde_json::Value> {
        self.open_sealed("agent config", account, agent, sealed)
    }

    /// Seals a JSON value of `kind`, bound to its account and row id.
    pub(crate) fn seal(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<u8>, String> {
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(|e| e.to_string())?);
        self.config_cipher[0]
            .encrypt(&sealed_aad(kind, account, id), &plain)
            .map_err(|e| e.to_string())
    }

    /// Opens what [`seal`](Self::seal) made, with any master key.
    pub(crate) fn open_sealed(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<serde_json::Value> {
        let aad = sealed_aad(kind, account, id);
        self.config_cipher.iter().find_map(|c| {
            let plain = Zeroizing::new(c.decrypt(&aad, sealed)?);
            serde_json::from_slice(&plain).ok()
        })
    }

    /// The number of master keys (the first encrypts).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

fn sealed_aad(kind: &str, account: &str, id: &str) -> Vec<u8> {
    format!("anyfs {kind}\0{account}\0{id}").into_bytes()
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
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
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
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("9, 9"),
            "{shown}"
        );
    }
}
