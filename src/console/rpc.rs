//! The console's calls: the same gRPC handlers, called in-process with the
//! caller the auth layer would have made from the same token. Validation,
//! authorization, the use cases and the error mapping are therefore exactly
//! those of a call over gRPC, and so are the per-principal rate limits.

use std::future::Future;

use tonic::{Request, Response, Status};

use super::Console;
use super::session::Session;
use crate::auth::layer::caller_for;
use crate::auth::policy::rule_for;

/// Calls the handler `handler` of the RPC at `path` with `message`, as the
/// session's principal, after the auth layer's checks and the per-principal
/// rate limit that the same call over gRPC would meet.
pub async fn call<M, R, F, Fut>(
    console: &Console,
    session: &Session,
    path: &'static str,
    message: M,
    handler: F,
) -> Result<R, Status>
where
    F: FnOnce(Request<M>) -> Fut,
    Fut: Future<Output = Result<Response<R>, Status>>,
{
    let Some((method, rule)) = rule_for(path) else {
        // Every path the console names is in the policy table (a test checks).
        return Err(Status::unimplemented(format!("{path} has no policy entry")));
    };
    let caller = caller_for(session.principal.clone(), method, rule)?;
    console.limits.admit_call(path, &caller)?;
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller);
    handler(request).await.map(Response::into_inner)
}

/// The RPC paths the console calls.
pub mod paths {
    pub const LIST_ORGANIZATIONS: &str = "/orgs.v1.OrganizationService/ListOrganizations";
    pub const GET_ORGANIZATION: &str = "/orgs.v1.OrganizationService/GetOrganization";
    pub const UPDATE_ORGANIZATION: &str = "/orgs.v1.OrganizationService/UpdateOrganization";
    pub const DELETE_ORGANIZATION: &str = "/orgs.v1.OrganizationService/DeleteOrganization";
    pub const DEACTIVATE_ORGANIZATION: &str = "/orgs.v1.OrganizationService/DeactivateOrganization";
    pub const REACTIVATE_ORGANIZATION: &str = "/orgs.v1.OrganizationService/ReactivateOrganization";
    pub const DEACTIVATE_MEMBERSHIP: &str = "/orgs.v1.OrganizationService/DeactivateMembership";
    pub const REACTIVATE_MEMBERSHIP: &str = "/orgs.v1.OrganizationService/ReactivateMembership";
    pub const CREATE_MEMBERSHIP: &str = "/orgs.v1.OrganizationService/CreateMembership";
    pub const LIST_MEMBERSHIPS: &str = "/orgs.v1.OrganizationService/ListMemberships";
    pub const UPDATE_MEMBERSHIP: &str = "/orgs.v1.OrganizationService/UpdateMembership";
    pub const DELETE_MEMBERSHIP: &str = "/orgs.v1.OrganizationService/DeleteMembership";
    pub const LIST_ROLES: &str = "/orgs.v1.OrganizationService/ListRoles";
    pub const LIST_AUDIT_EVENTS: &str = "/orgs.v1.OrganizationService/ListAuditEvents";
    pub const LIST_INVITATIONS: &str = "/orgs.v1.InvitationService/ListInvitations";
    pub const LIST_DOMAINS: &str = "/orgs.v1.InvitationService/ListDomains";
    pub const GET_ORGANIZATION_USAGE: &str = "/orgs.v1.BillingService/GetOrganizationUsage";
    pub const GET_BILLING_SUMMARY: &str = "/orgs.v1.BillingService/GetBillingSummary";
    pub const LIST_BILLABLE_ORGANIZATIONS: &str =
        "/orgs.v1.BillingService/ListBillableOrganizations";
    pub const LIST_COST_DRIVERS: &str = "/orgs.v1.BillingService/ListCostDrivers";

    #[cfg(test)]
    pub const ALL: &[&str] = &[
        LIST_ORGANIZATIONS,
        GET_ORGANIZATION,
        UPDATE_ORGANIZATION,
        DELETE_ORGANIZATION,
        DEACTIVATE_ORGANIZATION,
        REACTIVATE_ORGANIZATION,
        DEACTIVATE_MEMBERSHIP,
        REACTIVATE_MEMBERSHIP,
        CREATE_MEMBERSHIP,
        LIST_MEMBERSHIPS,
        UPDATE_MEMBERSHIP,
        DELETE_MEMBERSHIP,
        LIST_ROLES,
        LIST_AUDIT_EVENTS,
        LIST_INVITATIONS,
        LIST_DOMAINS,
        GET_ORGANIZATION_USAGE,
        GET_BILLING_SUMMARY,
        LIST_BILLABLE_ORGANIZATIONS,
        LIST_COST_DRIVERS,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_the_console_calls_has_a_policy_entry() {
        for path in paths::ALL {
            assert!(rule_for(path).is_some(), "{path}");
        }
    }
}
