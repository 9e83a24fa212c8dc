//! Mount any AnyFS backend as a real filesystem, so that ordinary tools —
//! shells, editors, compilers, git — run inside a workspace.
//!
//! ```no_run
//! use anyfs::MemoryBackend;
//! use anyfs_fuse::{MountOptions, mount};
//!
//! let handle = mount(MemoryBackend::new(), "/mnt/workspace", MountOptions::default())?;
//! std::fs::write("/mnt/workspace/hello.txt", "written by any program")?;
//! handle.unmount()?; // also on drop; everything written is committed first
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How it maps
//!
//! - Inodes are the backend's own ([`anyfs::FsInode`]), behind node ids of the
//!   mount's own that are never reused; the backend's root is FUSE's inode 1.
//!   A node id lives while the kernel holds it: once the kernel forgets a
//!   file (its caches shrink), the id goes, and the file gets a new one when
//!   next looked up, so memory does not grow with every file ever seen.
//! - Writes are buffered per open file and committed to the backend on
//!   `flush` (each `close`), `fsync` and `release`, never one backend write
//!   per kernel page. Only the bytes written are held, merged into extents:
//!   bytes added at the end are committed with one `append` (a log appended
//!   to line by line is not rewritten whole), others with one `write_range`
//!   per extent (a write into a large file does not load or rewrite it).
//!   Past 8 MiB buffered, a file's writes are committed at once, so copying
//!   a large file in does not hold it in memory. Reads of a file with
//!   uncommitted writes see them.
//! - Every [`FsError`] becomes its own errno ([`FsError::errno`]): a quota
//!   hit is `EDQUOT`, a policy denial `EACCES`, a loop `ELOOP`, a read-only
//!   workspace `EROFS`. Names over 255 bytes are `ENAMETOOLONG`.
//! - Attributes and entries are cached by the kernel for
//!   [`MountOptions::ttl`]; changes made through the mount update the cache
//!   as they happen.
//! - Permissions are checked by the kernel against the mode bits
//!   (`default_permissions`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod patches;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyfs::{FileType, FsError, FsErrorKind, FsFuse, Metadata, Permissions};
use fuser::{
    FileAttr, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, TimeOrNow,
};
use patches::Patches;

/// How a backend is mounted.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Refuse every change (`EROFS`), at the mount and in the kernel.
    pub read_only: bool,
    /// Let users other than the one who mounted use the mount (needs root
    /// or `user_allow_other` in `/etc/fuse.conf`).
    pub allow_other: bool,
    /// How long the kernel may cache attributes and names (default 1 s).
    pub ttl: Duration,
    /// The name shown as the mount's source (default `anyfs`).
    pub fs_name: String,
    /// Show every file and directory as owned by this user and group
    /// (host ids), whatever the backend records, and leave the recorded
    /// owners alone: the mount a sandboxed command works in, whose one
    /// user owns the whole workspace (default: the owners as recorded).
    pub owner: Option<(u32, u32)>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            allow_other: false,
            ttl: Duration::from_secs(1),
            fs_name: "anyfs".into(),
            owner: None,
        }
    }
}

/// A mounted backend. Dropping it (or [`unmount`](Self::unmount)) commits
/// every buffered write and unmounts.
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    node_ids: Arc<AtomicUsize>,
}

impl std::fmt::Debug for MountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountHandle")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl MountHandle {
    /// Where the backend is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// How many files and directories the mount keeps a node id for: those
    /// the kernel still holds (it lets go of them as its caches shrink), so
    /// the mount's memory does not grow with every file ever seen.
    pub fn node_ids(&self) -> usize {
        self.node_ids.load(Ordering::Relaxed)
    }

    /// Whether the mount is still served: `false` once it was unmounted from
    /// outside (`fusermount3 -u`, `umount`) and the session ended, having
    /// committed every buffered write.
    pub fn is_mounted(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| !session.guard.is_finished())
    }

    /// Unmounts, after committing every buffered write; waits for the
    /// session to end.
    pub fn unmount(mut self) -> io::Result<()> {
        self.finish();
        Ok(())
    }

    fn finish(&mut self) {
        if let Some(session) = self.session.take() {
            unmount_when_free(&self.mountpoint);
            // Unmounting ends the session; the filesystem's `destroy` then
            // commits whatever is still buffered before the thread ends.
            let guard = {
                let session = session;
                let fuser::BackgroundSession { guard, .. } = session;
                guard
                // The rest of the session, the mount, is dropped here:
                // that unmounts, and the session thread sees the end.
            };
            match guard.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "the FUSE session ended with an error"),
                Err(_) => tracing::error!("the FUSE session thread panicked"),
            }
        }
    }
}

