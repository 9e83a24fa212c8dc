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
//! `sync`, `stats`, `inode`, `handles`. The model-based test runs
//! [`DEFAULT_MODEL_CASES`] sequences, or `ANYFS_MODEL_CASES` from the
//! environment.
//!
//! Each test is also a public function (`anyfs_test::basic::rename_replaces_a_file`
//! and so on), generic over the backend, for use outside the macro.

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
pub mod stats;

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
#[macro_export]
macro_rules! conformance {
    ($ty:ty => $make:expr $(; $($cap:ident),* $(,)?)?) => {
        $crate::conformance!(mod conformance, $ty => $make $(; $($cap),*)?);
    };
    (mod $module:ident, $ty:ty => $make:expr $(; $($cap:ident),* $(,)?)?) => {
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
                $crate::__conformance_caps!(backend, make_backend; fs $($(, $cap)*)?);
            }

            mod storage {
                use super::*;
                $crate::__conformance_caps!(storage, make_storage; fs, storage $($(, $cap)*)?);
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_caps {
    ($mode:ident, $make:ident; $($cap:ident),*) => {
        $( $crate::__conformance_cap!($mode, $make, $cap); )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:ident; $module:ident :: { $($test:ident),* $(,)? }) => {
        $(
            #[test]
            fn $test() {
                $crate::$module::$test(&$make());
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cap {
    ($mode:ident, $make:ident, fs) => {
        mod basic {
            use super::*;
            $crate::__conformance_tests!($make; basic::{
                write_then_read_round_trips,
                empty_file,
                write_replaces_content,
                append_creates_and_extends,
                write_range_writes_in_place,
                write_ranges_apply_in_order_or_not_at_all,
                read_missing_is_not_found,
                directories_and_files_are_not_confused,
                missing_or_file_parents_are_refused,
                read_range_reads_a_window,
                metadata_describes_the_node,
                exists_tells_presence,
                create_dir_rules,
                create_dir_all_builds_deep_trees,
                read_dir_lists_entries,
                remove_file_rules,
                remove_dir_rules,
                remove_dir_all_removes_a_tree,
                rename_moves_a_file,
                rename_replaces_a_file,
                rename_moves_a_directory_tree,
                rename_directory_over_directories,
                rename_into_own_subtree_is_refused,
                rename_to_itself_changes_nothing,
                rename_type_mismatches_are_refused,
                copy_rules,
                truncate_shrinks_and_extends,
                streaming_read_and_write,
                unusual_names,
                name_and_path_length_limits,
                root_directory_rules,
                deep_tree,
            });
        }
        mod large {
            use super::*;
            $crate::__conformance_tests!($make; large::{
                stream_64_mib_round_trip,
            });
        }
        mod concurrency {
            use super::*;
            $crate::__conformance_tests!($make; concurrency::{
                parallel_create_dir_all_of_one_path,
                parallel_writers_to_separate_files,
                readers_during_writes_see_whole_versions,
                parallel_appends_lose_nothing,
                parallel_range_writes_lose_nothing,
            });
        }
    };
    (backend, $make:ident, links) => {
        mod links {
            use super::*;
            $crate::__conformance_tests!($make; links::{
                symlink_stores_its_target,
                symlink_rules,
                hard_link_shares_the_node,
                hard_link_rules,
                remove_and_rename_act_on_the_link,
            });
        }
    };
    (storage, $make:ident, links) => {
        $crate::__conformance_cap!(backend, $make, links);
        mod resolve {
            use super::*;
            $crate::__conformance_tests!($make; resolve::{
                follows_links_to_files_and_directories,
                chains_and_the_hop_limit,
                loops_are_too_many_symlinks,
                dangling_links,
                dotdot_after_a_link_uses_the_target,
                absolute_targets_stay_inside,
                metadata_follows_symlink_metadata_does_not,
                operations_that_do_not_follow,
                canonicalize_resolves,
                read_dir_through_a_link,
                a_path_filter_shows_nothing_through_resolution,
            });
        }
        mod model_links {
            use super::*;
            #[test]
            fn random_sequences_match_the_model() {
                $crate::model::check_with_links($make, $crate::model::cases());
            }
        }
    };
    (storage, $make:ident, storage) => {
        mod bad_input {
            use super::*;
            $crate::__conformance_tests!($make; bad_input::{
                dotdot_never_leaves_the_root,
                malformed_paths_are_invalid,
            });
            #[test]
            fn arbitrary_bytes_never_panic() {
                $crate::bad_input::arbitrary_bytes_never_panic($make);
            }
        }
        mod model {
            use super::*;
            #[test]
            fn random_sequences_match_the_model() {
                $crate::model::check($make, $crate::model::cases() / 10);
            }
        }
    };
    ($mode:ident, $make:ident, permissions) => {
        mod permissions {
            use super::*;
            $crate::__conformance_tests!($make; permissions::{
                set_permissions_is_reported,
                set_times_and_owner,
            });
        }
    };
    ($mode:ident, $make:ident, sync) => {
        mod sync {
            use super::*;
            $crate::__conformance_tests!($make; stats::{
                sync_and_fsync,
            });
        }
    };
    ($mode:ident, $make:ident, stats) => {
        mod stats {
            use super::*;
            $crate::__conformance_tests!($make; stats::{
                statfs_reports_usage,
            });
        }
    };
    (backend, $make:ident, inode) => {
        mod inode {
            use super::*;
            $crate::__conformance_tests!($make; inode::{
                inodes_name_nodes,
                lookup_rules,
                inodes_survive_rename,
            });
        }
    };
    (storage, $make:ident, inode) => {};
    (backend, $make:ident, handles) => {
        mod handles {
            use super::*;
            $crate::__conformance_tests!($make; handles::{
                positional_io,
                open_flags,
                append_handles_write_at_the_end,
                unlinked_open_file_stays_readable,
            });
        }
    };
    (storage, $make:ident, handles) => {};
    (backend, $make:ident, storage) => {};
}
