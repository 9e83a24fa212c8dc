//! `anyfs migrate`: an embedded deployment, built by the real `anyfs serve`
//! on a data directory, moved into PostgreSQL and the object store, then
//! served by `anyfs serve --database --objects`: every file reads back,
//! secrets, tokens and policies still work, the audit chains verify; a
//! migration killed part way finishes when run again; a second run changes
//! nothing; a wrong master key, a missing one and a running service are
//! refused.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod nodes;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyfs_services::{postgres, require, seaweed};
use nodes::{
    ADMIN_SECRET, Deployment, Node, anyfs, create_agent, free_port, get, output_text, put, signup,
};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// What one account of the embedded deployment holds, to check on the
/// other side.
struct Account {
    secret: String,
    token: String,
    execution: String,
    /// Every file, by path, with its content.
    files: BTreeMap<String, Vec<u8>>,
}

/// An embedded deployment: a data directory made by `anyfs serve`.
struct Embedded {
    _dir: tempfile::TempDir,
    data: PathBuf,
    accounts: Vec<Account>,
    /// The service, while it runs.
    node: Option<Node>,
}

impl Embedded {
    /// Stops the service (SIGTERM: it closes its files as in production).
    fn stop(&mut self) {
        if let Some(mut node) = self.node.take() {
            let pid = node.child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            node.child.wait().unwrap();
        }
    }

