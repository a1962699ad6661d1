//! The organization RPCs.

use tonic::{Request, Response};

use super::{Answer, OrganizationApi};
use crate::all_valid;
use crate::auth::{Reader, Target};
use crate::domain::Error;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::organizations::{
    MetadataPatch, NewOrganization, OrganizationFilter, OrganizationLookup,
};
use crate::domain::types::{Slug, optional_text, page_size};
use crate::grpc::convert::organizations::{self as convert, order_by};
use crate::grpc::convert::{clamp, metadata_patch};
use crate::grpc::{caller, etag, idempotency, with_key};
use crate::proto::v1 as pb;

pub async fn create(
    api: &OrganizationApi,
    request: Request<pb::CreateOrganizationRequest>,
) -> Answer<pb::CreateOrganizationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let (new, key) = with_key(
        NewOrganization::try_from(&req),
        idempotency(&req, &req.request_id),
    )?;
    // An end user creates for itself; an `orgs:admin` principal on behalf of
    // `created_by` (or for nobody), and is never added itself.
    let (actor, created_by) = api.authorizer.subject(&caller, new.created_by.clone())?;
    let show_private = actor.platform;
    let created = api
        .organizations
        .create(
            actor,
            NewOrganization { created_by, ..new },
            key,
            req.validate_only,
        )
        .await?;
    Ok(Response::new(pb::CreateOrganizationResponse {
        organization: Some(convert::organization(created.organization, show_private)),
        membership: created
            .membership
            .map(|m| convert::membership(m, show_private)),
        billing_impact: Some(created.billing_impact.into()),
    }))
}

pub async fn get(
    api: &OrganizationApi,
    request: Request<pb::GetOrganizationRequest>,
) -> Answer<pb::GetOrganizationResponse> {
    use pb::get_organization_request::Lookup;
    let caller = caller(&request)?;
    let lookup = match request.into_inner().lookup {
        Some(Lookup::OrganizationId(id)) => OrganizationLookup::Id(
            OrganizationId::parse("organization_id", &id)
                .map_err(|v| Error::InvalidArgument(vec![v]))?,
        ),
        Some(Lookup::Slug(slug)) => OrganizationLookup::Slug(
            Slug::parse("slug", &slug).map_err(|v| Error::InvalidArgument(vec![v]))?,
        ),
        Some(Lookup::ExternalId(external_id)) => {
            match convert::external_id("external_id", &external_id)
                .map_err(|v| Error::InvalidArgument(vec![v]))?
            {
                Some(external_id) => OrganizationLookup::ExternalId(external_id),
                None => return Err(Error::invalid("external_id", "is required").into()),
            }
        }
        None => {
            return Err(Error::invalid(
                "organization_id",
                "organization_id, slug or external_id is required",
            )
            .into());
        }
    };
    // Platform principals read any organization; end users only their own,
    // and non-members learn nothing, not even whether it exists. By id the
    // answer comes from the access cache when it can (at most one query
    // otherwise); by slug it is one query.
    let (organization, show_private) = match api.authorizer.reader(&caller)? {
        Reader::Platform(actor) => (api.organizations.get(&lookup).await?, actor.platform),
        Reader::Member(actor) => (
            api.organizations.get_as_member(&lookup, &actor.sub).await?,
            actor.platform,
        ),
    };
    Ok(Response::new(pb::GetOrganizationResponse {
        organization: Some(convert::organization(organization, show_private)),
    }))
}

/// The most ids `BatchGetOrganizations` takes.
const BATCH_GET_MAX: usize = 100;

