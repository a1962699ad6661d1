//! Organizations and memberships as the use cases hand them out, and what the
//! calls that change them take.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::billing::BillingImpact;
use super::ids::{MembershipId, OrganizationId, PermissionKey, RoleKey, UserId};
use super::time::Micros;
use super::types::{Metadata, Slug};

/// The etag of a revision: opaque to clients.
pub fn etag(revision: i64) -> String {
    format!("\"r{revision}\"")
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub slug: String,
    pub created_by: Option<UserId>,
    /// 0 = unlimited.
    pub max_allowed_memberships: i32,
    pub members_count: i32,
    pub pending_invitations_count: i32,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
    pub create_time: Micros,
    pub update_time: Micros,
    /// Bumped by every change; the etag is made from it.
    pub revision: i64,
    /// The organization's id in another system; unique when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When it was deactivated; `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivate_time: Option<Micros>,
}

/// The most characters of an `external_id`.
pub const EXTERNAL_ID_MAX_LEN: usize = 128;

impl Organization {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }

    pub fn state(&self) -> LifecycleState {
        LifecycleState::of(self.deactivate_time)
    }
}

/// Whether an organization or a membership is in use: a deactivated one keeps
/// everything but grants nothing and is not billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleState {
    Active,
    Deactivated,
}

impl LifecycleState {
    /// The state of a resource deactivated at `deactivate_time`, if ever.
    pub fn of(deactivate_time: Option<Micros>) -> Self {
        match deactivate_time {
            Some(_) => LifecycleState::Deactivated,
            None => LifecycleState::Active,
        }
    }
}

/// A membership with the permissions its role grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub id: MembershipId,
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub role: RoleKey,
    pub permissions: Vec<PermissionKey>,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
    pub create_time: Micros,
    pub update_time: Micros,
    pub revision: i64,
    /// The organization's name and slug when the membership was read, for an
    /// organization switcher.
    #[serde(default)]
    pub organization_name: String,
    #[serde(default)]
    pub organization_slug: String,
    /// When it was deactivated; `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivate_time: Option<Micros>,
}

impl Membership {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }

    pub fn state(&self) -> LifecycleState {
        LifecycleState::of(self.deactivate_time)
    }
}

/// What `CreateOrganization` takes, validated.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub name: String,
    /// `None`: derived from the name.
    pub slug: Option<Slug>,
    /// Who becomes its first member with the creator role; `None`: nobody.
    pub created_by: Option<UserId>,
    pub max_allowed_memberships: i32,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
    /// `None`: not set.
    pub external_id: Option<String>,
}

/// An organization just created, with its creator's membership and the
/// effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedOrganization {
    pub organization: Organization,
    pub membership: Option<Membership>,
    pub billing_impact: BillingImpact,
}

/// The fields of an organization an update may change; `None` leaves one as is.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChanges {
    pub name: Option<String>,
    pub slug: Option<Slug>,
    /// `Some(None)` clears it.
    pub external_id: Option<Option<String>>,
    pub max_allowed_memberships: Option<i32>,
    pub public_metadata: Option<Metadata>,
    pub private_metadata: Option<Metadata>,
}

/// A deep-merge patch of an organization's metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataPatch {
    pub public_metadata: Option<Map<String, Value>>,
    pub private_metadata: Option<Map<String, Value>>,
}

/// How `GetOrganization` names an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationLookup {
    Id(OrganizationId),
    Slug(Slug),
    ExternalId(String),
}

/// How organization lists are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationOrder {
    CreateTime,
    CreateTimeDesc,
    Name,
    MembersCountDesc,
}

impl OrganizationOrder {
    /// The keyset position after `organization` in this order.
    pub fn key_of(self, organization: &Organization) -> Vec<String> {
        let value = match self {
            OrganizationOrder::CreateTime | OrganizationOrder::CreateTimeDesc => {
                organization.create_time.to_string()
            }
            OrganizationOrder::Name => organization.name.clone(),
            OrganizationOrder::MembersCountDesc => organization.members_count.to_string(),
        };
        vec![value, organization.id.to_string()]
    }
}

/// Filters of an organization list.
#[derive(Debug, Clone, Default)]
pub struct OrganizationFilter {
    /// A case-insensitive substring of the name or slug.
    pub query: Option<String>,
    /// Only organizations this user belongs to (as an active member).
    pub member: Option<UserId>,
    /// Only organizations in this state.
    pub state: Option<LifecycleState>,
}

/// What `CreateMembership` takes, validated.
#[derive(Debug, Clone)]
pub struct NewMembership {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    /// `None`: the configured default role.
    pub role: Option<RoleKey>,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
}

/// A membership just added, with its effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddedMember {
    pub membership: Membership,
    pub billing_impact: BillingImpact,
}

/// An organization after a lifecycle transition, with its effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrganizationTransition {
    pub organization: Organization,
    pub billing_impact: BillingImpact,
}

/// The fields of a membership an update may change.
#[derive(Debug, Clone, Default)]
pub struct MembershipChanges {
    pub role: Option<RoleKey>,
    pub public_metadata: Option<Metadata>,
    pub private_metadata: Option<Metadata>,
}

/// Filters of a membership list.
#[derive(Debug, Clone, Default)]
pub struct MembershipFilter {
    pub organization_id: Option<OrganizationId>,
    pub user_id: Option<UserId>,
    pub role: Option<RoleKey>,
    /// Only memberships in this state.
    pub state: Option<LifecycleState>,
}

/// What `CheckPermission` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionCheck {
    pub allowed: bool,
    /// The user's role; `None` when it is not a member.
    pub role: Option<RoleKey>,
}

/// The rules organizations and memberships follow, from configuration.
#[derive(Debug, Clone)]
pub struct OrganizationRules {
    /// Organizations an end user may create.
    pub max_organizations_per_user: u32,
    /// The role of an organization's creator.
    pub creator_role: RoleKey,
    /// The role of memberships, invitations and enrollments without one.
    pub default_role: RoleKey,
}
