//! Directories and links: [`FsDir`] (listing, creating and removing
//! directories, whole trees too) and [`FsLink`] (symbolic links, whose
//! targets are sealed, and hard links).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyfs::path::{self as vpath};
use anyfs::{DirEntry, FsDir, FsError, FsLink, FsRead, FsResult, Metadata, ReadDir};
use deadpool_postgres::{GenericClient, Transaction};

use super::reads::Reads;
use super::tree::{DIR, FILE, ROOT, SYMLINK, file_type, now_ns};
use super::{ObjectBackend, Tx};

impl ObjectBackend {
    /// The target of symlink `ino` (at `path`).
    pub(crate) async fn target_of(&self, tx: &impl Reads, path: &Path, ino: i64) -> Tx<PathBuf> {
        let node = self.node_in(tx, path, ino).await?;
        match (node.kind, node.target) {
            (SYMLINK, Some(sealed)) => {
                let target = self.names.open_target(path, self.scope, ino, &sealed)?;
                Ok(PathBuf::from(OsString::from_vec(target)))
            }
            _ => Err(FsError::invalid_path(path, "not a symbolic link").into()),
        }
    }

    /// Creates directory `name` in `parent`.
    async fn make_dir(&self, tx: &Transaction<'_>, parent: i64, name: &[u8], now: i64) -> Tx<i64> {
        let ino = self.alloc(tx, DIR, 0o755, self.owner_ids(), now).await?;
        self.link(tx, parent, name, ino, true, now).await?;
        Ok(ino)
    }
}

/// The listing entry of `name` (node `ino` of `kind`) in directory `dir`.
fn dir_entry(dir: &Path, name: Vec<u8>, ino: i64, kind: i16) -> DirEntry {
    let name = OsString::from_vec(name);
    DirEntry {
        path: vpath::join(dir, &name),
        file_type: file_type(kind),
        inode: ino as u64,
        name,
    }
}

impl FsDir for ObjectBackend {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.view(path, "read_dir", async |tx| {
            let node = self.lookup(tx, path).await?;
            if node.kind != DIR {
                return Err(FsError::not_a_directory(path).into());
            }
            self.entries(tx.db()?, path, node.ino).await
        })?;
        let listing = entries
            .into_iter()
            .map(|(name, ino, kind)| dir_entry(path, name, ino, kind))
            .collect();
        Ok(ReadDir::from_entries(listing))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "create_dir", async |tx| {
            let (parent, name) = self.slot(tx, path).await?;
            if self.child(tx, parent, name.as_bytes()).await?.is_some() {
                return Err(FsError::already_exists(path).into());
            }
            self.make_dir(tx, parent, name.as_bytes(), now)
                .await
                .map(drop)
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = vpath::resolved_components(path)?;
        let now = now_ns();
        self.change(path, "create_dir_all", async |tx| {
            let mut dir = ROOT;
            for (i, name) in names.iter().enumerate() {
                dir = match self.child(tx, dir, name.as_bytes()).await? {
                    Some((ino, DIR)) => ino,
                    Some((_, SYMLINK)) => return Err(vpath::crosses_symlink(path).into()),
                    Some(_) if i + 1 == names.len() => {
                        return Err(FsError::already_exists(path).into());
                    }
                    Some(_) => return Err(FsError::not_a_directory(path).into()),
                    None => self.make_dir(tx, dir, name.as_bytes(), now).await?,
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "remove_dir", async |tx| {
            let (parent, name) = self.slot(tx, path).await?;
            let (ino, kind) = self
                .child(tx, parent, name.as_bytes())
                .await?
                .ok_or_else(|| FsError::not_found(path))?;
            if kind != DIR {
                return Err(FsError::not_a_directory(path).into());
            }
            if self.has_entries(tx, ino).await? {
                return Err(FsError::directory_not_empty(path).into());
            }
            let gone = self.unlink(tx, path, parent, name.as_bytes(), now).await?;
            self.free_unless_pinned(tx, path, gone).await
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(path, "remove_dir_all", async |tx| {
            let (parent, name) = self.slot(tx, path).await?;
            let (ino, kind) = self
                .child(tx, parent, name.as_bytes())
                .await?
                .ok_or_else(|| FsError::not_found(path))?;
            if kind == FILE {
                return Err(FsError::not_a_directory(path).into());
            }
            if kind == DIR {
                // Empty the tree, deepest first, in this one transaction.
                let mut order = Vec::new();
                let mut stack = vec![ino];
                while let Some(dir) = stack.pop() {
                    order.push(dir);
                    for (_, child, kind) in self.entries(tx, path, dir).await? {
                        if kind == DIR {
                            stack.push(child);
                        }
                    }
                }
                for dir in order.into_iter().rev() {
                    for (child_name, _, _) in self.entries(tx, path, dir).await? {
                        let gone = self.unlink(tx, path, dir, &child_name, now).await?;
                        self.free_unless_pinned(tx, path, gone).await?;
                    }
                }
            }
            let gone = self.unlink(tx, path, parent, name.as_bytes(), now).await?;
            self.free_unless_pinned(tx, path, gone).await
        })
    }
}

impl FsLink for ObjectBackend {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        vpath::validate(target)?;
        let now = now_ns();
        let bytes = target.as_os_str().as_bytes();
        self.change(link, "symlink", async |tx| {
            let (parent, name) = self.slot(tx, link).await?;
            if self.child(tx, parent, name.as_bytes()).await?.is_some() {
                return Err(FsError::already_exists(link).into());
            }
            let ino = self
                .alloc(tx, SYMLINK, 0o777, self.owner_ids(), now)
                .await?;
            let sealed = self.names.seal_target(self.scope, ino, bytes)?;
            tx.execute(
                "UPDATE fs_nodes SET target = $3, size = $4 WHERE workspace = $1 AND ino = $2",
                &[&self.workspace, &ino, &sealed, &(bytes.len() as i64)],
            )
            .await?;
            self.link(tx, parent, name.as_bytes(), ino, false, now)
                .await
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let now = now_ns();
        self.change(link, "hard_link", async |tx| {
            let (src_parent, src_name) = self.slot(tx, original).await?;
            let (ino, kind) = self
                .child(tx, src_parent, src_name.as_bytes())
                .await?
                .ok_or_else(|| FsError::not_found(original))?;
            if kind == DIR {
                return Err(FsError::permission_denied(original, "hard_link a directory").into());
            }
            let (parent, name) = self.slot(tx, link).await?;
            if self.child(tx, parent, name.as_bytes()).await?.is_some() {
                return Err(FsError::already_exists(link).into());
            }
            self.link(tx, parent, name.as_bytes(), ino, false, now)
                .await
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.view(path, "read_link", async |tx| {
            let node = self.lookup(tx, path).await?;
            self.target_of(tx, path, node.ino).await
        })
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}
