//! Files and directories: what every [`Fs`] must do.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};

use anyfs::{FileType, Fs, FsErrorKind};

use crate::{assert_err, p};

fn names<B: Fs>(fs: &B, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .read_dir(p(dir))
        .unwrap()
        .map(|e| e.unwrap().name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writing then reading gives the bytes back.
pub fn write_then_read_round_trips<B: Fs>(fs: &B) {
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    fs.write(p("/data.bin"), &data).unwrap();
    assert_eq!(fs.read(p("/data.bin")).unwrap(), data);
    fs.write(p("/hello.txt"), b"hello").unwrap();
    assert_eq!(fs.read_to_string(p("/hello.txt")).unwrap(), "hello");
}

/// An empty file exists, has length 0 and reads as nothing.
pub fn empty_file<B: Fs>(fs: &B) {
    fs.write(p("/empty"), b"").unwrap();
    assert!(fs.exists(p("/empty")).unwrap());
    let meta = fs.metadata(p("/empty")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len, 0);
    assert!(fs.read(p("/empty")).unwrap().is_empty());
    assert!(fs.read_range(p("/empty"), 0, 10).unwrap().is_empty());
}

/// A second write replaces the content, even with something shorter.
pub fn write_replaces_content<B: Fs>(fs: &B) {
    fs.write(p("/f"), b"a long first version").unwrap();
    fs.write(p("/f"), b"short").unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"short");
    assert_eq!(fs.metadata(p("/f")).unwrap().len, 5);
}

/// `append` creates a missing file and adds to an existing one.
pub fn append_creates_and_extends<B: Fs>(fs: &B) {
    fs.append(p("/log"), b"one\n").unwrap();
    fs.append(p("/log"), b"two\n").unwrap();
    assert_eq!(fs.read_to_string(p("/log")).unwrap(), "one\ntwo\n");
}

/// `write_range` writes in place: the bytes around it stay, a write past
/// the end grows the file (a gap reads as zeros), and writing nothing
/// changes nothing. The file must exist and be a file.
pub fn write_range_writes_in_place<B: Fs>(fs: &B) {
    fs.write(p("/f"), b"hello world").unwrap();
    fs.write_range(p("/f"), 6, b"there").unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"hello there");
    fs.write_range(p("/f"), 9, b"ir!").unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"hello their!");
    fs.write_range(p("/f"), 20, b"x").unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"hello their!\0\0\0\0\0\0\0\0x");
    assert_eq!(fs.metadata(p("/f")).unwrap().len, 21);
    fs.write_range(p("/f"), 100, b"").unwrap();
    assert_eq!(fs.metadata(p("/f")).unwrap().len, 21);
    fs.write(p("/empty"), b"").unwrap();
    fs.write_range(p("/empty"), 0, b"now").unwrap();
    assert_eq!(fs.read(p("/empty")).unwrap(), b"now");

    // Across the pieces a backend may store content in.
    let mut model: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs.write(p("/big"), &model).unwrap();
    for (at, len) in [
        (65_500usize, 100usize),
        (131_000, 2_000),
        (0, 1),
        (199_999, 70_000),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8 + b'a').collect();
        fs.write_range(p("/big"), at as u64, &data).unwrap();
        if model.len() < at + len {
            model.resize(at + len, 0);
        }
        model[at..at + len].copy_from_slice(&data);
        assert_eq!(
            fs.read_range(p("/big"), at as u64, len).unwrap(),
            data,
            "read back at {at}"
        );
    }
    assert!(fs.read(p("/big")).unwrap() == model, "the whole file");
    assert_eq!(fs.metadata(p("/big")).unwrap().len, model.len() as u64);

    // Past any file size: refused, never a panic or an abort. Writing
    // nothing anywhere is fine.
    assert!(fs.write_range(p("/f"), u64::MAX - 1, b"ab").is_err());
    fs.write_range(p("/f"), u64::MAX, b"").unwrap();
    assert_eq!(fs.metadata(p("/f")).unwrap().len, 21);

    fs.create_dir(p("/d")).unwrap();
    assert_err(fs.write_range(p("/d"), 0, b"x"), FsErrorKind::IsADirectory);
    assert_err(
        fs.write_range(p("/missing"), 0, b"x"),
        FsErrorKind::NotFound,
    );
    assert_err(fs.write_range(p("/nope/f"), 0, b"x"), FsErrorKind::NotFound);
    assert!(
        !fs.exists(p("/missing")).unwrap(),
        "write_range created a file"
    );
}

