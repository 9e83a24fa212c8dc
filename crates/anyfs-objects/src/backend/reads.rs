//! Reads of the tree — names, nodes, extents — from a transaction or from
//! what this process read before ([`ReadCache`]).
//!
//! Every change to a workspace moves its `version` on, in the transaction
//! that makes the change ([`ObjectBackend::change`]). What a read-only view
//! reads in its snapshot is remembered with the version of that snapshot.
//! The next view first asks the database for the version — one statement,
//! no transaction — and if it has not moved answers from what was
//! remembered, without another round trip. An answer from the cache is
//! therefore never older than the last change committed, whichever node
//! made it: a write acknowledged by one node is seen by the next read on
//! any other.
//!
//! Functions that walk the tree take `&impl Reads`: a [`Transaction`] (the
//! changes, and views the cache could not answer) or a [`View`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use deadpool_postgres::{GenericClient, Transaction};
use parking_lot::Mutex;

use super::content::Extent;
use super::tree::{self, Node};
use super::{Fail, ObjectBackend, Tx};

/// The most a node remembers of one workspace, counted in names, nodes
/// and extents (each some 100 bytes: about 1 MiB); past it the cache
/// starts again empty. A service keeps up to `--max-open-workspaces` of
/// them.
const MOST_REMEMBERED: usize = 10_000;

/// The statement that reads a workspace's version.
pub(crate) const VERSION_SQL: &str = "SELECT version FROM fs_workspaces WHERE id = $1";

/// A name in a directory: `(parent inode, name)`.
type Slot = (i64, Vec<u8>);
/// What a name names: its inode and kind, or `None`: no such name.
type Named = Option<(i64, i16)>;

/// What walking the tree reads.
pub(crate) trait Reads {
    /// The inode and kind named `name` in directory `parent`.
    async fn child(&self, fs: &ObjectBackend, parent: i64, name: &[u8]) -> Tx<Option<(i64, i16)>>;
    /// Node `ino`; `NotFound` about `path` if there is none.
    async fn node(&self, fs: &ObjectBackend, path: &Path, ino: i64) -> Tx<Node>;
    /// The extents of file `ino` that overlap bytes `range`, in order.
    async fn extents(
        &self,
        fs: &ObjectBackend,
        path: &Path,
        ino: i64,
        range: (i64, i64),
    ) -> Tx<Vec<Extent>>;
}

impl Reads for Transaction<'_> {
    async fn child(&self, fs: &ObjectBackend, parent: i64, name: &[u8]) -> Tx<Option<(i64, i16)>> {
        fs.child_row(self, parent, name).await
    }

    async fn node(&self, fs: &ObjectBackend, path: &Path, ino: i64) -> Tx<Node> {
        tree::node(self, path, fs.workspace, ino).await
    }

    async fn extents(
        &self,
        fs: &ObjectBackend,
        path: &Path,
        ino: i64,
        range: (i64, i64),
    ) -> Tx<Vec<Extent>> {
        fs.extent_rows(self, path, ino, range).await
    }
}

/// What a read-only view reads through: the cache at a version the
/// database just confirmed, or a snapshot whose reads are remembered.
pub(crate) struct View<'a, 't> {
    source: Source<'a, 't>,
}

enum Source<'a, 't> {
    Cached {
        cache: &'a ReadCache,
        version: i64,
    },
    Snapshot {
        tx: &'a Transaction<'t>,
        seen: RefCell<Seen>,
    },
}

impl<'a, 't> View<'a, 't> {
    /// A view answered from `cache` at `version` only.
    pub(crate) fn cached(cache: &'a ReadCache, version: i64) -> Self {
        Self {
            source: Source::Cached { cache, version },
        }
    }

    /// A view over the snapshot `tx`, remembering what it reads.
    pub(crate) fn snapshot(tx: &'a Transaction<'t>) -> Self {
        Self {
            source: Source::Snapshot {
                tx,
                seen: RefCell::default(),
            },
        }
    }

    /// The transaction, for a read the cache does not keep (listings,
    /// counts): a cached view answers [`Fail::Miss`] and the view is run
    /// again over a snapshot.
    pub(crate) fn db(&self) -> Tx<&'a Transaction<'t>> {
        match &self.source {
            Source::Snapshot { tx, .. } => Ok(tx),
            Source::Cached { .. } => Err(Fail::Miss),
        }
    }

    /// What the view read from its snapshot (nothing, for a cached view).
    pub(crate) fn into_seen(self) -> Seen {
        match self.source {
            Source::Snapshot { seen, .. } => seen.into_inner(),
            Source::Cached { .. } => Seen::default(),
        }
    }
}

