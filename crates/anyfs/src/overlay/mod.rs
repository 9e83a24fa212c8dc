//! [`Overlay`]: a read-only base (a host directory, say) under a writable
//! workspace. Reads see the base with the workspace's changes on top;
//! every change goes to the workspace and none to the base, by any
//! operation. Deletions of base paths are remembered as whiteouts.
//!
//! A file of the base is copied up lazily: a change of its attributes, a
//! rename or a link copies nothing but its row; a write into it stores the
//! bytes written and remembers which ranges they are, and the rest is still
//! read from the base. Writing 4 KiB into a 1 GiB base file costs 4 KiB.
//! Nodes copied up keep the inode number they had (the base's, tagged), so
//! a mount sees one node before and after.
//!
//! What the overlay remembers (whiteouts, origins, what the base held where
//! it changed something) is a journal in the workspace itself, under
//! `/.anyfs-overlay`, which the merged view hides and refuses to change.
//!
//! [`Overlay::changes`] lists what differs from the base; [`Overlay::apply`]
//! writes it into a directory (the base, usually), refusing every path
//! that changed there since the overlay first changed it.

mod state;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use state::Stamp;
use state::{Event, State};

use crate::error::{FsError, FsErrorKind, FsResult};
use crate::path as vpath;
use crate::snapshots::{Change, Compare, Diff, TreeSide, apply_changes};
use crate::traits::{
    FileWriter, FsDir, FsFuse, FsInode, FsLink, FsPermissions, FsRead, FsReader, FsStats, FsSync,
    FsWrite, FsWriter,
};
use crate::types::{DirEntry, FileType, Metadata, Permissions, ReadDir, StatFs};

/// Where the overlay keeps its journal, in the workspace.
pub const META_DIR: &str = "/.anyfs-overlay";
const JOURNAL: &str = "/.anyfs-overlay/journal";
/// Set in the inode numbers of base nodes (upper numbers are far below).
const BASE_BIT: u64 = 1 << 62;
/// Journal lines past which it is written afresh at open.
const COMPACT_AFTER: usize = 100_000;

/// A read-only base under a writable workspace; see the [module](self).
///
/// ```
/// use std::path::Path;
/// use anyfs::{FsRead, FsWrite, MemoryBackend, ReadOnly};
/// use anyfs::overlay::Overlay;
///
/// let repo = MemoryBackend::new();
/// repo.write(Path::new("/README.md"), b"# repo")?;
/// let work = MemoryBackend::new();
/// let fs = Overlay::open(ReadOnly::new(repo.clone()), work)?;
/// fs.write(Path::new("/README.md"), b"# changed")?;
/// assert_eq!(fs.read(Path::new("/README.md"))?, b"# changed");
/// assert_eq!(repo.read(Path::new("/README.md"))?, b"# repo");
/// let changes: Vec<_> = fs.changes().collect::<Result<_, _>>()?;
/// assert_eq!(changes[0].path(), Path::new("/README.md"));
/// # Ok::<(), anyfs::FsError>(())
/// ```
pub struct Overlay<B, U> {
    inner: Arc<Inner<B, U>>,
}

impl<B, U> Clone for Overlay<B, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B, U> std::fmt::Debug for Overlay<B, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").finish_non_exhaustive()
    }
}

struct Inner<B, U> {
    base: B,
    upper: U,
    /// Held shared by reads, alone by changes: a read never sees the upper
    /// tree and the state half way through a change.
    state: RwLock<State>,
    /// Base inode numbers (tagged) handed out, and where they were seen.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_inode: HashMap<u64, PathBuf>,
    by_path: BTreeMap<PathBuf, u64>,
}

/// Where a path of the merged view is.
enum Found {
    /// In the workspace: its metadata there (inode as the merged view
    /// reports it).
    Upper(Metadata),
    /// Only in the base.
    Base(Metadata),
    Absent,
}

fn root() -> &'static Path {
    Path::new("/")
}

fn is_meta(path: &Path) -> bool {
    path.starts_with(META_DIR)
}

/// Refuses a path a change may not name: malformed (checked first, so that
/// a path too long fails at once, not one component at a time), or the
/// overlay's own records.
fn refuse_meta(path: &Path) -> FsResult<()> {
    vpath::check_resolved(path)?;
    if is_meta(path) {
        return Err(FsError::access_denied(
            path,
            "the overlay's own records cannot be changed",
        ));
    }
    Ok(())
}

/// The paths from the root's child down to `path` itself.
fn prefixes(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut at = PathBuf::from("/");
    for c in path.components().skip(1) {
        at.push(c);
        out.push(at.clone());
    }
    out
}

fn parent_of(path: &Path) -> FsResult<PathBuf> {
    vpath::split_parent(path)
        .map(|(p, _)| p)
        .ok_or_else(|| FsError::invalid_path(path, "the root cannot be created, removed or moved"))
}

