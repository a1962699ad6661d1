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

use std::collections::BTreeMap;

use crate::domain::billing::{
    BecameBillable, BillingImpact, BudgetThresholdCrossed, OrganizationUsage, PeriodStarted,
    Pricing, USAGE_MEMBER_IDS_MAX,
};
use crate::domain::events::EventKind;
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::time::{BillingPeriod, Micros};
use crate::domain::{Error, Reason, Result};
use crate::service::unit_of_work::Tx;
use crate::store::repo::billing::{self as repo, UsageRow};
use crate::store::repo::billing_members;

/// A counter moved by one change, and its position in the billable order if
/// the change made the organization billable.
struct UsageChange {
    after: UsageRow,
    became_billable: Option<i64>,
}

/// What a change that adds members knows of the organization's counters in
/// the current period before it moves them.
enum Before {
    /// Created in the change: no counters.
    New,
    /// Read in the change: its active members and whether it is billable.
    Read(i64, bool),
    /// Not read yet.
    Unread,
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

    /// The impact of a change that moves no counter of the organization.
    pub async fn unchanged(
        &self,
        tx: &Tx,
        organization_id: &OrganizationId,
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(tx.now);
        let usage = repo::usage(tx.conn(), organization_id.as_str(), &period.to_string()).await?;
        let count = usage.as_ref().map_or(0, |u| u.active_member_count);
        let billable = usage.as_ref().is_some_and(|u| u.billable_since.is_some());
        Ok(BillingImpact::unchanged(
            &self.pricing,
            period,
            count,
            billable,
        ))
    }

    /// Moves the counters of the current period for a membership just added
    /// (or reactivated) in `tx`, and returns its impact on the bill.
    pub async fn member_added(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        user_id: &UserId,
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(tx.now).to_string();
        repo::lock_users(tx.conn(), &[user_id.to_string()]).await?;
        let usage = billing_members::joining_usage(
            tx.conn(),
            &period,
            organization_id.as_str(),
            user_id.as_str(),
        )
        .await?;
        self.member_joined(
            tx,
            organization_id,
            user_id,
            usage.active,
            Some((usage.active_member_count, usage.billable)),
        )
        .await
    }

    /// Moves the counters of the current period for an organization just
    /// reactivated in `tx`: its active members already active in the period
    /// count for it again.
    pub async fn organization_reactivated(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
    ) -> Result<BillingImpact> {
        let users = repo::active_member_users_of(tx.conn(), organization_id.as_str()).await?;
        self.members_back(tx, organization_id, &users).await
    }

    /// Makes those of `users` (sorted) who are active in the current period
    /// active members of the organization, and returns the impact. With the
    /// budget enforced, a change that would make the amount due exceed the
    /// budget is refused (`BUDGET_EXCEEDED`), so the caller's transaction
    /// rolls back.
    async fn members_back(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        users: &[String],
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(tx.now);
        repo::lock_users(tx.conn(), users).await?;
        let active = if users.is_empty() {
            Vec::new()
        } else {
            repo::known_active(tx.conn(), &period.to_string(), users).await?
        };
        self.count_active(tx, organization_id, active, Before::Unread)
            .await
    }

    /// Like [`Self::member_added`] (`usage`: the organization's active
    /// members in the current period and whether it is billable there) or
    /// for the creator of an organization created in `tx` (`usage` `None`:
    /// it has no counters yet), for a transaction that holds the user's
    /// billing lock already and read, after taking it, whether the user is
    /// `active` in the period and the organization's counters.
    pub async fn member_joined(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        user_id: &UserId,
        active: bool,
        usage: Option<(i64, bool)>,
    ) -> Result<BillingImpact> {
        let active = if active {
            vec![user_id.to_string()]
        } else {
            Vec::new()
        };
        let before = match usage {
            None => Before::New,
            Some((count, billable)) => Before::Read(count, billable),
        };
        self.count_active(tx, organization_id, active, before).await
    }

