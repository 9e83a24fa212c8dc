//! Virtual paths: the one place that validates, normalizes and resolves them.
//!
//! A virtual path is `/`-separated; a name is any bytes but `/` and NUL, at
//! most [`MAX_NAME_LEN`] bytes; a whole path at most [`MAX_PATH_LEN`] bytes.
//! Caller paths may be relative (they are taken from the root), and may hold
//! `.`, `..` and repeated slashes; [`resolve`] turns them into *resolved*
//! paths — absolute, without `.` or `..`, and with no symbolic link in a
//! middle component — which is all a backend ever receives.
//!
//! Resolution follows POSIX: a symlink's target is read from the backend
//! (absolute targets start again at the virtual root, relative ones at the
//! link's directory), `..` applies to the directory reached so far (after the
//! component before it was resolved), `..` at the root stays at the root, and
//! more than [`MAX_SYMLINK_HOPS`] links is [`FsErrorKind::TooManySymlinks`](crate::FsErrorKind::TooManySymlinks).
//! There is no way to name anything outside the backend.
//!
//! A resolution can be watched: [`resolve_visiting`] asks a [`Visit`] about
//! every path a walk leaves with `..` (before looking it up) and every
//! symlink it follows, so a layer such as [`PathFilter`](crate::PathFilter)
//! can refuse a walk that would go through what it hides — whatever
//! exists there.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{FsError, FsResult};

/// The longest name (one path component), in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// The most symbolic links one resolution follows.
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// The error a backend gives when asked to go through a symlink at `path`:
/// backends never follow links; [`FileStorage`](crate::FileStorage)
/// resolves them first.
pub fn crosses_symlink(path: &Path) -> FsError {
    FsError::invalid_path(
        path,
        "a component is a symbolic link; backends never follow links, resolve through FileStorage",
    )
}

fn invalid(path: &Path, reason: &'static str) -> FsError {
    // A NUL is shown escaped so that the message stays printable.
    let bytes = path.as_os_str().as_bytes();
    let shown = if bytes.contains(&0) {
        let mut out = Vec::with_capacity(bytes.len() + 4);
        for &b in bytes {
            if b == 0 {
                out.extend_from_slice(b"\\0");
            } else {
                out.push(b);
            }
        }
        PathBuf::from(OsString::from_vec(out))
    } else {
        path.to_path_buf()
    };
    FsError::invalid_path(shown, reason)
}

/// Checks a caller-supplied path: not empty, no NUL byte, no name over
/// [`MAX_NAME_LEN`] bytes, not over [`MAX_PATH_LEN`] bytes in all.
pub fn validate(path: &Path) -> FsResult<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(invalid(path, "the path is empty"));
    }
    if bytes.contains(&0) {
        return Err(invalid(path, "the path contains a NUL byte"));
    }
    if bytes.len() > MAX_PATH_LEN {
        return Err(invalid(path, "the path is longer than 4096 bytes"));
    }
    if bytes.split(|&b| b == b'/').any(|n| n.len() > MAX_NAME_LEN) {
        return Err(invalid(path, "a name is longer than 255 bytes"));
    }
    Ok(())
}

/// Checks a name for a new directory entry (as given to `FsInode::lookup`):
/// not empty, not `.` or `..`, no `/` or NUL, at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &OsStr) -> FsResult<()> {
    let bytes = name.as_bytes();
    let reason = if bytes.is_empty() {
        "the name is empty"
    } else if bytes == b"." || bytes == b".." {
        "the name is `.` or `..`"
    } else if bytes.contains(&b'/') {
        "the name contains `/`"
    } else if bytes.contains(&0) {
        "the name contains a NUL byte"
    } else if bytes.len() > MAX_NAME_LEN {
        "a name is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(invalid(Path::new(name), reason))
}

/// The names of a *resolved* path, as backends and middleware receive it:
/// it must be absolute and hold no `..`; `.` and repeated slashes are
/// skipped. Anything else is [`FsErrorKind::InvalidPath`](crate::FsErrorKind::InvalidPath).
pub fn resolved_components(path: &Path) -> FsResult<Vec<&OsStr>> {
    validate(path)?;
    let bytes = path.as_os_str().as_bytes();
    if bytes[0] != b'/' {
        return Err(invalid(path, "a resolved path must be absolute"));
    }
    let mut names = Vec::new();
    for name in bytes.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => return Err(invalid(path, "a resolved path must not contain `..`")),
            _ => names.push(OsStr::from_bytes(name)),
        }
    }
    Ok(names)
}

/// Checks that `path` is a resolved path (see [`resolved_components`]).
pub fn check_resolved(path: &Path) -> FsResult<()> {
    resolved_components(path).map(drop)
}