fn absent_as_none<T>(r: FsResult<T>) -> FsResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_absent() => Ok(None),
        Err(e) => Err(e),
    }
}

impl<B, U> Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    /// An overlay of `upper` over `base`, taking up the journal `upper`
    /// holds from earlier sessions.
    pub fn open(base: B, upper: U) -> FsResult<Self> {
        upper.create_dir_all(Path::new(META_DIR))?;
        let mut state = State::default();
        let mut lines = 0;
        if let Some(journal) = absent_as_none(upper.read(Path::new(JOURNAL)))? {
            for line in String::from_utf8_lossy(&journal).lines() {
                // A line cut short by a crash is the last one: dropped.
                if let Some(event) = Event::parse(line) {
                    state.apply(&event);
                    lines += 1;
                }
            }
        }
        if lines > COMPACT_AFTER {
            let mut text = state.lines().join("\n");
            text.push('\n');
            upper.write(Path::new(JOURNAL), text.as_bytes())?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                upper,
                state: RwLock::new(state),
                seen: Mutex::new(Seen::default()),
            }),
        })
    }

    /// The base.
    pub fn base(&self) -> &B {
        &self.inner.base
    }

    /// The workspace the changes go to.
    pub fn upper(&self) -> &U {
        &self.inner.upper
    }

    /// What differs between the base, as it is now, and the merged view:
    /// added, deleted and modified paths, streamed.
    pub fn changes(&self) -> Diff<'_> {
        Diff::new(
            Box::new(Tagged(&self.inner.base)),
            Box::new(self),
            Compare::Stamps,
        )
    }

    /// What the base held at `path` when the overlay first changed it or
    /// something under it (`Some(None)`: nothing), if it changed anything
    /// there: the stamp nearest above or at `path`.
    pub fn stamp(&self, path: &Path) -> Option<Option<Stamp>> {
        let state = self.inner.state.read();
        path.ancestors().find_map(|p| state.stamps.get(p).cloned())
    }

    /// Writes the changes into `target` (usually the base's directory, as a
    /// writable backend), path by path, deletions included. A path whose
    /// current state in `target` differs from what the base held when the
    /// overlay first changed it is a conflict: nothing is written for it
    /// (or below it) and it is returned. What was written counts as the
    /// base from then on.
    pub fn apply<T>(&self, target: &T) -> FsResult<Applied>
    where
        T: FsRead + FsWrite + FsDir + FsLink + FsPermissions,
    {
        let mut conflicts: Vec<PathBuf> = Vec::new();
        let mut to_apply: Vec<Change> = Vec::new();
        for change in self.changes() {
            let change = change?;
            let path = change.path().to_path_buf();
            if conflicts.iter().any(|c| path.starts_with(c)) {
                continue;
            }
            let recorded = self.stamp(&path).unwrap_or(None);
            let stamped_at = {
                let state = self.inner.state.read();
                path.ancestors()
                    .find(|p| state.stamps.contains_key(*p))
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| path.clone())
            };
            let now = absent_as_none(target.metadata(&stamped_at))?.map(|m| Stamp::from(&m));
            if now != recorded {
                conflicts.push(stamped_at);
                continue;
            }
            to_apply.push(change);
        }
        let written = apply_changes(self, to_apply.iter().cloned().map(Ok), target)?;
        // What is in the target now is the base from now on.
        let mut state = self.inner.state.write();
        for change in &to_apply {
            let path = change.path();
            let now = absent_as_none(target.metadata(path))?.map(|m| Stamp::from(&m));
            self.record(&mut state, Event::Stamp(path.to_path_buf(), now))?;
        }
        conflicts.dedup();
        Ok(Applied { written, conflicts })
    }

    /// Appends `event` to the journal and applies it.
    fn record(&self, state: &mut State, event: Event) -> FsResult<()> {
        let mut line = event.line();
        line.push('\n');
        self.inner
            .upper
            .append(Path::new(JOURNAL), line.as_bytes())?;
        state.apply(&event);
        Ok(())
    }

    /// Records what the base holds at `path`, the first time only.
    fn stamp_first(&self, state: &mut State, path: &Path) -> FsResult<()> {
        if state.stamps.contains_key(path) {
            return Ok(());
        }
        let now = absent_as_none(self.inner.base.metadata(path))?.map(|m| Stamp::from(&m));
        self.record(state, Event::FirstStamp(path.to_path_buf(), now))
    }

    /// A base node's metadata with its inode number tagged and remembered.
    fn seen_in_base(&self, path: &Path, mut m: Metadata) -> Metadata {
        m.inode |= BASE_BIT;
        let mut seen = self.inner.seen.lock();
        if let Some(old) = seen.by_path.insert(path.to_path_buf(), m.inode)
            && old != m.inode
        {
            seen.by_inode.remove(&old);
        }
        seen.by_inode.insert(m.inode, path.to_path_buf());
        m
    }

    /// An upper node's metadata as the merged view reports it.
    fn seen_in_upper(&self, state: &State, path: &Path, mut m: Metadata) -> Metadata {
        if let Some(&tagged) = state.identity.get(&m.inode) {
            m.inode = tagged;
            let mut seen = self.inner.seen.lock();
            seen.by_path.insert(path.to_path_buf(), tagged);
            seen.by_inode.insert(tagged, path.to_path_buf());
        }
        m
    }

    /// Whether the base shows `path` through the merged view's layers (no
    /// whiteout at or above it, no opaque workspace directory above it).
    fn base_shows(&self, state: &State, path: &Path) -> FsResult<bool> {
        for p in prefixes(path) {
            if state.whiteouts.contains(&p) {
                return Ok(false);
            }
            if p != path && state.opaque.contains(&p) {
                return Ok(false);
            }
        }
        Ok(absent_as_none(self.inner.base.metadata(path))?.is_some())
    }

    fn locate(&self, state: &State, path: &Path) -> FsResult<Found> {
        vpath::check_resolved(path)?;
        if is_meta(path) {
            return Ok(Found::Absent);
        }
        if path == root() {
            let m = self.inner.upper.metadata(root())?;
            return Ok(Found::Upper(m));
        }
        let chain = prefixes(path);
        let mut base_visible = true;
        for (i, p) in chain.iter().enumerate() {
            match absent_as_none(self.inner.upper.metadata(p))? {
                Some(m) if p == path => {
                    return Ok(Found::Upper(self.seen_in_upper(state, path, m)));
                }
                Some(m) if m.file_type == FileType::Directory => {
                    if state.opaque.contains(p) {
                        base_visible = false;
                    }
                }
                Some(m) if m.file_type == FileType::Symlink => {
                    return Err(vpath::crosses_symlink(path));
                }
                Some(_) => return Err(FsError::not_a_directory(path)),
                None => {
                    if !base_visible || chain[i..].iter().any(|q| state.whiteouts.contains(q)) {
                        return Ok(Found::Absent);
                    }
                    return Ok(match absent_as_none(self.inner.base.metadata(path))? {
                        Some(m) => Found::Base(self.seen_in_base(path, m)),
                        None => Found::Absent,
                    });
                }
            }
        }
        Ok(Found::Absent)
    }

    /// The checks every change makes of the directory a path goes in, in
    /// the order a plain backend makes them: the root cannot be named, the
    /// parent must exist and be a directory.
    fn check_parent(&self, state: &State, path: &Path) -> FsResult<()> {
        let parent = parent_of(path)?;
        match self.locate(state, &parent)? {
            Found::Absent => Err(FsError::not_found(path)),
            Found::Upper(m) | Found::Base(m) => match m.file_type {
                FileType::Directory => Ok(()),
                FileType::Symlink => Err(vpath::crosses_symlink(path)),
                FileType::File => Err(FsError::not_a_directory(path)),
            },
        }
    }

    fn merged(&self, state: &State, path: &Path) -> FsResult<Metadata> {
        match self.locate(state, path)? {
            Found::Upper(m) | Found::Base(m) => Ok(m),
            Found::Absent => Err(FsError::not_found(path)),
        }
    }

    /// Makes sure every directory from the root to `dir` is in the
    /// workspace, copying base directories up (their attributes only).
    fn copy_up_dirs(&self, state: &mut State, dir: &Path) -> FsResult<()> {
        for p in prefixes(dir) {
            match self.locate(state, &p)? {
                Found::Upper(m) if m.file_type == FileType::Directory => {}
                Found::Upper(_) | Found::Base(_) => {
                    if self.merged(state, &p)?.file_type != FileType::Directory {
                        return Err(FsError::not_a_directory(&p));
                    }
                    self.copy_up(state, &p)?;
                }
                Found::Absent => return Err(FsError::not_found(&p)),
            }
        }
        Ok(())
    }

    /// Makes the node at `path` a node of the workspace, copying a base
    /// node up: a directory or symlink as it is, a file as an empty file
    /// of the same size whose bytes still come from the base. Its
    /// workspace metadata.
    fn copy_up(&self, state: &mut State, path: &Path) -> FsResult<Metadata> {
        let base = match self.locate(state, path)? {
            Found::Upper(_) => return self.inner.upper.metadata(path),
            Found::Absent => return Err(FsError::not_found(path)),
            Found::Base(m) => m,
        };
        self.copy_up_dirs(state, &parent_of(path)?)?;
        self.stamp_first(state, path)?;
        let upper = &self.inner.upper;
        match base.file_type {
            FileType::Directory => upper.create_dir(path)?,
            FileType::Symlink => upper.symlink(&self.inner.base.read_link(path)?, path)?,
            FileType::File => {
                upper.write(path, &[])?;
                upper.truncate(path, base.len)?;
            }
        }
        if base.file_type != FileType::Symlink {
            upper.set_permissions(path, base.permissions)?;
        }
        let _ = upper.set_times(path, Some(base.accessed), Some(base.modified));
        let m = upper.metadata(path)?;
        if base.file_type == FileType::File {
            self.record(state, Event::Origin(m.inode, path.to_path_buf()))?;
        }
        self.record(state, Event::Identity(m.inode, base.inode))?;
        Ok(m)
    }

    /// Copies up `path` and, for a directory, everything the merged view
    /// shows below it, so that the workspace holds all of it.
    fn copy_up_tree(&self, state: &mut State, path: &Path) -> FsResult<()> {
        let m = self.copy_up(state, path)?;
        if m.file_type == FileType::Directory {
            for entry in self.list(state, path)? {
                self.copy_up_tree(state, &entry.path)?;
            }
            if !state.opaque.contains(path) {
                self.record(state, Event::Opaque(path.to_path_buf()))?;
            }
        }
        Ok(())
    }

    /// After something was made at `path` in the workspace: a base path
    /// deleted before is no longer, and a directory made there hides what
    /// the base had below it.
    fn made(&self, state: &mut State, path: &Path, is_dir: bool) -> FsResult<()> {
        self.stamp_first(state, path)?;
        if state.whiteouts.contains(path) {
            self.record(state, Event::Unwhiteout(path.to_path_buf()))?;
            if is_dir {
                self.record(state, Event::Opaque(path.to_path_buf()))?;
            }
        }
        Ok(())
    }

    /// After the node at `path` went from the workspace (or was only in
    /// the base): hides the base's, if it shows one.
    fn gone(&self, state: &mut State, path: &Path) -> FsResult<()> {
        self.stamp_first(state, path)?;
        if self.base_shows(state, path)? && !state.whiteouts.contains(path) {
            self.record(state, Event::Whiteout(path.to_path_buf()))?;
        }
        Ok(())
    }

    /// The merged listing of a directory.
    fn list(&self, state: &State, path: &Path) -> FsResult<Vec<DirEntry>> {
        let mut out: BTreeMap<std::ffi::OsString, DirEntry> = BTreeMap::new();
        let merge_base = match self.locate(state, path)? {
            Found::Absent => return Err(FsError::not_found(path)),
            Found::Upper(m) | Found::Base(m) if m.file_type != FileType::Directory => {
                return Err(FsError::not_a_directory(path));
            }
            Found::Upper(_) => {
                for entry in self.inner.upper.read_dir(path)? {
                    let mut entry = entry?;
                    if is_meta(&entry.path) {
                        continue;
                    }
                    if let Some(&tagged) = state.identity.get(&entry.inode) {
                        entry.inode = tagged;
                    }
                    out.insert(entry.name.clone(), entry);
                }
                !state.opaque.contains(path) && self.base_shows(state, path)?
            }
            Found::Base(_) => true,
        };
        if merge_base {
            for entry in self.inner.base.read_dir(path)? {
                let mut entry = entry?;
                if is_meta(&entry.path)
                    || out.contains_key(&entry.name)
                    || state.whiteouts.contains(&entry.path)
                {
                    continue;
                }
                entry.inode |= BASE_BIT;
                out.insert(entry.name.clone(), entry);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Bytes `offset .. offset + len` of the file at `path` (`m` its merged
    /// metadata), stopping at its end.
    fn read_bytes(&self, state: &State, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        match self.locate(state, path)? {
            Found::Absent => Err(FsError::not_found(path)),
            Found::Base(_) => self.inner.base.read_range(path, offset, len),
            Found::Upper(_) => {
                let upper = self.inner.upper.metadata(path)?;
                let mut data = self.inner.upper.read_range(path, offset, len)?;
                let Some(origin) = state.origins.get(&upper.inode) else {
                    return Ok(data);
                };
                let end = offset + data.len() as u64;
                for (start, stop) in origin.written.gaps(offset, end) {
                    let want = (stop - start) as usize;
                    let from_base =
                        absent_as_none(self.inner.base.read_range(&origin.path, start, want))?
                            .unwrap_or_default();
                    let at = (start - offset) as usize;
                    let n = from_base.len().min(want);
                    data[at..at + n].copy_from_slice(&from_base[..n]);
                    // Past the base file's end: zeros (as the upper has).
                    data[at + n..at + want].fill(0);
                }
                Ok(data)
            }
        }
    }

    /// The upper inode of a file the workspace holds, and whether its bytes
    /// partly come from the base.
    fn file_in_upper(&self, state: &mut State, path: &Path) -> FsResult<Metadata> {
        let m = match self.locate(state, path)? {
            Found::Absent => return Err(FsError::not_found(path)),
            Found::Upper(_) => self.inner.upper.metadata(path)?,
            Found::Base(_) => self.copy_up(state, path)?,
        };
        match m.file_type {
            FileType::File => Ok(m),
            FileType::Directory => Err(FsError::is_a_directory(path)),
            FileType::Symlink => Err(vpath::crosses_symlink(path)),
        }
    }

    /// After the whole content of the upper file at `path` was replaced:
    /// it owes the base nothing, and keeps the identity it had (`prior`).
    fn replaced(&self, state: &mut State, path: &Path, prior: Prior) -> FsResult<()> {
        if let Some(mode) = prior.mode {
            self.inner.upper.set_permissions(path, mode)?;
        }
        let now = self.inner.upper.metadata(path)?.inode;
        if let Some(old) = prior.upper
            && state.origins.contains_key(&old)
        {
            self.record(state, Event::Full(old))?;
        }
        if state.origins.contains_key(&now) {
            self.record(state, Event::Full(now))?;
        }
        let tagged = prior.tagged.or_else(|| {
            prior
                .upper
                .and_then(|old| state.identity.get(&old).copied())
        });
        if let Some(tagged) = tagged
            && state.identity.get(&now) != Some(&tagged)
        {
            self.record(state, Event::Identity(now, tagged))?;
        }
        self.made(state, path, false)
    }

    /// What the file at `path` was before a whole write (with its folders
    /// made): nothing of a base file is copied, since all of it is replaced.
    fn before_write(&self, state: &mut State, path: &Path) -> FsResult<Prior> {
        refuse_meta(path)?;
        self.check_parent(state, path)?;
        self.copy_up_dirs(state, &parent_of(path)?)?;
        match self.locate(state, path)? {
            Found::Upper(m) | Found::Base(m) if m.file_type == FileType::Directory => {
                Err(FsError::is_a_directory(path))
            }
            Found::Upper(_) => Ok(Prior {
                upper: Some(self.inner.upper.metadata(path)?.inode),
                ..Prior::default()
            }),
            Found::Base(m) if m.file_type == FileType::Symlink => Err(vpath::crosses_symlink(path)),
            Found::Base(m) => {
                self.stamp_first(state, path)?;
                Ok(Prior {
                    upper: None,
                    tagged: Some(m.inode),
                    mode: Some(m.permissions),
                })
            }
            Found::Absent => Ok(Prior::default()),
        }
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write()
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read()
    }
}

/// A file before a whole write: its workspace inode, or the (tagged)
/// inode of the base file it replaces.
#[derive(Clone, Copy, Debug, Default)]
struct Prior {
    upper: Option<u64>,
    tagged: Option<u64>,
    /// The base file's permissions, which the new content keeps.
    mode: Option<Permissions>,
}

/// What [`Overlay::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Paths written (or removed) in the target.
    pub written: u64,
    /// Paths that changed in the target since the overlay first changed
    /// them: nothing was written for them or below them.
    pub conflicts: Vec<PathBuf>,
}

/// The base as a diff sees it: inode numbers tagged as the merged view
/// reports them, so a node the overlay never touched is the same node on
/// both sides.
struct Tagged<'a, B>(&'a B);

impl<B: FsRead + FsDir + FsLink> TreeSide for Tagged<'_, B> {
    fn list(&self, dir: &Path) -> FsResult<Vec<DirEntry>> {
        let mut entries: Vec<DirEntry> = self.0.read_dir(dir)?.collect::<FsResult<_>>()?;
        for e in &mut entries {
            e.inode |= BASE_BIT;
        }
        Ok(entries)
    }
    fn stat(&self, path: &Path) -> FsResult<Metadata> {
        let mut m = self.0.metadata(path)?;
        m.inode |= BASE_BIT;
        Ok(m)
    }
    fn bytes(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        self.0.read_range(path, offset, len)
    }
    fn target(&self, path: &Path) -> FsResult<PathBuf> {
        self.0.read_link(path)
    }
}

