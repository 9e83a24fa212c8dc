//! A workspace's tree copied from one backend to another (folders, files
//! streamed a buffer at a time, symlinks, hard links, modes and times),
//! and described for comparison: every path with its kind, mode, size,
//! link count and, for a file, the SHA-256 of its content.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyfs::{FsError, FsFull, FsResult, Metadata};

/// How much of a file is held in memory at once while it is copied or
/// digested.
const BUFFER: usize = 1 << 20;

/// How often (in files) a copy reports its progress...
const REPORT_EVERY: u64 = 250;

/// ...or in bytes, for a workspace of large files.
const REPORT_BYTES: u64 = 64 << 20;

/// What a workspace holds, as a copy or a check counted it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Regular files (each hard link once per name).
    pub files: u64,
    /// Folders, the root excepted.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content (a hard-linked file once per name).
    pub bytes: u64,
}

/// One path of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        len: u64,
        links: u64,
        sha256: Vec<u8>,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every path below `/` (and `/` itself), in order.
pub(super) type Description = BTreeMap<PathBuf, Node>;

/// Calls `visit` with every path of `fs` (the root first, then each
/// folder's entries by name, depth first) and its metadata, not following
/// symlinks.
fn walk<F: FsFull + ?Sized>(
    fs: &F,
    mut visit: impl FnMut(&Path, &Metadata) -> FsResult<()>,
) -> FsResult<()> {
    let root = Path::new("/");
    visit(root, &fs.symlink_metadata(root)?)?;
    let mut folders = vec![root.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let mut entries = fs
            .read_dir(&dir)?
            .map(|e| e.map(|e| e.path))
            .collect::<FsResult<Vec<_>>>()?;
        entries.sort();
        // Pushed in reverse so that the first name is visited first.
        let mut below = Vec::new();
        for path in entries {
            let meta = fs.symlink_metadata(&path)?;
            visit(&path, &meta)?;
            if meta.is_dir() {
                below.push(path);
            }
        }
        folders.extend(below.into_iter().rev());
    }
    Ok(())
}

/// An I/O error while streaming `path`.
fn io_error(path: &Path, what: &'static str, e: &std::io::Error) -> FsError {
    FsError::backend(path, what, e.to_string())
}

/// The SHA-256 of a file's content, read a buffer at a time.
fn digest<F: FsFull + ?Sized>(fs: &F, path: &Path) -> FsResult<Vec<u8>> {
    let mut reader = fs.open_read(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| io_error(path, "read", &e))?;
        if n == 0 {
            return Ok(ctx.finish().as_ref().to_vec());
        }
        ctx.update(&buf[..n]);
    }
}

/// Every path of `fs` with what is compared of it, and the counts.
pub(super) fn describe<F: FsFull + ?Sized>(fs: &F) -> FsResult<(Description, Counts)> {
    let mut nodes = Description::new();
    let mut counts = Counts::default();
    walk(fs, |path, meta| {
        let mode = meta.permissions.mode();
        let node = if meta.is_dir() {
            if path != Path::new("/") {
                counts.dirs += 1;
            }
            Node::Dir { mode }
        } else if meta.is_symlink() {
            counts.symlinks += 1;
            Node::Symlink {
                target: fs.read_link(path)?,
            }
        } else {
            counts.files += 1;
            counts.bytes += meta.len;
            Node::File {
                mode,
                len: meta.len,
                links: meta.nlink,
                sha256: digest(fs, path)?,
            }
        };
        nodes.insert(path.to_path_buf(), node);
        Ok(())
    })?;
    Ok((nodes, counts))
}

/// Streams a file's content from `src` to `dst` (replacing it there in one
/// step); the bytes copied.
fn copy_file<S, D>(src: &S, dst: &D, path: &Path) -> FsResult<u64>
where
    S: FsFull + ?Sized,
    D: FsFull + ?Sized,
{
    let mut reader = src.open_read(path)?;
    let mut writer = dst.open_write(path)?;
    let mut buf = vec![0u8; BUFFER];
    let mut copied = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| io_error(path, "read", &e))?;
        if n == 0 {
            break;
        }
        writer
            .write_all(&buf[..n])
            .map_err(|e| io_error(path, "write", &e))?;
        copied += n as u64;
    }
    writer.commit()?;
    Ok(copied)
}

