//! Deactivating and reactivating organizations and memberships.

use tonic::{Request, Response};

use super::{Answer, OrganizationApi};
use crate::all_valid;
use crate::auth::{Caller, Target};
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::organizations::{AddedMember, OrganizationTransition};
use crate::grpc::convert::organizations as convert;
use crate::grpc::{caller, etag};
use crate::proto::v1 as pb;

/// Deactivates or reactivates a membership as the caller.
async fn membership(
    api: &OrganizationApi,
    caller: &Caller,
    (organization_id, user_id, etag_value): (&str, &str, &str),
    deactivate: bool,
    validate_only: bool,
) -> Result<(AddedMember, bool), tonic::Status> {
    let org = OrganizationId::parse("organization_id", organization_id);
    let user = UserId::parse("user_id", user_id);
    let (org, user) = all_valid!(org, user);
    let actor = api
        .authorizer
        .authorize(caller, Target::Organization(&org, None))
        .await?;
    let show_private = actor.platform;
    let changed = api
        .memberships
        .set_active(
            actor,
            org,
            user,
            etag(etag_value),
            deactivate,
            validate_only,
        )
        .await?;
    Ok((changed, show_private))
}

pub async fn deactivate_membership(
    api: &OrganizationApi,
    request: Request<pb::DeactivateMembershipRequest>,
) -> Answer<pb::DeactivateMembershipResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let address = (
        req.organization_id.as_str(),
        req.user_id.as_str(),
        req.etag.as_str(),
    );
    let (changed, show_private) =
        membership(api, &caller, address, true, req.validate_only).await?;
    Ok(Response::new(pb::DeactivateMembershipResponse {
        membership: Some(convert::membership(changed.membership, show_private)),
        billing_impact: Some(changed.billing_impact.into()),
    }))
}

pub async fn reactivate_membership(
    api: &OrganizationApi,
    request: Request<pb::ReactivateMembershipRequest>,
) -> Answer<pb::ReactivateMembershipResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let address = (
        req.organization_id.as_str(),
        req.user_id.as_str(),
        req.etag.as_str(),
    );
    let (changed, show_private) =
        membership(api, &caller, address, false, req.validate_only).await?;
    Ok(Response::new(pb::ReactivateMembershipResponse {
        membership: Some(convert::membership(changed.membership, show_private)),
        billing_impact: Some(changed.billing_impact.into()),
    }))
}

/// Deactivates or reactivates an organization as the caller.
async fn organization(
    api: &OrganizationApi,
    caller: &Caller,
    (organization_id, etag_value): (&str, &str),
    deactivate: bool,
    validate_only: bool,
) -> Result<OrganizationTransition, tonic::Status> {
    let org = OrganizationId::parse("organization_id", organization_id);
    let org = all_valid!(org);
    let actor = api.authorizer.authorize(caller, Target::Service).await?;
    Ok(api
        .organizations
        .set_active(actor, org, etag(etag_value), deactivate, validate_only)
        .await?)
}

pub async fn deactivate_organization(
    api: &OrganizationApi,
    request: Request<pb::DeactivateOrganizationRequest>,
) -> Answer<pb::DeactivateOrganizationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let changed = organization(
        api,
        &caller,
        (&req.organization_id, &req.etag),
        true,
        req.validate_only,
    )
    .await?;
    Ok(Response::new(pb::DeactivateOrganizationResponse {
        organization: Some(convert::organization(changed.organization, true)),
        billing_impact: Some(changed.billing_impact.into()),
    }))
}

pub async fn reactivate_organization(
    api: &OrganizationApi,
    request: Request<pb::ReactivateOrganizationRequest>,
) -> Answer<pb::ReactivateOrganizationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let changed = organization(
        api,
        &caller,
        (&req.organization_id, &req.etag),
        false,
        req.validate_only,
    )
    .await?;
    Ok(Response::new(pb::ReactivateOrganizationResponse {
        organization: Some(convert::organization(changed.organization, true)),
        billing_impact: Some(changed.billing_impact.into()),
    }))
}
