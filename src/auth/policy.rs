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

/// Whether an RPC reads or changes data: each kind has its own per-principal
/// rate limit (`ORGS_RATE_LIMIT_READS_PER_SECOND`,
/// `ORGS_RATE_LIMIT_WRITES_PER_SECOND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
}

/// One RPC's entry in the policy table: who may call it and what kind of call
/// it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: CallKind,
    pub rule: Rule,
}

const fn read(rule: Rule) -> Entry {
    Entry {
        kind: CallKind::Read,
        rule,
    }
}

const fn write(rule: Rule) -> Entry {
    Entry {
        kind: CallKind::Write,
        rule,
    }
}

/// The policy table. A test checks that every RPC of the descriptor set has an
/// entry. `ResolveOnboarding` counts as a read: applications call it to gate
/// every page, and it writes at most one invitation per user and domain.
pub const POLICY: &[(&str, Entry)] = &[
    (
        "/orgs.v1.OrganizationService/CreateOrganization",
        write(Rule::SelfOr(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/GetOrganization",
        read(Rule::Organization {
            permission: None,
            scopes: ADMIN_OR_READ,
            self_service: false,
        }),
    ),
    (
        "/orgs.v1.OrganizationService/BatchGetOrganizations",
        read(Rule::Organization {
            permission: None,
            scopes: ADMIN_OR_READ,
            self_service: false,
        }),
    ),
    (
        "/orgs.v1.OrganizationService/ListOrganizations",
        read(Rule::SelfOr(ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.OrganizationService/UpdateOrganization",
        write(org(PROFILE_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/UpdateOrganizationMetadata",
        write(org(PROFILE_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteOrganization",
        write(org(PROFILE_DELETE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/DeactivateOrganization",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/ReactivateOrganization",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/CreateMembership",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/ListMemberships",
        read(Rule::Organization {
            permission: Some(MEMBERSHIPS_READ),
            scopes: ADMIN_OR_READ,
            self_service: true,
        }),
    ),
    (
        "/orgs.v1.OrganizationService/UpdateMembership",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteMembership",
        write(Rule::Organization {
            permission: Some(MEMBERSHIPS_MANAGE),
            scopes: ADMIN,
            self_service: true,
        }),
    ),
    (
        "/orgs.v1.OrganizationService/DeactivateMembership",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/ReactivateMembership",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/CreateRole",
        write(Rule::Scopes(ADMIN)),
    ),
    ("/orgs.v1.OrganizationService/GetRole", read(Rule::Anyone)),
    ("/orgs.v1.OrganizationService/ListRoles", read(Rule::Anyone)),
    (
        "/orgs.v1.OrganizationService/UpdateRole",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/DeleteRole",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/CreatePermission",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/ListPermissions",
        read(Rule::Anyone),
    ),
    (
        "/orgs.v1.OrganizationService/DeletePermission",
        write(Rule::Scopes(ADMIN)),
    ),
    (
        "/orgs.v1.OrganizationService/CheckPermission",
        read(Rule::SelfOr(ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.OrganizationService/ListAuditEvents",
        read(org(PROFILE_MANAGE, ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/CreateInvitation",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/CreateInvitations",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/GetInvitation",
        read(org(MEMBERSHIPS_READ, ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/ListInvitations",
        read(org(MEMBERSHIPS_READ, ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/RevokeInvitation",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/AcceptInvitation",
        write(Rule::SelfOr(ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/CreateDomain",
        write(org(DOMAINS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/ListDomains",
        read(org(DOMAINS_READ, ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/UpdateDomain",
        write(org(DOMAINS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/DeleteDomain",
        write(org(DOMAINS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/PrepareDomainVerification",
        write(org(DOMAINS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/AttemptDomainVerification",
        write(org(DOMAINS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/LookupDomain",
        read(Rule::Scopes(ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/CreateMembershipRequest",
        write(Rule::SelfOr(ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/ListMembershipRequests",
        read(org(MEMBERSHIPS_MANAGE, ADMIN_OR_READ)),
    ),
    (
        "/orgs.v1.InvitationService/AcceptMembershipRequest",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/RejectMembershipRequest",
        write(org(MEMBERSHIPS_MANAGE, ADMIN)),
    ),
    (
        "/orgs.v1.InvitationService/ResolveOnboarding",
        read(Rule::SelfOr(ADMIN)),
    ),
    (
        "/orgs.v1.BillingService/RecordActivity",
        write(Rule::Scopes(&[BILLING_WRITE, ORGS_ADMIN])),
    ),
    (
        "/orgs.v1.BillingService/GetOrganizationUsage",
        read(org(BILLING_READ, BILLING_READERS)),
    ),
    (
        "/orgs.v1.BillingService/GetBillingSummary",
        read(Rule::Scopes(BILLING_READERS)),
    ),
    (
        "/orgs.v1.BillingService/ListBillableOrganizations",
        read(Rule::Scopes(BILLING_READERS)),
    ),
    (
        "/orgs.v1.BillingService/ListCostDrivers",
        read(Rule::Scopes(BILLING_READERS)),
    ),
    (
        "/orgs.v1.BillingService/WatchBillableOrganizations",
        read(Rule::Scopes(BILLING_READERS)),
    ),
    (
        "/orgs.v1.EventService/WatchEvents",
        read(Rule::Organization {
            permission: Some(PROFILE_MANAGE),
            scopes: ADMIN_OR_READ,
            self_service: false,
        }),
    ),
    (
        "/orgs.v1.EventService/ListEvents",
        read(Rule::Organization {
            permission: Some(PROFILE_MANAGE),
            scopes: ADMIN_OR_READ,
            self_service: false,
        }),
    ),
];

/// The entry of an RPC path, if it has one.
pub fn entry_for(path: &str) -> Option<(&'static str, Entry)> {
    POLICY
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, entry)| (*p, *entry))
}

/// The rule of an RPC path, if it has one.
pub fn rule_for(path: &str) -> Option<(&'static str, Rule)> {
    entry_for(path).map(|(p, entry)| (p, entry.rule))
}

/// Whether an RPC path reads or writes, if it is in the table.
pub fn kind_for(path: &str) -> Option<CallKind> {
    entry_for(path).map(|(_, entry)| entry.kind)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The verbs of the RPC names agree with the kinds in the table, so a new
    /// entry copied from a neighbour cannot silently take the wrong limit.
    #[test]
    fn reads_and_writes_follow_the_rpc_names() {
        for (path, entry) in POLICY {
            let method = path.rsplit('/').next().unwrap_or(path);
            let reads = [
                "Get", "BatchGet", "List", "Check", "Watch", "Resolve", "Lookup",
            ];
            let expected = if reads.iter().any(|verb| method.starts_with(verb)) {
                CallKind::Read
            } else {
                CallKind::Write
            };
            assert_eq!(entry.kind, expected, "{path}");
        }
        assert_eq!(
            kind_for("/orgs.v1.BillingService/RecordActivity"),
            Some(CallKind::Write)
        );
        assert_eq!(kind_for("/grpc.health.v1.Health/Check"), None);
    }
}
