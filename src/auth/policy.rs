//! The one policy table: every RPC's required permission, keyed by its path.
//! The auth layer enforces scope-only rules itself; handlers name the
//! organization or user a call is about and the
//! [`Authorizer`](super::authorizer::Authorizer) decides with the rule of that
//! RPC. Nothing else grants access.

use super::token::{
    Principal,
    scopes::{BILLING_READ as BILLING_READ_SCOPE, BILLING_WRITE, ORGS_ADMIN, ORGS_READ},
};
use crate::domain::roles::*;

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any authenticated principal.
    Anyone,
    /// Principals holding one of these scopes.
    Scopes(&'static [&'static str]),
    /// Within one organization: principals holding one of `scopes`; members
    /// whose role grants `permission` (any member when `None`); and, when
    /// `self_service`, the user the call is about.
    Organization {
        permission: Option<&'static str>,
        scopes: &'static [&'static str],
        self_service: bool,
    },
    /// The user the call is about (`sub` = its `user_id`), or one of
    /// `scopes`. For calls about "a user, by default the caller", principals
    /// holding `scopes` may name any user or none, and anyone else acts for
    /// itself.
    SelfOr(&'static [&'static str]),
}

const ADMIN: &[&str] = &[ORGS_ADMIN];
const ADMIN_OR_READ: &[&str] = &[ORGS_ADMIN, ORGS_READ];
const BILLING_READERS: &[&str] = &[BILLING_READ_SCOPE, ORGS_ADMIN];

const fn org(permission: &'static str, scopes: &'static [&'static str]) -> Rule {
    Rule::Organization {
        permission: Some(permission),
        scopes,
        self_service: false,
    }
}

/// The policy table. A test checks that every RPC of the descriptor set has an entry.
pub const POLICY: &[(&str, Rule)] = &[
    (
        "/orgs.v1.OrganizationService/CreateOrganization",
        Rule::SelfOr(ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/GetOrganization",
        Rule::Organization {
            permission: None,
            scopes: ADMIN_OR_READ,
            self_service: false,
        },
    ),
    (
        "/orgs.v1.OrganizationService/ListOrganizations",
        Rule::SelfOr(ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.OrganizationService/UpdateOrganization",
        org(PROFILE_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/UpdateOrganizationMetadata",
        org(PROFILE_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteOrganization",
        org(PROFILE_DELETE, ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/CreateMembership",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/ListMemberships",
        Rule::Organization {
            permission: Some(MEMBERSHIPS_READ),
            scopes: ADMIN_OR_READ,
            self_service: true,
        },
    ),
    (
        "/orgs.v1.OrganizationService/UpdateMembership",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteMembership",
        Rule::Organization {
            permission: Some(MEMBERSHIPS_MANAGE),
            scopes: ADMIN,
            self_service: true,
        },
    ),
    (
        "/orgs.v1.OrganizationService/CreateRole",
        Rule::Scopes(ADMIN),
    ),
    ("/orgs.v1.OrganizationService/GetRole", Rule::Anyone),
    ("/orgs.v1.OrganizationService/ListRoles", Rule::Anyone),
    (
        "/orgs.v1.OrganizationService/UpdateRole",
        Rule::Scopes(ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteRole",
        Rule::Scopes(ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/CreatePermission",
        Rule::Scopes(ADMIN),
    ),
    ("/orgs.v1.OrganizationService/ListPermissions", Rule::Anyone),
    (
        "/orgs.v1.OrganizationService/DeletePermission",
        Rule::Scopes(ADMIN),
    ),
    (
        "/orgs.v1.OrganizationService/CheckPermission",
        Rule::SelfOr(ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.OrganizationService/ListAuditEvents",
        org(PROFILE_MANAGE, ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.InvitationService/CreateInvitation",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/CreateInvitations",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/GetInvitation",
        org(MEMBERSHIPS_READ, ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.InvitationService/ListInvitations",
        org(MEMBERSHIPS_READ, ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.InvitationService/RevokeInvitation",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/AcceptInvitation",
        Rule::SelfOr(ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/CreateDomain",
        org(DOMAINS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/ListDomains",
        org(DOMAINS_READ, ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.InvitationService/UpdateDomain",
        org(DOMAINS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/DeleteDomain",
        org(DOMAINS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/PrepareDomainVerification",
        org(DOMAINS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/AttemptDomainVerification",
        org(DOMAINS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/CreateMembershipRequest",
        Rule::SelfOr(ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/ListMembershipRequests",
        org(MEMBERSHIPS_MANAGE, ADMIN_OR_READ),
    ),
    (
        "/orgs.v1.InvitationService/AcceptMembershipRequest",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/RejectMembershipRequest",
        org(MEMBERSHIPS_MANAGE, ADMIN),
    ),
    (
        "/orgs.v1.InvitationService/ResolveOnboarding",
        Rule::SelfOr(ADMIN),
    ),
    (
        "/orgs.v1.BillingService/RecordActivity",
        Rule::Scopes(&[BILLING_WRITE, ORGS_ADMIN]),
    ),
    (
        "/orgs.v1.BillingService/GetOrganizationUsage",
        org(BILLING_READ, BILLING_READERS),
    ),
    (
        "/orgs.v1.BillingService/GetBillingSummary",
        Rule::Scopes(BILLING_READERS),
    ),
    (
        "/orgs.v1.BillingService/ListBillableOrganizations",
        Rule::Scopes(BILLING_READERS),
    ),
    (
        "/orgs.v1.BillingService/ListCostDrivers",
        Rule::Scopes(BILLING_READERS),
    ),
    (
        "/orgs.v1.BillingService/WatchBillableOrganizations",
        Rule::Scopes(BILLING_READERS),
    ),
];

/// The rule of an RPC path, if it has one.
pub fn rule_for(path: &str) -> Option<(&'static str, Rule)> {
    POLICY
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, rule)| (*p, *rule))
}

/// The verified caller of one RPC, with the rule of that RPC. Put in the request
/// extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub method: &'static str,
    pub rule: Rule,
}

impl Caller {
    /// The RPC name, for example `CreateMembership`.
    pub fn action(&self) -> &'static str {
        self.method.rsplit('/').next().unwrap_or(self.method)
    }
}
