//! Operations: Prometheus metrics, OpenTelemetry traces and logs, graceful
//! shutdown (in process and of a real `orgs serve` process on SIGTERM).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use orgs::clients::OrganizationServiceClient;
use orgs::config::LogFormat;
use orgs::proto::v1 as pb;
use orgs::telemetry::metrics::Metrics;
use orgs::telemetry::{TelemetryOptions, init_with_writer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse,
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
};

/// Generous bound for anything that should take a moment.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- metrics

fn rpc<'a>(service: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("grpc_service", service), ("grpc_method", method)]
}

const ORGANIZATIONS: &str = "orgs.v1.OrganizationService";

#[tokio::test]
async fn metrics_count_calls_by_method_and_code_with_latency_in_flight_and_database_pool() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Metrics Inc", Some("user_metrics")).await;
    let get = |id: &str| pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            id.into(),
        )),
    };
    app.admin()
        .get_organization(get(&organization.id))
        .await
        .expect("get organization");
    let missing = app
        .admin()
        .get_organization(get("org_01jzzzzzzzzzzzzzzzzzzzzzzz"))
        .await;
    assert_eq!(missing.expect_err("missing").code(), Code::NotFound);
    let refused = app.orgs(None).get_organization(get(&organization.id)).await;
    assert_eq!(refused.expect_err("no token").code(), Code::Unauthenticated);
    HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");

    let (content_type, text) = scrape(app.metrics_addr).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let handled = |method: &str, code: &str| {
        let mut labels = rpc(ORGANIZATIONS, method);
        labels.push(("grpc_code", code));
        sample(&text, "grpc_server_handled_total", &labels)
    };
    assert_eq!(handled("CreateOrganization", "OK"), Some(1.0), "{text}");
    assert_eq!(handled("GetOrganization", "OK"), Some(1.0), "{text}");
    assert_eq!(handled("GetOrganization", "NOT_FOUND"), Some(1.0), "{text}");
    assert_eq!(
        handled("GetOrganization", "UNAUTHENTICATED"),
        Some(1.0),
        "refused calls are counted too: {text}"
    );
    let health = [
        ("grpc_service", "grpc.health.v1.Health"),
        ("grpc_method", "Check"),
        ("grpc_code", "OK"),
    ];
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &health),
        Some(1.0),
        "{text}"
    );

    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_count",
            &rpc(ORGANIZATIONS, "GetOrganization")
        ),
        Some(3.0),
        "{text}"
    );
    let mut slowest_bucket = rpc(ORGANIZATIONS, "CreateOrganization");
    slowest_bucket.push(("le", "+Inf"));
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_bucket",
            &slowest_bucket
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_in_flight_requests",
            &rpc(ORGANIZATIONS, "GetOrganization")
        ),
        Some(0.0),
        "{text}"
    );

    assert_eq!(
        sample(&text, "orgs_db_pool_max_connections", &[]),
        Some(10.0),
        "{text}"
    );
    let idle =
        sample(&text, "orgs_db_pool_connections", &[("state", "idle")]).expect("idle connections");
    let in_use = sample(&text, "orgs_db_pool_connections", &[("state", "in_use")])
        .expect("connections in use");
    assert!(idle + in_use >= 1.0 && idle + in_use <= 10.0, "{text}");
    assert_eq!(
        sample(&text, "orgs_watch_streams_open", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_billable_organizations", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_charged_organizations", &[]),
        Some(0.0),
        "{text}"
    );
    app.shutdown().await;
}