/// Copies the whole tree of `src` into `dst` (which is empty): folders,
/// files, symlinks, hard links (a file seen again under another name is
/// linked to the first), modes, and access and modification times (a
/// folder's after everything in it is made). `progress` hears the files
/// and bytes copied so far, every few hundred files or tens of MiB, and
/// at the end.
pub(super) fn copy_tree<S, D>(
    src: &S,
    dst: &D,
    progress: &mut dyn FnMut(Counts),
) -> FsResult<Counts>
where
    S: FsFull + ?Sized,
    D: FsFull + ?Sized,
{
    let mut counts = Counts::default();
    let mut linked: HashMap<u64, PathBuf> = HashMap::new();
    let mut folders: Vec<(PathBuf, Metadata)> = Vec::new();
    let mut reported = 0u64;
    walk(src, |path, meta| {
        if meta.is_dir() {
            if path != Path::new("/") {
                dst.create_dir(path)?;
                counts.dirs += 1;
            }
            folders.push((path.to_path_buf(), meta.clone()));
            return Ok(());
        }
        if meta.is_symlink() {
            dst.symlink(&src.read_link(path)?, path)?;
            counts.symlinks += 1;
            return Ok(());
        }
        counts.files += 1;
        counts.bytes += meta.len;
        if meta.nlink > 1 {
            if let Some(first) = linked.get(&meta.inode) {
                return dst.hard_link(first, path);
            }
            linked.insert(meta.inode, path.to_path_buf());
        }
        copy_file(src, dst, path)?;
        dst.set_permissions(path, meta.permissions)?;
        dst.set_times(path, Some(meta.accessed), Some(meta.modified))?;
        if counts.files % REPORT_EVERY == 0 || counts.bytes - reported >= REPORT_BYTES {
            reported = counts.bytes;
            progress(counts);
        }
        Ok(())
    })?;
    // Deepest first: making what is inside a folder changes its times.
    for (path, meta) in folders.iter().rev() {
        dst.set_permissions(path, meta.permissions)?;
        dst.set_times(path, Some(meta.accessed), Some(meta.modified))?;
    }
    progress(counts);
    Ok(counts)
}

/// The first difference between two descriptions: the path and what
/// differs there.
pub(super) fn first_difference(
    source: &Description,
    target: &Description,
) -> Option<(PathBuf, String)> {
    for (path, node) in source {
        match target.get(path) {
            None => return Some((path.clone(), "missing in the target".into())),
            Some(other) if other != node => {
                return Some((path.clone(), difference(node, other)));
            }
            Some(_) => {}
        }
    }
    target
        .keys()
        .find(|path| !source.contains_key(*path))
        .map(|path| (path.clone(), "in the target but not in the source".into()))
}

/// What differs between two nodes of one path (never their content).
fn difference(source: &Node, target: &Node) -> String {
    match (source, target) {
        (
            Node::File {
                sha256: a, len: x, ..
            },
            Node::File {
                sha256: b, len: y, ..
            },
        ) if a != b || x != y => {
            format!("content differs ({x} bytes in the source, {y} in the target)")
        }
        (Node::File { mode: a, .. }, Node::File { mode: b, .. })
        | (Node::Dir { mode: a }, Node::Dir { mode: b })
            if a != b =>
        {
            format!("mode differs ({a:o} in the source, {b:o} in the target)")
        }
        (Node::File { links: a, .. }, Node::File { links: b, .. }) if a != b => {
            format!("hard links differ ({a} in the source, {b} in the target)")
        }
        (Node::Symlink { .. }, Node::Symlink { .. }) => "symlink target differs".into(),
        _ => "kind differs".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;
    use anyfs::{FsDir, FsLink, FsPermissions, FsWrite, MemoryBackend, Permissions};
    use anyfs_sqlite::SqliteBackend;

    #[test]
    fn a_tree_is_copied_whole_and_a_changed_file_is_named() {
        let src = SqliteBackend::open_in_memory().unwrap();
        src.create_dir_all(Path::new("/a/b/c")).unwrap();
        src.write(Path::new("/a/b/c/deep.txt"), b"deep").unwrap();
        let big: Vec<u8> = (0..(3 * BUFFER + 5)).map(|i| (i % 251) as u8).collect();
        src.write(Path::new("/a/big.bin"), &big).unwrap();
        src.set_permissions(Path::new("/a/big.bin"), Permissions::from_mode(0o600))
            .unwrap();
        src.set_permissions(Path::new("/a/b"), Permissions::from_mode(0o700))
            .unwrap();
        src.symlink(Path::new("b/c/deep.txt"), Path::new("/a/link"))
            .unwrap();
        src.hard_link(Path::new("/a/big.bin"), Path::new("/a/also-big.bin"))
            .unwrap();

        let dst = MemoryBackend::new();
        let mut reports = 0;
        let copied = copy_tree(&src, &dst, &mut |_| reports += 1).unwrap();
        assert!(reports >= 1);
        let (want, counts) = describe(&src).unwrap();
        let (have, _) = describe(&dst).unwrap();
        assert_eq!(copied, counts);
        assert_eq!(
            (counts.files, counts.dirs, counts.symlinks),
            (3, 3, 1),
            "{counts:?}"
        );
        assert_eq!(first_difference(&want, &have), None);
        assert_eq!(
            dst.symlink_metadata(Path::new("/a/also-big.bin"))
                .unwrap()
                .inode,
            dst.symlink_metadata(Path::new("/a/big.bin")).unwrap().inode,
            "the hard link is one file"
        );

        dst.write(Path::new("/a/b/c/deep.txt"), b"DEEP").unwrap();
        let (have, _) = describe(&dst).unwrap();
        let (path, problem) = first_difference(&want, &have).unwrap();
        assert_eq!(path, Path::new("/a/b/c/deep.txt"));
        assert!(problem.contains("content differs"), "{problem}");
    }
}
