//! Sealing small values at rest (agent configs and policies, executions,
//! audit paths): AES-256-GCM under a key derived from the master keys,
//! bound to what the value is and whose.

use anyfs::crypto::{Aes256Gcm, Key};
use zeroize::Zeroizing;

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    /// The service has no master key to seal with.
    #[error("no master key to seal with")]
    NoKey,
    /// The value is not JSON that can be written out.
    #[error("cannot encode the value: {0}")]
    Encode(#[from] serde_json::Error),
    /// The cipher failed (no randomness for a nonce).
    #[error("cannot seal: {0}")]
    Cipher(#[from] anyfs::FsError),
}

/// Seals small values with AES-256-GCM under a key derived from the master
/// keys; the associated data binds each to its kind, account and row, so a
/// value moved elsewhere does not open. The first key seals, every key
/// opens.
pub(crate) struct Sealer {
    ciphers: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Sealer {
    /// A sealer for these master keys.
    pub(crate) fn new(keys: &[Key]) -> Self {
        Self {
            ciphers: keys
                .iter()
                .map(|k| Aes256Gcm::new(&k.derive("anyfs agent config v1")))
                .collect(),
        }
    }

    /// `plain` sealed as a `kind` of `account`'s row `id`.
    pub(crate) fn seal(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let cipher = self.ciphers.first().ok_or(SealError::NoKey)?;
        Ok(cipher.encrypt(&sealed_aad(kind, account, id), plain)?)
    }

    /// What [`seal`](Self::seal) made, with any key; `None` if it does not
    /// authenticate as that kind of that row.
    pub(crate) fn open(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let aad = sealed_aad(kind, account, id);
        self.ciphers
            .iter()
            .find_map(|c| c.decrypt(&aad, sealed).map(Zeroizing::new))
    }

    /// A JSON value sealed as a `kind` of `account`'s row `id`.
    pub(crate) fn seal_json(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<u8>, SealError> {
        let plain = Zeroizing::new(serde_json::to_vec(value)?);
        self.seal(kind, account, id, &plain)
    }

    /// What [`seal_json`](Self::seal_json) made, with any key.
    pub(crate) fn open_json(
        &self,
        kind: &str,
        account: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<serde_json::Value> {
        let plain = self.open(kind, account, id, sealed)?;
        serde_json::from_slice(&plain).ok()
    }
}

fn sealed_aad(kind: &str, account: &str, id: &str) -> Vec<u8> {
    format!("anyfs {kind}\0{account}\0{id}").into_bytes()
}

/// A decrypted JSON value holding credentials (an agent config): every
/// string in it is overwritten with zeros when it is dropped.
pub(crate) struct Decrypted(pub(crate) serde_json::Value);

impl std::ops::Deref for Decrypted {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl Drop for Decrypted {
    fn drop(&mut self) {
        fn wipe(value: &mut serde_json::Value) {
            use zeroize::Zeroize;
            match value {
                serde_json::Value::String(s) => s.zeroize(),
                serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
                serde_json::Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        wipe(&mut self.0);
    }
}
