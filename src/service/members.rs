//! What every way into an organization shares: adding a member within the cap
//! (and moving the bill), reading memberships with their permissions, and the
//! last-admin rule.

use sea_orm::ConnectionTrait;

use super::billing::BillingCounters;
use super::unit_of_work::Tx;
use crate::domain::billing::BillingImpact;
use crate::domain::events::EventKind;
use crate::domain::ids::{MembershipId, OrganizationId, RoleKey, UserId};
use crate::domain::organizations::{AddedMember, LifecycleState, Membership, Organization};
use crate::domain::roles::MEMBERSHIPS_MANAGE;
use crate::domain::time::BillingPeriod;
use crate::domain::types::Metadata;
use crate::domain::{Access, Actor, Error, Reason, Result};
use crate::events::NewEvent;
use crate::store::membership_view;
use crate::store::repo::member_writes;
use crate::store::repo::memberships::{self, MembershipFilter, MembershipRow};
use crate::store::repo::organizations::{self, OrganizationRow};
use crate::store::repo::roles;

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

    /// Adds a member in `tx`: checks the role, inserts the membership (a
    /// member already is refused), takes a place within
    /// `max_allowed_memberships` with a conditional update that concurrent
    /// calls cannot overshoot, and moves the billing counters. The caller
    /// holds the organization `row`, locked with
    /// [`crate::store::repo::organizations::get_for_update`] (so with the role
    /// catalogue; changes to its members wait), and emits the event; a
    /// refusal leaves the transaction to be rolled back.
    pub async fn add(
        &self,
        tx: &mut Tx,
        row: &OrganizationRow,
        user_id: &UserId,
        role: &RoleKey,
        public_metadata: Metadata,
        private_metadata: Metadata,
    ) -> Result<AddedMember> {
        let organization_id = OrganizationId::from_stored(row.id.clone());
        let Some(role_record) = roles::get_role(tx.conn(), role.as_str()).await? else {
            return Err(no_role(role));
        };
        let membership = new_membership(
            tx,
            &row.id,
            user_id,
            role,
            public_metadata,
            private_metadata,
        );
        // First, so that a member of a full organization hears it is one.
        if !memberships::insert_new(tx.conn(), &membership).await? {
            return Err(already_member(user_id));
        }
        if !organizations::take_membership_place(tx.conn(), &row.id).await? {
            return Err(organization_full(row));
        }
        let billing_impact = self
            .counters
            .member_added(tx, &organization_id, user_id)
            .await?;
        Ok(added(
            membership,
            role_record.permissions,
            row,
            billing_impact,
        ))
    }

    /// Inserts a new organization (`row`, its creator's place taken) with its
    /// creator's membership and moves the counts in one round trip, after
    /// [`member_writes::lock_catalogue_and_users`] for the creator, and emits
    /// the `organization.created` and `membership.created` events (on
    /// PostgreSQL, for a creator not active in the period, written by the
    /// same statement: [`member_writes::StatementEvents`]); `None` (nothing
    /// written, no event) when its id, slug or external id is taken.
    pub async fn insert_with_creator(
        &self,
        tx: &mut Tx,
        row: &OrganizationRow,
        creator: &UserId,
        role: &RoleKey,
    ) -> Result<Option<AddedMember>> {
        let membership = new_membership(
            tx,
            &row.id,
            creator,
            role,
            Metadata::default(),
            Metadata::default(),
        );
        let organization_id = OrganizationId::from_stored(row.id.clone());
        // As inserted: nothing else can have changed it yet.
        let organization = Organization::from(row.clone());
        let mut events = member_writes::StatementEvents::default();
        if tx.conn().get_database_backend() == sea_orm::DbBackend::Postgres {
            let mut created = tx.event(
                EventKind::OrganizationCreated,
                Some(&organization_id),
                &row.id,
            );
            created.payload = serde_json::to_value(&organization).map_err(Error::internal)?;
            let mut joined = tx.event(
                EventKind::MembershipCreated,
                Some(&organization_id),
                &membership.id,
            );
            // The organization's event is the call's entry in the audit trail.
            joined.audit = joined.audit && !created.audit;
            let answered = answered(membership.clone(), Vec::new(), row);
            events.add(created);
            events.add_membership(
                joined,
                &serde_json::to_value(&answered).map_err(Error::internal)?,
            )?;
        }
        let period = BillingPeriod::containing_micros(tx.now).to_string();
        let write = member_writes::insert_organization_with_creator(
            tx.conn(),
            row,
            &membership,
            &period,
            &events,
        )
        .await?;
        if !write.organization_written {
            return Ok(None);
        }
        let Some(permissions) = write.permissions else {
            return Err(no_role(role));
        };
        if !write.member_inserted {
            return Err(Error::internal("the creator's membership was not inserted"));
        }
        let billing_impact = self
            .counters
            .member_joined(tx, &organization_id, creator, write.user_active, None)
            .await?;
        let added = added(membership, permissions, row, billing_impact);
        let (created, joined) = if write.event_written {
            let mut events = events.into_events().into_iter();
            let (Some(created), Some(joined)) = (events.next(), events.next()) else {
                return Err(Error::internal("a new organization's events went missing"));
            };
            (Some(created), Some(joined))
        } else {
            (None, None)
        };
        match created {
            Some(created) => tx.emitted_by_statement(created),
            None => tx.emit(
                EventKind::OrganizationCreated,
                Some(&organization_id),
                organization_id.as_str(),
                &organization,
            )?,
        }
        membership_created(tx, &organization_id, &added.membership, joined)?;
        Ok(Some(added))
    }

    /// Adds `user_id` to the active organization `organization_id` as
    /// CreateMembership does, and emits its `membership.created` event. On
    /// PostgreSQL the organization is locked first with the billing lock of
    /// `user_id` ([`crate::service::lifecycle::lock_active_for_member`]),
    /// then the membership, its place, the reads the bill needs and, for a
    /// user not active in the period, the event go in one round trip
    /// ([`member_writes::StatementEvents`]); on SQLite (whose writer holds the
    /// database) the organization is read in the same round trip as the
    /// writes, which happen only while it is active. A refusal, also one by
    /// [`check_ceiling`] after the writes, leaves the transaction to be
    /// rolled back.
    pub async fn join(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        user_id: &UserId,
        role: &RoleKey,
        public_metadata: Metadata,
        private_metadata: Metadata,
    ) -> Result<AddedMember> {
        let membership = new_membership(
            tx,
            organization_id.as_str(),
            user_id,
            role,
            public_metadata,
            private_metadata,
        );
        let period = BillingPeriod::containing_micros(tx.now).to_string();
        let (row, write, event) =
            if tx.conn().get_database_backend() == sea_orm::DbBackend::Postgres {
                let row = crate::service::lifecycle::lock_active_for_member(
                    tx.conn(),
                    organization_id.as_str(),
                    user_id,
                )
                .await?;
                check_ceiling(tx.conn(), tx.actor(), role).await?;
                // The membership as it will be answered, but for the role's
                // permissions, which the statement reads.
                let answered = answered(membership.clone(), Vec::new(), &row);
                let mut events = member_writes::StatementEvents::default();
                events.add_membership(
                    tx.event(
                        EventKind::MembershipCreated,
                        Some(organization_id),
                        &membership.id,
                    ),
                    &serde_json::to_value(&answered).map_err(Error::internal)?,
                )?;
                let write =
                    member_writes::insert_member(tx.conn(), &membership, &period, &events).await?;
                (row, write, events.into_events().pop())
            } else {
                let (row, write) = member_writes::join_active(tx.conn(), &membership, &period)
                    .await?
                    .ok_or_else(Error::organization_not_found)?;
                if row.deactivate_time.is_some() {
                    return Err(Error::organization_deactivated());
                }
                check_ceiling(tx.conn(), tx.actor(), role).await?;
                (row, write, None)
            };
        self.joined(tx, &row, (user_id, role), membership, write, event)
            .await
    }

    /// What follows the writes of a member joining `row`: the refusals they
    /// tell of, in the order [`Members::add`] finds them, then the bill, then
    /// the event (`event`, if the statement wrote it).
    async fn joined(
        &self,
        tx: &mut Tx,
        row: &OrganizationRow,
        (user_id, role): (&UserId, &RoleKey),
        membership: MembershipRow,
        write: member_writes::MemberWrite,
        event: Option<NewEvent>,
    ) -> Result<AddedMember> {
        let Some(permissions) = write.permissions else {
            return Err(no_role(role));
        };
        if !write.member_inserted {
            return Err(already_member(user_id));
        }
        if !write.organization_written {
            return Err(organization_full(row));
        }
        let organization_id = OrganizationId::from_stored(row.id.clone());
        let usage = Some((write.active_member_count, write.billable));
        let billing_impact = self
            .counters
            .member_joined(tx, &organization_id, user_id, write.user_active, usage)
            .await?;
        let added = added(membership, permissions, row, billing_impact);
        membership_created(
            tx,
            &organization_id,
            &added.membership,
            event.filter(|_| write.event_written),
        )?;
        Ok(added)
    }
}

