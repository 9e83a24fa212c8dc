//! [`VRootFsBackend`]: a real directory as a jail, confined by the kernel.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::host;
use crate::error::{FsError, FsErrorKind, FsResult};
use crate::path::{self, PathWalker, Step};
use crate::traits::{
    FsDir, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite, FsWriter,
};
use crate::types::{DirEntry, FileType, Metadata, Permissions, ReadDir, StatFs};

/// How often an `openat2` that the kernel asks to retry (`EAGAIN`, a rename
/// raced the lookup) is retried before the handle-by-handle walk takes over.
const OPENAT2_RETRIES: usize = 32;

/// How deep `remove_dir_all` goes before giving up.
const MAX_REMOVE_DEPTH: usize = 4096;

/// A host directory as a jail: nothing outside it can be named, reached
/// through a symlink, or raced into.
///
/// Symlinks inside the jail work (through [`FileStorage`]) and are followed
/// inside the jail: an absolute target `/x` means the jail's `/x`, and `..`
/// stops at the jail's root.
///
/// ```
/// use anyfs::{FileStorage, VRootFsBackend};
///
/// let dir = std::env::temp_dir().join(format!("anyfs-vroot-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let fs = FileStorage::new(VRootFsBackend::new(&dir)?);
/// fs.write("/notes.txt", "inside")?;
/// // A link to the host's /etc means the jail's /etc, which does not exist.
/// fs.symlink("/etc/passwd", "/escape")?;
/// assert!(fs.read("/escape").is_err());
/// // `..` stops at the jail's root.
/// assert_eq!(fs.read_to_string("/../../../notes.txt")?, "inside");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// `write` and `copy` replace a file atomically (a temporary
/// `.anyfs-tmp-…` file beside it, renamed over it; listings never show
/// these), so readers see the old content or the new and a crash loses
/// neither. A file with several hard links is rewritten in place instead.
///
/// # How the jail holds
///
/// The backend holds a directory handle (a file descriptor) on its root and
/// never builds a host path string. Every lookup starts from that handle:
///
/// - **Operations** get resolved paths (no `..`, no symlinks, see
///   [`crate::path`]). On Linux each is opened with `openat2(root, path,
///   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)`: the
///   kernel itself refuses to follow any symlink or leave the root while it
///   walks, so a directory swapped for a symlink between two calls makes the
///   call fail, never escape. Where `openat2` is missing (older kernels,
///   other systems, or after a bounded number of `EAGAIN` retries) the same
///   rule is kept by a walk of `openat(dir, name, O_NOFOLLOW)` from handle to
///   handle, one name at a time. The last name is acted on relative to its
///   parent's handle with the `*at` calls, never following a link.
/// - **Resolution** ([`FsRead::resolve`], which [`FileStorage`] calls first)
///   follows symlinks *inside* the jail: it walks from handle to handle,
///   reads each link with `readlinkat`, takes absolute targets relative to
///   the root and applies `..` to the handles it already holds, so `..`
///   never climbs above the root. This is how `FileStorage` leaves
///   resolution to the host: the kernel does every lookup; no path string is
///   checked and then used.
///
/// FIFOs, sockets and device files are never read or written: files are
/// opened non-blocking and anything that is not a regular file is refused at
/// once with [`FsErrorKind::AccessDenied`](crate::FsErrorKind::AccessDenied). Errors name the virtual path only.
///
/// # Hard links planted from outside
///
/// The jail confines *names*. A hard link is not a name that points
/// somewhere: it *is* the file, with two names. If someone with access to the
/// host creates a hard link inside the jail to a file outside it, that file
/// is inside the jail under the second name, and reading or writing it there
/// reaches the same bytes. No lookup crosses the jail boundary, so no jail
/// can tell; keep the jail's directory out of reach of untrusted host users
/// (Linux's `fs.protected_hardlinks`, on by default, already stops users
/// from linking files they do not own). Through the backend itself no such
/// link can be made: both names of [`FsLink::hard_link`] are inside the jail.
///
/// [`FileStorage`]: crate::FileStorage
#[derive(Clone)]
pub struct VRootFsBackend {
    root: Arc<OwnedFd>,
    openat2: bool,
}

