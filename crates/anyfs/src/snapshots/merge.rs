//! Three-way merge: what a branch changed since its base, applied to
//! another tree that may have changed since the same base.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::diff::{Borrowed, Compare, TreeSide, diff, same_node};
use super::{Change, NodeState};
use crate::error::{FsError, FsErrorKind, FsResult};
use crate::traits::{FsDir, FsLink, FsPermissions, FsRead, FsWrite};
use crate::types::FileType;

/// Which side a conflicting path takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Take {
    /// Neither: the conflict is reported and nothing at all is applied.
    #[default]
    Neither,
    /// The branch's version.
    Branch,
    /// The version already in the tree merged into (the branch's change is
    /// dropped).
    Into,
}

/// How a merge treats conflicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeOptions {
    /// The side every conflict takes, unless `per_path` names it.
    pub on_conflict: Take,
    /// The side taken at particular paths (a conflict's path exactly).
    pub per_path: BTreeMap<PathBuf, Take>,
    /// How the trees are compared ([`Compare::Stamps`] for trees of one
    /// workspace).
    pub compare: Compare,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            on_conflict: Take::Neither,
            per_path: BTreeMap::new(),
            compare: Compare::Stamps,
        }
    }
}

impl MergeOptions {
    /// Every conflict takes `side`.
    pub fn taking(side: Take) -> Self {
        Self {
            on_conflict: side,
            ..Self::default()
        }
    }

    fn side(&self, path: &Path) -> Take {
        self.per_path.get(path).copied().unwrap_or(self.on_conflict)
    }
}

/// A path both sides changed since the base, to different results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Where.
    pub path: PathBuf,
    /// What the branch did there, or to a directory above it.
    pub branch: Change,
    /// What the tree merged into did there, or to a directory above it.
    pub into: Change,
}

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The branch's changes were applied.
    Applied {
        /// Paths made what the branch has.
        applied: u64,
        /// Conflicting paths left as they were, as asked.
        kept: u64,
    },
    /// Paths changed on both sides, with no side chosen: nothing was
    /// applied.
    Conflicts(Vec<Conflict>),
}

/// Merges into `into` what `branch` changed since `base`: paths changed
/// on one side only take that side; a path changed on both sides to
/// different results is a conflict, and `options` says which side it takes.
/// If any conflict takes neither, every conflict is reported and nothing is
/// applied.
pub fn merge_trees<I>(
    base: &dyn TreeSide,
    branch: &dyn TreeSide,
    into: &I,
    options: &MergeOptions,
) -> FsResult<MergeOutcome>
where
    I: FsRead + FsWrite + FsDir + FsLink + FsPermissions,
{
    // One change per path: a kind changed (a deletion, then an addition
    // at the same path) is one modification from the old node to the new.
    let mut theirs: BTreeMap<PathBuf, Change> = BTreeMap::new();
    for change in diff(Borrowed(base), Borrowed(into), options.compare) {
        let change = change?;
        let path = change.path().to_path_buf();
        let change = match (theirs.remove(&path), change) {
            (Some(Change::Deleted { old, .. }), Change::Added { new, .. }) => Change::Modified {
                path: path.clone(),
                old,
                new,
            },
            (_, change) => change,
        };
        theirs.insert(path, change);
    }
    let ours: Vec<Change> =
        diff(Borrowed(base), Borrowed(branch), options.compare).collect::<FsResult<_>>()?;
    let our_paths: BTreeSet<&Path> = ours.iter().map(Change::path).collect();

    // A change that leaves no directory where the base had one.
    let removed_dir = |c: &Change| {
        c.old()
            .is_some_and(|old| old.file_type == FileType::Directory)
            && c.new_state()
                .is_none_or(|new| new.file_type != FileType::Directory)
    };
    let above = |path: &Path, changes: &dyn Fn(&Path) -> Option<Change>| {
        path.ancestors().skip(1).find_map(changes)
    };
    let their_removed_dir = |p: &Path| theirs.get(p).filter(|c| removed_dir(c)).cloned();
    let our_removed: BTreeMap<&Path, &Change> = ours
        .iter()
        .filter(|c| removed_dir(c))
        .map(|c| (c.path(), c))
        .collect();
    let our_removed_dir = |p: &Path| our_removed.get(p).map(|c| (*c).clone());

    let mut conflicts = Vec::new();
    for change in &ours {
        let path = change.path();
        let clash = match theirs.get(path) {
            Some(their) if !same_result(branch, into, path, change, their)? => Some(their.clone()),
            Some(_) => None,
            None => above(path, &their_removed_dir),
        };
        if let Some(their) = clash {
            conflicts.push(Conflict {
                path: path.to_path_buf(),
                branch: change.clone(),
                into: their,
            });
        }
    }
    for (path, their) in &theirs {
        if !our_paths.contains(path.as_path())
            && let Some(our) = above(path, &our_removed_dir)
        {
            conflicts.push(Conflict {
                path: path.clone(),
                branch: our,
                into: their.clone(),
            });
        }
    }

    let undecided: Vec<Conflict> = conflicts
        .iter()
        .filter(|c| options.side(&c.path) == Take::Neither)
        .cloned()
        .collect();
    if !undecided.is_empty() {
        return Ok(MergeOutcome::Conflicts(undecided));
    }

    let keep: BTreeSet<PathBuf> = conflicts
        .iter()
        .filter(|c| options.side(&c.path) == Take::Into)
        .map(|c| c.path.clone())
        .collect();
    // Their paths under a directory we removed, taking our side: emptied
    // first (deepest first), so the directory can go.
    let mut clear: Vec<&Path> = conflicts
        .iter()
        .filter(|c| options.side(&c.path) == Take::Branch && !our_paths.contains(c.path.as_path()))
        .map(|c| c.path.as_path())
        .collect();
    clear.sort_by_key(|p| std::cmp::Reverse(p.components().count()));

    let mut applied = 0;
    for path in clear {
        sync_path(branch, into, path)?;
        applied += 1;
    }
    for change in &ours {
        for path in touched(change) {
            // A kept path, or one above a kept path (which must stay a
            // directory for it), keeps what `into` has.
            if keep.iter().any(|k| k.starts_with(path)) {
                continue;
            }
            sync_path(branch, into, path)?;
            applied += 1;
        }
    }
    Ok(MergeOutcome::Applied {
        applied,
        kept: keep.len() as u64,
    })
}

