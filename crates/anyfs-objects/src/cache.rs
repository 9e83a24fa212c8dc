//! [`RecordCache`]: opened records of blobs, kept in this process's memory
//! up to a byte budget, the least recently used going first.
//!
//! A blob never changes once written, so a cached record can never be
//! stale: there is nothing to invalidate, on this node or any other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::blob::BlobId;

type RecordKey = (BlobId, u64);

/// Plaintext records by blob and index, bounded by their total size.
#[derive(Debug)]
pub(crate) struct RecordCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<RecordKey, (Arc<[u8]>, u64)>,
    /// Last use (a counter) to key, oldest first.
    by_use: BTreeMap<u64, RecordKey>,
    clock: u64,
    bytes: usize,
}

impl RecordCache {
    /// A cache holding up to `budget` bytes of plaintext (0: none).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Record `index` of blob `id`, if cached.
    pub(crate) fn get(&self, id: BlobId, index: u64) -> Option<Arc<[u8]>> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let (record, used) = inner.records.get_mut(&(id, index))?;
        inner.by_use.remove(used);
        *used = inner.clock;
        inner.by_use.insert(inner.clock, (id, index));
        Some(record.clone())
    }

    /// Keeps record `index` of blob `id`, making room by dropping the least
    /// recently used.
    pub(crate) fn insert(&self, id: BlobId, index: u64, record: Arc<[u8]>) {
        if record.len() > self.budget {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let len = record.len();
        if let Some((old, used)) = inner.records.insert((id, index), (record, inner.clock)) {
            inner.by_use.remove(&used);
            inner.bytes -= old.len();
        }
        inner.by_use.insert(inner.clock, (id, index));
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some((_, key)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((gone, _)) = inner.records.remove(&key) {
                inner.bytes -= gone.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first() {
        let cache = RecordCache::new(10);
        let id = BlobId::from_slice(&[1; 16]).unwrap();
        cache.insert(id, 0, Arc::from(&[0u8; 4][..]));
        cache.insert(id, 1, Arc::from(&[1u8; 4][..]));
        assert!(cache.get(id, 0).is_some()); // 1 is now the oldest
        cache.insert(id, 2, Arc::from(&[2u8; 4][..]));
        assert!(cache.get(id, 1).is_none());
        assert!(cache.get(id, 0).is_some());
        assert!(cache.get(id, 2).is_some());
        cache.insert(id, 3, Arc::from(&[3u8; 11][..])); // over the budget alone
        assert!(cache.get(id, 3).is_none());
    }
}
