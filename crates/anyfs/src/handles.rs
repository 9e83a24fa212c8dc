//! [`HandleTable`]: the open handles of a backend or a middleware, and what
//! each one stands for.

use rustc_hash::FxHashMap;

use crate::error::{FsError, FsResult};
use crate::types::Handle;

/// Open handles, each with a value of `T` (an open file's node and flags,
/// the path a policy judges a handle by, the size a quota charged).
///
/// A backend hands out handles with [`open`](Self::open), numbered from 1
/// and never reused while the table lives; a middleware remembers
/// something about a handle its inner backend gave with
/// [`insert`](Self::insert). The table takes no lock of its own: it lives
/// under the lock that guards what its values refer to, so that a handle
/// and its file change together. Put it in an `Arc<Mutex<…>>` to share it
/// between clones.
///
/// ```
/// use anyfs::{Handle, HandleTable};
///
/// let mut open = HandleTable::new();
/// let a = open.open("/a.txt");
/// let b = open.open("/b.txt");
/// assert_ne!(a, b);
/// assert_eq!(open.get(a), Some(&"/a.txt"));
/// assert_eq!(open.remove(a), Some("/a.txt"));
/// assert_eq!(open.get(a), None);
/// assert_eq!(open.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct HandleTable<T> {
    open: FxHashMap<Handle, T>,
    next: u64,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> HandleTable<T> {
    /// An empty table whose first handle is 1.
    pub fn new() -> Self {
        Self {
            open: FxHashMap::default(),
            next: 1,
        }
    }

    /// A new handle for `value`.
    pub fn open(&mut self, value: T) -> Handle {
        let handle = Handle(self.next);
        self.next += 1;
        self.open.insert(handle, value);
        handle
    }

    /// Remembers `value` for a handle given elsewhere (by the backend
    /// below a middleware), replacing what was remembered for it.
    pub fn insert(&mut self, handle: Handle, value: T) {
        self.open.insert(handle, value);
    }

    /// What `handle` stands for, if it is open.
    pub fn get(&self, handle: Handle) -> Option<&T> {
        self.open.get(&handle)
    }

    /// What `handle` stands for, or `NotFound` naming the handle.
    pub fn lookup(&self, handle: Handle) -> FsResult<&T> {
        self.open.get(&handle).ok_or_else(|| not_open(handle))
    }

    /// What `handle` stands for, to change it.
    pub fn get_mut(&mut self, handle: Handle) -> Option<&mut T> {
        self.open.get_mut(&handle)
    }

    /// Closes `handle`, giving back what it stood for.
    pub fn remove(&mut self, handle: Handle) -> Option<T> {
        self.open.remove(&handle)
    }

    /// Closes `handle`, giving back what it stood for, or `NotFound`
    /// naming the handle.
    pub fn close(&mut self, handle: Handle) -> FsResult<T> {
        self.open.remove(&handle).ok_or_else(|| not_open(handle))
    }

    /// How many handles are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Closes every handle (numbers already handed out stay unused).
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// The open handles and their values.
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.open.iter().map(|(h, v)| (*h, v))
    }
}

/// The error for a handle that is not open.
fn not_open(handle: Handle) -> FsError {
    FsError::not_found(format!("<handle {}>", handle.0))
}
