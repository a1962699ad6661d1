//! Prometheus metrics: one registry per server, encoded as text for `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `grpc_server_handled_total` | counter | `grpc_service`, `grpc_method`, `grpc_code` |
//! | `grpc_server_handling_seconds` | histogram | `grpc_service`, `grpc_method` |
//! | `grpc_server_in_flight_requests` | gauge | `grpc_service`, `grpc_method` |
//! | `orgs_watch_streams_open` | gauge | |
//! | `orgs_billing_billable_organizations` | gauge | |
//! | `orgs_billing_charged_organizations` | gauge | |
//! | `orgs_billing_budget_minor_units` | gauge | |
//! | `orgs_billing_projected_amount_due_minor_units` | gauge | |
//! | `orgs_db_pool_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `orgs_db_pool_max_connections` | gauge | |
//! | `orgs_cache_entries` | gauge | `cache` (`memberships`, `organizations`, `tokens`) |
//! | `orgs_cache_bytes` | gauge | `cache`: estimated bytes, bounded by `ORGS_CACHE_MAX_BYTES` (`tokens`: `ORGS_AUTH_TOKEN_CACHE_BYTES`) |
//!
//! RPCs outside the served protos are counted as `grpc_service="unknown"`,
//! `grpc_method="unknown"`, so a client cannot grow the label sets.

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::store::Db;

/// The labels of the per-RPC metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub grpc_service: String,
    pub grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// Runs before each scrape, to bring gauges up to date.
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How long one [`ScrapeHook`] may take before the scrape goes on without it.
const SCRAPE_HOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The server's metrics. Cheap to clone; every clone feeds the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    handled: Family<HandledLabels, Counter>,
    handling_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<MethodLabels, Gauge>,
    watch_streams_open: Gauge,
    billable_organizations: Gauge,
    charged_organizations: Gauge,
    budget: Gauge,
    projected_amount_due: Gauge,
    db_pool_connections: Family<PoolLabels, Gauge>,
    db_pool_max_connections: Gauge,
    cache_entries: Family<CacheLabels, Gauge>,
    cache_bytes: Family<CacheLabels, Gauge>,
    log_head: Gauge,
    log_held_back_seconds: Gauge<f64, AtomicU64>,
    wal: WalGauges,
    database: Mutex<Option<Db>>,
    scrape_hooks: Mutex<Vec<ScrapeHook>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// The size gauges of the in-process caches.
#[derive(Clone)]
pub struct CacheGauges {
    entries: Family<CacheLabels, Gauge>,
    bytes: Family<CacheLabels, Gauge>,
}

impl CacheGauges {
    /// Sets the entries and estimated bytes of the cache named `cache`.
    pub fn set(&self, cache: &'static str, entries: u64, bytes: u64) {
        let labels = CacheLabels { cache };
        self.entries
            .get_or_create(&labels)
            .set(saturating_i64(entries));
        self.bytes.get_or_create(&labels).set(saturating_i64(bytes));
    }
}

/// Where this process stands in the event log.
#[derive(Clone)]
pub struct LogGauges {
    head: Gauge,
    held_back_seconds: Gauge<f64, AtomicU64>,
}

impl LogGauges {
    /// The position up to which the process has the log, and how long its
    /// follower has found the log's head held back (zero: it is not).
    pub fn set(&self, head: i64, held_back: Duration) {
        self.head.set(head);
        self.held_back_seconds.set(held_back.as_secs_f64());
    }
}

/// SQLite's write-ahead log as the last checkpoint beside the writer left it.
#[derive(Clone)]
pub struct WalGauges {
    pages: Gauge,
    uncopied_pages: Gauge,
    checkpoints: Counter,
    failures: Counter,
}

impl WalGauges {
    fn register(registry: &mut Registry) -> WalGauges {
        let gauges = WalGauges {
            pages: Gauge::default(),
            uncopied_pages: Gauge::default(),
            checkpoints: Counter::default(),
            failures: Counter::default(),
        };
        registry.register(
            "orgs_sqlite_wal_pages",
            "Pages in SQLite's write-ahead log at the last checkpoint",
            gauges.pages.clone(),
        );
        registry.register(
            "orgs_sqlite_wal_uncopied_pages",
            "Pages of the write-ahead log that the last checkpoint could not copy into the database file (readers held older snapshots)",
            gauges.uncopied_pages.clone(),
        );
        registry.register(
            "orgs_sqlite_checkpoints",
            "Checkpoints run beside the SQLite writer",
            gauges.checkpoints.clone(),
        );
        registry.register(
            "orgs_sqlite_checkpoint_failures",
            "Checkpoints beside the SQLite writer that failed (the log grows until one succeeds)",
            gauges.failures.clone(),
        );
        gauges
    }

