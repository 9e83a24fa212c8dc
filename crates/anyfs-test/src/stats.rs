//! Capacity: what `statfs` reports.

use anyfs::{Fs, FsStats};

use crate::p;

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
