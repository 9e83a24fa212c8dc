//! A small binary encoding for snapshots and sealed nodes: fixed-width
//! little-endian integers and length-prefixed bytes. Decoding never panics
//! and never allocates more than the input could hold.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{FsError, FsResult};

use zeroize::Zeroize;

/// Builds an encoding. The buffer is wiped when dropped, as it may hold
/// plaintext.
#[derive(Default)]
pub(crate) struct Encoder {
    pub(crate) buf: Vec<u8>,
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl Encoder {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn time(&mut self, t: SystemTime) {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        self.u64(secs as u64);
        self.u32(nanos);
    }
}

/// Reads an encoding; every method fails (returns `None`) past the end.
pub(crate) struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.data.len() {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }
    pub(crate) fn time(&mut self) -> Option<SystemTime> {
        let secs = self.u64()? as i64;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return None;
        }
        let nanos = Duration::from_nanos(u64::from(nanos));
        if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64) + nanos)
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
                .checked_add(nanos)
        }
    }
    /// A count of items that each take at least `min_size` bytes, refused
    /// if the rest of the input could not hold that many.
    pub(crate) fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(min_size.max(1))? <= self.data.len()).then_some(n)
    }
}

/// Writes a host file so that a crash leaves the old content or the new:
/// a temporary file beside it, synced, renamed over it, the folder synced.
/// Errors name the virtual root (the file is the caller's own).
pub(crate) fn write_atomically(file: &Path, data: &[u8], op: &'static str) -> FsResult<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| FsError::invalid_path("/", "the file to write needs a name"))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(data)?;
        out.sync_all()?;
        std::fs::rename(&temp, file)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|e| FsError::from_io("/", op, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_short_input_fails() {
        let mut e = Encoder::default();
        e.u8(7);
        e.u32(70_000);
        e.u64(u64::MAX);
        e.bytes(b"name");
        let before = UNIX_EPOCH - Duration::new(5, 250);
        let after = UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999);
        e.time(before);
        e.time(after);
        let mut d = Decoder::new(&e.buf);
        assert_eq!(d.u8(), Some(7));
        assert_eq!(d.u32(), Some(70_000));
        assert_eq!(d.u64(), Some(u64::MAX));
        assert_eq!(d.bytes(), Some(&b"name"[..]));
        assert_eq!(d.time(), Some(before));
        assert_eq!(d.time(), Some(after));
        assert!(d.is_empty());
        assert_eq!(d.u8(), None);
        let mut short = Decoder::new(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(short.bytes(), None);
        let mut huge = Decoder::new(&[255; 8]);
        assert_eq!(huge.count(1), None);
    }
}
