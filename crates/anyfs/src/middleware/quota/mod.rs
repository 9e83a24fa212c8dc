//! [`Quota`]: limits on size, node count, directory size and depth.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::error::{FsError, FsResult};
use crate::handles::HandleTable;
use crate::layer::Layer;
use crate::path;
use crate::traits::{FsDir, FsHandles, FsLink, FsRead, FsStats, FsWrite, FsWriter};
use crate::types::{FileType, Handle, Metadata, OpenFlags, StatFs};
use writer::QuotaWriter;

mod writer;

/// Limits what a backend may hold: total bytes, bytes per file, number of
/// nodes, entries per directory, and path depth.
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, QuotaLayer};
///
/// let backend = QuotaLayer::builder()
///     .max_total_size(100 * 1024 * 1024) // 100 MB in all
///     .max_file_size(10 * 1024 * 1024)   // 10 MB per file
///     .max_node_count(10_000)            // files, directories and links
///     .max_dir_entries(1_000)            // entries per directory
///     .max_path_depth(64)                // nesting
///     .build()
///     .layer(MemoryBackend::new());
/// let fs = FileStorage::new(backend);
/// fs.write("/small.txt", "fits")?;
/// let too_big = vec![0u8; 11 * 1024 * 1024];
/// assert_eq!(fs.write("/big.bin", &too_big).unwrap_err().kind(), FsErrorKind::FileSizeExceeded);
/// assert_eq!(fs.backend().usage().total_size, 4);
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// # What counts
///
/// Bytes are file contents (each hard-linked file once) plus symlink
/// targets; nodes are names — files, directories, symlinks, hard links
/// (the root is free). Writes, appends, streamed writes, copies, truncates
/// that grow, new directories and links all count; overwrites, truncates
/// that shrink and removals give back. Usage starts from what the backend
/// already holds, measured when the layer is applied.
///
/// # Exactness
///
/// Every mutation holds the quota's lock from measuring to finishing, so
/// threads racing to fill it can never overshoot by a byte or a node, and
/// usage stays exact. Reads never take the lock. A streamed write
/// (`open_write`) is charged chunk by chunk: the chunk that would cross a
/// limit fails with `QuotaExceeded` and nothing of it is written. Changes
/// made to the backend behind the layer's back are not seen until it is
/// applied again.
///
/// If the initial measurement fails, every mutation fails with that error
/// (fail closed).
///
/// Order: innermost among the policy layers, so only operations the other
/// policies allowed are charged.
pub struct Quota<B> {
    inner: Arc<B>,
    state: Arc<QuotaState>,
    limits: QuotaLimits,
}

impl<B: std::fmt::Debug> std::fmt::Debug for Quota<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("limits", &self.limits)
            .field("usage", &*self.state.usage.lock())
            .field("inner", &self.inner)
            .finish()
    }
}

/// The limits of a [`QuotaLayer`]; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Bytes in all.
    pub max_total_size: Option<u64>,
    /// Bytes in one file.
    pub max_file_size: Option<u64>,
    /// Names in all.
    pub max_node_count: Option<u64>,
    /// Entries in one directory.
    pub max_dir_entries: Option<u64>,
    /// Names in one path (`/a/b` is 2).
    pub max_path_depth: Option<u64>,
}

/// What a [`Quota`] has counted (or, from [`Quota::remaining`], what is
/// left, with `u64::MAX` for unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    /// Bytes.
    pub total_size: u64,
    /// Names.
    pub node_count: u64,
}

/// The layer of [`Quota`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaLayer {
    limits: QuotaLimits,
}

/// Builds a [`QuotaLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaBuilder {
    limits: QuotaLimits,
}

impl QuotaLayer {
    /// A builder with no limits.
    pub fn builder() -> QuotaBuilder {
        QuotaBuilder::default()
    }
}

