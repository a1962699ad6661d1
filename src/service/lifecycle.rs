//! Deactivating instead of deleting: organizations and memberships that keep
//! everything but grant nothing and are not billed, and their reactivation.
//! A deactivated organization refuses every change but reactivation and
//! deletion; [`lock_active`] is how the changes ask.

use sea_orm::ConnectionTrait;

use super::members::{guard_last_admin, membership_not_found, with_permissions_one};
use super::memberships::Memberships;
use super::organizations::Organizations;
use super::unit_of_work::Call;
use crate::domain::events::EventKind;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::organizations::{
    AddedMember, Organization, OrganizationTransition, etag as etag_of,
};
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::repo::organizations::{self, OrganizationRow};
use crate::store::repo::{member_writes, memberships};

/// Reads the organization, locked for the rest of the transaction, and
/// refuses a change to a deactivated one (`ORGANIZATION_DEACTIVATED`).
pub async fn lock_active(conn: &impl ConnectionTrait, id: &str) -> Result<OrganizationRow> {
    lock_if_active(conn, id)
        .await?
        .ok_or_else(Error::organization_not_found)
}

/// PostgreSQL: the organization a member joins, as [`lock_active`] reads and
/// locks it, held with the billing lock of `user_id`, who joins it, taken in
/// the same statement. (On SQLite the writer's transaction holds the whole
/// database: [`crate::service::members::Members::join`] reads the
/// organization with its writes.)
pub async fn lock_active_for_member(
    conn: &impl ConnectionTrait,
    id: &str,
    user_id: &UserId,
) -> Result<OrganizationRow> {
    debug_assert_eq!(conn.get_database_backend(), sea_orm::DbBackend::Postgres);
    let row = member_writes::lock_organization_and_users(conn, id, &[user_id.to_string()])
        .await?
        .ok_or_else(Error::organization_not_found)?;
    if row.deactivate_time.is_some() {
        return Err(Error::organization_deactivated());
    }
    Ok(row)
}

/// Like [`lock_active`], but `None` for an organization that does not exist.
pub async fn lock_if_active(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<OrganizationRow>> {
    let row = organizations::get_for_update(conn, id).await?;
    if row
        .as_ref()
        .is_some_and(|row| row.deactivate_time.is_some())
    {
        return Err(Error::organization_deactivated());
    }
    Ok(row)
}

fn etag_matches(expected: Option<&str>, revision: i64) -> Result<()> {
    match expected {
        Some(etag) if etag != etag_of(revision) => Err(Error::EtagMismatch),
        _ => Ok(()),
    }
}

impl Organizations {
    /// Deactivates (`deactivate`) or reactivates an organization. A
    /// transition to the state it is in changes nothing and emits nothing.
    pub async fn set_active(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        etag: Option<String>,
        deactivate: bool,
        validate_only: bool,
    ) -> Result<OrganizationTransition> {
        let counters = self.members.counters().clone();
        self.writer
            .write(Call::idempotent(actor, None, validate_only), move |tx| {
                Box::pin(async move {
                    let current =
                        organizations::get_for_update(tx.conn(), organization_id.as_str())
                            .await?
                            .ok_or_else(Error::organization_not_found)?;
                    etag_matches(etag.as_deref(), current.revision)?;
                    if current.deactivate_time.is_some() == deactivate {
                        return Ok(OrganizationTransition {
                            billing_impact: counters.unchanged(tx, &organization_id).await?,
                            organization: Organization::from(current),
                        });
                    }
                    let deactivate_time = deactivate.then_some(tx.now);
                    if !organizations::set_deactivate_time(
                        tx.conn(),
                        &current.id,
                        deactivate_time,
                        tx.now,
                        current.revision,
                    )
                    .await?
                    {
                        return Err(Error::EtagMismatch);
                    }
                    let organization = Organization::from(OrganizationRow {
                        deactivate_time,
                        update_time: tx.now,
                        revision: current.revision + 1,
                        ..current
                    });
                    // Deactivation takes nothing back: billing status
                    // accrues within a period.
                    let billing_impact = if deactivate {
                        counters.unchanged(tx, &organization_id).await?
                    } else {
                        counters
                            .organization_reactivated(tx, &organization_id)
                            .await?
                    };
                    let kind = if deactivate {
                        EventKind::OrganizationDeactivated
                    } else {
                        EventKind::OrganizationReactivated
                    };
                    tx.emit(
                        kind,
                        Some(&organization_id),
                        organization_id.as_str(),
                        &organization,
                    )?;
                    Ok(OrganizationTransition {
                        organization,
                        billing_impact,
                    })
                })
            })
            .await
    }
}

impl Memberships {
    /// Deactivates (`deactivate`) or reactivates a membership in an active
    /// organization. A transition to the state it is in changes nothing and
    /// emits nothing.
    pub async fn set_active(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        user_id: UserId,
        etag: Option<String>,
        deactivate: bool,
        validate_only: bool,
    ) -> Result<AddedMember> {
        let counters = self.members.counters().clone();
        self.writer
            .write(Call::idempotent(actor, None, validate_only), move |tx| {
                Box::pin(async move {
                    lock_active(tx.conn(), organization_id.as_str()).await?;
                    let current =
                        memberships::get(tx.conn(), organization_id.as_str(), user_id.as_str())
                            .await?
                            .ok_or_else(membership_not_found)?;
                    etag_matches(etag.as_deref(), current.revision)?;
                    if current.deactivate_time.is_some() == deactivate {
                        return Ok(AddedMember {
                            billing_impact: counters.unchanged(tx, &organization_id).await?,
                            membership: with_permissions_one(tx.conn(), current).await?,
                        });
                    }
                    if deactivate {
                        guard_last_admin(tx.conn(), &current, true).await?;
                        organizations::release_membership_place(
                            tx.conn(),
                            organization_id.as_str(),
                        )
                        .await?;
                    } else if !organizations::take_membership_place(
                        tx.conn(),
                        organization_id.as_str(),
                    )
                    .await?
                    {
                        return Err(Error::FailedPrecondition(
                            Reason::MembershipLimitReached,
                            "the organization has its maximum of active members".into(),
                        ));
                    }
                    let deactivate_time = deactivate.then_some(tx.now);
                    if !memberships::set_deactivate_time(
                        tx.conn(),
                        &current.id,
                        deactivate_time,
                        tx.now,
                        current.revision,
                    )
                    .await?
                    {
                        return Err(Error::EtagMismatch);
                    }
                    let billing_impact = if deactivate {
                        counters.unchanged(tx, &organization_id).await?
                    } else {
                        counters
                            .member_added(tx, &organization_id, &user_id)
                            .await?
                    };
                    let mut row = current;
                    row.deactivate_time = deactivate_time;
                    row.update_time = tx.now;
                    row.revision += 1;
                    let membership = with_permissions_one(tx.conn(), row).await?;
                    let kind = if deactivate {
                        EventKind::MembershipDeactivated
                    } else {
                        EventKind::MembershipReactivated
                    };
                    tx.emit(
                        kind,
                        Some(&organization_id),
                        membership.id.as_str(),
                        &membership,
                    )?;
                    Ok(AddedMember {
                        membership,
                        billing_impact,
                    })
                })
            })
            .await
    }
}