/// A streamed read of a file the overlay merges, a piece at a time.
struct MergedReader<B, U> {
    fs: Overlay<B, U>,
    path: PathBuf,
    at: u64,
}

impl<B, U> Read for MergedReader<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(1 << 20);
        let data = self
            .fs
            .read_range(&self.path, self.at, want)
            .map_err(std::io::Error::other)?;
        buf[..data.len()].copy_from_slice(&data);
        self.at += data.len() as u64;
        Ok(data.len())
    }
}

/// A streamed replacement of a file through the overlay: written to the
/// workspace, and recorded once committed.
struct OverlayWriter<B, U> {
    fs: Overlay<B, U>,
    path: PathBuf,
    inner: Option<FsWriter>,
}

impl<B, U> Write for OverlayWriter<B, U> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Some(w) => w.write(buf),
            None => Err(std::io::Error::other("the writer is closed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<B, U> FileWriter for OverlayWriter<B, U>
where
    B: FsRead + FsDir + FsLink + Send + Sync + 'static,
    U: FsFuse + 'static,
{
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let fs = self.fs.clone();
        let mut state = fs.write_lock();
        let old = fs.before_write(&mut state, &self.path)?;
        self.inner
            .take()
            .ok_or_else(|| FsError::backend(&self.path, "commit", "already committed"))?
            .commit()?;
        fs.replaced(&mut state, &self.path, old)
    }
}

impl<B, U> FsRead for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn read(&self, path: &Path) -> FsResult<Vec<u8>> {
        let state = self.read_lock();
        let m = self.merged(&state, path)?;
        if m.file_type == FileType::Directory {
            return Err(FsError::is_a_directory(path));
        }
        self.read_bytes(&state, path, 0, m.len as usize)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let state = self.read_lock();
        self.read_bytes(&state, path, offset, len)
    }

    fn metadata(&self, path: &Path) -> FsResult<Metadata> {
        let state = self.read_lock();
        self.merged(&state, path)
    }

    fn resolve_with(
        &self,
        path: &Path,
        follow_last: bool,
        visit: vpath::Visit<'_>,
    ) -> FsResult<PathBuf> {
        crate::traits::resolve_with_links(self, path, follow_last, visit)
    }

    fn open_read(&self, path: &Path) -> FsResult<FsReader> {
        let state = self.read_lock();
        match self.locate(&state, path)? {
            Found::Absent => Err(FsError::not_found(path)),
            Found::Base(_) => self.inner.base.open_read(path),
            Found::Upper(_) => {
                let upper = self.inner.upper.metadata(path)?;
                if state.origins.contains_key(&upper.inode) {
                    Ok(Box::new(MergedReader {
                        fs: self.clone(),
                        path: path.to_path_buf(),
                        at: 0,
                    }))
                } else {
                    self.inner.upper.open_read(path)
                }
            }
        }
    }
}

