//! Directories and links: [`FsDir`] (listing, creating and removing
//! directories, whole trees too) and [`FsLink`] (symbolic and hard links).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyfs::path::{self as vpath};
use anyfs::{DirEntry, FsDir, FsError, FsLink, FsRead, FsResult, Metadata, ReadDir};

use super::node::{KIND_DIR, KIND_FILE, KIND_SYMLINK, file_type};
use super::queries;
use super::{Content, Store, now_ns};

impl<C: Content> FsDir for Store<C> {
    fn read_dir(&self, path: &Path) -> FsResult<ReadDir> {
        let entries = self.db.read(|conn| {
            let ino = queries::lookup(conn, self.tree, path)?;
            if queries::node(conn, path, ino)?.kind != KIND_DIR {
                return Err(FsError::not_a_directory(path));
            }
            queries::entries(conn, path, ino)
        })?;
        let dir = path.to_path_buf();
        let tree = self.tree;
        Ok(ReadDir::from_entries(
            entries
                .into_iter()
                .map(|(name, ino, kind)| {
                    let name = OsString::from_vec(name);
                    DirEntry {
                        path: vpath::join(&dir, &name),
                        name,
                        file_type: file_type(kind),
                        inode: tree.local(ino),
                    }
                })
                .collect(),
        ))
    }

    fn create_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, _| {
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            if queries::child(tx, path, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(path));
            }
            let ino = queries::alloc(
                tx,
                (self.tree, path),
                KIND_DIR,
                0o755,
                self.owner,
                None,
                now,
            )?;
            queries::link(tx, path, parent, name.as_bytes(), ino, true, now)
        })
    }

    fn create_dir_all(&self, path: &Path) -> FsResult<()> {
        let names = vpath::resolved_components(path)?;
        let now = now_ns();
        self.db_write(path, |tx, _| {
            let mut dir = self.tree.root();
            for (i, name) in names.iter().enumerate() {
                dir = match queries::child(tx, path, dir, name.as_bytes())? {
                    Some((ino, KIND_DIR)) => ino,
                    Some((_, KIND_SYMLINK)) => {
                        return Err(vpath::crosses_symlink(path));
                    }
                    Some(_) if i + 1 == names.len() => {
                        return Err(FsError::already_exists(path));
                    }
                    Some(_) => return Err(FsError::not_a_directory(path)),
                    None => {
                        let ino = queries::alloc(
                            tx,
                            (self.tree, path),
                            KIND_DIR,
                            0o755,
                            self.owner,
                            None,
                            now,
                        )?;
                        queries::link(tx, path, dir, name.as_bytes(), ino, true, now)?;
                        ino
                    }
                };
            }
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            let (ino, kind) = queries::child(tx, path, parent, name.as_bytes())?
                .ok_or_else(|| FsError::not_found(path))?;
            if kind != KIND_DIR {
                return Err(FsError::not_a_directory(path));
            }
            if queries::has_entries(tx, path, ino)? {
                return Err(FsError::directory_not_empty(path));
            }
            let gone = queries::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.free_unless_pinned(tx, path, gone, removals)
        })
    }

    fn remove_dir_all(&self, path: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(path, |tx, removals| {
            let (parent, name) = queries::slot(tx, self.tree, path)?;
            let (ino, kind) = queries::child(tx, path, parent, name.as_bytes())?
                .ok_or_else(|| FsError::not_found(path))?;
            match kind {
                KIND_FILE => return Err(FsError::not_a_directory(path)),
                KIND_DIR => {
                    // Empty the tree, deepest first, in this one transaction.
                    let mut order = Vec::new();
                    let mut stack = vec![ino];
                    while let Some(dir) = stack.pop() {
                        order.push(dir);
                        for (_, child, kind) in queries::entries(tx, path, dir)? {
                            if kind == KIND_DIR {
                                stack.push(child);
                            }
                        }
                    }
                    for dir in order.into_iter().rev() {
                        for (child_name, _, _) in queries::entries(tx, path, dir)? {
                            let gone = queries::unlink(tx, path, dir, &child_name, now)?;
                            self.free_unless_pinned(tx, path, gone, removals)?;
                        }
                    }
                }
                _ => {}
            }
            let gone = queries::unlink(tx, path, parent, name.as_bytes(), now)?;
            self.free_unless_pinned(tx, path, gone, removals)
        })
    }
}

impl<C: Content> FsLink for Store<C> {
    fn symlink(&self, target: &Path, link: &Path) -> FsResult<()> {
        vpath::validate(target)?;
        let now = now_ns();
        self.db_write(link, |tx, _| {
            let (parent, name) = queries::slot(tx, self.tree, link)?;
            if queries::child(tx, link, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(link));
            }
            let bytes = target.as_os_str().as_bytes();
            let ino = queries::alloc(
                tx,
                (self.tree, link),
                KIND_SYMLINK,
                0o777,
                self.owner,
                Some(bytes),
                now,
            )?;
            queries::link(tx, link, parent, name.as_bytes(), ino, false, now)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> FsResult<()> {
        let now = now_ns();
        self.db_write(link, |tx, _| {
            let (src_parent, src_name) = queries::slot(tx, self.tree, original)?;
            let (ino, kind) = queries::child(tx, original, src_parent, src_name.as_bytes())?
                .ok_or_else(|| FsError::not_found(original))?;
            if kind == KIND_DIR {
                return Err(FsError::permission_denied(
                    original,
                    "hard_link a directory",
                ));
            }
            let (parent, name) = queries::slot(tx, self.tree, link)?;
            if queries::child(tx, link, parent, name.as_bytes())?.is_some() {
                return Err(FsError::already_exists(link));
            }
            queries::link(tx, link, parent, name.as_bytes(), ino, false, now)
        })
    }

    fn read_link(&self, path: &Path) -> FsResult<PathBuf> {
        self.db.read(|conn| {
            let ino = queries::lookup(conn, self.tree, path)?;
            let node = queries::node(conn, path, ino)?;
            match (node.kind, node.target) {
                (KIND_SYMLINK, Some(target)) => Ok(PathBuf::from(OsString::from_vec(target))),
                _ => Err(FsError::invalid_path(path, "not a symbolic link")),
            }
        })
    }

    fn symlink_metadata(&self, path: &Path) -> FsResult<Metadata> {
        self.metadata(path)
    }
}
