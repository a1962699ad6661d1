//! `orgs.v1.BillingService`.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::domain::Error;
use crate::proto::v1::{self as pb, billing_service_server::BillingService};
use crate::service::Services;

pub struct BillingApi {
    #[allow(dead_code)]
    services: Services,
}

impl BillingApi {
    pub fn new(services: Services) -> Self {
        BillingApi { services }
    }
}

fn not_yet(method: &str) -> Status {
    Error::Unimplemented(format!("{method} is not served by this version")).into()
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchBillableOrganizationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BillingService for BillingApi {
    type WatchBillableOrganizationsStream = WatchStream;

    async fn record_activity(
        &self,
        _: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        Err(not_yet("RecordActivity"))
    }

    async fn get_organization_usage(
        &self,
        _: Request<pb::GetOrganizationUsageRequest>,
    ) -> Result<Response<pb::GetOrganizationUsageResponse>, Status> {
        Err(not_yet("GetOrganizationUsage"))
    }

    async fn get_billing_summary(
        &self,
        _: Request<pb::GetBillingSummaryRequest>,
    ) -> Result<Response<pb::GetBillingSummaryResponse>, Status> {
        Err(not_yet("GetBillingSummary"))
    }

    async fn list_billable_organizations(
        &self,
        _: Request<pb::ListBillableOrganizationsRequest>,
    ) -> Result<Response<pb::ListBillableOrganizationsResponse>, Status> {
        Err(not_yet("ListBillableOrganizations"))
    }

    async fn list_cost_drivers(
        &self,
        _: Request<pb::ListCostDriversRequest>,
    ) -> Result<Response<pb::ListCostDriversResponse>, Status> {
        Err(not_yet("ListCostDrivers"))
    }

    async fn watch_billable_organizations(
        &self,
        _: Request<pb::WatchBillableOrganizationsRequest>,
    ) -> Result<Response<Self::WatchBillableOrganizationsStream>, Status> {
        Err(not_yet("WatchBillableOrganizations"))
    }
}
