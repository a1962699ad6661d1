//! Proving that an organization owns a domain: the strategies, the limits on
//! guessing (per domain, so they survive new codes), the secrets of each
//! strategy, and the rules of claims. Knows no storage.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::keys::ServerKey;
use super::time::Micros;

const HOUR: Micros = 3600 * 1_000_000;

/// `PrepareDomainVerification` calls one domain may take per
/// [`PREPARE_WINDOW`].
pub const MAX_PREPARES: i64 = 5;
/// The sliding window of [`MAX_PREPARES`].
pub const PREPARE_WINDOW: Micros = HOUR;
/// Failed attempts within [`FAILURE_WINDOW`] that lock a domain.
pub const MAX_FAILED_ATTEMPTS: i64 = 10;
/// The sliding window of [`MAX_FAILED_ATTEMPTS`].
pub const FAILURE_WINDOW: Micros = 24 * HOUR;
/// How long a domain stays locked after its last allowed failure.
pub const LOCK_DURATION: Micros = 24 * HOUR;
/// The label the DNS TXT challenge record is published under, below the
/// domain.
pub const DNS_CHALLENGE_LABEL: &str = "_orgs-challenge";

/// How an organization proves that it owns a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VerificationStrategy {
    /// A 6-digit code mailed to an address at the domain.
    EmailCode,
    /// A TXT record with a random value published at
    /// `_orgs-challenge.<domain>`.
    DnsTxt,
}

impl VerificationStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStrategy::EmailCode => "email_code",
            VerificationStrategy::DnsTxt => "dns_txt",
        }
    }

    pub fn from_stored(value: &str) -> VerificationStrategy {
        match value {
            "dns_txt" => VerificationStrategy::DnsTxt,
            _ => VerificationStrategy::EmailCode,
        }
    }
}

/// What the attempts table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// A `PrepareDomainVerification` that issued a code or a DNS challenge.
    Prepare,
    /// A wrong code, or a DNS lookup that did not find the record.
    Failure,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Prepare => "prepare",
            AttemptKind::Failure => "failure",
        }
    }
}

/// The name of the TXT record that proves ownership of `domain`.
pub fn dns_record_name(domain: &str) -> String {
    format!("{DNS_CHALLENGE_LABEL}.{domain}")
}

/// A new DNS challenge value: 256 random bits, base64url without padding
/// (43 characters, all valid in a TXT record).
pub fn new_dns_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a verification code: an HMAC-SHA256 with the server key
/// over the domain id and the code, so a copy of the database alone does not
/// reveal it (10⁶ codes would be reversed at once from a plain hash), and equal
/// codes of two domains never store alike.
pub fn code_mac(key: &ServerKey, domain_id: &str, code: &str) -> String {
    key.mac_hex(&[
        b"domain-verification-code",
        domain_id.as_bytes(),
        code.as_bytes(),
    ])
}

/// Whether `code` is the one whose MAC is `stored`, compared in constant time.
pub fn code_matches(key: &ServerKey, domain_id: &str, code: &str, stored: &str) -> bool {
    key.verify_hex(
        &[
            b"domain-verification-code",
            domain_id.as_bytes(),
            code.as_bytes(),
        ],
        stored,
    )
}

/// The rules domains follow, from configuration.
#[derive(Debug, Clone)]
pub struct DomainRules {
    /// Mail domains of consumer providers, which no organization may claim.
    pub consumer_domains: Vec<String>,
    /// How long an unverified claim lasts.
    pub claim_ttl: Micros,
}

impl DomainRules {
    /// Unverified claims created at or before this time have expired at `now`.
    pub fn claim_cutoff(&self, now: Micros) -> Micros {
        now.saturating_sub(self.claim_ttl)
    }

    /// Whether a claim is still in force at `now`: verified, or unverified
    /// and younger than the claim TTL.
    pub fn in_force(&self, verified: bool, create_time: Micros, now: Micros) -> bool {
        verified || create_time > self.claim_cutoff(now)
    }
}

/// When a domain whose failures in the window are `failures` (this one
/// included) at `now` is locked until, if it is.
pub fn lock_after_failure(failures: i64, now: Micros) -> Option<Micros> {
    (failures >= MAX_FAILED_ATTEMPTS).then_some(now + LOCK_DURATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stored_keyed() {
        let key = ServerKey::new(b"k".to_vec());
        let other = ServerKey::new(b"other".to_vec());
        let mac = code_mac(&key, "dom_a", "123456");
        assert_eq!(mac.len(), 64);
        assert!(code_matches(&key, "dom_a", "123456", &mac));
        assert!(!code_matches(&key, "dom_a", "123457", &mac));
        assert!(!code_matches(&key, "dom_b", "123456", &mac));
        assert!(!code_matches(&other, "dom_a", "123456", &mac));
        assert_ne!(mac, code_mac(&key, "dom_b", "123456"));
    }

    #[test]
    fn challenges_and_claims() {
        assert_eq!(
            dns_record_name("acme.example"),
            "_orgs-challenge.acme.example"
        );
        let token = new_dns_token();
        assert_eq!(token.len(), 43);
        assert_ne!(token, new_dns_token());
        let rules = DomainRules {
            consumer_domains: Vec::new(),
            claim_ttl: 10,
        };
        assert!(rules.in_force(false, 91, 100));
        assert!(!rules.in_force(false, 90, 100));
        assert!(rules.in_force(true, 0, 100));
        assert_eq!(lock_after_failure(9, 5), None);
        assert_eq!(lock_after_failure(10, 5), Some(5 + LOCK_DURATION));
        for strategy in [
            VerificationStrategy::EmailCode,
            VerificationStrategy::DnsTxt,
        ] {
            assert_eq!(
                VerificationStrategy::from_stored(strategy.as_str()),
                strategy
            );
        }
    }
}
