//! Invitations, domains, membership requests and onboarding at the gRPC
//! border.

use super::{metadata, metadata_struct, optional_timestamp, timestamp};
use crate::all_valid;
use crate::domain::enrollment::{
    Domain, Invitation, InvitationKey, MembershipRequest, NewDomain, NewInvitation,
};
use crate::domain::ids::{InvitationId, OrganizationId, RoleKey, UserId};
use crate::domain::invitations::{
    self as rules, EnrollmentMode, InvitationStatus, MembershipRequestStatus,
};
use crate::domain::types::{Email, domain_name};
use crate::domain::verification::VerificationStrategy;
use crate::domain::{Error, FieldViolation};
use crate::proto::v1 as pb;

type Parsed<T> = Result<T, FieldViolation>;

/// An invitation as a caller sees it: private metadata only for platform
/// principals. Its status is the one at the time of the call.
pub fn invitation(invitation: Invitation, show_private: bool) -> pb::Invitation {
    let status = match invitation.status {
        InvitationStatus::Pending => pb::InvitationStatus::Pending,
        InvitationStatus::Accepted => pb::InvitationStatus::Accepted,
        InvitationStatus::Revoked => pb::InvitationStatus::Revoked,
        InvitationStatus::Expired => pb::InvitationStatus::Expired,
    };
    pb::Invitation {
        public_metadata: metadata_struct(&invitation.public_metadata),
        private_metadata: show_private
            .then(|| metadata_struct(&invitation.private_metadata))
            .flatten(),
        id: invitation.id.into_string(),
        organization_id: invitation
            .organization_id
            .map(OrganizationId::into_string)
            .unwrap_or_default(),
        email_address: invitation.email_address,
        role: invitation
            .role
            .map(RoleKey::into_string)
            .unwrap_or_default(),
        status: status as i32,
        inviter_user_id: invitation
            .inviter_user_id
            .map(UserId::into_string)
            .unwrap_or_default(),
        redirect_url: invitation.redirect_url.unwrap_or_default(),
        expire_time: timestamp(invitation.expire_time),
        accepted_user_id: invitation
            .accepted_user_id
            .map(UserId::into_string)
            .unwrap_or_default(),
        create_time: timestamp(invitation.create_time),
        update_time: timestamp(invitation.update_time),
    }
}

impl From<EnrollmentMode> for pb::EnrollmentMode {
    fn from(mode: EnrollmentMode) -> Self {
        match mode {
            EnrollmentMode::ManualInvitation => pb::EnrollmentMode::ManualInvitation,
            EnrollmentMode::AutomaticInvitation => pb::EnrollmentMode::AutomaticInvitation,
            EnrollmentMode::AutomaticSuggestion => pb::EnrollmentMode::AutomaticSuggestion,
        }
    }
}

impl From<VerificationStrategy> for pb::DomainVerificationStrategy {
    fn from(strategy: VerificationStrategy) -> Self {
        match strategy {
            VerificationStrategy::EmailCode => pb::DomainVerificationStrategy::EmailCode,
            VerificationStrategy::DnsTxt => pb::DomainVerificationStrategy::DnsTxt,
        }
    }
}

/// A verification strategy; UNSPECIFIED is `default` when there is one, and
/// unknown numbers are refused.
pub fn verification_strategy(
    field: &str,
    value: i32,
    default: Option<VerificationStrategy>,
) -> Parsed<VerificationStrategy> {
    match pb::DomainVerificationStrategy::try_from(value) {
        Ok(pb::DomainVerificationStrategy::EmailCode) => Ok(VerificationStrategy::EmailCode),
        Ok(pb::DomainVerificationStrategy::DnsTxt) => Ok(VerificationStrategy::DnsTxt),
        Ok(pb::DomainVerificationStrategy::Unspecified) => {
            default.ok_or_else(|| FieldViolation::new(field, "is required"))
        }
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not a DomainVerificationStrategy"),
        )),
    }
}

impl From<Domain> for pb::Domain {
    fn from(domain: Domain) -> Self {
        pb::Domain {
            etag: domain.etag(),
            id: domain.id.into_string(),
            organization_id: domain.organization_id.into_string(),
            name: domain.name,
            enrollment_mode: pb::EnrollmentMode::from(domain.enrollment_mode) as i32,
            verified: domain.verified,
            affiliation_email_address: domain.affiliation_email_address.unwrap_or_default(),
            verify_time: optional_timestamp(domain.verify_time),
            create_time: timestamp(domain.create_time),
            update_time: timestamp(domain.update_time),
            verification_strategy: pb::DomainVerificationStrategy::from(
                domain.verification_strategy,
            ) as i32,
        }
    }
}

impl From<MembershipRequest> for pb::MembershipRequest {
    fn from(request: MembershipRequest) -> Self {
        let status = match request.status {
            MembershipRequestStatus::Pending => pb::MembershipRequestStatus::Pending,
            MembershipRequestStatus::Accepted => pb::MembershipRequestStatus::Accepted,
            MembershipRequestStatus::Rejected => pb::MembershipRequestStatus::Rejected,
        };
        pb::MembershipRequest {
            id: request.id.into_string(),
            organization_id: request.organization_id.into_string(),
            user_id: request.user_id.into_string(),
            email_address: request.email_address,
            status: status as i32,
            create_time: timestamp(request.create_time),
            update_time: timestamp(request.update_time),
        }
    }
}

