//! `orgs.v1.BillingService`.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::billing::activity_events;
use super::convert::clamp;
use crate::all_valid;
use crate::auth::{Authorizer, Target};
use crate::domain::ids::OrganizationId;
use crate::domain::time::{BillingPeriod, Clock};
use crate::domain::types::page_size;
use crate::domain::{Error, FieldViolation};
use crate::proto::v1::{self as pb, billing_service_server::BillingService};
use crate::service::{Activity, BillingReads, BillingWatch};
use crate::telemetry::metrics::Metrics;

/// The handlers of `BillingService` and what they call.
pub struct BillingApi {
    pub authorizer: Authorizer,
    pub activity: Activity,
    pub reads: BillingReads,
    pub watch: BillingWatch,
    /// For `period` defaulting to the current one.
    pub clock: Arc<dyn Clock>,
    /// Counts open watch streams.
    pub metrics: Metrics,
}

impl BillingApi {
    fn period(&self, field: &str, value: &str) -> Result<BillingPeriod, FieldViolation> {
        BillingPeriod::parse_or_current(field, value, self.clock.now())
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchBillableOrganizationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BillingService for BillingApi {
    type WatchBillableOrganizationsStream = WatchStream;

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let events = activity_events(&req.events).map_err(Error::InvalidArgument)?;
        let actor = self.authorizer.authorize(&caller, Target::Service).await?;
        let outcome = self.activity.record(actor, events).await?;
        Ok(Response::new(pb::RecordActivityResponse {
            accepted_count: clamp(outcome.accepted_count),
            rejected_count: clamp(outcome.rejected.len() as i64),
            newly_active_count: clamp(outcome.newly_active_count),
            rejected: outcome
                .rejected
                .into_iter()
                .map(|(index, message)| pb::RejectedActivity {
                    index: clamp(index as i64),
                    message,
                })
                .collect(),
        }))
    }

    async fn get_organization_usage(
        &self,
        request: Request<pb::GetOrganizationUsageRequest>,
    ) -> Result<Response<pb::GetOrganizationUsageResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let organization = OrganizationId::parse("organization_id", &req.organization_id);
        let period = self.period("period", &req.period);
        let size = page_size("page_size", req.page_size);
        let (organization, period, size) = all_valid!(organization, period, size);
        self.authorizer
            .authorize(&caller, Target::Organization(&organization, None))
            .await?;
        let page = self
            .reads
            .usage(&organization, period, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::GetOrganizationUsageResponse {
            usage: Some(page.usage.into()),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_billing_summary(
        &self,
        request: Request<pb::GetBillingSummaryRequest>,
    ) -> Result<Response<pb::GetBillingSummaryResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let period = self.period("period", &req.period);
        let period = all_valid!(period);
        self.authorizer.authorize(&caller, Target::Service).await?;
        let summary = self.reads.summary(period).await?;
        Ok(Response::new(pb::GetBillingSummaryResponse {
            summary: Some(summary.into()),
        }))
    }

    async fn list_billable_organizations(
        &self,
        request: Request<pb::ListBillableOrganizationsRequest>,
    ) -> Result<Response<pb::ListBillableOrganizationsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let period = self.period("period", &req.period);
        let size = page_size("page_size", req.page_size);
        let (period, size) = all_valid!(period, size);
        self.authorizer.authorize(&caller, Target::Service).await?;
        let page = self
            .reads
            .billable_organizations(period, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListBillableOrganizationsResponse {
            usages: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
            total_size: clamp(page.total_size),
        }))
    }

    async fn list_cost_drivers(
        &self,
        request: Request<pb::ListCostDriversRequest>,
    ) -> Result<Response<pb::ListCostDriversResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let period = self.period("period", &req.period);
        let min = match req.min_organizations {
            0 => Ok(5),
            n if n < 0 => Err(FieldViolation::new(
                "min_organizations",
                "must be at least 1",
            )),
            n => Ok(i64::from(n)),
        };
        let size = page_size("page_size", req.page_size);
        let (period, min, size) = all_valid!(period, min, size);
        self.authorizer.authorize(&caller, Target::Service).await?;
        let page = self
            .reads
            .cost_drivers(period, min, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListCostDriversResponse {
            cost_drivers: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
            total_size: clamp(page.total_size),
        }))
    }

    async fn watch_billable_organizations(
        &self,
        request: Request<pb::WatchBillableOrganizationsRequest>,
    ) -> Result<Response<Self::WatchBillableOrganizationsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let cursor = self.watch.cursor("start_cursor", &req.start_cursor)?;
        self.authorizer.authorize(&caller, Target::Service).await?;
        let receiver = self.watch.open(cursor, req.send_initial_state).await?;
        // Counted as open until the stream is dropped.
        let open = self.metrics.watch_stream_opened();
        let stream = ReceiverStream::new(receiver).map(move |item| {
            let _open = &open;
            item.map(Into::into).map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
