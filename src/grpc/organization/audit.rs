//! `ListAuditEvents`.

use tonic::{Request, Response};

use super::{Answer, OrganizationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::domain::events::AuditFilter;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::types::page_size;
use crate::grpc::caller;
use crate::grpc::convert::clamp;
use crate::proto::v1 as pb;

pub async fn list(
    api: &OrganizationApi,
    request: Request<pb::ListAuditEventsRequest>,
) -> Answer<pb::ListAuditEventsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse_optional("organization_id", &req.organization_id);
    let actor = UserId::parse_optional("actor", &req.actor);
    let size = page_size("page_size", req.page_size);
    let (org, actor, size) = all_valid!(org, actor, size);
    let target = match &org {
        Some(org) => Target::Organization(org, None),
        None => Target::AllOrganizations {
            field: "organization_id",
        },
    };
    api.authorizer.authorize(&caller, target).await?;
    let filter = AuditFilter {
        organization_id: org,
        actor: actor.map(UserId::into_string),
    };
    let page = api.audit.list(filter, size, &req.page_token).await?;
    Ok(Response::new(pb::ListAuditEventsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        audit_events: page.items.into_iter().map(Into::into).collect(),
    }))
}
