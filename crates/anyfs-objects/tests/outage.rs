//! PostgreSQL or the object store going away under the backend:
//! operations fail as `Unavailable` naming which (never a credential),
//! change nothing, and work again once it is back, without reopening
//! anything.
//!
//! A binary of its own, with one test: it stops the servers its tests
//! share, one after the other.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs::{FsError, FsRead, FsWrite};
use anyfs_objects::{Service, Unavailable};

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Asserts that `err` says `service` is unavailable, without `secret`.
#[track_caller]
fn assert_unavailable(err: FsError, service: Service, secret: &str) {
    let found = Unavailable::of(&err).unwrap_or_else(|| panic!("not Unavailable: {err}"));
    assert_eq!(found.service(), service, "{err}");
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
}

#[test]
fn outages_are_unavailable_and_pass() {
    let Some(services) = common::services() else {
        return;
    };
    let postgres = anyfs_services::require!(anyfs_services::postgres());
    let s3 = anyfs_services::require!(anyfs_services::seaweed());
    let fs = common::fresh_backend(services);
    fs.write(p("/before"), b"written before").unwrap();
    fs.write(p("/cold"), b"never read yet, so not cached")
        .unwrap();

    // The database.
    postgres.stop().unwrap();
    let read = fs.read(p("/before"));
    let write = fs.write(p("/during"), b"written during");
    postgres.start().unwrap();
    assert_unavailable(read.unwrap_err(), Service::Database, postgres.password());
    assert_unavailable(write.unwrap_err(), Service::Database, postgres.password());
    assert_eq!(fs.read(p("/before")).unwrap(), b"written before");
    assert!(!fs.exists(p("/during")).unwrap());

    // The object store.
    s3.stop().unwrap();
    let read = fs.read(p("/cold"));
    let write = fs.write(p("/during"), b"written during");
    s3.start().unwrap();
    assert_unavailable(
        read.unwrap_err(),
        Service::ObjectStore,
        s3.secret_access_key(),
    );
    assert_unavailable(
        write.unwrap_err(),
        Service::ObjectStore,
        s3.secret_access_key(),
    );
    assert!(!fs.exists(p("/during")).unwrap());
    assert_eq!(
        fs.read(p("/cold")).unwrap(),
        b"never read yet, so not cached"
    );

    fs.write(p("/after"), b"written after").unwrap();
    assert_eq!(fs.read(p("/after")).unwrap(), b"written after");
}
