//! `orgs.v1.InvitationService`.

use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use super::convert::{mask_paths, metadata, metadata_struct, optional_timestamp, timestamp};
use super::organization::{membership_to_proto, organization_to_proto};
use super::{billing_impact_to_proto, caller, etag, idempotency};
use crate::all_valid;
use crate::auth::Caller;
use crate::auth::token::scopes::ORGS_ADMIN;
use crate::domain::ids;
use crate::domain::invitations::{
    self as rules, EnrollmentMode, InvitationStatus, MAX_BATCH_INVITATIONS, MembershipRequestStatus,
};
use crate::domain::types::{Email, optional_user_id, page_size, resource_id, role_key, user_id};
use crate::domain::{Actor, Error, FieldViolation};
use crate::proto::v1::{self as pb, invitation_service_server::InvitationService};
use crate::service::Services;
use crate::service::domains::{
    NewDomain, NewMembershipRequest, domain_not_found, membership_request_not_found,
};
use crate::service::invitations::{Acceptance, InvitationKey, NewInvitation, invitation_not_found};
use crate::store::repo::domains::DomainRow;
use crate::store::repo::invitations::{InvitationFilter, InvitationRow};
use crate::store::repo::membership_requests::MembershipRequestRow;

pub struct InvitationApi {
    services: Services,
}

impl InvitationApi {
    pub fn new(services: Services) -> Self {
        InvitationApi { services }
    }
}

pub fn invitation_to_proto(row: InvitationRow, now: i64, show_private: bool) -> pb::Invitation {
    let status = match row.status_at(now) {
        InvitationStatus::Pending => pb::InvitationStatus::Pending,
        InvitationStatus::Accepted => pb::InvitationStatus::Accepted,
        InvitationStatus::Revoked => pb::InvitationStatus::Revoked,
        InvitationStatus::Expired => pb::InvitationStatus::Expired,
    };
    pb::Invitation {
        id: row.id,
        organization_id: row.organization_id.unwrap_or_default(),
        email_address: row.email_address,
        role: row.role,
        status: status as i32,
        inviter_user_id: row.inviter_user_id,
        redirect_url: row.redirect_url,
        public_metadata: metadata_struct(&row.public_metadata),
        private_metadata: if show_private {
            metadata_struct(&row.private_metadata)
        } else {
            None
        },
        expire_time: timestamp(row.expire_time),
        accepted_user_id: row.accepted_user_id,
        create_time: timestamp(row.create_time),
        update_time: timestamp(row.update_time),
    }
}

pub fn domain_to_proto(row: DomainRow) -> pb::Domain {
    let mode = match row.mode() {
        EnrollmentMode::ManualInvitation => pb::EnrollmentMode::ManualInvitation,
        EnrollmentMode::AutomaticInvitation => pb::EnrollmentMode::AutomaticInvitation,
        EnrollmentMode::AutomaticSuggestion => pb::EnrollmentMode::AutomaticSuggestion,
    };
    pb::Domain {
        etag: row.etag(),
        id: row.id,
        organization_id: row.organization_id,
        name: row.name,
        enrollment_mode: mode as i32,
        verified: row.verified,
        affiliation_email_address: row.affiliation_email_address,
        verify_time: optional_timestamp(row.verify_time),
        create_time: timestamp(row.create_time),
        update_time: timestamp(row.update_time),
    }
}

pub fn membership_request_to_proto(row: MembershipRequestRow) -> pb::MembershipRequest {
    let status = match row.status() {
        MembershipRequestStatus::Pending => pb::MembershipRequestStatus::Pending,
        MembershipRequestStatus::Accepted => pb::MembershipRequestStatus::Accepted,
        MembershipRequestStatus::Rejected => pb::MembershipRequestStatus::Rejected,
    };
    pb::MembershipRequest {
        id: row.id,
        organization_id: row.organization_id,
        user_id: row.user_id,
        email_address: row.email_address,
        status: status as i32,
        create_time: timestamp(row.create_time),
        update_time: timestamp(row.update_time),
    }
}