    /// A checkpoint found `pages` in the log and copied `copied` of them.
    pub fn checkpointed(&self, pages: i64, copied: i64) {
        self.pages.set(pages);
        self.uncopied_pages.set(pages - copied);
        self.checkpoints.inc();
    }

    /// A checkpoint failed.
    pub fn checkpoint_failed(&self) {
        self.failures.inc();
    }
}

/// The billable and charged organizations of the current period, the
/// budget and the projected amount due.
#[derive(Clone)]
pub struct BillingGauges {
    billable_organizations: Gauge,
    charged_organizations: Gauge,
    budget: Gauge,
    projected_amount_due: Gauge,
}

impl BillingGauges {
    pub fn set(&self, billable_organizations: u64, charged_organizations: u64) {
        self.billable_organizations
            .set(saturating_i64(billable_organizations));
        self.charged_organizations
            .set(saturating_i64(charged_organizations));
    }

    /// The budget of a period (0: none) and the amount due projected to the
    /// end of the current one, in minor units.
    pub fn set_budget(&self, budget: i64, projected_amount_due: i64) {
        self.budget.set(budget);
        self.projected_amount_due.set(projected_amount_due);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s: database calls at the low end, slow streams at the top.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed, by gRPC status code",
            handled.clone(),
        );
        let handling_seconds =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from request to the end of the response (the whole stream for streaming RPCs)",
            handling_seconds.clone(),
        );
        let in_flight = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "grpc_server_in_flight_requests",
            "RPCs being handled now",
            in_flight.clone(),
        );
        let watch_streams_open = Gauge::default();
        registry.register(
            "orgs_watch_streams_open",
            "Open watch streams",
            watch_streams_open.clone(),
        );
        let billable_organizations = Gauge::default();
        registry.register(
            "orgs_billing_billable_organizations",
            "Billable organizations in the current billing period",
            billable_organizations.clone(),
        );
        let charged_organizations = Gauge::default();
        registry.register(
            "orgs_billing_charged_organizations",
            "Organizations charged for in the current billing period (billable beyond the free ones)",
            charged_organizations.clone(),
        );
        let budget = Gauge::default();
        registry.register(
            "orgs_billing_budget_minor_units",
            "The budget of a billing period (ORGS_BILLING_BUDGET), in minor units of the currency; 0: none",
            budget.clone(),
        );
        let projected_amount_due = Gauge::default();
        registry.register(
            "orgs_billing_projected_amount_due_minor_units",
            "The current period's amount due extrapolated linearly to its end, in minor units",
            projected_amount_due.clone(),
        );
        let db_pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "orgs_db_pool_connections",
            "Database pool connections by state",
            db_pool_connections.clone(),
        );
        let db_pool_max_connections = Gauge::default();
        registry.register(
            "orgs_db_pool_max_connections",
            "Configured size limit of the database pool",
            db_pool_max_connections.clone(),
        );
        let cache_entries = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "orgs_cache_entries",
            "Entries of an in-process cache",
            cache_entries.clone(),
        );
        let cache_bytes = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "orgs_cache_bytes",
            "Estimated bytes of an in-process cache",
            cache_bytes.clone(),
        );
        let log_head = Gauge::default();
        registry.register(
            "orgs_event_log_head",
            "The event log position up to which this process has read every event",
            log_head.clone(),
        );
        let log_held_back_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "orgs_event_log_held_back_seconds",
            "How long the log follower has found the event log's head held back by an open transaction (PostgreSQL); 0: it is not",
            log_held_back_seconds.clone(),
        );
        let wal = WalGauges::register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                registry,
                handled,
                handling_seconds,
                in_flight,
                watch_streams_open,
                billable_organizations,
                charged_organizations,
                budget,
                projected_amount_due,
                db_pool_connections,
                db_pool_max_connections,
                cache_entries,
                cache_bytes,
                log_head,
                log_held_back_seconds,
                wal,
                database: Mutex::new(None),
                scrape_hooks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Reports the connections of `db`'s pool on every scrape.
    pub fn observe_database(&self, db: Db) {
        if let Ok(mut database) = self.inner.database.lock() {
            *database = Some(db);
        }
    }

    /// Counts an open watch stream until the returned guard is dropped.
    ///
    /// Keep the guard inside the stream (move it into the stream's state), so
    /// it drops however the stream ends: the client going away, an error, or
    /// the server shutting down.
    pub fn watch_stream_opened(&self) -> WatchStreamGuard {
        self.inner.watch_streams_open.inc();
        WatchStreamGuard {
            gauge: self.inner.watch_streams_open.clone(),
        }
    }

    /// Sets the billable and charged organizations of the current billing
    /// period. Call it after a change (each replica only sees its own), or from
    /// a [`Metrics::on_scrape`] hook that reads the numbers from the database,
    /// which keeps every replica right.
    pub fn set_billing_period(&self, billable_organizations: u64, charged_organizations: u64) {
        self.inner
            .billable_organizations
            .set(saturating_i64(billable_organizations));
        self.inner
            .charged_organizations
            .set(saturating_i64(charged_organizations));
    }

    /// The billing gauges alone, for a scrape hook: holding them does not keep
    /// the whole registry (and whatever its hooks hold) alive.
    pub fn billing_gauges(&self) -> BillingGauges {
        BillingGauges {
            billable_organizations: self.inner.billable_organizations.clone(),
            charged_organizations: self.inner.charged_organizations.clone(),
            budget: self.inner.budget.clone(),
            projected_amount_due: self.inner.projected_amount_due.clone(),
        }
    }

    /// The cache gauges alone, for a scrape hook.
    pub fn cache_gauges(&self) -> CacheGauges {
        CacheGauges {
            entries: self.inner.cache_entries.clone(),
            bytes: self.inner.cache_bytes.clone(),
        }
    }

    /// The write-ahead log gauges, for the SQLite checkpoints.
    pub fn wal_gauges(&self) -> WalGauges {
        self.inner.wal.clone()
    }

    /// The event log gauges alone, for a scrape hook.
    pub fn log_gauges(&self) -> LogGauges {
        LogGauges {
            head: self.inner.log_head.clone(),
            held_back_seconds: self.inner.log_held_back_seconds.clone(),
        }
    }

    /// Runs `hook` before every scrape (each hook gets two seconds; a slow one
    /// leaves its gauges as they were). For numbers that live in the database,
    /// such as [`Metrics::set_billing_period`].
    pub fn on_scrape(&self, hook: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static) {
        if let Ok(mut hooks) = self.inner.scrape_hooks.lock() {
            hooks.push(Arc::new(hook));
        }
    }

    /// Starts counting one RPC; the call is counted as handled when the
    /// returned record is finished.
    pub(crate) fn rpc_started(&self, labels: MethodLabels) -> RpcRecord {
        let in_flight = self.inner.in_flight.get_or_create(&labels).clone();
        in_flight.inc();
        RpcRecord {
            metrics: self.clone(),
            labels,
            in_flight,
            start: Instant::now(),
        }
    }

    /// Brings the scrape-time gauges up to date and encodes every metric in
    /// the OpenMetrics text format.
    pub async fn scrape(&self) -> String {
        let hooks: Vec<ScrapeHook> = self
            .inner
            .scrape_hooks
            .lock()
            .map(|hooks| hooks.clone())
            .unwrap_or_default();
        for hook in hooks {
            if tokio::time::timeout(SCRAPE_HOOK_TIMEOUT, hook())
                .await
                .is_err()
            {
                tracing::warn!("a metrics scrape hook timed out");
            }
        }
        self.update_pool_gauges();
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        text
    }

    fn update_pool_gauges(&self) {
        let database = self
            .inner
            .database
            .lock()
            .ok()
            .and_then(|database| database.clone());
        let Some(status) = database.and_then(|db| db.pool_status()) else {
            return;
        };
        let idle = status.idle.min(status.open);
        self.inner
            .db_pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(i64::from(idle));
        self.inner
            .db_pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(status.open - idle));
        self.inner
            .db_pool_max_connections
            .set(i64::from(status.max));
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Decrements `orgs_watch_streams_open` when dropped.
#[must_use = "the stream counts as open only while the guard lives"]
#[derive(Debug)]
pub struct WatchStreamGuard {
    gauge: Gauge,
}

impl Drop for WatchStreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One RPC being counted.
pub(crate) struct RpcRecord {
    metrics: Metrics,
    labels: MethodLabels,
    in_flight: Gauge,
    start: Instant,
}

impl RpcRecord {
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn finish(self, code: Code) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let inner = &self.metrics.inner;
        inner
            .handling_seconds
            .get_or_create(&self.labels)
            .observe(elapsed);
        inner
            .handled
            .get_or_create(&HandledLabels {
                grpc_service: self.labels.grpc_service.clone(),
                grpc_method: self.labels.grpc_method.clone(),
                grpc_code: code_name(code),
            })
            .inc();
        // `in_flight` is decremented by Drop.
    }
}

impl Drop for RpcRecord {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// The canonical name of a gRPC status code, as the gRPC specification spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
