//! `FileEncryption` and `IntegrityVerified`: round trips at every chunk
//! boundary, every kind of tampering with the stored bytes, path binding,
//! keys, and no plaintext in the storage.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::path::Path;

use anyfs::crypto::Key;
use anyfs::middleware::sealed::{CHUNK_SIZE, SealMode, Sealed};
use anyfs::{
    FileEncryption, FileStorage, FsDir, FsErrorKind, FsLink, FsRead, FsWrite, IntegrityVerified,
    MemoryBackend,
};

const HEADER: usize = 32;

fn key() -> Key {
    Key::from_bytes([42; 32])
}

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Content that never repeats a 16-byte window, so searches are exact.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed)
        .collect()
}

/// Runs `check` for both layers over a fresh MemoryBackend, also handing it
/// the storage and the per-record overhead.
fn both(check: impl Fn(&dyn Layer, &MemoryBackend, usize)) {
    let storage = MemoryBackend::new();
    check(
        &FileEncryption::new(storage.clone()).with_key(key()),
        &storage,
        28,
    );
    let storage = MemoryBackend::new();
    check(
        &IntegrityVerified::new(storage.clone()).with_key(key()),
        &storage,
        32,
    );
}

trait Layer: FsRead + FsWrite + FsDir + FsLink {}
impl<M: SealMode> Layer for Sealed<MemoryBackend, M> {}

#[track_caller]
fn assert_tampered(fs: &dyn Layer, path: &str, what: &str) {
    let err = fs.read(p(path)).expect_err(what);
    assert_eq!(
        err.kind(),
        FsErrorKind::IntegrityError,
        "{what}: read: {err}"
    );
    assert_eq!(err.path(), p(path), "{what}: the error names the path");
    let mut reader = match fs.open_read(p(path)) {
        Ok(reader) => reader,
        Err(e) => {
            assert_eq!(
                e.kind(),
                FsErrorKind::IntegrityError,
                "{what}: open_read: {e}"
            );
            return;
        }
    };
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).expect_err(what);
    let inner = err.into_inner().unwrap();
    let fs_err = inner.downcast::<anyfs::FsError>().unwrap();
    assert_eq!(fs_err.kind(), FsErrorKind::IntegrityError, "{what}: stream");
}

#[test]
fn round_trips_at_every_chunk_boundary() {
    both(|fs, _, _| {
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 5,
        ] {
            let data = content(len, 1);
            let path = format!("/f{len}");
            fs.write(p(&path), &data).unwrap();
            assert_eq!(fs.read(p(&path)).unwrap(), data, "len {len}");
            assert_eq!(fs.metadata(p(&path)).unwrap().len, len as u64);
            let mut streamed = Vec::new();
            fs.open_read(p(&path))
                .unwrap()
                .read_to_end(&mut streamed)
                .unwrap();
            assert_eq!(streamed, data, "streamed len {len}");
            // Windows across every boundary.
            for (offset, take) in [
                (0, 10),
                (CHUNK_SIZE.saturating_sub(3), 7),
                (CHUNK_SIZE, CHUNK_SIZE),
                (len.saturating_sub(1), 100),
                (1, 2 * CHUNK_SIZE + 9),
            ] {
                let got = fs.read_range(p(&path), offset as u64, take).unwrap();
                let end = (offset + take).min(len);
                let want = if offset >= len {
                    &[][..]
                } else {
                    &data[offset..end]
                };
                assert_eq!(got, want, "len {len} range {offset}+{take}");
            }
            // Appends across boundaries.
            let mut grown = data.clone();
            for piece in [1, CHUNK_SIZE - 2, 3, CHUNK_SIZE + 7] {
                let more = content(piece, 9);
                fs.append(p(&path), &more).unwrap();
                grown.extend_from_slice(&more);
                assert_eq!(fs.read(p(&path)).unwrap(), grown, "append {piece} to {len}");
            }
            fs.truncate(p(&path), (len / 2) as u64).unwrap();
            assert_eq!(fs.read(p(&path)).unwrap(), &grown[..len / 2]);
        }
    });
}

#[test]
fn streams_of_64_mib_round_trip_in_chunks() {
    both(|fs, storage, overhead| {
        let len = 64 * 1024 * 1024 + 123;
        let mut writer = fs.open_write(p("/big")).unwrap();
        let block = content(1 << 20, 3);
        let mut written = 0;
        while written < len {
            let n = block.len().min(len - written);
            writer.write_all(&block[..n]).unwrap();
            written += n;
        }
        writer.commit().unwrap();
        assert_eq!(fs.metadata(p("/big")).unwrap().len, len as u64);
        let records = len.div_ceil(CHUNK_SIZE);
        assert_eq!(
            storage.metadata(p("/big")).unwrap().len,
            (HEADER + len + records * overhead) as u64
        );
        let mut reader = fs.open_read(p("/big")).unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut read = 0;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let start = read % block.len();
            let expected: Vec<u8> = (0..n).map(|i| block[(start + i) % block.len()]).collect();
            assert_eq!(&buf[..n], &expected[..], "at {read}");
            read += n;
        }
        assert_eq!(read, len);
    });
}

