//! The invitation RPCs.

use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use super::{Answer, InvitationApi};
use crate::all_valid;
use crate::auth::authorizer::email_of;
use crate::auth::{Caller, Target};
use crate::domain::enrollment::{Acceptance, InvitationFilter};
use crate::domain::ids::{InvitationId, UserId};
use crate::domain::invitations::MAX_BATCH_INVITATIONS;
use crate::domain::types::page_size;
use crate::domain::{Error, FieldViolation};
use crate::grpc::convert::clamp;
use crate::grpc::convert::enrollment::{
    self as convert, invitation_key, invitation_status_filter, new_invitation, optional_email,
};
use crate::grpc::convert::organizations::membership;
use crate::grpc::{caller, idempotency, with_key};
use crate::proto::v1 as pb;
use crate::service::invitations::invitation_not_found;

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

/// Validates, authorizes and creates one invitation. `prefix` names the item
/// in a batch (`requests[3]`), so violations name the full path.
async fn create_one(
    api: &InvitationApi,
    caller: &Caller,
    req: &pb::CreateInvitationRequest,
    prefix: &str,
) -> Result<pb::CreateInvitationResponse, Status> {
    let key = idempotency(req, &req.request_id).map_err(|v| {
        let field = if prefix.is_empty() {
            v.field
        } else {
            format!("{prefix}.{}", v.field)
        };
        FieldViolation::new(field, v.description)
    });
    let (new, key) = with_key(new_invitation(req, prefix), key)?;
    let target = match &new.organization_id {
        Some(organization_id) => Target::Organization(organization_id, None),
        // Application invitations: platform scopes only.
        None => Target::Service,
    };
    let actor = api.authorizer.authorize(caller, target).await?;
    let show_private = actor.platform;
    let created = api
        .invitations
        .create(actor, new, key)
        .await
        .map_err(|err| match err {
            Error::InvalidArgument(violations) if !prefix.is_empty() => {
                Error::InvalidArgument(violations.into_iter().map(|v| v.under(prefix)).collect())
            }
            other => other,
        })?;
    Ok(pb::CreateInvitationResponse {
        invitation: Some(convert::invitation(created.invitation, show_private)),
        token: created.token,
        url: created.url,
    })
}

pub async fn create(
    api: &InvitationApi,
    request: Request<pb::CreateInvitationRequest>,
) -> Answer<pb::CreateInvitationResponse> {
    let caller = caller(&request)?;
    let response = create_one(api, &caller, request.get_ref(), "").await?;
    Ok(Response::new(response))
}

pub async fn create_batch(
    api: &InvitationApi,
    request: Request<pb::CreateInvitationsRequest>,
) -> Answer<pb::CreateInvitationsResponse> {
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
        let result = match create_one(api, &caller, item, &format!("requests[{i}]")).await {
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

pub async fn get(
    api: &InvitationApi,
    request: Request<pb::GetInvitationRequest>,
) -> Answer<pb::GetInvitationResponse> {
    let caller = caller(&request)?;
    let id = InvitationId::parse("invitation_id", &request.get_ref().invitation_id);
    let id = all_valid!(id);
    let invitation = api.invitations.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(invitation.organization_id.as_ref(), invitation_not_found),
        )
        .await?;
    Ok(Response::new(pb::GetInvitationResponse {
        invitation: Some(convert::invitation(invitation, actor.platform)),
    }))
}

pub async fn list(
    api: &InvitationApi,
    request: Request<pb::ListInvitationsRequest>,
) -> Answer<pb::ListInvitationsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org =
        crate::domain::ids::OrganizationId::parse_optional("organization_id", &req.organization_id);
    let status = invitation_status_filter("status", req.status);
    let email = optional_email("email_address", &req.email_address);
    let size = page_size("page_size", req.page_size);
    let (org, status, email, size) = all_valid!(org, status, email, size);
    let target = match &org {
        Some(org) => Target::Organization(org, None),
        // Application invitations: platform scopes only.
        None => Target::Service,
    };
    let actor = api.authorizer.authorize(&caller, target).await?;
    let filter = InvitationFilter {
        organization_id: org,
        status,
        email_address: email,
    };
    let page = api.invitations.list(filter, size, &req.page_token).await?;
    Ok(Response::new(pb::ListInvitationsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        invitations: page
            .items
            .into_iter()
            .map(|invitation| convert::invitation(invitation, actor.platform))
            .collect(),
    }))
}

pub async fn revoke(
    api: &InvitationApi,
    request: Request<pb::RevokeInvitationRequest>,
) -> Answer<pb::RevokeInvitationResponse> {
    let caller = caller(&request)?;
    let id = InvitationId::parse("invitation_id", &request.get_ref().invitation_id);
    let id = all_valid!(id);
    let invitation = api.invitations.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(invitation.organization_id.as_ref(), invitation_not_found),
        )
        .await?;
    let show_private = actor.platform;
    let revoked = api.invitations.revoke(actor, id).await?;
    Ok(Response::new(pb::RevokeInvitationResponse {
        invitation: Some(convert::invitation(revoked, show_private)),
    }))
}

pub async fn accept(
    api: &InvitationApi,
    request: Request<pb::AcceptInvitationRequest>,
) -> Answer<pb::AcceptInvitationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let invitation_key = invitation_key(&req);
    let user = UserId::parse("user_id", &req.user_id);
    let email = optional_email("email_address", &req.email_address);
    let key = idempotency(&req, &req.request_id);
    let (invitation_key, user, email, key) = all_valid!(invitation_key, user, email, key);
    let actor = api
        .authorizer
        .authorize(&caller, Target::User(&user))
        .await?;
    let email = email_of(&actor, email, "email_address")?;
    let show_private = actor.platform;
    let accepted = api
        .invitations
        .accept(
            actor,
            Acceptance {
                key: invitation_key,
                user_id: user,
                email_address: email,
            },
            key,
            req.validate_only,
        )
        .await?;
    Ok(Response::new(pb::AcceptInvitationResponse {
        invitation: Some(convert::invitation(accepted.invitation, show_private)),
        membership: accepted.membership.map(|m| membership(m, show_private)),
        billing_impact: accepted.billing_impact.map(Into::into),
    }))
}
