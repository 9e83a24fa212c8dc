//! Faults under load, on real processes: `anyfs serve --database
//! --objects` nodes over one PostgreSQL and one SeaweedFS (started once for
//! this binary by `anyfs-services`).
//!
//! - The node taking writes is killed with SIGKILL at random moments and
//!   started again: every write acknowledged before a kill reads back
//!   whole through another node, a write that was cut off left the old
//!   content (or no file) or the whole new one, never a mix, and the audit
//!   chain verifies.
//! - PostgreSQL is stopped under load, then the object store: meanwhile
//!   every refusal is a 503 with `Retry-After` whose JSON names the store
//!   that is down; afterwards everything acknowledged reads back and the
//!   nodes serve again by themselves.
//!
//! The tests stop servers every test of the binary shares, so they take
//! turns. `ANYFS_FAULT_SEED` replays the random moments of a run (each
//! test prints its seed).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod nodes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyfs_services::{postgres, require, seaweed};
use nodes::*;
use reqwest::StatusCode;
use reqwest::blocking::Client;

/// SIGKILLs of the writing node in the crash test.
const KILLS: usize = 22;

/// How long any request may take before the test calls it a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node may take to serve again once its store is back.
const RECOVERY: Duration = Duration::from_secs(30);

/// The tests of this binary stop servers they all share: one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn client() -> Client {
    Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap()
}

/// A small random source (xorshift), seeded from `ANYFS_FAULT_SEED` or
/// the clock; the seed is printed so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Self {
        let seed = std::env::var("ANYFS_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: ANYFS_FAULT_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The content of write `version`: its number through and through, at one
/// of a few sizes (from one record to many), so that a file made of two
/// versions, or cut short, shows.
fn content(version: u64) -> Vec<u8> {
    const SIZES: [usize; 5] = [120, 4_000, 70_000, 300_000, 1_000_000];
    let stamp = format!("<version {version}>");
    stamp
        .bytes()
        .cycle()
        .take(SIZES[(version % 5) as usize])
        .collect()
}

/// What was written to each path: the last version acknowledged, and the
/// versions tried since that were not (cut off, refused): any of those may
/// have landed.
#[derive(Default)]
struct Ledger {
    files: BTreeMap<String, Versions>,
    acknowledged: usize,
}

#[derive(Default)]
struct Versions {
    acknowledged: Option<u64>,
    unconfirmed: Vec<u64>,
}

impl Ledger {
    fn tried(&mut self, path: &str, version: u64) {
        let versions = self.files.entry(path.to_owned()).or_default();
        versions.unconfirmed.push(version);
    }

    fn acknowledged(&mut self, path: &str, version: u64) {
        let versions = self.files.entry(path.to_owned()).or_default();
        versions.acknowledged = Some(version);
        versions.unconfirmed.clear();
        self.acknowledged += 1;
    }

    /// Reads every path through `node`: each holds its acknowledged version
    /// or a later one tried, whole; a path never acknowledged may also be
    /// missing.
    fn check(&self, client: &Client, node: &Node, secret: &str) {
        for (path, versions) in &self.files {
            let (status, body) = get(client, node, secret, path);
            match status {
                StatusCode::OK => {
                    let whole = versions
                        .acknowledged
                        .iter()
                        .chain(&versions.unconfirmed)
                        .any(|&v| body == content(v));
                    assert!(
                        whole,
                        "{path} read through {} holds {} bytes that are no version written \
                         whole (acknowledged {:?}, unconfirmed {:?}): starts {:?}",
                        node.base,
                        body.len(),
                        versions.acknowledged,
                        versions.unconfirmed,
                        String::from_utf8_lossy(&body[..body.len().min(40)])
                    );
                }
                StatusCode::NOT_FOUND => assert!(
                    versions.acknowledged.is_none(),
                    "{path}: version {:?} was acknowledged, and is gone",
                    versions.acknowledged
                ),
                other => panic!("{path} read through {}: {other}", node.base),
            }
        }
    }
}

/// A response other than 201 to a write.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

/// What the writers of a test share.
struct Load<'a> {
    client: Client,
    secret: &'a str,
    ledger: Mutex<Ledger>,
    refusals: Mutex<Vec<Refusal>>,
    /// The next version number, unique across writers.
    next: AtomicU64,
    stop: AtomicBool,
    /// How many writes are waiting for their answer now.
    in_flight: AtomicUsize,
}

