//! Billing values: money in minor units and the impact of a change on the bill.

use super::time::{BillingPeriod, Micros};

/// An amount of money in minor units of its currency (cents for USD).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    /// ISO 4217.
    pub currency: String,
    pub minor_units: i64,
}

impl Money {
    /// Digits after the decimal point of the currency's minor unit (ISO 4217).
    pub fn exponent(&self) -> u32 {
        match self.currency.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    /// Whole units and the fraction in nanos, as `google.type.Money` has them.
    pub fn units_and_nanos(&self) -> (i64, i32) {
        let exponent = self.exponent();
        let scale = 10_i64.pow(exponent);
        (
            self.minor_units / scale,
            ((self.minor_units % scale) * 10_i64.pow(9 - exponent)) as i32,
        )
    }
}

/// What a change does to the bill of a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BillingImpact {
    /// `YYYY-MM`.
    pub period: String,
    pub active_member_count_before: i64,
    pub active_member_count_after: i64,
    pub billable_before: bool,
    pub billable_after: bool,
    /// The growth of the amount due.
    pub marginal_amount: Money,
}

impl BillingImpact {
    /// No change to an organization with `active_members` active members.
    pub fn unchanged(
        pricing: &Pricing,
        period: BillingPeriod,
        active_members: i64,
        billable: bool,
    ) -> Self {
        BillingImpact {
            period: period.to_string(),
            active_member_count_before: active_members,
            active_member_count_after: active_members,
            billable_before: billable,
            billable_after: billable,
            marginal_amount: pricing.money(0),
        }
    }
}

/// The configured numbers of the billing rule and the currency of its prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Active members that make an organization billable.
    pub active_member_threshold: i64,
    /// Billable organizations per period that cost nothing.
    pub free_organizations: i64,
    /// Price of each further billable organization, in minor units.
    pub price_per_organization: i64,
    /// ISO 4217 code of the prices.
    pub currency: String,
    /// The budget guardrail.
    pub budget: Budget,
}

/// The budget guardrail: a budget per period, the percentages of it whose
/// first crossing is recorded, and whether going past it is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    /// Minor units per period; 0: no budget.
    pub amount: i64,
    /// Sorted, without repeats.
    pub alert_percents: Vec<i32>,
    pub enforce: bool,
}

impl Budget {
    pub fn new(amount: i64, alert_percents: &[u32], enforce: bool) -> Self {
        let mut percents: Vec<i32> = alert_percents
            .iter()
            .map(|p| i32::try_from(*p).unwrap_or(i32::MAX))
            .collect();
        percents.sort_unstable();
        percents.dedup();
        Budget {
            amount: amount.max(0),
            alert_percents: percents,
            enforce,
        }
    }

    pub fn is_set(&self) -> bool {
        self.amount > 0
    }

    /// The alert percentages that `amount_due` has reached.
    pub fn reached(&self, amount_due: i64) -> impl Iterator<Item = i32> + '_ {
        self.alert_percents.iter().copied().filter(move |percent| {
            self.is_set()
                && i128::from(amount_due) * 100 >= i128::from(self.amount) * i128::from(*percent)
        })
    }

    /// Whether enforcing refuses an amount due of `amount_due`.
    pub fn refuses(&self, amount_due: i64) -> bool {
        self.enforce && self.is_set() && amount_due > self.amount
    }
}

impl Pricing {
    /// `minor_units` of the pricing's currency.
    pub fn money(&self, minor_units: i64) -> Money {
        Money {
            currency: self.currency.clone(),
            minor_units,
        }
    }

    pub fn is_billable(&self, active_members: i64) -> bool {
        active_members >= self.active_member_threshold
    }

    /// Billable organizations within the free allowance, and those charged.
    pub fn split(&self, billable_organizations: i64) -> (i64, i64) {
        let free = billable_organizations.clamp(0, self.free_organizations.max(0));
        (free, billable_organizations.max(0) - free)
    }

