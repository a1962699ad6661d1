//! Invitations, verified domains and membership requests: their states, the
//! secrets that prove an invitation or a domain, and the rules that need no
//! storage.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::error::FieldViolation;
use super::time::Micros;

/// Days an invitation stays valid when the request does not say.
pub const DEFAULT_EXPIRES_IN_DAYS: i32 = 30;
/// The longest validity a request may ask for.
pub const MAX_EXPIRES_IN_DAYS: i32 = 365;
/// Items one `CreateInvitations` call may carry.
pub const MAX_BATCH_INVITATIONS: usize = 100;
/// Domains one organization may have.
pub const MAX_DOMAINS_PER_ORGANIZATION: i64 = 10;
/// How long a domain verification code works.
pub const VERIFICATION_CODE_VALIDITY_MICROS: Micros = 10 * 60 * 1_000_000;
/// Wrong attempts after which a verification code is void.
pub const MAX_VERIFICATION_ATTEMPTS: i32 = 5;
/// The longest `redirect_url`.
pub const MAX_REDIRECT_URL_LEN: usize = 2048;

/// The stored state of an invitation. `Expired` is stored only once a pending
/// invitation past its expiry is swept; readers compute it from the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }

    pub fn from_stored(value: &str) -> InvitationStatus {
        match value {
            "accepted" => InvitationStatus::Accepted,
            "revoked" => InvitationStatus::Revoked,
            "expired" => InvitationStatus::Expired,
            _ => InvitationStatus::Pending,
        }
    }

    /// The status a reader sees at `now`: a pending invitation past its expiry
    /// reads as expired, whether or not a sweep has stored that yet.
    pub fn at(stored: &str, expire_time: Micros, now: Micros) -> InvitationStatus {
        match Self::from_stored(stored) {
            InvitationStatus::Pending if expire_time <= now => InvitationStatus::Expired,
            status => status,
        }
    }
}

/// How users with an address at a verified domain join its organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EnrollmentMode {
    ManualInvitation,
    AutomaticInvitation,
    AutomaticSuggestion,
}

impl EnrollmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentMode::ManualInvitation => "manual_invitation",
            EnrollmentMode::AutomaticInvitation => "automatic_invitation",
            EnrollmentMode::AutomaticSuggestion => "automatic_suggestion",
        }
    }

    pub fn from_stored(value: &str) -> EnrollmentMode {
        match value {
            "automatic_invitation" => EnrollmentMode::AutomaticInvitation,
            "automatic_suggestion" => EnrollmentMode::AutomaticSuggestion,
            _ => EnrollmentMode::ManualInvitation,
        }
    }
}

/// The state of a membership request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MembershipRequestStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MembershipRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipRequestStatus::Pending => "pending",
            MembershipRequestStatus::Accepted => "accepted",
            MembershipRequestStatus::Rejected => "rejected",
        }
    }

    pub fn from_stored(value: &str) -> MembershipRequestStatus {
        match value {
            "accepted" => MembershipRequestStatus::Accepted,
            "rejected" => MembershipRequestStatus::Rejected,
            _ => MembershipRequestStatus::Pending,
        }
    }
}

/// A new invitation token: 256 random bits, base64url without padding.
pub fn new_invitation_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of an invitation token: its SHA-256, hex.
pub fn invitation_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new 6-digit verification code.
pub fn new_verification_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// `expires_in_days` of a request: 0 means the default, else 1–365.
pub fn expires_in_days(field: &str, value: i32) -> Result<i32, FieldViolation> {
    match value {
        0 => Ok(DEFAULT_EXPIRES_IN_DAYS),
        1..=MAX_EXPIRES_IN_DAYS => Ok(value),
        _ => Err(FieldViolation::new(
            field,
            "must be 1 to 365 days (0 for the default of 30)",
        )),
    }
}

/// The host of an absolute http(s) URL, lower-cased, without user info or
/// port (`[::1]` keeps its brackets).
pub fn url_host(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split_inclusive(']')
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        host_port.split(':').next().unwrap_or_default().to_string()
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.ends_with(".localhost")
}

/// An optional `redirect_url`: an absolute `https://` URL with a host
/// (`http://` only for localhost), at most 2,048 characters, without
/// whitespace or control characters.
pub fn redirect_url(field: &str, value: &str) -> Result<Option<String>, FieldViolation> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || {
        FieldViolation::new(
            field,
            "must be an absolute https URL (http only for localhost) of at most 2048 characters",
        )
    };
    if value.len() > MAX_REDIRECT_URL_LEN
        || value.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad());
    }
    let host = url_host(value).ok_or_else(bad)?;
    let https = value
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !https && !is_loopback(&host) {
        return Err(bad());
    }
    Ok(Some(value.to_string()))
}

