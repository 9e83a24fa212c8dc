//! What the tests that start `anyfs` as a process share: the command
//! without the caller's environment, a deployment (a database and a bucket
//! prefix of its own) and its nodes, `anyfs serve` run as real processes
//! on loopback, each killed when dropped, and the HTTP calls the tests
//! make.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyfs_services::{Postgres, Seaweed};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

pub(crate) const MASTER_KEY: &str =
    "9c4e1a7f3b5d2e8a6c0f4b1d7e3a9c5f2b8d4e6a0c7f1b3d5e9a2c4f6b8d0e1a";
pub(crate) const ADMIN_SECRET: &str = "afs_admin_fedcba9876543210fedcba9876543210";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `anyfs` with none of the service's variables from the environment.
pub(crate) fn anyfs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anyfs"));
    for var in [
        "ANYFS_ADMIN_SECRET",
        "ANYFS_MASTER_KEY",
        "ANYFS_DATABASE_URL",
        "ANYFS_OBJECTS_URL",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// One deployment: a database and a bucket prefix of its own, shared by
/// every node started on it.
pub(crate) struct Deployment {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) database: String,
    pub(crate) objects: String,
    pub(crate) s3: &'static Seaweed,
    /// `--quota` of every node started after it is set.
    pub(crate) quota: Option<u64>,
    /// `--signups-per-hour` of every node started after it is set.
    pub(crate) signups_per_hour: Option<u32>,
    /// The nodes' ANYFS_MASTER_KEY.
    pub(crate) master_key: String,
}

impl Deployment {
    pub(crate) fn new(pg: &Postgres, s3: &'static Seaweed) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            database: pg.fresh_database(),
            objects: s3.fresh_url(),
            s3,
            quota: None,
            signups_per_hour: None,
            master_key: MASTER_KEY.to_string(),
        }
    }

    /// Points `command` at this deployment's database and object store.
    pub(crate) fn point_at<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("ANYFS_DATABASE_URL", &self.database)
            .env("ANYFS_OBJECTS_URL", &self.objects)
            .env("AWS_ENDPOINT_URL", self.s3.endpoint())
            .env("AWS_REGION", self.s3.region())
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_access_key())
    }

    /// `anyfs serve` on this deployment, with a data directory of its own.
    pub(crate) fn command(&self, name: &str, port: u16) -> Command {
        let mut command = anyfs();
        command
            .args(["serve", "--data-dir"])
            .arg(self.dir.path().join(name))
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        self.point_at(&mut command)
            .env("ANYFS_MASTER_KEY", &self.master_key)
            .env("ANYFS_ADMIN_SECRET", ADMIN_SECRET)
            .env("RUST_LOG", "info");
        if let Some(quota) = self.quota {
            command.args(["--quota", &quota.to_string()]);
        }
        if let Some(signups) = self.signups_per_hour {
            command.args(["--signups-per-hour", &signups.to_string()]);
        }
        command
    }

    /// A node named `name` on a free port, once it answers.
    pub(crate) fn node(&self, name: &str) -> Node {
        let port = free_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let mut node = Node {
            child: self.spawn(name, port, &log),
            name: name.to_owned(),
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        node.wait_until_up();
        node
    }

    /// Kills `node` with SIGKILL (as a crash would) and starts it again
    /// with the same flags, port and data directory; returns once it
    /// answers.
    pub(crate) fn crash_and_restart(&self, node: &mut Node) {
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
        node.child = self.spawn(&node.name, node.port, &node.log);
        node.wait_until_up();
    }

    fn spawn(&self, name: &str, port: u16, log: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.command(name, port)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// `anyfs audit verify --database` on this deployment's database.
    pub(crate) fn verify_audit(&self) -> Output {
        anyfs()
            .args(["audit", "verify", "--database", &self.database])
            .output()
            .unwrap()
    }
}

/// A node of the service, killed when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
}

impl Node {
    pub(crate) fn wait_until_up(&mut self) {
        let started = Instant::now();
        while Client::new()
            .get(format!("{}/healthz", self.base))
            .send()
            .is_err()
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the node stopped ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node never answered: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn signup(client: &Client, node: &Node, name: &str) -> String {
    let v: Value = client
        .post(node.url("/v1/accounts"))
        .json(&json!({ "name": name }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// Makes an agent described by `agent` (name, config, policy) in the
/// account of `secret`, through `node`: its token.
pub(crate) fn create_agent(client: &Client, node: &Node, secret: &str, agent: Value) -> String {
    let v: Value = client
        .post(node.url("/v1/agents"))
        .bearer_auth(secret)
        .json(&agent)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

pub(crate) fn put(
    client: &Client,
    node: &Node,
    secret: &str,
    path: &str,
    body: Vec<u8>,
) -> StatusCode {
    client
        .put(node.url(&format!("/v1/files/{path}")))
        .bearer_auth(secret)
        .body(body)
        .send()
        .unwrap()
        .status()
}

pub(crate) fn get(client: &Client, node: &Node, secret: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let response = client
        .get(node.url(&format!("/v1/files/{path}")))
        .bearer_auth(secret)
        .send()
        .unwrap();
    (response.status(), response.bytes().unwrap().to_vec())
}

pub(crate) fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
