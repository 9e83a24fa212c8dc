//! What the two host backends share: turning host metadata and host errors
//! into ours, without ever naming a host path.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{FsError, FsResult};
use crate::path::CROSSES_SYMLINK;
use crate::types::{FileType, Metadata, Permissions};

/// The reason given for FIFOs, sockets and device files, which the jail
/// refuses to open (reading a FIFO could block forever; a device is not
/// workspace data).
pub(crate) const SPECIAL_FILE: &str =
    "not a regular file (a FIFO, socket or device); such files are never opened";

/// The error for creating, replacing, removing or moving the root itself,
/// as every backend reports it.
pub(crate) fn root_error(path: &Path) -> FsError {
    FsError::InvalidPath {
        path: path.into(),
        reason: "the root cannot be created, replaced, removed or moved",
    }
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
        libc::ENOENT => FsError::NotFound { path },
        libc::EEXIST => FsError::AlreadyExists { path },
        libc::ENOTDIR => FsError::NotADirectory { path },
        libc::EISDIR => FsError::IsADirectory { path },
        libc::ENOTEMPTY => FsError::DirectoryNotEmpty { path },
        libc::EACCES | libc::EPERM => FsError::PermissionDenied { path, op },
        libc::EROFS => FsError::ReadOnly { path, op },
        libc::ELOOP => FsError::InvalidPath {
            path,
            reason: CROSSES_SYMLINK,
        },
        libc::ENAMETOOLONG => FsError::InvalidPath {
            path,
            reason: "a name or the path is too long for the host",
        },
        libc::EXDEV => FsError::InvalidPath {
            path,
            reason: "the path leaves the root",
        },
        libc::EINVAL => FsError::InvalidPath {
            path,
            reason: "the operation does not apply to this path",
        },
        libc::ENXIO | libc::ENODEV => FsError::AccessDenied {
            path,
            reason: SPECIAL_FILE.into(),
        },
        _ => FsError::Io {
            path,
            op,
            source: err,
        },
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
            return Err(FsError::FileSizeExceeded {
                path: path.into(),
                size: offset.saturating_add(data.len() as u64),
                limit: i64::MAX as u64,
            });
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

/// Whether a directory entry is one of our temporary files.
pub(crate) fn is_temp(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Replaces the content of `name` in `dir` so that a reader sees the old
/// content or the new, never a mix or an empty file, and a crash leaves one
/// of the two: `fill` writes a temporary file beside it, which is then
/// renamed over it. The replaced file's permission bits (or `mode`, for a
/// copy) and owner carry over. A file with several hard links is rewritten
/// in place instead, so that every name keeps seeing one file.
pub(crate) fn replace(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: Option<u32>,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType as Kind, Mode, OFlags};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);

    let existing = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
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
        if stat.st_nlink > 1 {
            let flags = OFlags::WRONLY
                | OFlags::TRUNC
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let mut file = fs::File::from(rustix::fs::openat(dir, name, flags, Mode::empty())?);
            fill(&mut file)?;
            if let Some(mode) = mode {
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
            }
            return Ok(());
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
    let temp = OsStr::from_bytes(&temp);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, temp, flags, Mode::from_raw_mode(0o666))?;
    let mut file = fs::File::from(fd);
    let written = (|| {
        fill(&mut file)?;
        let keep = mode.or(existing.as_ref().map(|s| s.st_mode & 0o7777));
        if let Some(mode) = keep {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        }
        if let Some(stat) = &existing {
            // Best effort, as only a privileged process may give files away.
            let _ = rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                Some(rustix::fs::Gid::from_raw(stat.st_gid)),
            );
        }
        rustix::fs::renameat(dir, temp, dir, name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
    }
    written
}
