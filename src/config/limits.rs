//! What one caller or one connection may take: per-principal rate limits and
//! watches, HTTP/2 limits of a connection, the largest request, and the
//! default deadline of unary calls.

use std::time::Duration;

use clap::Args;

/// Limits on callers and connections.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Read calls per second a principal (token `sub`) may make, with bursts
    /// of twice that; 0 switches the limit off.
    #[arg(
        long = "rate-limit-reads-per-second",
        env = "ORGS_RATE_LIMIT_READS_PER_SECOND",
        default_value_t = 1000
    )]
    pub reads_per_second: u32,
    /// Write calls per second a principal may make, with bursts of twice
    /// that; 0 switches the limit off.
    #[arg(
        long = "rate-limit-writes-per-second",
        env = "ORGS_RATE_LIMIT_WRITES_PER_SECOND",
        default_value_t = 100
    )]
    pub writes_per_second: u32,
    /// Server-streaming calls (watches) a principal may have open at once; 0
    /// switches the limit off.
    #[arg(
        long = "watches-per-principal",
        env = "ORGS_WATCHES_PER_PRINCIPAL",
        default_value_t = 16
    )]
    pub watches_per_principal: u32,
    /// Concurrent HTTP/2 streams (calls) one connection may open.
    #[arg(long = "max-concurrent-streams", env = "ORGS_MAX_CONCURRENT_STREAMS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Largest request message, in bytes.
    #[arg(long = "max-request-bytes", env = "ORGS_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_request_bytes: u32,
    /// Deadline of a unary call, in seconds, when the client sends none or a
    /// longer one.
    #[arg(long = "request-timeout", env = "ORGS_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// Bytes the in-process caches (memberships and organizations for
    /// `CheckPermission` and `GetOrganization`) may take, about.
    #[arg(long = "cache-max-bytes", env = "ORGS_CACHE_MAX_BYTES", default_value_t = crate::service::access::DEFAULT_CACHE_MAX_BYTES)]
    pub cache_max_bytes: u64,
    /// Fill the caches from the database at startup (in the background,
    /// up to nine tenths of `ORGS_CACHE_MAX_BYTES`), so that reads spread
    /// over many organizations answer from memory from the start.
    #[arg(
        long = "cache-warm",
        env = "ORGS_CACHE_WARM",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub cache_warm: bool,
}

/// 8 MiB: a `RecordActivity` of 10,000 events with 128-character user ids is
/// 1.4 MB, 100 `CreateInvitations` items with 8 KiB of string metadata each
/// 1.6 MB (metadata of many small numbers encodes up to about five times its
/// JSON size, hence the headroom).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 8 * 1024 * 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            reads_per_second: 1000,
            writes_per_second: 100,
            watches_per_principal: 16,
            max_concurrent_streams: 256,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout_secs: 30,
            cache_max_bytes: crate::service::access::DEFAULT_CACHE_MAX_BYTES,
            cache_warm: true,
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}
