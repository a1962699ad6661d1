//! The one error type of the domain, with the reasons the proto enum documents.

use std::time::Duration;

/// The `reason` of the `ErrorInfo` sent with an error: the `ErrorReason` value
/// names of `common.proto` without their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    PermissionDenied,
    EmailMismatch,
    EmailNotVerified,
    RoleAboveCaller,
    FieldInvalid,
    PageTokenInvalid,
    CursorInvalid,
    OrganizationNotFound,
    MembershipNotFound,
    RoleNotFound,
    PermissionNotFound,
    InvitationNotFound,
    DomainNotFound,
    MembershipRequestNotFound,
    SlugTaken,
    MembershipExists,
    RoleExists,
    PermissionExists,
    InvitationExists,
    DomainExists,
    MembershipRequestExists,
    ExternalIdTaken,
    EtagMismatch,
    SerializationFailure,
    RequestIdReused,
    MembershipLimitReached,
    LastAdmin,
    SystemRole,
    RoleInUse,
    PermissionInUse,
    InvitationExpired,
    InvitationRevoked,
    InvitationAlreadyAccepted,
    DomainLimitReached,
    ConsumerDomain,
    DomainAlreadyVerified,
    VerificationCodeExpired,
    VerificationCodeInvalid,
    DomainNotEligible,
    MembershipRequestNotPending,
    DomainVerificationLocked,
    DnsRecordNotFound,
    DnsChallengeNotPrepared,
    OrganizationDeactivated,
    OrganizationLimitReached,
    RateLimited,
    TooManyWatches,
    VerificationPrepareLimitReached,
    BudgetExceeded,
    CursorExpired,
    DatabaseUnavailable,
    ShuttingDown,
    DnsResolverUnavailable,
    DeadlineExceeded,
    Internal,
    NotImplemented,
}

