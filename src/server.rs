//! Builds and runs the tonic server: the auth layer, the three services, health,
//! reflection and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::{Verifier, layer::AuthLayer};
use crate::config::ServeConfig;
use crate::domain::time::Clock;
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

/// The fully qualified names of the services, as health reports them.
pub const SERVICE_NAMES: &[&str] = &[
    "orgs.v1.OrganizationService",
    "orgs.v1.InvitationService",
    "orgs.v1.BillingService",
];

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
        let services = Services {
            db,
            clock,
            config: Arc::new(config),
            notifier: Notifier::default(),
            shutdown,
            billing: Default::default(),
        };
        Ok(App {
            services,
            verifier,
            shutdown_sender,
        })
    }

    /// Serves on `listener` until `signal` completes, then shuts down gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
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
        let watchdog = tokio::spawn(watch_database(self.services.db.clone(), reporter.clone()));

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
        let shutdown_sender = self.shutdown_sender;
        let shutdown_reporter = reporter.clone();
        let on_signal = async move {
            signal.await;
            tracing::info!("shutting down");
            for name in SERVICE_NAMES {
                shutdown_reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            shutdown_reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = shutdown_sender.send(true);
        };

        let result = Server::builder()
            .layer(AuthLayer::new(self.verifier))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(OrganizationServiceServer::new(OrganizationApi::new(
                services.clone(),
            )))
            .add_service(InvitationServiceServer::new(InvitationApi::new(
                services.clone(),
            )))
            .add_service(BillingServiceServer::new(BillingApi::new(services.clone())))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), on_signal)
            .await;
        watchdog.abort();
        services.db.clone().close().await;
        result.map_err(Into::into)
    }

    /// Binds `addr` and serves in the background; for tests and embedding.
    pub async fn spawn(self, addr: SocketAddr) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(self.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            addr: local_addr,
            stop: Some(stop),
            handle,
        })
    }
}

/// A server running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
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