/// `write_ranges` writes every range, in order (a later one over an
/// earlier one wins); one that cannot be written leaves the file as it was.
pub fn write_ranges_apply_in_order_or_not_at_all<B: Fs>(fs: &B) {
    fs.write(p("/f"), b"0123456789").unwrap();
    fs.write_ranges(p("/f"), &[(2, b"ab"), (8, b"xyz"), (3, b"B"), (14, b"!")])
        .unwrap();
    assert_eq!(fs.read(p("/f")).unwrap(), b"01aB4567xyz\0\0\0!");
    fs.write_ranges(p("/f"), &[]).unwrap();
    let err = fs.write_ranges(p("/f"), &[(0, b"NOPE"), (u64::MAX - 1, b"ab")]);
    assert!(err.is_err(), "a write past any size was taken");
    assert_eq!(
        fs.read(p("/f")).unwrap(),
        b"01aB4567xyz\0\0\0!",
        "a refused write_ranges changed the file"
    );
    assert_err(
        fs.write_ranges(p("/missing"), &[(0, b"x")]),
        FsErrorKind::NotFound,
    );
}

/// Reading what is not there is `NotFound`, naming the path.
pub fn read_missing_is_not_found<B: Fs>(fs: &B) {
    let err = fs.read(p("/nothing/here.txt")).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::NotFound);
    assert!(err.to_string().contains("/nothing/here.txt"), "{err}");
    assert_err(fs.read(p("/missing")), FsErrorKind::NotFound);
    assert_err(fs.metadata(p("/missing")), FsErrorKind::NotFound);
    assert_err(fs.read_dir(p("/missing")).map(drop), FsErrorKind::NotFound);
    assert_err(fs.open_read(p("/missing")).map(drop), FsErrorKind::NotFound);
}

/// Directories cannot be read or written as files, files cannot be listed.
pub fn directories_and_files_are_not_confused<B: Fs>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/f"), b"x").unwrap();
    assert_err(fs.read(p("/d")), FsErrorKind::IsADirectory);
    assert_err(fs.write(p("/d"), b"x"), FsErrorKind::IsADirectory);
    assert_err(fs.append(p("/d"), b"x"), FsErrorKind::IsADirectory);
    assert_err(fs.truncate(p("/d"), 0), FsErrorKind::IsADirectory);
    assert_err(fs.open_write(p("/d")).map(drop), FsErrorKind::IsADirectory);
    assert_err(fs.read_dir(p("/f")).map(drop), FsErrorKind::NotADirectory);
    assert!(fs.metadata(p("/d")).unwrap().is_dir());
}

/// Creating under a missing directory is `NotFound`; under a file,
/// `NotADirectory`.
pub fn missing_or_file_parents_are_refused<B: Fs>(fs: &B) {
    assert_err(fs.write(p("/no/such/dir/f"), b"x"), FsErrorKind::NotFound);
    assert_err(fs.create_dir(p("/no/such")), FsErrorKind::NotFound);
    fs.write(p("/file"), b"x").unwrap();
    assert_err(fs.write(p("/file/child"), b"x"), FsErrorKind::NotADirectory);
    assert_err(fs.read(p("/file/child")), FsErrorKind::NotADirectory);
    assert_err(fs.create_dir(p("/file/child")), FsErrorKind::NotADirectory);
    assert_eq!(fs.read(p("/file")).unwrap(), b"x");
}

