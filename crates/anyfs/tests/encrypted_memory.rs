//! Encrypted memory: `MemoryBackend` snapshots sealed with a key or a
//! password, `EncryptedMemoryBackend`, and keys.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use anyfs::crypto::{Key, Salt};
use anyfs::{EncryptedMemoryBackend, FileStorage, FsErrorKind, MemoryBackend, Permissions};

const SECRET: &str = "the launch code is 0000";

/// A tree with every kind of node: directories, a file, a hard link, a
/// symlink, unusual permissions and times.
fn populate<B: anyfs::FsFull>(fs: &FileStorage<B>) {
    fs.create_dir_all("/projects/apollo").unwrap();
    fs.write("/projects/apollo/plan.txt", SECRET).unwrap();
    fs.hard_link("/projects/apollo/plan.txt", "/projects/plan-link")
        .unwrap();
    fs.symlink("/projects/apollo", "/shortcut").unwrap();
    fs.write("/empty", "").unwrap();
    fs.set_permissions("/projects/apollo/plan.txt", Permissions::from_mode(0o600))
        .unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_000_000_000, 5);
    anyfs::FsPermissions::set_times(fs, Path::new("/empty"), Some(when), Some(when)).unwrap();
}

fn check<B: anyfs::FsFull>(fs: &FileStorage<B>) {
    assert_eq!(fs.read_to_string("/shortcut/plan.txt").unwrap(), SECRET);
    let a = fs.metadata("/projects/apollo/plan.txt").unwrap();
    let b = fs.metadata("/projects/plan-link").unwrap();
    assert_eq!((a.inode, a.nlink), (b.inode, 2));
    assert_eq!(a.permissions().mode(), 0o600);
    assert_eq!(
        fs.read_link("/shortcut").unwrap(),
        Path::new("/projects/apollo")
    );
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_000_000_000, 5);
    assert_eq!(fs.metadata("/empty").unwrap().modified(), when);
    assert_eq!(
        fs.read_dir("/projects").unwrap().sorted_names().unwrap(),
        ["apollo", "plan-link"]
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn memory_snapshots_round_trip_everything() {
    let fs = FileStorage::new(MemoryBackend::new());
    populate(&fs);
    let key = Key::random().unwrap();
    let blob = fs.backend().serialize_encrypted(&key).unwrap();
    for plain in [SECRET.as_bytes(), b"apollo", b"plan-link"] {
        assert!(!contains(&blob, plain), "plaintext in the blob");
    }
    let restored = FileStorage::new(MemoryBackend::deserialize_encrypted(&blob, &key).unwrap());
    check(&restored);
    // The restored tree works on: new inodes do not collide.
    restored.write("/new.txt", "after").unwrap();
    assert_ne!(
        restored.metadata("/new.txt").unwrap().inode,
        restored.metadata("/empty").unwrap().inode
    );
}

#[test]
fn a_wrong_key_or_a_changed_blob_is_invalid_password() {
    let fs = FileStorage::new(MemoryBackend::new());
    populate(&fs);
    let key = Key::random().unwrap();
    let blob = fs.backend().serialize_encrypted(&key).unwrap();
    let wrong = Key::random().unwrap();
    let err = MemoryBackend::deserialize_encrypted(&blob, &wrong).unwrap_err();
    assert_eq!(err.kind(), FsErrorKind::InvalidPassword);
    for at in [5, 9, 30, blob.len() / 2, blob.len() - 1] {
        let mut bad = blob.clone();
        bad[at] ^= 1;
        assert!(
            MemoryBackend::deserialize_encrypted(&bad, &key).is_err(),
            "a flip at {at} went unnoticed"
        );
    }
    for len in [0, 10, 40, blob.len() - 1] {
        assert!(MemoryBackend::deserialize_encrypted(&blob[..len], &key).is_err());
    }
}

#[test]
fn password_snapshots_and_files() {
    let fs = FileStorage::new(MemoryBackend::new());
    populate(&fs);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("workspace.snapshot");
    fs.backend()
        .save_with_password(&file, "correct horse")
        .unwrap();
    assert!(!contains(&std::fs::read(&file).unwrap(), SECRET.as_bytes()));
    check(&FileStorage::new(
        MemoryBackend::load_with_password(&file, "correct horse").unwrap(),
    ));
    assert_eq!(
        MemoryBackend::load_with_password(&file, "wrong horse")
            .unwrap_err()
            .kind(),
        FsErrorKind::InvalidPassword
    );
    // A key-sealed file is not mistaken for a password-sealed one.
    let key = Key::random().unwrap();
    fs.backend().save_encrypted(&file, &key).unwrap();
    check(&FileStorage::new(
        MemoryBackend::load_encrypted(&file, &key).unwrap(),
    ));
    assert!(MemoryBackend::load_with_password(&file, "correct horse").is_err());
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn encrypted_memory_holds_no_plaintext() {
    let key = Key::random().unwrap();
    let fs = FileStorage::new(EncryptedMemoryBackend::new(key));
    populate(&fs);
    fs.write("/notes/../diary.txt", "x").unwrap_err();
    fs.create_dir("/notes").unwrap();
    fs.write("/notes/diary.txt", "dear diary, today").unwrap();
    let stored = fs.backend().stored_bytes();
    for plain in [
        SECRET.as_bytes(),
        b"dear diary",
        b"apollo",
        b"plan-link",
        b"diary.txt",
        b"/projects/apollo",
    ] {
        assert!(
            !contains(&stored, plain),
            "{:?} is held in plaintext",
            String::from_utf8_lossy(plain)
        );
    }
    check(&fs);
}

#[test]
fn encrypted_memory_saves_and_loads_without_decrypting() {
    let key = Key::from_password("hunter2", &Salt::random().unwrap()).unwrap();
    let fs = FileStorage::new(EncryptedMemoryBackend::new(key.clone()));
    populate(&fs);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ram.enc");
    fs.backend().save_to_file(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    // The file is exactly the nodes as they were held, plus framing.
    assert!(contains(&bytes, &fs.backend().stored_bytes()[..64]));
    for plain in [SECRET.as_bytes(), b"apollo"] {
        assert!(!contains(&bytes, plain));
    }
    let loaded =
        FileStorage::new(EncryptedMemoryBackend::load_from_file(&file, key.clone()).unwrap());
    check(&loaded);
    loaded.write("/more.txt", "written after loading").unwrap();
    assert_eq!(
        loaded.read_to_string("/more.txt").unwrap(),
        "written after loading"
    );

    let wrong = Key::random().unwrap();
    assert_eq!(
        EncryptedMemoryBackend::load_from_file(&file, wrong)
            .unwrap_err()
            .kind(),
        FsErrorKind::InvalidPassword
    );
    let mut changed = bytes.clone();
    let at = changed.len() / 2;
    changed[at] ^= 1;
    std::fs::write(&file, &changed).unwrap();
    assert_eq!(
        EncryptedMemoryBackend::load_from_file(&file, key)
            .unwrap_err()
            .kind(),
        FsErrorKind::InvalidPassword
    );
}

#[test]
fn encrypted_memory_nodes_are_bound_to_their_numbers() {
    // Swapping two nodes' ciphertexts in memory (someone able to write the
    // process's memory, or a bug) is caught, never served as the other file.
    let backend = EncryptedMemoryBackend::new(Key::random().unwrap());
    let fs = FileStorage::new(backend.clone());
    fs.write("/a", "alpha").unwrap();
    fs.write("/b", "bravo").unwrap();
    let (a, b) = (
        fs.metadata("/a").unwrap().inode,
        fs.metadata("/b").unwrap().inode,
    );
    backend.swap_stored_nodes(a, b);
    for path in ["/a", "/b"] {
        assert_eq!(
            fs.read(path).unwrap_err().kind(),
            FsErrorKind::IntegrityError
        );
    }
    backend.swap_stored_nodes(a, b);
    assert_eq!(fs.read_to_string("/a").unwrap(), "alpha");
}

#[test]
fn keys_from_passwords_are_stable_salted_and_distinct() {
    let salt = Salt::from_bytes([1; 16]);
    let a = Key::from_password("pw", &salt).unwrap();
    assert_eq!(a, Key::from_password("pw", &salt).unwrap());
    assert_ne!(
        a,
        Key::from_password("pw", &Salt::from_bytes([2; 16])).unwrap()
    );
    assert_ne!(a, Key::from_password("pw2", &salt).unwrap());
    assert_ne!(a.derive("one"), a.derive("two"));
    assert_eq!(a.derive("one"), a.derive("one"));
    assert_eq!(format!("{a:?}"), "Key(********)");
    assert_ne!(Salt::random().unwrap(), Salt::random().unwrap());
}
