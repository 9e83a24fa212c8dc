//! Blobs in a real S3 server (SeaweedFS, started by the test): what goes in
//! comes out, by range too; what is stored is ciphertext; any change to a
//! stored blob is caught; the store's preconditions are checked, and an
//! unreachable store says so without leaking credentials.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::LazyLock;

use anyfs::FsErrorKind;
use anyfs::crypto::Key;
use anyfs_objects::{BlobId, Blobs, ObjectStore, ObjectStoreConfig, Service, Unavailable};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

const RECORD: usize = 64 * 1024;
const ACCOUNT: &str = "acct-1";

/// A store on a fresh prefix of the test server, or `None` to skip.
fn store() -> Option<ObjectStore> {
    let s3 = anyfs_services::available(anyfs_services::seaweed())?;
    let config = ObjectStoreConfig::parse(&s3.fresh_url())
        .unwrap()
        .with_endpoint(s3.endpoint())
        .with_region(s3.region())
        .with_credentials(s3.access_key_id(), s3.secret_access_key());
    Some(ObjectStore::connect(&config, RUNTIME.handle().clone()).unwrap())
}

fn blobs(store: ObjectStore, cache_bytes: usize) -> Blobs {
    Blobs::new(store, Key::from_bytes([42; 32]), cache_bytes)
}

/// Content that shows where each byte came from.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn file() -> &'static Path {
    Path::new("/file.bin")
}

#[test]
fn content_comes_back_whole_and_by_range() {
    let Some(store) = store() else { return };
    let blobs = blobs(store, 1 << 20);
    let data = content(3 * RECORD + 123);
    let id = blobs.upload(file(), ACCOUNT, &data).unwrap();
    let size = data.len() as u64;
    let read = |from: u64, to: u64| blobs.read(file(), ACCOUNT, (id, size), from..to).unwrap();
    assert_eq!(read(0, size), data);
    // Within a record, across records, to the end, past the end, empty.
    for (from, to) in [
        (10, 20),
        (RECORD as u64 - 5, RECORD as u64 + 5),
        (RECORD as u64, 3 * RECORD as u64 + 1),
        (size - 3, size + 100),
        (size, size + 10),
        (5, 5),
    ] {
        let want = &data[(from as usize).min(data.len())..(to as usize).min(data.len())];
        assert_eq!(read(from, to), want, "{from}..{to}");
    }
    // Again, now from the cache.
    assert_eq!(read(0, size), data);

    let small = blobs.upload(file(), ACCOUNT, b"hello").unwrap();
    assert_eq!(
        blobs.read(file(), ACCOUNT, (small, 5), 0..5).unwrap(),
        b"hello"
    );
    assert_ne!(small, id);
}

#[test]
fn stored_bytes_hold_no_plaintext() {
    let Some(store) = store() else { return };
    let blobs = blobs(store, 0);
    let marker = b"the quarterly numbers are in this sentence";
    let data: Vec<u8> = marker.iter().copied().cycle().take(2 * RECORD).collect();
    let id = blobs.upload(file(), ACCOUNT, &data).unwrap();
    let name = Blobs::object_name(ACCOUNT, id);
    assert!(name.starts_with("accounts/acct-1/blobs/"));
    let stored = blobs.store().read_for_tests(&name).unwrap();
    assert!(stored.len() > data.len());
    assert!(
        !stored
            .windows(16)
            .any(|w| marker.windows(16).any(|m| m == w)),
        "plaintext found in the stored blob"
    );
}

/// Stores `tampered(stored)` in place of a blob, then reads it whole.
fn read_tampered(tamper: impl FnOnce(&mut Vec<u8>)) -> Option<FsErrorKind> {
    let store = store()?;
    let blobs = blobs(store, 0);
    let data = content(2 * RECORD + 1000);
    let id = blobs.upload(file(), ACCOUNT, &data).unwrap();
    let name = Blobs::object_name(ACCOUNT, id);
    let mut stored = blobs.store().read_for_tests(&name).unwrap();
    tamper(&mut stored);
    blobs.store().overwrite_for_tests(&name, stored).unwrap();
    let size = data.len() as u64;
    let err = blobs
        .read(file(), ACCOUNT, (id, size), 0..size)
        .unwrap_err();
    Some(err.kind())
}

/// Where record `i` starts in a stored blob: after the 8-byte header, full
/// records of nonce, 64 KiB and tag.
fn record_at(i: usize) -> usize {
    8 + i * (12 + RECORD + 16)
}

#[test]
fn a_flipped_byte_is_caught() {
    let Some(kind) = read_tampered(|b| b[record_at(1) + 100] ^= 1) else {
        return;
    };
    assert_eq!(kind, FsErrorKind::IntegrityError);
}

#[test]
fn swapped_records_are_caught() {
    let Some(kind) = read_tampered(|b| {
        let second: Vec<u8> = b[record_at(1)..record_at(2)].to_vec();
        let first: Vec<u8> = b[record_at(0)..record_at(1)].to_vec();
        b[record_at(0)..record_at(1)].copy_from_slice(&second);
        b[record_at(1)..record_at(2)].copy_from_slice(&first);
    }) else {
        return;
    };
    assert_eq!(kind, FsErrorKind::IntegrityError);
}

#[test]
fn a_cut_off_blob_is_caught() {
    let Some(kind) = read_tampered(|b| b.truncate(record_at(2))) else {
        return;
    };
    assert_eq!(kind, FsErrorKind::IntegrityError);
}

#[test]
fn a_blob_read_as_another_is_caught() {
    let Some(store) = store() else { return };
    let blobs = blobs(store, 0);
    let data = content(1000);
    let a = blobs.upload(file(), ACCOUNT, &data).unwrap();
    let b = blobs.upload(file(), ACCOUNT, &content(1000)).unwrap();
    // b's object replaced by a's bytes: each record is bound to its blob.
    let stored = blobs
        .store()
        .read_for_tests(&Blobs::object_name(ACCOUNT, a))
        .unwrap();
    blobs
        .store()
        .overwrite_for_tests(&Blobs::object_name(ACCOUNT, b), stored)
        .unwrap();
    let err = blobs.read(file(), ACCOUNT, (b, 1000), 0..1000).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::IntegrityError);
}

#[test]
fn the_store_is_checked_to_honour_preconditions() {
    // `connect` runs the check; here it runs again on its own.
    let Some(store) = store() else { return };
    store.check().unwrap();
}

#[test]
fn an_unreachable_store_is_reported_as_unavailable_without_secrets() {
    anyfs_services::require!(anyfs_services::seaweed());
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ObjectStoreConfig::parse("s3://anyfs-test/nowhere")
        .unwrap()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY");
    let err = ObjectStore::connect(&config, RUNTIME.handle().clone()).unwrap_err();
    let unavailable = Unavailable::of(&err).expect("an unreachable store is Unavailable");
    assert_eq!(unavailable.service(), Service::ObjectStore);
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("wJalrXUtnFEMI"), "{message}");
    assert!(!format!("{err:?}").contains("wJalrXUtnFEMI"));
}

#[test]
fn blob_ids_are_random() {
    let Some(store) = store() else { return };
    let blobs = blobs(store, 0);
    let ids: std::collections::HashSet<BlobId> = (0..8)
        .map(|_| blobs.upload(file(), ACCOUNT, b"same").unwrap())
        .collect();
    assert_eq!(ids.len(), 8);
}
