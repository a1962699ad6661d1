//! `orgs.v1.OrganizationService`.

use tonic::{Request, Response, Status};

use super::convert::{mask_paths, metadata, metadata_patch, metadata_struct, timestamp};
use super::{authorize_in_organization, billing_impact_to_proto, caller, etag, idempotency};
use crate::all_valid;
use crate::domain::ids;
use crate::domain::types::{
    self, Slug, page_size, permission_key, resource_id, role_key, text, user_id,
};
use crate::domain::{Error, FieldViolation};
use crate::events::EventRow;
use crate::proto::v1::{self as pb, organization_service_server::OrganizationService};
use crate::service::Services;
use crate::service::organizations::{
    MembershipChanges, MembershipRecord, NewMembership, NewOrganization, OrganizationChanges,
    OrganizationLookup,
};
use crate::service::roles::{NewPermission, NewRole, RoleChanges};
use crate::store::repo::memberships::MembershipFilter;
use crate::store::repo::organizations::{OrganizationFilter, OrganizationOrder, OrganizationRow};
use crate::store::repo::roles::{PermissionRow, RoleRecord};

pub struct OrganizationApi {
    services: Services,
}

impl OrganizationApi {
    pub fn new(services: Services) -> Self {
        OrganizationApi { services }
    }
}

pub fn organization_to_proto(row: OrganizationRow, show_private: bool) -> pb::Organization {
    pb::Organization {
        etag: row.etag(),
        id: row.id,
        name: row.name,
        slug: row.slug,
        created_by: row.created_by.unwrap_or_default(),
        max_allowed_memberships: row.max_allowed_memberships,
        members_count: row.members_count,
        pending_invitations_count: row.pending_invitations_count,
        public_metadata: metadata_struct(&row.public_metadata),
        private_metadata: if show_private {
            metadata_struct(&row.private_metadata)
        } else {
            None
        },
        create_time: timestamp(row.create_time),
        update_time: timestamp(row.update_time),
    }
}

pub fn membership_to_proto(record: MembershipRecord, show_private: bool) -> pb::Membership {
    let row = record.row;
    pb::Membership {
        etag: row.etag(),
        id: row.id,
        organization_id: row.organization_id,
        user_id: row.user_id,
        role: row.role,
        permissions: record.permissions,
        public_metadata: metadata_struct(&row.public_metadata),
        private_metadata: if show_private {
            metadata_struct(&row.private_metadata)
        } else {
            None
        },
        create_time: timestamp(row.create_time),
        update_time: timestamp(row.update_time),
    }
}

fn role_to_proto(role: RoleRecord) -> pb::Role {
    pb::Role {
        etag: role.etag(),
        id: role.id,
        key: role.key,
        name: role.name,
        description: role.description,
        permissions: role.permissions,
        built_in: role.built_in,
        create_time: timestamp(role.create_time),
        update_time: timestamp(role.update_time),
    }
}

fn permission_to_proto(row: PermissionRow) -> pb::Permission {
    pb::Permission {
        id: row.id,
        key: row.key,
        name: row.name,
        description: row.description,
        system: row.system,
        create_time: timestamp(row.create_time),
    }
}

fn event_to_proto(row: EventRow) -> pb::AuditEvent {
    pb::AuditEvent {
        id: row.id,
        action: row.action,
        actor: row.actor,
        on_behalf_of: row.on_behalf_of,
        organization_id: row.organization_id,
        resource_id: row.resource_id,
        request_id: row.request_id,
        create_time: timestamp(row.create_time),
    }
}

fn organization_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    resource_id(field, value, ids::ORGANIZATION)
}

fn organization_name(field: &str, value: &str) -> Result<String, FieldViolation> {
    text(field, value, 1, 256)
}

fn max_memberships(field: &str, value: i32) -> Result<i32, FieldViolation> {
    if value < 0 {
        Err(FieldViolation::new(field, "must be 0 (unlimited) or more"))
    } else {
        Ok(value)
    }
}

