//! Organizations, memberships, roles, permissions and audit events at the
//! gRPC border.

use super::{mask_paths, metadata, metadata_struct, optional_timestamp, timestamp};
use crate::all_valid;
use crate::domain::events::AuditEvent;
use crate::domain::ids::{OrganizationId, PermissionKey, RoleKey, UserId};
use crate::domain::organizations::EXTERNAL_ID_MAX_LEN;
use crate::domain::organizations::{
    LifecycleState, Membership, MembershipChanges, NewMembership, NewOrganization, Organization,
    OrganizationChanges, OrganizationOrder,
};
use crate::domain::roles::{NewPermission, NewRole, Permission, Role, RoleChanges};
use crate::domain::types::{Slug, optional_text, text};
use crate::domain::{Error, FieldViolation};
use crate::proto::v1 as pb;

type Parsed<T> = Result<T, FieldViolation>;

/// An organization as a caller sees it: private metadata only for platform
/// principals.
pub fn organization(organization: Organization, show_private: bool) -> pb::Organization {
    pb::Organization {
        etag: organization.etag(),
        public_metadata: metadata_struct(&organization.public_metadata),
        private_metadata: show_private
            .then(|| metadata_struct(&organization.private_metadata))
            .flatten(),
        create_time: timestamp(organization.create_time),
        update_time: timestamp(organization.update_time),
        id: organization.id.into_string(),
        name: organization.name,
        slug: organization.slug,
        created_by: organization
            .created_by
            .map(UserId::into_string)
            .unwrap_or_default(),
        max_allowed_memberships: organization.max_allowed_memberships,
        members_count: organization.members_count,
        pending_invitations_count: organization.pending_invitations_count,
        state: organization_state(LifecycleState::of(organization.deactivate_time)) as i32,
        deactivate_time: optional_timestamp(organization.deactivate_time),
        external_id: organization.external_id.unwrap_or_default(),
    }
}

fn organization_state(state: LifecycleState) -> pb::OrganizationState {
    match state {
        LifecycleState::Active => pb::OrganizationState::Active,
        LifecycleState::Deactivated => pb::OrganizationState::Deactivated,
    }
}

fn membership_state(state: LifecycleState) -> pb::MembershipState {
    match state {
        LifecycleState::Active => pb::MembershipState::Active,
        LifecycleState::Deactivated => pb::MembershipState::Deactivated,
    }
}

/// The `state` filter of ListOrganizations; unspecified: any state.
pub fn organization_state_filter(field: &str, value: i32) -> Parsed<Option<LifecycleState>> {
    match pb::OrganizationState::try_from(value) {
        Ok(pb::OrganizationState::Unspecified) => Ok(None),
        Ok(pb::OrganizationState::Active) => Ok(Some(LifecycleState::Active)),
        Ok(pb::OrganizationState::Deactivated) => Ok(Some(LifecycleState::Deactivated)),
        Err(_) => Err(FieldViolation::new(field, "is not an OrganizationState")),
    }
}

/// The `state` filter of ListMemberships; unspecified: any state.
pub fn membership_state_filter(field: &str, value: i32) -> Parsed<Option<LifecycleState>> {
    match pb::MembershipState::try_from(value) {
        Ok(pb::MembershipState::Unspecified) => Ok(None),
        Ok(pb::MembershipState::Active) => Ok(Some(LifecycleState::Active)),
        Ok(pb::MembershipState::Deactivated) => Ok(Some(LifecycleState::Deactivated)),
        Err(_) => Err(FieldViolation::new(field, "is not a MembershipState")),
    }
}

/// A membership as a caller sees it: private metadata only for platform
/// principals.
pub fn membership(membership: Membership, show_private: bool) -> pb::Membership {
    pb::Membership {
        etag: membership.etag(),
        public_metadata: metadata_struct(&membership.public_metadata),
        private_metadata: show_private
            .then(|| metadata_struct(&membership.private_metadata))
            .flatten(),
        create_time: timestamp(membership.create_time),
        update_time: timestamp(membership.update_time),
        id: membership.id.into_string(),
        organization_id: membership.organization_id.into_string(),
        user_id: membership.user_id.into_string(),
        role: membership.role.into_string(),
        permissions: membership
            .permissions
            .into_iter()
            .map(PermissionKey::into_string)
            .collect(),
        organization_name: membership.organization_name,
        organization_slug: membership.organization_slug,
        state: membership_state(LifecycleState::of(membership.deactivate_time)) as i32,
        deactivate_time: optional_timestamp(membership.deactivate_time),
    }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        pb::Role {
            etag: role.etag(),
            id: role.id.into_string(),
            key: role.key.into_string(),
            name: role.name,
            description: role.description,
            permissions: role
                .permissions
                .into_iter()
                .map(PermissionKey::into_string)
                .collect(),
            built_in: role.built_in,
            create_time: timestamp(role.create_time),
            update_time: timestamp(role.update_time),
        }
    }
}

