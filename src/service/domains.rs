//! Verified domains: claiming a domain for an organization, proving it, and
//! its enrollment mode.

use super::list::Listing;
use super::unit_of_work::{Call, Idempotency, Tx, Writer};
use crate::domain::enrollment::{Domain, NewDomain, PreparedVerification};
use crate::domain::events::EventKind;
use crate::domain::ids::{DomainId, OrganizationId};
use crate::domain::invitations::{
    EnrollmentMode, MAX_DOMAINS_PER_ORGANIZATION, MAX_VERIFICATION_ATTEMPTS,
    VERIFICATION_CODE_VALIDITY_MICROS, is_consumer_domain, new_verification_code,
    verification_code_hash,
};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::types::Email;
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::repo::domains::{self, DomainRow};
use crate::store::repo::organizations;
use crate::store::{Db, is_unique_violation};

pub fn domain_not_found() -> Error {
    Error::NotFound(Reason::DomainNotFound, "domain not found".into())
}

fn domain_exists(name: &str) -> Error {
    Error::AlreadyExists(
        Reason::DomainExists,
        format!("the domain {name} belongs to an organization already"),
    )
}

fn already_verified() -> Error {
    Error::FailedPrecondition(
        Reason::DomainAlreadyVerified,
        "the domain is verified already".into(),
    )
}

/// Reads a domain in `tx`, locked for the rest of it.
async fn locked(tx: &Tx, id: &DomainId) -> Result<Domain> {
    domains::get_for_update(tx.conn(), id.as_str())
        .await?
        .map(Domain::from)
        .ok_or_else(domain_not_found)
}

/// Reads a domain in `tx`.
async fn read(tx: &Tx, id: &DomainId) -> Result<Domain> {
    domains::get(tx.conn(), id.as_str())
        .await?
        .map(Domain::from)
        .ok_or_else(domain_not_found)
}

/// The domain use cases.
#[derive(Debug, Clone)]
pub struct Domains {
    db: Db,
    writer: Writer,
    /// Mail domains of consumer providers, which no organization may claim.
    consumer_domains: Vec<String>,
    tokens: PageTokens,
}

impl Domains {
    pub fn new(db: Db, writer: Writer, consumer_domains: Vec<String>, tokens: PageTokens) -> Self {
        Domains {
            db,
            writer,
            consumer_domains,
            tokens,
        }
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
        if is_consumer_domain(&new.name, &self.consumer_domains) {
            return Err(Error::FailedPrecondition(
                Reason::ConsumerDomain,
                format!(
                    "{} is a consumer mail domain and cannot belong to an organization",
                    new.name
                ),
            ));
        }
        self.writer
            .write(Call::idempotent(actor, idempotency, false), move |tx| {
                Box::pin(async move {
                    // The lock makes the per-organization limit hold under
                    // concurrent creates.
                    organizations::get_for_update(tx.conn(), new.organization_id.as_str())
                        .await?
                        .ok_or_else(Error::organization_not_found)?;
                    if domains::name_taken(tx.conn(), &new.name).await? {
                        return Err(domain_exists(&new.name));
                    }
                    if domains::count_in_organization(tx.conn(), new.organization_id.as_str())
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
                    Ok(domain)
                })
            })
            .await
    }

    pub async fn get(&self, id: &DomainId) -> Result<Domain> {
        domains::get(self.db.conn(), id.as_str())
            .await?
            .map(Domain::from)
            .ok_or_else(domain_not_found)
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
        let rows = domains::list(
            conn,
            organization_id.as_str(),
            listing.after_text(0),
            listing.limit(),
        )
        .await?;
        let total_size = domains::count(conn, organization_id.as_str()).await?;
        Ok(listing
            .finish(rows, total_size, |last| vec![last.name.clone()])
            .map(Domain::from))
    }

    pub async fn update(
        &self,
        actor: Actor,
        id: DomainId,
        etag: Option<String>,
        mode: EnrollmentMode,
    ) -> Result<Domain> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current = locked(tx, &id).await?;
                    if etag.is_some_and(|etag| etag != current.etag()) {
                        return Err(Error::EtagMismatch);
                    }
                    if !domains::update_mode(tx.conn(), id.as_str(), mode, tx.now, current.revision)
                        .await?
                    {
                        return Err(Error::EtagMismatch);
                    }
                    let updated = read(tx, &id).await?;
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
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let current = locked(tx, &id).await?;
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

    /// Issues a new 6-digit code for an address at the domain, replacing any
    /// outstanding one. Only its hash is stored.
    pub async fn prepare_verification(
        &self,
        actor: Actor,
        id: DomainId,
        affiliation_email_address: Email,
    ) -> Result<PreparedVerification> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    let current = locked(tx, &id).await?;
                    if current.verified {
                        return Err(already_verified());
                    }
                    if affiliation_email_address.domain() != current.name {
                        return Err(Error::invalid(
                            "affiliation_email_address",
                            format!("must be an address at {}", current.name),
                        ));
                    }
                    let code = new_verification_code();
                    let expire_time = now + VERIFICATION_CODE_VALIDITY_MICROS;
                    domains::set_code(
                        tx.conn(),
                        id.as_str(),
                        affiliation_email_address.as_str(),
                        &verification_code_hash(id.as_str(), &code),
                        expire_time,
                        now,
                    )
                    .await?;
                    let domain = read(tx, &id).await?;
                    tx.emit(
                        EventKind::DomainUpdated,
                        Some(&domain.organization_id),
                        domain.id.as_str(),
                        &domain,
                    )?;
                    Ok(PreparedVerification {
                        domain,
                        code,
                        expire_time,
                    })
                })
            })
            .await
    }

    /// Verifies the domain with its code. A wrong code counts as an attempt
    /// (committed, so the count survives the error); the fifth voids the code.
    pub async fn attempt_verification(
        &self,
        actor: Actor,
        id: DomainId,
        code: String,
    ) -> Result<Domain> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    let current = locked(tx, &id).await?;
                    if current.verified {
                        return Err(already_verified());
                    }
                    let outstanding = domains::get_code(tx.conn(), id.as_str()).await?;
                    let usable = outstanding.as_ref().and_then(|c| {
                        let live = c.code_expire_time.is_some_and(|t| t > now)
                            && c.code_attempts < MAX_VERIFICATION_ATTEMPTS;
                        c.code_hash.as_deref().filter(|_| live)
                    });
                    let Some(stored_hash) = usable else {
                        return Err(Error::FailedPrecondition(
                            Reason::VerificationCodeExpired,
                            "no usable verification code: prepare a new one".into(),
                        ));
                    };
                    if stored_hash != verification_code_hash(id.as_str(), &code) {
                        domains::record_wrong_attempt(
                            tx.conn(),
                            id.as_str(),
                            MAX_VERIFICATION_ATTEMPTS,
                        )
                        .await?;
                        // Keep the attempt count, and the attempt in the audit
                        // trail; a failed attempt changes nothing else.
                        tx.audit_only(Some(&current.organization_id), current.id.as_str());
                        tx.commit_on_error();
                        return Err(Error::FailedPrecondition(
                            Reason::VerificationCodeInvalid,
                            "the verification code is wrong".into(),
                        ));
                    }
                    domains::mark_verified(tx.conn(), id.as_str(), now).await?;
                    let verified = read(tx, &id).await?;
                    tx.emit(
                        EventKind::DomainVerified,
                        Some(&verified.organization_id),
                        verified.id.as_str(),
                        &verified,
                    )?;
                    Ok(verified)
                })
            })
            .await
    }
}
