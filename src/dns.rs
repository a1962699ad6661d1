//! DNS TXT lookups for domain verification. The use case sees only
//! [`TxtLookup`]; [`HickoryTxtLookup`] answers it with hickory-resolver over
//! plain DNS (UDP) to the configured server, or to the system's resolvers
//! from `/etc/resolv.conf`. Every lookup ends within the configured timeout:
//! a server that does not answer, or answers with a failure, is
//! "unavailable", never a hang. Nothing is cached, so a record published a
//! moment ago is seen on the next attempt.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// Where lookups go and how long they may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// A DNS server (`IP:port`, UDP); `None`: the system's resolvers.
    pub resolver: Option<SocketAddr>,
    /// The longest a lookup may take.
    pub timeout: Duration,
}

/// The resolver did not answer in time, or answered with a failure
/// (SERVFAIL, REFUSED, …): whether the record exists is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the DNS resolver is unavailable: {0}")]
pub struct DnsUnavailable(pub String);

/// Looks up TXT records.
#[async_trait::async_trait]
pub trait TxtLookup: Send + Sync + 'static {
    /// The TXT records of `name`, each its character-strings joined (as
    /// RFC 7208 reads them); empty when the name does not exist or has no TXT
    /// record.
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsUnavailable>;
}

/// [`TxtLookup`] with hickory-resolver.
pub struct HickoryTxtLookup {
    /// `Err` when no resolver could be configured (no `/etc/resolv.conf`, say):
    /// every lookup is then unavailable, and the reason is logged once at start.
    resolver: Result<TokioResolver, String>,
    timeout: Duration,
}

impl std::fmt::Debug for HickoryTxtLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryTxtLookup")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HickoryTxtLookup {
    pub fn new(settings: &DnsSettings) -> Self {
        let resolver = build(settings).map_err(|err| {
            tracing::warn!(error = %err, "no DNS resolver: DNS TXT domain verification is unavailable");
            err
        });
        HickoryTxtLookup {
            resolver,
            timeout: settings.timeout,
        }
    }
}

fn build(settings: &DnsSettings) -> Result<TokioResolver, String> {
    let mut builder = match settings.resolver {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp]);
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|err| err.to_string())?,
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = settings.timeout;
    options.attempts = 1;
    // No cache: a verification looks at what is published now.
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    options.use_hosts_file = ResolveHosts::Never;
    // Names are looked up fully qualified, never below a search domain.
    options.ndots = 0;
    builder.build().map_err(|err| err.to_string())
}

#[async_trait::async_trait]
impl TxtLookup for HickoryTxtLookup {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsUnavailable> {
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|err| DnsUnavailable(err.clone()))?;
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = tokio::time::timeout(self.timeout, resolver.txt_lookup(fqdn.as_str()))
            .await
            .map_err(|_| DnsUnavailable(format!("no answer within {:?}", self.timeout)))?;
        match lookup {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(err) => absent(&err)
                .then(Vec::new)
                .ok_or_else(|| DnsUnavailable(err.to_string())),
        }
    }
}

/// Whether the answer says there is no such record: NXDOMAIN, or the name
/// without a TXT record. Any other failure leaves it unknown.
fn absent(err: &NetError) -> bool {
    use hickory_resolver::net::DnsError;
    matches!(
        err,
        NetError::Dns(DnsError::NoRecordsFound(no_records))
            if matches!(no_records.response_code, ResponseCode::NXDomain | ResponseCode::NoError)
    )
}