/// `read_range` reads a window and stops at the end of the file.
pub fn read_range_reads_a_window<B: Fs>(fs: &B) {
    fs.write(p("/r"), b"0123456789").unwrap();
    assert_eq!(fs.read_range(p("/r"), 2, 3).unwrap(), b"234");
    assert_eq!(fs.read_range(p("/r"), 8, 100).unwrap(), b"89");
    assert!(fs.read_range(p("/r"), 10, 5).unwrap().is_empty());
    assert!(fs.read_range(p("/r"), u64::MAX, 5).unwrap().is_empty());
    assert!(fs.read_range(p("/r"), 3, 0).unwrap().is_empty());
}

/// Metadata gives the type, the size, an inode and sane times.
pub fn metadata_describes_the_node<B: Fs>(fs: &B) {
    fs.write(p("/m.txt"), b"12345").unwrap();
    fs.create_dir(p("/md")).unwrap();
    let f = fs.metadata(p("/m.txt")).unwrap();
    assert_eq!(f.file_type, FileType::File);
    assert_eq!(f.len(), 5);
    assert!(f.nlink >= 1);
    assert_ne!(f.inode, 0);
    let d = fs.metadata(p("/md")).unwrap();
    assert_eq!(d.file_type, FileType::Directory);
    assert_ne!(d.inode, f.inode);
    let before = f.modified;
    std::thread::sleep(std::time::Duration::from_millis(5));
    fs.write(p("/m.txt"), b"changed").unwrap();
    assert!(fs.metadata(p("/m.txt")).unwrap().modified >= before);
}

/// `exists` says whether something is there.
pub fn exists_tells_presence<B: Fs>(fs: &B) {
    assert!(!fs.exists(p("/e")).unwrap());
    fs.write(p("/e"), b"").unwrap();
    assert!(fs.exists(p("/e")).unwrap());
    assert!(!fs.exists(p("/e/under-a-file")).unwrap());
    assert!(fs.exists(p("/")).unwrap());
}

/// `create_dir` needs the parent and refuses what exists.
pub fn create_dir_rules<B: Fs>(fs: &B) {
    fs.create_dir(p("/a")).unwrap();
    assert_err(fs.create_dir(p("/a")), FsErrorKind::AlreadyExists);
    fs.write(p("/file"), b"").unwrap();
    assert_err(fs.create_dir(p("/file")), FsErrorKind::AlreadyExists);
    fs.create_dir(p("/a/b")).unwrap();
    assert!(fs.metadata(p("/a/b")).unwrap().is_dir());
}

/// `create_dir_all` builds every missing level and is idempotent.
pub fn create_dir_all_builds_deep_trees<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/x/y/z/w")).unwrap();
    fs.create_dir_all(p("/x/y/z/w")).unwrap();
    fs.create_dir_all(p("/x/y")).unwrap();
    assert!(fs.metadata(p("/x/y/z/w")).unwrap().is_dir());
    fs.write(p("/x/file"), b"").unwrap();
    assert_err(fs.create_dir_all(p("/x/file")), FsErrorKind::AlreadyExists);
    assert_err(
        fs.create_dir_all(p("/x/file/sub")),
        FsErrorKind::NotADirectory,
    );
    fs.create_dir_all(p("/")).unwrap();
}

