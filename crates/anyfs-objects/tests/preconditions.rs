//! A store that does not honour `If-None-Match` or `If-Match` is refused at
//! connection, with a message naming it and the condition.
//!
//! The store here is the real SeaweedFS behind a relay on loopback that
//! forwards every byte both ways, except that it turns the store's
//! `412 Precondition Failed` into `200 OK`: to a client that is exactly a
//! store that ignores the condition (it says the write happened).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyfs_objects::{ObjectStore, ObjectStoreConfig};

/// Which refusals the relay hides.
#[derive(Clone, Copy, PartialEq)]
enum Hide {
    /// Every 412: the store ignores both conditions.
    All,
    /// Only the 412 that answers a request with `If-Match`.
    IfMatch,
}

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
            let (c_in, s_out, seen) = (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                if_match.clone(),
            );
            std::thread::spawn(move || {
                pump(c_in, s_out, |chunk| {
                    if let Some(head) = request_head(chunk) {
                        seen.store(head.contains("\r\nif-match:"), Ordering::SeqCst);
                    }
                    chunk.to_vec()
                })
            });
            std::thread::spawn(move || {
                pump(server, client, |chunk| {
                    let rewrite = hide == Hide::All || if_match.load(Ordering::SeqCst);
                    match chunk.strip_prefix(REFUSED) {
                        Some(rest) if rewrite => [ACCEPTED, rest].concat(),
                        _ => chunk.to_vec(),
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

/// Copies `from` to `to` through `edit` until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, edit: impl Fn(&[u8]) -> Vec<u8>) {
    let mut buf = vec![0; 1 << 16];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&edit(&buf[..n])).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Connects to the store through a relay that hides `hide`; the error.
fn connect_through(hide: Hide) -> Option<(String, String)> {
    let s3 = anyfs_services::available(anyfs_services::seaweed())?;
    let upstream = s3.endpoint().trim_start_matches("http://").to_owned();
    let endpoint = format!("http://{}", relay(upstream, hide));
    let config = ObjectStoreConfig::parse(&s3.fresh_url())
        .unwrap()
        .with_endpoint(&endpoint)
        .with_region(s3.region())
        .with_credentials(s3.access_key_id(), s3.secret_access_key());
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
