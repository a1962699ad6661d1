//! Bearer token verification and minting.

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::jwks::Jwks;
use super::keys::{FileKey, KeySource};
use super::verified::VerifiedTokens;
use crate::config::{AuthAlgorithm, AuthConfig};
use crate::domain::{Error, Reason, types::Email};

/// Scopes that grant platform-wide rights.
pub mod scopes {
    /// Acts on every organization without being a member.
    pub const ORGS_ADMIN: &str = "orgs:admin";
    /// Reads every organization.
    pub const ORGS_READ: &str = "orgs:read";
    /// Reports user activity.
    pub const BILLING_WRITE: &str = "billing:write";
    /// Reads billing.
    pub const BILLING_READ: &str = "billing:read";
}

/// Who is calling: the verified claims of the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A user id or a service name.
    pub sub: String,
    /// Platform-wide scopes; empty for end users.
    pub scopes: BTreeSet<String>,
    /// The service acting on behalf of `sub` (RFC 8693 `act.sub`).
    pub act: Option<String>,
    /// The OIDC `email` claim, trimmed and lower-cased; `None` when absent or not
    /// shaped like an address.
    pub email: Option<String>,
    /// The OIDC `email_verified` claim: the identity provider vouches that the
    /// caller controls `email`. Never true without an `email`.
    pub email_verified: bool,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    pub fn has_any_scope(&self, scopes: &[&str]) -> bool {
        scopes.iter().any(|scope| self.has_scope(scope))
    }

    /// Platform principals (`orgs:admin`, `orgs:read`) see private metadata and
    /// are never members.
    pub fn is_platform(&self) -> bool {
        self.has_any_scope(&[scopes::ORGS_ADMIN, scopes::ORGS_READ])
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Actor {
    sub: String,
}

/// `aud`: one audience or several (RFC 7519 section 4.1.3). jsonwebtoken checks
/// it against the configured audience; it is kept here only so that both shapes
/// deserialize.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// `email_verified` as a boolean, or as the strings `"true"`/`"false"` that some
/// identity providers send.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Flag::Bool(value) => *value,
            Flag::Text(text) => text.eq_ignore_ascii_case("true"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_verified: Option<Flag>,
}

/// The least length of an HS256 secret: the hash output size (RFC 7518
/// section 3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Verifies tokens with the one configured algorithm and its keys.
pub struct Verifier {
    algorithm: Algorithm,
    keys: KeySource,
    validation: Validation,
    /// Principals of tokens verified before ([`VerifiedTokens`]).
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            KeySource::Fixed(_) => "secret",
            KeySource::File(_) => "public key file",
            KeySource::Jwks(_) => "jwks",
        };
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("keys", &keys)
            .finish()
    }
}

/// The longest `kid` looked up; real ones are short.
const MAX_KID_BYTES: usize = 256;

fn algorithm(config: AuthAlgorithm) -> Algorithm {
    match config {
        AuthAlgorithm::Hs256 => Algorithm::HS256,
        AuthAlgorithm::Rs256 => Algorithm::RS256,
        AuthAlgorithm::Es256 => Algorithm::ES256,
    }
}

