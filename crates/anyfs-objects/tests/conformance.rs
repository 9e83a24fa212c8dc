//! `ObjectBackend` against the conformance suite, on a real PostgreSQL and
//! a real S3 server (SeaweedFS), each test in a workspace of its own.
//!
//! The suite cannot skip a test half way, so without the servers this
//! binary fails, saying how to install them (`bash
//! scripts/install-test-services.sh`).
//!
//! Links are run module by module rather than through the `links`
//! capability: its model-based test opens a fresh backend for each of its
//! sequences, and here every one is a workspace on real servers, so it runs
//! [`LINK_MODEL_CASES`] of them rather than the in-memory default.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use anyfs_objects::ObjectBackend;

/// Random sequences of the model-based test with links.
const LINK_MODEL_CASES: u32 = 200;

fn make() -> ObjectBackend {
    let services = common::services().unwrap_or_else(|| {
        panic!(
            "the conformance suite needs PostgreSQL and SeaweedFS: \
             install them with `bash scripts/install-test-services.sh`"
        )
    });
    common::fresh_backend(services)
}

anyfs_test::conformance!(mod objects, ObjectBackend => make();
    permissions, sync, stats, inode, handles);

mod links {
    use super::*;

    fn make_storage() -> anyfs::FileStorage<ObjectBackend> {
        anyfs::FileStorage::new(make())
    }

    mod backend {
        use super::*;
        anyfs_test::module_tests!(links, make);
    }

    mod storage {
        use super::*;
        anyfs_test::module_tests!(links, make_storage);
        anyfs_test::module_tests!(resolve, make_storage);

        #[test]
        fn random_sequences_match_the_model() {
            anyfs_test::model::check_with_links(make_storage, LINK_MODEL_CASES);
        }
    }
}
