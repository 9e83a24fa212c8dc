//! [`StdFsBackend`]: the host filesystem through `std::fs`, with no
//! containment at all.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, PermissionsExt};

use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::host;
use crate::error::{FsError, FsResult};
use crate::path;
use crate::traits::{
    FsDir, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite, FsWriter,
    resolve_with_links,
};
use crate::types::{DirEntry, FileType, Metadata, Permissions, ReadDir, StatFs};

/// Plain host access through `std::fs`: a virtual path `/a/b` is the host
/// path `<base>/a/b`.
///
/// **This is not a sandbox. Never give it untrusted paths.** The host
/// follows symlinks wherever they point, so a link planted under `base`
/// reaches anything the process can reach, and [`PathFilter`] over this
/// backend cannot prevent that (the host resolves after the filter looked).
/// It is for trusted tools, tests and migrations. For a real directory as a
/// jail, use [`VRootFsBackend`], where the kernel confines every lookup.
///
/// ```
/// use anyfs::{FileStorage, StdFsBackend};
///
/// let dir = std::env::temp_dir().join(format!("anyfs-std-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let fs = FileStorage::new(StdFsBackend::at(&dir));
/// fs.write("/notes.txt", "on the host")?;
/// assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "on the host");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// [`PathFilter`]: crate::PathFilter
/// [`VRootFsBackend`]: crate::VRootFsBackend
#[derive(Debug, Clone)]
pub struct StdFsBackend {
    base: PathBuf,
}

impl Default for StdFsBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl StdFsBackend {
    /// The whole host filesystem: virtual `/` is the host's `/`.
    pub fn new() -> Self {
        Self::at("/")
    }

    /// The host directory `base` as virtual `/` — by joining path strings,
    /// which contains nothing: a symlink under `base` leads anywhere.
    pub fn at(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// The host path of a resolved virtual path.
    fn host(&self, path: &Path) -> FsResult<PathBuf> {
        let mut out = self.base.clone();
        out.extend(host::names(path)?);
        Ok(out)
    }

    fn on_host<T>(
        &self,
        path: &Path,
        op: &'static str,
        f: impl FnOnce(PathBuf) -> io::Result<T>,
    ) -> FsResult<T> {
        let host = self.host(path)?;
        f(host).map_err(|e| host::error(e, path, op))
    }

    fn on_host_pair(
        &self,
        from: &Path,
        to: &Path,
        op: &'static str,
        f: impl FnOnce(&Path, &Path) -> io::Result<()>,
    ) -> FsResult<()> {
        let (a, b) = (self.host(from)?, self.host(to)?);
        f(&a, &b).map_err(|e| {
            // The source is named when it is missing; otherwise the destination.
            let blame = if fs::symlink_metadata(&a).is_ok() {
                to
            } else {
                from
            };
            host::error(e, blame, op)
        })
    }

    /// Runs `f` on a handle of the parent directory and the last name.
    fn in_parent<T>(
        &self,
        path: &Path,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<T>,
    ) -> FsResult<T> {
        let names = host::names(path)?;
        let Some((name, dirs)) = names.split_last() else {
            return Err(host::root_error(path));
        };
        let mut dir = self.base.clone();
        dir.extend(dirs);
        let fail = |e: io::Error| host::error(e, path, op);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&dir, flags, Mode::empty()).map_err(|e| fail(e.into()))?;
        f(fd.as_fd(), name).map_err(fail)
    }

    /// Refuses to create, replace, remove or move the root itself.
    fn not_root(path: &Path) -> FsResult<()> {
        if host::names(path)?.is_empty() {
            return Err(host::root_error(path));
        }
        Ok(())
    }

    fn open_file(&self, path: &Path, op: &'static str, opts: &OpenOptions) -> FsResult<File> {
        if matches!(op, "append" | "open_write") {
            Self::not_root(path)?;
        }
        self.on_host(path, op, |host| {
            let file = opts.open(host)?;
            if file.metadata()?.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            Ok(file)
        })
    }
}

impl FsRead for StdFsBackend {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.on_host(path, "read", fs::read)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let file = self.open_file(path, "read", OpenOptions::new().read(true))?;
        host::read_range(&file, offset, len).map_err(|e| host::error(e, path, "read"))
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.on_host(path, "metadata", |p| {
            fs::symlink_metadata(&p).map(|m| host::metadata(&m))
        })
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let file = self.open_file(path, "read", OpenOptions::new().read(true))?;
        Ok(Box::new(file))
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        resolve_with_links(self, path, follow_last, visit)
    }
}