impl Reads for View<'_, '_> {
    async fn child(&self, fs: &ObjectBackend, parent: i64, name: &[u8]) -> Tx<Option<(i64, i16)>> {
        match &self.source {
            Source::Cached { cache, version } => cache
                .with(*version, |g| {
                    g.children.get(&(parent, name.to_vec())).copied()
                })
                .ok_or(Fail::Miss),
            Source::Snapshot { tx, seen } => {
                let found = tx.child(fs, parent, name).await?;
                seen.borrow_mut()
                    .children
                    .push(((parent, name.to_vec()), found));
                Ok(found)
            }
        }
    }

    async fn node(&self, fs: &ObjectBackend, path: &Path, ino: i64) -> Tx<Node> {
        match &self.source {
            Source::Cached { cache, version } => cache
                .with(*version, |g| g.nodes.get(&ino).cloned())
                .ok_or(Fail::Miss),
            Source::Snapshot { tx, seen } => {
                let node = Reads::node(*tx, fs, path, ino).await?;
                seen.borrow_mut().nodes.push(node.clone());
                Ok(node)
            }
        }
    }

    async fn extents(
        &self,
        fs: &ObjectBackend,
        path: &Path,
        ino: i64,
        range: (i64, i64),
    ) -> Tx<Vec<Extent>> {
        let key = (ino, range.0, range.1);
        match &self.source {
            Source::Cached { cache, version } => cache
                .with(*version, |g| g.extents.get(&key).cloned())
                .ok_or(Fail::Miss),
            Source::Snapshot { tx, seen } => {
                let extents = Reads::extents(*tx, fs, path, ino, range).await?;
                seen.borrow_mut().extents.push((key, extents.clone()));
                Ok(extents)
            }
        }
    }
}

/// What a view read from its snapshot.
#[derive(Default)]
pub(crate) struct Seen {
    children: Vec<(Slot, Named)>,
    nodes: Vec<Node>,
    extents: Vec<((i64, i64, i64), Vec<Extent>)>,
}

/// What this process read of one workspace, at one version.
#[derive(Default)]
pub(crate) struct ReadCache {
    current: Mutex<Option<Generation>>,
}

struct Generation {
    version: i64,
    /// What each name names (`None`: no such name).
    children: HashMap<Slot, Named>,
    nodes: HashMap<i64, Node>,
    /// `(ino, from, to)` to the extents a read of that range found.
    extents: HashMap<(i64, i64, i64), Vec<Extent>>,
    /// What it holds, counted as [`MOST_REMEMBERED`] counts.
    weight: usize,
}

impl Generation {
    fn new(version: i64) -> Self {
        Self {
            version,
            children: HashMap::new(),
            nodes: HashMap::new(),
            extents: HashMap::new(),
            weight: 0,
        }
    }
}

impl Seen {
    /// What remembering it adds, counted as [`MOST_REMEMBERED`] counts.
    fn weight(&self) -> usize {
        let extents: usize = self.extents.iter().map(|(_, list)| 1 + list.len()).sum();
        self.children.len() + self.nodes.len() + extents
    }
}

impl ReadCache {
    /// The version what is remembered was read at, if anything is.
    pub(crate) fn version(&self) -> Option<i64> {
        self.current.lock().as_ref().map(|g| g.version)
    }

    /// `find` over what is remembered, if that is still at `version`.
    fn with<T>(&self, version: i64, find: impl FnOnce(&Generation) -> Option<T>) -> Option<T> {
        self.current
            .lock()
            .as_ref()
            .filter(|g| g.version == version)
            .and_then(find)
    }

    /// Remembers what a snapshot at `version` read. A snapshot older than
    /// what is remembered is dropped; a newer one replaces it.
    pub(crate) fn remember(&self, version: i64, seen: Seen) {
        let mut current = self.current.lock();
        match current.as_ref().map(|g| g.version) {
            Some(known) if known > version => return,
            Some(known) if known == version => {}
            _ => *current = Some(Generation::new(version)),
        }
        let Some(g) = current.as_mut() else { return };
        let weight = seen.weight();
        if weight > MOST_REMEMBERED {
            return;
        }
        if g.weight + weight > MOST_REMEMBERED {
            *g = Generation::new(version);
        }
        g.weight += weight;
        g.children.extend(seen.children);
        g.nodes.extend(seen.nodes.into_iter().map(|n| (n.ino, n)));
        g.extents.extend(seen.extents);
    }
}

/// The version of `workspace` now (`None`: it is gone), outside any
/// transaction.
pub(crate) async fn version_now(client: &impl GenericClient, workspace: i64) -> Tx<Option<i64>> {
    let stmt = client.prepare_cached(VERSION_SQL).await?;
    Ok(client
        .query_opt(&stmt, &[&workspace])
        .await?
        .map(|r| r.get(0)))
}

thread_local! {
    /// Inside [`consistent_reads`]: the workspaces whose version a view on
    /// this thread confirmed, with that version.
    static CONFIRMED: RefCell<Option<HashMap<i64, i64>>> = const { RefCell::new(None) };
}