fn no_role(role: &RoleKey) -> Error {
    Error::invalid("role", format!("there is no role {role}"))
}

fn organization_full(row: &OrganizationRow) -> Error {
    Error::FailedPrecondition(
        Reason::MembershipLimitReached,
        format!(
            "the organization has its maximum of {} members",
            row.max_allowed_memberships
        ),
    )
}

/// The membership row of a member joining `row` now.
fn new_membership(
    tx: &Tx,
    organization_id: &str,
    user_id: &UserId,
    role: &RoleKey,
    public_metadata: Metadata,
    private_metadata: Metadata,
) -> MembershipRow {
    MembershipRow {
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
    }
}

/// Records the `membership.created` event of `membership`, new in
/// `organization_id`: `written`, the event its change's statement wrote
/// ([`Tx::event`]), now with the membership as answered, or else a new one.
pub(super) fn membership_created(
    tx: &mut Tx,
    organization_id: &OrganizationId,
    membership: &Membership,
    written: Option<NewEvent>,
) -> Result<()> {
    match written {
        Some(mut event) => {
            event.payload = serde_json::to_value(membership).map_err(Error::internal)?;
            tx.emitted_by_statement(event);
            Ok(())
        }
        None => tx.emit(
            EventKind::MembershipCreated,
            Some(organization_id),
            membership.id.as_str(),
            membership,
        ),
    }
}

/// The added member as answered: the membership with its role's
/// permissions and its organization's name and slug.
fn added(
    membership: MembershipRow,
    permissions: Vec<String>,
    row: &OrganizationRow,
    billing_impact: BillingImpact,
) -> AddedMember {
    AddedMember {
        membership: answered(membership, permissions, row),
        billing_impact,
    }
}

/// A new membership of `row` as answered and as its event tells it.
fn answered(
    membership: MembershipRow,
    permissions: Vec<String>,
    row: &OrganizationRow,
) -> Membership {
    let mut membership = membership_view(membership, permissions);
    membership.organization_name = row.name.clone();
    membership.organization_slug = row.slug.clone();
    membership
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
