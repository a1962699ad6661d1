//! The operators' web console: where it listens and how it learns who signs in.

use std::net::SocketAddr;

use clap::Args;

/// The web console (off unless it has an address).
#[derive(Debug, Clone, Default, Args)]
pub struct ConsoleConfig {
    /// Address of the web console (HTTP); off when unset. Put it behind a
    /// TLS-terminating proxy unless it listens on localhost.
    #[arg(
        id = "console_listen_addr",
        long = "console-listen",
        env = "ORGS_CONSOLE_LISTEN_ADDR"
    )]
    pub listen_addr: Option<SocketAddr>,
    /// Accept `Authorization: Bearer …` set by an authenticating proxy in
    /// front of the console, instead of a pasted token only. Turn on only when
    /// that proxy sets or strips the header on every request.
    #[arg(
        id = "console_trust_authorization_header",
        long = "console-trust-authorization-header",
        env = "ORGS_CONSOLE_TRUST_AUTHORIZATION_HEADER"
    )]
    pub trust_authorization_header: bool,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::config::ServeConfig;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    #[test]
    fn the_console_settings_parse_beside_every_other_setting() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "orgs",
            "--console-listen",
            "127.0.0.1:8080",
            "--console-trust-authorization-header",
        ])
        .expect("parses");
        assert_eq!(
            cli.serve.console.listen_addr,
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert!(cli.serve.console.trust_authorization_header);
        let cli = Cli::try_parse_from(["orgs"]).expect("parses");
        assert!(cli.serve.console.listen_addr.is_none());
        assert!(!cli.serve.console.trust_authorization_header);
    }
}
