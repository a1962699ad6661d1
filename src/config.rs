//! Configuration: defaults, then `ORGS_*` environment variables, then flags (clap
//! reads both). Secrets are redacted in `Debug`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

mod file;
pub use file::file_variables;

use crate::domain::billing::{Budget, Pricing};
use crate::domain::enrollment::InvitationRules;
use crate::domain::ids::RoleKey;
use crate::domain::organizations::OrganizationRules;
use crate::service::billing::WatchSettings;
mod limits;
pub use limits::{DEFAULT_MAX_REQUEST_BYTES, LimitsConfig};
mod domains;
use crate::dns::DnsSettings;
use crate::domain::verification::DomainRules;
pub use domains::DomainsConfig;
mod console;
pub use console::ConsoleConfig;
mod database;
pub use database::{DatabaseConfig, redact_url};

/// The JWT signature algorithm the server accepts; tokens naming any other
/// algorithm (`none` included) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret string that never shows in logs.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// How tokens are verified.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Signature algorithm of the tokens.
    #[arg(
        long = "auth-algorithm",
        env = "ORGS_AUTH_ALGORITHM",
        default_value = "HS256"
    )]
    pub algorithm: AuthAlgorithm,
    /// Shared secret for HS256.
    #[arg(
        long = "auth-hs256-secret",
        env = "ORGS_AUTH_HS256_SECRET",
        hide_env_values = true
    )]
    pub hs256_secret: Option<Secret>,
    /// PEM file with the public key for RS256 or ES256.
    #[arg(long = "auth-public-key-file", env = "ORGS_AUTH_PUBLIC_KEY_FILE")]
    pub public_key_file: Option<PathBuf>,
    /// Required `iss` of tokens, when set.
    #[arg(long = "auth-issuer", env = "ORGS_AUTH_ISSUER")]
    pub issuer: Option<String>,
    /// Required `aud` of tokens, when set.
    #[arg(long = "auth-audience", env = "ORGS_AUTH_AUDIENCE")]
    pub audience: Option<String>,
    /// Seconds between checks of the public key file for a new key.
    #[arg(long = "auth-public-key-reload-interval", env = "ORGS_AUTH_PUBLIC_KEY_RELOAD_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub public_key_reload_interval_secs: u64,
    /// URL of the identity provider's JWKS (https, or http on localhost) with
    /// the RS256/ES256 keys of the tokens, chosen by `kid`.
    #[arg(long = "auth-jwks-url", env = "ORGS_AUTH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Seconds between routine fetches of the JWKS.
    #[arg(long = "auth-jwks-refresh-interval", env = "ORGS_AUTH_JWKS_REFRESH_INTERVAL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub jwks_refresh_interval_secs: u64,
    /// Least seconds between two fetches of the JWKS caused by tokens naming an
    /// unknown `kid`.
    #[arg(long = "auth-jwks-refetch-interval", env = "ORGS_AUTH_JWKS_REFETCH_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub jwks_refetch_interval_secs: u64,
    /// Estimated bytes of verified tokens kept, so that a token sent again
    /// is not verified again while it is valid and its keys are in use;
    /// 0 verifies every call's token.
    #[arg(
        long = "auth-token-cache-bytes",
        env = "ORGS_AUTH_TOKEN_CACHE_BYTES",
        default_value_t = DEFAULT_TOKEN_CACHE_BYTES
    )]
    pub token_cache_bytes: u64,
}

/// The default of `--auth-token-cache-bytes`: 16 MiB, some 20,000 tokens of
/// 600 bytes.
pub const DEFAULT_TOKEN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl AuthConfig {
    pub fn public_key_reload_interval(&self) -> Duration {
        Duration::from_secs(self.public_key_reload_interval_secs)
    }

    pub fn jwks_refresh_interval(&self) -> Duration {
        Duration::from_secs(self.jwks_refresh_interval_secs)
    }

    pub fn jwks_refetch_interval(&self) -> Duration {
        Duration::from_secs(self.jwks_refetch_interval_secs)
    }
}

