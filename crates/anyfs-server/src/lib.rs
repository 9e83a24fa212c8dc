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
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) admin_digest: [u8; 32],
    pub(crate) workspaces: workspace::Workspaces,
    pub(crate) signups: Mutex<HashMap<IpAddr, Vec<Instant>>>,
    pub(crate) config: Config,
    /// The data directory's lock, held while the service lives: one
    /// service per directory (two would interleave the audit chain).
    _lock: std::fs::File,
}

/// Seals small values (agent configs and policies, executions, audit
/// paths) with AES-256-GCM under a key derived from the master keys; the
/// associated data binds each to its kind, account and row, so a value
/// moved elsewhere does not open. The first key seals, every key opens.
pub(crate) struct Sealer {
    ciphers: Vec<Aes256Gcm>,
}

impl Sealer {
    fn new(keys: &[Key]) -> Self {
        Self {
            ciphers: keys
                .iter()
                .map(|k| Aes256Gcm::new(&k.derive("anyfs agent config v1")))
                .collect(),
        }
    }

    /// `plain` sealed as a `kind` of `account`'s row `id`.
    pub(crate) fn seal(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, String> {
        let cipher = self.ciphers.first().ok_or("no master key")?;
        cipher
            .encrypt(&sealed_aad(kind, account, id), plain)
            .map_err(|e| e.to_string())
    }

    /// What [`seal`](Self::seal) made, with any key; `None` if it does not
    /// authenticate as that kind of that row.
    pub(crate) fn open(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let aad = sealed_aad(kind, account, id);
        self.ciphers
            .iter()
            .find_map(|c| c.decrypt(&aad, sealed).map(Zeroizing::new))
    }
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

/// Writes `bytes` to `path` (replacing it) as an owner-only file (0600),
/// synced: for what must not be readable by other users of the host.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    // A file that existed keeps its mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(fail)
}

/// Makes the registry's files owner-only: creates the database 0600 before
/// SQLite opens it (SQLite gives its log and shared-memory files the
/// database's mode), and narrows what an older version left readable.
fn owner_only_files(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let registry = dir.join("registry.db");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&registry)
        .map_err(|e| format!("{}: {e}", registry.display()))?;
    let mut files = vec![
        dir.join("registry.db"),
        dir.join("registry.db-wal"),
        dir.join("registry.db-shm"),
        dir.join("admin.digest"),
    ];
    if let Ok(entries) = std::fs::read_dir(dir.join("workspaces")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    for file in files {
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    Ok(())
}

/// Keeps the pages that hold `keys` in RAM, never written to swap, where
/// the OS allows it (within `RLIMIT_MEMLOCK`): best effort, with a warning
/// when refused. The vectors keep their buffers for the life of the
/// service, so the lock is kept for the life of the process.
fn lock_in_memory(what: &str, keys: &[Key]) {
    if keys.is_empty() {
        return;
    }
    match region::lock(keys.as_ptr(), std::mem::size_of_val(keys)) {
        Ok(guard) => std::mem::forget(guard),
        Err(error) => tracing::warn!(%error, "{what} could not be locked in memory"),
    }
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

/// Takes the data directory's lock, or says which service holds it.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("anyfs.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // flock: held by the open file, so it goes with the service (or the
    // process), and a second open of the file, even in this process, is
    // refused.
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(format!(
            "another anyfs service is already using the data directory {} (it holds {}): \
             stop it first, or give this one its own --data-dir",
            dir.display(),
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// What a key-check value holds, sealed under a key derived from a master
/// key: it tells at start whether a master key is one the data directory
/// was made (or rotated) with.
const KEY_CHECK: &[u8] = b"anyfs master key check v1";

fn key_check_cipher(key: &Key) -> Aes256Gcm {
    Aes256Gcm::new(&key.derive("anyfs key check v1"))
}

/// "key 1" or "key 1, key 3" (counted from 1, as in `ANYFS_MASTER_KEY`).
fn key_positions(positions: &[usize]) -> String {
    positions
        .iter()
        .map(|i| format!("key {}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses master keys that do not open the data directory, before
/// anything is served. A data directory keeps one key-check value per key
/// that has sealed in it; the first key gets one when it is new (a
/// rotation: another configured key is known). A directory without any
/// (first start, or made by an older version) is checked against one of
/// its existing workspaces first.
fn check_master_keys(
    dir: &Path,
    keys: &[Key],
    registry: &registry::Registry,
    workspaces: &workspace::Workspaces,
) -> Result<(), String> {
    let stored = registry.key_checks().map_err(|e| e.to_string())?;
    let wrong = |positions: &[usize]| {
        format!(
            "the master key does not open the data directory {}: {} (of {}) is not a key it was \
             made or rotated with. Keys are counted from 1 in ANYFS_MASTER_KEY (without it, \
             DATA_DIR/master.key is key 1); the service was not started",
            dir.display(),
            key_positions(positions),
            keys.len()
        )
    };
    let seal_first = || {
        let first = keys.first().ok_or("no master key")?;
        let sealed = key_check_cipher(first)
            .encrypt(b"anyfs key check", KEY_CHECK)
            .map_err(|e| e.to_string())?;
        registry.add_key_check(&sealed).map_err(|e| e.to_string())
    };
    if stored.is_empty() {
        let accounts = registry.accounts().map_err(|e| e.to_string())?;
        let existing = accounts
            .iter()
            .find(|a| dir.join("workspaces").join(format!("{}.db", a.id)).exists());
        if let Some(account) = existing
            && let Err(e) = workspaces.for_account(&account.id)
        {
            if e.kind() == anyfs::FsErrorKind::InvalidPassword {
                return Err(wrong(&(0..keys.len()).collect::<Vec<_>>()));
            }
            tracing::warn!(error = %e, "a workspace could not be opened to check the master key");
        }
        return seal_first();
    }
    let known: Vec<bool> = keys
        .iter()
        .map(|key| {
            let cipher = key_check_cipher(key);
            stored
                .iter()
                .any(|s| cipher.decrypt(b"anyfs key check", s).as_deref() == Some(KEY_CHECK))
        })
        .collect();
    if !known.iter().any(|k| *k) {
        return Err(wrong(&(0..keys.len()).collect::<Vec<_>>()));
    }
    if known.first() == Some(&false) {
        tracing::info!("master key 1 is new: it encrypts from now on, the others still decrypt");
        seal_first()?;
    }
    Ok(())
}

impl Service {
    /// Opens (or creates) the service's data directory. Refuses a directory
    /// another service has open, master keys that do not open it, and an
    /// admin secret that could never authenticate or is too short.
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
        if let Some(secret) = &config.admin_secret {
            check_admin_secret(secret)?;
        }
        let lock = lock_data_dir(&config.data_dir)?;
        let keys = if config.master_keys.is_empty() {
            vec![master_key_file(&config.data_dir)?]
        } else {
            config.master_keys.clone()
        };
        let sealer = Arc::new(Sealer::new(&keys));
        owner_only_files(&config.data_dir)?;
        let registry =
            registry::Registry::open(&config.data_dir.join("registry.db"), sealer.clone())
                .map_err(|e| e.to_string())?;
        let workspaces = workspace::Workspaces::new(
            config.data_dir.join("workspaces"),
            keys.iter()
                .map(|k| k.derive("anyfs workspace v1"))
                .collect(),
            config.default_quota,
            config.max_open_workspaces,
        );
        check_master_keys(&config.data_dir, &keys, &registry, &workspaces)?;
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
                    write_private_file(&admin_file, &d)?;
                    (d, Some(secret))
                }
            },
        };
        lock_in_memory("the master keys", &keys);
        lock_in_memory("the workspace keys", workspaces.keys());
        lock_in_memory("the configured keys", &config.master_keys);
        Ok(Opened {
            service: Arc::new(Service {
                registry,
                keys,
                sealer,
                admin_digest,
                workspaces,
                signups: Mutex::new(HashMap::new()),
                config,
                _lock: lock,
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
    /// authenticate for this account and agent. Its strings are wiped when
    /// it is dropped.
    pub(crate) fn open_config(
        &self,
        account: &str,
        agent: &str,
        sealed: &[u8],
    ) -> Option<Decrypted> {
        self.open_sealed("agent config", account, agent, sealed)
            .map(Decrypted)
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
        self.sealer.seal(kind, account, id, &plain)
    }

    /// Opens what [`seal`](Self::seal) made, with any master key.
    pub(crate) fn open_sealed(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<serde_json::Value> {
        let plain = self.sealer.open(kind, account, id, sealed)?;
        serde_json::from_slice(&plain).ok()
    }

    /// The number of master keys (the first encrypts).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// The shortest admin secret accepted after its prefix: a guessable one
/// would open every account's administration.
pub const MIN_ADMIN_SECRET_CHARS: usize = 24;

/// Refuses an admin secret that could never authenticate (no `afs_admin_`
/// prefix: bearer secrets are told apart by it) or that is trivially short.
fn check_admin_secret(secret: &str) -> Result<(), String> {
    let prefix = secrets::Kind::Admin.prefix();
    let Some(rest) = secret.strip_prefix(prefix) else {
        return Err(format!(
            "ANYFS_ADMIN_SECRET must start with `{prefix}` (a secret without it is never \
             recognised as the admin's); for example {prefix}$(openssl rand -hex 16)"
        ));
    };
    if rest.chars().count() < MIN_ADMIN_SECRET_CHARS {
        return Err(format!(
            "ANYFS_ADMIN_SECRET is too short: at least {MIN_ADMIN_SECRET_CHARS} characters after \
             `{prefix}`; for example {prefix}$(openssl rand -hex 16)"
        ));
    }
    Ok(())
}

fn sealed_aad(kind: &str, account: &str, id: &str) -> Vec<u8> {
    format!("anyfs {kind}\0{account}\0{id}").into_bytes()
}

/// A decrypted JSON value holding credentials (an agent config): every
/// string in it is overwritten with zeros when it is dropped.
pub(crate) struct Decrypted(pub(crate) serde_json::Value);

impl std::ops::Deref for Decrypted {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl Drop for Decrypted {
    fn drop(&mut self) {
        fn wipe(value: &mut serde_json::Value) {
            use zeroize::Zeroize;
            match value {
                serde_json::Value::String(s) => s.zeroize(),
                serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
                serde_json::Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        wipe(&mut self.0);
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
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("9, 9"),
            "{shown}"
        );
    }
}
