//! `POST /v1/exec` and the MCP tool `run_command` against a live service:
//! off by default; commands work in the caller's workspace under its
//! policy, see no other tenant and nothing of the host, end at their
//! limits, and are audited without their environment or input. Needs FUSE
//! and bubblewrap (skipped without them unless `ANYFS_REQUIRE_FUSE=1`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use anyfs_server::ExecConfig;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn usable(test: &str) -> bool {
    anyfs_sandbox::usable_in_test(test)
}

fn with_exec(config: ExecConfig) -> Running {
    Running::with(|c| c.exec = Some(config))
}

fn exec(s: &Running, who: &str, body: Value) -> (StatusCode, Value) {
    let r = client()
        .post(s.url("/v1/exec"))
        .bearer_auth(who)
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

fn sh(s: &Running, who: &str, script: &str) -> Value {
    let (status, v) = exec(s, who, json!({"argv": ["sh", "-c", script]}));
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[test]
fn commands_are_refused_unless_the_operator_allows_them() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (status, v) = exec(&s, &a, json!({"argv": ["true"]}));
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-exec"),
        "{v}"
    );
    // Nor is the tool offered over MCP.
    let session = mcp_session(&s, &a);
    let (_, tools) = mcp(
        &s,
        Some(&session),
        Some(&a),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert!(!tools.to_string().contains("run_command"), "{tools}");
}

#[test]
fn a_command_works_in_the_callers_workspace() {
    if !usable("a_command_works_in_the_callers_workspace") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (_, a) = signup(&s, "alice");
    assert_eq!(
        put(&s, &a, "/data/in.txt", b"three\nlines\nhere\n"),
        StatusCode::CREATED
    );
    let script = "set -e; wc -l < data/in.txt; python3 -c 'open(\"out.txt\", \"w\").write(\"from python\\n\")'; \
                  git init -q repo && cd repo && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l; \
                  echo to-stderr >&2; exit 3";
    let v = sh(&s, &a, script);
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["stdout"], "3\n1\n", "{v}");
    assert_eq!(v["stderr"], "to-stderr\n", "{v}");
    assert_eq!(v["stdout_truncated"], false);
    assert!(v["duration_ms"].as_u64().is_some());
    // Run by root, each command has a control group: its CPU time and
    // peak memory are known.
    if rustix::process::geteuid().as_raw() == 0 {
        assert!(v["cpu_ms"].as_u64().is_some(), "{v}");
        assert!(v["memory_peak_bytes"].as_u64().unwrap() > 0, "{v}");
    }
    let r = get(&s, &a, "/v1/files/out.txt");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().unwrap(), "from python\n");
    // Input and chosen variables reach the command; nothing else does.
    let (status, v) = exec(
        &s,
        &a,
        json!({"argv": ["sh", "-c", "tr a-z A-Z; echo $GREETING; env | cut -d= -f1 | sort | tr '\\n' ' '"],
               "stdin": "quiet\n", "env": {"GREETING": "hello"}}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["stdout"], "QUIET\nhello\nGREETING HOME LANG PATH PWD ",
        "{v}"
    );
}

