//! The single mapping from domain errors to gRPC statuses. Every status carries
//! an `ErrorInfo` (domain `orgs.v1`); INVALID_ARGUMENT carries `BadRequest`
//! naming every bad field; RESOURCE_EXHAUSTED, UNAVAILABLE and ABORTED for a
//! lost race carry `RetryInfo`. Internal
//! causes are logged here and never sent.
//!
//! A status stays small whatever the caller sent: messages and descriptions
//! are cut to a bounded length and `BadRequest` names at most
//! [`MAX_FIELD_VIOLATIONS`] fields (values are quoted with
//! [`crate::domain::quote`] where they are described).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::quote::shorten;
use crate::domain::{Error, Reason};

pub const ERROR_DOMAIN: &str = "orgs.v1";

/// Fields a `BadRequest` names at most; the message lists fewer.
pub const MAX_FIELD_VIOLATIONS: usize = 100;
/// Violations the status message spells out; `BadRequest` has the rest.
const MESSAGE_VIOLATIONS: usize = 5;
/// Characters of a status message, of a field path and of a description.
const MAX_MESSAGE_CHARS: usize = 1024;
const MAX_FIELD_CHARS: usize = 128;
const MAX_DESCRIPTION_CHARS: usize = 256;

fn with_reason(code: Code, reason: Reason, message: String) -> Status {
    Status::with_error_details(
        code,
        shorten(&message, MAX_MESSAGE_CHARS),
        ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new()),
    )
}

/// The `RetryInfo.retry_delay` of an UNAVAILABLE answer: long enough for a
/// database failover or a pool to drain, short enough not to stall callers.
const RETRY_UNAVAILABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// The `RetryInfo.retry_delay` of a change that lost a race (ABORTED): the
/// other change is usually done by then.
const RETRY_CONFLICT_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

fn with_retry(
    code: Code,
    reason: Reason,
    message: String,
    retry_after: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(code, shorten(&message, MAX_MESSAGE_CHARS), details)
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
                for violation in violations.iter().take(MAX_FIELD_VIOLATIONS) {
                    details.add_bad_request_violation(
                        shorten(&violation.field, MAX_FIELD_CHARS),
                        shorten(&violation.description, MAX_DESCRIPTION_CHARS),
                    );
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::InvalidToken(reason, field, message) => {
                let mut details =
                    ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
                let message = shorten(&message, MAX_DESCRIPTION_CHARS);
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
            Error::NotFoundNamed(reason, message, key, value) => Status::with_error_details(
                Code::NotFound,
                shorten(&message, MAX_MESSAGE_CHARS),
                ErrorDetails::with_error_info(
                    reason.as_str(),
                    ERROR_DOMAIN,
                    HashMap::from([(key.to_string(), shorten(&value, MAX_FIELD_CHARS))]),
                ),
            ),
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
                Status::with_error_details(
                    Code::ResourceExhausted,
                    shorten(&message, MAX_MESSAGE_CHARS),
                    details,
                )
            }
            Error::OutOfRange(reason, message) => with_reason(Code::OutOfRange, reason, message),
            Error::Aborted(reason, message) => {
                with_retry(Code::Aborted, reason, message, RETRY_CONFLICT_AFTER)
            }
            Error::Unavailable(reason, message) => {
                with_retry(Code::Unavailable, reason, message, RETRY_UNAVAILABLE_AFTER)
            }
            Error::DeadlineExceeded(message) => {
                with_reason(Code::DeadlineExceeded, Reason::DeadlineExceeded, message)
            }
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
        .take(MESSAGE_VIOLATIONS)
        .map(|v| {
            format!(
                "{} {}",
                shorten(&v.field, MAX_FIELD_CHARS),
                shorten(&v.description, MAX_DESCRIPTION_CHARS)
            )
        })
        .collect();
    let more = violations.len().saturating_sub(MESSAGE_VIOLATIONS);
    let mut message = format!("invalid argument: {}", fields.join("; "));
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldViolation;

    #[test]
    fn a_status_stays_small_whatever_the_input() {
        let huge = "p".repeat(1 << 20);
        let long = "q".repeat(8 * 1024);
        let mut violations: Vec<FieldViolation> = (0..1_000)
            .map(|i| FieldViolation::new(format!("events[{i}].{long}"), long.clone()))
            .collect();
        violations.push(FieldViolation::new(huge.clone(), huge.clone()));
        let status = Status::from(Error::InvalidArgument(violations));
        assert!(
            status.message().len() < 4 * 1024,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with("(and 996 more)"));
        assert!(
            status.details().len() < 64 * 1024,
            "{}",
            status.details().len()
        );
        let status = Status::from(Error::NotFound(Reason::RoleNotFound, huge.clone()));
        assert!(status.message().len() < 4 * 1024);
    }
}
