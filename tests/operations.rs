//! Operations: Prometheus metrics, OpenTelemetry traces and logs.

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
use orgs::config::LogFormat;
use orgs::proto::v1 as pb;
use orgs::telemetry::metrics::Metrics;
use orgs::telemetry::{TelemetryOptions, init_with_writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Generous bound for anything that should take a moment.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- metrics

/// `GET /metrics`: the content type and the body.
async fn scrape(addr: SocketAddr) -> (String, String) {
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
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

    let span = tokio::time::timeout(PATIENCE, async {
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
    .expect("the span reaches the receiver");
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

    app.shutdown().await;
    telemetry.shutdown().await;
}
