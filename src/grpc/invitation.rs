//! `orgs.v1.InvitationService`.

use tonic::{Request, Response, Status};

use crate::domain::Error;
use crate::proto::v1::{self as pb, invitation_service_server::InvitationService};
use crate::service::Services;

pub struct InvitationApi {
    #[allow(dead_code)]
    services: Services,
}

impl InvitationApi {
    pub fn new(services: Services) -> Self {
        InvitationApi { services }
    }
}

fn not_yet(method: &str) -> Status {
    Error::Unimplemented(format!("{method} is not served by this version")).into()
}

macro_rules! unimplemented_rpcs {
    ($($method:ident($request:ident) -> $response:ident;)*) => {
        #[tonic::async_trait]
        impl InvitationService for InvitationApi {
            $(
                async fn $method(&self, _request: Request<pb::$request>) -> Result<Response<pb::$response>, Status> {
                    Err(not_yet(stringify!($method)))
                }
            )*
        }
    };
}

unimplemented_rpcs! {
    create_invitation(CreateInvitationRequest) -> CreateInvitationResponse;
    create_invitations(CreateInvitationsRequest) -> CreateInvitationsResponse;
    get_invitation(GetInvitationRequest) -> GetInvitationResponse;
    list_invitations(ListInvitationsRequest) -> ListInvitationsResponse;
    revoke_invitation(RevokeInvitationRequest) -> RevokeInvitationResponse;
    accept_invitation(AcceptInvitationRequest) -> AcceptInvitationResponse;
    create_domain(CreateDomainRequest) -> CreateDomainResponse;
    list_domains(ListDomainsRequest) -> ListDomainsResponse;
    update_domain(UpdateDomainRequest) -> UpdateDomainResponse;
    delete_domain(DeleteDomainRequest) -> DeleteDomainResponse;
    prepare_domain_verification(PrepareDomainVerificationRequest) -> PrepareDomainVerificationResponse;
    attempt_domain_verification(AttemptDomainVerificationRequest) -> AttemptDomainVerificationResponse;
    create_membership_request(CreateMembershipRequestRequest) -> CreateMembershipRequestResponse;
    list_membership_requests(ListMembershipRequestsRequest) -> ListMembershipRequestsResponse;
    accept_membership_request(AcceptMembershipRequestRequest) -> AcceptMembershipRequestResponse;
    reject_membership_request(RejectMembershipRequestRequest) -> RejectMembershipRequestResponse;
    resolve_onboarding(ResolveOnboardingRequest) -> ResolveOnboardingResponse;
}
