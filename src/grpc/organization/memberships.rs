//! The membership RPCs and `CheckPermission`.

use tonic::{Request, Response};

use super::{Answer, OrganizationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::domain::Error;
use crate::domain::ids::{OrganizationId, PermissionKey, RoleKey, UserId};
use crate::domain::organizations::{MembershipFilter, NewMembership};
use crate::domain::types::page_size;
use crate::grpc::convert::clamp;
use crate::grpc::convert::organizations::{self as convert, membership_update};
use crate::grpc::{caller, etag, idempotency, with_key};
use crate::proto::v1 as pb;

pub async fn create(
    api: &OrganizationApi,
    request: Request<pb::CreateMembershipRequest>,
) -> Answer<pb::CreateMembershipResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let (new, key) = with_key(
        NewMembership::try_from(&req),
        idempotency(&req, &req.request_id),
    )?;
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&new.organization_id, None))
        .await?;
    let show_private = actor.platform;
    let added = api
        .memberships
        .create(actor, new, key, req.validate_only)
        .await?;
    Ok(Response::new(pb::CreateMembershipResponse {
        membership: Some(convert::membership(added.membership, show_private)),
        billing_impact: Some(added.billing_impact.into()),
    }))
}

pub async fn list(
    api: &OrganizationApi,
    request: Request<pb::ListMembershipsRequest>,
) -> Answer<pb::ListMembershipsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse_optional("organization_id", &req.organization_id);
    let user = UserId::parse_optional("user_id", &req.user_id);
    let role = RoleKey::parse_optional("role", &req.role);
    let size = page_size("page_size", req.page_size);
    let state = convert::membership_state_filter("state", req.state);
    let (org, user, role, size, state) = all_valid!(org, user, role, size, state);
    let target = match (&org, &user) {
        (Some(org), user) => Target::Organization(org, user.as_ref()),
        // A user may list its own memberships; otherwise a platform scope is needed.
        (None, Some(user)) => Target::User(user),
        (None, None) => {
            return Err(Error::invalid(
                "organization_id",
                "organization_id or user_id is required",
            )
            .into());
        }
    };
    let actor = api.authorizer.authorize(&caller, target).await?;
    let filter = MembershipFilter {
        organization_id: org,
        user_id: user,
        role,
        state,
    };
    let page = api.memberships.list(filter, size, &req.page_token).await?;
    Ok(Response::new(pb::ListMembershipsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        memberships: page
            .items
            .into_iter()
            .map(|m| convert::membership(m, actor.platform))
            .collect(),
    }))
}

pub async fn update(
    api: &OrganizationApi,
    request: Request<pb::UpdateMembershipRequest>,
) -> Answer<pb::UpdateMembershipResponse> {
    let caller = caller(&request)?;
    let (org, user, etag, changes) = membership_update(request.get_ref())?;
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&org, None))
        .await?;
    let show_private = actor.platform;
    let updated = api
        .memberships
        .update(actor, org, user, etag, changes)
        .await?;
    Ok(Response::new(pb::UpdateMembershipResponse {
        membership: Some(convert::membership(updated, show_private)),
    }))
}

pub async fn delete(
    api: &OrganizationApi,
    request: Request<pb::DeleteMembershipRequest>,
) -> Answer<pb::DeleteMembershipResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse("organization_id", &req.organization_id);
    let user = UserId::parse("user_id", &req.user_id);
    let (org, user) = all_valid!(org, user);
    // A member may always leave.
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&org, Some(&user)))
        .await?;
    api.memberships
        .delete(actor, org, user, etag(&req.etag))
        .await?;
    Ok(Response::new(pb::DeleteMembershipResponse {}))
}

pub async fn check_permission(
    api: &OrganizationApi,
    request: Request<pb::CheckPermissionRequest>,
) -> Answer<pb::CheckPermissionResponse> {
    let caller = caller(&request)?;
    let req = request.get_ref();
    let org = OrganizationId::parse("organization_id", &req.organization_id);
    let user = UserId::parse("user_id", &req.user_id);
    let permission = PermissionKey::parse("permission", &req.permission);
    let (org, user, permission) = all_valid!(org, user, permission);
    api.authorizer
        .authorize(&caller, Target::User(&user))
        .await?;
    let check = api
        .memberships
        .check_permission(&org, &user, &permission)
        .await?;
    Ok(Response::new(pb::CheckPermissionResponse {
        allowed: check.allowed,
        role: check.role.map(RoleKey::into_string).unwrap_or_default(),
    }))
}