/// `read_dir` lists every entry once, with types and full paths, without
/// `.` and `..`, in no order the caller may rely on.
pub fn read_dir_lists_entries<B: Fs>(fs: &B) {
    fs.create_dir(p("/dir")).unwrap();
    fs.write(p("/dir/b.txt"), b"b").unwrap();
    fs.write(p("/dir/a.txt"), b"a").unwrap();
    fs.create_dir(p("/dir/sub")).unwrap();
    fs.write(p("/dir/sub/deeper"), b"").unwrap();
    let entries = fs.read_dir(p("/dir")).unwrap().collect_entries().unwrap();
    assert_eq!(entries.len(), 3);
    let set: BTreeSet<(OsString, FileType)> = entries
        .iter()
        .map(|e| (e.name.clone(), e.file_type))
        .collect();
    assert_eq!(
        set,
        BTreeSet::from([
            ("a.txt".into(), FileType::File),
            ("b.txt".into(), FileType::File),
            ("sub".into(), FileType::Directory),
        ])
    );
    for e in &entries {
        assert_eq!(e.path, p("/dir").join(&e.name));
        assert_ne!(e.inode, 0);
    }
    fs.create_dir(p("/empty")).unwrap();
    assert!(names(fs, "/empty").is_empty());
}

/// `remove_file` removes files only.
pub fn remove_file_rules<B: Fs>(fs: &B) {
    fs.write(p("/gone"), b"x").unwrap();
    fs.remove_file(p("/gone")).unwrap();
    assert!(!fs.exists(p("/gone")).unwrap());
    assert_err(fs.remove_file(p("/gone")), FsErrorKind::NotFound);
    fs.create_dir(p("/d")).unwrap();
    assert_err(fs.remove_file(p("/d")), FsErrorKind::IsADirectory);
    assert!(fs.exists(p("/d")).unwrap());
}

/// `remove_dir` removes empty directories only.
pub fn remove_dir_rules<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/d/sub")).unwrap();
    assert_err(fs.remove_dir(p("/d")), FsErrorKind::DirectoryNotEmpty);
    fs.remove_dir(p("/d/sub")).unwrap();
    fs.remove_dir(p("/d")).unwrap();
    assert!(!fs.exists(p("/d")).unwrap());
    assert_err(fs.remove_dir(p("/d")), FsErrorKind::NotFound);
    fs.write(p("/f"), b"").unwrap();
    assert_err(fs.remove_dir(p("/f")), FsErrorKind::NotADirectory);
}

/// `remove_dir_all` removes a whole tree and nothing beside it.
pub fn remove_dir_all_removes_a_tree<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/t/a/b/c")).unwrap();
    fs.write(p("/t/a/f1"), b"1").unwrap();
    fs.write(p("/t/a/b/c/f2"), b"2").unwrap();
    fs.write(p("/t/top"), b"3").unwrap();
    fs.write(p("/keep"), b"kept").unwrap();
    fs.create_dir(p("/t2")).unwrap();
    fs.remove_dir_all(p("/t")).unwrap();
    assert!(!fs.exists(p("/t")).unwrap());
    assert_eq!(fs.read(p("/keep")).unwrap(), b"kept");
    assert!(fs.exists(p("/t2")).unwrap());
    assert_err(fs.remove_dir_all(p("/t")), FsErrorKind::NotFound);
    assert_err(fs.remove_dir_all(p("/keep")), FsErrorKind::NotADirectory);
}

/// `rename` moves a file to a new name.
pub fn rename_moves_a_file<B: Fs>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/a"), b"content").unwrap();
    fs.rename(p("/a"), p("/d/b")).unwrap();
    assert!(!fs.exists(p("/a")).unwrap());
    assert_eq!(fs.read(p("/d/b")).unwrap(), b"content");
    assert_err(fs.rename(p("/a"), p("/c")), FsErrorKind::NotFound);
    assert_err(fs.rename(p("/d/b"), p("/nowhere/b")), FsErrorKind::NotFound);
    assert_eq!(fs.read(p("/d/b")).unwrap(), b"content");
}

/// `rename` over an existing file replaces it.
pub fn rename_replaces_a_file<B: Fs>(fs: &B) {
    fs.write(p("/new"), b"new").unwrap();
    fs.write(p("/old"), b"old content").unwrap();
    fs.rename(p("/new"), p("/old")).unwrap();
    assert_eq!(fs.read(p("/old")).unwrap(), b"new");
    assert!(!fs.exists(p("/new")).unwrap());
    assert_eq!(names(fs, "/"), vec!["old"]);
}