impl QuotaBuilder {
    /// Most bytes in all.
    pub fn max_total_size(mut self, bytes: u64) -> Self {
        self.limits.max_total_size = Some(bytes);
        self
    }
    /// Most bytes in one file.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.limits.max_file_size = Some(bytes);
        self
    }
    /// Most names (files, directories, links) in all.
    pub fn max_node_count(mut self, nodes: u64) -> Self {
        self.limits.max_node_count = Some(nodes);
        self
    }
    /// Most entries in one directory.
    pub fn max_dir_entries(mut self, entries: u64) -> Self {
        self.limits.max_dir_entries = Some(entries);
        self
    }
    /// Most names in one path.
    pub fn max_path_depth(mut self, depth: u64) -> Self {
        self.limits.max_path_depth = Some(depth);
        self
    }
    /// The layer.
    pub fn build(self) -> QuotaLayer {
        QuotaLayer {
            limits: self.limits,
        }
    }
}

impl<B: FsRead + FsDir> Layer<B> for QuotaLayer {
    type Backend = Quota<B>;
    /// Wraps `backend`, measuring what it holds.
    fn layer(&self, backend: B) -> Quota<B> {
        let usage = measure(&backend);
        Quota {
            inner: Arc::new(backend),
            state: Arc::new(QuotaState {
                usage: Mutex::new(usage),
                handles: Mutex::new(HandleTable::new()),
            }),
            limits: self.limits,
        }
    }
}

/// What every view of one quota shares (see [`Quota::with_limits`]).
struct QuotaState {
    /// `Err` holds why the initial measurement failed.
    usage: Mutex<Result<QuotaUsage, String>>,
    /// Open handles: their path, the size charged for the file, and whether
    /// they append.
    handles: Mutex<HandleTable<(PathBuf, u64, bool)>>,
}

/// Counts what a backend holds.
fn measure<B: FsRead + FsDir>(backend: &B) -> Result<QuotaUsage, String> {
    let mut usage = QuotaUsage::default();
    let mut seen_inodes = HashSet::new();
    let mut dirs = vec![PathBuf::from("/")];
    let fail = |e: FsError| format!("the quota could not measure the backend: {e}");
    while let Some(dir) = dirs.pop() {
        for entry in backend.read_dir(&dir).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            usage.node_count += 1;
            match entry.file_type {
                FileType::Directory => dirs.push(entry.path),
                FileType::File | FileType::Symlink => {
                    let meta = backend.metadata(&entry.path).map_err(fail)?;
                    if meta.nlink <= 1 || seen_inodes.insert(meta.inode) {
                        usage.total_size += meta.len;
                    }
                }
            }
        }
    }
    Ok(usage)
}

fn depth(path: &Path) -> u64 {
    path::resolved_components(path).map_or(0, |c| c.len() as u64)
}

/// Bytes a node holds for the quota: content or link target.
fn bytes_of(meta: &Metadata) -> u64 {
    match meta.file_type {
        FileType::Directory => 0,
        _ => meta.len,
    }
}

/// The lock held across one mutation: the usage to check and update.
struct Charge<'a> {
    usage: MutexGuard<'a, Result<QuotaUsage, String>>,
    limits: QuotaLimits,
}

impl Charge<'_> {
    fn usage(&self) -> FsResult<QuotaUsage> {
        self.usage
            .clone()
            .map_err(|message| FsError::backend("/", "quota", message))
    }

    /// Checks that adding `add` and removing `sub` bytes, and adding
    /// `nodes` names, stays within the limits.
    fn check(&self, path: &Path, add: u64, sub: u64, nodes: u64) -> FsResult<()> {
        let usage = self.usage()?;
        if let Some(limit) = self.limits.max_total_size
            && add > sub
            && usage.total_size.saturating_add(add - sub) > limit
        {
            return Err(FsError::quota_exceeded(
                path,
                limit,
                add - sub,
                usage.total_size,
            ));
        }
        if let Some(limit) = self.limits.max_node_count
            && nodes > 0
            && usage.node_count.saturating_add(nodes) > limit
        {
            return Err(FsError::quota_exceeded(
                path,
                limit,
                nodes,
                usage.node_count,
            ));
        }
        Ok(())
    }

    fn file_size(&self, path: &Path, size: u64) -> FsResult<()> {
        match self.limits.max_file_size {
            Some(limit) if size > limit => Err(FsError::file_size_exceeded(path, size, limit)),
            _ => Ok(()),
        }
    }

    fn apply(&mut self, add: u64, sub: u64, nodes_added: u64, nodes_removed: u64) {
        if let Ok(usage) = self.usage.as_mut() {
            usage.total_size = (usage.total_size + add).saturating_sub(sub);
            usage.node_count = (usage.node_count + nodes_added).saturating_sub(nodes_removed);
        }
    }
}

