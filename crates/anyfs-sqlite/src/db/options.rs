//! How a database is opened: [`SqliteOptions`] and [`Durability`].

use std::time::Duration;

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the
    /// process, and the database is never corrupted; a power cut may lose
    /// the last commits. The default, and much faster.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it returns, so it
    /// survives a power cut too.
    Full,
}

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Commit durability (default [`Durability::Normal`]).
    pub durability: Durability,
    /// Page cache per connection, in KiB (default 16 MiB).
    pub cache_kib: u32,
    /// How long to wait for another process's lock (default 5 s).
    pub busy_timeout: Duration,
    /// The most idle reader connections kept open (default 4).
    pub max_idle_readers: usize,
    /// How much of the file to read through a memory map instead of copies
    /// (default 1 GiB of address space; ignored for encrypted databases).
    pub mmap_bytes: u64,
    /// Group commit: acknowledge each write at once and commit the writes
    /// together at most this long after the first of them (default `None`:
    /// every write is its own commit).
    ///
    /// Writes are visible to every reader as soon as they return, and each
    /// stays all-or-nothing. Small writes in a burst then cost one commit
    /// instead of one each — for a mounted workspace, several times faster.
    /// The price: if the process dies, the writes of the last window are
    /// lost (whole, never in part; the database is never damaged).
    /// [`sync`](anyfs::FsSync::sync), [`fsync`](anyfs::FsSync::fsync), a
    /// batch and closing the backend commit at once. A commit that fails in
    /// the background is reported by the next write or sync.
    pub group_commit: Option<Duration>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            cache_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(5),
            max_idle_readers: 4,
            mmap_bytes: 1 << 30,
            group_commit: None,
        }
    }
}

impl SqliteOptions {
    /// Every commit durable across power loss (`synchronous=FULL`).
    pub fn durable() -> Self {
        Self {
            durability: Durability::Full,
            ..Self::default()
        }
    }
}
