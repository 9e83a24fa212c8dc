//! Blobs: immutable, encrypted objects holding file content.
//!
//! A blob is `PREFIX/accounts/<account>/blobs/<id>`, `<id>` 16 random bytes
//! in hex. Its bytes are an 8-byte header (`AnyFSb`, 0, the format version)
//! and then records of up to 64 KiB of plaintext each, every one sealed
//! with AES-256-GCM under the account's blob key: a random 12-byte nonce,
//! the ciphertext, the 16-byte tag. Each record's associated data binds the
//! format version, the account, the blob id, the record's index and whether
//! it is the last, so that a record cannot be changed, moved within a blob,
//! moved to another blob or account, or cut off at the end unseen.
//!
//! The plaintext size of a blob is kept in the database, so record `i`
//! starts at a known offset and a range of the file is read by fetching
//! and opening just the records it covers.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyfs::crypto::{Aes256Gcm, Key};
use anyfs::{FsError, FsResult};

use crate::cache::RecordCache;
use crate::store::ObjectStore;

/// Plaintext bytes in every record but the last.
pub(crate) const RECORD: u64 = 64 * 1024;
const NONCE: u64 = 12;
const TAG: u64 = 16;
/// Bytes one full record takes in the object.
const SEALED_RECORD: u64 = NONCE + RECORD + TAG;
/// The header: a magic word and the format version.
const HEADER: [u8; 8] = *b"AnyFSb\x00\x01";
const HEADER_LEN: u64 = HEADER.len() as u64;

/// The id of a blob: 16 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 16]);

