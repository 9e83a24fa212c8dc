//! The trait family every backend and middleware implements.
//!
//! Every method takes `&self` and returns [`FsResult`]; every trait is
//! `Send + Sync` and object safe, so `Box<dyn Fs>` and `Arc<dyn FsFull>` are
//! backends too. `&T`, `Box<T>` and `Arc<T>` implement each trait `T` does.
//!
//! Paths given to these traits directly are *resolved* paths (see
//! [`crate::path`]): absolute, without `..`, and with no symlink in a middle
//! component. Backends never follow a symlink outside of
//! [`FsRead::resolve`]; [`FileStorage`](crate::FileStorage) resolves caller
//! paths first, in one call.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{FsError, FsResult};
use crate::path::{self, PathWalker, Step};
use crate::types::{FileType, Handle, Metadata, OpenFlags, Permissions, ReadDir, StatFs};

/// A streaming reader returned by [`FsRead::open_read`].
pub type FsReader = Box<dyn Read + Send>;
/// A streaming writer returned by [`FsWrite::open_write`].
pub type FsWriter = Box<dyn FileWriter>;

/// A streamed replacement of a file's content, from [`FsWrite::open_write`].
///
/// What is written replaces the file's content all at once when
/// [`commit`](FileWriter::commit) succeeds. Until then readers, and a
/// crash, see the old content (or no file, for a new one). A writer dropped
/// without a commit — an upload cut off, an error half way, a panic —
/// changes nothing.
///
/// ```
/// use std::io::Write;
/// use anyfs::{FileStorage, MemoryBackend};
///
/// let fs = FileStorage::new(MemoryBackend::new());
/// fs.write("/report.txt", "old")?;
/// let mut out = fs.open_write("/report.txt")?;
/// out.write_all(b"new, in ").unwrap();
/// assert_eq!(fs.read_to_string("/report.txt")?, "old");
/// out.write_all(b"two parts").unwrap();
/// out.commit()?;
/// assert_eq!(fs.read_to_string("/report.txt")?, "new, in two parts");
///
/// let mut cut_off = fs.open_write("/report.txt")?;
/// cut_off.write_all(b"half").unwrap();
/// drop(cut_off);
/// assert_eq!(fs.read_to_string("/report.txt")?, "new, in two parts");
/// # Ok::<(), anyfs::FsError>(())
/// ```
pub trait FileWriter: Write + Send {
    /// Makes everything written the file's content, in one step: the file
    /// is created if it is missing, and its old content is gone only once
    /// this succeeds.
    fn commit(self: Box<Self>) -> FsResult<()>;
}

/// Reading files and metadata.
pub trait FsRead: Send + Sync {
    /// The whole content of a file.
    fn read(&self, path: &Path) -> FsResult<Vec<u8>>;

