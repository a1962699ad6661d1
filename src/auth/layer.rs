//! The tower layer in front of every service: verifies the bearer token, looks
//! up the RPC's rule, refuses scope-only rules the principal does not meet, and
//! puts the [`Caller`] in the request extensions. Health and reflection pass
//! untouched.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::authorizer::decide_without_organization;
use super::policy::{Caller, Rule, rule_for};
use super::token::{Principal, Verifier};
use crate::domain::{Error, Reason};

/// Paths served without authentication.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        AuthLayer { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

/// The RPC's rule and the request's bearer token, or `None` for paths that
/// are not RPCs of ours (the router answers UNIMPLEMENTED).
fn bearer<B>(request: &http::Request<B>) -> Result<Option<(&'static str, Rule, String)>, Status> {
    let path = request.uri().path();
    let Some((method, rule)) = rule_for(path) else {
        return Ok(None);
    };
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            Status::from(Error::Unauthenticated(
                Reason::TokenMissing,
                "authorization: Bearer <token> is required".into(),
            ))
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Status::from(Error::Unauthenticated(
                Reason::TokenMissing,
                "authorization must be `Bearer <token>`".into(),
            ))
        })?;
    Ok(Some((method, rule, token.to_string())))
}

/// Verifies the token against the rule of its RPC.
async fn authenticate(
    verifier: &Verifier,
    (method, rule, token): (&'static str, Rule, String),
) -> Result<Caller, Status> {
    let principal = verifier.verify(&token).await.map_err(Status::from)?;
    caller_for(principal, method, rule)
}

/// The caller of one RPC as this layer makes it: the verified principal with
/// the RPC's rule, refused at once when the rule asks only for scopes the
/// principal does not hold. The console's in-process calls are made with it,
/// so they meet exactly the checks of a call over gRPC.
pub fn caller_for(
    principal: Principal,
    method: &'static str,
    rule: Rule,
) -> Result<Caller, Status> {
    let caller = Caller {
        principal,
        method,
        rule,
    };
    if let Rule::Scopes(_) = rule {
        decide_without_organization(&caller, None).map_err(Status::from)?;
    }
    Ok(caller)
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_public(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let call = match bearer(&request) {
            Ok(Some(call)) => call,
            Ok(None) => return Box::pin(inner.call(request)),
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match authenticate(&verifier, call).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
