//! One test suite for every [`Registry`]: each test is a function of a
//! [`Subject`], and `registry_suite!` runs it against the SQLite registry
//! and against the PostgreSQL one (on the test binary's throw-away
//! cluster; skipped, or failed with `ANYFS_REQUIRE_SERVICES=1`, when there
//! is none).

use std::sync::Arc;
use std::time::Duration;

use anyfs::crypto::Key;
use anyfs_postgres::Database;

use super::{
    AgentRow, AuditEntry, AuditQuery, ChainBreak, ExecutionRow, Outcome, PostgresRegistry,
    Registry, SqliteRegistry, verify_chain, verify_postgres_chain,
};
use crate::sealing::Sealer;

/// A registry under test, and what the suite needs around it.
struct Subject {
    registry: Box<dyn Registry>,
    /// Checks the whole audit chain as `anyfs audit verify` does.
    verify: Box<dyn Fn() -> Result<u64, ChainBreak>>,
    /// Changes the action of `account`'s second audit record behind the
    /// registry's back (as someone with the database could).
    tamper: Box<dyn Fn(&str)>,
    /// Another registry on the same storage (another node), if the kind of
    /// registry allows one.
    second_node: Option<Box<dyn Fn() -> Box<dyn Registry>>>,
    _dir: Option<tempfile::TempDir>,
}

fn sealer() -> Arc<Sealer> {
    Arc::new(Sealer::new(&[Key::from_bytes([7; 32])]))
}

fn sqlite() -> Subject {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("registry.db");
    let registry = SqliteRegistry::open(&path, sealer()).expect("opens");
    let verified = path.clone();
    let tampered = path.clone();
    Subject {
        registry: Box::new(registry),
        verify: Box::new(move || verify_chain(&verified)),
        tamper: Box::new(move |account| {
            let conn = rusqlite::Connection::open(&tampered).expect("opens the file");
            conn.execute_batch("DROP TRIGGER audit_no_update")
                .expect("drops the guard");
            conn.execute(
                "UPDATE audit SET action = 'forged' WHERE seq = (
                     SELECT seq FROM audit WHERE account_id = ?1 ORDER BY seq LIMIT 1 OFFSET 1)",
                [account],
            )
            .expect("changes a record");
        }),
        second_node: None,
        _dir: Some(dir),
    }
}

fn postgres() -> Option<Subject> {
    let server = anyfs_services::available(anyfs_services::postgres())?;
    let url = server.fresh_database();
    let open = {
        let url = url.clone();
        move || -> Box<dyn Registry> {
            let db = Database::connect(&url).expect("connects");
            Box::new(PostgresRegistry::open(db, sealer()).expect("opens"))
        }
    };
    let verified = url.clone();
    Some(Subject {
        registry: open(),
        verify: Box::new(move || verify_postgres_chain(&verified)),
        tamper: Box::new(move |account| {
            let db = Database::connect(&url).expect("connects");
            let account = account.to_owned();
            db.run(|client| async move {
                client
                    .batch_execute("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
                    .await?;
                client
                    .execute(
                        "UPDATE audit SET action = 'forged' WHERE account_id = $1 AND seq = 2",
                        &[&account],
                    )
                    .await?;
                Ok(())
            })
            .expect("changes a record");
        }),
        second_node: Some(Box::new(open)),
        _dir: None,
    })
}

/// Runs each named test function against both registries.
macro_rules! registry_suite {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::sqlite());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(subject) = super::postgres() {
                        super::$test(&subject);
                    }
                }
            )*
        }
    };
}

registry_suite!(
    accounts_are_created_found_changed_and_listed,
    a_secret_digest_belongs_to_one_account,
    deleting_an_account_deletes_its_agents_and_executions,
    agents_belong_to_their_account_and_keep_their_policy,
    executions_are_replaced_only_by_their_account,
    key_checks_keep_their_order,
    audit_pages_follow_the_chain_with_filters_and_open_paths,
    a_changed_audit_record_breaks_the_chain,
    nodes_appending_together_keep_one_chain_per_account,
    signups_are_limited_per_client_and_forgotten_after_the_window,
    signups_counted_at_once_never_pass_the_limit,
);

fn digest(byte: u8) -> Vec<u8> {
    vec![byte; 32]
}

fn agent(account: &str, id: &str, policy: &str) -> AgentRow {
    AgentRow {
        id: id.into(),
        account_id: account.into(),
        name: format!("agent {id}"),
        sealed_config: vec![1, 2, 3],
        policy: policy.into(),
        created_at: 100,
    }
}

