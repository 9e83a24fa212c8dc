//! Keys, and the few cryptographic building blocks the encryption and
//! integrity layers share: AES-256-GCM and HMAC-SHA256 from `ring`,
//! Argon2id for passwords.
//!
//! A [`Key`] is 32 bytes that are wiped from memory when dropped, never
//! printed, and never compared in variable time.
//!
//! ```
//! use anyfs::crypto::{Key, Salt};
//!
//! // A random key, for data that lives as long as the key is kept somewhere.
//! let key = Key::random()?;
//! // A key from a password: the salt is random and must be stored beside
//! // the data (it is not secret) to derive the same key again.
//! let salt = Salt::random()?;
//! let from_password = Key::from_password("correct horse battery staple", &salt)?;
//! assert_eq!(
//!     from_password,
//!     Key::from_password("correct horse battery staple", &salt)?
//! );
//! assert_eq!(format!("{key:?}"), "Key(********)");
//! # Ok::<(), anyfs::FsError>(())
//! ```

use std::fmt;
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{FsError, FsResult};

/// Bytes of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;

/// A 256-bit secret key, wiped from memory on drop.
///
/// `Debug` prints `Key(********)`; equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn random() -> FsResult<Self> {
        let mut key = Self([0; 32]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    /// The key a password gives with this salt, through Argon2id
    /// (19 MiB of memory, 2 passes, the parameters OWASP recommends).
    /// The same password and salt always give the same key.
    pub fn from_password(password: &str, salt: &Salt) -> FsResult<Self> {
        let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(kdf_error)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Self([0; 32]);
        argon
            .hash_password_into(password.as_bytes(), &salt.0, &mut key.0)
            .map_err(kdf_error)?;
        Ok(key)
    }

    /// An independent key for one purpose, derived with HKDF-SHA256: the
    /// same key and context always give the same subkey, different contexts
    /// unrelated ones.
    pub fn derive(&self, context: &str) -> Self {
        struct Len32;
        impl ring::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"anyfs key derivation v1")
            .extract(&self.0);
        let info = [context.as_bytes()];
        let mut out = Self([0; 32]);
        // Both calls only fail for an output longer than 255 hash blocks.
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut out.0);
        }
        out
    }

    /// The raw bytes, for handing to another API (such as SQLCipher's
    /// `open_with_key`). Avoid copying them anywhere that is not wiped.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::ops::Deref for Key {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Key {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<&[u8; 32]> for Key {
    fn from(bytes: &[u8; 32]) -> Self {
        Self(*bytes)
    }
}

impl From<&Key> for Key {
    fn from(key: &Key) -> Self {
        key.clone()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(********)")
    }
}

/// The random, non-secret salt that makes a password's key unique to one
/// store. Keep it beside the data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Salt([u8; 16]);

impl Salt {
    /// A fresh random salt.
    pub fn random() -> FsResult<Self> {
        let mut salt = Self([0; 16]);
        fill_random(&mut salt.0)?;
        Ok(salt)
    }
    /// A salt from its stored bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

fn kdf_error(err: argon2::Error) -> FsError {
    FsError::backend("/", "derive key", format!("Argon2id failed: {err}"))
}

/// Fills `buf` from the operating system's secure generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> FsResult<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| FsError::backend("/", "random", "the system's random number generator failed"))
}

/// AES-256-GCM with one key (from `ring`; hardware-accelerated where the
/// CPU allows).
///
/// ```
/// use anyfs::crypto::{Aes256Gcm, Key};
///
/// let cipher = Aes256Gcm::new(&Key::random()?);
/// let sealed = cipher.encrypt(b"account 42", b"api key")?;
/// assert_eq!(cipher.decrypt(b"account 42", &sealed).as_deref(), Some(&b"api key"[..]));
/// // Other associated data, or a changed byte, and nothing comes out.
/// assert_eq!(cipher.decrypt(b"account 43", &sealed), None);
/// # Ok::<(), anyfs::FsError>(())
/// ```
pub struct Aes256Gcm {
    key: LessSafeKey,
}

/// The crate-internal name.
pub(crate) type Aes = Aes256Gcm;

impl fmt::Debug for Aes256Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes256Gcm(********)")
    }
}

impl Aes256Gcm {
    /// The cipher for `key`.
    pub fn new(key: &Key) -> Self {
        let unbound =
            UnboundKey::new(&aead::AES_256_GCM, &key.0).expect("AES-256-GCM takes any 32-byte key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// A fresh random nonce, the ciphertext of `plaintext` and the tag, in
    /// one buffer; `aad` is authenticated too and must be given again to
    /// decrypt.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> FsResult<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.seal_detached(nonce, aad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The plaintext of [`encrypt`](Self::encrypt)'s output, or `None` if
    /// it does not authenticate (wrong key, wrong `aad`, any change).
    pub fn decrypt(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut out = body.to_vec();
        let len = self.open(nonce, aad, &mut out)?;
        out.truncate(len);
        Some(out)
    }

    /// Encrypts `data` in place with `nonce` (which must never be used
    /// twice with this key) and returns the tag.
    pub fn seal_detached(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Nonce::assume_unique_for_key(nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), data)
            .expect("AES-GCM seals any input below 64 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `buf[from..]` (ciphertext then tag), writing the plaintext
    /// to the start of `buf`; returns its length, or `None` when it does
    /// not authenticate.
    pub(crate) fn open_within(
        &self,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        from: usize,
    ) -> Option<usize> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        self.key
            .open_within(nonce, Aad::from(aad), buf, from..)
            .ok()
            .map(|plain| plain.len())
    }

    /// Decrypts `data` (ciphertext then tag) in place, returning the
    /// plaintext's length, or `None` when it does not authenticate.
    pub fn open(&self, nonce: &[u8], aad: &[u8], data: &mut [u8]) -> Option<usize> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        self.key
            .open_in_place(nonce, Aad::from(aad), data)
            .ok()
            .map(|plain| plain.len())
    }
}

/// The error for data that does not authenticate.
pub(crate) fn integrity(path: &Path) -> FsError {
    FsError::integrity(path)
}
