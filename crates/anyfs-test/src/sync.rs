//! Durability: `sync` and `fsync`.

use anyfs::{Fs, FsErrorKind, FsSync};

use crate::{assert_err, p};

/// `sync` succeeds; `fsync` needs the file to exist.
pub fn sync_and_fsync<B: Fs + FsSync>(fs: &B) {
    fs.write(p("/durable"), b"x").unwrap();
    fs.sync().unwrap();
    fs.fsync(p("/durable")).unwrap();
    assert_err(fs.fsync(p("/missing")), FsErrorKind::NotFound);
}