/// Unmounts `mountpoint` where this process may (root), waiting out a
/// moment of `EBUSY` (the last processes of a sandbox that used the mount
/// are still being torn down), then detaching it lazily: the session ends
/// when its last user lets go, instead of never. Elsewhere (`EPERM`),
/// fuser unmounts through `fusermount3`.
fn unmount_when_free(mountpoint: &Path) {
    use rustix::io::Errno;
    use rustix::mount::{UnmountFlags, unmount};
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match unmount(mountpoint, UnmountFlags::empty()) {
            Err(Errno::BUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::BUSY) => {
                tracing::warn!(
                    mountpoint = %mountpoint.display(),
                    "still in use after 5 s: detached, to end when its last user lets go"
                );
                let _ = unmount(mountpoint, UnmountFlags::DETACH);
                return;
            }
            _ => return,
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Mounts `backend` at `mountpoint` (an existing directory) and serves it
/// from a background thread until the handle is dropped.
pub fn mount<B: FsFuse + 'static>(
    backend: B,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
) -> io::Result<MountHandle> {
    let mountpoint = mountpoint.as_ref().to_path_buf();
    let root = backend
        .path_to_inode(Path::new("/"))
        .map_err(io::Error::other)?;
    let mut opts = vec![
        MountOption::FSName(options.fs_name.clone()),
        MountOption::Subtype("anyfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        if options.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    if options.allow_other {
        opts.push(MountOption::AllowOther);
    }
    let node_ids = Arc::new(AtomicUsize::new(1));
    let fs = AnyFuse {
        fs: backend,
        nodes: Nodes::new(root, node_ids.clone()),
        ttl: options.ttl,
        read_only: options.read_only,
        owner: options.owner,
        files: HashMap::new(),
        handles: HashMap::new(),
        dirs: HashMap::new(),
        next_fh: 1,
        space: None,
        seen: HashMap::new(),
    };
    let session = fuser::spawn_mount2(fs, &mountpoint, &opts)?;
    Ok(MountHandle {
        session: Some(session),
        mountpoint,
        node_ids,
    })
}

/// The errno for an error, as the kernel should see it.
pub fn errno(err: &FsError) -> i32 {
    err.errno()
}

/// Buffered writes past this many bytes are committed at once.
const COMMIT_AT: usize = 8 << 20;
/// Bytes buffered for all open files together: past it, every file's
/// buffered writes are committed (a program, or a sandboxed command,
/// holding many files open cannot make the mount hold gigabytes).
const MAX_PENDING: usize = 64 << 20;
/// Bytes held in memory for files unlinked while open, all together: a
/// write or truncation past it, or an unlink that would load more, is
/// refused (`ENOSPC`) rather than grow the mount's memory without bound.
const MAX_ORPHAN_BYTES: u64 = 256 << 20;
/// So are buffered writes in this many separate places.
const COMMIT_EXTENTS: usize = 1024;

/// A file with open handles, and its writes not yet committed.
struct OpenFile {
    /// Where it is committed; `None` once its last name is gone.
    path: Option<PathBuf>,
    /// Its metadata when its last name went away (it lives on while open).
    orphan: Option<Metadata>,
    /// The whole content, held once its last name went away while open
    /// (there is nowhere left to commit it).
    data: Option<Vec<u8>>,
    /// Writes not yet committed, over the content the backend holds.
    patches: Option<Patches>,
    dirty: bool,
    handles: u32,
}

struct Handle {
    append: bool,
}

/// What a name going away does to an open file (see `detach`).
enum Detached {
    Nothing,
    /// Its last name: it lives on in memory, with this metadata.
    Orphan(u64, Option<Metadata>),
    /// One of several names, the one it is committed under.
    Renamed(u64),
}

/// What a `setattr` asks to change.
struct Changes {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

/// FUSE node ids and the backend inodes they stand for. A node id is never
/// reused: a backend may give a deleted inode's number to a new node while
/// the kernel still holds the old one (an open, unlinked file), and the two
/// must not be confused.
struct Nodes {
    /// Node id → what it stands for.
    inode: HashMap<u64, NodeEntry>,
    /// Backend inode → its current node id.
    node: HashMap<u64, u64>,
    next: u64,
    /// How many node ids there are, for [`MountHandle::node_ids`].
    count: Arc<AtomicUsize>,
}

struct NodeEntry {
    /// The backend inode (`None` once that inode was deleted).
    inode: Option<u64>,
    /// How many times the kernel was handed this node id and has not yet
    /// forgotten it; at zero the id is dropped (and never used again).
    lookups: u64,
}

impl Nodes {
    fn new(root: u64, count: Arc<AtomicUsize>) -> Self {
        count.store(1, Ordering::Relaxed);
        Self {
            count,
            inode: HashMap::from([(
                fuser::FUSE_ROOT_ID,
                NodeEntry {
                    inode: Some(root),
                    lookups: 1,
                },
            )]),
            node: HashMap::from([(root, fuser::FUSE_ROOT_ID)]),
            next: fuser::FUSE_ROOT_ID + 1,
        }
    }

    fn node(&mut self, inode: u64) -> u64 {
        if let Some(&node) = self.node.get(&inode) {
            return node;
        }
        let node = self.next;
        self.next += 1;
        self.node.insert(inode, node);
        self.inode.insert(
            node,
            NodeEntry {
                inode: Some(inode),
                lookups: 0,
            },
        );
        self.count.store(self.inode.len(), Ordering::Relaxed);
        node
    }

    fn inode(&self, node: u64) -> Result<u64> {
        self.inode
            .get(&node)
            .and_then(|entry| entry.inode)
            .ok_or(libc::ENOENT)
    }

    /// The backend inode is gone: its node id now names nothing new.
    fn retire(&mut self, inode: u64) {
        if let Some(node) = self.node.remove(&inode)
            && let Some(entry) = self.inode.get_mut(&node)
        {
            entry.inode = None;
        }
    }

    /// The kernel was handed `node` in an entry.
    fn looked_up(&mut self, node: u64) {
        if let Some(entry) = self.inode.get_mut(&node) {
            entry.lookups += 1;
        }
    }

    /// The kernel dropped `n` references to `node`; `true` if the node id
    /// is gone with them (unless `in_use`).
    fn forget(&mut self, node: u64, n: u64, in_use: bool) -> bool {
        if node == fuser::FUSE_ROOT_ID {
            return false;
        }
        let Some(entry) = self.inode.get_mut(&node) else {
            return false;
        };
        entry.lookups = entry.lookups.saturating_sub(n);
        if entry.lookups > 0 || in_use {
            return false;
        }
        if let Some(inode) = entry.inode
            && self.node.get(&inode) == Some(&node)
        {
            self.node.remove(&inode);
        }
        self.inode.remove(&node);
        self.count.store(self.inode.len(), Ordering::Relaxed);
        true
    }
}

/// The FUSE filesystem over a backend. Everything in here is keyed by FUSE
/// node id; [`Nodes`] maps them to the backend's inodes.
struct AnyFuse<B> {
    fs: B,
    nodes: Nodes,
    ttl: Duration,
    read_only: bool,
    /// Every node shown as owned by this user and group (see
    /// [`MountOptions::owner`]).
    owner: Option<(u32, u32)>,
    files: HashMap<u64, OpenFile>,
    handles: HashMap<u64, Handle>,
    dirs: HashMap<u64, Vec<Listed>>,
    next_fh: u64,
    /// Free space as `statfs` last said, and when.
    space: Option<(Instant, u64)>,
    /// Modification time and size of each file when it was last opened or
    /// written through the mount: unchanged at the next open, the kernel
    /// keeps its cached pages (close-to-open consistency).
    seen: HashMap<u64, (SystemTime, u64)>,
}

type Result<T> = std::result::Result<T, i32>;

/// One directory entry as listed to the kernel: backend inode, type, name.
type Listed = (u64, fuser::FileType, std::ffi::OsString);

/// The most entries one directory reply is built from (a reply holds fewer).
const LISTING_BATCH: usize = 1024;

fn fail(err: FsError) -> i32 {
    errno(&err)
}

fn kind(t: FileType) -> fuser::FileType {
    match t {
        FileType::File => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
    }
}

fn check_name(name: &OsStr) -> Result<()> {
    if name.len() > 255 {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}

fn join(dir: &Path, name: &OsStr) -> Result<PathBuf> {
    check_name(name)?;
    let path = anyfs::path::join(dir, name);
    if path.as_os_str().len() > 4096 {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(path)
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl<B: FsFuse> AnyFuse<B> {
    /// The backend inode of a node id.
    fn inode_of(&self, node: u64) -> Result<u64> {
        self.nodes.inode(node)
    }

    /// The node id of a backend inode.
    fn node_of(&mut self, inode: u64) -> u64 {
        self.nodes.node(inode)
    }

    /// The node id of the open file at `path`, if one is open.
    fn open_node(&self, path: &Path) -> Option<u64> {
        let inode = self.fs.path_to_inode(path).ok()?;
        let node = *self.nodes.node.get(&inode)?;
        self.files.contains_key(&node).then_some(node)
    }

    /// After something was removed: if the backend inode is gone, its node
    /// id must not stand for a new node that gets the same number.
    fn removed(&mut self, inode: Option<u64>) {
        if let Some(inode) = inode
            && self.fs.metadata_by_inode(inode).is_err()
        {
            self.nodes.retire(inode);
        }
    }

    fn path(&self, node: u64) -> Result<PathBuf> {
        if let Some(OpenFile {
            path: Some(path), ..
        }) = self.files.get(&node)
        {
            return Ok(path.clone());
        }
        self.fs.inode_to_path(self.inode_of(node)?).map_err(fail)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf> {
        join(&self.path(parent)?, name)
    }

    fn attr(&self, node: u64, meta: &Metadata) -> FileAttr {
        let size = match self.files.get(&node) {
            Some(OpenFile {
                data: Some(data), ..
            }) => data.len() as u64,
            Some(OpenFile {
                patches: Some(patches),
                ..
            }) => patches.len(),
            _ => meta.len,
        };
        FileAttr {
            ino: node,
            size,
            blocks: size.div_ceil(512),
            atime: meta.accessed,
            mtime: meta.modified,
            ctime: meta.changed,
            crtime: meta.created,
            kind: kind(meta.file_type),
            perm: (meta.permissions.mode() & 0o7777) as u16,
            nlink: u32::try_from(meta.nlink).unwrap_or(u32::MAX),
            uid: self.owner.map_or(meta.uid, |(uid, _)| uid),
            gid: self.owner.map_or(meta.gid, |(_, gid)| gid),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn attr_of(&self, node: u64) -> Result<FileAttr> {
        if let Some(OpenFile {
            orphan: Some(meta), ..
        }) = self.files.get(&node)
        {
            return Ok(self.attr(node, meta));
        }
        let meta = self
            .fs
            .metadata_by_inode(self.inode_of(node)?)
            .map_err(fail)?;
        Ok(self.attr(node, &meta))
    }

    /// Gives a new node at `path` to the caller, as POSIX does: its user,
    /// and its group (or the directory's, when the directory is set-group-ID).
    fn give_to_caller(&self, req: &Request<'_>, parent: u64, path: &Path) -> Result<()> {
        if self.owner.is_some() {
            return Ok(());
        }
        let parent = self
            .fs
            .metadata_by_inode(self.inode_of(parent)?)
            .map_err(fail)?;
        let gid = if parent.permissions.mode() & libc::S_ISGID != 0 {
            parent.gid
        } else {
            req.gid()
        };
        let meta = self.fs.symlink_metadata(path).map_err(fail)?;
        if (meta.uid, meta.gid) != (req.uid(), gid) {
            self.fs
                .set_owner(path, Some(req.uid()), Some(gid))
                .map_err(fail)?;
        }
        if meta.is_dir() && parent.permissions.mode() & libc::S_ISGID != 0 {
            let mode = meta.permissions.mode() | libc::S_ISGID;
            self.fs
                .set_permissions(path, Permissions::from_mode(mode))
                .map_err(fail)?;
        }
        Ok(())
    }

    /// The attributes of the node at `path` (not following a last symlink).
    fn attr_at(&mut self, path: &Path) -> Result<FileAttr> {
        let inode = self.fs.path_to_inode(path).map_err(fail)?;
        let meta = self.fs.symlink_metadata(path).map_err(fail)?;
        let node = self.node_of(inode);
        Ok(self.attr(node, &meta))
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(libc::EROFS);
        }
        Ok(())
    }

    /// Loads a file's whole content into memory, buffered writes laid over
    /// it: for a file whose last name goes while it is open.
    fn load(&mut self, ino: u64) -> Result<()> {
        match self.files.get(&ino) {
            None => return Err(libc::EBADF),
            Some(file) if file.data.is_some() => return Ok(()),
            Some(_) => {}
        }
        let path = self.path(ino)?;
        let size = match &self.files.get(&ino).and_then(|f| f.patches.as_ref()) {
            Some(patches) => patches.len(),
            None => self.fs.metadata(&path).map_err(fail)?.len,
        };
        if self.orphan_bytes().saturating_add(size) > MAX_ORPHAN_BYTES {
            return Err(libc::ENOSPC);
        }
        let mut data = self.fs.read(&path).map_err(fail)?;
        if let Some(file) = self.files.get_mut(&ino) {
            if let Some(patches) = file.patches.take() {
                let len = usize::try_from(patches.len()).map_err(|_| libc::EFBIG)?;
                data.resize(len.max(data.len()), 0);
                patches.overlay(0, &mut data);
            }
            file.data = Some(data);
        }
        Ok(())
    }

    /// Bytes held in memory for files unlinked while open.
    fn orphan_bytes(&self) -> u64 {
        self.files
            .values()
            .filter_map(|f| f.data.as_ref())
            .map(|d| d.len() as u64)
            .sum()
    }

    /// Refuses growing a file held in memory from `from` to `to` bytes past
    /// [`MAX_ORPHAN_BYTES`].
    fn orphan_room(&self, from: usize, to: usize) -> Result<()> {
        let growth = to.saturating_sub(from) as u64;
        if growth > 0 && self.orphan_bytes().saturating_add(growth) > MAX_ORPHAN_BYTES {
            return Err(libc::ENOSPC);
        }
        Ok(())
    }

    /// Hands the kernel an entry (it keeps a reference to the node until it
    /// forgets it), or the error.
    fn reply_entry(&mut self, result: Result<FileAttr>, reply: ReplyEntry) {
        match result {
            Ok(attr) => {
                self.nodes.looked_up(attr.ino);
                reply.entry(&self.ttl, &attr, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    /// Buffers a write to a file not held whole: only its bytes are kept.
    /// `None` if the file is held whole (unlinked while open).
    fn buffer_write(
        &mut self,
        ino: u64,
        append: bool,
        offset: i64,
        data: &[u8],
    ) -> Result<Option<u32>> {
        let file = self.files.get(&ino).ok_or(libc::EBADF)?;
        if file.data.is_some() {
            return Ok(None);
        }
        if file
            .patches
            .as_ref()
            .is_some_and(|p| p.pending() >= COMMIT_AT || p.count() >= COMMIT_EXTENTS)
        {
            // Enough held: commit it before taking more. A failure is this
            // write's, which is not buffered.
            self.commit(ino)?;
        }
        let pending: usize = self
            .files
            .values()
            .filter_map(|f| f.patches.as_ref())
            .map(Patches::pending)
            .sum();
        if pending.saturating_add(data.len()) > MAX_PENDING {
            // Many files each holding some: all of them are committed.
            let held: Vec<u64> = self
                .files
                .iter()
                .filter(|(_, f)| f.patches.as_ref().is_some_and(|p| p.pending() > 0))
                .map(|(&ino, _)| ino)
                .collect();
            for other in held {
                self.commit(other)?;
            }
        }
        let file = self.files.get(&ino).ok_or(libc::EBADF)?;
        let (base_len, len) = match &file.patches {
            Some(patches) => (patches.base_len(), patches.len()),
            None => {
                let len = self
                    .fs
                    .metadata_by_inode(self.inode_of(ino)?)
                    .map_err(fail)?
                    .len;
                (len, len)
            }
        };
        // An `O_APPEND` write goes to the end as the mount sees it now; it
        // keeps that offset even if the backend's file grows meanwhile by
        // other means (what this mount has told the writer stays true).
        let at = if append {
            len
        } else {
            u64::try_from(offset).map_err(|_| libc::EINVAL)?
        };
        let end = at.checked_add(data.len() as u64).ok_or(libc::EFBIG)?;
        // Everything not yet committed must fit, not just this write.
        if !data.is_empty() && end > len && !self.has_room(end - base_len) {
            return Err(libc::ENOSPC);
        }
        let file = self.files.get_mut(&ino).ok_or(libc::EBADF)?;
        file.patches
            .get_or_insert_with(|| Patches::new(base_len))
            .insert(at, data);
        file.dirty = true;
        Ok(Some(data.len() as u32))
    }

    /// Cuts or extends the file in the backend; writes buffered for it (if
    /// it is open as `node`) past the new end go, the others stay buffered.
    fn truncate(&mut self, node: Option<u64>, path: &Path, size: u64) -> Result<()> {
        self.fs.truncate(path, size).map_err(fail)?;
        self.space = None;
        if let Some(file) = node.and_then(|node| self.files.get_mut(&node)) {
            if let Some(patches) = &mut file.patches {
                patches.truncate(size);
            }
            if file.data.is_some() {
                let to = usize::try_from(size).map_err(|_| libc::EFBIG)?;
                let from = file.data.as_ref().map_or(0, Vec::len);
                self.orphan_room(from, to)?;
                if let Some(data) = node
                    .and_then(|node| self.files.get_mut(&node))
                    .and_then(|f| f.data.as_mut())
                {
                    data.resize(to, 0);
                }
            }
        }
        Ok(())
    }

    /// Writes a file's buffered content to the backend, if it changed.
    fn commit(&mut self, ino: u64) -> Result<()> {
        let Some(file) = self.files.get_mut(&ino) else {
            return Ok(());
        };
        if !file.dirty {
            return Ok(());
        }
        let Some(path) = &file.path else {
            if file.orphan.is_none() {
                // It has names, but none could be found: fail, never drop.
                return Err(libc::EIO);
            }
            // Unlinked while open: nothing to commit to.
            file.dirty = false;
            return Ok(());
        };
        if let Some(data) = &file.data {
            self.fs.write(path, data).map_err(fail)?;
        } else if file.patches.as_ref().is_some_and(|p| p.count() == 0) {
            // Nothing left to write (an empty write, or all cut away).
            file.patches = None;
        } else if let Some(patches) = &file.patches {
            // One backend call, applied whole or not at all (a failure
            // leaves everything buffered): an `append` when the one extent
            // starts where the backend's file ends (checked: the file may
            // have changed under the mount), else one `write_ranges`.
            let single = {
                let mut extents = patches.extents();
                match (extents.next(), extents.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            };
            let result = match single {
                Some((at, bytes))
                    if at == patches.base_len()
                        && self.fs.metadata(path).map(|m| m.len).ok() == Some(at) =>
                {
                    self.fs.append(path, bytes)
                }
                _ => {
                    let ranges: Vec<(u64, &[u8])> = patches.extents().collect();
                    self.fs.write_ranges(path, &ranges)
                }
            };
            result.map_err(fail)?;
            file.patches = None;
            self.space = None;
        }
        file.dirty = false;
        // The kernel's pages hold what was just written: still valid.
        if let Ok(attr) = self.attr_of(ino) {
            self.seen.insert(ino, (attr.mtime, attr.size));
        }
        Ok(())
    }

    fn new_handle(&mut self, ino: u64, path: PathBuf, append: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { append });
        self.files
            .entry(ino)
            .or_insert(OpenFile {
                path: Some(path),
                orphan: None,
                data: None,
                patches: None,
                dirty: false,
                handles: 0,
            })
            .handles += 1;
        fh
    }

    /// Whether a file may grow by `growth` bytes past what the backend
    /// holds: buffered writes are committed at close, which programs rarely
    /// check, so a full quota or disk is reported at `write` (`ENOSPC`)
    /// from what `statfs` says (looked up at most every 100 ms, and again
    /// before refusing).
    fn has_room(&mut self, growth: u64) -> bool {
        let fresh = |fs: &B| fs.statfs().map(|s| s.available_bytes).unwrap_or(u64::MAX);
        let available = match self.space {
            Some((at, bytes)) if at.elapsed() < Duration::from_millis(100) => bytes,
            _ => {
                let bytes = fresh(&self.fs);
                self.space = Some((Instant::now(), bytes));
                bytes
            }
        };
        if growth <= available {
            return true;
        }
        let bytes = fresh(&self.fs);
        self.space = Some((Instant::now(), bytes));
        growth <= bytes
    }

    /// The entries of an open directory from `offset` on, with their
    /// positions; `None` for an unknown handle.
    /// The entries of an open directory from `offset` on, at most as many
    /// as a reply can hold, with their positions.
    fn listing(&self, fh: u64, offset: i64) -> Option<Vec<(usize, Listed)>> {
        let start = usize::try_from(offset).unwrap_or(0);
        Some(
            self.dirs
                .get(&fh)?
                .iter()
                .cloned()
                .enumerate()
                .skip(start)
                .take(LISTING_BATCH)
                .collect(),
        )
    }

    /// Forgets a handle; the file's buffer goes with its last handle.
    fn release_handle(&mut self, ino: u64, fh: u64) {
        self.handles.remove(&fh);
        if let Some(file) = self.files.get_mut(&ino) {
            file.handles = file.handles.saturating_sub(1);
            if file.handles == 0 {
                self.files.remove(&ino);
            }
        }
    }

    /// Before a name goes away: what becomes of an open file it names,
    /// applied by [`Self::reattach`] once the name is really gone. A file
    /// losing its last name has its content loaded into memory first, so
    /// that open handles still read and write it (if it cannot be read, its
    /// handles get errors instead; the removal goes ahead).
    fn detach(&mut self, path: &Path) -> Detached {
        let Some(node) = self.open_node(path) else {
            return Detached::Nothing;
        };
        match self.fs.symlink_metadata(path) {
            // Other names remain: buffered writes are the node's, whatever
            // name they are committed under; only a file committed under
            // this name needs another.
            Ok(meta) if meta.nlink > 1 => {
                let here = self
                    .files
                    .get(&node)
                    .is_some_and(|f| f.path.as_deref() == Some(path));
                if here {
                    Detached::Renamed(node)
                } else {
                    Detached::Nothing
                }
            }
            meta => {
                let _ = self.load(node);
                Detached::Orphan(
                    node,
                    meta.ok().map(|mut m| {
                        m.nlink = 0;
                        m
                    }),
                )
            }
        }
    }

    /// After the name went away: the open file it named is committed under
    /// another of its names, or is kept without one.
    fn reattach(&mut self, detached: Detached) {
        match detached {
            Detached::Nothing => {}
            Detached::Orphan(node, meta) => {
                if let Some(file) = self.files.get_mut(&node) {
                    file.path = None;
                    file.orphan = meta;
                }
            }
            Detached::Renamed(node) => {
                let path = self
                    .inode_of(node)
                    .ok()
                    .and_then(|inode| self.fs.inode_to_path(inode).ok());
                // No name found (hidden, or a backend that cannot tell):
                // never the removed one; its commits then fail (EIO).
                if let Some(file) = self.files.get_mut(&node) {
                    file.path = path;
                }
            }
        }
    }

    /// After a rename, open files under the old name follow it.
    fn moved(&mut self, from: &Path, to: &Path) {
        for file in self.files.values_mut() {
            if let Some(path) = &file.path
                && let Ok(rest) = path.strip_prefix(from)
            {
                file.path = Some(if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                });
            }
        }
    }

    fn do_setattr(&mut self, ino: u64, changes: Changes) -> Result<FileAttr> {
        let Changes {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = changes;
        let path = self.path(ino)?;
        if mode.is_some() || uid.is_some() || gid.is_some() || size.is_some() {
            self.writable()?;
        }
        // Tools set what is already so (tar's fchown to the owner a file
        // already has): skip those, each is a backend transaction.
        let now = self.attr_of(ino)?;
        let mode = mode.filter(|m| m & 0o7777 != u32::from(now.perm));
        let uid = uid.filter(|&u| u != now.uid);
        let gid = gid.filter(|&g| g != now.gid);
        if let Some(size) = size {
            let held = self
                .files
                .get(&ino)
                .and_then(|f| f.data.as_ref())
                .map(Vec::len);
            match held {
                Some(from) => {
                    let to = usize::try_from(size).map_err(|_| libc::EFBIG)?;
                    self.orphan_room(from, to)?;
                    if let Some(file) = self.files.get_mut(&ino) {
                        if let Some(data) = file.data.as_mut() {
                            data.resize(to, 0);
                        }
                        file.dirty = true;
                    }
                }
                None => self.truncate(Some(ino), &path, size)?,
            }
        }
        if let Some(mode) = mode {
            self.fs
                .set_permissions(&path, Permissions::from_mode(mode))
                .map_err(fail)?;
        }
        if (uid.is_some() || gid.is_some()) && self.owner.is_none() {
            self.fs.set_owner(&path, uid, gid).map_err(fail)?;
        }
        if atime.is_some() || mtime.is_some() {
            // Buffered content first, so that its commit does not bump mtime later.
            self.commit(ino)?;
            self.fs
                .set_times(&path, atime.map(time), mtime.map(time))
                .map_err(fail)?;
        }
        self.attr_of(ino)
    }

    fn do_create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64)> {
        self.writable()?;
        let path = self.child(parent, name)?;
        match self.fs.symlink_metadata(&path) {
            Ok(_) if flags & libc::O_EXCL != 0 => return Err(libc::EEXIST),
            Ok(meta) if meta.is_dir() => return Err(libc::EISDIR),
            Ok(_) => {
                if flags & libc::O_TRUNC != 0 {
                    let open = self.open_node(&path);
                    self.truncate(open, &path, 0)?;
                }
            }
            Err(e) if e.kind() == FsErrorKind::NotFound => {
                self.fs.write(&path, &[]).map_err(fail)?;
                let mode = mode & 0o7777;
                if mode != 0o644 {
                    self.fs
                        .set_permissions(&path, Permissions::from_mode(mode))
                        .map_err(fail)?;
                }
                self.give_to_caller(req, parent, &path)?;
            }
            Err(e) => return Err(fail(e)),
        }
        let attr = self.attr_at(&path)?;
        let fh = self.new_handle(attr.ino, path, flags & libc::O_APPEND != 0);
        Ok((attr, fh))
    }

    fn list(&mut self, node: u64) -> Result<Vec<Listed>> {
        let path = self.path(node)?;
        let inode = self.inode_of(node)?;
        let parent = match anyfs::path::split_parent(&path) {
            Some((parent, _)) => self.fs.path_to_inode(&parent).map_err(fail)?,
            None => inode,
        };
        let mut out = vec![
            (inode, fuser::FileType::Directory, ".".into()),
            (parent, fuser::FileType::Directory, "..".into()),
        ];
        for entry in self.fs.read_dir(&path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            out.push((entry.inode, kind(entry.file_type), entry.name));
        }
        Ok(out)
    }
}

impl<B: FsFuse> Filesystem for AnyFuse<B> {
    fn init(
        &mut self,
        _req: &Request<'_>,
        config: &mut KernelConfig,
    ) -> std::result::Result<(), i32> {
        use fuser::consts::{FUSE_BIG_WRITES, FUSE_DO_READDIRPLUS, FUSE_READDIRPLUS_AUTO};
        let _ =
            config.add_capabilities(FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        let inos: Vec<u64> = self.files.keys().copied().collect();
        for ino in inos {
            if let Err(errno) = self.commit(ino) {
                tracing::error!(
                    ino,
                    errno,
                    "buffered writes could not be committed at unmount"
                );
            }
        }
        let _ = self.fs.sync();
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let result = (|| {
            check_name(name)?;
            let inode = self.fs.lookup(self.inode_of(parent)?, name).map_err(fail)?;
            let node = self.node_of(inode);
            self.attr_of(node)
        })();
        self.reply_entry(result, reply);
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        let open = self.files.contains_key(&ino);
        if self.nodes.forget(ino, nlookup, open) {
            self.seen.remove(&ino);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr_of(ino) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let changes = Changes {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        match self.do_setattr(ino, changes) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let result = self
            .path(ino)
            .and_then(|p| self.fs.read_link(&p).map_err(fail));
        match result {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            self.writable()?;
            let path = self.child(parent, name)?;
            self.fs.create_dir(&path).map_err(fail)?;
            let mode = mode & !umask & 0o7777;
            if mode != 0o755 {
                self.fs
                    .set_permissions(&path, Permissions::from_mode(mode))
                    .map_err(fail)?;
            }
            self.give_to_caller(req, parent, &path)?;
            self.attr_at(&path)
        })();
        self.reply_entry(result, reply);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let result = (|| {
            self.writable()?;
            let path = self.child(parent, name)?;
            let detached = self.detach(&path);
            let inode = self.fs.path_to_inode(&path).ok();
            self.fs.remove_file(&path).map_err(fail)?;
            self.reattach(detached);
            self.removed(inode);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let result = (|| {
            self.writable()?;
            let path = self.child(parent, name)?;
            let inode = self.fs.path_to_inode(&path).ok();
            self.fs.remove_dir(&path).map_err(fail)?;
            self.removed(inode);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            self.writable()?;
            let path = self.child(parent, link_name)?;
            self.fs.symlink(target, &path).map_err(fail)?;
            self.give_to_caller(req, parent, &path)?;
            self.attr_at(&path)
        })();
        self.reply_entry(result, reply);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            self.writable()?;
            let from = self.child(parent, name)?;
            let to = self.child(newparent, newname)?;
            if flags & !libc::RENAME_NOREPLACE != 0 {
                // RENAME_EXCHANGE and RENAME_WHITEOUT are not offered.
                return Err(libc::EINVAL);
            }
            if flags & libc::RENAME_NOREPLACE != 0 && self.fs.symlink_metadata(&to).is_ok() {
                return Err(libc::EEXIST);
            }
            // Commit buffered content first: it is written under its path.
            if let Some(node) = self.open_node(&from) {
                self.commit(node)?;
            }
            let (replaced, detached) = if from != to {
                let detached = self.detach(&to);
                (self.fs.path_to_inode(&to).ok(), detached)
            } else {
                (None, Detached::Nothing)
            };
            self.fs.rename(&from, &to).map_err(fail)?;
            self.moved(&from, &to);
            self.reattach(detached);
            if replaced != self.fs.path_to_inode(&to).ok() {
                self.removed(replaced);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            self.writable()?;
            self.commit(ino)?;
            let original = self.path(ino)?;
            let path = self.child(newparent, newname)?;
            self.fs.hard_link(&original, &path).map_err(fail)?;
            self.attr_of(ino)
        })();
        self.reply_entry(result, reply);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let result = (|| {
            let access = flags & libc::O_ACCMODE;
            if access != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                self.writable()?;
            }
            let path = self.path(ino)?;
            let attr = self.attr_of(ino)?;
            if attr.kind == fuser::FileType::Directory {
                return Err(libc::EISDIR);
            }
            let version = (attr.mtime, attr.size);
            let keep = self.seen.insert(ino, version) == Some(version);
            let fh = self.new_handle(ino, path, flags & libc::O_APPEND != 0);
            Ok((
                fh,
                if keep {
                    fuser::consts::FOPEN_KEEP_CACHE
                } else {
                    0
                },
            ))
        })();
        match result {
            Ok((fh, open_flags)) => reply.opened(fh, open_flags),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let offset = u64::try_from(offset).unwrap_or(0);
        if let Some(OpenFile {
            data: Some(data), ..
        }) = self.files.get(&ino)
        {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            reply.data(&data[start..end]);
            return;
        }
        let result = self.path(ino).and_then(|p| {
            let Some(OpenFile {
                patches: Some(patches),
                ..
            }) = self.files.get(&ino)
            else {
                return self.fs.read_range(&p, offset, size as usize).map_err(fail);
            };
            // The backend's bytes (zeros past its end), the buffered ones over them.
            let end = offset.saturating_add(u64::from(size)).min(patches.len());
            if offset >= end {
                return Ok(Vec::new());
            }
            let mut bytes = if offset < patches.base_len() {
                let len = (end.min(patches.base_len()) - offset) as usize;
                self.fs.read_range(&p, offset, len).map_err(fail)?
            } else {
                Vec::new()
            };
            bytes.resize((end - offset) as usize, 0);
            patches.overlay(offset, &mut bytes);
            Ok(bytes)
        });
        match result {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let result = (|| {
            self.writable()?;
            let append = self.handles.get(&fh).is_some_and(|h| h.append);
            if let Some(n) = self.buffer_write(ino, append, offset, data)? {
                return Ok(n);
            }
            // Held whole (unlinked while open): written in memory.
            let file = self.files.get_mut(&ino).ok_or(libc::EBADF)?;
            let buf = file.data.as_mut().ok_or(libc::EBADF)?;
            let at = if append {
                buf.len()
            } else {
                usize::try_from(offset).map_err(|_| libc::EINVAL)?
            };
            let end = at.checked_add(data.len()).ok_or(libc::EFBIG)?;
            let held = buf.len();
            let growth = end.saturating_sub(held) as u64;
            self.orphan_room(held, end)?;
            if growth > 0 && !self.has_room(growth) {
                return Err(libc::ENOSPC);
            }
            let file = self.files.get_mut(&ino).ok_or(libc::EBADF)?;
            let buf = file.data.as_mut().ok_or(libc::EBADF)?;
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[at..end].copy_from_slice(data);
            file.dirty = true;
            Ok(data.len() as u32)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        match self.commit(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.commit(ino);
        self.release_handle(ino, fh);
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.commit(ino).and_then(|()| {
            let path = self.path(ino)?;
            self.fs.fsync(&path).map_err(fail)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.list(ino) {
            Ok(entries) => {
                let fh = self.next_fh;
                self.next_fh += 1;
                self.dirs.insert(fh, entries);
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.listing(fh, offset) else {
            reply.error(libc::EBADF);
            return;
        };
        for (i, (inode, kind, name)) in entries {
            let node = self.node_of(inode);
            if reply.add(node, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(entries) = self.listing(fh, offset) else {
            reply.error(libc::EBADF);
            return;
        };
        for (i, (inode, _, name)) in entries {
            let node = self.node_of(inode);
            let Ok(attr) = self.attr_of(node) else {
                // Gone since the directory was opened.
                continue;
            };
            if reply.add(node, (i + 1) as i64, &name, &self.ttl, &attr, 0) {
                break;
            }
            // The kernel keeps a reference to every entry but `.` and `..`.
            if name != "." && name != ".." {
                self.nodes.looked_up(node);
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.dirs.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.sync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail(e)),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => {
                let bsize = u64::from(s.block_size.max(512));
                reply.statfs(
                    s.total_bytes / bsize,
                    s.available_bytes / bsize,
                    s.available_bytes / bsize,
                    s.total_inodes,
                    s.available_inodes,
                    bsize as u32,
                    s.max_name_len,
                    bsize as u32,
                );
            }
            Err(e) => reply.error(fail(e)),
        }
    }

    /// Regular files only: FIFOs, sockets and devices are not stored
    /// (`EPERM`, as for a filesystem without that node type).
    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(libc::EPERM);
            return;
        }
        let result = self
            .do_create(req, parent, name, mode & !umask, libc::O_EXCL)
            .map(|(attr, fh)| {
                self.release_handle(attr.ino, fh);
                attr
            });
        self.reply_entry(result, reply);
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(req, parent, name, mode & !umask, flags) {
            Ok((attr, fh)) => {
                self.nodes.looked_up(attr.ino);
                reply.created(&self.ttl, &attr, 0, fh, 0)
            }
            Err(e) => reply.error(e),
        }
    }
}
