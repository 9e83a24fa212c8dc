//! The SeaweedFS of a test binary: it answers on loopback with the
//! credentials it was given, and it is gone once the test process is,
//! even when that process is killed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process of `the_server_stops_when_the_test_process_is_killed`.
const CHILD: &str = "ANYFS_SEAWEED_TEST_CHILD";

/// `GET path` on the server, unsigned: the status code.
fn get(endpoint: &str, path: &str) -> std::io::Result<u16> {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0))
}

#[test]
fn the_server_answers_on_loopback_and_refuses_the_anonymous() {
    let s3 = anyfs_services::require!(anyfs_services::seaweed());
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(get(s3.endpoint(), "/healthz").unwrap(), 200);
    // Credentials are required: an unsigned request for the bucket is refused.
    assert_eq!(
        get(s3.endpoint(), &format!("/{}/", s3.bucket())).unwrap(),
        403
    );
    assert!(s3.secret_access_key().len() >= 32);
    assert_ne!(s3.fresh_prefix(), s3.fresh_prefix());
    assert!(
        s3.fresh_url()
            .starts_with(&format!("s3://{}/", s3.bucket()))
    );
}

#[test]
fn the_server_stops_when_the_test_process_is_killed() {
    if std::env::var_os(CHILD).is_some() {
        // The child: start the server, say where, and wait to be killed.
        let s3 = anyfs_services::require!(anyfs_services::seaweed());
        println!("endpoint={}", s3.endpoint());
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    anyfs_services::require!(anyfs_services::seaweed());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_server_stops_when_the_test_process_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut endpoint = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // The harness may print the test's name on the same line first.
        if let Some((_, found)) = line.unwrap().split_once("endpoint=") {
            endpoint = Some(found.trim().to_owned());
            break;
        }
    }
    let endpoint = endpoint.expect("the child started a server");
    assert_eq!(get(&endpoint, "/healthz").unwrap(), 200);

    child.kill().unwrap(); // SIGKILL: no destructor, no exit handler runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&endpoint, "/healthz").is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server at {endpoint} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
