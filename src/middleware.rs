//! The one shape of every tower middleware around the gRPC router (metrics
//! and spans, deadlines, draining, rate limits): a step that gets the request
//! and the inner service and returns the response's future. [`AroundLayer`]
//! turns such a step into a layer, so each middleware writes only what it
//! does, not the `Layer`/`Service` plumbing.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tower::{Layer, Service};

/// One middleware step over HTTP requests to the router.
pub trait Around: Clone + Send + Sync + 'static {
    /// Handles `request`, calling `inner` (already polled ready) when the
    /// request goes on.
    fn around<S, B>(
        &self,
        inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, S::Error>>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static;
}

/// The layer that puts an [`Around`] step in front of a service.
#[derive(Clone)]
pub struct AroundLayer<A>(pub A);

impl<A: Around, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            step: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AroundService<A, S> {
    step: A,
    inner: S,
}

impl<A, S, B> Service<http::Request<B>> for AroundService<A, S>
where
    A: Around,
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.step.around(inner, request)
    }
}
