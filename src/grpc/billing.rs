//! `orgs.v1.BillingService`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{optional_timestamp, timestamp};
use super::{authorize_in_organization, caller, money};
use crate::all_valid;
use crate::domain::billing::{BillingSummary, CostDriver, OrganizationUsage, WatchCursor};
use crate::domain::time::{BillingPeriod, Micros};
use crate::domain::types::{page_size, resource_id, user_id};
use crate::domain::{Error, FieldViolation, ids};
use crate::proto::v1::{self as pb, billing_service_server::BillingService};
use crate::service::Services;
use crate::service::billing::{ActivityInput, WatchEvent, WatchMessage};

/// Events one `RecordActivity` call may carry.
const MAX_ACTIVITY_EVENTS: usize = 10_000;
/// Field violations reported for one request at most.
const MAX_VIOLATIONS: usize = 100;

pub struct BillingApi {
    services: Services,
}

impl BillingApi {
    pub fn new(services: Services) -> Self {
        BillingApi { services }
    }

    fn period(&self, field: &str, value: &str) -> Result<BillingPeriod, FieldViolation> {
        BillingPeriod::parse_or_current(field, value, self.services.clock.now())
    }

    fn cost_driver_to_proto(&self, driver: CostDriver) -> pb::CostDriver {
        pb::CostDriver {
            user_id: driver.user_id,
            billable_organization_count: clamp(driver.billable_organization_count),
            sole_cause_count: clamp(driver.sole_cause_count),
            avoidable_amount: Some(money(
                &self.services.config.billing.currency,
                driver.avoidable_amount_minor,
            )),
        }
    }
}

fn summary_to_proto(currency: &str, summary: BillingSummary) -> pb::BillingSummary {
    pb::BillingSummary {
        period: summary.period,
        total_organizations: clamp(summary.total_organizations),
        monthly_active_users: clamp(summary.monthly_active_users),
        billable_organizations: clamp(summary.billable_organizations),
        free_organizations: clamp(summary.free_organizations),
        charged_organizations: clamp(summary.charged_organizations),
        amount_due: Some(money(currency, summary.amount_due_minor)),
    }
}

fn clamp(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn usage_to_proto(usage: OrganizationUsage) -> pb::OrganizationUsage {
    pb::OrganizationUsage {
        organization_id: usage.organization_id,
        period: usage.period,
        active_member_count: clamp(usage.active_member_count),
        active_member_user_ids: usage.active_member_user_ids,
        billable: usage.billable_since.is_some(),
        billable_since: optional_timestamp(usage.billable_since),
    }
}

fn watch_message_to_proto(
    currency: &str,
    message: WatchMessage,
) -> pb::WatchBillableOrganizationsResponse {
    use pb::watch_billable_organizations_response::Event;
    let event = match message.event {
        WatchEvent::BecameBillable(usage) => {
            Event::OrganizationBecameBillable(usage_to_proto(usage))
        }
        WatchEvent::PeriodStarted(period) => Event::PeriodStarted(period),
        WatchEvent::Checkpoint(time) => Event::Checkpoint(pb::Checkpoint {
            time: timestamp(time),
        }),
    };
    pb::WatchBillableOrganizationsResponse {
        cursor: message.cursor,
        event: Some(event),
        summary: Some(summary_to_proto(currency, message.summary)),
    }
}

/// An event's time in microseconds. Seconds no `Timestamp` may hold (before
/// 1970, after 9999) saturate: such a time lies outside the accepted window
/// like any other, so the service rejects that one event instead of the whole
/// batch failing. Nanos outside 0..1e9 are a malformed message, not a time.
fn occur_micros(field: &str, ts: &prost_types::Timestamp) -> Result<Micros, FieldViolation> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(FieldViolation::new(field, "must be a valid timestamp"));
    }
    Ok(ts
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos) / 1000))
}

/// The events of a `RecordActivity` request: ids and times well-formed, or
/// every bad field named. Whether a time is acceptable is decided per event
/// by the service.
fn activity_events(
    events: &[pb::ActivityEvent],
) -> Result<Vec<ActivityInput>, Vec<FieldViolation>> {
    if events.is_empty() {
        return Err(vec![FieldViolation::new(
            "events",
            "must have at least 1 event",
        )]);
    }
    if events.len() > MAX_ACTIVITY_EVENTS {
        return Err(vec![FieldViolation::new(
            "events",
            format!("must have at most {MAX_ACTIVITY_EVENTS} events"),
        )]);
    }
    let mut violations = Vec::new();
    let mut inputs = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let user = user_id(&format!("events[{index}].user_id"), &event.user_id);
        let occur = event
            .occur_time
            .as_ref()
            .map(|ts| occur_micros(&format!("events[{index}].occur_time"), ts))
            .transpose();
        match (user, occur) {
            (Ok(user_id), Ok(occur_time)) => inputs.push(ActivityInput {
                user_id,
                occur_time,
            }),
            (user, occur) => {
                violations.extend(user.err());
                violations.extend(occur.err());
            }
        }
    }
    if violations.is_empty() {
        Ok(inputs)
    } else {
        violations.truncate(MAX_VIOLATIONS);
        Err(violations)
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
        caller.authorize(None)?;
        let outcome = self.services.record_activity(events).await?;
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
        let organization = resource_id("organization_id", &req.organization_id, ids::ORGANIZATION);
        let period = self.period("period", &req.period);
        let (organization, period) = all_valid!(organization, period);
        authorize_in_organization(&self.services, &caller, &organization, None).await?;
        let usage = self
            .services
            .organization_usage(&organization, period)
            .await?;
        Ok(Response::new(pb::GetOrganizationUsageResponse {
            usage: Some(usage_to_proto(usage)),
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
        caller.authorize(None)?;
        let summary = self.services.billing_summary(period).await?;
        let currency = &self.services.config.billing.currency;
        Ok(Response::new(pb::GetBillingSummaryResponse {
            summary: Some(summary_to_proto(currency, summary)),
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
        caller.authorize(None)?;
        let page = self
            .services
            .list_billable_organizations(period, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListBillableOrganizationsResponse {
            usages: page.items.into_iter().map(usage_to_proto).collect(),
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
        caller.authorize(None)?;
        let page = self
            .services
            .list_cost_drivers(period, min, size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListCostDriversResponse {
            cost_drivers: page
                .items
                .into_iter()
                .map(|driver| self.cost_driver_to_proto(driver))
                .collect(),
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
        let cursor = WatchCursor::decode("start_cursor", &req.start_cursor);
        let cursor = all_valid!(cursor);
        caller.authorize(None)?;
        let receiver = self
            .services
            .watch_billing(cursor, req.send_initial_state)
            .await?;
        let currency = self.services.config.billing.currency.clone();
        // Counted as open until the stream is dropped.
        let open = self.services.metrics.watch_stream_opened();
        let stream = ReceiverStream::new(receiver).map(move |item| {
            let _open = &open;
            item.map(|message| watch_message_to_proto(&currency, message))
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
