//! `RecordActivity`: which users were active when. A user already known to be
//! active in a period costs nothing; a user not known here costs a read; only
//! a user new to the period costs a write, decided by an insert-if-absent.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::counters::BillingCounters;
use crate::domain::Actor;
use crate::domain::Result;
use crate::domain::billing::{ActivityEvent, ActivityOutcome};
use crate::domain::time::{BillingPeriod, Micros};
use crate::service::unit_of_work::{Call, Writer};
use crate::store::{Db, repo::billing as repo};

/// How far ahead of the server clock an activity may be.
const MAX_AHEAD_MICROS: Micros = 5 * 60 * 1_000_000;
/// Users remembered as active per period; beyond it a repeat costs a read.
const KNOWN_ACTIVE_CAP: usize = 2_000_000;

/// Users known to be active, per period. Only facts already committed are
/// remembered, so the database stays the source of truth and other replicas'
/// writes cannot make it wrong.
#[derive(Debug, Default)]
pub struct KnownActive {
    periods: Mutex<BTreeMap<BillingPeriod, HashSet<String>>>,
}

impl KnownActive {
    /// The users known active, locked once for a whole call's events.
    fn lock(&self) -> Known<'_> {
        Known(
            self.periods
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Remembers committed activity; keeps the two newest periods, which are
    /// the only ones activity can be recorded in.
    fn remember(&self, period: BillingPeriod, users: impl IntoIterator<Item = String>) {
        let mut known = self
            .periods
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

/// [`KnownActive`], locked.
struct Known<'a>(MutexGuard<'a, BTreeMap<BillingPeriod, HashSet<String>>>);

impl Known<'_> {
    fn contains(&self, period: BillingPeriod, user_id: &str) -> bool {
        self.0
            .get(&period)
            .is_some_and(|users| users.contains(user_id))
    }
}

/// Records activity.
#[derive(Debug, Clone)]
pub struct Activity {
    db: Db,
    writer: Writer,
    counters: BillingCounters,
    known: Arc<KnownActive>,
}

impl Activity {
    pub fn new(db: Db, writer: Writer, counters: BillingCounters) -> Self {
        Activity {
            db,
            writer,
            counters,
            known: Arc::default(),
        }
    }

    /// Records activity. Events outside the accepted time range are rejected
    /// one by one.
    pub async fn record(
        &self,
        actor: Actor,
        events: Vec<ActivityEvent>,
    ) -> Result<ActivityOutcome> {
        let now = self.writer.now();
        let current = BillingPeriod::containing_micros(now);
        let earliest = current.previous().start_micros();
        let mut outcome = ActivityOutcome::default();
        // (period, user) → the earliest occur_time in this call.
        let mut candidates: BTreeMap<(BillingPeriod, String), Micros> = BTreeMap::new();
        let previous = current.previous();
        {
            // Let go before the reads and the write below.
            let known = self.known.lock();
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
                // Accepted times fall in one of the two periods.
                let period = if occur >= current.start_micros() {
                    current
                } else {
                    previous
                };
                if known.contains(period, event.user_id.as_str()) {
                    continue;
                }
                candidates
                    .entry((period, event.user_id.into_string()))
                    .and_modify(|first| *first = (*first).min(occur))
                    .or_insert(occur);
            }
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
            self.known.remember(period, known);
        }
        if candidates.is_empty() {
            return Ok(outcome);
        }
        let rows: Vec<(String, String, Micros)> = candidates
            .iter()
            .map(|((period, user), occur)| (period.to_string(), user.clone(), *occur))
            .collect();
        let counters = self.counters.clone();
        outcome.newly_active_count = self
            .writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move { counters.activate(tx, &rows).await })
            })
            .await?;
        // Every candidate is active now, by this call or a concurrent one.
        let mut committed: BTreeMap<BillingPeriod, Vec<String>> = BTreeMap::new();
        for (period, user) in candidates.into_keys() {
            committed.entry(period).or_default().push(user);
        }
        for (period, users) in committed {
            self.known.remember(period, users);
        }
        Ok(outcome)
    }
}
