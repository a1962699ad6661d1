//! Stored events as the domain's [`Event`]: the payload read back as the
//! resource its kind names.

use serde::de::DeserializeOwned;

use super::EventRow;
use crate::domain::billing::{BecameBillable, BudgetThresholdCrossed, PeriodStarted};
use crate::domain::events::{Event, EventKind, EventResource};
use crate::domain::{Error, Result};

fn payload<T: DeserializeOwned>(row: &EventRow) -> Result<T> {
    serde_json::from_str(&row.payload).map_err(|err| {
        Error::internal(format!(
            "the payload of event {} ({}) cannot be read: {err}",
            row.id, row.kind
        ))
    })
}

/// The event of a stored row; `None` for entries without a kind (recorded
/// before kinds existed, or audit entries that changed nothing), which
/// readers skip.
pub fn event(row: EventRow) -> Result<Option<Event>> {
    use EventKind as K;
    use EventResource as R;
    let Some(kind) = EventKind::parse(&row.kind) else {
        return Ok(None);
    };
    let resource = match kind {
        K::OrganizationCreated
        | K::OrganizationUpdated
        | K::OrganizationDeleted
        | K::OrganizationDeactivated
        | K::OrganizationReactivated => R::Organization(payload(&row)?),
        K::MembershipCreated
        | K::MembershipUpdated
        | K::MembershipDeleted
        | K::MembershipDeactivated
        | K::MembershipReactivated => R::Membership(payload(&row)?),
        K::InvitationCreated | K::InvitationAccepted | K::InvitationRevoked => {
            R::Invitation(payload(&row)?)
        }
        K::DomainCreated | K::DomainUpdated | K::DomainVerified | K::DomainDeleted => {
            R::Domain(payload(&row)?)
        }
        K::MembershipRequestCreated
        | K::MembershipRequestAccepted
        | K::MembershipRequestRejected => R::MembershipRequest(payload(&row)?),
        K::RoleCreated | K::RoleUpdated | K::RoleDeleted => R::Role(payload(&row)?),
        K::PermissionCreated | K::PermissionDeleted => R::Permission(payload(&row)?),
        K::BillingOrganizationBecameBillable => {
            R::Usage(payload::<BecameBillable>(&row)?.usage.bounded())
        }
        K::BillingPeriodStarted => R::PeriodStarted(payload::<PeriodStarted>(&row)?.period),
        K::BillingBudgetThresholdCrossed => R::Budget(payload::<BudgetThresholdCrossed>(&row)?),
    };
    Ok(Some(Event {
        seq: row.seq,
        id: row.id,
        kind,
        organization_id: row.organization_id,
        actor: row.actor,
        on_behalf_of: row.on_behalf_of,
        request_id: row.request_id,
        create_time: row.create_time,
        resource,
    }))
}
