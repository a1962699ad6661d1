//! An identity provider's JSON Web Key Set (Clerk, Auth0, Keycloak, Zitadel or
//! any OIDC provider): the RS256/ES256 public keys of its tokens, chosen by
//! `kid`.
//!
//! The set is fetched at start (a provider unreachable then stops the start:
//! without keys no call could be served), again every refresh interval, and
//! when a token names a `kid` the set does not hold, as providers publish a new
//! key before they sign with it. Those refetches are rate-limited: at most one
//! per refetch interval, whatever the number of made-up `kid`s, so callers
//! cannot turn the server against the provider. A failed fetch keeps the keys
//! of the last good one, and a fetch that brings the same keys changes
//! nothing: tokens verified with them stay verified (see
//! [`super::verified`]).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The largest key set accepted; real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

type Keys = Arc<HashMap<String, Arc<DecodingKey>>>;

pub struct Jwks {
    url: reqwest::Url,
    algorithm: Algorithm,
    client: reqwest::Client,
    keys: RwLock<Keys>,
    /// The JWKs the keys in use were made from, by `kid`.
    in_use: Mutex<BTreeMap<String, String>>,
    /// Replacements of the key set so far.
    generation: AtomicU64,
    /// When the last refetch for an unknown `kid` started; held while one
    /// runs, so concurrent unknown `kid`s wait for it instead of fetching too.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    refetch_interval: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url.as_str())
            .finish()
    }
}

/// Checks that `url` is https, or http to this host only (a provider in the
/// same pod or a test).
pub fn parse_url(url: &str) -> anyhow::Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("ORGS_AUTH_JWKS_URL is not a URL: {e}"))?;
    // The parser normalizes hosts: lower case, IPv6 in brackets, compressed.
    let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if local => Ok(parsed),
        _ => anyhow::bail!(
            "ORGS_AUTH_JWKS_URL must be https:// (http:// only for localhost, 127.0.0.1 or [::1])"
        ),
    }
}

impl Jwks {
    /// Fetches the key set (an error stops the start) and keeps it fresh in
    /// the background until the last holder lets go.
    pub async fn start(
        url: &str,
        algorithm: Algorithm,
        refresh_interval: Duration,
        refetch_interval: Duration,
    ) -> anyhow::Result<Arc<Jwks>> {
        let url = parse_url(url)?;
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // A key set that moved is a configuration change, not something
            // to follow silently.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orgs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the JWKS client: {e}"))?;
        let jwks = Jwks {
            url,
            algorithm,
            client,
            keys: RwLock::new(Arc::new(HashMap::new())),
            in_use: Mutex::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            last_refetch: tokio::sync::Mutex::new(None),
            refetch_interval,
        };
        let keys = jwks.fetch().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot fetch the token keys from ORGS_AUTH_JWKS_URL {}: {e}",
                jwks.url
            )
        })?;
        tracing::info!(url = %jwks.url, keys = keys.keys.len(), "token keys fetched");
        jwks.replace(keys);
        let jwks = Arc::new(jwks);
        let weak = Arc::downgrade(&jwks);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(refresh_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(jwks) = weak.upgrade() else { return };
                jwks.refresh().await;
            }
        });
        Ok(jwks)
    }

    /// The key named `kid`, refetching the set (rate-limited) when it holds no
    /// such key.
    pub async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last_refetch = self.last_refetch.lock().await;
        // A refetch that ran while this call waited may have brought it.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if let Some(at) = *last_refetch
            && at.elapsed() < self.refetch_interval
        {
            tracing::debug!("token names an unknown kid; refetched recently, not again");
            return None;
        }
        *last_refetch = Some(Instant::now());
        tracing::info!(url = %self.url, "token names an unknown kid; refetching the token keys");
        self.refresh().await;
        self.cached(kid)
    }

    /// Fetches the set and uses it, or keeps the last good one.
    async fn refresh(&self) {
        match self.fetch().await {
            Ok(keys) => {
                let count = keys.keys.len();
                let changed = self.replace(keys);
                tracing::debug!(url = %self.url, keys = count, changed, "token keys fetched");
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the token keys; keeping the last ones");
            }
        }
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let keys = match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        keys.get(kid).cloned()
    }

    /// Uses `fetched` unless it holds the same keys as the set in use;
    /// returns whether it did.
    fn replace(&self, fetched: Fetched) -> bool {
        // Held throughout, so that two fetches finishing together replace
        // one after the other.
        let mut in_use = match self.in_use.lock() {
            Ok(in_use) => in_use,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *in_use == fetched.jwks {
            return false;
        }
        let mut current = match self.keys.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(fetched.keys);
        *in_use = fetched.jwks;
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Moves whenever the keys in use change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("the provider answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = usable_keys(&body, self.algorithm)?;
        if keys.keys.is_empty() {
            return Err(format!(
                "the key set holds no {:?} signing key with a kid",
                self.algorithm
            ));
        }
        Ok(keys)
    }
}

/// The usable keys of one fetched key set.
struct Fetched {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// The JWK each key was made from, written out again (so that the order
    /// of its members and white space do not count), by `kid`.
    jwks: BTreeMap<String, String>,
}

/// The keys of a JWKS document that verify `algorithm` signatures, by `kid`.
/// Keys of other types, curves, algorithms or uses, and keys this library
/// cannot read, are left out, so one odd key does not hide the others.
fn usable_keys(body: &[u8], algorithm: Algorithm) -> Result<Fetched, String> {
    #[derive(serde::Deserialize)]
    struct KeySet {
        keys: Vec<serde_json::Value>,
    }
    let set: KeySet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    let mut jwks = BTreeMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone().filter(|kid| !kid.is_empty()) else {
            continue;
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|key_use| *key_use != PublicKeyUse::Signature)
        {
            continue;
        }
        if let Some(key_algorithm) = jwk.common.key_algorithm
            && Algorithm::from_str(&key_algorithm.to_string()).ok() != Some(algorithm)
        {
            continue;
        }
        let fits = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(params), Algorithm::ES256) => {
                params.curve == EllipticCurve::P256
            }
            _ => false,
        };
        if !fits {
            continue;
        }
        if let (Ok(key), Ok(written)) = (DecodingKey::from_jwk(&jwk), serde_json::to_string(&jwk)) {
            keys.insert(kid.clone(), Arc::new(key));
            jwks.insert(kid, written);
        }
    }
    Ok(Fetched { keys, jwks })
}

