//! The conformance suite over two nodes of one workspace: every call goes
//! to the other of two `ObjectBackend`s (each with its own cache of what it
//! read), so each step reads what the previous one changed through another
//! node. A node that answered from what it read before a change made
//! elsewhere fails here.
//!
//! Handles are a process's own (a handle opened on one node means nothing
//! to another), so the `handles` capability is not run here.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use anyfs::middleware::Middleware;
use anyfs_objects::ObjectBackend;
use common::ready;

/// Two nodes serving one workspace, taking turns.
struct TwoNodes {
    nodes: [ObjectBackend; 2],
    turn: AtomicUsize,
}

impl Middleware for TwoNodes {
    type Inner = ObjectBackend;

    fn inner(&self) -> &ObjectBackend {
        &self.nodes[self.turn.fetch_add(1, Ordering::Relaxed) % 2]
    }
}

/// Two nodes on a workspace of its own (only once `ready` said yes).
fn make() -> TwoNodes {
    let services = common::services().unwrap_or_else(|| panic!("called before `ready`"));
    let first = common::fresh_backend(services);
    let second = ObjectBackend::open(
        services.db.clone(),
        services.blobs.clone(),
        first.account(),
        "main",
    )
    .unwrap();
    TwoNodes {
        nodes: [first, second],
        turn: AtomicUsize::new(0),
    }
}

anyfs_test::conformance!(mod two_nodes, TwoNodes => make(), if ready;
    permissions, sync, stats, inode);

mod links {
    use super::*;

    fn make_storage() -> anyfs::FileStorage<TwoNodes> {
        anyfs::FileStorage::new(make())
    }

    mod storage {
        use super::*;
        anyfs_test::module_tests!(links, make_storage, if ready);
        anyfs_test::module_tests!(resolve, make_storage, if ready);

        #[test]
        fn random_sequences_match_the_model() {
            if !ready() {
                return;
            }
            anyfs_test::model::check_with_links(make_storage, 100);
        }
    }
}

/// Inside `consistent_reads`, reads see the workspace as of the first one,
/// except after a change made inside; outside, every read sees every
/// change.
#[test]
fn consistent_reads_see_one_moment_until_they_change_something() {
    use anyfs::{FsRead, FsWrite};
    use std::path::Path;

    if !ready() {
        return;
    }
    let nodes = make().nodes;
    let file = Path::new("/f.txt");
    nodes[0].write(file, b"one").unwrap();
    anyfs_objects::consistent_reads(|| {
        assert_eq!(nodes[0].read(file).unwrap(), b"one");
        // Another node's change, made meanwhile (another thread: the
        // moment is this thread's): not seen yet.
        std::thread::scope(|s| {
            s.spawn(|| nodes[1].write(file, b"two").unwrap());
        });
        assert_eq!(nodes[0].read(file).unwrap(), b"one");
        // A change made here: seen, with everything before it.
        nodes[0].write(Path::new("/g.txt"), b"mine").unwrap();
        assert_eq!(nodes[0].read(file).unwrap(), b"two");
        assert_eq!(nodes[0].read(Path::new("/g.txt")).unwrap(), b"mine");
    });
    nodes[1].write(file, b"three").unwrap();
    assert_eq!(nodes[0].read(file).unwrap(), b"three");
}