fn execution(account: &str, id: &str, agent: Option<&str>, state: u8) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        account_id: account.into(),
        agent_id: agent.map(String::from),
        sealed: vec![state],
        created_at: 10,
        updated_at: 10 + i64::from(state),
    }
}

fn accounts_are_created_found_changed_and_listed(s: &Subject) {
    let r = &*s.registry;
    assert!(r.accounts().expect("lists").is_empty());
    let alice = r
        .create_account("acct-a", "Alice", &digest(1))
        .expect("creates");
    assert_eq!((alice.name.as_str(), alice.suspended), ("Alice", false));
    r.create_account("acct-b", "Bob", &digest(2))
        .expect("creates");

    assert_eq!(
        r.account("acct-a").expect("reads").expect("exists").name,
        "Alice"
    );
    assert!(r.account("acct-none").expect("reads").is_none());
    let (found, stored) = r
        .account_by_digest(&digest(2))
        .expect("reads")
        .expect("exists");
    assert_eq!((found.id.as_str(), stored), ("acct-b", digest(2)));
    let ids: Vec<String> = r
        .accounts()
        .expect("lists")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["acct-a", "acct-b"]);

    r.rename_account("acct-a", "Alice B.").expect("renames");
    assert_eq!(
        r.account("acct-a").expect("reads").expect("exists").name,
        "Alice B."
    );
    r.set_account_digest("acct-a", &digest(3))
        .expect("replaces the secret");
    assert!(r.account_by_digest(&digest(1)).expect("reads").is_none());
    assert!(r.account_by_digest(&digest(3)).expect("reads").is_some());

    assert!(r.set_suspended("acct-a", true).expect("suspends"));
    assert!(
        r.account("acct-a")
            .expect("reads")
            .expect("exists")
            .suspended
    );
    assert!(!r.set_suspended("acct-none", true).expect("answers"));
}

fn a_secret_digest_belongs_to_one_account(s: &Subject) {
    let r = &*s.registry;
    r.create_account("acct-a", "Alice", &digest(1))
        .expect("creates");
    assert!(r.create_account("acct-b", "Bob", &digest(1)).is_err());
    assert_eq!(r.accounts().expect("lists").len(), 1);
}

fn deleting_an_account_deletes_its_agents_and_executions(s: &Subject) {
    let r = &*s.registry;
    r.create_account("acct-a", "Alice", &digest(1))
        .expect("creates");
    r.create_account("acct-b", "Bob", &digest(2))
        .expect("creates");
    for (n, id) in ["ag-1", "ag-2"].into_iter().enumerate() {
        r.create_agent(&agent("acct-a", id, "{}"), &digest(10 + n as u8))
            .expect("creates an agent");
    }
    r.create_agent(&agent("acct-b", "ag-3", "{}"), &digest(20))
        .expect("creates");
    for id in ["ex-1", "ex-2", "ex-3"] {
        r.put_execution(&execution("acct-a", id, Some("ag-1"), 1))
            .expect("stores");
    }

    assert_eq!(r.delete_account("acct-a").expect("deletes"), Some((2, 3)));
    assert!(r.account("acct-a").expect("reads").is_none());
    assert!(r.agent_by_digest(&digest(10)).expect("reads").is_none());
    assert!(r.executions("acct-a", None).expect("lists").is_empty());
    assert_eq!(r.delete_account("acct-a").expect("answers"), None);
    // The other account is untouched.
    assert_eq!(r.agents("acct-b").expect("lists").len(), 1);
}

