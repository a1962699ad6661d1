//! Conversions at the gRPC border: proto requests into domain values
//! (`TryFrom`, naming every bad field) and domain values into proto messages.

pub mod billing;
pub mod enrollment;
pub mod events;
pub mod organizations;
pub mod structs;

pub use structs::{
    mask_paths, metadata, metadata_patch, metadata_struct, micros, optional_timestamp, timestamp,
};

use crate::domain::billing::{BillingImpact, Money};
use crate::proto::v1 as pb;

impl From<Money> for pb::Money {
    fn from(money: Money) -> Self {
        let (units, nanos) = money.units_and_nanos();
        pb::Money {
            currency_code: money.currency,
            units,
            nanos,
        }
    }
}

impl From<BillingImpact> for pb::BillingImpact {
    fn from(impact: BillingImpact) -> Self {
        pb::BillingImpact {
            period: impact.period,
            active_member_count_before: clamp(impact.active_member_count_before),
            active_member_count_after: clamp(impact.active_member_count_after),
            billable_before: impact.billable_before,
            billable_after: impact.billable_after,
            marginal_amount: Some(impact.marginal_amount.into()),
        }
    }
}

/// A count as the proto's `int32`, saturated.
pub fn clamp(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