/// Whether a redirect URL's host is one of `allowed` (`*.example.com` allows
/// every subdomain of example.com). An empty list allows every host.
pub fn redirect_host_allowed(url: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = url_host(url) else {
        return false;
    };
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == pattern,
        }
    })
}

/// `redirect_url` with the query parameter `ticket` set to `token`, before any
/// fragment.
pub fn invitation_url(redirect_url: &str, token: &str) -> String {
    let (base, fragment) = match redirect_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (redirect_url, None),
    };
    let separator = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut url = format!("{base}{separator}ticket={token}");
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// An invitation token as a request carries it: 1–128 characters of the
/// base64url alphabet.
pub fn invitation_token(field: &str, value: &str) -> Result<String, FieldViolation> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.len() > 128
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(FieldViolation::new(field, "is not an invitation token"));
    }
    Ok(value.to_string())
}

/// A verification code as a request carries it: exactly 6 digits.
pub fn verification_code(field: &str, value: &str) -> Result<String, FieldViolation> {
    let value = value.trim();
    if value.len() != 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldViolation::new(field, "must be the 6-digit code"));
    }
    Ok(value.to_string())
}

/// Whether `domain` is one of the consumer mail domains, or below one.
pub fn is_consumer_domain(domain: &str, consumer_domains: &[String]) -> bool {
    consumer_domains
        .iter()
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .any(|consumer| {
            domain == consumer
                || domain
                    .strip_suffix(consumer.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_hashed() {
        let token = new_invitation_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, new_invitation_token());
        assert_eq!(invitation_token_hash(&token).len(), 64);
        assert!(invitation_token("token", &token).is_ok());
    }

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..100 {
            let code = new_verification_code();
            assert!(verification_code("code", &code).is_ok(), "{code}");
        }
        assert!(verification_code("code", "12345").is_err());
        assert!(verification_code("code", "12345a").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            invitation_url("https://app.example.com/join", "t"),
            "https://app.example.com/join?ticket=t"
        );
        assert_eq!(
            invitation_url("https://a.example.com/j?x=1", "t"),
            "https://a.example.com/j?x=1&ticket=t"
        );
        assert_eq!(
            invitation_url("https://a.example.com/j#top", "t"),
            "https://a.example.com/j?ticket=t#top"
        );
        assert!(
            redirect_url("u", "https://app.example.com/join")
                .unwrap()
                .is_some()
        );
        assert!(redirect_url("u", "").unwrap().is_none());
        assert!(redirect_url("u", "http://localhost:3000/join").is_ok());
        assert!(redirect_url("u", "http://127.0.0.1/join").is_ok());
        assert!(redirect_url("u", "HTTPS://App.Example.com").is_ok());
        for bad in [
            "http://app.example.com/join",
            "http://localhost.evil.com/join",
            "ftp://x.example.com",
            "https://",
            "https:///path",
            "javascript:alert(1)",
            "https://a b.com",
        ] {
            assert!(redirect_url("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_hosts() {
        let allowed = vec!["app.example.com".to_string(), "*.example.org".to_string()];
        assert!(redirect_host_allowed("https://app.example.com/x", &allowed));
        assert!(redirect_host_allowed(
            "https://u@APP.example.com:8443/x",
            &allowed
        ));
        assert!(redirect_host_allowed("https://a.b.example.org/x", &allowed));
        assert!(!redirect_host_allowed("https://example.org/x", &allowed));
        assert!(!redirect_host_allowed(
            "https://evilexample.org/x",
            &allowed
        ));
        assert!(!redirect_host_allowed(
            "https://app.example.com.evil.com/x",
            &allowed
        ));
        assert!(!redirect_host_allowed(
            "https://evil.com/?app.example.com",
            &allowed
        ));
        assert!(redirect_host_allowed("https://anything.test", &[]));
        assert_eq!(url_host("http://[::1]:8080/x").as_deref(), Some("[::1]"));
    }

    #[test]
    fn expiry_and_consumer_domains() {
        assert_eq!(expires_in_days("e", 0).unwrap(), 30);
        assert!(expires_in_days("e", 366).is_err());
        assert!(expires_in_days("e", -1).is_err());
        assert_eq!(
            InvitationStatus::at("pending", 10, 10),
            InvitationStatus::Expired
        );
        assert_eq!(
            InvitationStatus::at("pending", 11, 10),
            InvitationStatus::Pending
        );
        let consumer = vec!["gmail.com".to_string()];
        assert!(is_consumer_domain("gmail.com", &consumer));
        assert!(is_consumer_domain("mail.gmail.com", &consumer));
        assert!(!is_consumer_domain("notgmail.com", &consumer));
    }
}
