//! `orgs.v1.OrganizationService`: organizations, memberships, roles and
//! permissions, and the audit trail. The trait's methods hand each call to
//! the handler of its area.

mod audit;
mod lifecycle;
mod memberships;
mod organizations;
mod roles;

use tonic::{Request, Response, Status};

use crate::auth::Authorizer;
use crate::proto::v1::{self as pb, organization_service_server::OrganizationService};
use crate::service::{Audit, Memberships, Organizations, Roles};

/// The handlers of `OrganizationService` and what they call.
pub struct OrganizationApi {
    pub authorizer: Authorizer,
    pub organizations: Organizations,
    pub memberships: Memberships,
    pub roles: Roles,
    pub audit: Audit,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Answer<pb::CreateOrganizationResponse> {
        organizations::create(self, request).await
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Answer<pb::GetOrganizationResponse> {
        organizations::get(self, request).await
    }

    async fn batch_get_organizations(
        &self,
        request: Request<pb::BatchGetOrganizationsRequest>,
    ) -> Answer<pb::BatchGetOrganizationsResponse> {
        organizations::batch_get(self, request).await
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Answer<pb::ListOrganizationsResponse> {
        organizations::list(self, request).await
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Answer<pb::UpdateOrganizationResponse> {
        organizations::update(self, request).await
    }

    async fn update_organization_metadata(
        &self,
        request: Request<pb::UpdateOrganizationMetadataRequest>,
    ) -> Answer<pb::UpdateOrganizationMetadataResponse> {
        organizations::merge_metadata(self, request).await
    }

    async fn delete_organization(
        &self,
        request: Request<pb::DeleteOrganizationRequest>,
    ) -> Answer<pb::DeleteOrganizationResponse> {
        organizations::delete(self, request).await
    }

    async fn create_membership(
        &self,
        request: Request<pb::CreateMembershipRequest>,
    ) -> Answer<pb::CreateMembershipResponse> {
        memberships::create(self, request).await
    }

    async fn list_memberships(
        &self,
        request: Request<pb::ListMembershipsRequest>,
    ) -> Answer<pb::ListMembershipsResponse> {
        memberships::list(self, request).await
    }

    async fn update_membership(
        &self,
        request: Request<pb::UpdateMembershipRequest>,
    ) -> Answer<pb::UpdateMembershipResponse> {
        memberships::update(self, request).await
    }

    async fn delete_membership(
        &self,
        request: Request<pb::DeleteMembershipRequest>,
    ) -> Answer<pb::DeleteMembershipResponse> {
        memberships::delete(self, request).await
    }

    async fn deactivate_membership(
        &self,
        request: Request<pb::DeactivateMembershipRequest>,
    ) -> Answer<pb::DeactivateMembershipResponse> {
        lifecycle::deactivate_membership(self, request).await
    }

    async fn reactivate_membership(
        &self,
        request: Request<pb::ReactivateMembershipRequest>,
    ) -> Answer<pb::ReactivateMembershipResponse> {
        lifecycle::reactivate_membership(self, request).await
    }

    async fn deactivate_organization(
        &self,
        request: Request<pb::DeactivateOrganizationRequest>,
    ) -> Answer<pb::DeactivateOrganizationResponse> {
        lifecycle::deactivate_organization(self, request).await
    }

    async fn reactivate_organization(
        &self,
        request: Request<pb::ReactivateOrganizationRequest>,
    ) -> Answer<pb::ReactivateOrganizationResponse> {
        lifecycle::reactivate_organization(self, request).await
    }

    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Answer<pb::CreateRoleResponse> {
        roles::create_role(self, request).await
    }

    async fn get_role(&self, request: Request<pb::GetRoleRequest>) -> Answer<pb::GetRoleResponse> {
        roles::get_role(self, request).await
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Answer<pb::ListRolesResponse> {
        roles::list_roles(self, request).await
    }

    async fn update_role(
        &self,
        request: Request<pb::UpdateRoleRequest>,
    ) -> Answer<pb::UpdateRoleResponse> {
        roles::update_role(self, request).await
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Answer<pb::DeleteRoleResponse> {
        roles::delete_role(self, request).await
    }

    async fn create_permission(
        &self,
        request: Request<pb::CreatePermissionRequest>,
    ) -> Answer<pb::CreatePermissionResponse> {
        roles::create_permission(self, request).await
    }

    async fn list_permissions(
        &self,
        request: Request<pb::ListPermissionsRequest>,
    ) -> Answer<pb::ListPermissionsResponse> {
        roles::list_permissions(self, request).await
    }

    async fn delete_permission(
        &self,
        request: Request<pb::DeletePermissionRequest>,
    ) -> Answer<pb::DeletePermissionResponse> {
        roles::delete_permission(self, request).await
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Answer<pb::CheckPermissionResponse> {
        memberships::check_permission(self, request).await
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Answer<pb::ListAuditEventsResponse> {
        audit::list(self, request).await
    }
}