#[test]
fn no_plaintext_reaches_the_storage() {
    let storage = MemoryBackend::new();
    let fs = FileEncryption::new(storage.clone()).with_key(key());
    let secret = content(3 * CHUNK_SIZE + 77, 5);
    fs.write(p("/secret"), &secret).unwrap();
    fs.append(p("/secret"), &secret[..1000]).unwrap();
    let mut writer = fs.open_write(p("/streamed")).unwrap();
    writer.write_all(&secret).unwrap();
    writer.commit().unwrap();
    fs.copy(p("/secret"), p("/copied")).unwrap();
    fs.rename(p("/copied"), p("/renamed")).unwrap();
    for path in ["/secret", "/streamed", "/renamed"] {
        let raw = storage.read(p(path)).unwrap();
        for window in secret.chunks(16) {
            if window.len() == 16 {
                assert!(
                    !raw.windows(16).any(|w| w == window),
                    "{path}: plaintext found in the storage"
                );
            }
        }
    }
}

/// A file of three full records and a short fourth, and its stored bytes.
fn stored_file(fs: &dyn Layer, storage: &MemoryBackend, path: &str) -> Vec<u8> {
    fs.write(p(path), &content(3 * CHUNK_SIZE + 100, 7))
        .unwrap();
    storage.read(p(path)).unwrap()
}

#[test]
fn flipped_bits_anywhere_are_detected() {
    both(|fs, storage, overhead| {
        let raw = stored_file(fs, storage, "/f");
        let record = CHUNK_SIZE + overhead;
        let positions = [
            ("magic", 0),
            ("file id", 15),
            ("first byte of record 0 (nonce or content)", HEADER),
            ("inside record 1", HEADER + record + 5000),
            ("tag of record 2", HEADER + 3 * record - 1),
            ("last byte of the file", raw.len() - 1),
        ];
        for (what, at) in positions {
            let mut bad = raw.clone();
            bad[at] ^= 0x01;
            storage.write(p("/f"), &bad).unwrap();
            assert_tampered(fs, "/f", what);
            // A range inside the damaged record fails too.
            if at >= HEADER {
                let chunk = ((at - HEADER) / record) as u64;
                let err = fs
                    .read_range(p("/f"), chunk * CHUNK_SIZE as u64, 10)
                    .unwrap_err();
                assert_eq!(err.kind(), FsErrorKind::IntegrityError, "{what}");
            }
        }
    });
}

#[test]
fn truncation_and_extension_are_detected() {
    both(|fs, storage, overhead| {
        let raw = stored_file(fs, storage, "/f");
        let record = CHUNK_SIZE + overhead;
        let cuts = [
            ("last record dropped", HEADER + 3 * record),
            ("two records dropped", HEADER + 2 * record),
            ("cut inside a record", HEADER + record + 10),
            ("cut inside the last record", raw.len() - 1),
            ("header only", HEADER),
            ("inside the header", 10),
            ("empty", 0),
        ];
        for (what, len) in cuts {
            storage.write(p("/f"), &raw[..len]).unwrap();
            assert_tampered(fs, "/f", what);
        }
        let mut longer = raw.clone();
        longer.extend_from_slice(b"appended");
        storage.write(p("/f"), &longer).unwrap();
        assert_tampered(fs, "/f", "bytes appended");
        let mut doubled = raw.clone();
        doubled.extend_from_slice(&raw[HEADER..HEADER + record]);
        storage.write(p("/f"), &doubled).unwrap();
        assert_tampered(fs, "/f", "a record appended again");
    });
}

#[test]
fn swapped_and_reordered_records_are_detected() {
    both(|fs, storage, overhead| {
        let raw = stored_file(fs, storage, "/f");
        let record = CHUNK_SIZE + overhead;
        let rec = |i: usize| &raw[HEADER + i * record..HEADER + (i + 1) * record];
        let tail = &raw[HEADER + 3 * record..];
        let build = |order: [usize; 3]| {
            let mut out = raw[..HEADER].to_vec();
            for i in order {
                out.extend_from_slice(rec(i));
            }
            out.extend_from_slice(tail);
            out
        };
        storage.write(p("/f"), &build([1, 0, 2])).unwrap();
        assert_tampered(fs, "/f", "records 0 and 1 swapped");
        storage.write(p("/f"), &build([2, 0, 1])).unwrap();
        assert_tampered(fs, "/f", "records rotated");
        storage.write(p("/f"), &build([0, 0, 2])).unwrap();
        assert_tampered(fs, "/f", "a record duplicated");
    });
}

