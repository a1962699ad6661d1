//! Builds and runs the tonic server: the telemetry, deadline, drain, auth and
//! limits layers (in that order, outermost first), the HTTP/2 limits of a
//! connection, the three services, health (readiness, and `liveness`),
//! reflection, the `/metrics` listener and graceful shutdown.
//!
//! Shutdown: health turns NOT_SERVING and the shutdown flag turns true
//! (watch streams end with `UNAVAILABLE`); new calls get `UNAVAILABLE`; calls
//! already running get the grace period (`ORGS_SHUTDOWN_GRACE_PERIOD`) to finish
//! and are cut after it. Then the listener closes and the connections get
//! GOAWAY.

pub mod deadline;
pub mod drain;
pub mod limits;
mod scrape;
pub mod wiring;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::{Verifier, layer::AuthLayer};
use crate::config::ServeConfig;
use crate::domain::time::Clock;
use crate::events::{Notifier, follower};
use crate::middleware::AroundLayer;
use crate::proto::{
    self,
    v1::{
        billing_service_server::BillingServiceServer, event_service_server::EventServiceServer,
        invitation_service_server::InvitationServiceServer,
        organization_service_server::OrganizationServiceServer,
    },
};
use crate::service::AccessCache;
use crate::store::Db;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::rpc::{KnownRpcs, RpcLayer};
use crate::tls::ServerTls;
use deadline::DeadlineLayer;
use drain::DrainLayer;
use limits::{LimitsLayer, RpcShapes};
use wiring::{Handlers, ServerKeys, Shared};

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
    "orgs.v1.EventService",
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
    config: ServeConfig,
    shared: Shared,
    handlers: Handlers,
    verifier: Arc<Verifier>,
    tls: Option<Arc<ServerTls>>,
    shutdown_sender: watch::Sender<bool>,
    /// The console's listener, once bound (see [`App::bind_console`]).
    console_listener: Option<TcpListener>,
}

impl App {
    /// Checks the key configuration, connects to the database and, unless
    /// `--no-migrate`, applies the migrations.
    pub async fn build(config: ServeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let verifier = Arc::new(Verifier::from_config(&config.auth).await?);
        let tls = ServerTls::from_config(&config.tls)?;
        let db = Db::connect_with(&config.database.url, &config.database.pool())
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
        let keys = ServerKeys::load(&db, clock.now_micros())
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the server keys: {e}"))?;
        let shared = Shared {
            db,
            clock,
            keys,
            notifier: Notifier::default(),
            access: AccessCache::new(config.limits.cache_max_bytes),
            shutdown,
            metrics,
        };
        let handlers = wiring::handlers(&config, &shared);
        scrape::hooks(&shared, &handlers, &verifier);
        Ok(App {
            config,
            shared,
            handlers,
            verifier,
            tls,
            shutdown_sender,
            console_listener: None,
        })
    }

