//! Opening the service's data directory: its lock, its files made owner
//! only, the master keys checked against it, the registry and the admin
//! secret. Each refusal is an [`OpenError`] saying what to do about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyfs::crypto::{Aes256Gcm, Key};

use crate::registry::{PostgresRegistry, Registry, RegistryError, SqliteRegistry};
use crate::sealing::Sealer;
use crate::shared::{self, SharedWorkspaces};
use crate::{Config, Opened, Service, secrets, workspace};

/// Why the service did not start, or a private file was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file or directory of the data directory could not be made, read
    /// or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Another service holds the data directory.
    #[error(
        "another anyfs service is already using the data directory {} (it holds {}): \
         stop it first, or give this one its own --data-dir",
        dir.display(),
        lock.display()
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// Commands were allowed, and they cannot be sandboxed here.
    #[error("commands cannot run here (--allow-exec): {0}")]
    Exec(String),
    /// `DATA_DIR/master.key` is not a key.
    #[error("{}: not a 32-byte key", .0.display())]
    NotAKey(PathBuf),
    /// The admin secret could never authenticate, or is too short.
    #[error("{0}")]
    AdminSecret(String),
    /// None of the first keys given opens the data directory.
    #[error(
        "the master key does not open the data directory {}: {} (of {count}) is not a key it \
         was made or rotated with. Keys are counted from 1 in ANYFS_MASTER_KEY (without it, \
         DATA_DIR/master.key is key 1); the service was not started",
        dir.display(),
        key_positions(positions)
    )]
    WrongMasterKeys {
        /// The data directory.
        dir: PathBuf,
        /// The keys that do not open it, counted from 0.
        positions: Vec<usize>,
        /// How many keys were given.
        count: usize,
    },
    /// The registry could not be opened or read.
    #[error("{0}")]
    Registry(String),
    /// A shared registry (`--database`) without `ANYFS_MASTER_KEY`.
    #[error(
        "a service with --database needs its master key(s) in ANYFS_MASTER_KEY: every node of \
         a shared deployment must hold the same keys, and none may keep them in its own data \
         directory (DATA_DIR/master.key); the service was not started"
    )]
    MasterKeyRequired,
    /// An object store (`--objects`) without a shared registry database.
    #[error(
        "--objects needs --database: the workspaces' files and folders are kept in the \
         PostgreSQL database, their content in the object store; the service was not started"
    )]
    ObjectsNeedDatabase,
    /// The object store cannot be used (the reason names its endpoint).
    #[error("{0}; the service was not started")]
    ObjectStore(String),
    /// A new first master key with workspaces in an object store, which
    /// are sealed under the first key only.
    #[error(
        "master key 1 is new, but workspaces in an object store are sealed under one master key \
         and cannot be rotated yet: put the key the deployment was made with first in \
         ANYFS_MASTER_KEY; the service was not started"
    )]
    ObjectsKeyRotation,
    /// No key or secret could be made (no randomness).
    #[error("{0}")]
    Random(#[from] anyfs::FsError),
}

impl From<RegistryError> for OpenError {
    fn from(e: RegistryError) -> Self {
        OpenError::Registry(e.to_string())
    }
}

impl From<crate::sealing::SealError> for OpenError {
    fn from(e: crate::sealing::SealError) -> Self {
        OpenError::Registry(e.to_string())
    }
}

/// A file error naming `path`.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` (replacing it) as an owner-only file (0600),
/// synced: for what must not be readable by other users of the host.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), OpenError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(at(path))?;
    // A file that existed keeps its mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(at(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(at(path))
}

/// Makes the registry's files owner-only: creates the database 0600 before
/// SQLite opens it (SQLite gives its log and shared-memory files the
/// database's mode), and narrows what an older version left readable.
fn owner_only_files(dir: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let registry = dir.join("registry.db");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&registry)
        .map_err(at(&registry))?;
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
            Err(e) => return Err(at(&file)(e)),
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
fn master_key_file(dir: &Path) -> Result<Key, OpenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("master.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| OpenError::NotAKey(path.clone()))?;
            Ok(Key::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::random()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(at(&path))?;
            file.write_all(key.expose())
                .and_then(|()| file.sync_all())
                .map_err(at(&path))?;
            Ok(key)
        }
        Err(e) => Err(at(&path)(e)),
    }
}

