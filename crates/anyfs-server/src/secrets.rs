//! Bearer secrets (account API secrets, agent tokens, the admin secret):
//! 256 random bits behind a recognisable prefix, shown once, stored only as
//! a SHA-256 digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// What a secret opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An account's API secret.
    Account,
    /// An agent's token.
    Agent,
    /// The service administrator's secret.
    Admin,
}

impl SecretKind {
    /// The prefix that makes a leaked secret recognisable (to scanners too).
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Account => "afs_acct_",
            SecretKind::Agent => "afs_agent_",
            SecretKind::Admin => "afs_admin_",
        }
    }

    /// The kind a presented secret claims by its prefix.
    pub fn of(secret: &str) -> Option<Self> {
        [SecretKind::Account, SecretKind::Agent, SecretKind::Admin]
            .into_iter()
            .find(|k| secret.starts_with(k.prefix()))
    }
}

/// A fresh secret of `kind`: the prefix and 32 random bytes, base64url.
pub fn generate(kind: SecretKind) -> Result<Zeroizing<String>, anyfs::FsError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    let key = anyfs::crypto::Key::random()?;
    bytes.copy_from_slice(key.expose());
    let mut out = Zeroizing::new(String::with_capacity(64));
    out.push_str(kind.prefix());
    out.push_str(&URL_SAFE_NO_PAD.encode(*bytes));
    Ok(out)
}

/// The digest stored in place of a secret.
pub fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `secret` has the stored digest, compared in constant time.
pub fn matches(secret: &str, stored: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(&digest(secret)[..], stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_verified_by_digest() {
        let a = generate(SecretKind::Account).unwrap();
        let b = generate(SecretKind::Account).unwrap();
        assert_ne!(*a, *b);
        assert!(a.starts_with("afs_acct_"));
        assert!(a.len() >= "afs_acct_".len() + 43, "256 bits at least");
        assert_eq!(SecretKind::of(&a), Some(SecretKind::Account));
        assert!(matches(&a, &digest(&a)));
        assert!(!matches(&b, &digest(&a)));
    }
}
