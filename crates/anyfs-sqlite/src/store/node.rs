//! One row of the `inodes` table as the store reads it ([`Node`]), the
//! kinds a node can be, and the nanosecond timestamps its times are kept in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyfs::{FileType, Metadata, Permissions};

use super::content::FileRow;

/// Bits of an inode number that number a node within its tree.
pub(crate) const TREE_BITS: u32 = 40;

/// One tree of the database: the workspace itself (tree 0), a snapshot or
/// a branch. All trees live in the same tables; tree `t` owns the inode
/// numbers `t * 2^40 + 1 ..= t * 2^40 + 2^40 - 1`, its root the first. A
/// copy of a tree keeps each node's number within the tree, which is the
/// number callers see ([`Tree::local`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tree(pub(crate) i64);

impl Tree {
    /// The workspace itself.
    pub(crate) const LIVE: Tree = Tree(0);
    /// Trees there can be, inode numbers being 63 bits.
    pub(crate) const MAX_ID: i64 = (1 << (63 - TREE_BITS)) - 1;

    /// The lowest inode number of the tree, its root's.
    pub(crate) fn root(self) -> i64 {
        (self.0 << TREE_BITS) + 1
    }
    /// The highest inode number of the tree.
    pub(crate) fn last(self) -> i64 {
        (self.0 << TREE_BITS) + (1 << TREE_BITS) - 1
    }
    /// A stored inode number as callers see it: the same in every copy.
    pub(crate) fn local(self, ino: i64) -> u64 {
        (ino - (self.0 << TREE_BITS)) as u64
    }
    /// The stored inode number of a caller's inode number, if it can be
    /// one of this tree.
    pub(crate) fn global(self, inode: u64) -> Option<i64> {
        (1..1 << TREE_BITS)
            .contains(&inode)
            .then(|| (self.0 << TREE_BITS) + inode as i64)
    }
    /// What must be added to a node's number in this tree to number it in
    /// `to`.
    pub(crate) fn offset_to(self, to: Tree) -> i64 {
        (to.0 - self.0) << TREE_BITS
    }
}
/// `inodes.kind` of a regular file.
pub(super) const KIND_FILE: i64 = 0;
/// `inodes.kind` of a directory.
pub(super) const KIND_DIR: i64 = 1;
/// `inodes.kind` of a symbolic link.
pub(super) const KIND_SYMLINK: i64 = 2;

/// The current time, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

/// A time as nanoseconds since the Unix epoch (negative before it).
pub(super) fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`to_ns`].
pub(super) fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// One node's row.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) ino: i64,
    /// [`KIND_FILE`], [`KIND_DIR`] or [`KIND_SYMLINK`].
    pub(super) kind: i64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Content bytes, or the symlink target's length.
    pub(super) size: u64,
    /// Names that point here.
    pub(super) nlink: u64,
    /// Directories directly inside (a directory's link count is 2 more).
    pub(super) subdirs: u64,
    pub(super) atime: i64,
    pub(super) mtime: i64,
    pub(super) ctime: i64,
    pub(super) btime: i64,
    /// A symlink's target.
    pub(super) target: Option<Vec<u8>>,
    /// The blob file holding the content (`IndexedBackend`).
    pub(super) blob: Option<String>,
}

/// The file type a node kind stands for.
pub(super) fn file_type(kind: i64) -> FileType {
    match kind {
        KIND_DIR => FileType::Directory,
        KIND_SYMLINK => FileType::Symlink,
        _ => FileType::File,
    }
}

impl Node {
    /// The node, of tree `tree`, as [`Metadata`].
    pub(super) fn metadata(&self, tree: Tree) -> Metadata {
        Metadata {
            file_type: file_type(self.kind),
            len: self.size,
            permissions: Permissions::from_mode(self.mode),
            inode: tree.local(self.ino),
            nlink: if self.kind == KIND_DIR {
                2 + self.subdirs
            } else {
                self.nlink
            },
            uid: self.uid,
            gid: self.gid,
            accessed: from_ns(self.atime),
            modified: from_ns(self.mtime),
            changed: from_ns(self.ctime),
            created: from_ns(self.btime),
        }
    }

    /// What the content store needs to know of this node.
    pub(super) fn file(&self) -> FileRow {
        FileRow {
            ino: self.ino,
            size: self.size,
            blob: self.blob.clone(),
        }
    }
}

/// The columns [`node_from_row`] reads, in its order.
pub(super) const NODE_COLUMNS: &str =
    "ino, kind, mode, uid, gid, size, nlink, subdirs, atime, mtime, ctime, btime, target, blob";

/// A [`Node`] from a row of [`NODE_COLUMNS`].
pub(super) fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        ino: r.get(0)?,
        kind: r.get(1)?,
        mode: r.get(2)?,
        uid: r.get(3)?,
        gid: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        nlink: r.get::<_, i64>(6)? as u64,
        subdirs: r.get::<_, i64>(7)? as u64,
        atime: r.get(8)?,
        mtime: r.get(9)?,
        ctime: r.get(10)?,
        btime: r.get(11)?,
        target: r.get(12)?,
        blob: r.get(13)?,
    })
}

impl Node {
    /// The row of a file just created empty with mode 0644, as written
    /// (so that it need not be read back).
    pub(super) fn new_file(ino: i64, owner: (u32, u32), now: i64) -> Node {
        Node {
            ino,
            kind: KIND_FILE,
            mode: 0o644,
            uid: owner.0,
            gid: owner.1,
            size: 0,
            nlink: 1,
            subdirs: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            target: None,
            blob: None,
        }
    }
}
