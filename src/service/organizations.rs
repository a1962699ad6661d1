//! Organizations and memberships.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::access::Cached;
use super::{Begun, Idempotency, Services, Work};
use crate::domain::billing::BillingImpact;
use crate::domain::ids::{self, new_id};
use crate::domain::roles::MEMBERSHIPS_MANAGE;
use crate::domain::time::BillingPeriod;
use crate::domain::types::{Metadata, Slug};
use crate::domain::{Actor, Error, FieldViolation, Reason, Result, paging};
use crate::events::{EventRow, reader};
use crate::store::repo::billing;
use crate::store::repo::memberships::{self, MembershipFilter, MembershipRow};
use crate::store::repo::organizations::{
    self, OrganizationFilter, OrganizationOrder, OrganizationRow,
};
use crate::store::repo::roles;
use crate::store::{self, is_unique_violation};

/// A membership with the permissions its role grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipRecord {
    pub row: MembershipRow,
    pub permissions: Vec<String>,
}

/// What `CreateOrganization` takes, validated.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub name: String,
    pub slug: Option<Slug>,
    pub created_by: Option<String>,
    pub max_allowed_memberships: i32,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedOrganization {
    pub organization: OrganizationRow,
    pub membership: Option<MembershipRecord>,
    pub billing_impact: BillingImpact,
}

/// A membership just added, with its effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddedMember {
    pub membership: MembershipRecord,
    pub billing_impact: BillingImpact,
}

/// What `CreateMembership` takes, validated.
#[derive(Debug, Clone)]
pub struct NewMembership {
    pub organization_id: String,
    pub user_id: String,
    pub role: Option<String>,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
}

/// How to find an organization.
#[derive(Debug, Clone)]
pub enum OrganizationLookup {
    Id(String),
    Slug(String),
}

/// The fields of an organization an update may change; `None` leaves one as is.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChanges {
    pub name: Option<String>,
    pub slug: Option<Slug>,
    pub max_allowed_memberships: Option<i32>,
    pub public_metadata: Option<Metadata>,
    pub private_metadata: Option<Metadata>,
}

/// The fields of a membership an update may change.
#[derive(Debug, Clone, Default)]
pub struct MembershipChanges {
    pub role: Option<String>,
    pub public_metadata: Option<Metadata>,
    pub private_metadata: Option<Metadata>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub total_size: i64,
}

fn etag_matches(expected: Option<&str>, actual: &str) -> Result<()> {
    match expected {
        Some(etag) if etag != actual => Err(Error::EtagMismatch),
        _ => Ok(()),
    }
}

fn membership_not_found() -> Error {
    Error::NotFound(Reason::MembershipNotFound, "membership not found".into())
}

fn slug_taken(slug: &Slug) -> Error {
    Error::AlreadyExists(
        Reason::SlugTaken,
        format!("the slug {} is taken", slug.as_str()),
    )
}

/// A short random suffix for a derived slug that is taken.
fn slug_suffix() -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..5)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

impl Services {
    /// The permissions of `user_id`'s role in the organization, or `None` when
    /// it is not a member.
    pub async fn membership_permissions(
        &self,
        organization_id: &str,
        user_id: &str,
    ) -> Result<Option<Vec<String>>> {
        Ok(
            memberships::role_and_permissions(self.db.conn(), organization_id, user_id)
                .await?
                .map(|(_, permissions)| permissions),
        )
    }

