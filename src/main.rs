//! The `orgs` command: `serve`, `migrate`, `token`.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use orgs::auth::token::{TokenRequest, mint_hs256, parse_ttl};
use orgs::config::{DatabaseConfig, LogFormat, Secret, ServeConfig};
use orgs::domain::time::SystemClock;
use orgs::store::Db;
use orgs::telemetry::TelemetryOptions;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "orgs",
    version,
    about = "Organizations, memberships, invitations and billing over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (applies migrations first unless --no-migrate).
    Serve(Box<ServeConfig>),
    /// Apply the database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Print a token signed with the configured HS256 secret.
    Token(TokenArgs),
}

/// What `orgs token` puts in the token.
#[derive(clap::Args)]
struct TokenArgs {
    /// The principal: a user id or a service name.
    #[arg(long)]
    sub: String,
    /// Space-separated scopes, for example "orgs:admin".
    #[arg(long)]
    scope: Option<String>,
    /// The service acting on behalf of `sub` (`act.sub`).
    #[arg(long)]
    act: Option<String>,
    /// The OIDC `email` claim.
    #[arg(long)]
    email: Option<String>,
    /// Add `email_verified: true` (the identity provider vouches for `--email`).
    #[arg(long, requires = "email")]
    email_verified: bool,
    /// Lifetime: 30s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    #[arg(
        long = "auth-hs256-secret",
        env = "ORGS_AUTH_HS256_SECRET",
        hide_env_values = true
    )]
    secret: Option<Secret>,
    #[arg(long = "auth-issuer", env = "ORGS_AUTH_ISSUER")]
    issuer: Option<String>,
    #[arg(long = "auth-audience", env = "ORGS_AUTH_AUDIENCE")]
    audience: Option<String>,
}

fn main() -> std::process::ExitCode {
    if let Err(err) = apply_config_file() {
        eprintln!("orgs: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("orgs: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_command(cli))
}

/// Settings precedence: defaults, then the `--config` (or `ORGS_CONFIG_FILE`)
/// TOML file, then `ORGS_*` variables, then flags. The file's settings become
/// variables that are not set already, before anything else runs.
fn apply_config_file() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut path = std::env::var_os("ORGS_CONFIG_FILE").map(std::path::PathBuf::from);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            path = args.next().map(std::path::PathBuf::from);
        } else if let Some(value) = arg.strip_prefix("--config=") {
            path = Some(value.into());
        }
    }
    let Some(path) = path else { return Ok(()) };
    let command = <Cli as clap::CommandFactory>::command();
    let known: Vec<String> = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for (name, value) in orgs::config::file_variables(&path, &known)? {
        if std::env::var_os(&name).is_none() {
            // SAFETY: no other thread exists yet; the runtime starts afterwards.
            unsafe { std::env::set_var(&name, value) };
        }
    }
    Ok(())
}

async fn run_command(cli: Cli) -> std::process::ExitCode {
    let result = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate { database } => migrate(database).await,
        Command::Token(args) => token(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orgs: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let telemetry = orgs::telemetry::init(TelemetryOptions::from_env(config.log_format))?;
    let result = run(config).await;
    // Whatever happened, send the spans that explain it.
    telemetry.shutdown().await;
    result
}

async fn run(config: ServeConfig) -> anyhow::Result<()> {
    tracing::info!(config = ?config, "starting");
    let listen = config.listen_addr;
    let app = orgs::App::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving gRPC");
    app.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn migrate(database: DatabaseConfig) -> anyhow::Result<()> {
    let telemetry = orgs::telemetry::init(TelemetryOptions {
        otlp_endpoint: None,
        ..TelemetryOptions::from_env(LogFormat::Text)
    })?;
    let db = Db::connect(&database.url, 1).await?;
    db.migrate().await?;
    tracing::info!(database = %orgs::config::redact_url(&database.url), "migrations applied");
    db.close().await;
    telemetry.shutdown().await;
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let Some(secret) = args.secret.filter(|s| !s.0.is_empty()) else {
        anyhow::bail!(
            "set ORGS_AUTH_HS256_SECRET (or --auth-hs256-secret) to the server's HS256 secret"
        );
    };
    let token = mint_hs256(
        &secret.0,
        &TokenRequest {
            sub: args.sub,
            scope: args.scope,
            act: args.act,
            ttl_seconds: parse_ttl(&args.ttl)?,
            issuer: args.issuer,
            audience: args.audience,
            email: args.email,
            email_verified: args.email_verified,
        },
    )?;
    println!("{token}");
    Ok(())
}
