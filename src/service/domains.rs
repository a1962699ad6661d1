//! Verified domains and the membership requests they make possible.

use serde::{Deserialize, Serialize};

use super::organizations::{MembershipRecord, Page, finish_simple, next_token};
use super::{Begun, Idempotency, Services};
use crate::domain::billing::BillingImpact;
use crate::domain::ids::{self, new_id};
use crate::domain::invitations::{
    EnrollmentMode, MAX_DOMAINS_PER_ORGANIZATION, MAX_VERIFICATION_ATTEMPTS,
    MembershipRequestStatus, VERIFICATION_CODE_VALIDITY_MICROS, is_consumer_domain,
    new_verification_code, verification_code_hash,
};
use crate::domain::time::Micros;
use crate::domain::types::{Email, Metadata};
use crate::domain::{Actor, Error, Reason, Result, paging};
use crate::store::is_unique_violation;
use crate::store::repo::domains::{self, DomainRow};
use crate::store::repo::membership_requests::{self, MembershipRequestRow};
use crate::store::repo::{memberships, organizations};

/// What `CreateDomain` takes, validated.
#[derive(Debug, Clone)]
pub struct NewDomain {
    pub organization_id: String,
    pub name: String,
    pub enrollment_mode: EnrollmentMode,
    /// Created already verified; the handler allows it to platform principals only.
    pub verified: bool,
}

/// A verification code just issued. The code itself is never stored.
#[derive(Debug, Clone)]
pub struct PreparedVerification {
    pub domain: DomainRow,
    pub code: String,
    pub expire_time: Micros,
}

/// What `CreateMembershipRequest` takes, validated.
#[derive(Debug, Clone)]
pub struct NewMembershipRequest {
    pub organization_id: String,
    pub user_id: String,
    pub email_address: Email,
}

/// An accepted membership request with the membership it created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedMembershipRequest {
    pub membership_request: MembershipRequestRow,
    pub membership: MembershipRecord,
    pub billing_impact: BillingImpact,
}

pub fn domain_not_found() -> Error {
    Error::NotFound(Reason::DomainNotFound, "domain not found".into())
}