impl std::fmt::Debug for VRootFsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The host path of the root is deliberately not kept, nor shown.
        f.debug_struct("VRootFsBackend")
            .field(
                "lookup",
                &if self.openat2 {
                    "openat2"
                } else {
                    "openat walk"
                },
            )
            .finish_non_exhaustive()
    }
}

/// The name the root has for the `*at` calls that act on a node itself.
const DOT: &str = ".";

impl VRootFsBackend {
    /// A jail over the existing directory `dir`. The directory is opened once
    /// here; renaming or replacing `dir` on the host afterwards does not move
    /// the jail.
    pub fn new(dir: impl AsRef<Path>) -> FsResult<Self> {
        let root = rfs::open(
            dir.as_ref(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| host::error(e.into(), Path::new("/"), "open the jail root"))?;
        let openat2 = kernel_has_openat2(&root);
        Ok(Self {
            root: Arc::new(root),
            openat2,
        })
    }

    /// The same jail, but without `openat2`: every lookup walks handle by
    /// handle with `O_NOFOLLOW`, as on kernels that lack `openat2`. For
    /// testing that path; there is no other reason to choose it.
    #[doc(hidden)]
    pub fn force_component_walk(mut self) -> Self {
        self.openat2 = false;
        self
    }

    /// Whether lookups go through `openat2` (otherwise the portable walk).
    pub fn uses_openat2(&self) -> bool {
        self.openat2
    }

    /// Opens the resolved relative path `rel` (no `..`, no empty names)
    /// without following any symlink and without leaving the root. An empty
    /// `rel` is the root itself.
    fn open_rel(&self, rel: &OsStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        match self.lookup(rel, flags, mode) {
            // A directory was wanted and a symlink found: say that the path
            // crosses a link, as for a link in any other position.
            Err(Errno::NOTDIR) if flags.contains(OFlags::DIRECTORY) => {
                let link = self
                    .lookup(rel, OFlags::PATH, Mode::empty())
                    .and_then(|fd| rfs::fstat(&fd))
                    .is_ok_and(|s| {
                        rfs::FileType::from_raw_mode(s.st_mode) == rfs::FileType::Symlink
                    });
                Err(if link { Errno::LOOP } else { Errno::NOTDIR })
            }
            result => result,
        }
    }

    fn lookup(&self, rel: &OsStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // `openat2` refuses a mode where nothing is created.
        let mode = if flags.contains(OFlags::CREATE) {
            mode
        } else {
            Mode::empty()
        };
        if rel.is_empty() {
            return rfs::openat(&*self.root, DOT, flags, mode);
        }
        if self.openat2 {
            for _ in 0..OPENAT2_RETRIES {
                match rfs::openat2(&*self.root, rel, flags, mode, resolve_flags()) {
                    Err(Errno::AGAIN | Errno::INTR) => continue,
                    result => return result,
                }
            }
        }
        self.walk_open(rel, flags, mode)
    }

    /// The portable lookup: one `openat(O_PATH | O_NOFOLLOW)` per directory,
    /// each relative to the handle before it, each checked to be a directory.
    fn walk_open(&self, rel: &OsStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let mut names = rel
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|n| !n.is_empty());
        let mut current: Option<OwnedFd> = None;
        let mut name = names.next().ok_or(Errno::INVAL)?;
        for next in names {
            let base = current.as_ref().unwrap_or(&self.root);
            let fd = rfs::openat(
                base,
                OsStr::from_bytes(name),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            match rfs::FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) {
                rfs::FileType::Directory => {}
                rfs::FileType::Symlink => return Err(Errno::LOOP),
                _ => return Err(Errno::NOTDIR),
            }
            current = Some(fd);
            name = next;
        }
        let base = current.as_ref().unwrap_or(&self.root);
        rfs::openat(base, OsStr::from_bytes(name), flags, mode)
    }

