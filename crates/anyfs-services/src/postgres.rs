//! A throw-away PostgreSQL cluster, one per test binary.
//!
//! [`postgres`] runs `initdb` into a fresh temporary directory and starts
//! the server with `pg_ctl` on 127.0.0.1 and a free port; every caller in
//! the process shares that cluster and isolates itself with
//! [`Postgres::fresh_database`]. The binaries come from `$ANYFS_PG_BIN`, or
//! from the highest `/usr/lib/postgresql/*/bin` (Debian's package). The
//! server refuses to run as root, so when the tests run as root every
//! server command runs as the `postgres` OS user (through `runuser`), and
//! the temporary directory belongs to that user.
//!
//! Clients log in over TCP as a role with a random password checked by
//! SCRAM (`scram-sha-256` in `pg_hba.conf`), so tests can assert that a
//! password never shows in an error or a log. Administration (creating
//! the role and the databases) goes through the Unix socket, which lives in
//! the temporary directory, readable by its owner only.
//!
//! # Stopping
//!
//! A static is never dropped, so the cluster cannot be stopped by a
//! destructor. Instead, next to the server runs a watchdog: a shell in its
//! own process group, blocked reading a pipe whose only writer is the test
//! process. When the test process ends, however it ends (tests passed, a
//! test panicked, `SIGKILL`, Ctrl-C), the kernel closes the pipe, the read
//! returns, and the watchdog stops the server (`pg_ctl stop -m immediate`)
//! and removes the directory. Polling the parent's process id was
//! rejected (ids are reused, and it wakes up for nothing); a parent-death
//! signal was rejected (Linux sends it when the spawning *thread* exits,
//! which in a test harness is the test, not the process).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::Unavailable;

const SERVICE: &str = "PostgreSQL";
/// The OS user the server runs as when the tests run as root.
const SERVER_OS_USER: &str = "postgres";
/// The role the tests log in as (over TCP, with a password).
const ROLE: &str = "anyfs_test";
/// Attempts at finding a free port the server can bind.
const PORT_ATTEMPTS: usize = 5;

static CLUSTER: OnceLock<Result<Postgres, Unavailable>> = OnceLock::new();

/// The PostgreSQL cluster of this test binary, started on first use.
///
/// # Errors
///
/// [`Unavailable`] when the server binaries are missing or the cluster
/// could not be initialised or started (the reason says which); every
/// later call returns the same answer.
pub fn postgres() -> Result<&'static Postgres, Unavailable> {
    CLUSTER
        .get_or_init(Postgres::launch)
        .as_ref()
        .map_err(Clone::clone)
}

