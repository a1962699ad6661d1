//! Billing: how activity and membership changes move the per-period counters
//! (in the transaction of the change), the reads over those counters, and the
//! watch of billable organizations read from the event log.
//!
//! The rule: user U is an active member of organization X in period P when U
//! is active in P and was a member of X when its first activity in P was
//! recorded, or became one while P was the current period. So recording U's
//! first activity in P adds U to every organization it belongs to then, and
//! adding U to X adds it to X's active members of the current period if U is
//! active in it. Removing a member takes nothing back: status accrues within a
//! period.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::organizations::{Page, next_token};
use super::{Services, Work};
use crate::domain::billing::{
    BecameBillable, BillingImpact, BillingSummary, CostDriver, ORGANIZATION_BECAME_BILLABLE,
    OrganizationUsage, PERIOD_STARTED, PeriodStarted, Pricing, WatchCursor,
};
use crate::domain::time::{BillingPeriod, Micros};
use crate::domain::{Error, Reason, Result, paging};
use crate::events::{EventRow, reader};
use crate::store::repo::billing::{self as repo, UsageRow};
use crate::store::repo::organizations;

/// How far ahead of the server clock an activity may be.
const MAX_AHEAD_MICROS: Micros = 5 * 60 * 1_000_000;
/// Users remembered as active per period; beyond it a repeat costs a read.
const KNOWN_ACTIVE_CAP: usize = 2_000_000;
/// How often each replica reads the log head for other replicas' commits.
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events read from the log at a time by one watch.
const WATCH_READ_LIMIT: usize = 256;
/// Messages buffered per watch: a slow client fills its own buffer and
/// slows only its own stream.
const WATCH_BUFFER: usize = 64;

/// How stale the totals sent with watch messages may be; they always
/// include every event up to the message they go with.
const WATCH_SUMMARY_MAX_AGE: Duration = Duration::from_millis(250);

/// Process-wide billing state: which users are known to be active, the log
/// poller, and what all watches share (the tail of the log and the current
/// totals). Only facts already committed are remembered, so the database
/// stays the source of truth and other replicas' writes cannot make it wrong.
#[derive(Debug)]
pub struct BillingState {
    known_active: Mutex<BTreeMap<BillingPeriod, HashSet<String>>>,
    poller_started: AtomicBool,
    tail: reader::SharedTail,
    summary: tokio::sync::Mutex<Option<SharedSummary>>,
    initial: tokio::sync::Mutex<Option<SharedInitialState>>,
}

impl Default for BillingState {
    fn default() -> Self {
        BillingState {
            known_active: Mutex::default(),
            poller_started: AtomicBool::new(false),
            tail: reader::SharedTail::new(WATCHED_ACTIONS),
            summary: tokio::sync::Mutex::new(None),
            initial: tokio::sync::Mutex::new(None),
        }
    }
}

/// The actions a watch delivers.
const WATCHED_ACTIONS: &[&str] = &[ORGANIZATION_BECAME_BILLABLE, PERIOD_STARTED];

/// How old an initial state shared by watches opened together may be.
const WATCH_INITIAL_STATE_MAX_AGE: Duration = Duration::from_secs(1);

/// An initial state read for watches, with the log position it ends at.
#[derive(Debug)]
struct SharedInitialState {
    period: BillingPeriod,
    taken: tokio::time::Instant,
    head: i64,
    usages: Arc<Vec<OrganizationUsage>>,
}

/// Totals computed for watches, with the log position they include.
#[derive(Debug)]
struct SharedSummary {
    seq: i64,
    computed: tokio::time::Instant,
    summary: BillingSummary,
}

impl BillingState {
    fn is_known(&self, period: BillingPeriod, user_id: &str) -> bool {
        let known = self
            .known_active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known
            .get(&period)
            .is_some_and(|users| users.contains(user_id))
    }

    /// Remembers committed activity; keeps the two newest periods, which are
    /// the only ones activity can be recorded in.
    fn remember(&self, period: BillingPeriod, users: impl IntoIterator<Item = String>) {
        let mut known = self
            .known_active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let set = known.entry(period).or_default();
        for user in users {
            if set.len() >= KNOWN_ACTIVE_CAP {
                break;
            }
            set.insert(user);
        }
        while known.len() > 2 {
            known.pop_first();
        }
    }
}

