//! Server TLS: certificates made in the test by rcgen, a TLS client with the
//! CA, a certificate rotation (new connections see the new certificate, an
//! open connection keeps working), mutual TLS, the plaintext health listener
//! for probes and the plaintext metrics listener.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use orgs::clients::OrganizationServiceClient;
use orgs::proto::v1 as pb;
use orgs::{App, RunningServer, ServeConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const PATIENCE: Duration = Duration::from_secs(20);

/// A certificate authority made for one test.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A certificate and its private key, as PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Authority { params, key, pem }
    }

    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()])
            .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign").pem();
        Issued {
            cert,
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Issued {
        self.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self, name: &str) -> Issued {
        self.issue(name, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A directory of PEM files, as a mounted Secret.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("orgs-tls-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("dir");
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a file whole (a new file renamed over the old one).
    fn put(&self, name: &str, contents: &str) {
        let staged = self.path(&format!(".{name}.new"));
        std::fs::write(&staged, contents).expect("write");
        std::fs::rename(&staged, self.path(name)).expect("rename");
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server speaking TLS with the files in `files`, health on a plaintext
/// listener of its own.
async fn tls_server(files: &Files, client_ca: bool) -> RunningServer {
    let url = fresh_database_url().await;
    let mut config = ServeConfig::for_tests(&url, SECRET);
    config.tls.cert_file = Some(files.path("tls.crt"));
    config.tls.key_file = Some(files.path("tls.key"));
    config.tls.client_ca_file = client_ca.then(|| files.path("ca.crt"));
    config.tls.reload_interval_secs = 1;
    config.health_listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    App::build(config, Arc::new(orgs::domain::time::SystemClock))
        .await
        .expect("build")
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("spawn")
}

/// A TLS channel trusting `ca`, presenting `identity` when given.
async fn connect(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(Identity::from_pem(&identity.cert, &identity.key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// ListRoles as `orgs:read` over `channel`: its code tells whether the call
/// got through.
async fn list_roles(channel: Channel, token: Option<String>) -> Code {
    match OrganizationServiceClient::with_interceptor(
        channel,
        token.map(Bearer::new).unwrap_or_else(Bearer::none),
    )
    .list_roles(pb::ListRolesRequest::default())
    .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn reader_token() -> Option<String> {
    Some(token("svc-reader", "orgs:read"))
}

/// The leaf certificate the server presents to a new connection.
async fn presented_certificate(addr: SocketAddr, cas: &[&str]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca"))
            .expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

#[tokio::test]
async fn a_tls_client_with_the_ca_calls_and_a_plaintext_one_cannot() {
    let authority = Authority::new("orgs test CA");
    let server_cert = authority.server();
    let files = Files::new();
    files.put("tls.crt", &server_cert.cert);
    files.put("tls.key", &server_cert.key);
    let server = tls_server(&files, false).await;

    let channel = connect(server.addr, &authority.pem, None)
        .await
        .expect("TLS connect");
    assert_eq!(list_roles(channel.clone(), reader_token()).await, Code::Ok);
    // TLS does not replace the token.
    assert_eq!(list_roles(channel, None).await, Code::Unauthenticated);

    // A client that does not trust the certificate's CA cannot connect.
    let stranger = Authority::new("another CA");
    assert!(
        connect(server.addr, &stranger.pem, None).await.is_err(),
        "a client not trusting the CA must fail"
    );
    // Nor can a plaintext (h2c) client.
    let plaintext = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(plaintext) = plaintext {
        assert_ne!(list_roles(plaintext, reader_token()).await, Code::Ok);
    }

    // Probes use the plaintext health listener; it serves nothing else.
    let health_addr = server.health_addr.expect("health listener");
    let health = Channel::from_shared(format!("http://{health_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("plaintext health connect");
    let status = tonic_health::pb::health_client::HealthClient::new(health.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(
        list_roles(health, reader_token()).await,
        Code::Unimplemented
    );

    // /metrics stays plaintext HTTP.
    orgs::tls::install_crypto_provider();
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("grpc_server_handled_total"), "{metrics}");

    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_and_open_ones_keep_working() {
    let old_authority = Authority::new("old CA");
    let new_authority = Authority::new("new CA");
    let old_cert = old_authority.server();
    let new_cert = new_authority.server();
    let files = Files::new();
    files.put("tls.crt", &old_cert.cert);
    files.put("tls.key", &old_cert.key);
    let server = tls_server(&files, false).await;

    let open = connect(server.addr, &old_authority.pem, None)
        .await
        .expect("connect before the rotation");
    assert_eq!(list_roles(open.clone(), reader_token()).await, Code::Ok);
    assert_eq!(
        presented_certificate(server.addr, &[&old_authority.pem]).await,
        der_of(&old_cert.cert)
    );

    // As cert-manager renews: the certificate first, the key a moment later.
    // Meanwhile they do not match, and the old pair stays in use.
    files.put("tls.crt", &new_cert.cert);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    files.put("tls.key", &new_cert.key);
    let both = [old_authority.pem.as_str(), new_authority.pem.as_str()];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented_certificate(server.addr, &both).await != der_of(&new_cert.cert) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // New connections get the new certificate: a client trusting only the
    // old CA no longer connects, one trusting the new CA does.
    assert!(
        connect(server.addr, &old_authority.pem, None)
            .await
            .is_err(),
        "a new connection must see the new certificate"
    );
    let fresh = connect(server.addr, &new_authority.pem, None)
        .await
        .expect("connect after the rotation");
    assert_eq!(list_roles(fresh, reader_token()).await, Code::Ok);
    // The connection opened before the rotation still works: had it been
    // re-established, the old CA would have refused the new certificate.
    for _ in 0..3 {
        assert_eq!(list_roles(open.clone(), reader_token()).await, Code::Ok);
    }

    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_connect() {
    let server_authority = Authority::new("server CA");
    let client_authority = Authority::new("client CA");
    let stranger_authority = Authority::new("stranger CA");
    let server_cert = server_authority.server();
    let files = Files::new();
    files.put("tls.crt", &server_cert.cert);
    files.put("tls.key", &server_cert.key);
    files.put("ca.crt", &client_authority.pem);
    let server = tls_server(&files, true).await;

    // With a certificate of the client CA: calls go through, and the token
    // still decides who calls.
    let billing_service = client_authority.client("billing-service");
    let channel = connect(server.addr, &server_authority.pem, Some(&billing_service))
        .await
        .expect("mutual TLS connect");
    assert_eq!(list_roles(channel.clone(), reader_token()).await, Code::Ok);
    assert_eq!(list_roles(channel, None).await, Code::Unauthenticated);

    // Without a certificate, or with one of another CA: refused, at the
    // handshake or at the first call (TLS 1.3 reports it after the
    // handshake), never served.
    let stranger = stranger_authority.client("stranger");
    for (case, identity) in [("no certificate", None), ("another CA", Some(&stranger))] {
        match connect(server.addr, &server_authority.pem, identity).await {
            Err(_) => {}
            Ok(channel) => {
                // A transport error, not an answer of the service.
                let code = list_roles(channel, reader_token()).await;
                assert!(
                    matches!(code, Code::Unavailable | Code::Unknown),
                    "{case}: {code:?}"
                );
            }
        }
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start() {
    let authority = Authority::new("CA");
    let first = authority.server();
    let second = authority.server();
    let files = Files::new();
    files.put("tls.crt", &first.cert);
    files.put("tls.key", &second.key);
    files.put("ca.crt", "not a certificate");
    let url = fresh_database_url().await;
    let build = |configure: &dyn Fn(&mut ServeConfig)| {
        let mut config = ServeConfig::for_tests(&url, SECRET);
        configure(&mut config);
        async move {
            App::build(config, Arc::new(orgs::domain::time::SystemClock))
                .await
                .err()
                .map(|err| format!("{err:#}"))
        }
    };
    let cert = files.path("tls.crt");
    let key = files.path("tls.key");
    let mismatch = build(&|config| {
        config.tls.cert_file = Some(cert.clone());
        config.tls.key_file = Some(key.clone());
    })
    .await
    .expect("a key that is not the certificate's");
    assert!(mismatch.contains("TLS"), "{mismatch}");
    files.put("tls.key", &first.key);
    let ca = files.path("ca.crt");
    let bad_ca = build(&|config| {
        config.tls.cert_file = Some(cert.clone());
        config.tls.key_file = Some(key.clone());
        config.tls.client_ca_file = Some(ca.clone());
    })
    .await
    .expect("a client CA file without a certificate");
    assert!(bad_ca.contains("client CA"), "{bad_ca}");
    let missing: &Path = &files.path("missing.crt");
    let unreadable = build(&|config| {
        config.tls.cert_file = Some(missing.to_path_buf());
        config.tls.key_file = Some(key.clone());
    })
    .await
    .expect("a missing file");
    assert!(unreadable.contains("missing.crt"), "{unreadable}");
    let half = build(&|config| {
        config.tls.cert_file = Some(cert.clone());
    })
    .await
    .expect("a certificate without a key");
    assert!(half.contains("ORGS_TLS_KEY_FILE"), "{half}");
}

/// `url` with `parameters` added to its query.
fn with_query(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

/// Whether this connection to PostgreSQL is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, String> {
    use sea_orm::ConnectionTrait;
    let db = orgs::store::Db::connect(url, 1)
        .await
        .map_err(|e| e.to_string())?;
    let row = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no pg_stat_ssl row")?;
    let ssl: bool = row.try_get("", "ssl").map_err(|e| e.to_string())?;
    db.close().await;
    Ok(ssl)
}

/// Why a server on `database_url` does not start, if it does not.
async fn start_error(database_url: &str) -> Option<String> {
    App::build(
        ServeConfig::for_tests(database_url, SECRET),
        Arc::new(orgs::domain::time::SystemClock),
    )
    .await
    .err()
    .map(|err| format!("{err:#}"))
}

/// `sslmode` and `sslrootcert` in the database URL are honoured (sqlx reads
/// them; its rustls TLS comes with sea-orm's runtime-tokio-rustls). Only
/// PostgreSQL has them; on SQLite there is nothing to check.
#[tokio::test]
async fn postgres_sslmode_and_sslrootcert_are_honoured() {
    if backend_url().is_none() {
        eprintln!("sslmode is PostgreSQL's; set ORGS_TEST_DATABASE_URL to check it");
        return;
    }
    let url = fresh_database_url().await;
    assert_eq!(
        encrypted(&with_query(&url, "sslmode=disable")).await,
        Ok(false),
        "sslmode=disable connects in plaintext"
    );
    let server_has_tls = {
        use sea_orm::ConnectionTrait;
        let db = orgs::store::Db::connect(&url, 1).await.expect("connect");
        let row = db
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(db.backend(), "SHOW ssl"))
            .await
            .expect("show ssl")
            .expect("a row");
        let ssl: String = row.try_get("", "ssl").expect("ssl setting");
        db.close().await;
        ssl == "on"
    };
    let require = with_query(&url, "sslmode=require");
    if server_has_tls {
        assert_eq!(
            encrypted(&require).await,
            Ok(true),
            "sslmode=require connects over TLS"
        );
        // verify-full checks the server's certificate against sslrootcert: a
        // CA that did not sign it is refused.
        let files = Files::new();
        files.put("ca.crt", &Authority::new("not the database's CA").pem);
        let untrusted = with_query(
            &url,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                files.path("ca.crt").display()
            ),
        );
        let err = start_error(&untrusted)
            .await
            .expect("a certificate the root does not sign stops the start");
        assert!(err.contains("cannot connect to the database"), "{err}");
        assert!(err.contains("certificate"), "{err}");
    } else {
        // A server without TLS and sslmode=require: a clear start-up error,
        // never a plaintext connection.
        let err = start_error(&require)
            .await
            .expect("sslmode=require without TLS on the server stops the start");
        assert!(err.contains("cannot connect to the database"), "{err}");
        assert!(err.to_lowercase().contains("tls"), "{err}");
    }
    // Either way a missing root certificate file is an error, not ignored.
    let missing = with_query(
        &url,
        "sslmode=verify-ca&sslrootcert=/nonexistent/orgs-root.crt",
    );
    assert!(encrypted(&missing).await.is_err());
}
