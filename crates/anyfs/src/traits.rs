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

use crate::error::{FsError, FsErrorKind, FsResult};
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

/// Defines the trait family, and from the same definitions: [`Middleware`],
/// whose every method forwards to the inner backend unless a middleware
/// overrides it, and the implementation of each trait for every
/// [`Middleware`] (so `&T`, `Box<T>` and `Arc<T>` forward too). The
/// traits are written below as they read in the docs; this macro only adds
/// `Send + Sync` and reads their method lists.
///
/// `resolve` is a convenience over `resolve_with` and is never forwarded,
/// so that a middleware's `resolve_with` is always the one used.
macro_rules! fs_traits {
    ($d:tt; $(
        $(#[$trait_meta:meta])*
        pub trait $trait:ident { $($items:tt)* }
    )*) => {
        $(
            $(#[$trait_meta])*
            pub trait $trait: Send + Sync { $($items)* }
        )*
        fs_traits!(@methods $d [] $( [$trait] { $($items)* } )*);
    };

    // Reads each trait's methods into `Trait { name [args] return; ... }`.
    (@methods $d:tt [$($done:tt)*] [$trait:ident $($methods:tt)*] { } $($rest:tt)*) => {
        fs_traits!(@methods $d [$($done)* $trait { $($methods)* }] $($rest)*);
    };
    (@methods $d:tt [$($done:tt)*] [$trait:ident $($methods:tt)*] {
        $(#[$meta:meta])* fn resolve $params:tt -> $ret:ty $default:block $($items:tt)*
    } $($rest:tt)*) => {
        fs_traits!(@methods $d [$($done)*] [$trait $($methods)*] { $($items)* } $($rest)*);
    };
    (@methods $d:tt [$($done:tt)*] [$trait:ident $($methods:tt)*] {
        $(#[$meta:meta])* fn $method:ident(&self $(, $arg:ident : $arg_ty:ty)* $(,)?) -> $ret:ty;
        $($items:tt)*
    } $($rest:tt)*) => {
        fs_traits!(@methods $d [$($done)*] [$trait $($methods)* $method [$($arg: $arg_ty),*] $ret;]
            { $($items)* } $($rest)*);
    };
    (@methods $d:tt [$($done:tt)*] [$trait:ident $($methods:tt)*] {
        $(#[$meta:meta])* fn $method:ident(&self $(, $arg:ident : $arg_ty:ty)* $(,)?) -> $ret:ty $default:block
        $($items:tt)*
    } $($rest:tt)*) => {
        fs_traits!(@methods $d [$($done)*] [$trait $($methods)* $method [$($arg: $arg_ty),*] $ret;]
            { $($items)* } $($rest)*);
    };

    // Every method read: the forwarding.
    (@methods $d:tt [$($trait:ident { $($method:ident [$($arg:ident: $arg_ty:ty),*] $ret:ty;)* })*]) => {
        /// A backend that wraps another: it names its inner backend, and
        /// every method of every trait the inner backend implements is
        /// forwarded to it unless the middleware overrides that method.
        ///
        /// This is how the middleware of this crate are written: each
        /// overrides only what it changes. Implement it, not the traits
        /// themselves; the traits follow. An override states the bound its
        /// method needs (`where B: FsWrite`). A middleware that changes
        /// content must override every method that carries content
        /// (`read_to_string` and `write_range` as well as `read` and
        /// `write_ranges`): what it does not override reaches the inner
        /// backend as it is.
        ///
        /// ```
        /// use std::path::Path;
        /// use std::sync::atomic::{AtomicU64, Ordering};
        /// use anyfs::middleware::Middleware;
        /// use anyfs::{FileStorage, FsRead, FsResult, MemoryBackend};
        ///
        /// /// Counts the whole-file reads that reach the backend.
        /// #[derive(Debug)]
        /// struct CountReads<B> {
        ///     inner: B,
        ///     reads: AtomicU64,
        /// }
        ///
        /// impl<B: anyfs::Fs> Middleware for CountReads<B> {
        ///     type Inner = B;
        ///     fn inner(&self) -> &B {
        ///         &self.inner
        ///     }
        ///     fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        ///         self.reads.fetch_add(1, Ordering::Relaxed);
        ///         self.inner.read(path)
        ///     }
        /// }
        ///
        /// let fs = FileStorage::new(CountReads { inner: MemoryBackend::new(), reads: AtomicU64::new(0) });
        /// fs.write("/a.txt", "hello")?; // forwarded as it is
        /// assert_eq!(fs.read("/a.txt")?, b"hello");
        /// assert_eq!(fs.backend().reads.load(Ordering::Relaxed), 1);
        /// # Ok::<(), anyfs::FsError>(())
        /// ```
        pub trait Middleware: Send + Sync {
            /// The backend this one wraps.
            type Inner: ?Sized + FsRead + FsDir;
            /// The wrapped backend.
            fn inner(&self) -> &Self::Inner;
            $($(
                #[doc = concat!("[`", stringify!($trait), "::", stringify!($method), "`], forwarded unless overridden.")]
                #[inline]
                fn $method(&self $(, $arg: $arg_ty)*) -> $ret
                where
                    Self::Inner: $trait,
                {
                    $trait::$method(self.inner() $(, $arg)*)
                }
            )*)*
        }

        $(
            impl<M: Middleware> $trait for M
            where
                M::Inner: $trait,
            {
                $(
                    #[inline]
                    fn $method(&self $(, $arg: $arg_ty)*) -> $ret {
                        Middleware::$method(self $(, $arg)*)
                    }
                )*
            }
        )*

        /// Implements the named traits for a type by handing every method to
        /// one of its fields: `forward_to_field!(MemoryBackend, tree; FsRead,
        /// FsWrite)`. For a backend of this crate whose field is a private
        /// type (a public [`Middleware`] would have to name it).
        #[allow(unused_macros)]
        macro_rules! forward_to_field {
            ($d ty:ty, $d field:ident; $d ($d forwarded:ident),+ $d (,)?) => {
                $d ( forward_to_field!(@one $d ty, $d field, $d forwarded); )+
            };
            $(
                (@one $d ty:ty, $d field:ident, $trait) => {
                    // The signatures name types as `traits.rs` imports them.
                    const _: () = {
                        #[allow(unused_imports)]
                        use std::{ffi::OsStr, path::{Path, PathBuf}, time::SystemTime};
                        #[allow(unused_imports)]
                        use $crate::{
                            path, FsReader, FsResult, FsWriter, Handle, Metadata, OpenFlags,
                            Permissions, ReadDir, StatFs,
                        };
                        impl $crate::traits::$trait for $d ty {
                            $(
                                #[inline]
                                fn $method(&self $(, $arg: $arg_ty)*) -> $ret {
                                    $crate::traits::$trait::$method(&self.$d field $(, $arg)*)
                                }
                            )*
                        }
                    };
                };
            )*
        }
    };
}

fs_traits! {
    $;
    /// Reading files and metadata.
    pub trait FsRead {
        /// The whole content of a file.
        fn read(&self, path: &Path) -> FsResult<Vec<u8>>;

        /// The whole content of a file as UTF-8 text.
        fn read_to_string(&self, path: &Path) -> FsResult<String> {
            let bytes = self.read(path)?;
            String::from_utf8(bytes).map_err(|_| FsError::io(
                path,
                "read_to_string",
                io::Error::new(io::ErrorKind::InvalidData, "the file is not valid UTF-8"),
            ))
        }

        /// Up to `len` bytes starting at `offset`; fewer at the end of the file.
        fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>>;

        /// Whether something exists at the path (a symlink counts, whatever it
        /// points to).
        fn exists(&self, path: &Path) -> FsResult<bool> {
            match self.metadata(path) {
                Ok(_) => Ok(true),
                Err(e) if e.is_absent() => Ok(false),
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
                        Err(e) if e.kind() == FsErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            }
            path::resolve_visiting(path, follow_last, &mut ByMetadata(self), visit)
        }

        /// Resolves a caller path (see [`path::resolve`]) in one call.
        ///
        /// This is [`resolve_with`](FsRead::resolve_with) watching nothing;
        /// implement that one, not this.
        fn resolve(&self, path: &Path, follow_last: bool) -> FsResult<PathBuf> {
            self.resolve_with(path, follow_last, None)
        }
    }

    /// Writing, removing, renaming and copying files.
    pub trait FsWrite {
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
    pub trait FsDir {
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
    pub trait FsLink {
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
    pub trait FsPermissions {
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
            Err(FsError::not_supported(path, "set_times"))
        }

        /// Sets owner and/or group (`None` leaves it).
        fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
            let _ = (uid, gid);
            Err(FsError::not_supported(path, "set_owner"))
        }
    }

    /// Durability.
    pub trait FsSync {
        /// Makes every completed operation durable.
        fn sync(&self) -> FsResult<()>;
        /// Makes one file's completed writes durable.
        fn fsync(&self, path: &Path) -> FsResult<()>;
    }

    /// Capacity and usage.
    pub trait FsStats {
        /// Capacity and usage of the whole store.
        fn statfs(&self) -> FsResult<StatFs>;
    }

    /// Inode-level access, as FUSE needs it.
    pub trait FsInode {
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
    pub trait FsHandles {
        /// Opens a file. `create_new` fails with `AlreadyExists` atomically.
        fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle>;
        /// Reads into `buf` from `offset`; returns the bytes read (0 at the end).
        fn read_at(&self, handle: Handle, buf: &mut [u8], offset: u64) -> FsResult<usize>;
        /// Writes at `offset` (at the end for an append handle); returns the bytes written.
        fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize>;
        /// Closes the handle.
        fn close(&self, handle: Handle) -> FsResult<()>;
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
                Err(e) if e.kind() == FsErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
    path::resolve_visiting(path, follow_last, &mut ByLinks(fs), visit)
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

/// References and smart pointers are backends too (so is `Box<dyn Fs>`):
/// each forwards every method to what it points to.
macro_rules! pointers_forward {
    ($($ptr:ty),*) => {
        $(
            impl<T: ?Sized + FsRead + FsDir> Middleware for $ptr {
                type Inner = T;
                #[inline]
                fn inner(&self) -> &T {
                    self
                }
            }
        )*
    };
}
pointers_forward!(&T, Box<T>, Arc<T>);
