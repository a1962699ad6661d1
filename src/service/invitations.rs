//! Invitations (to an organization, or to the application), accepting them,
//! and onboarding.
//!
//! A pending invitation past its `expire_time` reads as expired everywhere;
//! nothing waits for a background job. Every change to an organization's
//! invitations sweeps its expired ones to `expired` and recounts
//! `pending_invitations_count` in the same transaction, under the
//! organization's row lock.

use serde::{Deserialize, Serialize};

use super::organizations::{MembershipRecord, Page, finish_simple, next_token, with_permissions};
use super::{Begun, Idempotency, Services, Work};
use crate::domain::billing::BillingImpact;
use crate::domain::ids::{self, new_id};
use crate::domain::invitations::{
    DEFAULT_EXPIRES_IN_DAYS, EnrollmentMode, InvitationStatus, invitation_token_hash,
    invitation_url, new_invitation_token,
};
use crate::domain::types::{Email, Metadata};
use crate::domain::{Actor, Error, Reason, Result, paging};
use crate::store::is_unique_violation;
use crate::store::repo::domains::{self, DomainRow};
use crate::store::repo::invitations::{self, InvitationFilter, InvitationRow};
use crate::store::repo::memberships::{self, MembershipFilter};
use crate::store::repo::organizations::{self, OrganizationRow};
use crate::store::repo::roles;

const MICROS_PER_DAY: i64 = 24 * 3600 * 1_000_000;

/// What `CreateInvitation` takes, validated.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// `None` for an application invitation.
    pub organization_id: Option<String>,
    pub email_address: Email,
    /// `None`: the configured default role (organization invitations).
    pub role: Option<String>,
    pub inviter_user_id: Option<String>,
    pub redirect_url: Option<String>,
    pub expires_in_days: i32,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
}

/// A new invitation with its secret. The token and URL are never stored (not
/// even with the idempotency record): a replayed answer has them empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedInvitation {
    pub invitation: InvitationRow,
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub url: String,
}

/// How `AcceptInvitation` names the invitation.
#[derive(Debug, Clone)]
pub enum InvitationKey {
    /// The secret token mailed to the invitee.
    Token(String),
    /// The id, for platform principals that verified the user's email.
    Id(String),
}

/// What `AcceptInvitation` takes, validated.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub key: InvitationKey,
    pub user_id: String,
    pub email_address: Email,
}

/// An accepted invitation with the membership it created (none for an
/// application invitation) and its effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedInvitation {
    pub invitation: InvitationRow,
    pub membership: Option<MembershipRecord>,
    pub billing_impact: Option<BillingImpact>,
}

/// An organization a user may ask to join, and the domain that matched.
#[derive(Debug, Clone)]
pub struct Suggestion {
    pub organization: OrganizationRow,
    pub domain: String,
}

/// What `ResolveOnboarding` answers.
#[derive(Debug, Clone)]
pub struct Onboarding {
    pub memberships: Vec<MembershipRecord>,
    pub invitations: Vec<InvitationRow>,
    pub suggestions: Vec<Suggestion>,
    pub requires_organization: bool,
}

pub fn invitation_not_found() -> Error {
    Error::NotFound(Reason::InvitationNotFound, "invitation not found".into())
}

fn invitation_exists(email: &str) -> Error {
    Error::AlreadyExists(
        Reason::InvitationExists,
        format!("a pending invitation for {email} exists"),
    )
}

/// Why an invitation that is not pending at `now` cannot change.
fn not_pending(invitation: &InvitationRow, now: i64) -> Error {
    match invitation.status_at(now) {
        InvitationStatus::Accepted => Error::FailedPrecondition(
            Reason::InvitationAlreadyAccepted,
            "the invitation was accepted already".into(),
        ),
        InvitationStatus::Revoked => Error::FailedPrecondition(
            Reason::InvitationRevoked,
            "the invitation was revoked".into(),
        ),
        InvitationStatus::Expired | InvitationStatus::Pending => Error::FailedPrecondition(
            Reason::InvitationExpired,
            "the invitation has expired".into(),
        ),
    }
}

