//! Durability and capacity.

use anyfs::{Fs, FsErrorKind, FsStats, FsSync};

use crate::{assert_err, p};

/// `sync` succeeds; `fsync` needs the file to exist.
pub fn sync_and_fsync<B: Fs + FsSync>(fs: &B) {
    fs.write(p("/durable"), b"x").unwrap();
    fs.sync().unwrap();
    fs.fsync(p("/durable")).unwrap();
    assert_err(fs.fsync(p("/missing")), FsErrorKind::NotFound);
}

/// `statfs` reports consistent numbers and a 255-byte name limit.
pub fn statfs_reports_usage<B: Fs + FsStats>(fs: &B) {
    let before = fs.statfs().unwrap();
    fs.write(p("/big"), &vec![7u8; 1 << 20]).unwrap();
    let after = fs.statfs().unwrap();
    assert!(
        after.used_bytes >= before.used_bytes,
        "{before:?} -> {after:?}"
    );
    assert!(after.total_bytes >= after.used_bytes);
    assert!(after.max_name_len >= 255);
    assert!(after.block_size > 0);
}