/// One activity event, validated in shape.
#[derive(Debug, Clone)]
pub struct ActivityInput {
    pub user_id: String,
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

/// What a watch sends.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    BecameBillable(OrganizationUsage),
    PeriodStarted(String),
    Checkpoint(Micros),
}

/// One message of a watch: a resumable position, an event and the totals of
/// the current period.
#[derive(Debug, Clone)]
pub struct WatchMessage {
    pub cursor: String,
    pub event: WatchEvent,
    pub summary: BillingSummary,
}

/// A counter moved by one change, and its position in the billable order if
/// the change made the organization billable.
struct UsageChange {
    after: UsageRow,
    became_billable: Option<i64>,
}

impl Services {
    pub fn pricing(&self) -> Pricing {
        let billing = &self.config.billing;
        Pricing {
            active_member_threshold: i64::from(billing.active_member_threshold),
            free_organizations: i64::from(billing.free_organizations),
            price_per_organization: i64::try_from(billing.price_per_organization)
                .unwrap_or(i64::MAX),
        }
    }

    /// Moves the billing counters of the current period for a membership just
    /// added inside `work`, and returns its impact on the bill.
    pub async fn member_added(
        &self,
        work: &mut Work,
        organization_id: &str,
        user_id: &str,
    ) -> Result<BillingImpact> {
        let period = BillingPeriod::containing_micros(work.now);
        let p = period.to_string();
        let unchanged = |usage: Option<UsageRow>| {
            let count = usage.as_ref().map_or(0, |u| u.active_member_count);
            let billable = usage.as_ref().is_some_and(|u| u.billable_since.is_some());
            BillingImpact::unchanged(period, count, billable)
        };
        repo::lock_users(&work.txn, &[user_id.to_string()]).await?;
        if !repo::is_active(&work.txn, &p, user_id).await? {
            return Ok(unchanged(
                repo::usage(&work.txn, organization_id, &p).await?,
            ));
        }
        let row = (p.clone(), organization_id.to_string(), user_id.to_string());
        if repo::insert_active_members(&work.txn, &[row], work.now)
            .await?
            .is_empty()
        {
            return Ok(unchanged(
                repo::usage(&work.txn, organization_id, &p).await?,
            ));
        }
        let increments = BTreeMap::from([((organization_id.to_string(), p.clone()), 1)]);
        let changes = self
            .apply_increments(work, increments, BTreeMap::new())
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
            marginal_amount_minor: change
                .became_billable
                .map_or(0, |order| self.pricing().marginal_amount(order)),
        })
    }

    /// Records activity. Events outside the accepted time range are rejected
    /// one by one. A user already known to be active in a period costs
    /// nothing; a user not known here costs a read; only a user new to the
    /// period costs a write, decided by an insert-if-absent.
    pub async fn record_activity(&self, events: Vec<ActivityInput>) -> Result<ActivityOutcome> {
        let now = self.now();
        let current = BillingPeriod::containing_micros(now);
        let earliest = current.previous().start_micros();
        let mut outcome = ActivityOutcome::default();
        // (period, user) → the earliest occur_time in this call.
        let mut candidates: BTreeMap<(BillingPeriod, String), Micros> = BTreeMap::new();
        for (index, event) in events.into_iter().enumerate() {
            let occur = event.occur_time.unwrap_or(now);
            let problem = if occur > now + MAX_AHEAD_MICROS {
                Some("occur_time is more than 5 minutes ahead of the server clock")
            } else if occur >= current.end_micros() {
                Some("occur_time is in the next period")
            } else if occur < earliest {
                Some("occur_time is before the previous period")
            } else {
                None
            };
            if let Some(problem) = problem {
                outcome.rejected.push((index, problem.to_string()));
                continue;
            }
            outcome.accepted_count += 1;
            let period = BillingPeriod::containing_micros(occur);
            if self.billing.is_known(period, &event.user_id) {
                continue;
            }
            candidates
                .entry((period, event.user_id))
                .and_modify(|first| *first = (*first).min(occur))
                .or_insert(occur);
        }
        if candidates.is_empty() {
            return Ok(outcome);
        }
        // Users active in the database but not known here (another replica,
        // a restart): a read, no write.
        let mut by_period: BTreeMap<BillingPeriod, Vec<String>> = BTreeMap::new();
        for (period, user) in candidates.keys() {
            by_period.entry(*period).or_default().push(user.clone());
        }
        for (period, users) in by_period {
            let known = repo::known_active(self.db.conn(), &period.to_string(), &users).await?;
            for user in &known {
                candidates.remove(&(period, user.clone()));
            }
            self.billing.remember(period, known);
        }
        if candidates.is_empty() {
            return Ok(outcome);
        }
        let rows: Vec<(String, String, Micros)> = candidates
            .iter()
            .map(|((period, user), occur)| (period.to_string(), user.clone(), *occur))
            .collect();
        let mut work = self.begin(false).await?;
        match self.activate(&mut work, &rows).await {
            Ok(newly_active) => {
                work.commit().await?;
                outcome.newly_active_count = newly_active;
            }
            Err(err) => {
                work.rollback().await;
                return Err(err);
            }
        }
        // Every candidate is active now, by this call or a concurrent one.
        let mut committed: BTreeMap<BillingPeriod, Vec<String>> = BTreeMap::new();
        for (period, user) in candidates.into_keys() {
            committed.entry(period).or_default().push(user);
        }
        for (period, users) in committed {
            self.billing.remember(period, users);
        }
        Ok(outcome)
    }

    /// Records first activities (`rows` sorted by period and user) and adds
    /// each newly active user to the organizations it belongs to now; returns
    /// how many were new.
    async fn activate(&self, work: &mut Work, rows: &[(String, String, Micros)]) -> Result<i64> {
        let inserted = repo::insert_activity(&work.txn, rows, work.now).await?;
        if inserted.is_empty() {
            return Ok(0);
        }
        let users: Vec<String> = inserted
            .iter()
            .map(|(_, user)| user.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        repo::lock_users(&work.txn, &users).await?;
        let mut organizations_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (organization, user) in repo::memberships_of(&work.txn, &users).await? {
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
            repo::insert_active_members(&work.txn, &active_rows, work.now).await?
        {
            *increments.entry((organization, period)).or_default() += 1;
        }
        self.apply_increments(work, increments, new_users).await?;
        Ok(inserted.len() as i64)
    }

    /// Adds to the active-member counts, `(organization_id, period) →
    /// increment`, records each transition to billable exactly once (with its
    /// event and its place in the period's order), and adds `new_users` (per
    /// period) to the monthly active users. A period's first write creates its
    /// totals row; for the current period that emits `PeriodStarted`.
    async fn apply_increments(
        &self,
        work: &mut Work,
        increments: BTreeMap<(String, String), i64>,
        new_users: BTreeMap<String, i64>,
    ) -> Result<Vec<UsageChange>> {
        let pricing = self.pricing();
        // Key order: every transaction locks counter rows in the same order.
        let increments: Vec<(String, String, i64)> = increments
            .into_iter()
            .map(|((organization, period), n)| (organization, period, n))
            .collect();
        let mut after = repo::add_to_usage(&work.txn, &increments).await?;
        after.sort_by(|a, b| (&a.organization_id, &a.period).cmp(&(&b.organization_id, &b.period)));
        let mut transitions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, row) in after.iter().enumerate() {
            if row.billable_since.is_none()
                && pricing.is_billable(row.active_member_count)
                && repo::mark_billable(
                    &work.txn,
                    &row.organization_id,
                    &row.period,
                    pricing.active_member_threshold,
                    work.now,
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
        let current = BillingPeriod::containing_micros(work.now).to_string();
        for period in periods {
            if repo::ensure_period(&work.txn, &period, work.now).await? && period == current {
                let payload = PeriodStarted {
                    period: period.clone(),
                };
                work.derived(
                    PERIOD_STARTED,
                    "",
                    serde_json::to_value(payload).map_err(Error::internal)?,
                );
            }
            let became = transitions.remove(&period).unwrap_or_default();
            let added_users = new_users.get(&period).copied().unwrap_or(0);
            let billable_total =
                repo::add_to_period(&work.txn, &period, added_users, became.len() as i64).await?;
            if became.is_empty() {
                continue;
            }
            let organizations: Vec<String> = became
                .iter()
                .map(|&i| changes[i].after.organization_id.clone())
                .collect();
            let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (organization, user) in
                repo::active_members(&work.txn, &period, &organizations).await?
            {
                members.entry(organization).or_default().push(user);
            }
            let first_order = billable_total - became.len() as i64 + 1;
            for (offset, &index) in became.iter().enumerate() {
                let order = first_order + offset as i64;
                let row = &changes[index].after;
                repo::set_billable_order(&work.txn, &row.organization_id, &period, order).await?;
                let event = BecameBillable {
                    usage: OrganizationUsage {
                        organization_id: row.organization_id.clone(),
                        period: period.clone(),
                        active_member_count: row.active_member_count,
                        active_member_user_ids: members
                            .remove(&row.organization_id)
                            .unwrap_or_default(),
                        billable_since: Some(work.now),
                    },
                    billable_order: order,
                };
                let organization_id = row.organization_id.clone();
                work.derived(
                    ORGANIZATION_BECAME_BILLABLE,
                    &organization_id,
                    serde_json::to_value(event).map_err(Error::internal)?,
                );
                changes[index].became_billable = Some(order);
            }
        }
        Ok(changes)
    }

    /// The usage of an organization in a period. An organization deleted
    /// since keeps its history.
    pub async fn organization_usage(
        &self,
        organization_id: &str,
        period: BillingPeriod,
    ) -> Result<OrganizationUsage> {
        let p = period.to_string();
        let txn = self.db.begin_snapshot().await?;
        let row = repo::usage(&txn, organization_id, &p).await?;
        if row.is_none()
            && organizations::get(&txn, organization_id).await?.is_none()
            && !repo::has_history(&txn, organization_id).await?
        {
            return Err(Error::organization_not_found());
        }
        let members = repo::active_members(&txn, &p, &[organization_id.to_string()]).await?;
        txn.commit().await?;
        Ok(OrganizationUsage {
            organization_id: organization_id.to_string(),
            period: p,
            active_member_count: row.as_ref().map_or(0, |r| r.active_member_count),
            active_member_user_ids: members.into_iter().map(|(_, user)| user).collect(),
            billable_since: row.and_then(|r| r.billable_since),
        })
    }

    /// The totals of a period, from its counters: no scan.
    pub async fn billing_summary(&self, period: BillingPeriod) -> Result<BillingSummary> {
        period_summary(&self.db, &self.pricing(), period).await
    }

    async fn summary_in(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        period: BillingPeriod,
    ) -> Result<BillingSummary> {
        summary_from(conn, &self.pricing(), period).await
    }

    /// The billable organizations of a period in the order they became
    /// billable; pages are keyed by that order.
    pub async fn list_billable_organizations(
        &self,
        period: BillingPeriod,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<OrganizationUsage>> {
        let p = period.to_string();
        let fingerprint = paging::fingerprint("billable_organizations", &[&p]);
        let after = match paging::decode(&fingerprint, page_token, 1)? {
            Some(key) => key[0].parse::<i64>().map_err(|_| invalid_page_token())?,
            None => 0,
        };
        let txn = self.db.begin_snapshot().await?;
        let mut rows = repo::billable_page(&txn, &p, after, page_size + 1).await?;
        let total_size = repo::period_totals(&txn, &p).await?.billable_organizations;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(
                &fingerprint,
                vec![last.billable_order.unwrap_or_default().to_string()],
            )
        });
        let items = with_members(&txn, &p, rows).await?;
        txn.commit().await?;
        Ok(Page {
            items,
            next_page_token,
            total_size,
        })
    }

    /// Users who are active members of at least `min_organizations` billable
    /// organizations of the period, most first.
    pub async fn list_cost_drivers(
        &self,
        period: BillingPeriod,
        min_organizations: i64,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<CostDriver>> {
        let p = period.to_string();
        let pricing = self.pricing();
        let threshold = pricing.active_member_threshold;
        let fingerprint =
            paging::fingerprint("cost_drivers", &[&p, &min_organizations.to_string()]);
        let after = match paging::decode(&fingerprint, page_token, 2)? {
            Some(key) => Some((
                key[0].parse::<i64>().map_err(|_| invalid_page_token())?,
                key[1].clone(),
            )),
            None => None,
        };
        let txn = self.db.begin_snapshot().await?;
        let mut rows =
            repo::cost_drivers(&txn, &p, threshold, min_organizations, after, page_size + 1)
                .await?;
        let total_size = repo::count_cost_drivers(&txn, &p, threshold, min_organizations).await?;
        let billable = repo::period_totals(&txn, &p).await?.billable_organizations;
        txn.commit().await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(
                &fingerprint,
                vec![
                    last.billable_organization_count.to_string(),
                    last.user_id.clone(),
                ],
            )
        });
        let items = rows
            .into_iter()
            .map(|row| CostDriver {
                avoidable_amount_minor: pricing.avoidable_amount(billable, row.sole_cause_count),
                user_id: row.user_id,
                billable_organization_count: row.billable_organization_count,
                sole_cause_count: row.sole_cause_count,
            })
            .collect();
        Ok(Page {
            items,
            next_page_token,
            total_size,
        })
    }

    /// Opens a watch of billing events. Checks the cursor (and, with
    /// `send_initial_state`, reads the initial state with the log position in
    /// one snapshot) before answering; then a task of its own reads the log
    /// and feeds a bounded channel, so a slow client holds back only itself.
    /// With `start` set, `send_initial_state` is not needed and ignored: the
    /// replay from the cursor has no gap.
    pub async fn watch_billing(
        &self,
        start: Option<WatchCursor>,
        send_initial_state: bool,
    ) -> Result<mpsc::Receiver<Result<WatchMessage>>> {
        if *self.shutdown.borrow() {
            return Err(shutting_down());
        }
        self.start_log_poller();
        // Subscribe before reading the head, so no commit after it is missed.
        let wake = self.notifier.subscribe();
        let now = self.now();
        let (after, initial) = match start {
            Some(cursor) => {
                let retention =
                    i64::try_from(self.config.watch_retention().as_micros()).unwrap_or(i64::MAX);
                if cursor.issue_time < now.saturating_sub(retention) {
                    return Err(Error::OutOfRange(
                        Reason::CursorExpired,
                        "the cursor is older than the retention; start again with send_initial_state".into(),
                    ));
                }
                let head = reader::head(self.db.conn()).await?;
                if cursor.seq > head {
                    return Err(Error::invalid(
                        "start_cursor",
                        "is not a cursor of this stream",
                    ));
                }
                // The replay starts at once, without waiting for the poller.
                self.notifier.committed(head);
                (cursor.seq, None)
            }
            None if send_initial_state => {
                let (head, usages) = self
                    .initial_state(BillingPeriod::containing_micros(now))
                    .await?;
                (head, Some(usages))
            }
            None => (reader::head(self.db.conn()).await?, None),
        };
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let stream = WatchTask {
            services: self.clone(),
            sender,
            wake,
            shutdown: self.shutdown.clone(),
            after,
        };
        tokio::spawn(stream.run(initial));
        Ok(receiver)
    }

    /// The log position and the current period's billable organizations, as
    /// of one snapshot: every later transition has a larger sequence number.
    /// Watches opened together share one snapshot, up to a second old: the
    /// live stream that follows starts at its position, so an older snapshot
    /// only means more to catch up.
    async fn initial_state(
        &self,
        period: BillingPeriod,
    ) -> Result<(i64, Arc<Vec<OrganizationUsage>>)> {
        let mut shared = self.billing.initial.lock().await;
        if let Some(cached) = shared.as_ref()
            && cached.period == period
            && cached.taken.elapsed() < WATCH_INITIAL_STATE_MAX_AGE
        {
            return Ok((cached.head, cached.usages.clone()));
        }
        let (head, usages) = self.read_initial_state(period).await?;
        let usages = Arc::new(usages);
        *shared = Some(SharedInitialState {
            period,
            taken: tokio::time::Instant::now(),
            head,
            usages: usages.clone(),
        });
        Ok((head, usages))
    }

    async fn read_initial_state(
        &self,
        period: BillingPeriod,
    ) -> Result<(i64, Vec<OrganizationUsage>)> {
        let p = period.to_string();
        let txn = self.db.begin_snapshot().await?;
        let head = reader::head(&txn).await?;
        let mut usages = Vec::new();
        let mut after = 0;
        loop {
            let rows = repo::billable_page(&txn, &p, after, 500).await?;
            let Some(last) = rows.last() else { break };
            after = last.billable_order.unwrap_or(after + 1);
            usages.extend(with_members(&txn, &p, rows).await?);
        }
        txn.commit().await?;
        Ok((head, usages))
    }

    /// The totals of the current period, including at least every event up
    /// to `seq`, for watch messages: computed once for all the watches of the
    /// process that wake together.
    async fn watch_summary(&self, seq: i64) -> Result<BillingSummary> {
        let period = BillingPeriod::containing_micros(self.now());
        let mut shared = self.billing.summary.lock().await;
        if let Some(cached) = shared.as_ref()
            && cached.seq >= seq
            && cached.summary.period == period.to_string()
            && cached.computed.elapsed() < WATCH_SUMMARY_MAX_AGE
        {
            return Ok(cached.summary.clone());
        }
        let txn = self.db.begin_snapshot().await?;
        let head = reader::head(&txn).await?;
        let summary = self.summary_in(&txn, period).await?;
        txn.commit().await?;
        *shared = Some(SharedSummary {
            seq: head,
            computed: tokio::time::Instant::now(),
            summary: summary.clone(),
        });
        Ok(summary)
    }

    fn start_log_poller(&self) {
        if !self.billing.poller_started.swap(true, Ordering::SeqCst) {
            reader::spawn_head_poller(
                self.db.clone(),
                self.notifier.clone(),
                self.shutdown.clone(),
                LOG_POLL_INTERVAL,
            );
        }
    }
}

