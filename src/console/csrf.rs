//! CSRF tokens: every form carries one, every POST is checked against it.
//!
//! A signed-in form's token is an HMAC, with the `console_csrf` key every
//! replica shares, of the hash of the session's bearer token: it needs no
//! server-side state, changes with the session, and cannot be made without
//! the key. The sign-in form, which has no session yet, is bound the same way
//! to a random nonce in a short-lived cookie of its own.

use sha2::{Digest, Sha256};

use crate::domain::keys::ServerKey;

/// The key of the CSRF tokens.
#[derive(Debug, Clone)]
pub struct CsrfKey(ServerKey);

const SESSION: &[u8] = b"console-session";
const SIGN_IN: &[u8] = b"console-sign-in";

impl CsrfKey {
    pub fn new(key: ServerKey) -> Self {
        CsrfKey(key)
    }

    /// The token of the forms of the session whose bearer token is `token`.
    pub fn for_session(&self, token: &str) -> String {
        self.0
            .mac_hex(&[SESSION, &Sha256::digest(token.as_bytes())])
    }

    /// Whether `sent` is the token of that session's forms.
    pub fn check_session(&self, token: &str, sent: &str) -> bool {
        self.0
            .verify_hex(&[SESSION, &Sha256::digest(token.as_bytes())], sent)
    }

    /// The token of the sign-in form bound to the nonce in its cookie.
    pub fn for_sign_in(&self, nonce: &str) -> String {
        self.0.mac_hex(&[SIGN_IN, nonce.as_bytes()])
    }

    /// Whether `sent` is the sign-in form's token for `nonce`.
    pub fn check_sign_in(&self, nonce: &str, sent: &str) -> bool {
        !nonce.is_empty() && self.0.verify_hex(&[SIGN_IN, nonce.as_bytes()], sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_session_and_kind() {
        let key = CsrfKey::new(ServerKey::new(b"k".to_vec()));
        let token = key.for_session("jwt-a");
        assert!(key.check_session("jwt-a", &token));
        assert!(!key.check_session("jwt-b", &token));
        assert!(!key.check_session("jwt-a", ""));
        assert!(!key.check_sign_in("jwt-a", &token));
        let other = CsrfKey::new(ServerKey::new(b"other".to_vec()));
        assert!(!other.check_session("jwt-a", &token));
        let sign_in = key.for_sign_in("nonce");
        assert!(key.check_sign_in("nonce", &sign_in));
        assert!(!key.check_sign_in("", &key.for_sign_in("")));
    }
}
