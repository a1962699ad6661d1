//! Builds and runs the tonic server: the telemetry, deadline, drain, auth and
//! limits layers (in that order, outermost first), the HTTP/2 limits of a
//! connection, the three services, health (readiness, and `liveness`),
//! reflection, the `/metrics` listener and graceful shutdown.
//!
//! Shutdown: health turns NOT_SERVING and [`Services::shutdown`] turns true
//! (watch streams end with `UNAVAILABLE`); new calls get `UNAVAILABLE`; calls
//! already running get the grace period (`ORGS_SHUTDOWN_GRACE_PERIOD`) to finish
//! and are cut after it. Then the listener closes and the connections get
//! GOAWAY.

pub mod deadline;
pub mod drain;
pub mod limits;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::{Verifier, layer::AuthLayer};
use crate::config::ServeConfig;
use crate::domain::time::{BillingPeriod, Clock};
use crate::events::Notifier;
use crate::grpc::{billing::BillingApi, invitation::InvitationApi, organization::OrganizationApi};
use crate::proto::{
    self,
    v1::{
        billing_service_server::BillingServiceServer,
        invitation_service_server::InvitationServiceServer,
        organization_service_server::OrganizationServiceServer,
    },
};
use crate::service::Services;
use crate::store::Db;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::rpc::{KnownRpcs, RpcLayer};
use deadline::DeadlineLayer;
use drain::DrainLayer;
use limits::{LimitsLayer, RpcShapes};

/// How long the server waits for connections to close after cutting the calls
/// that outlived the grace period.
const AFTER_CUT_WAIT: Duration = Duration::from_secs(2);

/// The content type of the OpenMetrics text format that `/metrics` serves.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The fully qualified names of the services, as health reports them.
pub const SERVICE_NAMES: &[&str] = &[
    "orgs.v1.OrganizationService",
    "orgs.v1.InvitationService",
    "orgs.v1.BillingService",
];

/// The health service name that says only whether the process works: SERVING
/// from start to shutdown, whatever the database does. For liveness probes;
/// readiness asks for `""` (or a service name), which follows the database.
pub const LIVENESS_SERVICE: &str = "liveness";

/// HTTP/2 pings on an idle connection, and how long an answer may take before
/// the connection is closed; TCP keepalive for connections whose peer vanished.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A configured application, ready to serve.
pub struct App {
    pub services: Services,
    verifier: Arc<Verifier>,
    shutdown_sender: watch::Sender<bool>,
}

