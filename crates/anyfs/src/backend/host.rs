//! What the two host backends share: turning host metadata and host errors
//! into ours, without ever naming a host path.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{FsError, FsResult};
use crate::types::{FileType, Metadata, Permissions};

/// The reason given for FIFOs, sockets and device files, which the jail
/// refuses to open (reading a FIFO could block forever; a device is not
/// workspace data).
pub(crate) const SPECIAL_FILE: &str =
    "not a regular file (a FIFO, socket or device); such files are never opened";

/// The error for creating, replacing, removing or moving the root itself,
/// as every backend reports it.
pub(crate) fn root_error(path: &Path) -> FsError {
    FsError::invalid_path(
        path,
        "the root cannot be created, replaced, removed or moved",
    )
}

/// Our metadata from the host's. FIFOs, sockets and devices are reported as
/// files (our type has no kind for them); opening them is refused.
pub(crate) fn metadata(m: &fs::Metadata) -> Metadata {
    let ft = m.file_type();
    let file_type = if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::File
    };
    let modified = time(m.mtime(), m.mtime_nsec());
    Metadata {
        file_type,
        len: m.len(),
        permissions: Permissions::from_mode(m.mode()),
        inode: m.ino(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        accessed: time(m.atime(), m.atime_nsec()),
        modified,
        changed: time(m.ctime(), m.ctime_nsec()),
        created: m.created().unwrap_or(modified),
    }
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
    }
}

/// Our error for a host error about the virtual `path`. Host errors are bare
/// error codes, so nothing of the host's paths can leak through them.
pub(crate) fn error(err: io::Error, path: &Path, op: &'static str) -> FsError {
    let path = path.to_path_buf();
    let Some(code) = err.raw_os_error() else {
        return FsError::from_io(path, op, err);
    };
    match code {
        libc::ENOENT => FsError::not_found(path),
        libc::EEXIST => FsError::already_exists(path),
        libc::ENOTDIR => FsError::not_a_directory(path),
        libc::EISDIR => FsError::is_a_directory(path),
        libc::ENOTEMPTY => FsError::directory_not_empty(path),
        libc::EACCES | libc::EPERM => FsError::permission_denied(path, op),
        libc::EROFS => FsError::read_only(path, op),
        libc::ELOOP => crate::path::crosses_symlink(&path),
        libc::ENAMETOOLONG => {
            FsError::invalid_path(path, "a name or the path is too long for the host")
        }
        libc::EXDEV => FsError::invalid_path(path, "the path leaves the root"),
        libc::EINVAL => FsError::invalid_path(path, "the operation does not apply to this path"),
        libc::ENXIO | libc::ENODEV => FsError::access_denied(path, SPECIAL_FILE),
        _ => FsError::io(path, op, err),
    }
}

/// Up to `len` bytes of `file` from `offset` (fewer at its end).
pub(crate) fn read_range(file: &fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let want = usize::try_from(size.saturating_sub(offset))
        .unwrap_or(usize::MAX)
        .min(len);
    let mut buf = vec![0; want];
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Writes each range into `file`, in place, after checking that every one
/// fits (so a refused range leaves the file as it was).
pub(crate) fn write_ranges(file: &fs::File, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
    use std::os::unix::fs::FileExt;
    let ranges: Vec<_> = ranges.iter().filter(|(_, data)| !data.is_empty()).collect();
    for (offset, data) in &ranges {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(FsError::file_size_exceeded(
                path,
                offset.saturating_add(data.len() as u64),
                i64::MAX as u64,
            ));
        }
    }
    for (offset, data) in ranges {
        file.write_all_at(data, *offset)
            .map_err(|e| error(e, path, "write_range"))?;
    }
    Ok(())
}

/// Copies the regular file `src` (content and permission bits) to `name`
/// in `dir`, as [`replace`] does. Copying a file onto another name of the
/// same node changes nothing.
pub(crate) fn copy_into(src: &fs::File, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let from = src.metadata()?;
    if let Ok(to) = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        && (to.st_dev, to.st_ino) == (from.dev(), from.ino())
    {
        return Ok(());
    }
    replace(dir, name, Some(from.mode() & 0o7777), |dst| {
        io::copy(&mut &*src, dst).map(drop)
    })
}

