//! Test harness: a real server on 127.0.0.1:0 over a fresh database (an SQLite
//! file, or a fresh PostgreSQL database when `ORGS_TEST_DATABASE_URL` is set),
//! token helpers and typed clients.
#![allow(dead_code)]

pub mod console;
pub mod raw;

use std::sync::Arc;

use orgs::auth::token::{TokenRequest, mint_hs256};
use orgs::clients::{
    BillingServiceClient, EventServiceClient, InvitationServiceClient, OrganizationServiceClient,
};
use orgs::config::ServeConfig;
use orgs::domain::time::ManualClock;
use orgs::proto::v1 as pb;
use orgs::{App, RunningServer};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<String>);

impl Bearer {
    pub fn new(token: String) -> Self {
        Bearer(Some(token))
    }

    /// No `authorization` header.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("bad token"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

pub type Orgs = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Invitations = InvitationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Billing = BillingServiceClient<InterceptedService<Channel, Bearer>>;
pub type Events = EventServiceClient<InterceptedService<Channel, Bearer>>;

/// Which database the suite runs on.
pub fn backend_url() -> Option<String> {
    std::env::var("ORGS_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A fresh, empty database: a new PostgreSQL database on the server of
/// `ORGS_TEST_DATABASE_URL`, or a new SQLite file.
pub async fn fresh_database_url() -> String {
    let name = format!("orgs_t_{}", ulid::Ulid::new().to_string().to_lowercase());
    match backend_url() {
        Some(base) => {
            let admin = orgs::store::Db::connect(&base, 1)
                .await
                .expect("connect to ORGS_TEST_DATABASE_URL");
            use sea_orm::ConnectionTrait;
            admin
                .conn()
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            admin.close().await;
            let (prefix, _) = base.rsplit_once('/').expect("database url has a path");
            format!("{prefix}/{name}")
        }
        None => {
            let dir = std::env::temp_dir().join("orgs-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("{name}.db")).display()
            )
        }
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: std::net::SocketAddr,
    /// Where the console is served, when configured.
    pub console_addr: Option<std::net::SocketAddr>,
    pub clock: ManualClock,
    pub database_url: String,
    server: Option<RunningServer>,
    channel: Channel,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let url = fresh_database_url().await;
        Self::spawn_on(&url, configure).await
    }

    /// Spawns a server on an existing database (a second replica, say).
    pub async fn spawn_on(url: &str, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let mut config = ServeConfig::for_tests(url, SECRET);
        configure(&mut config);
        let clock = ManualClock::new(chrono::Utc::now());
        let app = App::build(config, Arc::new(clock.clone()))
            .await
            .expect("build app");
        let server = app
            .spawn("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("spawn server");
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        TestApp {
            addr: server.addr,
            metrics_addr: server.metrics_addr,
            console_addr: server.console_addr,
            clock,
            database_url: url.to_string(),
            server: Some(server),
            channel,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn orgs(&self, token: Option<String>) -> Orgs {
        OrganizationServiceClient::with_interceptor(self.channel(), Bearer(token))
    }

    pub fn invitations(&self, token: Option<String>) -> Invitations {
        InvitationServiceClient::with_interceptor(self.channel(), Bearer(token))
    }

    pub fn billing(&self, token: Option<String>) -> Billing {
        BillingServiceClient::with_interceptor(self.channel(), Bearer(token))
    }

    pub fn events(&self, token: Option<String>) -> Events {
        EventServiceClient::with_interceptor(self.channel(), Bearer(token))
    }

    /// A client acting as the end user `sub`.
    pub fn user(&self, sub: &str) -> Orgs {
        self.orgs(Some(token(sub, "")))
    }

    /// A client with the `orgs:admin` scope.
    pub fn admin(&self) -> Orgs {
        self.orgs(Some(token("svc-onboarding", "orgs:admin")))
    }
}

/// A valid token for `sub` with space-separated `scope`.
pub fn token(sub: &str, scope: &str) -> String {
    mint_hs256(
        SECRET,
        &TokenRequest {
            sub: sub.into(),
            scope: Some(scope.into()),
            ttl_seconds: 3600,
            ..Default::default()
        },
    )
    .expect("mint token")
}

/// A token of the end user `sub` whose identity provider vouches for `email`
/// (`email` with `email_verified: true`).
pub fn verified_token(sub: &str, email: &str) -> String {
    mint_hs256(
        SECRET,
        &TokenRequest {
            sub: sub.into(),
            ttl_seconds: 3600,
            email: Some(email.into()),
            email_verified: true,
            ..Default::default()
        },
    )
    .expect("mint token")
}

/// Creates an organization as `orgs:admin` on behalf of `created_by`.
pub async fn create_org(app: &TestApp, name: &str, created_by: Option<&str>) -> pb::Organization {
    app.admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: name.into(),
            created_by: created_by.unwrap_or_default().into(),
            ..Default::default()
        })
        .await
        .expect("create organization")
        .into_inner()
        .organization
        .expect("organization")
}

/// Records activity of `users` now, as `billing:write`.
pub async fn record(app: &TestApp, users: &[impl AsRef<str>]) {
    app.billing(Some(token("svc-activity", "billing:write")))
        .record_activity(pb::RecordActivityRequest {
            events: users
                .iter()
                .map(|user| pb::ActivityEvent {
                    user_id: user.as_ref().to_string(),
                    occur_time: None,
                })
                .collect(),
        })
        .await
        .expect("record activity");
}

/// Adds a member as `orgs:admin`.
pub async fn add_member(
    app: &TestApp,
    organization_id: &str,
    user_id: &str,
    role: &str,
) -> pb::Membership {
    app.admin()
        .create_membership(pb::CreateMembershipRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            role: role.into(),
            ..Default::default()
        })
        .await
        .expect("create membership")
        .into_inner()
        .membership
        .expect("membership")
}

/// The `ErrorInfo.reason` of a status.
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// The fields named by a status's `BadRequest`.
pub fn bad_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts a result failed with `code` and `reason`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected_reason: &str,
) -> Status {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert_eq!(
        reason(&status),
        expected_reason,
        "unexpected reason: {status:?}"
    );
    use tonic_types::StatusExt;
    assert_eq!(
        status
            .get_details_error_info()
            .map(|i| i.domain)
            .unwrap_or_default(),
        "orgs.v1"
    );
    status
}

/// Asserts an INVALID_ARGUMENT naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "unexpected status: {status:?}"
    );
    assert!(
        bad_fields(&status).iter().any(|f| f == field),
        "{field} not named in {status:?}"
    );
}

/// `GET /metrics`: the content type and the body.
pub async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send request");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|value| value.trim().to_string())
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// The value of the series `name` carrying every label of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(key, value)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{key}=\"{value}\""))
                });
            if matches { value.parse().ok() } else { None }
        })
}

/// Every page of `ListEvents` with these filters (`total_size` checked
/// against what the pages held).
pub async fn list_all(
    client: &mut Events,
    organization_id: &str,
    types: &[&str],
    page_size: i32,
) -> Vec<pb::Event> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                organization_id: organization_id.into(),
                types: types.iter().map(|t| t.to_string()).collect(),
                page_size,
                page_token: page_token.clone(),
            })
            .await
            .expect("list events")
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_size as usize, all.len(), "total_size");
            return all;
        }
        page_token = page.next_page_token;
    }
}