/// An error with its causes, which reqwest keeps out of its `Display`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_local_http() {
        for ok in [
            "https://id.example.com/.well-known/jwks.json",
            "http://localhost:8080/jwks",
            "http://127.0.0.1:9/jwks",
            "http://[::1]:9/jwks",
        ] {
            assert!(parse_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example.com/jwks",
            "ftp://localhost/jwks",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_of_other_kinds_are_left_out() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            {"kty": "RSA", "kid": "good", "alg": "RS256", "use": "sig", "n": "sXch", "e": "AQAB"},
        ]});
        let keys = usable_keys(body.to_string().as_bytes(), Algorithm::RS256).unwrap();
        assert_eq!(keys.keys.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(keys.jwks.keys().collect::<Vec<_>>(), ["good"]);
        let keys = usable_keys(body.to_string().as_bytes(), Algorithm::ES256).unwrap();
        assert!(keys.keys.is_empty());
        assert!(usable_keys(b"<html>", Algorithm::RS256).is_err());
    }

    #[test]
    fn the_same_keys_written_differently_read_the_same() {
        let one = r#"{"keys": [{"kty": "RSA", "kid": "a", "n": "sXch", "e": "AQAB"},
                               {"kty": "RSA", "kid": "b", "n": "sXcg", "e": "AQAB"}]}"#;
        let other = r#"{"keys":[{"e":"AQAB","n":"sXcg","kid":"b","kty":"RSA"},
                               {"kty":"oct","kid":"x","k":"c2VjcmV0"},
                               {"n":"sXch","kty":"RSA","e":"AQAB","kid":"a"}]}"#;
        let changed = r#"{"keys": [{"kty": "RSA", "kid": "a", "n": "sXci", "e": "AQAB"},
                                   {"kty": "RSA", "kid": "b", "n": "sXcg", "e": "AQAB"}]}"#;
        let read = |body: &str| usable_keys(body.as_bytes(), Algorithm::RS256).unwrap().jwks;
        assert_eq!(read(one), read(other));
        assert_ne!(read(one), read(changed));
    }
}