    /// The amount due with `billable_organizations` billable organizations.
    pub fn amount_due(&self, billable_organizations: i64) -> i64 {
        let (_, charged) = self.split(billable_organizations);
        charged.saturating_mul(self.price_per_organization)
    }

    /// The growth of the amount due when the organization at position
    /// `billable_order` (1-based, in the order organizations became billable)
    /// joins the billable set: the price once the free allowance is used up.
    pub fn marginal_amount(&self, billable_order: i64) -> i64 {
        if billable_order > self.free_organizations {
            self.price_per_organization
        } else {
            0
        }
    }

    /// What the period would cost less if `sole_cause_count` of its
    /// `billable_organizations` were not billable: each one removed leaves the
    /// charged set while any organization is charged, so the saving is the
    /// price × min(sole_cause_count, charged organizations).
    pub fn avoidable_amount(&self, billable_organizations: i64, sole_cause_count: i64) -> i64 {
        let (_, charged) = self.split(billable_organizations);
        sole_cause_count.clamp(0, charged) * self.price_per_organization
    }
}

/// Active member ids a usage carries wherever it is not paged (listings,
/// watch messages, event payloads): the first ones by user id. The whole list
/// is paged by `GetOrganizationUsage`.
pub const USAGE_MEMBER_IDS_MAX: usize = 100;

/// The usage of one organization in one period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrganizationUsage {
    pub organization_id: super::ids::OrganizationId,
    /// `YYYY-MM`.
    pub period: String,
    /// All of them, however many ids the usage carries.
    pub active_member_count: i64,
    /// Ordered by user id: one page of them, or at most
    /// [`USAGE_MEMBER_IDS_MAX`].
    pub active_member_user_ids: Vec<super::ids::UserId>,
    /// When the organization became billable in the period (the time the
    /// transition was recorded); `None` while it is not billable.
    pub billable_since: Option<Micros>,
}

impl OrganizationUsage {
    pub fn billable(&self) -> bool {
        self.billable_since.is_some()
    }

    /// The same usage with at most [`USAGE_MEMBER_IDS_MAX`] member ids: a
    /// payload logged before the bound may carry more.
    pub fn bounded(mut self) -> Self {
        self.active_member_user_ids.truncate(USAGE_MEMBER_IDS_MAX);
        self
    }
}

/// The totals of one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingSummary {
    /// `YYYY-MM`.
    pub period: String,
    pub total_organizations: i64,
    pub monthly_active_users: i64,
    pub billable_organizations: i64,
    pub free_organizations: i64,
    pub charged_organizations: i64,
    pub amount_due: Money,
    /// `None`: no budget configured.
    pub budget: Option<Money>,
    /// The amount due extrapolated to the end of the period.
    pub projected_amount_due: Money,
}

impl BillingSummary {
    pub fn new(
        pricing: &Pricing,
        period: String,
        total_organizations: i64,
        monthly_active_users: i64,
        billable: i64,
    ) -> Self {
        let (free, charged) = pricing.split(billable);
        BillingSummary {
            period,
            total_organizations,
            monthly_active_users,
            billable_organizations: billable,
            free_organizations: free,
            charged_organizations: charged,
            amount_due: pricing.money(charged * pricing.price_per_organization),
            budget: pricing
                .budget
                .is_set()
                .then(|| pricing.money(pricing.budget.amount)),
            projected_amount_due: pricing.money(charged * pricing.price_per_organization),
        }
    }

    /// Sets `projected_amount_due`: the billable organizations so far
    /// extrapolated linearly from the elapsed part of `period` (as of `now`)
    /// to its end, priced like the amount due.
    pub fn project(mut self, pricing: &Pricing, period: BillingPeriod, now: Micros) -> Self {
        let start = period.start_micros();
        let end = period.end_micros();
        let projected = if now >= end || now <= start {
            self.billable_organizations
        } else {
            let elapsed = i128::from(now - start);
            let whole = i128::from(end - start);
            // Rounded up: a started organization counts whole.
            let scaled = (i128::from(self.billable_organizations) * whole + elapsed - 1) / elapsed;
            i64::try_from(scaled).unwrap_or(i64::MAX)
        };
        self.projected_amount_due = pricing.money(pricing.amount_due(projected));
        self
    }
}