#[test]
fn an_agents_policy_holds_inside_its_commands() {
    if !usable("an_agents_policy_holds_inside_its_commands") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (_, a) = signup(&s, "alice");
    for (path, body) in [
        ("/secret/key.txt", &b"hidden-key"[..]),
        ("/docs/guide.md", b"guide"),
        ("/work/notes.txt", b"notes"),
    ] {
        let r = client()
            .put(s.url(&format!("/v1/files{path}")))
            .bearer_auth(&a)
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (_, _, v) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/secret/**"], "read_only": ["/docs/**"]}}),
    );
    let bot = v["token"].as_str().unwrap().to_string();
    let attempts = [
        "cat secret/key.txt",
        "ls secret",
        "grep -r hidden-key .",
        "mv secret moved && cat moved/key.txt",
        "echo changed > docs/guide.md",
        "rm docs/guide.md",
        "mv docs elsewhere",
        "mv work docs/work",
    ];
    for attempt in attempts {
        let v = sh(&s, &bot, attempt);
        assert_ne!(v["exit_code"], 0, "{attempt}: {v}");
        assert!(!v.to_string().contains("hidden-key"), "{attempt}: {v}");
    }
    let v = sh(
        &s,
        &bot,
        "cat docs/guide.md && echo more >> work/notes.txt && cat work/notes.txt",
    );
    assert_eq!(v["stdout"], "guidenotesmore\n", "{v}");
    // Untouched, as the account sees them.
    assert_eq!(
        get(&s, &a, "/v1/files/secret/key.txt").text().unwrap(),
        "hidden-key"
    );
    assert_eq!(
        get(&s, &a, "/v1/files/docs/guide.md").text().unwrap(),
        "guide"
    );
}

#[test]
fn a_command_of_one_account_never_sees_another_or_the_host() {
    if !usable("a_command_of_one_account_never_sees_another_or_the_host") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (a_id, a) = signup(&s, "alice");
    let (_, b) = signup(&s, "bob");
    let marker = format!("alice-canary-{}", std::process::id());
    let r = client()
        .put(s.url(&format!("/v1/files/{marker}.txt")))
        .bearer_auth(&a)
        .body(marker.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Alice's command runs meanwhile, so her workspace is mounted.
    let slow = {
        let url = s.url("/v1/exec");
        let a = a.clone();
        std::thread::spawn(move || {
            client()
                .post(url)
                .bearer_auth(a)
                .json(&json!({"argv": ["sleep", "4"]}))
                .timeout(Duration::from_secs(60))
                .send()
                .unwrap()
                .status()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let data = s.data.display().to_string();
    let script = format!(
        "find / -path /proc -prune -o -name '{marker}*' -print 2>/dev/null; grep -rl '{marker}' /workspace /tmp 2>/dev/null; \
         ls {data} 2>&1; ls /proc | grep -cE '^[0-9]+$'; cat /proc/mounts | grep -c anyfs; echo {a_id} > /dev/null"
    );
    let v = sh(&s, &b, &script);
    let out = v["stdout"].as_str().unwrap();
    assert!(!out.contains(&marker), "{v}");
    assert!(out.contains("No such file or directory"), "{v}");
    let procs: usize = out.lines().rev().nth(1).unwrap().trim().parse().unwrap();
    assert!(procs < 10, "{v}");
    assert_eq!(
        out.lines().last().unwrap().trim(),
        "1",
        "one workspace mount: {v}"
    );
    assert_eq!(slow.join().unwrap(), StatusCode::OK);
}

#[test]
fn limits_end_commands_and_are_reported() {
    if !usable("limits_end_commands_and_are_reported") {
        return;
    }
    let s = with_exec(ExecConfig {
        max_concurrent: 1,
        output: 1000,
        max_timeout: Duration::from_secs(20),
        ..ExecConfig::default()
    });
    let (_, a) = signup(&s, "alice");
    let started = Instant::now();
    let (status, v) = exec(
        &s,
        &a,
        json!({"argv": ["sh", "-c", "sleep 100 & sleep 100"], "timeout_s": 1}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["ended"], "timeout", "{v}");
    assert!(v["message"].as_str().unwrap().contains("time limit"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let v = sh(
        &s,
        &a,
        "head -c 100000000 /dev/zero | tr '\\0' y; echo done >&2",
    );
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(v["stdout_bytes"], 100_000_000);
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr"], "done\n");
    let v = sh(&s, &a, "python3 -c 'x = bytearray(1 << 34)'");
    assert_ne!(v["exit_code"], 0);
    assert!(v["stderr"].as_str().unwrap().contains("MemoryError"), "{v}");
    // One command at a time for this account: a second waits its turn.
    let url = s.url("/v1/exec");
    let first = {
        let a = a.clone();
        std::thread::spawn(move || {
            client()
                .post(url)
                .bearer_auth(a)
                .json(&json!({"argv": ["sleep", "3"]}))
                .send()
                .unwrap()
                .status()
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    let (status, v) = exec(&s, &a, json!({"argv": ["true"]}));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allows at once (1)"),
        "{v}"
    );
    assert_eq!(first.join().unwrap(), StatusCode::OK);
    let (status, _) = exec(&s, &a, json!({"argv": ["true"]}));
    assert_eq!(status, StatusCode::OK);
    // Longer than the operator allows: refused before anything runs.
    let (status, v) = exec(&s, &a, json!({"argv": ["true"], "timeout_s": 21}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20"),
        "{v}"
    );
}

#[test]
fn a_client_that_goes_away_stops_its_command() {
    if !usable("a_client_that_goes_away_stops_its_command") {
        return;
    }
    let s = with_exec(ExecConfig {
        max_concurrent: 1,
        ..ExecConfig::default()
    });
    let (_, a) = signup(&s, "alice");
    let gone = client()
        .post(s.url("/v1/exec"))
        .bearer_auth(&a)
        .json(&json!({"argv": ["sh", "-c", "sleep 50 & sleep 50"], "timeout_s": 60}))
        .timeout(Duration::from_secs(1))
        .send();
    assert!(gone.is_err());
    // Its slot comes free once the command is stopped.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = exec(&s, &a, json!({"argv": ["true"]}));
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "the command was never stopped");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_requests_are_explained() {
    if !usable("bad_requests_are_explained") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (_, a) = signup(&s, "alice");
    for (body, says) in [
        (json!({}), "argv"),
        (json!({"argv": []}), "argv"),
        (json!({"argv": "ls"}), "argv"),
        (json!({"argv": ["ls", 3]}), "strings"),
        (
            json!({"argv": ["ls"], "env": {"A=B": "x"}}),
            "not a variable name",
        ),
        (json!({"argv": ["ls"], "env": {"A": 1}}), "string"),
        (json!({"argv": ["ls"], "timeout_s": -1}), "positive"),
        (json!({"argv": ["ls"], "stdin": 5}), "stdin"),
        (json!({"argv": ["ls"], "shell": true}), "unknown field"),
    ] {
        let (status, v) = exec(&s, &a, body.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {v}"
        );
    }
    let (status, _) = exec(&s, "not-a-secret", json!({"argv": ["true"]}));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v = sh(&s, &a, "no-such-program");
    assert_eq!(v["exit_code"], 127);
}

#[test]
fn commands_are_audited_without_their_environment_or_input() {
    if !usable("commands_are_audited_without_their_environment_or_input") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (_, a) = signup(&s, "alice");
    let (status, _) = exec(
        &s,
        &a,
        json!({"argv": ["sh", "-c", "cat > /dev/null; echo 12345"],
               "stdin": "stdin-must-not-be-logged", "env": {"TOKEN": "env-must-not-be-logged"}}),
    );
    assert_eq!(status, StatusCode::OK);
    let audit = get(&s, &a, "/v1/audit?limit=100").text().unwrap();
    assert!(audit.contains("\"exec\""), "{audit}");
    assert!(audit.contains("cat > /dev/null; echo 12345"), "{audit}");
    assert!(audit.contains("exit_code"), "{audit}");
    assert!(audit.contains("stdout_bytes"), "{audit}");
    assert!(!audit.contains("must-not-be-logged"), "{audit}");
    assert!(!audit.contains("TOKEN"), "{audit}");
}

#[test]
fn run_command_over_mcp_follows_the_same_rules() {
    if !usable("run_command_over_mcp_follows_the_same_rules") {
        return;
    }
    let s = with_exec(ExecConfig::default());
    let (_, a) = signup(&s, "alice");
    assert_eq!(put(&s, &a, "/secret/k", b"mcp-hidden"), StatusCode::CREATED);
    let (_, _, v) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/secret/**"]}}),
    );
    let bot = v["token"].as_str().unwrap().to_string();
    let session = mcp_session(&s, &bot);
    let call = |who: &str, args: Value| {
        mcp(
            &s,
            Some(&session),
            Some(who),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                   "params": {"name": "run_command", "arguments": args}}),
        )
        .1
    };
    let (_, tools) = mcp(
        &s,
        Some(&session),
        Some(&bot),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert!(tools.to_string().contains("run_command"), "{tools}");
    let reply = call(
        &bot,
        json!({"command": "echo made > made.txt; cat secret/k; ls"}),
    );
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(!reply.to_string().contains("mcp-hidden"), "{reply}");
    assert!(text.contains("made.txt"), "{reply}");
    assert_eq!(get(&s, &a, "/v1/files/made.txt").text().unwrap(), "made\n");
    let reply = call(&bot, json!({"command": "true", "argv": ["true"]}));
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    // A wrong secret is refused before the MCP layer: no reply at all.
    let reply = call("nobody", json!({"command": "true"}));
    assert_eq!(reply, Value::Null, "{reply}");
}
