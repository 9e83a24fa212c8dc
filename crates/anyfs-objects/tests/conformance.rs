//! `ObjectBackend` against the conformance suite, on a real PostgreSQL and
//! a real S3 server (SeaweedFS), each test in a workspace of its own.
//!
//! Without the servers each test says why and passes as skipped, as every
//! test on the services does; with `ANYFS_REQUIRE_SERVICES=1` (CI) it
//! fails instead.
//!
//! Links are run module by module rather than through the `links`
//! capability: its model-based test opens a fresh backend for each of its
//! sequences, and here every one is a workspace on real servers, so it runs
//! [`LINK_MODEL_CASES`] of them rather than the in-memory default.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use anyfs_objects::ObjectBackend;
use common::ready;

/// Random sequences of the model-based test with links.
const LINK_MODEL_CASES: u32 = 200;

/// A backend on a workspace of its own (only once `ready` said yes).
fn make() -> ObjectBackend {
    let services = common::services().unwrap_or_else(|| panic!("called before `ready`"));
    common::fresh_backend(services)
}

anyfs_test::conformance!(mod objects, ObjectBackend => make(), if ready;
    permissions, sync, stats, inode, handles, snapshots);

mod links {
    use super::*;

    fn make_storage() -> anyfs::FileStorage<ObjectBackend> {
        anyfs::FileStorage::new(make())
    }

    mod backend {
        use super::*;
        anyfs_test::module_tests!(links, make, if ready);
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
            anyfs_test::model::check_with_links(make_storage, LINK_MODEL_CASES);
        }
    }
}
