//! Billing: how membership changes and activity move the per-period counters.

use super::{Services, Work};
use crate::domain::Result;
use crate::domain::billing::BillingImpact;
use crate::domain::time::BillingPeriod;

impl Services {
    /// Moves the billing counters of the current period for a membership just
    /// added inside `work`, and returns its impact on the bill.
    pub async fn member_added(
        &self,
        work: &mut Work,
        _organization_id: &str,
        _user_id: &str,
    ) -> Result<BillingImpact> {
        // Activity is not recorded yet, so no one is an active member.
        Ok(BillingImpact::unchanged(
            BillingPeriod::containing_micros(work.now),
            0,
            false,
        ))
    }
}
