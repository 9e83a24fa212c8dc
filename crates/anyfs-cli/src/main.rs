//! `anyfs`: mount AnyFS workspaces and run programs inside them.

#![forbid(unsafe_code)]

mod hardening;
mod migrate;
mod serve;
mod trees;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use workspace::Workspace;

/// AnyFS: secure workspaces for AI agents. `anyfs serve` runs the
/// multi-tenant workspace service; `mount` and `run` open one workspace
/// file as a real filesystem.
#[derive(Debug, Parser)]
#[command(name = "anyfs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the multi-tenant workspace service (HTTP API and MCP) until
    /// Ctrl-C or SIGTERM. With no flags: SQLite files in ./anyfs-data, on
    /// 127.0.0.1:8700.
    #[command(after_long_help = SERVE_ENVIRONMENT, after_help = SERVE_ENVIRONMENT)]
    Serve {
        /// Where the registry, workspaces and master key live.
        #[arg(long, default_value = "anyfs-data", value_name = "DIR")]
        data_dir: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8700", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Sign-ups allowed per client address per hour.
        #[arg(long, default_value_t = 5)]
        signups_per_hour: u32,
        /// Default workspace quota in bytes.
        #[arg(long, default_value_t = 1 << 30)]
        quota: u64,
        /// Operations per second for agents whose policy sets none
        /// (default: unlimited).
        #[arg(long, value_name = "OPS")]
        agent_rate: Option<u32>,
        /// Workspaces kept open at once; idle ones beyond this are closed,
        /// least recently used first (each open one holds about seven file
        /// descriptors and a thread).
        #[arg(long, default_value_t = 256, value_name = "N")]
        max_open_workspaces: usize,
        /// Keep the registry (accounts, agents, executions, audit log) in
        /// this PostgreSQL database, shared by every node started with it:
        /// postgres://USER:PASSWORD@HOST:PORT/DATABASE. Prefer the
        /// environment variable: a command line is visible to every user.
        /// Needs ANYFS_MASTER_KEY. Not encrypted (no TLS yet).
        #[arg(
            long,
            env = "ANYFS_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: Option<String>,
        /// Keep every account's workspace in this object store (content,
        /// encrypted) and the --database (files and folders), shared by
        /// every node started with both: s3://BUCKET/PREFIX. The endpoint,
        /// region and credentials come from AWS_ENDPOINT_URL, AWS_REGION,
        /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Needs --database.
        #[arg(long, env = "ANYFS_OBJECTS_URL", value_name = "s3://BUCKET/PREFIX")]
        objects: Option<String>,
        /// The object store's endpoint (http://HOST:PORT), instead of
        /// AWS_ENDPOINT_URL.
        #[arg(long, value_name = "URL", requires = "objects")]
        objects_endpoint: Option<String>,
        /// Let callers run commands in their own workspaces (POST /v1/exec,
        /// the MCP tool run_command), each in a sandbox that sees the
        /// caller's workspace (as its policy shows it) and the system's
        /// programs, and nothing else. Needs bubblewrap and FUSE.
        #[arg(long)]
        allow_exec: bool,
        /// Commands an account (with its agents) runs at once.
        #[arg(long, default_value_t = 2, value_name = "N", requires = "allow_exec")]
        exec_concurrency: usize,
        /// Data memory per process of a command (e.g. 512M, 2G).
        #[arg(long, default_value = "1G", value_name = "BYTES", value_parser = parse_bytes, requires = "allow_exec")]
        exec_memory: u64,
        /// Processes and threads of a command at once.
        #[arg(long, default_value_t = 256, value_name = "N", requires = "allow_exec")]
        exec_processes: u64,
        /// The longest a command may run (callers may ask for less; 60 s
        /// when they do not say).
        #[arg(
            long,
            default_value_t = 300,
            value_name = "SECS",
            requires = "allow_exec"
        )]
        exec_max_timeout: u64,
        /// Bytes kept of a command's standard output, and of its standard
        /// error.
        #[arg(long, default_value = "1M", value_name = "BYTES", value_parser = parse_bytes, requires = "allow_exec")]
        exec_output: u64,
        /// Give commands the host's network (default: none at all). All of
        /// it: the host's own 127.0.0.1 services and any cloud metadata
        /// address included; for trusted tenants only.
        #[arg(long, requires = "allow_exec")]
        exec_network: bool,
        /// Commands the whole service runs at once.
        #[arg(long, default_value_t = 16, value_name = "N", requires = "allow_exec")]
        exec_total: usize,
    },
    /// Move an embedded deployment (its data directory: accounts, agents,
    /// executions, the audit log, every workspace) into PostgreSQL and an
    /// object store, as `anyfs serve --database --objects` uses them, and
    /// check everything moved. Safe to run again after an interruption:
    /// it finishes what is left, and after success it only checks again.
    /// The data directory is only read; no service may be running on it.
    #[command(after_long_help = MIGRATE_ENVIRONMENT, after_help = MIGRATE_ENVIRONMENT)]
    Migrate {
        /// The embedded service's data directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database of the distributed service:
        /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (prefer the
        /// environment variable).
        #[arg(
            long,
            env = "ANYFS_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: String,
        /// Its object store: s3://BUCKET/PREFIX (endpoint, region and
        /// credentials from the AWS_* variables).
        #[arg(long, env = "ANYFS_OBJECTS_URL", value_name = "s3://BUCKET/PREFIX")]
        objects: String,
        /// The object store's endpoint (http://HOST:PORT), instead of
        /// AWS_ENDPOINT_URL.
        #[arg(long, value_name = "URL")]
        objects_endpoint: Option<String>,
        /// Each workspace's quota in bytes: the --quota the service runs
        /// with.
        #[arg(long, default_value_t = 1 << 30)]
        quota: u64,
        /// Where copies of the SQLite files are read from (default: the
        /// system's temporary directory); needs room for the largest
        /// workspace.
        #[arg(long, value_name = "DIR")]
        scratch_dir: Option<PathBuf>,
    },
    /// Audit-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Snapshots of a workspace file: one moment of it, read-only, sharing
    /// its content (`anyfs snapshot create work.db "before the agent"`).
    Snapshot {
        #[command(subcommand)]
        command: trees::SnapshotCommand,
    },
    /// Branches of a workspace file: writable copies of a snapshot, sharing
    /// its content (`anyfs branch create work.db 1 experiment`). Mount or
    /// run one with `--branch ID`.
    Branch {
        #[command(subcommand)]
        command: trees::BranchCommand,
    },
    /// What changed from one tree of a workspace file to another: `live`
    /// (the workspace now), `snapshot:ID` or `branch:ID`
    /// (`anyfs diff work.db snapshot:1`); with no tree, for an overlay
    /// workspace, what it changed in the directory it overlays.
    Diff(trees::DiffArgs),
    /// Write what an overlay workspace (`anyfs run --over DIR WORKSPACE`)
    /// changed into DIR: files, directories, links and deletions. A path
    /// that changed in DIR since the overlay first changed it is a
    /// conflict: nothing is written for it, it is listed, and the exit
    /// status is 1.
    Apply(trees::ApplyArgs),
    /// Apply what a branch changed since its base to the workspace (or
    /// another branch). Paths changed on both sides are conflicts: they
    /// are listed, nothing is applied, and the exit status is 1, unless
    /// `--take` says which side they take.
    Merge(trees::MergeArgs),
    /// Mount a workspace as a real filesystem, in the foreground, until
    /// Ctrl-C or SIGTERM (then everything is flushed and unmounted) or until
    /// it is unmounted from outside (`umount`, `fusermount3 -u`).
    ///
    /// `anyfs mount work.db /mnt/work` or `anyfs mount --memory /mnt/work`.
    Mount {
        #[command(flatten)]
        workspace: WorkspaceArgs,
        /// The workspace file (omit with --memory), then the mount point.
        #[arg(required = true, num_args = 1..=2, value_name = "[WORKSPACE] MOUNTPOINT")]
        paths: Vec<PathBuf>,
    },
    /// Serve a workspace to an MCP client over standard input and output:
    /// one line in a client's configuration gives it a workspace.
    ///
    /// `anyfs mcp work.db` (created if missing), `anyfs mcp --memory`, or
    /// `anyfs mcp --over ~/project work.db` (the project read-only, with
    /// every change kept in work.db). Standard output carries only protocol
    /// messages; logs go to standard error. Every change is committed
    /// before its tool call is answered.
    Mcp {
        #[command(flatten)]
        workspace: WorkspaceArgs,
        /// Take no notice of the roots the client declares (by default
        /// they narrow what the tools reach: a root `file:///a/b` is the
        /// workspace's `/a/b`, or with --over, the same place below DIR).
        #[arg(long)]
        ignore_roots: bool,
        /// The workspace file (omit with --memory).
        #[arg(value_name = "WORKSPACE")]
        path: Option<PathBuf>,
    },
    /// Mount a workspace, run a command with its working directory at the
    /// mount's root, unmount, and exit with the command's status.
    ///
    /// `anyfs run work.db -- make test` or `anyfs run --memory -- sh`.
    /// With `--sandbox` the command sees the workspace and nothing else of
    /// the host: `anyfs run --sandbox work.db -- python3 agent.py`.
    Run {
        #[command(flatten)]
        workspace: WorkspaceArgs,
        #[command(flatten)]
        sandbox: SandboxArgs,
        /// The workspace file (omit with --memory).
        #[arg(value_name = "WORKSPACE")]
        path: Option<PathBuf>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// What `anyfs serve --help` says about the environment.
const SERVE_ENVIRONMENT: &str = "\
Environment:
  ANYFS_MASTER_KEY    The master key(s): 32 bytes in hex or base64; several, comma-separated,
                      to rotate (the first encrypts, all decrypt). Without it the key is
                      DATA_DIR/master.key, made at the first start. A key that does not open
                      the data directory stops the start, naming its position.
  ANYFS_DATABASE_URL  As --database: the registry in PostgreSQL, shared by several nodes. A
                      service started with it refuses to start without ANYFS_MASTER_KEY.
  ANYFS_OBJECTS_URL   As --objects: the workspaces in an S3 bucket and the database, shared by
                      several nodes. Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY;
                      AWS_ENDPOINT_URL and AWS_REGION for a server other than AWS's. The store
                      must honour If-None-Match and If-Match: checked at start.
  ANYFS_ADMIN_SECRET  The admin secret: `afs_admin_` and at least 24 more characters. Without
                      it one is made at the first start: shown on a terminal, otherwise written
                      to DATA_DIR/admin-secret.txt (owner-only).
  RUST_LOG            Log filter (default `info`: one line per request with its route, status
                      and time; never a secret, a query string or a file path).";

/// What `anyfs migrate --help` says about the environment.
const MIGRATE_ENVIRONMENT: &str = "\
Environment:
  ANYFS_MASTER_KEY    Required: the master key(s) the distributed service will run with. The
                      first must be the embedded service's (DATA_DIR/master.key, or its first
                      ANYFS_MASTER_KEY): sealed values are copied as they are, not re-sealed.
  ANYFS_DATABASE_URL  As --database.
  ANYFS_OBJECTS_URL   As --objects; AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
                      AWS_SECRET_ACCESS_KEY as for `anyfs serve`.";

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of a service's audit log: every record intact,
    /// in order, none missing in between.
    Verify {
        /// The service's data directory.
        #[arg(long, default_value = "anyfs-data", value_name = "DIR")]
        data_dir: PathBuf,
        /// Check the registry in this PostgreSQL database instead (one
        /// chain per account), as `anyfs serve --database` keeps it.
        #[arg(
            long,
            env = "ANYFS_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: Option<String>,
    },
}

