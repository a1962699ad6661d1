//! Keyed hashes (HMAC-SHA256) with a secret every replica shares: they
//! authenticate page tokens and cursors, and they store verification codes so
//! that a copy of the database does not reveal them.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret key. Its bytes never show in logs.
#[derive(Clone)]
pub struct ServerKey(Arc<Vec<u8>>);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey([redacted])")
    }
}

impl ServerKey {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        ServerKey(Arc::new(secret.into()))
    }

    /// A fresh random key of 256 bits, hex-encoded, to be stored.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        hex::encode(bytes)
    }

    /// The HMAC-SHA256 of `parts`, each length-prefixed so that no two
    /// different lists of parts hash alike.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// [`Self::mac`] as hex.
    pub fn mac_hex(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts))
    }

    /// Whether `tag` (hex) is the MAC of `parts`, compared in constant time.
    pub fn verify_hex(&self, parts: &[&[u8]], tag: &str) -> bool {
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_the_key_and_on_part_boundaries() {
        let key = ServerKey::new(b"one".to_vec());
        let other = ServerKey::new(b"two".to_vec());
        let tag = key.mac_hex(&[b"ab", b"c"]);
        assert!(key.verify_hex(&[b"ab", b"c"], &tag));
        assert!(!key.verify_hex(&[b"a", b"bc"], &tag));
        assert!(!other.verify_hex(&[b"ab", b"c"], &tag));
        assert!(!key.verify_hex(&[b"ab", b"c"], "zz"));
        assert_eq!(format!("{key:?}"), "ServerKey([redacted])");
        assert_eq!(ServerKey::generate().len(), 64);
    }
}
