//! SeaweedFS, a real S3-compatible object store, started once per test
//! binary by [`seaweed()`].
//!
//! The server is `weed mini` (master, volume, filer and S3 gateway in one
//! process) on 127.0.0.1 with a port picked for everything it opens, data in
//! a temporary directory, one bucket, and credentials generated for this run
//! (given to the server as `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
//! Each test takes a prefix of its own with [`Seaweed::fresh_prefix`].
//!
//! Beside the server runs a small watchdog shell that the test process
//! holds by a pipe, and tells the process id of every server it starts:
//! when the test process exits, however it ends (even killed), the pipe
//! closes and the watchdog kills the server (`KILL`: its data is thrown
//! away, and `TERM` can take 20 s) and removes its directory. Tests of an
//! outage stop the server and start it again on the same ports and data
//! ([`Seaweed::stop`], [`Seaweed::start`]). `weed` is the binary named by `$ANYFS_WEED`, else the one
//! `scripts/install-test-services.sh` installs in
//! `.venv/test-services/bin/weed`, else `weed` on the `PATH`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Unavailable;

/// The bucket every test binary's server creates.
const BUCKET: &str = "anyfs-test";
/// How long the server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The ports `weed mini` opens, each given explicitly (its defaults are
/// fixed numbers, and its gRPC ports would otherwise be the HTTP port plus
/// 10000).
const PORT_FLAGS: [&str; 10] = [
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
    "-admin.port",
    "-admin.port.grpc",
];

/// Reads the process ids of the servers started, one a line, until its
/// standard input closes, that is until the test process ends; then kills
/// the last server and removes its directory and the sockets it made in
/// /tmp (named by port, so only this server's). It runs in a process group
/// of its own, which the servers join, so that a Ctrl-C meant for the tests
/// does not end it before it has cleaned up.
const WATCHDOG: &str = r#"
dir=$1; ports=$2; pid=
while read -r next; do pid=$next; done
if [ -n "$pid" ]; then
    kill -KILL "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
rm -rf "$dir"
for port in $ports; do rm -f /tmp/seaweedfs-*-"$port".sock; done
"#;

/// A running SeaweedFS with one bucket, for the life of the test process.
#[derive(Debug)]
pub struct Seaweed {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    prefixes: AtomicU64,
    /// How to start the server again after [`Seaweed::stop`].
    launch: Launch,
    processes: Mutex<Processes>,
}

/// What starting the server takes.
#[derive(Debug)]
struct Launch {
    weed: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    s3_port: u16,
    filer_port: u16,
    master_port: u16,
}

#[derive(Debug)]
struct Processes {
    /// The test process holds its standard input until it exits.
    watchdog: Child,
    /// The server, while it runs.
    server: Option<Child>,
}

/// The SeaweedFS server of this test binary, started on first use.
///
/// # Errors
///
/// [`Unavailable`] when `weed` is missing or the server did not start (the
/// reason says which, with the end of its log); every later call returns
/// the same answer.
///
/// ```no_run
/// fn stores_an_object() {
///     let s3 = anyfs_services::require!(anyfs_services::seaweed());
///     let url = s3.fresh_url(); // s3://BUCKET/PREFIX, for this test alone
/// }
/// ```
pub fn seaweed() -> Result<&'static Seaweed, Unavailable> {
    static SERVER: OnceLock<Result<Seaweed, Unavailable>> = OnceLock::new();
    SERVER
        .get_or_init(Seaweed::launch)
        .as_ref()
        .map_err(Clone::clone)
}

impl Seaweed {
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket the server was started with.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The region to sign requests for (the server accepts any).
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The access key id the server accepts, generated for this run.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret key that goes with [`access_key_id`](Self::access_key_id).
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// A prefix inside the bucket that no other test uses (the bucket
    /// lives as long as this process, so a counter is enough).
    pub fn fresh_prefix(&self) -> String {
        let n = self.prefixes.fetch_add(1, Ordering::Relaxed);
        format!("test-{n}")
    }

    /// `s3://BUCKET/PREFIX` for a [fresh prefix](Self::fresh_prefix).
    pub fn fresh_url(&self) -> String {
        format!("s3://{BUCKET}/{}", self.fresh_prefix())
    }

    fn launch() -> Result<Seaweed, Unavailable> {
        let weed = weed_binary();
        // Ports are picked free and handed over; another process can take
        // one in between, so a failed start is tried again with new ones.
        let mut last = unavailable(String::new());
        for _ in 0..3 {
            match Self::start_once(&weed) {
                Ok(server) => return Ok(server),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    fn start_once(weed: &Path) -> Result<Seaweed, Unavailable> {
        let dir = tempfile::Builder::new()
            .prefix("anyfs-seaweed-")
            .tempdir()
            .map_err(|e| unavailable(format!("cannot make a temporary directory: {e}")))?
            // The watchdog removes it, after the server is gone.
            .keep();
        let ports = free_ports(PORT_FLAGS.len()).map_err(unavailable)?;
        let port = |flag: &str| {
            PORT_FLAGS
                .iter()
                .position(|f| *f == flag)
                .map_or(0, |i| ports[i])
        };
        let (s3_port, filer_port, master_port) =
            (port("-s3.port"), port("-filer.port"), port("-master.port"));
        let access_key_id = format!("anyfs{}", random_hex(8).map_err(unavailable)?);
        let secret_access_key = random_hex(20).map_err(unavailable)?;

        let mut args: Vec<String> = vec![
            "mini".into(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-bucket={BUCKET}"),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-filer.localSocket={}", dir.join("filer.sock").display()),
            format!("-s3.localSocket={}", dir.join("s3.sock").display()),
        ];
        args.extend(
            PORT_FLAGS
                .iter()
                .zip(&ports)
                .map(|(flag, port)| format!("{flag}={port}")),
        );
        let port_list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| unavailable(format!("cannot make {}: {e}", data_dir.display())))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&dir)
            .arg(&port_list)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| unavailable(format!("cannot run sh for the watchdog: {e}")))?;
        let server = Seaweed {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            access_key_id,
            secret_access_key,
            prefixes: AtomicU64::new(0),
            launch: Launch {
                weed: weed.to_path_buf(),
                args,
                dir,
                s3_port,
                filer_port,
                master_port,
            },
            processes: Mutex::new(Processes {
                watchdog,
                server: None,
            }),
        };
        // A server that fails to start is dropped: its watchdog, told, kills
        // what was started and removes the directory.
        server.start()?;
        Ok(server)
    }

