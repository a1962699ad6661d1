//! Verified domains: claiming a domain for an organization, its settings, and
//! who owns a name. Proving ownership is in [`super::domain_verification`].
//!
//! A name may be claimed by several organizations while unverified; once one
//! verifies it, it is that organization's alone (a partial unique index holds
//! this in the database). Changes that decide who holds a name (creating a
//! claim, verifying one) first take a lock on the name, so they are
//! serialized per name: no claim slips in next to a verification, and two
//! verifications of one name never deadlock on each other's rows. An
//! unverified claim expires after the claim TTL: it then counts for nothing
//! (not found, not listed, not within the organization's limit) and is
//! deleted when its name or organization is next claimed.

use std::sync::Arc;

use super::lifecycle::lock_active;
use super::list::Listing;
use super::unit_of_work::{Call, Idempotency, Tx, Writer};
use crate::dns::TxtLookup;
use crate::domain::enrollment::{Domain, DomainChanges, NewDomain, OwnedDomain};
use crate::domain::events::EventKind;
use crate::domain::ids::{DomainId, OrganizationId};
use crate::domain::invitations::{MAX_DOMAINS_PER_ORGANIZATION, is_consumer_domain};
use crate::domain::keys::ServerKey;
use crate::domain::organizations::Organization;
use crate::domain::paging::{Page, PageTokens};
use crate::domain::verification::DomainRules;
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::repo::domains::{self, DomainRow};
use crate::store::repo::organizations;
use crate::store::{Db, is_unique_violation, lock_key};

pub fn domain_not_found() -> Error {
    Error::NotFound(Reason::DomainNotFound, "domain not found".into())
}

/// A verified domain of this name exists (in another organization, or this
/// one), or this organization claimed it already.
pub fn domain_exists(name: &str) -> Error {
    Error::AlreadyExists(
        Reason::DomainExists,
        format!("the domain {name} is verified by an organization, or claimed by this one already"),
    )
}

pub(super) fn already_verified() -> Error {
    Error::FailedPrecondition(
        Reason::DomainAlreadyVerified,
        "the domain is verified already".into(),
    )
}

/// Serializes, until the transaction ends, the changes that decide who holds
/// `name`.
pub(super) async fn lock_name(tx: &Tx, name: &str) -> Result<()> {
    Ok(lock_key(tx.conn(), &format!("domain-name:{name}")).await?)
}

/// The domain use cases.
#[derive(Clone)]
pub struct Domains {
    pub(super) db: Db,
    pub(super) writer: Writer,
    pub(super) rules: DomainRules,
    /// Keys the stored verification codes.
    pub(super) code_key: ServerKey,
    pub(super) dns: Arc<dyn TxtLookup>,
    tokens: PageTokens,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domains")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Domains {
    pub fn new(
        db: Db,
        writer: Writer,
        rules: DomainRules,
        code_key: ServerKey,
        dns: Arc<dyn TxtLookup>,
        tokens: PageTokens,
    ) -> Self {
        Domains {
            db,
            writer,
            rules,
            code_key,
            dns,
            tokens,
        }
    }

    /// The row as callers see it at `now`: an expired claim is gone.
    pub(super) fn in_force(&self, row: Option<DomainRow>, now: i64) -> Result<Domain> {
        row.filter(|row| self.rules.in_force(row.verified, row.create_time, now))
            .map(Domain::from)
            .ok_or_else(domain_not_found)
    }

    /// Reads a domain in `tx`, locked for the rest of it. A domain of a
    /// deactivated organization is not changed (`ORGANIZATION_DEACTIVATED`).
    pub(super) async fn locked(&self, tx: &Tx, id: &DomainId) -> Result<Domain> {
        let row = domains::get_for_update(tx.conn(), id.as_str()).await?;
        let domain = self.in_force(row, tx.now)?;
        // A plain read: the domain's lock is held, and taking the
        // organization's after it would invert the order creates take.
        if organizations::get(tx.conn(), domain.organization_id.as_str())
            .await?
            .is_some_and(|organization| organization.deactivate_time.is_some())
        {
            return Err(Error::organization_deactivated());
        }
        Ok(domain)
    }

