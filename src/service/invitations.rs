//! Invitations (to an organization, or to the application) and accepting
//! them.
//!
//! A pending invitation past its `expire_time` reads as expired everywhere;
//! nothing waits for a background job. Every change to an organization's
//! invitations sweeps its expired ones to `expired` and recounts
//! `pending_invitations_count` in the same transaction, under the
//! organization's row lock.

use super::lifecycle::{lock_active, lock_if_active};
use super::list::Listing;
use super::members::{Members, check_ceiling, membership_created};
use super::unit_of_work::{Call, Idempotency, Tx, Writer};
use crate::domain::enrollment::{
    Acceptance, AcceptedInvitation, CreatedInvitation, Invitation, InvitationFilter, InvitationKey,
    InvitationRules, NewInvitation,
};
use crate::domain::events::EventKind;
use crate::domain::ids::{InvitationId, RoleKey, UserId};
use crate::domain::invitations::{
    InvitationStatus, invitation_token_hash, invitation_url, new_invitation_token,
    redirect_host_allowed,
};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::time::{Clock, Micros};
use crate::domain::{Access, Actor, Error, Reason, Result};
use crate::store::repo::invitations::{self, InvitationRow};
use crate::store::repo::roles;
use crate::store::{Db, is_unique_violation};
use std::sync::Arc;

pub const MICROS_PER_DAY: i64 = 24 * 3600 * 1_000_000;

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
fn not_pending(invitation: &Invitation, now: Micros) -> Error {
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

/// Reads an invitation in `tx`.
async fn read(tx: &Tx, id: &str) -> Result<Invitation> {
    invitations::get(tx.conn(), id)
        .await?
        .map(Invitation::from)
        .ok_or_else(invitation_not_found)
}

/// The invitation use cases.
#[derive(Debug, Clone)]
pub struct Invitations {
    db: Db,
    writer: Writer,
    clock: Arc<dyn Clock>,
    members: Members,
    rules: InvitationRules,
    tokens: PageTokens,
}

impl Invitations {
    pub fn new(
        db: Db,
        writer: Writer,
        clock: Arc<dyn Clock>,
        members: Members,
        rules: InvitationRules,
        tokens: PageTokens,
    ) -> Self {
        Invitations {
            db,
            writer,
            clock,
            members,
            rules,
            tokens,
        }
    }

    /// Creates an invitation. A replay of the same `request_id` answers with
    /// a new token for the invitation the first call created (the old one
    /// stops working), so a caller that lost the first answer is not stuck
    /// with a pending invitation nobody can accept.
    pub async fn create(
        &self,
        actor: Actor,
        mut new: NewInvitation,
        idempotency: Option<Idempotency>,
    ) -> Result<CreatedInvitation> {
        if let Some(url) = &new.redirect_url
            && !redirect_host_allowed(url, &self.rules.redirect_hosts)
        {
            return Err(Error::invalid(
                "redirect_url",
                "must point at one of the hosts in ORGS_INVITATION_REDIRECT_HOSTS",
            ));
        }
        // An end user invites as itself.
        if let Access::Member(_) = actor.access {
            let itself = UserId::from_stored(actor.sub.clone());
            match &new.inviter_user_id {
                Some(inviter) if *inviter != itself => {
                    return Err(Error::permission_denied(
                        "an end user's inviter_user_id is its own user id",
                    ));
                }
                _ => new.inviter_user_id = Some(itself),
            }
        }
        let keyed = idempotency.is_some();
        let default_role = self.rules.default_role.clone();
        let created = self
            .writer
            .write(
                Call::idempotent(actor.clone(), idempotency, false),
                move |tx| Box::pin(async move { create_in(tx, new, default_role).await }),
            )
            .await?;
        if !keyed || !created.token.is_empty() {
            return Ok(created);
        }
        // A stored answer: it carries no secret; issue a new one.
        self.reissue_token(actor, created.invitation).await
    }

    /// A new token for a pending invitation, replacing the old one.
    async fn reissue_token(
        &self,
        actor: Actor,
        invitation: Invitation,
    ) -> Result<CreatedInvitation> {
        let id = invitation.id.clone();
        let token = self
            .writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let token = new_invitation_token();
                    let replaced = invitations::replace_token_hash(
                        tx.conn(),
                        id.as_str(),
                        &invitation_token_hash(&token),
                        tx.now,
                    )
                    .await?;
                    // Accepted, revoked or expired since: no token works any more.
                    Ok(if replaced { token } else { String::new() })
                })
            })
            .await?;
        let url = match (&invitation.redirect_url, token.is_empty()) {
            (Some(base), false) => invitation_url(base, &token),
            _ => String::new(),
        };
        Ok(CreatedInvitation {
            invitation: invitation.as_of(self.clock.now_micros()),
            token,
            url,
        })
    }

    pub async fn get(&self, id: &InvitationId) -> Result<Invitation> {
        let now = self.clock.now_micros();
        invitations::get(self.db.conn(), id.as_str())
            .await?
            .map(|row| Invitation::from(row).as_of(now))
            .ok_or_else(invitation_not_found)
    }

    pub async fn list(
        &self,
        filter: InvitationFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<Invitation>> {
        let now = self.clock.now_micros();
        let status = filter.status.map(InvitationStatus::as_str).unwrap_or("");
        let listing = Listing::start(
            &self.tokens,
            "invitations",
            &[
                filter.organization_id.as_ref().map_or("", |id| id.as_str()),
                status,
                filter.email_address.as_ref().map_or("", |e| e.as_str()),
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
        let rows = invitations::list(conn, &filter, now, after, listing.limit()).await?;
        let total_size = invitations::count(conn, &filter, now).await?;
        Ok(listing
            .finish(rows, total_size, |last| {
                vec![last.create_time.to_string(), last.id.clone()]
            })
            .map(|row| Invitation::from(row).as_of(now)))
    }

    /// Revokes a pending invitation; anything else fails with the reason of its
    /// status.
    pub async fn revoke(&self, actor: Actor, id: InvitationId) -> Result<Invitation> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    let found = read(tx, id.as_str()).await?;
                    if let Some(organization_id) = &found.organization_id {
                        lock_if_active(tx.conn(), organization_id.as_str()).await?;
                    }
                    if !invitations::transition_from_pending(
                        tx.conn(),
                        id.as_str(),
                        InvitationStatus::Revoked,
                        "",
                        now,
                    )
                    .await?
                    {
                        return Err(not_pending(&read(tx, id.as_str()).await?, now));
                    }
                    if let Some(organization_id) = &found.organization_id {
                        invitations::refresh_pending_count(
                            tx.conn(),
                            organization_id.as_str(),
                            now,
                        )
                        .await?;
                    }
                    let revoked = read(tx, id.as_str()).await?.as_of(now);
                    tx.emit(
                        EventKind::InvitationRevoked,
                        revoked.organization_id.as_ref(),
                        revoked.id.as_str(),
                        &revoked,
                    )?;
                    Ok(revoked)
                })
            })
            .await
    }

    /// Accepts an invitation: checks the email and the status, marks it
    /// accepted with a conditional update (of concurrent accepts exactly one
    /// matches a pending row), and adds the member within the cap, all in one
    /// transaction.
    pub async fn accept(
        &self,
        actor: Actor,
        acceptance: Acceptance,
        idempotency: Option<Idempotency>,
        validate_only: bool,
    ) -> Result<AcceptedInvitation> {
        // Without the mailed token, only a service that verified the user's
        // address may vouch for it.
        if matches!(acceptance.key, InvitationKey::Id(_)) && !actor.by_scope() {
            return Err(Error::permission_denied(
                "accepting by invitation_id requires the orgs:admin scope; use the token",
            ));
        }
        let members = self.members.clone();
        self.writer
            .write(
                Call::idempotent(actor, idempotency, validate_only),
                move |tx| Box::pin(async move { accept_in(tx, &members, acceptance).await }),
            )
            .await
    }
}

