//! Trait objects are backends: `Box<dyn FsFuse>` passes the suite too, which
//! keeps every trait object safe and every blanket impl forwarding.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use anyfs::{FsFuse, MemoryBackend};

type Dynamic = Box<dyn FsFuse>;

anyfs_test::conformance!(Dynamic => Box::new(MemoryBackend::new());
    links, permissions, sync, stats, inode);
