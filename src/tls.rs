//! TLS of the gRPC listener, with certificates that change at run time.
//!
//! tonic's own TLS takes its certificate once, so the server accepts TCP
//! connections itself, makes the TLS handshake with the configuration current
//! at that moment, and hands finished connections to tonic. When the
//! certificate, key or client CA files change (cert-manager renews them in
//! place) a new configuration is built and used for the connections that
//! follow; connections already open keep the session they have. Everything
//! is rustls on ring, the one crypto provider of the process.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsConfig;
use crate::reload::{Reloaded, spawn_poller};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes ring the process's rustls provider, which the JWKS client takes.
/// Calling it again, or after someone else installed one, changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS configuration in use.
pub struct ServerTls {
    current: RwLock<Arc<rustls::ServerConfig>>,
    mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish()
    }
}

impl ServerTls {
    /// Reads the files (an error stops the start) and watches them for new
    /// versions; `None` when no certificate is configured.
    pub fn from_config(config: &TlsConfig) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let (cert_file, key_file) = match (&config.cert_file, &config.key_file) {
            (None, None) => {
                if config.client_ca_file.is_some() {
                    anyhow::bail!(
                        "ORGS_TLS_CLIENT_CA_FILE needs ORGS_TLS_CERT_FILE and ORGS_TLS_KEY_FILE"
                    );
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => (cert, key),
            _ => anyhow::bail!("set both ORGS_TLS_CERT_FILE and ORGS_TLS_KEY_FILE, or neither"),
        };
        let mut paths = vec![cert_file.clone(), key_file.clone()];
        paths.extend(config.client_ca_file.clone());
        let mut contents = Vec::with_capacity(paths.len());
        for path in &paths {
            contents.push(std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read the TLS file {}: {e}", path.display())
            })?);
        }
        let first = server_config(&contents)
            .map_err(|e| anyhow::anyhow!("the TLS files are not usable: {e}"))?;
        let tls = Arc::new(ServerTls {
            current: RwLock::new(Arc::new(first)),
            mutual: config.client_ca_file.is_some(),
        });
        let weak = Arc::downgrade(&tls);
        spawn_poller(
            "tls certificate",
            paths,
            contents,
            config.reload_interval(),
            move |contents| {
                let Some(tls) = weak.upgrade() else {
                    return Reloaded::Stop;
                };
                match server_config(contents) {
                    Ok(next) => {
                        tls.replace(next);
                        Reloaded::Applied
                    }
                    Err(e) => Reloaded::Refused(e),
                }
            },
        );
        Ok(Some(tls))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, server_config: rustls::ServerConfig) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(server_config);
    }

    /// The TLS connections made on `listener`, for tonic's
    /// `serve_with_incoming`. Each handshake runs on its own task, so a slow
    /// or silent client holds up nobody; failed handshakes (no client
    /// certificate, a plaintext client) are logged at debug and dropped.
    /// Accepting stops when the stream is dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (connections, stream) = mpsc::channel(128);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = connections.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as
                        // tonic's own listener does, rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // As for plain connections (`server::without_delay`).
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot turn Nagle's algorithm off");
                }
                let acceptor = TlsAcceptor::from(self.current());
                let connections = connections.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = connections.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(stream)
    }
}

/// A rustls server configuration from the PEM contents of the certificate
/// chain, the private key and, optionally, the client CA certificates.
fn server_config(contents: &[Vec<u8>]) -> Result<rustls::ServerConfig, String> {
    let (cert_pem, key_pem, ca_pem) = match contents {
        [cert, key] => (cert, key, None),
        [cert, key, ca] => (cert, key, Some(ca)),
        _ => return Err("expected a certificate, a key and an optional CA".into()),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the key file: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert = cert.map_err(|e| format!("the client CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the client CA file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the client CA file holds no certificate".into());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("the client CA file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Also checks that the key is the certificate's: a certificate renewed
    // with a new key is taken only once the key file has it too.
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key: {e}"))?;
    // gRPC is HTTP/2; clients such as grpc-go insist on ALPN h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