    /// The master key the embedded service made, in hex.
    fn master_key(&self) -> String {
        let key = std::fs::read(self.data.join("master.key")).unwrap();
        key.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn files(&self) -> usize {
        self.accounts.iter().map(|a| a.files.len()).sum()
    }
}

/// Bytes that tell their path apart, `len` long.
fn content(path: &str, len: usize) -> Vec<u8> {
    let mut x = path
        .bytes()
        .fold(0x9e37_79b9u32, |h, b| h.rotate_left(5) ^ u32::from(b));
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A `.tar.gz` skill bundle of `files` (path in the bundle, content).
fn bundle(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Runs `anyfs serve` on a new data directory and fills it: `accounts`
/// accounts, each with `puts` files written one by one in nested folders,
/// a 3 MiB file, a skill bundle of `bundled` files, an agent with a
/// config and a policy (which writes a file), an execution, and audit
/// records (one without an account: a refused secret). The service is
/// left running.
fn embedded(accounts: usize, puts: usize, bundled: usize) -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("anyfs-data");
    let port = free_port();
    let log = dir.path().join("embedded.log");
    let child = anyfs()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("ANYFS_ADMIN_SECRET", ADMIN_SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut node = Node {
        child,
        name: "embedded".into(),
        port,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    node.wait_until_up();
    let client = Client::new();
    let mut made = Vec::new();
    for i in 0..accounts {
        let secret = signup(&client, &node, &format!("account-{i}"));
        let mut files = BTreeMap::new();
        for j in 0..puts {
            let path = format!("work/d{}/sub{}/file-{j}.txt", j % 7, j % 3);
            files.insert(path, content(&format!("{i}/{j}"), 1 + (j * 37) % 3000));
        }
        files.insert(
            "big/blob.bin".into(),
            content(&format!("{i}/big"), (3 << 20) + 17),
        );
        files.insert("private/plan.txt".into(), b"the plan".to_vec());
        files.insert("docs/readme.txt".into(), b"read me".to_vec());
        for (path, bytes) in &files {
            assert_eq!(
                put(&client, &node, &secret, path, bytes.clone()),
                StatusCode::CREATED,
                "{path}"
            );
        }
        if bundled > 0 {
            let entries: Vec<(String, Vec<u8>)> = (0..bundled)
                .map(|k| {
                    let path = format!("lib/m{}/f{k}.md", k % 5);
                    let bytes = content(&format!("{i}/skill/{k}"), 10 + k % 700);
                    (path, bytes)
                })
                .collect();
            let status = client
                .put(node.url("/v1/skills/toolkit"))
                .bearer_auth(&secret)
                .body(bundle(&entries))
                .send()
                .unwrap()
                .status();
            assert!(status.is_success(), "bundle: {status}");
            for (path, bytes) in entries {
                files.insert(format!("skills/toolkit/{path}"), bytes);
            }
        }
        let token = create_agent(
            &client,
            &node,
            &secret,
            json!({
                "name": "bot",
                "config": {"provider": {"api_key": format!("sk-test-{i}")}},
                "policy": {"deny": ["/private/**"], "read_only": ["/docs/**"]}
            }),
        );
        let by_agent = b"written by the agent".to_vec();
        assert_eq!(
            put(&client, &node, &token, "agent/out.txt", by_agent.clone()),
            StatusCode::CREATED
        );
        files.insert("agent/out.txt".into(), by_agent);
        let execution: Value = client
            .post(node.url("/v1/executions"))
            .bearer_auth(&secret)
            .json(&json!({"input": format!("task {i}")}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        made.push(Account {
            secret,
            token,
            execution: execution["id"].as_str().unwrap().to_string(),
            files,
        });
    }
    // Refused: a record with no account.
    assert_eq!(
        get(&client, &node, "afs_acct_not-a-secret", "x").0,
        StatusCode::UNAUTHORIZED
    );
    Embedded {
        _dir: dir,
        data,
        accounts: made,
        node: Some(node),
    }
}

/// `anyfs migrate` from `data` into `deployment`, with `key` as
/// ANYFS_MASTER_KEY (none: unset).
fn migrate_command(deployment: &Deployment, data: &Path, key: Option<&str>) -> Command {
    let mut command = anyfs();
    command.args(["migrate", "--from"]).arg(data);
    deployment.point_at(&mut command);
    if let Some(key) = key {
        command.env("ANYFS_MASTER_KEY", key);
    }
    command
}

fn migrate(deployment: &Deployment, source: &Embedded) -> Output {
    migrate_command(deployment, &source.data, Some(&source.master_key()))
        .output()
        .unwrap()
}

/// The number of records `anyfs audit verify` found intact, in the data
/// directory or (with `database`) the database.
fn audit_verified(data: Option<&Path>, database: Option<&str>) -> u64 {
    let mut command = anyfs();
    command.args(["audit", "verify"]);
    if let Some(data) = data {
        command.arg("--data-dir").arg(data);
    }
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let out = command.output().unwrap();
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    said.split("intact: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"))
}

/// Every file of the data directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Everything the embedded deployment held, through a node of the
/// distributed one: every file, the secrets, the agent tokens with their
/// policies, the executions.
fn check_served(node: &Node, source: &Embedded) {
    let client = Client::new();
    for (i, account) in source.accounts.iter().enumerate() {
        for (path, bytes) in &account.files {
            let (status, body) = get(&client, node, &account.secret, path);
            assert_eq!(status, StatusCode::OK, "account {i}: {path}");
            assert!(body == *bytes, "account {i}: {path} reads back different");
        }
        let me = client
            .get(node.url("/v1/accounts/me"))
            .bearer_auth(&account.secret)
            .send()
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK);
        let token = &account.token;
        assert_eq!(
            get(&client, node, token, "private/plan.txt").0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            put(&client, node, token, "docs/readme.txt", b"x".to_vec()),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&client, node, token, "docs/readme.txt"),
            (StatusCode::OK, b"read me".to_vec())
        );
        assert_eq!(
            put(&client, node, token, "agent/after.txt", b"ok".to_vec()),
            StatusCode::CREATED
        );
        // The agent's sealed config still opens (shown redacted).
        let agents: Value = client
            .get(node.url("/v1/agents"))
            .bearer_auth(&account.secret)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let config = &agents["agents"][0]["config"];
        assert!(config["provider"].is_object(), "{agents}");
        assert!(
            !agents.to_string().contains(&format!("sk-test-{i}")),
            "{agents}"
        );
        let execution: Value = client
            .get(node.url(&format!("/v1/executions/{}", account.execution)))
            .bearer_auth(&account.secret)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            execution["input"],
            json!(format!("task {i}")),
            "{execution}"
        );
    }
}

#[test]
fn an_embedded_deployment_moves_whole_and_a_second_run_changes_nothing() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let mut source = embedded(3, 100, 240);
    source.stop();
    assert!(source.files() >= 1000, "{} files", source.files());
    let source_records = audit_verified(Some(&source.data), None);
    let before = snapshot(&source.data);
    let mut deployment = Deployment::new(pg, s3);
    deployment.master_key = source.master_key();

    let first = migrate(&deployment, &source);
    let said = output_text(&first);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("migrated and checked: 3 accounts"), "{said}");
    assert!(said.contains("account 3/3"), "{said}");
    for secret in [
        source.master_key().as_str(),
        pg.password(),
        s3.secret_access_key(),
    ] {
        assert!(!said.contains(secret), "a secret in the output: {said}");
    }
    // Every record, each in its account's chain; no more.
    assert_eq!(
        audit_verified(None, Some(&deployment.database)),
        source_records
    );