impl FsWrite for StdFsBackend {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.in_parent(path, "write", |dir, name| {
            host::replace(dir, name, None, |file| file.write_all(data))
        })
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let mut file =
            self.open_file(path, "append", OpenOptions::new().append(true).create(true))?;
        file.write_all(data)
            .map_err(|e| host::error(e, path, "append"))
    }

    /// Every range is checked before any is written; a host error part way
    /// (a full disk) can leave the earlier ones written, as with `pwrite`.
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        let file = self.open_file(path, "write_range", OpenOptions::new().write(true))?;
        host::write_ranges(&file, path, ranges)
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        Self::not_root(path)?;
        self.on_host(path, "remove_file", fs::remove_file)
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        Self::not_root(from)?;
        self.metadata(from)?;
        Self::not_root(to)?;
        self.on_host_pair(from, to, "rename", |a, b| {
            fs::rename(a, b).map_err(|e| {
                // The kernel says ENOTEMPTY for a file moved onto a directory
                // that holds it; it is a file over a directory all the same.
                if e.raw_os_error() == Some(libc::ENOTEMPTY)
                    && !fs::symlink_metadata(a).is_ok_and(|m| m.is_dir())
                {
                    io::Error::from_raw_os_error(libc::EISDIR)
                } else {
                    e
                }
            })
        })
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let src = self.open_file(from, "copy", OpenOptions::new().read(true))?;
        self.in_parent(to, "copy", |dir, name| host::copy_into(&src, dir, name))
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        let file = self.open_file(path, "truncate", OpenOptions::new().write(true))?;
        file.set_len(size)
            .map_err(|e| host::error(e, path, "truncate"))
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        Self::not_root(path)?;
        let parent_now = {
            let (backend, path) = (self.clone(), path.to_path_buf());
            move || {
                backend.in_parent(&path, "open_write", |dir, _| {
                    Ok(rustix::io::fcntl_dupfd_cloexec(dir, 0)?)
                })
            }
        };
        let staged = self.in_parent(path, "open_write", |dir, name| {
            let dir = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
            host::Staged::new(dir, name, None)
        })?;
        Ok(Box::new(host::StagedWriter::new(
            staged,
            path,
            Box::new(parent_now),
        )))
    }
}

impl FsDir for StdFsBackend {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let dir = path.to_path_buf();
        let entries = self.on_host(path, "read_dir", fs::read_dir)?;
        let list = entries
            .filter(|entry| {
                !entry
                    .as_ref()
                    .is_ok_and(|e| host::is_temp(e.file_name().as_bytes()))
            })
            .map(|entry| {
                let entry = entry.map_err(|e| host::error(e, &dir, "read_dir"))?;
                let ft = entry
                    .file_type()
                    .map_err(|e| host::error(e, &dir, "read_dir"))?;
                let file_type = if ft.is_dir() {
                    FileType::Directory
                } else if ft.is_symlink() {
                    FileType::Symlink
                } else {
                    FileType::File
                };
                let name = entry.file_name();
                Ok(DirEntry {
                    path: path::join(&dir, &name),
                    name,
                    file_type,
                    inode: entry.ino(),
                })
            })
            .collect::<FsResult<Vec<_>>>()?;
        Ok(ReadDir::from_entries(list))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        Self::not_root(path)?;
        self.on_host(path, "create_dir", fs::create_dir)
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        self.on_host(path, "create_dir_all", fs::create_dir_all)
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        Self::not_root(path)?;
        self.on_host(path, "remove_dir", fs::remove_dir)
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        Self::not_root(path)?;
        self.on_host(path, "remove_dir_all", |p| {
            let kind = fs::symlink_metadata(&p)?.file_type();
            if kind.is_dir() {
                fs::remove_dir_all(p)
            } else if kind.is_symlink() {
                // A link is removed itself, never followed.
                fs::remove_file(p)
            } else {
                Err(io::Error::from_raw_os_error(libc::ENOTDIR))
            }
        })
    }
}

impl FsLink for StdFsBackend {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        Self::not_root(link)?;
        self.on_host(link, "symlink", |p| std::os::unix::fs::symlink(target, p))
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        Self::not_root(original)?;
        if self.metadata(original)?.is_dir() {
            return Err(FsError::permission_denied(
                original,
                "hard_link to a directory",
            ));
        }
        Self::not_root(link)?;
        self.on_host_pair(original, link, "hard_link", |a, b| fs::hard_link(a, b))
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.on_host(path, "read_link", fs::read_link)
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl FsPermissions for StdFsBackend {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.on_host(path, "set_permissions", |p| {
            fs::set_permissions(p, fs::Permissions::from_mode(perm.mode()))
        })
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        self.on_host(path, "set_times", |p| {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &p,
                &host::timestamps(accessed, modified),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io::Error::from)
        })
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.on_host(path, "set_owner", |p| {
            std::os::unix::fs::lchown(p, uid, gid)
        })
    }
}

impl FsSync for StdFsBackend {
    fn sync(&self) -> FsResult<()> {
        let root = File::open(&self.base).map_err(|e| host::error(e, Path::new("/"), "sync"))?;
        rustix::fs::syncfs(&root).map_err(|e| host::error(e.into(), Path::new("/"), "sync"))
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.on_host(path, "fsync", |p| File::open(p)?.sync_all())
    }
}

impl FsStats for StdFsBackend {
    fn statfs(&self) -> FsResult<StatFs> {
        rustix::fs::statvfs(&self.base)
            .map(|v| host::statfs(&v))
            .map_err(|e| host::error(e.into(), Path::new("/"), "statfs"))
    }
}