    /// Makes `active` (users active in the current period) active members of
    /// the organization and returns the impact.
    async fn count_active(
        &self,
        tx: &mut Tx,
        organization_id: &OrganizationId,
        active: Vec<String>,
        before: Before,
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(tx.now);
        let p = period.to_string();
        let mut rows: Vec<(String, String, String)> = active
            .into_iter()
            .map(|user| (p.clone(), organization_id.to_string(), user))
            .collect();
        rows.sort();
        let added = repo::insert_active_members(tx.conn(), &rows, tx.now)
            .await?
            .len() as i64;
        if added == 0 {
            return match before {
                Before::New => Ok(self.nothing_changed(tx.now)),
                Before::Read(count, billable) => Ok(BillingImpact::unchanged(
                    &self.pricing,
                    period,
                    count,
                    billable,
                )),
                Before::Unread => self.unchanged(tx, organization_id).await,
            };
        }
        let increments = BTreeMap::from([((organization_id.to_string(), p.clone()), added)]);
        let changes = self
            .apply_increments(tx, increments, BTreeMap::new())
            .await?;
        let change = changes
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("usage counter not returned"))?;
        if let Some(order) = change.became_billable {
            let amount_due = self.pricing.amount_due(order);
            if self.pricing.budget.refuses(amount_due) {
                return Err(Error::FailedPrecondition(
                    Reason::BudgetExceeded,
                    format!(
                        "the organization would become billable and the amount due of {p} would be {amount_due}, over the budget of {} (minor units of {})",
                        self.pricing.budget.amount, self.pricing.currency
                    ),
                ));
            }
        }
        let after = change.after.active_member_count;
        let billable_after =
            change.after.billable_since.is_some() || change.became_billable.is_some();
        Ok(BillingImpact {
            period: p,
            active_member_count_before: after - added,
            active_member_count_after: after,
            billable_before: billable_after && change.became_billable.is_none(),
            billable_after,
            marginal_amount: self.pricing.money(
                change
                    .became_billable
                    .map_or(0, |order| self.pricing.marginal_amount(order)),
            ),
        })
    }

    /// Records each alert percentage of the budget that the amount due of
    /// `period` (with `billable_total` billable organizations) has reached,
    /// once: the `budget_alerts` key decides, in this transaction, so of
    /// replicas racing to cross it exactly one emits the event.
    async fn record_budget_alerts(
        &self,
        tx: &mut Tx,
        period: &str,
        billable_total: i64,
    ) -> Result<()> {
        let budget = &self.pricing.budget;
        let amount_due = self.pricing.amount_due(billable_total);
        let reached: Vec<i32> = budget.reached(amount_due).collect();
        for percent in reached {
            if repo::record_budget_alert(
                tx.conn(),
                period,
                percent,
                amount_due,
                budget.amount,
                tx.now,
            )
            .await?
            {
                tx.emit_derived(
                    EventKind::BillingBudgetThresholdCrossed,
                    None,
                    &BudgetThresholdCrossed {
                        period: period.to_string(),
                        percent,
                        amount_due: self.pricing.money(amount_due),
                        budget: self.pricing.money(budget.amount),
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Records first activities (`rows` of `(period, user, first occur
    /// time)`, sorted by period and user) and adds each newly active user to
    /// the organizations it belongs to now; returns how many were new.
    pub async fn activate(&self, tx: &mut Tx, rows: &[(String, String, Micros)]) -> Result<i64> {
        if let Some(activated) = repo::activate_sqlite(tx.conn(), rows, tx.now).await? {
            return self.activated(tx, activated).await;
        }
        // The users it inserted are locked before their memberships are read.
        let inserted = repo::insert_activity_and_lock_users(tx.conn(), rows, tx.now).await?;
        if inserted.is_empty() {
            return Ok(0);
        }
        if let Some(activated) =
            repo::activate_inserted_postgres(tx.conn(), &inserted, tx.now).await?
        {
            return self.activated(tx, activated).await;
        }
        let new_users = new_users_by_period(&inserted);
        // The users' memberships, read after their locks, become active
        // members in the same statement.
        let mut increments: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (period, organization) in
            repo::activate_memberships(tx.conn(), &inserted, tx.now).await?
        {
            *increments.entry((organization, period)).or_default() += 1;
        }
        self.apply_increments(tx, increments, new_users).await?;
        Ok(inserted.len() as i64)
    }

    /// The rest of [`Self::activate`] after its statements ran as one list
    /// (SQLite) or the statements after the locks as one (PostgreSQL): the
    /// periods that had no totals row yet are created (and announced) and
    /// counted, and the counters' transitions recorded.
    async fn activated(&self, tx: &mut Tx, activated: repo::Activated) -> Result<i64> {
        let new_users = new_users_by_period(&activated.inserted);
        let current = BillingPeriod::containing_micros(tx.now).to_string();
        for (period, added_users) in &new_users {
            if !activated.existing_periods.contains(period) {
                self.ensure_period(tx, period, &current).await?;
                repo::add_period_users(tx.conn(), period, *added_users).await?;
            }
        }
        self.transitions(tx, activated.usage, &new_users).await?;
        Ok(activated.inserted.len() as i64)
    }

    /// Creates the totals row of `period` if absent; for the `current`
    /// period that emits `PeriodStarted`.
    async fn ensure_period(&self, tx: &mut Tx, period: &str, current: &str) -> Result<()> {
        if repo::ensure_period(tx.conn(), period, tx.now).await? && period == current {
            tx.emit_derived(
                EventKind::BillingPeriodStarted,
                None,
                &PeriodStarted {
                    period: period.to_string(),
                },
            )?;
        }
        Ok(())
    }

    /// Adds to the active-member counts, `(organization_id, period) →
    /// increment`, records each transition to billable exactly once (with its
    /// event and its place in the period's order), and adds `new_users` (per
    /// period) to the monthly active users. A period's first write creates its
    /// totals row; for the current period that emits `PeriodStarted`.
    ///
    /// The period totals go first and the organizations' counters after
    /// them: a counter row is held from its update to the commit, and the
    /// activities of one organization's members queue on it, so the fewer
    /// statements after it, the shorter they wait.
    async fn apply_increments(
        &self,
        tx: &mut Tx,
        increments: BTreeMap<(String, String), i64>,
        new_users: BTreeMap<String, i64>,
    ) -> Result<Vec<UsageChange>> {
        let current = BillingPeriod::containing_micros(tx.now).to_string();
        for (period, added_users) in &new_users {
            if repo::add_users_to_existing_period(tx.conn(), period, *added_users).await? {
                continue;
            }
            self.ensure_period(tx, period, &current).await?;
            repo::add_period_users(tx.conn(), period, *added_users).await?;
        }
        // Key order: every transaction locks counter rows in the same order.
        let increments: Vec<(String, String, i64)> = increments
            .into_iter()
            .map(|((organization, period), n)| (organization, period, n))
            .collect();
        let after = repo::add_to_usage(tx.conn(), &increments).await?;
        self.transitions(tx, after, &new_users).await
    }

    /// Records each transition to billable among the counters `after` a
    /// change (see [`Self::apply_increments`]); a period without users new
    /// to it in the change (`new_users`) may have no totals row yet.
    async fn transitions(
        &self,
        tx: &mut Tx,
        mut after: Vec<UsageRow>,
        new_users: &BTreeMap<String, i64>,
    ) -> Result<Vec<UsageChange>> {
        let pricing = &self.pricing;
        let current = BillingPeriod::containing_micros(tx.now).to_string();
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
        for (period, became) in transitions {
            if !new_users.contains_key(&period) {
                self.ensure_period(tx, &period, &current).await?;
            }
            let billable_total =
                repo::add_billable(tx.conn(), &period, became.len() as i64).await?;
            self.record_budget_alerts(tx, &period, billable_total)
                .await?;
            let organizations: Vec<String> = became
                .iter()
                .map(|&i| changes[i].after.organization_id.clone())
                .collect();
            let mut members = billing_members::first_active_members(
                tx.conn(),
                &period,
                &organizations,
                USAGE_MEMBER_IDS_MAX as u64,
            )
            .await?;
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
                            .unwrap_or_default()
                            .into_iter()
                            .map(UserId::from_stored)
                            .collect(),
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

/// How many of the `(period, user_id)` pairs a change made active fall in
/// each period.
fn new_users_by_period(inserted: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut new_users: BTreeMap<String, i64> = BTreeMap::new();
    for (period, _) in inserted {
        *new_users.entry(period.clone()).or_default() += 1;
    }
    new_users
}