impl From<Permission> for pb::Permission {
    fn from(permission: Permission) -> Self {
        pb::Permission {
            id: permission.id.into_string(),
            key: permission.key.into_string(),
            name: permission.name,
            description: permission.description,
            system: permission.system,
            create_time: timestamp(permission.create_time),
        }
    }
}

impl From<AuditEvent> for pb::AuditEvent {
    fn from(event: AuditEvent) -> Self {
        pb::AuditEvent {
            id: event.id,
            action: event.action,
            actor: event.actor,
            on_behalf_of: event.on_behalf_of,
            organization_id: event.organization_id,
            resource_id: event.resource_id,
            request_id: event.request_id,
            create_time: timestamp(event.create_time),
        }
    }
}

pub fn organization_name(field: &str, value: &str) -> Parsed<String> {
    text(field, value, 1, 256)
}

fn max_memberships(field: &str, value: i32) -> Parsed<i32> {
    if value < 0 {
        Err(FieldViolation::new(field, "must be 0 (unlimited) or more"))
    } else {
        Ok(value)
    }
}

fn role_name(field: &str, value: &str) -> Parsed<String> {
    text(field, value, 1, 128)
}

fn description(field: &str, value: &str) -> Parsed<String> {
    text(field, value, 0, 1024)
}

/// A list of permission keys: each well-formed, no duplicates, at most 100,
/// sorted.
fn permission_keys(field: &str, values: &[String]) -> Parsed<Vec<PermissionKey>> {
    if values.len() > 100 {
        return Err(FieldViolation::new(
            field,
            "must have at most 100 permissions",
        ));
    }
    let mut keys: Vec<PermissionKey> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let key = PermissionKey::parse(&format!("{field}[{i}]"), value)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort();
    Ok(keys)
}

/// `order_by` of `ListOrganizations`.
pub fn order_by(field: &str, value: &str) -> Parsed<OrganizationOrder> {
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

/// A slug of a request: empty means none (derive one).
/// An organization's `external_id`: at most 128 characters after trimming,
/// no control characters; empty means none.
pub fn external_id(field: &str, value: &str) -> Parsed<Option<String>> {
    optional_text(field, value, EXTERNAL_ID_MAX_LEN)
}

fn optional_slug(field: &str, value: &str) -> Parsed<Option<Slug>> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        Slug::parse(field, value).map(Some)
    }
}

impl TryFrom<&pb::CreateOrganizationRequest> for NewOrganization {
    type Error = Error;

    fn try_from(req: &pb::CreateOrganizationRequest) -> Result<Self, Error> {
        let name = organization_name("name", &req.name);
        let slug = optional_slug("slug", &req.slug);
        let created_by = UserId::parse_optional("created_by", &req.created_by);
        let max = max_memberships("max_allowed_memberships", req.max_allowed_memberships);
        let public = metadata("public_metadata", req.public_metadata.as_ref());
        let private = metadata("private_metadata", req.private_metadata.as_ref());
        let external = external_id("external_id", &req.external_id);
        let (name, slug, created_by, max, public, private, external) =
            all_valid!(name, slug, created_by, max, public, private, external);
        Ok(NewOrganization {
            name,
            slug,
            external_id: external,
            created_by,
            max_allowed_memberships: max,
            public_metadata: public,
            private_metadata: private,
        })
    }
}

/// `UpdateOrganization`: the organization, its etag and the changes its mask
/// names.
pub fn organization_update(
    req: &pb::UpdateOrganizationRequest,
) -> Result<(OrganizationId, Option<String>, OrganizationChanges), Error> {
    let Some(organization) = &req.organization else {
        return Err(Error::invalid("organization", "is required"));
    };
    let id = OrganizationId::parse("organization.id", &organization.id);
    let paths = mask_paths(
        "update_mask",
        req.update_mask.as_ref(),
        &[
            "name",
            "slug",
            "external_id",
            "max_allowed_memberships",
            "public_metadata",
            "private_metadata",
        ],
    );
    let (id, paths) = all_valid!(id, paths);
    let has = |path: &str| paths.iter().any(|p| p == path);
    let name = has("name")
        .then(|| organization_name("organization.name", &organization.name))
        .transpose();
    let slug = has("slug")
        .then(|| Slug::parse("organization.slug", &organization.slug))
        .transpose();
    let external = has("external_id")
        .then(|| external_id("organization.external_id", &organization.external_id))
        .transpose();
    let max = has("max_allowed_memberships")
        .then(|| {
            max_memberships(
                "organization.max_allowed_memberships",
                organization.max_allowed_memberships,
            )
        })
        .transpose();
    let public = has("public_metadata")
        .then(|| {
            metadata(
                "organization.public_metadata",
                organization.public_metadata.as_ref(),
            )
        })
        .transpose();
    let private = has("private_metadata")
        .then(|| {
            metadata(
                "organization.private_metadata",
                organization.private_metadata.as_ref(),
            )
        })
        .transpose();
    let (name, slug, external, max, public, private) =
        all_valid!(name, slug, external, max, public, private);
    Ok((
        id,
        super::super::etag(&organization.etag),
        OrganizationChanges {
            name,
            external_id: external,
            slug,
            max_allowed_memberships: max,
            public_metadata: public,
            private_metadata: private,
        },
    ))
}