/// Applies changes found between some tree and `from` to `to`: each path
/// a change names is made what it is in `from` (content, symlink target,
/// permissions), or removed from `to` if `from` has nothing there. Changes
/// must come in the order [`diff`](super::diff()) gives them. Returns how
/// many paths were written.
pub fn apply_changes<T>(
    from: &dyn TreeSide,
    changes: impl IntoIterator<Item = FsResult<Change>>,
    to: &T,
) -> FsResult<u64>
where
    T: FsRead + FsWrite + FsDir + FsLink + FsPermissions,
{
    let mut written = 0;
    for change in changes {
        for path in touched(&change?) {
            sync_path(from, to, path)?;
            written += 1;
        }
    }
    Ok(written)
}

/// The paths a change is about (a rename: both).
fn touched(change: &Change) -> Vec<&Path> {
    match change {
        Change::Renamed { from, to, .. } => vec![from.as_path(), to.as_path()],
        other => vec![other.path()],
    }
}

/// Whether two changes to one path leave it the same.
fn same_result(
    ours: &dyn TreeSide,
    theirs: &dyn TreeSide,
    path: &Path,
    our: &Change,
    their: &Change,
) -> FsResult<bool> {
    match (our.new_state(), their.new_state()) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) if same_shape(a, b) => {
            let meta = ours.stat(path)?;
            same_node(ours, theirs, path, &meta)
        }
        _ => Ok(false),
    }
}

fn same_shape(a: &NodeState, b: &NodeState) -> bool {
    a.file_type == b.file_type
        && a.permissions == b.permissions
        && (a.file_type == FileType::Directory || a.len == b.len)
}

/// Makes `path` in `to` what it is in `from`: the same kind of node with
/// the same content or target and permissions, or nothing. A directory
/// keeps what it holds; one `from` does not have is removed only if
/// nothing kept is left in it.
fn sync_path<T>(from: &dyn TreeSide, to: &T, path: &Path) -> FsResult<()>
where
    T: FsRead + FsWrite + FsDir + FsLink + FsPermissions,
{
    let want = absent_as_none(from.stat(path))?;
    let have = absent_as_none(to.metadata(path))?;
    let Some(want) = want else {
        return match have.map(|m| m.file_type) {
            None => Ok(()),
            Some(FileType::Directory) => match to.remove_dir(path) {
                // What is left in it was kept on purpose.
                Err(e) if e.kind() == FsErrorKind::DirectoryNotEmpty => Ok(()),
                other => other,
            },
            Some(_) => to.remove_file(path),
        };
    };
    match (have.as_ref().map(|m| m.file_type), want.file_type) {
        (Some(FileType::Directory), FileType::Directory) => {}
        (Some(FileType::Directory), _) => to.remove_dir_all(path)?,
        (Some(_), FileType::Directory | FileType::Symlink) => to.remove_file(path)?,
        (Some(FileType::Symlink), FileType::File) => to.remove_file(path)?,
        _ => {}
    }
    match want.file_type {
        FileType::Directory => {
            if !matches!(have, Some(ref m) if m.file_type == FileType::Directory) {
                to.create_dir(path)?;
            }
        }
        FileType::Symlink => to.symlink(&from.target(path)?, path)?,
        FileType::File => copy_content(from, to, path, want.len)?,
    }
    if want.file_type != FileType::Symlink {
        to.set_permissions(path, want.permissions)?;
    }
    Ok(())
}

/// Streams a file's content from one tree to the other, replacing it whole
/// once all of it is there.
fn copy_content<T: FsWrite>(from: &dyn TreeSide, to: &T, path: &Path, len: u64) -> FsResult<()> {
    const PIECE: usize = 1 << 20;
    let mut out = to.open_write(path)?;
    let mut offset = 0;
    while offset < len {
        let piece = from.bytes(path, offset, PIECE)?;
        if piece.is_empty() {
            break;
        }
        out.write_all(&piece)
            .map_err(|e| FsError::from_io(path, "write", e))?;
        offset += piece.len() as u64;
    }
    out.commit()
}

fn absent_as_none<T>(result: FsResult<T>) -> FsResult<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_absent() => Ok(None),
        Err(e) => Err(e),
    }
}
