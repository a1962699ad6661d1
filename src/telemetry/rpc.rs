//! The tower layer around every RPC: a server span with the OpenTelemetry RPC
//! attributes (its parent taken from an incoming W3C `traceparent`), and the
//! per-RPC metrics. It sits outside the auth layer, so refused calls are traced
//! and counted too.
//!
//! The status code comes from the `grpc-status` header when tonic answers at
//! once (errors, trailers-only responses), otherwise from the trailers at the
//! end of the body. A body that ends without trailers counts as OK; a response
//! dropped before its end (the client went away) counts as CANCELLED.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures::future::BoxFuture;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prost::Message;
use tonic::{Code, Status, body::Body};
use tower::Service;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics::{MethodLabels, Metrics, RpcRecord, code_name};
use crate::middleware::Around;

/// The label value and span name of a path that is not a served RPC.
const UNKNOWN: &str = "unknown";

/// The RPC paths the server serves, so metric labels stay bounded.
#[derive(Debug, Default)]
pub struct KnownRpcs {
    paths: HashMap<String, MethodLabels>,
}

impl KnownRpcs {
    /// Every method of every service in the encoded descriptor sets.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> KnownRpcs {
        let mut paths = HashMap::new();
        for encoded in sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
                tracing::warn!(
                    "cannot decode a file descriptor set; its RPCs are counted as unknown"
                );
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = match (package.as_str(), service.name.as_deref()) {
                        (_, None) => continue,
                        ("", Some(name)) => name.to_string(),
                        (package, Some(name)) => format!("{package}.{name}"),
                    };
                    for method in service.method {
                        let Some(method_name) = method.name else {
                            continue;
                        };
                        paths.insert(
                            format!("/{service_name}/{method_name}"),
                            MethodLabels {
                                grpc_service: service_name.clone(),
                                grpc_method: method_name,
                            },
                        );
                    }
                }
            }
        }
        KnownRpcs { paths }
    }

    /// The service and method of a served RPC; `unknown` for any other path,
    /// so callers cannot create label values or span names at will.
    fn labels(&self, path: &str) -> MethodLabels {
        self.paths
            .get(path)
            .cloned()
            .unwrap_or_else(|| MethodLabels {
                grpc_service: UNKNOWN.into(),
                grpc_method: UNKNOWN.into(),
            })
    }
}

#[derive(Clone)]
pub struct RpcLayer {
    metrics: Metrics,
    known: Arc<KnownRpcs>,
}

impl RpcLayer {
    pub fn new(metrics: Metrics, known: KnownRpcs) -> Self {
        RpcLayer {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl Around for RpcLayer {
    fn around<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, S::Error>>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let labels = self.known.labels(request.uri().path());
        let span = rpc_span(&labels, request.headers());
        let call = Call {
            record: Some(self.metrics.rpc_started(labels)),
            span: span.clone(),
        };
        let response = inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let mut call = call;
            let response = response.await;
            match &response {
                Ok(response) => {
                    if let Some(code) = grpc_status(response.headers()) {
                        call.finish(code);
                    } else if response.status() != http::StatusCode::OK {
                        call.finish(code_of_http_status(response.status()));
                    }
                }
                Err(_) => call.finish(Code::Unknown),
            }
            let response = response?;
            if call.record.is_none() {
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(ObservedBody {
                    inner: body,
                    call,
                    span,
                })
            }))
        })
    }
}

/// The server span of one RPC, a child of the caller's span when the request
/// carries a valid `traceparent`. Named `service/method` for served RPCs and
/// `unknown` for any other path: the path is the caller's to choose, and span
/// names must stay few.
pub fn rpc_span(labels: &MethodLabels, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(
        target: "orgs::rpc",
        "rpc",
        otel.name = %SpanName(labels),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %labels.grpc_service,
        rpc.method = %labels.grpc_method,
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed; then there is
        // no trace to join.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// `service/method`, or `unknown`.
struct SpanName<'a>(&'a MethodLabels);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.grpc_service == UNKNOWN {
            f.write_str(UNKNOWN)
        } else {
            write!(f, "{}/{}", self.0.grpc_service, self.0.grpc_method)
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The code in a `grpc-status` header or trailer.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .unwrap_or(Code::Unknown as i32);
    Some(Code::from_i32(code))
}

/// The code a gRPC client derives from an HTTP status without `grpc-status`.
fn code_of_http_status(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Codes that mean the server failed, as the OpenTelemetry RPC conventions
/// mark errors on server spans.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// One RPC until its code is known.
struct Call {
    record: Option<RpcRecord>,
    span: Span,
}

impl Call {
    fn finish(&mut self, code: Code) {
        let Some(record) = self.record.take() else {
            return;
        };
        tracing::debug!(target: "orgs::rpc", parent: &self.span, code = code_name(code), elapsed_ms = record.elapsed().as_millis(), "rpc finished");
        record.finish(code);
        self.span.record("rpc.grpc.status_code", code as i64);
        if is_server_error(code) {
            self.span.record("otel.status_code", "error");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before a code was seen: the client went away.
        self.finish(Code::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for its trailers or its end.
    struct ObservedBody {
        #[pin]
        inner: Body,
        call: Call,
        span: Span,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if http_body::Body::is_end_stream(&*this.inner) {
                // Ended without trailers and nobody polled the end.
                this.call.finish(Code::Ok);
            }
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call
                        .finish(grpc_status(trailers).unwrap_or(Code::Unknown));
                }
            }
            Some(Err(status)) => this.call.finish(status.code()),
            None => this.call.finish(Code::Ok),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