/// TLS of the gRPC listener. Without a certificate the listener speaks
/// plaintext (h2c).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// PEM certificate chain of the gRPC listener (leaf first); with
    /// `--tls-key-file`, the listener speaks TLS only.
    #[arg(
        long = "tls-cert-file",
        env = "ORGS_TLS_CERT_FILE",
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(
        long = "tls-key-file",
        env = "ORGS_TLS_KEY_FILE",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mutual TLS). The bearer token still decides who
    /// the caller is.
    #[arg(
        long = "tls-client-ca-file",
        env = "ORGS_TLS_CLIENT_CA_FILE",
        requires = "cert_file"
    )]
    pub client_ca_file: Option<PathBuf>,
    /// Seconds between checks of the certificate, key and client CA files for
    /// new versions.
    #[arg(long = "tls-reload-interval", env = "ORGS_TLS_RELOAD_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub reload_interval_secs: u64,
}

impl TlsConfig {
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs)
    }
}

/// Clerk-style billing numbers.
#[derive(Debug, Clone, Args)]
pub struct BillingConfig {
    /// Active members that make an organization billable in a period.
    #[arg(long = "billing-active-member-threshold", env = "ORGS_BILLING_ACTIVE_MEMBER_THRESHOLD", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub active_member_threshold: u32,
    /// Billable organizations per period that cost nothing.
    #[arg(
        long = "billing-free-organizations",
        env = "ORGS_BILLING_FREE_ORGANIZATIONS",
        default_value_t = 100
    )]
    pub free_organizations: u32,
    /// Price of each further billable organization, in minor units (cents).
    #[arg(
        long = "billing-price-per-organization",
        env = "ORGS_BILLING_PRICE_PER_ORGANIZATION",
        default_value_t = 100
    )]
    pub price_per_organization: u64,
    /// ISO 4217 currency code of the price.
    #[arg(
        long = "billing-currency",
        env = "ORGS_BILLING_CURRENCY",
        default_value = "USD"
    )]
    pub currency: String,
    /// The budget of a period, in minor units of the currency; 0: none.
    #[arg(
        long = "billing-budget",
        env = "ORGS_BILLING_BUDGET",
        default_value_t = 0
    )]
    pub budget: u64,
    /// Percentages of the budget whose first crossing in a period records a
    /// `billing.budget_threshold_crossed` event, comma-separated (1–1000).
    #[arg(
        long = "billing-budget-alert-percents",
        env = "ORGS_BILLING_BUDGET_ALERT_PERCENTS",
        default_value = "50,80,100",
        value_delimiter = ',',
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub budget_alert_percents: Vec<u32>,
    /// Refuse memberships that would make the amount due exceed the budget
    /// (FAILED_PRECONDITION `BUDGET_EXCEEDED`); activity is never refused.
    #[arg(
        long = "billing-budget-enforce",
        env = "ORGS_BILLING_BUDGET_ENFORCE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub budget_enforce: bool,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            active_member_threshold: 2,
            free_organizations: 100,
            price_per_organization: 100,
            currency: "USD".into(),
            budget: 0,
            budget_alert_percents: vec![50, 80, 100],
            budget_enforce: false,
        }
    }
}

/// Consumer mail domains refused as organization domains, by default.
pub const DEFAULT_CONSUMER_EMAIL_DOMAINS: &str = "gmail.com,googlemail.com,outlook.com,hotmail.com,live.com,msn.com,yahoo.com,ymail.com,icloud.com,me.com,mac.com,aol.com,proton.me,protonmail.com,gmx.com,gmx.de,web.de,mail.com,yandex.com,yandex.ru,zoho.com,qq.com,163.com";

/// Organization rules.
#[derive(Debug, Clone, Args)]
pub struct RulesConfig {
    /// Organizations an end user may create.
    #[arg(
        long = "max-organizations-per-user",
        env = "ORGS_MAX_ORGANIZATIONS_PER_USER",
        default_value_t = 100
    )]
    pub max_organizations_per_user: u32,
    /// Role given to the creator of an organization.
    #[arg(
        long = "creator-role",
        env = "ORGS_CREATOR_ROLE",
        default_value = "org:admin"
    )]
    pub creator_role: String,
    /// Role for invitations, memberships and domain enrollment without a role.
    #[arg(
        long = "default-role",
        env = "ORGS_DEFAULT_ROLE",
        default_value = "org:member"
    )]
    pub default_role: String,
    /// Consumer mail domains that cannot be added as organization domains
    /// (comma-separated).
    #[arg(
        long = "consumer-email-domains",
        env = "ORGS_CONSUMER_EMAIL_DOMAINS",
        value_delimiter = ',',
        default_value = DEFAULT_CONSUMER_EMAIL_DOMAINS
    )]
    pub consumer_email_domains: Vec<String>,
    /// Hosts an invitation's `redirect_url` may point at (comma-separated;
    /// `*.example.com` allows its subdomains); empty allows any https host.
    #[arg(
        long = "invitation-redirect-hosts",
        env = "ORGS_INVITATION_REDIRECT_HOSTS",
        value_delimiter = ','
    )]
    pub invitation_redirect_hosts: Vec<String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            max_organizations_per_user: 100,
            creator_role: "org:admin".into(),
            default_role: "org:member".into(),
            consumer_email_domains: [
                "gmail.com",
                "outlook.com",
                "hotmail.com",
                "yahoo.com",
                "icloud.com",
            ]
            .map(String::from)
            .to_vec(),
            invitation_redirect_hosts: Vec::new(),
        }
    }
}