fn invalid_page_token() -> Error {
    Error::InvalidPageToken(
        Reason::PageTokenInvalid,
        "page_token is not a token of this query; start again without it".into(),
    )
}

fn shutting_down() -> Error {
    Error::Unavailable(
        Reason::ShuttingDown,
        "the server is shutting down; resume from the last cursor".into(),
    )
}

/// Usages with their active member ids.
async fn with_members(
    conn: &impl sea_orm::ConnectionTrait,
    period: &str,
    rows: Vec<UsageRow>,
) -> Result<Vec<OrganizationUsage>> {
    let organizations: Vec<String> = rows.iter().map(|row| row.organization_id.clone()).collect();
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (organization, user) in repo::active_members(conn, period, &organizations).await? {
        members.entry(organization).or_default().push(user);
    }
    Ok(rows
        .into_iter()
        .map(|row| OrganizationUsage {
            active_member_user_ids: members.remove(&row.organization_id).unwrap_or_default(),
            organization_id: row.organization_id,
            period: period.to_string(),
            active_member_count: row.active_member_count,
            billable_since: row.billable_since,
        })
        .collect())
}

/// One open watch: its position in the log and where its messages go.
struct WatchTask {
    services: Services,
    sender: mpsc::Sender<Result<WatchMessage>>,
    wake: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    /// The sequence number of the last event considered.
    after: i64,
}

