//! A refused call in words: the service's message, a sentence for its
//! `ErrorInfo` reason, and the fields it names — never a bare code.

use axum::http::StatusCode;
use maud::{Markup, html};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A sentence for each `ErrorInfo` reason an operator may meet. Reasons added
/// later fall back to a general sentence that still names the reason.
pub fn explanation(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "TOKEN_MISSING" => "No token was given. Sign in with a bearer token.",
        "TOKEN_INVALID" => {
            "The token is not valid for this server (signature, issuer, audience or shape)."
        }
        "TOKEN_EXPIRED" => "The token has expired. Sign in again with a fresh token.",
        "PERMISSION_DENIED" => "Your token does not allow this action.",
        "EMAIL_MISMATCH" => "The email address does not match the one the token vouches for.",
        "EMAIL_NOT_VERIFIED" => "The token does not carry a verified email address.",
        "ROLE_ABOVE_CALLER" => "You cannot give a role with permissions your own role lacks.",
        "FIELD_INVALID" => "Some of what was entered is not valid.",
        "PAGE_TOKEN_INVALID" => "The page link is not valid any more. Start from the first page.",
        "CURSOR_INVALID" => "The cursor is not valid.",
        "ORGANIZATION_NOT_FOUND" => "No such organization, or your token may not see it.",
        "MEMBERSHIP_NOT_FOUND" => "That user is not a member of this organization.",
        "ROLE_NOT_FOUND" => "No role has that key.",
        "PERMISSION_NOT_FOUND" => "No permission has that key.",
        "INVITATION_NOT_FOUND" => "No such invitation.",
        "DOMAIN_NOT_FOUND" => "No such domain.",
        "MEMBERSHIP_REQUEST_NOT_FOUND" => "No such membership request.",
        "SLUG_TAKEN" => "Another organization already has that slug.",
        "EXTERNAL_ID_TAKEN" => "Another organization already has that external id.",
        "MEMBERSHIP_EXISTS" => "That user is already a member of this organization.",
        "ROLE_EXISTS" => "A role with that key already exists.",
        "PERMISSION_EXISTS" => "A permission with that key already exists.",
        "INVITATION_EXISTS" => "A pending invitation or a membership already exists.",
        "DOMAIN_EXISTS" => "That domain is already claimed.",
        "MEMBERSHIP_REQUEST_EXISTS" => "A membership request already exists.",
        "ETAG_MISMATCH" => {
            "Someone changed this since the page was loaded. Reload the page and try again."
        }
        "REQUEST_ID_REUSED" => "This form was already sent with other content.",
        "MEMBERSHIP_LIMIT_REACHED" => "The organization has reached its maximum number of members.",
        "LAST_ADMIN" => {
            "This would leave the organization without a member who can manage members."
        }
        "SYSTEM_ROLE" => "Built-in roles cannot be changed or deleted.",
        "ROLE_IN_USE" => "The role is still given to members.",
        "PERMISSION_IN_USE" => "The permission is still part of a role.",
        "INVITATION_EXPIRED" => "The invitation has expired.",
        "INVITATION_REVOKED" => "The invitation was revoked.",
        "INVITATION_ALREADY_ACCEPTED" => "The invitation was already accepted.",
        "DOMAIN_LIMIT_REACHED" => "The organization has reached its maximum number of domains.",
        "CONSUMER_DOMAIN" => "Consumer mail domains cannot belong to an organization.",
        "DOMAIN_ALREADY_VERIFIED" => "The domain is already verified.",
        "VERIFICATION_CODE_EXPIRED" => "The verification code has expired.",
        "VERIFICATION_CODE_INVALID" => "The verification code is wrong.",
        "DOMAIN_NOT_ELIGIBLE" => "The domain does not allow this.",
        "MEMBERSHIP_REQUEST_NOT_PENDING" => "The membership request is no longer pending.",
        "DOMAIN_VERIFICATION_LOCKED" => {
            "Too many failed verification attempts: the domain is locked for a while."
        }
        "DNS_RECORD_NOT_FOUND" => "The DNS TXT record with the expected value was not found.",
        "DNS_CHALLENGE_NOT_PREPARED" => "Prepare the DNS verification first.",
        "VERIFICATION_PREPARE_LIMIT_REACHED" => {
            "Too many verifications were prepared for this domain. Try again later."
        }
        "DNS_RESOLVER_UNAVAILABLE" => "The DNS resolver did not answer. Try again later.",
        "ORGANIZATION_LIMIT_REACHED" => "The user has reached its maximum number of organizations.",
        "ORGANIZATION_DEACTIVATED" => {
            "The organization is deactivated: reactivate it before changing it."
        }
        "BUDGET_EXCEEDED" => "This would take the bill beyond the configured budget.",
        "RATE_LIMITED" => "Too many requests with this token. Wait a moment and try again.",
        "TOO_MANY_WATCHES" => "Too many open watches with this token.",
        "CURSOR_EXPIRED" => "The cursor is older than the events kept.",
        "DATABASE_UNAVAILABLE" => "The database cannot be reached right now. Try again shortly.",
        "SERIALIZATION_FAILURE" => {
            "The change collided with others at the same moment. Nothing was changed: try again."
        }
        "SHUTTING_DOWN" => "The server is shutting down. Try again shortly.",
        "DEADLINE_EXCEEDED" => "The request took too long and was cancelled. Nothing was changed.",
        "INTERNAL" => "The server failed. The cause is in its log.",
        "NOT_IMPLEMENTED" => "The server does not do this.",
        _ => return None,
    })
}