/// `rename` of a directory takes its whole tree along.
pub fn rename_moves_a_directory_tree<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/src/a/b")).unwrap();
    fs.write(p("/src/a/b/f"), b"deep").unwrap();
    fs.rename(p("/src"), p("/dst")).unwrap();
    assert!(!fs.exists(p("/src")).unwrap());
    assert_eq!(fs.read(p("/dst/a/b/f")).unwrap(), b"deep");
    fs.write(p("/dst/a/new"), b"n").unwrap();
    assert_eq!(names(fs, "/dst/a"), vec!["b", "new"]);
}

/// A directory may replace an empty directory, not a non-empty one.
pub fn rename_directory_over_directories<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/a/inner")).unwrap();
    fs.create_dir(p("/empty")).unwrap();
    fs.create_dir_all(p("/full/x")).unwrap();
    assert_err(
        fs.rename(p("/a"), p("/full")),
        FsErrorKind::DirectoryNotEmpty,
    );
    fs.rename(p("/a"), p("/empty")).unwrap();
    assert!(fs.metadata(p("/empty/inner")).unwrap().is_dir());
    assert!(!fs.exists(p("/a")).unwrap());
}

/// A directory cannot move into its own subtree.
pub fn rename_into_own_subtree_is_refused<B: Fs>(fs: &B) {
    fs.create_dir_all(p("/a/b/c")).unwrap();
    assert_err(fs.rename(p("/a"), p("/a/b/c/a")), FsErrorKind::InvalidPath);
    assert_err(fs.rename(p("/a"), p("/a/x")), FsErrorKind::InvalidPath);
    assert!(fs.metadata(p("/a/b/c")).unwrap().is_dir());
}

/// Renaming a node to its own name changes nothing.
pub fn rename_to_itself_changes_nothing<B: Fs>(fs: &B) {
    fs.write(p("/same"), b"x").unwrap();
    fs.rename(p("/same"), p("/same")).unwrap();
    assert_eq!(fs.read(p("/same")).unwrap(), b"x");
    fs.create_dir(p("/dir")).unwrap();
    fs.rename(p("/dir"), p("/dir")).unwrap();
    assert!(fs.metadata(p("/dir")).unwrap().is_dir());
}

/// A file cannot replace a directory, nor a directory a file.
pub fn rename_type_mismatches_are_refused<B: Fs>(fs: &B) {
    fs.write(p("/f"), b"x").unwrap();
    fs.create_dir(p("/d")).unwrap();
    assert_err(fs.rename(p("/f"), p("/d")), FsErrorKind::IsADirectory);
    assert_err(fs.rename(p("/d"), p("/f")), FsErrorKind::NotADirectory);
    assert_eq!(fs.read(p("/f")).unwrap(), b"x");
    assert!(fs.metadata(p("/d")).unwrap().is_dir());
}

/// `copy` duplicates a file (independent afterwards) and replaces the
/// destination.
pub fn copy_rules<B: Fs>(fs: &B) {
    fs.write(p("/orig"), b"original").unwrap();
    fs.copy(p("/orig"), p("/dup")).unwrap();
    assert_eq!(fs.read(p("/dup")).unwrap(), b"original");
    fs.write(p("/orig"), b"changed").unwrap();
    assert_eq!(fs.read(p("/dup")).unwrap(), b"original");
    fs.write(p("/other"), b"to be replaced").unwrap();
    fs.copy(p("/orig"), p("/other")).unwrap();
    assert_eq!(fs.read(p("/other")).unwrap(), b"changed");
    assert_err(fs.copy(p("/missing"), p("/x")), FsErrorKind::NotFound);
    assert!(!fs.exists(p("/x")).unwrap());
    fs.create_dir(p("/d")).unwrap();
    assert_err(fs.copy(p("/d"), p("/x")), FsErrorKind::IsADirectory);
    assert_err(fs.copy(p("/orig"), p("/d")), FsErrorKind::IsADirectory);
    fs.copy(p("/orig"), p("/orig")).unwrap();
    assert_eq!(fs.read(p("/orig")).unwrap(), b"changed");
}