/// A user who is an active member of many billable organizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostDriver {
    pub user_id: super::ids::UserId,
    pub billable_organization_count: i64,
    pub sole_cause_count: i64,
    pub avoidable_amount: Money,
}

/// The payload of an `OrganizationBecameBillable` log event: the usage at the
/// moment of the transition, so a replay shows exactly what was true then.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BecameBillable {
    pub usage: OrganizationUsage,
    /// 1-based position among the period's billable organizations.
    pub billable_order: i64,
}

/// The payload of a `PeriodStarted` log event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeriodStarted {
    pub period: String,
}

/// The payload of a `BudgetThresholdCrossed` log event: the amount due of a
/// period first reached `percent` of the budget.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BudgetThresholdCrossed {
    /// `YYYY-MM`.
    pub period: String,
    pub percent: i32,
    pub amount_due: Money,
    pub budget: Money,
}

/// A position in the stream of billing events: the log sequence number it
/// follows. Opaque to clients and authenticated, so a forged or altered
/// cursor is refused; its age is judged by the event it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchCursor {
    pub seq: i64,
}

const CURSOR_QUERY: &str = "watch_billable_organizations";
/// The stream of `orgs.v1.EventService`: its cursors are positions in the
/// same log, but a cursor of one stream is not taken by the other.
pub const EVENTS_CURSOR_QUERY: &str = "watch_events";

impl WatchCursor {
    pub fn encode(&self, tokens: &super::paging::PageTokens) -> String {
        self.encode_for(tokens, CURSOR_QUERY)
    }

    /// Decodes a cursor; empty means none.
    pub fn decode(
        tokens: &super::paging::PageTokens,
        field: &'static str,
        value: &str,
    ) -> Result<Option<WatchCursor>, super::Error> {
        Self::decode_for(tokens, CURSOR_QUERY, field, value)
    }

    /// The cursor as a token of the stream `stream`.
    pub fn encode_for(&self, tokens: &super::paging::PageTokens, stream: &str) -> String {
        let fingerprint = tokens.fingerprint(stream, &[]);
        tokens.encode(&fingerprint, vec![self.seq.to_string()])
    }

    /// Decodes a cursor of the stream `stream`; empty means none.
    pub fn decode_for(
        tokens: &super::paging::PageTokens,
        stream: &str,
        field: &'static str,
        value: &str,
    ) -> Result<Option<WatchCursor>, super::Error> {
        let bad = || {
            super::Error::InvalidToken(
                super::Reason::CursorInvalid,
                field,
                format!("{field} is not a cursor of this stream"),
            )
        };
        let fingerprint = tokens.fingerprint(stream, &[]);
        let Some(key) = tokens.decode(&fingerprint, value, 1).map_err(|_| bad())? else {
            return Ok(None);
        };
        let seq: i64 = key[0].parse().map_err(|_| bad())?;
        if seq < 0 {
            return Err(bad());
        }
        Ok(Some(WatchCursor { seq }))
    }
}

/// One activity event of `RecordActivity`, valid in shape.
#[derive(Debug, Clone)]
pub struct ActivityEvent {
    pub user_id: super::ids::UserId,
    /// Now when `None`.
    pub occur_time: Option<Micros>,
}

