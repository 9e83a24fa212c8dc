//! `Database` against a real PostgreSQL server: statements, the sorting of
//! errors into "unavailable" and "refused", passwords kept out of errors
//! and logs, recovery after a lost connection, and the sync bridge's
//! behaviour on async threads.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyfs_postgres::tokio_postgres::error::SqlState;
use anyfs_postgres::{Database, DbError, Options};
use anyfs_services::{postgres, require};

fn connect(url: &str) -> Database {
    Database::connect(url).expect("connects to the test server")
}

#[test]
fn runs_statements_from_synchronous_code() {
    let server = require!(postgres());
    let db = connect(&server.fresh_database());
    let total: i64 = db
        .run(|client| async move {
            client
                .batch_execute("CREATE TABLE numbers (n bigint NOT NULL)")
                .await?;
            for n in 1..=4_i64 {
                client
                    .execute("INSERT INTO numbers (n) VALUES ($1)", &[&n])
                    .await?;
            }
            Ok(client
                .query_one("SELECT sum(n)::bigint FROM numbers", &[])
                .await?
                .get(0))
        })
        .expect("statements run");
    assert_eq!(total, 10);
    assert!(
        db.target()
            .ends_with(&format!(":{}/{}", server.port(), db_name(&db)))
    );
}

fn db_name(db: &Database) -> &str {
    db.target().rsplit('/').next().unwrap_or_default()
}

#[test]
fn sql_errors_are_refusals_with_their_code() {
    let server = require!(postgres());
    let db = connect(&server.fresh_database());
    let syntax = db
        .run(|client| async move { Ok(client.batch_execute("SELEKT 1").await?) })
        .expect_err("bad SQL");
    assert!(!syntax.is_unavailable(), "{syntax}");
    assert_eq!(syntax.code(), Some(&SqlState::SYNTAX_ERROR));
    assert!(syntax.to_string().contains(db.target()), "{syntax}");

    let duplicate = db
        .run(|client| async move {
            client
                .batch_execute(
                    "CREATE TABLE names (name text PRIMARY KEY); INSERT INTO names VALUES ('a')",
                )
                .await?;
            Ok(client
                .batch_execute("INSERT INTO names VALUES ('a')")
                .await?)
        })
        .expect_err("duplicate key");
    assert!(duplicate.is_unique_violation(), "{duplicate}");
}

#[test]
fn an_unreachable_server_is_unavailable() {
    // A port nobody listens on: connection refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("postgres://anyfs:hunter2-secret@127.0.0.1:{port}/anyfs");
    let error = Database::connect(&url).expect_err("nobody listens");
    assert!(error.is_unavailable(), "{error}");
    assert!(error.retry_after().is_some());
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(!format!("{error} {error:?}").contains("hunter2-secret"));
}

#[test]
fn a_server_that_never_answers_times_out() {
    // The kernel completes the TCP handshake, nobody ever speaks: the
    // log-in must give up after the connect timeout, not hang.
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    let started = Instant::now();
    let error = Database::connect_with(
        &format!("postgres://anyfs:pw@127.0.0.1:{port}/anyfs"),
        Options {
            connect_timeout: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .expect_err("silent server");
    assert!(error.is_unavailable(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn passwords_never_show_in_errors_or_the_server_log() {
    let server = require!(postgres());
    let url = server.fresh_database();
    let real = server.password();
    let wrong_password = "wrong-pw-7f3a9c";
    let wrong = url.replace(real, wrong_password);

    let login = Database::connect(&wrong).expect_err("wrong password");
    assert!(
        !login.is_unavailable(),
        "a refused login is not an outage: {login}"
    );
    assert_eq!(login.code(), Some(&SqlState::INVALID_PASSWORD));

    let bad_port = url.replace(&format!(":{}/", server.port()), ":notaport/");
    let parse = Database::connect(&bad_port).expect_err("bad port");
    assert!(matches!(parse, DbError::InvalidUrl { .. }), "{parse}");

    let db = connect(&url);
    let refused = db
        .run(|client| async move { Ok(client.batch_execute("SELECT * FROM missing").await?) })
        .expect_err("missing table");

    for shown in [
        format!("{login} {login:?}"),
        format!("{parse} {parse:?}"),
        format!("{refused} {refused:?}"),
        format!("{db:?}"),
    ] {
        assert!(!shown.contains(real), "the password shows in {shown}");
        assert!(
            !shown.contains(wrong_password),
            "the password shows in {shown}"
        );
    }
    let log = std::fs::read_to_string(server.log_path()).expect("server log");
    assert!(
        log.contains("password authentication failed"),
        "the log has the failed login"
    );
    assert!(!log.contains(real) && !log.contains(wrong_password));
}

#[test]
fn a_connection_lost_mid_statement_is_unavailable_and_the_next_call_reconnects() {
    let server = require!(postgres());
    let url = server.fresh_database();
    let db = Database::connect_with(
        &url,
        Options {
            max_connections: 1,
            ..Options::default()
        },
    )
    .expect("connects");
    let killer = connect(&url);
    let lost = std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| {
            db.run(|client| async move { Ok(client.batch_execute("SELECT pg_sleep(30)").await?) })
        });
        // Terminate the session once it is inside its statement.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let terminated: i64 = killer
                .run(|client| async move {
                    let row = client
                        .query_one(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                             WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%' \
                             AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await?;
                    Ok(row.get(0))
                })
                .expect("looks for the session");
            if terminated == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the statement never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        sleeper.join().expect("no panic")
    });
    let lost = lost.expect_err("the session was terminated");
    assert!(lost.is_unavailable(), "{lost}");
    assert!(lost.retry_after().is_some());
    db.run(|client| async move { Ok(client.batch_execute("SELECT 1").await?) })
        .expect("a new connection serves the next call");
}

#[test]
fn blocking_from_an_async_task_panics_with_tokio_s_message_and_spawn_blocking_works() {
    let server = require!(postgres());
    let db = connect(&server.fresh_database());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    let on_worker = db.clone();
    let panicked = runtime
        .block_on(runtime.spawn(async move {
            on_worker.run(|client| async move { Ok(client.batch_execute("SELECT 1").await?) })
        }))
        .expect_err("blocking on a worker panics");
    let message = panicked.into_panic();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| message.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("Cannot start a runtime from within a runtime"),
        "{message}"
    );

    let on_blocking = db.clone();
    runtime
        .block_on(runtime.spawn_blocking(move || {
            on_blocking.run(|client| async move { Ok(client.batch_execute("SELECT 1").await?) })
        }))
        .expect("joins")
        .expect("spawn_blocking may wait for the database");

    // Dropping the last handle inside async code must not panic either.
    runtime.block_on(async move { drop(db) });
}
