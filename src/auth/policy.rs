//! The one policy table: every RPC's required permission, keyed by its path.
//! The auth layer enforces scope-only rules itself; handlers name the
//! organization or user a call is about and [`authorize`] decides with the rule
//! of that RPC. Nothing else grants access.

use super::token::{
    Principal,
    scopes::{BILLING_READ as BILLING_READ_SCOPE, BILLING_WRITE, ORGS_ADMIN, ORGS_READ},
};
use crate::domain::roles::*;
use crate::domain::{Actor, Error, Result, quote};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any authenticated principal; handlers narrow what end users see.
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
    /// The user the call is about (`sub` = its `user_id`), or one of `scopes`.
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
        Rule::Anyone,
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
        Rule::Anyone,
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

    pub fn actor(&self) -> Actor {
        Actor {
            sub: self.principal.sub.clone(),
            on_behalf_of: self.principal.act.clone(),
            platform: self.principal.is_platform(),
            action: self.action(),
        }
    }

    fn has_rule_scope(&self) -> bool {
        match self.rule {
            Rule::Anyone => true,
            Rule::Scopes(scopes) | Rule::SelfOr(scopes) | Rule::Organization { scopes, .. } => {
                self.principal.has_any_scope(scopes)
            }
        }
    }

    /// Decides a rule that needs no organization: `Anyone`, `Scopes`, or
    /// `SelfOr` about `user_id`.
    pub fn authorize(&self, user_id: Option<&str>) -> Result<Actor> {
        let allowed = self.has_rule_scope()
            || (matches!(self.rule, Rule::SelfOr(_))
                && user_id == Some(self.principal.sub.as_str()));
        if allowed {
            Ok(self.actor())
        } else {
            Err(self.denied())
        }
    }

    /// Whether the caller's scopes alone satisfy the rule (no membership needed).
    pub fn scope_grants(&self) -> bool {
        self.has_rule_scope()
    }

    /// Decides an `Organization` rule once the caller's membership is known:
    /// `membership` is its role's permissions in the organization, or `None`
    /// when it is not a member. Non-members get NOT_FOUND, so an organization's
    /// existence is not revealed.
    pub fn authorize_in_organization(
        &self,
        user_id: Option<&str>,
        membership: Option<&[String]>,
    ) -> Result<Actor> {
        if self.has_rule_scope() {
            return Ok(self.actor());
        }
        let Rule::Organization {
            permission,
            self_service,
            ..
        } = self.rule
        else {
            return self.authorize(user_id);
        };
        if self_service && user_id == Some(self.principal.sub.as_str()) {
            return Ok(self.actor());
        }
        match membership {
            // Platform readers may know that any organization exists.
            None if self.principal.is_platform() => Err(self.denied()),
            None => Err(Error::organization_not_found()),
            Some(permissions) => match permission {
                None => Ok(self.actor()),
                Some(required) if permissions.iter().any(|p| p == required) => Ok(self.actor()),
                Some(required) => Err(Error::permission_denied(format!(
                    "requires the permission {required}"
                ))),
            },
        }
    }

    /// Whether the caller could pass an `Organization` rule without a lookup.
    pub fn needs_membership(&self, user_id: Option<&str>) -> bool {
        if self.has_rule_scope() {
            return false;
        }
        !matches!(self.rule, Rule::Organization { self_service: true, .. } if user_id == Some(self.principal.sub.as_str()))
    }

    pub fn denied(&self) -> Error {
        Error::permission_denied(format!(
            "{} is not allowed to call {}",
            quote(&self.principal.sub),
            self.action()
        ))
    }
}
