//! The stored format: the header, the records and what each record is
//! authenticated with (see the [module docs](super)).

use crate::crypto::{self, Aes, Key, NONCE_LEN, TAG_LEN};
use crate::error::FsResult;

/// Bytes of content per record.
pub const CHUNK_SIZE: usize = 64 * 1024;
pub(super) const HEADER_LEN: usize = 32;
pub(super) const VERSION: u8 = 1;

/// How records are sealed: [`Encrypt`] or [`Authenticate`].
pub trait SealMode: Send + Sync + 'static + private::Sealed {
    #[doc(hidden)]
    const MAGIC: [u8; 4];
    #[doc(hidden)]
    const OVERHEAD: usize;
    #[doc(hidden)]
    fn new(key: &Key) -> Self;
    /// Appends the record for `plain` to `out`.
    #[doc(hidden)]
    fn seal(&self, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN], out: &mut Vec<u8>);
    /// Checks the record `buf[from..]` and moves its content to the start
    /// of `buf`; returns the content's length, or `None` if it does not
    /// authenticate.
    #[doc(hidden)]
    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::Encrypt {}
    impl Sealed for super::Authenticate {}
}

/// AES-256-GCM records: content hidden and authenticated.
pub struct Encrypt(Aes);

/// HMAC-SHA256 records: content readable in the storage, authenticated.
pub struct Authenticate(ring::hmac::Key);

impl std::fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encrypt(AES-256-GCM)")
    }
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticate(HMAC-SHA256)")
    }
}

impl SealMode for Encrypt {
    const MAGIC: [u8; 4] = *b"AFSE";
    const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

    fn new(key: &Key) -> Self {
        Self(Aes::new(&key.derive("anyfs file encryption v1")))
    }

    fn seal(&self, aad: &[u8], plain: &[u8], nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self.0.seal_detached(nonce, aad, &mut out[start..]);
        out.extend_from_slice(&tag);
    }

    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize> {
        if buf.len() < from + Self::OVERHEAD {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[from..from + NONCE_LEN]);
        self.0.open_within(&nonce, aad, buf, from + NONCE_LEN)
    }
}

impl SealMode for Authenticate {
    const MAGIC: [u8; 4] = *b"AFSI";
    const OVERHEAD: usize = 32;

    fn new(key: &Key) -> Self {
        let key = key.derive("anyfs file integrity v1");
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose()))
    }

    fn seal(&self, aad: &[u8], plain: &[u8], _nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
        let mut mac = ring::hmac::Context::with_key(&self.0);
        mac.update(aad);
        mac.update(plain);
        out.extend_from_slice(plain);
        out.extend_from_slice(mac.sign().as_ref());
    }

    fn open_within(&self, aad: &[u8], buf: &mut [u8], from: usize) -> Option<usize> {
        let len = buf.len().checked_sub(from + Self::OVERHEAD)?;
        let (data, tag) = buf[from..].split_at(len);
        let mut mac = ring::hmac::Context::with_key(&self.0);
        mac.update(aad);
        mac.update(data);
        let ok: bool = subtle::ConstantTimeEq::ct_eq(mac.sign().as_ref(), tag).into();
        if !ok {
            return None;
        }
        buf.copy_within(from..from + len, 0);
        Some(len)
    }
}

/// Where the records of a stored file are.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) records: u64,
    pub(super) plain_len: u64,
}

impl Layout {
    /// The layout a stored length implies, or `None` if no sealed file can
    /// have that length.
    pub(super) fn of<M: SealMode>(stored: u64) -> Option<Self> {
        let body = stored.checked_sub(HEADER_LEN as u64)?;
        let record = (CHUNK_SIZE + M::OVERHEAD) as u64;
        let (full, rest) = (body / record, body % record);
        if rest == 0 {
            (full > 0).then_some(Layout {
                records: full,
                plain_len: full * CHUNK_SIZE as u64,
            })
        } else {
            (rest >= M::OVERHEAD as u64).then_some(Layout {
                records: full + 1,
                plain_len: full * CHUNK_SIZE as u64 + rest - M::OVERHEAD as u64,
            })
        }
    }

    /// Bytes of content in record `index`.
    pub(super) fn plain_in(&self, index: u64) -> usize {
        if index + 1 < self.records {
            CHUNK_SIZE
        } else {
            (self.plain_len - (self.records - 1) * CHUNK_SIZE as u64) as usize
        }
    }
}

pub(super) fn record_offset<M: SealMode>(index: u64) -> u64 {
    HEADER_LEN as u64 + index * (CHUNK_SIZE + M::OVERHEAD) as u64
}

/// A fresh header with a random file id.
pub(super) fn new_header<M: SealMode>() -> FsResult<[u8; HEADER_LEN]> {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&M::MAGIC);
    header[4] = VERSION;
    header[8..12].copy_from_slice(&(CHUNK_SIZE as u32).to_le_bytes());
    crypto::fill_random(&mut header[12..28])?;
    Ok(header)
}

pub(super) fn header_is_valid<M: SealMode>(header: &[u8]) -> bool {
    header.len() == HEADER_LEN
        && header[..4] == M::MAGIC
        && header[4] == VERSION
        && header[8..12] == (CHUNK_SIZE as u32).to_le_bytes()
}

/// What a record is authenticated with.
pub(super) fn record_aad(header: &[u8], index: u64, last: bool, path: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 9 + path.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.push(u8::from(last));
    aad.extend_from_slice(path);
    aad
}

pub(super) fn nonce_for(base: &[u8; NONCE_LEN], index: u64) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    for (n, i) in nonce[4..].iter_mut().zip(index.to_le_bytes()) {
        *n ^= i;
    }
    nonce
}

pub(super) fn random_nonce() -> FsResult<[u8; NONCE_LEN]> {
    let mut base = [0u8; NONCE_LEN];
    crypto::fill_random(&mut base)?;
    Ok(base)
}

/// Seals `data` as records `first..` of a file with `header`, the last
/// record marked as such.
pub(super) fn seal_records<M: SealMode>(
    mode: &M,
    header: &[u8],
    path: &[u8],
    first: u64,
    data: &[u8],
    out: &mut Vec<u8>,
) -> FsResult<()> {
    let base = random_nonce()?;
    let count = data.len().div_ceil(CHUNK_SIZE).max(1);
    out.reserve(data.len() + count * M::OVERHEAD);
    for i in 0..count {
        let chunk = &data[(i * CHUNK_SIZE).min(data.len())..((i + 1) * CHUNK_SIZE).min(data.len())];
        let index = first + i as u64;
        let aad = record_aad(header, index, i + 1 == count, path);
        mode.seal(&aad, chunk, nonce_for(&base, index), out);
    }
    Ok(())
}

/// Opens the consecutive records `first..` that start at `buf[at..]` (the
/// buffer ends with the last of them), moving their content to the start of
/// `buf`; returns the content's length.
pub(super) fn open_records<M: SealMode>(
    mode: &M,
    header: &[u8],
    bound_to: &[u8],
    layout: &Layout,
    first: u64,
    buf: &mut [u8],
    mut at: usize,
) -> Option<usize> {
    let mut written = 0;
    let mut index = first;
    while at < buf.len() {
        let len = layout.plain_in(index) + M::OVERHEAD;
        let end = at.checked_add(len).filter(|&e| e <= buf.len())?;
        let aad = record_aad(header, index, index + 1 == layout.records, bound_to);
        written += mode.open_within(&aad, &mut buf[written..end], at - written)?;
        at = end;
        index += 1;
    }
    Some(written)
}
