//! Memberships: adding members, listing, changing roles and metadata, leaving
//! or removing, and `CheckPermission`, the hot read other services call.

use super::access::{AccessCache, Cached};
use super::lifecycle::lock_active;
use super::list::Listing;
use super::members::{
    Members, check_ceiling, guard_last_admin, membership_not_found, with_permissions,
    with_permissions_one,
};
use super::unit_of_work::{Call, Idempotency, Writer};
use crate::domain::events::EventKind;
use crate::domain::ids::{OrganizationId, PermissionKey, RoleKey, UserId};
use crate::domain::organizations::{
    AddedMember, Membership, MembershipChanges, MembershipFilter, NewMembership, PermissionCheck,
};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::roles::MEMBERSHIPS_MANAGE;
use crate::domain::{Access, Actor, Error, Result};
use crate::store::Db;
use crate::store::repo::{memberships, organizations, roles};

fn etag_matches(expected: Option<&str>, actual: &str) -> Result<()> {
    match expected {
        Some(etag) if etag != actual => Err(Error::EtagMismatch),
        _ => Ok(()),
    }
}

/// The membership use cases.
#[derive(Debug, Clone)]
pub struct Memberships {
    db: Db,
    pub(super) writer: Writer,
    pub(super) members: Members,
    default_role: RoleKey,
    access: AccessCache,
    tokens: PageTokens,
}

impl Memberships {
    pub fn new(
        db: Db,
        writer: Writer,
        members: Members,
        default_role: RoleKey,
        access: AccessCache,
        tokens: PageTokens,
    ) -> Self {
        Memberships {
            db,
            writer,
            members,
            default_role,
            access,
            tokens,
        }
    }

    pub async fn create(
        &self,
        actor: Actor,
        new: NewMembership,
        idempotency: Option<Idempotency>,
        validate_only: bool,
    ) -> Result<AddedMember> {
        let members = self.members.clone();
        let role = new
            .role
            .clone()
            .unwrap_or_else(|| self.default_role.clone());
        self.writer
            .write(
                Call::idempotent(actor, idempotency, validate_only),
                move |tx| {
                    Box::pin(async move {
                        // Emits the membership's event.
                        members
                            .join(
                                tx,
                                &new.organization_id,
                                &new.user_id,
                                &role,
                                new.public_metadata,
                                new.private_metadata,
                            )
                            .await
                    })
                },
            )
            .await
    }

