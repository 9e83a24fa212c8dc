//! The nodes of a memory backend's tree: what both stores hold for each
//! inode, parameterised by what differs between them ([`NodeFlavor`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use zeroize::{Zeroize, Zeroizing};

use crate::types::{FileType, Metadata, Permissions};

/// An inode number.
pub(super) type Ino = u64;
/// The root directory's inode number.
pub(super) const ROOT: Ino = 1;

/// What differs between the nodes of the plain store and the encrypted one.
pub(super) trait NodeFlavor: 'static {
    /// A file's bytes. Held behind an `Arc`: a read takes the content out
    /// of the tree's lock and copies it afterwards, and a change is made
    /// copy-on-write, so a reader keeps the content it took.
    type Bytes: FileBytes;
    /// What a node records of the directory entries naming it.
    type Names: Names;
    /// Whether entry names and link targets are wiped when a node is
    /// dropped (file bytes wipe themselves, if they should, through
    /// [`Bytes`](Self::Bytes)).
    const WIPE_NAMES: bool;
}

/// A file's bytes as a store holds them.
pub(super) trait FileBytes: Clone + Default + Send + Sync + 'static {
    /// Takes the bytes in.
    fn from_vec(bytes: Vec<u8>) -> Self;
    /// The bytes.
    fn vec(&self) -> &Vec<u8>;
    /// The bytes, to change.
    fn vec_mut(&mut self) -> &mut Vec<u8>;
}

/// The plain store's: nothing to wipe.
impl FileBytes for Vec<u8> {
    fn from_vec(bytes: Vec<u8>) -> Self {
        bytes
    }
    fn vec(&self) -> &Vec<u8> {
        self
    }
    fn vec_mut(&mut self) -> &mut Vec<u8> {
        self
    }
}

/// The encrypted store's: wiped when dropped.
impl FileBytes for Zeroizing<Vec<u8>> {
    fn from_vec(bytes: Vec<u8>) -> Self {
        Zeroizing::new(bytes)
    }
    fn vec(&self) -> &Vec<u8> {
        self
    }
    fn vec_mut(&mut self) -> &mut Vec<u8> {
        self
    }
}

/// What a node records of the directory entries naming it.
pub(super) trait Names: Clone + Default + Send + Sync + 'static {
    /// The entry `name` in the directory `parent` now names the node.
    fn add(&mut self, parent: Ino, name: &OsStr);
    /// The entry `name` in `parent` no longer does.
    fn remove(&mut self, parent: Ino, name: &OsStr);
    /// How many entries name the node.
    fn count(&self) -> u64;
    /// The directory holding the node's entry, for a directory (which has
    /// exactly one).
    fn parent(&self) -> Option<Ino>;
}

/// One file, directory or symlink.
#[derive(Clone)]
pub(super) struct Node<F: NodeFlavor> {
    pub(super) kind: Kind<F::Bytes>,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) names: F::Names,
    /// Open handles on this node: while one is, the node outlives its last
    /// name. Only the plain store hands out handles.
    pub(super) open: u32,
    pub(super) accessed: SystemTime,
    pub(super) modified: SystemTime,
    pub(super) changed: SystemTime,
    pub(super) created: SystemTime,
}

/// What a node is, with what only that kind holds.
#[derive(Clone)]
pub(super) enum Kind<B> {
    File(Arc<B>),
    Dir {
        entries: BTreeMap<OsString, Ino>,
        /// How many of the entries are directories (for `nlink`).
        subdirs: u64,
    },
    Symlink(PathBuf),
}

impl<B: FileBytes> Kind<B> {
    /// An empty directory.
    pub(super) fn empty_dir() -> Self {
        Kind::Dir {
            entries: BTreeMap::new(),
            subdirs: 0,
        }
    }

    pub(super) fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir { .. })
    }

    pub(super) fn file_type(&self) -> FileType {
        match self {
            Kind::File(_) => FileType::File,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
        }
    }

    /// Bytes of content this node holds.
    pub(super) fn size(&self) -> u64 {
        match self {
            Kind::File(data) => data.vec().len() as u64,
            _ => 0,
        }
    }
}

impl<F: NodeFlavor> Node<F> {
    /// A node named by nothing yet, every time set to `now`.
    pub(super) fn new(
        kind: Kind<F::Bytes>,
        mode: u32,
        (uid, gid): (u32, u32),
        now: SystemTime,
    ) -> Self {
        Self {
            kind,
            mode,
            uid,
            gid,
            names: F::Names::default(),
            open: 0,
            accessed: now,
            modified: now,
            changed: now,
            created: now,
        }
    }

    pub(super) fn metadata(&self, ino: Ino) -> Metadata {
        let (len, nlink) = match &self.kind {
            Kind::File(data) => (data.vec().len() as u64, self.names.count()),
            Kind::Dir { subdirs, .. } => (0, 2 + subdirs),
            Kind::Symlink(target) => (target.as_os_str().len() as u64, self.names.count()),
        };
        Metadata {
            file_type: self.kind.file_type(),
            len,
            permissions: Permissions::from_mode(self.mode),
            inode: ino,
            nlink,
            uid: self.uid,
            gid: self.gid,
            accessed: self.accessed,
            modified: self.modified,
            changed: self.changed,
            created: self.created,
        }
    }
}

impl<F: NodeFlavor> Drop for Node<F> {
    fn drop(&mut self) {
        if !F::WIPE_NAMES {
            return;
        }
        match &mut self.kind {
            // The bytes wipe themselves when their last holder goes.
            Kind::File(_) => {}
            Kind::Symlink(target) => forget_name::<F>(std::mem::take(target).into_os_string()),
            Kind::Dir { entries, .. } => {
                for (name, _) in std::mem::take(entries) {
                    forget_name::<F>(name);
                }
            }
        }
    }
}

/// Drops a name taken out of a node, wiped if the flavour asks for it.
pub(super) fn forget_name<F: NodeFlavor>(name: OsString) {
    if F::WIPE_NAMES {
        name.into_vec().zeroize();
    }
}

/// The owner (uid, gid) of a new tree's nodes: the user running the process.
pub(super) fn process_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}
