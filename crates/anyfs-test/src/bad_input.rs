//! Untrusted paths through [`FileStorage`](anyfs::FileStorage): any bytes,
//! no panic, no hang, no way out, and an error that names the path.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyfs::{Fs, FsErrorKind, FsResult};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::{assert_err, p};

/// `..` in any number and position never climbs above the root.
pub fn dotdot_never_leaves_the_root<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/w/root")).unwrap();
    for (path, lands) in [
        ("/../escape", "/escape"),
        ("../../../../escape2", "/escape2"),
        ("/w/root/../../../../../escape3", "/escape3"),
        ("/w/root/../root/./../../escape4", "/escape4"),
        ("w/root/..//..//../escape5", "/escape5"),
        ("////..////escape6", "/escape6"),
    ] {
        fs.write(p(path), path.as_bytes()).unwrap();
        assert_eq!(fs.read(p(lands)).unwrap(), path.as_bytes(), "{path}");
    }
    // Traversal spellings that are not `..` are ordinary names.
    fs.create_dir(p("/w/root/....")).unwrap();
    for literal in [
        "..\\..\\x",
        "....//y",
        "%2e%2e%2fz",
        "%252e%252e",
        ".. ",
        "...",
    ] {
        let path = format!("/w/root/{literal}");
        fs.write(p(&path), b"literal").unwrap();
        assert_eq!(fs.read(p(&path)).unwrap(), b"literal", "{literal}");
    }
}

/// Empty paths, NUL bytes and over-long names or paths are `InvalidPath`.
pub fn malformed_paths_are_invalid<B: Fs>(fs: &B) {
    for err in [fs.read(p("")).map(drop), fs.write(p(""), b"x")] {
        let err = err.unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::InvalidPath);
        assert!(err.to_string().contains("empty"), "{err}");
    }
    assert_err(fs.write(p("/a\0b"), b"x"), FsErrorKind::InvalidPath);
    assert_err(fs.create_dir(p("/\0")), FsErrorKind::InvalidPath);
    assert_err(
        fs.read(p(&format!("/{}", "a".repeat(256)))),
        FsErrorKind::InvalidPath,
    );
    assert_err(fs.read(p(&"/a".repeat(3000))), FsErrorKind::InvalidPath);
    let err = fs.read(p("/has\0nul")).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    let slashes = "/".repeat(4000) + "ok";
    fs.write(p(&slashes), b"fine").unwrap();
    assert_eq!(fs.read(p("/ok")).unwrap(), b"fine");
}

fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(b"/".to_vec()),
        3 => Just(b"..".to_vec()),
        2 => Just(b".".to_vec()),
        3 => prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), "é".as_bytes().to_vec()]),
        1 => Just(vec![0u8]),
        1 => Just(b"\\".to_vec()),
        1 => (250usize..260).prop_map(|n| vec![b'x'; n]),
        2 => prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn check<T>(paths: &[&Path], result: FsResult<T>) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            // Only an empty path can be named by an empty path.
            prop_assert!(
                !e.path().as_os_str().is_empty() || paths.iter().any(|p| p.as_os_str().is_empty()),
                "error without a path: {e}"
            );
            Ok(None)
        }
    }
}

/// Random byte strings given to every operation: never a panic, every error
/// names a path, a successful write reads back, and a canonical path is
/// absolute and free of `..`.
pub fn arbitrary_bytes_never_panic<B: Fs>(make: impl Fn() -> B) {
    let fs = make();
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&(path_bytes(), path_bytes()), |(a, b)| {
        let a = PathBuf::from(OsString::from_vec(a));
        let b = PathBuf::from(OsString::from_vec(b));
        if check(&[&a], fs.write(&a, a.as_os_str().as_bytes()))?.is_some() {
            let back = fs.read(&a);
            prop_assert_eq!(back.ok(), Some(a.as_os_str().as_bytes().to_vec()));
        }
        check(&[&a], fs.read(&a))?;
        check(&[&a], fs.metadata(&a))?;
        check(&[&a], fs.exists(&a))?;
        check(&[&a], fs.create_dir_all(&a))?;
        check(&[&a], fs.read_dir(&a).map(|d| d.count()))?;
        check(&[&a], fs.append(&a, b"x"))?;
        check(&[&a], fs.truncate(&a, 3))?;
        check(&[&a, &b], fs.copy(&a, &b))?;
        check(&[&a, &b], fs.rename(&a, &b))?;
        check(&[&b], fs.remove_file(&b))?;
        check(&[&b], fs.remove_dir(&b))?;
        if let Some(resolved) = check(&[&a], fs.resolve(&a, true))? {
            let bytes = resolved.as_os_str().as_bytes();
            prop_assert!(bytes.starts_with(b"/"));
            prop_assert!(!bytes.split(|&c| c == b'/').any(|n| n == b".." || n == b"."));
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
