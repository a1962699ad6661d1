//! The domain RPCs.

use tonic::{Request, Response};

use super::{Answer, InvitationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::domain::enrollment::{DomainChanges, NewDomain};
use crate::domain::ids::{DomainId, OrganizationId};
use crate::domain::invitations::verification_code;
use crate::domain::types::{domain_name, page_size};
use crate::grpc::convert::enrollment::{enrollment_mode, optional_email, verification_strategy};
use crate::grpc::convert::organizations::organization;
use crate::grpc::convert::{clamp, mask_paths, optional_timestamp};
use crate::grpc::{caller, etag, idempotency, with_key};
use crate::proto::v1 as pb;
use crate::service::domains::{domain_exists, domain_not_found};

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
    let mask = mask_paths(
        "update_mask",
        req.update_mask.as_ref(),
        &["enrollment_mode", "verification_strategy"],
    );
    let paths = mask.clone().unwrap_or_default();
    let has = |path: &str| paths.iter().any(|p| p == path);
    let mode = if has("enrollment_mode") {
        enrollment_mode("domain.enrollment_mode", domain.enrollment_mode).map(Some)
    } else {
        Ok(None)
    };
    let strategy = if has("verification_strategy") {
        verification_strategy(
            "domain.verification_strategy",
            domain.verification_strategy,
            None,
        )
        .map(Some)
    } else {
        Ok(None)
    };
    let (id, _mask, mode, strategy) = all_valid!(id, mask, mode, strategy);
    let changes = DomainChanges {
        enrollment_mode: mode,
        verification_strategy: strategy,
    };
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
        .update(actor, id, etag(&domain.etag), changes)
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
    // Required for the email strategy, which the use case knows.
    let email = optional_email("affiliation_email_address", &req.affiliation_email_address);
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
    // (orgs:admin) sees it. The DNS record is published by whoever controls
    // the zone, so every caller sees it.
    let show_code = actor.by_scope();
    let prepared = api.domains.prepare_verification(actor, id, email).await?;
    let (dns_record_name, dns_record_value) = prepared
        .dns_challenge
        .map(|challenge| (challenge.name, challenge.value))
        .unwrap_or_default();
    Ok(Response::new(pb::PrepareDomainVerificationResponse {
        domain: Some(prepared.domain.into()),
        verification_code: if show_code {
            prepared.code
        } else {
            String::new()
        },
        expire_time: optional_timestamp(prepared.expire_time),
        dns_record_name,
        dns_record_value,
    }))
}

pub async fn attempt_verification(
    api: &InvitationApi,
    request: Request<pb::AttemptDomainVerificationRequest>,
) -> Answer<pb::AttemptDomainVerificationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = DomainId::parse("domain_id", &req.domain_id);
    // Empty for the DNS strategy, which the use case knows.
    let code = if req.code.trim().is_empty() {
        Ok(None)
    } else {
        verification_code("code", &req.code).map(Some)
    };
    let (id, code) = all_valid!(id, code);
    let current = match api.domains.get(&id).await {
        Ok(current) => current,
        Err(not_found) => {
            // Removed because another organization verified the name
            // (perhaps a moment ago, racing this call): say so to whoever may
            // see the claim's organization.
            let Some((organization_id, name)) = api.domains.removed_claim(&id).await? else {
                return Err(not_found.into());
            };
            api.authorizer
                .authorize(
                    &caller,
                    Target::Resource(Some(&organization_id), domain_not_found),
                )
                .await?;
            return Err(domain_exists(&name).into());
        }
    };
    let actor = api
        .authorizer
        .authorize(
            &caller,
            Target::Resource(Some(&current.organization_id), domain_not_found),
        )
        .await?;
    let verified = api
        .domains
        .attempt_verification(actor, current, code)
        .await?;
    Ok(Response::new(pb::AttemptDomainVerificationResponse {
        domain: Some(verified.into()),
    }))
}

pub async fn lookup(
    api: &InvitationApi,
    request: Request<pb::LookupDomainRequest>,
) -> Answer<pb::LookupDomainResponse> {
    let caller = caller(&request)?;
    let name = domain_name("name", &request.get_ref().name);
    let name = all_valid!(name);
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    let owned = api.domains.lookup(&name).await?;
    Ok(Response::new(pb::LookupDomainResponse {
        domain: Some(owned.domain.into()),
        organization: Some(organization(owned.organization, actor.platform)),
    }))
}
