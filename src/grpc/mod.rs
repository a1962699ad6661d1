//! Thin gRPC handlers, one file per service: proto → domain (validation), the
//! policy check, the service call, domain → proto.

pub mod billing;
pub mod convert;
pub mod invitation;
pub mod organization;
pub mod status;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::domain::types::request_id;
use crate::domain::{Actor, Error, FieldViolation, Reason};
use crate::service::{Idempotency, Services};

/// The caller the auth layer verified for this request.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::from(Error::Unauthenticated(Reason::TokenMissing, "no verified caller".into())))
}

/// Decides the RPC's rule for a call about one organization (and, for
/// self-service rules, one user).
pub async fn authorize_in_organization(
    services: &Services,
    caller: &Caller,
    organization_id: &str,
    user_id: Option<&str>,
) -> Result<Actor, Status> {
    let membership = if caller.needs_membership(user_id) {
        services.membership_permissions(organization_id, &caller.principal.sub).await?
    } else {
        None
    };
    Ok(caller.authorize_in_organization(user_id, membership.as_deref())?)
}

/// The idempotency key of a request: its `request_id` and a fingerprint of the
/// whole message, so a reuse with other content is recognised.
pub fn idempotency<M: prost::Message>(message: &M, raw_request_id: &str) -> Result<Option<Idempotency>, FieldViolation> {
    Ok(request_id("request_id", raw_request_id)?.map(|request_id| Idempotency {
        request_id,
        fingerprint: hex::encode(Sha256::digest(message.encode_to_vec())),
    }))
}

/// An optional etag: empty means none.
pub fn etag(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty()).then_some(value)
}