fn agents_belong_to_their_account_and_keep_their_policy(s: &Subject) {
    let r = &*s.registry;
    r.create_account("acct-a", "Alice", &digest(1))
        .expect("creates");
    r.create_account("acct-b", "Bob", &digest(2))
        .expect("creates");
    let policy = r#"{"read":["/docs/**"]}"#;
    r.create_agent(&agent("acct-a", "ag-1", policy), &digest(10))
        .expect("creates");
    r.create_agent(&agent("acct-a", "ag-2", "{}"), &digest(11))
        .expect("creates");

    let read = r.agent("acct-a", "ag-1").expect("reads").expect("exists");
    assert_eq!(
        (read.policy.as_str(), read.sealed_config.as_slice()),
        (policy, &[1, 2, 3][..])
    );
    assert!(
        r.agent("acct-b", "ag-1").expect("reads").is_none(),
        "another account's agent"
    );
    let (by_token, stored) = r
        .agent_by_digest(&digest(11))
        .expect("reads")
        .expect("exists");
    assert_eq!((by_token.id.as_str(), stored), ("ag-2", digest(11)));
    let (with_account, stored, account) = r
        .agent_and_account_by_digest(&digest(11))
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (
            with_account.policy.as_str(),
            stored,
            account.map(|a| a.name)
        ),
        ("{}", digest(11), Some("Alice".to_owned()))
    );
    r.set_suspended("acct-a", true).expect("suspends");
    let (.., account) = r
        .agent_and_account_by_digest(&digest(10))
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (read.policy.as_str(), account.map(|a| a.suspended)),
        (policy, Some(true))
    );
    r.set_suspended("acct-a", false).expect("unsuspends");
    assert!(
        r.agent_and_account_by_digest(&digest(99))
            .expect("reads")
            .is_none()
    );
    let ids: Vec<String> = r
        .agents("acct-a")
        .expect("lists")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["ag-1", "ag-2"]);

    let mut changed = agent("acct-a", "ag-1", r#"{"read":[]}"#);
    changed.name = "renamed".into();
    changed.sealed_config = vec![9];
    r.update_agent(&changed).expect("updates");
    let read = r.agent("acct-a", "ag-1").expect("reads").expect("exists");
    assert_eq!(
        (read.name.as_str(), read.policy.as_str()),
        ("renamed", r#"{"read":[]}"#)
    );
    assert_eq!(read.sealed_config, vec![9]);

    assert!(
        !r.set_agent_digest("acct-b", "ag-1", &digest(12))
            .expect("answers")
    );
    assert!(
        r.set_agent_digest("acct-a", "ag-1", &digest(12))
            .expect("replaces")
    );
    assert!(r.agent_by_digest(&digest(10)).expect("reads").is_none());
    assert!(!r.delete_agent("acct-b", "ag-1").expect("answers"));
    assert!(r.delete_agent("acct-a", "ag-1").expect("deletes"));
    assert!(r.agent("acct-a", "ag-1").expect("reads").is_none());
}

fn executions_are_replaced_only_by_their_account(s: &Subject) {
    let r = &*s.registry;
    r.create_account("acct-a", "Alice", &digest(1))
        .expect("creates");
    r.create_account("acct-b", "Bob", &digest(2))
        .expect("creates");
    r.put_execution(&execution("acct-a", "ex-1", Some("ag-1"), 1))
        .expect("stores");
    r.put_execution(&execution("acct-a", "ex-2", None, 1))
        .expect("stores");

    r.put_execution(&execution("acct-a", "ex-1", Some("ag-1"), 5))
        .expect("replaces");
    let read = r
        .execution("acct-a", "ex-1")
        .expect("reads")
        .expect("exists");
    assert_eq!((read.sealed.as_slice(), read.updated_at), (&[5][..], 15));
    // Another account cannot take it over or see it.
    r.put_execution(&execution("acct-b", "ex-1", None, 9))
        .expect("answers");
    assert!(r.execution("acct-b", "ex-1").expect("reads").is_none());
    assert_eq!(
        r.execution("acct-a", "ex-1")
            .expect("reads")
            .expect("kept")
            .sealed,
        vec![5]
    );

    assert_eq!(r.executions("acct-a", None).expect("lists").len(), 2);
    let of_agent = r.executions("acct-a", Some("ag-1")).expect("lists");
    assert_eq!(
        of_agent.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["ex-1"]
    );
    assert!(!r.delete_execution("acct-b", "ex-1").expect("answers"));
    assert!(r.delete_execution("acct-a", "ex-1").expect("deletes"));
    assert!(r.execution("acct-a", "ex-1").expect("reads").is_none());
}

fn key_checks_keep_their_order(s: &Subject) {
    let r = &*s.registry;
    assert!(r.key_checks().expect("reads").is_empty());
    for check in [b"first".as_slice(), b"second", b"third"] {
        r.add_key_check(check).expect("stores");
    }
    assert_eq!(
        r.key_checks().expect("reads"),
        [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
}

fn audit(r: &dyn Registry, account: Option<&str>, actor: &str, action: &str, path: &str) {
    r.append_audit(AuditEntry {
        account,
        actor,
        action,
        path: Some(path),
        resolved: None,
        outcome: if action == "read" {
            Outcome::Failed("NotFound")
        } else {
            Outcome::Ok
        },
    })
    .expect("appends");
}

fn audit_pages_follow_the_chain_with_filters_and_open_paths(s: &Subject) {
    let r = &*s.registry;
    r.audit_ready().expect("the writer is ready");
    audit(r, None, "unknown", "sign in", "/");
    for n in 0..5 {
        let actor = if n % 2 == 0 { "account" } else { "agent:ag-1" };
        let action = if n == 4 { "read" } else { "write" };
        audit(
            r,
            Some("acct-a"),
            actor,
            action,
            &format!("/docs/../f{n}.txt"),
        );
    }
    audit(r, Some("acct-b"), "account", "write", "/secret-of-b");
    r.append_audit(AuditEntry {
        account: Some("acct-a"),
        actor: "account",
        action: "open",
        path: Some("/link"),
        resolved: Some("/target"),
        outcome: Outcome::Ok,
    })
    .expect("appends");

    let query = |limit: usize, cursor: i64| AuditQuery {
        account: "acct-a".into(),
        cursor,
        limit,
        ..AuditQuery::default()
    };
    let everything = |_: &_| true;
    let (first, next) = r.audit_page(&query(2, 0), &everything).expect("a page");
    assert_eq!(first.len(), 2);
    let next = next.expect("more pages");
    let (rest, last) = r
        .audit_page(&query(10, next), &everything)
        .expect("the rest");
    assert_eq!(last, None);
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(all.len(), 6, "only acct-a's records");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[0].path.as_deref(), Some("/docs/../f0.txt"));
    assert_eq!(all[0].resolved_path.as_deref(), Some("/f0.txt"));
    assert_eq!(all[5].resolved_path.as_deref(), Some("/target"));

    let agents_reads = AuditQuery {
        actor: Some("agent:ag-1".into()),
        ..query(10, 0)
    };
    let (by_agent, _) = r.audit_page(&agents_reads, &everything).expect("filtered");
    assert_eq!(by_agent.len(), 2);
    let failures = AuditQuery {
        outcome: Some("NotFound".into()),
        ..query(10, 0)
    };
    let (failed, _) = r.audit_page(&failures, &everything).expect("filtered");
    assert_eq!(
        failed.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["read"]
    );
    let (visible, _) = r
        .audit_page(&query(10, 0), &|record| record.actor == "account")
        .expect("filtered by the caller");
    assert_eq!(visible.len(), 4);

    assert_eq!((s.verify)().expect("the chain verifies"), 8);
}

fn a_changed_audit_record_breaks_the_chain(s: &Subject) {
    let r = &*s.registry;
    for n in 0..3 {
        audit(r, Some("acct-a"), "account", "write", &format!("/f{n}"));
    }
    r.flush_audit();
    assert_eq!((s.verify)().expect("intact"), 3);
    (s.tamper)("acct-a");
    let broken = (s.verify)().expect_err("a record was changed");
    assert!(broken.to_string().contains("changed"), "{broken}");
}

fn nodes_appending_together_keep_one_chain_per_account(s: &Subject) {
    let Some(second_node) = &s.second_node else {
        return; // One node per SQLite registry: its data directory is locked.
    };
    let other = second_node();
    let nodes = [&*s.registry, &*other];
    let writers_per_node = 2;
    let records_per_writer = 60;
    let writing = std::sync::atomic::AtomicUsize::new(nodes.len() * writers_per_node);
    std::thread::scope(|scope| {
        for node in nodes {
            for writer in 0..writers_per_node {
                let writing = &writing;
                scope.spawn(move || {
                    for n in 0..records_per_writer {
                        let account = if n % 3 == 0 { "acct-b" } else { "acct-a" };
                        let path = format!("/w{writer}/{n}");
                        audit(node, Some(account), "account", "write", &path);
                        // One commit per record: the chains grow all along.
                        node.flush_audit();
                    }
                    writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        }
        // Checking while the nodes append finds every chain intact too.
        while writing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            (s.verify)().expect("the chains verify while growing");
        }
    });
    for node in nodes {
        node.flush_audit();
    }
    let total = 2 * writers_per_node * records_per_writer;
    assert_eq!((s.verify)().expect("every chain verifies"), total as u64);
    let query = AuditQuery {
        account: "acct-a".into(),
        limit: 1000,
        ..AuditQuery::default()
    };
    let (records, _) = s.registry.audit_page(&query, &|_| true).expect("reads");
    let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "acct-a's chain has no gap, whichever node wrote"
    );
    assert_eq!(records.len(), total * 2 / 3);
}

fn signups_are_limited_per_client_and_forgotten_after_the_window(s: &Subject) {
    let r = &*s.registry;
    let hour = Duration::from_secs(3600);
    for _ in 0..2 {
        assert_eq!(r.record_signup("10.0.0.1", 2, hour).expect("counts"), None);
    }
    let wait = r
        .record_signup("10.0.0.1", 2, hour)
        .expect("counts")
        .expect("the third is refused");
    assert!(
        wait > hour - Duration::from_secs(60) && wait <= hour,
        "{wait:?}"
    );
    // A refused attempt is not counted; another address has its own count.
    assert_eq!(r.record_signup("10.0.0.2", 2, hour).expect("counts"), None);
    // Another node sharing the registry counts the same sign-ups.
    if let Some(second_node) = &s.second_node {
        let other = second_node();
        assert!(
            other
                .record_signup("10.0.0.1", 2, hour)
                .expect("counts")
                .is_some(),
            "the other node allowed a third sign-up"
        );
    }
    // With a short window, the old sign-ups stop counting once it passed;
    // the wait is never said to be under a second (`Retry-After`'s unit).
    let short = Duration::from_millis(500);
    assert_eq!(r.record_signup("10.0.0.3", 1, short).expect("counts"), None);
    let wait = r
        .record_signup("10.0.0.3", 1, short)
        .expect("counts")
        .expect("refused within the window");
    assert_eq!(wait, Duration::from_secs(1));
    std::thread::sleep(short + Duration::from_millis(100));
    assert_eq!(r.record_signup("10.0.0.3", 1, short).expect("counts"), None);
    // No limit at all: always refused, for the whole window.
    assert_eq!(
        r.record_signup("10.0.0.4", 0, hour).expect("counts"),
        Some(hour)
    );
}

fn signups_counted_at_once_never_pass_the_limit(s: &Subject) {
    let other = s.second_node.as_ref().map(|second_node| second_node());
    let mut nodes = vec![&*s.registry];
    nodes.extend(other.as_deref());
    let allowed = std::sync::atomic::AtomicUsize::new(0);
    let hour = Duration::from_secs(3600);
    std::thread::scope(|scope| {
        for node in &nodes {
            for _ in 0..4 {
                let allowed = &allowed;
                scope.spawn(move || {
                    for _ in 0..5 {
                        if node
                            .record_signup("10.9.9.9", 7, hour)
                            .expect("counts")
                            .is_none()
                        {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        }
    });
    assert_eq!(allowed.into_inner(), 7, "sign-ups allowed of a limit of 7");
}

/// A TCP relay to the test server that can be cut and restored, to make
/// PostgreSQL unreachable for one registry without stopping the cluster
/// the other tests share.
struct Relay {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    streams: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to(upstream: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let streams = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_cut, open) = (cut.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pairs = [(&client, &server), (&server, &client)];
                for (from, to) in pairs {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                open.lock().expect("streams").extend([client, server]);
            }
        });
        Self { port, cut, streams }
    }

    /// Closes every relayed connection, and every new one at once.
    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_database_outage_is_unavailable_and_passes_without_a_restart() {
    let Some(server) = anyfs_services::available(anyfs_services::postgres()) else {
        return;
    };
    let url = server.fresh_database();
    let relay = Relay::to(server.port());
    let relayed = url.replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", relay.port),
    );
    let registry = PostgresRegistry::open(Database::connect(&relayed).expect("connects"), sealer())
        .expect("opens");
    registry
        .create_account("acct-a", "Alice", &digest(1))
        .expect("creates");

    relay.cut();
    let down = registry
        .account("acct-a")
        .expect_err("PostgreSQL is unreachable");
    assert!(
        matches!(down, super::RegistryError::Unavailable(_)),
        "{down}"
    );
    // Handed to the writer; the answer is already an error if the writer
    // has met the outage by then (it may have, or not yet).
    let _ = registry.append_audit(AuditEntry {
        account: Some("acct-a"),
        actor: "account",
        action: "write",
        path: Some("/during-the-outage"),
        resolved: None,
        outcome: Outcome::Ok,
    });
    registry.flush_audit();
    assert!(
        registry.audit_ready().is_err(),
        "operations are refused meanwhile"
    );

    relay.restore();
    let back = registry
        .account("acct-a")
        .expect("the next call reconnects");
    assert_eq!(back.expect("exists").name, "Alice");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while registry.audit_ready().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit writer never recovered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The record accepted during the outage was kept and committed.
    assert_eq!(verify_postgres_chain(&url).expect("the chain verifies"), 1);
}