/// A running throw-away PostgreSQL cluster on 127.0.0.1 (see the module
/// docs). Its `Debug` output leaves out the password.
pub struct Postgres {
    bin: PathBuf,
    root: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
    password: String,
    databases: AtomicU64,
    /// Serialises [`Postgres::start`] and [`Postgres::stop`].
    control: Mutex<()>,
    /// Closing this pipe (at process exit) tells the watchdog to stop the
    /// server.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("role", &ROLE)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    fn launch() -> Result<Self, Unavailable> {
        let bin = server_binaries()?;
        let run_as = server_os_user()?;
        let root = tempfile::Builder::new()
            .prefix("anyfs-postgres-")
            .tempdir()
            .map_err(|e| unavailable(format!("cannot create a temporary directory: {e}")))?
            .keep();
        let watchdog = start_watchdog(&bin, &root, run_as);
        if let Some(user) = run_as {
            let chown = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&root)
                .output();
            check("chown", chown)?;
        }
        let mut cluster = Self {
            bin,
            root,
            run_as,
            port: 0,
            password: random_hex(16)?,
            databases: AtomicU64::new(0),
            control: Mutex::new(()),
            _watchdog: Mutex::new(watchdog?),
        };
        cluster.init()?;
        cluster.start_on_free_port()?;
        cluster.psql(&format!(
            "CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{}';",
            cluster.password
        ))?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server's log (for tests that check what it logged).
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The directory of the server's programs (`psql`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name of the role the URLs log in as.
    pub fn user(&self) -> &str {
        ROLE
    }

    /// The role's password (random per test binary), for tests that check
    /// it never shows in an error or a log.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates a new empty database with a unique name, owned by the test
    /// role, and returns its URL: `postgres://user:password@127.0.0.1:PORT/name`.
    ///
    /// # Panics
    ///
    /// When the server refuses to create it (it is stopped, say).
    pub fn fresh_database(&self) -> String {
        let number = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("anyfs_{}_{number}", std::process::id());
        if let Err(why) = self.psql(&format!("CREATE DATABASE {name} OWNER {ROLE};")) {
            panic!("cannot create the test database {name}: {why}");
        }
        self.url(&name)
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        )
    }

    /// Stops the server (`pg_ctl stop -m fast`), for fault tests. Every
    /// test of the binary shares the cluster: only tests that own their
    /// binary should stop it.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (the reason has its output).
    pub fn stop(&self) -> Result<(), Unavailable> {
        let _serial = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let stop = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(self.data_dir())
            .output();
        check("pg_ctl stop", stop).map(drop)
    }

    /// Starts the stopped server again, on the same port.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (the reason has its output and the log's tail).
    pub fn start(&self) -> Result<(), Unavailable> {
        let _serial = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.pg_ctl_start()
    }

    /// [`Postgres::stop`], then [`Postgres::start`].
    ///
    /// # Errors
    ///
    /// As theirs.
    pub fn restart(&self) -> Result<(), Unavailable> {
        self.stop()?;
        self.start()
    }

    fn init(&self) -> Result<(), Unavailable> {
        let init = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output();
        check("initdb", init)?;
        let settings = format!(
            "\n# anyfs-services: a throw-away cluster for tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\n\
             max_connections = 300\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.root.display()
        );
        append(&self.data_dir().join("postgresql.conf"), &settings)
    }

    fn start_on_free_port(&mut self) -> Result<(), Unavailable> {
        let mut last = unavailable("no port tried");
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            append(
                &self.data_dir().join("postgresql.conf"),
                &format!("port = {}\n", self.port),
            )?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                // Another process may have taken the port in between.
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    fn pg_ctl_start(&self) -> Result<(), Unavailable> {
        let start = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .output();
        check("pg_ctl start", start).map(drop).map_err(|why| {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            unavailable(format!("{}; server log: {}", why.reason, tail.join(" | ")))
        })
    }

    /// Runs `sql` as the superuser over the Unix socket; the SQL goes
    /// through stdin, so no process listing shows it.
    fn psql(&self, sql: &str) -> Result<(), Unavailable> {
        let mut child = self
            .command("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(&self.root)
            .args(["-p", &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| unavailable(format!("cannot run psql: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| unavailable(format!("cannot write to psql: {e}")))?;
        }
        check("psql", child.wait_with_output()).map(drop)
    }

    fn command(&self, program: &str) -> Command {
        server_command(&self.bin.join(program), &self.root, self.run_as)
    }
}

/// `program` run as `run_as` (when the tests run as root), from `dir`.
fn server_command(program: &Path, dir: &Path, run_as: Option<&str>) -> Command {
    let mut command = match run_as {
        Some(user) => {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", user, "--"]).arg(program);
            runuser
        }
        None => Command::new(program),
    };
    command.current_dir(dir).stdin(Stdio::null());
    command
}

/// Starts the shell that stops the server and removes `root` once the test
/// process is gone (see the module docs).
fn start_watchdog(
    bin: &Path,
    root: &Path,
    run_as: Option<&str>,
) -> Result<(Child, ChildStdin), Unavailable> {
    use std::os::unix::process::CommandExt;
    let script =
        r#"read _ignored; "$1" stop -D "$2/data" -m immediate >/dev/null 2>&1; rm -rf "$2""#;
    let mut child = server_command(Path::new("sh"), Path::new("/"), run_as)
        .args(["-c", script, "anyfs-postgres-watchdog"])
        .arg(bin.join("pg_ctl"))
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C on the terminal must not kill it
        // before it has stopped the server (which pg_ctl puts in a session
        // of its own).
        .process_group(0)
        .spawn()
        .map_err(|e| unavailable(format!("cannot start the watchdog shell: {e}")))?;
    match child.stdin.take() {
        Some(pipe) => Ok((child, pipe)),
        None => Err(unavailable("the watchdog shell has no stdin pipe")),
    }
}

fn server_binaries() -> Result<PathBuf, Unavailable> {
    if let Some(bin) = std::env::var_os("ANYFS_PG_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.join("initdb").is_file() {
            Ok(bin)
        } else {
            Err(unavailable(format!(
                "ANYFS_PG_BIN={} has no initdb",
                bin.display()
            )))
        };
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|e| {
        unavailable(format!(
            "no server binaries (/usr/lib/postgresql: {e}; or set ANYFS_PG_BIN)"
        ))
    })?;
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| unavailable("no /usr/lib/postgresql/*/bin/initdb (or set ANYFS_PG_BIN)"))
}

/// The OS user to run the server as: `postgres` when we are root (the
/// server refuses to run as root), nobody else otherwise.
fn server_os_user() -> Result<Option<&'static str>, Unavailable> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let known = Command::new("id")
        .arg("-u")
        .arg(SERVER_OS_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if known {
        Ok(Some(SERVER_OS_USER))
    } else {
        Err(unavailable(format!(
            "running as root, and there is no `{SERVER_OS_USER}` OS user to run the server as"
        )))
    }
}

fn free_port() -> Result<u16, Unavailable> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| unavailable(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn random_hex(bytes: usize) -> Result<String, Unavailable> {
    let mut buffer = vec![0_u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .map_err(|e| unavailable(format!("cannot read /dev/urandom: {e}")))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn append(path: &Path, text: &str) -> Result<(), Unavailable> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| unavailable(format!("cannot write {}: {e}", path.display())))
}

/// The output of a finished command, or why it failed (with its stderr).
fn check(what: &str, output: std::io::Result<Output>) -> Result<Output, Unavailable> {
    let output = output.map_err(|e| unavailable(format!("cannot run {what}: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        Err(unavailable(format!(
            "{what} failed ({}): {} {}",
            output.status,
            stderr.trim(),
            stdout.trim()
        )))
    }
}

fn unavailable(reason: impl Into<String>) -> Unavailable {
    Unavailable::new(SERVICE, reason)
}