fn role_name(field: &str, value: &str) -> Result<String, FieldViolation> {
    text(field, value, 1, 128)
}

fn description(field: &str, value: &str) -> Result<String, FieldViolation> {
    text(field, value, 0, 1024)
}

/// A list of permission keys: each well-formed, no duplicates, at most 100.
fn permission_keys(field: &str, values: &[String]) -> Result<Vec<String>, FieldViolation> {
    if values.len() > 100 {
        return Err(FieldViolation::new(
            field,
            "must have at most 100 permissions",
        ));
    }
    let mut keys: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let key = permission_key(&format!("{field}[{i}]"), value)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort();
    Ok(keys)
}

fn order_by(field: &str, value: &str) -> Result<OrganizationOrder, FieldViolation> {
    let normalized = value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    match normalized.as_str() {
        "" | "create_time" | "create_time asc" => Ok(OrganizationOrder::CreateTime),
        "create_time desc" => Ok(OrganizationOrder::CreateTimeDesc),
        "name" | "name asc" => Ok(OrganizationOrder::Name),
        "members_count desc" => Ok(OrganizationOrder::MembersCountDesc),
        _ => Err(FieldViolation::new(
            field,
            "must be one of: name, create_time, create_time desc, members_count desc",
        )),
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::CreateOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let name = organization_name("name", &req.name);
        let slug = if req.slug.trim().is_empty() {
            Ok(None)
        } else {
            Slug::parse("slug", &req.slug).map(Some)
        };
        let created_by = types::optional_user_id("created_by", &req.created_by);
        let max = max_memberships("max_allowed_memberships", req.max_allowed_memberships);
        let public = metadata("public_metadata", req.public_metadata.as_ref());
        let private = metadata("private_metadata", req.private_metadata.as_ref());
        let key = idempotency(&req, &req.request_id);
        let (name, slug, created_by, max, public, private, key) =
            all_valid!(name, slug, created_by, max, public, private, key);
        let actor = caller.authorize(None)?;
        let is_admin = caller
            .principal
            .has_scope(crate::auth::token::scopes::ORGS_ADMIN);
        // An end user creates for itself; an `orgs:admin` principal on behalf of
        // `created_by` (or for nobody), and is never added itself.
        let created_by = if is_admin {
            created_by
        } else {
            match created_by {
                Some(user) if user != caller.principal.sub => {
                    return Err(Error::permission_denied(
                        "an end user may create organizations only for itself",
                    )
                    .into());
                }
                _ => Some(caller.principal.sub.clone()),
            }
        };
        let actor = crate::domain::Actor {
            platform: is_admin,
            ..actor
        };
        let created = self
            .services
            .create_organization(
                &actor,
                NewOrganization {
                    name,
                    slug,
                    created_by,
                    max_allowed_memberships: max,
                    public_metadata: public,
                    private_metadata: private,
                },
                key.as_ref(),
                req.validate_only,
            )
            .await?;
        let show_private = caller.principal.is_platform();
        Ok(Response::new(pb::CreateOrganizationResponse {
            organization: Some(organization_to_proto(created.organization, show_private)),
            membership: created
                .membership
                .map(|m| membership_to_proto(m, show_private)),
            billing_impact: Some(billing_impact_to_proto(
                &self.services,
                created.billing_impact,
            )),
        }))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let lookup = match request.into_inner().lookup {
            Some(pb::get_organization_request::Lookup::OrganizationId(id)) => {
                OrganizationLookup::Id(
                    organization_id("organization_id", &id)
                        .map_err(|v| Error::InvalidArgument(vec![v]))?,
                )
            }
            Some(pb::get_organization_request::Lookup::Slug(slug)) => OrganizationLookup::Slug(
                Slug::parse("slug", &slug)
                    .map_err(|v| Error::InvalidArgument(vec![v]))?
                    .as_str()
                    .to_string(),
            ),
            None => {
                return Err(Error::invalid(
                    "organization_id",
                    "organization_id or slug is required",
                )
                .into());
            }
        };
        // Platform principals read any organization; end users only their own,
        // and non-members learn nothing, not even whether it exists. By id the
        // answer comes from the access cache when it can (at most one query
        // otherwise); by slug it is one query.
        let organization = if caller.scope_grants() {
            self.services.read_organization(&lookup).await?
        } else {
            self.services
                .read_organization_as_member(&lookup, &caller.principal.sub)
                .await?
        };
        if !caller.scope_grants() {
            // A member: the rule needs no permission beyond membership.
            caller.authorize_in_organization(None, Some(&[]))?;
        }
        Ok(Response::new(pb::GetOrganizationResponse {
            organization: Some(organization_to_proto(
                organization,
                caller.principal.is_platform(),
            )),
        }))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let size = page_size("page_size", req.page_size);
        let query = types::optional_text("query", &req.query, 256);
        let member = types::optional_user_id("user_id", &req.user_id);
        let order = order_by("order_by", &req.order_by);
        let (size, query, member, order) = all_valid!(size, query, member, order);
        caller.authorize(None)?;
        let platform = caller.principal.is_platform();
        let member = if platform {
            member
        } else {
            match member {
                Some(user) if user != caller.principal.sub => {
                    return Err(Error::permission_denied(
                        "an end user may list only its own organizations",
                    )
                    .into());
                }
                _ => Some(caller.principal.sub.clone()),
            }
        };
        let page = self
            .services
            .list_organizations(
                OrganizationFilter { query, member },
                order,
                size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: page
                .items
                .into_iter()
                .map(|o| organization_to_proto(o, platform))
                .collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::UpdateOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let Some(organization) = req.organization else {
            return Err(Error::invalid("organization", "is required").into());
        };
        let id = organization_id("organization.id", &organization.id);
        let paths = mask_paths(
            "update_mask",
            req.update_mask.as_ref(),
            &[
                "name",
                "slug",
                "max_allowed_memberships",
                "public_metadata",
                "private_metadata",
            ],
        );
        let (id, paths) = all_valid!(id, paths);
        let has = |path: &str| paths.iter().any(|p| p == path);
        let name = if has("name") {
            organization_name("organization.name", &organization.name).map(Some)
        } else {
            Ok(None)
        };
        let slug = if has("slug") {
            Slug::parse("organization.slug", &organization.slug).map(Some)
        } else {
            Ok(None)
        };
        let max = if has("max_allowed_memberships") {
            max_memberships(
                "organization.max_allowed_memberships",
                organization.max_allowed_memberships,
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let public = if has("public_metadata") {
            metadata(
                "organization.public_metadata",
                organization.public_metadata.as_ref(),
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let private = if has("private_metadata") {
            metadata(
                "organization.private_metadata",
                organization.private_metadata.as_ref(),
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let (name, slug, max, public, private) = all_valid!(name, slug, max, public, private);
        let actor = authorize_in_organization(&self.services, &caller, &id, None).await?;
        let updated = self
            .services
            .update_organization(
                &actor,
                &id,
                etag(&organization.etag),
                OrganizationChanges {
                    name,
                    slug,
                    max_allowed_memberships: max,
                    public_metadata: public,
                    private_metadata: private,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateOrganizationResponse {
            organization: Some(organization_to_proto(
                updated,
                caller.principal.is_platform(),
            )),
        }))
    }

    async fn update_organization_metadata(
        &self,
        request: Request<pb::UpdateOrganizationMetadataRequest>,
    ) -> Result<Response<pb::UpdateOrganizationMetadataResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let id = organization_id("organization_id", &req.organization_id);
        let public = metadata_patch("public_metadata", req.public_metadata.as_ref());
        let private = metadata_patch("private_metadata", req.private_metadata.as_ref());
        let (id, public, private) = all_valid!(id, public, private);
        let actor = authorize_in_organization(&self.services, &caller, &id, None).await?;
        let updated = self
            .services
            .merge_organization_metadata(&actor, &id, etag(&req.etag), public, private)
            .await?;
        Ok(Response::new(pb::UpdateOrganizationMetadataResponse {
            organization: Some(organization_to_proto(
                updated,
                caller.principal.is_platform(),
            )),
        }))
    }

    async fn delete_organization(
        &self,
        request: Request<pb::DeleteOrganizationRequest>,
    ) -> Result<Response<pb::DeleteOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let id = organization_id("organization_id", &req.organization_id);
        let id = all_valid!(id);
        let actor = authorize_in_organization(&self.services, &caller, &id, None).await?;
        self.services
            .delete_organization(&actor, &id, etag(&req.etag))
            .await?;
        Ok(Response::new(pb::DeleteOrganizationResponse {}))
    }

    async fn create_membership(
        &self,
        request: Request<pb::CreateMembershipRequest>,
    ) -> Result<Response<pb::CreateMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let user = user_id("user_id", &req.user_id);
        let role = if req.role.trim().is_empty() {
            Ok(None)
        } else {
            role_key("role", &req.role).map(Some)
        };
        let public = metadata("public_metadata", req.public_metadata.as_ref());
        let private = metadata("private_metadata", req.private_metadata.as_ref());
        let key = idempotency(&req, &req.request_id);
        let (org, user, role, public, private, key) =
            all_valid!(org, user, role, public, private, key);
        let actor = authorize_in_organization(&self.services, &caller, &org, None).await?;
        let added = self
            .services
            .create_membership(
                &actor,
                NewMembership {
                    organization_id: org,
                    user_id: user,
                    role,
                    public_metadata: public,
                    private_metadata: private,
                },
                key.as_ref(),
                req.validate_only,
            )
            .await?;
        Ok(Response::new(pb::CreateMembershipResponse {
            membership: Some(membership_to_proto(
                added.membership,
                caller.principal.is_platform(),
            )),
            billing_impact: Some(billing_impact_to_proto(
                &self.services,
                added.billing_impact,
            )),
        }))
    }

    async fn list_memberships(
        &self,
        request: Request<pb::ListMembershipsRequest>,
    ) -> Result<Response<pb::ListMembershipsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = if req.organization_id.trim().is_empty() {
            Ok(None)
        } else {
            organization_id("organization_id", &req.organization_id).map(Some)
        };
        let user = types::optional_user_id("user_id", &req.user_id);
        let role = if req.role.trim().is_empty() {
            Ok(None)
        } else {
            role_key("role", &req.role).map(Some)
        };
        let size = page_size("page_size", req.page_size);
        let (org, user, role, size) = all_valid!(org, user, role, size);
        match (&org, &user) {
            (None, None) => {
                return Err(Error::invalid(
                    "organization_id",
                    "organization_id or user_id is required",
                )
                .into());
            }
            (Some(org), _) => {
                authorize_in_organization(&self.services, &caller, org, user.as_deref()).await?;
            }
            (None, Some(user)) => {
                // A user may list its own memberships; otherwise a platform scope is needed.
                if !caller.scope_grants() && *user != caller.principal.sub {
                    return Err(caller.denied().into());
                }
            }
        }
        let show_private = caller.principal.is_platform();
        let page = self
            .services
            .list_memberships(
                MembershipFilter {
                    organization_id: org,
                    user_id: user,
                    role,
                },
                size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListMembershipsResponse {
            memberships: page
                .items
                .into_iter()
                .map(|m| membership_to_proto(m, show_private))
                .collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn update_membership(
        &self,
        request: Request<pb::UpdateMembershipRequest>,
    ) -> Result<Response<pb::UpdateMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let Some(membership) = req.membership else {
            return Err(Error::invalid("membership", "is required").into());
        };
        let org = organization_id("membership.organization_id", &membership.organization_id);
        let user = user_id("membership.user_id", &membership.user_id);
        let paths = mask_paths(
            "update_mask",
            req.update_mask.as_ref(),
            &["role", "public_metadata", "private_metadata"],
        );
        let (org, user, paths) = all_valid!(org, user, paths);
        let has = |path: &str| paths.iter().any(|p| p == path);
        let role = if has("role") {
            role_key("membership.role", &membership.role).map(Some)
        } else {
            Ok(None)
        };
        let public = if has("public_metadata") {
            metadata(
                "membership.public_metadata",
                membership.public_metadata.as_ref(),
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let private = if has("private_metadata") {
            metadata(
                "membership.private_metadata",
                membership.private_metadata.as_ref(),
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let (role, public, private) = all_valid!(role, public, private);
        let actor = authorize_in_organization(&self.services, &caller, &org, None).await?;
        let updated = self
            .services
            .update_membership(
                &actor,
                &org,
                &user,
                etag(&membership.etag),
                MembershipChanges {
                    role,
                    public_metadata: public,
                    private_metadata: private,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateMembershipResponse {
            membership: Some(membership_to_proto(updated, caller.principal.is_platform())),
        }))
    }

    async fn delete_membership(
        &self,
        request: Request<pb::DeleteMembershipRequest>,
    ) -> Result<Response<pb::DeleteMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = organization_id("organization_id", &req.organization_id);
        let user = user_id("user_id", &req.user_id);
        let (org, user) = all_valid!(org, user);
        let actor = authorize_in_organization(&self.services, &caller, &org, Some(&user)).await?;
        self.services
            .delete_membership(&actor, &org, &user, etag(&req.etag))
            .await?;
        Ok(Response::new(pb::DeleteMembershipResponse {}))
    }

    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::CreateRoleResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let key = role_key("key", &req.key);
        let name = role_name("name", &req.name);
        let desc = description("description", &req.description);
        let permissions = permission_keys("permissions", &req.permissions);
        let idem = idempotency(&req, &req.request_id);
        let (key, name, desc, permissions, idem) = all_valid!(key, name, desc, permissions, idem);
        let actor = caller.authorize(None)?;
        let role = self
            .services
            .create_role(
                &actor,
                NewRole {
                    key,
                    name,
                    description: desc,
                    permissions,
                },
                idem.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::CreateRoleResponse {
            role: Some(role_to_proto(role)),
        }))
    }

    async fn get_role(
        &self,
        request: Request<pb::GetRoleRequest>,
    ) -> Result<Response<pb::GetRoleResponse>, Status> {
        let caller = caller(&request)?;
        let key = role_key("key", &request.get_ref().key);
        let key = all_valid!(key);
        caller.authorize(None)?;
        let role = self.services.get_role(&key).await?;
        Ok(Response::new(pb::GetRoleResponse {
            role: Some(role_to_proto(role)),
        }))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let size = page_size("page_size", req.page_size);
        let size = all_valid!(size);
        caller.authorize(None)?;
        let page = self.services.list_roles(size, &req.page_token).await?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: page.items.into_iter().map(role_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn update_role(
        &self,
        request: Request<pb::UpdateRoleRequest>,
    ) -> Result<Response<pb::UpdateRoleResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let Some(role) = req.role else {
            return Err(Error::invalid("role", "is required").into());
        };
        let key = role_key("role.key", &role.key);
        let paths = mask_paths(
            "update_mask",
            req.update_mask.as_ref(),
            &["name", "description", "permissions"],
        );
        let (key, paths) = all_valid!(key, paths);
        let has = |path: &str| paths.iter().any(|p| p == path);
        let name = if has("name") {
            role_name("role.name", &role.name).map(Some)
        } else {
            Ok(None)
        };
        let desc = if has("description") {
            description("role.description", &role.description).map(Some)
        } else {
            Ok(None)
        };
        let permissions = if has("permissions") {
            permission_keys("role.permissions", &role.permissions).map(Some)
        } else {
            Ok(None)
        };
        let (name, desc, permissions) = all_valid!(name, desc, permissions);
        let actor = caller.authorize(None)?;
        let updated = self
            .services
            .update_role(
                &actor,
                &key,
                etag(&role.etag),
                RoleChanges {
                    name,
                    description: desc,
                    permissions,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateRoleResponse {
            role: Some(role_to_proto(updated)),
        }))
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        let caller = caller(&request)?;
        let key = role_key("key", &request.get_ref().key);
        let key = all_valid!(key);
        let actor = caller.authorize(None)?;
        self.services.delete_role(&actor, &key).await?;
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }

    async fn create_permission(
        &self,
        request: Request<pb::CreatePermissionRequest>,
    ) -> Result<Response<pb::CreatePermissionResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let key = permission_key("key", &req.key).and_then(|key| {
            if crate::domain::roles::is_system_permission(&key) {
                Err(FieldViolation::new(
                    "key",
                    "the prefix org:sys_ is reserved for system permissions",
                ))
            } else {
                Ok(key)
            }
        });
        let name = role_name("name", &req.name);
        let desc = description("description", &req.description);
        let idem = idempotency(&req, &req.request_id);
        let (key, name, desc, idem) = all_valid!(key, name, desc, idem);
        let actor = caller.authorize(None)?;
        let permission = self
            .services
            .create_permission(
                &actor,
                NewPermission {
                    key,
                    name,
                    description: desc,
                },
                idem.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::CreatePermissionResponse {
            permission: Some(permission_to_proto(permission)),
        }))
    }

    async fn list_permissions(
        &self,
        request: Request<pb::ListPermissionsRequest>,
    ) -> Result<Response<pb::ListPermissionsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let size = page_size("page_size", req.page_size);
        let size = all_valid!(size);
        caller.authorize(None)?;
        let page = self
            .services
            .list_permissions(size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListPermissionsResponse {
            permissions: page.items.into_iter().map(permission_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }

    async fn delete_permission(
        &self,
        request: Request<pb::DeletePermissionRequest>,
    ) -> Result<Response<pb::DeletePermissionResponse>, Status> {
        let caller = caller(&request)?;
        let key = permission_key("key", &request.get_ref().key);
        let key = all_valid!(key);
        let actor = caller.authorize(None)?;
        self.services.delete_permission(&actor, &key).await?;
        Ok(Response::new(pb::DeletePermissionResponse {}))
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let org = organization_id("organization_id", &req.organization_id);
        let user = user_id("user_id", &req.user_id);
        let permission = permission_key("permission", &req.permission);
        let (org, user, permission) = all_valid!(org, user, permission);
        caller.authorize(Some(&user))?;
        let (allowed, role) = self
            .services
            .check_permission(&org, &user, &permission)
            .await?;
        Ok(Response::new(pb::CheckPermissionResponse { allowed, role }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let org = if req.organization_id.trim().is_empty() {
            Ok(None)
        } else {
            organization_id("organization_id", &req.organization_id).map(Some)
        };
        let actor = types::optional_user_id("actor", &req.actor);
        let size = page_size("page_size", req.page_size);
        let (org, actor, size) = all_valid!(org, actor, size);
        match &org {
            Some(org) => {
                authorize_in_organization(&self.services, &caller, org, None).await?;
            }
            None if caller.scope_grants() => {}
            None => {
                return Err(Error::invalid(
                    "organization_id",
                    "is required without the orgs:read or orgs:admin scope",
                )
                .into());
            }
        }
        let page = self
            .services
            .list_audit_events(org.as_deref(), actor.as_deref(), size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: page.items.into_iter().map(event_to_proto).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total_size as i32,
        }))
    }
}