/// A required enrollment mode; UNSPECIFIED and unknown numbers are refused.
pub fn enrollment_mode(field: &str, value: i32) -> Parsed<EnrollmentMode> {
    match pb::EnrollmentMode::try_from(value) {
        Ok(pb::EnrollmentMode::ManualInvitation) => Ok(EnrollmentMode::ManualInvitation),
        Ok(pb::EnrollmentMode::AutomaticInvitation) => Ok(EnrollmentMode::AutomaticInvitation),
        Ok(pb::EnrollmentMode::AutomaticSuggestion) => Ok(EnrollmentMode::AutomaticSuggestion),
        Ok(pb::EnrollmentMode::Unspecified) => Err(FieldViolation::new(field, "is required")),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not an EnrollmentMode"),
        )),
    }
}

/// An invitation status filter; UNSPECIFIED means any.
pub fn invitation_status_filter(field: &str, value: i32) -> Parsed<Option<InvitationStatus>> {
    match pb::InvitationStatus::try_from(value) {
        Ok(pb::InvitationStatus::Unspecified) => Ok(None),
        Ok(pb::InvitationStatus::Pending) => Ok(Some(InvitationStatus::Pending)),
        Ok(pb::InvitationStatus::Accepted) => Ok(Some(InvitationStatus::Accepted)),
        Ok(pb::InvitationStatus::Revoked) => Ok(Some(InvitationStatus::Revoked)),
        Ok(pb::InvitationStatus::Expired) => Ok(Some(InvitationStatus::Expired)),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not an InvitationStatus"),
        )),
    }
}

/// A membership request status filter; UNSPECIFIED means any.
pub fn membership_request_status_filter(
    field: &str,
    value: i32,
) -> Parsed<Option<MembershipRequestStatus>> {
    match pb::MembershipRequestStatus::try_from(value) {
        Ok(pb::MembershipRequestStatus::Unspecified) => Ok(None),
        Ok(pb::MembershipRequestStatus::Pending) => Ok(Some(MembershipRequestStatus::Pending)),
        Ok(pb::MembershipRequestStatus::Accepted) => Ok(Some(MembershipRequestStatus::Accepted)),
        Ok(pb::MembershipRequestStatus::Rejected) => Ok(Some(MembershipRequestStatus::Rejected)),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not a MembershipRequestStatus"),
        )),
    }
}

/// An optional email address: empty means none.
pub fn optional_email(field: &str, value: &str) -> Parsed<Option<Email>> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        Email::parse(field, value).map(Some)
    }
}

/// A `CreateInvitationRequest`, alone or as item `prefix` (`requests[3]`) of a
/// batch, so violations name the full path.
pub fn new_invitation(
    req: &pb::CreateInvitationRequest,
    prefix: &str,
) -> Result<NewInvitation, Error> {
    let field = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let org = OrganizationId::parse_optional(&field("organization_id"), &req.organization_id);
    let email = Email::parse(&field("email_address"), &req.email_address);
    let role = RoleKey::parse_optional(&field("role"), &req.role).and_then(|role| {
        match (&role, req.organization_id.trim().is_empty()) {
            (Some(_), true) => Err(FieldViolation::new(
                field("role"),
                "must be empty for an application invitation",
            )),
            _ => Ok(role),
        }
    });
    let inviter = UserId::parse_optional(&field("inviter_user_id"), &req.inviter_user_id);
    let redirect = rules::redirect_url(&field("redirect_url"), &req.redirect_url);
    let days = rules::expires_in_days(&field("expires_in_days"), req.expires_in_days);
    let public = metadata(&field("public_metadata"), req.public_metadata.as_ref());
    let private = metadata(&field("private_metadata"), req.private_metadata.as_ref());
    let (org, email, role, inviter, redirect, days, public, private) =
        all_valid!(org, email, role, inviter, redirect, days, public, private);
    Ok(NewInvitation {
        organization_id: org,
        email_address: email,
        role,
        inviter_user_id: inviter,
        redirect_url: redirect,
        expires_in_days: days,
        public_metadata: public,
        private_metadata: private,
    })
}

/// How `AcceptInvitation` names the invitation: its token, or (for platform
/// principals) its id.
pub fn invitation_key(req: &pb::AcceptInvitationRequest) -> Parsed<InvitationKey> {
    match (
        req.token.trim().is_empty(),
        req.invitation_id.trim().is_empty(),
    ) {
        (false, true) => rules::invitation_token("token", &req.token).map(InvitationKey::Token),
        (true, false) => {
            InvitationId::parse("invitation_id", &req.invitation_id).map(InvitationKey::Id)
        }
        (true, true) => Err(FieldViolation::new(
            "token",
            "is required (or invitation_id)",
        )),
        (false, false) => Err(FieldViolation::new(
            "invitation_id",
            "must be empty when token is given",
        )),
    }
}

impl TryFrom<&pb::CreateDomainRequest> for NewDomain {
    type Error = Error;

    fn try_from(req: &pb::CreateDomainRequest) -> Result<Self, Error> {
        let org = OrganizationId::parse("organization_id", &req.organization_id);
        let name = domain_name("name", &req.name);
        let mode = enrollment_mode("enrollment_mode", req.enrollment_mode);
        let strategy = verification_strategy(
            "verification_strategy",
            req.verification_strategy,
            Some(VerificationStrategy::EmailCode),
        );
        let (org, name, mode, strategy) = all_valid!(org, name, mode, strategy);
        Ok(NewDomain {
            organization_id: org,
            name,
            enrollment_mode: mode,
            verified: req.verified,
            verification_strategy: strategy,
        })
    }
}