/// What `RecordActivity` did.
#[derive(Debug, Clone, Default)]
pub struct ActivityOutcome {
    pub accepted_count: i64,
    pub newly_active_count: i64,
    /// `(index in the request, why)`.
    pub rejected: Vec<(usize, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing(free: i64) -> Pricing {
        Pricing {
            active_member_threshold: 2,
            free_organizations: free,
            price_per_organization: 100,
            currency: "USD".into(),
            budget: Budget::default(),
        }
    }

    #[test]
    fn budget_thresholds_and_enforcement() {
        let budget = Budget::new(1_000, &[100, 50, 80, 50], true);
        assert_eq!(budget.alert_percents, vec![50, 80, 100]);
        assert_eq!(budget.reached(499).count(), 0);
        assert_eq!(budget.reached(500).collect::<Vec<_>>(), vec![50]);
        assert_eq!(budget.reached(1_000).collect::<Vec<_>>(), vec![50, 80, 100]);
        assert!(!budget.refuses(1_000));
        assert!(budget.refuses(1_001));
        let none = Budget::new(0, &[50], true);
        assert_eq!(none.reached(10_000).count(), 0);
        assert!(!none.refuses(10_000));
    }

    #[test]
    fn projection_extrapolates_the_billable_count_to_the_period_end() {
        let p = pricing(1);
        let period = BillingPeriod::containing_micros(0);
        let start = period.start_micros();
        let length = period.end_micros() - start;
        // 3 billable at a quarter of the period: 12 by its end, 11 charged.
        let summary = BillingSummary::new(&p, period.to_string(), 5, 10, 3);
        let projected = summary.clone().project(&p, period, start + length / 4);
        assert_eq!(projected.projected_amount_due.minor_units, 1_100);
        // At or after the end the projection is the amount due.
        let ended = summary.project(&p, period, period.end_micros());
        assert_eq!(ended.projected_amount_due, ended.amount_due);
    }

    #[test]
    fn free_allowance_then_price() {
        let p = pricing(3);
        assert_eq!(p.split(0), (0, 0));
        assert_eq!(p.split(3), (3, 0));
        assert_eq!(p.split(5), (3, 2));
        assert_eq!(p.marginal_amount(3), 0);
        assert_eq!(p.marginal_amount(4), 100);
        let summary = BillingSummary::new(&p, "2026-11".into(), 9, 7, 5);
        assert_eq!(
            (
                summary.free_organizations,
                summary.charged_organizations,
                summary.amount_due.minor_units
            ),
            (3, 2, 200)
        );
    }

    #[test]
    fn money_in_minor_units() {
        let money = |currency: &str, minor_units| Money {
            currency: currency.into(),
            minor_units,
        };
        assert_eq!(money("USD", 12_345).units_and_nanos(), (123, 450_000_000));
        assert_eq!(money("JPY", 500).units_and_nanos(), (500, 0));
        assert_eq!(money("KWD", 1_001).units_and_nanos(), (1, 1_000_000));
    }

    #[test]
    fn avoidable_is_bounded_by_the_charged_set() {
        let p = pricing(3);
        // 5 billable, 2 charged: removing 4 saves only the 2 charged ones.
        assert_eq!(p.avoidable_amount(5, 4), 200);
        assert_eq!(p.avoidable_amount(5, 1), 100);
        // Within the allowance nothing is saved.
        assert_eq!(p.avoidable_amount(3, 3), 0);
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let tokens = super::super::paging::PageTokens::new(super::super::keys::ServerKey::new(
            b"key".to_vec(),
        ));
        let cursor = WatchCursor { seq: 42 };
        assert_eq!(
            WatchCursor::decode(&tokens, "start_cursor", &cursor.encode(&tokens)).unwrap(),
            Some(cursor)
        );
        assert_eq!(
            WatchCursor::decode(&tokens, "start_cursor", "").unwrap(),
            None
        );
        assert!(WatchCursor::decode(&tokens, "start_cursor", "garbage").is_err());
        let mut tampered = cursor.encode(&tokens);
        tampered.insert(3, 'x');
        assert!(WatchCursor::decode(&tokens, "start_cursor", &tampered).is_err());
    }
}
