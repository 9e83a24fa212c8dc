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

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(data: &Path, port: u16, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Server(
        Command::new(env!("CARGO_BIN_EXE_anyfs"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("ANYFS_ADMIN_SECRET")
            .env_remove("ANYFS_MASTER_KEY")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
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
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait().unwrap();

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
    // The admin secret is printed once, at the first start only.
    assert_eq!(logs.matches("afs_admin_").count(), 1, "{logs}");
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

#[test]
fn large_uploads_and_downloads_stream_in_constant_memory() {
    let Fresh {
        _dir,
        base,
        mut server,
        ..
    } = Fresh::start();
    let client = Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let secret = signup(&client, &base, "big");
    let before = peak_kib(server.id());
    const SIZE: u64 = 256 * 1024 * 1024;
    let body = reqwest::blocking::Body::sized(std::io::repeat(7).take(SIZE), SIZE);
    use std::io::Read;
    let r = client
        .put(format!("{base}/v1/files/big.bin"))
        .bearer_auth(&secret)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut download = client
        .get(format!("{base}/v1/files/big.bin"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = download.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 7));
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    let grown = peak_kib(server.id()).saturating_sub(before);
    assert!(
        grown < 96 * 1024,
        "the service grew by {grown} KiB for a 256 MiB file"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait().unwrap();
}