impl Verifier {
    /// Builds the verifier, or says how to configure a key. With a JWKS URL
    /// the key set is fetched first; with a public key file the file is then
    /// watched for a new key.
    pub async fn from_config(config: &AuthConfig) -> anyhow::Result<Verifier> {
        let keys = match config.algorithm {
            AuthAlgorithm::Hs256 => {
                if config.jwks_url.is_some() {
                    anyhow::bail!(
                        "ORGS_AUTH_JWKS_URL holds RS256 or ES256 keys: set ORGS_AUTH_ALGORITHM to the algorithm of the identity provider's tokens"
                    );
                }
                let secret = config
                    .hs256_secret
                    .as_ref()
                    .map(|s| s.0.as_str())
                    .unwrap_or_default();
                if secret.is_empty() {
                    anyhow::bail!(
                        "no usable token key: set ORGS_AUTH_HS256_SECRET (or --auth-hs256-secret) to a random secret of at least {MIN_HS256_SECRET_BYTES} bytes (for example `openssl rand -base64 48`), or set ORGS_AUTH_ALGORITHM=RS256|ES256 with ORGS_AUTH_PUBLIC_KEY_FILE or ORGS_AUTH_JWKS_URL; the server never runs without authentication"
                    );
                }
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    anyhow::bail!(
                        "ORGS_AUTH_HS256_SECRET is {} bytes long; HS256 needs at least {MIN_HS256_SECRET_BYTES} (RFC 7518): set a random secret such as the output of `openssl rand -base64 48`",
                        secret.len()
                    );
                }
                KeySource::Fixed(Arc::new(DecodingKey::from_secret(secret.as_bytes())?))
            }
            AuthAlgorithm::Rs256 | AuthAlgorithm::Es256 => {
                match (&config.public_key_file, &config.jwks_url) {
                    (Some(_), Some(_)) => anyhow::bail!(
                        "set either ORGS_AUTH_PUBLIC_KEY_FILE or ORGS_AUTH_JWKS_URL, not both"
                    ),
                    (Some(path), None) => KeySource::File(FileKey::watch(
                        path,
                        algorithm(config.algorithm),
                        config.public_key_reload_interval(),
                    )?),
                    (None, Some(url)) => KeySource::Jwks(
                        Jwks::start(
                            url,
                            algorithm(config.algorithm),
                            config.jwks_refresh_interval(),
                            config.jwks_refetch_interval(),
                        )
                        .await?,
                    ),
                    (None, None) => anyhow::bail!(
                        "no usable token key: ORGS_AUTH_ALGORITHM={:?} needs ORGS_AUTH_PUBLIC_KEY_FILE (or --auth-public-key-file) naming a PEM public key, or ORGS_AUTH_JWKS_URL (or --auth-jwks-url) naming the identity provider's JWKS",
                        config.algorithm
                    ),
                }
            }
        };
        let mut validation = Validation::new(algorithm(config.algorithm));
        validation.leeway = 60;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when a token carries them, so
        // configured ones are also required: a token minted for another service
        // with the same key but without them must not pass.
        let mut required = vec!["exp", "sub"];
        match &config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            algorithm: algorithm(config.algorithm),
            keys,
            validation,
            verified: VerifiedTokens::new(config.token_cache_bytes),
        })
    }

    /// Verifies a bearer token and returns its principal: from
    /// [`VerifiedTokens`] when the same token passed before with the keys in
    /// use and is still valid.
    pub async fn verify(&self, token: &str) -> Result<Principal, Error> {
        // Read before the key, so that a verification made while the keys
        // change is kept under the older generation and checked again.
        let generation = self.keys.generation();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(principal) = self.verified.get(token, generation, now) {
            return Ok(principal);
        }
        let key = match &self.keys {
            KeySource::Fixed(key) => key.clone(),
            KeySource::File(file) => file.current(),
            KeySource::Jwks(jwks) => {
                let invalid = |message: &str| {
                    Error::Unauthenticated(Reason::TokenInvalid, message.to_string())
                };
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|_| invalid("the token is not valid"))?;
                // Checked before the key is looked up, so a token of another
                // algorithm never causes a fetch.
                if header.alg != self.algorithm {
                    return Err(invalid("the token is not valid"));
                }
                let kid = header
                    .kid
                    .filter(|kid| !kid.is_empty() && kid.len() <= MAX_KID_BYTES)
                    .ok_or_else(|| invalid("the token names no key (kid)"))?;
                jwks.key(&kid)
                    .await
                    .ok_or_else(|| invalid("the token is signed by an unknown key"))?
            }
        };
        let (principal, exp) = self.principal(token, &key)?;
        let valid_until = exp.saturating_add(self.validation.leeway);
        self.verified
            .insert(token, &principal, generation, valid_until, now);
        Ok(principal)
    }

    /// Entries and estimated bytes of the verified tokens kept.
    pub fn verified_tokens(&self) -> (u64, u64) {
        self.verified.size()
    }

    /// The principal of `token` and its `exp`.
    fn principal(&self, token: &str, key: &DecodingKey) -> Result<(Principal, u64), Error> {
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(
                |err| match err.kind() {
                    ErrorKind::ExpiredSignature => {
                        Error::Unauthenticated(Reason::TokenExpired, "the token has expired".into())
                    }
                    ErrorKind::ImmatureSignature => Error::Unauthenticated(
                        Reason::TokenInvalid,
                        "the token is not valid yet (nbf)".into(),
                    ),
                    _ => Error::Unauthenticated(
                        Reason::TokenInvalid,
                        "the token is not valid".into(),
                    ),
                },
            )?;
        let claims = data.claims;
        let email = claims
            .email
            .as_deref()
            .and_then(|email| Email::parse("email", email).ok())
            .map(|email| email.as_str().to_string());
        if claims.sub.trim().is_empty() || claims.sub.len() > 128 {
            return Err(Error::Unauthenticated(
                Reason::TokenInvalid,
                "the token has no usable sub".into(),
            ));
        }
        let principal = Principal {
            sub: claims.sub,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            act: claims.act.map(|act| act.sub).filter(|sub| !sub.is_empty()),
            email_verified: email.is_some()
                && claims.email_verified.as_ref().is_some_and(Flag::is_true),
            email,
        };
        Ok((principal, claims.exp))
    }
}

/// What a minted token says.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub sub: String,
    pub scope: Option<String>,
    pub act: Option<String>,
    pub ttl_seconds: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The OIDC `email` claim.
    pub email: Option<String>,
    /// The OIDC `email_verified` claim (sent only when true).
    pub email_verified: bool,
}

/// Signs a token with an HS256 secret (for `orgs token`, tests and local use).
pub fn mint_hs256(secret: &str, request: &TokenRequest) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: request.sub.clone(),
        exp: now + request.ttl_seconds,
        iat: Some(now),
        scope: request.scope.clone().filter(|s| !s.is_empty()),
        act: request.act.clone().map(|sub| Actor { sub }),
        iss: request.issuer.clone(),
        aud: request.audience.clone().map(Audience::One),
        email: request.email.clone(),
        email_verified: request.email_verified.then_some(Flag::Bool(true)),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

/// Parses a duration such as `30s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(value: &str) -> anyhow::Result<u64> {
    let value = value.trim();
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("ttl must look like 30s, 15m, 1h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("ttl must look like 30s, 15m, 1h or 7d"),
    };
    Ok(number * factor)
}
