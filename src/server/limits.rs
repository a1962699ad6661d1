//! The tower layer after the auth layer that bounds what one principal takes:
//! a token bucket for its reads and one for its writes (the kind comes from the
//! policy table), and at most `ORGS_WATCHES_PER_PRINCIPAL` open
//! server-streaming calls. Calls without a verified caller (health,
//! reflection, unknown paths) pass untouched.
//!
//! A refused call gets `RESOURCE_EXHAUSTED` with `RetryInfo`: `RATE_LIMITED`
//! with the wait the bucket reports, or `TOO_MANY_WATCHES`. A watch's slot is
//! held by its response body, so it frees when the stream ends however it
//! ends, and handlers know nothing of it.

pub mod rate;
pub mod watches;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use prost::Message;
use tonic::{Status, body::Body, codegen::Bytes};
use tower::Service;

use crate::auth::Caller;
use crate::auth::policy::{CallKind, kind_for};
use crate::config::LimitsConfig;
use crate::domain::{Error, Reason};
use crate::middleware::Around;
use rate::RateLimits;
use watches::{WatchPermit, WatchSlots};

/// How often principals whose buckets are full again are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(10);

/// When a refused watch may try again: slots free only as other streams end.
const WATCH_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The shape of every RPC of the orgs services, from the descriptor set, so a
/// new streaming RPC is limited without naming it anywhere.
#[derive(Debug, Clone, Default)]
pub struct RpcShapes {
    /// RPC path → whether the server streams its response.
    server_streaming: Arc<HashMap<String, bool>>,
}

impl RpcShapes {
    /// Every method of every service in an encoded `FileDescriptorSet`.
    pub fn from_descriptor_set(encoded: &[u8]) -> RpcShapes {
        let mut shapes = HashMap::new();
        match prost_types::FileDescriptorSet::decode(encoded) {
            Ok(set) => {
                for file in &set.file {
                    for service in &file.service {
                        for method in &service.method {
                            let path =
                                format!("/{}.{}/{}", file.package(), service.name(), method.name());
                            shapes.insert(path, method.server_streaming());
                        }
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot decode the descriptor set"),
        }
        RpcShapes {
            server_streaming: Arc::new(shapes),
        }
    }

    /// Whether `path` is an RPC of ours whose server streams its response.
    pub fn is_server_streaming(&self, path: &str) -> bool {
        self.server_streaming.get(path).copied().unwrap_or(false)
    }

    /// Whether `path` is a unary RPC of ours.
    pub fn is_unary(&self, path: &str) -> bool {
        self.server_streaming.get(path) == Some(&false)
    }
}

#[derive(Clone)]
pub struct LimitsLayer {
    rates: Arc<RateLimits>,
    watches: Arc<WatchSlots>,
    shapes: RpcShapes,
}

impl LimitsLayer {
    pub fn new(config: &LimitsConfig, shapes: RpcShapes) -> Self {
        LimitsLayer {
            rates: Arc::new(RateLimits::new(
                config.reads_per_second,
                config.writes_per_second,
            )),
            watches: WatchSlots::new(config.watches_per_principal),
            shapes,
        }
    }

    /// Forgets idle principals every few seconds, so the buckets hold only
    /// recent callers.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let rates = self.rates.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FORGET_IDLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                rates.forget_idle();
            }
        })
    }
}

fn kind_name(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Read => "read",
        CallKind::Write => "write",
    }
}

impl LimitsLayer {
    /// Takes what the call needs (a token, a watch slot) or says why not.
    fn admit(&self, path: &str, caller: &Caller) -> Result<Option<WatchPermit>, Error> {
        let principal = &caller.principal.sub;
        if let Some(kind) = kind_for(path) {
            self.rates.check(kind, principal).map_err(|wait| {
                Error::ResourceExhausted(
                    Reason::RateLimited,
                    format!(
                        "too many {} calls per second from this principal; retry in {} ms",
                        kind_name(kind),
                        wait.as_millis().max(1)
                    ),
                    wait,
                )
            })?;
        }
        if !self.shapes.is_server_streaming(path) {
            return Ok(None);
        }
        self.watches.acquire(principal).map(Some).ok_or_else(|| {
            Error::ResourceExhausted(
                Reason::TooManyWatches,
                "this principal has the most open watches allowed; close one first".into(),
                WATCH_RETRY_AFTER,
            )
        })
    }
}

impl LimitsLayer {
    /// Admits one call that does not pass through this layer (the console's
    /// in-process calls), against the same per-principal buckets.
    pub fn admit_call(&self, path: &str, caller: &Caller) -> Result<(), tonic::Status> {
        self.admit(path, caller)
            .map(drop)
            .map_err(tonic::Status::from)
    }
}

impl Around for LimitsLayer {
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
        let Some(caller) = request.extensions().get::<Caller>() else {
            return Box::pin(inner.call(request));
        };
        let permit = match self.admit(request.uri().path(), caller) {
            Ok(permit) => permit,
            Err(err) => {
                let status = Status::from(err);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match permit {
                Some(permit) => response.map(|body| {
                    Body::new(PermitBody {
                        inner: body,
                        _permit: permit,
                    })
                }),
                None => response,
            })
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds a watch slot until it is dropped.
    struct PermitBody {
        #[pin]
        inner: Body,
        _permit: WatchPermit,
    }
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_rpcs_come_from_the_descriptor_set() {
        let shapes = RpcShapes::from_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET);
        assert!(shapes.is_server_streaming("/orgs.v1.BillingService/WatchBillableOrganizations"));
        assert!(shapes.is_unary("/orgs.v1.BillingService/RecordActivity"));
        assert!(!shapes.is_unary("/grpc.health.v1.Health/Check"));
        assert!(!shapes.is_server_streaming("/grpc.health.v1.Health/Watch"));
    }
}
