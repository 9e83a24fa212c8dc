//! [`FileStorage`]: the front door, with `std::fs`-shaped methods.

use std::path::{Path, PathBuf};

use crate::error::{FsError, FsResult};
use crate::path;
use crate::traits::{
    FsDir, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync, FsWrite, FsWriter,
};
use crate::types::{DirEntry, Metadata, Permissions, ReadDir, StatFs};

/// A filesystem over any backend, with the methods of `std::fs`.
///
/// Every path given to it is untrusted: it is validated, normalized and
/// resolved — symlinks followed inside the backend, `..` applied after the
/// component before it, never above the root — in one call to the backend
/// before the operation runs on the resolved path. Nothing outside the
/// backend can be named.
///
/// ```
/// use anyfs::{FileStorage, MemoryBackend};
///
/// let fs = FileStorage::new(MemoryBackend::new());
/// fs.create_dir_all("/workspace/src")?;
/// fs.write("/workspace/src/main.rs", b"fn main() {}")?;
/// fs.symlink("/workspace/src", "/workspace/code")?;
/// assert_eq!(fs.read_to_string("/workspace/code/main.rs")?, "fn main() {}");
/// // `..` never climbs above the root.
/// assert!(fs.exists("/../../workspace/src/main.rs")?);
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// `FileStorage` implements the backend traits itself, so it can be wrapped
/// in middleware or handed to code that takes any backend.
#[derive(Debug, Clone, Default)]
pub struct FileStorage<B> {
    backend: B,
}

impl<B> FileStorage<B> {
    /// A filesystem over `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }
    /// The backend (or middleware stack) underneath.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Gives the backend back.
    pub fn into_inner(self) -> B {
        self.backend
    }
}

/// Errors from the backend name the resolved path; the caller asked about
/// its own path, so report that one.
fn as_asked(err: FsError, resolved: &Path, asked: &Path) -> FsError {
    if err.path() == resolved && resolved != asked {
        err.with_path(asked)
    } else {
        err
    }
}

impl<B: FsRead> FileStorage<B> {
    fn resolve(&self, path: &Path, follow_last: bool) -> FsResult<PathBuf> {
        path::validate(path)?;
        self.backend.resolve(path, follow_last)
    }

    /// Runs `op` on the resolved path, reporting errors under the caller's path.
    fn at<T>(
        &self,
        path: &Path,
        follow_last: bool,
        op: impl FnOnce(&B, &Path) -> FsResult<T>,
    ) -> FsResult<T> {
        let resolved = self.resolve(path, follow_last)?;
        op(&self.backend, &resolved).map_err(|e| as_asked(e, &resolved, path))
    }

    /// The whole content of a file.
    pub fn read(&self, path: impl AsRef<Path>) -> FsResult<Vec<u8>> {
        FsRead::read(self, path.as_ref())
    }
    /// The whole content of a file as UTF-8 text.
    pub fn read_to_string(&self, path: impl AsRef<Path>) -> FsResult<String> {
        FsRead::read_to_string(self, path.as_ref())
    }
    /// Up to `len` bytes from `offset`.
    pub fn read_range(&self, path: impl AsRef<Path>, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        FsRead::read_range(self, path.as_ref(), offset, len)
    }
    /// Whether the path names something (following symlinks, like `Path::exists`).
    pub fn exists(&self, path: impl AsRef<Path>) -> FsResult<bool> {
        FsRead::exists(self, path.as_ref())
    }
    /// Metadata, following symlinks.
    pub fn metadata(&self, path: impl AsRef<Path>) -> FsResult<Metadata> {
        FsRead::metadata(self, path.as_ref())
    }
    /// A streaming reader.
    pub fn open_read(&self, path: impl AsRef<Path>) -> FsResult<FsReader> {
        FsRead::open_read(self, path.as_ref())
    }
    /// The resolved absolute path, which must exist.
    pub fn canonicalize(&self, path: impl AsRef<Path>) -> FsResult<PathBuf> {
        let path = path.as_ref();
        let resolved = self.resolve(path, true)?;
        self.backend
            .metadata(&resolved)
            .map_err(|e| as_asked(e, &resolved, path))?;
        Ok(resolved)
    }
}