/// Everything `orgs serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// TOML file of settings, below environment variables and flags (see the
    /// README).
    #[arg(long = "config", env = "ORGS_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Address of the gRPC listener.
    #[arg(
        long = "listen",
        env = "ORGS_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,
    /// Address of the Prometheus `/metrics` listener.
    #[arg(
        long = "metrics-listen",
        env = "ORGS_METRICS_LISTEN_ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub metrics_listen_addr: SocketAddr,
    /// Address of a plaintext listener serving only `grpc.health.v1.Health`,
    /// for probes that cannot speak TLS (Kubernetes gRPC probes).
    #[arg(long = "health-listen", env = "ORGS_HEALTH_LISTEN_ADDR")]
    pub health_listen_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Do not apply migrations on start.
    #[arg(long = "no-migrate", env = "ORGS_NO_MIGRATE")]
    pub no_migrate: bool,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub billing: BillingConfig,
    #[command(flatten)]
    pub rules: RulesConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub domains: DomainsConfig,
    #[command(flatten)]
    pub console: ConsoleConfig,
    /// How long in-flight calls may take to finish after SIGTERM, in seconds.
    #[arg(
        long = "shutdown-grace-period",
        env = "ORGS_SHUTDOWN_GRACE_PERIOD",
        default_value_t = 20
    )]
    pub shutdown_grace_period_secs: u64,
    /// Seconds between checkpoints of an idle watch stream.
    #[arg(long = "watch-checkpoint-interval", env = "ORGS_WATCH_CHECKPOINT_INTERVAL", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_checkpoint_interval_secs: u64,
    /// Days watch events are kept for resuming.
    #[arg(long = "watch-retention-days", env = "ORGS_WATCH_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_retention_days: u64,
    /// Days events are kept in the log; older ones are pruned in the background.
    #[arg(long = "event-retention-days", env = "ORGS_EVENT_RETENTION_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_retention_days: u64,
    /// Seconds between a replica's attempts to prune the event log.
    #[arg(long = "event-prune-interval", env = "ORGS_EVENT_PRUNE_INTERVAL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_prune_interval_secs: u64,
    /// Log format.
    #[arg(long = "log-format", env = "ORGS_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeConfig {
    pub fn shutdown_grace_period(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_period_secs)
    }

    pub fn watch_checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.watch_checkpoint_interval_secs)
    }

    pub fn watch_retention(&self) -> Duration {
        Duration::from_secs(self.watch_retention_days * 24 * 3600)
    }

    /// The billing rule and its prices.
    pub fn pricing(&self) -> Pricing {
        Pricing {
            active_member_threshold: i64::from(self.billing.active_member_threshold),
            free_organizations: i64::from(self.billing.free_organizations),
            price_per_organization: i64::try_from(self.billing.price_per_organization)
                .unwrap_or(i64::MAX),
            currency: self.billing.currency.clone(),
            budget: Budget::new(
                i64::try_from(self.billing.budget).unwrap_or(i64::MAX),
                &self.billing.budget_alert_percents,
                self.billing.budget_enforce,
            ),
        }
    }

    /// The rules organizations and memberships follow.
    pub fn organization_rules(&self) -> OrganizationRules {
        OrganizationRules {
            max_organizations_per_user: self.rules.max_organizations_per_user,
            creator_role: RoleKey::configured(&self.rules.creator_role),
            default_role: RoleKey::configured(&self.rules.default_role),
        }
    }

    /// The rules invitations follow.
    pub fn invitation_rules(&self) -> InvitationRules {
        InvitationRules {
            default_role: RoleKey::configured(&self.rules.default_role),
            redirect_hosts: self
                .rules
                .invitation_redirect_hosts
                .iter()
                .map(|host| host.trim().to_ascii_lowercase())
                .filter(|host| !host.is_empty())
                .collect(),
        }
    }

    /// The rules domains follow.
    pub fn domain_rules(&self) -> DomainRules {
        DomainRules {
            consumer_domains: self.rules.consumer_email_domains.clone(),
            claim_ttl: i64::from(self.domains.claim_ttl_days) * 24 * 3600 * 1_000_000,
        }
    }

    /// Where DNS TXT verification looks records up.
    pub fn dns_settings(&self) -> DnsSettings {
        DnsSettings {
            resolver: self.domains.dns_resolver,
            timeout: Duration::from_millis(self.domains.dns_timeout_ms),
        }
    }

    /// How watches behave.
    /// How the event log is pruned.
    pub fn prune_settings(&self) -> crate::events::pruning::PruneSettings {
        crate::events::pruning::PruneSettings {
            retention: Duration::from_secs(self.event_retention_days.saturating_mul(24 * 3600)),
            interval: Duration::from_secs(self.event_prune_interval_secs),
            batch: 1_000,
        }
    }

    pub fn watch_settings(&self) -> WatchSettings {
        WatchSettings {
            checkpoint_interval: self.watch_checkpoint_interval(),
            retention: self.watch_retention(),
        }
    }

    /// A configuration for tests and embedding: defaults, the given database and
    /// HS256 secret, gRPC and metrics listening on ephemeral ports, and no
    /// per-principal rate limits (tests set up their data from one principal
    /// as fast as they can; the tests of the limits set them).
    pub fn for_tests(database_url: &str, hs256_secret: &str) -> Self {
        ServeConfig {
            config_file: None,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            health_listen_addr: None,
            tls: TlsConfig {
                reload_interval_secs: 5,
                ..TlsConfig::default()
            },
            database: DatabaseConfig {
                url: database_url.to_string(),
                max_connections: 10,
                // Many test servers share one PostgreSQL cluster: each
                // opens connections as its calls need them.
                min_connections: Some(1),
                acquire_timeout_secs: 2,
                statement_timeout_secs: 30,
            },
            no_migrate: false,
            auth: AuthConfig {
                algorithm: AuthAlgorithm::Hs256,
                hs256_secret: Some(Secret(hs256_secret.to_string())),
                public_key_file: None,
                issuer: None,
                audience: None,
                public_key_reload_interval_secs: 5,
                jwks_url: None,
                jwks_refresh_interval_secs: 300,
                jwks_refetch_interval_secs: 10,
                token_cache_bytes: DEFAULT_TOKEN_CACHE_BYTES,
            },
            billing: BillingConfig::default(),
            rules: RulesConfig::default(),
            limits: LimitsConfig {
                reads_per_second: 0,
                writes_per_second: 0,
                ..LimitsConfig::default()
            },
            domains: DomainsConfig::default(),
            console: ConsoleConfig::default(),
            shutdown_grace_period_secs: 5,
            watch_checkpoint_interval_secs: 15,
            watch_retention_days: 30,
            event_retention_days: 400,
            event_prune_interval_secs: 300,
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(
            redact_url("sqlite://orgs.db?mode=rwc"),
            "sqlite://orgs.db?mode=rwc"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redact_url("postgres://u@h:5432/db?password=pw&sslmode=require"),
            "postgres://u@h:5432/db?password=[redacted]&sslmode=require"
        );
        assert_eq!(
            redact_url(
                "postgres://h/db?sslmode=verify-full&sslcert=c.pem&sslkey=k.pem&SSLPassword=p%40ss&user=u"
            ),
            "postgres://h/db?sslmode=verify-full&sslcert=c.pem&sslkey=k.pem&SSLPassword=[redacted]&user=u"
        );
        // An `@` in the query is not the end of the credentials.
        let tricky = redact_url("postgres://u:pw@h/db?application_name=a@b&pass%77ord=x");
        assert!(!tricky.contains("pw") && !tricky.contains("=x"), "{tricky}");
        assert!(tricky.contains("@h/db"), "{tricky}");
        // Not a URL: nothing after the scheme is shown.
        assert_eq!(
            redact_url("postgres://u:p w@[h/db"),
            "postgres://[redacted]"
        );
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "\"[redacted]\"");
    }
}
