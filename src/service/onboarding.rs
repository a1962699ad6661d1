//! `ResolveOnboarding`: what an app asks to gate a user until it is in an
//! organization. For a verified automatic-invitation domain matching the email
//! it first creates, once, a pending invitation.

use std::sync::Arc;

use super::invitations::{MICROS_PER_DAY, insert_pending};
use super::members::with_permissions;
use super::unit_of_work::{Call, Writer};
use crate::domain::enrollment::{Domain, Invitation, Onboarding, Suggestion};
use crate::domain::events::EventKind;
use crate::domain::ids::{InvitationId, RoleKey, UserId};
use crate::domain::invitations::{DEFAULT_EXPIRES_IN_DAYS, EnrollmentMode, InvitationStatus};
use crate::domain::organizations::{MembershipFilter, Organization};
use crate::domain::time::Clock;
use crate::domain::types::{Email, Metadata};
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::Db;
use crate::store::repo::{domains, invitations, memberships, organizations};

/// Onboarding.
#[derive(Debug, Clone)]
pub struct Onboardings {
    db: Db,
    writer: Writer,
    clock: Arc<dyn Clock>,
    default_role: RoleKey,
}

impl Onboardings {
    pub fn new(db: Db, writer: Writer, clock: Arc<dyn Clock>, default_role: RoleKey) -> Self {
        Onboardings {
            db,
            writer,
            clock,
            default_role,
        }
    }

    /// The user's memberships, pending invitations and suggestions.
    pub async fn resolve(
        &self,
        actor: Actor,
        user_id: &UserId,
        email: &Email,
    ) -> Result<Onboarding> {
        let conn = self.db.conn();
        if let Some(domain) =
            domains::verified_by_name(conn, email.domain(), EnrollmentMode::AutomaticInvitation)
                .await?
        {
            self.ensure_automatic_invitation(actor, Domain::from(domain), user_id, email)
                .await?;
        }
        let rows = memberships::list(
            conn,
            &MembershipFilter {
                user_id: Some(user_id.clone()),
                ..Default::default()
            },
            None,
            500,
        )
        .await?;
        let memberships = with_permissions(conn, rows).await?;
        let now = self.clock.now_micros();
        let invitations = invitations::pending_for_email(conn, email.as_str(), now)
            .await?
            .into_iter()
            .map(|row| Invitation::from(row).as_of(now))
            .collect();
        let mut suggestions = Vec::new();
        if let Some(domain) =
            domains::verified_by_name(conn, email.domain(), EnrollmentMode::AutomaticSuggestion)
                .await?
            && !memberships
                .iter()
                .any(|m| m.organization_id == domain.organization_id.as_str())
            && let Some(organization) = organizations::get(conn, &domain.organization_id).await?
            && organization.deactivate_time.is_none()
        {
            suggestions.push(Suggestion {
                organization: Organization::from(organization),
                domain: domain.name,
            });
        }
        // Only an active membership of an active organization gives the user
        // somewhere to work: deactivated ones keep their history, nothing more.
        let mut requires_organization = true;
        for membership in memberships.iter().filter(|m| m.deactivate_time.is_none()) {
            if organizations::get(conn, membership.organization_id.as_str())
                .await?
                .is_some_and(|organization| organization.deactivate_time.is_none())
            {
                requires_organization = false;
                break;
            }
        }
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
        actor: Actor,
        domain: Domain,
        user_id: &UserId,
        email: &Email,
    ) -> Result<()> {
        let default_role = self.default_role.clone();
        let user_id = user_id.clone();
        let address = email.as_str().to_string();
        let created = self
            .writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    let organization_id = domain.organization_id.clone();
                    let org = organization_id.as_str();
                    // A deactivated organization invites nobody.
                    if organizations::get_for_update(tx.conn(), org)
                        .await?
                        .is_none_or(|row| row.deactivate_time.is_some())
                    {
                        return Ok(());
                    }
                    let still_eligible = domains::get(tx.conn(), domain.id.as_str())
                        .await?
                        .is_some_and(|d| {
                            d.verified && d.mode() == EnrollmentMode::AutomaticInvitation
                        });
                    if !still_eligible
                        || memberships::get(tx.conn(), org, user_id.as_str())
                            .await?
                            .is_some()
                        || invitations::email_is_member(tx.conn(), org, &address).await?
                        || invitations::was_revoked(tx.conn(), org, &address).await?
                    {
                        return Ok(());
                    }
                    invitations::sweep_expired(tx.conn(), Some(org), Some(&address), now).await?;
                    if invitations::find_pending(tx.conn(), Some(org), &address, now)
                        .await?
                        .is_some()
                    {
                        return Ok(());
                    }
                    let invitation = Invitation {
                        id: InvitationId::new(),
                        organization_id: Some(organization_id.clone()),
                        email_address: address,
                        role: Some(default_role),
                        status: InvitationStatus::Pending,
                        inviter_user_id: None,
                        redirect_url: None,
                        public_metadata: Metadata::default(),
                        private_metadata: Metadata::default(),
                        expire_time: now + i64::from(DEFAULT_EXPIRES_IN_DAYS) * MICROS_PER_DAY,
                        accepted_user_id: None,
                        create_time: now,
                        update_time: now,
                    };
                    // The token is never handed out: the invitee sees the
                    // invitation in onboarding and a platform principal accepts
                    // it by id.
                    insert_pending(tx, &invitation).await?;
                    invitations::refresh_pending_count(tx.conn(), org, now).await?;
                    tx.emit(
                        EventKind::InvitationCreated,
                        Some(&organization_id),
                        invitation.id.as_str(),
                        &invitation,
                    )?;
                    Ok(())
                })
            })
            .await;
        match created {
            // A concurrent call created it first.
            Ok(()) | Err(Error::AlreadyExists(Reason::InvitationExists, _)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}
