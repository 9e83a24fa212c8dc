//! Open files with positional I/O.

use anyfs::{Fs, FsErrorKind, FsHandles, OpenFlags};

use crate::{assert_err, p};

/// `write_at` and `read_at` work at any offset; gaps read as zeros.
pub fn positional_io<B: Fs + FsHandles>(fs: &B) {
    let flags = OpenFlags {
        read: true,
        ..OpenFlags::CREATE
    };
    let h = fs.open(p("/pos"), flags).unwrap();
    assert_eq!(fs.write_at(h, b"hello", 0).unwrap(), 5);
    assert_eq!(fs.write_at(h, b"world", 10).unwrap(), 5);
    let mut buf = [0xffu8; 20];
    let n = fs.read_at(h, &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello\0\0\0\0\0world");
    assert_eq!(fs.read_at(h, &mut buf, 15).unwrap(), 0);
    let n = fs.read_at(h, &mut buf[..3], 11).unwrap();
    assert_eq!(&buf[..n], b"orl");
    fs.close(h).unwrap();
    assert_eq!(fs.read(p("/pos")).unwrap(), b"hello\0\0\0\0\0world");
    assert!(fs.close(h).is_err(), "a closed handle is gone");
}

/// `create_new` is exclusive; missing files need `create`; `truncate` empties.
pub fn open_flags<B: Fs + FsHandles>(fs: &B) {
    let h = fs.open(p("/x"), OpenFlags::CREATE_NEW).unwrap();
    fs.close(h).unwrap();
    assert_err(
        fs.open(p("/x"), OpenFlags::CREATE_NEW),
        FsErrorKind::AlreadyExists,
    );
    assert_err(
        fs.open(p("/missing"), OpenFlags::READ),
        FsErrorKind::NotFound,
    );
    fs.write(p("/x"), b"content").unwrap();
    let h = fs.open(p("/x"), OpenFlags::READ).unwrap();
    assert!(fs.write_at(h, b"no", 0).is_err(), "read-only handle wrote");
    fs.close(h).unwrap();
    let h = fs.open(p("/x"), OpenFlags::CREATE).unwrap();
    fs.close(h).unwrap();
    assert!(fs.read(p("/x")).unwrap().is_empty());
    fs.create_dir(p("/d")).unwrap();
    assert_err(
        fs.open(p("/d"), OpenFlags::CREATE),
        FsErrorKind::IsADirectory,
    );
}

/// An append handle writes at the end whatever offset it is given.
pub fn append_handles_write_at_the_end<B: Fs + FsHandles>(fs: &B) {
    fs.write(p("/log"), b"first\n").unwrap();
    let h = fs.open(p("/log"), OpenFlags::APPEND).unwrap();
    fs.write_at(h, b"second\n", 0).unwrap();
    fs.close(h).unwrap();
    assert_eq!(fs.read(p("/log")).unwrap(), b"first\nsecond\n");
}

/// A file removed while open stays readable through the handle (POSIX).
pub fn unlinked_open_file_stays_readable<B: Fs + FsHandles>(fs: &B) {
    fs.write(p("/tmp"), b"still here").unwrap();
    let h = fs.open(p("/tmp"), OpenFlags::READ).unwrap();
    fs.remove_file(p("/tmp")).unwrap();
    assert!(!fs.exists(p("/tmp")).unwrap());
    let mut buf = [0u8; 32];
    let n = fs.read_at(h, &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"still here");
    fs.close(h).unwrap();
}