impl<B> Quota<B> {
    /// What is counted now.
    pub fn usage(&self) -> QuotaUsage {
        self.state.usage.lock().clone().unwrap_or_default()
    }
    /// The limits.
    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }
    /// What is left before each limit (`u64::MAX` where there is none).
    pub fn remaining(&self) -> QuotaUsage {
        let usage = self.usage();
        let left =
            |limit: Option<u64>, used: u64| limit.map_or(u64::MAX, |l| l.saturating_sub(used));
        QuotaUsage {
            total_size: left(self.limits.max_total_size, usage.total_size),
            node_count: left(self.limits.max_node_count, usage.node_count),
        }
    }
    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Another view of the same backend and the same usage, with other
    /// limits: every change made through either is counted once, and seen
    /// by both. For several users of one store, each with its own
    /// ceiling on what the store may hold while they write.
    ///
    /// ```
    /// use anyfs::prelude::*;
    /// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, QuotaLayer};
    /// use anyfs::middleware::QuotaLimits;
    ///
    /// let owner = QuotaLayer::builder().max_total_size(1000).build().layer(MemoryBackend::new());
    /// let agent = owner.with_limits(QuotaLimits { max_total_size: Some(100), ..owner.limits() });
    /// FileStorage::new(&owner).write("/owners.bin", vec![0u8; 90])?;
    /// // The agent's ceiling counts what the owner wrote.
    /// let err = FileStorage::new(&agent).write("/agents.bin", vec![0u8; 20]).unwrap_err();
    /// assert_eq!(err.kind(), FsErrorKind::QuotaExceeded);
    /// assert_eq!(agent.usage(), owner.usage());
    /// # Ok::<(), anyfs::FsError>(())
    /// ```
    pub fn with_limits(&self, limits: QuotaLimits) -> Quota<B> {
        Quota {
            inner: self.inner.clone(),
            state: self.state.clone(),
            limits,
        }
    }
    fn lock(&self) -> Charge<'_> {
        Charge {
            usage: self.state.usage.lock(),
            limits: self.limits,
        }
    }
}