/// Why a watch stopped waiting.
enum Woken {
    /// The log may have grown (or the shutdown flag changed: checked next).
    Log,
    /// The server is gone.
    Shutdown,
    /// The client went away.
    Closed,
    /// Nothing was sent for a checkpoint interval.
    Idle,
}

/// Why a watch stopped sending.
enum Stop {
    /// The client went away.
    Closed,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Failed(err)
    }
}

impl From<sea_orm::DbErr> for Stop {
    fn from(err: sea_orm::DbErr) -> Self {
        Stop::Failed(err.into())
    }
}

impl WatchTask {
    async fn run(mut self, initial: Option<Arc<Vec<OrganizationUsage>>>) {
        let result = self.stream(initial).await;
        if let Err(Stop::Failed(err)) = result {
            if !matches!(err, Error::Unavailable(Reason::ShuttingDown, _)) {
                tracing::warn!(error = %err, "billing watch ended");
            }
            // The client may be gone or slow; do not wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.sender.send(Err(err))).await;
        }
    }

    async fn stream(&mut self, initial: Option<Arc<Vec<OrganizationUsage>>>) -> Result<(), Stop> {
        let checkpoint_interval = self.services.config.watch_checkpoint_interval();
        if let Some(usages) = initial {
            let summary = self.summary(self.after).await?;
            let cursor = self.cursor();
            for usage in usages.iter() {
                self.send(WatchMessage {
                    cursor: cursor.clone(),
                    event: WatchEvent::BecameBillable(usage.clone()),
                    summary: summary.clone(),
                })
                .await?;
            }
            self.checkpoint().await?;
        }
        let mut last_sent = tokio::time::Instant::now();
        loop {
            if *self.shutdown.borrow() {
                return Err(Stop::Failed(shutting_down()));
            }
            if self.catch_up().await? {
                last_sent = tokio::time::Instant::now();
            }
            let woken = tokio::select! {
                changed = self.wake.changed() => if changed.is_ok() { Woken::Log } else { Woken::Shutdown },
                changed = self.shutdown.changed() => if changed.is_ok() { Woken::Log } else { Woken::Shutdown },
                _ = self.sender.closed() => Woken::Closed,
                _ = tokio::time::sleep_until(last_sent + checkpoint_interval) => Woken::Idle,
            };
            match woken {
                Woken::Log => {}
                Woken::Shutdown => return Err(Stop::Failed(shutting_down())),
                Woken::Closed => return Err(Stop::Closed),
                Woken::Idle => {
                    self.checkpoint().await?;
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Sends every billing event committed after `after`, up to the highest
    /// sequence number known committed (by this process, or by another
    /// replica as the log poller saw); returns whether it sent any.
    async fn catch_up(&mut self) -> Result<bool, Stop> {
        let mut sent = false;
        loop {
            let head = *self.wake.borrow_and_update();
            if head <= self.after {
                return Ok(sent);
            }
            let conn = self.services.db.conn();
            let tail = &self.services.billing.tail;
            let (events, reached) = tail.read(conn, self.after, head, WATCH_READ_LIMIT).await?;
            if let Some(last) = events.last() {
                let summary = self.summary(last.seq).await?;
                for event in events {
                    let seq = event.seq;
                    let message = to_watch_event(event)?;
                    self.after = seq;
                    self.send(WatchMessage {
                        cursor: self.cursor(),
                        event: message,
                        summary: summary.clone(),
                    })
                    .await?;
                    sent = true;
                }
            }
            self.after = self.after.max(reached);
        }
    }

    async fn checkpoint(&mut self) -> Result<(), Stop> {
        let summary = self.summary(self.after).await?;
        let now = self.services.now();
        self.send(WatchMessage {
            cursor: self.cursor(),
            event: WatchEvent::Checkpoint(now),
            summary,
        })
        .await
    }

    /// The totals to send with messages up to position `seq`.
    async fn summary(&self, seq: i64) -> Result<BillingSummary, Stop> {
        Ok(self.services.watch_summary(seq).await?)
    }

    fn cursor(&self) -> String {
        WatchCursor {
            seq: self.after,
            issue_time: self.services.now(),
        }
        .encode()
    }

    /// Sends one message, waiting while the client's buffer is full, but not
    /// past shutdown.
    async fn send(&mut self, message: WatchMessage) -> Result<(), Stop> {
        tokio::select! {
            sent = self.sender.send(Ok(message)) => sent.map_err(|_| Stop::Closed),
            _ = wait_for_shutdown(&mut self.shutdown) => Err(Stop::Failed(shutting_down())),
        }
    }
}

async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        // The sender is gone: the server has stopped.
    }
}

fn to_watch_event(event: EventRow) -> Result<WatchEvent> {
    match event.action.as_str() {
        ORGANIZATION_BECAME_BILLABLE => {
            let payload: BecameBillable =
                serde_json::from_str(&event.payload).map_err(Error::internal)?;
            Ok(WatchEvent::BecameBillable(payload.usage))
        }
        PERIOD_STARTED => {
            let payload: PeriodStarted =
                serde_json::from_str(&event.payload).map_err(Error::internal)?;
            Ok(WatchEvent::PeriodStarted(payload.period))
        }
        other => Err(Error::internal(format!(
            "unexpected event {other} in the billing watch"
        ))),
    }
}

/// The totals of a period, read from its counters in one snapshot.
pub async fn period_summary(
    db: &crate::store::Db,
    pricing: &Pricing,
    period: BillingPeriod,
) -> Result<BillingSummary> {
    let txn = db.begin_snapshot().await?;
    let summary = summary_from(&txn, pricing, period).await?;
    txn.commit().await?;
    Ok(summary)
}

async fn summary_from(
    conn: &impl sea_orm::ConnectionTrait,
    pricing: &Pricing,
    period: BillingPeriod,
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
    ))
}
