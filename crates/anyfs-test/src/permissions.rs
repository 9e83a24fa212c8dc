//! Permission bits, times and owners.

use std::time::{Duration, SystemTime};

use anyfs::{Fs, FsErrorKind, FsPermissions, Permissions};

use crate::{assert_err, p};

/// `set_permissions` is reported back by `metadata`.
pub fn set_permissions_is_reported<B: Fs + FsPermissions>(fs: &B) {
    fs.write(p("/f"), b"x").unwrap();
    fs.create_dir(p("/d")).unwrap();
    fs.set_permissions(p("/f"), Permissions::from_mode(0o600))
        .unwrap();
    fs.set_permissions(p("/d"), Permissions::from_mode(0o700))
        .unwrap();
    let f = fs.metadata(p("/f")).unwrap().permissions;
    assert_eq!(f.mode() & 0o777, 0o600);
    assert!(!f.readonly());
    assert_eq!(
        fs.metadata(p("/d")).unwrap().permissions.mode() & 0o777,
        0o700
    );
    fs.set_permissions(p("/f"), Permissions::from_mode(0o444))
        .unwrap();
    assert!(fs.metadata(p("/f")).unwrap().permissions.readonly());
    assert_err(
        fs.set_permissions(p("/missing"), Permissions::from_mode(0o600)),
        FsErrorKind::NotFound,
    );
}

/// `set_times` and `set_owner` either work and are reported, or say
/// `NotSupported`.
pub fn set_times_and_owner<B: Fs + FsPermissions>(fs: &B) {
    fs.write(p("/t"), b"x").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    match fs.set_times(p("/t"), Some(when), Some(when)) {
        Ok(()) => {
            let m = fs.metadata(p("/t")).unwrap();
            assert_eq!(m.modified, when);
            assert_eq!(m.accessed, when);
        }
        Err(e) => assert_eq!(e.kind(), FsErrorKind::NotSupported),
    }
    let before = fs.metadata(p("/t")).unwrap();
    match fs.set_owner(p("/t"), Some(before.uid), Some(before.gid)) {
        Ok(()) => {
            let m = fs.metadata(p("/t")).unwrap();
            assert_eq!((m.uid, m.gid), (before.uid, before.gid));
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                FsErrorKind::NotSupported | FsErrorKind::PermissionDenied
            ),
            "{e}"
        ),
    }
}