    pub async fn create(
        &self,
        actor: Actor,
        new: NewDomain,
        idempotency: Option<Idempotency>,
    ) -> Result<Domain> {
        // Only the platform (orgs:admin), which proved ownership its own way,
        // may skip the proof.
        if new.verified && !actor.by_scope() {
            return Err(Error::permission_denied(
                "only orgs:admin may create a domain already verified",
            ));
        }
        if is_consumer_domain(&new.name, &self.rules.consumer_domains) {
            return Err(Error::FailedPrecondition(
                Reason::ConsumerDomain,
                format!(
                    "{} is a consumer mail domain and cannot belong to an organization",
                    new.name
                ),
            ));
        }
        let rules = self.rules.clone();
        self.writer
            .write(Call::idempotent(actor, idempotency, false), move |tx| {
                Box::pin(async move {
                    // The lock makes the per-organization limit hold under
                    // concurrent creates.
                    lock_active(tx.conn(), new.organization_id.as_str()).await?;
                    lock_name(tx, &new.name).await?;
                    let cutoff = rules.claim_cutoff(tx.now);
                    let expired = domains::expired_claims(
                        tx.conn(),
                        new.organization_id.as_str(),
                        &new.name,
                        cutoff,
                    )
                    .await?;
                    for row in &expired {
                        domains::delete(tx.conn(), &row.id).await?;
                    }
                    if domains::verified_named(tx.conn(), &new.name).await?.is_some()
                        || domains::claim_of(tx.conn(), new.organization_id.as_str(), &new.name)
                            .await?
                            .is_some()
                    {
                        return Err(domain_exists(&new.name));
                    }
                    if domains::count_in_organization(
                        tx.conn(),
                        new.organization_id.as_str(),
                        cutoff,
                    )
                    .await?
                        >= MAX_DOMAINS_PER_ORGANIZATION
                    {
                        return Err(Error::FailedPrecondition(
                            Reason::DomainLimitReached,
                            format!(
                                "an organization may have at most {MAX_DOMAINS_PER_ORGANIZATION} domains"
                            ),
                        ));
                    }
                    let row = DomainRow {
                        id: DomainId::new().into_string(),
                        organization_id: new.organization_id.to_string(),
                        name: new.name.clone(),
                        enrollment_mode: new.enrollment_mode.as_str().to_string(),
                        verified: new.verified,
                        affiliation_email_address: String::new(),
                        verify_time: new.verified.then_some(tx.now),
                        create_time: tx.now,
                        update_time: tx.now,
                        revision: 1,
                        verification_strategy: new.verification_strategy.as_str().to_string(),
                    };
                    domains::insert(tx.conn(), &row).await.map_err(|err| {
                        if is_unique_violation(&err) {
                            domain_exists(&new.name)
                        } else {
                            err.into()
                        }
                    })?;
                    let domain = Domain::from(row);
                    tx.emit(
                        EventKind::DomainCreated,
                        Some(&domain.organization_id),
                        domain.id.as_str(),
                        &domain,
                    )?;
                    for row in expired {
                        let gone = Domain::from(row);
                        tx.emit(
                            EventKind::DomainDeleted,
                            Some(&gone.organization_id),
                            gone.id.as_str(),
                            &gone,
                        )?;
                    }
                    if domain.verified {
                        super::domain_verification::remove_other_claims(tx, &domain).await?;
                    }
                    Ok(domain)
                })
            })
            .await
    }

    pub async fn get(&self, id: &DomainId) -> Result<Domain> {
        let row = domains::get(self.db.conn(), id.as_str()).await?;
        self.in_force(row, self.writer.now())
    }

    pub async fn list(
        &self,
        organization_id: &OrganizationId,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<Domain>> {
        let listing = Listing::start(
            &self.tokens,
            "domains",
            &[organization_id.as_str()],
            1,
            page_size,
            page_token,
        )?;
        let conn = self.db.conn();
        let cutoff = self.rules.claim_cutoff(self.writer.now());
        let rows = domains::list(
            conn,
            organization_id.as_str(),
            cutoff,
            listing.after_text(0),
            listing.limit(),
        )
        .await?;
        let total_size = domains::count(conn, organization_id.as_str(), cutoff).await?;
        Ok(listing
            .finish(rows, total_size, |last| vec![last.name.clone()])
            .map(Domain::from))
    }

    /// The verified domain of `name` and the organization owning it.
    /// Unverified claims are not ownership.
    pub async fn lookup(&self, name: &str) -> Result<OwnedDomain> {
        let conn = self.db.conn();
        let domain: Domain = domains::verified_named(conn, name)
            .await?
            .ok_or_else(domain_not_found)?
            .into();
        let organization: Organization = organizations::get(conn, domain.organization_id.as_str())
            .await?
            .ok_or_else(domain_not_found)?
            .into();
        Ok(OwnedDomain {
            domain,
            organization,
        })
    }

    pub async fn update(
        &self,
        actor: Actor,
        id: DomainId,
        etag: Option<String>,
        changes: DomainChanges,
    ) -> Result<Domain> {
        let this = self.clone();
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current = this.locked(tx, &id).await?;
                    if etag.is_some_and(|etag| etag != current.etag()) {
                        return Err(Error::EtagMismatch);
                    }
                    let strategy = changes
                        .verification_strategy
                        .unwrap_or(current.verification_strategy);
                    if strategy != current.verification_strategy && current.verified {
                        return Err(already_verified());
                    }
                    let mode = changes.enrollment_mode.unwrap_or(current.enrollment_mode);
                    if !domains::update_settings(
                        tx.conn(),
                        id.as_str(),
                        mode,
                        strategy,
                        tx.now,
                        current.revision,
                    )
                    .await?
                    {
                        return Err(Error::EtagMismatch);
                    }
                    let updated = this.locked(tx, &id).await?;
                    tx.emit(
                        EventKind::DomainUpdated,
                        Some(&updated.organization_id),
                        updated.id.as_str(),
                        &updated,
                    )?;
                    Ok(updated)
                })
            })
            .await
    }

    pub async fn delete(&self, actor: Actor, id: DomainId) -> Result<()> {
        let this = self.clone();
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current = this.locked(tx, &id).await?;
                    domains::delete(tx.conn(), id.as_str()).await?;
                    tx.emit(
                        EventKind::DomainDeleted,
                        Some(&current.organization_id),
                        current.id.as_str(),
                        &current,
                    )?;
                    Ok(())
                })
            })
            .await
    }
}
