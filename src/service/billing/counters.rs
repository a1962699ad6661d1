//! How activity and membership changes move the billing counters of a period,
//! in the transaction of the change that moves them.
//!
//! The rule: user U is an active member of organization X in period P when U
//! is active in P and was a member of X when its first activity in P was
//! recorded, or became one while P was the current period. So recording U's
//! first activity in P adds U to every organization it belongs to then, and
//! adding U to X adds it to X's active members of the current period if U is
//! active in it. Removing a member takes nothing back: status accrues within a
//! period.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::billing::{
    BecameBillable, BillingImpact, OrganizationUsage, PeriodStarted, Pricing,
};
use crate::domain::events::EventKind;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::time::{BillingPeriod, Micros};
use crate::domain::{Error, Result};
use crate::service::unit_of_work::Tx;
use crate::store::repo::billing::{self as repo, UsageRow};

/// A counter moved by one change, and its position in the billable order if
/// the change made the organization billable.
struct UsageChange {
    after: UsageRow,
    became_billable: Option<i64>,
}

/// Moves the counters.
#[derive(Debug, Clone)]
pub struct BillingCounters {
    pricing: Pricing,
}

impl BillingCounters {
    pub fn new(pricing: Pricing) -> Self {
        BillingCounters { pricing }
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The impact of an organization that has no active members yet.
    pub fn nothing_changed(&self, now: Micros) -> BillingImpact {
        BillingImpact::unchanged(
            &self.pricing,
            BillingPeriod::containing_micros(now),
            0,
            false,
        )
    }

    /// Moves the counters of the current period for a membership just added
    /// in `tx`, and returns its impact on the bill.
    pub async fn member_added(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        user_id: &UserId,
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(tx.now);
        let p = period.to_string();
        let unchanged = |usage: Option<UsageRow>| {
            let count = usage.as_ref().map_or(0, |u| u.active_member_count);
            let billable = usage.as_ref().is_some_and(|u| u.billable_since.is_some());
            BillingImpact::unchanged(&self.pricing, period, count, billable)
        };
        repo::lock_users(tx.conn(), &[user_id.to_string()]).await?;
        if !repo::is_active(tx.conn(), &p, user_id.as_str()).await? {
            return Ok(unchanged(
                repo::usage(tx.conn(), organization_id.as_str(), &p).await?,
            ));
        }
        let row = (p.clone(), organization_id.to_string(), user_id.to_string());
        if repo::insert_active_members(tx.conn(), &[row], tx.now)
            .await?
            .is_empty()
        {
            return Ok(unchanged(
                repo::usage(tx.conn(), organization_id.as_str(), &p).await?,
            ));
        }
        let increments = BTreeMap::from([((organization_id.to_string(), p.clone()), 1)]);
        let changes = self
            .apply_increments(tx, increments, BTreeMap::new())
            .await?;
        let change = changes
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("usage counter not returned"))?;
        let after = change.after.active_member_count;
        let billable_after =
            change.after.billable_since.is_some() || change.became_billable.is_some();
        Ok(BillingImpact {
            period: p,
            active_member_count_before: after - 1,
            active_member_count_after: after,
            billable_before: change.after.billable_since.is_some(),
            billable_after,
            marginal_amount: self.pricing.money(
                change
                    .became_billable
                    .map_or(0, |order| self.pricing.marginal_amount(order)),
            ),
        })
    }