pub async fn batch_get(
    api: &OrganizationApi,
    request: Request<pb::BatchGetOrganizationsRequest>,
) -> Answer<pb::BatchGetOrganizationsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    if req.organization_ids.is_empty() || req.organization_ids.len() > BATCH_GET_MAX {
        return Err(Error::invalid(
            "organization_ids",
            format!("must name 1 to {BATCH_GET_MAX} organizations"),
        )
        .into());
    }
    let mut ids = Vec::with_capacity(req.organization_ids.len());
    let mut violations = Vec::new();
    for (index, id) in req.organization_ids.iter().enumerate() {
        match OrganizationId::parse(&format!("organization_ids[{index}]"), id) {
            Ok(id) => ids.push(id),
            Err(violation) => violations.push(violation),
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations).into());
    }
    // As GetOrganization: platform principals read any organization, end
    // users only their own (one query either way); the first id not found
    // is NOT_FOUND, whether it does not exist or is not the caller's.
    let (organizations, show_private) = match api.authorizer.reader(&caller)? {
        Reader::Platform(actor) => (
            api.organizations.batch_get(&ids, None).await?,
            actor.platform,
        ),
        Reader::Member(actor) => (
            api.organizations
                .batch_get(&ids, Some(actor.sub.as_str()))
                .await?,
            actor.platform,
        ),
    };
    Ok(Response::new(pb::BatchGetOrganizationsResponse {
        organizations: organizations
            .into_iter()
            .map(|organization| convert::organization(organization, show_private))
            .collect(),
    }))
}

pub async fn list(
    api: &OrganizationApi,
    request: Request<pb::ListOrganizationsRequest>,
) -> Answer<pb::ListOrganizationsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let size = page_size("page_size", req.page_size);
    let query = optional_text("query", &req.query, 256);
    let member = UserId::parse_optional("user_id", &req.user_id);
    let order = order_by("order_by", &req.order_by);
    let state = convert::organization_state_filter("state", req.state);
    let (size, query, member, order, state) = all_valid!(size, query, member, order, state);
    // End users see only their own organizations.
    let (actor, member) = api.authorizer.subject(&caller, member)?;
    let page = api
        .organizations
        .list(
            OrganizationFilter {
                query,
                member,
                state,
            },
            order,
            size,
            &req.page_token,
        )
        .await?;
    Ok(Response::new(pb::ListOrganizationsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        organizations: page
            .items
            .into_iter()
            .map(|o| convert::organization(o, actor.platform))
            .collect(),
    }))
}

pub async fn update(
    api: &OrganizationApi,
    request: Request<pb::UpdateOrganizationRequest>,
) -> Answer<pb::UpdateOrganizationResponse> {
    let caller = caller(&request)?;
    let (id, etag, changes) = convert::organization_update(request.get_ref())?;
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&id, None))
        .await?;
    let show_private = actor.platform;
    let updated = api.organizations.update(actor, id, etag, changes).await?;
    Ok(Response::new(pb::UpdateOrganizationResponse {
        organization: Some(convert::organization(updated, show_private)),
    }))
}

pub async fn merge_metadata(
    api: &OrganizationApi,
    request: Request<pb::UpdateOrganizationMetadataRequest>,
) -> Answer<pb::UpdateOrganizationMetadataResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = OrganizationId::parse("organization_id", &req.organization_id);
    let public = metadata_patch("public_metadata", req.public_metadata.as_ref());
    let private = metadata_patch("private_metadata", req.private_metadata.as_ref());
    let (id, public, private) = all_valid!(id, public, private);
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&id, None))
        .await?;
    let show_private = actor.platform;
    let patch = MetadataPatch {
        public_metadata: public,
        private_metadata: private,
    };
    let updated = api
        .organizations
        .merge_metadata(actor, id, etag(&req.etag), patch)
        .await?;
    Ok(Response::new(pb::UpdateOrganizationMetadataResponse {
        organization: Some(convert::organization(updated, show_private)),
    }))
}

pub async fn delete(
    api: &OrganizationApi,
    request: Request<pb::DeleteOrganizationRequest>,
) -> Answer<pb::DeleteOrganizationResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let id = OrganizationId::parse("organization_id", &req.organization_id);
    let id = all_valid!(id);
    let actor = api
        .authorizer
        .authorize(&caller, Target::Organization(&id, None))
        .await?;
    api.organizations.delete(actor, id, etag(&req.etag)).await?;
    Ok(Response::new(pb::DeleteOrganizationResponse {}))
}
