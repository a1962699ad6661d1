//! The domain RPCs.

use tonic::{Request, Response};

use super::{Answer, InvitationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::domain::enrollment::NewDomain;
use crate::domain::ids::{DomainId, OrganizationId};
use crate::domain::invitations::verification_code;
use crate::domain::types::{Email, page_size};
use crate::grpc::convert::enrollment::enrollment_mode;
use crate::grpc::convert::{clamp, mask_paths, timestamp};
use crate::grpc::{caller, etag, idempotency, with_key};
use crate::proto::v1 as pb;
use crate::service::domains::domain_not_found;

pub async fn create(
    api: &InvitationApi,
    request: Request<pb::CreateDomainRequest>,
) -> Answer<pb::CreateDomainResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let (new, key) = with_key(
        NewDomain::try_from(&req),
        idempotency(&req, &req.request_id),
    )?;
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&new.organization_id, None))
        .await?;
    let domain = api.domains.create(actor, new, key).await?;
    Ok(Response::new(pb::CreateDomainResponse {
        domain: Some(domain.into()),
    }))
}

pub async fn list(
    api: &InvitationApi,
    request: Request<pb::ListDomainsRequest>,
) -> Answer<pb::ListDomainsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let org = OrganizationId::parse("organization_id", &req.organization_id);
    let size = page_size("page_size", req.page_size);
    let (org, size) = all_valid!(org, size);
    api.authorizer
        .authorize(&caller, Target::Organization(&org, None))
        .await?;
    let page = api.domains.list(&org, size, &req.page_token).await?;
    Ok(Response::new(pb::ListDomainsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        domains: page.items.into_iter().map(Into::into).collect(),
    }))
}

pub async fn update(
    api: &InvitationApi,
    request: Request<pb::UpdateDomainRequest>,
) -> Answer<pb::UpdateDomainResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let Some(domain) = req.domain else {
        return Err(crate::domain::Error::invalid("domain", "is required").into());
    };
    let id = DomainId::parse("domain.id", &domain.id);
    let paths = mask_paths(
        "update_mask",
        req.update_mask.as_ref(),
        &["enrollment_mode"],
    );
    let mode = enrollment_mode("domain.enrollment_mode", domain.enrollment_mode);
    let (id, _paths, mode) = all_valid!(id, paths, mode);
    let current = api.domains.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), domain_not_found),
        )
        .await?;
    let updated = api
        .domains
        .update(actor, id, etag(&domain.etag), mode)
        .await?;
    Ok(Response::new(pb::UpdateDomainResponse {
        domain: Some(updated.into()),
    }))
}

pub async fn delete(
    api: &InvitationApi,
    request: Request<pb::DeleteDomainRequest>,
) -> Answer<pb::DeleteDomainResponse> {
    let caller = caller(&request)?;
    let id = DomainId::parse("domain_id", &request.get_ref().domain_id);
    let id = all_valid!(id);
    let current = api.domains.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), domain_not_found),
        )
        .await?;
    api.domains.delete(actor, id).await?;
    Ok(Response::new(pb::DeleteDomainResponse {}))
}

pub async fn prepare_verification(
    api: &InvitationApi,
    request: Request<pb::PrepareDomainVerificationRequest>,
) -> Answer<pb::PrepareDomainVerificationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = DomainId::parse("domain_id", &req.domain_id);
    let email = Email::parse("affiliation_email_address", &req.affiliation_email_address);
    let (id, email) = all_valid!(id, email);
    let current = api.domains.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), domain_not_found),
        )
        .await?;
    // The code proves control of the mailbox: only the service that mails it
    // (orgs:admin) sees it.
    let show_code = actor.by_scope();
    let prepared = api.domains.prepare_verification(actor, id, email).await?;
    Ok(Response::new(pb::PrepareDomainVerificationResponse {
        domain: Some(prepared.domain.into()),
        verification_code: if show_code {
            prepared.code
        } else {
            String::new()
        },
        expire_time: timestamp(prepared.expire_time),
    }))
}

pub async fn attempt_verification(
    api: &InvitationApi,
    request: Request<pb::AttemptDomainVerificationRequest>,
) -> Answer<pb::AttemptDomainVerificationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = DomainId::parse("domain_id", &req.domain_id);
    let code = verification_code("code", &req.code);
    let (id, code) = all_valid!(id, code);
    let current = api.domains.get(&id).await?;
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), domain_not_found),
        )
        .await?;
    let verified = api.domains.attempt_verification(actor, id, code).await?;
    Ok(Response::new(pb::AttemptDomainVerificationResponse {
        domain: Some(verified.into()),
    }))
}
