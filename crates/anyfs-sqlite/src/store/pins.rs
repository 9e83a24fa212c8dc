//! Inodes held open by handles and streams. A node whose last name goes
//! away while it is pinned lives on, without a name, until its last pin is
//! dropped (as an unlinked file does on a host filesystem).

use std::collections::HashMap;

use parking_lot::Mutex;

/// How many handles and streams hold each inode.
#[derive(Default)]
pub(super) struct Pins {
    counts: Mutex<HashMap<i64, u32>>,
}

impl Pins {
    /// Holds `ino` once more.
    pub(super) fn pin(&self, ino: i64) {
        *self.counts.lock().entry(ino).or_insert(0) += 1;
    }

    /// Lets go of `ino` once; true if that was its last pin.
    pub(super) fn unpin(&self, ino: i64) -> bool {
        let mut counts = self.counts.lock();
        match counts.get_mut(&ino) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                counts.remove(&ino);
                true
            }
            None => false,
        }
    }

    /// Whether anything holds any inode.
    pub(super) fn any(&self) -> bool {
        !self.counts.lock().is_empty()
    }

    /// Whether anything holds `ino`.
    pub(super) fn is_pinned(&self, ino: i64) -> bool {
        self.counts.lock().contains_key(&ino)
    }
}
