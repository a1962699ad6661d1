//! Stored rows as the domain's views: the conversions at the store's border.
//! Values were valid when they were written, so they are read back as they
//! are; empty strings stand for absent values.

use crate::domain::enrollment::{Domain, Invitation, MembershipRequest};
use crate::domain::ids::{
    DomainId, InvitationId, MembershipId, MembershipRequestId, OrganizationId, PermissionId,
    PermissionKey, RoleId, RoleKey, UserId,
};
use crate::domain::invitations::{EnrollmentMode, InvitationStatus, MembershipRequestStatus};
use crate::domain::organizations::{Membership, Organization};
use crate::domain::roles::{Permission, Role};
use crate::domain::types::Metadata;
use crate::domain::verification::VerificationStrategy;

use super::repo::domains::DomainRow;
use super::repo::invitations::InvitationRow;
use super::repo::membership_requests::MembershipRequestRow;
use super::repo::memberships::MembershipRow;
use super::repo::organizations::OrganizationRow;
use super::repo::roles::{PermissionRow, RoleRecord};

fn present(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl From<OrganizationRow> for Organization {
    fn from(row: OrganizationRow) -> Self {
        Organization {
            id: OrganizationId::from_stored(row.id),
            name: row.name,
            slug: row.slug,
            created_by: row.created_by.map(UserId::from_stored),
            max_allowed_memberships: row.max_allowed_memberships,
            members_count: row.members_count,
            pending_invitations_count: row.pending_invitations_count,
            public_metadata: Metadata::from_json(&row.public_metadata),
            private_metadata: Metadata::from_json(&row.private_metadata),
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
            external_id: row.external_id,
            deactivate_time: row.deactivate_time,
        }
    }
}

/// A membership with the permissions of its role; the organization's name
/// and slug are the caller's to fill (one query for a whole page).
pub fn membership(row: MembershipRow, permissions: Vec<String>) -> Membership {
    Membership {
        id: MembershipId::from_stored(row.id),
        organization_id: OrganizationId::from_stored(row.organization_id),
        user_id: UserId::from_stored(row.user_id),
        role: RoleKey::from_stored(row.role),
        permissions: permissions
            .into_iter()
            .map(PermissionKey::from_stored)
            .collect(),
        public_metadata: Metadata::from_json(&row.public_metadata),
        private_metadata: Metadata::from_json(&row.private_metadata),
        create_time: row.create_time,
        update_time: row.update_time,
        revision: row.revision,
        organization_name: String::new(),
        organization_slug: String::new(),
        deactivate_time: row.deactivate_time,
    }
}

impl From<RoleRecord> for Role {
    fn from(record: RoleRecord) -> Self {
        let mut permissions: Vec<PermissionKey> = record
            .permissions
            .into_iter()
            .map(PermissionKey::from_stored)
            .collect();
        permissions.sort();
        Role {
            id: RoleId::from_stored(record.id),
            key: RoleKey::from_stored(record.key),
            name: record.name,
            description: record.description,
            permissions,
            built_in: record.built_in,
            create_time: record.create_time,
            update_time: record.update_time,
            revision: record.revision,
        }
    }
}

impl From<PermissionRow> for Permission {
    fn from(row: PermissionRow) -> Self {
        Permission {
            id: PermissionId::from_stored(row.id),
            key: PermissionKey::from_stored(row.key),
            name: row.name,
            description: row.description,
            system: row.system,
            create_time: row.create_time,
        }
    }
}

impl From<InvitationRow> for Invitation {
    fn from(row: InvitationRow) -> Self {
        Invitation {
            id: InvitationId::from_stored(row.id),
            organization_id: row.organization_id.map(OrganizationId::from_stored),
            email_address: row.email_address,
            role: present(row.role).map(RoleKey::from_stored),
            status: InvitationStatus::from_stored(&row.status),
            inviter_user_id: present(row.inviter_user_id).map(UserId::from_stored),
            redirect_url: present(row.redirect_url),
            public_metadata: Metadata::from_json(&row.public_metadata),
            private_metadata: Metadata::from_json(&row.private_metadata),
            expire_time: row.expire_time,
            accepted_user_id: present(row.accepted_user_id).map(UserId::from_stored),
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

impl From<DomainRow> for Domain {
    fn from(row: DomainRow) -> Self {
        Domain {
            id: DomainId::from_stored(row.id),
            organization_id: OrganizationId::from_stored(row.organization_id),
            enrollment_mode: EnrollmentMode::from_stored(&row.enrollment_mode),
            name: row.name,
            verified: row.verified,
            affiliation_email_address: present(row.affiliation_email_address),
            verify_time: row.verify_time,
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
            verification_strategy: VerificationStrategy::from_stored(&row.verification_strategy),
        }
    }
}

impl From<MembershipRequestRow> for MembershipRequest {
    fn from(row: MembershipRequestRow) -> Self {
        MembershipRequest {
            id: MembershipRequestId::from_stored(row.id),
            organization_id: OrganizationId::from_stored(row.organization_id),
            user_id: UserId::from_stored(row.user_id),
            email_address: row.email_address,
            status: MembershipRequestStatus::from_stored(&row.status),
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}