    /// Records first activities (`rows` of `(period, user, first occur
    /// time)`, sorted by period and user) and adds each newly active user to
    /// the organizations it belongs to now; returns how many were new.
    pub async fn activate(&self, tx: &mut Tx, rows: &[(String, String, Micros)]) -> Result<i64> {
        let inserted = repo::insert_activity(tx.conn(), rows, tx.now).await?;
        if inserted.is_empty() {
            return Ok(0);
        }
        let users: Vec<String> = inserted
            .iter()
            .map(|(_, user)| user.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        repo::lock_users(tx.conn(), &users).await?;
        let mut organizations_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (organization, user) in repo::memberships_of(tx.conn(), &users).await? {
            organizations_of.entry(user).or_default().push(organization);
        }
        let mut new_users: BTreeMap<String, i64> = BTreeMap::new();
        let mut active_rows = Vec::new();
        for (period, user) in &inserted {
            *new_users.entry(period.clone()).or_default() += 1;
            for organization in organizations_of.get(user).into_iter().flatten() {
                active_rows.push((period.clone(), organization.clone(), user.clone()));
            }
        }
        active_rows.sort();
        let mut increments: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (period, organization) in
            repo::insert_active_members(tx.conn(), &active_rows, tx.now).await?
        {
            *increments.entry((organization, period)).or_default() += 1;
        }
        self.apply_increments(tx, increments, new_users).await?;
        Ok(inserted.len() as i64)
    }

    /// Adds to the active-member counts, `(organization_id, period) →
    /// increment`, records each transition to billable exactly once (with its
    /// event and its place in the period's order), and adds `new_users` (per
    /// period) to the monthly active users. A period's first write creates its
    /// totals row; for the current period that emits `PeriodStarted`.
    async fn apply_increments(
        &self,
        tx: &mut Tx,
        increments: BTreeMap<(String, String), i64>,
        new_users: BTreeMap<String, i64>,
    ) -> Result<Vec<UsageChange>> {
        let pricing = &self.pricing;
        // Key order: every transaction locks counter rows in the same order.
        let increments: Vec<(String, String, i64)> = increments
            .into_iter()
            .map(|((organization, period), n)| (organization, period, n))
            .collect();
        let mut after = repo::add_to_usage(tx.conn(), &increments).await?;
        after.sort_by(|a, b| (&a.organization_id, &a.period).cmp(&(&b.organization_id, &b.period)));
        let mut transitions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, row) in after.iter().enumerate() {
            if row.billable_since.is_none()
                && pricing.is_billable(row.active_member_count)
                && repo::mark_billable(
                    tx.conn(),
                    &row.organization_id,
                    &row.period,
                    pricing.active_member_threshold,
                    tx.now,
                )
                .await?
            {
                transitions
                    .entry(row.period.clone())
                    .or_default()
                    .push(index);
            }
        }
        let mut changes: Vec<UsageChange> = after
            .into_iter()
            .map(|after| UsageChange {
                after,
                became_billable: None,
            })
            .collect();
        let periods: BTreeSet<String> = new_users
            .keys()
            .chain(transitions.keys())
            .cloned()
            .collect();
        let current = BillingPeriod::containing_micros(tx.now).to_string();
        for period in periods {
            if repo::ensure_period(tx.conn(), &period, tx.now).await? && period == current {
                tx.emit_derived(
                    EventKind::BillingPeriodStarted,
                    None,
                    &PeriodStarted {
                        period: period.clone(),
                    },
                )?;
            }
            let became = transitions.remove(&period).unwrap_or_default();
            let added_users = new_users.get(&period).copied().unwrap_or(0);
            let billable_total =
                repo::add_to_period(tx.conn(), &period, added_users, became.len() as i64).await?;
            if became.is_empty() {
                continue;
            }
            let organizations: Vec<String> = became
                .iter()
                .map(|&i| changes[i].after.organization_id.clone())
                .collect();
            let mut members: BTreeMap<String, Vec<UserId>> = BTreeMap::new();
            for (organization, user) in
                repo::active_members(tx.conn(), &period, &organizations).await?
            {
                members
                    .entry(organization)
                    .or_default()
                    .push(UserId::from_stored(user));
            }
            let first_order = billable_total - became.len() as i64 + 1;
            for (offset, &index) in became.iter().enumerate() {
                let order = first_order + offset as i64;
                let row = &changes[index].after;
                repo::set_billable_order(tx.conn(), &row.organization_id, &period, order).await?;
                let organization_id = OrganizationId::from_stored(row.organization_id.clone());
                let event = BecameBillable {
                    usage: OrganizationUsage {
                        organization_id: organization_id.clone(),
                        period: period.clone(),
                        active_member_count: row.active_member_count,
                        active_member_user_ids: members
                            .remove(&row.organization_id)
                            .unwrap_or_default(),
                        billable_since: Some(tx.now),
                    },
                    billable_order: order,
                };
                tx.emit_derived(
                    EventKind::BillingOrganizationBecameBillable,
                    Some(&organization_id),
                    &event,
                )?;
                changes[index].became_billable = Some(order);
            }
        }
        Ok(changes)
    }
}
