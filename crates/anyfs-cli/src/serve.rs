//! `anyfs serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyfs::crypto::Key;
use base64::Engine;
use zeroize::Zeroizing;

/// Master keys from `ANYFS_MASTER_KEY`: comma-separated, each 32 bytes in
/// hex or base64; the first encrypts, all decrypt. Every copy made on the
/// way is wiped.
pub(crate) fn master_keys() -> Result<Vec<Key>, String> {
    let Ok(value) = std::env::var("ANYFS_MASTER_KEY").map(Zeroizing::new) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bytes = Zeroizing::new(
                if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    (0..32)
                        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| "ANYFS_MASTER_KEY: bad hex".to_string())?
                } else {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|_| {
                            "ANYFS_MASTER_KEY: each key is 32 bytes in hex or base64".to_string()
                        })?
                },
            );
            let mut key = Zeroizing::new([0u8; 32]);
            if bytes.len() != key.len() {
                return Err("ANYFS_MASTER_KEY: each key is 32 bytes".to_string());
            }
            key.copy_from_slice(&bytes);
            Ok(Key::from_bytes(*key))
        })
        .collect()
}

/// Shows a newly made admin secret once: on the terminal when stderr is
/// one; otherwise (stderr goes to a log file or a journal, which keep it)
/// written to an owner-only file in the data directory, and only its place
/// is printed.
fn show_admin_secret(data_dir: &std::path::Path, secret: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("anyfs: the admin secret (shown once, keep it): {secret}");
        return Ok(());
    }
    let file = data_dir.join("admin-secret.txt");
    anyfs_server::write_private_file(&file, format!("{secret}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "anyfs: a new admin secret was written to {} (owner-only): keep it somewhere safe, then delete the file",
        file.display()
    );
    Ok(())
}

/// File descriptors an open workspace holds (its database, log and shared
/// memory, through the writer and reader connections), with room to spare.
const FILES_PER_WORKSPACE: u64 = 8;
/// File descriptors kept for everything else: the registry, connections.
const FILES_FOR_THE_REST: u64 = 256;

/// Raises the process's open-file limit to what the system allows, and
/// keeps the open-workspace cap within it, saying so if it must lower it.
fn fit_open_files(max_open: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let Some(files) = getrlimit(Resource::Nofile).current else {
        return max_open;
    };
    let fits = files.saturating_sub(FILES_FOR_THE_REST) / FILES_PER_WORKSPACE;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX).max(1);
    if fits < max_open {
        tracing::warn!(
            open_file_limit = files,
            max_open_workspaces = fits,
            "the open-file limit leaves room for fewer workspaces than asked: raise `ulimit -n` for more"
        );
        return fits;
    }
    max_open
}

/// Where a service shared by several nodes keeps its state.
pub(crate) struct Stores {
    /// `--database`: the registry (and, with `objects`, the workspaces'
    /// trees) in PostgreSQL.
    pub(crate) database: Option<String>,
    /// `--objects`: the workspaces' content in this bucket and prefix.
    pub(crate) objects: Option<String>,
    /// `--objects-endpoint`, over `AWS_ENDPOINT_URL`.
    pub(crate) objects_endpoint: Option<String>,
}

impl Stores {
    /// The object store, with what the environment says of it.
    pub(crate) fn objects(&self) -> Result<Option<anyfs_server::ObjectStoreConfig>, String> {
        let Some(url) = &self.objects else {
            return Ok(None);
        };
        let config = anyfs_server::ObjectStoreConfig::from_env(url).map_err(|e| e.to_string())?;
        Ok(Some(match &self.objects_endpoint {
            Some(endpoint) => config.with_endpoint(endpoint),
            None => config,
        }))
    }
}

/// What the service allows its callers.
pub(crate) struct Allowances {
    /// `--signups-per-hour`.
    pub(crate) signups_per_hour: u32,
    /// `--quota`.
    pub(crate) quota: u64,
    /// `--agent-rate`.
    pub(crate) agent_rate: Option<u32>,
    /// `--max-open-workspaces`.
    pub(crate) max_open_workspaces: usize,
    /// `--allow-exec` and its limits.
    pub(crate) exec: Option<anyfs_server::ExecConfig>,
}

pub(crate) fn run(
    data_dir: PathBuf,
    listen: SocketAddr,
    allowances: Allowances,
    stores: Stores,
) -> Result<(), String> {
    let Allowances {
        signups_per_hour,
        quota,
        agent_rate,
        max_open_workspaces,
        exec,
    } = allowances;
    crate::hardening::owner_only_files();
    // Logs: RUST_LOG (default `info`): one line per request, never a header.
    init_logging("info");
    let mut config = anyfs_server::Config::new(&data_dir);
    config.objects = stores.objects()?;
    // What the start line names: the workspaces' store.
    let serving = match &stores.objects {
        Some(objects) => format!("the workspaces in {objects}"),
        None => data_dir.display().to_string(),
    };
    config.database = stores.database;
    config.master_keys = master_keys()?;
    config.admin_secret = std::env::var("ANYFS_ADMIN_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    config.signups_per_hour = signups_per_hour;
    config.default_quota = quota;
    config.default_rate = agent_rate;
    config.max_open_workspaces = fit_open_files(max_open_workspaces);
    config.exec = exec;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    config.runtime = Some(runtime.handle().clone());
    let opened = anyfs_server::Service::open(config).map_err(|e| e.to_string())?;
    if let Some(secret) = &opened.new_admin_secret {
        show_admin_secret(&data_dir, secret)?;
    }
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        eprintln!("anyfs: serving {serving} on http://{listen} — Ctrl-C or SIGTERM to stop");
        anyfs_server::serve_on(opened.service, listener)
            .await
            .map_err(|e| format!("server: {e}"))
    })
}

/// Logs to standard error: `RUST_LOG`'s levels (`default` without it), but
/// never the MCP library below `info`, however `RUST_LOG` names it (its
/// `debug` logs whole messages: file contents, a command's environment and
/// input).
pub(crate) fn init_logging(default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, filter};
    let levels = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let no_payloads = filter::filter_fn(|meta| {
        !(meta.target().starts_with("rmcp") && *meta.level() > tracing::Level::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(levels)
                .with_filter(no_payloads),
        )
        .try_init();
}
