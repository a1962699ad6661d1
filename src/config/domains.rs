//! How domains are claimed and proved: how long an unverified claim lasts,
//! and the DNS server that DNS TXT verification asks.

use std::net::SocketAddr;

use clap::Args;

/// Domain claims and DNS TXT verification.
#[derive(Debug, Clone, Args)]
pub struct DomainsConfig {
    /// Days an unverified domain claim lasts; an expired claim counts for
    /// nothing and is removed when its name or organization is next claimed.
    #[arg(long = "domain-claim-ttl-days", env = "ORGS_DOMAIN_CLAIM_TTL_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub claim_ttl_days: u32,
    /// DNS server (`IP:port`, UDP) that DNS TXT domain verification asks;
    /// unset: the system's resolvers from /etc/resolv.conf.
    #[arg(long = "dns-resolver", env = "ORGS_DNS_RESOLVER")]
    pub dns_resolver: Option<SocketAddr>,
    /// Milliseconds a DNS TXT lookup may take before the attempt fails with
    /// UNAVAILABLE.
    #[arg(long = "dns-timeout-ms", env = "ORGS_DNS_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=30_000))]
    pub dns_timeout_ms: u64,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        DomainsConfig {
            claim_ttl_days: 7,
            dns_resolver: None,
            dns_timeout_ms: 2000,
        }
    }
}