impl<B, U> FsWrite for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        let mut state = self.write_lock();
        let old = self.before_write(&mut state, path)?;
        self.inner.upper.write(path, data)?;
        self.replaced(&mut state, path, old)
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.check_parent(&state, path)?;
        if matches!(self.locate(&state, path)?, Found::Absent) {
            // Whatever the workspace does with an append to nothing.
            self.copy_up_dirs(&mut state, &parent_of(path)?)?;
            self.inner.upper.append(path, data)?;
            return self.made(&mut state, path, false);
        }
        let m = self.file_in_upper(&mut state, path)?;
        self.inner.upper.append(path, data)?;
        if state.origins.contains_key(&m.inode) {
            self.record(
                &mut state,
                Event::Wrote(m.inode, m.len, m.len + data.len() as u64),
            )?;
        }
        Ok(())
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        let m = self.file_in_upper(&mut state, path)?;
        self.inner.upper.write_ranges(path, ranges)?;
        if state.origins.contains_key(&m.inode) {
            // A gap written past the end is zeros of the workspace's own.
            let end = ranges
                .iter()
                .map(|(o, d)| o + d.len() as u64)
                .max()
                .unwrap_or(0);
            if end > m.len {
                self.record(&mut state, Event::Wrote(m.inode, m.len, end))?;
            }
            for (offset, data) in ranges {
                let stop = offset + data.len() as u64;
                self.record(&mut state, Event::Wrote(m.inode, *offset, stop))?;
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.check_parent(&state, path)?;
        match self.locate(&state, path)? {
            Found::Absent => return Err(FsError::not_found(path)),
            Found::Upper(m) | Found::Base(m) if m.file_type == FileType::Directory => {
                return Err(FsError::is_a_directory(path));
            }
            Found::Upper(_) => self.inner.upper.remove_file(path)?,
            Found::Base(_) => {}
        }
        self.gone(&mut state, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()> {
        refuse_meta(from)?;
        refuse_meta(to)?;
        let mut state = self.write_lock();
        self.check_parent(&state, from)?;
        let source = self.merged(&state, from)?;
        self.check_parent(&state, to)?;
        if from == to {
            return Ok(());
        }
        let is_dir = source.file_type == FileType::Directory;
        if is_dir && to.starts_with(from) {
            return Err(FsError::invalid_path(
                to,
                "a directory cannot move into itself",
            ));
        }
        let target = match self.locate(&state, to)? {
            Found::Absent => None,
            Found::Upper(m) | Found::Base(m) => Some(m),
        };
        if let Some(t) = &target {
            // Two names of one node: nothing to do.
            if t.inode == source.inode && t.file_type == source.file_type {
                return Ok(());
            }
            match (is_dir, t.file_type == FileType::Directory) {
                (true, false) => return Err(FsError::not_a_directory(to)),
                (false, true) => return Err(FsError::is_a_directory(to)),
                (true, true) if !self.list(&state, to)?.is_empty() => {
                    return Err(FsError::directory_not_empty(to));
                }
                _ => {}
            }
        }
        // Everything that moves is the workspace's first.
        self.copy_up_tree(&mut state, from)?;
        self.copy_up_dirs(&mut state, &parent_of(to)?)?;
        self.stamp_first(&mut state, to)?;
        if let Some(t) = target
            && t.file_type == FileType::Directory
            && absent_as_none(self.inner.upper.metadata(to))?.is_none()
        {
            // An empty base directory replaced: nothing of it may show.
            self.inner.upper.create_dir(to)?;
        }
        self.inner.upper.rename(from, to)?;
        self.record(
            &mut state,
            Event::Move(from.to_path_buf(), to.to_path_buf()),
        )?;
        if state.whiteouts.contains(to) {
            self.record(&mut state, Event::Unwhiteout(to.to_path_buf()))?;
        }
        if is_dir && !state.opaque.contains(to) {
            self.record(&mut state, Event::Opaque(to.to_path_buf()))?;
        }
        self.gone(&mut state, from)?;
        // What the mount knows by path follows the move.
        let mut seen = self.inner.seen.lock();
        let moved: Vec<(PathBuf, u64)> = seen
            .by_path
            .range(from.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, inode) in moved {
            seen.by_path.remove(&p);
            let rest = p.strip_prefix(from).unwrap_or(Path::new(""));
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            seen.by_inode.insert(inode, new.clone());
            seen.by_path.insert(new, inode);
        }
        Ok(())
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()> {
        refuse_meta(to)?;
        let mut reader = self.open_read(from)?;
        let mut out = self.open_write(to)?;
        std::io::copy(&mut reader, &mut out).map_err(|e| FsError::from_io(from, "copy", e))?;
        out.commit()?;
        let mode = self.metadata(from)?.permissions;
        self.set_permissions(to, mode)
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        let m = self.file_in_upper(&mut state, path)?;
        self.inner.upper.truncate(path, size)?;
        if state.origins.contains_key(&m.inode) {
            if size < m.len {
                self.record(&mut state, Event::Cut(m.inode, size))?;
            } else if size > m.len {
                // Grown: zeros of the workspace's own, never the base's.
                self.record(&mut state, Event::Wrote(m.inode, m.len, size))?;
            }
        }
        Ok(())
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter> {
        refuse_meta(path)?;
        {
            let mut state = self.write_lock();
            self.before_write(&mut state, path)?;
        }
        Ok(Box::new(OverlayWriter {
            fs: self.clone(),
            path: path.to_path_buf(),
            inner: Some(self.inner.upper.open_write(path)?),
        }))
    }
}

impl<B, U> FsDir for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let state = self.read_lock();
        let entries = self.list(&state, path)?;
        let mut seen = self.inner.seen.lock();
        for e in &entries {
            if e.inode & BASE_BIT != 0 {
                seen.by_inode.insert(e.inode, e.path.clone());
                seen.by_path.insert(e.path.clone(), e.inode);
            }
        }
        Ok(ReadDir::from_entries(entries))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.check_parent(&state, path)?;
        if !matches!(self.locate(&state, path)?, Found::Absent) {
            return Err(FsError::already_exists(path));
        }
        self.copy_up_dirs(&mut state, &parent_of(path)?)?;
        self.inner.upper.create_dir(path)?;
        self.made(&mut state, path, true)
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        refuse_meta(path)?;
        for p in prefixes(path) {
            match self.metadata(&p) {
                Ok(m) if m.file_type == FileType::Directory => {}
                Ok(_) if p == path => return Err(FsError::already_exists(path)),
                Ok(m) if m.file_type == FileType::Symlink => {
                    return Err(vpath::crosses_symlink(path));
                }
                Ok(_) => return Err(FsError::not_a_directory(path)),
                Err(e) if e.is_absent() => match self.create_dir(&p) {
                    // Made meanwhile by another caller: as good.
                    Err(e)
                        if e.kind() == FsErrorKind::AlreadyExists
                            && self.metadata(&p)?.file_type == FileType::Directory => {}
                    other => other?,
                },
                Err(e) => return Err(e.with_path(path)),
            }
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.check_parent(&state, path)?;
        match self.locate(&state, path)? {
            Found::Absent => return Err(FsError::not_found(path)),
            Found::Upper(m) | Found::Base(m) if m.file_type != FileType::Directory => {
                return Err(FsError::not_a_directory(path));
            }
            _ => {}
        }
        if path == root() {
            return Err(FsError::invalid_path(path, "the root cannot be removed"));
        }
        if !self.list(&state, path)?.is_empty() {
            return Err(FsError::directory_not_empty(path));
        }
        if absent_as_none(self.inner.upper.metadata(path))?.is_some() {
            self.inner.upper.remove_dir(path)?;
        }
        if state.opaque.contains(path) {
            self.record(&mut state, Event::Unopaque(path.to_path_buf()))?;
        }
        self.gone(&mut state, path)
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.check_parent(&state, path)?;
        match self.locate(&state, path)? {
            Found::Absent => return Err(FsError::not_found(path)),
            // A link goes itself, never what it points to.
            Found::Upper(m) | Found::Base(m) if m.file_type == FileType::Symlink => {
                drop(state);
                return self.remove_file(path);
            }
            Found::Upper(m) | Found::Base(m) if m.file_type != FileType::Directory => {
                return Err(FsError::not_a_directory(path));
            }
            _ => {}
        }
        if path == root() {
            return Err(FsError::invalid_path(path, "the root cannot be removed"));
        }
        if absent_as_none(self.inner.upper.metadata(path))?.is_some() {
            self.inner.upper.remove_dir_all(path)?;
        }
        self.record(&mut state, Event::Forget(path.to_path_buf()))?;
        if state.opaque.contains(path) {
            self.record(&mut state, Event::Unopaque(path.to_path_buf()))?;
        }
        self.gone(&mut state, path)
    }
}

impl<B, U> FsLink for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        refuse_meta(link)?;
        let mut state = self.write_lock();
        self.check_parent(&state, link)?;
        if !matches!(self.locate(&state, link)?, Found::Absent) {
            return Err(FsError::already_exists(link));
        }
        self.copy_up_dirs(&mut state, &parent_of(link)?)?;
        self.inner.upper.symlink(target, link)?;
        self.made(&mut state, link, false)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        refuse_meta(original)?;
        refuse_meta(link)?;
        let mut state = self.write_lock();
        self.check_parent(&state, original)?;
        let source = self.merged(&state, original)?;
        if source.file_type == FileType::Directory {
            return Err(FsError::permission_denied(
                original,
                "hard-link a directory",
            ));
        }
        self.check_parent(&state, link)?;
        if !matches!(self.locate(&state, link)?, Found::Absent) {
            return Err(FsError::already_exists(link));
        }
        if source.file_type == FileType::Symlink {
            self.copy_up(&mut state, original)?;
        } else {
            self.file_in_upper(&mut state, original)?;
        }
        self.copy_up_dirs(&mut state, &parent_of(link)?)?;
        self.inner.upper.hard_link(original, link)?;
        self.made(&mut state, link, false)
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        let state = self.read_lock();
        match self.locate(&state, path)? {
            Found::Absent => Err(FsError::not_found(path)),
            Found::Upper(_) => self.inner.upper.read_link(path),
            Found::Base(_) => self.inner.base.read_link(path),
        }
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}

impl<B, U> FsPermissions for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn set_permissions(&self, path: &Path, perm: Permissions) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.copy_up(&mut state, path)?;
        self.inner.upper.set_permissions(path, perm)
    }

    fn set_times(
        &self,
        path: &Path,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.copy_up(&mut state, path)?;
        self.inner.upper.set_times(path, accessed, modified)
    }

    fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        refuse_meta(path)?;
        let mut state = self.write_lock();
        self.copy_up(&mut state, path)?;
        self.inner.upper.set_owner(path, uid, gid)
    }
}