impl App {
    /// Checks the key configuration, connects to the database and, unless
    /// `--no-migrate`, applies the migrations.
    pub async fn build(config: ServeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let verifier = Arc::new(Verifier::from_config(&config.auth)?);
        let db = Db::connect(&config.database.url, config.database.max_connections)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to the database {}: {e}",
                    crate::config::redact_url(&config.database.url)
                )
            })?;
        if !config.no_migrate {
            db.migrate()
                .await
                .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        }
        let (shutdown_sender, shutdown) = watch::channel(false);
        let metrics = Metrics::new();
        metrics.observe_database(db.clone());
        let services = Services {
            db,
            clock,
            config: Arc::new(config),
            notifier: Notifier::default(),
            shutdown,
            metrics,
            billing: Default::default(),
            access: Default::default(),
        };
        // The billing gauges come from the database at each scrape, so every
        // replica reports the same numbers. The hook holds only what it reads
        // and the two gauges, never the services that hold the registry.
        let (db, clock, pricing) = (
            services.db.clone(),
            services.clock.clone(),
            services.pricing(),
        );
        let gauges = services.metrics.billing_gauges();
        services.metrics.on_scrape(move || {
            let (db, clock, gauges) = (db.clone(), clock.clone(), gauges.clone());
            Box::pin(async move {
                let period = BillingPeriod::containing(clock.now());
                match crate::service::billing::period_summary(&db, &pricing, period).await {
                    Ok(summary) => gauges.set(
                        summary.billable_organizations.max(0) as u64,
                        summary.charged_organizations.max(0) as u64,
                    ),
                    Err(err) => tracing::warn!(error = %err, "billing gauges not refreshed"),
                }
            })
        });
        Ok(App {
            services,
            verifier,
            shutdown_sender,
        })
    }

    /// Serves gRPC on `listener` and metrics on the configured
    /// `metrics_listen_addr` until `signal` completes, then shuts down
    /// gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let metrics_addr = self.services.config.metrics_listen_addr;
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {metrics_addr}: {e}"))?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics");
        self.serve_with_metrics(listener, metrics_listener, signal)
            .await
    }

    /// Serves gRPC on `listener` and `/metrics` on `metrics_listener` until
    /// `signal` completes, then shuts down gracefully.
    pub async fn serve_with_metrics(
        self,
        listener: TcpListener,
        metrics_listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let watchdog = tokio::spawn(watch_database(self.services.db.clone(), reporter.clone()));
        let access_invalidation = self.services.spawn_access_invalidation();

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let services = self.services.clone();
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            services.metrics.clone(),
            async move {
                let _ = metrics_stopped.await;
            },
        ));

        let grace_period = services.config.shutdown_grace_period();
        let (cut_sender, cut) = watch::channel(false);
        let drain = DrainLayer::new(services.shutdown.clone(), cut);
        let in_flight = drain.in_flight();
        let shutdown_sender = self.shutdown_sender;
        let shutdown_reporter = reporter.clone();
        // Completing this future closes the listener and sends GOAWAY; that
        // waits until the running calls have ended (or been cut), so calls
        // arriving meanwhile get a clear UNAVAILABLE from the drain layer.
        let on_signal = async move {
            signal.await;
            tracing::info!(
                calls = in_flight.count(),
                grace_period_secs = grace_period.as_secs(),
                "shutting down"
            );
            for name in SERVICE_NAMES {
                shutdown_reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            shutdown_reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            shutdown_reporter
                .set_service_status(LIVENESS_SERVICE, ServingStatus::NotServing)
                .await;
            let _ = shutdown_sender.send(true);
            in_flight.drained().await;
            tracing::info!("no calls running; closing connections");
        };

        let known_rpcs = KnownRpcs::from_descriptor_sets(&[
            proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]);
        let limits_config = &services.config.limits;
        let shapes = RpcShapes::from_descriptor_set(proto::FILE_DESCRIPTOR_SET);
        let limits = LimitsLayer::new(limits_config, shapes.clone());
        let limits_upkeep = limits.spawn_upkeep();
        let max_request_bytes = limits_config.max_request_bytes as usize;
        let server = Server::builder()
            .max_concurrent_streams(limits_config.max_concurrent_streams)
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .tcp_keepalive(Some(TCP_KEEPALIVE))
            // Outermost, so calls refused by the layers below are traced and counted too.
            .layer(RpcLayer::new(services.metrics.clone(), known_rpcs))
            .layer(DeadlineLayer::new(limits_config.request_timeout(), shapes))
            .layer(drain)
            .layer(AuthLayer::new(self.verifier))
            // After authentication: it limits by the verified principal.
            .layer(limits)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                OrganizationServiceServer::new(OrganizationApi::new(services.clone()))
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                InvitationServiceServer::new(InvitationApi::new(services.clone()))
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                BillingServiceServer::new(BillingApi::new(services.clone()))
                    .max_decoding_message_size(max_request_bytes),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), on_signal);
        tokio::pin!(server);

        let mut shutdown = services.shutdown.clone();
        let grace_over = async move {
            if shutdown.wait_for(|started| *started).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace_period).await;
        };
        let result = tokio::select! {
            result = &mut server => result,
            _ = grace_over => {
                tracing::warn!(grace_period_secs = grace_period.as_secs(), "grace period over; cutting the calls still running");
                let _ = cut_sender.send(true);
                match tokio::time::timeout(AFTER_CUT_WAIT, &mut server).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("connections still open after the cut; leaving them");
                        Ok(())
                    }
                }
            }
        };
        tracing::info!("gRPC server stopped");
        let _ = stop_metrics.send(());
        if let Ok(Err(err)) = metrics_server.await {
            tracing::warn!(error = %err, "metrics listener failed");
        }
        watchdog.abort();
        access_invalidation.abort();
        limits_upkeep.abort();
        services.db.clone().close().await;
        result.map_err(Into::into)
    }

    /// Binds `addr` (and the configured metrics address) and serves in the
    /// background; for tests and embedding.
    pub async fn spawn(self, addr: SocketAddr) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(self.services.config.metrics_listen_addr).await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle =
            tokio::spawn(
                self.serve_with_metrics(listener, metrics_listener, async move {
                    let _ = stopped.await;
                }),
            );
        Ok(RunningServer {
            addr: local_addr,
            metrics_addr,
            stop: Some(stop),
            handle,
        })
    }
}

/// Serves `GET /metrics` until `signal` completes.
async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                    metrics.scrape().await,
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .await
}

/// A server running in the background.
pub struct RunningServer {
    /// The bound gRPC address.
    pub addr: SocketAddr,
    /// The bound address of `/metrics`.
    pub metrics_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Shuts down gracefully and waits for the server to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle).await?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reports NOT_SERVING while the database cannot be reached, SERVING again when
/// it can.
async fn watch_database(db: Db, reporter: HealthReporter) {
    let mut serving = true;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reachable = tokio::time::timeout(Duration::from_secs(2), db.ping())
            .await
            .unwrap_or(false);
        if reachable != serving {
            serving = reachable;
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if serving {
                tracing::info!("database reachable again");
            } else {
                tracing::warn!("database unreachable");
            }
            for name in SERVICE_NAMES {
                reporter.set_service_status(*name, status).await;
            }
            reporter.set_service_status("", status).await;
        }
    }
}