impl<B: FsRead + FsDir> Quota<B> {
    /// Metadata of what is at `path`, or `None` if nothing is (yet).
    fn existing(&self, path: &Path) -> FsResult<Option<Metadata>> {
        match self.inner().metadata(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.is_absent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The checks for a new name at `path` (depth, directory size), before
    /// it is created.
    fn check_new_name(&self, path: &Path, extra_depth: u64) -> FsResult<()> {
        let limits = self.limits;
        if let Some(limit) = limits.max_path_depth {
            let d = depth(path) + extra_depth;
            if d > limit {
                return Err(FsError::quota_exceeded(
                    path,
                    limit,
                    d,
                    depth(path).saturating_sub(1),
                ));
            }
        }
        if let Some(limit) = limits.max_dir_entries
            && let Some((parent, _)) = path::split_parent(path)
        {
            let entries = match self.inner().read_dir(&parent) {
                Ok(listing) => listing.count() as u64,
                // A missing parent: the operation itself will say so.
                Err(_) => 0,
            };
            if entries >= limit {
                return Err(FsError::quota_exceeded(path, limit, 1, entries));
            }
        }
        Ok(())
    }

    /// Names and bytes under a directory (itself included), for removal or
    /// depth checks: (nodes, bytes freed, deepest relative depth).
    fn subtree(&self, dir: &Path) -> FsResult<(u64, u64, u64)> {
        let mut nodes = 1;
        let mut deepest = 0;
        let mut files: HashMap<u64, (u64, u64, u64)> = HashMap::new();
        let mut bytes = 0;
        let base = depth(dir);
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in self.inner().read_dir(&d)? {
                let entry = entry?;
                nodes += 1;
                deepest = deepest.max(depth(&entry.path) - base);
                match entry.file_type {
                    FileType::Directory => stack.push(entry.path),
                    FileType::Symlink => bytes += self.inner().metadata(&entry.path)?.len,
                    FileType::File => {
                        let meta = self.inner().metadata(&entry.path)?;
                        let seen = files.entry(meta.inode).or_insert((meta.nlink, meta.len, 0));
                        seen.2 += 1;
                    }
                }
            }
        }
        // A hard-linked file frees its bytes only if every link is inside.
        bytes += files
            .values()
            .filter(|(nlink, _, inside)| inside >= nlink)
            .map(|(_, len, _)| len)
            .sum::<u64>();
        Ok((nodes, bytes, deepest))
    }

    /// Writes `new_len` bytes over whatever is at `path` (write, append,
    /// copy destination), charging the difference.
    fn replace_content(
        &self,
        path: &Path,
        new_len: impl FnOnce(&Self, Option<&Metadata>) -> FsResult<u64>,
        op: impl FnOnce(&B) -> FsResult<()>,
    ) -> FsResult<()> {
        let mut charge = self.lock();
        charge.usage()?;
        let old = self.existing(path)?;
        let old_len = match &old {
            Some(m) if m.is_file() => m.len,
            _ => 0,
        };
        // Measured under the lock, so a racing writer cannot skew it.
        let len = new_len(self, old.as_ref())?;
        charge.file_size(path, len)?;
        let new_name = old.is_none();
        if new_name {
            self.check_new_name(path, 0)?;
        }
        charge.check(path, len, old_len, u64::from(new_name))?;
        op(&self.inner)?;
        charge.apply(len, old_len, u64::from(new_name), 0);
        Ok(())
    }
}

/// What a quota changes: every operation that adds or frees bytes or names
/// is measured and charged; reads and everything else are forwarded.
// The trait is named, not imported: its methods share their names with
// the traits', and `self.inner` (an `Arc`) is a middleware too.
impl<B: FsRead + FsDir + 'static> crate::middleware::Middleware for Quota<B> {
    type Inner = B;

    fn inner(&self) -> &B {
        &self.inner
    }

    // Contents.

    fn write(&self, path: &Path, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        self.replace_content(path, |_, _| Ok(data.len() as u64), |b| b.write(path, data))
    }

    fn append(&self, path: &Path, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        self.replace_content(
            path,
            |_, old| {
                let old_len = old.filter(|m| m.is_file()).map_or(0, |m| m.len);
                Ok(old_len.saturating_add(data.len() as u64))
            },
            |b| b.append(path, data),
        )
    }

    fn write_range(&self, path: &Path, offset: u64, data: &[u8]) -> FsResult<()>
    where
        B: FsWrite,
    {
        FsWrite::write_ranges(self, path, &[(offset, data)])
    }

