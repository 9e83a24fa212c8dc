//! `anyfs serve --database`: the registry in PostgreSQL (the test binary's
//! throw-away cluster), shared by two nodes; the master key required; the
//! audit chain verified with `anyfs audit verify --database`; the
//! database password never in a log.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyfs_services::{postgres, require};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const MASTER_KEY: &str = "5f1e0c9a3b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d0f";
const ADMIN_SECRET: &str = "afs_admin_0123456789abcdef0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `anyfs` with none of the service's variables from the environment.
fn anyfs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anyfs"));
    for var in [
        "ANYFS_ADMIN_SECRET",
        "ANYFS_MASTER_KEY",
        "ANYFS_DATABASE_URL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// A node of the service, stopped with SIGTERM (or killed, if the test
/// fails first).
struct Node {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Node {
    fn start(dir: &Path, name: &str, database: &str) -> Self {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = anyfs()
            .args(["serve", "--data-dir"])
            .arg(dir.join(name))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("ANYFS_DATABASE_URL", database)
            .env("ANYFS_MASTER_KEY", MASTER_KEY)
            .env("ANYFS_ADMIN_SECRET", ADMIN_SECRET)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while Client::new()
            .get(format!("{}/healthz", node.base))
            .send()
            .is_err()
        {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "the node stopped ({status}): {}",
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the node never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn verify(database: &str) -> Output {
    anyfs()
        .args(["audit", "verify"])
        .env("ANYFS_DATABASE_URL", database)
        .output()
        .unwrap()
}

#[test]
fn serve_on_postgres_refuses_to_start_without_a_master_key() {
    let server = require!(postgres());
    let database = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let refused = anyfs()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("ANYFS_DATABASE_URL", &database)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("ANYFS_MASTER_KEY"), "{stderr}");
    assert!(!stderr.contains(server.password()), "{stderr}");
    assert!(
        !data.join("master.key").exists(),
        "no key may be made on the node's disk"
    );
}

#[test]
fn two_nodes_on_postgres_share_accounts_and_the_audit_chain_verifies() {
    let server = require!(postgres());
    let database = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Node::start(dir.path(), "node-1", &database);
    let mut second = Node::start(dir.path(), "node-2", &database);
    let client = Client::new();

    let signed_up: Value = client
        .post(format!("{}/v1/accounts", first.base))
        .json(&json!({"name": "shared"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let secret = signed_up["secret"].as_str().unwrap();
    // The other node knows the account at once: one registry.
    let me = client
        .get(format!("{}/v1/accounts/me", second.base))
        .bearer_auth(secret)
        .send()
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().unwrap()["name"], "shared");
    let written = client
        .put(format!("{}/v1/files/notes.txt", first.base))
        .bearer_auth(secret)
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);
    let audit: Value = client
        .get(format!("{}/v1/audit", second.base))
        .bearer_auth(secret)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["action"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        actions.len() >= 2,
        "the write and more, from either node: {audit}"
    );

    first.terminate();
    second.terminate();
    let verified = verify(&database);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(stdout.contains("audit chain intact"), "{stdout}");

    for node in [&first, &second] {
        let log = std::fs::read_to_string(&node.log).unwrap();
        assert!(
            !log.contains(server.password()),
            "the database password is in a log"
        );
        assert!(!log.contains(MASTER_KEY));
    }
}
