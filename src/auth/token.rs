//! Bearer token verification and minting.

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::config::{AuthAlgorithm, AuthConfig};
use crate::domain::{Error, Reason};

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
    aud: Option<String>,
}

/// Verifies tokens with the one configured algorithm and key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

fn algorithm(config: AuthAlgorithm) -> Algorithm {
    match config {
        AuthAlgorithm::Hs256 => Algorithm::HS256,
        AuthAlgorithm::Rs256 => Algorithm::RS256,
        AuthAlgorithm::Es256 => Algorithm::ES256,
    }
}

impl Verifier {
    /// Builds the verifier, or says how to configure a key.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Verifier> {
        let key = match config.algorithm {
            AuthAlgorithm::Hs256 => {
                let secret = config
                    .hs256_secret
                    .as_ref()
                    .map(|s| s.0.as_str())
                    .unwrap_or_default();
                if secret.len() < 16 {
                    anyhow::bail!(
                        "no usable token key: set ORGS_AUTH_HS256_SECRET (or --auth-hs256-secret) to a secret of at least 16 bytes, or set ORGS_AUTH_ALGORITHM=RS256|ES256 with ORGS_AUTH_PUBLIC_KEY_FILE; the server never runs without authentication"
                    );
                }
                DecodingKey::from_secret(secret.as_bytes())?
            }
            AuthAlgorithm::Rs256 | AuthAlgorithm::Es256 => {
                let Some(path) = &config.public_key_file else {
                    anyhow::bail!(
                        "no usable token key: ORGS_AUTH_ALGORITHM={:?} needs ORGS_AUTH_PUBLIC_KEY_FILE (or --auth-public-key-file) naming a PEM public key",
                        config.algorithm
                    );
                };
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read the public key file {}: {e}", path.display())
                })?;
                if config.algorithm == AuthAlgorithm::Rs256 {
                    DecodingKey::from_rsa_pem(&pem)?
                } else {
                    DecodingKey::from_ec_pem(&pem)?
                }
            }
        };
        let mut validation = Validation::new(algorithm(config.algorithm));
        validation.leeway = 60;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Verifier { key, validation })
    }

    /// Verifies a bearer token and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => {
                        Error::Unauthenticated(Reason::TokenExpired, "the token has expired".into())
                    }
                    _ => Error::Unauthenticated(
                        Reason::TokenInvalid,
                        "the token is not valid".into(),
                    ),
                }
            })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() || claims.sub.len() > 128 {
            return Err(Error::Unauthenticated(
                Reason::TokenInvalid,
                "the token has no usable sub".into(),
            ));
        }
        Ok(Principal {
            sub: claims.sub,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            act: claims.act.map(|act| act.sub).filter(|sub| !sub.is_empty()),
        })
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
        aud: request.audience.clone(),
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