/// `anyfs run --sandbox` and what the sandboxed command may use.
#[derive(Debug, Clone, Args)]
struct SandboxArgs {
    /// Run the command in a sandbox: new user, mount, PID, IPC, UTS and
    /// network namespaces; the workspace at /workspace (its working
    /// directory and home), the host's /usr, /bin and /lib read-only, a
    /// minimal /etc, a private /tmp, and nothing else of the host; an
    /// unprivileged user with no capabilities and a system call filter; an
    /// environment of PATH, HOME, LANG, TERM and each --env only. Needs
    /// bubblewrap (`apt-get install bubblewrap`).
    #[arg(long)]
    sandbox: bool,
    /// Give the command the host's network (all of it: the host's own
    /// 127.0.0.1 services included). Default: no network at all.
    #[arg(long, requires = "sandbox")]
    net: bool,
    /// Set NAME to VALUE in the command's environment, or pass on this
    /// process's NAME (repeatable). Nothing else of the environment passes.
    #[arg(long = "env", value_name = "NAME[=VALUE]", requires = "sandbox")]
    env: Vec<String>,
    /// End the command, and everything it started, after this many seconds
    /// (exit status 124).
    #[arg(long, value_name = "SECS", requires = "sandbox")]
    timeout: Option<f64>,
    /// Data memory per process (e.g. 512M, 2G); an allocation past it fails.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "sandbox")]
    limit_memory: Option<u64>,
    /// Processes and threads at once; a fork past it fails.
    #[arg(long, value_name = "N", default_value_t = 1024, requires = "sandbox")]
    limit_processes: u64,
    /// CPU seconds per process; past it the process ends (SIGXCPU).
    #[arg(long, value_name = "SECS", requires = "sandbox")]
    limit_cpu: Option<u64>,
    /// Pass on at most this much of standard output, and of standard error
    /// (e.g. 10M); the rest is dropped, with a note.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "sandbox")]
    limit_output: Option<u64>,
    /// Size of the private /tmp, which lives in memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "512M", requires = "sandbox")]
    limit_tmp: u64,
}