    /// A handle on the parent directory of the resolved `path` and its last
    /// name. The root has none: it cannot be created, replaced or removed.
    fn parent<'p>(&self, path: &'p Path, op: &'static str) -> FsResult<Parent<'p>> {
        let names = host::names(path)?;
        let Some((name, dirs)) = names.split_last() else {
            return Err(host::root_error(path));
        };
        let dir = if dirs.is_empty() {
            None
        } else {
            let flags = OFlags::PATH | OFlags::DIRECTORY;
            Some(
                self.open_rel(&join(dirs), flags, Mode::empty())
                    .map_err(|e| host::error(e.into(), path, op))?,
            )
        };
        Ok(Parent { dir, name })
    }

    /// Runs `f` on the parent handle and last name of the resolved `path`,
    /// or on the root's own handle and `.` for the root.
    fn on_node<T>(
        &self,
        path: &Path,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>, &OsStr) -> Result<T, Errno>,
    ) -> FsResult<T> {
        if host::names(path)?.is_empty() {
            return f(self.root.as_fd(), OsStr::new(DOT))
                .map_err(|e| host::error(e.into(), path, op));
        }
        self.in_parent(path, op, f)
    }

    /// Runs `f` on the parent handle and last name of the resolved `path`.
    fn in_parent<T, E: Into<std::io::Error>>(
        &self,
        path: &Path,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>, &OsStr) -> Result<T, E>,
    ) -> FsResult<T> {
        let parent = self.parent(path, op)?;
        f(parent.fd(&self.root), parent.name).map_err(|e| host::error(e.into(), path, op))
    }

    /// Opens the node at a resolved path itself (not following a final
    /// symlink).
    fn open_node(&self, path: &Path, op: &'static str, flags: OFlags) -> FsResult<OwnedFd> {
        let names = host::names(path)?;
        self.open_rel(&join(&names), flags, Mode::empty())
            .map_err(|e| host::error(e.into(), path, op))
    }

    /// Opens a regular file: non-blocking (a FIFO cannot hang us) and
    /// checked to be a regular file before a byte moves.
    fn open_file(&self, path: &Path, op: &'static str, flags: OFlags) -> FsResult<File> {
        let names = host::names(path)?;
        if names.is_empty() && flags.contains(OFlags::CREATE) {
            return Err(host::root_error(path));
        }
        let fail = |e: std::io::Error| host::error(e, path, op);
        let fd = self
            .open_rel(
                &join(&names),
                flags | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::from_raw_mode(0o666),
            )
            .map_err(|e| fail(e.into()))?;
        let file = File::from(fd);
        let kind = file.metadata().map_err(fail)?.file_type();
        if kind.is_dir() {
            return Err(FsError::is_a_directory(path));
        }
        if !kind.is_file() {
            return Err(FsError::access_denied(path, host::SPECIAL_FILE));
        }
        Ok(file)
    }

    /// Runs `f` with the parent handles and names of two resolved paths.
    /// Errors name `from` when it is missing or cannot move, `to` otherwise.
    fn in_parents(
        &self,
        from: &Path,
        to: &Path,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>, &OsStr, BorrowedFd<'_>, &OsStr) -> Result<(), Errno>,
    ) -> FsResult<()> {
        let a = self.parent(from, op)?;
        if host::names(to)?.is_empty() {
            // The source is looked up first, as for any other destination.
            rfs::statat(a.fd(&self.root), a.name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| host::error(e.into(), from, op))?;
        }
        let b = self.parent(to, op)?;
        match f(a.fd(&self.root), a.name, b.fd(&self.root), b.name) {
            Ok(()) => Ok(()),
            Err(e @ (Errno::NOENT | Errno::INVAL | Errno::PERM | Errno::ACCESS)) => {
                Err(host::error(e.into(), from, op))
            }
            Err(e) => Err(host::error(e.into(), to, op)),
        }
    }
}

/// The parent directory of a path (`None`: the root) and the last name.
struct Parent<'p> {
    dir: Option<OwnedFd>,
    name: &'p OsStr,
}

impl Parent<'_> {
    fn fd<'a>(&'a self, root: &'a OwnedFd) -> BorrowedFd<'a> {
        self.dir.as_ref().unwrap_or(root).as_fd()
    }
}