/// What kind of refusal a code is, in words.
fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "Done",
        Code::InvalidArgument | Code::OutOfRange => "Not valid",
        Code::Unauthenticated => "Not signed in",
        Code::PermissionDenied => "Not allowed",
        Code::NotFound => "Not found",
        Code::AlreadyExists => "Already exists",
        Code::FailedPrecondition | Code::Aborted => "Not possible now",
        Code::ResourceExhausted => "Limit reached",
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => "Not available now",
        Code::Unimplemented => "Not supported",
        Code::Unknown | Code::Internal | Code::DataLoss => "Server error",
    }
}

/// The HTTP status of a page that shows a refused call.
pub fn http_status(status: &Status) -> StatusCode {
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The `ErrorInfo` reason of a status, when it has one.
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// A refused call, explained: the kind of refusal, the sentence of its
/// reason, the service's own message, and each bad field.
pub fn refusal(status: &Status) -> Markup {
    let reason = reason(status);
    let sentence = reason.as_deref().and_then(explanation);
    let fields = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations)
        .unwrap_or_default();
    html! {
        div.refusal role="alert" {
            p {
                strong { (code_words(status.code())) ": " }
                @match (sentence, reason.as_deref()) {
                    (Some(sentence), _) => { (sentence) },
                    (None, Some(reason)) => { "The service refused this (" (reason) ")." },
                    (None, None) => { "The service refused this." },
                }
            }
            @if !status.message().is_empty() {
                p.detail { "The service says: " (status.message()) }
            }
            @if !fields.is_empty() {
                ul {
                    @for field in &fields {
                        li { code { (field.field) } ": " (field.description) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Reason;

    #[test]
    fn every_reason_of_the_domain_has_a_sentence() {
        for reason in Reason::ALL {
            assert!(explanation(reason.as_str()).is_some(), "{reason:?}");
        }
    }

    #[test]
    fn a_refusal_names_its_reason_in_words_and_escapes_the_message() {
        let status = Status::from(crate::domain::Error::FailedPrecondition(
            crate::domain::Reason::MembershipLimitReached,
            "<b>full</b>".into(),
        ));
        let html = refusal(&status).into_string();
        assert!(html.contains("maximum number of members"), "{html}");
        assert!(html.contains("&lt;b&gt;full&lt;/b&gt;"), "{html}");
        assert_eq!(http_status(&status), StatusCode::CONFLICT);
    }
}
