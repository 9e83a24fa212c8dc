//! `anyfs serve` as a process: first start, secrets never in its logs, and
//! a SIGKILL under write load that loses no acknowledged write.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `anyfs serve`, logging to `log`, and waits until it answers.
/// The service process, killed if a test ends (or fails) with it running.
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Server {
    /// Stops the service as an operator would (SIGTERM) and waits for it.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `anyfs serve` on `data` and `port`, logging to `log`, with no key or
/// secret from the environment and the default log level.
fn serve_command(data: &Path, port: u16, log: &Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_anyfs"));
    command
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("ANYFS_ADMIN_SECRET")
        .env_remove("ANYFS_MASTER_KEY")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log);
    command
}

fn start(data: &Path, port: u16, log: &Path) -> Server {
    start_command(
        serve_command(data, port, log).env("RUST_LOG", "debug"),
        port,
    )
}

/// Starts `command` and waits until the service answers on `port`.
fn start_command(command: &mut Command, port: u16) -> Server {
    let child = Server(command.spawn().unwrap());
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/openapi.json");
    while Client::new().get(&url).send().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the service never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A service started on a fresh data directory.
struct Fresh {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    port: u16,
    base: String,
    server: Server,
}

impl Fresh {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("service.log");
        let port = free_port();
        let server = start(&data, port, &log);
        Self {
            _dir: dir,
            data,
            log,
            port,
            base: format!("http://127.0.0.1:{port}"),
            server,
        }
    }
}

/// Signs up an account; its secret.
fn signup(client: &Client, base: &str, name: &str) -> String {
    let v: Value = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"name": name}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["secret"].as_str().unwrap().to_string()
}