impl<B: FsRead + FsWrite> FileStorage<B> {
    /// Creates the file or replaces its content.
    pub fn write(&self, path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> FsResult<()> {
        FsWrite::write(self, path.as_ref(), data.as_ref())
    }
    /// Appends, creating the file if needed.
    pub fn append(&self, path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> FsResult<()> {
        FsWrite::append(self, path.as_ref(), data.as_ref())
    }
    /// Writes `data` into the existing file at `offset`, in place (as
    /// `pwrite(2)`): the rest of the file stays, it grows if the write ends
    /// past its end, and a gap reads as zeros.
    ///
    /// ```
    /// # use anyfs::{FileStorage, MemoryBackend};
    /// let fs = FileStorage::new(MemoryBackend::new());
    /// fs.write("/log.bin", b"hello world")?;
    /// fs.write_range("/log.bin", 6, b"there")?;
    /// assert_eq!(fs.read("/log.bin")?, b"hello there");
    /// fs.write_range("/log.bin", 13, b"!")?;
    /// assert_eq!(fs.read("/log.bin")?, b"hello there\0\0!");
    /// # Ok::<(), anyfs::FsError>(())
    /// ```
    pub fn write_range(
        &self,
        path: impl AsRef<Path>,
        offset: u64,
        data: impl AsRef<[u8]>,
    ) -> FsResult<()> {
        FsWrite::write_range(self, path.as_ref(), offset, data.as_ref())
    }
    /// Writes several ranges into the existing file in one step, in order:
    /// all of them, or (on an error) none.
    ///
    /// ```
    /// # use anyfs::{FileStorage, MemoryBackend};
    /// let fs = FileStorage::new(MemoryBackend::new());
    /// fs.write("/f", b"0123456789")?;
    /// fs.write_ranges("/f", &[(0, b"ab"), (8, b"YZ")])?;
    /// assert_eq!(fs.read("/f")?, b"ab234567YZ");
    /// # Ok::<(), anyfs::FsError>(())
    /// ```
    pub fn write_ranges(&self, path: impl AsRef<Path>, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        FsWrite::write_ranges(self, path.as_ref(), ranges)
    }
    /// Removes a file or symlink.
    pub fn remove_file(&self, path: impl AsRef<Path>) -> FsResult<()> {
        FsWrite::remove_file(self, path.as_ref())
    }
    /// Renames (symlinks on either side are renamed, not followed).
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> FsResult<()> {
        FsWrite::rename(self, from.as_ref(), to.as_ref())
    }
    /// Copies a file.
    pub fn copy(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> FsResult<()> {
        FsWrite::copy(self, from.as_ref(), to.as_ref())
    }
    /// Cuts or extends a file.
    pub fn truncate(&self, path: impl AsRef<Path>, size: u64) -> FsResult<()> {
        FsWrite::truncate(self, path.as_ref(), size)
    }
    /// A streaming writer; the file is created or emptied at once.
    pub fn open_write(&self, path: impl AsRef<Path>) -> FsResult<FsWriter> {
        FsWrite::open_write(self, path.as_ref())
    }
}

impl<B: FsRead + FsDir> FileStorage<B> {
    /// The entries of a directory, in no particular order.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> FsResult<ReadDir> {
        FsDir::read_dir(self, path.as_ref())
    }
    /// Creates a directory.
    pub fn create_dir(&self, path: impl AsRef<Path>) -> FsResult<()> {
        FsDir::create_dir(self, path.as_ref())
    }
    /// Creates a directory and its missing parents.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> FsResult<()> {
        FsDir::create_dir_all(self, path.as_ref())
    }
    /// Removes an empty directory.
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> FsResult<()> {
        FsDir::remove_dir(self, path.as_ref())
    }
    /// Removes a directory tree (a symlink is removed, not followed).
    pub fn remove_dir_all(&self, path: impl AsRef<Path>) -> FsResult<()> {
        FsDir::remove_dir_all(self, path.as_ref())
    }
}

impl<B: FsRead + FsLink> FileStorage<B> {
    /// Creates `link` pointing to `target`. The target is stored as given and
    /// resolved inside the backend when followed (absolute targets from the
    /// virtual root).
    pub fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> FsResult<()> {
        FsLink::symlink(self, target.as_ref(), link.as_ref())
    }
    /// Creates `link` as another name of the file `original`.
    pub fn hard_link(&self, original: impl AsRef<Path>, link: impl AsRef<Path>) -> FsResult<()> {
        FsLink::hard_link(self, original.as_ref(), link.as_ref())
    }
    /// The target of a symlink.
    pub fn read_link(&self, path: impl AsRef<Path>) -> FsResult<PathBuf> {
        FsLink::read_link(self, path.as_ref())
    }
    /// Metadata of the node itself.
    pub fn symlink_metadata(&self, path: impl AsRef<Path>) -> FsResult<Metadata> {
        FsLink::symlink_metadata(self, path.as_ref())
    }
}

impl<B: FsRead + FsPermissions> FileStorage<B> {
    /// Sets permission bits (following symlinks).
    pub fn set_permissions(&self, path: impl AsRef<Path>, perm: Permissions) -> FsResult<()> {
        FsPermissions::set_permissions(self, path.as_ref(), perm)
    }
}

impl<B: FsRead + FsStats> FileStorage<B> {
    /// Capacity and usage.
    pub fn statfs(&self) -> FsResult<StatFs> {
        FsStats::statfs(self)
    }
}

impl<B: FsRead> FsRead for FileStorage<B> {
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        self.at(path, true, |b, p| b.read(p))
    }
    fn read_to_string(&self, path: &Path) -> FsResult<String> {
        self.at(path, true, |b, p| b.read_to_string(p))
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.at(path, true, |b, p| b.read_range(p, offset, len))
    }
    fn exists(&self, path: &Path) -> FsResult<bool> {
        match self.at(path, true, |b, p| b.exists(p)) {
            Err(e) if e.is_absent() => Ok(false),
            other => other,
        }
    }
    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.at(path, true, |b, p| b.metadata(p))
    }
    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        self.at(path, true, |b, p| b.open_read(p))
    }
    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: path::Visit<'_>,
    ) -> FsResult<PathBuf> {
        path::validate(path)?;
        self.backend.resolve_with(path, follow_last, visit)
    }
}