/// Our statistics from the host's `statvfs`.
pub(crate) fn statfs(v: &rustix::fs::StatVfs) -> crate::types::StatFs {
    let unit = v.f_frsize.max(1);
    crate::types::StatFs {
        total_bytes: v.f_blocks.saturating_mul(unit),
        used_bytes: v.f_blocks.saturating_sub(v.f_bfree).saturating_mul(unit),
        available_bytes: v.f_bavail.saturating_mul(unit),
        total_inodes: v.f_files,
        used_inodes: v.f_files.saturating_sub(v.f_ffree),
        available_inodes: v.f_favail,
        block_size: u32::try_from(v.f_bsize).unwrap_or(4096),
        max_name_len: u32::try_from(v.f_namemax.min(255)).unwrap_or(255),
    }
}

/// Times for `utimensat`, leaving out what is `None`.
pub(crate) fn timestamps(
    accessed: Option<SystemTime>,
    modified: Option<SystemTime>,
) -> rustix::fs::Timestamps {
    fn spec(t: Option<SystemTime>) -> rustix::fs::Timespec {
        match t {
            None => rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            Some(t) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => rustix::fs::Timespec {
                    tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: d.subsec_nanos().into(),
                },
                Err(before) => {
                    let d = before.duration();
                    let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                    let mut nanos = i64::from(d.subsec_nanos());
                    if nanos > 0 {
                        secs -= 1;
                        nanos = 1_000_000_000 - nanos;
                    }
                    rustix::fs::Timespec {
                        tv_sec: secs,
                        tv_nsec: nanos,
                    }
                }
            },
        }
    }
    rustix::fs::Timestamps {
        last_access: spec(accessed),
        last_modification: spec(modified),
    }
}

/// Names of the temporary files [`replace`] writes before renaming them into
/// place; listings leave them out.
pub(crate) const TEMP_PREFIX: &[u8] = b".anyfs-tmp-";

/// The names of a resolved path, refusing any that starts like one of our
/// temporary files: those are hidden from listings (and so from a policy's
/// look below a directory), so nobody else may make or name one.
pub(crate) fn names(path: &Path) -> FsResult<Vec<&OsStr>> {
    let names = crate::path::resolved_components(path)?;
    if names.iter().any(|n| is_temp(n.as_bytes())) {
        return Err(FsError::invalid_path(
            path,
            "names starting with `.anyfs-tmp-` are kept for the backend's temporary files",
        ));
    }
    Ok(names)
}

