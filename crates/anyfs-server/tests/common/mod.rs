//! The service on real HTTP for the tests: a running service, accounts,
//! agents, files and MCP sessions.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use anyfs_server::{Config, Service};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

/// A service on an ephemeral loopback port, stopped on drop.
pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) data: PathBuf,
    pub(crate) _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) const ADMIN: &str = "afs_admin_for_tests_only_not_a_real_secret";

impl Running {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let mut r = Self::on(&data, 100);
        r._dir = Some(dir);
        r
    }

    pub(crate) fn on(data: &Path, signups: u32) -> Self {
        let mut config = Config::new(data);
        config.admin_secret = Some(ADMIN.into());
        config.signups_per_hour = signups;
        config.default_quota = 1 << 20;
        Self::serving(Service::open(config).unwrap().service, data)
    }

    /// A service with the test defaults, then `change` made to its
    /// configuration.
    pub(crate) fn with(change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.admin_secret = Some(ADMIN.into());
        config.signups_per_hour = 100;
        config.default_quota = 64 << 20;
        change(&mut config);
        let mut r = Self::serving(Service::open(config).unwrap().service, dir.path());
        r._dir = Some(dir);
        r
    }

    /// A service that keeps at most `max_open` workspaces open.
    pub(crate) fn capped(max_open: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.admin_secret = Some(ADMIN.into());
        config.signups_per_hour = 100;
        config.default_quota = 128 << 20;
        config.max_open_workspaces = max_open;
        let mut r = Self::serving(Service::open(config).unwrap().service, dir.path());
        r._dir = Some(dir);
        r
    }

    pub(crate) fn serving(service: std::sync::Arc<Service>, data: &Path) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = anyfs_server::router(service)
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Self {
            base: format!("http://{addr}"),
            data: data.to_path_buf(),
            _dir: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn client() -> Client {
    Client::new()
}

pub(crate) fn json_of(r: Response) -> Value {
    r.json().unwrap()
}

/// Signs up; returns (account id, secret).
pub(crate) fn signup(s: &Running, name: &str) -> (String, String) {
    let r = client()
        .post(s.url("/v1/accounts"))
        .json(&json!({"name": name}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json_of(r);
    (
        v["account"]["id"].as_str().unwrap().into(),
        v["secret"].as_str().unwrap().into(),
    )
}

pub(crate) fn agent(s: &Running, secret: &str, body: Value) -> (String, String, Value) {
    let r = client()
        .post(s.url("/v1/agents"))
        .bearer_auth(secret)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json_of(r);
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
        v,
    )
}

pub(crate) fn put(s: &Running, who: &str, path: &str, body: &'static [u8]) -> StatusCode {
    client()
        .put(s.url(&format!("/v1/files{path}")))
        .bearer_auth(who)
        .body(body)
        .send()
        .unwrap()
        .status()
}

pub(crate) fn get(s: &Running, who: &str, path: &str) -> Response {
    client().get(s.url(path)).bearer_auth(who).send().unwrap()
}

/// One MCP JSON-RPC exchange over Streamable HTTP: the reply to `id`.
pub(crate) fn mcp(
    s: &Running,
    session: Option<&str>,
    bearer: Option<&str>,
    body: Value,
) -> (Option<String>, Value) {
    let mut req = client()
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    let r = req.send().unwrap();
    let session = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().unwrap();
    let reply = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id") == body.get("id"))
        .unwrap_or(Value::Null);
    (session, reply)
}

/// An initialized MCP session (its id), opened with `bearer` (`/mcp`
/// serves only a valid secret); the server must offer tools.
pub(crate) fn mcp_session(s: &Running, bearer: &str) -> String {
    let (session, init) = mcp(
        s,
        None,
        Some(bearer),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let session = session.expect("a session id");
    let _ = client()
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .bearer_auth(bearer)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .unwrap();
    session
}
