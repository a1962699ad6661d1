//! Opaque keyset page tokens. A token carries the sort key of the last row
//! returned and a fingerprint of the query it belongs to, under a checksum: a
//! tampered token, or one from another query, is refused.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::error::{Error, Reason};

const CHECKSUM_KEY: &[u8] = b"orgs.v1 page token";

/// Makes and reads the page tokens and cursors of every list and watch.
#[derive(Debug, Clone)]
pub struct PageTokens {
    key: Arc<Vec<u8>>,
}

impl Default for PageTokens {
    fn default() -> Self {
        PageTokens {
            key: Arc::new(CHECKSUM_KEY.to_vec()),
        }
    }
}

impl PageTokens {
    /// The identity of a list query: its name and every filter that shapes it.
    pub fn fingerprint(&self, list: &str, filters: &[&str]) -> String {
        let _ = &self.key;
        fingerprint(list, filters)
    }

    /// Encodes the position after `key` for the query `query_fingerprint`.
    pub fn encode(&self, query_fingerprint: &str, key: Vec<String>) -> String {
        encode(query_fingerprint, key)
    }

    /// Decodes a token of the query `query_fingerprint`; empty means the
    /// first page.
    pub fn decode(
        &self,
        query_fingerprint: &str,
        token: &str,
        key_len: usize,
    ) -> Result<Option<Vec<String>>, Error> {
        decode(query_fingerprint, token, key_len)
    }
}

fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CHECKSUM_KEY);
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..12])
}

/// The identity of a list query: its name and every filter that shapes it.
pub fn fingerprint(list: &str, filters: &[&str]) -> String {
    let mut parts = vec![list];
    parts.extend_from_slice(filters);
    digest(&parts)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    /// Query fingerprint.
    q: String,
    /// Keyset position: the sort key of the last row returned.
    k: Vec<String>,
    /// Checksum.
    c: String,
}

/// Encodes the position after `key` for the query `query_fingerprint`.
pub fn encode(query_fingerprint: &str, key: Vec<String>) -> String {
    let mut parts: Vec<&str> = vec![query_fingerprint];
    parts.extend(key.iter().map(String::as_str));
    let token = Token {
        q: query_fingerprint.to_string(),
        c: digest(&parts),
        k: key,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// Decodes a token of the query `query_fingerprint`; empty means the first page.
pub fn decode(
    query_fingerprint: &str,
    token: &str,
    key_len: usize,
) -> Result<Option<Vec<String>>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::InvalidPageToken(
            Reason::PageTokenInvalid,
            "page_token is not a token of this query; start again without it".into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let token: Token = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let mut parts: Vec<&str> = vec![&token.q];
    parts.extend(token.k.iter().map(String::as_str));
    if token.c != digest(&parts) || token.q != query_fingerprint || token.k.len() != key_len {
        return Err(invalid());
    }
    Ok(Some(token.k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let q = fingerprint("organizations", &["acme"]);
        let token = encode(&q, vec!["a".into(), "org_1".into()]);
        assert_eq!(
            decode(&q, &token, 2).unwrap(),
            Some(vec!["a".to_string(), "org_1".to_string()])
        );
        assert!(decode(&fingerprint("organizations", &["other"]), &token, 2).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        assert!(decode(&q, &URL_SAFE_NO_PAD.encode(bytes), 2).is_err());
        assert!(decode(&q, "not a token", 2).is_err());
        assert_eq!(decode(&q, "", 2).unwrap(), None);
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
