//! The database settings, and how its URL is shown in logs.

use std::time::Duration;

use clap::Args;

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
    /// Connections the pool opens as the server starts and keeps open;
    /// unset: as many as `--database-max-connections`, a pool of fixed size.
    /// Every connection opened while calls wait for it costs them a TLS
    /// handshake and a new database session whose caches are cold: with a
    /// pool that grows on demand, the first burst after a start (or after
    /// a quiet spell that let the pool shrink) waits for all of that.
    #[arg(
        long = "database-min-connections",
        env = "ORGS_DATABASE_MIN_CONNECTIONS"
    )]
    pub min_connections: Option<u32>,
    /// Seconds a call waits for a pooled connection (or for a new connection
    /// to the database) before it fails with UNAVAILABLE.
    #[arg(long = "database-acquire-timeout", env = "ORGS_DATABASE_ACQUIRE_TIMEOUT", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub acquire_timeout_secs: u64,
    /// Seconds PostgreSQL lets one statement run before cancelling it
    /// (`statement_timeout`); 0 leaves the server's setting.
    #[arg(
        long = "database-statement-timeout",
        env = "ORGS_DATABASE_STATEMENT_TIMEOUT",
        default_value_t = 30
    )]
    pub statement_timeout_secs: u64,
}

impl DatabaseConfig {
    /// The pool's settings.
    pub fn pool(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.max_connections,
            min_connections: self.min_connections,
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs),
            statement_timeout: (self.statement_timeout_secs > 0)
                .then(|| Duration::from_secs(self.statement_timeout_secs)),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .finish()
    }
}

/// Query parameters of a database URL that hold a secret (libpq's
/// `password`, and `sslpassword` for an encrypted client key).
const SECRET_QUERY_PARAMETERS: &[&str] = &["password", "sslpassword"];

/// The URL with its password, and any query parameter holding a secret,
/// replaced, for logs and error messages. A string that does not parse as a
/// URL keeps only its scheme, since where its secrets are cannot be told.
pub fn redact_url(url: &str) -> String {
    const REDACTED: &str = "[redacted]";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://{REDACTED}"),
            None => REDACTED.to_string(),
        };
    };
    if parsed.password().is_some() {
        // Fails only for URLs that cannot have credentials, which have none.
        let _ = parsed.set_password(Some(REDACTED));
    }
    if let Some(query) = parsed.query() {
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if SECRET_QUERY_PARAMETERS.iter().any(|secret| {
                        percent_encoding::percent_decode_str(key)
                            .decode_utf8_lossy()
                            .eq_ignore_ascii_case(secret)
                    }) =>
                {
                    format!("{key}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect();
        parsed.set_query(Some(&redacted.join("&")));
    }
    // The userinfo is percent-encoded; the marker reads better as written.
    parsed.to_string().replace("%5Bredacted%5D", REDACTED)
}
