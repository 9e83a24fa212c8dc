//! Snapshots, branches, diff and merge: mark a point, let an agent work,
//! see exactly what changed, and keep it, drop it or take part of it.
//!
//! [`FsSnapshots`] is implemented by the persistent backends (the SQLite
//! ones and the object-storage one), which share content between the live
//! workspace, its snapshots and its branches instead of copying it.
//! [`diff`] and [`merge_trees`] work over any two trees that can be read,
//! so they also compare a workspace with a host directory.
//!
//! The trait is deliberately not part of the family every [`Middleware`]
//! forwards: a middleware that judges paths or counts bytes must decide
//! what a restore or a merge means for it, and one that does not implement
//! [`FsSnapshots`] simply does not offer snapshots.
//!
//! [`Middleware`]: crate::middleware::Middleware
//!
//! ```
//! use anyfs::snapshots::{Change, TreeRef};
//! use anyfs::{FsRead, FsWrite, MemoryBackend};
//! use anyfs::snapshots::diff;
//! use std::path::Path;
//!
//! let before = MemoryBackend::new();
//! before.write(Path::new("/notes.txt"), b"one")?;
//! let after = before.snapshot();
//! after.write(Path::new("/notes.txt"), b"one, two")?;
//! after.write(Path::new("/todo.txt"), b"three")?;
//!
//! let changes: Vec<Change> = diff(&before, &after, anyfs::snapshots::Compare::Content)
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(changes.len(), 2);
//! assert!(matches!(&changes[0], Change::Modified { path, .. } if path == Path::new("/notes.txt")));
//! assert!(matches!(&changes[1], Change::Added { path, .. } if path == Path::new("/todo.txt")));
//! # let _ = TreeRef::Live;
//! # Ok::<(), anyfs::FsError>(())
//! ```

mod diff;
mod merge;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

pub use diff::{Compare, Diff, TreeSide, diff};
pub use merge::{Conflict, MergeOptions, MergeOutcome, Take, apply_changes, merge_trees};

use crate::error::{FsError, FsResult};
use crate::traits::{FsDir, FsLink, FsPermissions, FsRead, FsWrite};
use crate::types::{FileType, Metadata, Permissions};

/// Names one snapshot of a workspace. Ids are never reused within a
/// workspace; they print, and parse, as decimal numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(pub u64);

/// Names one branch of a workspace (decimal, like [`SnapshotId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchId(pub u64);

macro_rules! decimal_id {
    ($($ty:ident: $what:literal),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl FromStr for $ty {
            type Err = FsError;
            fn from_str(s: &str) -> FsResult<Self> {
                s.parse().map($ty).map_err(|_| {
                    FsError::invalid_path(
                        format!("/{}s/{s}", $what),
                        concat!("not a ", $what, " id (a decimal number)"),
                    )
                })
            }
        }
    )*};
}
decimal_id!(SnapshotId: "snapshot", BranchId: "branch");

/// One snapshot, as [`FsSnapshots::snapshots`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Its id.
    pub id: SnapshotId,
    /// The name it was given.
    pub name: String,
    /// When it was taken.
    pub created: SystemTime,
    /// Bytes of file content it shows (shared with the workspace, not
    /// copied).
    pub bytes: u64,
}

impl SnapshotInfo {
    /// A description of one snapshot.
    pub fn new(id: SnapshotId, name: String, created: SystemTime, bytes: u64) -> Self {
        Self {
            id,
            name,
            created,
            bytes,
        }
    }
}

/// One branch, as [`FsSnapshots::branches`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BranchInfo {
    /// Its id.
    pub id: BranchId,
    /// The name it was given.
    pub name: String,
    /// The snapshot its changes are counted from: the one it started from,
    /// or the state it was last merged in.
    pub base: SnapshotId,
    /// When it was made.
    pub created: SystemTime,
}

impl BranchInfo {
    /// A description of one branch.
    pub fn new(id: BranchId, name: String, base: SnapshotId, created: SystemTime) -> Self {
        Self {
            id,
            name,
            base,
            created,
        }
    }
}

/// One of the trees of a workspace: itself, a snapshot, or a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeRef {
    /// The workspace as it is now.
    Live,
    /// A snapshot.
    Snapshot(SnapshotId),
    /// A branch as it is now.
    Branch(BranchId),
}

impl fmt::Display for TreeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeRef::Live => f.write_str("live"),
            TreeRef::Snapshot(id) => write!(f, "snapshot:{id}"),
            TreeRef::Branch(id) => write!(f, "branch:{id}"),
        }
    }
}

