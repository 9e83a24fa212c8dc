//! PostgreSQL going away under the backend: operations fail as
//! `Unavailable` naming the database (never a password), change nothing,
//! and work again once it is back, without reopening anything.
//!
//! A binary of its own: it stops the PostgreSQL that its tests share.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use anyfs::{FsRead, FsWrite};
use anyfs_objects::{Service, Unavailable};

#[test]
fn a_database_outage_is_unavailable_and_passes() {
    let Some(services) = common::services() else {
        return;
    };
    let postgres = anyfs_services::require!(anyfs_services::postgres());
    let fs = common::fresh_backend(services);
    fs.write(Path::new("/before"), b"written before").unwrap();

    postgres.stop().unwrap();
    let read = fs.read(Path::new("/before"));
    let write = fs.write(Path::new("/during"), b"written during");
    postgres.start().unwrap();

    for err in [read.unwrap_err(), write.unwrap_err()] {
        let unavailable = Unavailable::of(&err).unwrap_or_else(|| panic!("not Unavailable: {err}"));
        assert_eq!(unavailable.service(), Service::Database);
        assert!(!err.to_string().contains(postgres.password()), "{err}");
    }
    // Back, through the same backend and pool.
    assert_eq!(fs.read(Path::new("/before")).unwrap(), b"written before");
    assert!(!fs.exists(Path::new("/during")).unwrap());
    fs.write(Path::new("/after"), b"written after").unwrap();
}