/// The resolution rule of every `openat2` call.
fn resolve_flags() -> rfs::ResolveFlags {
    rfs::ResolveFlags::IN_ROOT | rfs::ResolveFlags::NO_MAGICLINKS | rfs::ResolveFlags::NO_SYMLINKS
}

fn kernel_has_openat2(root: &OwnedFd) -> bool {
    rfs::openat2(
        root,
        DOT,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve_flags(),
    )
    .is_ok()
}

/// `a/b/c` from names.
fn join(names: &[&OsStr]) -> OsString {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(name.as_bytes());
    }
    OsString::from_vec(out)
}

fn file_type(kind: rfs::FileType) -> FileType {
    match kind {
        rfs::FileType::Directory => FileType::Directory,
        rfs::FileType::Symlink => FileType::Symlink,
        _ => FileType::File,
    }
}

/// Resolution by the kernel, handle by handle (see the module docs).
struct KernelWalk<'a> {
    fs: &'a VRootFsBackend,
    path: &'a Path,
}

impl PathWalker for KernelWalk<'_> {
    type Node = Arc<OwnedFd>;

    fn root(&mut self) -> FsResult<Self::Node> {
        Ok(self.fs.root.clone())
    }

    fn child(&mut self, dir: &Self::Node, name: &OsStr) -> FsResult<Option<Step<Self::Node>>> {
        let fail = |e: Errno| host::error(e.into(), self.path, "resolve");
        let stat = match rfs::statat(&**dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        Ok(Some(match rfs::FileType::from_raw_mode(stat.st_mode) {
            rfs::FileType::Directory => {
                let fd = rfs::openat(
                    &**dir,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?;
                Step::Dir(Arc::new(fd))
            }
            rfs::FileType::Symlink => {
                let target = rfs::readlinkat(&**dir, name, Vec::new()).map_err(fail)?;
                Step::Symlink(PathBuf::from(OsString::from_vec(target.into_bytes())))
            }
            _ => Step::Other(dir.clone()),
        }))
    }
}

impl FsRead for VRootFsBackend {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let mut file = self.open_file(path, "read", OFlags::RDONLY)?;
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|e| host::error(e, path, "read"))?;
        Ok(out)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let file = self.open_file(path, "read", OFlags::RDONLY)?;
        host::read_range(&file, offset, len).map_err(|e| host::error(e, path, "read"))
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        let fd = self.open_node(path, "metadata", OFlags::PATH)?;
        File::from(fd)
            .metadata()
            .map(|m| host::metadata(&m))
            .map_err(|e| host::error(e, path, "metadata"))
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        Ok(Box::new(self.open_file(path, "read", OFlags::RDONLY)?))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        path::validate(path)?;
        // The common case in one lookup: a path without `..` whose every
        // component is a directory (or the last is missing or, when it is
        // not followed, anything): resolved as written.
        let normal = path::normalize(path);
        let names = path::resolved_components(&normal);
        if let Ok(names) = names {
            let rel = join(&names);
            match self.open_rel(&rel, OFlags::PATH, Mode::empty()) {
                Ok(fd) => {
                    let is_link = follow_last
                        && rfs::fstat(&fd).is_ok_and(|s| {
                            rfs::FileType::from_raw_mode(s.st_mode) == rfs::FileType::Symlink
                        });
                    if !is_link {
                        return Ok(normal);
                    }
                }
                Err(Errno::NOENT) => {
                    let parent_is_dir = names.len() <= 1
                        || self
                            .open_rel(
                                &join(&names[..names.len() - 1]),
                                OFlags::PATH | OFlags::DIRECTORY,
                                Mode::empty(),
                            )
                            .is_ok();
                    if parent_is_dir {
                        return Ok(normal);
                    }
                }
                Err(_) => {}
            }
        }
        path::resolve_visiting(path, follow_last, &mut KernelWalk { fs: self, path }, visit)
    }
}