/// Inserts a pending invitation with a fresh token; returns the token.
pub async fn insert_pending(tx: &Tx, invitation: &Invitation) -> Result<String> {
    let token = new_invitation_token();
    let row = InvitationRow {
        id: invitation.id.to_string(),
        organization_id: invitation.organization_id.as_ref().map(|id| id.to_string()),
        email_address: invitation.email_address.clone(),
        role: invitation
            .role
            .as_ref()
            .map(RoleKey::to_string)
            .unwrap_or_default(),
        status: InvitationStatus::Pending.as_str().to_string(),
        inviter_user_id: invitation
            .inviter_user_id
            .as_ref()
            .map(UserId::to_string)
            .unwrap_or_default(),
        redirect_url: invitation.redirect_url.clone().unwrap_or_default(),
        public_metadata: invitation.public_metadata.to_json(),
        private_metadata: invitation.private_metadata.to_json(),
        expire_time: invitation.expire_time,
        accepted_user_id: String::new(),
        create_time: invitation.create_time,
        update_time: invitation.update_time,
    };
    match invitations::insert(tx.conn(), &row, &invitation_token_hash(&token)).await {
        Ok(()) => Ok(token),
        Err(err) if is_unique_violation(&err) => Err(invitation_exists(&invitation.email_address)),
        Err(err) => Err(err.into()),
    }
}