/// A resolved path in its one normal spelling: `/` followed by the names
/// joined with single slashes. Checks it as [`check_resolved`] does, and
/// borrows when it is already normal, so that policies match exactly the
/// path the backend will act on (`//a/./b/` and `/a/b` are one path).
pub fn resolved_normal_form(path: &Path) -> FsResult<std::borrow::Cow<'_, Path>> {
    if is_normal_resolved(path.as_os_str().as_bytes()) {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    let names = resolved_components(path)?;
    let mut out = Vec::with_capacity(path.as_os_str().len());
    for name in &names {
        out.push(b'/');
        out.extend_from_slice(name.as_bytes());
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(std::borrow::Cow::Owned(PathBuf::from(OsString::from_vec(
        out,
    ))))
}

/// One pass over the bytes: already a valid resolved path in normal form?
/// (Every call through a middleware stack asks this, so it must be cheap.)
fn is_normal_resolved(bytes: &[u8]) -> bool {
    if bytes == b"/" {
        return true;
    }
    if bytes.first() != Some(&b'/') || bytes.len() > MAX_PATH_LEN {
        return false;
    }
    // One pass: `start` is where the current name began (just after a `/`).
    let mut start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            0 => return false,
            b'/' => {
                if !normal_name(&bytes[start..i]) {
                    return false;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    normal_name(&bytes[start..])
}

fn normal_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name != b"." && name != b".."
}

/// Lexical normal form of a caller path: absolute, `.` and repeated slashes
/// removed, `..` kept where it stands (it can only be applied by
/// [`resolve`], which knows about symlinks).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = Vec::with_capacity(path.as_os_str().len() + 1);
    for name in path.as_os_str().as_bytes().split(|&b| b == b'/') {
        if name.is_empty() || name == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(name);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Joins a directory path and one name with exactly one `/`.
pub fn join(dir: &Path, name: &OsStr) -> PathBuf {
    let mut out = dir.as_os_str().as_bytes().to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    PathBuf::from(OsString::from_vec(out))
}

/// The parent of a resolved path and its last name; `None` for the root.
pub fn split_parent(path: &Path) -> Option<(PathBuf, &OsStr)> {
    let bytes = path.as_os_str().as_bytes();
    let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
    let cut = trimmed.iter().rposition(|&b| b == b'/')?;
    let name = &trimmed[cut + 1..];
    if name.is_empty() {
        return None;
    }
    let parent = if cut == 0 {
        b"/" as &[u8]
    } else {
        &trimmed[..cut]
    };
    Some((
        PathBuf::from(OsStr::from_bytes(parent)),
        OsStr::from_bytes(name),
    ))
}

/// What one step of a walk found under a name.
#[derive(Debug)]
pub enum Step<N> {
    /// A directory, which the walk may descend into.
    Dir(N),
    /// A file or any other node that is not a directory or symlink.
    Other(N),
    /// A symbolic link with this target.
    Symlink(PathBuf),
}

/// How a backend looks names up during [`resolve`], so that it can resolve a
/// whole path in one pass (one lock, one transaction).
pub trait PathWalker {
    /// The backend's handle for a directory (an inode, a path, a row id).
    type Node: Clone;
    /// The root directory.
    fn root(&mut self) -> FsResult<Self::Node>;
    /// Looks `name` up in the directory `dir`; `None` if there is no entry.
    fn child(&mut self, dir: &Self::Node, name: &OsStr) -> FsResult<Option<Step<Self::Node>>>;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reached {
    Dir,
    NotDir,
    Missing,
}

/// Called with each path a resolution passes through (see
/// [`resolve_visiting`]); an error ends the resolution with it. `None`
/// watches nothing.
pub type Visit<'a> = Option<&'a mut dyn FnMut(&Path) -> FsResult<()>>;

/// Calls `visit` with the path of `names` then `name`.
fn visit_step(visit: &mut Visit<'_>, names: &[Cow<'_, [u8]>], name: &[u8]) -> FsResult<()> {
    let Some(visit) = visit.as_mut() else {
        return Ok(());
    };
    // On the stack for the usual short path.
    let len = names.iter().map(|n| n.len() + 1).sum::<usize>() + name.len() + 1;
    let mut stack = [0u8; 256];
    let mut heap;
    let passed: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap = vec![0u8; len];
        &mut heap
    };
    let mut at = 0;
    for n in names.iter().map(|n| &n[..]).chain(std::iter::once(name)) {
        passed[at] = b'/';
        passed[at + 1..at + 1 + n.len()].copy_from_slice(n);
        at += 1 + n.len();
    }
    visit(Path::new(OsStr::from_bytes(passed)))
}

/// Resolves a caller path to a resolved path, following symlinks through
/// `walker` (see the module docs for the rules).
///
/// `follow_last` says whether a symlink in the last component is followed
/// (as `stat`, `open` do) or named itself (as `lstat`, `unlink` do). A
/// missing last component is fine (it may be about to be created); a missing
/// middle component leaves the rest appended as given, so the operation
/// itself reports `NotFound` — unless a `..` follows it, which is `NotFound`
/// at once, as POSIX has it.
pub fn resolve<W: PathWalker>(path: &Path, follow_last: bool, walker: &mut W) -> FsResult<PathBuf> {
    resolve_visiting(path, follow_last, walker, None)
}

/// [`resolve`], calling `visit` with the paths where a walk does more than
/// descend: a component that a `..` follows (before it is looked up, so a
/// refusal does not depend on whether it exists), every symlink about to be
/// followed (before its target is used), and a non-directory the walk
/// would have to pass through (before that is reported). Components of symlink
/// targets are visited the same way. A plain descent visits nothing: the
/// path it ends at is the one the operation is judged by. A path that is
/// its own resolution (normal form, no `..`, no symlink) visits nothing, so
/// a backend may answer it without a walk.
pub fn resolve_visiting<W: PathWalker>(
    path: &Path,
    follow_last: bool,
    walker: &mut W,
    mut visit: Visit<'_>,
) -> FsResult<PathBuf> {
    validate(path)?;
    // Components still to visit, in reverse so that `pop` takes the next one.
    // Names from the caller's path are borrowed; only symlink targets are
    // copied, so resolving a path without links allocates almost nothing.
    let mut pending: Vec<Cow<'_, [u8]>> = path
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
        .rev()
        .map(Cow::Borrowed)
        .collect();
    let mut names: Vec<Cow<'_, [u8]>> = Vec::with_capacity(pending.len());
    let mut nodes: Vec<W::Node> = vec![walker.root()?];
    let mut reached = Reached::Dir;
    let mut hops = 0u32;

    while let Some(name) = pending.pop() {
        if *name == *b".." {
            match reached {
                Reached::Missing => return Err(FsError::not_found(path)),
                Reached::NotDir => return Err(FsError::not_a_directory(path)),
                Reached::Dir => {
                    if names.pop().is_some() {
                        nodes.pop();
                    }
                }
            }
            continue;
        }
        let is_last = pending.is_empty();
        if pending.last().is_some_and(|next| **next == *b"..") {
            visit_step(&mut visit, &names, &name)?;
        }
        match reached {
            Reached::NotDir => {
                // The walk would pass through a non-directory: that says
                // what it is, so it is visited first.
                if let Some((last, before)) = names.split_last() {
                    visit_step(&mut visit, before, last)?;
                }
                return Err(FsError::not_a_directory(path));
            }
            Reached::Missing => {
                names.push(name);
                continue;
            }
            Reached::Dir => {}
        }
        let dir = nodes.last().expect("the root is never popped");
        match walker.child(dir, OsStr::from_bytes(&name))? {
            None => {
                names.push(name);
                reached = Reached::Missing;
            }
            Some(Step::Dir(node)) => {
                names.push(name);
                nodes.push(node);
                reached = Reached::Dir;
            }
            Some(Step::Other(node)) => {
                names.push(name);
                nodes.push(node);
                reached = Reached::NotDir;
            }
            Some(Step::Symlink(_)) if is_last && !follow_last => {
                names.push(name);
                reached = Reached::NotDir;
            }
            Some(Step::Symlink(target)) => {
                visit_step(&mut visit, &names, &name)?;
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(FsError::too_many_symlinks(path));
                }
                let target = target.as_os_str().as_bytes();
                if target.is_empty() {
                    return Err(FsError::not_found(path));
                }
                if target[0] == b'/' {
                    names.clear();
                    nodes.truncate(1);
                }
                pending.extend(
                    target
                        .split(|&b| b == b'/')
                        .filter(|n| !n.is_empty() && *n != b".")
                        .rev()
                        .map(|n| Cow::Owned(n.to_vec())),
                );
            }
        }
    }

    let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum::<usize>() + 1);
    for name in &names {
        out.push(b'/');
        out.extend_from_slice(name);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if out.len() > MAX_PATH_LEN {
        return Err(invalid(path, "the resolved path is longer than 4096 bytes"));
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A walker over a fixed table of paths, for testing the rules alone.
    struct Table(HashMap<&'static str, Option<&'static str>>);

    impl PathWalker for Table {
        type Node = PathBuf;
        fn root(&mut self) -> FsResult<PathBuf> {
            Ok(PathBuf::from("/"))
        }
        fn child(&mut self, dir: &PathBuf, name: &OsStr) -> FsResult<Option<Step<PathBuf>>> {
            let p = join(dir, name);
            let key = p.to_str().unwrap();
            Ok(match self.0.get(key) {
                None => None,
                Some(None) if key.ends_with(".txt") => Some(Step::Other(p)),
                Some(None) => Some(Step::Dir(p)),
                Some(Some(t)) => Some(Step::Symlink(PathBuf::from(t))),
            })
        }
    }

    fn table() -> Table {
        Table(HashMap::from([
            ("/a", None),
            ("/a/b", None),
            ("/a/f.txt", None),
            ("/abs", Some("/a/b")),
            ("/a/rel", Some("b")),
            ("/a/up", Some("../../../../a")),
            ("/loop1", Some("loop2")),
            ("/loop2", Some("loop1")),
            ("/dangling", Some("/nowhere/x")),
        ]))
    }

    fn r(path: &str, follow: bool) -> FsResult<PathBuf> {
        resolve(Path::new(path), follow, &mut table())
    }

    #[test]
    fn follows_links_and_applies_dotdot_after_them() {
        assert_eq!(r("/abs/..", true).unwrap(), Path::new("/a"));
        assert_eq!(r("/a/rel", true).unwrap(), Path::new("/a/b"));
        assert_eq!(r("/a/rel", false).unwrap(), Path::new("/a/rel"));
        assert_eq!(r("a//./b/", true).unwrap(), Path::new("/a/b"));
        assert_eq!(r("/a/up/b", true).unwrap(), Path::new("/a/b"));
        assert_eq!(r("/../../..", true).unwrap(), Path::new("/"));
        assert_eq!(r("/dangling", true).unwrap(), Path::new("/nowhere/x"));
        assert_eq!(r("/dangling", false).unwrap(), Path::new("/dangling"));
    }

    #[test]
    fn errors_name_the_callers_path() {
        let e = r("/loop1", true).unwrap_err();
        assert_eq!(e.kind(), crate::FsErrorKind::TooManySymlinks);
        assert_eq!(e.path(), Path::new("/loop1"));
        assert_eq!(
            r("/a/f.txt/x", true).unwrap_err().kind(),
            crate::FsErrorKind::NotADirectory
        );
        assert_eq!(
            r("/missing/../a", true).unwrap_err().kind(),
            crate::FsErrorKind::NotFound
        );
        assert_eq!(
            r("/missing/deeper", true).unwrap(),
            Path::new("/missing/deeper")
        );
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        for bad in ["", "/a\0b"] {
            assert_eq!(
                r(bad, true).unwrap_err().kind(),
                crate::FsErrorKind::InvalidPath
            );
        }
        let long_name = format!("/{}", "x".repeat(256));
        assert_eq!(
            r(&long_name, true).unwrap_err().kind(),
            crate::FsErrorKind::InvalidPath
        );
        let long_path = "/a".repeat(2049);
        assert_eq!(
            r(&long_path, true).unwrap_err().kind(),
            crate::FsErrorKind::InvalidPath
        );
        assert!(r(&format!("/{}", "x".repeat(255)), true).is_ok());
    }

    #[test]
    fn resolved_components_refuse_dotdot_and_relative_paths() {
        assert!(resolved_components(Path::new("/a/../b")).is_err());
        assert!(resolved_components(Path::new("a/b")).is_err());
        assert_eq!(
            resolved_components(Path::new("//a/./b")).unwrap(),
            vec![OsStr::new("a"), OsStr::new("b")]
        );
    }

    #[test]
    fn resolved_normal_form_has_one_spelling() {
        for (given, normal) in [
            ("/a/b", "/a/b"),
            ("//a//b/", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/", "/"),
            ("//", "/"),
            ("/./.", "/"),
        ] {
            assert_eq!(
                resolved_normal_form(Path::new(given)).unwrap(),
                Path::new(normal),
                "{given}"
            );
        }
        assert!(matches!(
            resolved_normal_form(Path::new("/a/b")).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(resolved_normal_form(Path::new("/a/../b")).is_err());
        assert!(resolved_normal_form(Path::new("a/b")).is_err());
    }

    #[test]
    fn split_parent_and_normalize() {
        assert_eq!(
            split_parent(Path::new("/a/b")),
            Some((PathBuf::from("/a"), OsStr::new("b")))
        );
        assert_eq!(
            split_parent(Path::new("/a")),
            Some((PathBuf::from("/"), OsStr::new("a")))
        );
        assert_eq!(split_parent(Path::new("/")), None);
        assert_eq!(normalize(Path::new("a//./b/../c/")), Path::new("/a/b/../c"));
    }
}