    /// The whole content of a file as UTF-8 text.
    fn read_to_string(&self, path: &Path) -> FsResult<String> {
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|_| FsError::Io {
            path: path.into(),
            op: "read_to_string",
            source: io::Error::new(io::ErrorKind::InvalidData, "the file is not valid UTF-8"),
        })
    }

    /// Up to `len` bytes starting at `offset`; fewer at the end of the file.
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>>;

    /// Whether something exists at the path (a symlink counts, whatever it
    /// points to).
    fn exists(&self, path: &Path) -> FsResult<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(FsError::NotFound { .. } | FsError::NotADirectory { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Metadata of the node at the path. A backend does not follow a symlink
    /// here: it describes the link itself. [`FileStorage`](crate::FileStorage)
    /// resolves first, so through it this follows links like `std::fs::metadata`.
    fn metadata(&self, path: &Path) -> FsResult<Metadata>;

    /// A streaming reader over a file's content.
    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }

    /// Resolves a caller path (see [`path::resolve`]) in one call.
    ///
    /// This is [`resolve_with`](FsRead::resolve_with) watching nothing;
    /// implement that one, not this.
    fn resolve(&self, path: &Path, follow_last: bool) -> FsResult<PathBuf> {
        self.resolve_with(path, follow_last, None)
    }

    /// Resolves a caller path in one call, asking `visit` about every path
    /// the walk passes through before looking it up (see
    /// [`path::resolve_visiting`]).
    ///
    /// Middleware pass this down without counting it as an operation; a
    /// layer that hides paths (`PathFilter`) adds its own check to `visit`.
    /// The default walks with [`FsRead::metadata`], which is right for a
    /// backend without symlinks; a backend with [`FsLink`] resolves in one
    /// pass of its own (or with [`resolve_with_links`]).
    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        struct ByMetadata<'a, F: ?Sized>(&'a F);
        impl<F: FsRead + ?Sized> PathWalker for ByMetadata<'_, F> {
            type Node = PathBuf;
            fn root(&mut self) -> FsResult<PathBuf> {
                Ok(PathBuf::from("/"))
            }
            fn child(&mut self, dir: &PathBuf, name: &OsStr) -> FsResult<Option<Step<PathBuf>>> {
                let p = path::join(dir, name);
                match self.0.metadata(&p) {
                    Ok(m) if m.is_dir() => Ok(Some(Step::Dir(p))),
                    Ok(_) => Ok(Some(Step::Other(p))),
                    Err(FsError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
        path::resolve_visiting(path, follow_last, &mut ByMetadata(self), visit)
    }
}

/// Resolution for a backend with symlinks that has no faster way: one
/// `symlink_metadata` per component and one `read_link` per link.
pub fn resolve_with_links<F: FsRead + FsLink + ?Sized>(
    fs: &F,
    path: &Path,
    follow_last: bool,
    visit: path::Visit<'_>,
) -> FsResult<PathBuf> {
    struct ByLinks<'a, F: ?Sized>(&'a F);
    impl<F: FsRead + FsLink + ?Sized> PathWalker for ByLinks<'_, F> {
        type Node = PathBuf;
        fn root(&mut self) -> FsResult<PathBuf> {
            Ok(PathBuf::from("/"))
        }
        fn child(&mut self, dir: &PathBuf, name: &OsStr) -> FsResult<Option<Step<PathBuf>>> {
            let p = path::join(dir, name);
            match self.0.symlink_metadata(&p) {
                Ok(m) => Ok(Some(match m.file_type {
                    FileType::Directory => Step::Dir(p),
                    FileType::File => Step::Other(p),
                    FileType::Symlink => Step::Symlink(self.0.read_link(&p)?),
                })),
                Err(FsError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
    path::resolve_visiting(path, follow_last, &mut ByLinks(fs), visit)
}

/// Writing, removing, renaming and copying files.
pub trait FsWrite: Send + Sync {
    /// Creates the file or replaces its content.
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()>;

    /// Appends to the file, creating it if needed.
    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()>;

    /// Writes `data` into the existing file at `offset`, in place, as
    /// `pwrite(2)` does: bytes around it stay, the file grows if the write
    /// ends past its end, and a gap before `offset` reads as zeros. Only
    /// what changes is written (a mounted workspace commits a write into a
    /// large file without rewriting it). Writing nothing changes nothing.
    fn write_range(&self, path: &Path, offset: u64, data: &[u8]) -> FsResult<()> {
        self.write_ranges(path, &[(offset, data)])
    }

    /// Writes several ranges into the existing file, in order, each as
    /// [`write_range`](Self::write_range) would, in one step: all of them
    /// or, on an error, none. The host-directory backends check every
    /// range first but can be stopped part way by the host (a full disk),
    /// as `pwrite` can.
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()>;

    /// Removes a file or symlink (not a directory).
    fn remove_file(&self, path: &Path) -> FsResult<()>;

    /// Renames a node, replacing what is at `to` as POSIX `rename(2)` does: a
    /// file may replace a file, a directory an empty directory; a directory
    /// cannot move into its own subtree.
    fn rename(&self, from: &Path, to: &Path) -> FsResult<()>;

    /// Copies a file's content (and permissions) to `to`, replacing it.
    fn copy(&self, from: &Path, to: &Path) -> FsResult<()>;

    /// Cuts or extends (with zeros) the file to `size` bytes.
    fn truncate(&self, path: &Path, size: u64) -> FsResult<()>;

    /// A streaming writer whose content replaces the file's, all at once,
    /// when it is committed (see [`FileWriter`]). Whether the file can be
    /// written (its parent exists, it is not a directory, policies allow
    /// it) is checked here; it is created only by the commit.
    fn open_write(&self, path: &Path) -> FsResult<FsWriter>;
}

/// Directories.
pub trait FsDir: Send + Sync {
    /// The entries of a directory, in no particular order, without `.` and `..`.
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir>;

    /// Creates one directory; its parent must exist.
    fn create_dir(&self, path: &Path) -> FsResult<()>;

    /// Creates a directory and any missing parents; fine if it exists.
    fn create_dir_all(&self, path: &Path) -> FsResult<()>;

    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> FsResult<()>;

    /// Removes a directory and everything under it (symlinks inside are
    /// removed, never followed).
    fn remove_dir_all(&self, path: &Path) -> FsResult<()>;
}

/// Symbolic and hard links. A backend without this trait cannot hold links:
/// [`FileStorage::symlink`](crate::FileStorage::symlink) does not compile
/// for it.
pub trait FsLink: Send + Sync {
    /// Creates `link` as a symbolic link pointing to `target` (stored as given).
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()>;

    /// Creates `link` as another name for the file at `original`.
    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()>;

    /// The target of a symbolic link.
    fn read_link(&self, path: &Path) -> FsResult<PathBuf>;

    /// Metadata of the node itself, never following a link.
    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata>;
}

/// Permission bits, ownership and times.
pub trait FsPermissions: Send + Sync {
    /// Sets the permission bits.
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()>;

    /// Sets access and/or modification time (`None` leaves it).
    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        let _ = (accessed, modified);
        Err(FsError::NotSupported {
            path: path.into(),
            op: "set_times",
        })
    }

    /// Sets owner and/or group (`None` leaves it).
    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let _ = (uid, gid);
        Err(FsError::NotSupported {
            path: path.into(),
            op: "set_owner",
        })
    }
}

/// Durability.
pub trait FsSync: Send + Sync {
    /// Makes every completed operation durable.
    fn sync(&self) -> FsResult<()>;
    /// Makes one file's completed writes durable.
    fn fsync(&self, path: &Path) -> FsResult<()>;
}

/// Capacity and usage.
pub trait FsStats: Send + Sync {
    /// Capacity and usage of the whole store.
    fn statfs(&self) -> FsResult<StatFs>;
}

/// Inode-level access, as FUSE needs it.
pub trait FsInode: Send + Sync {
    /// The inode number of the node at a resolved path.
    fn path_to_inode(&self, path: &Path) -> FsResult<u64>;
    /// One path of the node (a hard-linked file has several).
    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf>;
    /// The inode of `name` inside the directory `parent`.
    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64>;
    /// Metadata by inode number.
    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata>;
}

/// Open files with positional I/O.
pub trait FsHandles: Send + Sync {
    /// Opens a file. `create_new` fails with `AlreadyExists` atomically.
    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle>;
    /// Reads into `buf` from `offset`; returns the bytes read (0 at the end).
    fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize>;
    /// Writes at `offset` (at the end for an append handle); returns the bytes written.
    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize>;
    /// Closes the handle.
    fn close(&self, handle: Handle) -> FsResult<()>;
}

/// The basic filesystem: read, write, directories.
pub trait Fs: FsRead + FsWrite + FsDir {}
impl<T: FsRead + FsWrite + FsDir + ?Sized> Fs for T {}

/// A full POSIX-like filesystem: links, permissions, sync and statistics.
pub trait FsFull: Fs + FsLink + FsPermissions + FsSync + FsStats {}
impl<T: Fs + FsLink + FsPermissions + FsSync + FsStats + ?Sized> FsFull for T {}

/// What a FUSE mount needs: [`FsFull`] plus inode lookups.
pub trait FsFuse: FsFull + FsInode {}
impl<T: FsFull + FsInode + ?Sized> FsFuse for T {}

/// The method signatures of each trait, handed to a callback macro: the one
/// list from which pointer forwarding and middleware delegation are built.
#[doc(hidden)]
#[macro_export]
macro_rules! __fs_methods {
    (FsRead, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsRead {
            fn read(&self, path: &::std::path::Path) -> $crate::FsResult<Vec<u8>>;
            fn read_to_string(&self, path: &::std::path::Path) -> $crate::FsResult<String>;
            fn read_range(&self, path: &::std::path::Path, offset: u64, len: usize) -> $crate::FsResult<Vec<u8>>;
            fn exists(&self, path: &::std::path::Path) -> $crate::FsResult<bool>;
            fn metadata(&self, path: &::std::path::Path) -> $crate::FsResult<$crate::Metadata>;
            fn open_read(&self, path: &::std::path::Path) -> $crate::FsResult<$crate::FsReader>;
            fn resolve_with(&self, path: &::std::path::Path, follow_last: bool, visit: $crate::path::Visit<'_>) -> $crate::FsResult<::std::path::PathBuf>;
        });
    };
    (FsWrite, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsWrite {
            fn write(&self, path: &::std::path::Path, data: &[u8]) -> $crate::FsResult<()>;
            fn append(&self, path: &::std::path::Path, data: &[u8]) -> $crate::FsResult<()>;
            fn write_range(&self, path: &::std::path::Path, offset: u64, data: &[u8]) -> $crate::FsResult<()>;
            fn write_ranges(&self, path: &::std::path::Path, ranges: &[(u64, &[u8])]) -> $crate::FsResult<()>;
            fn remove_file(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
            fn rename(&self, from: &::std::path::Path, to: &::std::path::Path) -> $crate::FsResult<()>;
            fn copy(&self, from: &::std::path::Path, to: &::std::path::Path) -> $crate::FsResult<()>;
            fn truncate(&self, path: &::std::path::Path, size: u64) -> $crate::FsResult<()>;
            fn open_write(&self, path: &::std::path::Path) -> $crate::FsResult<$crate::FsWriter>;
        });
    };
    (FsDir, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsDir {
            fn read_dir(&self, path: &::std::path::Path) -> $crate::FsResult<$crate::ReadDir>;
            fn create_dir(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
            fn create_dir_all(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
            fn remove_dir(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
            fn remove_dir_all(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
        });
    };
    (FsLink, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsLink {
            fn symlink(&self, target: &::std::path::Path, link: &::std::path::Path) -> $crate::FsResult<()>;
            fn hard_link(&self, original: &::std::path::Path, link: &::std::path::Path) -> $crate::FsResult<()>;
            fn read_link(&self, path: &::std::path::Path) -> $crate::FsResult<::std::path::PathBuf>;
            fn symlink_metadata(&self, path: &::std::path::Path) -> $crate::FsResult<$crate::Metadata>;
        });
    };
    (FsPermissions, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsPermissions {
            fn set_permissions(&self, path: &::std::path::Path, perm: $crate::Permissions) -> $crate::FsResult<()>;
            fn set_times(&self, path: &::std::path::Path, accessed: Option<::std::time::SystemTime>, modified: Option<::std::time::SystemTime>) -> $crate::FsResult<()>;
            fn set_owner(&self, path: &::std::path::Path, uid: Option<u32>, gid: Option<u32>) -> $crate::FsResult<()>;
        });
    };
    (FsSync, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsSync {
            fn sync(&self) -> $crate::FsResult<()>;
            fn fsync(&self, path: &::std::path::Path) -> $crate::FsResult<()>;
        });
    };
    (FsStats, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsStats {
            fn statfs(&self) -> $crate::FsResult<$crate::StatFs>;
        });
    };
    (FsInode, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsInode {
            fn path_to_inode(&self, path: &::std::path::Path) -> $crate::FsResult<u64>;
            fn inode_to_path(&self, inode: u64) -> $crate::FsResult<::std::path::PathBuf>;
            fn lookup(&self, parent: u64, name: &::std::ffi::OsStr) -> $crate::FsResult<u64>;
            fn metadata_by_inode(&self, inode: u64) -> $crate::FsResult<$crate::Metadata>;
        });
    };
    (FsHandles, [$($cb:tt)*], $($args:tt)*) => {
        $($cb)*!($($args)* ; FsHandles {
            fn open(&self, path: &::std::path::Path, flags: $crate::OpenFlags) -> $crate::FsResult<$crate::Handle>;
            fn read_at(&self, handle: $crate::Handle, buf: &mut [u8], offset: u64) -> $crate::FsResult<usize>;
            fn write_at(&self, handle: $crate::Handle, data: &[u8], offset: u64) -> $crate::FsResult<usize>;
            fn close(&self, handle: $crate::Handle) -> $crate::FsResult<()>;
        });
    };
}