async fn create_in(
    tx: &mut Tx,
    new: NewInvitation,
    default_role: RoleKey,
) -> Result<CreatedInvitation> {
    let organization_id = new.organization_id.as_ref().map(|id| id.as_str());
    let email = new.email_address.as_str();
    let role = match &new.organization_id {
        Some(organization_id) => {
            lock_active(tx.conn(), organization_id.as_str()).await?;
            let role = new.role.clone().unwrap_or(default_role);
            if roles::get_role(tx.conn(), role.as_str()).await?.is_none() {
                return Err(Error::invalid("role", format!("there is no role {role}")));
            }
            check_ceiling(tx.conn(), tx.actor(), &role).await?;
            if invitations::email_is_member(tx.conn(), organization_id.as_str(), email).await? {
                return Err(Error::AlreadyExists(
                    Reason::MembershipExists,
                    format!("{email} is a member already"),
                ));
            }
            Some(role)
        }
        None => None,
    };
    invitations::sweep_expired(tx.conn(), organization_id, Some(email), tx.now).await?;
    if invitations::find_pending(tx.conn(), organization_id, email, tx.now)
        .await?
        .is_some()
    {
        return Err(invitation_exists(email));
    }
    let invitation = Invitation {
        id: InvitationId::new(),
        organization_id: new.organization_id.clone(),
        email_address: email.to_string(),
        role,
        status: InvitationStatus::Pending,
        inviter_user_id: new.inviter_user_id,
        redirect_url: new.redirect_url,
        public_metadata: new.public_metadata,
        private_metadata: new.private_metadata,
        expire_time: tx.now + i64::from(new.expires_in_days) * MICROS_PER_DAY,
        accepted_user_id: None,
        create_time: tx.now,
        update_time: tx.now,
    };
    let token = insert_pending(tx, &invitation).await?;
    if let Some(organization_id) = organization_id {
        invitations::refresh_pending_count(tx.conn(), organization_id, tx.now).await?;
    }
    let url = invitation
        .redirect_url
        .as_deref()
        .map(|base| invitation_url(base, &token))
        .unwrap_or_default();
    tx.emit(
        EventKind::InvitationCreated,
        invitation.organization_id.as_ref(),
        invitation.id.as_str(),
        &invitation,
    )?;
    Ok(CreatedInvitation {
        invitation,
        token,
        url,
    })
}

async fn accept_in(
    tx: &mut Tx,
    members: &Members,
    acceptance: Acceptance,
) -> Result<AcceptedInvitation> {
    let now = tx.now;
    let found = match &acceptance.key {
        InvitationKey::Token(token) => {
            invitations::get_by_token_hash(tx.conn(), &invitation_token_hash(token)).await?
        }
        InvitationKey::Id(id) => invitations::get(tx.conn(), id.as_str()).await?,
    }
    .ok_or_else(invitation_not_found)?;
    let locked = match &found.organization_id {
        // Serializes accepts into one organization (and with the cap).
        Some(organization_id) => lock_if_active(tx.conn(), organization_id).await?,
        None => None,
    };
    // Read again under the lock: a concurrent accept may have committed.
    let mut invitation = read(tx, &found.id).await?;
    if invitation.email_address != acceptance.email_address.as_str() {
        // Recorded: someone holding an invitation tried it with another address.
        tx.audit_only(invitation.organization_id.as_ref(), invitation.id.as_str());
        tx.commit_on_error();
        return Err(Error::PermissionDenied(
            Reason::EmailMismatch,
            "the email address is not the one the invitation was sent to".into(),
        ));
    }
    if invitation.status_at(now) != InvitationStatus::Pending {
        return Err(not_pending(&invitation, now));
    }
    if !invitations::transition_from_pending(
        tx.conn(),
        invitation.id.as_str(),
        InvitationStatus::Accepted,
        acceptance.user_id.as_str(),
        now,
    )
    .await?
    {
        return Err(not_pending(&read(tx, invitation.id.as_str()).await?, now));
    }
    invitation.status = InvitationStatus::Accepted;
    invitation.accepted_user_id = Some(acceptance.user_id.clone());
    invitation.update_time = now;
    let Some(organization_id) = invitation.organization_id.clone() else {
        // An application invitation: the user may now create its own organization.
        tx.emit(
            EventKind::InvitationAccepted,
            None,
            invitation.id.as_str(),
            &invitation,
        )?;
        return Ok(AcceptedInvitation {
            invitation,
            membership: None,
            billing_impact: None,
        });
    };
    let role = invitation
        .role
        .clone()
        .unwrap_or_else(|| RoleKey::from_stored(""));
    if roles::get_role(tx.conn(), role.as_str()).await?.is_none() {
        return Err(Error::NotFound(
            Reason::RoleNotFound,
            format!("the invited role {role} no longer exists"),
        ));
    }
    let locked = locked.ok_or_else(Error::organization_not_found)?;
    let added = members
        .add(
            tx,
            &locked,
            &acceptance.user_id,
            &role,
            invitation.public_metadata.clone(),
            invitation.private_metadata.clone(),
        )
        .await?;
    invitations::refresh_pending_count(tx.conn(), organization_id.as_str(), now).await?;
    tx.emit(
        EventKind::InvitationAccepted,
        Some(&organization_id),
        invitation.id.as_str(),
        &invitation,
    )?;
    membership_created(tx, &organization_id, &added.membership, None)?;
    Ok(AcceptedInvitation {
        invitation,
        membership: Some(added.membership),
        billing_impact: Some(added.billing_impact),
    })
}