/// `truncate` cuts a file or extends it with zeros.
pub fn truncate_shrinks_and_extends<B: Fs>(fs: &B) {
    fs.write(p("/t"), b"0123456789").unwrap();
    fs.truncate(p("/t"), 4).unwrap();
    assert_eq!(fs.read(p("/t")).unwrap(), b"0123");
    fs.truncate(p("/t"), 6).unwrap();
    assert_eq!(fs.read(p("/t")).unwrap(), b"0123\0\0");
    assert_eq!(fs.metadata(p("/t")).unwrap().len, 6);
    fs.truncate(p("/t"), 0).unwrap();
    assert!(fs.read(p("/t")).unwrap().is_empty());
    assert_err(fs.truncate(p("/missing"), 0), FsErrorKind::NotFound);
}

/// `open_write` replaces the file whole at its commit, and not before;
/// `open_read` streams it.
pub fn streaming_read_and_write<B: Fs>(fs: &B) {
    fs.write(p("/s"), b"old content that is long").unwrap();
    let mut w = fs.open_write(p("/s")).unwrap();
    w.write_all(b"new ").unwrap();
    assert_eq!(fs.read(p("/s")).unwrap(), b"old content that is long");
    w.write_all(b"content").unwrap();
    w.flush().unwrap();
    assert_eq!(fs.read(p("/s")).unwrap(), b"old content that is long");
    w.commit().unwrap();
    assert_eq!(fs.read(p("/s")).unwrap(), b"new content");
    let mut r = fs.open_read(p("/s")).unwrap();
    let mut first = [0u8; 4];
    r.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"new ");
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "content");
    fs.open_write(p("/created")).unwrap().commit().unwrap();
    assert_eq!(fs.metadata(p("/created")).unwrap().len, 0);
    // Cut off before its commit, a write changes nothing: the old content
    // stays, and a new file is never made.
    let mut cut = fs.open_write(p("/s")).unwrap();
    cut.write_all(&[b'x'; 100_000]).unwrap();
    drop(cut);
    assert_eq!(fs.read(p("/s")).unwrap(), b"new content");
    let mut cut = fs.open_write(p("/never")).unwrap();
    cut.write_all(b"half").unwrap();
    drop(cut);
    assert!(!fs.exists(p("/never")).unwrap());
    // A commit names one file: another made meanwhile at its place is
    // replaced whole.
    let w = fs.open_write(p("/raced")).unwrap();
    fs.write(p("/raced"), b"made meanwhile").unwrap();
    w.commit().unwrap();
    assert_eq!(fs.read(p("/raced")).unwrap(), b"");
    // A stream opened before a replacement reads the old content to its
    // end, never a mix of old and new.
    fs.write(p("/r"), &[1u8; 300_000]).unwrap();
    let mut reader = fs.open_read(p("/r")).unwrap();
    let mut head = vec![0u8; 1000];
    reader.read_exact(&mut head).unwrap();
    let mut w = fs.open_write(p("/r")).unwrap();
    w.write_all(&[2u8; 300_000]).unwrap();
    w.commit().unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 299_000);
    assert!(head.iter().chain(&rest).all(|&b| b == 1), "a mixed read");
    assert_eq!(fs.read(p("/r")).unwrap(), vec![2u8; 300_000]);
    // The same for a replacement in one `write`.
    let mut reader = fs.open_read(p("/r")).unwrap();
    reader.read_exact(&mut head).unwrap();
    fs.write(p("/r"), &[3u8; 300_000]).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(head.iter().chain(&rest).all(|&b| b == 2), "a mixed read");
    assert_eq!(rest.len(), 299_000);
    assert_err(
        fs.open_write(p("/no/parent")).map(drop),
        FsErrorKind::NotFound,
    );
}

