//! `anyfs serve --database --objects`: every account's workspace in
//! PostgreSQL (its tree) and the object store (its content), served alike
//! by several nodes started as real processes: any node reads what another
//! wrote, concurrent writers on different nodes lose nothing, the quota
//! holds across nodes, and so does the sign-up limit; an agent's policy
//! holds on every node, and neither
//! the bucket nor a dump of the database shows a file, a name or a secret.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod nodes;

use std::process::Command;
use std::sync::{Arc, Mutex};

use anyfs_services::{Seaweed, postgres, require, seaweed};
use nodes::*;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

#[test]
fn objects_without_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = anyfs()
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--objects", "s3://workspaces/eu-1"])
        .env("ANYFS_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    let said = output_text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("--objects needs --database"), "{said}");
}

#[test]
fn an_object_store_that_cannot_be_reached_stops_the_start_naming_it() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let refused = deployment
        .command("node", free_port())
        .args(["--objects-endpoint", &nowhere])
        .output()
        .unwrap();
    let said = output_text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains(&nowhere), "{said}");
    assert!(said.contains("not started"), "{said}");
    assert!(!said.contains(s3.secret_access_key()), "{said}");
}

#[test]
fn three_nodes_serve_one_account_and_an_agents_policy_holds_on_each() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let nodes: Vec<Node> = (1..=3)
        .map(|i| deployment.node(&format!("node-{i}")))
        .collect();
    let client = Client::new();

    let secret = signup(&client, &nodes[0], "three");
    let content = b"written through node 2".to_vec();
    assert_eq!(
        put(
            &client,
            &nodes[1],
            &secret,
            "notes/hello.txt",
            content.clone()
        ),
        StatusCode::CREATED
    );
    assert_eq!(
        get(&client, &nodes[2], &secret, "notes/hello.txt"),
        (StatusCode::OK, content)
    );
    // A change through node 3 is seen by node 1 at once: no node caches a
    // tree of its own.
    assert_eq!(
        put(
            &client,
            &nodes[2],
            &secret,
            "notes/hello.txt",
            b"v2".to_vec()
        ),
        StatusCode::CREATED
    );
    assert_eq!(
        get(&client, &nodes[0], &secret, "notes/hello.txt"),
        (StatusCode::OK, b"v2".to_vec())
    );

    // An agent made on node 1, with a policy, used on every node.
    assert_eq!(
        put(
            &client,
            &nodes[0],
            &secret,
            "private/plan.txt",
            b"p".to_vec()
        ),
        StatusCode::CREATED
    );
    assert_eq!(
        put(
            &client,
            &nodes[0],
            &secret,
            "docs/readme.txt",
            b"r".to_vec()
        ),
        StatusCode::CREATED
    );
    let token = create_agent(
        &client,
        &nodes[0],
        &secret,
        json!({
            "name": "bot",
            "config": {},
            "policy": {"deny": ["/private/**"], "read_only": ["/docs/**"]}
        }),
    );
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            get(&client, node, &token, "private/plan.txt").0,
            StatusCode::FORBIDDEN,
            "node {}",
            i + 1
        );
        assert_eq!(
            put(&client, node, &token, "docs/readme.txt", b"x".to_vec()),
            StatusCode::FORBIDDEN,
            "node {}",
            i + 1
        );
        assert_eq!(
            get(&client, node, &token, "docs/readme.txt"),
            (StatusCode::OK, b"r".to_vec())
        );
        let path = format!("work/from-node-{}", i + 1);
        assert_eq!(
            put(&client, node, &token, &path, b"ok".to_vec()),
            StatusCode::CREATED
        );
    }
    for i in 1..=3 {
        let path = format!("work/from-node-{i}");
        assert_eq!(
            get(&client, &nodes[(i + 1) % 3], &secret, &path),
            (StatusCode::OK, b"ok".to_vec())
        );
    }
}

