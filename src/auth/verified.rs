//! Tokens verified before. A caller sends the same bearer token with every
//! call until it expires, and checking its signature (an HMAC, or an RSA or
//! ECDSA verification, which costs more than a cached read) and parsing its
//! claims on each call is work done again for the same answer. So a verified
//! token's principal is kept, keyed by the whole token (never a hash of it:
//! only the exact string that was verified is answered from here), and is
//! used again only while:
//! - the token would still pass: until its `exp` plus the verifier's
//!   leeway, the same rule the verifier applies;
//! - the keys that verified it are still the keys in use: every change of
//!   the key set (a new public key file, a JWKS fetch) moves a generation
//!   number, and an entry of an older generation is verified again, so a key
//!   that is rotated out stops working at once.
//!
//! Only tokens that passed are kept; a refused token is checked again every
//! time, so garbage costs a caller as much as before and takes no room. The
//! cache is bounded by an estimate of its entries' bytes (least recently
//! used first out); a bound of 0 turns it off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::Principal;

/// The longest an entry is kept, whatever its token's `exp`.
const MAX_KEPT: Duration = Duration::from_secs(600);

/// Bytes an entry costs beyond its strings: the key and value structs, the
/// scope set's nodes and the cache's own bookkeeping, roughly.
const ENTRY_OVERHEAD_BYTES: usize = 192;

#[derive(Clone)]
struct Verified {
    principal: Arc<Principal>,
    /// The key set's generation when the token was verified.
    generation: u64,
    /// The last second (Unix time) at which the verifier accepts the token.
    valid_until: u64,
    /// How long the entry may stay, from its insertion.
    kept_for: Duration,
}

struct UntilInvalid;

impl Expiry<String, Verified> for UntilInvalid {
    fn expire_after_create(
        &self,
        _token: &String,
        verified: &Verified,
        _now: Instant,
    ) -> Option<Duration> {
        Some(verified.kept_for)
    }
}

/// The principals of tokens verified before; see the module.
pub struct VerifiedTokens {
    cache: Option<Cache<String, Verified>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("enabled", &self.cache.is_some())
            .finish()
    }
}

fn weight(token: &str, principal: &Principal) -> u32 {
    let strings = token.len()
        + principal.sub.len()
        + principal.scopes.iter().map(String::len).sum::<usize>()
        + principal.act.as_ref().map_or(0, String::len)
        + principal.email.as_ref().map_or(0, String::len);
    u32::try_from(strings + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
}

impl VerifiedTokens {
    /// A cache of at most about `max_bytes`; 0 keeps nothing.
    pub fn new(max_bytes: u64) -> VerifiedTokens {
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|token: &String, verified: &Verified| weight(token, &verified.principal))
                .expire_after(UntilInvalid)
                .build()
        });
        VerifiedTokens { cache }
    }

    /// The principal of `token` if it was verified with keys of
    /// `generation` and is still valid at `now` (Unix seconds).
    pub fn get(&self, token: &str, generation: u64, now: u64) -> Option<Principal> {
        let verified = self.cache.as_ref()?.get(token)?;
        (verified.generation == generation && now <= verified.valid_until)
            .then(|| (*verified.principal).clone())
    }

    /// Keeps `principal` as the answer for `token`, verified at `now` with
    /// keys of `generation` and accepted until `valid_until` (Unix seconds).
    pub fn insert(
        &self,
        token: &str,
        principal: &Principal,
        generation: u64,
        valid_until: u64,
        now: u64,
    ) {
        let Some(cache) = &self.cache else {
            return;
        };
        let Some(left) = valid_until.checked_sub(now).filter(|left| *left > 0) else {
            return;
        };
        let verified = Verified {
            principal: Arc::new(principal.clone()),
            generation,
            valid_until,
            kept_for: Duration::from_secs(left).min(MAX_KEPT),
        };
        cache.insert(token.into(), verified);
    }

    /// Entries and their estimated bytes.
    pub fn size(&self) -> (u64, u64) {
        self.cache.as_ref().map_or((0, 0), |cache| {
            cache.run_pending_tasks();
            (cache.entry_count(), cache.weighted_size())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Principal {
        Principal {
            sub: sub.into(),
            scopes: ["orgs:read".to_string()].into(),
            act: None,
            email: Some("a@example.com".into()),
            email_verified: true,
        }
    }

    #[test]
    fn answers_only_the_same_token_while_it_is_valid() {
        let tokens = VerifiedTokens::new(1 << 20);
        tokens.insert("token-a", &principal("user_a"), 3, 1_000, 900);
        assert_eq!(tokens.get("token-a", 3, 900), Some(principal("user_a")));
        assert_eq!(tokens.get("token-a", 3, 1_000), Some(principal("user_a")));
        assert_eq!(tokens.get("token-a", 3, 1_001), None, "past its validity");
        assert_eq!(tokens.get("token-a ", 3, 900), None, "another string");
        assert_eq!(tokens.get("token-b", 3, 900), None);
    }

    #[test]
    fn keys_of_another_generation_verify_again() {
        let tokens = VerifiedTokens::new(1 << 20);
        tokens.insert("token-a", &principal("user_a"), 3, 1_000, 900);
        assert_eq!(tokens.get("token-a", 4, 900), None);
    }

    #[test]
    fn nothing_is_kept_when_off_or_already_invalid() {
        let off = VerifiedTokens::new(0);
        off.insert("token-a", &principal("user_a"), 0, 1_000, 900);
        assert_eq!(off.get("token-a", 0, 900), None);
        assert_eq!(off.size(), (0, 0));

        let tokens = VerifiedTokens::new(1 << 20);
        tokens.insert("token-a", &principal("user_a"), 0, 900, 900);
        tokens.insert("token-b", &principal("user_b"), 0, 800, 900);
        assert_eq!(tokens.get("token-a", 0, 900), None);
        assert_eq!(tokens.get("token-b", 0, 800), None);
    }

    #[test]
    fn bounded_by_bytes() {
        let tokens = VerifiedTokens::new(64 * 1024);
        for n in 0..10_000 {
            let token = format!("{n:0>600}");
            tokens.insert(&token, &principal("user_a"), 0, 1_000, 900);
        }
        let (entries, bytes) = tokens.size();
        assert!(bytes <= 64 * 1024, "{bytes} bytes");
        assert!(entries < 10_000, "{entries} entries");
    }
}