impl BlobId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        Self(uuid::Uuid::new_v4().into_bytes())
    }

    /// The id stored as these 16 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 16 bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id in the object's name: 32 lowercase hex digits.
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        if hex.len() != 32 {
            return None;
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// Whether `account` can name an account: 1 to 64 ASCII letters, digits,
/// `-` or `_` (it is part of object names and of key derivation).
pub(crate) fn valid_account(account: &str) -> bool {
    (1..=64).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Refuses an account id that cannot name an account.
pub(crate) fn check_account(path: &Path, account: &str) -> FsResult<()> {
    if valid_account(account) {
        Ok(())
    } else {
        Err(FsError::backend(
            path,
            "name an account",
            "an account id is 1 to 64 ASCII letters, digits, `-` or `_`",
        ))
    }
}

/// The object name of a blob, relative to the store's prefix.
pub(crate) fn object_name(account: &str, id: BlobId) -> String {
    format!("accounts/{account}/blobs/{id}")
}

/// How many records a blob of `size` plaintext bytes has.
fn records(size: u64) -> u64 {
    size.div_ceil(RECORD)
}

/// The bytes of the object a blob of `size` plaintext bytes is.
pub(crate) fn sealed_len(size: u64) -> u64 {
    HEADER_LEN + size + records(size) * (NONCE + TAG)
}

/// Encrypted content, under the keys of one account.
pub(crate) struct BlobCipher {
    aead: Aes256Gcm,
}

impl BlobCipher {
    /// The blob cipher of `account`, derived from the master key.
    pub(crate) fn new(master: &Key, account: &str) -> Self {
        let key = master.derive(&format!("anyfs-objects v1 account {account} blobs"));
        Self {
            aead: Aes256Gcm::new(&key),
        }
    }

    /// The associated data of record `index` of blob `id`.
    fn aad(account: &str, id: BlobId, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + account.len());
        aad.extend_from_slice(b"anyfs blob record");
        aad.push(HEADER[7]);
        aad.extend_from_slice(&(account.len() as u16).to_be_bytes());
        aad.extend_from_slice(account.as_bytes());
        aad.extend_from_slice(id.as_bytes());
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// The object holding `data` as blob `id` of `account`.
    pub(crate) fn seal(&self, account: &str, id: BlobId, data: &[u8]) -> FsResult<Vec<u8>> {
        let size = data.len() as u64;
        let mut out = Vec::with_capacity(sealed_len(size) as usize);
        out.extend_from_slice(&HEADER);
        let count = records(size);
        for (index, chunk) in data.chunks(RECORD as usize).enumerate() {
            let index = index as u64;
            let aad = Self::aad(account, id, index, index + 1 == count);
            out.extend_from_slice(&self.aead.encrypt(&aad, chunk)?);
        }
        Ok(out)
    }

    /// Opens records `first..` of blob `id` (of `size` plaintext bytes) from
    /// `sealed`, the object's bytes from record `first` on; each record's
    /// plaintext goes to `each`. `IntegrityError` about `path` if any
    /// record does not authenticate or bytes are missing.
    fn open(
        &self,
        path: &Path,
        account: &str,
        (id, size): (BlobId, u64),
        first: u64,
        sealed: &[u8],
        mut each: impl FnMut(u64, Vec<u8>),
    ) -> FsResult<()> {
        let count = records(size);
        let mut rest = sealed;
        let mut index = first;
        while !rest.is_empty() {
            if index >= count {
                return Err(FsError::integrity(path));
            }
            let plain = (size - index * RECORD).min(RECORD);
            let take = (NONCE + plain + TAG) as usize;
            if rest.len() < take {
                return Err(FsError::integrity(path));
            }
            let (record, tail) = rest.split_at(take);
            let aad = Self::aad(account, id, index, index + 1 == count);
            let opened = self
                .aead
                .decrypt(&aad, record)
                .ok_or_else(|| FsError::integrity(path))?;
            each(index, opened);
            rest = tail;
            index += 1;
        }
        Ok(())
    }
}

/// Blobs of every account in one object store, with a cache of opened
/// records.
pub struct Blobs {
    store: ObjectStore,
    master: Key,
    cache: RecordCache,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// Blobs in `store`, sealed under keys derived from `master` for each
    /// account, with up to `cache_bytes` of opened records kept in memory.
    pub fn new(store: ObjectStore, master: Key, cache_bytes: usize) -> Self {
        Self {
            store,
            master,
            cache: RecordCache::new(cache_bytes),
        }
    }

    /// The name of blob `id` of `account` in the store, relative to its
    /// prefix.
    pub fn object_name(account: &str, id: BlobId) -> String {
        object_name(account, id)
    }

    /// The master key every account's keys are derived from.
    pub(crate) fn master(&self) -> &Key {
        &self.master
    }

    /// The store the blobs are in.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// Uploads `data` as a new blob of `account` (`path` is the file it is
    /// for, for errors), never replacing an object.
    pub fn upload(&self, path: &Path, account: &str, data: &[u8]) -> FsResult<BlobId> {
        check_account(path, account)?;
        let id = BlobId::random();
        let sealed = BlobCipher::new(&self.master, account).seal(account, id, data)?;
        self.store
            .put_new(path, &object_name(account, id), sealed)?;
        Ok(id)
    }

    /// Plaintext bytes `range` of blob `id` of `account`, which holds
    /// `size` bytes: only the records the range covers are fetched (those
    /// not in the cache) and opened.
    pub fn read(
        &self,
        path: &Path,
        account: &str,
        (id, size): (BlobId, u64),
        range: Range<u64>,
    ) -> FsResult<Vec<u8>> {
        check_account(path, account)?;
        let end = range.end.min(size);
        if range.start >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (range.start / RECORD, (end - 1) / RECORD);
        let mut parts: Vec<Option<Arc<[u8]>>> =
            (first..=last).map(|i| self.cache.get(id, i)).collect();
        // The first run of records not cached to the last one not cached:
        // fetched in one request.
        if let (Some(a), Some(b)) = (
            parts.iter().position(Option::is_none),
            parts.iter().rposition(Option::is_none),
        ) {
            let (from, to) = (first + a as u64, first + b as u64);
            let bytes = HEADER_LEN + from * SEALED_RECORD
                ..(HEADER_LEN + (to + 1) * SEALED_RECORD).min(sealed_len(size));
            let want = bytes.end - bytes.start;
            let sealed = self
                .store
                .get_range(path, &object_name(account, id), bytes)?;
            if sealed.len() as u64 != want {
                return Err(FsError::integrity(path));
            }
            let cipher = BlobCipher::new(&self.master, account);
            cipher.open(path, account, (id, size), from, &sealed, |index, plain| {
                let plain: Arc<[u8]> = plain.into();
                self.cache.insert(id, index, plain.clone());
                parts[(index - first) as usize] = Some(plain);
            })?;
        }
        let mut out = Vec::with_capacity((end - range.start) as usize);
        for (i, part) in parts.iter().enumerate() {
            let part = part.as_deref().ok_or_else(|| FsError::integrity(path))?;
            let base = (first + i as u64) * RECORD;
            let from = range.start.saturating_sub(base) as usize;
            let to = ((end - base) as usize).min(part.len());
            out.extend_from_slice(part.get(from..to).ok_or_else(|| FsError::integrity(path))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_seal_and_open_in_order_only() {
        let cipher = BlobCipher::new(&Key::from_bytes([7; 32]), "acct");
        let id = BlobId::random();
        let data: Vec<u8> = (0..(2 * RECORD + 10)).map(|i| (i % 251) as u8).collect();
        let sealed = cipher.seal("acct", id, &data).unwrap();
        assert_eq!(sealed.len() as u64, sealed_len(data.len() as u64));
        let body = &sealed[HEADER_LEN as usize..];
        let mut out = Vec::new();
        let size = (id, data.len() as u64);
        cipher
            .open(Path::new("/f"), "acct", size, 0, body, |_, p| out.extend(p))
            .unwrap();
        assert_eq!(out, data);
        // Another account, or the records read as if they started later.
        assert!(
            cipher
                .open(Path::new("/f"), "other", size, 0, body, |_, _| ())
                .is_err()
        );
        assert!(
            cipher
                .open(Path::new("/f"), "acct", size, 1, body, |_, _| ())
                .is_err()
        );
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = BlobId::random();
        assert_eq!(BlobId::from_hex(&id.to_string()), Some(id));
        assert_eq!(BlobId::from_hex("xyz"), None);
    }
}
