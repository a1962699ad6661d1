//! The single mapping from domain errors to gRPC statuses. Every status carries
//! an `ErrorInfo` (domain `orgs.v1`); INVALID_ARGUMENT carries `BadRequest`
//! naming every bad field; RESOURCE_EXHAUSTED carries `RetryInfo`. Internal
//! causes are logged here and never sent.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Error, Reason};

pub const ERROR_DOMAIN: &str = "orgs.v1";

fn with_reason(code: Code, reason: Reason, message: String) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new()),
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        match err {
            Error::InvalidArgument(violations) => {
                let message = err_message(&violations);
                let mut details = ErrorDetails::with_error_info(
                    Reason::FieldInvalid.as_str(),
                    ERROR_DOMAIN,
                    HashMap::new(),
                );
                for violation in &violations {
                    details.add_bad_request_violation(
                        violation.field.clone(),
                        violation.description.clone(),
                    );
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::InvalidToken(reason, field, message) => {
                let mut details =
                    ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(field, message.clone());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::Unauthenticated(reason, message) => {
                with_reason(Code::Unauthenticated, reason, message)
            }
            Error::PermissionDenied(reason, message) => {
                with_reason(Code::PermissionDenied, reason, message)
            }
            Error::NotFound(reason, message) => with_reason(Code::NotFound, reason, message),
            Error::AlreadyExists(reason, message) => {
                with_reason(Code::AlreadyExists, reason, message)
            }
            Error::EtagMismatch => with_reason(
                Code::Aborted,
                Reason::EtagMismatch,
                Error::EtagMismatch.to_string(),
            ),
            Error::FailedPrecondition(reason, message) => {
                with_reason(Code::FailedPrecondition, reason, message)
            }
            Error::ResourceExhausted(reason, message, retry_after) => {
                let mut details =
                    ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::OutOfRange(reason, message) => with_reason(Code::OutOfRange, reason, message),
            Error::Unavailable(reason, message) => with_reason(Code::Unavailable, reason, message),
            Error::Unimplemented(message) => {
                with_reason(Code::Unimplemented, Reason::NotImplemented, message)
            }
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                with_reason(Code::Internal, Reason::Internal, "internal error".into())
            }
        }
    }
}

fn err_message(violations: &[crate::domain::FieldViolation]) -> String {
    let fields: Vec<String> = violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect();
    format!("invalid argument: {}", fields.join("; "))
}
