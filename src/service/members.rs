//! What every way into an organization shares: adding a member within the cap
//! (and moving the bill), reading memberships with their permissions, and the
//! last-admin rule.

use sea_orm::ConnectionTrait;

use super::billing::BillingCounters;
use super::unit_of_work::Tx;
use crate::domain::ids::{MembershipId, OrganizationId, RoleKey, UserId};
use crate::domain::organizations::{AddedMember, LifecycleState, Membership};
use crate::domain::roles::MEMBERSHIPS_MANAGE;
use crate::domain::types::Metadata;
use crate::domain::{Access, Actor, Error, Reason, Result};
use crate::store::repo::memberships::{self, MembershipFilter, MembershipRow};
use crate::store::repo::{organizations, roles};
use crate::store::{is_unique_violation, membership_view};

pub fn membership_not_found() -> Error {
    Error::NotFound(Reason::MembershipNotFound, "membership not found".into())
}

fn already_member(user_id: &UserId) -> Error {
    Error::AlreadyExists(
        Reason::MembershipExists,
        format!("{user_id} is a member already"),
    )
}

/// Adds members and reads memberships.
#[derive(Debug, Clone)]
pub struct Members {
    counters: BillingCounters,
}

impl Members {
    pub fn new(counters: BillingCounters) -> Self {
        Members { counters }
    }

    pub fn counters(&self) -> &BillingCounters {
        &self.counters
    }

    /// Adds a member in `tx`: checks the role, takes a place within
    /// `max_allowed_memberships` with a conditional update that concurrent
    /// calls cannot overshoot, inserts the membership and moves the billing
    /// counters. The caller emits the event.
    pub async fn add(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        user_id: &UserId,
        role: &RoleKey,
        public_metadata: Metadata,
        private_metadata: Metadata,
    ) -> Result<AddedMember> {
        // The role cannot be deleted or changed while it is being given.
        roles::lock_catalogue_for_use(tx.conn()).await?;
        let Some(role_record) = roles::get_role(tx.conn(), role.as_str()).await? else {
            return Err(Error::invalid("role", format!("there is no role {role}")));
        };
        if memberships::get(tx.conn(), organization_id.as_str(), user_id.as_str())
            .await?
            .is_some()
        {
            return Err(already_member(user_id));
        }
        if !organizations::take_membership_place(tx.conn(), organization_id.as_str()).await? {
            return match organizations::get(tx.conn(), organization_id.as_str()).await? {
                None => Err(Error::organization_not_found()),
                Some(organization) => Err(Error::FailedPrecondition(
                    Reason::MembershipLimitReached,
                    format!(
                        "the organization has its maximum of {} members",
                        organization.max_allowed_memberships
                    ),
                )),
            };
        }
        let row = MembershipRow {
            id: MembershipId::new().into_string(),
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            role: role.to_string(),
            public_metadata: public_metadata.to_json(),
            private_metadata: private_metadata.to_json(),
            create_time: tx.now,
            update_time: tx.now,
            revision: 1,
            deactivate_time: None,
        };
        memberships::insert(tx.conn(), &row).await.map_err(|err| {
            if is_unique_violation(&err) {
                already_member(user_id)
            } else {
                err.into()
            }
        })?;
        let billing_impact = self
            .counters
            .member_added(tx, organization_id, user_id)
            .await?;
        let mut membership = membership_view(row, role_record.permissions);
        name_organizations(tx.conn(), std::slice::from_mut(&mut membership)).await?;
        Ok(AddedMember {
            membership,
            billing_impact,
        })
    }
}

/// Refuses to give a role above the caller: one acting through its own
/// membership may give only roles whose permissions are a subset of its own
/// role's. Platform principals have no ceiling. An unknown role is left to
/// the caller's own check.
pub async fn check_ceiling(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    role: &RoleKey,
) -> Result<()> {
    let Access::Member(own) = &actor.access else {
        return Ok(());
    };
    let Some(record) = roles::get_role(conn, role.as_str()).await? else {
        return Ok(());
    };
    let above: Vec<&String> = record
        .permissions
        .iter()
        .filter(|permission| !own.iter().any(|held| held == permission.as_str()))
        .collect();
    if above.is_empty() {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        Reason::RoleAboveCaller,
        format!(
            "the role {role} grants permissions the caller's role does not ({}); only a platform principal or a member holding them may give it",
            above
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Memberships with the permissions of their roles, in one query.
pub async fn with_permissions(
    conn: &impl ConnectionTrait,
    rows: Vec<MembershipRow>,
) -> Result<Vec<Membership>> {
    let mut keys: Vec<String> = rows.iter().map(|row| row.role.clone()).collect();
    keys.sort();
    keys.dedup();
    let by_role = roles::permissions_of(conn, &keys).await?;
    let mut memberships: Vec<Membership> = rows
        .into_iter()
        .map(|row| {
            let permissions = by_role.get(&row.role).cloned().unwrap_or_default();
            membership_view(row, permissions)
        })
        .collect();
    name_organizations(conn, &mut memberships).await?;
    Ok(memberships)
}

/// Memberships with the name and slug of their organizations, read in one
/// query for all of them.
async fn name_organizations(
    conn: &impl ConnectionTrait,
    memberships: &mut [Membership],
) -> Result<()> {
    let mut ids: Vec<&str> = memberships
        .iter()
        .map(|membership| membership.organization_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let names = organizations::names_of(conn, &ids).await?;
    for membership in memberships.iter_mut() {
        if let Some((name, slug)) = names.get(membership.organization_id.as_str()) {
            membership.organization_name = name.clone();
            membership.organization_slug = slug.clone();
        }
    }
    Ok(())
}

/// One membership with the permissions of its role.
pub async fn with_permissions_one(
    conn: &impl ConnectionTrait,
    row: MembershipRow,
) -> Result<Membership> {
    let permissions = roles::permissions_of(conn, std::slice::from_ref(&row.role))
        .await?
        .remove(&row.role)
        .unwrap_or_default();
    let mut membership = membership_view(row, permissions);
    name_organizations(conn, std::slice::from_mut(&mut membership)).await?;
    Ok(membership)
}

/// Refuses to remove, deactivate (or demote) the last active member holding
/// `org:sys_memberships:manage` while other active members remain. The caller holds
/// the organization's row lock, so two such changes cannot both pass.
pub async fn guard_last_admin(
    conn: &impl ConnectionTrait,
    membership: &MembershipRow,
    removing: bool,
) -> Result<()> {
    // A deactivated member holds nothing: the rule counts active members.
    if membership.deactivate_time.is_some()
        || !roles::grants(conn, &membership.role, MEMBERSHIPS_MANAGE).await?
    {
        return Ok(());
    }
    let managers =
        memberships::count_with_permission(conn, &membership.organization_id, MEMBERSHIPS_MANAGE)
            .await?;
    if managers > 1 {
        return Ok(());
    }
    if removing {
        let members = memberships::count(
            conn,
            &MembershipFilter {
                organization_id: Some(OrganizationId::from_stored(
                    membership.organization_id.clone(),
                )),
                state: Some(LifecycleState::Active),
                ..Default::default()
            },
        )
        .await?;
        if members <= 1 {
            // The last member may leave; the organization is then empty.
            return Ok(());
        }
    }
    Err(Error::FailedPrecondition(
        Reason::LastAdmin,
        "the organization must keep a member with org:sys_memberships:manage".into(),
    ))
}