impl TryFrom<&pb::CreateMembershipRequest> for NewMembership {
    type Error = Error;

    fn try_from(req: &pb::CreateMembershipRequest) -> Result<Self, Error> {
        let org = OrganizationId::parse("organization_id", &req.organization_id);
        let user = UserId::parse("user_id", &req.user_id);
        let role = RoleKey::parse_optional("role", &req.role);
        let public = metadata("public_metadata", req.public_metadata.as_ref());
        let private = metadata("private_metadata", req.private_metadata.as_ref());
        let (org, user, role, public, private) = all_valid!(org, user, role, public, private);
        Ok(NewMembership {
            organization_id: org,
            user_id: user,
            role,
            public_metadata: public,
            private_metadata: private,
        })
    }
}

/// `UpdateMembership`: the membership's address, its etag and the changes its
/// mask names.
pub fn membership_update(
    req: &pb::UpdateMembershipRequest,
) -> Result<(OrganizationId, UserId, Option<String>, MembershipChanges), Error> {
    let Some(membership) = &req.membership else {
        return Err(Error::invalid("membership", "is required"));
    };
    let org = OrganizationId::parse("membership.organization_id", &membership.organization_id);
    let user = UserId::parse("membership.user_id", &membership.user_id);
    let paths = mask_paths(
        "update_mask",
        req.update_mask.as_ref(),
        &["role", "public_metadata", "private_metadata"],
    );
    let (org, user, paths) = all_valid!(org, user, paths);
    let has = |path: &str| paths.iter().any(|p| p == path);
    let role = has("role")
        .then(|| RoleKey::parse("membership.role", &membership.role))
        .transpose();
    let public = has("public_metadata")
        .then(|| {
            metadata(
                "membership.public_metadata",
                membership.public_metadata.as_ref(),
            )
        })
        .transpose();
    let private = has("private_metadata")
        .then(|| {
            metadata(
                "membership.private_metadata",
                membership.private_metadata.as_ref(),
            )
        })
        .transpose();
    let (role, public, private) = all_valid!(role, public, private);
    Ok((
        org,
        user,
        super::super::etag(&membership.etag),
        MembershipChanges {
            role,
            public_metadata: public,
            private_metadata: private,
        },
    ))
}

impl TryFrom<&pb::CreateRoleRequest> for NewRole {
    type Error = Error;

    fn try_from(req: &pb::CreateRoleRequest) -> Result<Self, Error> {
        let key = RoleKey::parse("key", &req.key);
        let name = role_name("name", &req.name);
        let desc = description("description", &req.description);
        let permissions = permission_keys("permissions", &req.permissions);
        let (key, name, desc, permissions) = all_valid!(key, name, desc, permissions);
        Ok(NewRole {
            key,
            name,
            description: desc,
            permissions,
        })
    }
}

/// `UpdateRole`: the role's key, its etag and the changes its mask names.
pub fn role_update(
    req: &pb::UpdateRoleRequest,
) -> Result<(RoleKey, Option<String>, RoleChanges), Error> {
    let Some(role) = &req.role else {
        return Err(Error::invalid("role", "is required"));
    };
    let key = RoleKey::parse("role.key", &role.key);
    let paths = mask_paths(
        "update_mask",
        req.update_mask.as_ref(),
        &["name", "description", "permissions"],
    );
    let (key, paths) = all_valid!(key, paths);
    let has = |path: &str| paths.iter().any(|p| p == path);
    let name = has("name")
        .then(|| role_name("role.name", &role.name))
        .transpose();
    let desc = has("description")
        .then(|| description("role.description", &role.description))
        .transpose();
    let permissions = has("permissions")
        .then(|| permission_keys("role.permissions", &role.permissions))
        .transpose();
    let (name, desc, permissions) = all_valid!(name, desc, permissions);
    Ok((
        key,
        super::super::etag(&role.etag),
        RoleChanges {
            name,
            description: desc,
            permissions,
        },
    ))
}

impl TryFrom<&pb::CreatePermissionRequest> for NewPermission {
    type Error = Error;

    fn try_from(req: &pb::CreatePermissionRequest) -> Result<Self, Error> {
        let key = PermissionKey::parse("key", &req.key).and_then(|key| {
            if key.is_system() {
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
        let (key, name, desc) = all_valid!(key, name, desc);
        Ok(NewPermission {
            key,
            name,
            description: desc,
        })
    }
}
