//! A store that does not honour `If-None-Match` or `If-Match` is refused at
//! connection, with a message naming it and the condition; and an upload
//! whose answer was lost, sent again, is not mistaken for another's blob.
//!
//! The store here is the real SeaweedFS behind a relay on loopback that
//! forwards every byte both ways, except what the test has it change: it
//! turns the store's `412 Precondition Failed` into `200 OK` (to a client,
//! exactly a store that ignores the condition: it says the write
//! happened), or it drops the answer to the first upload of a blob (the
//! store did write it; the client sees the connection close).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::Path;

use anyfs::crypto::Key;
use anyfs::{FsRead, FsWrite};
use anyfs_objects::{Blobs, ObjectBackend, ObjectStore, ObjectStoreConfig};

/// What the relay changes.
#[derive(Clone, Copy, PartialEq)]
enum Hide {
    /// Every 412: the store ignores both conditions.
    All,
    /// Only the 412 that answers a request with `If-Match`.
    IfMatch,
    /// The answer to the first upload of a blob (under `…/blobs/`): the
    /// connection closes instead.
    FirstBlobAnswer,
}

/// Whether the relay has dropped the answer to an upload yet.
static DROPPED: AtomicBool = AtomicBool::new(false);

const REFUSED: &[u8] = b"HTTP/1.1 412 Precondition Failed\r\n";
const ACCEPTED: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Starts the relay in front of `upstream` (`host:port`); its address.
fn relay(upstream: String, hide: Hide) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            // Whether the request being answered carried If-Match: requests
            // on one connection are answered in order, one at a time.
            let if_match = Arc::new(AtomicBool::new(false));
            // Whether the answer being sent is the one to drop.
            let drop_answer = Arc::new(AtomicBool::new(false));
            let (c_in, s_out, seen, drop_it) = (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                if_match.clone(),
                drop_answer.clone(),
            );
            std::thread::spawn(move || {
                pump(c_in, s_out, |chunk| {
                    if let Some(head) = request_head(chunk) {
                        seen.store(head.contains("\r\nif-match:"), Ordering::SeqCst);
                        if hide == Hide::FirstBlobAnswer
                            && head.starts_with("put ")
                            && head.contains("/blobs/")
                            && !DROPPED.swap(true, Ordering::SeqCst)
                        {
                            drop_it.store(true, Ordering::SeqCst);
                        }
                    }
                    Some(chunk.to_vec())
                })
            });
            std::thread::spawn(move || {
                pump(server, client, |chunk| {
                    if drop_answer.load(Ordering::SeqCst) {
                        return None;
                    }
                    let rewrite = hide == Hide::All
                        || (hide == Hide::IfMatch && if_match.load(Ordering::SeqCst));
                    match chunk.strip_prefix(REFUSED) {
                        Some(rest) if rewrite => Some([ACCEPTED, rest].concat()),
                        _ => Some(chunk.to_vec()),
                    }
                })
            });
        }
    });
    address
}

/// The head of a request, lowercased, if `chunk` starts one.
fn request_head(chunk: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(chunk);
    let starts = ["PUT ", "GET ", "HEAD ", "POST ", "DELETE "]
        .iter()
        .any(|m| text.starts_with(m));
    let end = text.find("\r\n\r\n")?;
    starts.then(|| text[..end].to_ascii_lowercase())
}

/// Copies `from` to `to` through `edit` until either side closes, or
/// `edit` says `None`: then both connections close.
fn pump(mut from: TcpStream, mut to: TcpStream, edit: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    let mut buf = vec![0; 1 << 16];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let Some(edited) = edit(&buf[..n]) else {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        };
        if to.write_all(&edited).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The store's configuration through a relay that changes `hide`, and the
/// relay's endpoint.
fn through(hide: Hide) -> Option<(ObjectStoreConfig, String)> {
    let s3 = anyfs_services::available(anyfs_services::seaweed())?;
    let upstream = s3.endpoint().trim_start_matches("http://").to_owned();
    let endpoint = format!("http://{}", relay(upstream, hide));
    let config = ObjectStoreConfig::parse(&s3.fresh_url())
        .unwrap()
        .with_endpoint(&endpoint)
        .with_region(s3.region())
        .with_credentials(s3.access_key_id(), s3.secret_access_key());
    Some((config, endpoint))
}

/// Connects to the store through a relay that hides `hide`; the error.
fn connect_through(hide: Hide) -> Option<(String, String)> {
    let (config, endpoint) = through(hide)?;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Err(error) = ObjectStore::connect(&config, runtime.handle().clone()) else {
        panic!("a store that ignores a precondition was accepted");
    };
    Some((endpoint, error.to_string()))
}

#[test]
fn a_store_that_ignores_if_none_match_is_refused_naming_it() {
    let Some((endpoint, message)) = connect_through(Hide::All) else {
        return;
    };
    assert!(message.contains("ignores If-None-Match"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

#[test]
fn a_store_that_ignores_if_match_is_refused_naming_it() {
    let Some((endpoint, message)) = connect_through(Hide::IfMatch) else {
        return;
    };
    assert!(message.contains("ignores If-Match"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

/// The store wrote a blob but its answer was lost: the client sends the
/// upload again, and the store refuses it (`If-None-Match: *`, the blob
/// exists). That refusal is this upload's own blob, not another's, and the
/// write succeeds (it used to fail with "blob … already exists").
#[test]
fn an_upload_sent_again_after_its_answer_was_lost_succeeds() {
    let Some((config, _)) = through(Hide::FirstBlobAnswer) else {
        return;
    };
    let Some(postgres) = anyfs_services::available(anyfs_services::postgres()) else {
        return;
    };
    let db = anyfs_postgres::Database::connect(&postgres.fresh_database()).unwrap();
    ObjectBackend::migrate(&db).unwrap();
    let runtime = db.block_on(async { tokio::runtime::Handle::current() });
    let store = ObjectStore::connect(&config, runtime).unwrap();
    let blobs = Arc::new(Blobs::new(store, Key::from_bytes([7; 32]), 1 << 20));
    let fs = ObjectBackend::open(db, blobs, "lost-answer", "main").unwrap();
    fs.write(Path::new("/a.txt"), b"written once, answered twice")
        .unwrap();
    assert!(
        DROPPED.load(Ordering::SeqCst),
        "the relay dropped no answer"
    );
    assert_eq!(
        fs.read(Path::new("/a.txt")).unwrap(),
        b"written once, answered twice"
    );
}
