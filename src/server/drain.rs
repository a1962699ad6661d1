//! The tower layer that drains the server on shutdown. Once shutdown starts,
//! new calls get `UNAVAILABLE` `SHUTTING_DOWN` (health checks still answer, with
//! NOT_SERVING) and health `Watch` streams end with `UNAVAILABLE` after their
//! last update. Calls already running go on until the grace period is over;
//! then they are cut: a call still waiting for its response gets
//! `UNAVAILABLE`, a response still streaming ends with `UNAVAILABLE` trailers.
//!
//! [`InFlight`] tells the server when no call is running any more, so it closes
//! the connections (HTTP/2 GOAWAY) only then: until that moment every new call
//! gets a clear `UNAVAILABLE` rather than a connection closing under it.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures::future::{BoxFuture, FutureExt, Shared};
use http::HeaderMap;
use tokio::sync::{Notify, watch};
use tonic::{Status, body::Body, codegen::Bytes};
use tower::Service;

use crate::domain::{Error, Reason};
use crate::middleware::Around;

/// Completes once a `watch` flag turns true; never if its sender goes away
/// without that.
type Trigger = Shared<BoxFuture<'static, ()>>;

fn trigger(mut flag: watch::Receiver<bool>) -> Trigger {
    async move {
        if flag.wait_for(|raised| *raised).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    .boxed()
    .shared()
}

/// Health checks keep answering during shutdown: they report NOT_SERVING.
fn is_health(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

fn shutting_down(message: &str) -> Status {
    Status::from(Error::Unavailable(Reason::ShuttingDown, message.into()))
}

/// The number of calls running.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: AtomicUsize,
    changed: Notify,
}

impl InFlight {
    fn start(self: &Arc<Self>) -> InFlightCall {
        self.calls.fetch_add(1, Ordering::SeqCst);
        InFlightCall(self.clone())
    }

    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Completes when no call is running.
    pub async fn drained(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// One running call; dropped with its response body (or with the response
/// future, if the client goes away first).
struct InFlightCall(Arc<InFlight>);

impl Drop for InFlightCall {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

#[derive(Clone)]
pub struct DrainLayer {
    shutdown: watch::Receiver<bool>,
    shutdown_started: Trigger,
    grace_over: Trigger,
    in_flight: Arc<InFlight>,
}

impl DrainLayer {
    /// `shutdown` turns true when shutdown starts, `cut` when the grace period
    /// is over.
    pub fn new(shutdown: watch::Receiver<bool>, cut: watch::Receiver<bool>) -> Self {
        DrainLayer {
            shutdown_started: trigger(shutdown.clone()),
            shutdown,
            grace_over: trigger(cut),
            in_flight: Arc::default(),
        }
    }

    /// The calls this layer lets through and that have not ended yet.
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }
}

impl Around for DrainLayer {
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
        let path = request.uri().path();
        if *self.shutdown.borrow() && !is_health(path) {
            let status = shutting_down("the server is shutting down; retry on another replica");
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // A health watch never ends by itself; it ends when shutdown starts,
        // other calls when the grace period is over.
        let end_stream = if path == "/grpc.health.v1.Health/Watch" {
            self.shutdown_started.clone()
        } else {
            self.grace_over.clone()
        };
        let grace_over = self.grace_over.clone();
        let call = self.in_flight.start();
        let response = inner.call(request);
        Box::pin(async move {
            tokio::select! {
                biased;
                response = response => {
                    Ok(response?.map(|body| Body::new(DrainBody { inner: body, end: end_stream, ended: false, _call: call })))
                }
                _ = grace_over => Ok(shutting_down("the server shut down before the call finished").into_http()),
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends with `UNAVAILABLE` trailers once `end`
    /// completes, after passing on whatever the service has ready.
    struct DrainBody {
        #[pin]
        inner: Body,
        end: Trigger,
        ended: bool,
        _call: InFlightCall,
    }
}

impl http_body::Body for DrainBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.end.poll_unpin(cx) {
            Poll::Ready(()) => {
                *this.ended = true;
                let mut trailers = HeaderMap::new();
                let status =
                    shutting_down("the server is shutting down; resume on another replica");
                if status.add_header(&mut trailers).is_err() {
                    trailers.insert(
                        "grpc-status",
                        http::HeaderValue::from(tonic::Code::Unavailable as i32),
                    );
                }
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.ended {
            http_body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}