/// A node answers reads from what it remembers of a workspace's tree
/// when the login's query finds the workspace unchanged. A change made
/// through another node is seen at the next read, by an account's secret
/// and by an agent's token alike, however recently the reading node read.
#[test]
fn a_read_sees_the_change_another_node_just_made() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = Client::new();
    let secret = signup(&client, &nodes[0], "ping-pong");
    let token = create_agent(
        &client,
        &nodes[0],
        &secret,
        json!({"name": "reader", "config": {}, "policy": {}}),
    );
    for round in 0..20 {
        let (writer, reader) = (&nodes[round % 2], &nodes[(round + 1) % 2]);
        let body = format!("round {round}").into_bytes();
        assert_eq!(
            put(&client, writer, &secret, "shared/state.txt", body.clone()),
            StatusCode::CREATED
        );
        for who in [&secret, &token] {
            assert_eq!(
                get(&client, reader, who, "shared/state.txt"),
                (StatusCode::OK, body.clone()),
                "round {round}"
            );
        }
    }
}

/// Snapshots, branches, agents on branches, merges and restores over the
/// shared stores, each step on another node: what one node does, the next
/// sees; another account reaches none of it.
#[test]
fn snapshots_and_branches_work_across_nodes() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = Client::new();
    let secret = signup(&client, &nodes[0], "snapshotter");
    let other = signup(&client, &nodes[1], "other");
    let call = |node: &Node, method: &str, path: &str, who: &str, body: Value| {
        let url = node.url(path);
        let request = match method {
            "post" => client.post(&url).json(&body),
            "delete" => client.delete(&url),
            _ => client.get(&url),
        };
        let response = request.bearer_auth(who).send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    assert_eq!(
        put(&client, &nodes[0], &secret, "plan.md", b"v1".to_vec()),
        StatusCode::CREATED
    );
    let (status, snap) = call(
        &nodes[1],
        "post",
        "/v1/snapshots",
        &secret,
        json!({"name": "before"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{snap}");
    let snap = snap["id"].as_str().unwrap().to_string();
    let (status, branch) = call(
        &nodes[0],
        "post",
        "/v1/branches",
        &secret,
        json!({"snapshot": snap, "name": "agent-work"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{branch}");
    let branch = branch["id"].as_str().unwrap().to_string();
    let token = create_agent(
        &client,
        &nodes[1],
        &secret,
        json!({"name": "worker", "config": {}, "policy": {"workspace": branch}}),
    );
    assert_eq!(
        put(
            &client,
            &nodes[1],
            &token,
            "plan.md",
            b"v2 from the agent".to_vec()
        ),
        StatusCode::CREATED
    );
    assert_eq!(
        get(&client, &nodes[0], &secret, "plan.md"),
        (StatusCode::OK, b"v1".to_vec())
    );
    let (status, diff) = call(
        &nodes[0],
        "get",
        &format!("/v1/diff?from=snapshot:{snap}&to=branch:{branch}"),
        &secret,
        json!({}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(diff["path"], "/plan.md", "{diff}");
    // Another account, on either node: nothing.
    for node in &nodes {
        for (method, path) in [
            ("get", format!("/v1/snapshots/{snap}/files/plan.md")),
            ("get", format!("/v1/branches/{branch}/files/plan.md")),
            ("post", format!("/v1/snapshots/{snap}/restore")),
            ("post", format!("/v1/branches/{branch}/merge")),
            ("get", format!("/v1/diff?from=snapshot:{snap}")),
        ] {
            let (status, _) = call(node, method, &path, &other, json!({}));
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
    let (status, merged) = call(
        &nodes[1],
        "post",
        &format!("/v1/branches/{branch}/merge"),
        &secret,
        json!({}),
    );
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(
        get(&client, &nodes[0], &secret, "plan.md"),
        (StatusCode::OK, b"v2 from the agent".to_vec())
    );
    let (status, _) = call(
        &nodes[0],
        "post",
        &format!("/v1/snapshots/{snap}/restore"),
        &secret,
        json!({}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get(&client, &nodes[1], &secret, "plan.md"),
        (StatusCode::OK, b"v1".to_vec())
    );
}

#[test]
fn the_signup_limit_holds_across_nodes() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let mut deployment = Deployment::new(pg, s3);
    deployment.signups_per_hour = Some(3);
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = Client::new();
    let sign_up = |node: &Node, name: &str| {
        client
            .post(node.url("/v1/accounts"))
            .json(&json!({ "name": name }))
            .send()
            .unwrap()
    };
    for (i, node) in [&nodes[0], &nodes[1], &nodes[0]].into_iter().enumerate() {
        let response = sign_up(node, &format!("user {i}"));
        assert_eq!(response.status(), StatusCode::CREATED, "sign-up {i}");
    }
    // Three from this address in the hour, whichever node took them: both
    // nodes refuse a fourth.
    for node in &nodes {
        let refused = sign_up(node, "one too many");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3500..=3600).contains(&retry_after), "{retry_after}");
        let error: Value = refused.json().unwrap();
        assert_eq!(error["error"]["kind"], "RateLimitExceeded");
        assert_eq!(
            error["error"]["message"],
            "too many sign-ups from this address"
        );
    }
}

/// What writer `w` writes in round `round`: recognisable through and
/// through, so that a file made of two writers' bytes shows.
fn body_of(w: usize, round: usize, len: usize) -> Vec<u8> {
    let stamp = format!("<writer {w} round {round}>");
    stamp.bytes().cycle().take(len).collect()
}

#[test]
fn concurrent_writers_on_two_nodes_lose_nothing_and_tear_nothing() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = Client::new();
    let secret = signup(&client, &nodes[0], "busy");
    const ROUNDS: usize = 8;
    const LEN: usize = 150_000; // several records and blobs' worth
    std::thread::scope(|s| {
        for w in 0..4usize {
            let (node, client, secret) = (&nodes[w % 2], &client, &secret);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let own = format!("own/w{w}-{round}");
                    assert_eq!(
                        put(client, node, secret, &own, body_of(w, round, LEN)),
                        StatusCode::CREATED
                    );
                    // Everyone overwrites one file.
                    assert_eq!(
                        put(client, node, secret, "shared.bin", body_of(w, round, LEN)),
                        StatusCode::CREATED
                    );
                }
            });
        }
    });
    for w in 0..4usize {
        for round in 0..ROUNDS {
            let (status, body) = get(
                &client,
                &nodes[1 - w % 2],
                &secret,
                &format!("own/w{w}-{round}"),
            );
            assert_eq!(status, StatusCode::OK);
            assert!(body == body_of(w, round, LEN), "own/w{w}-{round} differs");
        }
    }
    let (status, shared) = get(&client, &nodes[0], &secret, "shared.bin");
    assert_eq!(status, StatusCode::OK);
    let whole = (0..4usize)
        .flat_map(|w| (0..ROUNDS).map(move |r| (w, r)))
        .any(|(w, r)| shared == body_of(w, r, LEN));
    assert!(whole, "the shared file is no single writer's version");
}

#[test]
fn writers_on_two_nodes_never_take_an_account_past_its_quota() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let mut deployment = Deployment::new(pg, s3);
    const QUOTA: u64 = 1_000_000;
    const FILE: usize = 30_001; // does not divide the quota
    deployment.quota = Some(QUOTA);
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = Client::new();
    let secret = signup(&client, &nodes[0], "full");
    let stored = Arc::new(Mutex::new(0u64));
    std::thread::scope(|s| {
        for w in 0..6usize {
            let (node, client, secret, stored) = (&nodes[w % 2], &client, &secret, &stored);
            s.spawn(move || {
                for i in 0.. {
                    match put(client, node, secret, &format!("w{w}/{i}"), vec![b'q'; FILE]) {
                        StatusCode::CREATED => *stored.lock().unwrap() += FILE as u64,
                        StatusCode::INSUFFICIENT_STORAGE => break,
                        other => panic!("writer {w}: {other}"),
                    }
                }
            });
        }
    });
    let stored = *stored.lock().unwrap();
    assert!(
        stored <= QUOTA,
        "{stored} bytes stored under a quota of {QUOTA}"
    );
    assert!(
        stored > QUOTA - FILE as u64,
        "the account was refused with room left: {stored} of {QUOTA}"
    );
    // Still full, whichever node is asked, and a byte more is refused.
    for node in &nodes {
        assert_eq!(
            put(&client, node, &secret, "one-more", vec![1; FILE]),
            StatusCode::INSUFFICIENT_STORAGE
        );
    }
}

/// Every occurrence of each of `needles` in `haystack`, by name.
fn found_in<'a>(haystack: &[u8], needles: &[(&'a str, Vec<u8>)]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|(_, needle)| {
            haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        })
        .map(|(name, _)| *name)
        .collect()
}

