//! Membership requests: a user with an address at a verified
//! automatic-suggestion domain asks to join; the organization decides.

use super::lifecycle::lock_if_active;
use super::list::Listing;
use super::members::{Members, check_ceiling, membership_created};
use super::unit_of_work::{Call, Idempotency, Tx, Writer};
use crate::domain::enrollment::{
    AcceptedMembershipRequest, MembershipRequest, NewMembershipRequest,
};
use crate::domain::events::EventKind;
use crate::domain::ids::{MembershipRequestId, OrganizationId, RoleKey};
use crate::domain::invitations::{EnrollmentMode, MembershipRequestStatus};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::types::Metadata;
use crate::domain::{Access, Actor, Error, Reason, Result};
use crate::store::repo::membership_requests::{self, MembershipRequestRow};
use crate::store::repo::{domains, memberships};
use crate::store::{Db, is_unique_violation};

pub fn membership_request_not_found() -> Error {
    Error::NotFound(
        Reason::MembershipRequestNotFound,
        "membership request not found".into(),
    )
}

fn membership_request_exists() -> Error {
    Error::AlreadyExists(
        Reason::MembershipRequestExists,
        "a pending membership request of this user exists".into(),
    )
}

fn not_eligible() -> Error {
    Error::FailedPrecondition(
        Reason::DomainNotEligible,
        "the organization has no verified automatic-suggestion domain matching the email address"
            .into(),
    )
}

fn not_pending() -> Error {
    Error::FailedPrecondition(
        Reason::MembershipRequestNotPending,
        "the membership request is not pending".into(),
    )
}

async fn read(tx: &Tx, id: &MembershipRequestId) -> Result<MembershipRequest> {
    membership_requests::get(tx.conn(), id.as_str())
        .await?
        .map(MembershipRequest::from)
        .ok_or_else(membership_request_not_found)
}

/// The membership request use cases.
#[derive(Debug, Clone)]
pub struct MembershipRequests {
    db: Db,
    writer: Writer,
    members: Members,
    default_role: RoleKey,
    tokens: PageTokens,
}

impl MembershipRequests {
    pub fn new(
        db: Db,
        writer: Writer,
        members: Members,
        default_role: RoleKey,
        tokens: PageTokens,
    ) -> Self {
        MembershipRequests {
            db,
            writer,
            members,
            default_role,
            tokens,
        }
    }