/// A size: bytes, or with K, M, G or T (powers of 1,024).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "{text}: not a size (bytes, or a number with K, M, G or T)"
                    ));
                }
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text}: not a size (bytes, or a number with K, M, G or T)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text}: too large"))
}

/// How a workspace is opened and what the mount allows.
#[derive(Debug, Clone, Args)]
struct WorkspaceArgs {
    /// An empty workspace in memory, gone at unmount, instead of a file.
    #[arg(long)]
    memory: bool,
    /// The environment variable holding the workspace's password (the
    /// workspace is encrypted with SQLCipher; created encrypted if missing).
    /// Without it an encrypted workspace asks for its password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Refuse every change.
    #[arg(long)]
    read_only: bool,
    /// The most bytes the workspace may hold.
    #[arg(long, value_name = "BYTES")]
    quota: Option<u64>,
    /// Hide and refuse paths matching this glob (repeatable); deny wins.
    #[arg(long, value_name = "GLOB")]
    deny: Vec<String>,
    /// Allow only paths matching these globs (repeatable; default: all).
    #[arg(long, value_name = "GLOB")]
    allow: Vec<String>,
    /// Let other users use the mount (root, or `user_allow_other` in
    /// /etc/fuse.conf); permission bits still apply.
    #[arg(long)]
    allow_other: bool,
    /// Commit changes to a workspace file together, at most this many
    /// milliseconds after the first (0: every change is its own commit).
    /// Much faster for many small changes; if `anyfs` itself is killed, the
    /// changes of the last interval are lost (never a part of one). `fsync`
    /// and unmounting commit at once.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    commit_interval: u64,
    /// Open this snapshot of the workspace file instead (read-only).
    #[arg(long, value_name = "ID", conflicts_with_all = ["branch", "memory"])]
    snapshot: Option<u64>,
    /// Show this host directory, read-only, with the workspace as a
    /// copy-on-write layer on top: everything written goes to the
    /// workspace, nothing to DIR (`anyfs diff WORKSPACE` lists it,
    /// `anyfs apply WORKSPACE DIR` writes it back).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["snapshot", "branch"])]
    over: Option<PathBuf>,
    /// Open this branch of the workspace file instead.
    #[arg(long, value_name = "ID", conflicts_with = "memory")]
    branch: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Serve { .. }
            | Command::Migrate { .. }
            | Command::Mount { .. }
            | Command::Run { .. }
            | Command::Mcp { .. }
    ) {
        hardening::no_core_dumps();
    }
    let result = match cli.command {
        Command::Serve {
            data_dir,
            listen,
            signups_per_hour,
            quota,
            agent_rate,
            max_open_workspaces,
            database,
            objects,
            objects_endpoint,
            allow_exec,
            exec_concurrency,
            exec_memory,
            exec_processes,
            exec_max_timeout,
            exec_output,
            exec_network,
            exec_total,
        } => serve::run(
            data_dir,
            listen,
            serve::Allowances {
                signups_per_hour,
                quota,
                agent_rate,
                max_open_workspaces,
                exec: allow_exec.then(|| anyfs_server::ExecConfig {
                    max_concurrent: exec_concurrency.max(1),
                    max_total: exec_total.max(1),
                    memory: exec_memory,
                    processes: exec_processes,
                    max_timeout: std::time::Duration::from_secs(exec_max_timeout.max(1)),
                    default_timeout: std::time::Duration::from_secs(exec_max_timeout.clamp(1, 60)),
                    output: exec_output,
                    network: exec_network,
                    ..anyfs_server::ExecConfig::default()
                }),
            },
            serve::Stores {
                database,
                objects,
                objects_endpoint,
            },
        ),
        Command::Migrate {
            from,
            database,
            objects,
            objects_endpoint,
            quota,
            scratch_dir,
        } => migrate::run(migrate::Args {
            from,
            database,
            stores: serve::Stores {
                database: None,
                objects: Some(objects),
                objects_endpoint,
            },
            quota,
            scratch_dir,
        }),
        Command::Audit {
            command: AuditCommand::Verify { data_dir, database },
        } => match database.map_or_else(
            || anyfs_server::verify_chain(&data_dir.join("registry.db")),
            |url| anyfs_server::verify_postgres_chain(&url),
        ) {
            Ok(n) => {
                println!("audit chain intact: {n} records");
                Ok(())
            }
            Err(e) => Err(format!("audit chain broken: {e}")),
        },
        Command::Snapshot { command } => trees::snapshot(command),
        Command::Branch { command } => trees::branch(command),
        Command::Diff(args) => trees::diff(args),
        Command::Apply(args) => match trees::apply(args) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Merge(args) => match trees::merge(args) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Mount { workspace, paths } => {
            let (file, mountpoint) = match (workspace.memory, paths.as_slice()) {
                (true, [mountpoint]) => (None, mountpoint.clone()),
                (false, [file, mountpoint]) => (Some(file.clone()), mountpoint.clone()),
                (true, _) => return usage("with --memory, give only the mount point"),
                (false, _) => return usage("give the workspace file and the mount point"),
            };
            Workspace::open(file.as_deref(), &workspace)
                .and_then(|ws| ws.mount_foreground(&mountpoint))
        }
        Command::Mcp {
            mut workspace,
            ignore_roots,
            path,
        } => {
            if workspace.memory == path.is_some() {
                return usage("give a workspace file or --memory (not both)");
            }
            // A tool's answer says the change is made: it is committed.
            workspace.commit_interval = 0;
            Workspace::open(path.as_deref(), &workspace)
                .and_then(|ws| ws.serve_mcp(workspace.over.clone(), ignore_roots))
        }
        Command::Run {
            workspace,
            sandbox,
            path,
            command,
        } => {
            if workspace.memory == path.is_some() {
                return usage("give a workspace file or --memory (not both)");
            }
            let ran = Workspace::open(path.as_deref(), &workspace).and_then(|ws| {
                if sandbox.sandbox {
                    ws.run_sandboxed(&command, &sandbox)
                } else {
                    ws.run(&command)
                }
            });
            match ran {
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("anyfs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("anyfs: {message} (see `anyfs --help`)");
    ExitCode::from(2)
}