#[test]
fn neither_the_bucket_nor_a_database_dump_shows_content_names_or_secrets() {
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let node = deployment.node("node-1");
    let client = Client::new();
    let secret = signup(&client, &node, "private");
    let unique = uuid_like();
    let file_name = format!("diary-{unique}.txt");
    let folder = format!("folder-{unique}");
    let content = format!("CONTENT-{unique} ").repeat(200).into_bytes();
    let api_key = format!("sk-APIKEY{unique}");
    assert_eq!(
        put(
            &client,
            &node,
            &secret,
            &format!("{folder}/{file_name}"),
            content.clone()
        ),
        StatusCode::CREATED
    );
    let token = create_agent(
        &client,
        &node,
        &secret,
        json!({"name": "keyholder", "config": {"provider": {"api_key": api_key}}}),
    );
    assert_eq!(
        put(&client, &node, &token, "agent-wrote.txt", content.clone()),
        StatusCode::CREATED
    );
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("file content", format!("CONTENT-{unique}").into_bytes()),
        ("file name", file_name.clone().into_bytes()),
        ("folder name", folder.clone().into_bytes()),
        ("account secret", secret.clone().into_bytes()),
        ("agent token", token.clone().into_bytes()),
        ("api_key", api_key.clone().into_bytes()),
        ("AWS secret key", s3.secret_access_key().as_bytes().to_vec()),
        ("master key", MASTER_KEY.as_bytes().to_vec()),
    ];

    // Every object in the bucket, read through the S3 API.
    let objects = scan_bucket(s3);
    assert!(
        objects.iter().any(|(name, _)| name.contains("/blobs/")),
        "no blob found to scan"
    );
    for (name, bytes) in &objects {
        let found = found_in(name.as_bytes(), &needles);
        assert!(found.is_empty(), "object name {name} shows {found:?}");
        let found = found_in(bytes, &needles);
        assert!(found.is_empty(), "object {name} shows {found:?}");
    }

    // A dump of the whole database.
    let dump = Command::new(pg.bin_dir().join("pg_dump"))
        .args(["--no-owner", "--dbname", &deployment.database])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", output_text(&dump));
    assert!(
        dump.stdout.len() > 1000 && String::from_utf8_lossy(&dump.stdout).contains("fs_entries"),
        "the dump holds no tree"
    );
    let found = found_in(&dump.stdout, &needles);
    assert!(found.is_empty(), "the database dump shows {found:?}");
    assert!(!node.log().contains(s3.secret_access_key()));
}

/// A value no other run or test uses.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{}", std::process::id())
}

/// Every object of the test bucket, with its bytes.
fn scan_bucket(s3: &Seaweed) -> Vec<(String, Vec<u8>)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = anyfs_objects::ObjectStoreConfig::parse(&format!("s3://{}", s3.bucket()))
        .unwrap()
        .with_endpoint(s3.endpoint())
        .with_region(s3.region())
        .with_credentials(s3.access_key_id(), s3.secret_access_key());
    let store = anyfs_objects::ObjectStore::connect(&config, runtime.handle().clone()).unwrap();
    store
        .list_for_tests("")
        .unwrap()
        .into_iter()
        // Another test's probe may be gone by now.
        .filter_map(|name| Some((name.clone(), store.read_for_tests(&name).ok()?)))
        .collect()
}