impl FsWrite for VRootFsBackend {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.in_parent(path, "write", |dir, name| {
            host::replace(dir, name, None, |file| file.write_all(data))
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let mut file = self.open_file(
            path,
            "append",
            OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
        )?;
        file.write_all(data)
            .map_err(|e| host::error(e, path, "append"))
    }

    /// Every range is checked before any is written; a host error part way
    /// (a full disk) can leave the earlier ones written, as with `pwrite`.
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let file = self.open_file(path, "write_range", OFlags::WRONLY)?;
        host::write_ranges(&file, path, ranges)
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        self.in_parent(path, "remove_file", |dir, name| {
            rfs::unlinkat(dir, name, AtFlags::empty())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        self.in_parents(from, to, "rename", |d1, n1, d2, n2| {
            rfs::renameat(d1, n1, d2, n2).map_err(|e| {
                // The kernel says ENOTEMPTY for a file moved onto a directory
                // that holds it; it is a file over a directory all the same.
                let is_dir = || {
                    rfs::statat(d1, n1, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|s| {
                        rfs::FileType::from_raw_mode(s.st_mode) == rfs::FileType::Directory
                    })
                };
                if e == Errno::NOTEMPTY && !is_dir() {
                    Errno::ISDIR
                } else {
                    e
                }
            })
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let src = self.open_file(from, "copy", OFlags::RDONLY)?;
        self.in_parent(to, "copy", |dir, name| host::copy_into(&src, dir, name))
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let file = self.open_file(path, "truncate", OFlags::WRONLY)?;
        file.set_len(size)
            .map_err(|e| host::error(e, path, "truncate"))
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        let parent_now = {
            let (backend, path) = (self.clone(), path.to_path_buf());
            move || {
                let parent = backend.parent(&path, "open_write")?;
                match parent.dir {
                    Some(dir) => Ok(dir),
                    None => rustix::io::fcntl_dupfd_cloexec(&*backend.root, 0)
                        .map_err(|e| host::error(e.into(), &path, "open_write")),
                }
            }
        };
        let parent = self.parent(path, "open_write")?;
        let fail = |e: std::io::Error| host::error(e, path, "open_write");
        let staged = host::Staged::new(parent_now()?, parent.name, None).map_err(fail)?;
        Ok(Box::new(host::StagedWriter::new(
            staged,
            path,
            Box::new(parent_now),
        )))
    }
}

/// The entries of an open directory, `.` and `..` left out, and our
/// temporary files unless `all`.
fn list(dir: &OwnedFd, all: bool) -> Result<Vec<(OsString, rfs::FileType, u64)>, Errno> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." || (!all && host::is_temp(name)) {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        let kind = match entry.file_type() {
            rfs::FileType::Unknown => {
                let stat = rfs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                rfs::FileType::from_raw_mode(stat.st_mode)
            }
            kind => kind,
        };
        out.push((name, kind, entry.ino()));
    }
    Ok(out)
}

/// Removes the directory `name` in `parent` and everything under it, from
/// handle to handle: nothing is followed, nothing re-resolved.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<(), Errno> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(Errno::NAMETOOLONG);
    }
    let dir = rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Entries created meanwhile make the last step fail with ENOTEMPTY;
    // a few more rounds catch them.
    for _ in 0..8 {
        for (child, kind, _) in list(&dir, true)? {
            let result = if kind == rfs::FileType::Directory {
                remove_tree(dir.as_fd(), &child, depth + 1)
            } else {
                rfs::unlinkat(&dir, child.as_os_str(), AtFlags::empty())
            };
            match result {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
        }
        match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Err(Errno::NOTEMPTY) => continue,
            result => return result,
        }
    }
    Err(Errno::NOTEMPTY)
}