impl Reason {
    /// Every reason, for the test that keeps this list and the proto enum equal.
    pub const ALL: &'static [Reason] = &[
        Reason::TokenMissing,
        Reason::TokenInvalid,
        Reason::TokenExpired,
        Reason::PermissionDenied,
        Reason::EmailMismatch,
        Reason::EmailNotVerified,
        Reason::RoleAboveCaller,
        Reason::FieldInvalid,
        Reason::PageTokenInvalid,
        Reason::CursorInvalid,
        Reason::OrganizationNotFound,
        Reason::MembershipNotFound,
        Reason::RoleNotFound,
        Reason::PermissionNotFound,
        Reason::InvitationNotFound,
        Reason::DomainNotFound,
        Reason::MembershipRequestNotFound,
        Reason::SlugTaken,
        Reason::MembershipExists,
        Reason::RoleExists,
        Reason::PermissionExists,
        Reason::InvitationExists,
        Reason::DomainExists,
        Reason::MembershipRequestExists,
        Reason::ExternalIdTaken,
        Reason::EtagMismatch,
        Reason::SerializationFailure,
        Reason::RequestIdReused,
        Reason::MembershipLimitReached,
        Reason::LastAdmin,
        Reason::SystemRole,
        Reason::RoleInUse,
        Reason::PermissionInUse,
        Reason::InvitationExpired,
        Reason::InvitationRevoked,
        Reason::InvitationAlreadyAccepted,
        Reason::DomainLimitReached,
        Reason::ConsumerDomain,
        Reason::DomainAlreadyVerified,
        Reason::VerificationCodeExpired,
        Reason::VerificationCodeInvalid,
        Reason::DomainNotEligible,
        Reason::MembershipRequestNotPending,
        Reason::DomainVerificationLocked,
        Reason::DnsRecordNotFound,
        Reason::DnsChallengeNotPrepared,
        Reason::OrganizationDeactivated,
        Reason::OrganizationLimitReached,
        Reason::RateLimited,
        Reason::TooManyWatches,
        Reason::VerificationPrepareLimitReached,
        Reason::BudgetExceeded,
        Reason::CursorExpired,
        Reason::DatabaseUnavailable,
        Reason::ShuttingDown,
        Reason::DnsResolverUnavailable,
        Reason::DeadlineExceeded,
        Reason::Internal,
        Reason::NotImplemented,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TokenMissing => "TOKEN_MISSING",
            Reason::TokenInvalid => "TOKEN_INVALID",
            Reason::TokenExpired => "TOKEN_EXPIRED",
            Reason::PermissionDenied => "PERMISSION_DENIED",
            Reason::EmailMismatch => "EMAIL_MISMATCH",
            Reason::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            Reason::RoleAboveCaller => "ROLE_ABOVE_CALLER",
            Reason::FieldInvalid => "FIELD_INVALID",
            Reason::PageTokenInvalid => "PAGE_TOKEN_INVALID",
            Reason::CursorInvalid => "CURSOR_INVALID",
            Reason::OrganizationNotFound => "ORGANIZATION_NOT_FOUND",
            Reason::MembershipNotFound => "MEMBERSHIP_NOT_FOUND",
            Reason::RoleNotFound => "ROLE_NOT_FOUND",
            Reason::PermissionNotFound => "PERMISSION_NOT_FOUND",
            Reason::InvitationNotFound => "INVITATION_NOT_FOUND",
            Reason::DomainNotFound => "DOMAIN_NOT_FOUND",
            Reason::MembershipRequestNotFound => "MEMBERSHIP_REQUEST_NOT_FOUND",
            Reason::SlugTaken => "SLUG_TAKEN",
            Reason::MembershipExists => "MEMBERSHIP_EXISTS",
            Reason::RoleExists => "ROLE_EXISTS",
            Reason::PermissionExists => "PERMISSION_EXISTS",
            Reason::InvitationExists => "INVITATION_EXISTS",
            Reason::DomainExists => "DOMAIN_EXISTS",
            Reason::MembershipRequestExists => "MEMBERSHIP_REQUEST_EXISTS",
            Reason::ExternalIdTaken => "EXTERNAL_ID_TAKEN",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::SerializationFailure => "SERIALIZATION_FAILURE",
            Reason::RequestIdReused => "REQUEST_ID_REUSED",
            Reason::MembershipLimitReached => "MEMBERSHIP_LIMIT_REACHED",
            Reason::LastAdmin => "LAST_ADMIN",
            Reason::SystemRole => "SYSTEM_ROLE",
            Reason::RoleInUse => "ROLE_IN_USE",
            Reason::PermissionInUse => "PERMISSION_IN_USE",
            Reason::InvitationExpired => "INVITATION_EXPIRED",
            Reason::InvitationRevoked => "INVITATION_REVOKED",
            Reason::InvitationAlreadyAccepted => "INVITATION_ALREADY_ACCEPTED",
            Reason::DomainLimitReached => "DOMAIN_LIMIT_REACHED",
            Reason::ConsumerDomain => "CONSUMER_DOMAIN",
            Reason::DomainAlreadyVerified => "DOMAIN_ALREADY_VERIFIED",
            Reason::VerificationCodeExpired => "VERIFICATION_CODE_EXPIRED",
            Reason::VerificationCodeInvalid => "VERIFICATION_CODE_INVALID",
            Reason::DomainNotEligible => "DOMAIN_NOT_ELIGIBLE",
            Reason::MembershipRequestNotPending => "MEMBERSHIP_REQUEST_NOT_PENDING",
            Reason::DomainVerificationLocked => "DOMAIN_VERIFICATION_LOCKED",
            Reason::DnsRecordNotFound => "DNS_RECORD_NOT_FOUND",
            Reason::DnsChallengeNotPrepared => "DNS_CHALLENGE_NOT_PREPARED",
            Reason::OrganizationDeactivated => "ORGANIZATION_DEACTIVATED",
            Reason::OrganizationLimitReached => "ORGANIZATION_LIMIT_REACHED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::TooManyWatches => "TOO_MANY_WATCHES",
            Reason::VerificationPrepareLimitReached => "VERIFICATION_PREPARE_LIMIT_REACHED",
            Reason::BudgetExceeded => "BUDGET_EXCEEDED",
            Reason::CursorExpired => "CURSOR_EXPIRED",
            Reason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::DnsResolverUnavailable => "DNS_RESOLVER_UNAVAILABLE",
            Reason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Reason::Internal => "INTERNAL",
            Reason::NotImplemented => "NOT_IMPLEMENTED",
        }
    }
}