impl<B, U> FsSync for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn sync(&self) -> FsResult<()> {
        self.inner.upper.sync()
    }

    fn fsync(&self, path: &Path) -> FsResult<()> {
        let in_upper = {
            let state = self.read_lock();
            matches!(self.locate(&state, path)?, Found::Upper(_))
        };
        if in_upper {
            self.inner.upper.fsync(path)
        } else {
            // A base file the overlay never changed: nothing of it to
            // flush.
            self.metadata(path).map(drop)
        }
    }
}

impl<B, U> FsStats for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn statfs(&self) -> FsResult<StatFs> {
        self.inner.upper.statfs()
    }
}

impl<B, U> FsInode for Overlay<B, U>
where
    B: FsRead + FsDir + FsLink + 'static,
    U: FsFuse + 'static,
{
    fn path_to_inode(&self, path: &Path) -> FsResult<u64> {
        Ok(self.metadata(path)?.inode)
    }

    fn inode_to_path(&self, inode: u64) -> FsResult<PathBuf> {
        let path = if inode & BASE_BIT != 0 {
            self.inner
                .seen
                .lock()
                .by_inode
                .get(&inode)
                .cloned()
                .ok_or_else(|| FsError::inode_not_found(inode))?
        } else {
            self.inner.upper.inode_to_path(inode)?
        };
        if is_meta(&path) {
            return Err(FsError::inode_not_found(inode));
        }
        Ok(path)
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<u64> {
        vpath::validate_name(name)?;
        let dir = self.inode_to_path(parent)?;
        let path = vpath::join(&dir, name);
        match self.path_to_inode(&path) {
            Err(e) if e.kind() == FsErrorKind::NotFound => Err(FsError::not_found(path)),
            other => other,
        }
    }

    fn metadata_by_inode(&self, inode: u64) -> FsResult<Metadata> {
        let path = self.inode_to_path(inode)?;
        match self.metadata(&path) {
            Ok(m) if m.inode == inode => Ok(m),
            _ => Err(FsError::inode_not_found(inode)),
        }
    }
}