    /// Serves gRPC on `listener`, metrics on the configured
    /// `metrics_listen_addr` and, when configured, health on
    /// `health_listen_addr` until `signal` completes, then shuts down
    /// gracefully.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if let Some(addr) = self.bind_console().await? {
            tracing::info!(%addr, "serving the console");
        }
        let metrics_addr = self.config.metrics_listen_addr;
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {metrics_addr}: {e}"))?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics");
        let health_listener = self.bind_health().await?;
        if let Some(health_listener) = &health_listener {
            tracing::info!(addr = %health_listener.local_addr()?, "serving health (plaintext)");
        }
        self.serve_with_metrics(listener, metrics_listener, health_listener, signal)
            .await
    }

    /// Binds the console's listener when `ORGS_CONSOLE_LISTEN_ADDR` is set;
    /// [`App::serve_with_metrics`] serves the console on it.
    pub async fn bind_console(&mut self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(addr) = self.config.console.listen_addr else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for the console on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        self.console_listener = Some(listener);
        Ok(Some(local))
    }

    /// The plaintext health-only listener, when one is configured.
    async fn bind_health(&self) -> anyhow::Result<Option<TcpListener>> {
        match self.config.health_listen_addr {
            Some(addr) => Ok(Some(TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen for health checks on {addr}: {e}")
            })?)),
            None => Ok(None),
        }
    }

    /// Serves gRPC on `listener` (over TLS when configured), `/metrics` on
    /// `metrics_listener` and `grpc.health.v1.Health` alone, in plaintext, on
    /// `health_listener` until `signal` completes, then shuts down gracefully.
    pub async fn serve_with_metrics(
        self,
        listener: TcpListener,
        metrics_listener: TcpListener,
        health_listener: Option<TcpListener>,
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
        let App {
            config,
            shared,
            handlers,
            verifier,
            tls,
            shutdown_sender,
            console_listener,
        } = self;
        let watchdog = tokio::spawn(watch_database(shared.db.clone(), reporter.clone()));
        // One follower of the log: the caches forget what other replicas
        // changed, and watches wake for their commits.
        let log_follower = follower::spawn(
            shared.db.clone(),
            shared.notifier.clone(),
            Arc::new(shared.access.clone()),
            shared.shutdown.clone(),
            follower::POLL_INTERVAL,
        );
        let cache_warm_up = config.limits.cache_warm.then(|| {
            tokio::spawn(crate::service::warm::run(
                shared.db.clone(),
                shared.access.clone(),
            ))
        });
        let log_pruner = crate::events::pruning::spawn(
            shared.db.clone(),
            shared.clock.clone(),
            config.prune_settings(),
            shared.shutdown.clone(),
        );

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

        // Probes that cannot speak TLS (Kubernetes gRPC probes) ask this
        // listener; it reports the same statuses as the main one.
        let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
        let health_server = health_listener.map(|health_listener| {
            tokio::spawn(
                Server::builder()
                    .add_service(health_service.clone())
                    .serve_with_incoming_shutdown(without_delay(health_listener), async move {
                        let _ = health_stopped.await;
                    }),
            )
        });

        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            shared.metrics.clone(),
            async move {
                let _ = metrics_stopped.await;
            },
        ));

        let grace_period = config.shutdown_grace_period();
        let (cut_sender, cut) = watch::channel(false);
        let drain = DrainLayer::new(shared.shutdown.clone(), cut);
        let in_flight = drain.in_flight();
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
        let limits_config = &config.limits;
        let shapes = RpcShapes::from_descriptor_set(proto::FILE_DESCRIPTOR_SET);
        let limits = LimitsLayer::new(limits_config, shapes.clone());
        let limits_upkeep = limits.spawn_upkeep();
        // The console stops taking requests when shutdown starts.
        let console_server = console_listener.map(|console_listener| {
            let console = crate::console::Console::new(
                wiring::console_services(&config, &shared),
                verifier.clone(),
                shared.keys.console_csrf.clone(),
                config.console.trust_authorization_header,
                shared.clock.clone(),
                limits.clone(),
            );
            let mut shutdown = shared.shutdown.clone();
            tokio::spawn(crate::console::serve(
                console_listener,
                console,
                async move {
                    let _ = shutdown.wait_for(|started| *started).await;
                },
            ))
        });

        let max_request_bytes = limits_config.max_request_bytes as usize;
        let router = Server::builder()
            .max_concurrent_streams(limits_config.max_concurrent_streams)
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .tcp_keepalive(Some(TCP_KEEPALIVE))
            // Outermost, so calls refused by the layers below are traced and counted too.
            .layer(AroundLayer(RpcLayer::new(
                shared.metrics.clone(),
                known_rpcs,
            )))
            .layer(AroundLayer(DeadlineLayer::new(
                limits_config.request_timeout(),
                shapes,
            )))
            .layer(AroundLayer(drain))
            .layer(AuthLayer::new(verifier.clone()))
            // After authentication: it limits by the verified principal.
            .layer(AroundLayer(limits))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                OrganizationServiceServer::new(handlers.organization)
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                InvitationServiceServer::new(handlers.invitation)
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                BillingServiceServer::new(handlers.billing)
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                EventServiceServer::new(handlers.events)
                    .max_decoding_message_size(max_request_bytes),
            );
        let server: BoxFuture<'static, Result<(), tonic::transport::Error>> = match tls {
            Some(tls) => {
                tracing::info!(
                    client_certificates = tls.mutual(),
                    "gRPC listener speaks TLS"
                );
                Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), on_signal))
            }
            None => {
                Box::pin(router.serve_with_incoming_shutdown(without_delay(listener), on_signal))
            }
        };
        tokio::pin!(server);

        let mut shutdown = shared.shutdown.clone();
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
        let _ = stop_health.send(());
        if let Some(health_server) = health_server
            && let Ok(Err(err)) = health_server.await
        {
            tracing::warn!(error = %err, "health listener failed");
        }
        let _ = stop_metrics.send(());
        if let Ok(Err(err)) = metrics_server.await {
            tracing::warn!(error = %err, "metrics listener failed");
        }
        if let Some(console_server) = console_server
            && let Ok(Err(err)) = console_server.await
        {
            tracing::warn!(error = %err, "console listener failed");
        }
        watchdog.abort();
        log_follower.abort();
        cache_warm_up.inspect(tokio::task::JoinHandle::abort);
        log_pruner.abort();
        limits_upkeep.abort();
        shared.db.close().await;
        result.map_err(Into::into)
    }

    /// Binds `addr` (and the configured metrics and health addresses) and
    /// serves in the background; for tests and embedding.
    pub async fn spawn(mut self, addr: SocketAddr) -> anyhow::Result<RunningServer> {
        let console_addr = self.bind_console().await?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(self.config.metrics_listen_addr).await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let health_listener = self.bind_health().await?;
        let health_addr = match &health_listener {
            Some(health_listener) => Some(health_listener.local_addr()?),
            None => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(self.serve_with_metrics(
            listener,
            metrics_listener,
            health_listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(RunningServer {
            addr: local_addr,
            metrics_addr,
            health_addr,
            console_addr,
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
    /// The bound address of the plaintext health listener, when configured.
    pub health_addr: Option<SocketAddr>,
    /// The bound address of the console, when configured.
    pub console_addr: Option<SocketAddr>,
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

/// The listener's connections with Nagle's algorithm off. A response's
/// frames can leave in two writes (its trailers after its message); with
/// Nagle on, the second waits for the client's acknowledgement of the first,
/// which the client delays (40 ms on Linux) when it has nothing to send.
/// tonic turns it off only on listeners it binds itself.
fn without_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot turn Nagle's algorithm off");
            }
        })
    })
}
