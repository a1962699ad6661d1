//! `orgs.v1.InvitationService`: invitations, verified domains, membership
//! requests and onboarding. The trait's methods hand each call to the handler
//! of its area.

mod domains;
mod invitations;
mod requests;

use tonic::{Request, Response, Status};

use crate::auth::Authorizer;
use crate::proto::v1::{self as pb, invitation_service_server::InvitationService};
use crate::service::{Domains, Invitations, MembershipRequests, Onboardings};

/// The handlers of `InvitationService` and what they call.
pub struct InvitationApi {
    pub authorizer: Authorizer,
    pub invitations: Invitations,
    pub domains: Domains,
    pub membership_requests: MembershipRequests,
    pub onboardings: Onboardings,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl InvitationService for InvitationApi {
    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Answer<pb::CreateInvitationResponse> {
        invitations::create(self, request).await
    }

    async fn create_invitations(
        &self,
        request: Request<pb::CreateInvitationsRequest>,
    ) -> Answer<pb::CreateInvitationsResponse> {
        invitations::create_batch(self, request).await
    }

    async fn get_invitation(
        &self,
        request: Request<pb::GetInvitationRequest>,
    ) -> Answer<pb::GetInvitationResponse> {
        invitations::get(self, request).await
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Answer<pb::ListInvitationsResponse> {
        invitations::list(self, request).await
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Answer<pb::RevokeInvitationResponse> {
        invitations::revoke(self, request).await
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Answer<pb::AcceptInvitationResponse> {
        invitations::accept(self, request).await
    }

    async fn create_domain(
        &self,
        request: Request<pb::CreateDomainRequest>,
    ) -> Answer<pb::CreateDomainResponse> {
        domains::create(self, request).await
    }

    async fn list_domains(
        &self,
        request: Request<pb::ListDomainsRequest>,
    ) -> Answer<pb::ListDomainsResponse> {
        domains::list(self, request).await
    }

    async fn update_domain(
        &self,
        request: Request<pb::UpdateDomainRequest>,
    ) -> Answer<pb::UpdateDomainResponse> {
        domains::update(self, request).await
    }

    async fn delete_domain(
        &self,
        request: Request<pb::DeleteDomainRequest>,
    ) -> Answer<pb::DeleteDomainResponse> {
        domains::delete(self, request).await
    }

    async fn prepare_domain_verification(
        &self,
        request: Request<pb::PrepareDomainVerificationRequest>,
    ) -> Answer<pb::PrepareDomainVerificationResponse> {
        domains::prepare_verification(self, request).await
    }

    async fn attempt_domain_verification(
        &self,
        request: Request<pb::AttemptDomainVerificationRequest>,
    ) -> Answer<pb::AttemptDomainVerificationResponse> {
        domains::attempt_verification(self, request).await
    }

    async fn lookup_domain(
        &self,
        request: Request<pb::LookupDomainRequest>,
    ) -> Answer<pb::LookupDomainResponse> {
        domains::lookup(self, request).await
    }

    async fn create_membership_request(
        &self,
        request: Request<pb::CreateMembershipRequestRequest>,
    ) -> Answer<pb::CreateMembershipRequestResponse> {
        requests::create(self, request).await
    }

    async fn list_membership_requests(
        &self,
        request: Request<pb::ListMembershipRequestsRequest>,
    ) -> Answer<pb::ListMembershipRequestsResponse> {
        requests::list(self, request).await
    }

    async fn accept_membership_request(
        &self,
        request: Request<pb::AcceptMembershipRequestRequest>,
    ) -> Answer<pb::AcceptMembershipRequestResponse> {
        requests::accept(self, request).await
    }

    async fn reject_membership_request(
        &self,
        request: Request<pb::RejectMembershipRequestRequest>,
    ) -> Answer<pb::RejectMembershipRequestResponse> {
        requests::reject(self, request).await
    }

    async fn resolve_onboarding(
        &self,
        request: Request<pb::ResolveOnboardingRequest>,
    ) -> Answer<pb::ResolveOnboardingResponse> {
        requests::resolve_onboarding(self, request).await
    }
}