impl FromStr for TreeRef {
    type Err = FsError;
    /// `live`, `snapshot:ID` or `branch:ID`.
    fn from_str(s: &str) -> FsResult<Self> {
        match s.split_once(':') {
            None if s == "live" => Ok(TreeRef::Live),
            Some(("snapshot", id)) => id.parse().map(TreeRef::Snapshot),
            Some(("branch", id)) => id.parse().map(TreeRef::Branch),
            _ => Err(FsError::invalid_path(
                s,
                "a tree is `live`, `snapshot:ID` or `branch:ID`",
            )),
        }
    }
}

/// What a diff says about one side of a change: the node's kind, size and
/// permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// File, directory or symlink.
    pub file_type: FileType,
    /// Size in bytes (a symlink: the length of its target).
    pub len: u64,
    /// Permission bits.
    pub permissions: Permissions,
}

impl From<&Metadata> for NodeState {
    fn from(meta: &Metadata) -> Self {
        Self {
            file_type: meta.file_type,
            len: meta.len,
            permissions: meta.permissions,
        }
    }
}

/// One difference between two trees.
///
/// Inside a directory that is only on one side, every node below it is
/// reported too: an added directory before what it holds, a deleted one
/// after, so the changes can be applied in the order they come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second tree.
    Added {
        /// Where.
        path: PathBuf,
        /// What it is there.
        new: NodeState,
    },
    /// Only in the first tree.
    Deleted {
        /// Where.
        path: PathBuf,
        /// What it was.
        old: NodeState,
    },
    /// In both, with different content or attributes (a node whose kind
    /// changed is a deletion and an addition instead).
    Modified {
        /// Where.
        path: PathBuf,
        /// What it was.
        old: NodeState,
        /// What it is now.
        new: NodeState,
    },
    /// Moved, where the backend knows it (the same node under another
    /// name).
    Renamed {
        /// Its old path.
        from: PathBuf,
        /// Its new path.
        to: PathBuf,
        /// What it was.
        old: NodeState,
        /// What it is now.
        new: NodeState,
    },
}

impl Change {
    /// The path the change is at (for a rename, the new one).
    pub fn path(&self) -> &Path {
        match self {
            Change::Added { path, .. }
            | Change::Deleted { path, .. }
            | Change::Modified { path, .. } => path,
            Change::Renamed { to, .. } => to,
        }
    }

    /// `added`, `deleted`, `modified` or `renamed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Added { .. } => "added",
            Change::Deleted { .. } => "deleted",
            Change::Modified { .. } => "modified",
            Change::Renamed { .. } => "renamed",
        }
    }

    /// The node before the change, if there was one.
    pub fn old(&self) -> Option<&NodeState> {
        match self {
            Change::Added { .. } => None,
            Change::Deleted { old, .. }
            | Change::Modified { old, .. }
            | Change::Renamed { old, .. } => Some(old),
        }
    }

    /// The node after the change, if there is one.
    pub fn new_state(&self) -> Option<&NodeState> {
        match self {
            Change::Deleted { .. } => None,
            Change::Added { new, .. }
            | Change::Modified { new, .. }
            | Change::Renamed { new, .. } => Some(new),
        }
    }
}

/// Snapshots and branches of a workspace.
///
/// A snapshot is a read-only view of one moment, taken while writes go on;
/// a branch is a writable workspace that starts from a snapshot. Neither
/// copies file content: it is shared, and freed only once nothing names it.
pub trait FsSnapshots: FsRead + FsDir + FsLink + Send + Sync {
    /// A snapshot opened for reading. It has the writing methods too, so
    /// that it can stand where a workspace does; every one of them fails
    /// with `ReadOnly`.
    type View: FsRead + FsWrite + FsDir + FsLink + FsPermissions + Send + Sync + 'static;
    /// A branch opened for reading and writing.
    type Branch: FsRead + FsWrite + FsDir + FsLink + FsPermissions + Send + Sync + 'static;

    /// Takes a snapshot of the workspace as it is now, named `name` (any
    /// text; names need not be unique).
    fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo>;

    /// The workspace's snapshots, oldest first.
    fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>>;

    /// A snapshot, read-only: every write to it fails with `ReadOnly`.
    fn open_snapshot(&self, id: SnapshotId) -> FsResult<Self::View>;

    /// Deletes a snapshot, freeing the content nothing else names.
    /// `NotFound` if there is none with that id; `Conflict` while a branch
    /// still counts its changes from it.
    fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()>;

    /// Makes the workspace what it was when the snapshot was taken. The
    /// snapshot stays.
    fn restore(&self, id: SnapshotId) -> FsResult<()>;

    /// A new branch that starts as the snapshot `from`.
    fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo>;

    /// The workspace's branches, oldest first.
    fn branches(&self) -> FsResult<Vec<BranchInfo>>;

