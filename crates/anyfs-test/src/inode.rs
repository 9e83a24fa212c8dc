//! Inode lookups, as a FUSE mount uses them.

use anyfs::{Fs, FsErrorKind, FsInode};

use crate::{assert_err, p};

/// Paths and inodes map to each other, and agree with `metadata`.
pub fn inodes_name_nodes<B: Fs + FsInode>(fs: &B) {
    fs.create_dir_all(p("/a/b")).unwrap();
    fs.write(p("/a/b/f"), b"x").unwrap();
    let root = fs.path_to_inode(p("/")).unwrap();
    assert_eq!(fs.inode_to_path(root).unwrap(), p("/"));
    let ino = fs.path_to_inode(p("/a/b/f")).unwrap();
    assert_eq!(ino, fs.metadata(p("/a/b/f")).unwrap().inode);
    assert_eq!(fs.inode_to_path(ino).unwrap(), p("/a/b/f"));
    let meta = fs.metadata_by_inode(ino).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len, 1);
    assert_eq!(meta.inode, ino);
    assert_err(fs.metadata_by_inode(u64::MAX - 7), FsErrorKind::NotFound);
    assert_err(fs.inode_to_path(u64::MAX - 7), FsErrorKind::NotFound);
}

/// `lookup` finds a name in a directory by inode.
pub fn lookup_rules<B: Fs + FsInode>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/d/f"), b"").unwrap();
    let root = fs.path_to_inode(p("/")).unwrap();
    let d = fs.lookup(root, "d".as_ref()).unwrap();
    assert_eq!(d, fs.path_to_inode(p("/d")).unwrap());
    let f = fs.lookup(d, "f".as_ref()).unwrap();
    assert_eq!(f, fs.path_to_inode(p("/d/f")).unwrap());
    assert_err(fs.lookup(d, "nope".as_ref()), FsErrorKind::NotFound);
    assert_err(fs.lookup(f, "x".as_ref()), FsErrorKind::NotADirectory);
    assert!(fs.lookup(d, "..".as_ref()).is_err());
    assert!(fs.lookup(d, "a/b".as_ref()).is_err());
}

/// A node keeps its inode across a rename; a deleted inode is gone.
pub fn inodes_survive_rename<B: Fs + FsInode>(fs: &B) {
    fs.write(p("/before"), b"x").unwrap();
    let ino = fs.path_to_inode(p("/before")).unwrap();
    fs.create_dir(p("/moved")).unwrap();
    fs.rename(p("/before"), p("/moved/after")).unwrap();
    assert_eq!(fs.path_to_inode(p("/moved/after")).unwrap(), ino);
    assert_eq!(fs.inode_to_path(ino).unwrap(), p("/moved/after"));
    fs.remove_file(p("/moved/after")).unwrap();
    assert_err(fs.metadata_by_inode(ino), FsErrorKind::NotFound);
}