impl<B: FsRead + FsWrite> FsWrite for FileStorage<B> {
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.at(path, true, |b, p| b.write(p, data))
    }
    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        self.at(path, true, |b, p| b.append(p, data))
    }
    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        self.at(path, true, |b, p| b.write_ranges(p, ranges))
    }
    fn remove_file(&self, path: &Path) -> FsResult<()> {
        self.at(path, false, |b, p| b.remove_file(p))
    }
    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        let to_resolved = self.resolve(to, false)?;
        self.at(from, false, |b, p| b.rename(p, &to_resolved))
            .map_err(|e| as_asked(e, &to_resolved, to))
    }
    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        let to_resolved = self.resolve(to, true)?;
        self.at(from, true, |b, p| b.copy(p, &to_resolved))
            .map_err(|e| as_asked(e, &to_resolved, to))
    }
    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        self.at(path, true, |b, p| b.truncate(p, size))
    }
    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        self.at(path, true, |b, p| b.open_write(p))
    }
}

impl<B: FsRead + FsDir> FsDir for FileStorage<B> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let listing = self.at(path, true, |b, p| b.read_dir(p))?;
        // Entries are named under the directory the caller asked for (as
        // `std::fs::read_dir` does), unless that path needs `..` applied, in
        // which case only the resolved path is meaningful.
        let shown = path::normalize(path);
        if shown
            .as_os_str()
            .as_encoded_bytes()
            .split(|&b| b == b'/')
            .any(|n| n == b"..")
        {
            return Ok(listing);
        }
        Ok(ReadDir::new(listing.map(move |entry| {
            entry.map(|e| DirEntry {
                path: path::join(&shown, &e.name),
                ..e
            })
        })))
    }
    fn create_dir(&self, path: &Path) -> FsResult<()> {
        self.at(path, false, |b, p| b.create_dir(p))
    }
    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        self.at(path, true, |b, p| b.create_dir_all(p))
    }
    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        self.at(path, false, |b, p| b.remove_dir(p))
    }
    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        self.at(path, false, |b, p| b.remove_dir_all(p))
    }
}

impl<B: FsRead + FsLink> FsLink for FileStorage<B> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        path::validate(target)?;
        self.at(link, false, |b, p| b.symlink(target, p))
    }
    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let link_resolved = self.resolve(link, false)?;
        self.at(original, false, |b, p| b.hard_link(p, &link_resolved))
            .map_err(|e| as_asked(e, &link_resolved, link))
    }
    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.at(path, false, |b, p| b.read_link(p))
    }
    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.at(path, false, |b, p| b.symlink_metadata(p))
    }
}

impl<B: FsRead + FsPermissions> FsPermissions for FileStorage<B> {
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        self.at(path, true, |b, p| b.set_permissions(p, perm))
    }
    fn set_times(
        &self,
        path: &Path,
        accessed: Option<std::time::SystemTime>,
        modified: Option<std::time::SystemTime>,
    ) -> FsResult<()> {
        self.at(path, true, |b, p| b.set_times(p, accessed, modified))
    }
    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        self.at(path, true, |b, p| b.set_owner(p, uid, gid))
    }
}

impl<B: FsRead + FsSync> FsSync for FileStorage<B> {
    fn sync(&self) -> FsResult<()> {
        self.backend.sync()
    }
    fn fsync(&self, path: &Path) -> FsResult<()> {
        self.at(path, true, |b, p| b.fsync(p))
    }
}

impl<B: FsRead + FsStats> FsStats for FileStorage<B> {
    fn statfs(&self) -> FsResult<StatFs> {
        self.backend.statfs()
    }
}