impl FsDir for VRootFsBackend {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let dir = self.open_node(path, "read_dir", OFlags::RDONLY | OFlags::DIRECTORY)?;
        let entries = list(&dir, false).map_err(|e| host::error(e.into(), path, "read_dir"))?;
        let base = path::normalize(path);
        Ok(ReadDir::from_entries(
            entries
                .into_iter()
                .map(|(name, kind, inode)| DirEntry {
                    path: path::join(&base, &name),
                    name,
                    file_type: file_type(kind),
                    inode,
                })
                .collect(),
        ))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.in_parent(path, "create_dir", |dir, name| {
            rfs::mkdirat(dir, name, Mode::from_raw_mode(0o777))
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = host::names(path)?;
        let mut prefix = Vec::with_capacity(path.as_os_str().len());
        for name in names {
            prefix.push(b'/');
            prefix.extend_from_slice(name.as_bytes());
            match self.create_dir(Path::new(OsStr::from_bytes(&prefix))) {
                Ok(()) => {}
                Err(e) if e.kind() == FsErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.with_path(path)),
            }
        }
        match self.metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(FsError::already_exists(path)),
            Err(e) => Err(e),
        }
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        self.in_parent(path, "remove_dir", |dir, name| {
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        self.in_parent(path, "remove_dir_all", |dir, name| {
            let stat = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            match rfs::FileType::from_raw_mode(stat.st_mode) {
                rfs::FileType::Directory => remove_tree(dir, name, 0),
                // A link is removed itself, never followed.
                rfs::FileType::Symlink => rfs::unlinkat(dir, name, AtFlags::empty()),
                _ => Err(Errno::NOTDIR),
            }
        })
    }
}

impl FsLink for VRootFsBackend {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        path::validate(target)?;
        self.in_parent(link, "symlink", |dir, name| {
            rfs::symlinkat(target, dir, name)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        if host::names(original)?.is_empty() {
            return Err(host::root_error(original));
        }
        if self.metadata(original)?.is_dir() {
            return Err(FsError::permission_denied(
                original,
                "hard_link to a directory",
            ));
        }
        self.in_parents(original, link, "hard_link", |d1, n1, d2, n2| {
            rfs::linkat(d1, n1, d2, n2, AtFlags::empty())
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.on_node(path, "read_link", |dir, name| {
            rfs::readlinkat(dir, name, Vec::new())
        })
        .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl FsPermissions for VRootFsBackend {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        let fd = self.open_node(path, "set_permissions", OFlags::PATH)?;
        let fail = |e: Errno| host::error(e.into(), path, "set_permissions");
        let kind = rfs::FileType::from_raw_mode(rfs::fstat(&fd).map_err(fail)?.st_mode);
        match kind {
            rfs::FileType::RegularFile | rfs::FileType::Directory => {}
            rfs::FileType::Symlink => {
                return Err(FsError::not_supported(
                    path,
                    "set_permissions on a symbolic link",
                ));
            }
            _ => {
                return Err(FsError::access_denied(path, host::SPECIAL_FILE));
            }
        }
        let mode = Mode::from_raw_mode(perm.mode());
        // The handle names exactly the node checked above; its entry in
        // /proc/self/fd reaches that node and nothing else. Without /proc,
        // open the node for reading and change it through that handle.
        let via_proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match rfs::chmodat(rfs::CWD, via_proc.as_str(), mode, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => {
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
                let file = self.open_node(path, "set_permissions", flags)?;
                rfs::fchmod(&file, mode).map_err(fail)
            }
            Err(e) => Err(fail(e)),
        }
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        let times = host::timestamps(accessed, modified);
        self.on_node(path, "set_times", |dir, name| {
            rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
        })
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.on_node(path, "set_owner", |dir, name| {
            rfs::chownat(
                dir,
                name,
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )
        })
    }
}

impl FsSync for VRootFsBackend {
    fn sync(&self) -> FsResult<()> {
        let root = self.open_node(Path::new("/"), "sync", OFlags::RDONLY | OFlags::DIRECTORY)?;
        rfs::syncfs(&root).map_err(|e| host::error(e.into(), Path::new("/"), "sync"))
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        let fd = self.open_node(
            path,
            "fsync",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        )?;
        rfs::fsync(&fd).map_err(|e| host::error(e.into(), path, "fsync"))
    }
}

impl FsStats for VRootFsBackend {
    fn statfs(&self) -> FsResult<StatFs> {
        rfs::fstatvfs(&*self.root)
            .map(|v| host::statfs(&v))
            .map_err(|e| host::error(e.into(), Path::new("/"), "statfs"))
    }
}
