//! Names and symlink targets as the database holds them: each entry's name
//! as an HMAC-SHA256 under the account's name key, bound to the workspace's
//! name scope (its id, shared by its snapshots) and the parent directory
//! (the lookup key), and sealed with AES-256-GCM (what a listing opens);
//! symlink targets sealed the same way, bound to their node.

use std::fmt;
use std::path::Path;

use anyfs::crypto::{Aes256Gcm, Key};
use anyfs::{FsError, FsResult};
use ring::hmac;

/// The keys of one account for names, derived from the master key.
pub(crate) struct NameKeys {
    lookup: hmac::Key,
    seal: Aes256Gcm,
}

impl fmt::Debug for NameKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameKeys(********)")
    }
}

impl NameKeys {
    /// The name keys of `account`.
    pub(crate) fn new(master: &Key, account: &str) -> Self {
        let lookup = master.derive(&format!("anyfs-objects v1 account {account} name lookup"));
        let seal = master.derive(&format!("anyfs-objects v1 account {account} name sealing"));
        Self {
            lookup: hmac::Key::new(hmac::HMAC_SHA256, lookup.expose()),
            seal: Aes256Gcm::new(&seal),
        }
    }

    /// The lookup key of `name` in directory `parent` of the workspace
    /// whose name scope is `scope`.
    pub(crate) fn lookup_key(&self, scope: i64, parent: i64, name: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.lookup);
        ctx.update(&scope.to_be_bytes());
        ctx.update(&parent.to_be_bytes());
        ctx.update(name);
        ctx.sign().as_ref().to_vec()
    }

    /// `name` sealed for the entry with lookup key `key`.
    pub(crate) fn seal_name(&self, key: &[u8], name: &[u8]) -> FsResult<Vec<u8>> {
        self.seal.encrypt(&entry_aad(key), name)
    }

    /// The name sealed in the entry with lookup key `key`; `IntegrityError`
    /// about `dir` if it does not open.
    pub(crate) fn open_name(&self, dir: &Path, key: &[u8], sealed: &[u8]) -> FsResult<Vec<u8>> {
        self.seal
            .decrypt(&entry_aad(key), sealed)
            .ok_or_else(|| FsError::integrity(dir))
    }

    /// A symlink target sealed for node `ino` of name scope `scope`.
    pub(crate) fn seal_target(&self, scope: i64, ino: i64, target: &[u8]) -> FsResult<Vec<u8>> {
        self.seal.encrypt(&target_aad(scope, ino), target)
    }

    /// The target sealed for node `ino`; `IntegrityError` about `path` if
    /// it does not open.
    pub(crate) fn open_target(
        &self,
        path: &Path,
        scope: i64,
        ino: i64,
        sealed: &[u8],
    ) -> FsResult<Vec<u8>> {
        self.seal
            .decrypt(&target_aad(scope, ino), sealed)
            .ok_or_else(|| FsError::integrity(path))
    }
}

impl NameKeys {
    /// A snapshot's label, sealed for the snapshot whose workspace name
    /// (reserved, random) is `snapshot`.
    pub(crate) fn seal_label(&self, snapshot: &str, label: &str) -> FsResult<Vec<u8>> {
        self.seal.encrypt(&label_aad(snapshot), label.as_bytes())
    }

    /// The label sealed for `snapshot`; `IntegrityError` if it does not
    /// open.
    pub(crate) fn open_label(&self, snapshot: &str, sealed: &[u8]) -> FsResult<String> {
        self.seal
            .decrypt(&label_aad(snapshot), sealed)
            .and_then(|l| String::from_utf8(l).ok())
            .ok_or_else(|| FsError::integrity(Path::new("/")))
    }
}

fn label_aad(snapshot: &str) -> Vec<u8> {
    let mut aad = b"anyfs snapshot label v1 ".to_vec();
    aad.extend_from_slice(snapshot.as_bytes());
    aad
}

/// A sealed name is bound to its entry's lookup key, which is bound to the
/// name scope, the parent and the name: it cannot be moved to another entry.
fn entry_aad(key: &[u8]) -> Vec<u8> {
    let mut aad = b"anyfs entry name v1 ".to_vec();
    aad.extend_from_slice(key);
    aad
}

fn target_aad(scope: i64, ino: i64) -> Vec<u8> {
    let mut aad = b"anyfs symlink target v1 ".to_vec();
    aad.extend_from_slice(&scope.to_be_bytes());
    aad.extend_from_slice(&ino.to_be_bytes());
    aad
}
