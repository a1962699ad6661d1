//! The membership request RPCs and `ResolveOnboarding`.

use tonic::{Request, Response};

use super::{Answer, InvitationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::auth::authorizer::email_of;
use crate::domain::enrollment::NewMembershipRequest;
use crate::domain::ids::{MembershipRequestId, OrganizationId, UserId};
use crate::domain::types::page_size;
use crate::grpc::convert::clamp;
use crate::grpc::convert::enrollment::{
    self as convert, membership_request_status_filter, optional_email,
};
use crate::grpc::convert::organizations::membership;
use crate::grpc::{caller, idempotency};
use crate::proto::v1 as pb;
use crate::service::membership_requests::membership_request_not_found;

pub async fn create(
    api: &InvitationApi,
    request: Request<pb::CreateMembershipRequestRequest>,
) -> Answer<pb::CreateMembershipRequestResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse("organization_id", &req.organization_id);
    let user = UserId::parse("user_id", &req.user_id);
    let email = optional_email("email_address", &req.email_address);
    let key = idempotency(&req, &req.request_id);
    let (org, user, email, key) = all_valid!(org, user, email, key);
    let actor = api
        .authorizer
        .authorize(&caller, Target::User(&user))
        .await?;
    let email = email_of(&actor, email, "email_address")?;
    let new = NewMembershipRequest {
        organization_id: org,
        user_id: user,
        email_address: email,
    };
    let created = api.membership_requests.create(actor, new, key).await?;
    Ok(Response::new(pb::CreateMembershipRequestResponse {
        membership_request: Some(created.into()),
    }))
}

pub async fn list(
    api: &InvitationApi,
    request: Request<pb::ListMembershipRequestsRequest>,
) -> Answer<pb::ListMembershipRequestsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse("organization_id", &req.organization_id);
    let status = membership_request_status_filter("status", req.status);
    let size = page_size("page_size", req.page_size);
    let (org, status, size) = all_valid!(org, status, size);
    api.authorizer
        .authorize(&caller, Target::Organization(&org, None))
        .await?;
    let page = api
        .membership_requests
        .list(&org, status, size, &req.page_token)
        .await?;
    Ok(Response::new(pb::ListMembershipRequestsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        membership_requests: page.items.into_iter().map(Into::into).collect(),
    }))
}

pub async fn accept(
    api: &InvitationApi,
    request: Request<pb::AcceptMembershipRequestRequest>,
) -> Answer<pb::AcceptMembershipRequestResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = MembershipRequestId::parse("membership_request_id", &req.membership_request_id);
    let key = idempotency(&req, &req.request_id);
    let (id, key) = all_valid!(id, key);
    let current = api.membership_requests.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), membership_request_not_found),
        )
        .await?;
    let show_private = actor.platform;
    let accepted = api
        .membership_requests
        .accept(actor, id, key, req.validate_only)
        .await?;
    Ok(Response::new(pb::AcceptMembershipRequestResponse {
        membership_request: Some(accepted.membership_request.into()),
        membership: Some(membership(accepted.membership, show_private)),
        billing_impact: Some(accepted.billing_impact.into()),
    }))
}

pub async fn reject(
    api: &InvitationApi,
    request: Request<pb::RejectMembershipRequestRequest>,
) -> Answer<pb::RejectMembershipRequestResponse> {
    let caller = caller(&request)?;
    let id = MembershipRequestId::parse(
        "membership_request_id",
        &request.get_ref().membership_request_id,
    );
    let id = all_valid!(id);
    let current = api.membership_requests.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), membership_request_not_found),
        )
        .await?;
    let rejected = api.membership_requests.reject(actor, id).await?;
    Ok(Response::new(pb::RejectMembershipRequestResponse {
        membership_request: Some(rejected.into()),
    }))
}

pub async fn resolve_onboarding(
    api: &InvitationApi,
    request: Request<pb::ResolveOnboardingRequest>,
) -> Answer<pb::ResolveOnboardingResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let user = UserId::parse("user_id", &req.user_id);
    let email = optional_email("email_address", &req.email_address);
    let (user, email) = all_valid!(user, email);
    let actor = api
        .authorizer
        .authorize(&caller, Target::User(&user))
        .await?;
    let email = email_of(&actor, email, "email_address")?;
    let show_private = actor.platform;
    let onboarding = api.onboardings.resolve(actor, &user, &email).await?;
    Ok(Response::new(pb::ResolveOnboardingResponse {
        memberships: onboarding
            .memberships
            .into_iter()
            .map(|m| membership(m, show_private))
            .collect(),
        invitations: onboarding
            .invitations
            .into_iter()
            .map(|i| convert::invitation(i, show_private))
            .collect(),
        suggestions: onboarding
            .suggestions
            .into_iter()
            .map(|s| pb::OrganizationSuggestion {
                organization_id: s.organization.id.into_string(),
                organization_name: s.organization.name,
                organization_slug: s.organization.slug,
                domain: s.domain,
            })
            .collect(),
        requires_organization: onboarding.requires_organization,
    }))
}