/// Takes the data directory's lock, or says which service holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("anyfs.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(at(&path))?;
    // flock: held by the open file, so it goes with the service (or the
    // process), and a second open of the file, even in this process, is
    // refused.
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(OpenError::InUse {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(e) => Err(at(&path)(e.into())),
    }
}

/// What a key-check value holds, sealed under a key derived from a master
/// key: it tells at start whether a master key is one the data directory
/// was made (or rotated) with.
const KEY_CHECK: &[u8] = b"anyfs master key check v1";

fn key_check_cipher(key: &Key) -> Aes256Gcm {
    Aes256Gcm::new(&key.derive("anyfs key check v1"))
}

/// Whether `key` sealed one of the key-check values `stored`: it is a key
/// the data directory was made or rotated with.
pub(crate) fn key_is_known(key: &Key, stored: &[Vec<u8>]) -> bool {
    let cipher = key_check_cipher(key);
    stored
        .iter()
        .any(|s| cipher.decrypt(b"anyfs key check", s).as_deref() == Some(KEY_CHECK))
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
    registry: &dyn Registry,
    workspaces: &workspace::Workspaces,
) -> Result<(), OpenError> {
    let stored = registry.key_checks()?;
    let wrong = || OpenError::WrongMasterKeys {
        dir: dir.to_path_buf(),
        positions: (0..keys.len()).collect(),
        count: keys.len(),
    };
    let seal_first = || -> Result<(), OpenError> {
        let first = keys.first().ok_or(crate::sealing::SealError::NoKey)?;
        let sealed = key_check_cipher(first).encrypt(b"anyfs key check", KEY_CHECK)?;
        Ok(registry.add_key_check(&sealed)?)
    };
    if stored.is_empty() {
        let accounts = registry.accounts()?;
        let existing = accounts
            .iter()
            .find(|a| dir.join("workspaces").join(format!("{}.db", a.id)).exists());
        if let Some(account) = existing
            && let Err(e) = workspaces.for_account(&account.id)
        {
            if e.kind() == anyfs::FsErrorKind::InvalidPassword {
                return Err(wrong());
            }
            tracing::warn!(error = %e, "a workspace could not be opened to check the master key");
        }
        return seal_first();
    }
    let known: Vec<bool> = keys.iter().map(|key| key_is_known(key, &stored)).collect();
    if !known.iter().any(|k| *k) {
        return Err(wrong());
    }
    if known.first() == Some(&false) {
        if matches!(workspaces.home(), workspace::Home::Shared(_)) {
            return Err(OpenError::ObjectsKeyRotation);
        }
        tracing::info!("master key 1 is new: it encrypts from now on, the others still decrypt");
        seal_first()?;
    }
    Ok(())
}

/// The shortest admin secret accepted after its prefix: a guessable one
/// would open every account's administration.
pub const MIN_ADMIN_SECRET_CHARS: usize = 24;

/// Refuses an admin secret that could never authenticate (no `afs_admin_`
/// prefix: bearer secrets are told apart by it) or that is trivially short.
fn check_admin_secret(secret: &str) -> Result<(), OpenError> {
    let prefix = secrets::SecretKind::Admin.prefix();
    let Some(rest) = secret.strip_prefix(prefix) else {
        return Err(OpenError::AdminSecret(format!(
            "ANYFS_ADMIN_SECRET must start with `{prefix}` (a secret without it is never \
             recognised as the admin's); for example {prefix}$(openssl rand -hex 16)"
        )));
    };
    if rest.chars().count() < MIN_ADMIN_SECRET_CHARS {
        return Err(OpenError::AdminSecret(format!(
            "ANYFS_ADMIN_SECRET is too short: at least {MIN_ADMIN_SECRET_CHARS} characters after \
             `{prefix}`; for example {prefix}$(openssl rand -hex 16)"
        )));
    }
    Ok(())
}

/// The admin secret's digest: of the one given, or of one generated once
/// and kept as a digest (the new secret is returned to be shown once).
fn admin_digest(
    config: &Config,
) -> Result<([u8; 32], Option<zeroize::Zeroizing<String>>), OpenError> {
    if let Some(secret) = &config.admin_secret {
        return Ok((secrets::digest(secret), None));
    }
    let file = config.data_dir.join("admin.digest");
    if let Ok(bytes) = std::fs::read(&file)
        && let Ok(digest) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok((digest, None));
    }
    let secret = secrets::generate(secrets::SecretKind::Admin)?;
    let digest = secrets::digest(&secret);
    write_private_file(&file, &digest)?;
    Ok((digest, Some(secret)))
}

