//! Paths already resolved, so that a repeated read or `metadata` of the
//! same path skips the walk from the root. Entries hold for one write
//! generation of the database: any write makes the whole cache stale, so
//! an entry can never name something that changed (this process owns the
//! database).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use parking_lot::RwLock;

/// The most paths kept; the cache starts over when full.
const LIMIT: usize = 1 << 16;

/// Resolved path -> (inode, kind), as of one write generation.
#[derive(Default)]
pub(super) struct PathCache {
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<Box<[u8]>, (i64, i64)>,
}

impl PathCache {
    /// The inode and kind `path` resolved to, if it was looked up at the
    /// database's `current` generation.
    pub(super) fn get(&self, path: &Path, current: u64) -> Option<(i64, i64)> {
        let entries = self.entries.read();
        if entries.generation != current {
            return None;
        }
        entries.map.get(path.as_os_str().as_bytes()).copied()
    }

    /// Remembers a lookup made in a snapshot at `generation`; kept only if
    /// that is still the database's `current` one (asked with the cache
    /// locked, so a stale lookup never replaces newer entries).
    pub(super) fn remember(
        &self,
        path: &Path,
        generation: u64,
        current: impl FnOnce() -> u64,
        (ino, kind): (i64, i64),
    ) {
        let mut entries = self.entries.write();
        if current() != generation {
            return;
        }
        if entries.generation != generation || entries.map.len() >= LIMIT {
            entries.map.clear();
            entries.generation = generation;
        }
        entries
            .map
            .insert(path.as_os_str().as_bytes().into(), (ino, kind));
    }
}
