//! The kinds of change the event log records: what other services mirror
//! through `orgs.v1.EventService`, what the caches of every replica follow,
//! and what the billing watch streams.

use serde::{Deserialize, Serialize};

/// The type of an event, with its dotted lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    OrganizationCreated,
    OrganizationUpdated,
    OrganizationDeleted,
    OrganizationDeactivated,
    OrganizationReactivated,
    MembershipCreated,
    MembershipUpdated,
    MembershipDeleted,
    MembershipDeactivated,
    MembershipReactivated,
    InvitationCreated,
    InvitationAccepted,
    InvitationRevoked,
    DomainCreated,
    DomainUpdated,
    DomainVerified,
    DomainDeleted,
    MembershipRequestCreated,
    MembershipRequestAccepted,
    MembershipRequestRejected,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    PermissionCreated,
    PermissionDeleted,
    BillingOrganizationBecameBillable,
    BillingPeriodStarted,
    BillingBudgetThresholdCrossed,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::OrganizationCreated,
        EventKind::OrganizationUpdated,
        EventKind::OrganizationDeleted,
        EventKind::OrganizationDeactivated,
        EventKind::OrganizationReactivated,
        EventKind::MembershipCreated,
        EventKind::MembershipUpdated,
        EventKind::MembershipDeleted,
        EventKind::MembershipDeactivated,
        EventKind::MembershipReactivated,
        EventKind::InvitationCreated,
        EventKind::InvitationAccepted,
        EventKind::InvitationRevoked,
        EventKind::DomainCreated,
        EventKind::DomainUpdated,
        EventKind::DomainVerified,
        EventKind::DomainDeleted,
        EventKind::MembershipRequestCreated,
        EventKind::MembershipRequestAccepted,
        EventKind::MembershipRequestRejected,
        EventKind::RoleCreated,
        EventKind::RoleUpdated,
        EventKind::RoleDeleted,
        EventKind::PermissionCreated,
        EventKind::PermissionDeleted,
        EventKind::BillingOrganizationBecameBillable,
        EventKind::BillingPeriodStarted,
        EventKind::BillingBudgetThresholdCrossed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrganizationCreated => "organization.created",
            EventKind::OrganizationUpdated => "organization.updated",
            EventKind::OrganizationDeleted => "organization.deleted",
            EventKind::OrganizationDeactivated => "organization.deactivated",
            EventKind::OrganizationReactivated => "organization.reactivated",
            EventKind::MembershipCreated => "membership.created",
            EventKind::MembershipUpdated => "membership.updated",
            EventKind::MembershipDeleted => "membership.deleted",
            EventKind::MembershipDeactivated => "membership.deactivated",
            EventKind::MembershipReactivated => "membership.reactivated",
            EventKind::InvitationCreated => "invitation.created",
            EventKind::InvitationAccepted => "invitation.accepted",
            EventKind::InvitationRevoked => "invitation.revoked",
            EventKind::DomainCreated => "domain.created",
            EventKind::DomainUpdated => "domain.updated",
            EventKind::DomainVerified => "domain.verified",
            EventKind::DomainDeleted => "domain.deleted",
            EventKind::MembershipRequestCreated => "membership_request.created",
            EventKind::MembershipRequestAccepted => "membership_request.accepted",
            EventKind::MembershipRequestRejected => "membership_request.rejected",
            EventKind::RoleCreated => "role.created",
            EventKind::RoleUpdated => "role.updated",
            EventKind::RoleDeleted => "role.deleted",
            EventKind::PermissionCreated => "permission.created",
            EventKind::PermissionDeleted => "permission.deleted",
            EventKind::BillingOrganizationBecameBillable => "billing.organization_became_billable",
            EventKind::BillingPeriodStarted => "billing.period_started",
            EventKind::BillingBudgetThresholdCrossed => "billing.budget_threshold_crossed",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<EventKind> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }

    /// Whether events of this kind can change what a role grants.
    pub fn changes_roles(self) -> bool {
        matches!(
            self,
            EventKind::RoleCreated
                | EventKind::RoleUpdated
                | EventKind::RoleDeleted
                | EventKind::PermissionCreated
                | EventKind::PermissionDeleted
        )
    }

    /// Whether events of this kind can change an organization's row or who
    /// holds which role in it (its counts move with invitations too).
    pub fn changes_organization(self) -> bool {
        !self.is_billing() && !self.changes_roles()
    }

    /// Billing events: derived from activity and memberships, never audited.
    pub fn is_billing(self) -> bool {
        matches!(
            self,
            EventKind::BillingOrganizationBecameBillable
                | EventKind::BillingPeriodStarted
                | EventKind::BillingBudgetThresholdCrossed
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry of the audit trail: one per successful change a caller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    /// The RPC name, for example `CreateMembership`.
    pub action: String,
    /// The `sub` of the caller.
    pub actor: String,
    /// The service that acted on behalf of `actor`; empty if none.
    pub on_behalf_of: String,
    /// Empty for changes outside any organization (roles, permissions).
    pub organization_id: String,
    pub resource_id: String,
    pub request_id: String,
    pub create_time: super::time::Micros,
}

/// Which events of the log a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of these kinds; empty: every kind.
    pub kinds: Vec<EventKind>,
    /// Only events of this organization.
    pub organization_id: Option<super::ids::OrganizationId>,
}

/// The resource an event carries: its state after the change (its last state
/// for a deletion), or the billing fact.
#[derive(Debug, Clone, PartialEq)]
pub enum EventResource {
    Organization(super::organizations::Organization),
    Membership(super::organizations::Membership),
    Invitation(super::enrollment::Invitation),
    Domain(super::enrollment::Domain),
    MembershipRequest(super::enrollment::MembershipRequest),
    Role(super::roles::Role),
    Permission(super::roles::Permission),
    Usage(super::billing::OrganizationUsage),
    PeriodStarted(String),
    Budget(super::billing::BudgetThresholdCrossed),
}

/// One event of the log, as `EventService` hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its position in the log.
    pub seq: i64,
    pub id: String,
    pub kind: EventKind,
    /// Empty for changes outside any organization.
    pub organization_id: String,
    /// Empty for billing events.
    pub actor: String,
    pub on_behalf_of: String,
    pub request_id: String,
    pub create_time: super::time::Micros,
    pub resource: EventResource,
}

/// Filters of the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub organization_id: Option<super::ids::OrganizationId>,
    pub actor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::parse("CreateRole"), None);
    }
}