impl Services {
    pub async fn create_invitation(
        &self,
        actor: &Actor,
        new: NewInvitation,
        idempotency: Option<&Idempotency>,
    ) -> Result<CreatedInvitation> {
        let mut work = match self.begin_idempotent(actor, idempotency, false).await? {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result = self.create_invitation_in(&mut work, new).await;
        work.conclude(
            actor,
            idempotency,
            |created: &CreatedInvitation| {
                created
                    .invitation
                    .organization_id
                    .clone()
                    .unwrap_or_default()
            },
            |created| created.invitation.id.clone(),
            result,
        )
        .await
    }

    async fn create_invitation_in(
        &self,
        work: &mut Work,
        new: NewInvitation,
    ) -> Result<CreatedInvitation> {
        let organization_id = new.organization_id.as_deref();
        let email = new.email_address.as_str();
        let role = match organization_id {
            Some(organization_id) => {
                organizations::get_for_update(&work.txn, organization_id)
                    .await?
                    .ok_or_else(Error::organization_not_found)?;
                let role = new
                    .role
                    .unwrap_or_else(|| self.config.rules.default_role.clone());
                if roles::get_role(&work.txn, &role).await?.is_none() {
                    return Err(Error::invalid("role", format!("there is no role {role}")));
                }
                if invitations::email_is_member(&work.txn, organization_id, email).await? {
                    return Err(Error::AlreadyExists(
                        Reason::MembershipExists,
                        format!("{email} is a member already"),
                    ));
                }
                role
            }
            None => String::new(),
        };
        invitations::sweep_expired(&work.txn, organization_id, Some(email), work.now).await?;
        if invitations::find_pending(&work.txn, organization_id, email, work.now)
            .await?
            .is_some()
        {
            return Err(invitation_exists(email));
        }
        let token = new_invitation_token();
        let invitation = InvitationRow {
            id: new_id(ids::INVITATION),
            organization_id: new.organization_id.clone(),
            email_address: email.to_string(),
            role,
            status: InvitationStatus::Pending.as_str().to_string(),
            inviter_user_id: new.inviter_user_id.unwrap_or_default(),
            redirect_url: new.redirect_url.clone().unwrap_or_default(),
            public_metadata: new.public_metadata.to_json(),
            private_metadata: new.private_metadata.to_json(),
            expire_time: work.now + i64::from(new.expires_in_days) * MICROS_PER_DAY,
            accepted_user_id: String::new(),
            create_time: work.now,
            update_time: work.now,
        };
        invitations::insert(&work.txn, &invitation, &invitation_token_hash(&token))
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    invitation_exists(email)
                } else {
                    err.into()
                }
            })?;
        if let Some(organization_id) = organization_id {
            invitations::refresh_pending_count(&work.txn, organization_id, work.now).await?;
        }
        let url = new
            .redirect_url
            .as_deref()
            .map(|base| invitation_url(base, &token))
            .unwrap_or_default();
        Ok(CreatedInvitation {
            invitation,
            token,
            url,
        })
    }

    pub async fn get_invitation(&self, id: &str) -> Result<InvitationRow> {
        invitations::get(self.db.conn(), id)
            .await?
            .ok_or_else(invitation_not_found)
    }

    pub async fn list_invitations(
        &self,
        filter: InvitationFilter,
        now: i64,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<InvitationRow>> {
        let status = filter.status.map(InvitationStatus::as_str).unwrap_or("");
        let fingerprint = paging::fingerprint(
            "invitations",
            &[
                filter.organization_id.as_deref().unwrap_or(""),
                status,
                filter.email_address.as_deref().unwrap_or(""),
            ],
        );
        let after = paging::decode(&fingerprint, page_token, 2)?
            .map(|key| (key[0].parse::<i64>().unwrap_or_default(), key[1].clone()));
        let conn = self.db.conn();
        let mut rows = invitations::list(conn, &filter, now, after, page_size + 1).await?;
        let total_size = invitations::count(conn, &filter, now).await?;
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

    /// Revokes a pending invitation; anything else fails with the reason of its
    /// status.
    pub async fn revoke_invitation(&self, actor: &Actor, id: &str) -> Result<InvitationRow> {
        let work = self.begin(false).await?;
        let now = work.now;
        let result: Result<InvitationRow> = async {
            let found = invitations::get(&work.txn, id)
                .await?
                .ok_or_else(invitation_not_found)?;
            if let Some(organization_id) = &found.organization_id {
                organizations::get_for_update(&work.txn, organization_id).await?;
            }
            if !invitations::transition_from_pending(
                &work.txn,
                id,
                InvitationStatus::Revoked,
                "",
                now,
            )
            .await?
            {
                let current = invitations::get(&work.txn, id)
                    .await?
                    .ok_or_else(invitation_not_found)?;
                return Err(not_pending(&current, now));
            }
            if let Some(organization_id) = &found.organization_id {
                invitations::refresh_pending_count(&work.txn, organization_id, now).await?;
            }
            invitations::get(&work.txn, id)
                .await?
                .ok_or_else(invitation_not_found)
        }
        .await;
        let organization_id = result
            .as_ref()
            .ok()
            .and_then(|row| row.organization_id.clone())
            .unwrap_or_default();
        finish_simple(work, actor, &organization_id, id, result).await
    }

    /// Accepts an invitation: checks the email and the status, marks it
    /// accepted with a conditional update (of concurrent accepts exactly one
    /// matches a pending row), and adds the member within the cap, all in one
    /// transaction.
    pub async fn accept_invitation(
        &self,
        actor: &Actor,
        acceptance: Acceptance,
        idempotency: Option<&Idempotency>,
        validate_only: bool,
    ) -> Result<AcceptedInvitation> {
        let mut work = match self
            .begin_idempotent(actor, idempotency, validate_only)
            .await?
        {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result = self.accept_invitation_in(&mut work, acceptance).await;
        work.conclude(
            actor,
            idempotency,
            |accepted: &AcceptedInvitation| {
                accepted
                    .invitation
                    .organization_id
                    .clone()
                    .unwrap_or_default()
            },
            |accepted| accepted.invitation.id.clone(),
            result,
        )
        .await
    }

    async fn accept_invitation_in(
        &self,
        work: &mut Work,
        acceptance: Acceptance,
    ) -> Result<AcceptedInvitation> {
        let now = work.now;
        let found = match &acceptance.key {
            InvitationKey::Token(token) => {
                invitations::get_by_token_hash(&work.txn, &invitation_token_hash(token)).await?
            }
            InvitationKey::Id(id) => invitations::get(&work.txn, id).await?,
        }
        .ok_or_else(invitation_not_found)?;
        if let Some(organization_id) = &found.organization_id {
            // Serializes accepts into one organization (and with the cap).
            organizations::get_for_update(&work.txn, organization_id).await?;
        }
        // Read again under the lock: a concurrent accept may have committed.
        let mut invitation = invitations::get(&work.txn, &found.id)
            .await?
            .ok_or_else(invitation_not_found)?;
        if invitation.email_address != acceptance.email_address.as_str() {
            return Err(Error::PermissionDenied(
                Reason::EmailMismatch,
                "the email address is not the one the invitation was sent to".into(),
            ));
        }
        if invitation.status_at(now) != InvitationStatus::Pending {
            return Err(not_pending(&invitation, now));
        }
        if !invitations::transition_from_pending(
            &work.txn,
            &invitation.id,
            InvitationStatus::Accepted,
            &acceptance.user_id,
            now,
        )
        .await?
        {
            let current = invitations::get(&work.txn, &invitation.id)
                .await?
                .ok_or_else(invitation_not_found)?;
            return Err(not_pending(&current, now));
        }
        invitation.status = InvitationStatus::Accepted.as_str().to_string();
        invitation.accepted_user_id = acceptance.user_id.clone();
        invitation.update_time = now;
        let Some(organization_id) = invitation.organization_id.clone() else {
            // An application invitation: the user may now create its own organization.
            return Ok(AcceptedInvitation {
                invitation,
                membership: None,
                billing_impact: None,
            });
        };
        if roles::get_role(&work.txn, &invitation.role)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(
                Reason::RoleNotFound,
                format!("the invited role {} no longer exists", invitation.role),
            ));
        }
        let added = self
            .add_member(
                work,
                &organization_id,
                &acceptance.user_id,
                &invitation.role,
                Metadata::from_json(&invitation.public_metadata),
                Metadata::from_json(&invitation.private_metadata),
            )
            .await?;
        invitations::refresh_pending_count(&work.txn, &organization_id, now).await?;
        Ok(AcceptedInvitation {
            invitation,
            membership: Some(added.membership),
            billing_impact: Some(added.billing_impact),
        })
    }

    /// The user's memberships, pending invitations and suggestions. For a
    /// verified automatic-invitation domain matching the email it first creates
    /// a pending invitation, once.
    pub async fn resolve_onboarding(
        &self,
        actor: &Actor,
        user_id: &str,
        email: &Email,
    ) -> Result<Onboarding> {
        let conn = self.db.conn();
        if let Some(domain) =
            domains::verified_by_name(conn, email.domain(), EnrollmentMode::AutomaticInvitation)
                .await?
        {
            self.ensure_automatic_invitation(actor, &domain, user_id, email)
                .await?;
        }
        let rows = memberships::list(
            conn,
            &MembershipFilter {
                user_id: Some(user_id.to_string()),
                ..Default::default()
            },
            None,
            500,
        )
        .await?;
        let memberships = with_permissions(conn, rows).await?;
        let now = self.now();
        let invitations = invitations::pending_for_email(conn, email.as_str(), now).await?;
        let mut suggestions = Vec::new();
        if let Some(domain) =
            domains::verified_by_name(conn, email.domain(), EnrollmentMode::AutomaticSuggestion)
                .await?
            && !memberships
                .iter()
                .any(|m| m.row.organization_id == domain.organization_id)
            && let Some(organization) = organizations::get(conn, &domain.organization_id).await?
        {
            suggestions.push(Suggestion {
                organization,
                domain: domain.name,
            });
        }
        let requires_organization = memberships.is_empty();
        Ok(Onboarding {
            memberships,
            invitations,
            suggestions,
            requires_organization,
        })
    }

    /// Creates the automatic invitation of a verified automatic-invitation
    /// domain unless the user is a member, a pending invitation exists, or an
    /// administrator revoked one for this address. Concurrent calls serialize
    /// on the organization's row lock; the one-pending index stops any that
    /// slip past it, and they then find the invitation the other created.
    async fn ensure_automatic_invitation(
        &self,
        actor: &Actor,
        domain: &DomainRow,
        user_id: &str,
        email: &Email,
    ) -> Result<()> {
        let mut work = self.begin(false).await?;
        let now = work.now;
        let organization_id = domain.organization_id.as_str();
        let address = email.as_str();
        let result: Result<Option<InvitationRow>> = async {
            if organizations::get_for_update(&work.txn, organization_id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let still_eligible = domains::get(&work.txn, &domain.id)
                .await?
                .is_some_and(|d| d.verified && d.mode() == EnrollmentMode::AutomaticInvitation);
            if !still_eligible
                || memberships::get(&work.txn, organization_id, user_id)
                    .await?
                    .is_some()
                || invitations::email_is_member(&work.txn, organization_id, address).await?
                || invitations::was_revoked(&work.txn, organization_id, address).await?
            {
                return Ok(None);
            }
            invitations::sweep_expired(&work.txn, Some(organization_id), Some(address), now)
                .await?;
            if invitations::find_pending(&work.txn, Some(organization_id), address, now)
                .await?
                .is_some()
            {
                return Ok(None);
            }
            let invitation = InvitationRow {
                id: new_id(ids::INVITATION),
                organization_id: Some(organization_id.to_string()),
                email_address: address.to_string(),
                role: self.config.rules.default_role.clone(),
                status: InvitationStatus::Pending.as_str().to_string(),
                inviter_user_id: String::new(),
                redirect_url: String::new(),
                public_metadata: Metadata::default().to_json(),
                private_metadata: Metadata::default().to_json(),
                expire_time: now + i64::from(DEFAULT_EXPIRES_IN_DAYS) * MICROS_PER_DAY,
                accepted_user_id: String::new(),
                create_time: now,
                update_time: now,
            };
            // The token is never handed out: the invitee sees the invitation in
            // onboarding and a platform principal accepts it by id.
            match invitations::insert(
                &work.txn,
                &invitation,
                &invitation_token_hash(&new_invitation_token()),
            )
            .await
            {
                Ok(()) => {}
                Err(err) if is_unique_violation(&err) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
            invitations::refresh_pending_count(&work.txn, organization_id, now).await?;
            Ok(Some(invitation))
        }
        .await;
        match result {
            Ok(Some(invitation)) => {
                work.audit(actor, organization_id, &invitation.id, None);
                work.commit().await
            }
            Ok(None) => {
                work.rollback().await;
                Ok(())
            }
            Err(err) => {
                work.rollback().await;
                Err(err)
            }
        }
    }
}
