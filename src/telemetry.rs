//! Telemetry: the tracing subscriber (text or JSON logs), OpenTelemetry traces
//! exported over OTLP/gRPC, and the Prometheus metrics ([`metrics`]) with the
//! tower layer that feeds both for every RPC ([`rpc`]).
//!
//! Spans get OpenTelemetry trace ids whether or not an exporter is configured,
//! so logs of a call carry its `trace_id` (the caller's, when it sent a
//! `traceparent`) even where nothing collects traces.

pub mod metrics;
pub mod rpc;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::Targets,
    fmt::{
        self, FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
        writer::BoxMakeWriter,
    },
    layer::Context,
    prelude::*,
    registry::LookupSpan,
};

use crate::config::LogFormat;

const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

/// How long the last spans may take to leave on shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    pub log_format: LogFormat,
    /// Which logs to write, in `RUST_LOG` syntax.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`; `None` exports
    /// no traces.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl TelemetryOptions {
    /// Reads `RUST_LOG` (default `info,sqlx=warn`) and the standard
    /// OpenTelemetry variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` (default `orgs`), and
    /// `OTEL_SDK_DISABLED=true` to export nothing.
    pub fn from_env(log_format: LogFormat) -> TelemetryOptions {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let disabled =
            var("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let otlp_endpoint = if disabled {
            None
        } else {
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        TelemetryOptions {
            log_format,
            log_filter: var("RUST_LOG").unwrap_or_else(|| DEFAULT_LOG_FILTER.into()),
            otlp_endpoint,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "orgs".into()),
        }
    }
}

/// Keeps the tracer provider; [`TelemetryGuard::shutdown`] sends the spans
/// still buffered.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports the buffered spans now.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let flushed = tokio::time::timeout(
            FLUSH_TIMEOUT,
            tokio::task::spawn_blocking(move || provider.force_flush()),
        )
        .await;
        if !matches!(flushed, Ok(Ok(Ok(())))) {
            tracing::warn!("could not export every span");
        }
    }

    /// Exports the buffered spans and stops the exporter, waiting at most a
    /// few seconds for an unreachable collector.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let stopped = tokio::time::timeout(
            FLUSH_TIMEOUT,
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT)),
        )
        .await;
        if !matches!(stopped, Ok(Ok(Ok(())))) {
            tracing::warn!("could not export every span before exit");
        }
    }
}

/// Installs the global subscriber, writing logs to stdout.
pub fn init(options: TelemetryOptions) -> anyhow::Result<TelemetryGuard> {
    init_with_writer(options, BoxMakeWriter::new(std::io::stdout))
}

/// [`init`] with logs going to `writer`.
pub fn init_with_writer(
    options: TelemetryOptions,
    writer: BoxMakeWriter,
) -> anyhow::Result<TelemetryGuard> {
    let resource = Resource::builder()
        .with_service_name(options.service_name.clone())
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &options.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot export traces to {endpoint}: {e}"))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();

    let log_filter = EnvFilter::try_new(&options.log_filter).unwrap_or_else(|err| {
        eprintln!(
            "orgs: ignoring the log filter {:?}: {err}",
            options.log_filter
        );
        EnvFilter::new(DEFAULT_LOG_FILTER)
    });
    let logs = match options.log_format {
        LogFormat::Json => fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTraceId(
                fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            ))
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => fmt::layer().with_target(false).with_writer(writer).boxed(),
    };
    // Traces hold this crate's spans and events whatever RUST_LOG says about logs.
    let traced = Targets::new().with_target("orgs", Level::INFO);
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("orgs"))
        .with_filter(traced.clone());
    let result = tracing_subscriber::registry()
        .with(logs.with_filter(log_filter))
        .with(traces)
        .with(TraceIdLayer.with_filter(traced))
        .try_init();
    if result.is_err() {
        tracing::debug!("a tracing subscriber was installed already");
    }
    if let Some(endpoint) = &options.otlp_endpoint {
        tracing::info!(endpoint = %endpoint, service_name = %options.service_name, "exporting traces over OTLP/gRPC");
    }
    Ok(TelemetryGuard { provider })
}

/// The trace id a span recorded in its `trace_id` field, kept in the span's
/// extensions for the JSON log format.
struct TraceId(String);

/// Remembers `trace_id` fields of spans.
struct TraceIdLayer;

impl<S> Layer<S> for TraceIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(trace_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }
}

struct TraceIdVisitor(Option<String>);

impl tracing::field::Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The JSON event format with the `trace_id` of the enclosing RPC as a
/// top-level field, where log collectors look for it.
struct JsonWithTraceId(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let trace_id = ctx.event_scope().and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<TraceId>().map(|id| id.0.clone()))
        });
        match (trace_id, line.strip_prefix('{')) {
            (Some(trace_id), Some(rest)) => {
                // Trace ids are lowercase hex: nothing to escape.
                write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}")
            }
            _ => writer.write_str(&line),
        }
    }
}