#[test]
fn bytes_moved_to_another_path_do_not_verify() {
    both(|fs, storage, _| {
        let raw = stored_file(fs, storage, "/original");
        storage.write(p("/elsewhere"), &raw).unwrap();
        assert_tampered(fs, "/elsewhere", "copied in the storage");
        storage.rename(p("/original"), p("/moved")).unwrap();
        assert_tampered(fs, "/moved", "moved in the storage");
        // Another file's records with this file's header do not verify either.
        let other = stored_file(fs, storage, "/other");
        let mut mixed = raw[..HEADER].to_vec();
        mixed.extend_from_slice(&other[HEADER..]);
        storage.write(p("/original"), &mixed).unwrap();
        assert_tampered(fs, "/original", "another file's records");
    });
}

#[test]
fn an_older_version_of_a_record_does_not_verify() {
    both(|fs, storage, overhead| {
        let record = CHUNK_SIZE + overhead;
        let v1 = stored_file(fs, storage, "/f");
        fs.write(p("/f"), &content(3 * CHUNK_SIZE + 100, 8))
            .unwrap();
        let v2 = storage.read(p("/f")).unwrap();
        let mut spliced = v2.clone();
        spliced[HEADER + record..HEADER + 2 * record]
            .copy_from_slice(&v1[HEADER + record..HEADER + 2 * record]);
        storage.write(p("/f"), &spliced).unwrap();
        assert_tampered(fs, "/f", "record 1 of the previous version");
        // The header of the previous version with the current records.
        let mut old_header = v2.clone();
        old_header[..HEADER].copy_from_slice(&v1[..HEADER]);
        storage.write(p("/f"), &old_header).unwrap();
        assert_tampered(fs, "/f", "the previous header");
        // After an append, the old last record (marked last) put back in
        // front of the new records.
        storage.write(p("/f"), &v2).unwrap();
        fs.append(p("/f"), &content(2 * CHUNK_SIZE, 9)).unwrap();
        let v3 = storage.read(p("/f")).unwrap();
        let mut replayed = v3.clone();
        let last_v2 = &v2[HEADER + 3 * record..];
        replayed[HEADER + 3 * record..HEADER + 3 * record + last_v2.len()].copy_from_slice(last_v2);
        storage.write(p("/f"), &replayed).unwrap();
        assert_tampered(fs, "/f", "the last record from before an append");
    });
}

#[test]
fn a_range_written_in_place_is_sealed_and_old_records_do_not_come_back() {
    both(|fs, storage, overhead| {
        let record = CHUNK_SIZE + overhead;
        let before = stored_file(fs, storage, "/f");
        let plain = fs.read(p("/f")).unwrap();
        // A range across the boundary of records 0 and 1.
        let secret = content(200, 77);
        let at = CHUNK_SIZE - 100;
        fs.write_range(p("/f"), at as u64, &secret).unwrap();
        let mut want = plain.clone();
        want[at..at + 200].copy_from_slice(&secret);
        assert_eq!(fs.read(p("/f")).unwrap(), want);
        let after = storage.read(p("/f")).unwrap();
        if overhead == 28 {
            assert!(
                !after.windows(16).any(|w| w == &secret[..16]),
                "the written bytes reached the storage in plaintext"
            );
        }
        // Record 2 was not written to, yet its old sealed form does not
        // verify in the new file.
        let mut spliced = after.clone();
        spliced[HEADER + 2 * record..HEADER + 3 * record]
            .copy_from_slice(&before[HEADER + 2 * record..HEADER + 3 * record]);
        storage.write(p("/f"), &spliced).unwrap();
        assert_tampered(fs, "/f", "a record from before the range write");
    });
}

#[test]
fn a_wrong_key_reads_nothing() {
    let storage = MemoryBackend::new();
    FileEncryption::new(storage.clone())
        .with_key(key())
        .write(p("/f"), b"for the right key only")
        .unwrap();
    let wrong = FileEncryption::new(storage.clone()).with_key(Key::from_bytes([43; 32]));
    assert_tampered(&wrong, "/f", "wrong key");
    // Encrypted and authenticated stores are not mistaken for each other.
    let mac = IntegrityVerified::new(storage).with_key(key());
    assert_tampered(&mac, "/f", "read as the other layer");
}