/// One bad field of a request: its path (for example `organization.slug`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation under a parent path: `slug` becomes `organization.slug`.
    pub fn under(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Everything that can go wrong, by kind. The gRPC border maps each variant to one
/// status code, exhaustively.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A page token or cursor that is not one of ours: the field and why.
    #[error("{2}")]
    InvalidToken(Reason, &'static str, String),
    #[error("{1}")]
    Unauthenticated(Reason, String),
    #[error("{1}")]
    PermissionDenied(Reason, String),
    #[error("{1}")]
    NotFound(Reason, String),
    /// NOT_FOUND naming what was not found in the `ErrorInfo` metadata too:
    /// the reason, the message, the metadata key and its value.
    #[error("{1}")]
    NotFoundNamed(Reason, String, &'static str, String),
    #[error("{1}")]
    AlreadyExists(Reason, String),
    #[error("the etag does not match the stored one; read the resource again")]
    EtagMismatch,
    #[error("{1}")]
    FailedPrecondition(Reason, String),
    #[error("{1}")]
    ResourceExhausted(Reason, String, Duration),
    #[error("{1}")]
    OutOfRange(Reason, String),
    /// The change lost a race with concurrent changes in the database (a
    /// serialization failure or a deadlock); nothing was written, and running
    /// it again may succeed.
    #[error("{1}")]
    Aborted(Reason, String),
    /// The database (or another dependency) cannot serve the call now;
    /// nothing was acknowledged, and a retry after a while may succeed.
    #[error("{1}")]
    Unavailable(Reason, String),
    /// The call's deadline passed before it finished; its work was dropped
    /// and its transaction rolled back.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(cause.to_string())
    }

    pub fn organization_deactivated() -> Self {
        Error::FailedPrecondition(
            Reason::OrganizationDeactivated,
            "the organization is deactivated; reactivate it first".into(),
        )
    }

    pub fn organization_not_found() -> Self {
        Error::NotFound(
            Reason::OrganizationNotFound,
            "organization not found".into(),
        )
    }

    /// NOT_FOUND for one organization of several, named in the message and
    /// in the `ErrorInfo` metadata `organization_id`.
    pub fn organization_not_found_named(id: &str) -> Self {
        Error::NotFoundNamed(
            Reason::OrganizationNotFound,
            format!("organization {} not found", crate::domain::quote::quote(id)),
            "organization_id",
            crate::domain::quote::shorten(id, 128),
        )
    }

    /// Whether the call failed only because it raced with other changes, so
    /// that running it again in a new transaction may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Aborted(Reason::SerializationFailure, _))
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::PermissionDenied(Reason::PermissionDenied, message.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns several field parse results into their values, or into one
/// `InvalidArgument` naming every bad field.
#[macro_export]
macro_rules! all_valid {
    ($($result:ident),+ $(,)?) => {{
        let mut violations: Vec<$crate::domain::error::FieldViolation> = Vec::new();
        $( if let Err(violation) = &$result { violations.push(violation.clone()); } )+
        if !violations.is_empty() {
            return Err($crate::domain::error::Error::InvalidArgument(violations).into());
        }
        ($( match $result { Ok(value) => value, Err(violation) => {
            return Err($crate::domain::error::Error::InvalidArgument(vec![violation]).into());
        } } ),+)
    }};
}