/// Runs `work` with the reads of every [`ObjectBackend`](crate::ObjectBackend)
/// on this thread as of one moment per workspace: the first read of a
/// workspace inside `work` confirms its version with the database, and
/// later reads answer from what the node read at that version without
/// asking again. A change made inside `work` ends that (the next read asks
/// again, and sees the change), and so does a read the node cannot answer
/// from memory (it reads the database as it is then); changes other nodes
/// make meanwhile are otherwise seen once `work` returns.
///
/// For a request that reads a workspace several times (a check, then the
/// read): it costs one round trip to the database instead of one per
/// read. Nested calls share the outer one's moment.
pub fn consistent_reads<T>(work: impl FnOnce() -> T) -> T {
    /// Ends the scope however `work` ends, a panic included.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            CONFIRMED.with(|c| c.borrow_mut().take());
        }
    }
    if CONFIRMED.with(|c| c.borrow().is_some()) {
        return work();
    }
    CONFIRMED.with(|c| *c.borrow_mut() = Some(HashMap::new()));
    let _scope = Scope;
    work()
}

/// An SQL expression that a query of the caller's own can carry, to read
/// in the same round trip the version of one account's workspace: the
/// workspace named by the SQL expression `name` (a bound parameter, such
/// as `$2`) of the account whose id is the SQL expression `account`, as
/// `ARRAY[id, version]` (`bigint[]`), NULL when there is none. What it
/// reads goes to [`seen_version`].
///
/// For a service whose every request starts with a query of its own in
/// the same database (authentication): a request that only reads then
/// needs no statement of its own while the node's cache is current.
///
/// ```
/// let sql = format!(
///     "SELECT a.id, {} FROM accounts a WHERE a.secret_digest = $1",
///     anyfs_objects::workspace_version_sql("a.id", "$2"),
/// );
/// assert!(sql.contains("fs_workspaces"));
/// ```
pub fn workspace_version_sql(account: &str, name: &str) -> String {
    format!(
        "(SELECT ARRAY[w.id, w.version] FROM fs_workspaces w \
         WHERE w.account = {account} AND w.name = {name})"
    )
}

/// Inside [`consistent_reads`], records what an expression from
/// [`workspace_version_sql`] read (`None`: SQL NULL, no workspace): the
/// version the workspace had while this request was being answered, as
/// the first read of [`consistent_reads`] would have confirmed it. Outside
/// [`consistent_reads`], and for anything but `[id, version]`, it does
/// nothing.
pub fn seen_version(seen: Option<&[i64]>) {
    if let Some(&[workspace, version]) = seen {
        confirm(workspace, Some(version));
    }
}

/// Whether, inside [`consistent_reads`], `workspace` was confirmed at
/// `version` on this thread.
pub(crate) fn confirmed(workspace: i64, version: i64) -> bool {
    CONFIRMED.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|m| m.get(&workspace) == Some(&version))
    })
}

/// Records, inside [`consistent_reads`], that `workspace` is at `version`
/// (`None`: forget it, after a change).
pub(crate) fn confirm(workspace: i64, version: Option<i64>) {
    CONFIRMED.with(|c| {
        if let Some(m) = c.borrow_mut().as_mut() {
            match version {
                Some(v) => m.insert(workspace, v),
                None => m.remove(&workspace),
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` names that name nothing, in directories `from ..`.
    fn names(from: i64, n: usize) -> Seen {
        Seen {
            children: (from..)
                .take(n)
                .map(|d| ((d, b"x".to_vec()), None))
                .collect(),
            ..Seen::default()
        }
    }

    fn knows(cache: &ReadCache, version: i64, dir: i64) -> bool {
        cache
            .with(version, |g| g.children.get(&(dir, b"x".to_vec())).copied())
            .is_some()
    }

    #[test]
    fn what_is_remembered_stays_within_its_bound_and_its_version() {
        let cache = ReadCache::default();
        cache.remember(1, names(0, 10));
        assert!(knows(&cache, 1, 3));
        assert!(!knows(&cache, 2, 3), "only at the version it was read at");

        // More than the bound at once: not kept, the rest stays.
        cache.remember(1, names(100, MOST_REMEMBERED + 1));
        assert!(!knows(&cache, 1, 100));
        assert!(knows(&cache, 1, 3));

        // Past the bound: it starts again, with the new reads.
        cache.remember(1, names(1_000, MOST_REMEMBERED - 5));
        assert!(!knows(&cache, 1, 3));
        assert!(knows(&cache, 1, 1_000));

        // An older snapshot is dropped; a newer one replaces everything.
        cache.remember(0, names(5_000, 1));
        assert!(!knows(&cache, 0, 5_000) && cache.version() == Some(1));
        cache.remember(2, names(6_000, 1));
        assert_eq!(cache.version(), Some(2));
        assert!(knows(&cache, 2, 6_000) && !knows(&cache, 2, 1_000));
    }
}
