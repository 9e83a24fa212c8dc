//! MCP with a client nobody here wrote: the official MCP Python SDK
//! (`tests/mcp/client.py`) drives `anyfs mcp` over standard input/output
//! and `anyfs serve`'s `/mcp` over HTTP, calling every tool with good and
//! bad arguments, traversal payloads through every path argument, policy
//! refusals, another account, and roots.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

fn anyfs() -> &'static str {
    env!("CARGO_BIN_EXE_anyfs")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

/// Runs the Python client with `args`; fails the test with its output if
/// any of its checks failed.
fn run_client(python: &Path, args: &[&str]) {
    let out = Command::new(python)
        .arg(client_script())
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the MCP client's checks failed:\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// The smallest PNG: one transparent pixel.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

#[test]
fn the_python_sdk_uses_every_tool_over_stdio() {
    let Some(python) = anyfs_services::available(anyfs_services::python_clients()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A host directory the workspace overlays, and a file beside it that
    // no tool may reach.
    let over = dir.path().join("project");
    std::fs::create_dir_all(over.join("sub")).unwrap();
    std::fs::write(over.join("base.txt"), "from the host\n").unwrap();
    std::fs::write(over.join("pixel.png"), PIXEL_PNG).unwrap();
    std::fs::write(over.join(".env"), "SECRET_TOKEN=hunter2\n").unwrap();
    std::fs::write(over.join("sub/inner.txt"), "inner\n").unwrap();
    std::os::unix::fs::symlink("/etc", over.join("link-out")).unwrap();
    std::os::unix::fs::symlink("..", over.join("link-up")).unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, format!("OUTSIDE-{}\n", std::process::id())).unwrap();
    let workspace = dir.path().join("work.db");
    run_client(
        &python,
        &[
            "stdio",
            anyfs(),
            workspace.to_str().unwrap(),
            over.to_str().unwrap(),
            outside.to_str().unwrap(),
        ],
    );
    // Nothing was ever written beside the overlaid directory.
    let mut beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["outside.txt", "project", "work.db"]);
}

/// `anyfs serve`, killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, log: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(anyfs())
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("ANYFS_ADMIN_SECRET")
        .env_remove("ANYFS_MASTER_KEY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while Client::new().get(format!("{base}/healthz")).send().is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "no answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, base)
}

fn post(base: &str, path: &str, secret: Option<&str>, body: Value) -> Value {
    let mut request = Client::new().post(format!("{base}{path}")).json(&body);
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    let response = request.send().unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().unwrap()
}

#[test]
fn the_python_sdk_uses_every_tool_over_http_with_policy_and_tenants() {
    let Some(python) = anyfs_services::available(anyfs_services::python_clients()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (_server, base) = serve(&dir.path().join("data"), &log);
    let account = post(&base, "/v1/accounts", None, json!({"name": "a"}))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let other = post(&base, "/v1/accounts", None, json!({"name": "b"}))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = post(
        &base,
        "/v1/agents",
        Some(&account),
        json!({"name": "bot", "policy": {"deny": ["/private/**"]}}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    run_client(&python, &["http", &base, &account, &agent, &other]);
    // No secret in the service's log, at the level it ran with.
    let logged = std::fs::read_to_string(&log).unwrap();
    for secret in [&account, &agent, &other] {
        assert!(!logged.contains(secret.as_str()), "a secret in the log");
    }
}
