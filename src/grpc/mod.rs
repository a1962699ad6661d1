//! Thin gRPC handlers, one folder or file per service. Every handler reads:
//! parse the request into domain values (every bad field named), ask the
//! authorizer, call the use case, convert the answer. Conversions live in
//! [`convert`]; the one mapping of errors to statuses in [`status`].

pub mod billing;
pub mod codec;
pub mod convert;
pub mod events;
pub mod invitation;
pub mod organization;
pub mod status;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::domain::types::request_id;
use crate::domain::{Error, FieldViolation, Reason};
use crate::service::Idempotency;

/// The caller the auth layer verified for this request.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            Status::from(Error::Unauthenticated(
                Reason::TokenMissing,
                "no verified caller".into(),
            ))
        })
}

/// The idempotency key of a request: its `request_id` and a fingerprint of the
/// whole message, so a reuse with other content is recognised.
pub fn idempotency<M: prost::Message>(
    message: &M,
    raw_request_id: &str,
) -> Result<Option<Idempotency>, FieldViolation> {
    Ok(
        request_id("request_id", raw_request_id)?.map(|request_id| Idempotency {
            request_id,
            fingerprint: hex::encode(Sha256::digest(message.encode_to_vec())),
        }),
    )
}

/// A parsed command with the idempotency key of its request: every bad field
/// of either named in one error.
pub fn with_key<T>(
    command: Result<T, Error>,
    key: Result<Option<Idempotency>, FieldViolation>,
) -> Result<(T, Option<Idempotency>), Error> {
    match (command, key) {
        (Ok(command), Ok(key)) => Ok((command, key)),
        (Err(Error::InvalidArgument(mut violations)), Err(violation)) => {
            violations.push(violation);
            Err(Error::InvalidArgument(violations))
        }
        (Err(err), _) => Err(err),
        (Ok(_), Err(violation)) => Err(Error::InvalidArgument(vec![violation])),
    }
}

/// An optional etag: empty means none.
pub fn etag(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}