impl<'a> Load<'a> {
    fn new(secret: &'a str) -> Self {
        Self {
            client: client(),
            secret,
            ledger: Mutex::default(),
            refusals: Mutex::default(),
            next: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes through the node at `base` until told to stop: new files,
    /// and every fourth write an overwrite of one shared file. A write
    /// whose connection broke (the node was killed) or that was refused
    /// counts as unconfirmed; a request that times out is a hang.
    fn write_through(&self, base: &str, writer: &str) {
        while !self.stop.load(Ordering::SeqCst) {
            let version = self.next.fetch_add(1, Ordering::SeqCst);
            let path = if version.is_multiple_of(4) {
                "shared.bin".to_owned()
            } else {
                format!("{writer}/file-{version}")
            };
            self.ledger().tried(&path, version);
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let sent = self
                .client
                .put(format!("{base}/v1/files/{path}"))
                .bearer_auth(self.secret)
                .body(content(version))
                .send();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match sent {
                Ok(response) if response.status() == StatusCode::CREATED => {
                    self.ledger().acknowledged(&path, version);
                }
                Ok(response) => {
                    self.refusals.lock().unwrap().push(Refusal {
                        status: response.status(),
                        retry_after: response
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap_or("?").to_owned()),
                        body: response.text().unwrap_or_default(),
                    });
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.is_timeout() => panic!("{writer}: no answer to a write in time: {e}"),
                // The node is down (killed, restarting): try again.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn acknowledged(&self) -> usize {
        self.ledger().acknowledged
    }

    /// Tells the writers to stop when dropped: also when the test fails
    /// while they write, so that it ends instead of waiting for them.
    fn stop_on_drop(&self) -> impl Drop + '_ {
        struct Stop<'s>(&'s AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        Stop(&self.stop)
    }

    /// Waits until `more` writes were acknowledged after now.
    fn wait_for_writes(&self, more: usize) {
        let target = self.acknowledged() + more;
        let started = Instant::now();
        while self.acknowledged() < target {
            assert!(
                started.elapsed() < RECOVERY,
                "no write acknowledged in {RECOVERY:?}; refusals: {:?}",
                self.refusals.lock().unwrap().last()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every refusal seen, which must all be 503s with `Retry-After` whose
    /// message names `store`.
    fn assert_refusals_name(&self, store: &str) -> usize {
        let refusals = self.refusals.lock().unwrap();
        for refusal in refusals.iter() {
            assert_unavailable_parts(
                refusal.status,
                refusal.retry_after.as_deref(),
                &refusal.body,
                store,
            );
        }
        refusals.len()
    }
}

/// A 503 with `Retry-After` and a JSON error whose message names `store`.
#[track_caller]
fn assert_unavailable_parts(
    status: StatusCode,
    retry_after: Option<&str>,
    body: &str,
    store: &str,
) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let seconds: u64 = retry_after
        .unwrap_or_else(|| panic!("a 503 without Retry-After: {body}"))
        .parse()
        .unwrap();
    assert!(seconds >= 1, "Retry-After: {seconds}");
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(store), "does not name {store}: {body}");
}

/// How long a store is kept down, while the nodes are probed.
const OUTAGE: Duration = Duration::from_secs(2);

/// Asks each node to write and to read, again and again for [`OUTAGE`],
/// while a store is down (under load: the writers keep writing): each
/// answer is a 503 naming `store`, and comes quickly.
fn probe_while_down(client: &Client, nodes: &[&Node], secret: &str, read: &str, store: &str) {
    let down = Instant::now();
    while down.elapsed() < OUTAGE {
        for node in nodes {
            probe(client, node, secret, read, store);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn probe(client: &Client, node: &Node, secret: &str, read: &str, store: &str) {
    let started = Instant::now();
    let write = client
        .put(node.url("/v1/files/probe/while-down"))
        .bearer_auth(secret)
        .body(content(0))
        .send()
        .unwrap();
    let read = client
        .get(node.url(&format!("/v1/files/{read}")))
        .bearer_auth(secret)
        .send()
        .unwrap();
    for response in [write, read] {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().unwrap();
        assert_unavailable_parts(status, retry_after.as_deref(), &body, store);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusals took {:?}",
        started.elapsed()
    );
}

fn assert_audit_verifies(deployment: &Deployment) {
    let verified = deployment.verify_audit();
    assert!(verified.status.success(), "{}", output_text(&verified));
}

#[test]
fn sigkill_of_the_writing_node_loses_nothing_acknowledged_and_tears_nothing() {
    let _turn = one_at_a_time();
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    let mut writing = deployment.node("writing");
    let reading = deployment.node("reading");
    let client = client();
    let secret = signup(&client, &reading, "crashes");
    let load = Load::new(&secret);
    let mut rng = Rng::seeded("sigkill");
    let mut cut_off = 0;
    let base = writing.base.clone();
    std::thread::scope(|s| {
        let (load, base) = (&load, &base);
        let _stop = load.stop_on_drop();
        let writer = s.spawn(move || load.write_through(base, "w"));
        for kill in 0..KILLS {
            // Each life of the node takes some writes first.
            load.wait_for_writes(1 + kill % 3);
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            if load.in_flight.load(Ordering::SeqCst) > 0 {
                cut_off += 1;
            }
            deployment.crash_and_restart(&mut writing);
        }
        load.wait_for_writes(3);
        load.stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    });
    eprintln!(
        "{KILLS} kills, {cut_off} with a write under way; {} writes acknowledged",
        load.acknowledged()
    );
    let refusals = load.refusals.lock().unwrap();
    assert!(refusals.is_empty(), "writes refused: {refusals:?}");
    // Through the node that never went down, and through the one that did.
    load.ledger().check(&client, &reading, &secret);
    load.ledger().check(&client, &writing, &secret);
    assert_audit_verifies(&deployment);
}

#[test]
fn a_postgresql_restart_under_load_is_503_naming_it_and_passes_by_itself() {
    let _turn = one_at_a_time();
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    // Every node needs PostgreSQL for every request.
    outage_under_load(&deployment, &[0, 1], "PostgreSQL", || {
        pg.stop().unwrap();
        Box::new(|| pg.start().unwrap())
    });
}

#[test]
fn an_object_store_outage_under_load_is_503_naming_it_and_passes_by_itself() {
    let _turn = one_at_a_time();
    let pg = require!(postgres());
    let s3 = require!(seaweed());
    let deployment = Deployment::new(pg, s3);
    // The second node never read the file probed: it needs the store.
    outage_under_load(&deployment, &[1], "object store", || {
        s3.stop().unwrap();
        Box::new(|| s3.start().unwrap())
    });
}

/// Takes a store down (`down` stops it and returns what starts it again)
/// for [`OUTAGE`] while writers write through two nodes and the nodes
/// `probed` are asked to write and to read a file written before (which
/// neither node has read): every refusal is a 503 naming `store`; once it
/// is back, the nodes (never restarted) take writes again by themselves,
/// everything acknowledged reads back through both, and the audit chain
/// verifies.
fn outage_under_load<'s>(
    deployment: &Deployment,
    probed: &[usize],
    store: &str,
    down: impl FnOnce() -> Box<dyn FnOnce() + 's>,
) {
    let nodes = [deployment.node("node-1"), deployment.node("node-2")];
    let client = client();
    let secret = signup(&client, &nodes[0], store);
    let before = "before/unread.bin";
    assert_eq!(
        put(&client, &nodes[0], &secret, before, content(3)),
        StatusCode::CREATED
    );
    let load = Load::new(&secret);
    std::thread::scope(|s| {
        let load = &load;
        let writers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let base = node.base.clone();
                s.spawn(move || load.write_through(&base, &format!("node-{}", i + 1)))
            })
            .collect();
        let _stop = load.stop_on_drop();
        load.wait_for_writes(6);
        let up = down();
        let probes: Vec<&Node> = probed.iter().map(|&i| &nodes[i]).collect();
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            probe_while_down(&client, &probes, &secret, before, store);
        }));
        // Back before any verdict: the other tests share the server.
        up();
        if let Err(failed) = answered {
            std::panic::resume_unwind(failed);
        }
        load.wait_for_writes(6);
        load.stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.join().unwrap();
        }
    });
    let refused = load.assert_refusals_name(store);
    eprintln!(
        "{refused} writes refused while {store} was down, {} acknowledged",
        load.acknowledged()
    );
    for node in &nodes {
        assert_eq!(
            get(&client, node, &secret, before),
            (StatusCode::OK, content(3))
        );
        load.ledger().check(&client, node, &secret);
    }
    assert_audit_verifies(deployment);
}