    pub async fn create(
        &self,
        actor: Actor,
        new: NewMembershipRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<MembershipRequest> {
        self.writer
            .write(Call::idempotent(actor, idempotency, false), move |tx| {
                Box::pin(async move {
                    let org = new.organization_id.as_str();
                    // A user asking for itself learns nothing of organizations
                    // that do not take it: one that does not exist answers as
                    // one without a matching domain.
                    if lock_if_active(tx.conn(), org).await?.is_none() {
                        return Err(match tx.actor().access {
                            Access::Itself => not_eligible(),
                            _ => Error::organization_not_found(),
                        });
                    }
                    let eligible = domains::verified_by_name(
                        tx.conn(),
                        new.email_address.domain(),
                        EnrollmentMode::AutomaticSuggestion,
                    )
                    .await?
                    .is_some_and(|domain| domain.organization_id == org);
                    if !eligible {
                        return Err(not_eligible());
                    }
                    if memberships::get(tx.conn(), org, new.user_id.as_str())
                        .await?
                        .is_some()
                    {
                        return Err(Error::AlreadyExists(
                            Reason::MembershipExists,
                            format!("{} is a member already", new.user_id),
                        ));
                    }
                    if membership_requests::has_pending(tx.conn(), org, new.user_id.as_str())
                        .await?
                    {
                        return Err(membership_request_exists());
                    }
                    let row = MembershipRequestRow {
                        id: MembershipRequestId::new().into_string(),
                        organization_id: org.to_string(),
                        user_id: new.user_id.to_string(),
                        email_address: new.email_address.as_str().to_string(),
                        status: MembershipRequestStatus::Pending.as_str().to_string(),
                        create_time: tx.now,
                        update_time: tx.now,
                    };
                    membership_requests::insert(tx.conn(), &row)
                        .await
                        .map_err(|err| {
                            if is_unique_violation(&err) {
                                membership_request_exists()
                            } else {
                                err.into()
                            }
                        })?;
                    let request = MembershipRequest::from(row);
                    tx.emit(
                        EventKind::MembershipRequestCreated,
                        Some(&request.organization_id),
                        request.id.as_str(),
                        &request,
                    )?;
                    Ok(request)
                })
            })
            .await
    }

    pub async fn get(&self, id: &MembershipRequestId) -> Result<MembershipRequest> {
        membership_requests::get(self.db.conn(), id.as_str())
            .await?
            .map(MembershipRequest::from)
            .ok_or_else(membership_request_not_found)
    }

    pub async fn list(
        &self,
        organization_id: &OrganizationId,
        status: Option<MembershipRequestStatus>,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<MembershipRequest>> {
        let listing = Listing::start(
            &self.tokens,
            "membership_requests",
            &[
                organization_id.as_str(),
                status.map(|s| s.as_str()).unwrap_or(""),
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
        let rows = membership_requests::list(
            conn,
            organization_id.as_str(),
            status,
            after,
            listing.limit(),
        )
        .await?;
        let total_size = membership_requests::count(conn, organization_id.as_str(), status).await?;
        Ok(listing
            .finish(rows, total_size, |last| {
                vec![last.create_time.to_string(), last.id.clone()]
            })
            .map(MembershipRequest::from))
    }

    /// Accepts a pending request: the user becomes a member with the default
    /// role, within the cap; of concurrent decisions exactly one wins.
    pub async fn accept(
        &self,
        actor: Actor,
        id: MembershipRequestId,
        idempotency: Option<Idempotency>,
        validate_only: bool,
    ) -> Result<AcceptedMembershipRequest> {
        let members = self.members.clone();
        let role = self.default_role.clone();
        self.writer
            .write(
                Call::idempotent(actor, idempotency, validate_only),
                move |tx| {
                    Box::pin(async move {
                        let found = read(tx, &id).await?;
                        let organization =
                            lock_if_active(tx.conn(), found.organization_id.as_str())
                                .await?
                                .ok_or_else(membership_request_not_found)?;
                        if !membership_requests::decide(
                            tx.conn(),
                            id.as_str(),
                            MembershipRequestStatus::Accepted,
                            tx.now,
                        )
                        .await?
                        {
                            return Err(not_pending());
                        }
                        check_ceiling(tx.conn(), tx.actor(), &role).await?;
                        let added = members
                            .add(
                                tx,
                                &organization,
                                &found.user_id,
                                &role,
                                Metadata::default(),
                                Metadata::default(),
                            )
                            .await?;
                        let membership_request = MembershipRequest {
                            status: MembershipRequestStatus::Accepted,
                            update_time: tx.now,
                            ..found
                        };
                        tx.emit(
                            EventKind::MembershipRequestAccepted,
                            Some(&membership_request.organization_id),
                            membership_request.id.as_str(),
                            &membership_request,
                        )?;
                        membership_created(
                            tx,
                            &membership_request.organization_id,
                            &added.membership,
                            None,
                        )?;
                        Ok(AcceptedMembershipRequest {
                            membership_request,
                            membership: added.membership,
                            billing_impact: added.billing_impact,
                        })
                    })
                },
            )
            .await
    }

    pub async fn reject(&self, actor: Actor, id: MembershipRequestId) -> Result<MembershipRequest> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let found = read(tx, &id).await?;
                    if !membership_requests::decide(
                        tx.conn(),
                        id.as_str(),
                        MembershipRequestStatus::Rejected,
                        tx.now,
                    )
                    .await?
                    {
                        return Err(not_pending());
                    }
                    let rejected = MembershipRequest {
                        status: MembershipRequestStatus::Rejected,
                        update_time: tx.now,
                        ..found
                    };
                    tx.emit(
                        EventKind::MembershipRequestRejected,
                        Some(&rejected.organization_id),
                        rejected.id.as_str(),
                        &rejected,
                    )?;
                    Ok(rejected)
                })
            })
            .await
    }
}
