//! The service end to end over real HTTP on loopback: accounts and secrets,
//! agents and their configs, the cross-tenant matrix, policies, audit.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs_server::{Config, Service};
use common::*;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::{Value, json};

/// Every byte of the registry database, WAL included.
fn registry_bytes(data: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for name in ["registry.db", "registry.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(name)) {
            out.extend(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_are_shown_once_stored_hashed_and_rotated_at_once() {
    let s = Running::start();
    let (_, secret) = signup(&s, "alice");
    assert!(secret.starts_with("afs_acct_") && secret.len() >= 52);
    let me = json_of(get(&s, &secret, "/v1/accounts/me"));
    assert_eq!(me["name"], "alice");
    assert!(!me.to_string().contains(&secret));
    assert!(!contains(&registry_bytes(&s.data), &secret));

    let rotated = client()
        .post(s.url("/v1/accounts/me/rotate-secret"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    let new = json_of(rotated)["secret"].as_str().unwrap().to_string();
    assert_eq!(
        get(&s, &secret, "/v1/accounts/me").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&s, &new, "/v1/accounts/me").status(), StatusCode::OK);
    assert!(!contains(&registry_bytes(&s.data), &new));
    // No secret and no credential in what the service keeps anywhere.
    assert_eq!(
        get(&s, "afs_acct_forged", "/v1/accounts/me").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&s, "", "/v1/files/").status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn agent_configs_are_encrypted_and_redacted_at_depth_and_patches_keep_placeholders() {
    let s = Running::start();
    let (_, secret) = signup(&s, "alice");
    let (id, token, view) = agent(
        &s,
        &secret,
        json!({
            "name": "coder",
            "config": {
                "model": "big",
                "openai_api_key": "sk-live-CANARY-1",
                "tools": [{"name": "search", "auth": {"access_token": "tok-CANARY-2"}}],
                "db": {"password": "pw-CANARY-3", "host": "db.internal"}
            },
            "policy": {}
        }),
    );
    assert!(token.starts_with("afs_agent_"));
    for shown in [
        view.clone(),
        json_of(get(&s, &secret, &format!("/v1/agents/{id}"))),
        json_of(get(&s, &secret, "/v1/agents")),
    ] {
        let text = shown.to_string();
        for canary in ["sk-live-CANARY-1", "tok-CANARY-2", "pw-CANARY-3"] {
            assert!(!text.contains(canary), "{canary} in a response");
        }
    }
    assert_eq!(view["config"]["openai_api_key"], "********");
    // `auth` names a secret: what it holds is hidden whole.
    assert_eq!(view["config"]["tools"][0]["auth"], "********");
    assert_eq!(view["config"]["db"]["host"], "db.internal");
    let stored = registry_bytes(&s.data);
    for canary in [
        "sk-live-CANARY-1",
        "tok-CANARY-2",
        "pw-CANARY-3",
        "db.internal",
        &token,
    ] {
        assert!(!contains(&stored, canary), "{canary} stored in plaintext");
    }
    // Send back what was shown, with one change: placeholders keep values.
    let mut patch = json!({"config": view["config"].clone()});
    patch["config"]["db"]["host"] = json!("db2.internal");
    patch["config"]["model"] = Value::Null;
    let r = client()
        .patch(s.url(&format!("/v1/agents/{id}")))
        .bearer_auth(&secret)
        .json(&patch)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let after = json_of(r);
    assert_eq!(after["config"]["db"]["host"], "db2.internal");
    assert!(after["config"].get("model").is_none(), "null deletes");
    assert_eq!(after["config"]["db"]["password"], "********");
    assert_eq!(after["config"]["tools"][0]["auth"], "********");
    // The stored secrets survived the round trip: rotate nothing, re-read the
    // raw config through a second patch that replaces one secret.
    let r = client()
        .patch(s.url(&format!("/v1/agents/{id}")))
        .bearer_auth(&secret)
        .json(&json!({"config": {"openai_api_key": "sk-live-CANARY-4"}}))
        .send()
        .unwrap();
    assert_eq!(json_of(r)["config"]["openai_api_key"], "********");
    assert!(!contains(&registry_bytes(&s.data), "sk-live-CANARY-4"));
}

#[test]
fn tenants_never_see_each_other() {
    let s = Running::start();
    let (a_id, a) = signup(&s, "alice");
    let (_, b) = signup(&s, "bob");
    let (a_agent, a_token, _) = agent(&s, &a, json!({"name": "a-bot"}));
    let (_, b_token, _) = agent(&s, &b, json!({"name": "b-bot"}));
    assert_eq!(
        put(&s, &a, "/private/plan.txt", b"alice's plan"),
        StatusCode::CREATED
    );

    for intruder in [&b, &b_token] {
        // Another tenant's agent: as if it did not exist.
        for path in [
            format!("/v1/agents/{a_agent}"),
            format!("/v1/agents/{a_agent}/rotate-token"),
        ] {
            let got = if path.ends_with("token") {
                client()
                    .post(s.url(&path))
                    .bearer_auth(intruder)
                    .send()
                    .unwrap()
            } else {
                get(&s, intruder, &path)
            };
            assert!(
                got.status() == StatusCode::NOT_FOUND || got.status() == StatusCode::FORBIDDEN,
                "{path}: {}",
                got.status()
            );
            assert!(!got.text().unwrap().contains("a-bot"));
        }
        let patched = client()
            .patch(s.url(&format!("/v1/agents/{a_agent}")))
            .bearer_auth(intruder)
            .json(&json!({"name": "pwned"}))
            .send()
            .unwrap();
        assert!(matches!(
            patched.status(),
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN
        ));
        let deleted = client()
            .delete(s.url(&format!("/v1/agents/{a_agent}")))
            .bearer_auth(intruder)
            .send()
            .unwrap();
        assert!(matches!(
            deleted.status(),
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN
        ));
        // The files API is the intruder's own workspace: alice's file is not there,
        // whatever the path says.
        for path in [
            "/v1/files/private/plan.txt",
            "/v1/files/../private/plan.txt",
            "/v1/files/%2e%2e/private/plan.txt",
            &format!("/v1/files/../../workspaces/{a_id}.db"),
        ] {
            let got = get(&s, intruder, path);
            assert_ne!(got.status(), StatusCode::OK, "{path}");
            assert!(!got.text().unwrap().contains("alice's plan"), "{path}");
        }
        let listing = json_of(get(&s, intruder, "/v1/files/"));
        assert!(!listing.to_string().contains("private"));
        let audit = json_of(get(&s, intruder, "/v1/audit"));
        assert!(!audit.to_string().contains(&a_id));
        // An account id in the request changes nothing.
        let got = client()
            .get(s.url("/v1/files/private/plan.txt"))
            .bearer_auth(intruder)
            .header("x-account-id", &a_id)
            .send()
            .unwrap();
        assert_eq!(got.status(), StatusCode::NOT_FOUND);
    }
    // The fs routes act on the caller's own workspace only.
    for intruder in [&b, &b_token] {
        let stat = get(&s, intruder, "/v1/fs/stat?path=/private/plan.txt");
        assert_eq!(stat.status(), StatusCode::NOT_FOUND);
        for (route, body) in [
            (
                "/v1/fs/copy",
                json!({"from": "/private/plan.txt", "to": "/stolen.txt"}),
            ),
            (
                "/v1/fs/move",
                json!({"from": "/private/plan.txt", "to": "/stolen.txt"}),
            ),
        ] {
            let r = client()
                .post(s.url(route))
                .bearer_auth(intruder)
                .json(&body)
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{route}");
        }
        let del = client()
            .delete(s.url("/v1/files/private/plan.txt"))
            .bearer_auth(intruder)
            .send()
            .unwrap();
        assert_eq!(del.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(
        get(&s, &a, "/v1/files/private/plan.txt").text().unwrap(),
        "alice's plan"
    );
    // The admin routes refuse tenants, whatever they ask.
    for who in [&a, &a_token, &b, &b_token] {
        assert_eq!(
            get(&s, who, "/v1/admin/accounts").status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&s, who, &format!("/v1/admin/accounts/{a_id}")).status(),
            StatusCode::FORBIDDEN
        );
        let r = client()
            .post(s.url(&format!("/v1/admin/accounts/{a_id}/suspend")))
            .bearer_auth(who)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = client()
            .delete(s.url(&format!("/v1/admin/accounts/{a_id}")))
            .bearer_auth(who)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(get(&s, &a, "/v1/accounts/me").status(), StatusCode::OK);
    // Alice's own agent reads her file; it cannot manage agents or the account.
    assert_eq!(
        get(&s, &a_token, "/v1/files/private/plan.txt")
            .text()
            .unwrap(),
        "alice's plan"
    );
    assert_eq!(
        get(&s, &a_token, "/v1/agents").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&s, &a_token, "/v1/accounts/me").status(),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn agent_policies_hold_over_http() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    assert_eq!(
        put(&s, &a, "/skills/fmt/SKILL.md", b"format code"),
        StatusCode::CREATED
    );
    assert_eq!(put(&s, &a, "/secrets/key", b"k"), StatusCode::CREATED);
    assert_eq!(put(&s, &a, "/docs/ro.txt", b"r"), StatusCode::CREATED);
    let (_, t, _) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/secrets/**"], "read_only": ["/docs/**"], "quota": 200000}}),
    );
    // Skills: readable, never writable by agents.
    assert_eq!(
        get(&s, &t, "/v1/files/skills/fmt/SKILL.md").text().unwrap(),
        "format code"
    );
    assert_eq!(
        put(&s, &t, "/skills/fmt/SKILL.md", b"x"),
        StatusCode::FORBIDDEN
    );
    assert_eq!(put(&s, &t, "/docs/ro.txt", b"x"), StatusCode::FORBIDDEN);
    assert_eq!(get(&s, &t, "/v1/files/docs/ro.txt").text().unwrap(), "r");
    let denied = get(&s, &t, "/v1/files/secrets/key");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body = json_of(denied);
    assert_eq!(body["error"]["kind"], "AccessDenied");
    assert_eq!(body["error"]["path"], "/secrets/key");
    assert!(
        !json_of(get(&s, &t, "/v1/files/"))
            .to_string()
            .contains("secrets")
    );
    // Quota: 507, nothing half-written.
    let big = vec![7u8; 300_000];
    let r = client()
        .put(s.url("/v1/files/big.bin"))
        .bearer_auth(&t)
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    // The owner is not bound by the agent's policy.
    assert_eq!(get(&s, &a, "/v1/files/secrets/key").text().unwrap(), "k");
    // Ranges and the rest of the files API.
    assert_eq!(
        put(&s, &t, "/work/a.txt", b"0123456789"),
        StatusCode::CREATED
    );
    let part = client()
        .get(s.url("/v1/files/work/a.txt"))
        .bearer_auth(&t)
        .header("range", "bytes=2-4")
        .send()
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.text().unwrap(), "234");
    let cp = client()
        .post(s.url("/v1/fs/copy"))
        .bearer_auth(&t)
        .json(&json!({"from": "/work/a.txt", "to": "/work/copy.txt"}))
        .send()
        .unwrap();
    assert_eq!(cp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&s, &t, "/v1/files/work/copy.txt").text().unwrap(),
        "0123456789"
    );
    // A bad path is 400, naming the problem.
    let bad = get(&s, &t, "/v1/files/a%00b");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(bad)["error"]["kind"], "InvalidPath");
    let mv = client()
        .post(s.url("/v1/fs/move"))
        .bearer_auth(&t)
        .json(&json!({"from": "/work/a.txt", "to": "/work/b.txt"}))
        .send()
        .unwrap();
    assert_eq!(mv.status(), StatusCode::NO_CONTENT);
    let stat = json_of(get(&s, &t, "/v1/fs/stat?path=/work/b.txt"));
    assert_eq!(stat["size"], 10);
    let rm = client()
        .delete(s.url("/v1/files/work"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(rm.status(), StatusCode::CONFLICT);
    let rm = client()
        .delete(s.url("/v1/files/work?recursive=true"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(rm.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&s, &t, "/v1/files/work/b.txt").status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn signups_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::on(dir.path(), 2);
    signup(&s, "one");
    signup(&s, "two");
    let r = client()
        .post(s.url("/v1/accounts"))
        .json(&json!({"name": "three"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
}

#[test]
fn admin_suspends_and_deletes_and_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Running::on(dir.path(), 100);
    let (a_id, a) = signup(&s, "alice");
    let (_, t, _) = agent(&s, &a, json!({"name": "bot", "config": {"api_key": "k"}}));
    assert_eq!(
        put(&s, &t, "/kept.txt", b"kept across restarts"),
        StatusCode::CREATED
    );
    s.stop();
    let mut s = Running::on(dir.path(), 100);
    assert_eq!(
        get(&s, &t, "/v1/files/kept.txt").text().unwrap(),
        "kept across restarts"
    );
    let list = json_of(get(&s, ADMIN, "/v1/admin/accounts"));
    assert_eq!(list["accounts"][0]["id"], a_id.as_str());
    // Alice's workspace was opened to read the file.
    assert_eq!(list["open_workspaces"], 1);
    let r = client()
        .post(s.url(&format!("/v1/admin/accounts/{a_id}/suspend")))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&s, &a, "/v1/accounts/me").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&s, &t, "/v1/files/kept.txt").status(),
        StatusCode::FORBIDDEN
    );
    let r = client()
        .delete(s.url(&format!("/v1/admin/accounts/{a_id}")))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    let removed = json_of(r);
    assert_eq!(removed["removed"]["agents"], 1);
    assert_eq!(removed["removed"]["workspace"], true);
    assert!(!dir.path().join(format!("workspaces/{a_id}.db")).exists());
    assert_eq!(
        get(&s, &t, "/v1/files/kept.txt").status(),
        StatusCode::UNAUTHORIZED
    );
    s.stop();
    // The audit chain holds, and an edit is caught.
    let n = anyfs_server::verify_chain(&dir.path().join("registry.db")).unwrap();
    assert!(n > 5);
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    assert!(
        conn.execute("UPDATE audit SET outcome = 'ok' WHERE seq = 2", [])
            .is_err(),
        "append-only"
    );
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET action = 'nothing' WHERE seq = 2;",
    )
    .unwrap();
    drop(conn);
    let err = anyfs_server::verify_chain(&dir.path().join("registry.db"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("record 2"), "{err}");
}

#[test]
fn workspaces_are_encrypted_at_rest() {
    let s = Running::start();
    let (a_id, a) = signup(&s, "alice");
    assert_eq!(
        put(
            &s,
            &a,
            "/diary/entry-CANARY.txt",
            b"the plaintext CANARY content"
        ),
        StatusCode::CREATED
    );
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(s.data.join(format!("workspaces/{a_id}.db{suffix}"))) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    assert!(!contains(&bytes, "CANARY"));
}

#[test]
fn executions_belong_to_their_account_and_agent() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, b) = signup(&s, "bob");
    let (_, a_bot, _) = agent(&s, &a, json!({"name": "bot"}));
    let (_, a_bot2, _) = agent(&s, &a, json!({"name": "bot2"}));
    let created = client()
        .post(s.url("/v1/executions"))
        .bearer_auth(&a_bot)
        .json(&json!({"input": "fix the bug", "tool_calls": [{"tool": "read", "path": "/src"}], "memory": {"step": 1}}))
        .send()
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let exec = json_of(created);
    let id = exec["id"].as_str().unwrap().to_string();
    let path = format!("/v1/executions/{id}");
    // Its account and its agent see it; the other agent, and another account, do not.
    assert_eq!(json_of(get(&s, &a, &path))["input"], "fix the bug");
    assert_eq!(json_of(get(&s, &a_bot, &path))["memory"]["step"], 1);
    for other in [&a_bot2, &b] {
        let got = get(&s, other, &path);
        assert_eq!(got.status(), StatusCode::NOT_FOUND);
        assert!(!got.text().unwrap().contains("fix the bug"));
        let listed = json_of(get(&s, other, "/v1/executions"));
        assert_eq!(listed["executions"].as_array().unwrap().len(), 0);
    }
    // The same 404 as for an id that does not exist.
    let missing = get(&s, &b, "/v1/executions/exec_doesnotexist");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let patched = client()
        .patch(s.url(&path))
        .bearer_auth(&a_bot)
        .json(&json!({"output": "done", "memory": {"step": 2}}))
        .send()
        .unwrap();
    let patched = json_of(patched);
    assert_eq!(
        (patched["output"].as_str(), patched["input"].as_str()),
        (Some("done"), Some("fix the bug"))
    );
    // Stored sealed: the registry holds no plaintext of it.
    assert!(!contains(&registry_bytes(&s.data), "fix the bug"));
    let del = client()
        .delete(s.url(&path))
        .bearer_auth(&b)
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::NOT_FOUND);
    let del = client()
        .delete(s.url(&path))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
}

/// The document passes a validator nobody here wrote
/// (`openapi-spec-validator`): every path parameter declared, every
/// reference resolved.
#[test]
fn the_openapi_document_is_valid_openapi() {
    let Some(python) = anyfs_services::available(anyfs_services::python_clients()) else {
        return;
    };
    let s = Running::start();
    let doc = client()
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc).unwrap();
    let out = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let doc = json_of(client().get(s.url("/openapi.json")).send().unwrap());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let url = s.url(
                &path
                    .replace("{id}", "x")
                    .replace("{path}", "x")
                    .replace("{name}", "x"),
            );
            let req = match method.as_str() {
                "get" => client().get(&url),
                "post" => client().post(&url),
                "put" => client().put(&url),
                "patch" => client().patch(&url),
                "delete" => client().delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let r = req.bearer_auth("afs_acct_nobody").send().unwrap();
            let status = r.status();
            let body = r.text().unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status != StatusCode::NOT_FOUND || body.contains("error"),
                "{method} {path}: no such route"
            );
        }
    }
    // And nothing with a valid secret answers 405 for a documented method.
    assert_eq!(get(&s, &a, "/v1/files/").status(), StatusCode::OK);
}

/// A .tar.gz with raw entry names (so that hostile names can be written).
fn tar_gz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn install(s: &Running, who: &str, name: &str, bundle: Vec<u8>) -> (StatusCode, Value) {
    let r = client()
        .put(s.url(&format!("/v1/skills/{name}")))
        .bearer_auth(who)
        .body(bundle)
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn skill_bundles_install_whole_or_not_at_all() {
    use tar::EntryType as T;
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, bot, _) = agent(&s, &a, json!({"name": "bot"}));
    let good = tar_gz(&[
        ("fmt/", T::Directory, b"", None),
        ("fmt/SKILL.md", T::Regular, b"# Format", None),
        ("fmt/scripts/run.sh", T::Regular, b"echo run", None),
    ]);
    let (status, body) = install(&s, &a, "fmt", good);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["files"], 2);
    assert_eq!(
        get(&s, &bot, "/v1/files/skills/fmt/fmt/SKILL.md")
            .text()
            .unwrap(),
        "# Format"
    );
    assert_eq!(
        put(&s, &bot, "/skills/fmt/fmt/SKILL.md", b"x"),
        StatusCode::FORBIDDEN
    );
    // Agents cannot install bundles.
    assert_eq!(
        install(&s, &bot, "mine", tar_gz(&[("a", T::Regular, b"a", None)])).0,
        StatusCode::FORBIDDEN
    );

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            tar_gz(&[
                ("ok.txt", T::Regular, b"fine", None),
                ("../../escape.txt", T::Regular, b"out", None),
            ]),
        ),
        (
            "absolute",
            tar_gz(&[("/etc/passwd", T::Regular, b"root", None)]),
        ),
        (
            "backslash",
            tar_gz(&[("..\\..\\escape.txt", T::Regular, b"out", None)]),
        ),
        (
            "symlink",
            tar_gz(&[("link", T::Symlink, b"", Some("../../../private"))]),
        ),
        (
            "hardlink",
            tar_gz(&[("hl", T::Link, b"", Some("/etc/passwd"))]),
        ),
        ("fifo", tar_gz(&[("pipe", T::Fifo, b"", None)])),
        ("garbage", b"not an archive at all".to_vec()),
    ];
    for (name, bundle) in hostile {
        let (status, body) = install(&s, &a, name, bundle);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"]["kind"], "BundleRefused", "{name}");
        assert_eq!(
            get(&s, &a, &format!("/v1/files/skills/{name}")).status(),
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }
    // Nothing escaped and nothing was left half-written.
    let root = json_of(get(&s, &a, "/v1/files/"));
    assert!(!root.to_string().contains("escape"), "{root}");
    let skills = json_of(get(&s, &a, "/v1/files/skills"));
    assert_eq!(skills["entries"].as_array().unwrap().len(), 1, "{skills}");
    // Bad names for the bundle itself.
    for bad in ["..", ".", "a%2Fb"] {
        let (status, _) = install(&s, &a, bad, tar_gz(&[("x", T::Regular, b"x", None)]));
        assert_ne!(status, StatusCode::CREATED, "{bad}");
    }

    // Zip: good, then `..` and a symlink entry.
    let zip_of = |files: &[(&str, &[u8], Option<u32>)]| {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in files {
            let mut options = zip::write::SimpleFileOptions::default();
            if let Some(mode) = mode {
                options = options.unix_permissions(*mode);
            }
            match mode {
                Some(m) if m & 0o170000 == 0o120000 => {
                    w.add_symlink(*name, std::str::from_utf8(data).unwrap(), options)
                        .unwrap();
                }
                _ => {
                    w.start_file(*name, options).unwrap();
                    std::io::Write::write_all(&mut w, data).unwrap();
                }
            }
        }
        w.finish().unwrap().into_inner()
    };
    let (status, body) = install(
        &s,
        &a,
        "lint",
        zip_of(&[("lint/SKILL.md", b"# Lint", None)]),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        get(&s, &a, "/v1/files/skills/lint/lint/SKILL.md")
            .text()
            .unwrap(),
        "# Lint"
    );
    let (status, _) = install(
        &s,
        &a,
        "zipdot",
        zip_of(&[("a.txt", b"a", None), ("../../z.txt", b"z", None)]),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = install(
        &s,
        &a,
        "ziplink",
        zip_of(&[("l", b"/etc/passwd", Some(0o120777))]),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&s, &a, "/v1/files/skills/zipdot").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s, &a, "/v1/files/z.txt").status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn an_agent_over_its_rate_is_told_when_to_retry() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, bot, _) = agent(&s, &a, json!({"name": "bot", "policy": {"rate": 5}}));
    let mut limited = None;
    for _ in 0..50 {
        let r = get(&s, &bot, "/v1/files/");
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the rate limit never applied");
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(json_of(r)["error"]["kind"], "RateLimitExceeded");
    // The account itself is not limited by its agent's policy.
    assert_eq!(get(&s, &a, "/v1/files/").status(), StatusCode::OK);
}

#[test]
fn a_new_master_key_encrypts_while_the_old_one_still_decrypts() {
    use anyfs::crypto::Key;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
    let open = |keys: Vec<Key>| {
        let mut config = Config::new(dir.path());
        config.master_keys = keys;
        config.admin_secret = Some(ADMIN.into());
        Service::open(config).unwrap().service
    };
    // Written under the old key…
    let (account, secret, agent_id) = {
        let service = open(vec![old.clone()]);
        let s = Running::serving(service, dir.path());
        let (account, secret) = signup(&s, "alice");
        let (agent_id, _, _) = agent(
            &s,
            &secret,
            json!({"name": "bot", "config": {"api_key": "sk-OLD"}}),
        );
        assert_eq!(
            put(&s, &secret, "/kept.txt", b"under the old key"),
            StatusCode::CREATED
        );
        (account, secret, agent_id)
    };
    // …read with the new key first in the list.
    let service = open(vec![new.clone(), old.clone()]);
    assert_eq!(service.key_count(), 2);
    let s = Running::serving(service, dir.path());
    assert_eq!(
        get(&s, &secret, "/v1/files/kept.txt").text().unwrap(),
        "under the old key"
    );
    let view = json_of(get(&s, &secret, &format!("/v1/agents/{agent_id}")));
    assert_eq!(view["config"]["api_key"], "********");
    drop(s);
    // Without the old key, the old data does not open: nothing is readable.
    let service = open(vec![new]);
    let s = Running::serving(service, dir.path());
    assert_ne!(
        get(&s, &secret, "/v1/files/kept.txt").status(),
        StatusCode::OK
    );
    let _ = account;
}

#[test]
fn agents_use_their_workspace_through_mcp_tools() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, b) = signup(&s, "bob");
    let (_, bot, _) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/private/**"]}}),
    );
    assert_eq!(put(&s, &a, "/private/key", b"k"), StatusCode::CREATED);
    let session = mcp_session(&s, &bot);
    let (_, tools) = mcp(
        &s,
        Some(&session),
        Some(&bot),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"read_file") && names.contains(&"write_file"),
        "{names:?}"
    );
    let call = |bearer: Option<&str>, id: u32, name: &str, args: Value| {
        mcp(
            &s,
            Some(&session),
            bearer,
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}}),
        )
        .1["result"]
            .clone()
    };
    let wrote = call(
        Some(&bot),
        3,
        "write_file",
        json!({"path": "/notes/todo.md", "content": "ship it"}),
    );
    assert_eq!(wrote["isError"], false, "{wrote}");
    let read = call(
        Some(&bot),
        4,
        "read_file",
        json!({"path": "/notes/todo.md"}),
    );
    assert_eq!(read["content"][0]["text"], "ship it");
    // The file is in alice's workspace, as the HTTP API sees it.
    assert_eq!(
        get(&s, &a, "/v1/files/notes/todo.md").text().unwrap(),
        "ship it"
    );
    // No secret: refused. Another tenant: its own (empty) workspace. Policy: holds.
    // No secret: refused before the MCP layer (no reply at all).
    let anon = call(None, 5, "read_file", json!({"path": "/notes/todo.md"}));
    assert_eq!(anon, Value::Null);
    let other = call(Some(&b), 6, "read_file", json!({"path": "/notes/todo.md"}));
    assert_eq!(other["isError"], true);
    assert!(!other.to_string().contains("ship it"));
    let denied = call(Some(&bot), 7, "read_file", json!({"path": "/private/key"}));
    assert_eq!(denied["isError"], true);
    assert!(denied.to_string().contains("access denied"), "{denied}");
    let escape = call(
        Some(&bot),
        8,
        "read_file",
        json!({"path": "/../../../etc/passwd"}),
    );
    assert_eq!(escape["isError"], true);
    // Audited like the HTTP API.
    let audit = json_of(get(&s, &a, "/v1/audit"));
    assert!(audit.to_string().contains("mcp write_file"));
}

#[test]
fn a_config_moved_to_another_row_does_not_decrypt() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (one, _, _) = agent(
        &s,
        &a,
        json!({"name": "one", "config": {"api_key": "sk-ONE"}}),
    );
    let (two, _, _) = agent(
        &s,
        &a,
        json!({"name": "two", "config": {"api_key": "sk-TWO"}}),
    );
    let conn = rusqlite::Connection::open(s.data.join("registry.db")).unwrap();
    let sealed: Vec<u8> = conn
        .query_row("SELECT config FROM agents WHERE id = ?1", [&one], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute(
        "UPDATE agents SET config = ?1 WHERE id = ?2",
        rusqlite::params![sealed, two],
    )
    .unwrap();
    drop(conn);
    let got = get(&s, &a, &format!("/v1/agents/{two}"));
    assert_eq!(got.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = got.text().unwrap();
    assert!(
        !text.contains("sk-ONE") && !text.contains("sk-TWO"),
        "{text}"
    );
    // The untouched agent still reads.
    assert_eq!(
        get(&s, &a, &format!("/v1/agents/{one}")).status(),
        StatusCode::OK
    );
}

#[test]
fn a_download_in_progress_keeps_its_workspace_open() {
    use std::io::Read;
    let s = Running::capped(1);
    let (_, alice) = signup(&s, "alice");
    // Larger than everything the loopback socket buffers can hold (up to
    // 32 MiB received plus 4 MiB sent here), so the service cannot have
    // sent the whole file while the client has read only its start.
    let body: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let r = client()
        .put(s.url("/v1/files/big.bin"))
        .bearer_auth(&alice)
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut download = get(&s, &alice, "/v1/files/big.bin");
    let mut got = vec![0u8; 64 << 10];
    download.read_exact(&mut got).unwrap();
    // Other accounts' requests close idle workspaces: not one being read.
    let (_, bob) = signup(&s, "bob");
    assert_eq!(put(&s, &bob, "/x.txt", b"x"), StatusCode::CREATED);
    let open =
        |s: &Running| json_of(get(s, ADMIN, "/v1/admin/accounts"))["open_workspaces"].clone();
    assert_eq!(
        open(&s),
        2,
        "alice's workspace was closed under her download"
    );
    download.read_to_end(&mut got).unwrap();
    assert!(got == body, "the download changed");
    drop(download);
    // Once done, it is closed like any idle one.
    let start = std::time::Instant::now();
    for round in 0.. {
        // Each new workspace opened makes room.
        let (_, someone) = signup(&s, &format!("carol{round}"));
        assert_eq!(put(&s, &someone, "/y.txt", b"y"), StatusCode::CREATED);
        if open(&s) == 1 {
            break;
        }
        // The stream's last piece may still be on its way out.
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

// ------------------------------------------------- audit visibility and paging

/// Every record of `GET /v1/audit` from `who`, page by page.
fn audit_pages(s: &Running, who: &str, query: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut records = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("/v1/audit?limit={limit}{query}");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json_of(get(s, who, &url));
        let got = page["records"].as_array().unwrap().clone();
        assert!(got.len() <= limit, "{url}: {} records", got.len());
        records.extend(got);
        pages += 1;
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 1000, "the cursor never ends");
    }
    (records, pages)
}

#[test]
fn an_agent_sees_only_its_own_audit_records_of_paths_its_policy_shows() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (bot_id, bot, _) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/private/**"]}}),
    );
    let (_, sibling, _) = agent(&s, &a, json!({"name": "sibling"}));
    assert_eq!(
        put(&s, &a, "/private/salary-2026.txt", b"a lot"),
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, &sibling, "/sibling-note.txt", b"mine"),
        StatusCode::CREATED
    );
    assert_eq!(put(&s, &bot, "/notes/bot.txt", b"b"), StatusCode::CREATED);
    assert_eq!(
        get(&s, &bot, "/v1/files/private/salary-2026.txt").status(),
        StatusCode::FORBIDDEN
    );
    // Asked for through `..`: the record holds where it resolves to.
    let sneaky = client()
        .put(s.url("/v1/files/notes/..%2Fprivate%2Fsneaky.txt"))
        .bearer_auth(&bot)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(sneaky.status(), StatusCode::FORBIDDEN);

    let (seen, _) = audit_pages(&s, &bot, "", 1000);
    let shown = Value::Array(seen.clone()).to_string();
    assert!(shown.contains("/notes/bot.txt"), "{shown}");
    for hidden in ["private", "salary", "sneaky", "sibling"] {
        assert!(
            !shown.contains(hidden),
            "{hidden} shown to the agent: {shown}"
        );
    }
    for r in &seen {
        assert_eq!(r["actor"], format!("agent:{bot_id}"), "{r}");
    }
    // The owner sees everything of the account, resolved paths included.
    let (all, _) = audit_pages(&s, &a, "", 1000);
    let shown = Value::Array(all.clone()).to_string();
    for visible in ["salary-2026", "sibling-note", "/notes/bot.txt"] {
        assert!(shown.contains(visible), "{visible}: {shown}");
    }
    let traversal = all
        .iter()
        .find(|r| r["path"] == "/notes/../private/sneaky.txt")
        .unwrap_or_else(|| panic!("no record of the traversal: {shown}"));
    assert_eq!(traversal["resolved_path"], "/private/sneaky.txt");
}

#[test]
fn the_audit_is_paged_and_filtered() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (bot_id, bot, _) = agent(&s, &a, json!({"name": "bot"}));
    let before = registry_now();
    for i in 0..7 {
        assert_eq!(
            put(&s, &a, &format!("/f{i}.txt"), b"x"),
            StatusCode::CREATED
        );
    }
    assert_eq!(put(&s, &bot, "/by-bot.txt", b"x"), StatusCode::CREATED);
    assert_eq!(
        get(&s, &bot, "/v1/files/missing.txt").status(),
        StatusCode::NOT_FOUND
    );
    let (whole, pages) = audit_pages(&s, &a, "", 1000);
    assert_eq!(pages, 1);
    let (paged, pages) = audit_pages(&s, &a, "", 2);
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(paged, whole, "pages put together are the whole log");
    let seqs: Vec<i64> = paged.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    // Filters: operation, outcome, agent, time.
    let (writes, _) = audit_pages(&s, &a, "&operation=write", 3);
    assert_eq!(writes.len(), 8);
    assert!(writes.iter().all(|r| r["action"] == "write"));
    let (failed, _) = audit_pages(&s, &a, "&outcome=NotFound", 3);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["path"], "/missing.txt");
    let (by_bot, _) = audit_pages(&s, &a, &format!("&agent={bot_id}"), 3);
    assert_eq!(by_bot.len(), 2);
    let (since, _) = audit_pages(&s, &a, &format!("&since={before}"), 100);
    assert!(since.len() >= 9);
    let (until, _) = audit_pages(&s, &a, &format!("&until={}", before - 10), 100);
    assert!(until.is_empty());
    // A huge limit is capped, a bad one is a JSON 400.
    let page = json_of(get(&s, &a, "/v1/audit?limit=1000000"));
    assert!(page["records"].as_array().unwrap().len() <= 1000);
    let bad = get(&s, &a, "/v1/audit?limit=lots");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(bad)["error"]["kind"].is_string());
}

fn registry_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn audit_paths_and_agent_policies_are_encrypted_at_rest_and_the_chain_still_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Running::on(dir.path(), 100);
    let (_, a) = signup(&s, "alice");
    let (_, _, _) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"deny": ["/POLICYCANARY/**"], "read_only": ["/ROCANARY/**"]}}),
    );
    assert_eq!(
        put(&s, &a, "/PATHCANARY/report.txt", b"x"),
        StatusCode::CREATED
    );
    // Still shown to the owner.
    let audit = json_of(get(&s, &a, "/v1/audit")).to_string();
    assert!(audit.contains("/PATHCANARY/report.txt"), "{audit}");
    s.stop();
    let bytes = registry_bytes(dir.path());
    for canary in ["PATHCANARY", "POLICYCANARY", "ROCANARY"] {
        assert!(!contains(&bytes, canary), "{canary} in the registry");
    }
    // The chain covers the sealed paths: an edit there is caught.
    let db = dir.path().join("registry.db");
    let n = anyfs_server::verify_chain(&db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (seq, sealed): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT seq, sealed FROM audit WHERE sealed IS NOT NULL ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut changed = sealed.clone();
    changed[20] ^= 1;
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    conn.execute(
        "UPDATE audit SET sealed = ?1 WHERE seq = ?2",
        rusqlite::params![changed, seq],
    )
    .unwrap();
    drop(conn);
    let err = anyfs_server::verify_chain(&db).unwrap_err().to_string();
    assert!(
        err.contains(&format!("record {seq}")),
        "{err} ({n} records)"
    );
}

// ------------------------------------------- one service, no lost audit record

#[test]
fn a_second_service_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = Config::new(dir.path());
        c.admin_secret = Some(ADMIN.into());
        c
    };
    let first = Service::open(config()).unwrap();
    let err = Service::open(config()).unwrap_err().to_string();
    assert!(err.contains("another"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    drop(first);
    // Once the first is gone, the directory is free again.
    Service::open(config()).unwrap();
}

/// The service on `data` with these master keys.
fn with_keys(
    data: &Path,
    keys: Vec<anyfs::crypto::Key>,
) -> Result<std::sync::Arc<Service>, String> {
    let mut config = Config::new(data);
    config.master_keys = keys;
    config.admin_secret = Some(ADMIN.into());
    Service::open(config)
        .map(|o| o.service)
        .map_err(|e| e.to_string())
}

#[test]
fn a_wrong_master_key_is_refused_at_start_naming_which() {
    use anyfs::crypto::Key;
    let dir = tempfile::tempdir().unwrap();
    let open = |keys: Vec<Key>| with_keys(dir.path(), keys);
    let (right, wrong, other) = (
        Key::from_bytes([1; 32]),
        Key::from_bytes([7; 32]),
        Key::from_bytes([8; 32]),
    );
    {
        let s = Running::serving(open(vec![right.clone()]).unwrap(), dir.path());
        let (_, a) = signup(&s, "alice");
        assert_eq!(put(&s, &a, "/f.txt", b"x"), StatusCode::CREATED);
    }
    let err = open(vec![wrong.clone()]).unwrap_err();
    assert!(err.contains("key 1"), "{err}");
    assert!(!err.contains("wrong password"), "{err}");
    let err = open(vec![wrong.clone(), other]).unwrap_err();
    assert!(err.contains("key 1") && err.contains("key 2"), "{err}");
    // A new key in front of the right one is a rotation, not a mistake.
    open(vec![wrong, right]).unwrap();
}

#[test]
fn a_data_directory_from_before_key_checks_still_catches_a_wrong_key() {
    use anyfs::crypto::Key;
    let dir = tempfile::tempdir().unwrap();
    let open = |keys: Vec<Key>| with_keys(dir.path(), keys);
    {
        let s = Running::serving(open(vec![Key::from_bytes([1; 32])]).unwrap(), dir.path());
        let (_, a) = signup(&s, "alice");
        assert_eq!(put(&s, &a, "/f.txt", b"x"), StatusCode::CREATED);
    }
    // As an older version left it: no key check stored.
    let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
    conn.execute("DELETE FROM key_checks", []).unwrap();
    drop(conn);
    let err = open(vec![Key::from_bytes([7; 32])]).unwrap_err();
    assert!(err.contains("key 1"), "{err}");
    open(vec![Key::from_bytes([1; 32])]).unwrap();
}

#[test]
fn operations_are_refused_while_their_audit_records_cannot_be_written() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    assert_eq!(put(&s, &a, "/before.txt", b"x"), StatusCode::CREATED);
    // The audit table refuses every insert, as a full disk would.
    let conn = rusqlite::Connection::open(s.data.join("registry.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute_batch(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let name = format!("/during-{i}.txt");
        let status = client()
            .put(s.url(&format!("/v1/files{name}")))
            .bearer_auth(&a)
            .body("x")
            .send()
            .unwrap()
            .status();
        if status == StatusCode::CREATED {
            acknowledged.push(name);
        } else {
            refused = Some(status);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(refused, Some(StatusCode::SERVICE_UNAVAILABLE));
    let r = get(&s, &a, "/v1/files/before.txt");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(r)["error"]["kind"], "AuditUnavailable");
    // Repaired: the service works again and nothing acknowledged is missing.
    conn.execute_batch("DROP TRIGGER audit_broken;").unwrap();
    let start = std::time::Instant::now();
    while put(&s, &a, "/after.txt", b"x") != StatusCode::CREATED {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = json_of(get(&s, &a, "/v1/audit?limit=1000")).to_string();
    for name in acknowledged
        .iter()
        .map(String::as_str)
        .chain(["/after.txt"])
    {
        assert!(log.contains(&format!("\"{name}\"")), "{name} not audited");
    }
    drop(conn);
    anyfs_server::verify_chain(&s.data.join("registry.db")).unwrap();
}

// ------------------------------------------------------------ lesser items

#[test]
fn every_error_is_the_documented_json_even_before_a_handler_runs() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let is_json_error = |r: Response, status: StatusCode| {
        assert_eq!(r.status(), status);
        let text = r.text().unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"));
        assert!(v["error"]["kind"].is_string(), "{text}");
        assert!(v["error"]["message"].is_string(), "{text}");
    };
    // Not JSON at all, a wrong shape, no content type, a bad query.
    let post = |body: &'static str, content_type: Option<&str>| {
        let mut r = client()
            .post(s.url("/v1/agents"))
            .bearer_auth(&a)
            .body(body);
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        r.send().unwrap()
    };
    is_json_error(
        post("{not json", Some("application/json")),
        StatusCode::BAD_REQUEST,
    );
    is_json_error(
        post(r#"{"name": 5}"#, Some("application/json")),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    is_json_error(
        post(r#"{"name": "x"}"#, None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    is_json_error(
        client()
            .delete(s.url("/v1/files/x?recursive=maybe"))
            .bearer_auth(&a)
            .send()
            .unwrap(),
        StatusCode::BAD_REQUEST,
    );
    // The router's own answers: an unknown route, `/`, a wrong method.
    is_json_error(get(&s, &a, "/v1/nothing-here"), StatusCode::NOT_FOUND);
    is_json_error(
        client().get(s.url("/")).send().unwrap(),
        StatusCode::NOT_FOUND,
    );
    is_json_error(
        client().patch(s.url("/v1/audit")).send().unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    );
    // A body over the limit.
    let big = vec![0u8; anyfs_server_bundle_limit() + 1];
    is_json_error(
        client()
            .put(s.url("/v1/skills/big"))
            .bearer_auth(&a)
            .body(big)
            .send()
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    // Health needs no secret.
    let health = client().get(s.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(json_of(health)["status"], "ok");
}

/// The most bytes a skill bundle may have (the service's body limit there).
fn anyfs_server_bundle_limit() -> usize {
    64 << 20
}

#[test]
fn installed_skills_are_listed_by_name() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, bot, _) = agent(&s, &a, json!({"name": "bot"}));
    let listed = json_of(get(&s, &a, "/v1/skills"));
    assert_eq!(listed["skills"], json!([]));
    for name in ["lint", "fmt"] {
        let bundle = tar_gz(&[("SKILL.md", tar::EntryType::Regular, b"do it", None)]);
        assert_eq!(install(&s, &a, name, bundle).0, StatusCode::CREATED);
    }
    assert_eq!(
        json_of(get(&s, &a, "/v1/skills"))["skills"],
        json!(["fmt", "lint"])
    );
    assert_eq!(
        json_of(get(&s, &bot, "/v1/skills"))["skills"],
        json!(["fmt", "lint"])
    );
}

#[test]
fn a_policy_with_an_invalid_glob_is_refused_naming_it() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let r = client()
        .post(s.url("/v1/agents"))
        .bearer_auth(&a)
        .json(&json!({"name": "bot", "policy": {"deny": ["/ok/**", "/bad/[z-a"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().unwrap();
    assert!(text.contains("/bad/[z-a"), "{text}");
    let (id, bot, _) = agent(&s, &a, json!({"name": "bot"}));
    let r = client()
        .patch(s.url(&format!("/v1/agents/{id}")))
        .bearer_auth(&a)
        .json(&json!({"policy": {"read_only": ["relative/*"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("relative/*"));
    // The agent still works: nothing of the bad policy was kept.
    assert_eq!(put(&s, &bot, "/x.txt", b"x"), StatusCode::CREATED);
}

#[test]
fn an_admin_secret_that_could_never_authenticate_or_is_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "letmein-this-is-long-enough-but-no-prefix-at-all",
        "afs_admin_short",
    ] {
        let mut config = Config::new(dir.path());
        config.admin_secret = Some(bad.into());
        let err = Service::open(config).unwrap_err().to_string();
        assert!(err.contains("ANYFS_ADMIN_SECRET"), "{err}");
        assert!(!err.contains(bad), "the secret itself is shown: {err}");
    }
}

#[test]
fn every_file_the_service_makes_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.signups_per_hour = 100;
    let opened = Service::open(config).unwrap();
    {
        let s = Running::serving(opened.service, dir.path());
        let (_, a) = signup(&s, "alice");
        let (_, bot, _) = agent(&s, &a, json!({"name": "bot"}));
        assert_eq!(put(&s, &bot, "/x.txt", b"x"), StatusCode::CREATED);
        let _ = json_of(get(&s, &a, "/v1/audit"));
        let mut seen = Vec::new();
        let mut dirs = vec![dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                // Workspace files are made by the SQLite backend: `anyfs
                // serve`'s umask covers them (see the CLI's tests).
                if meta.is_dir() {
                    if entry.file_name() != "workspaces" {
                        dirs.push(entry.path());
                    }
                    continue;
                }
                let mode = meta.permissions().mode() & 0o777;
                seen.push(entry.file_name().to_string_lossy().into_owned());
                assert_eq!(mode, 0o600, "{} is {mode:o}", entry.path().display());
            }
        }
        for expected in [
            "registry.db",
            "registry.db-wal",
            "admin.digest",
            "anyfs.lock",
        ] {
            assert!(seen.iter().any(|n| n == expected), "{expected}: {seen:?}");
        }
    }
}

// ------------------------------------------------- uploads: whole or not at all

/// Sends the head of a PUT and `body` over a raw connection, then closes it
/// without waiting: a client that went away part way.
fn put_and_hang_up(s: &Running, secret: &str, path: &str, head: &str, body: &[u8]) {
    use std::io::Write;
    let addr = s.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "PUT /v1/files{path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {secret}\r\n{head}\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(conn);
}

/// The file's content once the service is done with what it was sent.
fn settled(s: &Running, secret: &str, path: &str) -> (StatusCode, Vec<u8>) {
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = get(s, secret, &format!("/v1/files{path}"));
    (r.status(), r.bytes().unwrap().to_vec())
}

#[test]
fn an_upload_cut_off_broken_or_refused_leaves_the_old_content() {
    let s = Running::start(); // a 1 MiB quota
    let (_, secret) = signup(&s, "uploads");
    let old: &'static [u8] = &[b'o'; 17_000];
    assert_eq!(put(&s, &secret, "/doc.txt", old), StatusCode::CREATED);

    // The client declares 700,000 bytes, sends 300,000 and goes away.
    put_and_hang_up(
        &s,
        &secret,
        "/doc.txt",
        "content-length: 700000\r\n",
        &[b'n'; 300_000],
    );
    assert_eq!(
        settled(&s, &secret, "/doc.txt"),
        (StatusCode::OK, old.to_vec())
    );
    // A chunked body that breaks off, and one that turns to garbage.
    for tail in [&b""[..], b"zz-not-a-chunk-size\r\n\r\n"] {
        let mut body = b"4000\r\n".to_vec();
        body.extend([b'c'; 0x4000]);
        body.extend(b"\r\n");
        body.extend(tail);
        put_and_hang_up(
            &s,
            &secret,
            "/doc.txt",
            "transfer-encoding: chunked\r\n",
            &body,
        );
        assert_eq!(
            settled(&s, &secret, "/doc.txt"),
            (StatusCode::OK, old.to_vec())
        );
    }
    // A new file cut off is not there at all, not even empty.
    put_and_hang_up(
        &s,
        &secret,
        "/new.bin",
        "content-length: 500000\r\n",
        &[b'n'; 100_000],
    );
    assert_eq!(settled(&s, &secret, "/new.bin").0, StatusCode::NOT_FOUND);

    // Past the quota part way: the client hears the JSON error (the rest
    // of its body is read and dropped), and the old content stays.
    let r = client()
        .put(s.url("/v1/files/doc.txt"))
        .bearer_auth(&secret)
        .body(vec![b'q'; 3 << 20])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(json_of(r)["error"]["kind"], "QuotaExceeded");
    assert_eq!(
        settled(&s, &secret, "/doc.txt"),
        (StatusCode::OK, old.to_vec())
    );
    // And the audit says none of these wrote anything.
    let audit = json_of(get(&s, &secret, "/v1/audit?limit=100"));
    let writes: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "write")
        .collect();
    let ok = writes.iter().filter(|r| r["outcome"] == "ok").count();
    assert_eq!(ok, 1, "{writes:?}");
}

/// Reads of large files stream: a range comes back as asked, an account
/// holding eight streams open is told to wait before a ninth, and an MCP
/// read returns at most 1 MiB with a note saying how to read on.
#[test]
fn large_reads_stream_are_capped_per_account_and_bounded_over_mcp() {
    let s = Running::capped(16);
    let (_, secret) = signup(&s, "reader");
    // More than loopback's socket buffers hold, so that a download whose
    // client does not read stays in progress.
    let size = 64 << 20;
    let content: Vec<u8> = (0..size).map(|i| b'a' + (i % 23) as u8).collect();
    let r = client()
        .put(s.url("/v1/files/big.txt"))
        .bearer_auth(&secret)
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client()
        .get(s.url("/v1/files/big.txt"))
        .bearer_auth(&secret)
        .header("range", "bytes=1000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-{}/{size}", size - 1).as_str()
    );
    assert_eq!(r.bytes().unwrap(), &content[1000..]);

    // Eight downloads held open (their clients not reading): a ninth waits.
    let held: Vec<Response> = (0..8)
        .map(|_| {
            let r = get(&s, &secret, "/v1/files/big.txt");
            assert_eq!(r.status(), StatusCode::OK);
            r
        })
        .collect();
    let ninth = get(&s, &secret, "/v1/files/big.txt");
    assert_eq!(ninth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(ninth.headers().contains_key("retry-after"));
    // So does a large upload; small requests are not held up.
    let upload = client()
        .put(s.url("/v1/files/another.bin"))
        .bearer_auth(&secret)
        .body(vec![0u8; 1 << 20])
        .send()
        .unwrap();
    assert_eq!(upload.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get(&s, &secret, "/v1/files/another.bin").status(),
        StatusCode::NOT_FOUND
    );
    // One that does not say its length is counted from its first byte.
    let chunked = client()
        .put(s.url("/v1/files/another.bin"))
        .bearer_auth(&secret)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            b"x".to_vec(),
        )))
        .send()
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        put(&s, &secret, "/small.txt", b"small"),
        StatusCode::CREATED
    );
    // Another account is not held up by this one.
    let (_, other) = signup(&s, "other reader");
    let r = client()
        .put(s.url("/v1/files/big.txt"))
        .bearer_auth(&other)
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    drop(held);
    let mut again = None;
    for _ in 0..50 {
        let r = get(&s, &secret, "/v1/files/big.txt");
        if r.status() == StatusCode::OK {
            again = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        again.expect("the permits came back").bytes().unwrap(),
        content
    );

    // Over MCP: a part at a time.
    let call = |_: u64, args: Value| mcp_tool(&s, &secret, "read_file", args).1;
    let first = call(2, json!({"path": "/big.txt"}));
    assert!(first.len() < (256 << 10) + 300, "{}", first.len());
    assert!(first.starts_with(std::str::from_utf8(&content[..256 << 10]).unwrap()));
    assert!(
        first.contains("offset 262144"),
        "{}",
        &first[first.len() - 200..]
    );
    let last = call(3, json!({"path": "/big.txt", "offset": size - 10}));
    assert_eq!(last.as_bytes(), &content[size - 10..]);
}

/// Calls one MCP tool in a session of its own: whether the result is an
/// error, and its text.
fn mcp_tool(s: &Running, bearer: &str, tool: &str, args: Value) -> (bool, String) {
    let (session, _) = mcp(
        s,
        None,
        Some(bearer),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
    );
    let session = session.expect("a session id");
    let _ = mcp(
        s,
        Some(&session),
        Some(bearer),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let (_, reply) = mcp(
        s,
        Some(&session),
        Some(bearer),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": args}}),
    );
    let result = &reply["result"];
    (
        result["isError"].as_bool().unwrap_or(false),
        result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

fn move_node(s: &Running, who: &str, from: &str, to: &str) -> StatusCode {
    client()
        .post(s.url("/v1/fs/move"))
        .bearer_auth(who)
        .json(&json!({"from": from, "to": to}))
        .send()
        .unwrap()
        .status()
}

/// A policy holds through parents: an agent cannot move, remove or copy a
/// directory to reach what its policy hides or protects below it — over
/// HTTP or MCP — and the owner's files stay as they were.
#[test]
fn policies_hold_through_parent_directories_over_http_and_mcp() {
    let s = Running::start();
    let (_, owner) = signup(&s, "alice");
    for (path, body) in [
        ("/home/alice/private/deep.txt", &b"salary"[..]),
        ("/data/site.key", b"KEY"),
        ("/project/secrets/creds.txt", b"creds"),
        ("/project/config.json", b"{}"),
        ("/project/src/main.rs", b"fn main() {}"),
    ] {
        let body: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
        assert_eq!(put(&s, &owner, path, body), StatusCode::CREATED);
    }
    let (_, bot, _) = agent(
        &s,
        &owner,
        json!({"name": "bot", "policy": {
            "deny": ["/home/alice/private/**", "/data/*.key", "**/secrets/**"],
            "read_only": ["/project/config.json"]}}),
    );
    assert_eq!(
        get(&s, &bot, "/v1/files/home/alice/private/deep.txt").status(),
        StatusCode::FORBIDDEN
    );
    for (from, to) in [("/home", "/h2"), ("/data", "/d2"), ("/project", "/p2")] {
        assert_eq!(
            move_node(&s, &bot, from, to),
            StatusCode::FORBIDDEN,
            "{from}"
        );
        let (error, text) = mcp_tool(
            &s,
            &bot,
            "move_file",
            json!({"source": from, "destination": to}),
        );
        assert!(error, "mcp move {from}: {text}");
    }
    assert_eq!(
        get(&s, &bot, "/v1/files/h2/alice/private/deep.txt").status(),
        StatusCode::NOT_FOUND
    );
    let r = client()
        .delete(s.url("/v1/files/project?recursive=true"))
        .bearer_auth(&bot)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The refusal does not name what is hidden.
    assert!(!r.text().unwrap().contains("secrets"));
    let (error, text) = mcp_tool(
        &s,
        &bot,
        "delete",
        json!({"path": "/project", "recursive": true}),
    );
    assert!(error && !text.contains("secrets"), "{text}");
    for (path, body) in [
        ("/home/alice/private/deep.txt", "salary"),
        ("/data/site.key", "KEY"),
        ("/project/secrets/creds.txt", "creds"),
        ("/project/config.json", "{}"),
        ("/project/src/main.rs", "fn main() {}"),
    ] {
        let r = get(&s, &owner, &format!("/v1/files{path}"));
        assert_eq!(r.text().unwrap(), body, "{path}");
    }
    // What holds nothing hidden moves and goes as before.
    assert_eq!(
        move_node(&s, &bot, "/project/src", "/src"),
        StatusCode::NO_CONTENT
    );
    let (error, text) = mcp_tool(
        &s,
        &bot,
        "delete",
        json!({"path": "/src", "recursive": true}),
    );
    assert!(!error, "{text}");
}

/// An agent's quota is a ceiling on the whole workspace, counted from the
/// one usage figure every stack shares: what the owner writes after the
/// agent's stack was built counts, and the refusal says so in words.
#[test]
fn an_agent_quota_counts_everything_the_workspace_holds() {
    let s = Running::capped(8);
    let (_, owner) = signup(&s, "owner");
    let (_, bot, _) = agent(
        &s,
        &owner,
        json!({"name": "bot", "policy": {"quota": 3 << 20}}),
    );
    // The agent's stack is built (and counts) before the owner writes.
    assert_eq!(put(&s, &bot, "/early.txt", b"x"), StatusCode::CREATED);
    let half: &'static [u8] = Box::leak(vec![1u8; 5 << 19].into_boxed_slice());
    assert_eq!(put(&s, &owner, "/owners.bin", half), StatusCode::CREATED);
    let r = client()
        .put(s.url("/v1/files/agents.bin"))
        .bearer_auth(&bot)
        .body(half)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let message = json_of(r)["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(
            "this agent may add data only while the workspace holds at most 3145728 bytes"
        ),
        "{message}"
    );
    // Within the ceiling it writes.
    let small: &'static [u8] = Box::leak(vec![2u8; 1 << 18].into_boxed_slice());
    assert_eq!(put(&s, &bot, "/agents.bin", small), StatusCode::CREATED);
    // The owner's own quota is the account's, not the agent's.
    assert_eq!(put(&s, &owner, "/more.bin", half), StatusCode::CREATED);
}

#[test]
fn a_registry_from_before_sealing_gets_its_policies_sealed_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    // The registry as the version before left it: clear policies, audit
    // records without sealed paths.
    let token = "afs_agent_an_old_agent_token_of_enough_length_000";
    {
        let conn = rusqlite::Connection::open(dir.path().join("registry.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL,
                 secret_digest BLOB NOT NULL UNIQUE, suspended INTEGER NOT NULL DEFAULT 0,
                 created_at INTEGER NOT NULL);
             CREATE TABLE agents (id TEXT PRIMARY KEY, account_id TEXT NOT NULL,
                 name TEXT NOT NULL, token_digest BLOB NOT NULL UNIQUE, config BLOB NOT NULL,
                 policy TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE audit (seq INTEGER PRIMARY KEY, account_id TEXT, at INTEGER NOT NULL,
                 actor TEXT NOT NULL, action TEXT NOT NULL, path TEXT, outcome TEXT NOT NULL,
                 prev BLOB NOT NULL, hash BLOB NOT NULL);
             INSERT INTO accounts VALUES ('acct_old', 'old', x'00', 0, 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO agents VALUES ('agent_old', 'acct_old', 'bot', ?1, x'00', ?2, 0)",
            rusqlite::params![
                anyfs_server::secrets::digest(token).to_vec(),
                r#"{"deny":["/OLDPOLICYCANARY/**"]}"#
            ],
        )
        .unwrap();
    }
    let mut s = Running::on(dir.path(), 100);
    assert_eq!(
        put(&s, token, "/OLDPOLICYCANARY/x.txt", b"x"),
        StatusCode::FORBIDDEN,
        "the old policy still holds"
    );
    assert_eq!(put(&s, token, "/fine.txt", b"x"), StatusCode::CREATED);
    s.stop();
    assert!(!contains(&registry_bytes(dir.path()), "OLDPOLICYCANARY"));
    anyfs_server::verify_chain(&dir.path().join("registry.db")).unwrap();
}

/// The audit names both ends of a move, over HTTP and MCP.
#[test]
fn the_audit_records_both_ends_of_a_move() {
    let s = Running::start();
    let (_, owner) = signup(&s, "owner");
    assert_eq!(put(&s, &owner, "/real/f.txt", b"x"), StatusCode::CREATED);
    assert_eq!(
        move_node(&s, &owner, "/real", "/moved"),
        StatusCode::NO_CONTENT
    );
    let (error, text) = mcp_tool(
        &s,
        &owner,
        "move_file",
        json!({"source": "/moved", "destination": "/again"}),
    );
    assert!(!error, "{text}");
    let audit = json_of(get(&s, &owner, "/v1/audit?limit=100"));
    let records = audit["records"].as_array().unwrap();
    let find = |action: &str, path: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["path"] == path)
            .unwrap_or_else(|| panic!("no {action} {path} in {records:?}"))
            .clone()
    };
    find("move", "/real");
    assert_eq!(find("move to", "/moved")["outcome"], "ok");
    find("mcp move_file", "/moved");
    find("mcp move_file", "/again");
}

/// Every transport records an outcome in the same words: `ok`, or the
/// error's kind as the API's JSON names it.
#[test]
fn http_and_mcp_record_outcomes_in_the_same_words() {
    let s = Running::start();
    let (_, owner) = signup(&s, "owner");
    let (_, bot, _) = agent(
        &s,
        &owner,
        json!({"name": "bot", "policy": {"deny": ["/private/**"]}}),
    );
    assert_eq!(
        get(&s, &owner, "/v1/files/missing.txt").status(),
        StatusCode::NOT_FOUND
    );
    let (error, _) = mcp_tool(&s, &owner, "read_file", json!({"path": "/absent.txt"}));
    assert!(error);
    let (error, _) = mcp_tool(&s, &bot, "read_file", json!({"path": "/private/k"}));
    assert!(error);
    let (error, text) = mcp_tool(
        &s,
        &bot,
        "write_file",
        json!({"path": "/n.txt", "content": "n"}),
    );
    assert!(!error, "{text}");
    let audit = json_of(get(&s, &owner, "/v1/audit?limit=100"));
    let outcome = |action: &str, path: &str| {
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == action && r["path"] == path)
            .unwrap_or_else(|| panic!("no {action} {path} in {audit}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("read", "/missing.txt"), "NotFound");
    assert_eq!(outcome("mcp read_file", "/absent.txt"), "NotFound");
    assert_eq!(outcome("mcp read_file", "/private/k"), "AccessDenied");
    assert_eq!(outcome("mcp write_file", "/n.txt"), "ok");
}

/// While an agent moves a folder back and forth, the owner keeps making
/// and removing a file that the agent's policy hides below it: a move is
/// judged and done as one step, so a hidden file made in between is never
/// carried along to where the agent could read it.
#[test]
fn a_folder_move_never_carries_a_hidden_file_made_meanwhile() {
    let s = Running::capped(4);
    let (_, owner) = signup(&s, "owner");
    let (_, bot, _) = agent(
        &s,
        &owner,
        json!({"name": "bot", "policy": {"deny": ["/home/alice/private/**"]}}),
    );
    assert_eq!(
        put(&s, &owner, "/home/alice/notes.txt", b"n"),
        StatusCode::CREATED
    );
    let moved = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..200 {
                let _ = put(&s, &owner, "/home/alice/private/f", b"hidden");
                let _ = client()
                    .delete(s.url("/v1/files/home/alice/private?recursive=true"))
                    .bearer_auth(&owner)
                    .send()
                    .unwrap();
            }
        });
        scope.spawn(|| {
            for i in 0..200 {
                let to = format!("/h{i}");
                if move_node(&s, &bot, "/home", &to) != StatusCode::NO_CONTENT {
                    continue;
                }
                moved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let carried = get(&s, &bot, &format!("/v1/files{to}/alice/private/f"));
                assert_ne!(carried.status(), StatusCode::OK, "carried to {to}");
                let _ = move_node(&s, &bot, &to, "/home");
            }
        });
    });
    assert!(moved.into_inner() > 0, "no move ever went through");
}

fn post_json(s: &Running, who: &str, path: &str, body: Value) -> Response {
    client()
        .post(s.url(path))
        .bearer_auth(who)
        .json(&body)
        .send()
        .unwrap()
}

fn text_of(s: &Running, who: &str, path: &str) -> String {
    let r = get(s, who, path);
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.text().unwrap()
}

/// A diff's lines as (change, path).
fn diff_of(s: &Running, who: &str, query: &str) -> Vec<(String, String)> {
    let r = get(s, who, &format!("/v1/diff?{query}"));
    assert_eq!(r.status(), StatusCode::OK, "diff {query}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    r.text()
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (
                v["change"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn snapshots_diffs_branches_and_merges_over_http() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    assert_eq!(
        put(&s, &a, "/src/main.rs", b"fn main() {}"),
        StatusCode::CREATED
    );
    assert_eq!(put(&s, &a, "/README.md", b"# readme"), StatusCode::CREATED);

    let r = post_json(&s, &a, "/v1/snapshots", json!({"name": "before the agent"}));
    assert_eq!(r.status(), StatusCode::CREATED);
    let snap = json_of(r);
    let id = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["name"], "before the agent");
    assert_eq!(snap["bytes"], 20);
    let listed = json_of(get(&s, &a, "/v1/snapshots"));
    assert_eq!(listed["snapshots"][0]["id"], id.as_str());

    // The workspace goes on; the snapshot stays as it was.
    assert_eq!(put(&s, &a, "/README.md", b"# changed"), StatusCode::CREATED);
    assert_eq!(put(&s, &a, "/notes.txt", b"new"), StatusCode::CREATED);
    assert_eq!(
        text_of(&s, &a, &format!("/v1/snapshots/{id}/files/README.md")),
        "# readme"
    );
    let root = json_of(get(&s, &a, &format!("/v1/snapshots/{id}/files")));
    assert_eq!(root["entries"].as_array().unwrap().len(), 2);
    let r = client()
        .put(s.url(&format!("/v1/snapshots/{id}/files/README.md")))
        .bearer_auth(&a)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        diff_of(&s, &a, &format!("from=snapshot:{id}&to=live")),
        [
            ("modified".to_string(), "/README.md".to_string()),
            ("added".to_string(), "/notes.txt".to_string())
        ]
    );

    // A branch: written on its own, merged back.
    let r = post_json(
        &s,
        &a,
        "/v1/branches",
        json!({"snapshot": id, "name": "try"}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let branch = json_of(r)["id"].as_str().unwrap().to_string();
    // The snapshot a branch counts from stays while it does.
    let r = client()
        .delete(s.url(&format!("/v1/snapshots/{id}")))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = client()
        .put(s.url(&format!("/v1/branches/{branch}/files/src/lib.rs")))
        .bearer_auth(&a)
        .body("pub fn work() {}")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        get(&s, &a, "/v1/files/src/lib.rs").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        diff_of(&s, &a, &format!("from=snapshot:{id}&to=branch:{branch}")),
        [("added".to_string(), "/src/lib.rs".to_string())]
    );
    let merged = post_json(&s, &a, &format!("/v1/branches/{branch}/merge"), json!({}));
    assert_eq!(merged.status(), StatusCode::OK);
    assert_eq!(json_of(merged)["applied"], 1);
    assert_eq!(text_of(&s, &a, "/v1/files/src/lib.rs"), "pub fn work() {}");

    // Both sides change one file: 409 naming it, nothing applied.
    let r = client()
        .put(s.url(&format!("/v1/branches/{branch}/files/src/main.rs")))
        .bearer_auth(&a)
        .body("branch")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client()
        .put(s.url(&format!("/v1/branches/{branch}/files/branch-only.txt")))
        .bearer_auth(&a)
        .body("b")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(put(&s, &a, "/src/main.rs", b"live"), StatusCode::CREATED);
    let r = post_json(&s, &a, &format!("/v1/branches/{branch}/merge"), json!({}));
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v = json_of(r);
    assert_eq!(v["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(v["conflicts"][0]["path"], "/src/main.rs");
    assert_eq!(v["error"]["kind"], "Conflict");
    assert_eq!(
        get(&s, &a, "/v1/files/branch-only.txt").status(),
        StatusCode::NOT_FOUND
    );
    let r = post_json(
        &s,
        &a,
        &format!("/v1/branches/{branch}/merge"),
        json!({"paths": {"/src/main.rs": "branch"}}),
    );
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text_of(&s, &a, "/v1/files/src/main.rs"), "branch");
    assert_eq!(text_of(&s, &a, "/v1/files/branch-only.txt"), "b");

    // Restore: the workspace is the snapshot again.
    let r = post_json(&s, &a, &format!("/v1/snapshots/{id}/restore"), json!({}));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text_of(&s, &a, "/v1/files/README.md"), "# readme");
    assert_eq!(
        get(&s, &a, "/v1/files/notes.txt").status(),
        StatusCode::NOT_FOUND
    );
    assert!(diff_of(&s, &a, &format!("from=snapshot:{id}")).is_empty());

    // Merged, the branch counts its changes from what was merged.
    let listed = json_of(get(&s, &a, "/v1/branches"));
    assert_eq!(listed["branches"][0]["id"], branch.as_str());
    assert_ne!(listed["branches"][0]["base"], id.as_str());
    for path in [
        format!("/v1/branches/{branch}"),
        format!("/v1/snapshots/{id}"),
    ] {
        let r = client()
            .delete(s.url(&path))
            .bearer_auth(&a)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "DELETE {path}");
    }
    assert_eq!(
        json_of(get(&s, &a, "/v1/snapshots"))["snapshots"],
        json!([])
    );
    assert_eq!(
        get(&s, &a, "/v1/diff?from=nonsense").status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&s, &a, &format!("/v1/diff?from=snapshot:{id}")).status(),
        StatusCode::NOT_FOUND
    );

    // Each of these was audited.
    let (records, _) = audit_pages(&s, &a, "", 1000);
    let actions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["operation"].as_str().or(r["action"].as_str()))
        .collect();
    for wanted in [
        "snapshot".to_string(),
        "restore".to_string(),
        "branch".to_string(),
        "merge".to_string(),
        "diff".to_string(),
        "delete snapshot".to_string(),
        "delete branch".to_string(),
        format!("write in branch {branch}"),
        format!("read in snapshot {id}"),
    ] {
        assert!(
            actions.contains(&wanted.as_str()),
            "no {wanted:?} in {actions:?}"
        );
    }
}

#[test]
fn an_agent_pointed_at_a_branch_works_there_and_manages_nothing() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    assert_eq!(put(&s, &a, "/shared.txt", b"main"), StatusCode::CREATED);
    let snap = json_of(post_json(&s, &a, "/v1/snapshots", json!({"name": "s"})));
    let id = snap["id"].as_str().unwrap().to_string();
    let branch = json_of(post_json(
        &s,
        &a,
        "/v1/branches",
        json!({"snapshot": id, "name": "agent-work"}),
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, bot, _) = agent(
        &s,
        &a,
        json!({"name": "bot", "policy": {"workspace": branch, "read_only": ["/ro/**"]}}),
    );
    assert_eq!(put(&s, &bot, "/shared.txt", b"agent"), StatusCode::CREATED);
    assert_eq!(put(&s, &bot, "/ro/x", b"no"), StatusCode::FORBIDDEN);
    assert_eq!(text_of(&s, &bot, "/v1/files/shared.txt"), "agent");
    assert_eq!(text_of(&s, &a, "/v1/files/shared.txt"), "main");
    assert_eq!(
        text_of(&s, &a, &format!("/v1/branches/{branch}/files/shared.txt")),
        "agent"
    );

    // An agent token manages no snapshot and no branch, and reads none.
    for (method, path) in [
        ("post", "/v1/snapshots".to_string()),
        ("get", "/v1/snapshots".to_string()),
        ("get", format!("/v1/snapshots/{id}/files/shared.txt")),
        ("post", format!("/v1/snapshots/{id}/restore")),
        ("delete", format!("/v1/snapshots/{id}")),
        ("post", "/v1/branches".to_string()),
        ("get", "/v1/branches".to_string()),
        ("get", format!("/v1/branches/{branch}/files/shared.txt")),
        ("post", format!("/v1/branches/{branch}/merge")),
        ("delete", format!("/v1/branches/{branch}")),
        ("get", format!("/v1/diff?from=snapshot:{id}")),
    ] {
        let body = match path.as_str() {
            "/v1/snapshots" => json!({"name": "x"}),
            "/v1/branches" => json!({"name": "x", "snapshot": id}),
            _ => json!({}),
        };
        let req = match method {
            "get" => client().get(s.url(&path)),
            "post" => client().post(s.url(&path)).json(&body),
            _ => client().delete(s.url(&path)),
        };
        let r = req.bearer_auth(&bot).send().unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // A policy naming no branch id is refused; one naming a branch that
    // is gone leaves the agent with nothing.
    let r = post_json(
        &s,
        &a,
        "/v1/agents",
        json!({"name": "bad", "policy": {"workspace": "main"}}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(r)["error"]["kind"], "InvalidPolicy");
    let r = client()
        .delete(s.url(&format!("/v1/branches/{branch}")))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&s, &bot, "/v1/files/shared.txt").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(text_of(&s, &a, "/v1/files/shared.txt"), "main");
}

#[test]
fn another_accounts_snapshots_and_branches_are_not_found() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, b) = signup(&s, "bob");
    assert_eq!(put(&s, &a, "/secret.txt", b"alice's"), StatusCode::CREATED);
    let id = json_of(post_json(&s, &a, "/v1/snapshots", json!({"name": "s"})))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let branch = json_of(post_json(
        &s,
        &a,
        "/v1/branches",
        json!({"snapshot": id, "name": "b"}),
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path) in [
        ("get", format!("/v1/snapshots/{id}/files/secret.txt")),
        ("get", format!("/v1/snapshots/{id}/files")),
        ("post", format!("/v1/snapshots/{id}/restore")),
        ("delete", format!("/v1/snapshots/{id}")),
        ("get", format!("/v1/branches/{branch}/files/secret.txt")),
        ("get", format!("/v1/branches/{branch}/files")),
        ("put", format!("/v1/branches/{branch}/files/planted.txt")),
        ("delete", format!("/v1/branches/{branch}/files/secret.txt")),
        ("post", format!("/v1/branches/{branch}/merge")),
        ("delete", format!("/v1/branches/{branch}")),
        ("get", format!("/v1/diff?from=snapshot:{id}")),
        ("get", format!("/v1/diff?from=live&to=branch:{branch}")),
    ] {
        let req = match method {
            "get" => client().get(s.url(&path)),
            "post" => client().post(s.url(&path)).json(&json!({})),
            "put" => client().put(s.url(&path)).body("x"),
            _ => client().delete(s.url(&path)),
        };
        let r = req.bearer_auth(&b).send().unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let r = post_json(
        &s,
        &b,
        "/v1/branches",
        json!({"snapshot": id, "name": "stolen"}),
    );
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(get(&s, &b, "/v1/snapshots"))["snapshots"],
        json!([])
    );
    assert_eq!(json_of(get(&s, &b, "/v1/branches"))["branches"], json!([]));
    // Alice's are untouched.
    assert_eq!(
        text_of(&s, &a, &format!("/v1/snapshots/{id}/files/secret.txt")),
        "alice's"
    );
    assert_eq!(
        text_of(&s, &a, &format!("/v1/branches/{branch}/files/secret.txt")),
        "alice's"
    );
}

#[test]
fn snapshots_through_mcp_tools_take_the_account_secret() {
    let s = Running::start();
    let (_, a) = signup(&s, "alice");
    let (_, bot, _) = agent(&s, &a, json!({"name": "bot", "policy": {}}));
    assert_eq!(put(&s, &a, "/plan.md", b"v1"), StatusCode::CREATED);
    let session = mcp_session(&s, &a);
    let (_, tools) = mcp(
        &s,
        Some(&session),
        Some(&a),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let restore = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "restore_snapshot")
        .expect("a restore tool")
        .clone();
    assert_eq!(restore["annotations"]["destructiveHint"], true, "{restore}");
    let call = |bearer: &str, id: u32, name: &str, args: Value| {
        mcp(
            &s,
            Some(&session),
            Some(bearer),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}}),
        )
        .1["result"]
            .clone()
    };
    let taken = call(&a, 3, "create_snapshot", json!({"name": "before"}));
    assert_eq!(taken["isError"], false, "{taken}");
    let listed = call(&a, 4, "list_snapshots", json!({}));
    let line = listed["structuredContent"]["snapshots"][0].clone();
    let id = line["id"].as_str().unwrap().to_string();
    assert_eq!(line["name"], "before");
    assert_eq!(put(&s, &a, "/plan.md", b"v2, longer"), StatusCode::CREATED);
    let diff = call(&a, 5, "diff", json!({"from": format!("snapshot:{id}")}));
    assert_eq!(diff["content"][0]["text"], "modified /plan.md", "{diff}");

    // An agent token gets none of it, and changes nothing.
    for (n, (name, args)) in [
        ("create_snapshot", json!({})),
        ("list_snapshots", json!({})),
        ("diff", json!({"from": format!("snapshot:{id}")})),
        ("restore_snapshot", json!({"snapshot": id})),
    ]
    .into_iter()
    .enumerate()
    {
        let refused = call(&bot, 10 + n as u32, name, args);
        assert_eq!(refused["isError"], true, "{name}: {refused}");
        assert!(
            refused.to_string().contains("account's own secret"),
            "{refused}"
        );
    }
    assert_eq!(
        get(&s, &a, "/v1/files/plan.md").text().unwrap(),
        "v2, longer"
    );

    let restored = call(&a, 20, "restore_snapshot", json!({"snapshot": id}));
    assert_eq!(restored["isError"], false, "{restored}");
    assert_eq!(get(&s, &a, "/v1/files/plan.md").text().unwrap(), "v1");
    let audit = json_of(get(&s, &a, "/v1/audit"));
    assert!(audit.to_string().contains("mcp restore_snapshot"));
}

#[test]
fn snapshots_cannot_keep_more_than_the_quota_holds() {
    let s = Running::start(); // a quota of 1 MiB
    let (_, a) = signup(&s, "alice");
    let big: &'static [u8] = Box::leak(vec![7u8; 700_000].into_boxed_slice());
    assert_eq!(put(&s, &a, "/big.bin", big), StatusCode::CREATED);
    let r = post_json(&s, &a, "/v1/snapshots", json!({"name": "first"}));
    assert_eq!(r.status(), StatusCode::CREATED);
    // The workspace lets go of it; the snapshot keeps it. Written again,
    // the account stores more than its quota: no more snapshots.
    let r = client()
        .delete(s.url("/v1/files/big.bin"))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let other: &'static [u8] = Box::leak(vec![8u8; 700_000].into_boxed_slice());
    assert_eq!(put(&s, &a, "/other.bin", other), StatusCode::CREATED);
    let r = post_json(&s, &a, "/v1/snapshots", json!({"name": "second"}));
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(json_of(r)["error"]["kind"], "QuotaExceeded");
    let listed = json_of(get(&s, &a, "/v1/snapshots"));
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1);
}
