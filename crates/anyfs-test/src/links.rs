//! Symbolic and hard links as stored: what every [`FsLink`] backend must do,
//! without following anything.

use anyfs::{FileType, Fs, FsErrorKind, FsLink};

use crate::{assert_err, p};

/// A symlink stores its target verbatim, relative or absolute, dangling or not.
pub fn symlink_stores_its_target<B: Fs + FsLink>(fs: &B) {
    fs.write(p("/target"), b"t").unwrap();
    fs.symlink(p("/target"), p("/abs")).unwrap();
    fs.symlink(p("target"), p("/rel")).unwrap();
    fs.symlink(p("../../nowhere/at/all"), p("/dangling"))
        .unwrap();
    assert_eq!(fs.read_link(p("/abs")).unwrap(), p("/target"));
    assert_eq!(fs.read_link(p("/rel")).unwrap(), p("target"));
    assert_eq!(
        fs.read_link(p("/dangling")).unwrap(),
        p("../../nowhere/at/all")
    );
    let meta = fs.symlink_metadata(p("/abs")).unwrap();
    assert_eq!(meta.file_type, FileType::Symlink);
    assert_eq!(meta.len, "/target".len() as u64);
    let types: Vec<FileType> = fs
        .read_dir(p("/"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.name != "target")
        .map(|e| e.file_type)
        .collect();
    assert_eq!(types, vec![FileType::Symlink; 3]);
}

/// A symlink cannot replace anything; `read_link` of a non-link is refused.
pub fn symlink_rules<B: Fs + FsLink>(fs: &B) {
    fs.write(p("/f"), b"x").unwrap();
    fs.create_dir(p("/d")).unwrap();
    assert_err(fs.symlink(p("/x"), p("/f")), FsErrorKind::AlreadyExists);
    assert_err(fs.symlink(p("/x"), p("/d")), FsErrorKind::AlreadyExists);
    assert_err(
        fs.symlink(p("/x"), p("/missing/link")),
        FsErrorKind::NotFound,
    );
    assert_err(fs.read_link(p("/f")), FsErrorKind::InvalidPath);
    assert_err(fs.read_link(p("/missing")), FsErrorKind::NotFound);
    assert_eq!(fs.read(p("/f")).unwrap(), b"x");
}

/// Hard links are one node under two names: same inode, shared content,
/// link count, and the node lives while one name remains.
pub fn hard_link_shares_the_node<B: Fs + FsLink>(fs: &B) {
    fs.write(p("/one"), b"shared").unwrap();
    fs.create_dir(p("/d")).unwrap();
    fs.hard_link(p("/one"), p("/d/two")).unwrap();
    let a = fs.metadata(p("/one")).unwrap();
    let b = fs.metadata(p("/d/two")).unwrap();
    assert_eq!(a.inode, b.inode);
    assert_eq!(a.nlink, 2);
    fs.append(p("/d/two"), b" and changed").unwrap();
    assert_eq!(fs.read(p("/one")).unwrap(), b"shared and changed");
    fs.remove_file(p("/one")).unwrap();
    assert_eq!(fs.read(p("/d/two")).unwrap(), b"shared and changed");
    assert_eq!(fs.metadata(p("/d/two")).unwrap().nlink, 1);
}

/// Hard links to directories and over existing names are refused.
pub fn hard_link_rules<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/d")).unwrap();
    fs.write(p("/f"), b"x").unwrap();
    fs.write(p("/g"), b"y").unwrap();
    assert!(fs.hard_link(p("/d"), p("/d2")).is_err());
    assert!(!fs.exists(p("/d2")).unwrap());
    assert_err(fs.hard_link(p("/f"), p("/g")), FsErrorKind::AlreadyExists);
    assert_err(fs.hard_link(p("/missing"), p("/h")), FsErrorKind::NotFound);
    assert_eq!(fs.read(p("/g")).unwrap(), b"y");
}

/// Removing or renaming a symlink acts on the link, never on its target.
pub fn remove_and_rename_act_on_the_link<B: Fs + FsLink>(fs: &B) {
    fs.create_dir(p("/dir")).unwrap();
    fs.write(p("/dir/file"), b"x").unwrap();
    fs.symlink(p("/dir"), p("/to-dir")).unwrap();
    fs.symlink(p("/dir/file"), p("/to-file")).unwrap();
    fs.rename(p("/to-file"), p("/renamed")).unwrap();
    assert_eq!(fs.read_link(p("/renamed")).unwrap(), p("/dir/file"));
    fs.remove_file(p("/renamed")).unwrap();
    fs.remove_file(p("/to-dir")).unwrap();
    assert_eq!(fs.read(p("/dir/file")).unwrap(), b"x");
    fs.symlink(p("/dir"), p("/again")).unwrap();
    fs.remove_dir_all(p("/again")).unwrap();
    assert_eq!(fs.read(p("/dir/file")).unwrap(), b"x");
}