    fn write_ranges(&self, path: &Path, ranges: &[(u64, &[u8])]) -> FsResult<()>
    where
        B: FsWrite,
    {
        let mut charge = self.lock();
        charge.usage()?;
        let old_len = match self.existing(path)? {
            Some(m) if m.is_file() => m.len,
            // Nothing to grow: the backend refuses as it would.
            _ => return self.inner().write_ranges(path, ranges),
        };
        let end = ranges
            .iter()
            .filter(|(_, data)| !data.is_empty())
            .map(|(offset, data)| offset.saturating_add(data.len() as u64))
            .max();
        let Some(end) = end else {
            return self.inner().write_ranges(path, ranges);
        };
        let len = old_len.max(end);
        charge.file_size(path, len)?;
        charge.check(path, len, old_len, 0)?;
        self.inner().write_ranges(path, ranges)?;
        charge.apply(len, old_len, 0, 0);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        let mut charge = self.lock();
        charge.usage()?;
        let freed = match self.existing(path)? {
            Some(m) if m.is_symlink() || m.nlink <= 1 => bytes_of(&m),
            _ => 0,
        };
        self.inner().remove_file(path)?;
        charge.apply(0, freed, 0, 1);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        let mut charge = self.lock();
        charge.usage()?;
        let Some(src) = self.existing(from)? else {
            return self.inner().rename(from, to);
        };
        let dst = self.existing(to)?;
        let same_node = dst.as_ref().is_some_and(|d| d.inode == src.inode);
        if dst.is_none() {
            let same_dir =
                path::split_parent(from).map(|p| p.0) == path::split_parent(to).map(|p| p.0);
            let extra = if src.is_dir() && self.limits.max_path_depth.is_some() {
                self.subtree(from)?.2
            } else {
                0
            };
            if !same_dir || extra > 0 {
                self.check_new_name(to, extra)?;
            }
        }
        let (freed, names_freed) = match &dst {
            Some(d) if !same_node => {
                let bytes = if d.is_dir() || (d.is_file() && d.nlink > 1) {
                    0
                } else {
                    bytes_of(d)
                };
                (bytes, 1)
            }
            _ => (0, 0),
        };
        self.inner().rename(from, to)?;
        charge.apply(0, freed, 0, names_freed);
        Ok(())
    }

    fn copy(&self, from: &Path, to: &Path) -> FsResult<()>
    where
        B: FsWrite,
    {
        self.replace_content(
            to,
            |quota, dst| {
                let src = quota.inner().metadata(from)?;
                // Copying a file onto another name of itself changes nothing.
                Ok(match dst {
                    Some(d) if d.inode == src.inode => d.len,
                    _ => src.len,
                })
            },
            |b| b.copy(from, to),
        )
    }

    fn truncate(&self, path: &Path, size: u64) -> FsResult<()>
    where
        B: FsWrite,
    {
        let mut charge = self.lock();
        charge.usage()?;
        let old_len = match self.existing(path)? {
            Some(m) if m.is_file() => m.len,
            _ => return self.inner().truncate(path, size),
        };
        charge.file_size(path, size)?;
        charge.check(path, size, old_len, 0)?;
        self.inner().truncate(path, size)?;
        charge.apply(size, old_len, 0, 0);
        Ok(())
    }

    fn open_write(&self, path: &Path) -> FsResult<FsWriter>
    where
        B: FsWrite,
    {
        let charge = self.lock();
        charge.usage()?;
        let old = self.existing(path)?;
        let old_len = match &old {
            Some(m) if m.is_file() => m.len,
            _ => 0,
        };
        if old.is_none() {
            self.check_new_name(path, 0)?;
            charge.check(path, 0, 0, 1)?;
        }
        let writer = self.inner().open_write(path)?;
        Ok(Box::new(QuotaWriter {
            inner: Some(writer),
            backend: self.inner.clone(),
            state: self.state.clone(),
            limits: self.limits,
            path: path.to_path_buf(),
            written: 0,
            charged: 0,
            old_len,
        }))
    }

    // Names.

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let mut charge = self.lock();
        charge.usage()?;
        if self.existing(path)?.is_none() {
            self.check_new_name(path, 0)?;
            charge.check(path, 0, 0, 1)?;
        }
        self.inner().create_dir(path)?;
        charge.apply(0, 0, 1, 0);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let mut charge = self.lock();
        charge.usage()?;
        let names = path::resolved_components(path)?;
        // The deepest ancestor that exists; everything below it is new.
        let mut existing = names.len();
        while existing > 0 {
            let prefix = PathBuf::from(format!(
                "/{}",
                names[..existing]
                    .iter()
                    .map(|n| n.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            ));
            if self.existing(&prefix)?.is_some() {
                break;
            }
            existing -= 1;
        }
        let missing = (names.len() - existing) as u64;
        if missing > 0 {
            let mut first_new = PathBuf::from("/");
            for name in &names[..=existing] {
                first_new.push(name);
            }
            self.check_new_name(&first_new, missing - 1)?;
            charge.check(path, 0, 0, missing)?;
        }
        self.inner().create_dir_all(path)?;
        charge.apply(0, 0, missing, 0);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let mut charge = self.lock();
        charge.usage()?;
        self.inner().remove_dir(path)?;
        charge.apply(0, 0, 0, 1);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let mut charge = self.lock();
        charge.usage()?;
        let (nodes, bytes) = match self.existing(path)? {
            Some(m) if m.is_dir() => {
                let (nodes, bytes, _) = self.subtree(path)?;
                (nodes, bytes)
            }
            Some(m) if m.is_symlink() => (1, m.len),
            _ => return self.inner().remove_dir_all(path),
        };
        self.inner().remove_dir_all(path)?;
        charge.apply(0, bytes, 0, nodes);
        Ok(())
    }