/// Whether a directory entry is one of our temporary files.
pub(crate) fn is_temp(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Replaces the content of `name` in `dir` so that a reader sees the old
/// content or the new, never a mix or an empty file, and a crash leaves one
/// of the two: `fill` writes a temporary file beside it, which is then
/// renamed over it (see [`Staged`]).
pub(crate) fn replace(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: Option<u32>,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
    let mut staged = Staged::new(dir, name, mode)?;
    fill(&mut staged.file)?;
    staged.commit()
}

/// A replacement of one file's content, staged in a temporary file beside
/// it until [`commit`](Staged::commit) renames it into place: readers see
/// the old content or the new, never a mix, and a crash leaves one of the
/// two (and a temporary file that listings leave out). Dropped without a
/// commit, the temporary file goes and nothing changed. The replaced file's
/// permission bits (or `mode`, for a copy) and owner carry over. A file
/// with several hard links is rewritten in place at commit instead, so that
/// every name keeps seeing one file; only that rewrite is not atomic.
pub(crate) struct Staged {
    dir: OwnedFd,
    name: std::ffi::OsString,
    temp: std::ffi::OsString,
    mode: Option<u32>,
    existing: Option<rustix::fs::Stat>,
    /// The temporary file being written.
    pub(crate) file: fs::File,
}

impl Staged {
    /// Checks that `name` in `dir` is a regular file or missing, and opens
    /// the temporary file.
    pub(crate) fn new(dir: OwnedFd, name: &OsStr, mode: Option<u32>) -> io::Result<Self> {
        use rustix::fs::{AtFlags, FileType as Kind, Mode, OFlags};
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);

        let existing = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(stat),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(stat) = &existing {
            match Kind::from_raw_mode(stat.st_mode) {
                Kind::RegularFile => {}
                Kind::Directory => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                Kind::Symlink => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
                _ => return Err(io::Error::from_raw_os_error(libc::ENXIO)),
            }
        }
        let mut temp = TEMP_PREFIX.to_vec();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        temp.extend_from_slice(
            format!(
                "{}-{}-{stamp:08x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
            .as_bytes(),
        );
        let temp = OsStr::from_bytes(&temp).to_os_string();
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Owner-only while it fills: the replaced file's mode is given at
        // the commit, never a wider one before.
        let fd = rustix::fs::openat(&dir, &temp, flags, Mode::from_raw_mode(0o600))?;
        Ok(Self {
            dir,
            name: name.to_os_string(),
            temp,
            mode,
            existing,
            file: fs::File::from(fd),
        })
    }

    /// Puts the staged content in place.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        let result = (|| {
            // Another name may have been linked to the file since: checked
            // again now, so that no name is cut off from the new content.
            let linked = match rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            {
                Ok(stat) => stat.st_nlink > 1,
                Err(_) => false,
            };
            if linked {
                let flags = OFlags::WRONLY
                    | OFlags::TRUNC
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC;
                let mut target = fs::File::from(rustix::fs::openat(
                    &self.dir,
                    &self.name,
                    flags,
                    Mode::empty(),
                )?);
                io::Seek::rewind(&mut self.file)?;
                io::copy(&mut self.file, &mut target)?;
                if let Some(mode) = self.mode {
                    rustix::fs::fchmod(&target, Mode::from_raw_mode(mode))?;
                }
                return Ok(());
            }
            // A new file gets the mode a plain create would have given it.
            let keep = self
                .mode
                .or(self.existing.as_ref().map(|s| s.st_mode & 0o7777))
                .unwrap_or(0o666 & !process_umask());
            rustix::fs::fchmod(&self.file, Mode::from_raw_mode(keep))?;
            if let Some(stat) = &self.existing {
                // Best effort, as only a privileged process may give files away.
                let _ = rustix::fs::fchown(
                    &self.file,
                    Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                    Some(rustix::fs::Gid::from_raw(stat.st_gid)),
                );
            }
            rustix::fs::renameat(&self.dir, &self.temp, &self.dir, &self.name)?;
            self.temp.clear();
            Ok(())
        })();
        self.remove_temp();
        result
    }

    fn remove_temp(&mut self) {
        if !self.temp.is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, &self.temp, rustix::fs::AtFlags::empty());
            self.temp.clear();
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit there is nothing left to remove.
        self.remove_temp();
    }
}

/// The process's umask, read without changing it (`/proc/self/status`,
/// Linux 4.7 and later); 022 where it cannot be read.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A streamed write through a [`Staged`] replacement.
pub(crate) struct StagedWriter {
    staged: Staged,
    path: std::path::PathBuf,
    /// Opens the directory `path` names now, to check at the commit that
    /// it is still the one the write was staged in.
    parent_now: ParentNow,
}

/// Opens the directory a path's parent names at the time of the call.
pub(crate) type ParentNow = Box<dyn Fn() -> FsResult<OwnedFd> + Send>;

impl StagedWriter {
    pub(crate) fn new(staged: Staged, path: &Path, parent_now: ParentNow) -> Self {
        Self {
            staged,
            path: path.to_path_buf(),
            parent_now,
        }
    }
}

impl io::Write for StagedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.staged.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.staged.file.flush()
    }
}

impl crate::traits::FileWriter for StagedWriter {
    /// Refused if the file's directory was moved (or replaced) since the
    /// write was opened: the staged file would land under another name
    /// than the one every check was made for.
    fn commit(self: Box<Self>) -> FsResult<()> {
        let StagedWriter {
            staged,
            path,
            parent_now,
        } = *self;
        let same = |a: &OwnedFd, b: &OwnedFd| -> io::Result<bool> {
            let (a, b) = (rustix::fs::fstat(a)?, rustix::fs::fstat(b)?);
            Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        };
        let now = parent_now()?;
        if !same(&now, &staged.dir).map_err(|e| error(e, &path, "open_write"))? {
            return Err(FsError::conflict(
                path,
                "its folder was moved while the file was written; nothing was written",
            ));
        }
        staged.commit().map_err(|e| error(e, &path, "open_write"))
    }
}
