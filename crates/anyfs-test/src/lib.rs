//! The AnyFS conformance suite: one set of behaviour tests that every
//! backend, and every middleware stack, must pass.
//!
//! A backend crate runs it with one macro call in an integration test,
//! naming the type, how to make a fresh one, and the capabilities (traits)
//! it has beyond [`Fs`](anyfs::Fs):
//!
//! ```ignore
//! anyfs_test::conformance!(MemoryBackend => MemoryBackend::new();
//!     links, permissions, sync, stats, inode, handles);
//! ```
//!
//! That generates two modules of `#[test]`s:
//!
//! - `backend`: the backend alone, driven with resolved paths as
//!   [`FileStorage`](anyfs::FileStorage) would give them;
//! - `storage`: [`FileStorage`](anyfs::FileStorage) over the backend, with
//!   caller paths: symlink resolution, `..`, bad input, and a model-based
//!   property test comparing random operation sequences with a reference
//!   model after every step.
//!
//! Capabilities: `links` ([`FsLink`](anyfs::FsLink)), `permissions`,
//! `sync`, `stats`, `inode`, `handles`, `snapshots`
//! ([`FsSnapshots`](anyfs::FsSnapshots): snapshot views pass the reading
//! tests, diffs match a reference, merges with conflicts apply nothing). The model-based test runs
//! [`DEFAULT_MODEL_CASES`] sequences, or `ANYFS_MODEL_CASES` from the
//! environment.
//!
//! Each test is a public function (`anyfs_test::basic::rename_replaces_a_file`
//! and so on), generic over the backend, and is named nowhere else: the
//! build script lists every module's tests from its source, and
//! [`module_tests!`] expands that list into `#[test]`s. A new test is a new
//! `pub fn name<B: ...>(fs: &B)` in a module; nothing else to edit.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// A test suite: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

pub mod bad_input;
pub mod basic;
pub mod concurrency;
pub mod handles;
pub mod inode;
pub mod large;
pub mod links;
pub mod model;
pub mod permissions;
pub mod resolve;
pub mod snapshots;
pub mod stats;
pub mod sync;
pub mod trees;

#[doc(hidden)]
pub use anyfs;

use std::fmt::Debug;
use std::path::Path;

use anyfs::{FsErrorKind, FsResult};

/// How many random sequences the model-based test runs by default.
pub const DEFAULT_MODEL_CASES: u32 = 10_000;

/// Shorthand for a path literal.
pub fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Asserts that `result` failed with `kind`, and that the error names a path.
#[track_caller]
pub fn assert_err<T: Debug>(result: FsResult<T>, kind: FsErrorKind) {
    match result {
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "unexpected error: {e}");
            assert!(
                !e.path().as_os_str().is_empty(),
                "error does not name a path: {e}"
            );
        }
    }
}

/// Generates the conformance tests for a backend type; see the crate docs.
///
/// `conformance!(mod name, Type => make; caps)` names the generated module,
/// so that one test file can hold several subjects.
///
/// `conformance!(mod name, Type => make, if ready; caps)` runs each test
/// only when the function `ready() -> bool` says so: a backend on a server
/// that may be missing skips its tests (after `ready` said why) rather
/// than failing them.
#[macro_export]
macro_rules! conformance {
    ($ty:ty => $make:expr $(; $($cap:ident),* $(,)?)?) => {
        $crate::conformance!(mod conformance, $ty => $make $(; $($cap),*)?);
    };
    (mod $module:ident, $ty:ty => $make:expr, if $ready:path $(; $($cap:ident),* $(,)?)?) => {
        #[allow(unused_imports, clippy::module_inception)]
        mod $module {
            use super::*;

            fn make_backend() -> $ty {
                $make
            }

            fn make_storage() -> $crate::anyfs::FileStorage<$ty> {
                $crate::anyfs::FileStorage::new(make_backend())
            }

            mod backend {
                use super::*;
                $crate::conformance!(@caps backend, make_backend, $ready; fs $($(, $cap)*)?);
            }

            mod storage {
                use super::*;
                $crate::conformance!(@caps storage, make_storage, $ready; fs, storage $($(, $cap)*)?);
            }
        }
    };
    (mod $module:ident, $ty:ty => $make:expr $(; $($cap:ident),* $(,)?)?) => {
        $crate::conformance!(mod $module, $ty => $make, if $crate::always_ready $(; $($cap),*)?);
    };

    // What follows is the macro's own: which modules of the suite each
    // capability brings, in each mode. The tests of a module are listed by
    // `module_tests!`, from the module's source.
    (@caps $mode:ident, $make:ident, $ready:path; $($cap:ident),*) => {
        $( $crate::conformance!(@cap $mode, $make, $ready, $cap); )*
    };
    (@modules $make:ident, $ready:path; $($module:ident),*) => {
        $(
            mod $module {
                use super::*;
                $crate::module_tests!($module, $make, if $ready);
            }
        )*
    };
    (@cap $mode:ident, $make:ident, $ready:path, fs) => {
        $crate::conformance!(@modules $make, $ready; basic, large, concurrency);
    };
    (@cap backend, $make:ident, $ready:path, links) => {
        $crate::conformance!(@modules $make, $ready; links);
    };
    (@cap storage, $make:ident, $ready:path, links) => {
        $crate::conformance!(@modules $make, $ready; links, resolve);
        mod model_links {
            use super::*;
            #[test]
            fn random_sequences_match_the_model() {
                if !$ready() {
                    return;
                }
                $crate::model::check_with_links($make, $crate::model::cases());
            }
        }
    };
    (@cap storage, $make:ident, $ready:path, storage) => {
        $crate::conformance!(@modules $make, $ready; bad_input);
        mod model {
            use super::*;
            #[test]
            fn random_sequences_match_the_model() {
                if !$ready() {
                    return;
                }
                $crate::model::check($make, $crate::model::cases() / 10);
            }
        }
    };
    (@cap $mode:ident, $make:ident, $ready:path, permissions) => {
        $crate::conformance!(@modules $make, $ready; permissions);
    };
    (@cap $mode:ident, $make:ident, $ready:path, sync) => {
        $crate::conformance!(@modules $make, $ready; sync);
    };
    (@cap $mode:ident, $make:ident, $ready:path, stats) => {
        $crate::conformance!(@modules $make, $ready; stats);
    };
    (@cap backend, $make:ident, $ready:path, inode) => {
        $crate::conformance!(@modules $make, $ready; inode);
    };
    (@cap backend, $make:ident, $ready:path, handles) => {
        $crate::conformance!(@modules $make, $ready; handles);
    };
    (@cap backend, $make:ident, $ready:path, snapshots) => {
        $crate::conformance!(@modules $make, $ready; snapshots);
    };
    (@cap storage, $make:ident, $ready:path, snapshots) => {};
    // Backends are driven through `FileStorage` with paths; inode numbers
    // and handles are the backend's own interface, tested on it alone.
    (@cap storage, $make:ident, $ready:path, inode) => {};
    (@cap storage, $make:ident, $ready:path, handles) => {};
}

/// The readiness check of subjects that are always there (what
/// [`conformance!`] uses without `if`).
#[doc(hidden)]
pub fn always_ready() -> bool {
    true
}

// `module_tests!`, written by build.rs from the suite's modules.
include!(concat!(env!("OUT_DIR"), "/module_tests.rs"));