/// By default the pool is of fixed size: it opens its connections as the
/// server starts, before any call needs them, so that the first burst of
/// calls does not wait for new database sessions.
#[tokio::test]
async fn the_database_pool_opens_its_connections_before_the_first_call() {
    let app = TestApp::spawn_with(|config| {
        config.database.max_connections = 12;
        config.database.min_connections = None;
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = scrape(app.metrics_addr).await;
        let open: f64 = ["idle", "in_use"]
            .iter()
            .filter_map(|state| sample(&text, "orgs_db_pool_connections", &[("state", state)]))
            .sum();
        if open >= 12.0 {
            assert_eq!(open, 12.0, "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool opened {open} of its 12 connections without calls: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn watch_stream_guards_and_billing_gauges_show_in_the_scrape() {
    let metrics = Metrics::new();
    let first = metrics.watch_stream_opened();
    let second = metrics.watch_stream_opened();
    metrics.set_billing_period(120, 20);
    let text = metrics.scrape().await;
    assert_eq!(
        sample(&text, "orgs_watch_streams_open", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_billable_organizations", &[]),
        Some(120.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_charged_organizations", &[]),
        Some(20.0),
        "{text}"
    );

    drop(first);
    let text = metrics.scrape().await;
    assert_eq!(
        sample(&text, "orgs_watch_streams_open", &[]),
        Some(1.0),
        "{text}"
    );
    drop(second);

    let hooked = metrics.clone();
    metrics.on_scrape(move || {
        let metrics = hooked.clone();
        Box::pin(async move { metrics.set_billing_period(7, 0) })
    });
    let text = metrics.scrape().await;
    assert_eq!(
        sample(&text, "orgs_watch_streams_open", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_billable_organizations", &[]),
        Some(7.0),
        "a scrape hook runs first: {text}"
    );
    assert_eq!(
        sample(&text, "orgs_billing_charged_organizations", &[]),
        Some(0.0),
        "{text}"
    );
}

// ---------------------------------------------------------------- traces and logs

/// Collects the spans exported to it.
#[derive(Clone, Default)]
struct OtlpReceiver {
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        for resource_spans in request.into_inner().resource_spans {
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC trace receiver on 127.0.0.1:0.
async fn start_otlp_receiver() -> (String, OtlpReceiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let endpoint = format!("http://{}", listener.local_addr().expect("receiver addr"));
    let receiver = OtlpReceiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (endpoint, receiver)
}

/// Log lines, written by the subscriber and read by the test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|value| value.value)
}

// The only test of this binary that installs the global subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_traceparent_is_exported_under_that_trace_and_logged_with_its_trace_id() {
    let (endpoint, receiver) = start_otlp_receiver().await;
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let telemetry = init_with_writer(
        TelemetryOptions {
            log_format: LogFormat::Json,
            log_filter: "info,orgs::rpc=debug".into(),
            otlp_endpoint: Some(endpoint),
            service_name: "orgs-test".into(),
        },
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || writer.clone()),
    )
    .expect("telemetry");
    let app = TestApp::spawn().await;

    let trace_id = format!("{:032x}", ulid::Ulid::new().0);
    let parent_span_id = "00f067aa0ba902b7";
    let mut request = Request::new(pb::CreateOrganizationRequest {
        name: "Traced Inc".into(),
        created_by: "user_t".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span_id}-01")
            .parse()
            .expect("traceparent"),
    );
    app.admin()
        .create_organization(request)
        .await
        .expect("create organization");
    telemetry.flush().await;

    let span = exported_span(&receiver, &trace_id).await;
    assert_eq!(span.name, "orgs.v1.OrganizationService/CreateOrganization");
    assert_eq!(
        hex::encode(&span.parent_span_id),
        parent_span_id,
        "the caller's span is the parent"
    );
    assert_eq!(
        span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    assert_eq!(
        attribute(&span, "rpc.system"),
        Some(AnyValue::StringValue("grpc".into()))
    );
    assert_eq!(
        attribute(&span, "rpc.service"),
        Some(AnyValue::StringValue(ORGANIZATIONS.into()))
    );
    assert_eq!(
        attribute(&span, "rpc.method"),
        Some(AnyValue::StringValue("CreateOrganization".into()))
    );
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(0))
    );

    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8 logs");
    let line = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["trace_id"] == trace_id.as_str())
        .unwrap_or_else(|| panic!("no log line with trace_id {trace_id} in:\n{text}"));
    assert_eq!(line["message"], "rpc finished", "{line}");
    assert_eq!(line["code"], "OK", "{line}");

    // A path that is not a served RPC, chosen by the caller, gets the one
    // fixed span name, as it gets the `unknown` metric labels.
    let unknown_trace_id = format!("{:032x}", ulid::Ulid::new().0);
    let mut grpc = tonic::client::Grpc::new(app.channel());
    grpc.ready().await.expect("ready");
    let mut request = Request::new(());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{unknown_trace_id}-{parent_span_id}-01")
            .parse()
            .expect("traceparent"),
    );
    let path = format!("/orgs.v1.OrganizationService/Made{}", ulid::Ulid::new());
    let status = grpc
        .unary(
            request,
            path.parse::<http::uri::PathAndQuery>().expect("path"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("not an RPC");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    telemetry.flush().await;
    let span = exported_span(&receiver, &unknown_trace_id).await;
    assert_eq!(span.name, "unknown");
    assert_eq!(
        attribute(&span, "rpc.service"),
        Some(AnyValue::StringValue("unknown".into()))
    );
    assert_eq!(
        attribute(&span, "rpc.method"),
        Some(AnyValue::StringValue("unknown".into()))
    );

    app.shutdown().await;
    telemetry.shutdown().await;
}

/// The span of `trace_id` once it reaches the receiver.
async fn exported_span(
    receiver: &OtlpReceiver,
    trace_id: &str,
) -> opentelemetry_proto::tonic::trace::v1::Span {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let found = receiver
                .spans
                .lock()
                .expect("spans")
                .iter()
                .find(|span| hex::encode(&span.trace_id) == trace_id)
                .cloned();
            if let Some(span) = found {
                return span;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the span reaches the receiver")
}

// ---------------------------------------------------------------- shutdown

async fn health_watch(channel: Channel) -> Streaming<HealthCheckResponse> {
    HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health watch")
        .into_inner()
}

async fn next_status(watch: &mut Streaming<HealthCheckResponse>) -> ServingStatus {
    let message = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("a health update in time");
    let response = message
        .expect("health update")
        .expect("an update, not the end");
    ServingStatus::try_from(response.status).expect("a known status")
}

/// A reflection stream: a call that stays in flight for as long as the client
/// keeps sending.
struct Reflection {
    requests: mpsc::Sender<ServerReflectionRequest>,
    responses: Streaming<ServerReflectionResponse>,
}

impl Reflection {
    async fn open(channel: Channel) -> Reflection {
        let (requests, receiver) = mpsc::channel(4);
        let mut call = ServerReflectionClient::new(channel);
        let responses = call.server_reflection_info(ReceiverStream::new(receiver));
        requests.send(list_services()).await.expect("first request");
        let mut reflection = Reflection {
            requests,
            responses: responses.await.expect("reflection").into_inner(),
        };
        reflection.answer().await.expect("first answer");
        reflection
    }

    /// Asks for the services and waits for the answer.
    async fn ask(&mut self) -> Result<(), Status> {
        self.requests
            .send(list_services())
            .await
            .map_err(|_| Status::internal("request stream closed"))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<(), Status> {
        let answer = tokio::time::timeout(PATIENCE, self.responses.message())
            .await
            .expect("an answer in time")?;
        assert!(answer.is_some(), "the stream ended instead of answering");
        Ok(())
    }

    /// Waits for the server to end the stream; its final status.
    async fn end(mut self) -> Result<(), Status> {
        let ended = tokio::time::timeout(PATIENCE, async {
            loop {
                if self.responses.message().await?.is_none() {
                    return Ok(());
                }
            }
        });
        ended.await.expect("the stream ends in time")
    }
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

fn assert_shutting_down<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
}

#[tokio::test]
async fn shutdown_ends_health_watches_refuses_new_calls_and_cuts_calls_after_the_grace_period() {
    let app = TestApp::spawn_with(|config| config.shutdown_grace_period_secs = 1).await;
    let channel = app.channel();
    let mut watch = health_watch(channel.clone()).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let mut in_flight = Reflection::open(channel.clone()).await;
    let orgs = app.admin();

    let stopping = tokio::spawn(app.shutdown());
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    let ended = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the health watch ends");
    let status = ended.expect_err("the health watch ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "SHUTTING_DOWN");

    let mut orgs_after = orgs.clone();
    assert_shutting_down(
        orgs_after
            .create_organization(pb::CreateOrganizationRequest {
                name: "Late Inc".into(),
                ..Default::default()
            })
            .await,
        "a call after shutdown started",
    );
    // The call in flight still gets answers during the grace period, then is cut.
    in_flight
        .ask()
        .await
        .expect("an answer during the grace period");
    let cut = in_flight
        .end()
        .await
        .expect_err("cut after the grace period");
    assert_eq!(cut.code(), Code::Unavailable, "{cut:?}");
    assert_eq!(reason(&cut), "SHUTTING_DOWN");

    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}

/// A running `orgs serve` process and its log lines.
struct ServeProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl ServeProcess {
    async fn start(grace_period_secs: u64) -> ServeProcess {
        Self::start_on(&fresh_database_url().await, grace_period_secs).await
    }

    async fn start_on(database_url: &str, grace_period_secs: u64) -> ServeProcess {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"))
            .arg("serve")
            .env("ORGS_DATABASE_URL", database_url)
            .env("ORGS_AUTH_HS256_SECRET", SECRET)
            .env("ORGS_LISTEN_ADDR", "127.0.0.1:0")
            .env("ORGS_METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("ORGS_SHUTDOWN_GRACE_PERIOD", grace_period_secs.to_string())
            .env("ORGS_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start orgs serve");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addresses, mut listening) = mpsc::unbounded_channel::<(String, SocketAddr)>();
        let collected = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let (Some(message), Some(addr)) = (
                    entry["message"].as_str(),
                    entry["addr"].as_str().and_then(|a| a.parse().ok()),
                ) {
                    let _ = addresses.send((message.to_string(), addr));
                }
                collected.lock().expect("logs").push(entry);
            }
        });
        let (mut addr, mut metrics_addr) = (None, None);
        while addr.is_none() || metrics_addr.is_none() {
            let (message, bound) = tokio::time::timeout(PATIENCE, listening.recv())
                .await
                .expect("orgs serve listens in time")
                .expect("orgs serve logs where it listens");
            match message.as_str() {
                "serving gRPC" => addr = Some(bound),
                "serving metrics" => metrics_addr = Some(bound),
                _ => {}
            }
        }
        ServeProcess {
            child,
            addr: addr.expect("grpc"),
            metrics_addr: metrics_addr.expect("metrics"),
            logs,
        }
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
    }

    /// Whether `message` was logged, giving the log reader time to catch up
    /// with what the process wrote before it exited.
    async fn eventually_logged(&self, message: &str) -> bool {
        for _ in 0..100 {
            if self.logged(message) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn logged(&self, message: &str) -> bool {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .any(|entry| entry["message"] == message)
    }
}

#[tokio::test]
async fn sigterm_drains_a_real_server_and_exits_zero() {
    let grace_period = Duration::from_secs(3);
    let mut server = ServeProcess::start(grace_period.as_secs()).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut orgs = OrganizationServiceClient::new(channel.clone());
    let authorized = |message: pb::CreateOrganizationRequest| {
        let mut request = Request::new(message);
        let bearer = format!("Bearer {}", token("svc-onboarding", "orgs:admin"));
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().expect("header"));
        request
    };
    orgs.create_organization(authorized(pb::CreateOrganizationRequest {
        name: "Before Inc".into(),
        ..Default::default()
    }))
    .await
    .expect("a call before SIGTERM");
    let (_, metrics) = scrape(server.metrics_addr).await;
    assert!(metrics.contains("grpc_server_handled_total"), "{metrics}");

    let mut watch = health_watch(channel.clone()).await;
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let mut finishing = Reflection::open(channel.clone()).await;
    let outliving = Reflection::open(channel.clone()).await;

    server.terminate();
    assert_eq!(
        next_status(&mut watch).await,
        ServingStatus::NotServing,
        "health goes NOT_SERVING"
    );
    let ended = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the health watch ends");
    assert_eq!(
        ended
            .expect_err("the health watch ends with a status")
            .code(),
        Code::Unavailable
    );

    assert_shutting_down(
        orgs.create_organization(authorized(pb::CreateOrganizationRequest {
            name: "Late Inc".into(),
            ..Default::default()
        }))
        .await,
        "a new call on an open connection",
    );
    let fresh = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect_lazy();
    assert_shutting_down(
        OrganizationServiceClient::new(fresh)
            .create_organization(authorized(pb::CreateOrganizationRequest {
                name: "Later Inc".into(),
                ..Default::default()
            }))
            .await,
        "a call on a new connection",
    );

    // A call in flight finishes normally during the grace period...
    finishing.ask().await.expect("an answer after SIGTERM");
    drop(finishing.requests);
    let finished = tokio::time::timeout(PATIENCE, finishing.responses.message())
        .await
        .expect("the call ends in time");
    assert!(
        matches!(finished, Ok(None)),
        "the call ends with OK: {finished:?}"
    );
    // ...and one that outlives it is cut with UNAVAILABLE.
    let cut = outliving
        .end()
        .await
        .expect_err("cut after the grace period");
    assert_eq!(cut.code(), Code::Unavailable, "{cut:?}");

    let exit = tokio::time::timeout(PATIENCE, server.child.wait())
        .await
        .expect("the process exits in time")
        .expect("exit status");
    assert!(exit.success(), "orgs serve exits 0 after SIGTERM: {exit:?}");
    assert!(server.eventually_logged("shutting down").await);
    assert!(
        server
            .eventually_logged("grace period over; cutting the calls still running")
            .await
    );
    assert!(server.eventually_logged("stopped").await);
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_write() {
    use orgs::proto::v1 as pb;
    let url = fresh_database_url().await;
    let server = ServeProcess::start_on(&url, 5).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let admin = orgs::clients::OrganizationServiceClient::with_interceptor(
        channel,
        Bearer::new(token("svc", "orgs:admin")),
    );
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut client = admin.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_organization(pb::CreateOrganizationRequest {
                    name: format!("Durable {i}"),
                    created_by: format!("user_{i}"),
                    request_id: format!("durable-{i}"),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().organization.expect("organization").id)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.push(task.await.expect("task").expect("acknowledged"));
    }
    // No shutdown: the process is killed outright.
    let mut child = server.child;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");

    let restarted = ServeProcess::start_on(&url, 5).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", restarted.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut admin = orgs::clients::OrganizationServiceClient::with_interceptor(
        channel,
        Bearer::new(token("svc", "orgs:admin")),
    );
    let listed = admin
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total_size, 40);
    for id in &acknowledged {
        assert!(
            listed
                .organizations
                .iter()
                .any(|o| &o.id == id && o.members_count == 1),
            "{id} was lost"
        );
    }
    // The idempotency records survived too: a retry gets the first answer.
    let retried = admin
        .create_organization(pb::CreateOrganizationRequest {
            name: "Durable 7".into(),
            created_by: "user_7".into(),
            request_id: "durable-7".into(),
            ..Default::default()
        })
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        &retried.organization.expect("organization").id,
        &acknowledged[7]
    );
}
