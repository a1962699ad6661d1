//! Organizations: creating them (also on behalf of a user), reading, listing,
//! changing and deleting them.

use std::time::Duration;

use super::access::AccessCache;
use super::list::Listing;
use super::members::Members;
use super::unit_of_work::{Call, Idempotency, Tx, Writer};
use crate::domain::events::EventKind;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::organizations::{
    AddedMember, CreatedOrganization, MetadataPatch, NewOrganization, Organization,
    OrganizationChanges, OrganizationFilter, OrganizationLookup, OrganizationOrder,
    OrganizationRules,
};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::types::{Metadata, Slug};
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::repo::organizations::{KeyColumn, OrganizationRow};
use crate::store::repo::{billing, member_writes, organizations};
use crate::store::{Db, is_unique_violation};

fn etag_matches(expected: Option<&str>, actual: &str) -> Result<()> {
    match expected {
        Some(etag) if etag != actual => Err(Error::EtagMismatch),
        _ => Ok(()),
    }
}

fn external_id_taken(external_id: &str) -> Error {
    Error::AlreadyExists(
        Reason::ExternalIdTaken,
        format!(
            "another organization has the external_id {}",
            crate::domain::quote::quote(external_id)
        ),
    )
}

/// A unique index (slug or external id) refused a row whose values were
/// checked free in this same transaction: a concurrent change took one of
/// them in between (or, for a new organization, refused the insert and then
/// gave them up again). On PostgreSQL a refused update aborts the
/// transaction, so nothing more can be asked in it; the writer runs the call
/// again in a new one, whose checks then answer `SLUG_TAKEN` or
/// `EXTERNAL_ID_TAKEN` (or pick another suffix for a derived slug).
fn lost_unique_race() -> Error {
    Error::Aborted(
        Reason::SerializationFailure,
        "a concurrent change took the slug or the external id; retry".into(),
    )
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

/// The organization use cases.
#[derive(Debug, Clone)]
pub struct Organizations {
    db: Db,
    pub(super) writer: Writer,
    rules: OrganizationRules,
    pub(super) members: Members,
    access: AccessCache,
    tokens: PageTokens,
}

impl Organizations {
    pub fn new(
        db: Db,
        writer: Writer,
        rules: OrganizationRules,
        members: Members,
        access: AccessCache,
        tokens: PageTokens,
    ) -> Self {
        Organizations {
            db,
            writer,
            rules,
            members,
            access,
            tokens,
        }
    }

    /// Creates an organization; `created_by`, if any, becomes its only member
    /// with the creator role.
    pub async fn create(
        &self,
        actor: Actor,
        new: NewOrganization,
        idempotency: Option<Idempotency>,
        validate_only: bool,
    ) -> Result<CreatedOrganization> {
        let this = self.clone();
        self.writer
            .write(
                Call::idempotent(actor, idempotency, validate_only),
                move |tx| Box::pin(async move { this.create_in(tx, new).await }),
            )
            .await
    }

    async fn create_in(&self, tx: &mut Tx, new: NewOrganization) -> Result<CreatedOrganization> {
        let limit = self.rules.max_organizations_per_user;
        if !tx.actor().platform {
            let creator = tx.actor().sub.clone();
            // Concurrent creations by one user must not pass the limit together.
            crate::store::lock_key(tx.conn(), &format!("create-organization:{creator}")).await?;
            let created = organizations::count_created_by(tx.conn(), &creator).await?;
            if created >= i64::from(limit) {
                return Err(Error::ResourceExhausted(
                    Reason::OrganizationLimitReached,
                    format!("a user may create at most {limit} organizations"),
                    Duration::from_secs(3600),
                ));
            }
        }
        let first_slug = new
            .slug
            .clone()
            .unwrap_or_else(|| Slug::derive_from(&new.name));
        let id = OrganizationId::new();
        let mut row = OrganizationRow {
            id: id.to_string(),
            name: new.name,
            slug: first_slug.as_str().to_string(),
            created_by: new.created_by.as_ref().map(UserId::to_string),
            max_allowed_memberships: new.max_allowed_memberships,
            // The creator's place is taken with the insert.
            members_count: i32::from(new.created_by.is_some()),
            pending_invitations_count: 0,
            public_metadata: new.public_metadata.to_json(),
            private_metadata: new.private_metadata.to_json(),
            create_time: tx.now,
            update_time: tx.now,
            revision: 1,
            external_id: new.external_id.clone(),
            deactivate_time: None,
        };
        // The organization goes in with its creator's membership in one
        // round trip, whose reads of the creator's billing state must come
        // after the creator's lock (PostgreSQL): taken first, with the
        // catalogue's.
        if let Some(creator) = &new.created_by {
            member_writes::lock_catalogue_and_users(tx.conn(), &[creator.to_string()]).await?;
        }
        // The insert decides whether the slug and the external id are free
        // (waiting for a concurrent change that holds one of them); only a
        // refused insert asks which one was taken. A derived slug that is
        // taken gets a random suffix.
        let mut suffixes = 0;
        let added = loop {
            if let Some(added) = self.insert(tx, &row, new.created_by.as_ref()).await? {
                break added;
            }
            let slug_was_taken = organizations::slug_taken(tx.conn(), &row.slug).await?;
            if slug_was_taken && new.slug.is_some() {
                return Err(slug_taken(&first_slug));
            }
            if let Some(external_id) = &new.external_id
                && organizations::external_id_taken(tx.conn(), external_id, None).await?
            {
                return Err(external_id_taken(external_id));
            }
            if !slug_was_taken {
                // The row that refused this one is gone again.
                return Err(lost_unique_race());
            }
            suffixes += 1;
            if suffixes > 8 {
                return Err(slug_taken(&first_slug));
            }
            row.slug = first_slug.with_suffix(&slug_suffix()).as_str().to_string();
        };
        // As inserted: nothing else can have changed it yet.
        let organization = Organization::from(row);
        let (membership, billing_impact) = match added {
            // Its events were emitted with its creator's membership.
            Some(added) => (Some(added.membership), added.billing_impact),
            None => {
                tx.emit(
                    EventKind::OrganizationCreated,
                    Some(&id),
                    id.as_str(),
                    &organization,
                )?;
                (None, self.members.counters().nothing_changed(tx.now))
            }
        };
        Ok(CreatedOrganization {
            organization,
            membership,
            billing_impact,
        })
    }

    /// Inserts the organization with its creator, if any, as its member (the
    /// creator role) and counts it, unless its id, slug or external id is
    /// taken (then `None`, and nothing written). With a creator it is one
    /// round trip ([`Members::insert_with_creator`]), the creator's locks
    /// taken before.
    async fn insert(
        &self,
        tx: &mut Tx,
        row: &OrganizationRow,
        creator: Option<&UserId>,
    ) -> Result<Option<Option<AddedMember>>> {
        if let Some(creator) = creator {
            let role = &self.rules.creator_role;
            let added = self
                .members
                .insert_with_creator(tx, row, creator, role)
                .await?;
            return Ok(added.map(Some));
        }
        if !organizations::insert_new(tx.conn(), row).await? {
            return Ok(None);
        }
        billing::add_to_total_organizations(tx.conn(), 1).await?;
        Ok(Some(None))
    }

    /// An organization for a caller that may read any: by id from the access
    /// cache when it has it, else one query. Writes never use the cache: they
    /// read inside their transaction.
    pub async fn get(&self, lookup: &OrganizationLookup) -> Result<Organization> {
        let (by, key) = match lookup {
            OrganizationLookup::Id(id) => (KeyColumn::Id, id.as_str()),
            OrganizationLookup::Slug(slug) => (KeyColumn::Slug, slug.as_str()),
            OrganizationLookup::ExternalId(external_id) => {
                (KeyColumn::ExternalId, external_id.as_str())
            }
        };
        let OrganizationLookup::Id(organization_id) = lookup else {
            return organizations::get_by(self.db.conn(), by, key)
                .await?
                .map(Organization::from)
                .ok_or_else(Error::organization_not_found);
        };
        let generation = match self.access.organization(organization_id.as_str()) {
            Ok(organization) => return Ok(organization.as_ref().clone()),
            Err(generation) => generation,
        };
        let organization: Organization =
            organizations::get(self.db.conn(), organization_id.as_str())
                .await?
                .ok_or_else(Error::organization_not_found)?
                .into();
        self.access
            .fill_organization(generation, organization.clone());
        Ok(organization)
    }

    /// An organization for a caller that may read only its own: answered only
    /// if `user_id` is a member (NOT_FOUND otherwise, as for one that does not
    /// exist). By id from the access cache when it knows both, else one query.
    pub async fn get_as_member(
        &self,
        lookup: &OrganizationLookup,
        user_id: &str,
    ) -> Result<Organization> {
        let (by, key) = match lookup {
            OrganizationLookup::Id(id) => (KeyColumn::Id, id.as_str()),
            OrganizationLookup::Slug(slug) => (KeyColumn::Slug, slug.as_str()),
            OrganizationLookup::ExternalId(external_id) => {
                (KeyColumn::ExternalId, external_id.as_str())
            }
        };
        let OrganizationLookup::Id(organization_id) = lookup else {
            return organizations::get_as_member(self.db.conn(), by, key, user_id)
                .await?
                .map(|(row, _)| Organization::from(row))
                .ok_or_else(Error::organization_not_found);
        };
        let member_generation = match self.access.is_member(organization_id.as_str(), user_id) {
            Ok(false) => return Err(Error::organization_not_found()),
            Ok(true) => None,
            Err(generation) => Some(generation),
        };
        let organization_generation = match self.access.organization(organization_id.as_str()) {
            Ok(organization) if member_generation.is_none() => {
                return Ok(organization.as_ref().clone());
            }
            Ok(_) => None,
            Err(generation) => Some(generation),
        };
        let (row, role) = organizations::get_as_member(
            self.db.conn(),
            KeyColumn::Id,
            organization_id.as_str(),
            user_id,
        )
        .await?
        .ok_or_else(Error::organization_not_found)?;
        let organization = Organization::from(row);
        // The cache's members are those holding their role's permissions: a
        // member of a deactivated organization holds none.
        if let Some(generation) =
            member_generation.filter(|_| organization.deactivate_time.is_none())
        {
            self.access
                .fill_role(generation, organization_id.as_str(), user_id, &role);
        }
        if let Some(generation) = organization_generation {
            self.access
                .fill_organization(generation, organization.clone());
        }
        Ok(organization)
    }

    /// Organizations by id, in the order of `ids` (a repeated id answered
    /// again), in one query. With `member`, only organizations that user
    /// belongs to count as found. The first id not found is NOT_FOUND naming
    /// it.
    pub async fn batch_get(
        &self,
        ids: &[OrganizationId],
        member: Option<&str>,
    ) -> Result<Vec<Organization>> {
        let keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = match member {
            None => organizations::get_many(self.db.conn(), &keys).await?,
            Some(user_id) => {
                organizations::get_many_as_member(self.db.conn(), &keys, user_id).await?
            }
        };
        let found: std::collections::HashMap<String, Organization> = rows
            .into_iter()
            .map(|row| (row.id.clone(), Organization::from(row)))
            .collect();
        ids.iter()
            .map(|id| {
                found
                    .get(id.as_str())
                    .cloned()
                    .ok_or_else(|| Error::organization_not_found_named(id))
            })
            .collect()
    }

    pub async fn list(
        &self,
        filter: OrganizationFilter,
        order: OrganizationOrder,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<Organization>> {
        let listing = Listing::start(
            &self.tokens,
            "organizations",
            &[
                filter.query.as_deref().unwrap_or(""),
                filter.member.as_ref().map_or("", |m| m.as_str()),
                &format!("{order:?}"),
                &format!("{:?}", filter.state),
            ],
            2,
            page_size,
            page_token,
        )?;
        let conn = self.db.conn();
        let rows = organizations::list(conn, &filter, order, listing.after(), listing.limit())
            .await?
            .into_iter()
            .map(Organization::from)
            .collect();
        let total_size = organizations::count(conn, &filter).await?;
        Ok(listing.finish(rows, total_size, |last| order.key_of(last)))
    }

    pub async fn update(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        etag: Option<String>,
        changes: OrganizationChanges,
    ) -> Result<Organization> {
        self.change(actor, organization_id, etag, move |_| Ok(changes))
            .await
    }

    /// Deep-merges metadata patches (`null` deletes a key). The merge reads the
    /// locked row, so concurrent merges of different keys all land.
    pub async fn merge_metadata(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        etag: Option<String>,
        patch: MetadataPatch,
    ) -> Result<Organization> {
        self.change(actor, organization_id, etag, move |current| {
            let mut public = current.public_metadata.clone();
            let mut private = current.private_metadata.clone();
            if let Some(patch) = &patch.public_metadata {
                public.merge(patch);
            }
            if let Some(patch) = &patch.private_metadata {
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

    /// Applies the changes `decide` derives from the current, locked
    /// organization.
    async fn change(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        etag: Option<String>,
        decide: impl FnOnce(&Organization) -> Result<OrganizationChanges> + Clone + Send + 'static,
    ) -> Result<Organization> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current: Organization =
                        organizations::get_for_update(tx.conn(), organization_id.as_str())
                            .await?
                            .ok_or_else(Error::organization_not_found)?
                            .into();
                    etag_matches(etag.as_deref(), &current.etag())?;
                    if current.deactivate_time.is_some() {
                        return Err(Error::organization_deactivated());
                    }
                    let changes = decide(&current)?;
                    let mut row = OrganizationRow {
                        id: current.id.to_string(),
                        name: changes.name.unwrap_or_else(|| current.name.clone()),
                        slug: current.slug.clone(),
                        external_id: changes
                            .external_id
                            .clone()
                            .unwrap_or_else(|| current.external_id.clone()),
                        created_by: current.created_by.as_ref().map(UserId::to_string),
                        max_allowed_memberships: changes
                            .max_allowed_memberships
                            .unwrap_or(current.max_allowed_memberships),
                        members_count: current.members_count,
                        pending_invitations_count: current.pending_invitations_count,
                        public_metadata: changes
                            .public_metadata
                            .as_ref()
                            .unwrap_or(&current.public_metadata)
                            .to_json(),
                        private_metadata: changes
                            .private_metadata
                            .as_ref()
                            .unwrap_or(&current.private_metadata)
                            .to_json(),
                        create_time: current.create_time,
                        update_time: tx.now,
                        revision: current.revision,
                        deactivate_time: current.deactivate_time,
                    };
                    if let Some(slug) = &changes.slug
                        && slug.as_str() != current.slug
                    {
                        if organizations::slug_taken(tx.conn(), slug.as_str()).await? {
                            return Err(slug_taken(slug));
                        }
                        row.slug = slug.as_str().to_string();
                    }
                    if let Some(external_id) = &row.external_id
                        && current.external_id.as_ref() != Some(external_id)
                        && organizations::external_id_taken(
                            tx.conn(),
                            external_id,
                            Some(row.id.as_str()),
                        )
                        .await?
                    {
                        return Err(external_id_taken(external_id));
                    }
                    let written =
                        match organizations::update(tx.conn(), &row, current.revision).await {
                            Ok(written) => written,
                            Err(err) if is_unique_violation(&err) => {
                                return Err(lost_unique_race());
                            }
                            Err(err) => return Err(err.into()),
                        };
                    if !written {
                        return Err(Error::EtagMismatch);
                    }
                    row.revision += 1;
                    let updated = Organization::from(row);
                    tx.emit(
                        EventKind::OrganizationUpdated,
                        Some(&updated.id),
                        updated.id.as_str(),
                        &updated,
                    )?;
                    Ok(updated)
                })
            })
            .await
    }

    /// Deletes an organization with its memberships, invitations, domains and
    /// requests; its billing history stays.
    pub async fn delete(
        &self,
        actor: Actor,
        organization_id: OrganizationId,
        etag: Option<String>,
    ) -> Result<()> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current: Organization =
                        organizations::get_for_update(tx.conn(), organization_id.as_str())
                            .await?
                            .ok_or_else(Error::organization_not_found)?
                            .into();
                    etag_matches(etag.as_deref(), &current.etag())?;
                    organizations::delete(tx.conn(), organization_id.as_str()).await?;
                    organizations::record_deleted(tx.conn(), organization_id.as_str(), tx.now)
                        .await?;
                    billing::add_to_total_organizations(tx.conn(), -1).await?;
                    tx.emit(
                        EventKind::OrganizationDeleted,
                        Some(&organization_id),
                        organization_id.as_str(),
                        &current,
                    )?;
                    Ok(())
                })
            })
            .await
    }
}