    let second = migrate(&deployment, &source);
    let said = output_text(&second);
    assert!(second.status.success(), "{said}");
    assert!(
        said.contains("already migrated, checked again: 3 accounts"),
        "{said}"
    );
    assert_eq!(
        audit_verified(None, Some(&deployment.database)),
        source_records
    );
    let after = snapshot(&source.data);
    let changed: Vec<_> = after
        .iter()
        .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
        .map(|(path, _)| path)
        .chain(before.keys().filter(|path| !after.contains_key(*path)))
        .collect();
    assert!(
        changed.is_empty(),
        "the data directory changed: {changed:?}"
    );

    let node = deployment.node("node-1");
    check_served(&node, &source);
    assert!(audit_verified(None, Some(&deployment.database)) > source_records);
}

#[test]
fn a_migration_killed_part_way_finishes_when_run_again() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let mut source = embedded(3, 20, 300);
    source.stop();
    let source_records = audit_verified(Some(&source.data), None);
    let mut deployment = Deployment::new(pg, s3);
    deployment.master_key = source.master_key();

    let mut running = migrate_command(&deployment, &source.data, Some(&source.master_key()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    for line in BufReader::new(running.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        // Part way through the first account's files.
        if line.contains("bytes copied") {
            break;
        }
    }
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(said.contains("account 1/3"), "{said}");
    assert!(!said.contains("matches the source"), "{said}");
    // What is in the database so far is consistent.
    assert_eq!(
        audit_verified(None, Some(&deployment.database)),
        source_records
    );

    let again = migrate(&deployment, &source);
    let said = output_text(&again);
    assert!(again.status.success(), "{said}");
    assert!(said.contains("migrated and checked: 3 accounts"), "{said}");
    assert_eq!(
        audit_verified(None, Some(&deployment.database)),
        source_records
    );
    let node = deployment.node("node-1");
    check_served(&node, &source);
}

#[test]
fn a_running_service_a_missing_key_and_a_wrong_key_are_refused() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let mut source = embedded(1, 3, 0);
    let deployment = Deployment::new(pg, s3);

    let busy = migrate(&deployment, &source);
    let said = output_text(&busy);
    assert!(!busy.status.success(), "{said}");
    assert!(said.contains("already using the data directory"), "{said}");
    source.stop();

    let keyless = migrate_command(&deployment, &source.data, None)
        .output()
        .unwrap();
    let said = output_text(&keyless);
    assert!(!keyless.status.success(), "{said}");
    assert!(
        said.contains("ANYFS_MASTER_KEY") && said.contains("master.key"),
        "{said}"
    );

    let wrong = "5".repeat(64);
    let refused = migrate_command(&deployment, &source.data, Some(&wrong))
        .output()
        .unwrap();
    let said = output_text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("does not open the data directory"), "{said}");
    assert!(
        !said.contains(&wrong) && !said.contains(&source.master_key()),
        "{said}"
    );

    // A changed audit record: refused, naming it (on a copy of the data).
    let tampered = source.data.with_file_name("tampered");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&source.data)
            .arg(&tampered)
            .status()
            .unwrap()
            .success()
    );
    let registry = rusqlite::Connection::open(tampered.join("registry.db")).unwrap();
    registry
        .execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'nobody' WHERE seq = 2;",
        )
        .unwrap();
    drop(registry);
    let broken = migrate_command(&deployment, &tampered, Some(&source.master_key()))
        .output()
        .unwrap();
    let said = output_text(&broken);
    assert!(!broken.status.success(), "{said}");
    assert!(
        said.contains("audit chain") && said.contains("record 2 was changed"),
        "{said}"
    );

    // Refused before anything was written: the right key then migrates.
    let right = migrate(&deployment, &source);
    assert!(right.status.success(), "{}", output_text(&right));
}