fn organization_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    resource_id(field, value, ids::ORGANIZATION)
}

/// An optional organization id: empty means the application.
fn optional_organization_id(field: &str, value: &str) -> Result<Option<String>, FieldViolation> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        organization_id(field, value).map(Some)
    }
}

fn invitation_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    resource_id(field, value, ids::INVITATION)
}

fn domain_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    resource_id(field, value, ids::DOMAIN)
}

fn membership_request_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    resource_id(field, value, ids::MEMBERSHIP_REQUEST)
}

/// A required enrollment mode; UNSPECIFIED and unknown numbers are refused.
fn enrollment_mode(field: &str, value: i32) -> Result<EnrollmentMode, FieldViolation> {
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
fn invitation_status_filter(
    field: &str,
    value: i32,
) -> Result<Option<InvitationStatus>, FieldViolation> {
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
fn membership_request_status_filter(
    field: &str,
    value: i32,
) -> Result<Option<MembershipRequestStatus>, FieldViolation> {
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

/// An optional role key: empty means the default role.
fn optional_role(field: &str, value: &str) -> Result<Option<String>, FieldViolation> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        role_key(field, value).map(Some)
    }
}

/// Decides the RPC's rule for a call about a resource of `organization_id`
/// (`None`: the application, which only scopes may reach). A caller that may
/// not see the organization learns only that `hidden` does not exist.
async fn authorize_resource(
    services: &Services,
    caller: &Caller,
    organization_id: Option<&str>,
    hidden: fn() -> Error,
) -> Result<Actor, Status> {
    let decided = match organization_id {
        None if caller.scope_grants() => caller.authorize(None),
        None if caller.principal.is_platform() => Err(caller.denied()),
        None => Err(hidden()),
        Some(organization_id) => {
            let membership = if caller.needs_membership(None) {
                services
                    .membership_permissions(organization_id, &caller.principal.sub)
                    .await?
            } else {
                None
            };
            caller.authorize_in_organization(None, membership.as_deref())
        }
    };
    decided.map_err(|err| match err {
        Error::NotFound(..) => hidden().into(),
        other => other.into(),
    })
}

/// Decides the RPC's rule for a call naming an organization directly (`None`:
/// application invitations, for scopes only).
async fn authorize_organization(
    services: &Services,
    caller: &Caller,
    organization_id: Option<&str>,
) -> Result<Actor, Status> {
    match organization_id {
        Some(organization_id) => {
            super::authorize_in_organization(services, caller, organization_id, None).await
        }
        None => Ok(caller.authorize(None)?),
    }
}

/// An item error of a batch: the status code, its `ErrorInfo` reason and message.
fn batch_error(status: &Status) -> pb::BatchItemError {
    pb::BatchItemError {
        code: status.code() as i32,
        reason: status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default(),
        message: status.message().to_string(),
    }
}

impl InvitationApi {
    /// Validates, authorizes and creates one invitation. `prefix` names the
    /// item in a batch (`requests[3]`), so violations name the full path.
    async fn create_one(
        &self,
        caller: &Caller,
        req: &pb::CreateInvitationRequest,
        prefix: &str,
    ) -> Result<pb::CreateInvitationResponse, Status> {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        let org = optional_organization_id(&field("organization_id"), &req.organization_id);
        let email = Email::parse(&field("email_address"), &req.email_address);
        let role = optional_role(&field("role"), &req.role).and_then(|role| {
            match (&role, req.organization_id.trim().is_empty()) {
                (Some(_), true) => Err(FieldViolation::new(
                    field("role"),
                    "must be empty for an application invitation",
                )),
                _ => Ok(role),
            }
        });
        let inviter = optional_user_id(&field("inviter_user_id"), &req.inviter_user_id);
        let redirect = rules::redirect_url(&field("redirect_url"), &req.redirect_url);
        let days = rules::expires_in_days(&field("expires_in_days"), req.expires_in_days);
        let public = metadata(&field("public_metadata"), req.public_metadata.as_ref());
        let private = metadata(&field("private_metadata"), req.private_metadata.as_ref());
        let key = idempotency(req, &req.request_id)
            .map_err(|v| FieldViolation::new(field(&v.field), v.description));
        let (org, email, role, inviter, redirect, days, public, private, key) = all_valid!(
            org, email, role, inviter, redirect, days, public, private, key
        );
        let actor = authorize_organization(&self.services, caller, org.as_deref()).await?;
        let new = NewInvitation {
            organization_id: org,
            email_address: email,
            role,
            inviter_user_id: inviter,
            redirect_url: redirect,
            expires_in_days: days,
            public_metadata: public,
            private_metadata: private,
        };
        let created = self
            .services
            .create_invitation(&actor, new, key.as_ref())
            .await
            .map_err(|err| match err {
                Error::InvalidArgument(violations) if !prefix.is_empty() => Error::InvalidArgument(
                    violations.into_iter().map(|v| v.under(prefix)).collect(),
                ),
                other => other,
            })?;
        Ok(pb::CreateInvitationResponse {
            invitation: Some(invitation_to_proto(
                created.invitation,
                self.services.now(),
                caller.principal.is_platform(),
            )),
            token: created.token,
            url: created.url,
        })
    }
}

#[tonic::async_trait]
impl InvitationService for InvitationApi {
    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<Response<pb::CreateInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let response = self.create_one(&caller, request.get_ref(), "").await?;
        Ok(Response::new(response))
    }

    async fn create_invitations(
        &self,
        request: Request<pb::CreateInvitationsRequest>,
    ) -> Result<Response<pb::CreateInvitationsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        if req.requests.is_empty() || req.requests.len() > MAX_BATCH_INVITATIONS {
            return Err(Error::invalid(
                "requests",
                format!("must have 1 to {MAX_BATCH_INVITATIONS} items"),
            )
            .into());
        }
        let mut results = Vec::with_capacity(req.requests.len());
        for (i, item) in req.requests.iter().enumerate() {
            // Each item is its own transaction: one bad item stops no other.
            let result = match self
                .create_one(&caller, item, &format!("requests[{i}]"))
                .await
            {
                Ok(created) => pb::CreateInvitationsResult {
                    invitation: created.invitation,
                    token: created.token,
                    url: created.url,
                    error: None,
                },
                Err(status) => pb::CreateInvitationsResult {
                    error: Some(batch_error(&status)),
                    ..Default::default()
                },
            };
            results.push(result);
        }
        Ok(Response::new(pb::CreateInvitationsResponse { results }))
    }

    async fn get_invitation(
        &self,
        request: Request<pb::GetInvitationRequest>,
    ) -> Result<Response<pb::GetInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let id = invitation_id("invitation_id", &request.get_ref().invitation_id);
        let id = all_valid!(id);
        let invitation = self.services.get_invitation(&id).await?;
        authorize_resource(
            &self.services,
            &caller,
            invitation.organization_id.as_deref(),
            invitation_not_found,
        )
        .await?;
        Ok(Response::new(pb::GetInvitationResponse {
            invitation: Some(invitation_to_proto(
                invitation,
                self.services.now(),
                caller.principal.is_platform(),
            )),
        }))
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = optional_organization_id("organization_id", &req.organization_id);
        let status = invitation_status_filter("status", req.status);
        let email = if req.email_address.trim().is_empty() {
            Ok(None)
        } else {
            Email::parse("email_address", &req.email_address).map(Some)
        };
        let size = page_size("page_size", req.page_size);
        let (org, status, email, size) = all_valid!(org, status, email, size);
        authorize_organization(&self.services, &caller, org.as_deref()).await?;
        let now = self.services.now();
        let filter = InvitationFilter {
            organization_id: org,
            status,
            email_address: email.map(|e| e.as_str().to_string()),
        };
        let page = self
            .services
            .list_invitations(filter, now, size, &req.page_token)
            .await?;
        let show_private = caller.principal.is_platform();
        Ok(Response::new(pb::ListInvitationsResponse {
            invitations: page
                .items
                .into_iter()
                .map(|row| invitation_to_proto(row, now, show_private))
                .collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::RevokeInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let id = invitation_id("invitation_id", &request.get_ref().invitation_id);
        let id = all_valid!(id);
        let invitation = self.services.get_invitation(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            invitation.organization_id.as_deref(),
            invitation_not_found,
        )
        .await?;
        let revoked = self.services.revoke_invitation(&actor, &id).await?;
        Ok(Response::new(pb::RevokeInvitationResponse {
            invitation: Some(invitation_to_proto(
                revoked,
                self.services.now(),
                caller.principal.is_platform(),
            )),
        }))
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let invitation_key = match (
            req.token.trim().is_empty(),
            req.invitation_id.trim().is_empty(),
        ) {
            (false, true) => rules::invitation_token("token", &req.token).map(InvitationKey::Token),
            (true, false) => {
                invitation_id("invitation_id", &req.invitation_id).map(InvitationKey::Id)
            }
            (true, true) => Err(FieldViolation::new(
                "token",
                "is required (or invitation_id)",
            )),
            (false, false) => Err(FieldViolation::new(
                "invitation_id",
                "must be empty when token is given",
            )),
        };
        let user = user_id("user_id", &req.user_id);
        let email = Email::parse("email_address", &req.email_address);
        let key = idempotency(&req, &req.request_id);
        let (invitation_key, user, email, key) = all_valid!(invitation_key, user, email, key);
        let actor = caller.authorize(Some(&user))?;
        // Without the mailed token, only a service that verified the user's
        // address may vouch for it.
        if matches!(invitation_key, InvitationKey::Id(_)) && !caller.principal.has_scope(ORGS_ADMIN)
        {
            return Err(Error::permission_denied(
                "accepting by invitation_id requires the orgs:admin scope; use the token",
            )
            .into());
        }
        let accepted = self
            .services
            .accept_invitation(
                &actor,
                Acceptance {
                    key: invitation_key,
                    user_id: user,
                    email_address: email,
                },
                key.as_ref(),
                req.validate_only,
            )
            .await?;
        let show_private = caller.principal.is_platform();
        Ok(Response::new(pb::AcceptInvitationResponse {
            invitation: Some(invitation_to_proto(
                accepted.invitation,
                self.services.now(),
                show_private,
            )),
            membership: accepted
                .membership
                .map(|m| membership_to_proto(m, show_private)),
            billing_impact: accepted
                .billing_impact
                .map(|impact| billing_impact_to_proto(&self.services, impact)),
        }))
    }

    async fn create_domain(
        &self,
        request: Request<pb::CreateDomainRequest>,
    ) -> Result<Response<pb::CreateDomainResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let name = crate::domain::types::domain_name("name", &req.name);
        let mode = enrollment_mode("enrollment_mode", req.enrollment_mode);
        let key = idempotency(&req, &req.request_id);
        let (org, name, mode, key) = all_valid!(org, name, mode, key);
        let actor = super::authorize_in_organization(&self.services, &caller, &org, None).await?;
        if req.verified && !caller.principal.is_platform() {
            return Err(Error::permission_denied(
                "only platform principals may create a domain already verified",
            )
            .into());
        }
        let domain = self
            .services
            .create_domain(
                &actor,
                NewDomain {
                    organization_id: org,
                    name,
                    enrollment_mode: mode,
                    verified: req.verified,
                },
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::CreateDomainResponse {
            domain: Some(domain_to_proto(domain)),
        }))
    }

    async fn list_domains(
        &self,
        request: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<pb::ListDomainsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let size = page_size("page_size", req.page_size);
        let (org, size) = all_valid!(org, size);
        super::authorize_in_organization(&self.services, &caller, &org, None).await?;
        let page = self
            .services
            .list_domains(&org, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListDomainsResponse {
            domains: page.items.into_iter().map(domain_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn update_domain(
        &self,
        request: Request<pb::UpdateDomainRequest>,
    ) -> Result<Response<pb::UpdateDomainResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let Some(domain) = req.domain else {
            return Err(Error::invalid("domain", "is required").into());
        };
        let id = domain_id("domain.id", &domain.id);
        let paths = mask_paths(
            "update_mask",
            req.update_mask.as_ref(),
            &["enrollment_mode"],
        );
        let mode = enrollment_mode("domain.enrollment_mode", domain.enrollment_mode);
        let (id, _paths, mode) = all_valid!(id, paths, mode);
        let current = self.services.get_domain(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            domain_not_found,
        )
        .await?;
        let updated = self
            .services
            .update_domain(&actor, &id, etag(&domain.etag), mode)
            .await?;
        Ok(Response::new(pb::UpdateDomainResponse {
            domain: Some(domain_to_proto(updated)),
        }))
    }

    async fn delete_domain(
        &self,
        request: Request<pb::DeleteDomainRequest>,
    ) -> Result<Response<pb::DeleteDomainResponse>, Status> {
        let caller = caller(&request)?;
        let id = domain_id("domain_id", &request.get_ref().domain_id);
        let id = all_valid!(id);
        let current = self.services.get_domain(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            domain_not_found,
        )
        .await?;
        self.services.delete_domain(&actor, &id).await?;
        Ok(Response::new(pb::DeleteDomainResponse {}))
    }

    async fn prepare_domain_verification(
        &self,
        request: Request<pb::PrepareDomainVerificationRequest>,
    ) -> Result<Response<pb::PrepareDomainVerificationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let id = domain_id("domain_id", &req.domain_id);
        let email = Email::parse("affiliation_email_address", &req.affiliation_email_address);
        let (id, email) = all_valid!(id, email);
        let current = self.services.get_domain(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            domain_not_found,
        )
        .await?;
        let prepared = self
            .services
            .prepare_domain_verification(&actor, &id, &email)
            .await?;
        // The code proves control of the mailbox: only the service that mails it sees it.
        let verification_code = if caller.principal.is_platform() {
            prepared.code
        } else {
            String::new()
        };
        Ok(Response::new(pb::PrepareDomainVerificationResponse {
            domain: Some(domain_to_proto(prepared.domain)),
            verification_code,
            expire_time: timestamp(prepared.expire_time),
        }))
    }

    async fn attempt_domain_verification(
        &self,
        request: Request<pb::AttemptDomainVerificationRequest>,
    ) -> Result<Response<pb::AttemptDomainVerificationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let id = domain_id("domain_id", &req.domain_id);
        let code = rules::verification_code("code", &req.code);
        let (id, code) = all_valid!(id, code);
        let current = self.services.get_domain(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            domain_not_found,
        )
        .await?;
        let verified = self
            .services
            .attempt_domain_verification(&actor, &id, &code)
            .await?;
        Ok(Response::new(pb::AttemptDomainVerificationResponse {
            domain: Some(domain_to_proto(verified)),
        }))
    }

    async fn create_membership_request(
        &self,
        request: Request<pb::CreateMembershipRequestRequest>,
    ) -> Result<Response<pb::CreateMembershipRequestResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let user = user_id("user_id", &req.user_id);
        let email = Email::parse("email_address", &req.email_address);
        let key = idempotency(&req, &req.request_id);
        let (org, user, email, key) = all_valid!(org, user, email, key);
        let actor = caller.authorize(Some(&user))?;
        let created = self
            .services
            .create_membership_request(
                &actor,
                NewMembershipRequest {
                    organization_id: org,
                    user_id: user,
                    email_address: email,
                },
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::CreateMembershipRequestResponse {
            membership_request: Some(membership_request_to_proto(created)),
        }))
    }

    async fn list_membership_requests(
        &self,
        request: Request<pb::ListMembershipRequestsRequest>,
    ) -> Result<Response<pb::ListMembershipRequestsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let status = membership_request_status_filter("status", req.status);
        let size = page_size("page_size", req.page_size);
        let (org, status, size) = all_valid!(org, status, size);
        super::authorize_in_organization(&self.services, &caller, &org, None).await?;
        let page = self
            .services
            .list_membership_requests(&org, status, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListMembershipRequestsResponse {
            membership_requests: page
                .items
                .into_iter()
                .map(membership_request_to_proto)
                .collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn accept_membership_request(
        &self,
        request: Request<pb::AcceptMembershipRequestRequest>,
    ) -> Result<Response<pb::AcceptMembershipRequestResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let id = membership_request_id("membership_request_id", &req.membership_request_id);
        let key = idempotency(&req, &req.request_id);
        let (id, key) = all_valid!(id, key);
        let current = self.services.get_membership_request(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            membership_request_not_found,
        )
        .await?;
        let accepted = self
            .services
            .accept_membership_request(&actor, &id, key.as_ref(), req.validate_only)
            .await?;
        Ok(Response::new(pb::AcceptMembershipRequestResponse {
            membership_request: Some(membership_request_to_proto(accepted.membership_request)),
            membership: Some(membership_to_proto(
                accepted.membership,
                caller.principal.is_platform(),
            )),
            billing_impact: Some(billing_impact_to_proto(
                &self.services,
                accepted.billing_impact,
            )),
        }))
    }

    async fn reject_membership_request(
        &self,
        request: Request<pb::RejectMembershipRequestRequest>,
    ) -> Result<Response<pb::RejectMembershipRequestResponse>, Status> {
        let caller = caller(&request)?;
        let id = membership_request_id(
            "membership_request_id",
            &request.get_ref().membership_request_id,
        );
        let id = all_valid!(id);
        let current = self.services.get_membership_request(&id).await?;
        let actor = authorize_resource(
            &self.services,
            &caller,
            Some(&current.organization_id),
            membership_request_not_found,
        )
        .await?;
        let rejected = self.services.reject_membership_request(&actor, &id).await?;
        Ok(Response::new(pb::RejectMembershipRequestResponse {
            membership_request: Some(membership_request_to_proto(rejected)),
        }))
    }

    async fn resolve_onboarding(
        &self,
        request: Request<pb::ResolveOnboardingRequest>,
    ) -> Result<Response<pb::ResolveOnboardingResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let user = user_id("user_id", &req.user_id);
        let email = Email::parse("email_address", &req.email_address);
        let (user, email) = all_valid!(user, email);
        let actor = caller.authorize(Some(&user))?;
        let onboarding = self
            .services
            .resolve_onboarding(&actor, &user, &email)
            .await?;
        let now = self.services.now();
        let show_private = caller.principal.is_platform();
        Ok(Response::new(pb::ResolveOnboardingResponse {
            memberships: onboarding
                .memberships
                .into_iter()
                .map(|m| membership_to_proto(m, show_private))
                .collect(),
            invitations: onboarding
                .invitations
                .into_iter()
                .map(|i| invitation_to_proto(i, now, show_private))
                .collect(),
            suggestions: onboarding
                .suggestions
                .into_iter()
                .map(|s| {
                    let organization = organization_to_proto(s.organization, false);
                    pb::OrganizationSuggestion {
                        organization_id: organization.id,
                        organization_name: organization.name,
                        organization_slug: organization.slug,
                        domain: s.domain,
                    }
                })
                .collect(),
            requires_organization: onboarding.requires_organization,
        }))
    }
}
