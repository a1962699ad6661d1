//! Configuration: defaults, then `ORGS_*` environment variables, then flags (clap
//! reads both). Secrets are redacted in `Debug`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

mod limits;
pub use limits::{DEFAULT_MAX_REQUEST_BYTES, LimitsConfig};

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
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            active_member_threshold: 2,
            free_organizations: 100,
            price_per_organization: 100,
            currency: "USD".into(),
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
    /// Log format.
    #[arg(long = "log-format", env = "ORGS_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Where the data lives.
#[derive(Clone, Args)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` (embedded) or `postgres://…`.
    #[arg(
        long = "database-url",
        env = "ORGS_DATABASE_URL",
        default_value = "sqlite://orgs.db?mode=rwc"
    )]
    pub url: String,
    /// Connections in the pool.
    #[arg(
        long = "database-max-connections",
        env = "ORGS_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The URL with any password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:[redacted]{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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

    /// A configuration for tests and embedding: defaults, the given database and
    /// HS256 secret, gRPC and metrics listening on ephemeral ports, and no
    /// per-principal rate limits (tests set up their data from one principal
    /// as fast as they can; the tests of the limits set them).
    pub fn for_tests(database_url: &str, hs256_secret: &str) -> Self {
        ServeConfig {
            config_file: None,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: DatabaseConfig {
                url: database_url.to_string(),
                max_connections: 10,
            },
            no_migrate: false,
            auth: AuthConfig {
                algorithm: AuthAlgorithm::Hs256,
                hs256_secret: Some(Secret(hs256_secret.to_string())),
                public_key_file: None,
                issuer: None,
                audience: None,
            },
            billing: BillingConfig::default(),
            rules: RulesConfig::default(),
            limits: LimitsConfig {
                reads_per_second: 0,
                writes_per_second: 0,
                ..LimitsConfig::default()
            },
            shutdown_grace_period_secs: 5,
            watch_checkpoint_interval_secs: 15,
            watch_retention_days: 30,
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
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "\"[redacted]\"");
    }
}

/// The `ORGS_*` variables a TOML configuration file sets. A top-level key names
/// the variable without its prefix (`listen_addr = "0.0.0.0:50051"` sets
/// `ORGS_LISTEN_ADDR`); a table prefixes its keys (`[billing]`
/// `free_organizations = 100` sets `ORGS_BILLING_FREE_ORGANIZATIONS`). Arrays
/// become comma-separated lists. A key that names no variable of `known` is an
/// error, so a typo never passes silently.
pub fn file_variables(
    path: &std::path::Path,
    known: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display())
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid TOML: {e}", path.display()))?;
    let mut variables = Vec::new();
    flatten(&table, "ORGS", &mut variables, path)?;
    for (name, _) in &variables {
        if !known.iter().any(|k| k == name) {
            let key = name.trim_start_matches("ORGS_").to_lowercase();
            anyhow::bail!("{}: unknown setting `{key}` ({name})", path.display());
        }
    }
    Ok(variables)
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<(String, String)>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    for (key, value) in table {
        let name = format!("{prefix}_{}", key.to_uppercase().replace('-', "_"));
        let scalar = |value: &toml::Value| -> anyhow::Result<String> {
            Ok(match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    anyhow::bail!("{}: `{key}` cannot be {}", path.display(), other.type_str())
                }
            })
        };
        match value {
            toml::Value::Table(inner) => flatten(inner, &name, out, path)?,
            toml::Value::Array(items) => {
                let items: anyhow::Result<Vec<String>> = items.iter().map(scalar).collect();
                out.push((name, items?.join(",")));
            }
            other => out.push((name, scalar(other)?)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_file_maps_to_variables_and_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("orgs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orgs.toml");
        std::fs::write(
            &path,
            "listen_addr = \"0.0.0.0:50051\"\n[billing]\nfree_organizations = 5\n[auth]\nhs256_secret = \"s\"\n\nconsumer_email_domains = [\"a.com\", \"b.com\"]\n",
        )
        .unwrap();
        let known: Vec<String> = [
            "ORGS_LISTEN_ADDR",
            "ORGS_BILLING_FREE_ORGANIZATIONS",
            "ORGS_AUTH_HS256_SECRET",
            "ORGS_AUTH_CONSUMER_EMAIL_DOMAINS",
        ]
        .map(String::from)
        .to_vec();
        let mut variables = file_variables(&path, &known).unwrap();
        variables.sort();
        assert_eq!(
            variables,
            [
                (
                    "ORGS_AUTH_CONSUMER_EMAIL_DOMAINS".to_string(),
                    "a.com,b.com".to_string()
                ),
                ("ORGS_AUTH_HS256_SECRET".to_string(), "s".to_string()),
                (
                    "ORGS_BILLING_FREE_ORGANIZATIONS".to_string(),
                    "5".to_string()
                ),
                ("ORGS_LISTEN_ADDR".to_string(), "0.0.0.0:50051".to_string()),
            ]
        );
        std::fs::write(&path, "listen_adr = \"x\"\n").unwrap();
        let err = file_variables(&path, &known).unwrap_err().to_string();
        assert!(err.contains("unknown setting `listen_adr`"), "{err}");
        std::fs::write(&path, "listen_addr = \n").unwrap();
        assert!(file_variables(&path, &known).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
