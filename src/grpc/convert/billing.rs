//! Billing at the gRPC border.

use super::{clamp, optional_timestamp, timestamp};
use crate::domain::FieldViolation;
use crate::domain::billing::{
    ActivityEvent, BillingSummary, BudgetThresholdCrossed, CostDriver, OrganizationUsage,
};
use crate::domain::ids::UserId;
use crate::domain::time::Micros;
use crate::proto::v1 as pb;
use crate::service::billing::{WatchEvent, WatchMessage};

/// Events one `RecordActivity` call may carry.
pub const MAX_ACTIVITY_EVENTS: usize = 10_000;
/// Field violations reported for one request at most.
const MAX_VIOLATIONS: usize = 100;

impl From<BillingSummary> for pb::BillingSummary {
    fn from(summary: BillingSummary) -> Self {
        pb::BillingSummary {
            period: summary.period,
            total_organizations: clamp(summary.total_organizations),
            monthly_active_users: clamp(summary.monthly_active_users),
            billable_organizations: clamp(summary.billable_organizations),
            free_organizations: clamp(summary.free_organizations),
            charged_organizations: clamp(summary.charged_organizations),
            amount_due: Some(summary.amount_due.into()),
            budget: summary.budget.map(Into::into),
            projected_amount_due: Some(summary.projected_amount_due.into()),
        }
    }
}

impl From<BudgetThresholdCrossed> for pb::BudgetThresholdCrossed {
    fn from(crossed: BudgetThresholdCrossed) -> Self {
        pb::BudgetThresholdCrossed {
            period: crossed.period,
            percent: crossed.percent,
            amount_due: Some(crossed.amount_due.into()),
            budget: Some(crossed.budget.into()),
        }
    }
}

impl From<OrganizationUsage> for pb::OrganizationUsage {
    fn from(usage: OrganizationUsage) -> Self {
        pb::OrganizationUsage {
            organization_id: usage.organization_id.into_string(),
            period: usage.period,
            active_member_count: clamp(usage.active_member_count),
            active_member_user_ids: usage
                .active_member_user_ids
                .into_iter()
                .map(UserId::into_string)
                .collect(),
            billable: usage.billable_since.is_some(),
            billable_since: optional_timestamp(usage.billable_since),
        }
    }
}

impl From<CostDriver> for pb::CostDriver {
    fn from(driver: CostDriver) -> Self {
        pb::CostDriver {
            user_id: driver.user_id.into_string(),
            billable_organization_count: clamp(driver.billable_organization_count),
            sole_cause_count: clamp(driver.sole_cause_count),
            avoidable_amount: Some(driver.avoidable_amount.into()),
        }
    }
}

impl From<WatchMessage> for pb::WatchBillableOrganizationsResponse {
    fn from(message: WatchMessage) -> Self {
        use pb::watch_billable_organizations_response::Event;
        let event = match message.event {
            WatchEvent::BecameBillable(usage) => Event::OrganizationBecameBillable(usage.into()),
            WatchEvent::PeriodStarted(period) => Event::PeriodStarted(period),
            WatchEvent::BudgetThresholdCrossed(crossed) => {
                Event::BudgetThresholdCrossed(crossed.into())
            }
            WatchEvent::Checkpoint(time) => Event::Checkpoint(pb::Checkpoint {
                time: timestamp(time),
            }),
        };
        pb::WatchBillableOrganizationsResponse {
            cursor: message.cursor,
            event: Some(event),
            summary: Some(message.summary.into()),
        }
    }
}

/// An event's time in microseconds. Seconds no `Timestamp` may hold (before
/// 1970, after 9999) saturate: such a time lies outside the accepted window
/// like any other, so the use case rejects that one event instead of the whole
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
/// by the use case.
pub fn activity_events(
    events: &[pb::ActivityEvent],
) -> Result<Vec<ActivityEvent>, Vec<FieldViolation>> {
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
    // Field names are written out only for a violation: a call carries up to
    // 10,000 events, and nearly all of them are well-formed.
    fn at(index: usize, field: &'static str) -> impl FnOnce(FieldViolation) -> FieldViolation {
        move |mut violation| {
            violation.field = format!("events[{index}].{field}");
            violation
        }
    }
    for (index, event) in events.iter().enumerate() {
        let user = UserId::parse("user_id", &event.user_id).map_err(at(index, "user_id"));
        let occur = event
            .occur_time
            .as_ref()
            .map(|ts| occur_micros("occur_time", ts).map_err(at(index, "occur_time")))
            .transpose();
        match (user, occur) {
            (Ok(user_id), Ok(occur_time)) => inputs.push(ActivityEvent {
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