#[test]
fn a_sigkill_under_write_load_loses_no_acknowledged_write_and_logs_hold_no_secret() {
    let Fresh {
        _dir,
        data,
        log,
        port,
        base,
        mut server,
    } = Fresh::start();
    // The master key file is made with mode 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for dir in [data.clone(), data.join("workspaces")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }

    let client = Client::new();
    let secret = signup(&client, &base, "load");
    let v: Value = client
        .post(format!("{base}/v1/agents"))
        .bearer_auth(&secret)
        .json(&json!({"name": "bot", "config": {"api_key": "sk-LOGCANARY"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();

    // Writers record every write the service acknowledged.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_millis(1500);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, token, base) = (acked.clone(), token.clone(), base.clone());
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut i = 0;
                while Instant::now() < stop {
                    let name = format!("w{w}-{i}");
                    let body = format!("payload of {name}").repeat(50);
                    let ok = client
                        .put(format!("{base}/v1/files/load/{name}"))
                        .bearer_auth(&token)
                        .body(body.clone())
                        .send()
                        .is_ok_and(|r| r.status() == StatusCode::CREATED);
                    if ok {
                        acked.lock().unwrap().push((name, body));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    server.kill().unwrap(); // SIGKILL, mid-load
    server.wait().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few writes were acknowledged to test anything"
    );

    let mut server = start(&data, port, &log);
    for (name, body) in &acked {
        let got = client
            .get(format!("{base}/v1/files/load/{name}"))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(
            got.status(),
            StatusCode::OK,
            "{name} was acknowledged, then lost"
        );
        assert_eq!(&got.text().unwrap(), body);
    }
    // And every acknowledged write has its record: the answer waited for it.
    let mut audited = std::collections::HashSet::new();
    let mut cursor = 0;
    loop {
        let page: Value = client
            .get(format!(
                "{base}/v1/audit?operation=write&outcome=ok&limit=1000&cursor={cursor}"
            ))
            .bearer_auth(&secret)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for record in page["records"].as_array().unwrap() {
            audited.insert(record["path"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    for (name, _) in &acked {
        assert!(
            audited.contains(&format!("/load/{name}")),
            "{name} was acknowledged without its audit record"
        );
    }
    server.terminate();

    // The audit chain of the whole run checks out.
    let verify = Command::new(env!("CARGO_BIN_EXE_anyfs"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));

    let logs = std::fs::read_to_string(&log).unwrap();
    for secret in [secret.as_str(), token.as_str(), "sk-LOGCANARY"] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    // The admin secret never reaches a log file: it is written once, at the
    // first start only, to an owner-only file, and the log says where.
    assert!(!logs.contains("afs_admin_"), "{logs}");
    assert_eq!(logs.matches("admin-secret.txt").count(), 1, "{logs}");
    let file = data.join("admin-secret.txt");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("afs_admin_")
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_second_service_or_a_wrong_master_key_is_refused_and_a_stop_is_announced() {
    let Fresh {
        _dir,
        data,
        log,
        port,
        mut server,
        ..
    } = Fresh::start();
    // A second service on the same directory: refused, naming it.
    let said = refused(&mut serve_command(&data, free_port(), &log));
    assert!(said.contains("another"), "{said}");
    assert!(said.contains(&data.display().to_string()), "{said}");
    server.terminate();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("shutting down"), "{logs}");
    // The data directory's key is in master.key: another one is refused.
    let said = refused(serve_command(&data, port, &log).env("ANYFS_MASTER_KEY", "07".repeat(32)));
    assert!(said.contains("key 1"), "{said}");
    assert!(!said.contains("07070707"), "the key was printed: {said}");
    // A malformed admin secret: refused before anything starts.
    let said = refused(serve_command(&data, port, &log).env("ANYFS_ADMIN_SECRET", "afs_admin_x"));
    assert!(said.contains("ANYFS_ADMIN_SECRET"), "{said}");
}

/// Runs a service start that must be refused; what it said on stderr.
fn refused(command: &mut Command) -> String {
    let out = command.stderr(Stdio::piped()).output().unwrap();
    assert!(!out.status.success(), "the service started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_service_keeps_no_core_dump_owner_only_files_and_no_path_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("service.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_command(&mut serve_command(&data, port, &log), port);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");

    let client = Client::new();
    let secret = signup(&client, &base, "alice");
    let r = client
        .put(format!("{base}/v1/files/private/PATHCANARY-salary.txt"))
        .bearer_auth(&secret)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    server.terminate();
    // Every file it made, workspaces included, is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![data.clone()];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", entry.path().display());
            }
        }
    }
    assert!(files >= 5, "{files} files");
    // The request log names routes, not the files asked for.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("/v1/files/{*path}"), "{logs}");
    assert!(!logs.contains("PATHCANARY"), "{logs}");
}

#[test]
fn the_help_says_how_to_start_the_service() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_anyfs"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // What the command is for, in its first line, names the service.
    let top = help(&["--help"]);
    assert!(top.lines().next().unwrap().contains("serve"), "{top}");
    for short_or_long in ["-h", "--help"] {
        let serve = help(&["serve", short_or_long]);
        for variable in ["ANYFS_MASTER_KEY", "ANYFS_ADMIN_SECRET", "RUST_LOG"] {
            assert!(serve.contains(variable), "{variable}: {serve}");
        }
    }
}

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Overwrites of existing files, the service killed (SIGKILL) at a random
/// moment, 20 times: after each restart every file holds one whole version —
/// the last one acknowledged, or the one in flight when the kill came —
/// never an empty, cut or mixed one.
#[test]
fn overwrites_survive_twenty_sigkills_whole() {
    let Fresh {
        _dir,
        data,
        log,
        port,
        base,
        server,
    } = Fresh::start();
    let mut server = Some(server);
    let client = Client::new();
    let secret = signup(&client, &base, "kills");
    // Large enough to take several blocks of the store; each version its
    // own length, so a cut one never passes for another.
    let version = |file: usize, v: usize| -> Vec<u8> {
        let mut body = format!("file {file} version {v};").into_bytes();
        body.resize(150_000 + 977 * v + file, b'a' + (v % 26) as u8);
        body
    };
    const FILES: usize = 6;
    // Per file: the last acknowledged version, and one in flight.
    let state = Arc::new(Mutex::new(vec![(0usize, None::<usize>); FILES]));
    for file in 0..FILES {
        let r = client
            .put(format!("{base}/v1/files/kill/f{file}"))
            .bearer_auth(&secret)
            .body(version(file, 0))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut next_version = 1;
    for round in 0..20 {
        let running = match server.take() {
            Some(s) => s,
            None => start(&data, port, &log),
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // One writer per pair of files, so each file's versions are in order.
        let writers: Vec<_> = (0..FILES / 2)
            .map(|w| {
                let (state, stop, base, secret) =
                    (state.clone(), stop.clone(), base.clone(), secret.clone());
                let first = next_version + w * 1000;
                std::thread::spawn(move || {
                    let client = Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    let mut v = first;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let file = w * 2 + v % 2;
                        state.lock().unwrap()[file].1 = Some(v);
                        let ok = client
                            .put(format!("{base}/v1/files/kill/f{file}"))
                            .bearer_auth(&secret)
                            .body(version(file, v))
                            .send()
                            .is_ok_and(|r| r.status() == StatusCode::CREATED);
                        let mut state = state.lock().unwrap();
                        if ok {
                            state[file] = (v, None);
                        } else {
                            // The service is gone: what it had is final.
                            break;
                        }
                        drop(state);
                        v += 1;
                    }
                })
            })
            .collect();
        next_version += FILES * 1000;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(60 + (seed >> 33) % 400));
        let mut running = running;
        running.kill().unwrap(); // SIGKILL
        running.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        let restarted = start(&data, port, &log);
        let mut files = state.lock().unwrap().clone();
        for (file, (acked, in_flight)) in files.iter_mut().enumerate() {
            let got = client
                .get(format!("{base}/v1/files/kill/f{file}"))
                .bearer_auth(&secret)
                .send()
                .unwrap();
            assert_eq!(got.status(), StatusCode::OK, "round {round} file {file}");
            let got = got.bytes().unwrap();
            let landed = in_flight.filter(|&v| got == version(file, v));
            assert!(
                landed.is_some() || got == version(file, *acked),
                "round {round}: file {file} holds {} bytes starting {:?}, not version {acked} or {in_flight:?}",
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(40)])
            );
            // What survived is the version the next round starts from.
            *acked = landed.unwrap_or(*acked);
            *in_flight = None;
        }
        *state.lock().unwrap() = files;
        server = Some(restarted);
    }
}

/// A 512 MiB upload, then eight clients reading it whole at once (half of
/// them through `Range: bytes=0-`), keep the service within a stated
/// memory bound: every write and read path streams. (Before, a range was
/// read whole into memory: four such reads of a 300 MiB file took the
/// service past 1.3 GB.)
#[test]
fn a_large_upload_and_eight_concurrent_full_reads_stay_within_256_mib() {
    let Fresh {
        _dir,
        base,
        mut server,
        ..
    } = Fresh::start();
    let client = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let secret = signup(&client, &base, "many readers");
    let before = peak_kib(server.id());
    const SIZE: u64 = 512 * 1024 * 1024;
    let body = reqwest::blocking::Body::sized(std::io::Read::take(std::io::repeat(5), SIZE), SIZE);
    let r = client
        .put(format!("{base}/v1/files/big.bin"))
        .bearer_auth(&secret)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let (client, base, secret) = (client.clone(), base.clone(), secret.clone());
            std::thread::spawn(move || {
                let mut request = client
                    .get(format!("{base}/v1/files/big.bin"))
                    .bearer_auth(&secret);
                if i % 2 == 0 {
                    request = request.header("range", "bytes=0-");
                }
                let mut r = request.send().unwrap();
                let expected = if i % 2 == 0 {
                    StatusCode::PARTIAL_CONTENT
                } else {
                    StatusCode::OK
                };
                assert_eq!(r.status(), expected);
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0u64;
                loop {
                    let n = std::io::Read::read(&mut r, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(buf[..n].iter().all(|&b| b == 5));
                    total += n as u64;
                }
                total
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), SIZE);
    }
    let grown = peak_kib(server.id()).saturating_sub(before);
    assert!(
        grown < 256 * 1024,
        "a 512 MiB upload and eight reads of it grew the service by {grown} KiB"
    );
    server.terminate();
}

/// The running service keeps its keys in locked memory (never swapped out).
#[test]
fn the_service_keeps_its_keys_in_locked_memory() {
    let Fresh {
        _dir, mut server, ..
    } = Fresh::start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked > 0, "nothing locked: {status}");
    server.terminate();
}