impl Service {
    /// Opens (or creates) the service's data directory, and its registry:
    /// `DATA_DIR/registry.db`, or the PostgreSQL database of
    /// [`Config::database`] (whose schema it brings up to date). Refuses a
    /// directory another service has open, master keys that do not open it,
    /// a shared database without master keys from the configuration, and an
    /// admin secret that could never authenticate or is too short.
    pub fn open(config: Config) -> Result<Opened, OpenError> {
        // Owner only: the registry, the workspaces and the key file.
        for dir in [config.data_dir.clone(), config.data_dir.join("workspaces")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(at(&dir))?;
        }
        if let Some(secret) = &config.admin_secret {
            check_admin_secret(secret)?;
        }
        if config.objects.is_some() && config.database.is_none() {
            return Err(OpenError::ObjectsNeedDatabase);
        }
        if config.database.is_some() && config.master_keys.is_empty() {
            return Err(OpenError::MasterKeyRequired);
        }
        let lock = lock_data_dir(&config.data_dir)?;
        let keys = if config.master_keys.is_empty() {
            vec![master_key_file(&config.data_dir)?]
        } else {
            config.master_keys.clone()
        };
        let sealer = Arc::new(Sealer::new(&keys));
        let mut home = workspace::Home::Files {
            dir: config.data_dir.join("workspaces"),
            keys: keys
                .iter()
                .map(|k| k.derive("anyfs workspace v1"))
                .collect(),
        };
        let registry: Arc<dyn Registry> = match &config.database {
            Some(url) => {
                let options = anyfs_postgres::Options {
                    runtime: config.runtime.clone(),
                    ..anyfs_postgres::Options::default()
                };
                let db = anyfs_postgres::Database::connect_with(url, options)
                    .map_err(|e| OpenError::Registry(e.to_string()))?;
                let mut registry = PostgresRegistry::open(db.clone(), sealer.clone())?;
                if let (Some(objects), Some(first)) = (&config.objects, keys.first()) {
                    home = workspace::Home::Shared(
                        SharedWorkspaces::connect(db, objects, first, config.default_quota)
                            .map_err(|e| OpenError::ObjectStore(e.to_string()))?,
                    );
                    registry = registry.reading_workspace_versions(shared::WORKSPACE);
                }
                Arc::new(registry)
            }
            None => {
                owner_only_files(&config.data_dir)?;
                Arc::new(SqliteRegistry::open(
                    &config.data_dir.join("registry.db"),
                    sealer.clone(),
                )?)
            }
        };
        if config.exec.is_some() {
            // Run by root, every command runs as a fresh user of its own;
            // run by an ordinary user, every tenant's commands would be
            // that one user, sharing its process count.
            if rustix::process::geteuid().as_raw() != 0 {
                return Err(OpenError::Exec(
                    "the service runs commands only when started as root (each command then \
                     runs as a fresh unprivileged user of its own)"
                        .into(),
                ));
            }
            anyfs_sandbox::check().map_err(|e| OpenError::Exec(e.to_string()))?;
        }
        let workspaces =
            workspace::Workspaces::new(home, config.default_quota, config.max_open_workspaces);
        check_master_keys(&config.data_dir, &keys, registry.as_ref(), &workspaces)?;
        let (admin_digest, new_admin_secret) = admin_digest(&config)?;
        lock_in_memory("the master keys", &keys);
        lock_in_memory("the workspace keys", workspaces.keys());
        lock_in_memory("the configured keys", &config.master_keys);
        // Every node collects garbage; an advisory lock lets one at a time.
        if let workspace::Home::Shared(shared) = workspaces.home() {
            shared.spawn_collector();
        }
        Ok(Opened {
            service: Arc::new(Service {
                registry,
                keys,
                sealer,
                admin_digest,
                workspaces,
                executor: crate::exec::Executor::default(),
                config,
                _lock: lock,
            }),
            new_admin_secret,
        })
    }
}