    /// Kills the server (as a crash would), keeping its data: requests fail
    /// until [`start`](Self::start). For tests of an object store outage.
    pub fn stop(&self) -> Result<(), Unavailable> {
        let mut processes = self.processes();
        if let Some(mut server) = processes.server.take() {
            server
                .kill()
                .and_then(|()| server.wait().map(drop))
                .map_err(|e| unavailable(format!("cannot stop it: {e}")))?;
        }
        Ok(())
    }

    /// Starts the server (again, after [`stop`](Self::stop)) on the same
    /// ports and data, and waits until it answers.
    pub fn start(&self) -> Result<(), Unavailable> {
        let mut processes = self.processes();
        if processes.server.is_some() {
            return Ok(());
        }
        let launch = &self.launch;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.dir.join("weed.log"))
            .map_err(|e| unavailable(format!("cannot open its log: {e}")))?;
        let err_log = log
            .try_clone()
            .map_err(|e| unavailable(format!("cannot open its log: {e}")))?;
        let watchdog_group = i32::try_from(processes.watchdog.id()).unwrap_or(0);
        let server = Command::new(&launch.weed)
            .args(&launch.args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(watchdog_group)
            .spawn()
            .map_err(|e| unavailable(format!("cannot run {}: {e}", launch.weed.display())))?;
        let told = processes
            .watchdog
            .stdin
            .as_mut()
            .map(|stdin| writeln!(stdin, "{}", server.id()));
        processes.server = Some(server);
        if !matches!(told, Some(Ok(()))) {
            return Err(unavailable("the watchdog is gone".to_owned()));
        }
        drop(processes);
        wait_until_ready(launch.s3_port, launch.filer_port, launch.master_port).map_err(|why| {
            let log = std::fs::read_to_string(launch.dir.join("weed.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            unavailable(format!(
                "{} did not start: {why}; its last lines:\n{}",
                launch.weed.display(),
                tail.join("\n")
            ))
        })
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, Processes> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // Only a server that failed to start is dropped (the one in the
        // static lives until the process exits): the watchdog ends it.
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(processes.watchdog.stdin.take());
        let _ = processes.watchdog.wait();
        if let Some(mut server) = processes.server.take() {
            let _ = server.wait();
        }
    }
}

/// `$ANYFS_WEED`, else the one the install script puts in the repository's
/// virtualenv (of the main checkout too, when this is a git worktree), else
/// `weed` from the `PATH`.
fn weed_binary() -> PathBuf {
    if let Some(weed) = std::env::var_os("ANYFS_WEED") {
        return PathBuf::from(weed);
    }
    crate::venv_program("weed").unwrap_or_else(|| PathBuf::from("weed"))
}

/// `n` distinct ports free on 127.0.0.1 right now.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    // All held at once, so that they differ.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// Waits until the S3 gateway answers its health check, the filer holds
/// the bucket (created by the server at start, a moment after S3 is up),
/// and the volume server has told the master of itself and its volumes
/// (after a restart, objects written before are readable only then).
fn wait_until_ready(s3_port: u16, filer_port: u16, master_port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let s3 = http_status(s3_port, "/healthz");
        let bucket = http_status(filer_port, &format!("/buckets/{BUCKET}/"));
        let volumes =
            http_body(master_port, "/dir/status").map(|body| body.contains("\"DataNodes\":[{"));
        match (s3, bucket, volumes) {
            (Ok(200), Ok(200), Ok(true)) => return Ok(()),
            (s3, bucket, volumes) => {
                last = format!(
                    "S3 health check: {s3:?}, bucket in the filer: {bucket:?}, a volume server \
                     known to the master: {volumes:?}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "no answer within {}s ({last})",
        START_TIMEOUT.as_secs()
    ))
}

/// The whole answer to `GET path` on 127.0.0.1:`port`, its status line
/// first.
fn http_body(port: u16, path: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream
        .take(1 << 20)
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

/// The status code of `GET path` on 127.0.0.1:`port`.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
    // "HTTP/1.1 200 OK"
    http_body(port, path)?
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_owned())
}

fn unavailable(why: String) -> Unavailable {
    Unavailable::new("SeaweedFS", why)
}

/// `bytes` random bytes from the operating system, in hex.
fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
