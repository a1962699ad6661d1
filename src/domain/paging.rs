//! Opaque keyset page tokens and stream cursors. A token carries the sort key
//! of the last row returned and the identity of the query it belongs to,
//! authenticated with a key every replica shares (HMAC-SHA256): a forged or
//! altered token, or one of another query, is refused.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::error::{Error, Reason};
use super::keys::ServerKey;

/// Makes and reads the page tokens and cursors of every list and stream.
#[derive(Debug, Clone)]
pub struct PageTokens {
    key: ServerKey,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    /// Query fingerprint.
    q: String,
    /// Keyset position: the sort key of the last row returned.
    k: Vec<String>,
    /// Its MAC.
    m: String,
}

fn invalid() -> Error {
    Error::InvalidToken(
        Reason::PageTokenInvalid,
        "page_token",
        "page_token is not a token of this query; start again without it".into(),
    )
}

impl PageTokens {
    pub fn new(key: ServerKey) -> Self {
        PageTokens { key }
    }

    /// The identity of a list query: its name and every filter that shapes it.
    pub fn fingerprint(&self, list: &str, filters: &[&str]) -> String {
        let mut hasher = Sha256::new();
        for part in std::iter::once(list).chain(filters.iter().copied()) {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(&hasher.finalize()[..12])
    }

    fn tag(&self, query_fingerprint: &str, key: &[String]) -> String {
        let mut parts: Vec<&[u8]> = vec![query_fingerprint.as_bytes()];
        parts.extend(key.iter().map(|part| part.as_bytes()));
        self.key.mac_hex(&parts)
    }

    /// Encodes the position after `key` for the query `query_fingerprint`.
    pub fn encode(&self, query_fingerprint: &str, key: Vec<String>) -> String {
        let token = Token {
            q: query_fingerprint.to_string(),
            m: self.tag(query_fingerprint, &key),
            k: key,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }

    /// Decodes a token of the query `query_fingerprint`; empty means the
    /// first page.
    pub fn decode(
        &self,
        query_fingerprint: &str,
        token: &str,
        key_len: usize,
    ) -> Result<Option<Vec<String>>, Error> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let token: Token = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let mut parts: Vec<&[u8]> = vec![token.q.as_bytes()];
        parts.extend(token.k.iter().map(|part| part.as_bytes()));
        if token.q != query_fingerprint
            || token.k.len() != key_len
            || !self.key.verify_hex(&parts, &token.m)
        {
            return Err(invalid());
        }
        Ok(Some(token.k))
    }
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
    pub total_size: i64,
}

impl<T> Page<T> {
    /// The same page with each item changed by `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
            total_size: self.total_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(key: &[u8]) -> PageTokens {
        PageTokens::new(ServerKey::new(key.to_vec()))
    }

    #[test]
    fn round_trip_and_tamper() {
        let tokens = tokens(b"key");
        let q = tokens.fingerprint("organizations", &["acme"]);
        let token = tokens.encode(&q, vec!["a".into(), "org_1".into()]);
        assert_eq!(
            tokens.decode(&q, &token, 2).unwrap(),
            Some(vec!["a".to_string(), "org_1".to_string()])
        );
        assert!(
            tokens
                .decode(&tokens.fingerprint("organizations", &["other"]), &token, 2)
                .is_err()
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        assert!(
            tokens
                .decode(&q, &URL_SAFE_NO_PAD.encode(bytes), 2)
                .is_err()
        );
        assert!(tokens.decode(&q, "not a token", 2).is_err());
        assert_eq!(tokens.decode(&q, "", 2).unwrap(), None);
    }

    #[test]
    fn a_token_made_with_another_key_is_refused() {
        let ours = tokens(b"ours");
        let theirs = tokens(b"theirs");
        let q = ours.fingerprint("organizations", &[]);
        let forged = theirs.encode(&q, vec!["a".into(), "org_1".into()]);
        assert!(ours.decode(&q, &forged, 2).is_err());
    }
}