    /// A branch, for reading and writing.
    fn open_branch(&self, id: BranchId) -> FsResult<Self::Branch>;

    /// Deletes a branch, freeing the content nothing else names.
    fn delete_branch(&self, id: BranchId) -> FsResult<()>;

    /// Freezes a branch as it is now into a snapshot that
    /// [`snapshots`](Self::snapshots) does not list (what a merge takes).
    fn snapshot_branch(&self, id: BranchId) -> FsResult<SnapshotId>;

    /// Counts a branch's changes from `base` from now on (after a merge);
    /// its previous base goes if nothing else needs it.
    fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> FsResult<()>;

    /// The differences from tree `a` to tree `b`, streamed.
    fn diff(&self, a: TreeRef, b: TreeRef) -> FsResult<Diff<'_>>
    where
        Self: Sized,
    {
        let side = |tree| -> FsResult<Box<dyn TreeSide + '_>> {
            Ok(match tree {
                TreeRef::Live => Box::new(self),
                TreeRef::Snapshot(id) => Box::new(self.open_snapshot(id)?),
                TreeRef::Branch(id) => Box::new(self.open_branch(id)?),
            })
        };
        Ok(Diff::new(side(a)?, side(b)?, Compare::Stamps))
    }

    /// Applies the changes a branch made since its base to `into` (the
    /// workspace, or another branch).
    ///
    /// A path changed on both sides since the base, to different results,
    /// is a conflict. With conflicts nothing at all is applied, unless
    /// `options` says which side to take for each of them. After a merge
    /// the branch's changes are counted from the state that was merged.
    fn merge(
        &self,
        branch: BranchId,
        into: TreeRef,
        options: &MergeOptions,
    ) -> FsResult<MergeOutcome>
    where
        Self: Sized + FsWrite + FsLink + FsPermissions,
    {
        let info = self
            .branches()?
            .into_iter()
            .find(|b| b.id == branch)
            .ok_or_else(|| FsError::not_found(format!("/branches/{branch}")))?;
        if into == TreeRef::Branch(branch) {
            return Err(FsError::invalid_path(
                format!("/branches/{branch}"),
                "a branch cannot be merged into itself",
            ));
        }
        let base = self.open_snapshot(info.base)?;
        let frozen = self.snapshot_branch(branch)?;
        let outcome = (|| {
            let source = self.open_snapshot(frozen)?;
            match into {
                TreeRef::Live => merge_trees(&base, &source, self, options),
                TreeRef::Branch(id) => merge_trees(&base, &source, &self.open_branch(id)?, options),
                TreeRef::Snapshot(id) => Err(FsError::read_only(
                    format!("/snapshots/{id}"),
                    "merge into a snapshot",
                )),
            }
        })();
        match &outcome {
            Ok(MergeOutcome::Applied { .. }) => self.set_branch_base(branch, frozen)?,
            _ => self.delete_snapshot(frozen)?,
        }
        outcome
    }
}

/// `&T`, `Box<T>` and `Arc<T>` offer the snapshots of what they point to.
macro_rules! snapshots_forward {
    ($($ptr:ty),*) => {$(
        impl<T: FsSnapshots + ?Sized> FsSnapshots for $ptr {
            type View = T::View;
            type Branch = T::Branch;
            fn create_snapshot(&self, name: &str) -> FsResult<SnapshotInfo> {
                (**self).create_snapshot(name)
            }
            fn snapshots(&self) -> FsResult<Vec<SnapshotInfo>> {
                (**self).snapshots()
            }
            fn open_snapshot(&self, id: SnapshotId) -> FsResult<T::View> {
                (**self).open_snapshot(id)
            }
            fn delete_snapshot(&self, id: SnapshotId) -> FsResult<()> {
                (**self).delete_snapshot(id)
            }
            fn restore(&self, id: SnapshotId) -> FsResult<()> {
                (**self).restore(id)
            }
            fn branch(&self, from: SnapshotId, name: &str) -> FsResult<BranchInfo> {
                (**self).branch(from, name)
            }
            fn branches(&self) -> FsResult<Vec<BranchInfo>> {
                (**self).branches()
            }
            fn open_branch(&self, id: BranchId) -> FsResult<T::Branch> {
                (**self).open_branch(id)
            }
            fn delete_branch(&self, id: BranchId) -> FsResult<()> {
                (**self).delete_branch(id)
            }
            fn snapshot_branch(&self, id: BranchId) -> FsResult<SnapshotId> {
                (**self).snapshot_branch(id)
            }
            fn set_branch_base(&self, id: BranchId, base: SnapshotId) -> FsResult<()> {
                (**self).set_branch_base(id, base)
            }
        }
    )*};
}
snapshots_forward!(&T, Box<T>, std::sync::Arc<T>);