    pub async fn list(
        &self,
        filter: MembershipFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<Membership>> {
        let listing = Listing::start(
            &self.tokens,
            "memberships",
            &[
                filter.organization_id.as_ref().map_or("", |id| id.as_str()),
                filter.user_id.as_ref().map_or("", |id| id.as_str()),
                filter.role.as_ref().map_or("", |role| role.as_str()),
                &format!("{:?}", filter.state),
            ],
            2,
            page_size,
            page_token,
        )?;
        let after = match (listing.after_number(0)?, listing.after_text(1)) {
            (Some(time), Some(id)) => Some((time, id)),
            _ => None,
        };
        let conn = self.db.conn();
        let rows = memberships::list(conn, &filter, after, listing.limit()).await?;
        let total_size = memberships::count(conn, &filter).await?;
        let page = listing.finish(rows, total_size, |last| {
            vec![last.create_time.to_string(), last.id.clone()]
        });
        let items = with_permissions(conn, page.items).await?;
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    pub async fn update(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        user_id: UserId,
        etag: Option<String>,
        changes: MembershipChanges,
    ) -> Result<Membership> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    lock_active(tx.conn(), organization_id.as_str()).await?;
                    let current =
                        memberships::get(tx.conn(), organization_id.as_str(), user_id.as_str())
                            .await?
                            .ok_or_else(membership_not_found)?;
                    etag_matches(
                        etag.as_deref(),
                        &crate::domain::organizations::etag(current.revision),
                    )?;
                    let mut updated = current.clone();
                    if let Some(role) = changes.role
                        && role != current.role.as_str()
                    {
                        let Some(new_role) = roles::get_role(tx.conn(), role.as_str()).await?
                        else {
                            return Err(Error::invalid(
                                "membership.role",
                                format!("there is no role {role}"),
                            ));
                        };
                        check_ceiling(tx.conn(), tx.actor(), &role).await?;
                        if !new_role.permissions.iter().any(|p| p == MEMBERSHIPS_MANAGE) {
                            guard_last_admin(tx.conn(), &current, false).await?;
                        }
                        updated.role = role.into_string();
                    }
                    if let Some(metadata) = changes.public_metadata {
                        updated.public_metadata = metadata.to_json();
                    }
                    if let Some(metadata) = changes.private_metadata {
                        updated.private_metadata = metadata.to_json();
                    }
                    updated.update_time = tx.now;
                    if !memberships::update(tx.conn(), &updated, current.revision).await? {
                        return Err(Error::EtagMismatch);
                    }
                    updated.revision += 1;
                    let membership = with_permissions_one(tx.conn(), updated).await?;
                    tx.emit(
                        EventKind::MembershipUpdated,
                        Some(&organization_id),
                        membership.id.as_str(),
                        &membership,
                    )?;
                    Ok(membership)
                })
            })
            .await
    }

    pub async fn delete(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        user_id: UserId,
        etag: Option<String>,
    ) -> Result<()> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    // A user leaving on its own learns nothing of organizations
                    // it is not in: whether or not one exists, the answer is
                    // the same.
                    let leaving = tx.actor().access == Access::Itself;
                    let organization =
                        organizations::get_for_update(tx.conn(), organization_id.as_str())
                            .await?
                            .ok_or_else(Error::organization_not_found)?;
                    let current =
                        memberships::get(tx.conn(), organization_id.as_str(), user_id.as_str())
                            .await?
                            .ok_or_else(|| {
                                if leaving {
                                    Error::organization_not_found()
                                } else {
                                    membership_not_found()
                                }
                            })?;
                    // Checked after the membership, so that a user leaving
                    // learns nothing of an organization it is not in.
                    if organization.deactivate_time.is_some() {
                        return Err(Error::organization_deactivated());
                    }
                    etag_matches(
                        etag.as_deref(),
                        &crate::domain::organizations::etag(current.revision),
                    )?;
                    guard_last_admin(tx.conn(), &current, true).await?;
                    memberships::delete(tx.conn(), &current.id).await?;
                    // A deactivated membership gave its place back already.
                    if current.deactivate_time.is_none() {
                        organizations::release_membership_place(
                            tx.conn(),
                            organization_id.as_str(),
                        )
                        .await?;
                    }
                    let last = with_permissions_one(tx.conn(), current).await?;
                    tx.emit(
                        EventKind::MembershipDeleted,
                        Some(&organization_id),
                        last.id.as_str(),
                        &last,
                    )?;
                    Ok(())
                })
            })
            .await
    }

    /// Whether `user_id` holds `permission` in the organization, and its role:
    /// from the access cache, or one indexed query.
    pub async fn check_permission(
        &self,
        organization_id: &OrganizationId,
        user_id: &UserId,
        permission: &PermissionKey,
    ) -> Result<PermissionCheck> {
        let (org, user) = (organization_id.as_str(), user_id.as_str());
        let generation = match self.access.check(org, user, permission.as_str()) {
            Cached::Answer(allowed, role) => return Ok(check(allowed, role)),
            Cached::Miss(generation) => generation,
        };
        let found = memberships::role_and_permissions(self.db.conn(), org, user).await?;
        let answer = match &found {
            Some((role, permissions)) => check(
                permissions.iter().any(|p| p == permission.as_str()),
                role.clone(),
            ),
            None => check(false, String::new()),
        };
        self.access.fill(generation, org, user, found);
        Ok(answer)
    }
}

fn check(allowed: bool, role: String) -> PermissionCheck {
    PermissionCheck {
        allowed,
        role: (!role.is_empty()).then(|| RoleKey::from_stored(role)),
    }
}
