//! The plain data types of the trait family: metadata, directory entries,
//! permissions, filesystem statistics, open flags and handles.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::FsError;

/// What kind of node a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
}

impl FileType {
    /// Whether this is a regular file.
    pub fn is_file(self) -> bool {
        self == FileType::File
    }
    /// Whether this is a directory.
    pub fn is_dir(self) -> bool {
        self == FileType::Directory
    }
    /// Whether this is a symbolic link.
    pub fn is_symlink(self) -> bool {
        self == FileType::Symlink
    }
}

/// Unix permission bits (`0o7777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    mode: u32,
}

impl Permissions {
    /// Permissions from Unix mode bits; bits outside `0o7777` are dropped.
    pub fn from_mode(mode: u32) -> Self {
        Self {
            mode: mode & 0o7777,
        }
    }
    /// The mode bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }
    /// Whether nobody may write (no write bit set).
    pub fn readonly(&self) -> bool {
        self.mode & 0o222 == 0
    }
    /// Clears (or restores the owner's) write bits, like
    /// `std::fs::Permissions::set_readonly`.
    pub fn set_readonly(&mut self, readonly: bool) {
        if readonly {
            self.mode &= !0o222;
        } else {
            self.mode |= 0o200;
        }
    }
}

/// Metadata of a node, as `stat(2)` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The kind of node.
    pub file_type: FileType,
    /// Size in bytes (for a symlink, the length of its target).
    pub len: u64,
    /// Permission bits.
    pub permissions: Permissions,
    /// Inode number, stable for the node's lifetime and shared by hard links.
    pub inode: u64,
    /// Number of hard links (for a directory: 2 plus its subdirectories).
    pub nlink: u64,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Last access time.
    pub accessed: SystemTime,
    /// Last content modification time.
    pub modified: SystemTime,
    /// Last metadata change time.
    pub changed: SystemTime,
    /// Creation time.
    pub created: SystemTime,
}

impl Metadata {
    /// The kind of node.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type.is_file()
    }
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type.is_dir()
    }
    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type.is_symlink()
    }
    /// Size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Permission bits.
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }
    /// Last content modification time.
    pub fn modified(&self) -> SystemTime {
        self.modified
    }
    /// Last access time.
    pub fn accessed(&self) -> SystemTime {
        self.accessed
    }
    /// Creation time.
    pub fn created(&self) -> SystemTime {
        self.created
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name within its directory.
    pub name: OsString,
    /// The entry's full virtual path (the listed directory joined with `name`).
    pub path: PathBuf,
    /// The kind of node (symlinks are not followed).
    pub file_type: FileType,
    /// The node's inode number.
    pub inode: u64,
}

impl DirEntry {
    /// The entry's name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }
    /// The entry's full virtual path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The kind of node.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
}

/// A directory listing: entries in no particular order.
///
/// An iterator of results, boxed so that middleware can filter it.
pub struct ReadDir(Box<dyn Iterator<Item = Result<DirEntry, FsError>> + Send>);

impl ReadDir {
    /// A listing from any iterator of entries.
    pub fn new(iter: impl Iterator<Item = Result<DirEntry, FsError>> + Send + 'static) -> Self {
        Self(Box::new(iter))
    }
    /// A listing from entries already collected.
    pub fn from_entries(entries: Vec<DirEntry>) -> Self {
        Self::new(entries.into_iter().map(Ok))
    }
    /// All entries, stopping at the first error.
    pub fn collect_entries(self) -> Result<Vec<DirEntry>, FsError> {
        self.collect()
    }
    /// All entry names, sorted, stopping at the first error.
    pub fn sorted_names(self) -> Result<Vec<OsString>, FsError> {
        let mut names = self
            .map(|e| e.map(|e| e.name))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }
}

impl Iterator for ReadDir {
    type Item = Result<DirEntry, FsError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir").finish_non_exhaustive()
    }
}

/// Capacity and usage of a filesystem, as `statfs(2)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatFs {
    /// Total capacity in bytes.
    pub total_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes still available.
    pub available_bytes: u64,
    /// Total number of nodes the store can hold.
    pub total_inodes: u64,
    /// Nodes in use.
    pub used_inodes: u64,
    /// Nodes still available.
    pub available_inodes: u64,
    /// Preferred I/O block size.
    pub block_size: u32,
    /// Longest name allowed, in bytes.
    pub max_name_len: u32,
}

/// How [`FsHandles::open`](crate::FsHandles::open) opens a file, like
/// `std::fs::OpenOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFlags {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Every write goes to the end of the file.
    pub append: bool,
    /// Cut the file to zero length on open.
    pub truncate: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Create the file; fail with `AlreadyExists` if it exists.
    pub create_new: bool,
}

impl OpenFlags {
    /// Nothing set: the base the others are written from.
    const NONE: OpenFlags = OpenFlags {
        read: false,
        write: false,
        append: false,
        truncate: false,
        create: false,
        create_new: false,
    };
    /// Read only.
    pub const READ: OpenFlags = OpenFlags {
        read: true,
        ..Self::NONE
    };
    /// Write, creating or truncating, like `File::create`.
    pub const CREATE: OpenFlags = OpenFlags {
        write: true,
        truncate: true,
        create: true,
        ..Self::NONE
    };
    /// Read and write an existing file.
    pub const READ_WRITE: OpenFlags = OpenFlags {
        read: true,
        write: true,
        ..Self::NONE
    };
    /// Write, creating the file, failing if it exists.
    pub const CREATE_NEW: OpenFlags = OpenFlags {
        write: true,
        create_new: true,
        ..Self::NONE
    };
    /// Append, creating the file if needed.
    pub const APPEND: OpenFlags = OpenFlags {
        write: true,
        append: true,
        create: true,
        ..Self::NONE
    };

    /// Whether the flags allow any change to the file.
    pub fn mutates(&self) -> bool {
        self.write || self.append || self.truncate || self.create || self.create_new
    }
}

/// An open file, from [`FsHandles::open`](crate::FsHandles::open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);