pub fn membership_request_not_found() -> Error {
    Error::NotFound(
        Reason::MembershipRequestNotFound,
        "membership request not found".into(),
    )
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

fn membership_request_exists() -> Error {
    Error::AlreadyExists(
        Reason::MembershipRequestExists,
        "a pending membership request of this user exists".into(),
    )
}

fn not_pending() -> Error {
    Error::FailedPrecondition(
        Reason::MembershipRequestNotPending,
        "the membership request is not pending".into(),
    )
}

impl Services {
    pub async fn create_domain(
        &self,
        actor: &Actor,
        new: NewDomain,
        idempotency: Option<&Idempotency>,
    ) -> Result<DomainRow> {
        if is_consumer_domain(&new.name, &self.config.rules.consumer_email_domains) {
            return Err(Error::FailedPrecondition(
                Reason::ConsumerDomain,
                format!(
                    "{} is a consumer mail domain and cannot belong to an organization",
                    new.name
                ),
            ));
        }
        let work = match self.begin_idempotent(actor, idempotency, false).await? {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result: Result<DomainRow> = async {
            // The lock makes the per-organization limit hold under concurrent creates.
            organizations::get_for_update(&work.txn, &new.organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            if domains::name_taken(&work.txn, &new.name).await? {
                return Err(domain_exists(&new.name));
            }
            if domains::count_in_organization(&work.txn, &new.organization_id).await?
                >= MAX_DOMAINS_PER_ORGANIZATION
            {
                return Err(Error::FailedPrecondition(
                    Reason::DomainLimitReached,
                    format!(
                        "an organization may have at most {MAX_DOMAINS_PER_ORGANIZATION} domains"
                    ),
                ));
            }
            let domain = DomainRow {
                id: new_id(ids::DOMAIN),
                organization_id: new.organization_id.clone(),
                name: new.name.clone(),
                enrollment_mode: new.enrollment_mode.as_str().to_string(),
                verified: new.verified,
                affiliation_email_address: String::new(),
                verify_time: new.verified.then_some(work.now),
                create_time: work.now,
                update_time: work.now,
                revision: 1,
            };
            domains::insert(&work.txn, &domain).await.map_err(|err| {
                if is_unique_violation(&err) {
                    domain_exists(&new.name)
                } else {
                    err.into()
                }
            })?;
            Ok(domain)
        }
        .await;
        work.conclude(
            actor,
            idempotency,
            |_| new.organization_id.to_string(),
            |d: &DomainRow| d.id.clone(),
            result,
        )
        .await
    }

    pub async fn get_domain(&self, id: &str) -> Result<DomainRow> {
        domains::get(self.db.conn(), id)
            .await?
            .ok_or_else(domain_not_found)
    }

    pub async fn list_domains(
        &self,
        organization_id: &str,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<DomainRow>> {
        let fingerprint = paging::fingerprint("domains", &[organization_id]);
        let after = paging::decode(&fingerprint, page_token, 1)?.map(|key| key[0].clone());
        let conn = self.db.conn();
        let mut rows = domains::list(conn, organization_id, after, page_size + 1).await?;
        let total_size = domains::count(conn, organization_id).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(&fingerprint, vec![last.name.clone()])
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }

    pub async fn update_domain(
        &self,
        actor: &Actor,
        id: &str,
        etag: Option<&str>,
        mode: EnrollmentMode,
    ) -> Result<DomainRow> {
        let work = self.begin(false).await?;
        let result: Result<DomainRow> = async {
            let current = domains::get_for_update(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)?;
            if etag.is_some_and(|etag| etag != current.etag()) {
                return Err(Error::EtagMismatch);
            }
            if !domains::update_mode(&work.txn, id, mode, work.now, current.revision).await? {
                return Err(Error::EtagMismatch);
            }
            domains::get(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)
        }
        .await;
        let organization_id = result
            .as_ref()
            .map(|d| d.organization_id.clone())
            .unwrap_or_default();
        finish_simple(work, actor, &organization_id, id, result).await
    }

    pub async fn delete_domain(&self, actor: &Actor, id: &str) -> Result<()> {
        let work = self.begin(false).await?;
        let result: Result<String> = async {
            let current = domains::get_for_update(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)?;
            domains::delete(&work.txn, id).await?;
            Ok(current.organization_id)
        }
        .await;
        let organization_id = result.as_ref().cloned().unwrap_or_default();
        finish_simple(work, actor, &organization_id, id, result)
            .await
            .map(|_| ())
    }

    /// Issues a new 6-digit code for an address at the domain, replacing any
    /// outstanding one. Only its hash is stored.
    pub async fn prepare_domain_verification(
        &self,
        actor: &Actor,
        id: &str,
        affiliation_email_address: &Email,
    ) -> Result<PreparedVerification> {
        let work = self.begin(false).await?;
        let now = work.now;
        let result: Result<PreparedVerification> = async {
            let current = domains::get_for_update(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)?;
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
                &work.txn,
                id,
                affiliation_email_address.as_str(),
                &verification_code_hash(id, &code),
                expire_time,
                now,
            )
            .await?;
            let domain = domains::get(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)?;
            Ok(PreparedVerification {
                domain,
                code,
                expire_time,
            })
        }
        .await;
        let organization_id = result
            .as_ref()
            .map(|p| p.domain.organization_id.clone())
            .unwrap_or_default();
        finish_simple(work, actor, &organization_id, id, result).await
    }

    /// Verifies the domain with its code. A wrong code counts as an attempt
    /// (committed, so the count survives the error); the fifth voids the code.
    pub async fn attempt_domain_verification(
        &self,
        actor: &Actor,
        id: &str,
        code: &str,
    ) -> Result<DomainRow> {
        let work = self.begin(false).await?;
        let now = work.now;
        let checked: Result<bool> = async {
            let current = domains::get_for_update(&work.txn, id)
                .await?
                .ok_or_else(domain_not_found)?;
            if current.verified {
                return Err(already_verified());
            }
            let outstanding = domains::get_code(&work.txn, id).await?;
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
            if stored_hash == verification_code_hash(id, code) {
                domains::mark_verified(&work.txn, id, now).await?;
                Ok(true)
            } else {
                domains::record_wrong_attempt(&work.txn, id, MAX_VERIFICATION_ATTEMPTS).await?;
                Ok(false)
            }
        }
        .await;
        match checked {
            Ok(true) => {
                let domain = domains::get(&work.txn, id)
                    .await?
                    .ok_or_else(domain_not_found);
                let organization_id = domain
                    .as_ref()
                    .map(|d| d.organization_id.clone())
                    .unwrap_or_default();
                finish_simple(work, actor, &organization_id, id, domain).await
            }
            Ok(false) => {
                // Keep the attempt count; a failed attempt is not an audited change.
                work.commit().await?;
                Err(Error::FailedPrecondition(
                    Reason::VerificationCodeInvalid,
                    "the verification code is wrong".into(),
                ))
            }
            Err(err) => {
                work.rollback().await;
                Err(err)
            }
        }
    }

    pub async fn create_membership_request(
        &self,
        actor: &Actor,
        new: NewMembershipRequest,
        idempotency: Option<&Idempotency>,
    ) -> Result<MembershipRequestRow> {
        let work = match self.begin_idempotent(actor, idempotency, false).await? {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result: Result<MembershipRequestRow> = async {
            organizations::get_for_update(&work.txn, &new.organization_id)
                .await?
                .ok_or_else(Error::organization_not_found)?;
            let eligible = domains::verified_by_name(&work.txn, new.email_address.domain(), EnrollmentMode::AutomaticSuggestion)
                .await?
                .is_some_and(|domain| domain.organization_id == new.organization_id);
            if !eligible {
                return Err(Error::FailedPrecondition(
                    Reason::DomainNotEligible,
                    "the organization has no verified automatic-suggestion domain matching the email address".into(),
                ));
            }
            if memberships::get(&work.txn, &new.organization_id, &new.user_id).await?.is_some() {
                return Err(Error::AlreadyExists(Reason::MembershipExists, format!("{} is a member already", new.user_id)));
            }
            if membership_requests::has_pending(&work.txn, &new.organization_id, &new.user_id).await? {
                return Err(membership_request_exists());
            }
            let request = MembershipRequestRow {
                id: new_id(ids::MEMBERSHIP_REQUEST),
                organization_id: new.organization_id.clone(),
                user_id: new.user_id.clone(),
                email_address: new.email_address.as_str().to_string(),
                status: MembershipRequestStatus::Pending.as_str().to_string(),
                create_time: work.now,
                update_time: work.now,
            };
            membership_requests::insert(&work.txn, &request).await.map_err(|err| {
                if is_unique_violation(&err) { membership_request_exists() } else { err.into() }
            })?;
            Ok(request)
        }
        .await;
        work.conclude(
            actor,
            idempotency,
            |_| new.organization_id.to_string(),
            |r: &MembershipRequestRow| r.id.clone(),
            result,
        )
        .await
    }

    pub async fn get_membership_request(&self, id: &str) -> Result<MembershipRequestRow> {
        membership_requests::get(self.db.conn(), id)
            .await?
            .ok_or_else(membership_request_not_found)
    }

    pub async fn list_membership_requests(
        &self,
        organization_id: &str,
        status: Option<MembershipRequestStatus>,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<MembershipRequestRow>> {
        let fingerprint = paging::fingerprint(
            "membership_requests",
            &[organization_id, status.map(|s| s.as_str()).unwrap_or("")],
        );
        let after = paging::decode(&fingerprint, page_token, 2)?
            .map(|key| (key[0].parse::<i64>().unwrap_or_default(), key[1].clone()));
        let conn = self.db.conn();
        let mut rows =
            membership_requests::list(conn, organization_id, status, after, page_size + 1).await?;
        let total_size = membership_requests::count(conn, organization_id, status).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(
                &fingerprint,
                vec![last.create_time.to_string(), last.id.clone()],
            )
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }

    /// Accepts a pending request: the user becomes a member with the default
    /// role, within the cap; of concurrent decisions exactly one wins.
    pub async fn accept_membership_request(
        &self,
        actor: &Actor,
        id: &str,
        idempotency: Option<&Idempotency>,
        validate_only: bool,
    ) -> Result<AcceptedMembershipRequest> {
        let mut work = match self
            .begin_idempotent(actor, idempotency, validate_only)
            .await?
        {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result: Result<AcceptedMembershipRequest> = async {
            let found = membership_requests::get(&work.txn, id)
                .await?
                .ok_or_else(membership_request_not_found)?;
            organizations::get_for_update(&work.txn, &found.organization_id)
                .await?
                .ok_or_else(membership_request_not_found)?;
            if !membership_requests::decide(
                &work.txn,
                id,
                MembershipRequestStatus::Accepted,
                work.now,
            )
            .await?
            {
                return Err(not_pending());
            }
            let role = self.config.rules.default_role.clone();
            let added = self
                .add_member(
                    &mut work,
                    &found.organization_id,
                    &found.user_id,
                    &role,
                    Metadata::default(),
                    Metadata::default(),
                )
                .await?;
            let membership_request = MembershipRequestRow {
                status: MembershipRequestStatus::Accepted.as_str().to_string(),
                update_time: work.now,
                ..found
            };
            Ok(AcceptedMembershipRequest {
                membership_request,
                membership: added.membership,
                billing_impact: added.billing_impact,
            })
        }
        .await;
        let organization_id = result
            .as_ref()
            .map(|a| a.membership_request.organization_id.clone())
            .unwrap_or_default();
        work.conclude(
            actor,
            idempotency,
            |_| organization_id.to_string(),
            |a: &AcceptedMembershipRequest| a.membership_request.id.clone(),
            result,
        )
        .await
    }

    pub async fn reject_membership_request(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<MembershipRequestRow> {
        let work = self.begin(false).await?;
        let result: Result<MembershipRequestRow> = async {
            let found = membership_requests::get(&work.txn, id)
                .await?
                .ok_or_else(membership_request_not_found)?;
            if !membership_requests::decide(
                &work.txn,
                id,
                MembershipRequestStatus::Rejected,
                work.now,
            )
            .await?
            {
                return Err(not_pending());
            }
            Ok(MembershipRequestRow {
                status: MembershipRequestStatus::Rejected.as_str().to_string(),
                update_time: work.now,
                ..found
            })
        }
        .await;
        let organization_id = result
            .as_ref()
            .map(|r| r.organization_id.clone())
            .unwrap_or_default();
        finish_simple(work, actor, &organization_id, id, result).await
    }
}
