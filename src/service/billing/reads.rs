//! Reads over the billing counters: an organization's usage, a period's
//! totals, its billable organizations and the users who drive its cost. Each
//! reads one snapshot, so its numbers agree with each other.

use std::sync::Arc;

use sea_orm::ConnectionTrait;

use crate::domain::billing::{
    BillingSummary, CostDriver, OrganizationUsage, Pricing, USAGE_MEMBER_IDS_MAX,
};
use crate::domain::ids::{OrganizationId, UserId};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::time::{BillingPeriod, Clock, Micros};
use crate::domain::{Error, Result};
use crate::service::list::Listing;
use crate::store::Db;
use crate::store::repo::billing::{self as repo, UsageRow};
use crate::store::repo::billing_members as members;
use crate::store::repo::organizations;

/// An organization's usage with one page of its active member ids.
#[derive(Debug, Clone)]
pub struct UsagePage {
    pub usage: OrganizationUsage,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// Billing reads.
#[derive(Debug, Clone)]
pub struct BillingReads {
    db: Db,
    pricing: Pricing,
    tokens: PageTokens,
    /// For the projection of the amount due.
    clock: Arc<dyn Clock>,
}

impl BillingReads {
    pub fn new(db: Db, pricing: Pricing, tokens: PageTokens, clock: Arc<dyn Clock>) -> Self {
        BillingReads {
            db,
            pricing,
            tokens,
            clock,
        }
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The usage of an organization in a period with one page of its active
    /// members, by user id (keyset on the user id; the count is always the
    /// whole). Every organization that ever existed answers: one deleted
    /// since keeps its history (a tombstone remembers it even when it never
    /// had an active member).
    pub async fn usage(
        &self,
        organization_id: &OrganizationId,
        period: BillingPeriod,
        page_size: u64,
        page_token: &str,
    ) -> Result<UsagePage> {
        let p = period.to_string();
        let listing = Listing::start(
            &self.tokens,
            "organization_usage_members",
            &[organization_id.as_str(), &p],
            1,
            page_size,
            page_token,
        )?;
        let after = listing.after_text(0);
        let txn = self.db.begin_snapshot().await?;
        let row = repo::usage(&txn, organization_id.as_str(), &p).await?;
        if row.is_none()
            && organizations::get(&txn, organization_id.as_str())
                .await?
                .is_none()
            && !repo::has_history(&txn, organization_id.as_str()).await?
            && !organizations::was_deleted(&txn, organization_id.as_str()).await?
        {
            return Err(Error::organization_not_found());
        }
        let members = members::active_member_page(
            &txn,
            &p,
            organization_id.as_str(),
            after.as_deref(),
            listing.limit(),
        )
        .await?;
        txn.commit().await?;
        let active_member_count = row.as_ref().map_or(0, |r| r.active_member_count);
        let page = listing.finish(members, active_member_count, |last| vec![last.clone()]);
        Ok(UsagePage {
            usage: OrganizationUsage {
                organization_id: organization_id.clone(),
                period: p,
                active_member_count,
                active_member_user_ids: page.items.into_iter().map(UserId::from_stored).collect(),
                billable_since: row.and_then(|r| r.billable_since),
            },
            next_page_token: page.next_page_token,
        })
    }

    /// The totals of a period, from its counters: no scan.
    pub async fn summary(&self, period: BillingPeriod) -> Result<BillingSummary> {
        let txn = self.db.begin_snapshot().await?;
        let now = self.clock.now_micros();
        let summary = summary_in(&txn, &self.pricing, period, now).await?;
        txn.commit().await?;
        Ok(summary)
    }

    /// The billable organizations of a period in the order they became
    /// billable; pages are keyed by that order.
    pub async fn billable_organizations(
        &self,
        period: BillingPeriod,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<OrganizationUsage>> {
        let p = period.to_string();
        let listing = Listing::start(
            &self.tokens,
            "billable_organizations",
            &[&p],
            1,
            page_size,
            page_token,
        )?;
        let after = listing.after_number(0)?.unwrap_or(0);
        let txn = self.db.begin_snapshot().await?;
        let rows = repo::billable_page(&txn, &p, after, i64::MAX, listing.limit()).await?;
        let total_size = repo::period_totals(&txn, &p).await?.billable_organizations;
        let page = listing.finish(rows, total_size, |last| {
            vec![last.billable_order.unwrap_or_default().to_string()]
        });
        let items = with_members(&txn, &p, page.items).await?;
        txn.commit().await?;
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    /// Users who are active members of at least `min_organizations` billable
    /// organizations of the period, most first.
    pub async fn cost_drivers(
        &self,
        period: BillingPeriod,
        min_organizations: i64,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<CostDriver>> {
        let p = period.to_string();
        let threshold = self.pricing.active_member_threshold;
        let listing = Listing::start(
            &self.tokens,
            "cost_drivers",
            &[&p, &min_organizations.to_string()],
            2,
            page_size,
            page_token,
        )?;
        let after = match (listing.after_number(0)?, listing.after_text(1)) {
            (Some(count), Some(user)) => Some((count, user)),
            _ => None,
        };
        let txn = self.db.begin_snapshot().await?;
        let rows = repo::cost_drivers(
            &txn,
            &p,
            threshold,
            min_organizations,
            after,
            listing.limit(),
        )
        .await?;
        let total_size = repo::count_cost_drivers(&txn, &p, threshold, min_organizations).await?;
        let billable = repo::period_totals(&txn, &p).await?.billable_organizations;
        txn.commit().await?;
        let page = listing.finish(rows, total_size, |last| {
            vec![
                last.billable_organization_count.to_string(),
                last.user_id.clone(),
            ]
        });
        Ok(page.map(|row| CostDriver {
            avoidable_amount: self.pricing.money(
                self.pricing
                    .avoidable_amount(billable, row.sole_cause_count),
            ),
            user_id: UserId::from_stored(row.user_id),
            billable_organization_count: row.billable_organization_count,
            sole_cause_count: row.sole_cause_count,
        }))
    }
}

/// The totals of a period, read from its counters on `conn`, with the amount
/// due projected to the period's end as of `now`.
pub async fn summary_in(
    conn: &impl ConnectionTrait,
    pricing: &Pricing,
    period: BillingPeriod,
    now: Micros,
) -> Result<BillingSummary> {
    let p = period.to_string();
    let totals = repo::period_totals(conn, &p).await?;
    let total_organizations = repo::total_organizations(conn).await?;
    Ok(BillingSummary::new(
        pricing,
        p,
        total_organizations,
        totals.monthly_active_users,
        totals.billable_organizations,
    )
    .project(pricing, period, now))
}

/// Usages with their first active member ids (at most
/// [`USAGE_MEMBER_IDS_MAX`] each, read no further).
pub async fn with_members(
    conn: &impl ConnectionTrait,
    period: &str,
    rows: Vec<UsageRow>,
) -> Result<Vec<OrganizationUsage>> {
    let organizations: Vec<String> = rows.iter().map(|row| row.organization_id.clone()).collect();
    let mut members =
        members::first_active_members(conn, period, &organizations, USAGE_MEMBER_IDS_MAX as u64)
            .await?;
    Ok(rows
        .into_iter()
        .map(|row| OrganizationUsage {
            active_member_user_ids: members
                .remove(&row.organization_id)
                .unwrap_or_default()
                .into_iter()
                .map(UserId::from_stored)
                .collect(),
            organization_id: OrganizationId::from_stored(row.organization_id),
            period: period.to_string(),
            active_member_count: row.active_member_count,
            billable_since: row.billable_since,
        })
        .collect())
}
