//! File content held whole in memory: where a write lands, whether the host
//! has room for it, and the edit itself. The memory backends, the streamed
//! writer that gathers a file before storing it, and the sealing middleware
//! (which edits a file's plaintext whole) all hold content this way.

use std::path::Path;

use crate::error::{FsError, FsResult};

/// Where a write of `len` bytes at `offset` starts and ends in memory.
pub(crate) fn span_of(path: &Path, offset: u64, len: usize) -> FsResult<(usize, usize)> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some((start, start.checked_add(len)?)))
        .ok_or_else(|| {
            FsError::file_size_exceeded(path, offset.saturating_add(len as u64), usize::MAX as u64)
        })
}

/// Where each non-empty range of a write into a file of `len` bytes starts
/// and ends in memory; an error, before anything changes, if the file could
/// not grow that far.
pub(crate) fn spans_of<'a>(
    path: &Path,
    ranges: &[(u64, &'a [u8])],
    len: usize,
) -> FsResult<Vec<(usize, usize, &'a [u8])>> {
    let spans = ranges
        .iter()
        .filter(|(_, data)| !data.is_empty())
        .map(|(offset, data)| span_of(path, *offset, data.len()).map(|(s, e)| (s, e, *data)))
        .collect::<FsResult<Vec<_>>>()?;
    let end = spans.iter().map(|(_, end, _)| *end).max().unwrap_or(0);
    room_for(path, len, end)?;
    Ok(spans)
}

/// How much memory the host can still give: `MemAvailable`, or less if
/// the process's cgroup is limited to less. `None` if nothing says.
pub(crate) fn memory_available() -> Option<u64> {
    let host = (|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = info
            .lines()
            .find_map(|line| line.strip_prefix("MemAvailable:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib.saturating_mul(1024))
    })();
    // A cgroup v2 limit on the process's own group ("max" is none).
    let group = (|| {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = Path::new("/sys/fs/cgroup").join(rel.trim().trim_start_matches('/'));
        let read = |name: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(name))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(read("memory.max")?.saturating_sub(read("memory.current")?))
    })();
    match (host, group) {
        (Some(h), Some(g)) => Some(h.min(g)),
        (h, g) => h.or(g),
    }
}

/// Whether a file held in memory may grow from `from` to `to` bytes: not
/// by more than the host has left (growing by a few MiB is not checked),
/// and an absurd size is an error, never an abort. The error is `ENOSPC`:
/// memory is where the file lives.
pub(crate) fn room_for(path: &Path, from: usize, to: usize) -> FsResult<()> {
    const UNCHECKED: usize = 16 << 20;
    if to <= from.saturating_add(UNCHECKED) {
        return Ok(());
    }
    let full = || {
        FsError::io(
            path,
            "grow the file in memory",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )
    };
    if memory_available().is_some_and(|available| (to - from) as u64 > available) {
        return Err(full());
    }
    Vec::<u8>::new().try_reserve_exact(to).map_err(|_| full())
}

/// Writes `data` over `buf[start..end]`, growing `buf` with zeros if needed.
pub(crate) fn splice_into(buf: &mut Vec<u8>, start: usize, end: usize, data: &[u8]) {
    if buf.len() < end {
        // Exactly what `room_for` checked, not the doubling `resize` asks.
        buf.reserve_exact(end - buf.len());
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}