/// Implements a trait for `&T`, `Box<T>` and `Arc<T>` by forwarding every
/// method, so that references and smart pointers (and `Box<dyn Fs>`) are
/// backends too.
macro_rules! forward_to_pointee {
    (; $trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        forward_to_pointee!(@one $trait, &T, { $( fn $name(&self $(, $arg: $ty)*) -> $ret; )* });
        forward_to_pointee!(@one $trait, Box<T>, { $( fn $name(&self $(, $arg: $ty)*) -> $ret; )* });
        forward_to_pointee!(@one $trait, Arc<T>, { $( fn $name(&self $(, $arg: $ty)*) -> $ret; )* });
    };
    (@one $trait:ident, $ptr:ty, { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        impl<T: $trait + ?Sized> $trait for $ptr {
            $(
                #[inline]
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    (**self).$name($($arg),*)
                }
            )*
        }
    };
}

__fs_methods!(FsRead, [forward_to_pointee],);
__fs_methods!(FsWrite, [forward_to_pointee],);
__fs_methods!(FsDir, [forward_to_pointee],);
__fs_methods!(FsLink, [forward_to_pointee],);
__fs_methods!(FsPermissions, [forward_to_pointee],);
__fs_methods!(FsSync, [forward_to_pointee],);
__fs_methods!(FsStats, [forward_to_pointee],);
__fs_methods!(FsInode, [forward_to_pointee],);
__fs_methods!(FsHandles, [forward_to_pointee],);

/// Implements traits for a wrapper by handing every method to a field:
/// `delegate_fs!(Quota<B>, inner; FsPermissions, FsSync);` for a middleware
/// generic over its backend `B`, or `delegate_fs!(type MyBackend, store;
/// FsRead)` for a concrete type. For the traits a wrapper leaves alone.
#[doc(hidden)]
#[macro_export]
macro_rules! delegate_fs {
    ($wrapper:ident<B>, $field:ident; $($trait:ident),+ $(,)?) => {
        $( $crate::__fs_methods!($trait, [$crate::delegate_fs], @generic $wrapper, $field); )+
    };
    (type $ty:ty, $field:ident; $($trait:ident),+ $(,)?) => {
        $( $crate::__fs_methods!($trait, [$crate::delegate_fs], @concrete [$ty], $field); )+
    };
    (@generic $wrapper:ident, $field:ident ; $trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        impl<B: $crate::$trait> $crate::$trait for $wrapper<B> {
            $(
                #[inline]
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.$field.$name($($arg),*)
                }
            )*
        }
    };
    (@concrete [$wty:ty], $field:ident ; $trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        impl $crate::$trait for $wty {
            $(
                #[inline]
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.$field.$name($($arg),*)
                }
            )*
        }
    };
}