/// Names with spaces, unicode and punctuation are ordinary names.
pub fn unusual_names<B: Fs>(fs: &B) {
    let odd = [
        "with space",
        " leading and trailing ",
        "ünïcödé-日本語-🦀",
        "!@#$%^&()_+-=;',.",
        "back\\slash",
        "%2e%2e%2f",
        "...",
        "-dash",
        "new\nline",
    ];
    fs.create_dir(p("/odd")).unwrap();
    for name in odd {
        let path = format!("/odd/{name}");
        fs.write(p(&path), name.as_bytes()).unwrap();
        assert_eq!(fs.read(p(&path)).unwrap(), name.as_bytes(), "{name:?}");
        fs.create_dir(p(&format!("/odd/dir {name}"))).unwrap();
    }
    let listed = names(fs, "/odd");
    assert_eq!(listed.len(), odd.len() * 2);
    for name in odd {
        assert!(listed.iter().any(|n| n == name), "{name:?} missing");
    }
}

/// A name of 255 bytes is fine; 256 bytes is `InvalidPath`.
pub fn name_and_path_length_limits<B: Fs>(fs: &B) {
    let ok = format!("/{}", "n".repeat(255));
    fs.write(p(&ok), b"x").unwrap();
    assert_eq!(fs.read(p(&ok)).unwrap(), b"x");
    let too_long = format!("/{}", "n".repeat(256));
    assert_err(fs.write(p(&too_long), b"x"), FsErrorKind::InvalidPath);
    assert_err(fs.read(p(&too_long)), FsErrorKind::InvalidPath);
    let long_path = format!("/{}", "d/".repeat(2100));
    assert_err(fs.create_dir_all(p(&long_path)), FsErrorKind::InvalidPath);
    assert_err(fs.write(p("/nul\0byte"), b"x"), FsErrorKind::InvalidPath);
    assert!(!fs.exists(p("/nul")).unwrap());
}

/// The root is a directory that cannot be removed or replaced.
pub fn root_directory_rules<B: Fs>(fs: &B) {
    assert!(fs.metadata(p("/")).unwrap().is_dir());
    assert!(names(fs, "/").is_empty());
    assert!(fs.remove_dir(p("/")).is_err());
    assert!(fs.remove_dir_all(p("/")).is_err());
    assert!(fs.remove_file(p("/")).is_err());
    assert!(fs.write(p("/"), b"x").is_err());
    fs.write(p("/f"), b"x").unwrap();
    assert!(fs.rename(p("/f"), p("/")).is_err());
    assert!(fs.create_dir(p("/")).is_err());
    assert!(fs.metadata(p("/")).unwrap().is_dir());
    assert_eq!(fs.read(p("/f")).unwrap(), b"x");
}

/// A tree 64 levels deep and 100 wide works.
pub fn deep_tree<B: Fs>(fs: &B) {
    let mut path = String::new();
    for i in 0..64 {
        path.push_str(&format!("/l{i}"));
    }
    fs.create_dir_all(p(&path)).unwrap();
    fs.write(p(&format!("{path}/leaf")), b"bottom").unwrap();
    assert_eq!(fs.read(p(&format!("{path}/leaf"))).unwrap(), b"bottom");
    fs.create_dir(p("/wide")).unwrap();
    for i in 0..100 {
        fs.write(p(&format!("/wide/f{i:03}")), i.to_string().as_bytes())
            .unwrap();
    }
    assert_eq!(names(fs, "/wide").len(), 100);
    assert_eq!(fs.read(p("/wide/f042")).unwrap(), b"42");
    fs.remove_dir_all(p("/l0")).unwrap();
    assert!(!fs.exists(p("/l0")).unwrap());
}