    pub async fn create_organization(
        &self,
        actor: &Actor,
        new: NewOrganization,
        idempotency: Option<&Idempotency>,
        validate_only: bool,
    ) -> Result<CreatedOrganization> {
        let mut work = match self
            .begin_idempotent(actor, idempotency, validate_only)
            .await?
        {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result = self.create_organization_in(&mut work, actor, new).await;
        work.conclude(
            actor,
            idempotency,
            |created: &CreatedOrganization| created.organization.id.clone(),
            |created| created.organization.id.clone(),
            result,
        )
        .await
    }

    async fn create_organization_in(
        &self,
        work: &mut Work,
        actor: &Actor,
        new: NewOrganization,
    ) -> Result<CreatedOrganization> {
        let limit = self.config.rules.max_organizations_per_user;
        if !actor.platform {
            // Concurrent creations by one user must not pass the limit together.
            store::lock_key(&work.txn, &format!("create-organization:{}", actor.sub)).await?;
            let created = organizations::count_created_by(&work.txn, &actor.sub).await?;
            if created >= i64::from(limit) {
                return Err(Error::ResourceExhausted(
                    Reason::OrganizationLimitReached,
                    format!("a user may create at most {limit} organizations"),
                    Duration::from_secs(3600),
                ));
            }
        }
        let slug = match new.slug {
            Some(slug) => {
                if organizations::slug_taken(&work.txn, slug.as_str()).await? {
                    return Err(slug_taken(&slug));
                }
                slug
            }
            None => {
                let derived = Slug::derive_from(&new.name);
                let mut candidate = derived.clone();
                let mut attempts = 0;
                while organizations::slug_taken(&work.txn, candidate.as_str()).await? {
                    attempts += 1;
                    if attempts > 8 {
                        return Err(slug_taken(&derived));
                    }
                    candidate = derived.with_suffix(&slug_suffix());
                }
                candidate
            }
        };
        let organization = OrganizationRow {
            id: new_id(ids::ORGANIZATION),
            name: new.name,
            slug: slug.as_str().to_string(),
            created_by: new.created_by.clone(),
            max_allowed_memberships: new.max_allowed_memberships,
            members_count: 0,
            pending_invitations_count: 0,
            public_metadata: new.public_metadata.to_json(),
            private_metadata: new.private_metadata.to_json(),
            create_time: work.now,
            update_time: work.now,
            revision: 1,
        };
        organizations::insert(&work.txn, &organization)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    slug_taken(&slug)
                } else {
                    err.into()
                }
            })?;
        let (membership, billing_impact) = match &new.created_by {
            Some(creator) => {
                let role = self.config.rules.creator_role.clone();
                let added = self
                    .add_member(
                        work,
                        &organization.id,
                        creator,
                        &role,
                        Metadata::default(),
                        Metadata::default(),
                    )
                    .await?;
                (Some(added.membership), added.billing_impact)
            }
            None => (
                None,
                BillingImpact::unchanged(BillingPeriod::containing_micros(work.now), 0, false),
            ),
        };
        billing::add_to_total_organizations(&work.txn, 1).await?;
        let organization = organizations::get(&work.txn, &organization.id)
            .await?
            .ok_or_else(|| Error::internal("organization vanished in its own transaction"))?;
        Ok(CreatedOrganization {
            organization,
            membership,
            billing_impact,
        })
    }

    /// Adds a member inside `work`: checks the role, takes a place within
    /// `max_allowed_memberships` with a conditional update that concurrent calls
    /// cannot overshoot, inserts the membership and moves the billing counters.
    pub async fn add_member(
        &self,
        work: &mut Work,
        organization_id: &str,
        user_id: &str,
        role: &str,
        public_metadata: Metadata,
        private_metadata: Metadata,
    ) -> Result<AddedMember> {
        let Some(role_record) = roles::get_role(&work.txn, role).await? else {
            return Err(Error::invalid("role", format!("there is no role {role}")));
        };
        if memberships::get(&work.txn, organization_id, user_id)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists(
                Reason::MembershipExists,
                format!("{user_id} is a member already"),
            ));
        }
        if !organizations::take_membership_place(&work.txn, organization_id).await? {
            return match organizations::get(&work.txn, organization_id).await? {
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
            id: new_id(ids::MEMBERSHIP),
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            role: role.to_string(),
            public_metadata: public_metadata.to_json(),
            private_metadata: private_metadata.to_json(),
            create_time: work.now,
            update_time: work.now,
            revision: 1,
        };
        memberships::insert(&work.txn, &row).await.map_err(|err| {
            if is_unique_violation(&err) {
                Error::AlreadyExists(
                    Reason::MembershipExists,
                    format!("{user_id} is a member already"),
                )
            } else {
                err.into()
            }
        })?;
        let billing_impact = self.member_added(work, organization_id, user_id).await?;
        Ok(AddedMember {
            membership: MembershipRecord {
                row,
                permissions: role_record.permissions,
            },
            billing_impact,
        })
    }

    /// An organization for `GetOrganization` by a platform principal: by id
    /// from the access cache when it has it, else one query. Writes never use
    /// the cache: they read inside their transaction.
    pub async fn read_organization(&self, lookup: &OrganizationLookup) -> Result<OrganizationRow> {
        let organization_id = match lookup {
            OrganizationLookup::Id(id) => id,
            OrganizationLookup::Slug(slug) => {
                return organizations::get_by_slug(self.db.conn(), slug)
                    .await?
                    .ok_or_else(Error::organization_not_found);
            }
        };
        let generation = match self.access.organization(organization_id) {
            Ok(row) => return Ok(row.as_ref().clone()),
            Err(generation) => generation,
        };
        let row = organizations::get(self.db.conn(), organization_id)
            .await?
            .ok_or_else(Error::organization_not_found)?;
        self.access.fill_organization(generation, row.clone());
        Ok(row)
    }

    /// An organization for `GetOrganization` by an end user: only if it is a
    /// member. By id from the access cache when it knows both, else one query.
    pub async fn read_organization_as_member(
        &self,
        lookup: &OrganizationLookup,
        user_id: &str,
    ) -> Result<OrganizationRow> {
        let organization_id = match lookup {
            OrganizationLookup::Id(id) => id,
            OrganizationLookup::Slug(slug) => {
                return organizations::get_as_member(self.db.conn(), true, slug, user_id)
                    .await?
                    .map(|(row, _)| row)
                    .ok_or_else(Error::organization_not_found);
            }
        };
        let member_generation = match self.access.is_member(organization_id, user_id) {
            Ok(false) => return Err(Error::organization_not_found()),
            Ok(true) => None,
            Err(generation) => Some(generation),
        };
        let organization_generation = match self.access.organization(organization_id) {
            Ok(row) if member_generation.is_none() => return Ok(row.as_ref().clone()),
            Ok(_) => None,
            Err(generation) => Some(generation),
        };
        let (row, role) =
            organizations::get_as_member(self.db.conn(), false, organization_id, user_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
        if let Some(generation) = member_generation {
            self.access
                .fill_role(generation, organization_id, user_id, &role);
        }
        if let Some(generation) = organization_generation {
            self.access.fill_organization(generation, row.clone());
        }
        Ok(row)
    }

    pub async fn list_organizations(
        &self,
        filter: OrganizationFilter,
        order: OrganizationOrder,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<OrganizationRow>> {
        let fingerprint = paging::fingerprint(
            "organizations",
            &[
                filter.query.as_deref().unwrap_or(""),
                filter.member.as_deref().unwrap_or(""),
                &format!("{order:?}"),
            ],
        );
        let after = paging::decode(&fingerprint, page_token, 2)?;
        let conn = self.db.conn();
        let mut rows =
            organizations::list(conn, &filter, order, after.as_deref(), page_size + 1).await?;
        let total_size = organizations::count(conn, &filter).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(&fingerprint, order.key_of(last))
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }

    pub async fn update_organization(
        &self,
        actor: &Actor,
        organization_id: &str,
        etag: Option<&str>,
        changes: OrganizationChanges,
    ) -> Result<OrganizationRow> {
        self.change_organization(actor, organization_id, etag, |_| Ok(changes))
            .await
    }

    /// Deep-merges metadata patches (`null` deletes a key). The merge reads the
    /// locked row, so concurrent merges of different keys all land.
    pub async fn merge_organization_metadata(
        &self,
        actor: &Actor,
        organization_id: &str,
        etag: Option<&str>,
        public_patch: Option<Map<String, Value>>,
        private_patch: Option<Map<String, Value>>,
    ) -> Result<OrganizationRow> {
        self.change_organization(actor, organization_id, etag, |current| {
            let mut public = Metadata::from_json(&current.public_metadata);
            let mut private = Metadata::from_json(&current.private_metadata);
            if let Some(patch) = &public_patch {
                public.merge(patch);
            }
            if let Some(patch) = &private_patch {
                private.merge(patch);
            }
            let public = Metadata::parse("public_metadata", public.0)
                .map_err(|v| Error::InvalidArgument(vec![v]))?;
            let private = Metadata::parse("private_metadata", private.0)
                .map_err(|v| Error::InvalidArgument(vec![v]))?;
            Ok(OrganizationChanges {
                public_metadata: Some(public),
                private_metadata: Some(private),
                ..Default::default()
            })
        })
        .await
    }

    /// Applies the changes `decide` derives from the current, locked row.
    async fn change_organization(
        &self,
        actor: &Actor,
        organization_id: &str,
        etag: Option<&str>,
        decide: impl FnOnce(&OrganizationRow) -> Result<OrganizationChanges>,
    ) -> Result<OrganizationRow> {
        let work = self.begin(false).await?;
        let result: Result<OrganizationRow> = async {
            let current = organizations::get_for_update(&work.txn, organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            etag_matches(etag, &current.etag())?;
            let changes = decide(&current)?;
            let mut updated = current.clone();
            if let Some(name) = changes.name {
                updated.name = name;
            }
            if let Some(slug) = &changes.slug
                && slug.as_str() != current.slug
            {
                if organizations::slug_taken(&work.txn, slug.as_str()).await? {
                    return Err(slug_taken(slug));
                }
                updated.slug = slug.as_str().to_string();
            }
            if let Some(max) = changes.max_allowed_memberships {
                updated.max_allowed_memberships = max;
            }
            if let Some(metadata) = changes.public_metadata {
                updated.public_metadata = metadata.to_json();
            }
            if let Some(metadata) = changes.private_metadata {
                updated.private_metadata = metadata.to_json();
            }
            updated.update_time = work.now;
            let written = organizations::update(&work.txn, &updated, current.revision)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        Error::AlreadyExists(Reason::SlugTaken, "the slug is taken".into())
                    } else {
                        err.into()
                    }
                })?;
            if !written {
                return Err(Error::EtagMismatch);
            }
            updated.revision += 1;
            Ok(updated)
        }
        .await;
        finish_simple(work, actor, organization_id, organization_id, result).await
    }

    pub async fn delete_organization(
        &self,
        actor: &Actor,
        organization_id: &str,
        etag: Option<&str>,
    ) -> Result<()> {
        let work = self.begin(false).await?;
        let result: Result<()> = async {
            let current = organizations::get_for_update(&work.txn, organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            etag_matches(etag, &current.etag())?;
            organizations::delete(&work.txn, organization_id).await?;
            billing::add_to_total_organizations(&work.txn, -1).await?;
            Ok(())
        }
        .await;
        finish_simple(work, actor, organization_id, organization_id, result).await
    }

    pub async fn create_membership(
        &self,
        actor: &Actor,
        new: NewMembership,
        idempotency: Option<&Idempotency>,
        validate_only: bool,
    ) -> Result<AddedMember> {
        let mut work = match self
            .begin_idempotent(actor, idempotency, validate_only)
            .await?
        {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let role = new
            .role
            .clone()
            .unwrap_or_else(|| self.config.rules.default_role.clone());
        let result = async {
            organizations::get_for_update(&work.txn, &new.organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            self.add_member(
                &mut work,
                &new.organization_id,
                &new.user_id,
                &role,
                new.public_metadata,
                new.private_metadata,
            )
            .await
        }
        .await;
        work.conclude(
            actor,
            idempotency,
            |_: &AddedMember| new.organization_id.clone(),
            |added| added.membership.row.id.clone(),
            result,
        )
        .await
    }

    pub async fn list_memberships(
        &self,
        filter: MembershipFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<MembershipRecord>> {
        let fingerprint = paging::fingerprint(
            "memberships",
            &[
                filter.organization_id.as_deref().unwrap_or(""),
                filter.user_id.as_deref().unwrap_or(""),
                filter.role.as_deref().unwrap_or(""),
            ],
        );
        let after = paging::decode(&fingerprint, page_token, 2)?
            .map(|key| (key[0].parse::<i64>().unwrap_or_default(), key[1].clone()));
        let conn = self.db.conn();
        let mut rows = memberships::list(conn, &filter, after, page_size + 1).await?;
        let total_size = memberships::count(conn, &filter).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(
                &fingerprint,
                vec![last.create_time.to_string(), last.id.clone()],
            )
        });
        let items = with_permissions(conn, rows).await?;
        Ok(Page {
            items,
            next_page_token,
            total_size,
        })
    }

    pub async fn update_membership(
        &self,
        actor: &Actor,
        organization_id: &str,
        user_id: &str,
        etag: Option<&str>,
        changes: MembershipChanges,
    ) -> Result<MembershipRecord> {
        let work = self.begin(false).await?;
        let result: Result<MembershipRecord> = async {
            organizations::get_for_update(&work.txn, organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            let current = memberships::get(&work.txn, organization_id, user_id)
                .await?
                .ok_or_else(membership_not_found)?;
            etag_matches(etag, &current.etag())?;
            let mut updated = current.clone();
            if let Some(role) = changes.role
                && role != current.role
            {
                let Some(new_role) = roles::get_role(&work.txn, &role).await? else {
                    return Err(Error::invalid(
                        "membership.role",
                        format!("there is no role {role}"),
                    ));
                };
                if !new_role.permissions.iter().any(|p| p == MEMBERSHIPS_MANAGE) {
                    guard_last_admin(&work.txn, &current, false).await?;
                }
                updated.role = role;
            }
            if let Some(metadata) = changes.public_metadata {
                updated.public_metadata = metadata.to_json();
            }
            if let Some(metadata) = changes.private_metadata {
                updated.private_metadata = metadata.to_json();
            }
            updated.update_time = work.now;
            if !memberships::update(&work.txn, &updated, current.revision).await? {
                return Err(Error::EtagMismatch);
            }
            updated.revision += 1;
            let permissions = roles::get_role(&work.txn, &updated.role)
                .await?
                .map(|r| r.permissions)
                .unwrap_or_default();
            Ok(MembershipRecord {
                row: updated,
                permissions,
            })
        }
        .await;
        let resource = result
            .as_ref()
            .map(|m| m.row.id.clone())
            .unwrap_or_default();
        finish_simple(work, actor, organization_id, &resource, result).await
    }

    pub async fn delete_membership(
        &self,
        actor: &Actor,
        organization_id: &str,
        user_id: &str,
        etag: Option<&str>,
    ) -> Result<()> {
        let work = self.begin(false).await?;
        let result: Result<String> = async {
            organizations::get_for_update(&work.txn, organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            let current = memberships::get(&work.txn, organization_id, user_id)
                .await?
                .ok_or_else(membership_not_found)?;
            etag_matches(etag, &current.etag())?;
            guard_last_admin(&work.txn, &current, true).await?;
            memberships::delete(&work.txn, &current.id).await?;
            organizations::release_membership_place(&work.txn, organization_id).await?;
            Ok(current.id)
        }
        .await;
        let resource = result.as_ref().cloned().unwrap_or_default();
        finish_simple(work, actor, organization_id, &resource, result)
            .await
            .map(|_| ())
    }

    /// Whether `user_id` holds `permission` in the organization, and its role:
    /// from the access cache, or one indexed query.
    pub async fn check_permission(
        &self,
        organization_id: &str,
        user_id: &str,
        permission: &str,
    ) -> Result<(bool, String)> {
        let generation = match self.access.check(organization_id, user_id, permission) {
            Cached::Answer(allowed, role) => return Ok((allowed, role)),
            Cached::Miss(generation) => generation,
        };
        let found =
            memberships::role_and_permissions(self.db.conn(), organization_id, user_id).await?;
        let answer = match &found {
            Some((role, permissions)) => {
                (permissions.iter().any(|p| p == permission), role.clone())
            }
            None => (false, String::new()),
        };
        self.access
            .fill(generation, organization_id, user_id, found);
        Ok(answer)
    }

    pub async fn list_audit_events(
        &self,
        organization_id: Option<&str>,
        actor: Option<&str>,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<EventRow>> {
        let fingerprint = paging::fingerprint(
            "audit_events",
            &[organization_id.unwrap_or(""), actor.unwrap_or("")],
        );
        let after = paging::decode(&fingerprint, page_token, 1)?
            .map(|key| key[0].parse::<i64>().unwrap_or_default());
        let filter = reader::AuditFilter {
            organization_id: organization_id.map(str::to_string),
            actor: actor.map(str::to_string),
        };
        let conn = self.db.conn();
        let mut rows = reader::audit_page(conn, &filter, after, page_size + 1).await?;
        let total_size = reader::count_audit(conn, &filter).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(&fingerprint, vec![last.seq.to_string()])
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }
}

/// Refuses to remove (or demote) the last member holding
/// `org:sys_memberships:manage` while other members remain. The caller holds
/// the organization's row lock, so two such changes cannot both pass.
async fn guard_last_admin(
    conn: &impl ConnectionTrait,
    membership: &MembershipRow,
    removing: bool,
) -> Result<()> {
    let holds_manage = roles::grants(conn, &membership.role, MEMBERSHIPS_MANAGE).await?;
    if !holds_manage {
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
                organization_id: Some(membership.organization_id.clone()),
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

/// Trims a page fetched with one extra row and returns the next page token.
pub fn next_token<T>(rows: &mut Vec<T>, page_size: u64, encode: impl Fn(&T) -> String) -> String {
    if rows.len() as u64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(encode).unwrap_or_default()
    } else {
        String::new()
    }
}

/// Resolves the permissions of each membership's role, in one query.
pub async fn with_permissions(
    conn: &impl ConnectionTrait,
    rows: Vec<MembershipRow>,
) -> Result<Vec<MembershipRecord>> {
    let mut keys: Vec<String> = rows.iter().map(|row| row.role.clone()).collect();
    keys.sort();
    keys.dedup();
    let by_role = roles::permissions_of(conn, &keys).await?;
    Ok(rows
        .into_iter()
        .map(|row| MembershipRecord {
            permissions: by_role.get(&row.role).cloned().unwrap_or_default(),
            row,
        })
        .collect())
}

/// Commits `work` with an audit event when `result` is Ok, else rolls back.
pub async fn finish_simple<T>(
    mut work: Work,
    actor: &Actor,
    organization_id: &str,
    resource_id: &str,
    result: Result<T>,
) -> Result<T> {
    match result {
        Ok(value) => {
            work.audit(actor, organization_id, resource_id, None);
            work.commit().await?;
            Ok(value)
        }
        Err(err) => {
            work.rollback().await;
            Err(err)
        }
    }
}

/// Field violations for a list of permission keys that do not exist.
pub fn unknown_permissions(
    field: &str,
    requested: &[String],
    existing: &[String],
) -> Vec<FieldViolation> {
    requested
        .iter()
        .enumerate()
        .filter(|(_, key)| !existing.contains(key))
        .map(|(i, key)| {
            FieldViolation::new(
                format!("{field}[{i}]"),
                format!("there is no permission {key}"),
            )
        })
        .collect()
}