#[test]
fn without_a_key_content_is_refused_and_metadata_still_works() {
    let storage = MemoryBackend::new();
    FileEncryption::new(storage.clone())
        .with_key(key())
        .write(p("/f"), b"x")
        .unwrap();
    let fs = FileEncryption::new(storage);
    assert_eq!(
        fs.read(p("/f")).unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert_eq!(
        fs.write(p("/g"), b"x").unwrap_err().kind(),
        FsErrorKind::AccessDenied
    );
    assert!(fs.open_write(p("/h")).is_err());
    assert!(!fs.exists(p("/g")).unwrap() && !fs.exists(p("/h")).unwrap());
    assert_eq!(fs.metadata(p("/f")).unwrap().len, 1);
}

#[test]
fn renames_and_copies_re_seal_for_the_new_path() {
    both(|fs, _, _| {
        let fs = FileStorage::new(fs);
        fs.create_dir_all("/a/b/c").unwrap();
        fs.write("/a/top.txt", "top").unwrap();
        fs.write("/a/b/c/deep.txt", content(CHUNK_SIZE + 3, 2))
            .unwrap();
        fs.symlink("/a/top.txt", "/a/b/link").unwrap();
        fs.rename("/a", "/z").unwrap();
        assert_eq!(fs.read_to_string("/z/top.txt").unwrap(), "top");
        assert_eq!(
            fs.read("/z/b/c/deep.txt").unwrap(),
            content(CHUNK_SIZE + 3, 2)
        );
        assert_eq!(fs.read_link("/z/b/link").unwrap(), Path::new("/a/top.txt"));
        fs.rename("/z/top.txt", "/z/b/top.txt").unwrap();
        assert_eq!(fs.read_to_string("/z/b/top.txt").unwrap(), "top");
        fs.copy("/z/b/top.txt", "/copy.txt").unwrap();
        assert_eq!(fs.read_to_string("/copy.txt").unwrap(), "top");
        fs.copy("/copy.txt", "/copy.txt").unwrap();
        assert_eq!(fs.read_to_string("/copy.txt").unwrap(), "top");
        // Symlinks work through the layer; hard links are refused.
        fs.symlink("/copy.txt", "/via-link").unwrap();
        assert_eq!(fs.read_to_string("/via-link").unwrap(), "top");
        assert_eq!(
            fs.hard_link("/copy.txt", "/second-name")
                .unwrap_err()
                .kind(),
            FsErrorKind::NotSupported
        );
    });
}

#[test]
fn concurrent_appends_and_range_reads_never_see_a_half_written_file() {
    let fs = FileEncryption::new(MemoryBackend::new()).with_key(key());
    fs.write(p("/log"), b"").unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let fs = &fs;
            s.spawn(move || {
                for _ in 0..50 {
                    fs.append(p("/log"), &[t; 1000]).unwrap();
                }
            });
        }
        for _ in 0..2 {
            let fs = &fs;
            s.spawn(move || {
                for i in 0..200u64 {
                    fs.read_range(p("/log"), i * 997, 3000).unwrap();
                    let whole = fs.read(p("/log")).unwrap();
                    assert_eq!(whole.len() % 1000, 0);
                }
            });
        }
    });
    let log = fs.read(p("/log")).unwrap();
    assert_eq!(log.len(), 4 * 50 * 1000);
    for t in 0..4u8 {
        assert_eq!(log.iter().filter(|&&b| b == t).count(), 50 * 1000);
    }
}

/// A sealing layer over a backend with open files offers none of its own:
/// positional reads would return the sealed records and positional writes
/// would put plaintext into them.
#[test]
fn no_handle_reaches_the_sealed_records() {
    use anyfs::{FileEncryption, FsErrorKind, FsHandles, IntegrityVerified, OpenFlags};

    let storage = MemoryBackend::new();
    let encrypted = FileEncryption::new(storage.clone()).with_key(key());
    let verified = IntegrityVerified::new(storage.clone()).with_key(key());
    anyfs::FsWrite::write(&encrypted, p("/secret.txt"), b"plain words").unwrap();
    for flags in [OpenFlags::READ, OpenFlags::READ_WRITE, OpenFlags::CREATE] {
        let err = encrypted.open(p("/secret.txt"), flags).unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::NotSupported);
        let err = verified.open(p("/secret.txt"), flags).unwrap_err();
        assert_eq!(err.kind(), FsErrorKind::NotSupported);
    }
    // A handle of the storage underneath is not one of the layer's.
    let raw = storage.open(p("/secret.txt"), OpenFlags::READ).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        encrypted.read_at(raw, &mut buf, 0).unwrap_err().kind(),
        FsErrorKind::NotSupported
    );
    assert_eq!(
        encrypted.write_at(raw, b"x", 0).unwrap_err().kind(),
        FsErrorKind::NotSupported
    );
    storage.close(raw).unwrap();
    assert_eq!(
        anyfs::FsRead::read(&encrypted, p("/secret.txt")).unwrap(),
        b"plain words"
    );
}