    // Links.

    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()>
    where
        B: FsLink,
    {
        let mut charge = self.lock();
        charge.usage()?;
        let len = target.as_os_str().len() as u64;
        if self.existing(link)?.is_none() {
            self.check_new_name(link, 0)?;
            charge.check(link, len, 0, 1)?;
        }
        self.inner().symlink(target, link)?;
        charge.apply(len, 0, 1, 0);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()>
    where
        B: FsLink,
    {
        let mut charge = self.lock();
        charge.usage()?;
        if self.existing(link)?.is_none() {
            self.check_new_name(link, 0)?;
            charge.check(link, 0, 0, 1)?;
        }
        self.inner().hard_link(original, link)?;
        charge.apply(0, 0, 1, 0);
        Ok(())
    }

    // Capacity.

    /// The backend's figures, capped by the quota's limits.
    fn statfs(&self) -> FsResult<StatFs>
    where
        B: FsStats,
    {
        let mut stats = self.inner().statfs()?;
        let usage = self.usage();
        let limits = self.limits;
        if let Some(limit) = limits.max_total_size {
            stats.total_bytes = stats.total_bytes.min(limit);
            stats.used_bytes = usage.total_size;
            stats.available_bytes = stats
                .available_bytes
                .min(limit.saturating_sub(usage.total_size));
        }
        if let Some(limit) = limits.max_node_count {
            stats.total_inodes = stats.total_inodes.min(limit);
            stats.used_inodes = usage.node_count;
            stats.available_inodes = stats
                .available_inodes
                .min(limit.saturating_sub(usage.node_count));
        }
        Ok(stats)
    }

    // Open files.

    fn open(&self, path: &Path, flags: OpenFlags) -> FsResult<Handle>
    where
        B: FsHandles,
    {
        if !flags.mutates() {
            return self.inner().open(path, flags);
        }
        let mut charge = self.lock();
        charge.usage()?;
        let old = self.existing(path)?;
        let old_len = match &old {
            Some(m) if m.is_file() => m.len,
            _ => 0,
        };
        let creates = old.is_none() && (flags.create || flags.create_new);
        if creates {
            self.check_new_name(path, 0)?;
            charge.check(path, 0, 0, 1)?;
        }
        let handle = self.inner().open(path, flags)?;
        let freed = if flags.truncate { old_len } else { 0 };
        charge.apply(0, freed, u64::from(creates), 0);
        self.state
            .handles
            .lock()
            .insert(handle, (path.to_path_buf(), old_len - freed, flags.append));
        Ok(handle)
    }

    fn write_at(&self, handle: Handle, data: &[u8], offset: u64) -> FsResult<usize>
    where
        B: FsHandles,
    {
        let Some((path, tracked, append)) = self.state.handles.lock().get(handle).cloned() else {
            // Not opened for writing through this layer: let the backend refuse.
            return self.inner().write_at(handle, data, offset);
        };
        let mut charge = self.lock();
        charge.usage()?;
        // Prefer the file's current size (another handle may have changed it).
        let current = match self.existing(&path) {
            Ok(Some(m)) if m.is_file() => m.len,
            _ => tracked,
        };
        let at = if append { current } else { offset };
        let new_len = current.max(at.saturating_add(data.len() as u64));
        charge.file_size(&path, new_len)?;
        charge.check(&path, new_len, current, 0)?;
        let n = self.inner().write_at(handle, data, offset)?;
        let written_end = current.max(at.saturating_add(n as u64));
        charge.apply(written_end, current, 0, 0);
        if let Some(entry) = self.state.handles.lock().get_mut(handle) {
            entry.1 = written_end;
        }
        Ok(n)
    }

    fn close(&self, handle: Handle) -> FsResult<()>
    where
        B: FsHandles,
    {
        self.state.handles.lock().remove(handle);
        self.inner().close(handle)
    }
}

/// Snapshots through a quota: taking, listing, opening and deleting them
/// go through as they are (a snapshot shares content with the workspace,
/// so it adds nothing the quota counts). A restore must fit: it is refused
/// with `QuotaExceeded`, changing nothing, if the snapshot holds more than
/// the limits allow, and usage is what the snapshot holds afterwards. A
/// merge writes through the quota and is charged like any write. A branch
/// opens under the same limits, counted on its own.
impl<B> crate::snapshots::FsSnapshots for Quota<B>
where
    B: crate::snapshots::FsSnapshots + FsLink + 'static,
    B::Branch: 'static,
{
    type View = B::View;
    type Branch = Quota<B::Branch>;

    fn create_snapshot(&self, name: &str) -> FsResult<crate::snapshots::SnapshotInfo> {
        self.inner().create_snapshot(name)
    }
    fn snapshots(&self) -> FsResult<Vec<crate::snapshots::SnapshotInfo>> {
        self.inner().snapshots()
    }
    fn open_snapshot(&self, id: crate::snapshots::SnapshotId) -> FsResult<B::View> {
        self.inner().open_snapshot(id)
    }
    fn delete_snapshot(&self, id: crate::snapshots::SnapshotId) -> FsResult<()> {
        self.inner().delete_snapshot(id)
    }
    fn restore(&self, id: crate::snapshots::SnapshotId) -> FsResult<()> {
        // Alone from measuring to restoring: no write slips in between.
        let mut charge = self.lock();
        let view = self.inner().open_snapshot(id)?;
        let after = measure(&view).map_err(|message| FsError::backend("/", "restore", message))?;
        let now = charge.usage()?;
        let path = Path::new("/");
        if let Some(limit) = self.limits.max_total_size
            && after.total_size > limit
            && after.total_size > now.total_size
        {
            return Err(FsError::quota_exceeded(
                path,
                limit,
                after.total_size - now.total_size,
                now.total_size,
            ));
        }
        if let Some(limit) = self.limits.max_node_count
            && after.node_count > limit
            && after.node_count > now.node_count
        {
            return Err(FsError::quota_exceeded(
                path,
                limit,
                after.node_count - now.node_count,
                now.node_count,
            ));
        }
        self.inner().restore(id)?;
        *charge.usage = Ok(after);
        Ok(())
    }
    fn branch(
        &self,
        from: crate::snapshots::SnapshotId,
        name: &str,
    ) -> FsResult<crate::snapshots::BranchInfo> {
        self.inner().branch(from, name)
    }
    fn branches(&self) -> FsResult<Vec<crate::snapshots::BranchInfo>> {
        self.inner().branches()
    }
    fn open_branch(&self, id: crate::snapshots::BranchId) -> FsResult<Quota<B::Branch>> {
        let branch = self.inner().open_branch(id)?;
        Ok(QuotaLayer {
            limits: self.limits,
        }
        .layer(branch))
    }
    fn delete_branch(&self, id: crate::snapshots::BranchId) -> FsResult<()> {
        self.inner().delete_branch(id)
    }
    fn snapshot_branch(
        &self,
        id: crate::snapshots::BranchId,
    ) -> FsResult<crate::snapshots::SnapshotId> {
        self.inner().snapshot_branch(id)
    }
    fn set_branch_base(
        &self,
        id: crate::snapshots::BranchId,
        base: crate::snapshots::SnapshotId,
    ) -> FsResult<()> {
        self.inner().set_branch_base(id, base)
    }
}
