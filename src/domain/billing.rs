//! Billing values: money in minor units and the impact of a change on the bill.

use super::time::BillingPeriod;

/// What a change does to the bill of a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BillingImpact {
    /// `YYYY-MM`.
    pub period: String,
    pub active_member_count_before: i64,
    pub active_member_count_after: i64,
    pub billable_before: bool,
    pub billable_after: bool,
    /// The growth of the amount due, in minor units of the configured currency.
    pub marginal_amount_minor: i64,
}

impl BillingImpact {
    /// No change to an organization with `active_members` active members.
    pub fn unchanged(period: BillingPeriod, active_members: i64, billable: bool) -> Self {
        BillingImpact {
            period: period.to_string(),
            active_member_count_before: active_members,
            active_member_count_after: active_members,
            billable_before: billable,
            billable_after: billable,
            marginal_amount_minor: 0,
        }
    }
}
