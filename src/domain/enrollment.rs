//! How users come into organizations: invitations, verified domains,
//! membership requests and onboarding, as the use cases hand them out, and
//! what the calls that change them take. The rules that need no storage are in
//! [`super::invitations`].

use serde::{Deserialize, Serialize};

use super::billing::BillingImpact;
use super::ids::{DomainId, InvitationId, MembershipRequestId, OrganizationId, RoleKey, UserId};
use super::invitations::{EnrollmentMode, InvitationStatus, MembershipRequestStatus};
use super::organizations::{Membership, Organization, etag};
use super::time::Micros;
use super::types::{Email, Metadata};
use super::verification::VerificationStrategy;

/// An invitation, to an organization or (without one) to the application.
/// Its secret token is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: InvitationId,
    /// `None`: an application invitation.
    pub organization_id: Option<OrganizationId>,
    pub email_address: String,
    /// `None` for an application invitation.
    pub role: Option<RoleKey>,
    /// As stored; see [`Invitation::status_at`].
    pub status: InvitationStatus,
    pub inviter_user_id: Option<UserId>,
    pub redirect_url: Option<String>,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
    pub expire_time: Micros,
    pub accepted_user_id: Option<UserId>,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl Invitation {
    /// The status a reader sees at `now`: a pending invitation past its
    /// expiry reads as expired, whether or not a sweep has stored that yet.
    pub fn status_at(&self, now: Micros) -> InvitationStatus {
        match self.status {
            InvitationStatus::Pending if self.expire_time <= now => InvitationStatus::Expired,
            status => status,
        }
    }

    /// This invitation as a reader at `now` sees it.
    pub fn as_of(mut self, now: Micros) -> Self {
        self.status = self.status_at(now);
        self
    }
}

/// The rules invitations follow, from configuration.
#[derive(Debug, Clone)]
pub struct InvitationRules {
    /// The role of an organization invitation that names none.
    pub default_role: RoleKey,
    /// Hosts a `redirect_url` may point at; empty: any https host.
    pub redirect_hosts: Vec<String>,
}

/// What `CreateInvitation` takes, validated.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// `None` for an application invitation.
    pub organization_id: Option<OrganizationId>,
    pub email_address: Email,
    /// `None`: the configured default role (organization invitations).
    pub role: Option<RoleKey>,
    pub inviter_user_id: Option<UserId>,
    pub redirect_url: Option<String>,
    pub expires_in_days: i32,
    pub public_metadata: Metadata,
    pub private_metadata: Metadata,
}

/// A new invitation with its secret. The token and URL are never stored (not
/// even with the idempotency record): a replayed answer has them empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub url: String,
}

/// Filters of an invitation list.
#[derive(Debug, Clone, Default)]
pub struct InvitationFilter {
    /// `None`: application invitations.
    pub organization_id: Option<OrganizationId>,
    /// As readers see it at the time of the call (expired included).
    pub status: Option<InvitationStatus>,
    pub email_address: Option<Email>,
}

/// How `AcceptInvitation` names the invitation.
#[derive(Debug, Clone)]
pub enum InvitationKey {
    /// The secret token mailed to the invitee.
    Token(String),
    /// The id, for platform principals that verified the user's email.
    Id(InvitationId),
}

/// What `AcceptInvitation` takes, validated.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub key: InvitationKey,
    pub user_id: UserId,
    pub email_address: Email,
}

/// An accepted invitation with the membership it created (none for an
/// application invitation) and its effect on the bill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedInvitation {
    pub invitation: Invitation,
    pub membership: Option<Membership>,
    pub billing_impact: Option<BillingImpact>,
}

/// A domain claimed by an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub id: DomainId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub enrollment_mode: EnrollmentMode,
    pub verified: bool,
    pub affiliation_email_address: Option<String>,
    pub verify_time: Option<Micros>,
    pub create_time: Micros,
    pub update_time: Micros,
    pub revision: i64,
    pub verification_strategy: VerificationStrategy,
}

impl Domain {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// What `CreateDomain` takes, validated.
#[derive(Debug, Clone)]
pub struct NewDomain {
    pub organization_id: OrganizationId,
    pub name: String,
    pub enrollment_mode: EnrollmentMode,
    /// Created already verified; only platform principals may ask for it.
    pub verified: bool,
    pub verification_strategy: VerificationStrategy,
}

/// What `UpdateDomain` changes: the fields its mask names.
#[derive(Debug, Clone, Default)]
pub struct DomainChanges {
    pub enrollment_mode: Option<EnrollmentMode>,
    pub verification_strategy: Option<VerificationStrategy>,
}

/// The DNS TXT record that proves ownership of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsChallenge {
    /// `_orgs-challenge.<domain>`.
    pub name: String,
    /// The random value the record must hold.
    pub value: String,
}

/// A verification just prepared: a 6-digit code (email strategy; the code
/// itself is never stored, not even with an idempotency record) or the DNS
/// record to publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedVerification {
    pub domain: Domain,
    /// Empty for the DNS strategy.
    #[serde(skip)]
    pub code: String,
    /// When the code stops working; `None` for the DNS strategy, whose
    /// record stays valid until the domain is verified.
    pub expire_time: Option<Micros>,
    pub dns_challenge: Option<DnsChallenge>,
}

/// A verified domain with the organization that owns it.
#[derive(Debug, Clone)]
pub struct OwnedDomain {
    pub domain: Domain,
    pub organization: Organization,
}

/// A request of a user to join an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipRequest {
    pub id: MembershipRequestId,
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub email_address: String,
    pub status: MembershipRequestStatus,
    pub create_time: Micros,
    pub update_time: Micros,
}

/// What `CreateMembershipRequest` takes, validated.
#[derive(Debug, Clone)]
pub struct NewMembershipRequest {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub email_address: Email,
}

/// An accepted membership request with the membership it created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedMembershipRequest {
    pub membership_request: MembershipRequest,
    pub membership: Membership,
    pub billing_impact: BillingImpact,
}

/// An organization a user may ask to join, and the domain that matched.
#[derive(Debug, Clone)]
pub struct Suggestion {
    pub organization: Organization,
    pub domain: String,
}

/// What `ResolveOnboarding` answers.
#[derive(Debug, Clone)]
pub struct Onboarding {
    pub memberships: Vec<Membership>,
    /// Pending, as of the call.
    pub invitations: Vec<Invitation>,
    pub suggestions: Vec<Suggestion>,
    pub requires_organization: bool,
}
